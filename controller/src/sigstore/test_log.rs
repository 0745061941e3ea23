//! A transparency log of the tests' own: a key, a trusted root that lists it, and entries it
//! signs as Rekor v1 does (the SET over the canonical JSON of body, integrated time, index and
//! log ID), for the checks of cosign v2 `.att` log entries without a Rekor.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::TrustedRoot;
use crate::keys::SigningKey;

pub(crate) struct TestLog {
    key: SigningKey,
    /// A root that lists this log only.
    pub root: Arc<TrustedRoot>,
}

impl TestLog {
    pub fn new() -> Self {
        let key = SigningKey::generate();
        let spki = key.public_key().spki_der().to_vec();
        let root = json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "http://127.0.0.1:1",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(&spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"}
                },
                "logId": {"keyId": B64.encode(Sha256::digest(&spki))}
            }],
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        });
        let root =
            TrustedRoot::from_json("test log", root.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        Self {
            key,
            root: Arc::new(root),
        }
    }

    /// Hex SHA-256 of the log's key: its log ID.
    fn log_id(&self) -> String {
        hex::encode(Sha256::digest(self.key.public_key().spki_der()))
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation for an entry of `body`, integrated a
    /// minute ago, with its SET.
    pub fn entry(&self, body: &Value) -> String {
        let payload = json!({
            "body": B64.encode(body.to_string()),
            "integratedTime": jiff::Timestamp::now().as_second() - 60,
            "logIndex": 7,
            "logID": self.log_id(),
        });
        let canonical = serde_json_canonicalizer::to_vec(&payload).unwrap_or_else(|e| panic!("{e}"));
        json!({
            "SignedEntryTimestamp": B64.encode(self.key.sign(&canonical)),
            "Payload": payload,
        })
        .to_string()
    }
}

fn sha256(bytes: &[u8]) -> Value {
    json!({"algorithm": "sha256", "value": hex::encode(Sha256::digest(bytes))})
}

/// The dsse 0.0.1 body Rekor keeps for the envelope `envelope` of payload `payload` and one
/// signature `signature`, uploaded with `signer_pem` (a public key or a certificate), as cosign
/// v2 `attest` uploads it by default.
pub(crate) fn dsse_body(envelope: &[u8], payload: &[u8], signature: &[u8], signer_pem: &str) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": sha256(envelope),
            "payloadHash": sha256(payload),
            "signatures": [{"signature": B64.encode(signature), "verifier": B64.encode(signer_pem)}],
        },
    })
}

/// The intoto 0.0.1 body Rekor keeps for the same (`cosign attest --rekor-entry-type intoto`).
pub(crate) fn intoto_body(envelope: &[u8], payload: &[u8], signer_pem: &str) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "intoto",
        "spec": {
            "content": {"hash": sha256(envelope), "payloadHash": sha256(payload)},
            "publicKey": B64.encode(signer_pem),
        },
    })
}
