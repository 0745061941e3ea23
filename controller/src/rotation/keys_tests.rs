use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::{
    crd::{RetirementPolicy, RotationWindow},
    rotation::phase::{Gate, RootKeys, decide},
};

fn key(name: &str) -> KeyStatus {
    KeyStatus {
        name: name.into(),
        fingerprint: Some(format!("fp-{name}")),
        state: KeyState::Active,
        since: None,
        rotation: None,
        message: None,
    }
}

fn spec() -> KeyRotationSpec {
    KeyRotationSpec {
        trust_root_ref: "payments".into(),
        from_key: "old".into(),
        to_key: "new".into(),
        window: RotationWindow {
            start: Time("2026-12-01T00:00:00Z".parse().unwrap()),
            duration: "1h".into(),
        },
        retirement: RetirementPolicy::WhenResigned,
        abort: false,
        retire_early: false,
    }
}

fn states_at(now: &str, gate: Gate, previous: Option<&TrustRootStatus>) -> (Vec<KeyStatus>, Acceptance) {
    let spec = spec();
    let keys = RootKeys::Found {
        from: Some(true),
        to: Some(true),
    };
    let d = decide(&spec, None, &keys, None, gate, now.parse::<Timestamp>().unwrap());
    let rotating = [Rotating {
        name: "rot",
        spec: &spec,
        decision: &d,
    }];
    key_states(&[key("old"), key("new"), key("other")], &rotating, previous)
}

fn state(keys: &[KeyStatus], name: &str) -> KeyState {
    keys.iter().find(|k| k.name == name).unwrap().state
}

#[test]
fn before_the_window_the_new_key_is_held_back() {
    let (keys, acceptance) = states_at("2026-11-30T00:00:00Z", Gate::Met, None);
    assert_eq!(state(&keys, "old"), KeyState::Active);
    assert_eq!(state(&keys, "new"), KeyState::Pending);
    assert_eq!(state(&keys, "other"), KeyState::Active);
    assert!(acceptance.accepts("old") && !acceptance.accepts("new"));
    assert_eq!(
        acceptance.refusal("new"),
        Some("held back until KeyRotation rot's window opens")
    );
}

#[test]
fn during_the_window_both_are_accepted() {
    let (keys, acceptance) = states_at("2026-12-01T00:30:00Z", Gate::NotMet, None);
    assert_eq!(state(&keys, "old"), KeyState::DualAcceptance);
    assert_eq!(state(&keys, "new"), KeyState::DualAcceptance);
    assert!(acceptance.accepts("old") && acceptance.accepts("new"));
    let new = keys.iter().find(|k| k.name == "new").unwrap();
    assert_eq!(new.rotation.as_deref(), Some("rot"));
    assert_eq!(
        new.since.as_ref().map(|t| t.0.to_string()).as_deref(),
        Some("2026-12-01T00:00:00Z")
    );
}

#[test]
fn stalled_keeps_both_completed_retires_the_old() {
    let (keys, acceptance) = states_at("2026-12-02T00:00:00Z", Gate::NotMet, None);
    assert_eq!(state(&keys, "old"), KeyState::DualAcceptance);
    assert!(acceptance.accepts("old"));
    let (keys, acceptance) = states_at("2026-12-02T00:00:00Z", Gate::Met, None);
    assert_eq!(state(&keys, "old"), KeyState::Retired);
    assert_eq!(state(&keys, "new"), KeyState::Active);
    assert_eq!(acceptance.refusal("old"), Some("retired by KeyRotation rot"));
}

#[test]
fn a_recorded_retirement_outlives_its_rotation() {
    let mut retired = key("old");
    retired.state = KeyState::Retired;
    retired.rotation = Some("rot".into());
    let previous = TrustRootStatus {
        keys: vec![retired],
        ..TrustRootStatus::default()
    };
    // The rotation is gone: no rotations at all.
    let (keys, acceptance) = key_states(&[key("old"), key("new")], &[], Some(&previous));
    assert_eq!(state(&keys, "old"), KeyState::Retired);
    assert!(!acceptance.accepts("old"));
    // A different key under the same name is not the retired one.
    let mut replaced = key("old");
    replaced.fingerprint = Some("fp-another".into());
    let (keys, acceptance) = key_states(&[replaced], &[], Some(&previous));
    assert_eq!(state(&keys, "old"), KeyState::Active);
    assert!(acceptance.accepts("old"));
}

#[test]
fn an_invalid_key_stays_invalid() {
    let mut bad = key("new");
    bad.state = KeyState::Invalid;
    bad.fingerprint = None;
    let (keys, _) = key_states(&[key("old"), bad], &[], None);
    assert_eq!(state(&keys, "new"), KeyState::Invalid);
}
