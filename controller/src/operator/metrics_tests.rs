//! Unit tests of [`super`]: what each metric exports, scraped as Prometheus text.

use super::*;

/// The value of the sample whose name and labels are exactly `series` (e.g.
/// `countersign_workloads{verdict="Verified"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split(' ').next()?.parse().ok()
    })
}

fn value(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.encode();
    sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[test]
fn encodes_openmetrics_with_types_units_and_eof() {
    let metrics = Metrics::new();
    // Labelled families appear once they have a series; the verdicts are there from the start.
    let fresh = metrics.encode();
    assert!(
        fresh.contains("countersign_workloads{verdict=\"Failed\"} 0\n"),
        "{fresh}"
    );
    assert!(
        fresh.contains("countersign_events_total{reason=\"SignatureDrift\"} 0\n"),
        "{fresh}"
    );
    assert!(
        fresh.contains("countersign_verifications_total{outcome=\"Invalid\"} 0\n"),
        "{fresh}"
    );
    assert!(!fresh.contains("countersign_reconcile_errors_total{"), "{fresh}");
    metrics.observe_verification("Verified", Duration::from_millis(10));
    metrics.registry_observer()("manifest", "ok", Duration::from_millis(10));
    metrics.reconcile_error("kube");
    metrics.event_emitted("SignatureVerified");
    let text = metrics.encode();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in [
        "# TYPE countersign_workloads gauge",
        "# TYPE countersign_verification_duration_seconds histogram",
        "# UNIT countersign_verification_duration_seconds seconds",
        "# TYPE countersign_verifications counter",
        "# TYPE countersign_registry_requests counter",
        "# TYPE countersign_registry_request_duration_seconds histogram",
        "# TYPE countersign_reconcile_errors counter",
        "# TYPE countersign_sweep_duration_seconds histogram",
        "# TYPE countersign_sweep_digests gauge",
        "# TYPE countersign_events counter",
        "# TYPE countersign_leader gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn workloads_by_verdict_are_set_and_reset_to_zero_when_gone() {
    let metrics = Metrics::new();
    metrics.set_workloads_by_verdict(&[("Verified", 7), ("Unsigned", 2), ("Failed", 1)]);
    assert_eq!(
        value(&metrics, r#"countersign_workloads{verdict="Verified"}"#),
        7.0
    );
    assert_eq!(
        value(&metrics, r#"countersign_workloads{verdict="Unsigned"}"#),
        2.0
    );
    assert_eq!(value(&metrics, r#"countersign_workloads{verdict="Failed"}"#), 1.0);

    metrics.set_workloads_by_verdict(&[("Verified", 9), ("Stale", 1)]);
    assert_eq!(
        value(&metrics, r#"countersign_workloads{verdict="Verified"}"#),
        9.0
    );
    assert_eq!(value(&metrics, r#"countersign_workloads{verdict="Stale"}"#), 1.0);
    assert_eq!(
        value(&metrics, r#"countersign_workloads{verdict="Unsigned"}"#),
        0.0
    );
    assert_eq!(value(&metrics, r#"countersign_workloads{verdict="Failed"}"#), 0.0);
}

#[test]
fn verification_histogram_and_outcome_counter() {
    let metrics = Metrics::new();
    metrics.observe_verification("verified", Duration::from_millis(3));
    metrics.observe_verification("verified", Duration::from_millis(400));
    metrics.observe_verification("unsigned", Duration::from_secs(20));
    let h = "countersign_verification_duration_seconds";
    assert_eq!(value(&metrics, &format!("{h}_count")), 3.0);
    assert!((value(&metrics, &format!("{h}_sum")) - 20.403).abs() < 1e-9);
    // Buckets are cumulative: 3 ms is under 5 ms; 400 ms under 0.5 s; 20 s only under 30 s.
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="0.005"}}"#)), 1.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="0.25"}}"#)), 1.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="0.5"}}"#)), 2.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="15.0"}}"#)), 2.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="30.0"}}"#)), 3.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="+Inf"}}"#)), 3.0);
    assert_eq!(
        value(&metrics, r#"countersign_verifications_total{outcome="verified"}"#),
        2.0
    );
    assert_eq!(
        value(&metrics, r#"countersign_verifications_total{outcome="unsigned"}"#),
        1.0
    );
}

#[test]
fn registry_observer_counts_requests_and_times_them_by_operation() {
    let metrics = Metrics::new();
    let observe = metrics.registry_observer();
    observe("manifest", "ok", Duration::from_millis(20));
    observe("manifest", "ok", Duration::from_millis(30));
    observe("manifest", "rate_limited", Duration::from_millis(5));
    observe("blob", "timeout", Duration::from_secs(15));
    let c = "countersign_registry_requests_total";
    assert_eq!(
        value(&metrics, &format!(r#"{c}{{operation="manifest",outcome="ok"}}"#)),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            &format!(r#"{c}{{operation="manifest",outcome="rate_limited"}}"#)
        ),
        1.0
    );
    assert_eq!(
        value(&metrics, &format!(r#"{c}{{operation="blob",outcome="timeout"}}"#)),
        1.0
    );
    let h = "countersign_registry_request_duration_seconds";
    assert_eq!(
        value(&metrics, &format!(r#"{h}_count{{operation="manifest"}}"#)),
        3.0
    );
    assert_eq!(
        value(
            &metrics,
            &format!(r#"{h}_bucket{{le="0.025",operation="manifest"}}"#)
        ),
        2.0
    );
    assert_eq!(
        value(&metrics, &format!(r#"{h}_bucket{{le="15.0",operation="blob"}}"#)),
        1.0
    );
    // The observer keeps the metrics alive on its own (it is handed to the registry client).
    drop(metrics);
    observe("manifest", "ok", Duration::ZERO);
}

#[test]
fn reconcile_errors_by_category() {
    let metrics = Metrics::new();
    metrics.reconcile_error("kube");
    metrics.reconcile_error("kube");
    metrics.reconcile_error("invalid_trust_root");
    let c = "countersign_reconcile_errors_total";
    assert_eq!(value(&metrics, &format!(r#"{c}{{category="kube"}}"#)), 2.0);
    assert_eq!(
        value(&metrics, &format!(r#"{c}{{category="invalid_trust_root"}}"#)),
        1.0
    );
}

#[test]
fn sweep_duration_and_digests() {
    let metrics = Metrics::new();
    metrics.sweep_finished(Duration::from_secs(42), 500);
    metrics.sweep_finished(Duration::from_millis(800), 510);
    let h = "countersign_sweep_duration_seconds";
    assert_eq!(value(&metrics, &format!("{h}_count")), 2.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="1.0"}}"#)), 1.0);
    assert_eq!(value(&metrics, &format!(r#"{h}_bucket{{le="60.0"}}"#)), 2.0);
    assert_eq!(value(&metrics, "countersign_sweep_digests"), 510.0);
}

#[test]
fn events_by_reason() {
    let metrics = Metrics::new();
    metrics.event_emitted("SignatureDrift");
    metrics.event_emitted("SignatureDrift");
    metrics.event_emitted("SignatureVerified");
    assert_eq!(
        value(&metrics, r#"countersign_events_total{reason="SignatureDrift"}"#),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"countersign_events_total{reason="SignatureVerified"}"#
        ),
        1.0
    );
}

#[test]
fn trust_root_workloads_by_verdict_and_removed_with_their_root() {
    let metrics = Metrics::new();
    let counts = |verified, failed| WorkloadCounts {
        total: verified + failed,
        verified,
        failed,
        ..WorkloadCounts::default()
    };
    metrics.set_trust_root_workloads([("prod", counts(5, 1)), ("dev", counts(2, 0))]);
    let series = |root: &str, verdict: &str| {
        format!(r#"countersign_trust_root_workloads{{trust_root="{root}",verdict="{verdict}"}}"#)
    };
    assert_eq!(value(&metrics, &series("prod", "Verified")), 5.0);
    assert_eq!(value(&metrics, &series("prod", "Failed")), 1.0);
    assert_eq!(value(&metrics, &series("dev", "Unsigned")), 0.0);
    metrics.set_trust_root_workloads([("prod", counts(6, 0))]);
    assert_eq!(value(&metrics, &series("prod", "Failed")), 0.0);
    let text = metrics.encode();
    assert!(!text.contains("trust_root=\"dev\""), "{text}");
}

#[test]
fn attestation_coverage_by_root_type_and_state() {
    let metrics = Metrics::new();
    let row = |verified, missing| {
        let mut states = super::super::attestations::STATES.map(|s| (s, 0));
        states[0].1 = verified;
        states[1].1 = missing;
        super::super::attestations::Coverage {
            trust_root: "prod".into(),
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            states,
        }
    };
    metrics.set_trust_root_attestations(&[row(3, 1)]);
    let series = |state: &str| {
        format!(
            r#"countersign_trust_root_attestations{{trust_root="prod",predicate_type="https://slsa.dev/provenance/v1",state="{state}"}}"#
        )
    };
    assert_eq!(value(&metrics, &series("Verified")), 3.0);
    assert_eq!(value(&metrics, &series("Missing")), 1.0);
    assert_eq!(value(&metrics, &series("PolicyFailed")), 0.0);
    metrics.set_trust_root_attestations(&[]);
    assert!(!metrics.encode().contains("trust_root_attestations{"));
}

#[test]
fn tlog_coverage_by_root_and_state_and_removed_with_their_root() {
    let metrics = Metrics::new();
    let row = |trust_root: &str, logged, unlogged| super::super::tlog::Coverage {
        trust_root: trust_root.into(),
        states: [("Logged", logged), ("Unlogged", unlogged)],
    };
    metrics.set_trust_root_tlog(&[row("prod", 2, 1), row("dev", 0, 4)]);
    let series = |root: &str, state: &str| {
        format!(r#"countersign_trust_root_tlog{{trust_root="{root}",state="{state}"}}"#)
    };
    assert_eq!(value(&metrics, &series("prod", "Logged")), 2.0);
    assert_eq!(value(&metrics, &series("dev", "Unlogged")), 4.0);
    metrics.set_trust_root_tlog(&[row("prod", 3, 0)]);
    assert_eq!(value(&metrics, &series("prod", "Logged")), 3.0);
    assert!(!metrics.encode().contains(r#"trust_root="dev""#));
}

#[test]
fn leader_gauge() {
    let metrics = Metrics::new();
    assert_eq!(value(&metrics, "countersign_leader"), 0.0);
    metrics.set_leader(true);
    assert_eq!(value(&metrics, "countersign_leader"), 1.0);
    metrics.set_leader(false);
    assert_eq!(value(&metrics, "countersign_leader"), 0.0);
}
