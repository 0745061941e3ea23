//! Prometheus metrics, on a `prometheus-client` [`Registry`] owned by [`Metrics`] (no global
//! state, so tests and two operators in one process never share counters).
//!
//! Every label value is a `&'static str` from a closed set (verdict names, outcome and error
//! categories, registry operations, event reasons): the type makes an image name or an error
//! text impossible to pass, which keeps the series count bounded whatever the cluster runs.
//! One exception: `trust_root` names a TrustRoot, a cluster-scoped object that only the
//! cluster's administrators create (a handful per cluster), so four series per TrustRoot, removed
//! with it; dashboards are templated by it.
//!
//! Counters whose label values are known in advance (verification outcomes, Event reasons of
//! workloads and rotations) are exported as 0 from the start: `increase()` and `rate()` need a
//! sample before the first increment, or an alert on the first drift would never see it.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `countersign_workloads` | gauge | `verdict` |
//! | `countersign_trust_root_workloads` | gauge | `trust_root`, `verdict` |
//! | `countersign_trust_root_attestations` | gauge | `trust_root`, `predicate_type`, `state` |
//! | `countersign_trust_root_tlog` | gauge | `trust_root`, `state` |
//! | `countersign_verification_duration_seconds` | histogram | |
//! | `countersign_verifications_total` | counter | `outcome` |
//! | `countersign_registry_requests_total` | counter | `operation`, `outcome` |
//! | `countersign_registry_request_duration_seconds` | histogram | `operation` |
//! | `countersign_reconcile_errors_total` | counter | `category` |
//! | `countersign_watch_lists_total` | counter | `resource` |
//! | `countersign_sweep_duration_seconds` | histogram | |
//! | `countersign_pass_duration_seconds` | histogram | `scope` |
//! | `countersign_pass_workloads_total` | counter | `scope` |
//! | `countersign_sweep_digests` | gauge | |
//! | `countersign_events_total` | counter | `reason` |
//! | `countersign_leader` | gauge | |
//! | `countersign_rotations` | gauge | `phase` |
//! | `countersign_rotation_in_progress` | gauge | |
//! | `countersign_rotation_workloads` | gauge | `state` |
//! | `countersign_rotation_duration_seconds` | histogram | |
//! | `countersign_gitops_syncs_total` | counter | `outcome` |
//! | `countersign_gitops_sync_duration_seconds` | histogram | |
//! | `countersign_gitops_fetched_objects_total` | counter | |
//! | `countersign_gitops_fetched_bytes_total` | counter | |
//! | `countersign_admission_requests_total` | counter | `decision`, `reason` |
//! | `countersign_admission_duration_seconds` | histogram | |
//! | `countersign_admission_cache_total` | counter | `result` |

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, histogram::Histogram},
    registry::Registry,
};

use crate::{crd::WorkloadCounts, registry::RequestObserver};

mod admission;
mod gitops;
mod passes;
mod rotation;
mod verification;
mod workloads;

pub use rotation::ROTATION_STATES;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An outcome: of a verification (`verify::Outcome::name()`), or of a TrustSource sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Every metric the operator exports (the table above), one group per area, each registering its
/// own. Labels are low-cardinality: verdict names, error categories, registry operations and
/// outcomes; never image names or error text.
///
/// Cheap to update from any task (atomics and a short lock per labelled family); share it as
/// `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    workloads: workloads::WorkloadMetrics,
    verification: verification::VerificationMetrics,
    passes: passes::PassMetrics,
    rotation: rotation::RotationMetrics,
    gitops: gitops::GitopsMetrics,
    admission: admission::AdmissionMetrics,
}

impl Default for Metrics {
    /// Registers every group, in the order `/metrics` lists them.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let workloads = workloads::WorkloadMetrics::register(&mut registry);
        let verification = verification::VerificationMetrics::register(&mut registry);
        let passes = passes::PassMetrics::register(&mut registry);
        let rotation = rotation::RotationMetrics::register(&mut registry);
        let gitops = gitops::GitopsMetrics::register(&mut registry);
        let admission = admission::AdmissionMetrics::register(&mut registry);
        Self {
            registry,
            workloads,
            verification,
            passes,
            rotation,
            gitops,
            admission,
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Workloads by verdict (`Verified`, `Unsigned`, `Failed`, `Stale`, …), set after each sweep.
    /// A verdict set before and absent now is set to 0.
    pub fn set_workloads_by_verdict(&self, counts: &[(&'static str, i64)]) {
        self.workloads.set_by_verdict(counts);
    }

    /// Workloads of each active TrustRoot by verdict, set after each pass; the series of a
    /// TrustRoot absent now are removed.
    pub fn set_trust_root_workloads<'a>(&self, roots: impl IntoIterator<Item = (&'a str, WorkloadCounts)>) {
        self.workloads.set_trust_roots(roots);
    }

    /// Transparency-log coverage per TrustRoot (M7), set after each pass; a TrustRoot gone takes
    /// its series with it.
    pub fn set_trust_root_tlog(&self, rows: &[super::tlog::Coverage]) {
        self.workloads.set_tlog(rows);
    }

    /// Governed digests per TrustRoot, required predicate type and attestation state (every
    /// state given, 0 included), set after each pass; requirements absent now lose their series.
    pub fn set_trust_root_attestations(&self, rows: &[super::attestations::Coverage]) {
        self.workloads.set_attestations(rows);
    }

    /// One digest verified (or failed to): outcome is `Outcome::name()`, elapsed the wall time.
    pub fn observe_verification(&self, outcome: &'static str, elapsed: Duration) {
        self.verification.verified(outcome, elapsed);
    }

    /// Counts registry requests by operation and outcome (`ok` or a `RegistryError::category()`).
    /// Reads count every HTTP request, as the registry sees them (`resolve` = manifest HEAD,
    /// `manifest`, `blob`, `referrers`, `token`; a 401 answered by re-authenticating is one
    /// `unauthorized` and one more request); pushes count one per oci-client call.
    pub fn registry_observer(self: &Arc<Self>) -> RequestObserver {
        let metrics = Arc::clone(self);
        Arc::new(move |operation, outcome, elapsed| {
            metrics.observe_registry_request(operation, outcome, elapsed)
        })
    }

    /// What [`Self::registry_observer`] records for one request.
    pub fn observe_registry_request(
        &self,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.verification.registry_request(operation, outcome, elapsed);
    }

    /// A reconcile step failed; `category` is the error's low-cardinality category.
    pub fn reconcile_error(&self, category: &'static str) {
        self.passes.reconcile_error(category);
    }

    /// A watch of `resource` started a full list.
    pub fn watch_listed(&self, resource: &'static str) {
        self.passes.watch_listed(resource);
    }

    /// A pass over `scope` (`full` or `changed`) finished.
    pub fn pass_finished(&self, scope: &'static str, elapsed: Duration, workloads: usize) {
        self.passes.pass_finished(scope, elapsed, workloads);
    }

    /// A sweep re-verifying every governed digest finished.
    pub fn sweep_finished(&self, elapsed: Duration, digests: usize) {
        self.passes.sweep_finished(elapsed, digests);
    }

    /// Events emitted, by reason (`SignatureDrift`, …).
    pub fn event_emitted(&self, reason: &'static str) {
        self.passes.event_emitted(reason);
    }

    /// Whether this replica leads (holds the Lease) right now.
    pub fn set_leader(&self, leader: bool) {
        self.passes.set_leader(leader);
    }

    /// KeyRotations by phase, rotations in progress, and their workloads by state (in the order
    /// of [`ROTATION_STATES`]), as of the last pass.
    pub fn set_rotations(&self, phases: &[&'static str], in_progress: usize, states: [i64; 4]) {
        self.rotation.set(phases, in_progress, states);
    }

    /// A rotation completed, `elapsed` after its window opened.
    pub fn rotation_completed(&self, elapsed: Duration) {
        self.rotation.completed(elapsed);
    }

    /// What one TrustSource fetch received.
    pub fn gitops_fetched(&self, objects: usize, bytes: usize) {
        self.gitops.fetched(objects, bytes);
    }

    /// One TrustSource sync finished: `outcome` is `applied`, `unchanged` or an error category.
    pub fn gitops_sync(&self, outcome: &'static str, elapsed: Duration) {
        self.gitops.synced(outcome, elapsed);
    }

    /// One admission review answered.
    pub fn admission(&self, decision: &'static str, reason: &'static str, elapsed: Duration) {
        self.admission.answered(decision, reason, elapsed);
    }

    /// A governed digest at admission: answered from the cache (`hit`) or not.
    pub fn admission_cache(&self, hit: bool) {
        self.admission.looked_up(hit);
    }

    /// The OpenMetrics text exposition served at `/metrics` (content type [`CONTENT_TYPE`]),
    /// ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        // Writing into a String cannot fail, and every label value is a plain str.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
