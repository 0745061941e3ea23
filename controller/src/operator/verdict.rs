//! From what was found for each governed image to the verdict recorded on a workload. Pure.
//!
//! A workload's verdict is the worst of its governed (image, TrustRoot) pairs: `Failed` (some
//! signature present, none valid for the keys) over `Unsigned` over `Verified`. When a pair has
//! no answer at all (the registry could not be asked and nothing was known before), the
//! previous verdict is kept and marked stale: a registry outage never changes a verdict. When the
//! registry is down but an earlier answer is cached, the verdict is computed from that answer
//! (so a key removed meanwhile still counts) and marked stale too.

use std::collections::BTreeSet;

use crate::{reference::Digest, verify::cause};

/// A workload's verdict, as written in `countersign.dev/verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Verified,
    Unsigned,
    Failed,
    /// Never verified: the registry could not be asked yet.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "Verified",
            Self::Unsigned => "Unsigned",
            Self::Failed => "Failed",
            Self::Unknown => "Unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Verified, Self::Unsigned, Self::Failed, Self::Unknown]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Higher is worse; Unknown is never the worst of known answers.
    fn severity(self) -> u8 {
        match self {
            Self::Verified => 0,
            Self::Unknown => 1,
            Self::Unsigned => 2,
            Self::Failed => 3,
        }
    }
}

/// What the signatures of one digest say under one TrustRoot's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Verified {
        keys: Vec<String>,
    },
    Unsigned,
    /// `reason` for people, `causes` for scripts (`crate::verify::cause`), sorted.
    Failed {
        reason: String,
        causes: Vec<String>,
    },
}

impl Check {
    /// A failed check for `reason`, with one cause.
    pub fn failed(reason: impl Into<String>, cause: &str) -> Self {
        Self::Failed {
            reason: reason.into(),
            causes: vec![cause.to_string()],
        }
    }

    /// Why it is not Verified, for scripts (`crate::verify::cause`).
    pub fn causes(&self) -> Vec<String> {
        match self {
            Self::Verified { .. } => Vec::new(),
            Self::Unsigned => vec![cause::NO_SIGNATURE.to_string()],
            Self::Failed { causes, .. } => causes.clone(),
        }
    }

    fn verdict(&self) -> Verdict {
        match self {
            Self::Verified { .. } => Verdict::Verified,
            Self::Unsigned => Verdict::Unsigned,
            Self::Failed { .. } => Verdict::Failed,
        }
    }
}

/// One governed (image, TrustRoot) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The image as people should read it: `repo@sha256:…` when the digest is known.
    pub image: String,
    pub digest: Option<Digest>,
    pub root: String,
    /// `None`: no answer at all (the registry could not be asked, nothing known before).
    pub check: Option<Check>,
    /// The registry error category when the answer is not current (or missing).
    pub stale: Option<&'static str>,
}

/// Whether a tag still points at the running digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagCheck {
    Same,
    Moved {
        image: String,
        now: Digest,
        running: Digest,
    },
    /// The tag could not be resolved: whatever was recorded stays.
    Unknown,
}

/// What is recorded for a workload (its WorkloadVerdict, see `records`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub verdict: Option<Verdict>,
    /// `trustroot/key`, sorted: the keys that verified (when Verified).
    pub verified_by: Vec<String>,
    /// Why it is not Verified, for people.
    pub reason: Option<String>,
    /// Why it is not Verified, as low-cardinality causes (`crate::verify::cause`), sorted.
    pub causes: Vec<String>,
    /// `repo@sha256:…` of the governed images, sorted.
    pub digests: Vec<String>,
    /// When the verdict last changed (RFC 3339).
    pub since: Option<String>,
    /// The registry error category while the verdict is kept from an earlier answer.
    pub stale: Option<String>,
    /// Tags that moved away from the running digest, for people.
    pub drift: Option<String>,
    /// When anything recorded here last changed (the verdict, the stale mark, the drift), to
    /// the millisecond: the state a transition leaves is never the same twice, so the name of
    /// its Event, derived from that state (see `events::announce`), never repeats either.
    pub changed: Option<String>,
}

#[cfg(test)]
impl Recorded {
    /// A Verified state marked stale, every kind of field set but `reason` and `drift`: the
    /// unit tests' example of what is recorded.
    pub(crate) fn example() -> Self {
        Self {
            verdict: Some(Verdict::Verified),
            verified_by: vec!["prod/a".into(), "prod/b".into()],
            reason: None,
            causes: Vec::new(),
            digests: vec!["reg/app@sha256:1".into()],
            since: Some("2026-09-01T10:00:00Z".into()),
            stale: Some("unreachable".into()),
            drift: None,
            changed: Some("2026-09-01T10:00:00.250Z".into()),
        }
    }
}

/// Longest `reason` recorded: it is for people, and Event notes stop at 1 kB.
pub const MAX_REASON: usize = 512;

/// The state to record, from this pass' findings and what was recorded before.
pub fn derive(findings: &[Finding], tags: &[TagCheck], previous: Option<&Recorded>, now: &str) -> Recorded {
    let stale = findings.iter().find_map(|f| f.stale).map(str::to_string);
    let mut next = match known_checks(findings) {
        Some(checks) => from_checks(&checks),
        None => kept(previous, stale.as_deref()),
    };
    next.stale = stale;
    next.drift = drift(tags, previous);
    next.since = match previous {
        Some(p) if p.verdict == next.verdict => p.since.clone(),
        _ => Some(now.to_string()),
    };
    next.changed = previous.and_then(|p| p.changed.clone());
    if previous != Some(&next) {
        next.changed = Some(now.to_string());
    }
    next
}

/// The findings' checks, when every one has an answer.
fn known_checks(findings: &[Finding]) -> Option<Vec<(&Finding, &Check)>> {
    findings
        .iter()
        .map(|f| f.check.as_ref().map(|c| (f, c)))
        .collect()
}

fn from_checks(checks: &[(&Finding, &Check)]) -> Recorded {
    let worst = checks
        .iter()
        .map(|(_, c)| c.verdict())
        .max_by_key(|v| v.severity())
        .unwrap_or(Verdict::Verified);
    let verified_by: BTreeSet<String> = checks
        .iter()
        .filter_map(|(f, c)| match c {
            Check::Verified { keys } => Some(keys.iter().map(move |k| format!("{}/{k}", f.root))),
            _ => None,
        })
        .flatten()
        .collect();
    let worst_checks = || {
        checks
            .iter()
            .filter(move |(_, c)| c.verdict() == worst && worst != Verdict::Verified)
    };
    let reasons: BTreeSet<String> = worst_checks().map(|(f, c)| describe(f, c)).collect();
    let causes: BTreeSet<String> = worst_checks().flat_map(|(_, c)| c.causes()).collect();
    Recorded {
        verdict: Some(worst),
        verified_by: if worst == Verdict::Verified {
            verified_by.into_iter().collect()
        } else {
            Vec::new()
        },
        reason: (!reasons.is_empty()).then(|| truncate(&reasons.into_iter().collect::<Vec<_>>().join("; "))),
        causes: causes.into_iter().collect(),
        digests: digests(checks.iter().map(|(f, _)| *f)),
        ..Recorded::default()
    }
}

fn describe(finding: &Finding, check: &Check) -> String {
    let what = match check {
        Check::Verified { .. } => "verified".to_string(),
        Check::Unsigned => "no signature".to_string(),
        Check::Failed { reason, .. } => reason.clone(),
    };
    format!("{}: {what} (TrustRoot {})", finding.image, finding.root)
}

fn digests<'a>(findings: impl Iterator<Item = &'a Finding>) -> Vec<String> {
    let set: BTreeSet<String> = findings
        .filter(|f| f.digest.is_some())
        .map(|f| f.image.clone())
        .collect();
    set.into_iter().collect()
}

/// The previous verdict, kept as it was; `Unknown` when there was none.
fn kept(previous: Option<&Recorded>, stale: Option<&str>) -> Recorded {
    match previous.filter(|p| p.verdict.is_some()) {
        Some(p) => Recorded {
            verdict: p.verdict,
            verified_by: p.verified_by.clone(),
            reason: p.reason.clone(),
            causes: p.causes.clone(),
            digests: p.digests.clone(),
            ..Recorded::default()
        },
        None => Recorded {
            verdict: Some(Verdict::Unknown),
            reason: Some(format!(
                "not verified yet: the registry could not be asked ({})",
                stale.unwrap_or("error")
            )),
            ..Recorded::default()
        },
    }
}

fn drift(tags: &[TagCheck], previous: Option<&Recorded>) -> Option<String> {
    let moved: BTreeSet<String> = tags
        .iter()
        .filter_map(|t| match t {
            TagCheck::Moved { image, now, running } => {
                Some(format!("{image} now points to {now}, not the running {running}"))
            }
            _ => None,
        })
        .collect();
    if !moved.is_empty() {
        return Some(truncate(&moved.into_iter().collect::<Vec<_>>().join("; ")));
    }
    if tags.contains(&TagCheck::Unknown) {
        return previous.and_then(|p| p.drift.clone());
    }
    None
}

/// Cuts `s` to [`MAX_REASON`] bytes at a character boundary.
pub fn truncate(s: &str) -> String {
    truncate_to(s, MAX_REASON)
}

/// Cuts `s` to `max` bytes (at least 4) at a character boundary, ending with `…` when cut.
pub fn truncate_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.max(4) - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Findings for unit tests, here and in `reports`: image `n` of `reg.example`, pinned by a digest
/// of `n` repeated.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Check, Finding};
    use crate::reference::Digest;

    pub fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn finding(n: u8, root: &str, check: Option<Check>, stale: Option<&'static str>) -> Finding {
        Finding {
            image: format!("reg.example/app{n}@{}", digest(n)),
            digest: Some(digest(n)),
            root: root.into(),
            check,
            stale,
        }
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
