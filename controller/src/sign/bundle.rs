//! cosign v3's bundle referrer.

use super::{SignError, SignRequest, Signed};
use crate::{
    formats::{
        bundle::{BUNDLE_V03, Bundle, referrer_manifest},
        dsse::{COSIGN_SIGN_PREDICATE, Envelope, EnvelopeSignature, IN_TOTO_PAYLOAD_TYPE, Statement, pae},
        encode_base64,
        oci::{Descriptor, EMPTY_JSON, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST},
    },
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::RegistryClient,
};

/// Pushes a Sigstore bundle signing `request.image` as a referrer of its digest.
pub async fn sign_bundle(client: &RegistryClient, request: &SignRequest<'_>) -> Result<Signed, SignError> {
    let image = request.image;
    let digest = super::resolve(client, image).await?;
    let bundle = signed_bundle(request, &digest);
    let at = push_bundle(
        client,
        request.signature_repo(),
        image,
        &digest,
        &bundle,
        COSIGN_SIGN_PREDICATE,
    )
    .await?;
    Ok(Signed {
        image: image.to_string(),
        digest,
        signature: at.to_string(),
        written: true,
    })
}

/// Pushes `bundle` (about `predicate_type`) as a referrer of `digest` into `repo`, listed in
/// the fallback index where the registry has no referrers API; returns where it went.
pub(super) async fn push_bundle(
    client: &RegistryClient,
    repo: &ImageRef,
    image: &ImageRef,
    digest: &Digest,
    bundle: &[u8],
    predicate_type: &str,
) -> Result<ImageRef, SignError> {
    let subject = subject_descriptor(client, image, digest).await?;
    let push_blob = |bytes: &[u8]| {
        let bytes = bytes.to_vec();
        async move {
            client
                .push_blob(repo, &bytes)
                .await
                .map_err(|e| SignError::registry(repo, e))
        }
    };
    push_blob(EMPTY_JSON).await?;
    push_blob(bundle).await?;
    let created = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let manifest = referrer_manifest(bundle, subject, predicate_type, &created.to_string());
    let manifest_bytes = manifest.to_bytes();
    let manifest_digest = Digest::of(&manifest_bytes);
    let at = repo.at_digest(&manifest_digest);
    client
        .push_manifest(&at, &manifest_bytes, OCI_MANIFEST)
        .await
        .map_err(|e| SignError::registry(&at, e))?;
    let referrer = Descriptor {
        artifact_type: Some(BUNDLE_V03.to_string()),
        ..Descriptor::of(OCI_MANIFEST, &manifest_bytes)
    };
    ensure_listed(client, repo, digest, referrer).await?;
    Ok(at)
}

/// The statement, signed over its DSSE PAE, in a bundle that hints at the key.
fn signed_bundle(request: &SignRequest<'_>, digest: &Digest) -> Vec<u8> {
    let mut statement = Statement::cosign_signature(digest);
    if let Some(subject) = statement.subject.first_mut() {
        subject.annotations = Some(
            request
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
    }
    let envelope = signed_envelope(request.key, &statement.to_bytes());
    Bundle::for_key(request.key.public_key().hint(), envelope).to_bytes()
}

/// An in-toto statement in a DSSE envelope, signed over its PAE with `key`.
pub fn signed_envelope(key: &SigningKey, statement: &[u8]) -> Envelope {
    let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, statement));
    Envelope {
        payload: encode_base64(statement),
        payload_type: IN_TOTO_PAYLOAD_TYPE.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: String::new(),
            sig: encode_base64(&signature),
        }],
    }
}

/// `{mediaType, size, digest}` of the signed manifest, for the referrer's `subject`.
async fn subject_descriptor(
    client: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
) -> Result<Descriptor, SignError> {
    let at = image.at_digest(digest);
    let (bytes, _) = client
        .manifest(&at, MANIFEST_TYPES)
        .await
        .map_err(|e| SignError::registry(&at, e))?;
    Ok(Descriptor::of(&manifest_media_type(&bytes), &bytes))
}

/// A manifest's media type: its `mediaType` field, or what its shape says (OCI allows leaving
/// the field out).
fn manifest_media_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(m), ..
        }) if !m.is_empty() => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    }
}

/// Registries with the referrers API list the new manifest by themselves. On the others, do
/// what go-containerregistry does for cosign: add it to the `sha256-<hex>` fallback index.
async fn ensure_listed(
    client: &RegistryClient,
    repo: &ImageRef,
    digest: &Digest,
    referrer: Descriptor,
) -> Result<(), SignError> {
    let listed = client
        .referrers(repo, digest)
        .await
        .map_err(|e| SignError::registry(repo, e))?;
    if listed.iter().any(|d| d.digest == referrer.digest) {
        return Ok(());
    }
    let mut index = client
        .fallback_referrers(repo, digest)
        .await
        .map_err(|e| SignError::registry(repo, e))?;
    index.manifests.push(referrer);
    index.manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
    index.manifests.dedup_by(|a, b| a.digest == b.digest);
    let tag = repo.at_tag(&digest.fallback_tag());
    client
        .push_manifest(&tag, &index.to_bytes(), OCI_INDEX)
        .await
        .map_err(|e| SignError::registry(&tag, e))?;
    Ok(())
}
