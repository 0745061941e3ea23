//! cosign's "simple signing" payload: what a legacy (`.sig`) signature signs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FormatError;
use crate::reference::Digest;

pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The layer annotation holding the base64 signature (note the old `cosignproject` prefix).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Keyless: the Fulcio certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Keyless: the certificate's chain, intermediates then root (PEM).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The Rekor v1 entry and its SET (JSON), when the signature was logged.
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// An RFC 3161 timestamp over the signature (JSON), when one was asked for.
pub const TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// What a `.sig` layer carries besides the signature: a keyless signature's certificate and
/// chain, a log entry, a timestamp. All absent for a key-based signature made offline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evidence {
    pub certificate: Option<String>,
    pub chain: Option<String>,
    pub rekor_bundle: Option<String>,
    pub timestamp: Option<String>,
}

impl Evidence {
    /// Reads the annotations of a layer.
    pub fn from_annotations<'a>(annotation: impl Fn(&str) -> Option<&'a str>) -> Self {
        let get = |key: &str| annotation(key).map(str::to_string);
        Self {
            certificate: get(CERTIFICATE_ANNOTATION),
            chain: get(CHAIN_ANNOTATION),
            rekor_bundle: get(REKOR_BUNDLE_ANNOTATION),
            timestamp: get(TIMESTAMP_ANNOTATION),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl Payload {
    /// The payload cosign signs for `digest` in `repository` (`registry/repo`, no tag).
    pub fn new(repository: &str, digest: &Digest, annotations: &BTreeMap<String, String>) -> Self {
        let optional = (!annotations.is_empty()).then(|| {
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        });
        Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_string(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_string(),
                },
                kind: SIGNATURE_TYPE.to_string(),
            },
            optional,
        }
    }

    /// The exact bytes cosign would produce (Go `encoding/json`).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::go_json(self)
    }

    /// Parses a payload and checks it is a cosign image signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let p: Self =
            serde_json::from_slice(bytes).map_err(|e| FormatError::json("simple-signing payload", e))?;
        if p.critical.kind != SIGNATURE_TYPE {
            return Err(FormatError::invalid(
                "simple-signing payload",
                format!("type {:?}, expected {SIGNATURE_TYPE:?}", p.critical.kind),
            ));
        }
        Ok(p)
    }

    pub fn signed_digest(&self) -> &str {
        &self.critical.image.docker_manifest_digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_match_cosign() {
        let d = Digest::of(b"image");
        let p = Payload::new("127.0.0.1:5000/demo", &d, &BTreeMap::new());
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/demo"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(String::from_utf8(p.to_bytes()).unwrap(), expected);
        assert_eq!(Payload::parse(expected.as_bytes()).unwrap(), p);
    }

    #[test]
    fn annotations_are_sorted_and_html_escaped() {
        let d = Digest::of(b"image");
        let a = BTreeMap::from([("z".into(), "a&b".into()), ("a".into(), "1".into())]);
        let json = String::from_utf8(Payload::new("r/x", &d, &a).to_bytes()).unwrap();
        assert!(
            json.ends_with(r#""optional":{"a":"1","z":"a\u0026b"}}"#),
            "{json}"
        );
    }

    #[test]
    fn other_types_are_refused() {
        let json = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"d"},"type":"other"},"optional":null}"#;
        assert!(Payload::parse(json).is_err());
    }
}
