//! From what each governing TrustRoot says about each image to the answer the API server gets.
//! Pure.
//!
//! | any image's TrustRoot says no, in mode | answer |
//! |---|---|
//! | `Enforce` | denied, the message naming image, digest, TrustRoot and why |
//! | `Warn` | allowed with an admission warning (kubectl prints it) |
//! | `Audit` | allowed with an admission warning, and an Event for on-call |
//!
//! Every failing TrustRoot is named, so one message explains the whole refusal; a denial also
//! carries one Status cause per failing (image, TrustRoot[, predicate type]) with a reason from
//! a closed set and the image's field, for clients that read structure rather than text.

use crate::{
    crd::Mode,
    verify::{AttestationCheck, AttestationState},
};

/// What one TrustRoot said about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Verified,
    /// No signature at all.
    Unsigned,
    /// Signatures, none by a key the TrustRoot accepts now.
    Untrusted(String),
    /// Valid signatures by too few distinct accepted keys.
    Threshold(String),
    /// Signed, but required attestations are not verified: the checks that failed, in the
    /// operator's words (see `operator::attestations`).
    Attestations(Vec<AttestationCheck>),
    /// No current answer from the registry, and no cached verdict young enough to stand in.
    Unreachable(String),
}

impl Answer {
    /// The metrics label and Event wording of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unsigned => "unsigned",
            Self::Untrusted(_) => "untrusted",
            Self::Threshold(_) => "threshold",
            Self::Attestations(failed) => failed.first().map_or("attestation", attestation_reason),
            Self::Unreachable(_) => "registry",
        }
    }

    fn why(&self) -> String {
        match self {
            Self::Verified => "verified".into(),
            Self::Unsigned => "no signature".into(),
            Self::Untrusted(r) => format!("no trusted key: {r}"),
            Self::Threshold(r) => format!("threshold not met: {r}"),
            Self::Attestations(failed) => {
                let reasons: Vec<String> = failed.iter().map(AttestationCheck::reason).collect();
                reasons.join("; ")
            }
            Self::Unreachable(r) => format!("registry unreachable: {r}"),
        }
    }
}

/// The metrics label and cause reason of one failed attestation: the operator's state
/// (`countersign_trust_root_attestations{state}`), snake-cased like the other reasons.
fn attestation_reason(check: &AttestationCheck) -> &'static str {
    match check.state {
        AttestationState::Missing => "attestation_missing",
        AttestationState::PolicyFailed { .. } => "attestation_policy_failed",
        AttestationState::OtherDigest { .. } => "attestation_other_digest",
        AttestationState::BadSignature { .. } => "attestation_bad_signature",
        AttestationState::Verified { .. } | AttestationState::Error { .. } => "attestation",
    }
}

/// One image under one governing TrustRoot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub image: String,
    /// The image's field in the object (a Status cause's `field`).
    pub field: String,
    /// The digest verified (resolved from the tag when the image names one).
    pub digest: Option<String>,
    pub root: String,
    pub mode: Mode,
    pub answer: Answer,
}

impl Judged {
    fn describe(&self) -> String {
        let digest = match &self.digest {
            Some(d) if !self.image.contains(d.as_str()) => format!(" ({d})"),
            _ => String::new(),
        };
        format!(
            "image {}{digest}: TrustRoot {} ({:?}): {}",
            self.image,
            self.root,
            self.mode,
            self.answer.why()
        )
    }

    /// One cause per thing wrong: each failed attestation on its own, else the answer.
    fn causes(&self) -> Vec<Cause> {
        let cause = |reason, answer: &Answer| Cause {
            reason,
            field: self.field.clone(),
            message: Judged {
                answer: answer.clone(),
                ..self.clone()
            }
            .describe(),
        };
        match &self.answer {
            Answer::Attestations(failed) => failed
                .iter()
                .map(|c| cause(attestation_reason(c), &Answer::Attestations(vec![c.clone()])))
                .collect(),
            other => vec![cause(other.reason(), other)],
        }
    }
}

/// A structured reason for a denial (a Status cause).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `unsigned`, `untrusted`, `threshold`, `registry` or `attestation_*`.
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

/// The answer for the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `allowed`, `warned` or `denied`: the metrics label.
    pub decision: &'static str,
    /// The metrics label: `verified`, `ungoverned`, or the first refusal's reason.
    pub reason: &'static str,
    /// Why it was denied, for the API server to return to the client.
    pub message: Option<String>,
    /// Why it was denied, one cause per refusal (empty when allowed).
    pub causes: Vec<Cause>,
    /// Admission warnings (Warn and Audit refusals).
    pub warnings: Vec<String>,
    /// Refusals to record as Events: Audit and Enforce ones.
    pub recorded: Vec<String>,
}

/// Decides on every judged (image, TrustRoot) pair of one object.
pub fn decide(judged: &[Judged]) -> Decision {
    let failing: Vec<&Judged> = judged.iter().filter(|j| j.answer != Answer::Verified).collect();
    let reason = failing.first().map_or(
        if judged.is_empty() {
            "ungoverned"
        } else {
            "verified"
        },
        |j| j.answer.reason(),
    );
    let denying: Vec<&Judged> = failing
        .iter()
        .copied()
        .filter(|j| j.mode == Mode::Enforce)
        .collect();
    let recorded = failing
        .iter()
        .filter(|j| j.mode != Mode::Warn)
        .map(|j| j.describe())
        .collect();
    if let Some(first) = denying.first() {
        let all: Vec<String> = denying.iter().map(|j| j.describe()).collect();
        return Decision {
            allowed: false,
            decision: "denied",
            reason: first.answer.reason(),
            message: Some(format!("countersign: {}", all.join("; "))),
            causes: denying.iter().flat_map(|j| j.causes()).collect(),
            warnings: Vec::new(),
            recorded,
        };
    }
    let warnings: Vec<String> = failing
        .iter()
        .map(|j| format!("countersign: {}", j.describe()))
        .collect();
    Decision {
        allowed: true,
        decision: if warnings.is_empty() { "allowed" } else { "warned" },
        reason,
        message: None,
        causes: Vec::new(),
        warnings,
        recorded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(root: &str, mode: Mode, answer: Answer) -> Judged {
        Judged {
            image: "r.example/app:1".into(),
            field: "spec.containers[0].image".into(),
            digest: Some("sha256:ab".into()),
            root: root.into(),
            mode,
            answer,
        }
    }

    #[test]
    fn nothing_governed_or_everything_verified_is_allowed_silently() {
        let d = decide(&[]);
        assert_eq!((d.allowed, d.decision, d.reason), (true, "allowed", "ungoverned"));
        let d = decide(&[judged("a", Mode::Enforce, Answer::Verified)]);
        assert_eq!((d.allowed, d.decision, d.reason), (true, "allowed", "verified"));
        assert!(d.warnings.is_empty() && d.recorded.is_empty() && d.message.is_none());
    }

    #[test]
    fn enforce_denies_naming_image_digest_root_and_why() {
        let d = decide(&[
            judged("audit", Mode::Audit, Answer::Unsigned),
            judged("prod", Mode::Enforce, Answer::Unsigned),
        ]);
        assert_eq!((d.allowed, d.decision, d.reason), (false, "denied", "unsigned"));
        assert_eq!(
            d.message.as_deref(),
            Some("countersign: image r.example/app:1 (sha256:ab): TrustRoot prod (Enforce): no signature")
        );
        assert_eq!(d.recorded.len(), 2);
    }

    #[test]
    fn warn_and_audit_admit_with_warnings_and_only_audit_records() {
        let d = decide(&[
            judged("w", Mode::Warn, Answer::Threshold("signed by 1 of the 2".into())),
            judged("a", Mode::Audit, Answer::Unreachable("timeout".into())),
        ]);
        assert_eq!((d.allowed, d.decision, d.reason), (true, "warned", "threshold"));
        assert_eq!(d.warnings.len(), 2);
        assert!(d.warnings[0].ends_with("threshold not met: signed by 1 of the 2"));
        assert_eq!(d.recorded.len(), 1);
        assert!(d.recorded[0].contains("TrustRoot a (Audit): registry unreachable: timeout"));
    }

    #[test]
    fn failed_attestations_deny_with_one_cause_per_predicate_type() {
        let failed = vec![
            AttestationCheck {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                state: AttestationState::Missing,
            },
            AttestationCheck {
                predicate_type: "https://spdx.dev/Document".into(),
                state: AttestationState::PolicyFailed {
                    expression: "false".into(),
                    detail: "the policy returned false".into(),
                },
            },
        ];
        let d = decide(&[judged(
            "prod",
            Mode::Enforce,
            Answer::Attestations(failed.clone()),
        )]);
        assert_eq!((d.allowed, d.reason), (false, "attestation_missing"));
        let reasons: Vec<&str> = d.causes.iter().map(|c| c.reason).collect();
        assert_eq!(reasons, ["attestation_missing", "attestation_policy_failed"]);
        assert!(d.causes.iter().all(|c| c.field == "spec.containers[0].image"));
        assert!(
            d.causes[0]
                .message
                .ends_with("TrustRoot prod (Enforce): attestation https://slsa.dev/provenance/v1 missing")
        );
        assert!(d.causes[1].message.ends_with(
            "attestation https://spdx.dev/Document fails policy \"false\": the policy returned false"
        ));
        assert!(
            d.message
                .as_deref()
                .is_some_and(|m| m.contains("provenance/v1 missing; attestation"))
        );

        let d = decide(&[judged("w", Mode::Warn, Answer::Attestations(failed))]);
        assert_eq!(
            (d.allowed, d.decision, d.reason),
            (true, "warned", "attestation_missing")
        );
        assert!(d.causes.is_empty());
        assert!(
            d.warnings[0].contains("TrustRoot w (Warn): attestation https://slsa.dev/provenance/v1 missing")
        );
    }
}
