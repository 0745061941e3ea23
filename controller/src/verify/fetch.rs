//! Finding signatures: the I/O half of verification.

use std::future::Future;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::SignatureFormat;
use crate::{
    formats::{
        bundle::{bundle_layer, is_bundle_media_type},
        dsse::COSIGN_SIGN_PREDICATE,
        oci::{DOCKER_MANIFEST, Descriptor, Manifest, OCI_MANIFEST},
        simple_signing::SIGNATURE_ANNOTATION,
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
    pub legacy: Result<Vec<Candidate>, RegistryError>,
    pub bundles: Result<Vec<Candidate>, RegistryError>,
}

/// Where signatures come from. The registry client implements it; unit tests use fixtures.
pub trait SignatureSource: Sync {
    /// The digest a tag points at.
    fn resolve(
        &self,
        image: &ImageRef,
    ) -> impl Future<Output = Result<Digest, RegistryError>> + Send;
    /// The layers of `sha256-<hex>.sig` in `repo`; empty when the tag does not exist.
    fn legacy_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Vec<Candidate>, RegistryError>> + Send;
    /// Sigstore bundles among the referrers of `digest` in `repo`.
    fn bundle_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Vec<Candidate>, RegistryError>> + Send;
}

/// Both formats, looked up at the same time.
pub async fn fetch_signatures<S: SignatureSource>(
    source: &S,
    repo: &ImageRef,
    digest: &Digest,
) -> Fetched {
    let (legacy, bundles) = tokio::join!(
        source.legacy_signatures(repo, digest),
        source.bundle_signatures(repo, digest)
    );
    Fetched { legacy, bundles }
}

fn rejected(
    format: SignatureFormat,
    source: impl Into<String>,
    reason: impl Into<String>,
) -> Candidate {
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

impl SignatureSource for RegistryClient {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        RegistryClient::resolve(self, image).await
    }

    async fn legacy_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<Candidate>, RegistryError> {
        let format = SignatureFormat::Legacy;
        let tag = digest.signature_tag();
        let manifest = match self
            .manifest(&repo.at_tag(&tag), &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
        {
            Ok((bytes, _)) => bytes,
            Err(FetchError::Registry(RegistryError::NotFound)) => return Ok(Vec::new()),
            Err(FetchError::Registry(e)) => return Err(e),
            Err(FetchError::Rejected(reason)) => return Ok(vec![rejected(format, tag, reason)]),
        };
        let manifest = match Manifest::parse(&manifest) {
            Ok(m) => m,
            Err(e) => return Ok(vec![rejected(format, tag, e.to_string())]),
        };
        let max = self.limits().max_signatures;
        if manifest.layers.len() > max {
            let reason = format!(
                "{} layers, more than the {max} accepted",
                manifest.layers.len()
            );
            return Ok(vec![rejected(format, tag, reason)]);
        }
        stream::iter(manifest.layers)
            .map(|layer| async move {
                or_rejected(
                    format,
                    &layer.digest.clone(),
                    self.legacy_layer(repo, layer).await,
                )
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn bundle_signatures(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<Candidate>, RegistryError> {
        let format = SignatureFormat::Bundle;
        let referrers = match self.referrers(repo, digest).await {
            Ok(r) => r,
            Err(FetchError::Registry(e)) => return Err(e),
            Err(FetchError::Rejected(reason)) => {
                return Ok(vec![rejected(format, digest.fallback_tag(), reason)]);
            }
        };
        let candidates: Vec<Descriptor> = referrers
            .into_iter()
            .filter(may_be_image_signature)
            .collect();
        let found: Vec<Option<Candidate>> = stream::iter(candidates)
            .map(|referrer| async move {
                match self.bundle_referrer(repo, &referrer).await {
                    Ok(None) => Ok(None),
                    Ok(Some(c)) => Ok(Some(c)),
                    Err(e) => or_rejected(format, &referrer.digest, Err(e)).map(Some),
                }
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
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
    let predicate = referrer.annotation("dev.sigstore.bundle.predicateType");
    !(bundle || predicate.is_some()) || predicate.is_none_or(|p| p == COSIGN_SIGN_PREDICATE)
}

impl RegistryClient {
    async fn legacy_layer(
        &self,
        repo: &ImageRef,
        layer: Descriptor,
    ) -> Result<Candidate, FetchError> {
        let Some(signature) = layer.annotation(SIGNATURE_ANNOTATION).map(str::to_string) else {
            return Err(FetchError::Rejected(format!(
                "layer has no {SIGNATURE_ANNOTATION} annotation"
            )));
        };
        let payload = self.blob(repo, &layer).await?;
        Ok(Candidate::Legacy {
            layer: layer.digest,
            payload,
            signature,
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
