//! Admission reviews (`crate::admission`): what was decided and why, how long countersign took,
//! and how often the signature cache answered.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Admission reviews (`crate::admission`): every replica answers, so each exports its own.
pub(super) struct AdmissionMetrics {
    requests: Family<DecisionLabels, Counter>,
    duration: Histogram,
    cache: Family<ResultLabels, Counter>,
}

/// The time countersign adds to one admission: a cached answer takes well under a millisecond
/// (the low buckets are where the 10 ms goal is read), a never-seen digest one to a few registry
/// round trips, and the top buckets are the verification deadline and the API server's
/// webhook timeout.
const ADMISSION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl AdmissionMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by decision (allowed, warned, denied) and reason \
             (verified, ungoverned, unsigned, untrusted, threshold, registry, excluded, error)",
            requests.clone(),
        );
        let duration = Histogram::new(ADMISSION_BUCKETS);
        registry.register_with_unit(
            "admission_duration",
            "Time from an admission review's arrival to its answer: what countersign adds",
            Unit::Seconds,
            duration.clone(),
        );
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admission_cache",
            "Governed digests at admission answered from the signature cache (hit) or the \
             registry (miss)",
            cache.clone(),
        );
        for result in ["hit", "miss"] {
            cache.get_or_create(&ResultLabels { result }).inc_by(0);
        }
        Self {
            requests,
            duration,
            cache,
        }
    }

    pub(super) fn answered(&self, decision: &'static str, reason: &'static str, elapsed: Duration) {
        self.requests
            .get_or_create(&DecisionLabels { decision, reason })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    pub(super) fn looked_up(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&ResultLabels { result }).inc();
    }
}
