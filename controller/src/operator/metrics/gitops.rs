//! TrustSource syncs (`crate::gitops`): their outcomes, durations and what fetches received.

use std::time::Duration;

use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::OutcomeLabels;

/// TrustSource syncs (`crate::gitops`): outcome is `applied`, `unchanged` or the error category.
pub(super) struct GitopsMetrics {
    syncs: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    /// What fetches received: zero while the refs do not move (the cache holds the rest).
    fetched_objects: Counter,
    fetched_bytes: Counter,
}

/// A sync is a fetch (a round trip when nothing changed), a tree read and maybe a few applies:
/// tens of milliseconds to seconds; the top buckets are fetch timeouts.
const GITOPS_SYNC_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

impl GitopsMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let syncs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "gitops_syncs",
            "TrustSource syncs by outcome (applied, unchanged, or the error category)",
            syncs.clone(),
        );
        let duration = Histogram::new(GITOPS_SYNC_BUCKETS);
        registry.register_with_unit(
            "gitops_sync_duration",
            "Wall time of one TrustSource sync: fetch, verify, read, apply",
            Unit::Seconds,
            duration.clone(),
        );
        let fetched_objects = Counter::default();
        registry.register(
            "gitops_fetched_objects",
            "Git objects received by TrustSource fetches (none when the ref did not move)",
            fetched_objects.clone(),
        );
        let fetched_bytes = Counter::default();
        registry.register_with_unit(
            "gitops_fetched",
            "Bytes received by TrustSource fetches",
            Unit::Bytes,
            fetched_bytes.clone(),
        );
        Self {
            syncs,
            duration,
            fetched_objects,
            fetched_bytes,
        }
    }

    pub(super) fn synced(&self, outcome: &'static str, elapsed: Duration) {
        self.syncs.get_or_create(&OutcomeLabels { outcome }).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    pub(super) fn fetched(&self, objects: usize, bytes: usize) {
        self.fetched_objects.inc_by(objects as u64);
        self.fetched_bytes.inc_by(bytes as u64);
    }
}
