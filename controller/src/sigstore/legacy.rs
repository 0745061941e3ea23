//! cosign v2's `.sig` signatures as Sigstore bundles, so that one verifier checks both layouts.
//!
//! A keyless `.sig` layer carries what a bundle does, as annotations: the Fulcio certificate and
//! its chain (PEM), the Rekor v1 entry with its SET (`dev.sigstore.cosign/bundle`) and the RFC
//! 3161 timestamp over the signature (`dev.sigstore.cosign/rfc3161timestamp`). The artifact is
//! the simple-signing payload, signed as a message (its SHA-256 is the bundle's message digest).
//! A bundle with a SET and no inclusion proof is a v0.1 bundle; one without a log entry is v0.3
//! (one certificate, the chain coming from the trusted root).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sigstore_types::Bundle;

use super::{Failure, SigstoreError};
use crate::admission::certs::der_chain;

/// One `.sig` layer: its payload and annotations.
#[derive(Debug, Clone, Copy)]
pub struct LegacySignature<'a> {
    pub payload: &'a [u8],
    /// Base64, as the `dev.cosignproject.cosign/signature` annotation.
    pub signature: &'a str,
    /// PEM leaf (`dev.sigstore.cosign/certificate`); `None` for a key-based signature.
    pub certificate: Option<&'a str>,
    /// PEM intermediates and root (`dev.sigstore.cosign/chain`).
    pub chain: Option<&'a str>,
    /// The Rekor v1 entry and SET, JSON (`dev.sigstore.cosign/bundle`).
    pub rekor_bundle: Option<&'a str>,
    /// `{"SignedRFC3161Timestamp": "<base64 DER>"}` (`dev.sigstore.cosign/rfc3161timestamp`).
    pub timestamp: Option<&'a str>,
}

/// cosign's `dev.sigstore.cosign/bundle` annotation: a Rekor v1 entry and its SET.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RekorBundle {
    /// Base64 signature of the log over the canonical JSON of `payload`.
    pub signed_entry_timestamp: String,
    pub payload: RekorPayload,
}

/// What the SET signs, field for field (its canonical JSON).
#[derive(Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RekorPayload {
    /// Base64 of the entry's canonical body.
    pub body: String,
    pub integrated_time: i64,
    pub log_index: i64,
    /// Hex SHA-256 of the log's public key.
    #[serde(rename = "logID")]
    pub log_id: String,
}

impl RekorBundle {
    /// Parses cosign's annotation.
    pub(super) fn parse(json: &str) -> Result<Self, SigstoreError> {
        serde_json::from_str(json).map_err(|e| malformed("bundle", e))
    }
}

#[derive(Deserialize)]
struct Timestamp {
    #[serde(rename = "SignedRFC3161Timestamp")]
    signed: String,
}

fn malformed(what: &str, detail: impl std::fmt::Display) -> SigstoreError {
    SigstoreError::Bundle(format!("{what} annotation: {detail}"))
}

impl LegacySignature<'_> {
    /// The bundle these annotations amount to.
    pub fn to_bundle(&self) -> Result<Bundle, SigstoreError> {
        let tlog_entries = match self.rekor_bundle {
            Some(json) => vec![tlog_entry(json)?],
            None => Vec::new(),
        };
        let timestamps = match self.timestamp {
            Some(json) => vec![json!({"signedTimestamp": signed_timestamp(json)?})],
            None => Vec::new(),
        };
        let (media_type, key_material) = self.key_material(!tlog_entries.is_empty())?;
        let mut material = json!({
            "tlogEntries": tlog_entries,
            "timestampVerificationData": {"rfc3161Timestamps": timestamps},
        });
        material[key_material.0] = key_material.1;
        let bundle = json!({
            "mediaType": media_type,
            "verificationMaterial": material,
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(self.payload))},
                "signature": self.signature,
            },
        });
        serde_json::from_value(bundle).map_err(|e| SigstoreError::Bundle(e.to_string()))
    }

    /// The media type and the key material: the certificate (v0.3, or the whole chain in a v0.1
    /// bundle with a SET), or a public key hint.
    fn key_material(&self, logged: bool) -> Result<(&'static str, (&'static str, Value)), SigstoreError> {
        const V01: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
        const V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let media_type = if logged { V01 } else { V03 };
        let Some(leaf) = self.certificate else {
            return Ok((media_type, ("publicKey", json!({"hint": ""}))));
        };
        let mut certificates = vec![leaf_der(leaf)?];
        if !logged {
            let leaf = json!({"rawBytes": B64.encode(&certificates[0])});
            return Ok((V03, ("certificate", leaf)));
        }
        if let Some(chain) = self.chain {
            certificates.extend(der_chain(chain).map_err(|e| malformed("chain", e))?);
        }
        let certificates: Vec<Value> = certificates
            .iter()
            .map(|c| json!({"rawBytes": B64.encode(c)}))
            .collect();
        Ok((
            V01,
            ("x509CertificateChain", json!({"certificates": certificates})),
        ))
    }
}

/// The base64 DER token of cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation.
pub(super) fn signed_timestamp(json: &str) -> Result<String, SigstoreError> {
    let t: Timestamp = serde_json::from_str(json).map_err(|e| malformed("rfc3161timestamp", e))?;
    Ok(t.signed)
}

/// The one certificate of cosign's `dev.sigstore.cosign/certificate` annotation, DER.
pub(super) fn leaf_der(pem: &str) -> Result<Vec<u8>, SigstoreError> {
    let mut certificates = der_chain(pem).map_err(|e| malformed("certificate", e))?;
    match certificates.len() {
        1 => Ok(certificates.remove(0)),
        0 => Err(malformed("certificate", "holds no certificate")),
        _ => Err(malformed("certificate", "holds more than one certificate")),
    }
}

/// The bundle's log entry from cosign's annotation: the body names its kind and version.
fn tlog_entry(json: &str) -> Result<Value, SigstoreError> {
    let rekor = RekorBundle::parse(json)?;
    let body = B64
        .decode(&rekor.payload.body)
        .map_err(|e| malformed("bundle", format!("body: {e}")))?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        kind: String,
        api_version: String,
    }
    let kind: Kind = serde_json::from_slice(&body).map_err(|e| malformed("bundle", format!("body: {e}")))?;
    let log_id = hex::decode(&rekor.payload.log_id).map_err(|e| {
        SigstoreError::verification(
            Failure::UntrustedLog,
            format!("log ID {:?}: {e}", rekor.payload.log_id),
        )
    })?;
    Ok(json!({
        "logIndex": rekor.payload.log_index.to_string(),
        "logId": {"keyId": B64.encode(log_id)},
        "kindVersion": {"kind": kind.kind, "version": kind.api_version},
        "integratedTime": rekor.payload.integrated_time.to_string(),
        "inclusionPromise": {"signedEntryTimestamp": rekor.signed_entry_timestamp},
        "canonicalizedBody": rekor.payload.body,
    }))
}
