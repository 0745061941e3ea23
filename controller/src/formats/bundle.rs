//! Sigstore bundles (v0.3) as cosign v3 stores them: an OCI referrer manifest with one layer.

use serde::{Deserialize, Serialize};

use super::{
    FormatError,
    dsse::{Envelope, Statement},
    oci::{Descriptor, EMPTY_JSON, Manifest, OCI_EMPTY, OCI_MANIFEST},
};
use crate::reference::Digest;

pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Older spelling cosign still reads (`;version=0.3`); earlier versions than 0.3 are refused.
pub const BUNDLE_V03_LEGACY: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";

/// Whether a layer's media type is a bundle cosign would read.
pub fn is_bundle_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

/// A bundle reduced to what key-based verification reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
    /// Blob signatures (`cosign sign-blob`): present means this is not an image signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyHint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    #[serde(default)]
    pub hint: String,
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let b: Self = serde_json::from_slice(bytes).map_err(|e| FormatError::json("bundle", e))?;
        if b.media_type != BUNDLE_V03 && b.media_type != BUNDLE_V03_LEGACY {
            return Err(FormatError::invalid(
                "bundle",
                format!("media type {:?} (need v0.3)", b.media_type),
            ));
        }
        Ok(b)
    }

    /// The DSSE envelope of an image signature bundle.
    pub fn envelope(&self) -> Result<&Envelope, FormatError> {
        self.dsse_envelope
            .as_ref()
            .ok_or_else(|| FormatError::invalid("bundle", "no DSSE envelope (a blob signature?)"))
    }

    /// A key-based bundle around a signed envelope, as `cosign sign --key` writes it.
    pub fn for_key(hint: String, envelope: Envelope) -> Self {
        Self {
            media_type: BUNDLE_V03.to_string(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyHint { hint }),
                certificate: None,
                tlog_entries: Vec::new(),
            },
            dsse_envelope: Some(envelope),
            message_signature: None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The referrer manifest cosign v3 pushes for a bundle: empty config, the bundle as its only
/// layer, `subject` pointing at the signed image.
pub fn referrer_manifest(
    bundle: &[u8],
    subject: Descriptor,
    predicate_type: &str,
    created: &str,
) -> Manifest {
    let mut config = Descriptor::of(OCI_EMPTY, EMPTY_JSON);
    config.artifact_type = Some(BUNDLE_V03.to_string());
    Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_string(),
        config,
        layers: vec![Descriptor::of(BUNDLE_V03, bundle)],
        annotations: Some(
            [
                (
                    "dev.sigstore.bundle.content".to_string(),
                    "dsse-envelope".to_string(),
                ),
                (
                    "dev.sigstore.bundle.predicateType".to_string(),
                    predicate_type.to_string(),
                ),
                (
                    "org.opencontainers.image.created".to_string(),
                    created.to_string(),
                ),
            ]
            .into(),
        ),
        subject: Some(subject),
        artifact_type: Some(BUNDLE_V03.to_string()),
    }
}

/// The bundle layer of a referrer manifest, if it is one cosign would read: exactly one layer
/// with a bundle media type.
pub fn bundle_layer(manifest: &Manifest) -> Option<&Descriptor> {
    match manifest.layers.as_slice() {
        [layer] if is_bundle_media_type(&layer.media_type) => Some(layer),
        _ => None,
    }
}

/// A parsed bundle whose statement names `digest`; the checks that need no key.
pub fn statement_for(bundle: &Bundle, digest: &Digest) -> Result<(Vec<u8>, Statement), FormatError> {
    let envelope = bundle.envelope()?;
    let payload = envelope.payload_bytes()?;
    let statement = Statement::parse(&payload)?;
    if !statement.names_digest(digest) {
        return Err(FormatError::invalid(
            "bundle",
            format!(
                "statement subject {} is not the image digest {digest}",
                statement.subject_digests().join(", ")
            ),
        ));
    }
    Ok((payload, statement))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cosign_v3_key_bundle() {
        // Shape of what cosign v3.1 writes with --key (protojson, whitespace as it comes).
        let json = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial":{"publicKey":{"hint":"abc="}}, "dsseEnvelope":{"payload":"e30=", "payloadType":"application/vnd.in-toto+json", "signatures":[{"sig":"AA=="}]}}"#;
        let b = Bundle::parse(json.as_bytes()).unwrap();
        assert_eq!(b.verification_material.public_key.unwrap().hint, "abc=");
        assert!(b.dsse_envelope.is_some());
    }

    #[test]
    fn old_bundle_versions_are_refused() {
        let json = r#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1","verificationMaterial":{}}"#;
        assert!(Bundle::parse(json.as_bytes()).is_err());
    }

    #[test]
    fn subject_must_name_the_image() {
        let d = Digest::of(b"img");
        let statement = Statement::cosign_signature(&Digest::of(b"other"));
        let envelope = Envelope {
            payload: super::super::encode_base64(&statement.to_bytes()),
            payload_type: super::super::dsse::IN_TOTO_PAYLOAD_TYPE.into(),
            signatures: vec![],
        };
        let b = Bundle::for_key(String::new(), envelope);
        let err = statement_for(&b, &d).unwrap_err().to_string();
        assert!(err.contains("is not the image digest"), "{err}");
    }
}
