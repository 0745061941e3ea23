//! What a verification says, in a shape the CLI prints as JSON and the controller writes down.

use serde::Serialize;

use crate::{
    reference::{Digest, ImageRef},
    registry::RegistryError,
};

/// The verdict for one image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Outcome {
    /// Signed by at least `threshold` distinct keys of the key set (named here).
    Verified { keys: Vec<String> },
    /// No signatures at all, in either format.
    Unsigned,
    /// Signatures exist but not enough of them are valid for the key set; `reason` sums up why
    /// for people, `causes` for scripts and alerts (see [`cause`]).
    Invalid {
        reason: String,
        causes: Vec<&'static str>,
    },
    /// The registry could not be asked: the answer is unknown, never a verdict.
    Error {
        reason: String,
        #[serde(skip)]
        error: RegistryError,
    },
}

impl Outcome {
    /// A stable, low-cardinality name: metrics labels, annotations, exit codes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Verified { .. } => "Verified",
            Self::Unsigned => "Unsigned",
            Self::Invalid { .. } => "Invalid",
            Self::Error { .. } => "Error",
        }
    }
}

/// Why a verdict is not Verified, as the low-cardinality names the operator records in a
/// WorkloadVerdict's `causes` and the CLI prints: what scripts, alerts and tests match on
/// instead of the text of `reason`. A rejected signature adds its `rejectedCategory`
/// (`identity_mismatch`, `untrusted_log`, `no_trusted_key`, …) as it is; a failing attestation
/// adds `attestation_` and its state ([`crate::verify::AttestationState::cause`]).
pub mod cause {
    /// No signature at all, in either format.
    pub const NO_SIGNATURE: &str = "no_signature";
    /// Valid signatures, by fewer distinct accepted keys than the threshold.
    pub const BELOW_THRESHOLD: &str = "below_threshold";
    /// A signature by a key that is not accepted now (retired by a KeyRotation).
    pub const REFUSED_SIGNER: &str = "refused_signer";
    /// The image reference cannot be parsed, so there is nothing to verify.
    pub const INVALID_REFERENCE: &str = "invalid_reference";
}

/// The two places cosign keeps image signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SignatureFormat {
    /// cosign v2 (and v3 `--new-bundle-format=false`): a layer of the `sha256-<hex>.sig` image.
    Legacy,
    /// cosign v3: a Sigstore bundle stored as an OCI referrer.
    Bundle,
}

/// One signature found, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCheck {
    pub format: SignatureFormat,
    /// The layer digest (legacy) or referrer manifest digest (bundle) it came from.
    pub source: String,
    /// The key that verified it, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The verifying key's fingerprint (hex SHA-256 of its DER SubjectPublicKeyInfo), or the
    /// identity's (hex SHA-256 of its subject and issuer patterns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// For a keyless signature, the certificate's identity and issuer: `subject (issuer)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Why it was rejected, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// What kind of rejection, low-cardinality (`identity_mismatch`, `untrusted_log`,
    /// `no_tlog_entry`, `no_trusted_time`, `no_trusted_key`, `other_digest`, `format`, …): what
    /// scripts and tests match on instead of the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_category: Option<&'static str>,
    /// Whether a transparency-log entry of this signature was verified: always for keyless ones
    /// unless `tlog: Optional` and none was there, and for key-based ones with `tlog: Required`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logged: bool,
}

impl SignatureCheck {
    pub fn is_valid(&self) -> bool {
        self.key.is_some()
    }
}

/// The full answer for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub signatures: Vec<SignatureCheck>,
}

impl Verification {
    /// The tag could not be resolved to a digest.
    pub fn unresolved(image: &ImageRef, error: RegistryError) -> Self {
        // A tag that does not exist is the user's to fix, not a registry hiccup, but it is still
        // no verdict about a signature.
        let reason = match &error {
            RegistryError::NotFound => format!("{image}: tag not found"),
            error => format!("{image}: {error}"),
        };
        let outcome = Outcome::Error { reason, error };
        Self {
            image: image.to_string(),
            digest: None,
            outcome,
            signatures: Vec::new(),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
