use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::crd::RotationWindow;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn spec(retirement: RetirementPolicy) -> KeyRotationSpec {
    KeyRotationSpec {
        trust_root_ref: "payments".into(),
        from_key: "old".into(),
        to_key: "new".into(),
        window: RotationWindow {
            start: Time(at("2026-12-01T00:00:00Z")),
            duration: "72h".into(),
        },
        retirement,
        abort: false,
        retire_early: false,
    }
}

const BOTH: RootKeys = RootKeys::Found {
    from: Some(true),
    to: Some(true),
};

fn phase(spec: &KeyRotationSpec, gate: Gate, now: &str) -> KeyRotationPhase {
    decide(spec, None, &BOTH, None, gate, at(now)).phase
}

#[test]
fn phases_follow_the_window() {
    let s = spec(RetirementPolicy::WhenResigned);
    let before = decide(&s, None, &BOTH, None, Gate::NotMet, at("2026-11-30T00:00:00Z"));
    assert_eq!(before.phase, KeyRotationPhase::Scheduled);
    assert_eq!(before.next_edge, Some(at("2026-12-01T00:00:00Z")));
    let during = decide(&s, None, &BOTH, None, Gate::Met, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        during.phase,
        KeyRotationPhase::DualAcceptance,
        "the gate alone does not end a window"
    );
    assert_eq!(during.next_edge, Some(at("2026-12-04T00:00:00Z")));
    assert_eq!(during.window_end, Some(at("2026-12-04T00:00:00Z")));
}

#[test]
fn when_resigned_waits_for_the_gate_past_the_window() {
    let s = spec(RetirementPolicy::WhenResigned);
    let after = "2026-12-05T00:00:00Z";
    assert_eq!(phase(&s, Gate::NotMet, after), KeyRotationPhase::Stalled);
    assert_eq!(phase(&s, Gate::Unknown, after), KeyRotationPhase::Retiring);
    let done = decide(&s, None, &BOTH, None, Gate::Met, at(after));
    assert_eq!(done.phase, KeyRotationPhase::Completed);
    assert_eq!(done.completed_at, Some(at(after)));
}

#[test]
fn at_window_end_completes_at_the_end_whatever_runs() {
    let s = spec(RetirementPolicy::AtWindowEnd);
    let d = decide(&s, None, &BOTH, None, Gate::NotMet, at("2026-12-09T00:00:00Z"));
    assert_eq!(d.phase, KeyRotationPhase::Completed);
    assert_eq!(
        d.completed_at,
        Some(at("2026-12-04T00:00:00Z")),
        "derived, not the time it was noticed"
    );
}

#[test]
fn retire_early_finishes_inside_the_window_once_the_gate_is_met() {
    let mut s = spec(RetirementPolicy::WhenResigned);
    s.retire_early = true;
    let now = "2026-12-02T00:00:00Z";
    assert_eq!(phase(&s, Gate::NotMet, now), KeyRotationPhase::DualAcceptance);
    assert_eq!(phase(&s, Gate::Unknown, now), KeyRotationPhase::DualAcceptance);
    assert_eq!(phase(&s, Gate::Met, now), KeyRotationPhase::Completed);
    assert_eq!(
        phase(&s, Gate::Met, "2026-11-30T00:00:00Z"),
        KeyRotationPhase::Scheduled
    );
}

#[test]
fn completed_and_aborted_are_final() {
    let s = spec(RetirementPolicy::WhenResigned);
    let completed = KeyRotationStatus {
        phase: Some(KeyRotationPhase::Completed),
        completed_at: Some(Time(at("2026-12-03T00:00:00Z"))),
        ..KeyRotationStatus::default()
    };
    // Even with the key gone from the TrustRoot (as the condition asks) or an abort after the fact.
    let mut aborting = s.clone();
    aborting.abort = true;
    let gone = RootKeys::Found {
        from: None,
        to: Some(true),
    };
    let d = decide(
        &aborting,
        Some(&completed),
        &gone,
        None,
        Gate::NotMet,
        at("2027-01-01T00:00:00Z"),
    );
    assert_eq!(d.phase, KeyRotationPhase::Completed);
    assert_eq!(d.completed_at, Some(at("2026-12-03T00:00:00Z")));
    let aborted = KeyRotationStatus {
        phase: Some(KeyRotationPhase::Aborted),
        ..KeyRotationStatus::default()
    };
    let d = decide(
        &s,
        Some(&aborted),
        &BOTH,
        None,
        Gate::Met,
        at("2026-12-02T00:00:00Z"),
    );
    assert_eq!(
        d.phase,
        KeyRotationPhase::Aborted,
        "unsetting abort does not resume"
    );
}

#[test]
fn abort_stops_any_phase_but_completed() {
    let mut s = spec(RetirementPolicy::WhenResigned);
    s.abort = true;
    for now in [
        "2026-11-30T00:00:00Z",
        "2026-12-02T00:00:00Z",
        "2026-12-09T00:00:00Z",
    ] {
        assert_eq!(phase(&s, Gate::NotMet, now), KeyRotationPhase::Aborted, "{now}");
    }
}

#[test]
fn invalid_references_name_the_field() {
    let s = spec(RetirementPolicy::WhenResigned);
    let now = at("2026-12-02T00:00:00Z");
    let cases = [
        (RootKeys::Missing, None, "TrustRootNotFound", "spec.trustRootRef"),
        (
            RootKeys::Found {
                from: None,
                to: Some(true),
            },
            None,
            "KeyNotDeclared",
            "spec.fromKey",
        ),
        (
            RootKeys::Found {
                from: Some(true),
                to: None,
            },
            None,
            "KeyNotDeclared",
            "spec.toKey",
        ),
        (
            RootKeys::Found {
                from: Some(true),
                to: Some(false),
            },
            None,
            "KeyInvalid",
            "spec.toKey",
        ),
        (BOTH, Some("earlier"), "Overlaps", "\"earlier\""),
    ];
    for (keys, conflict, reason, names) in cases {
        let d = decide(&s, None, &keys, conflict, Gate::Met, now);
        assert_eq!(d.phase, KeyRotationPhase::Invalid, "{reason}");
        let invalid = d.invalid.unwrap();
        assert_eq!(invalid.reason, reason);
        assert!(invalid.message.contains(names), "{}", invalid.message);
        assert_eq!(d.next_edge, None);
    }
    let mut bad = s.clone();
    bad.window.duration = "forever".into();
    let d = decide(&bad, None, &BOTH, None, Gate::Met, now);
    assert_eq!(d.invalid.map(|i| i.reason), Some("InvalidWindow"));
}

#[test]
fn the_same_inputs_give_the_same_phase() {
    let s = spec(RetirementPolicy::WhenResigned);
    let status = KeyRotationStatus {
        phase: Some(KeyRotationPhase::DualAcceptance),
        ..KeyRotationStatus::default()
    };
    let now = at("2026-12-05T00:00:00Z");
    let a = decide(&s, Some(&status), &BOTH, None, Gate::NotMet, now);
    let b = decide(&s, Some(&status), &BOTH, None, Gate::NotMet, now);
    assert_eq!(a, b);
    assert_eq!(a.phase, KeyRotationPhase::Stalled);
}
