//! Public keys: PEM in, signature checks and fingerprints out.

use base64::{Engine, prelude::BASE64_STANDARD};
use p256::{
    ecdsa::{Signature, VerifyingKey},
    pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding},
};
use sha2::{Digest, Sha256};

use super::KeyError;

/// An ECDSA P-256 public key with its DER SubjectPublicKeyInfo kept for fingerprints.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    spki_der: Vec<u8>,
    /// The uncompressed SEC1 point, as ring takes it.
    point: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` PEM block (PKIX SubjectPublicKeyInfo).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        if !pem.starts_with("-----BEGIN PUBLIC KEY-----") {
            return Err(KeyError::PublicPem(
                "expected a \"-----BEGIN PUBLIC KEY-----\" block".into(),
            ));
        }
        match VerifyingKey::from_public_key_pem(pem) {
            Ok(key) => Ok(Self::from_verifying_key(key)),
            // A well-formed SPKI of another algorithm or curve deserves a clearer word than
            // "malformed".
            Err(p256::pkcs8::spki::Error::OidUnknown { oid }) => {
                Err(KeyError::Unsupported(format!("algorithm or curve {oid}")))
            }
            Err(e) => Err(KeyError::PublicPem(e.to_string())),
        }
    }

    pub(crate) fn from_verifying_key(key: VerifyingKey) -> Self {
        let spki_der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let point = key.to_encoded_point(false).as_bytes().to_vec();
        Self { key, spki_der, point }
    }

    /// The key as PEM, as cosign writes `cosign.pub`.
    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: the key's stable identity.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Base64 SHA-256 of the DER SubjectPublicKeyInfo: what cosign writes as the bundle's
    /// `verificationMaterial.publicKey.hint`.
    pub fn hint(&self) -> String {
        BASE64_STANDARD.encode(Sha256::digest(&self.spki_der))
    }

    /// Checks an ASN.1 DER ECDSA signature over `message` (hashed with SHA-256).
    ///
    /// High-S signatures are accepted: Go's crypto/ecdsa does not normalise S, so half of
    /// cosign's signatures have it.
    ///
    /// The check itself is ring's: its assembly P-256 is several times faster than the p256
    /// crate's portable arithmetic, which was the largest part of our own CPU time in a
    /// `countersign verify` (both accept exactly DER ECDSA-SHA256, high or low S). The p256 parse
    /// first keeps "not a signature" apart from "not this key's".
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), SignatureError> {
        Signature::from_der(signature_der).map_err(|_| SignatureError::Encoding)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature_der)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Why a signature did not verify under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is not ASN.1 DER ECDSA")]
    Encoding,
    #[error("signature does not match")]
    Mismatch,
}

/// Whether `signature` is an ASN.1 DER ECDSA signature at all, so that a garbled one is
/// reported as such rather than as "no key matches".
pub fn check_signature_encoding(signature: &[u8]) -> Result<(), SignatureError> {
    Signature::from_der(signature)
        .map(|_| ())
        .map_err(|_| SignatureError::Encoding)
}
