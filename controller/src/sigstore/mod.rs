//! Keyless (and key-based) verification of Sigstore bundles, offline from a trusted root.
//!
//! The checks themselves are the Sigstore organisation's Rust verifier (`sigstore-verify`): the
//! Fulcio chain to the trusted root's CAs at a trusted time, the embedded SCT against its CT
//! logs, a trusted time (Rekor inclusion proof under a signed checkpoint, a SET, or RFC 3161
//! timestamps from its TSAs), the signature over the artifact (message signature or DSSE) and the
//! log entry's body against the bundle. It passes the sigstore-conformance bundle vectors
//! (`tests/sigstore_conformance.rs`). What is ours: which trusted root, and the identity policy
//! (exact or regular expression, as cosign's flags), matched on the certificate's claims only
//! after everything above verified. Nothing here does I/O.

mod identity;

pub use identity::{Identity, Pattern, Signer};

use std::sync::{Arc, OnceLock};

use sha2::{Digest as _, Sha256};
use sigstore_types::{Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

/// The Sigstore public-good instance's `trusted_root.json`, as sigstore-python ships it
/// (github.com/sigstore/sigstore-python, Apache-2.0, commit 27db13db157ecae5606eb22ec0be299ef348c370;
/// the same file as `../shared/testdata/sigstore-conformance/public-good-trusted_root.json`).
/// Shipped in the binary so that verifying against public good needs no network; a TrustRoot or
/// `--trusted-root` names another (or a newer) one.
const PUBLIC_GOOD: &[u8] = include_bytes!("public-good-trusted_root.json");

/// What went wrong, by category (`category()` is low-cardinality, for metrics and reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigstoreError {
    /// The trusted root cannot be read or used (bad JSON, bad key or certificate in it).
    #[error("trusted root {source_name}: {detail}")]
    TrustedRoot { source_name: String, detail: String },
    /// The bundle is not a Sigstore bundle this verifier reads.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The bundle does not verify: chain, SCT, log, timestamp, signature or artifact.
    #[error("{0}")]
    Verification(String),
    /// Everything verified but the certificate names someone else.
    #[error("certificate identity {subject:?} (issuer {issuer:?}) is not trusted")]
    IdentityMismatch { subject: String, issuer: String },
    /// An identity pattern is not a valid regular expression.
    #[error("{field}: invalid regular expression: {detail}")]
    Pattern { field: String, detail: String },
}

impl SigstoreError {
    pub fn category(&self) -> &'static str {
        match self {
            Self::TrustedRoot { .. } => "trusted_root",
            Self::Bundle(_) => "bundle",
            Self::Verification(_) => "verification",
            Self::IdentityMismatch { .. } => "identity_mismatch",
            Self::Pattern { .. } => "pattern",
        }
    }
}

/// A parsed `trusted_root.json`, ready to verify with.
pub struct TrustedRoot {
    verifier: Verifier,
    /// Where it came from (a file, a Secret, "public-good"), for error messages.
    source_name: String,
    /// Hex SHA-256 of the JSON: equality, and what a cache keys on.
    fingerprint: String,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedRoot")
            .field("source", &self.source_name)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Two roots are the same when their JSON is: what decides a verdict.
impl PartialEq for TrustedRoot {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}
impl Eq for TrustedRoot {}

impl TrustedRoot {
    /// Parses `json`, naming `source_name` in errors.
    pub fn from_json(source_name: &str, json: &[u8]) -> Result<Self, SigstoreError> {
        let err = |detail: String| SigstoreError::TrustedRoot {
            source_name: source_name.to_string(),
            detail,
        };
        let text = std::str::from_utf8(json).map_err(|_| err("is not UTF-8 text".into()))?;
        let root = sigstore_trust_root::TrustedRoot::from_json(text).map_err(|e| err(e.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            verifier,
            source_name: source_name.to_string(),
            fingerprint: hex::encode(Sha256::digest(json)),
        })
    }

    /// The public-good root shipped in the binary, parsed once.
    pub fn public_good() -> Result<Arc<Self>, SigstoreError> {
        static ROOT: OnceLock<Result<Arc<TrustedRoot>, SigstoreError>> = OnceLock::new();
        ROOT.get_or_init(|| Self::from_json("public-good", PUBLIC_GOOD).map(Arc::new))
            .clone()
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Verifies a keyless bundle over `artifact` (any signer the root's CAs certified) and
    /// returns who signed. The caller decides whether that signer is trusted
    /// ([`Identity::matches`]): one verification serves every identity of a trust root.
    pub fn verify_keyless(&self, bundle: &[u8], artifact: Artifact<'_>) -> Result<Signer, SigstoreError> {
        let bundle = parse_bundle(bundle)?;
        let policy = VerificationPolicy::any_identity();
        let result = self
            .verifier
            .verify(artifact.into_sigstore()?, &bundle, &policy)
            .map_err(|e| SigstoreError::Verification(e.to_string()))?;
        // any_identity() still verifies chain, SCT and log: refuse a result that says otherwise
        // rather than trust a claim nothing vouched for.
        if !(result.certificate_verified() && result.sct_verified() && result.tlog_verified()) {
            return Err(SigstoreError::Verification(
                "the certificate, its SCT or the log entry was not verified".into(),
            ));
        }
        Ok(Signer {
            subject: result
                .identity()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            issuer: result.issuer().unwrap_or_default().to_string(),
        })
    }

    /// Verifies a key-based bundle with `spki_der` (a DER SubjectPublicKeyInfo), its log entry
    /// included.
    pub fn verify_with_key(
        &self,
        bundle: &[u8],
        artifact: Artifact<'_>,
        spki_der: &[u8],
    ) -> Result<(), SigstoreError> {
        let bundle = parse_bundle(bundle)?;
        let policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(spki_der.to_vec()));
        self.verifier
            .verify(artifact.into_sigstore()?, &bundle, &policy)
            .map(|_| ())
            .map_err(|e| SigstoreError::Verification(e.to_string()))
    }

    /// Verifies a keyless bundle and checks the signer against `identities`: the first that
    /// matches and the signer, or why none does.
    pub fn verify_identity<'i, I: AsRef<Identity>>(
        &self,
        bundle: &[u8],
        artifact: Artifact<'_>,
        identities: &'i [I],
    ) -> Result<(&'i I, Signer), SigstoreError> {
        let signer = self.verify_keyless(bundle, artifact)?;
        match identities.iter().find(|i| i.as_ref().matches(&signer)) {
            Some(identity) => Ok((identity, signer)),
            None => Err(SigstoreError::IdentityMismatch {
                subject: signer.subject,
                issuer: signer.issuer,
            }),
        }
    }
}

/// What was signed: the bytes, or (for images) the SHA-256 digest the signature names.
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    Bytes(&'a [u8]),
    /// Lowercase hex, without the `sha256:` prefix.
    Sha256Hex(&'a str),
}

impl<'a> Artifact<'a> {
    fn into_sigstore(self) -> Result<sigstore_types::Artifact<'a>, SigstoreError> {
        Ok(match self {
            Self::Bytes(b) => sigstore_types::Artifact::from(b),
            Self::Sha256Hex(hex) => Sha256Hash::from_hex(hex)
                .map_err(|e| SigstoreError::Verification(format!("artifact digest: {e}")))?
                .into(),
        })
    }
}

fn parse_bundle(bytes: &[u8]) -> Result<Bundle, SigstoreError> {
    serde_json::from_slice(bytes).map_err(|e| SigstoreError::Bundle(e.to_string()))
}

/// Whether a bundle carries a signing certificate (keyless) rather than a key hint. Only the
/// shape is looked at; verification decides the rest.
pub fn is_keyless_bundle(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        verification_material: Material,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Material {
        certificate: Option<serde_json::Value>,
        x509_certificate_chain: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Shape>(bytes).is_ok_and(|s| {
        s.verification_material.certificate.is_some()
            || s.verification_material.x509_certificate_chain.is_some()
    })
}

#[cfg(test)]
mod tests;
