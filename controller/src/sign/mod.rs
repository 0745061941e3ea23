//! Writing signatures the way cosign does, so that both cosigns verify what we sign.
//!
//! - [`sign_legacy`]: cosign v2's form (also v3 with `--new-bundle-format=false`): a layer
//!   appended to the `sha256-<hex>.sig` image, byte-identical in layout to cosign's.
//! - [`sign_bundle`]: cosign v3's default: a Sigstore bundle v0.3 pushed as an OCI referrer, with
//!   the `sha256-<hex>` fallback index updated on registries without the referrers API.

mod attest;
mod bundle;
mod legacy;

use std::collections::BTreeMap;

pub use attest::{AttestRequest, attest_bundle, attest_legacy};
pub use bundle::{sign_bundle, signed_envelope};
pub use legacy::sign_legacy;

use crate::{
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::{FetchError, RegistryError},
};

/// What to sign and where the signature goes.
pub struct SignRequest<'a> {
    pub image: &'a ImageRef,
    pub key: &'a SigningKey,
    /// `-a key=value` annotations: in the payload's `optional` (legacy) or the statement
    /// subject's `annotations` (bundle).
    pub annotations: BTreeMap<String, String>,
    /// cosign's `COSIGN_REPOSITORY`.
    pub signature_repository: Option<ImageRef>,
}

impl SignRequest<'_> {
    fn signature_repo(&self) -> &ImageRef {
        self.signature_repository.as_ref().unwrap_or(self.image)
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    pub image: String,
    pub digest: Digest,
    /// Where the signature now lives (the `.sig` tag, or the referrer manifest by digest).
    pub signature: String,
    /// False when an identical signature by this key was already there (legacy only).
    pub written: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{image}: {error}")]
    Registry { image: String, error: RegistryError },
    #[error("{image}: {reason}")]
    Existing { image: String, reason: String },
}

/// The digest `image` points at: what gets signed or attested.
async fn resolve(client: &crate::registry::RegistryClient, image: &ImageRef) -> Result<Digest, SignError> {
    client
        .resolve(image)
        .await
        .map_err(|e| SignError::registry(image, e))
}

impl SignError {
    fn registry(image: &ImageRef, error: impl Into<FetchError>) -> Self {
        match error.into() {
            FetchError::Registry(error) => Self::Registry {
                image: image.to_string(),
                error,
            },
            FetchError::Rejected(reason) => Self::Existing {
                image: image.to_string(),
                reason,
            },
        }
    }
}
