//! Verifications of running digests, and the registry requests they make.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::{HistogramFamily, OutcomeLabels};

/// Time to verify one digest. The fast end is a cache hit or a registry on the same network
/// (a few ms); one round trip to a remote registry costs 20–300 ms, and a cold verification
/// takes several (resolve, signature manifest or referrers, payload blobs, maybe a token
/// exchange), so most land between 50 ms and 2.5 s. 15 s is the per-request timeout of
/// `registry::Limits`, so the 10/15 s buckets separate "slow" from "timed out", and 30 s bounds
/// a verification that waited out a `Retry-After`. Thirteen buckets keep one histogram cheap.
const VERIFICATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];

/// One registry request: the same range as one round trip, ending at the 15 s request timeout.
const REGISTRY_REQUEST_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0];

/// `verify::Outcome::name()`, every one.
const OUTCOMES: [&str; 4] = ["Verified", "Unsigned", "Invalid", "Error"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryRequestLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

pub(super) struct VerificationMetrics {
    duration: Histogram,
    verifications: Family<OutcomeLabels, Counter>,
    registry_requests: Family<RegistryRequestLabels, Counter>,
    registry_request_duration: HistogramFamily<OperationLabels>,
}

impl VerificationMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let duration = Histogram::new(VERIFICATION_BUCKETS);
        registry.register_with_unit(
            "verification_duration",
            "Wall time to verify one running digest against its trust roots, registry included",
            Unit::Seconds,
            duration.clone(),
        );
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Digest verifications by outcome",
            verifications.clone(),
        );
        for outcome in OUTCOMES {
            verifications.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        let registry_requests = Family::<RegistryRequestLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Requests to image registries by operation and outcome (ok, or the error category: \
             not_found, unauthorized, rate_limited, server_error, timeout, unreachable, protocol)",
            registry_requests.clone(),
        );
        let registry_request_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(|| Histogram::new(REGISTRY_REQUEST_BUCKETS));
        registry.register_with_unit(
            "registry_request_duration",
            "Duration of one request to an image registry, by operation",
            Unit::Seconds,
            registry_request_duration.clone(),
        );
        Self {
            duration,
            verifications,
            registry_requests,
            registry_request_duration,
        }
    }

    pub(super) fn verified(&self, outcome: &'static str, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        self.verifications.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub(super) fn registry_request(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.registry_requests
            .get_or_create(&RegistryRequestLabels { operation, outcome })
            .inc();
        self.registry_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}
