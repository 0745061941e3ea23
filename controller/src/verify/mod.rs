//! The verification engine: given an image and a key set, is it signed?
//!
//! Two halves. [`fetch_signatures`] finds signatures in a registry (cosign v2 `.sig` tags and cosign v3
//! bundle referrers), behind the small [`SignatureSource`] trait. [`evaluate`] is pure: it checks
//! every signature against the keys and decides the [`Outcome`]. The controller, the CLI and the
//! benchmarks all go through [`verify_image`].

mod cache;
mod evaluate;
mod fetch;
mod result;

pub use cache::{SignatureCache, Signatures};
pub use evaluate::{KeySet, NamedIdentity, NamedKey, check_all, decide, evaluate};
pub use fetch::{ABSENT, Candidate, Fetched, Found, SignatureSource, fetch_signatures};
pub use result::{Outcome, SignatureCheck, SignatureFormat, Verification};

use crate::reference::ImageRef;

/// Where to look and what to accept.
#[derive(Debug, Clone)]
pub struct Policy {
    pub keys: KeySet,
    /// cosign's `COSIGN_REPOSITORY`: signatures live in this repository instead of the image's.
    pub signature_repository: Option<ImageRef>,
}

/// Verifies `image` (a digest reference, or a tag resolved first) against `policy`.
pub async fn verify_image<S: SignatureSource>(source: &S, image: &ImageRef, policy: &Policy) -> Verification {
    let digest = match image.digest() {
        Some(d) => d,
        None => match source.resolve(image).await {
            Ok(d) => d,
            Err(e) => return Verification::unresolved(image, e),
        },
    };
    let signature_repo = policy
        .signature_repository
        .clone()
        .unwrap_or_else(|| image.clone());
    let fetched = fetch_signatures(source, &signature_repo, &digest).await;
    let (outcome, signatures) = evaluate(&digest, &fetched, &policy.keys);
    Verification {
        image: image.to_string(),
        digest: Some(digest),
        outcome,
        signatures,
    }
}
