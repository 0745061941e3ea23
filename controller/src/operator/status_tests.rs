use serde_json::json;

use super::*;
use crate::operator::{
    objects::Fixture,
    trust::{
        TrustCompiler,
        tests::{compile, pem, root},
    },
};

const T0: &str = "2026-09-01T10:00:00Z";
const T1: &str = "2026-09-01T11:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn swept() -> Observed {
    Observed {
        counts: WorkloadCounts {
            total: 2,
            verified: 1,
            unsigned: 1,
            ..WorkloadCounts::default()
        },
        last_sweep: Some(SweepSummary {
            finished_at: Time(at(T0)),
            digests: 2,
            duration_ms: 12,
        }),
        keys: None,
    }
}

fn condition<'a>(status: &'a TrustRootStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

#[test]
fn a_healthy_root_is_ready_with_counts_keys_and_generation() {
    let report = compile(
        &mut TrustCompiler::default(),
        &Fixture::default(),
        root(4, json!([{"name": "ci", "publicKey": pem()}])),
    );
    let status = build(&report, &swept(), None, at(T0));
    assert_eq!(status.observed_generation, Some(4));
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("True", Some(4))
    );
    assert_eq!(condition(&status, "KeysValid").status, "True");
    assert_eq!(status.accepted_keys.as_deref(), Some("ci"));
    assert_eq!(status.keys[0].state, KeyState::Active);
    assert_eq!(status.workloads.map(|w| w.verified), Some(1));
    assert_eq!(status.last_sweep.map(|s| s.digests), Some(2));
}

#[test]
fn not_ready_before_the_first_sweep() {
    let report = compile(
        &mut TrustCompiler::default(),
        &Fixture::default(),
        root(1, json!([{"name": "ci", "publicKey": pem()}])),
    );
    let status = build(&report, &Observed::default(), None, at(T0));
    assert_eq!(condition(&status, "Ready").status, "False");
}

#[test]
fn transition_times_move_only_when_the_status_flips() {
    let report = compile(
        &mut TrustCompiler::default(),
        &Fixture::default(),
        root(1, json!([{"name": "ci", "publicKey": pem()}])),
    );
    let first = build(&report, &swept(), None, at(T0));
    let again = build(&report, &swept(), Some(&first), at(T1));
    assert_eq!(again, first);
    let not_swept = build(&report, &Observed::default(), Some(&first), at(T1));
    assert_eq!(condition(&not_swept, "Ready").last_transition_time, Time(at(T1)));
    assert_eq!(not_swept.keys[0].since, Some(Time(at(T0))));
}

#[test]
fn a_bad_pem_is_named_in_both_conditions() {
    let bad = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----";
    let report = compile(
        &mut TrustCompiler::default(),
        &Fixture::default(),
        root(
            2,
            json!([{"name": "ok", "publicKey": pem()}, {"name": "bad", "publicKey": bad}]),
        ),
    );
    let status = build(&report, &swept(), None, at(T0));
    let keys = condition(&status, "KeysValid");
    assert_eq!(
        (keys.status.as_str(), keys.reason.as_str()),
        ("False", "InvalidKey")
    );
    assert!(
        keys.message.starts_with("spec.keys[1].publicKey: "),
        "{}",
        keys.message
    );
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready.message.contains("spec.keys[1].publicKey"),
        "{}",
        ready.message
    );
    assert!(ready.message.contains("nothing is verified"), "{}", ready.message);
    assert_eq!(status.accepted_keys, None, "nothing is in force");
}
