use super::fixtures::{digest, finding};
use super::*;

const NOW: &str = "2026-09-01T10:00:00Z";
const EARLIER: &str = "2026-08-01T10:00:00Z";

fn verified(keys: &[&str]) -> Option<Check> {
    Some(Check::Verified {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    })
}

fn failed(reason: &str) -> Option<Check> {
    Some(Check::failed(reason, "no_trusted_key"))
}

fn recorded_verified() -> Recorded {
    Recorded {
        verdict: Some(Verdict::Verified),
        verified_by: vec!["prod/ci".into()],
        digests: vec![format!("reg.example/app1@{}", digest(1))],
        since: Some(EARLIER.into()),
        ..Recorded::default()
    }
}

#[test]
fn all_verified_names_every_key_with_its_trust_root() {
    let findings = [
        finding(1, "prod", verified(&["ci"]), None),
        finding(2, "base", verified(&["a", "b"]), None),
    ];
    let r = derive(&findings, &[], None, NOW);
    assert_eq!(r.verdict, Some(Verdict::Verified));
    assert_eq!(r.verified_by, ["base/a", "base/b", "prod/ci"]);
    assert_eq!(r.reason, None);
    assert_eq!(r.digests.len(), 2);
    assert_eq!(r.since.as_deref(), Some(NOW));
    assert_eq!(r.stale, None);
}

#[test]
fn the_worst_pair_decides_failed_over_unsigned() {
    let findings = [
        finding(1, "prod", verified(&["ci"]), None),
        finding(2, "prod", Some(Check::Unsigned), None),
        finding(
            3,
            "prod",
            failed("1 signature, none valid: no trusted key verifies it"),
            None,
        ),
    ];
    let r = derive(&findings, &[], None, NOW);
    assert_eq!(r.verdict, Some(Verdict::Failed));
    assert!(r.verified_by.is_empty());
    let reason = r.reason.unwrap_or_default();
    assert!(reason.starts_with("reg.example/app3@sha256:"), "{reason}");
    assert!(
        reason.ends_with("no trusted key verifies it (TrustRoot prod)"),
        "{reason}"
    );
    let unsigned = derive(&findings[..2], &[], None, NOW);
    assert_eq!(unsigned.verdict, Some(Verdict::Unsigned));
    assert!(unsigned.reason.unwrap_or_default().contains("no signature"));
}

#[test]
fn causes_are_those_of_the_worst_pairs_sorted_once_each() {
    let failing = |n, causes: &[&str]| {
        let check = Check::Failed {
            reason: "why".into(),
            causes: causes.iter().map(|c| c.to_string()).collect(),
        };
        finding(n, "prod", Some(check), None)
    };
    let findings = [
        finding(1, "prod", Some(Check::Unsigned), None),
        failing(2, &["untrusted_log", "identity_mismatch"]),
        failing(3, &["attestation_missing", "identity_mismatch"]),
    ];
    let r = derive(&findings, &[], None, NOW);
    assert_eq!(r.verdict, Some(Verdict::Failed));
    assert_eq!(
        r.causes,
        ["attestation_missing", "identity_mismatch", "untrusted_log"]
    );
    let unsigned = derive(&findings[..1], &[], None, NOW);
    assert_eq!(unsigned.causes, ["no_signature"]);
    let verified = derive(&[finding(1, "prod", verified(&["ci"]), None)], &[], None, NOW);
    assert!(verified.causes.is_empty());
    // Kept while the registry cannot be asked, like the reason.
    let kept = derive(&[finding(2, "prod", None, Some("timeout"))], &[], Some(&r), NOW);
    assert_eq!(kept.causes, r.causes);
}

#[test]
fn an_unchanged_verdict_keeps_its_since() {
    let findings = [finding(1, "prod", verified(&["ci"]), None)];
    let previous = recorded_verified();
    let r = derive(&findings, &[], Some(&previous), NOW);
    assert_eq!(r, previous);
}

#[test]
fn no_answer_keeps_the_previous_verdict_and_marks_it_stale() {
    let findings = [
        finding(1, "prod", None, Some("unreachable")),
        finding(2, "prod", Some(Check::Unsigned), None),
    ];
    let previous = recorded_verified();
    let r = derive(&findings, &[], Some(&previous), NOW);
    assert_eq!(
        r,
        Recorded {
            stale: Some("unreachable".into()),
            // Marked stale: a change of what is recorded.
            changed: Some(NOW.into()),
            ..previous
        }
    );
}

#[test]
fn no_answer_and_nothing_before_is_unknown() {
    let findings = [finding(1, "prod", None, Some("timeout"))];
    let r = derive(&findings, &[], None, NOW);
    assert_eq!(r.verdict, Some(Verdict::Unknown));
    assert_eq!(r.stale.as_deref(), Some("timeout"));
    assert!(r.reason.unwrap_or_default().contains("(timeout)"));
}

#[test]
fn a_cached_answer_still_decides_while_stale() {
    // The registry is down but the signatures are cached: a key removed meanwhile still counts.
    let findings = [finding(
        1,
        "prod",
        failed("no trusted key verifies it"),
        Some("unreachable"),
    )];
    let r = derive(&findings, &[], Some(&recorded_verified()), NOW);
    assert_eq!(r.verdict, Some(Verdict::Failed));
    assert_eq!(r.stale.as_deref(), Some("unreachable"));
    assert_eq!(r.since.as_deref(), Some(NOW));
}

#[test]
fn moved_tags_are_recorded_and_unknown_tags_keep_what_was() {
    let findings = [finding(1, "prod", verified(&["ci"]), None)];
    let moved = TagCheck::Moved {
        image: "reg.example/app1:v1".into(),
        now: digest(9),
        running: digest(1),
    };
    let r = derive(
        &findings,
        &[TagCheck::Same, moved.clone()],
        Some(&recorded_verified()),
        NOW,
    );
    let drift = r.drift.clone().unwrap_or_default();
    assert!(
        drift.starts_with("reg.example/app1:v1 now points to sha256:0909"),
        "{drift}"
    );
    let kept = derive(&findings, &[TagCheck::Unknown], Some(&r), NOW);
    assert_eq!(kept.drift, r.drift);
    let gone = derive(&findings, &[TagCheck::Same], Some(&r), NOW);
    assert_eq!(gone.drift, None);
}

#[test]
fn long_reasons_are_cut_at_a_character_boundary() {
    let long = "é".repeat(MAX_REASON);
    let cut = truncate(&long);
    assert!(cut.len() <= MAX_REASON);
    assert!(cut.ends_with('…'));
    assert_eq!(truncate("short"), "short");
}

#[test]
fn verdict_names_round_trip() {
    for v in [
        Verdict::Verified,
        Verdict::Unsigned,
        Verdict::Failed,
        Verdict::Unknown,
    ] {
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
    }
    assert_eq!(Verdict::parse("verified"), None);
}
