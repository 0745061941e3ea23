//! Events, on transitions only. [`announcements`] is pure: from the recorded state before and
//! after a pass to what to announce. An unchanged verdict announces nothing, and since the
//! previous state survives restarts (in the annotations), neither does a restart.
//!
//! | before → after | Event | type |
//! |---|---|---|
//! | anything but Verified → Verified | `SignatureVerified` | Normal |
//! | Verified → Unsigned / Failed | `SignatureDrift`, with its cause | Warning |
//! | nothing, Unknown, Failed → Unsigned | `Unsigned` | Warning |
//! | nothing, Unknown, Unsigned → Failed | `VerificationFailed` | Warning |
//! | a tag moves away from the running digest | `DigestDrift` | Warning |
//! | current → kept because the registry could not be asked | `VerificationStale` | Warning |
//!
//! Recovering from stale with the same verdict announces nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

use super::{
    error::Error,
    verdict::{Recorded, Verdict},
    workload::WorkloadRef,
};

pub const SIGNATURE_VERIFIED: &str = "SignatureVerified";
pub const UNSIGNED: &str = "Unsigned";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
pub const SIGNATURE_DRIFT: &str = "SignatureDrift";
pub const DIGEST_DRIFT: &str = "DigestDrift";
pub const VERIFICATION_STALE: &str = "VerificationStale";

/// Event notes stop at 1 kB.
const MAX_NOTE: usize = 1000;

/// One Event to publish on a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub reason: &'static str,
    pub warning: bool,
    pub note: String,
}

/// What to announce for the change `previous` → `next`. `refusal("root/key")` says why a key
/// that verified before is not accepted by its TrustRoot now (`None`: it still is): the cause
/// of a drift, e.g. "removed from its trust root" or "retired by KeyRotation payments-2026".
pub fn announcements(
    previous: Option<&Recorded>,
    next: &Recorded,
    refusal: impl Fn(&str) -> Option<String>,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    let before = previous.and_then(|p| p.verdict);
    if let Some(a) = verdict_change(before, previous, next, refusal) {
        out.push(a);
    }
    let drift_before = previous.and_then(|p| p.drift.as_ref());
    if let Some(drift) = next.drift.as_ref().filter(|d| Some(*d) != drift_before) {
        out.push(warning(DIGEST_DRIFT, format!("tag moved: {drift}")));
    }
    let stale_before = previous.is_some_and(|p| p.stale.is_some());
    if let (Some(category), false) = (&next.stale, stale_before) {
        let kept = next.verdict.map_or("no", Verdict::as_str);
        out.push(warning(
            VERIFICATION_STALE,
            format!("the registry could not be asked ({category}); keeping the {kept} verdict until it can"),
        ));
    }
    out
}

fn verdict_change(
    before: Option<Verdict>,
    previous: Option<&Recorded>,
    next: &Recorded,
    refusal: impl Fn(&str) -> Option<String>,
) -> Option<Announcement> {
    let after = next.verdict?;
    if before == Some(after) {
        return None;
    }
    let reason = next.reason.as_deref().unwrap_or_default();
    match (before, after) {
        (_, Verdict::Verified) => Some(Announcement {
            reason: SIGNATURE_VERIFIED,
            warning: false,
            note: format!(
                "{} verified by {}",
                next.digests.join(", "),
                next.verified_by.join(", ")
            ),
        }),
        (Some(Verdict::Verified), Verdict::Unsigned | Verdict::Failed) => {
            let cause = drift_cause(previous, after, &refusal);
            Some(warning(
                SIGNATURE_DRIFT,
                format!("was Verified, now {}: {cause}. {reason}", after.as_str()),
            ))
        }
        (_, Verdict::Unsigned) => Some(warning(UNSIGNED, reason.to_string())),
        (_, Verdict::Failed) => Some(warning(VERIFICATION_FAILED, reason.to_string())),
        (_, Verdict::Unknown) => None,
    }
}

/// Why something verified stopped verifying, in words for the on-call.
fn drift_cause(
    previous: Option<&Recorded>,
    after: Verdict,
    refusal: &impl Fn(&str) -> Option<String>,
) -> String {
    if after == Verdict::Unsigned {
        return "signature removed".into();
    }
    let gone: Vec<String> = previous
        .into_iter()
        .flat_map(|p| p.verified_by.iter())
        .filter_map(|k| refusal(k).map(|why| format!("key {k} {why}")))
        .collect();
    if gone.is_empty() {
        "signature no longer valid for the trust root (signature replaced, or the trust root changed)".into()
    } else {
        gone.join("; ")
    }
}

fn warning(reason: &'static str, note: String) -> Announcement {
    Announcement {
        reason,
        warning: true,
        note,
    }
}

/// Publishes `a` on `workload` through the one shared recorder (it aggregates repeats into an
/// EventSeries, which only works when every event goes through the same one).
pub async fn publish(recorder: &Recorder, workload: &WorkloadRef, a: &Announcement) -> Result<(), Error> {
    publish_on(recorder, &workload.object_ref(), &workload.to_string(), a).await
}

/// Publishes `a` on any object (`what` names it in errors), through the same recorder.
pub async fn publish_on(
    recorder: &Recorder,
    object: &ObjectReference,
    what: &str,
    a: &Announcement,
) -> Result<(), Error> {
    let event = Event {
        type_: if a.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: a.reason.to_string(),
        note: Some(super::verdict::truncate_to(&a.note, MAX_NOTE)),
        action: "Verify".into(),
        secondary: None,
    };
    recorder
        .publish(&event, object)
        .await
        .map_err(|source| Error::Event {
            reason: a.reason,
            workload: what.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(verdict: Verdict) -> Recorded {
        Recorded {
            verdict: Some(verdict),
            verified_by: if verdict == Verdict::Verified {
                vec!["prod/ci".into()]
            } else {
                vec![]
            },
            reason: (verdict != Verdict::Verified).then(|| "why".into()),
            digests: vec!["reg/app@sha256:1".into()],
            ..Recorded::default()
        }
    }

    fn reasons(previous: Option<&Recorded>, next: &Recorded) -> Vec<&'static str> {
        announcements(previous, next, |_| None)
            .iter()
            .map(|a| a.reason)
            .collect()
    }

    #[test]
    fn first_verdicts_are_announced_once() {
        assert_eq!(reasons(None, &rec(Verdict::Verified)), [SIGNATURE_VERIFIED]);
        assert_eq!(reasons(None, &rec(Verdict::Unsigned)), [UNSIGNED]);
        assert_eq!(reasons(None, &rec(Verdict::Failed)), [VERIFICATION_FAILED]);
        assert!(reasons(None, &rec(Verdict::Unknown)).is_empty());
        for v in [Verdict::Verified, Verdict::Unsigned, Verdict::Failed] {
            assert!(reasons(Some(&rec(v)), &rec(v)).is_empty(), "{v:?}");
        }
    }

    #[test]
    fn losing_verified_is_drift_with_its_cause() {
        let before = rec(Verdict::Verified);
        let removed = announcements(Some(&before), &rec(Verdict::Unsigned), |_| None);
        assert_eq!(removed[0].reason, SIGNATURE_DRIFT);
        assert!(removed[0].warning);
        assert!(
            removed[0].note.contains("signature removed"),
            "{}",
            removed[0].note
        );
        let key_gone = announcements(Some(&before), &rec(Verdict::Failed), |k| {
            (k == "prod/ci").then(|| "removed from its trust root".to_string())
        });
        assert!(
            key_gone[0].note.contains("key prod/ci removed"),
            "{}",
            key_gone[0].note
        );
        let retired = announcements(Some(&before), &rec(Verdict::Failed), |_| {
            Some("retired by KeyRotation prod-2026".to_string())
        });
        assert!(
            retired[0]
                .note
                .contains("key prod/ci retired by KeyRotation prod-2026"),
            "{}",
            retired[0].note
        );
        let invalid = announcements(Some(&before), &rec(Verdict::Failed), |_| None);
        assert!(invalid[0].note.contains("no longer valid"), "{}", invalid[0].note);
    }

    #[test]
    fn moving_between_bad_verdicts_and_back_to_verified() {
        assert_eq!(
            reasons(Some(&rec(Verdict::Failed)), &rec(Verdict::Unsigned)),
            [UNSIGNED]
        );
        assert_eq!(
            reasons(Some(&rec(Verdict::Unsigned)), &rec(Verdict::Failed)),
            [VERIFICATION_FAILED]
        );
        assert_eq!(
            reasons(Some(&rec(Verdict::Failed)), &rec(Verdict::Verified)),
            [SIGNATURE_VERIFIED]
        );
        assert_eq!(
            reasons(Some(&rec(Verdict::Unknown)), &rec(Verdict::Unsigned)),
            [UNSIGNED]
        );
    }

    #[test]
    fn stale_is_announced_on_entry_only_and_recovery_is_silent() {
        let fresh = rec(Verdict::Verified);
        let stale = Recorded {
            stale: Some("unreachable".into()),
            ..fresh.clone()
        };
        assert_eq!(reasons(Some(&fresh), &stale), [VERIFICATION_STALE]);
        assert!(reasons(Some(&stale), &stale).is_empty());
        assert!(reasons(Some(&stale), &fresh).is_empty());
    }

    #[test]
    fn digest_drift_is_announced_when_it_appears_or_changes() {
        let fresh = rec(Verdict::Verified);
        let drifted = Recorded {
            drift: Some("reg/app:v1 now points to sha256:2".into()),
            ..fresh.clone()
        };
        assert_eq!(reasons(Some(&fresh), &drifted), [DIGEST_DRIFT]);
        assert!(reasons(Some(&drifted), &drifted).is_empty());
        assert!(reasons(Some(&drifted), &fresh).is_empty());
        let again = Recorded {
            drift: Some("reg/app:v1 now points to sha256:3".into()),
            ..fresh
        };
        assert_eq!(reasons(Some(&drifted), &again), [DIGEST_DRIFT]);
    }
}
