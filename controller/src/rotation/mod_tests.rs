use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::crd::{KeyRotationPhase, KeyRotationStatus, RetirementPolicy, RotationWindow};

fn rotation(name: &str, created: &str, keys: (&str, &str), start: &str, duration: &str) -> Arc<KeyRotation> {
    let mut r = KeyRotation::new(
        name,
        KeyRotationSpec {
            trust_root_ref: "payments".into(),
            from_key: keys.0.into(),
            to_key: keys.1.into(),
            window: RotationWindow {
                start: Time(start.parse().unwrap()),
                duration: duration.into(),
            },
            retirement: RetirementPolicy::WhenResigned,
            abort: false,
            retire_early: false,
        },
    );
    r.metadata = ObjectMeta {
        name: Some(name.into()),
        creation_timestamp: Some(Time(created.parse().unwrap())),
        ..ObjectMeta::default()
    };
    Arc::new(r)
}

fn now() -> Timestamp {
    "2026-11-29T00:00:00Z".parse().unwrap()
}

#[test]
fn the_later_of_two_overlapping_rotations_is_refused() {
    let first = rotation(
        "b-first",
        "2026-11-01T00:00:00Z",
        ("a", "b"),
        "2026-12-01T00:00:00Z",
        "72h",
    );
    let shares_a_key = rotation(
        "a-second",
        "2026-11-02T00:00:00Z",
        ("b", "c"),
        "2027-01-01T00:00:00Z",
        "1h",
    );
    let overlaps = rotation(
        "c-third",
        "2026-11-03T00:00:00Z",
        ("x", "y"),
        "2026-12-02T00:00:00Z",
        "1h",
    );
    let separate = rotation(
        "d-fourth",
        "2026-11-04T00:00:00Z",
        ("p", "q"),
        "2027-02-01T00:00:00Z",
        "1h",
    );
    let found = conflicts(&[first, shares_a_key, overlaps, separate], now());
    assert_eq!(found.get("a-second").map(String::as_str), Some("b-first"));
    assert_eq!(found.get("c-third").map(String::as_str), Some("b-first"));
    assert!(!found.contains_key("b-first") && !found.contains_key("d-fourth"));
}

#[test]
fn a_finished_rotation_holds_nothing() {
    let mut done = (*rotation(
        "first",
        "2026-11-01T00:00:00Z",
        ("a", "b"),
        "2026-11-01T00:00:00Z",
        "1h",
    ))
    .clone();
    done.status = Some(KeyRotationStatus {
        phase: Some(KeyRotationPhase::Completed),
        ..KeyRotationStatus::default()
    });
    let next = rotation(
        "next",
        "2026-11-02T00:00:00Z",
        ("b", "c"),
        "2026-12-01T00:00:00Z",
        "1h",
    );
    assert!(conflicts(&[Arc::new(done), next], now()).is_empty());
}

#[test]
fn a_rotation_past_its_window_holds_on_until_it_finishes() {
    let stalled = rotation(
        "stalled",
        "2026-11-01T00:00:00Z",
        ("a", "b"),
        "2026-11-01T00:00:00Z",
        "1h",
    );
    let now_running = rotation(
        "now",
        "2026-11-02T00:00:00Z",
        ("x", "y"),
        "2026-11-28T00:00:00Z",
        "72h",
    );
    let found = conflicts(&[stalled, now_running], now());
    assert_eq!(found.get("now").map(String::as_str), Some("stalled"));
}

#[test]
fn assess_reports_a_missing_trust_root() {
    let r = rotation(
        "r",
        "2026-11-01T00:00:00Z",
        ("a", "b"),
        "2026-12-01T00:00:00Z",
        "1h",
    );
    let assessed = assess(&[r], &HashMap::new(), &HashMap::new(), now());
    assert_eq!(assessed[0].decision.phase, KeyRotationPhase::Invalid);
    assert_eq!(
        assessed[0].decision.invalid.as_ref().map(|i| i.reason),
        Some("TrustRootNotFound")
    );
}
