//! Steps 2 and 4 of a pass, pure: which images of each workload which TrustRoots govern, what to
//! ask the registries (distinct tags and digests only: a digest run by a thousand pods is
//! checked once), and, once answered, the findings each workload's verdict is derived from.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use super::{
    clients::{CredentialsKey, Tag},
    trust::CompiledRoot,
    verdict::{Check, Finding, TagCheck},
    world::Workload,
};
use crate::{
    crd::WorkloadCounts,
    reference::{Digest, ImageRef},
    verify::cause,
};

/// A workload and its governed images.
#[derive(Debug)]
pub struct Planned {
    pub workload: Workload,
    pub credentials: CredentialsKey,
    /// Empty when no TrustRoot governs any of its images.
    pub images: Vec<Governed>,
}

/// One image and the TrustRoots that govern it.
#[derive(Debug)]
pub struct Governed {
    pub spec: String,
    /// `None` when the spec's image is not a reference at all.
    pub reference: Option<ImageRef>,
    pub running: Option<Digest>,
    pub roots: Vec<Arc<CompiledRoot>>,
}

impl Governed {
    /// The tag to resolve, when the spec names one without a digest: to know the digest when
    /// none is running yet, and to see a tag that moved.
    pub fn tag(&self) -> Option<&ImageRef> {
        self.reference.as_ref().filter(|r| r.digest().is_none())
    }

    /// The digest known without asking: the running one, or the one the spec pins.
    pub fn known_digest(&self) -> Option<Digest> {
        self.running
            .clone()
            .or_else(|| self.reference.as_ref().and_then(ImageRef::digest))
    }
}

/// A tag to resolve with some credentials.
pub type TagKey = (CredentialsKey, String);
/// A digest's signatures in a signature repository, with some credentials.
pub type SignatureKey = (CredentialsKey, String, Digest);

/// Which TrustRoots govern which images of each workload.
pub fn plan(
    workloads: Vec<Workload>,
    roots: &[Arc<CompiledRoot>],
    credentials: impl Fn(&str, &[String]) -> CredentialsKey,
) -> Vec<Planned> {
    workloads
        .into_iter()
        .map(|workload| {
            let selecting: Vec<&Arc<CompiledRoot>> = roots
                .iter()
                .filter(|r| r.spec.selects_namespace(&workload.namespace_labels))
                .collect();
            let images = workload
                .images
                .iter()
                .filter_map(|image| {
                    let governing: Vec<Arc<CompiledRoot>> = selecting
                        .iter()
                        .filter(|r| r.spec.governs(&image.image))
                        .map(|r| Arc::clone(r))
                        .collect();
                    (!governing.is_empty()).then(|| Governed {
                        spec: image.image.clone(),
                        reference: ImageRef::parse(&image.image).ok(),
                        running: image.digest.clone(),
                        roots: governing,
                    })
                })
                .collect();
            let secrets: Vec<String> = workload.pull_secrets.iter().cloned().collect();
            Planned {
                credentials: credentials(&workload.workload.namespace, &secrets),
                workload,
                images,
            }
        })
        .collect()
}

/// The tags to resolve, each with the shortest `max_age` of the TrustRoots that need it.
pub fn tag_requests(
    planned: &[Planned],
    max_age: impl Fn(&CompiledRoot) -> Duration,
) -> HashMap<TagKey, (ImageRef, Duration)> {
    let mut out: HashMap<TagKey, (ImageRef, Duration)> = HashMap::new();
    for p in planned {
        for g in &p.images {
            let Some(tag) = g.tag() else { continue };
            let age = g.roots.iter().map(|r| max_age(r)).min().unwrap_or_default();
            out.entry((p.credentials.clone(), tag.to_string()))
                .and_modify(|(_, a)| *a = (*a).min(age))
                .or_insert((tag.clone(), age));
        }
    }
    out
}

/// The digest to verify: known, or what the tag points at.
pub fn digest_of(g: &Governed, credentials: &CredentialsKey, tags: &HashMap<TagKey, Tag>) -> Option<Digest> {
    g.known_digest().or_else(|| {
        let tag = g.tag()?;
        tags.get(&(credentials.clone(), tag.to_string()))?.digest.clone()
    })
}

/// Where the signatures of `g` live under `root`.
pub fn signature_repository(g: &Governed, root: &CompiledRoot) -> Option<ImageRef> {
    root.signature_repository.clone().or_else(|| g.reference.clone())
}

/// The signature lookups, each with the shortest `max_age` of the TrustRoots that need it.
pub fn signature_requests(
    planned: &[Planned],
    tags: &HashMap<TagKey, Tag>,
    max_age: impl Fn(&CompiledRoot) -> Duration,
) -> HashMap<SignatureKey, (ImageRef, Duration)> {
    let mut out: HashMap<SignatureKey, (ImageRef, Duration)> = HashMap::new();
    for p in planned {
        for g in &p.images {
            let Some(digest) = digest_of(g, &p.credentials, tags) else {
                continue;
            };
            for root in &g.roots {
                let Some(repo) = signature_repository(g, root) else {
                    continue;
                };
                let key = (p.credentials.clone(), repo.repository_name(), digest.clone());
                let age = max_age(root);
                out.entry(key)
                    .and_modify(|(_, a)| *a = (*a).min(age))
                    .or_insert((repo, age));
            }
        }
    }
    out
}

/// The signature lookups whose attestations are needed too: digests governed by a TrustRoot
/// that requires attestations.
pub fn attestation_keys(planned: &[Planned], tags: &HashMap<TagKey, Tag>) -> HashSet<SignatureKey> {
    let mut out = HashSet::new();
    for p in planned {
        for g in &p.images {
            let Some(digest) = digest_of(g, &p.credentials, tags) else {
                continue;
            };
            for root in g.roots.iter().filter(|r| !r.spec.attestations.is_empty()) {
                if let Some(repo) = signature_repository(g, root) {
                    out.insert((p.credentials.clone(), repo.repository_name(), digest.clone()));
                }
            }
        }
    }
    out
}

/// How many distinct digests each TrustRoot governs (by signature repository and digest).
pub fn digests_per_root(planned: &[Planned], tags: &HashMap<TagKey, Tag>) -> HashMap<String, usize> {
    let mut sets: HashMap<&str, HashSet<(String, Digest)>> = HashMap::new();
    for p in planned {
        for g in &p.images {
            let Some(digest) = digest_of(g, &p.credentials, tags) else {
                continue;
            };
            for root in &g.roots {
                if let Some(repo) = signature_repository(g, root) {
                    sets.entry(&root.name)
                        .or_default()
                        .insert((repo.repository_name(), digest.clone()));
                }
            }
        }
    }
    sets.into_iter()
        .map(|(name, set)| (name.to_string(), set.len()))
        .collect()
}

/// What one (digest, TrustRoot) evaluation said: the check (`None`: no answer), and the registry
/// error category when the answer is not current.
pub type Evaluation = (Option<Check>, Option<&'static str>);

/// The findings and tag checks of one workload. `evaluate(key, root)` answers for a digest's
/// signatures under a root's keys.
pub fn findings(
    p: &Planned,
    tags: &HashMap<TagKey, Tag>,
    mut evaluate: impl FnMut(&SignatureKey, &CompiledRoot) -> Evaluation,
) -> (Vec<Finding>, Vec<TagCheck>) {
    let mut findings = Vec::new();
    let mut checks = Vec::new();
    for g in &p.images {
        let tag = g
            .tag()
            .and_then(|t| tags.get(&(p.credentials.clone(), t.to_string())));
        if let (Some(tag), Some(running)) = (tag, &g.running) {
            checks.push(tag_check(g, tag, running));
        }
        let digest = digest_of(g, &p.credentials, tags);
        let image = match (&g.reference, &digest) {
            (Some(r), Some(d)) => format!("{}@{d}", r.repository_name()),
            _ => g.spec.clone(),
        };
        for root in &g.roots {
            let (check, stale) = match (&digest, signature_repository(g, root)) {
                (Some(d), Some(repo)) => {
                    evaluate(&(p.credentials.clone(), repo.repository_name(), d.clone()), root)
                }
                (_, None) => (
                    Some(Check::failed(
                        "not a valid image reference",
                        cause::INVALID_REFERENCE,
                    )),
                    None,
                ),
                (None, Some(_)) => (None, Some(tag_error(tag))),
            };
            findings.push(Finding {
                image: image.clone(),
                digest: digest.clone(),
                root: root.name.clone(),
                check,
                stale,
            });
        }
    }
    (findings, checks)
}

fn tag_check(g: &Governed, tag: &Tag, running: &Digest) -> TagCheck {
    match (&tag.error, &tag.digest) {
        (None, Some(now)) if now != running => TagCheck::Moved {
            image: g.spec.clone(),
            now: now.clone(),
            running: running.clone(),
        },
        (None, Some(_)) => TagCheck::Same,
        _ => TagCheck::Unknown,
    }
}

fn tag_error(tag: Option<&Tag>) -> &'static str {
    tag.and_then(|t| t.error.as_ref())
        .map_or("error", |e| e.category())
}

/// Adds a workload to the counts of each TrustRoot governing it, by that root's own findings.
pub fn count(findings: &[Finding], counts: &mut HashMap<String, WorkloadCounts>) {
    let roots: HashSet<&str> = findings.iter().map(|f| f.root.as_str()).collect();
    for root in roots {
        let mine = findings.iter().filter(|f| f.root == root);
        let c = counts.entry(root.to_string()).or_default();
        c.total += 1;
        let mut worst = 0;
        for f in mine {
            let rank = match (&f.check, f.stale) {
                (None, _) | (_, Some(_)) => 4,
                (Some(Check::Failed { .. }), None) => 3,
                (Some(Check::Unsigned), None) => 2,
                (Some(Check::Verified { .. }), None) => 1,
            };
            worst = worst.max(rank);
        }
        match worst {
            4 => c.stale += 1,
            3 => c.failed += 1,
            2 => c.unsigned += 1,
            _ => c.verified += 1,
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
