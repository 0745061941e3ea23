//! Attestations against required predicate types: which are present, signed by an accepted
//! signer over this digest, and pass their policy. Pure, like [`super::evaluate`].
//!
//! Each attestation found (a `.att` layer or a bundle referrer) is verified first and then
//! sorted by its statement's predicate type. A requirement is met by one attestation of its type
//! whose signature verifies, whose statement names this digest and whose predicate passes the
//! policy; when none does, the closest miss is the reason, in this order: the policy failed, the
//! attestation is for another digest, no signature verifies, no attestation of that type.

use serde::Serialize;

use super::{
    Candidate, Fetched, KeySet, NamedKey, cause,
    evaluate::{Rejection, keyless_root},
    predicate::PredicatePolicy,
};
use crate::{
    formats::{
        FormatError, attestation::Claimed, bundle::Bundle, decode_base64, dsse::pae, simple_signing::Evidence,
    },
    keys::check_signature_encoding,
    reference::Digest,
    sigstore::{self, Artifact, Failure, LegacyAttestation, TlogPolicy},
};

/// One required predicate type and its optional policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The full predicate type URI.
    pub predicate_type: String,
    pub policy: Option<PredicatePolicy>,
}

/// What became of one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum AttestationState {
    /// Signed by `signer` over this digest, policy passed.
    Verified { signer: String },
    /// No attestation of this type at all.
    Missing,
    /// Signed and for this digest, but the predicate fails the policy.
    PolicyFailed { expression: String, detail: String },
    /// Signed, but the statement names other digests.
    OtherDigest { subjects: Vec<String> },
    /// Attestations of this type exist, none signed by an accepted signer. `category` is the
    /// low-cardinality why, as a signature's `rejectedCategory` (`identity_mismatch`,
    /// `untrusted_timestamp`, `no_trusted_key`, …).
    BadSignature {
        #[serde(rename = "rejectedCategory")]
        category: &'static str,
        reason: String,
    },
    /// The registry could not be asked: no verdict.
    Error { reason: String },
}

impl AttestationState {
    /// A stable, low-cardinality name: metrics labels and annotations.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Verified { .. } => "Verified",
            Self::Missing => "Missing",
            Self::PolicyFailed { .. } => "PolicyFailed",
            Self::OtherDigest { .. } => "OtherDigest",
            Self::BadSignature { .. } => "BadSignature",
            Self::Error { .. } => "Error",
        }
    }

    /// For people: what is wrong, without the predicate type.
    pub fn describe(&self) -> String {
        match self {
            Self::Verified { signer } => format!("verified ({signer})"),
            Self::Missing => "missing".into(),
            Self::PolicyFailed { expression, detail } => {
                format!("fails policy {expression:?}: {detail}")
            }
            Self::OtherDigest { subjects } => {
                format!("is for another digest ({})", subjects.join(", "))
            }
            Self::BadSignature { reason, .. } => format!("has no valid signature: {reason}"),
            Self::Error { reason } => format!("could not be read: {reason}"),
        }
    }

    /// Why it keeps a verdict from Verified, as a verdict's cause (see [`super::cause`]):
    /// `attestation_missing`, `attestation_policy_failed`, `attestation_other_digest`, or
    /// `attestation_` and the signature's category (`attestation_identity_mismatch`, …). `None`
    /// when verified or unread (an unread one gives no verdict at all).
    pub fn cause(&self) -> Option<String> {
        let what = match self {
            Self::Verified { .. } | Self::Error { .. } => return None,
            Self::Missing => "missing",
            Self::PolicyFailed { .. } => "policy_failed",
            Self::OtherDigest { .. } => "other_digest",
            Self::BadSignature { category, .. } => category,
        };
        Some(format!("attestation_{what}"))
    }
}

/// One requirement's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationCheck {
    pub predicate_type: String,
    #[serde(flatten)]
    pub state: AttestationState,
}

impl AttestationCheck {
    pub fn is_verified(&self) -> bool {
        matches!(self.state, AttestationState::Verified { .. })
    }

    /// `<predicate type> <what is wrong>`, the reason shown on a workload.
    pub fn reason(&self) -> String {
        format!("attestation {} {}", self.predicate_type, self.state.describe())
    }
}

/// One attestation found, verified: its type, and either the signer and statement or why not.
struct Seen {
    predicate_type: String,
    signed: Result<(String, Claimed), Rejection>,
}

/// Every requirement against every attestation in `fetched`. `refusal(signer)` says why a signer
/// that verified is not accepted now (a retired key), as for signatures.
pub fn check_attestations(
    digest: &Digest,
    fetched: &Fetched,
    keys: &KeySet,
    requirements: &[Requirement],
    refusal: impl Fn(&str) -> Option<String>,
) -> Vec<AttestationCheck> {
    let seen: Vec<Seen> = fetched
        .candidates()
        .filter_map(|c| verify_candidate(c, keys))
        .map(|mut s| {
            if let Ok((signer, _)) = &s.signed
                && let Some(why) = refusal(signer)
            {
                s.signed = Err(Rejection::new(cause::REFUSED_SIGNER, format!("{signer} {why}")));
            }
            s
        })
        .collect();
    requirements
        .iter()
        .map(|r| AttestationCheck {
            predicate_type: r.predicate_type.clone(),
            state: requirement_state(digest, r, &seen, fetched),
        })
        .collect()
}

fn requirement_state(digest: &Digest, r: &Requirement, seen: &[Seen], fetched: &Fetched) -> AttestationState {
    let mut closest = AttestationState::Missing;
    let rank = |s: &AttestationState| match s {
        AttestationState::Missing => 0,
        AttestationState::BadSignature { .. } => 1,
        AttestationState::OtherDigest { .. } => 2,
        _ => 3,
    };
    for s in seen.iter().filter(|s| s.predicate_type == r.predicate_type) {
        let state = match &s.signed {
            Err(rejection) => AttestationState::BadSignature {
                category: rejection.category,
                reason: rejection.reason.clone(),
            },
            Ok((signer, claimed)) => judge(digest, r, signer, claimed),
        };
        if state.name() == "Verified" {
            return state;
        }
        if rank(&state) > rank(&closest) {
            closest = state;
        }
    }
    // Short of a verified attestation, what could not be read might have been one.
    match fetched.error() {
        Some(e) => AttestationState::Error {
            reason: e.to_string(),
        },
        None => closest,
    }
}

fn judge(digest: &Digest, r: &Requirement, signer: &str, claimed: &Claimed) -> AttestationState {
    let statement = &claimed.statement;
    if !statement.names_digest(digest) {
        return AttestationState::OtherDigest {
            subjects: statement.subject_digests(),
        };
    }
    let Some(policy) = &r.policy else {
        return AttestationState::Verified {
            signer: signer.to_string(),
        };
    };
    let subject = serde_json::to_value(&statement.subject).unwrap_or_default();
    match policy.evaluate(&statement.predicate_type, &subject, &statement.predicate) {
        Ok(()) => AttestationState::Verified {
            signer: signer.to_string(),
        },
        Err(detail) => AttestationState::PolicyFailed {
            expression: policy.expression().to_string(),
            detail,
        },
    }
}

/// `None` for candidates that are not attestations at all (a malformed listing says nothing
/// about which predicate type it would have been).
fn verify_candidate(candidate: &Candidate, keys: &KeySet) -> Option<Seen> {
    let (claimed, signed) = match candidate {
        Candidate::Legacy {
            payload, evidence, ..
        } => {
            let claimed = Claimed::from_envelope_json(payload).ok()?;
            let signed = match &evidence.certificate {
                Some(_) => verify_legacy_keyless(payload, evidence, &claimed, keys),
                None => verify_legacy_key(payload, evidence, &claimed, keys),
            };
            (claimed, signed)
        }
        Candidate::Bundle { bundle, .. } => {
            let parsed = Bundle::parse(bundle).ok()?;
            let claimed = Claimed::from_envelope(parsed.envelope().ok()?.clone()).ok()?;
            let signed = if sigstore::is_keyless_bundle(bundle) {
                verify_keyless(bundle, &claimed, keys)
            } else {
                let hint = parsed.verification_material.public_key.map(|k| k.hint);
                verify_with_keys(&claimed, hint.as_deref(), keys)
                    .and_then(|signer| verify_key_log_entry(bundle, &claimed, keys).map(|()| signer))
            };
            (claimed, signed)
        }
        Candidate::Rejected { .. } => return None,
    };
    Some(Seen {
        predicate_type: claimed.statement.predicate_type.clone(),
        signed: signed.map(|signer| (signer, claimed)),
    })
}

/// A `.att` layer's envelope, signatures and annotations, for [`sigstore`]'s checks.
fn legacy_attestation<'a>(
    layer: &'a [u8],
    evidence: &'a Evidence,
    claimed: &'a Claimed,
    (signed, signatures): &'a (Vec<u8>, Vec<Vec<u8>>),
) -> LegacyAttestation<'a> {
    LegacyAttestation {
        envelope: layer,
        payload: &claimed.payload,
        signed,
        signatures,
        certificate: evidence.certificate.as_deref(),
        rekor_bundle: evidence.rekor_bundle.as_deref(),
        timestamp: evidence.timestamp.as_deref(),
    }
}

/// A key-signed `.att` layer: the envelope's signature by a trusted key and, when the log is
/// required, its Rekor v1 entry (the bundle annotation), which must name that key and this
/// envelope. Otherwise the log is not looked up, as for a key-signed `.sig`.
fn verify_legacy_key(
    layer: &[u8],
    evidence: &Evidence,
    claimed: &Claimed,
    keys: &KeySet,
) -> Result<String, Rejection> {
    let envelope = envelope_signatures(claimed)?;
    let key = signing_key(&envelope, None, keys)?;
    if keys.tlog == TlogPolicy::Required {
        let attestation = legacy_attestation(layer, evidence, claimed, &envelope);
        keys.log_root()?
            .verify_legacy_attestation_with_key(&attestation, key.key.spki_der())?;
    }
    Ok(key.name.clone())
}

/// A keyless `.att` layer: its trusted times (the log entry's SET, the timestamp over the
/// layer's bytes), the certificate at those times, the envelope's signature with its key, then
/// the identities ([`LegacyAttestation`]). The log entry is needed unless the log is optional.
fn verify_legacy_keyless(
    layer: &[u8],
    evidence: &Evidence,
    claimed: &Claimed,
    keys: &KeySet,
) -> Result<String, Rejection> {
    let root = keyless_root(keys)?;
    let envelope = envelope_signatures(claimed)?;
    let attestation = legacy_attestation(layer, evidence, claimed, &envelope);
    root.verify_legacy_attestation(&attestation, &keys.identities, keys.tlog)
        .map(|(identity, _)| identity.name.clone())
        .map_err(Rejection::from)
}

/// What the envelope's signatures sign (its PAE), and the signatures, decoded and well-formed.
fn envelope_signatures(claimed: &Claimed) -> Result<(Vec<u8>, Vec<Vec<u8>>), Rejection> {
    let envelope = &claimed.envelope;
    let signatures = envelope
        .signatures
        .iter()
        .map(|s| decode_base64("DSSE signature", &s.sig))
        .collect::<Result<Vec<_>, FormatError>>()?;
    if signatures.is_empty() {
        return Err(Rejection::new("format", "the envelope has no signature"));
    }
    if let Some(e) = signatures.iter().find_map(|s| check_signature_encoding(s).err()) {
        return Err(e.into());
    }
    Ok((pae(&envelope.payload_type, &claimed.payload), signatures))
}

fn verify_with_keys(claimed: &Claimed, hint: Option<&str>, keys: &KeySet) -> Result<String, Rejection> {
    let envelope = envelope_signatures(claimed)?;
    signing_key(&envelope, hint, keys).map(|k| k.name.clone())
}

/// The first trusted key that verifies one of the envelope's signatures (`hint`'s first).
fn signing_key<'k>(
    (signed, signatures): &(Vec<u8>, Vec<Vec<u8>>),
    hint: Option<&str>,
    keys: &'k KeySet,
) -> Result<&'k NamedKey, Rejection> {
    signatures
        .iter()
        .find_map(|sig| keys.verifying_key(signed, sig, hint))
        .ok_or_else(Rejection::no_key)
}

/// A keyless bundle: the whole Sigstore verification over the digest its statement names (the
/// binding to this image is checked afterwards, so that "another digest" is told apart).
fn verify_keyless(bundle: &[u8], claimed: &Claimed, keys: &KeySet) -> Result<String, Rejection> {
    let root = keyless_root(keys)?;
    let subject = statement_sha256(claimed)?;
    root.verify_identity(bundle, Artifact::Sha256Hex(subject), &keys.identities, keys.tlog)
        .map(|(identity, _)| identity.name.clone())
        .map_err(Rejection::from)
}

/// With the log required, a key-signed bundle's log entry, verified with the key that signed
/// the envelope (any trusted key: the envelope check above already chose among them).
fn verify_key_log_entry(bundle: &[u8], claimed: &Claimed, keys: &KeySet) -> Result<(), Rejection> {
    if keys.tlog != TlogPolicy::Required {
        return Ok(());
    }
    let root = keys.log_root()?;
    let subject = statement_sha256(claimed)?;
    let mut last = Rejection::new(
        Failure::NoTlogEntry.category(),
        format!("{}: no trusted key", Failure::NoTlogEntry),
    );
    for key in &keys.keys {
        match root.verify_with_key(bundle, Artifact::Sha256Hex(subject), key.key.spki_der()) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

/// The sha256 digest the statement names first (what a DSSE bundle's log entry is checked over).
fn statement_sha256(claimed: &Claimed) -> Result<&str, Rejection> {
    claimed
        .statement
        .subject
        .iter()
        .find_map(|s| s.digest.get("sha256"))
        .map(String::as_str)
        .ok_or_else(|| Rejection::new("format", "the statement names no sha256 subject"))
}

#[cfg(test)]
#[path = "attest_tests.rs"]
mod tests;
