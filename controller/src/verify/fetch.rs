//! Finding signatures: the I/O half of verification.

use std::future::Future;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::SignatureFormat;
use crate::{
    formats::{
        attestation::BUNDLE_PREDICATE_ANNOTATION,
        bundle::{bundle_layer, is_bundle_media_type},
        dsse::COSIGN_SIGN_PREDICATE,
        oci::{DOCKER_MANIFEST, Descriptor, Manifest, OCI_MANIFEST},
        simple_signing::{Evidence, SIGNATURE_ANNOTATION},
    },
    reference::{Digest, ImageRef},
    registry::{FetchError, RegistryClient, RegistryError},
};

/// Signatures fetched concurrently per image; the registry client bounds the total.
const FETCH_CONCURRENCY: usize = 8;

/// A signature as found, before any key is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A `.sig` layer: the simple-signing payload and the base64 signature annotation.
    Legacy {
        layer: String,
        payload: Bytes,
        signature: String,
        /// Certificate, chain, log entry, timestamp: whatever the layer's annotations carry.
        evidence: Evidence,
    },
    /// A bundle referrer: the bundle JSON.
    Bundle { manifest: String, bundle: Bytes },
    /// Something that claims to be a signature but cannot be one (too large, malformed).
    Rejected {
        format: SignatureFormat,
        source: String,
        reason: String,
    },
}

/// Everything found for one digest, per format; an `Err` means that format could not be read.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub legacy: Result<Found, RegistryError>,
    pub bundles: Result<Found, RegistryError>,
}

/// The signatures of one format, and a revision that changes whenever they may have: the `.sig`
/// manifest digest, or the list of referrer digests. Comparing revisions is how a cache
/// re-checks with one small request instead of downloading everything again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub revision: String,
    pub candidates: Vec<Candidate>,
}

impl Fetched {
    /// Every candidate of both formats that could be read.
    pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        let legacy = self.legacy.iter().flat_map(|f| f.candidates.iter());
        legacy.chain(self.bundles.iter().flat_map(|f| f.candidates.iter()))
    }

    /// The first error of either format.
    pub fn error(&self) -> Option<&RegistryError> {
        [&self.legacy, &self.bundles]
            .into_iter()
            .find_map(|r| r.as_ref().err())
    }
}

/// The revision of a format with nothing in it.
pub const ABSENT: &str = "absent";

/// Where signatures come from. The registry client implements it; unit tests use fixtures.
pub trait SignatureSource: Sync {
    /// The digest a tag points at.
    fn resolve(&self, image: &ImageRef) -> impl Future<Output = Result<Digest, RegistryError>> + Send;
    /// The layers of `sha256-<hex>.sig` in `repo`; empty when the tag does not exist.
    fn legacy_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Found, RegistryError>> + Send;
    /// Sigstore bundles among the referrers of `digest` in `repo`.
    fn bundle_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Found, RegistryError>> + Send;
    /// The legacy revision alone (one HEAD request).
    fn legacy_revision(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;
    /// The bundle revision alone (one referrers listing).
    fn bundle_revision(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<String, RegistryError>> + Send;
}

/// Both formats, looked up at the same time.
pub async fn fetch_signatures<S: SignatureSource>(source: &S, repo: &ImageRef, digest: &Digest) -> Fetched {
    let (legacy, bundles) = tokio::join!(
        source.legacy_signatures(repo, digest),
        source.bundle_signatures(repo, digest)
    );
    Fetched { legacy, bundles }
}

fn rejected(format: SignatureFormat, source: impl Into<String>, reason: impl Into<String>) -> Candidate {
    Candidate::Rejected {
        format,
        source: source.into(),
        reason: reason.into(),
    }
}

/// Content problems reject one signature; registry problems fail the whole lookup.
fn or_rejected(
    format: SignatureFormat,
    source: &str,
    r: Result<Candidate, FetchError>,
) -> Result<Candidate, RegistryError> {
    match r {
        Ok(c) => Ok(c),
        Err(FetchError::Rejected(reason)) => Ok(rejected(format, source, reason)),
        Err(FetchError::Registry(e)) => Err(e),
    }
}

/// What a lookup reads: signatures (`.sig`, `sign/v1` bundles) or attestations (`.att`,
/// bundles of every other predicate type). The same reads serve both; only the tag and the
/// referrers kept differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Signatures,
    Attestations,
}

impl Stored {
    fn tag(self, digest: &Digest) -> String {
        match self {
            Self::Signatures => digest.signature_tag(),
            Self::Attestations => digest.attestation_tag(),
        }
    }

    fn may_be(self, referrer: &Descriptor) -> bool {
        match self {
            Self::Signatures => may_be_image_signature(referrer),
            Self::Attestations => may_be_attestation(referrer),
        }
    }
}

impl SignatureSource for RegistryClient {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        RegistryClient::resolve(self, image).await
    }

    async fn legacy_signatures(&self, repo: &ImageRef, digest: &Digest) -> Result<Found, RegistryError> {
        self.legacy_of(Stored::Signatures, repo, digest).await
    }

    async fn bundle_signatures(&self, repo: &ImageRef, digest: &Digest) -> Result<Found, RegistryError> {
        self.bundles_of(Stored::Signatures, repo, digest).await
    }

    async fn legacy_revision(&self, repo: &ImageRef, digest: &Digest) -> Result<String, RegistryError> {
        self.legacy_revision_of(Stored::Signatures, repo, digest).await
    }

    async fn bundle_revision(&self, repo: &ImageRef, digest: &Digest) -> Result<String, RegistryError> {
        self.bundle_revision_of(repo, digest).await
    }
}

/// The attestations of an image through the same client, as a [`SignatureSource`]: the `.att`
/// tag and the referrers of other predicate types, so that [`super::SignatureCache`] caches and
/// re-checks them exactly as it does signatures.
pub struct Attestations(pub std::sync::Arc<RegistryClient>);

impl SignatureSource for Attestations {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        self.0.resolve(image).await
    }

    async fn legacy_signatures(&self, repo: &ImageRef, digest: &Digest) -> Result<Found, RegistryError> {
        self.0.legacy_of(Stored::Attestations, repo, digest).await
    }

    async fn bundle_signatures(&self, repo: &ImageRef, digest: &Digest) -> Result<Found, RegistryError> {
        self.0.bundles_of(Stored::Attestations, repo, digest).await
    }

    async fn legacy_revision(&self, repo: &ImageRef, digest: &Digest) -> Result<String, RegistryError> {
        self.0
            .legacy_revision_of(Stored::Attestations, repo, digest)
            .await
    }

    async fn bundle_revision(&self, repo: &ImageRef, digest: &Digest) -> Result<String, RegistryError> {
        self.0.bundle_revision_of(repo, digest).await
    }
}

impl RegistryClient {
    async fn legacy_of(
        &self,
        stored: Stored,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<Found, RegistryError> {
        let format = SignatureFormat::Legacy;
        let tag = stored.tag(digest);
        let found = |revision: String, candidates| Found { revision, candidates };
        let accept = [OCI_MANIFEST, DOCKER_MANIFEST];
        let (manifest, revision) = match self.manifest(&repo.at_tag(&tag), &accept).await {
            Ok((bytes, manifest_digest)) => (bytes, manifest_digest.to_string()),
            Err(FetchError::Registry(RegistryError::NotFound)) => {
                return Ok(found(ABSENT.into(), Vec::new()));
            }
            Err(FetchError::Registry(e)) => return Err(e),
            Err(FetchError::Rejected(reason)) => {
                return Ok(found(reason.clone(), vec![rejected(format, tag, reason)]));
            }
        };
        let manifest = match Manifest::parse(&manifest) {
            Ok(m) => m,
            Err(e) => return Ok(found(revision, vec![rejected(format, tag, e.to_string())])),
        };
        let max = self.limits().max_signatures;
        if manifest.layers.len() > max {
            let reason = format!("{} layers, more than the {max} accepted", manifest.layers.len());
            return Ok(found(revision, vec![rejected(format, tag, reason)]));
        }
        let candidates = stream::iter(manifest.layers)
            .map(|layer| async move {
                let source = layer.digest.clone();
                or_rejected(format, &source, self.legacy_layer(stored, repo, layer).await)
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found(revision, candidates))
    }

    async fn bundles_of(
        &self,
        stored: Stored,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<Found, RegistryError> {
        let format = SignatureFormat::Bundle;
        let referrers = match self.referrers(repo, digest).await {
            Ok(r) => r,
            Err(FetchError::Registry(e)) => return Err(e),
            Err(FetchError::Rejected(reason)) => {
                let candidates = vec![rejected(format, digest.fallback_tag(), reason.clone())];
                return Ok(Found {
                    revision: reason,
                    candidates,
                });
            }
        };
        let revision = referrers_revision(&referrers);
        let wanted: Vec<Descriptor> = referrers.into_iter().filter(|r| stored.may_be(r)).collect();
        let found: Vec<Option<Candidate>> = stream::iter(wanted)
            .map(|referrer| async move {
                match self.bundle_referrer(repo, &referrer).await {
                    Ok(candidate) => Ok(candidate),
                    Err(e) => or_rejected(format, &referrer.digest, Err(e)).map(Some),
                }
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Found {
            revision,
            candidates: found.into_iter().flatten().collect(),
        })
    }

    async fn legacy_revision_of(
        &self,
        stored: Stored,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<String, RegistryError> {
        match self.resolve(&repo.at_tag(&stored.tag(digest))).await {
            Ok(d) => Ok(d.to_string()),
            Err(RegistryError::NotFound) => Ok(ABSENT.into()),
            Err(e) => Err(e),
        }
    }

    async fn bundle_revision_of(&self, repo: &ImageRef, digest: &Digest) -> Result<String, RegistryError> {
        match self.referrers(repo, digest).await {
            Ok(referrers) => Ok(referrers_revision(&referrers)),
            Err(FetchError::Registry(e)) => Err(e),
            Err(FetchError::Rejected(reason)) => Ok(reason),
        }
    }
}

/// The referrer digests, sorted: what changes when a bundle is added or removed.
fn referrers_revision(referrers: &[Descriptor]) -> String {
    let mut digests: Vec<&str> = referrers.iter().map(|d| d.digest.as_str()).collect();
    if digests.is_empty() {
        return ABSENT.into();
    }
    digests.sort_unstable();
    digests.join(",")
}

/// Skips referrers whose index entry says they are bundles of another predicate type
/// (attestations), so their manifests are never downloaded. Everything else is looked at, as
/// cosign does: registries do not agree on `artifactType` (go-containerregistry reports the
/// config media type), so it cannot be trusted to say what is a signature.
fn may_be_image_signature(referrer: &Descriptor) -> bool {
    let bundle = referrer
        .artifact_type
        .as_deref()
        .is_some_and(is_bundle_media_type);
    let predicate = referrer.annotation(BUNDLE_PREDICATE_ANNOTATION);
    !(bundle || predicate.is_some()) || predicate.is_none_or(|p| p == COSIGN_SIGN_PREDICATE)
}

/// The converse for attestations: skips referrers whose index entry says they are image
/// signatures; looks at everything else.
fn may_be_attestation(referrer: &Descriptor) -> bool {
    referrer.annotation(BUNDLE_PREDICATE_ANNOTATION) != Some(COSIGN_SIGN_PREDICATE)
}

impl RegistryClient {
    async fn legacy_layer(
        &self,
        stored: Stored,
        repo: &ImageRef,
        layer: Descriptor,
    ) -> Result<Candidate, FetchError> {
        // An attestation layer is a signed DSSE envelope; its signature annotation (cosign
        // writes an empty one) means nothing.
        let annotation = layer.annotation(SIGNATURE_ANNOTATION).map(str::to_string);
        let Some(signature) = annotation.or_else(|| (stored == Stored::Attestations).then(String::new))
        else {
            return Err(FetchError::Rejected(format!(
                "layer has no {SIGNATURE_ANNOTATION} annotation"
            )));
        };
        let evidence = Evidence::from_annotations(|key| layer.annotation(key));
        let payload = self.blob(repo, &layer).await?;
        Ok(Candidate::Legacy {
            layer: layer.digest,
            payload,
            signature,
            evidence,
        })
    }

    /// The bundle of a referrer; `None` for referrers that are not bundles at all, which cosign
    /// skips silently too (they are other artifacts, not broken signatures).
    async fn bundle_referrer(
        &self,
        repo: &ImageRef,
        referrer: &Descriptor,
    ) -> Result<Option<Candidate>, FetchError> {
        let bytes = self.manifest_at(repo, referrer).await?;
        let manifest = Manifest::parse(&bytes).map_err(|e| FetchError::Rejected(e.to_string()))?;
        let Some(layer) = bundle_layer(&manifest) else {
            return Ok(None);
        };
        let bundle = self.blob(repo, layer).await?;
        Ok(Some(Candidate::Bundle {
            manifest: referrer.digest.clone(),
            bundle,
        }))
    }
}
