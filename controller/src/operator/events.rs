//! Events, on transitions only. [`announcements`] is pure: from the recorded state before and
//! after a pass to what to announce. An unchanged verdict announces nothing, and since the
//! previous state survives restarts (in its WorkloadVerdict), neither does a restart.
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
//!
//! A transition's Events are published once, whatever happens to the leader: see [`announce`].

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event as K8sEvent},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType, Recorder},
};

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

/// Publishes the Event of a workload's transition under a name derived from the transition
/// itself (the workload's uid, the reason, and the state it leaves, in the key-value form of
/// `annotations::encode`): publishing it again creates nothing, the API server answers 409 and
/// that counts as published. So the Event can go out *before* the record of the transition: a
/// leader killed between the two leaves the record as it was, its successor computes the same
/// transition from it, and its Event is refused as a duplicate; in the other order, the Event
/// was lost with the leader (the record already said the transition had happened).
pub async fn announce(
    client: &Client,
    instance: &str,
    workload: &WorkloadRef,
    previous: Option<&Recorded>,
    a: &Announcement,
) -> Result<(), Error> {
    let name = transition_name(workload, previous, a.reason);
    let event = K8sEvent {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(workload.namespace.clone()),
            ..ObjectMeta::default()
        },
        action: Some("Verify".into()),
        reason: Some(a.reason.into()),
        note: Some(super::verdict::truncate_to(&a.note, MAX_NOTE)),
        type_: Some(if a.warning { "Warning" } else { "Normal" }.into()),
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        regarding: Some(workload.object_ref()),
        reporting_controller: Some(super::CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        ..K8sEvent::default()
    };
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), &workload.namespace);
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(source) => Err(Error::Event {
            reason: a.reason,
            workload: workload.to_string(),
            source,
        }),
    }
}

/// `<workload>.<16 hex digits>`: the digits hash the transition (see [`announce`]). The
/// previous state's `changed` (to the millisecond) tells two transitions of the same kind apart:
/// a verdict marked stale twice leaves two different states.
fn transition_name(workload: &WorkloadRef, previous: Option<&Recorded>, reason: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [workload.uid.as_str(), reason] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    for (k, v) in previous.map(super::annotations::encode).unwrap_or_default() {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    let digest = hex::encode(&hash.finalize()[..8]);
    // An Event's name is a DNS subdomain: at most 253 characters.
    let prefix: String = workload.name.chars().take(200).collect();
    format!("{prefix}.{digest}")
}

/// Publishes `a` on any object (`what` names it in errors) through the one shared recorder (it
/// aggregates repeats into an EventSeries, which only works when every event goes through the
/// same one): admission decisions and rotations, which are not transitions of a workload.
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
    fn a_transition_names_its_event_and_two_transitions_differ() {
        let w = WorkloadRef {
            kind: super::super::workload::WorkloadKind::Pod,
            namespace: "ns".into(),
            name: "app".into(),
            uid: "u1".into(),
        };
        let at = |changed: &str| Recorded {
            changed: Some(changed.into()),
            ..rec(Verdict::Verified)
        };
        let first = at("2026-09-01T10:00:00.100Z");
        let name = transition_name(&w, Some(&first), SIGNATURE_DRIFT);
        // The same transition, computed again (by a successor): the same name.
        assert_eq!(name, transition_name(&w, Some(&first.clone()), SIGNATURE_DRIFT));
        assert!(
            name.starts_with("app.") && name.len() == "app.".len() + 16,
            "{name}"
        );
        // The same kind of transition later (the verdict, or its stale mark, came and went in
        // between, so it was recorded again: `changed` moved), another
        // reason, another workload, the first verdict: other names.
        let later = at("2026-09-01T10:00:00.600Z");
        let other = WorkloadRef {
            uid: "u2".into(),
            ..w.clone()
        };
        let names = [
            transition_name(&w, Some(&later), SIGNATURE_DRIFT),
            transition_name(&w, Some(&first), DIGEST_DRIFT),
            transition_name(&other, Some(&first), SIGNATURE_DRIFT),
            transition_name(&w, None, SIGNATURE_DRIFT),
        ];
        for n in &names {
            assert_ne!(n, &name);
        }
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
