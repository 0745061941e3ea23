//! A rotation's status and Events. [`build`] and [`announcements`] are pure; [`apply`] writes
//! by server-side apply on the status subresource, under the operator's field manager.
//!
//! Events, once per transition (the phase recorded in status is what a transition is measured
//! against, so a restart or a new leader does not announce again):
//!
//! | phase reached | Event | type |
//! |---|---|---|
//! | DualAcceptance | `RotationStarted` (window opened) | Normal |
//! | Stalled | `RotationStalled` | Warning |
//! | Completed | `KeyRetired`, then `RotationCompleted` | Normal |
//! | Aborted | `RotationAborted` | Warning |
//! | Invalid | `RotationInvalid` | Warning |

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::Assessed;
use crate::{
    crd::{KeyRotation, KeyRotationPhase, KeyRotationStatus},
    operator::{error::Error, events::Announcement, status::Conditions},
};

pub const ROTATION_STARTED: &str = "RotationStarted";
pub const ROTATION_STALLED: &str = "RotationStalled";
pub const KEY_RETIRED: &str = "KeyRetired";
pub const ROTATION_COMPLETED: &str = "RotationCompleted";
pub const ROTATION_ABORTED: &str = "RotationAborted";
pub const ROTATION_INVALID: &str = "RotationInvalid";

/// The status to write for `a`, given what was written before.
pub fn build(a: &Assessed, previous: Option<&KeyRotationStatus>, now: Timestamp) -> KeyRotationStatus {
    let d = &a.decision;
    let generation = a.rotation.metadata.generation;
    let phase_since = match previous {
        Some(p) if p.phase == Some(d.phase) => p.phase_since.clone(),
        _ => None,
    }
    .unwrap_or(Time(now));
    let conditions = Conditions {
        previous: previous.map(|p| p.conditions.as_slice()).unwrap_or_default(),
        generation,
        now,
    };
    let condition =
        |type_: &str, ok: bool, reason: &str, message: String| conditions.set(type_, ok, reason, message);
    let valid = match &d.invalid {
        Some(i) => condition("Valid", false, i.reason, i.message.clone()),
        None => condition(
            "Valid",
            true,
            "Valid",
            format!(
                "TrustRoot {} declares {} and {}",
                a.spec().trust_root_ref,
                a.spec().from_key,
                a.spec().to_key
            ),
        ),
    };
    let completed = d.phase == KeyRotationPhase::Completed;
    let completed = condition("Completed", completed, phase_name(d.phase), phase_message(a));
    let (progress, stragglers) = match (&a.tally, d.phase) {
        // A finished rotation keeps the last progress it saw: the story of how it ended.
        (_, KeyRotationPhase::Completed | KeyRotationPhase::Aborted) => (
            previous.and_then(|p| p.progress),
            previous.map(|p| p.stragglers.clone()).unwrap_or_default(),
        ),
        (Some(t), _) => (Some(t.progress), t.stragglers.clone()),
        (None, _) => (None, Vec::new()),
    };
    KeyRotationStatus {
        observed_generation: generation,
        phase: Some(d.phase),
        progress,
        // A completed rotation has no stragglers left to act on.
        stragglers: if completed.status == "True" {
            Vec::new()
        } else {
            stragglers
        },
        window_start: Some(Time(d.window_start)),
        window_end: d.window_end.map(Time),
        completed_at: d.completed_at.map(Time),
        phase_since: Some(phase_since),
        conditions: vec![valid, completed],
    }
}

pub fn phase_name(phase: KeyRotationPhase) -> &'static str {
    match phase {
        KeyRotationPhase::Scheduled => "Scheduled",
        KeyRotationPhase::DualAcceptance => "DualAcceptance",
        KeyRotationPhase::Retiring => "Retiring",
        KeyRotationPhase::Completed => "Completed",
        KeyRotationPhase::Stalled => "Stalled",
        KeyRotationPhase::Aborted => "Aborted",
        KeyRotationPhase::Invalid => "Invalid",
    }
}

/// What the phase means, in a sentence for `kubectl describe`.
fn phase_message(a: &Assessed) -> String {
    let (from, to) = (&a.spec().from_key, &a.spec().to_key);
    let d = &a.decision;
    let end = d.window_end.map(|t| t.to_string()).unwrap_or_default();
    let stuck = a.tally.as_ref().map_or(0, |t| t.progress.on_old_key_only);
    match d.phase {
        KeyRotationPhase::Scheduled => {
            format!(
                "{from} accepted; {to} held back until the window opens at {}",
                d.window_start
            )
        }
        KeyRotationPhase::DualAcceptance => format!("{from} and {to} both accepted until {end}"),
        KeyRotationPhase::Retiring => {
            format!("window closed; waiting for a current answer on every workload before retiring {from}")
        }
        KeyRotationPhase::Stalled => format!(
            "window closed at {end}, but {stuck} workload(s) verify with {from} only: both keys stay accepted until they are re-signed with {to} (see status.stragglers)"
        ),
        KeyRotationPhase::Completed => format!(
            "{from} retired at {}; only {to} accepted",
            d.completed_at.map(|t| t.to_string()).unwrap_or_default()
        ),
        KeyRotationPhase::Aborted => {
            format!("aborted: {from} and {to} accepted as the TrustRoot declares them")
        }
        KeyRotationPhase::Invalid => d.invalid.as_ref().map(|i| i.message.clone()).unwrap_or_default(),
    }
}

/// The Events of the change from the recorded phase to the new one.
pub fn announcements(a: &Assessed, before: Option<KeyRotationPhase>) -> Vec<Announcement> {
    let after = a.decision.phase;
    if before == Some(after) {
        return Vec::new();
    }
    let (from, to, root) = (&a.spec().from_key, &a.spec().to_key, &a.spec().trust_root_ref);
    let note = phase_message(a);
    let event = |reason, warning, note: String| Announcement {
        reason,
        warning,
        note,
    };
    match after {
        KeyRotationPhase::DualAcceptance => vec![event(ROTATION_STARTED, false, note)],
        KeyRotationPhase::Stalled => vec![event(ROTATION_STALLED, true, note)],
        KeyRotationPhase::Completed => vec![
            event(
                KEY_RETIRED,
                false,
                format!("key {root}/{from} retired; signatures by it are no longer accepted"),
            ),
            event(
                ROTATION_COMPLETED,
                false,
                format!("TrustRoot {root} now accepts {to}: {note}"),
            ),
        ],
        KeyRotationPhase::Aborted => vec![event(ROTATION_ABORTED, true, note)],
        KeyRotationPhase::Invalid => vec![event(ROTATION_INVALID, true, note)],
        KeyRotationPhase::Scheduled | KeyRotationPhase::Retiring => Vec::new(),
    }
}

/// Applies `status` to the KeyRotation `name` (server-side apply, forced: the status is ours).
pub async fn apply(client: &Client, name: &str, status: &KeyRotationStatus) -> Result<(), Error> {
    let api: Api<KeyRotation> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "KeyRotation",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(crate::operator::status::FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(drop)
    .map_err(|source| Error::RotationStatus {
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{
        crd::{KeyRotationSpec, RetirementPolicy, RotationWindow},
        rotation::{Gate, RootKeys, decide},
    };

    fn assessed(now: &str, gate: Gate, previous: Option<&KeyRotationStatus>) -> Assessed {
        let spec = KeyRotationSpec {
            trust_root_ref: "payments".into(),
            from_key: "old".into(),
            to_key: "new".into(),
            window: RotationWindow {
                start: Time("2026-12-01T00:00:00Z".parse().unwrap_or_default()),
                duration: "1h".into(),
            },
            retirement: RetirementPolicy::WhenResigned,
            abort: false,
            retire_early: false,
        };
        let keys = RootKeys::Found {
            from: Some(true),
            to: Some(true),
        };
        let now: Timestamp = now.parse().unwrap_or_default();
        let decision = decide(&spec, previous, &keys, None, gate, now);
        Assessed {
            rotation: Arc::new(KeyRotation::new("rot", spec)),
            decision,
            tally: None,
        }
    }

    fn reasons(a: &Assessed, before: Option<KeyRotationPhase>) -> Vec<&'static str> {
        announcements(a, before).iter().map(|e| e.reason).collect()
    }

    #[test]
    fn each_transition_is_announced_once() {
        let open = assessed("2026-12-01T00:10:00Z", Gate::NotMet, None);
        assert_eq!(
            reasons(&open, Some(KeyRotationPhase::Scheduled)),
            [ROTATION_STARTED]
        );
        assert!(reasons(&open, Some(KeyRotationPhase::DualAcceptance)).is_empty());
        let stalled = assessed("2026-12-01T02:00:00Z", Gate::NotMet, None);
        assert_eq!(
            reasons(&stalled, Some(KeyRotationPhase::DualAcceptance)),
            [ROTATION_STALLED]
        );
        let done = assessed("2026-12-01T02:00:00Z", Gate::Met, None);
        assert_eq!(
            reasons(&done, Some(KeyRotationPhase::Stalled)),
            [KEY_RETIRED, ROTATION_COMPLETED]
        );
    }

    #[test]
    fn status_keeps_transition_times_and_the_story_of_a_completion() {
        let t0: Timestamp = "2026-12-01T00:10:00Z".parse().unwrap_or_default();
        let open = assessed("2026-12-01T00:10:00Z", Gate::NotMet, None);
        let first = build(&open, None, t0);
        assert_eq!(first.phase, Some(KeyRotationPhase::DualAcceptance));
        assert_eq!(first.phase_since, Some(Time(t0)));
        let later = build(&open, Some(&first), t0 + jiff::SignedDuration::from_secs(60));
        assert_eq!(
            later, first,
            "nothing changed: the same status, so nothing is written"
        );
        let done = assessed("2026-12-01T02:00:00Z", Gate::Met, Some(&first));
        let status = build(&done, Some(&first), t0);
        let completed = status.conditions.iter().find(|c| c.type_ == "Completed");
        assert_eq!(completed.map(|c| c.status.as_str()), Some("True"));
        assert!(status.stragglers.is_empty());
        assert_eq!(
            status.window_end.map(|t| t.0.to_string()).as_deref(),
            Some("2026-12-01T01:00:00Z")
        );
    }
}
