//! The Rekor v1 entry of a cosign v2 `.att` layer (its `dev.sigstore.cosign/bundle` annotation).
//!
//! cosign v2 `attest` logs the envelope it attaches (the layer's bytes) as a `dsse` 0.0.1 entry,
//! or an `intoto` 0.0.1 one with `--rekor-entry-type intoto` (`cmd/cosign/cli/attest/attest.go`,
//! `pkg/cosign/tlog.go`: `dsseEntry`, `intotoEntry`). Rekor keeps and signs a body that is not
//! the envelope but what identifies it (rekor `pkg/types/{dsse,intoto}/v0.0.1`: `Canonicalize`):
//! the envelope's SHA-256, its payload's, and the signer, a public key or certificate (PEM) with,
//! for dsse, the signature it verified. cosign v2 verifies such an entry (`pkg/cosign/verify.go`:
//! `VerifyBundle`) by the SET, the log's signature over body, integrated time, index and log ID
//! under a log it trusts, then the body against the layer: the envelope hash against the layer's
//! bytes (`bundleHash`), the logged signer against the verifier's key or the certificate
//! (`comparePublicKey`, one signature only). The same here, and the payload hash and the logged
//! signature too when the body has them.
//!
//! sigstore-verify checks SETs only inside `Verifier::verify`, over a Sigstore bundle, whose
//! timestamps cover the signature where a `.att`'s covers the envelope, and whose entry kinds do
//! not include intoto 0.0.1 (sigstore-types' `KindVersion`); its `verify_set` is not public in
//! 0.15. So these are its steps with the same crates: the trusted root's Rekor keyring (the log by
//! its ID, valid at the integrated time), RFC 8785 canonical JSON (serde_json_canonicalizer), the
//! key's verification (sigstore-crypto). No cryptography of our own.

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

/// What the entry must be about: the layer's bytes, the envelope's payload and signatures,
/// decoded, and who signed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Logged<'a> {
    pub envelope: &'a [u8],
    pub payload: &'a [u8],
    pub signatures: &'a [Vec<u8>],
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
        Claims::parse(&body)?.bind(logged)?;
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

/// An entry's canonical body: its kind, version and spec.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    kind: String,
    api_version: String,
    spec: serde_json::Value,
}

/// The spec of an `intoto` 0.0.1 entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntotoSpec {
    content: IntotoContent,
    /// Base64 of the signer's PEM.
    public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntotoContent {
    hash: Hash,
    /// Absent from entries older than Rekor v1.1.
    payload_hash: Option<Hash>,
}

/// The spec of a `dsse` 0.0.1 entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseSpec {
    envelope_hash: Hash,
    payload_hash: Hash,
    signatures: Vec<DsseSignature>,
}

#[derive(Debug, Deserialize)]
struct DsseSignature {
    /// Base64, as in the envelope.
    signature: String,
    /// Base64 of the signer's PEM.
    verifier: String,
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

/// What an entry of either kind says of the attestation it logged.
#[derive(Debug)]
struct Claims {
    /// Of the envelope, as uploaded: the layer's bytes.
    envelope_hash: Hash,
    /// Of the envelope's payload, decoded.
    payload_hash: Option<Hash>,
    /// Base64 of the signer's PEM (a public key or a certificate).
    signer: String,
    /// The signature Rekor verified with it (dsse), base64.
    signature: Option<String>,
}

impl Claims {
    fn parse(body: &[u8]) -> Result<Self, SigstoreError> {
        let body: Body =
            serde_json::from_slice(body).map_err(|e| untrusted(format!("the log entry's body: {e}")))?;
        let spec = |e: serde_json::Error| untrusted(format!("the {} entry's spec: {e}", body.kind));
        match (body.kind.as_str(), body.api_version.as_str()) {
            ("dsse", "0.0.1") => {
                let spec: DsseSpec = serde_json::from_value(body.spec.clone()).map_err(spec)?;
                // cosign v2 reads the one signature's verifier (`bundleKey`).
                let [signature] = <[DsseSignature; 1]>::try_from(spec.signatures).map_err(|s| {
                    untrusted(format!("the dsse entry names {} signatures, not one", s.len()))
                })?;
                Ok(Self {
                    envelope_hash: spec.envelope_hash,
                    payload_hash: Some(spec.payload_hash),
                    signer: signature.verifier,
                    signature: Some(signature.signature),
                })
            }
            ("intoto", "0.0.1") => {
                let spec: IntotoSpec = serde_json::from_value(body.spec.clone()).map_err(spec)?;
                Ok(Self {
                    envelope_hash: spec.content.hash,
                    payload_hash: spec.content.payload_hash,
                    signer: spec.public_key,
                    signature: None,
                })
            }
            (kind, version) => Err(untrusted(format!(
                "the log entry is {kind} {version}, not a dsse or intoto 0.0.1 entry as cosign v2 logs \
                 an attestation"
            ))),
        }
    }

    /// The entry is about this envelope, payload, signature and signer.
    fn bind(&self, logged: &Logged<'_>) -> Result<(), SigstoreError> {
        if !self.envelope_hash.is_sha256_of(logged.envelope) {
            return Err(untrusted(format!(
                "the log entry is for another envelope ({} {})",
                self.envelope_hash.algorithm, self.envelope_hash.value
            )));
        }
        if let Some(hash) = &self.payload_hash
            && !hash.is_sha256_of(logged.payload)
        {
            return Err(untrusted(format!(
                "the log entry is for another payload ({} {})",
                hash.algorithm, hash.value
            )));
        }
        if let Some(signature) = &self.signature {
            let signature = B64
                .decode(signature)
                .map_err(|e| untrusted(format!("the log entry's signature: {e}")))?;
            if !logged.signatures.contains(&signature) {
                return Err(untrusted(
                    "the log entry names a signature the envelope does not carry",
                ));
            }
        }
        self.bind_signer(logged.signer)
    }

    /// The logged PEM is the signer's key or certificate (cosign v2 compares the DER too).
    fn bind_signer(&self, signer: LoggedSigner<'_>) -> Result<(), SigstoreError> {
        let (label, expected) = match signer {
            LoggedSigner::Key(der) => ("PUBLIC KEY", der),
            LoggedSigner::Certificate(der) => ("CERTIFICATE", der),
        };
        let pem = B64
            .decode(&self.signer)
            .map_err(|e| untrusted(format!("the log entry's signer: {e}")))?;
        match x509_cert::der::pem::decode_vec(&pem) {
            Ok((found, der)) if found == label && der == expected => Ok(()),
            Ok(_) => Err(untrusted(format!(
                "the log entry names another signer than the attestation's {}",
                label.to_lowercase()
            ))),
            Err(e) => Err(untrusted(format!("the log entry's signer: {e}"))),
        }
    }
}

#[cfg(test)]
#[path = "att_entry_tests.rs"]
mod tests;
