//! The verification engine: given an image and a key set, is it signed?
//!
//! Two halves. [`fetch_signatures`] finds signatures in a registry (cosign v2 `.sig` tags and cosign v3
//! bundle referrers), behind the small [`SignatureSource`] trait. [`evaluate`] is pure: it checks
//! every signature against the keys and decides the [`Outcome`]. The controller, the CLI and the
//! benchmarks all go through [`verify_image`].

mod attest;
mod cache;
mod evaluate;
mod fetch;
mod predicate;
mod result;

pub use attest::{AttestationCheck, AttestationState, Requirement, check_attestations};
pub use cache::{SignatureCache, Signatures};
pub use evaluate::{KeySet, NamedIdentity, NamedKey, check_all, decide, evaluate};
pub use fetch::{ABSENT, Attestations, Candidate, Fetched, Found, SignatureSource, fetch_signatures};
pub use predicate::{MAX_POLICY, PolicyError, PredicatePolicy};
pub use result::{Outcome, SignatureCheck, SignatureFormat, Verification, cause};

use crate::reference::{Digest, ImageRef};

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

/// The answer of [`verify_attestations`]: each required predicate type, and its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationVerification {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    pub attestations: Vec<AttestationCheck>,
}

/// Verifies the attestations of `image` (a digest reference, or a tag resolved first) against
/// `requirements`, signed by `policy.keys`. `source` reads attestations ([`Attestations`]).
pub async fn verify_attestations<S: SignatureSource>(
    source: &S,
    image: &ImageRef,
    policy: &Policy,
    requirements: &[Requirement],
) -> AttestationVerification {
    let error = |reason: String| {
        let state = AttestationState::Error { reason };
        requirements
            .iter()
            .map(|r| AttestationCheck {
                predicate_type: r.predicate_type.clone(),
                state: state.clone(),
            })
            .collect()
    };
    let digest = match image.digest() {
        Some(d) => d,
        None => match source.resolve(image).await {
            Ok(d) => d,
            Err(e) => {
                let v = Verification::unresolved(image, e);
                let reason = match v.outcome {
                    Outcome::Error { reason, .. } => reason,
                    other => other.name().to_string(),
                };
                return AttestationVerification {
                    image: image.to_string(),
                    digest: None,
                    attestations: error(reason),
                };
            }
        },
    };
    let repo = policy
        .signature_repository
        .clone()
        .unwrap_or_else(|| image.clone());
    let fetched = fetch_signatures(source, &repo, &digest).await;
    let attestations = check_attestations(&digest, &fetched, &policy.keys, requirements, |_| None);
    AttestationVerification {
        image: image.to_string(),
        digest: Some(digest),
        attestations,
    }
}
