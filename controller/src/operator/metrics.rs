//! Prometheus metrics. (API settled; implementation being written.)

use std::{sync::Arc, time::Duration};

use crate::registry::RequestObserver;

/// Every metric the operator exports. Labels are low-cardinality: verdict names, error
/// categories, registry operations and outcomes; never image names or error text.
#[derive(Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Workloads by verdict (`Verified`, `Unsigned`, `Failed`, `Stale`, …), set after each sweep.
    pub fn set_workloads_by_verdict(&self, _counts: &[(&'static str, i64)]) {}

    /// One digest verified (or failed to): outcome is `Outcome::name()`, elapsed the wall time.
    pub fn observe_verification(&self, _outcome: &'static str, _elapsed: Duration) {}

    /// Counts registry requests by operation and outcome (`ok` or a `RegistryError::category()`).
    pub fn registry_observer(self: &Arc<Self>) -> RequestObserver {
        Arc::new(|_op, _outcome, _elapsed| {})
    }

    /// A reconcile step failed; `category` is the error's low-cardinality category.
    pub fn reconcile_error(&self, _category: &'static str) {}

    /// A sweep over every governed digest finished.
    pub fn sweep_finished(&self, _elapsed: Duration, _digests: usize) {}

    /// Events emitted, by reason (`SignatureDrift`, …).
    pub fn event_emitted(&self, _reason: &'static str) {}

    /// The text exposition format served at `/metrics`.
    pub fn encode(&self) -> String {
        String::new()
    }
}
