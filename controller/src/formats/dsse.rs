//! DSSE envelopes and in-toto statements: what a cosign v3 bundle signs.

use serde::{Deserialize, Serialize};

use super::{FormatError, decode_base64};
use crate::reference::Digest;

pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// The predicate type of the statement `cosign sign` (v3) signs; other predicate types are
/// attestations, not image signatures.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// A DSSE envelope (protojson field names; both field orders and an empty `keyid` are accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    #[serde(default)]
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    pub sig: String,
}

impl Envelope {
    pub fn payload_bytes(&self) -> Result<Vec<u8>, FormatError> {
        decode_base64("DSSE payload", &self.payload)
    }
}

/// The DSSE pre-authentication encoding: the bytes actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto statement, v0.1 or v1, reduced to what binding a signature to an image needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    #[serde(default)]
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType", default)]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub digest: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Statement {
    /// The statement `cosign sign` v3 signs for `digest`.
    pub fn cosign_signature(digest: &Digest) -> Self {
        Self {
            kind: STATEMENT_V1.to_string(),
            subject: vec![Subject {
                name: String::new(),
                digest: [("sha256".to_string(), digest.hex().to_string())].into(),
                annotations: Some(serde_json::Map::new()),
            }],
            predicate_type: COSIGN_SIGN_PREDICATE.to_string(),
            predicate: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let s: Self = serde_json::from_slice(bytes).map_err(|e| FormatError::json("in-toto statement", e))?;
        if s.kind != STATEMENT_V1 && s.kind != STATEMENT_V01 {
            return Err(FormatError::invalid(
                "in-toto statement",
                format!("_type {:?}", s.kind),
            ));
        }
        Ok(s)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether some subject names `digest`; cosign's IntotoSubjectClaimVerifier.
    pub fn names_digest(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").is_some_and(|h| h == digest.hex()))
    }

    /// The subject digests, for the reason shown when none matches.
    pub fn subject_digests(&self) -> Vec<String> {
        self.subject
            .iter()
            .filter_map(|s| s.digest.get("sha256").map(|h| format!("sha256:{h}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn statement_round_trip_and_binding() {
        let d = Digest::of(b"img");
        let s = Statement::parse(&Statement::cosign_signature(&d).to_bytes()).unwrap();
        assert!(s.names_digest(&d));
        assert!(!s.names_digest(&Digest::of(b"other")));
        assert_eq!(s.predicate_type, COSIGN_SIGN_PREDICATE);
    }

    #[test]
    fn envelope_accepts_empty_keyid_and_either_order() {
        let a: Envelope = serde_json::from_str(
            r#"{"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"","sig":"AA=="}]}"#,
        )
        .unwrap();
        let b: Envelope =
            serde_json::from_str(r#"{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"AA=="}]}"#)
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.payload_bytes().unwrap(), b"hi");
    }
}
