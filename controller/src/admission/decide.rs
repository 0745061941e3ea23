//! From what each governing TrustRoot says about each image to the answer the API server gets.
//! Pure.
//!
//! | any image's TrustRoot says no, in mode | answer |
//! |---|---|
//! | `Enforce` | denied, the message naming image, digest, TrustRoot and why |
//! | `Warn` | allowed with an admission warning (kubectl prints it) |
//! | `Audit` | allowed with an admission warning, and an Event for on-call |
//!
//! Every failing TrustRoot is named, so one message explains the whole refusal.

use crate::crd::Mode;

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
            Self::Unreachable(_) => "registry",
        }
    }

    fn why(&self) -> String {
        match self {
            Self::Verified => "verified".into(),
            Self::Unsigned => "no signature".into(),
            Self::Untrusted(r) => format!("no trusted key: {r}"),
            Self::Threshold(r) => format!("threshold not met: {r}"),
            Self::Unreachable(r) => format!("registry unreachable: {r}"),
        }
    }
}

/// One image under one governing TrustRoot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub image: String,
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
}
