//! Judging the images of one object: the same engine, caches and key sets as the operator's
//! passes, under a deadline that fits the webhook's timeout.
//!
//! ```text
//! image ─governing TrustRoots (globs, namespace selector)─► tag → digest (tag cache)
//!       ─► signatures (signature cache: fresh = hit; else a registry round trip = miss)
//!          and, only under a TrustRoot that requires attestations, the attestations (the
//!          operator's attestation cache), asked at the same time
//!       ─► check_all + decide with the rotations' acceptance, then the operator's
//!          `attestations::check` of each required predicate type ─► Answer per TrustRoot
//! ```
//!
//! A registry that does not answer in time is never a verdict by itself, for attestations as
//! for signatures: the last good answer stands in when it is younger than `max_stale`,
//! otherwise the answer is `Unreachable` (never "missing"), which `Enforce` denies.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::join_all;

use super::{
    decide::{Answer, Judged},
    review::{ImageAt, Subject},
    trust::Trust,
};
use crate::{
    operator::{
        attestations::{self, Requirements},
        clients::{RegistryPool, Verifier},
        metrics::Metrics,
        objects::ObjectCache,
        trust::CompiledRoot,
    },
    reference::{Digest, ImageRef},
    verify::{
        AttestationState, Outcome, SignatureCache, SignatureSource, Signatures, cause, check_all, decide,
    },
};

/// A lookup's answer for judging: the signatures (or attestations) to judge by, or why there
/// are none.
type Looked = Result<Arc<Signatures>, String>;

/// What judging needs, shared by every request of a replica.
pub struct Judge {
    pub pool: Arc<RegistryPool>,
    pub objects: Arc<ObjectCache>,
    pub metrics: Arc<Metrics>,
    /// A never-seen digest is verified within this time, or answered `Unreachable`.
    pub deadline: Duration,
    /// A cached answer this young stands in for a registry that cannot be reached.
    pub max_stale: Duration,
}

/// One image's judgement under each governing TrustRoot, and the digest that was verified
/// (for pinning) when every one of them verified it.
pub struct Judgement {
    /// The image field judged.
    pub at: ImageAt,
    pub judged: Vec<Judged>,
    pub verified_digest: Option<Digest>,
    /// Some governing TrustRoot asks for tags to be pinned.
    pub pin: bool,
}

impl Judge {
    /// Judges every image of `subject` (`labels`: its namespace's labels) at once.
    pub async fn judge(
        &self,
        trust: &Trust,
        subject: &Subject,
        labels: &BTreeMap<String, String>,
    ) -> Vec<Judgement> {
        let started = Instant::now();
        let selecting: Vec<&Arc<CompiledRoot>> = trust
            .roots
            .iter()
            .filter(|r| r.spec.selects_namespace(labels))
            .collect();
        let governed: Vec<(&ImageAt, Vec<&Arc<CompiledRoot>>)> = subject
            .images
            .iter()
            .map(|image| {
                let roots = selecting.iter().copied().filter(|r| r.spec.governs(&image.image));
                (image, roots.collect::<Vec<_>>())
            })
            .filter(|(_, roots)| !roots.is_empty())
            .collect();
        if governed.is_empty() {
            return Vec::new();
        }
        let key = self.pool.key(&subject.namespace, &subject.pull_secrets);
        let verifier = self.pool.verifier(&key, self.objects.as_ref()).await;
        let v = &verifier;
        let mut work = Vec::new();
        for (image, governing) in governed {
            work.push(async move {
                let (judged, verified_digest, pin) = self.image(trust, v, image, governing, started).await;
                Judgement {
                    at: image.clone(),
                    judged,
                    verified_digest,
                    pin,
                }
            });
        }
        join_all(work).await
    }

    async fn image(
        &self,
        trust: &Trust,
        verifier: &Arc<Verifier>,
        at: &ImageAt,
        roots: Vec<&Arc<CompiledRoot>>,
        started: Instant,
    ) -> (Vec<Judged>, Option<Digest>, bool) {
        let image = at.image.as_str();
        let pin = roots.iter().any(|r| r.spec.pin_to_digest);
        let judged = |root: &CompiledRoot, digest: Option<&Digest>, answer| Judged {
            image: image.to_string(),
            field: at.field(),
            digest: digest.map(ToString::to_string),
            root: root.name.clone(),
            mode: root.spec.mode,
            answer,
        };
        let reference = match ImageRef::parse(image) {
            Ok(r) => r,
            Err(e) => {
                let why = format!("not a valid image reference: {e}");
                let all = roots
                    .iter()
                    .map(|r| judged(r, None, Answer::Untrusted(why.clone())));
                return (all.collect(), None, pin);
            }
        };
        let freshest = roots.iter().map(|r| r.interval).min().unwrap_or_default();
        let digest = match reference.digest() {
            Some(d) => Ok(d),
            None => self.resolve(verifier, &reference, freshest, started).await,
        };
        let digest = match digest {
            Ok(d) => d,
            Err(why) => {
                let all = roots
                    .iter()
                    .map(|r| judged(r, None, Answer::Unreachable(why.clone())));
                return (all.collect(), None, pin);
            }
        };
        let mut out = Vec::with_capacity(roots.len());
        for root in roots.iter().copied() {
            let repo = root
                .signature_repository
                .clone()
                .unwrap_or_else(|| reference.clone());
            // Attestations only under a TrustRoot that requires some: otherwise not one more
            // registry request.
            let attested = async {
                if root.spec.attestations.is_empty() {
                    return None;
                }
                let at = self.lookup(&verifier.attestations, &repo, &digest, root.interval, started);
                Some(at.await.0)
            };
            let signed = self.lookup(&verifier.signatures, &repo, &digest, root.interval, started);
            let ((signatures, hit), attestations) = tokio::join!(signed, attested);
            self.metrics.admission_cache(hit);
            let answer = match signatures {
                Ok(signatures) => answer(trust, root, &digest, &signatures, attestations),
                Err(why) => Answer::Unreachable(why),
            };
            out.push(judged(root, Some(&digest), answer));
        }
        let verified = out.iter().all(|j| j.answer == Answer::Verified);
        (out, verified.then_some(digest), pin)
    }

    /// The digest a tag points at, within what is left of the deadline.
    async fn resolve(
        &self,
        verifier: &Verifier,
        reference: &ImageRef,
        max_age: Duration,
        started: Instant,
    ) -> Result<Digest, String> {
        let left = self.deadline.saturating_sub(started.elapsed());
        let resolving = verifier.tags.resolve(verifier.client(), reference, max_age);
        match tokio::time::timeout(left, resolving).await {
            Ok(tag) => match (tag.digest, tag.error) {
                (Some(d), None) => Ok(d),
                (_, Some(e)) => Err(format!("resolving tag {reference}: {e}")),
                (None, None) => Err(format!("tag {reference} not found")),
            },
            Err(_) => Err(format!(
                "resolving tag {reference}: no answer within {:?}",
                self.deadline
            )),
        }
    }

    /// The signatures (or attestations) of `digest` from `cache`: fresh from the cache (a hit:
    /// `true`), or asked within the deadline; on a registry failure, the last good answer if it
    /// is younger than `max_stale`.
    async fn lookup<S: SignatureSource + Send + Sync + 'static>(
        &self,
        cache: &SignatureCache<S>,
        repo: &ImageRef,
        digest: &Digest,
        max_age: Duration,
        started: Instant,
    ) -> (Looked, bool) {
        let cached = cache.peek(repo, digest);
        let fresh = cached
            .as_ref()
            .is_some_and(|c| !c.is_stale() && c.checked_at.elapsed() < max_age);
        if let (true, Some(c)) = (fresh, &cached) {
            return (Ok(c.clone()), true);
        }
        let left = self.deadline.saturating_sub(started.elapsed());
        let asked = tokio::time::timeout(left, cache.get(repo, digest, max_age)).await;
        let (latest, why) = match asked {
            Ok(s) if !s.is_stale() => return (Ok(s), false),
            Ok(s) => {
                let why = s
                    .error
                    .as_ref()
                    .or(s.fetched.error())
                    .map_or_else(|| "unknown error".to_string(), ToString::to_string);
                (Some(s), why)
            }
            Err(_) => (cached, format!("no answer within {:?}", self.deadline)),
        };
        // The last good answer (the cache keeps it through failures, with when it was current).
        let last_good = latest
            .filter(|s| s.fetched.error().is_none() && s.checked_at.elapsed() < self.max_stale)
            .ok_or(why);
        (last_good, false)
    }
}

/// What `root` says about `digest`: its signatures, rotations included, and then, when they
/// verify, its required attestations (`attestations`: `None` when it requires none).
fn answer(
    trust: &Trust,
    root: &CompiledRoot,
    digest: &Digest,
    signatures: &Signatures,
    attestations: Option<Looked>,
) -> Answer {
    match (signed(trust, root, digest, signatures), attestations) {
        (Answer::Verified, Some(Ok(a))) => attested(trust, root, digest, &a),
        (Answer::Verified, Some(Err(why))) => Answer::Unreachable(format!("attestations: {why}")),
        (signed, _) => signed,
    }
}

/// `root`'s required attestations of a signed `digest`, judged as the operator judges them.
fn attested(trust: &Trust, root: &CompiledRoot, digest: &Digest, attestations: &Signatures) -> Answer {
    let checks = attestations::check(digest, root, attestations, |k| trust.refusal(&root.name, k));
    match attestations::requirements(&checks) {
        Requirements::Met => Answer::Verified,
        Requirements::Unmet(failed) => Answer::Attestations(failed.into_iter().cloned().collect()),
        // Not read: a registry problem, never "missing" (a lookup's answer was read whole, so
        // this is the safe side of what cannot happen).
        Requirements::Unread => {
            let why = checks.iter().find_map(|c| match &c.state {
                AttestationState::Error { reason } => Some(reason.clone()),
                _ => None,
            });
            Answer::Unreachable(format!("attestations: {}", why.unwrap_or_default()))
        }
    }
}

/// What `root` says about `digest`'s signatures, rotations included.
fn signed(trust: &Trust, root: &CompiledRoot, digest: &Digest, signatures: &Signatures) -> Answer {
    let checks = check_all(digest, &signatures.fetched, &root.keys);
    let refusal = |k: &str| trust.refusal(&root.name, k);
    let outcome = decide(&checks, &signatures.fetched, root.keys.threshold, refusal);
    match outcome {
        Outcome::Verified { .. } => Answer::Verified,
        Outcome::Unsigned => Answer::Unsigned,
        Outcome::Error { reason, .. } => Answer::Unreachable(reason),
        // Some accepted key verified, too few of them: `decide` says so among its causes.
        Outcome::Invalid { reason, causes } if causes.contains(&cause::BELOW_THRESHOLD) => {
            Answer::Threshold(reason)
        }
        Outcome::Invalid { reason, .. } => Answer::Untrusted(reason),
    }
}
