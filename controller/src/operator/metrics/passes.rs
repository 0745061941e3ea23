//! The leader's loop: its passes and sweeps, their errors, the watches' relists, the Events it
//! emits, and whether this replica leads.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::HistogramFamily;

/// A sweep re-verifies every governed digest: a warm sweep of a small cluster takes well under
/// a second, a cold sweep of thousands of digests minutes; past 30 minutes it no longer fits
/// any sensible `reverifyInterval`, which is what the top bucket is there to show.
const SWEEP_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
];

/// A pass is woken by any change that can change a verdict (a pod started, a TrustRoot edited)
/// and walks every running workload: milliseconds when nothing needs the registry, seconds when
/// it waits on verifications or writes many verdicts.
const PASS_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The Events of workloads and of KeyRotations (gitops' own reasons appear when first emitted).
const EVENT_REASONS: [&str; 12] = {
    use crate::operator::events as w;
    use crate::rotation::status as r;
    [
        w::SIGNATURE_VERIFIED,
        w::UNSIGNED,
        w::VERIFICATION_FAILED,
        w::SIGNATURE_DRIFT,
        w::DIGEST_DRIFT,
        w::VERIFICATION_STALE,
        r::ROTATION_STARTED,
        r::ROTATION_STALLED,
        r::KEY_RETIRED,
        r::ROTATION_COMPLETED,
        r::ROTATION_ABORTED,
        r::ROTATION_INVALID,
    ]
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

pub(super) struct PassMetrics {
    reconcile_errors: Family<CategoryLabels, Counter>,
    watch_lists: Family<ResourceLabels, Counter>,
    sweep_duration: Histogram,
    sweep_digests: Gauge,
    pass_duration: HistogramFamily<ScopeLabels>,
    pass_workloads: Family<ScopeLabels, Counter>,
    events: Family<ReasonLabels, Counter>,
    leader: Gauge,
}

impl PassMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconcile steps by error category",
            reconcile_errors.clone(),
        );
        let watch_lists = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_lists",
            "Full lists by the watches, by resource: one each at start, and one more each time a \
             watch could not resume where it left off (410 Gone after an API server restart or an \
             etcd compaction) and had to list again",
            watch_lists.clone(),
        );
        let sweep_duration = Histogram::new(SWEEP_BUCKETS);
        registry.register_with_unit(
            "sweep_duration",
            "Wall time of one sweep re-verifying every governed digest",
            Unit::Seconds,
            sweep_duration.clone(),
        );
        let pass_duration: HistogramFamily<ScopeLabels> =
            Family::new_with_constructor(|| Histogram::new(PASS_BUCKETS));
        registry.register_with_unit(
            "pass_duration",
            "Wall time of one pass (cached lookups, verdicts, writes), over every running workload (scope full) or those something changed (scope changed)",
            Unit::Seconds,
            pass_duration.clone(),
        );
        let pass_workloads = Family::<ScopeLabels, Counter>::default();
        registry.register(
            "pass_workloads",
            "Workloads assessed by passes, by scope (a pass over what changed assesses the workloads it leads to)",
            pass_workloads.clone(),
        );
        let sweep_digests = Gauge::default();
        registry.register(
            "sweep_digests",
            "Distinct digests checked by the last sweep",
            sweep_digests.clone(),
        );
        let events = Family::<ReasonLabels, Counter>::default();
        registry.register("events", "Kubernetes Events emitted, by reason", events.clone());
        for reason in EVENT_REASONS {
            events.get_or_create(&ReasonLabels { reason }).inc_by(0);
        }
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and writes verdicts, 0 on a standby",
            leader.clone(),
        );
        Self {
            reconcile_errors,
            watch_lists,
            sweep_duration,
            sweep_digests,
            pass_duration,
            pass_workloads,
            events,
            leader,
        }
    }

    pub(super) fn reconcile_error(&self, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    pub(super) fn watch_listed(&self, resource: &'static str) {
        self.watch_lists.get_or_create(&ResourceLabels { resource }).inc();
    }

    pub(super) fn pass_finished(&self, scope: &'static str, elapsed: Duration, workloads: usize) {
        let labels = ScopeLabels { scope };
        self.pass_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let workloads = u64::try_from(workloads).unwrap_or(u64::MAX);
        self.pass_workloads.get_or_create(&labels).inc_by(workloads);
    }

    pub(super) fn sweep_finished(&self, elapsed: Duration, digests: usize) {
        self.sweep_duration.observe(elapsed.as_secs_f64());
        self.sweep_digests.set(i64::try_from(digests).unwrap_or(i64::MAX));
    }

    pub(super) fn event_emitted(&self, reason: &'static str) {
        self.events.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(super) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}
