//! OCI image manifests and indexes, as far as signatures need them.
//!
//! Our own small types rather than oci-client's: the field order matches Go's structs so that
//! what we write is byte-identical to cosign, and parsing is strict about what it must see.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FormatError;
use crate::reference::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty JSON object `{}` that OCI artifacts use as their config blob.
pub const EMPTY_JSON: &[u8] = b"{}";

/// Every manifest media type we accept when fetching an image or a signature image.
pub const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/// A content descriptor, fields in the order of Go's `v1.Descriptor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: i64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            size: bytes.len() as i64,
            digest: Digest::of(bytes).to_string(),
            annotations: None,
            artifact_type: None,
        }
    }

    /// The descriptor's digest, validated.
    pub fn digest(&self) -> Result<Digest, FormatError> {
        Digest::parse(&self.digest).map_err(|e| FormatError::invalid("descriptor digest", e.to_string()))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest, fields in the order of Go's `v1.Manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: i64,
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| FormatError::json("manifest", e))?;
        if m.schema_version != 2 {
            return Err(FormatError::invalid(
                "manifest",
                format!("schemaVersion {} (expected 2)", m.schema_version),
            ));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        super::go_json(self)
    }
}

/// An image index (also what the referrers API and the fallback tag return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: i64,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    pub fn empty() -> Self {
        Self {
            schema_version: 2,
            media_type: OCI_INDEX.to_string(),
            manifests: Vec::new(),
            annotations: None,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        serde_json::from_slice(bytes).map_err(|e| FormatError::json("image index", e))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        super::go_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields_in_go_order() {
        let mut d = Descriptor::of("text/plain", b"hi");
        d.annotations = Some(BTreeMap::from([
            ("b".into(), "<".into()),
            ("a".into(), "".into()),
        ]));
        let json = String::from_utf8(super::super::go_json(&d)).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"mediaType":"text/plain","size":2,"digest":"{}","annotations":{{"a":"","b":"\u003c"}}}}"#,
                Digest::of(b"hi")
            )
        );
    }

    #[test]
    fn manifest_rejects_garbage() {
        assert!(Manifest::parse(b"").is_err());
        assert!(Manifest::parse(b"[]").is_err());
        assert!(
            Manifest::parse(br#"{"schemaVersion":1,"config":{"mediaType":"a","size":1,"digest":"x"}}"#)
                .is_err()
        );
    }
}
