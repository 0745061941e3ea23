//! Writing attestations the way `cosign attest --key` does: an in-toto statement about the
//! image digest, signed in a DSSE envelope, appended to the `sha256-<hex>.att` image (cosign v2)
//! or pushed as a Sigstore bundle referrer (cosign v3).

use super::{
    SignError, Signed,
    bundle::{push_bundle, signed_envelope},
    legacy::{append_layer, existing_signatures},
};
use crate::{
    formats::{
        attestation::{DSSE_LAYER, PREDICATE_TYPE_ANNOTATION, legacy_statement},
        bundle::Bundle,
        dsse::{STATEMENT_V1, Statement, Subject},
        simple_signing::SIGNATURE_ANNOTATION,
    },
    keys::SigningKey,
    reference::ImageRef,
    registry::RegistryClient,
};

/// What to attest and where the attestation goes.
pub struct AttestRequest<'a> {
    pub image: &'a ImageRef,
    pub key: &'a SigningKey,
    /// The full predicate type URI.
    pub predicate_type: String,
    pub predicate: serde_json::Value,
    /// cosign's `COSIGN_REPOSITORY`.
    pub signature_repository: Option<ImageRef>,
}

impl AttestRequest<'_> {
    fn repo(&self) -> &ImageRef {
        self.signature_repository.as_ref().unwrap_or(self.image)
    }
}

/// Appends an attestation layer to the image's `.att` tag, as `cosign attest` v2 does.
pub async fn attest_legacy(
    client: &RegistryClient,
    request: &AttestRequest<'_>,
) -> Result<Signed, SignError> {
    let image = request.image;
    let digest = super::resolve(client, image).await?;
    let statement = legacy_statement(
        &image.repository_name(),
        &digest,
        &request.predicate_type,
        &request.predicate,
    );
    let envelope = serde_json::to_vec(&signed_envelope(request.key, &statement)).unwrap_or_default();
    let repo = request.repo();
    let tag = repo.at_tag(&digest.attestation_tag());
    let manifest = existing_signatures(client, &tag).await?;
    // cosign writes the signature annotation on attestation layers too, empty: the envelope
    // carries the signature.
    let annotations = [
        (SIGNATURE_ANNOTATION.to_string(), String::new()),
        (
            PREDICATE_TYPE_ANNOTATION.to_string(),
            request.predicate_type.clone(),
        ),
    ]
    .into();
    append_layer(client, repo, &tag, manifest, DSSE_LAYER, &envelope, annotations).await?;
    Ok(Signed {
        image: image.to_string(),
        digest,
        signature: tag.to_string(),
        written: true,
    })
}

/// Pushes a Sigstore bundle carrying the signed statement as a referrer, as `cosign attest` v3.
pub async fn attest_bundle(
    client: &RegistryClient,
    request: &AttestRequest<'_>,
) -> Result<Signed, SignError> {
    let image = request.image;
    let digest = super::resolve(client, image).await?;
    let statement = Statement {
        kind: STATEMENT_V1.to_string(),
        subject: vec![Subject {
            name: image.repository_name(),
            digest: [("sha256".to_string(), digest.hex().to_string())].into(),
            annotations: None,
        }],
        predicate_type: request.predicate_type.clone(),
        predicate: request.predicate.clone(),
    };
    let envelope = signed_envelope(request.key, &statement.to_bytes());
    let bundle = Bundle::for_key(request.key.public_key().hint(), envelope).to_bytes();
    let at = push_bundle(
        client,
        request.repo(),
        image,
        &digest,
        &bundle,
        &request.predicate_type,
    )
    .await?;
    Ok(Signed {
        image: image.to_string(),
        digest,
        signature: at.to_string(),
        written: true,
    })
}
