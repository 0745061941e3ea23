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
//!
//! One layout does not fit that verifier: a cosign v2 `.att`, whose timestamp covers the envelope
//! rather than the signature and whose Rekor v1 entry is of a kind Sigstore bundles do not carry.
//! It is verified step by step with the same crates ([`attestation`], [`certificate`],
//! [`att_entry`]).

mod att_entry;
mod attestation;
mod certificate;
mod identity;
mod legacy;
#[cfg(test)]
pub(crate) mod test_log;

pub use attestation::LegacyAttestation;
pub use identity::{Identity, Pattern, Signer};
pub use legacy::LegacySignature;

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
    #[error("{failure}: {detail}")]
    Verification { failure: Failure, detail: String },
    /// Everything verified but the certificate names someone else.
    #[error("identity mismatch: certificate identity {subject:?} (issuer {issuer:?}) is not trusted")]
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
            Self::Verification { failure, .. } => failure.category(),
            Self::IdentityMismatch { .. } => "identity_mismatch",
            Self::Pattern { .. } => "pattern",
        }
    }
}

impl SigstoreError {
    pub fn verification(failure: Failure, detail: impl Into<String>) -> Self {
        Self::Verification {
            failure,
            detail: detail.into(),
        }
    }
}

/// Why a bundle did not verify, by what an operator acts on. Its text starts every verdict reason
/// it causes ("untrusted log: …"), and its category labels metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The transparency log is required and the signature has no entry in it.
    NoTlogEntry,
    /// A log entry that does not verify against the trusted root's logs: unknown log, bad
    /// checkpoint or SET signature, inclusion proof that does not lead to the signed root, entry
    /// that describes another signature.
    UntrustedLog,
    /// Nothing trusted says when it was signed (no log integration time, no RFC 3161 timestamp):
    /// a short-lived certificate cannot be checked.
    NoTrustedTime,
    /// An RFC 3161 timestamp that does not verify against the trusted root's TSAs.
    UntrustedTimestamp,
    /// The certificate does not chain to the trusted root's CAs at the signing time, or its SCT
    /// does not verify.
    UntrustedCertificate,
    /// The signature does not verify over this artifact.
    InvalidSignature,
    /// Anything else the verifier refused.
    Invalid,
}

impl Failure {
    pub fn category(self) -> &'static str {
        match self {
            Self::NoTlogEntry => "no_tlog_entry",
            Self::UntrustedLog => "untrusted_log",
            Self::NoTrustedTime => "no_trusted_time",
            Self::UntrustedTimestamp => "untrusted_timestamp",
            Self::UntrustedCertificate => "untrusted_certificate",
            Self::InvalidSignature => "invalid_signature",
            Self::Invalid => "verification",
        }
    }

    /// What the verifier's error means here.
    fn of(error: &sigstore_verify::Error) -> Self {
        use sigstore_verify::bundle::Error as B;
        use sigstore_verify::{Error as E, error::TimestampError as T};
        match error {
            E::TransparencyLog(_) => Self::UntrustedLog,
            E::Bundle(B::MissingInclusionProof(_) | B::MissingInclusionPromise(_) | B::MissingCheckpoint) => {
                Self::NoTlogEntry
            }
            E::Bundle(B::MissingSigningTimeEvidence) | E::Timestamp(T::NoVerifiedTimestamp(_)) => {
                Self::NoTrustedTime
            }
            E::Bundle(B::LogIndexOutOfRange { .. } | B::CheckpointRootMismatch) => Self::UntrustedLog,
            E::Timestamp(_) => Self::UntrustedTimestamp,
            E::Certificate(_) | E::TrustedCertificate(_) => Self::UntrustedCertificate,
            E::SignatureInvalid(_) | E::ArtifactMismatch(_) => Self::InvalidSignature,
            _ => Self::Invalid,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoTlogEntry => "no tlog entry",
            Self::UntrustedLog => "untrusted log",
            Self::NoTrustedTime => "no trusted time",
            Self::UntrustedTimestamp => "untrusted timestamp",
            Self::UntrustedCertificate => "untrusted certificate",
            Self::InvalidSignature => "invalid signature",
            Self::Invalid => "does not verify",
        })
    }
}

fn verify_error(e: sigstore_verify::Error) -> SigstoreError {
    SigstoreError::verification(Failure::of(&e), e.to_string())
}

/// What the transparency log must show (TrustRoot `spec.tlog`, `countersign verify --tlog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlogPolicy {
    /// As cosign verifies by default: a keyless signature needs a log entry that verifies; a
    /// key-based signature is not looked up in a log.
    #[default]
    Default,
    /// Every signature, key-based too, needs a log entry that verifies against the trusted
    /// root's logs (inclusion proof under a signed checkpoint, or a SET).
    Required,
    /// A keyless signature without a log entry is accepted when RFC 3161 timestamps from the
    /// trusted root's TSAs say when it was signed (cosign's `--insecure-ignore-tlog` with a
    /// TSA); entries that are there are verified all the same.
    Optional,
}

/// A parsed `trusted_root.json`, ready to verify with.
pub struct TrustedRoot {
    verifier: Verifier,
    /// What the verifier was made from: a `.att` layer's checks read its authorities directly.
    root: sigstore_trust_root::TrustedRoot,
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
            root,
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
    pub fn verify_keyless(
        &self,
        bundle: &[u8],
        artifact: Artifact<'_>,
        tlog: TlogPolicy,
    ) -> Result<Signer, SigstoreError> {
        let bundle = parse_bundle(bundle)?;
        self.verify_keyless_parsed(&bundle, artifact, tlog)
    }

    fn verify_keyless_parsed(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
        tlog: TlogPolicy,
    ) -> Result<Signer, SigstoreError> {
        let skip_tlog = tlog == TlogPolicy::Optional && bundle.verification_material.tlog_entries.is_empty();
        let policy = match skip_tlog {
            // Nothing to verify in a log: the TSA's timestamps are the trusted time, and the
            // verifier still refuses a bundle without any.
            true => VerificationPolicy::any_identity().skip_tlog_unsafe(),
            false => VerificationPolicy::any_identity(),
        };
        let result = self
            .verifier
            .verify(artifact.into_sigstore()?, bundle, &policy)
            .map_err(verify_error)?;
        // any_identity() still verifies chain, SCT and log: refuse a result that says otherwise
        // rather than trust a claim nothing vouched for.
        if !(result.certificate_verified() && result.sct_verified() && (skip_tlog || result.tlog_verified()))
        {
            return Err(SigstoreError::verification(
                Failure::Invalid,
                "the certificate, its SCT or the log entry was not verified",
            ));
        }
        Ok(Signer::from_claims(
            result.identity().map(|s| s.as_str()),
            result.issuer(),
        ))
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
        self.verify_with_key_parsed(&bundle, artifact, spki_der)
    }

    fn verify_with_key_parsed(
        &self,
        bundle: &Bundle,
        artifact: Artifact<'_>,
        spki_der: &[u8],
    ) -> Result<(), SigstoreError> {
        if bundle.verification_material.tlog_entries.is_empty() {
            return Err(SigstoreError::verification(
                Failure::NoTlogEntry,
                "the signature has no transparency log entry",
            ));
        }
        let policy = PublicKeyVerificationPolicy::new(DerPublicKey::new(spki_der.to_vec()));
        self.verifier
            .verify(artifact.into_sigstore()?, bundle, &policy)
            .map(|_| ())
            .map_err(verify_error)
    }

    /// Verifies a keyless bundle and checks the signer against `identities`: the first that
    /// matches and the signer, or why none does.
    pub fn verify_identity<'i, I: AsRef<Identity>>(
        &self,
        bundle: &[u8],
        artifact: Artifact<'_>,
        identities: &'i [I],
        tlog: TlogPolicy,
    ) -> Result<(&'i I, Signer), SigstoreError> {
        let signer = self.verify_keyless(bundle, artifact, tlog)?;
        match_identity(signer, identities)
    }

    /// [`TrustedRoot::verify_identity`] for a cosign v2 `.sig` signature: its annotations made
    /// into a bundle over the simple-signing `payload`.
    pub fn verify_legacy_identity<'i, I: AsRef<Identity>>(
        &self,
        legacy: &LegacySignature<'_>,
        identities: &'i [I],
        tlog: TlogPolicy,
    ) -> Result<(&'i I, Signer), SigstoreError> {
        let bundle = legacy.to_bundle()?;
        let signer = self.verify_keyless_parsed(&bundle, Artifact::Bytes(legacy.payload), tlog)?;
        match_identity(signer, identities)
    }

    /// The log entry of a key-based cosign v2 `.sig` signature (its bundle annotation), verified
    /// against this root's logs with the key `spki_der`: for [`TlogPolicy::Required`].
    pub fn verify_legacy_with_key(
        &self,
        legacy: &LegacySignature<'_>,
        spki_der: &[u8],
    ) -> Result<(), SigstoreError> {
        let bundle = legacy.to_bundle()?;
        self.verify_with_key_parsed(&bundle, Artifact::Bytes(legacy.payload), spki_der)
    }
}

/// The first of `identities` that `signer` is, or why none.
fn match_identity<I: AsRef<Identity>>(
    signer: Signer,
    identities: &[I],
) -> Result<(&I, Signer), SigstoreError> {
    match identities.iter().find(|i| i.as_ref().matches(&signer)) {
        Some(identity) => Ok((identity, signer)),
        None => Err(SigstoreError::IdentityMismatch {
            subject: signer.subject,
            issuer: signer.issuer,
        }),
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
                .map_err(|e| SigstoreError::verification(Failure::Invalid, format!("artifact digest: {e}")))?
                .into(),
        })
    }
}

fn parse_bundle(bytes: &[u8]) -> Result<Bundle, SigstoreError> {
    serde_json::from_slice(bytes).map_err(|e| SigstoreError::Bundle(e.to_string()))
}

/// What the shape checks below read of a bundle: which parts of its verification material are
/// there, not what they say (verification decides that).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaterialShape {
    certificate: Option<serde::de::IgnoredAny>,
    x509_certificate_chain: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    tlog_entries: Vec<serde::de::IgnoredAny>,
}

fn material_shape(bytes: &[u8]) -> Option<MaterialShape> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        verification_material: MaterialShape,
    }
    serde_json::from_slice::<Shape>(bytes)
        .ok()
        .map(|s| s.verification_material)
}

/// Whether a bundle carries a signing certificate (keyless) rather than a key hint. Only the
/// shape is looked at; verification decides the rest.
pub fn is_keyless_bundle(bytes: &[u8]) -> bool {
    material_shape(bytes).is_some_and(|m| m.certificate.is_some() || m.x509_certificate_chain.is_some())
}

/// Whether a bundle carries a transparency-log entry (verified, when it is there, by the
/// verification that accepted the bundle).
pub fn has_tlog_entry(bytes: &[u8]) -> bool {
    material_shape(bytes).is_some_and(|m| !m.tlog_entries.is_empty())
}

#[cfg(test)]
mod tests;
