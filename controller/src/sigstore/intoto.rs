//! The Rekor v1 entry of a cosign v2 `.att` layer (its `dev.sigstore.cosign/bundle` annotation).
//!
//! cosign v2 `attest` logs the envelope as an `intoto` 0.0.1 entry (`pkg/cosign/tlog.go`:
//! `intotoEntry`). The body Rekor keeps and signs is not the envelope but its SHA-256, its
//! payload's SHA-256 and the signer's public key or certificate, PEM (rekor
//! `pkg/types/intoto/v0.0.1`: `Canonicalize`). cosign v2 verifies it (`pkg/cosign/verify.go`:
//! `VerifyBundle`) by the SET, the log's signature over the body, integrated time, index and log
//! ID under a log it trusts, then the body against the layer: the envelope hash against the
//! layer's bytes, the key against the verifier's key or the certificate. The same here, and the
//! payload hash too when the body has one (Rekor has written it since v1.1; older entries lack it).
//!
//! sigstore-verify checks SETs only inside `Verifier::verify`, for the entry kinds a Sigstore
//! bundle may carry, which intoto 0.0.1 is not (sigstore-types' `KindVersion`), and its
//! `verify_set` is not public in 0.15. So these are its steps with the same crates: the trusted
//! root's Rekor keyring (the log by its ID, valid at the integrated time), RFC 8785 canonical
//! JSON (serde_json_canonicalizer), the key's verification (sigstore-crypto). No cryptography of
//! our own.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sigstore_types::{Sha256Hash, SignatureBytes};

use super::{Failure, SigstoreError, TrustedRoot, legacy::RekorBundle};

/// What the entry must name as the signer (its `publicKey`), DER.
#[derive(Debug, Clone, Copy)]
pub(super) enum LoggedSigner<'a> {
    /// A SubjectPublicKeyInfo: a key-signed attestation.
    Key(&'a [u8]),
    /// The Fulcio leaf certificate: a keyless one.
    Certificate(&'a [u8]),
}

/// What the entry must be about: the layer's bytes and the envelope's payload, decoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Logged<'a> {
    pub envelope: &'a [u8],
    pub payload: &'a [u8],
    pub signer: LoggedSigner<'a>,
}

fn untrusted(detail: impl Into<String>) -> SigstoreError {
    SigstoreError::verification(Failure::UntrustedLog, detail)
}

impl TrustedRoot {
    /// Verifies the `.att` entry `json` (cosign's annotation) against this root's logs and
    /// `logged`: its integrated time, which the log's signature vouches for.
    pub(super) fn verify_attestation_entry(
        &self,
        json: &str,
        logged: &Logged<'_>,
    ) -> Result<Timestamp, SigstoreError> {
        let rekor = RekorBundle::parse(json)?;
        let time = self.verify_set(&rekor)?;
        let body = B64
            .decode(&rekor.payload.body)
            .map_err(|e| untrusted(format!("the log entry's body: {e}")))?;
        IntotoBody::parse(&body)?.binds(logged)?;
        Ok(time)
    }

    /// The SET of `rekor` under the log of this root that its log ID names, valid at its
    /// integrated time (as sigstore-verify's `verify_set`); that time.
    fn verify_set(&self, rekor: &RekorBundle) -> Result<Timestamp, SigstoreError> {
        let payload = &rekor.payload;
        let time = Timestamp::from_second(payload.integrated_time)
            .map_err(|e| untrusted(format!("integrated time {}: {e}", payload.integrated_time)))?;
        if time > Timestamp::now() {
            return Err(untrusted(format!("integrated time {time} is in the future")));
        }
        let log_id = Sha256Hash::from_hex(&payload.log_id)
            .map_err(|e| untrusted(format!("log ID {:?}: {e}", payload.log_id)))?;
        let keyring = self
            .root
            .rekor_keys()
            .map_err(|e| untrusted(format!("the trusted root's logs: {e}")))?;
        let key = keyring.key_at(&log_id, time).ok_or_else(|| {
            untrusted(format!(
                "no log of the trusted root has ID {} (valid at {time})",
                payload.log_id
            ))
        })?;
        let signed = serde_json_canonicalizer::to_vec(payload)
            .map_err(|e| untrusted(format!("canonical SET payload: {e}")))?;
        let set = B64
            .decode(&rekor.signed_entry_timestamp)
            .map_err(|e| untrusted(format!("SET: {e}")))?;
        key.verify(&signed, &SignatureBytes::new(set)).map_err(|e| {
            untrusted(format!(
                "the SET does not verify under log {}: {e}",
                payload.log_id
            ))
        })?;
        Ok(time)
    }
}

/// An `intoto` 0.0.1 entry's canonical body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntotoBody {
    kind: String,
    api_version: String,
    spec: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    content: Content,
    /// Base64 of the signer's PEM (a public key or a certificate).
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    /// Of the envelope, as uploaded: the layer's bytes.
    hash: Hash,
    /// Of the envelope's payload, decoded.
    payload_hash: Option<Hash>,
}

#[derive(Debug, Deserialize)]
struct Hash {
    algorithm: String,
    value: String,
}

impl Hash {
    /// Whether this names the SHA-256 of `bytes`.
    fn is_sha256_of(&self, bytes: &[u8]) -> bool {
        self.algorithm == "sha256"
            && self
                .value
                .eq_ignore_ascii_case(&hex::encode(Sha256::digest(bytes)))
    }
}

impl IntotoBody {
    fn parse(body: &[u8]) -> Result<Spec, SigstoreError> {
        let body: Self =
            serde_json::from_slice(body).map_err(|e| untrusted(format!("the log entry's body: {e}")))?;
        if (body.kind.as_str(), body.api_version.as_str()) != ("intoto", "0.0.1") {
            return Err(untrusted(format!(
                "the log entry is {} {}, not the intoto 0.0.1 entry cosign v2 logs an attestation as",
                body.kind, body.api_version
            )));
        }
        serde_json::from_value(body.spec).map_err(|e| untrusted(format!("the intoto entry's spec: {e}")))
    }
}

impl Spec {
    /// The entry is about this envelope, this payload and this signer (cosign v2 checks the
    /// first and the last: `bundleHash`, `comparePublicKey`).
    fn binds(&self, logged: &Logged<'_>) -> Result<(), SigstoreError> {
        let content = &self.content;
        if !content.hash.is_sha256_of(logged.envelope) {
            return Err(untrusted(format!(
                "the log entry is for another envelope ({} {})",
                content.hash.algorithm, content.hash.value
            )));
        }
        if let Some(hash) = &content.payload_hash
            && !hash.is_sha256_of(logged.payload)
        {
            return Err(untrusted(format!(
                "the log entry is for another payload ({} {})",
                hash.algorithm, hash.value
            )));
        }
        let (label, expected) = match logged.signer {
            LoggedSigner::Key(der) => ("PUBLIC KEY", der),
            LoggedSigner::Certificate(der) => ("CERTIFICATE", der),
        };
        let pem = B64
            .decode(&self.public_key)
            .map_err(|e| untrusted(format!("the log entry's public key: {e}")))?;
        match x509_cert::der::pem::decode_vec(&pem) {
            Ok((found, der)) if found == label && der == expected => Ok(()),
            Ok(_) => Err(untrusted(format!(
                "the log entry names another signer than the attestation's {}",
                label.to_lowercase()
            ))),
            Err(e) => Err(untrusted(format!("the log entry's public key: {e}"))),
        }
    }
}

#[cfg(test)]
#[path = "intoto_tests.rs"]
mod tests;
