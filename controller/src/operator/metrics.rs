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

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::{crd::WorkloadCounts, registry::RequestObserver};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustRootLabels {
    trust_root: String,
    verdict: &'static str,
}

/// `predicate_type` is one a TrustRoot requires (at most 16 per TrustRoot, written by the
/// cluster's administrators like `trust_root`); `state` is from a closed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestationLabels {
    trust_root: String,
    predicate_type: String,
    state: &'static str,
}

/// `state`: `Logged` or `Unlogged` (see `operator::tlog`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlogLabels {
    trust_root: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryRequestLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

/// Which workloads a pass looked at: `full` (every one) or `namespaces` (those where something
/// changed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The phases of a KeyRotation, exported as 0 from the start.
const PHASES: [&str; 7] = [
    "Scheduled",
    "DualAcceptance",
    "Retiring",
    "Stalled",
    "Completed",
    "Aborted",
    "Invalid",
];

/// Where a rotation's governed workloads stand.
pub const ROTATION_STATES: [&str; 4] = ["new_key", "old_key_only", "neither", "unknown"];

/// A rotation lasts from minutes (a test, an emergency) to weeks (a planned window of 72 h that
/// stalls on a straggler): the buckets span a minute to a month.
const ROTATION_BUCKETS: [f64; 10] = [
    60.0,
    300.0,
    900.0,
    3600.0,
    14_400.0,
    43_200.0,
    86_400.0,
    259_200.0,
    604_800.0,
    2_592_000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn registry_request_histogram() -> Histogram {
    Histogram::new(REGISTRY_REQUEST_BUCKETS)
}

/// The verdicts of the design, exported as 0 from the start so that a dashboard's ratio and an
/// alert's `absent()` work before the first sweep (and on a standby replica).
const VERDICTS: [&str; 4] = ["Verified", "Unsigned", "Failed", "Stale"];

/// `verify::Outcome::name()`, every one.
const OUTCOMES: [&str; 4] = ["Verified", "Unsigned", "Invalid", "Error"];

/// The Events of workloads and of KeyRotations (gitops' own reasons appear when first emitted).
const EVENT_REASONS: [&str; 12] = {
    use super::events as w;
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

/// Every metric the operator exports. Labels are low-cardinality: verdict names, error
/// categories, registry operations and outcomes; never image names or error text.
///
/// Cheap to update from any task (atomics and a short lock per labelled family); share it as
/// `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    workloads: Family<VerdictLabels, Gauge>,
    /// Verdicts ever set on `workloads`, so a verdict that no workload has any more drops to 0
    /// instead of keeping its last count.
    verdicts_seen: Mutex<BTreeSet<&'static str>>,
    trust_root_workloads: Family<TrustRootLabels, Gauge>,
    /// TrustRoots with series in `trust_root_workloads`, so a deleted one's series go with it.
    trust_roots_seen: Mutex<BTreeSet<String>>,
    trust_root_attestations: Family<AttestationLabels, Gauge>,
    /// Label sets of `trust_root_attestations` set last pass, so that a requirement removed
    /// takes its series with it.
    attestations_seen: Mutex<BTreeSet<(String, String)>>,
    trust_root_tlog: Family<TlogLabels, Gauge>,
    /// TrustRoots with series in `trust_root_tlog`.
    tlog_seen: Mutex<BTreeSet<String>>,
    verification_duration: Histogram,
    verifications: Family<OutcomeLabels, Counter>,
    registry_requests: Family<RegistryRequestLabels, Counter>,
    registry_request_duration: HistogramFamily<OperationLabels>,
    reconcile_errors: Family<CategoryLabels, Counter>,
    watch_lists: Family<ResourceLabels, Counter>,
    sweep_duration: Histogram,
    sweep_digests: Gauge,
    pass_duration: HistogramFamily<ScopeLabels>,
    pass_workloads: Family<ScopeLabels, Counter>,
    events: Family<ReasonLabels, Counter>,
    leader: Gauge,
    rotations: Family<PhaseLabels, Gauge>,
    rotation_in_progress: Gauge,
    rotation_workloads: Family<StateLabels, Gauge>,
    rotation_duration: Histogram,
    gitops: GitopsMetrics,
    admission: AdmissionMetrics,
}

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
struct AdmissionMetrics {
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
    fn register(registry: &mut Registry) -> Self {
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
}

/// TrustSource syncs (`crate::gitops`): outcome is `applied`, `unchanged` or the error category.
struct GitopsMetrics {
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
    fn register(registry: &mut Registry) -> Self {
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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let workloads = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "workloads",
            "Governed workloads by verdict (Verified, Unsigned, Failed, Stale), as of the last sweep",
            workloads.clone(),
        );
        let trust_root_workloads = Family::<TrustRootLabels, Gauge>::default();
        registry.register(
            "trust_root_workloads",
            "Workloads governed by each TrustRoot, by verdict, as of the last pass",
            trust_root_workloads.clone(),
        );
        let trust_root_attestations = Family::<AttestationLabels, Gauge>::default();
        registry.register(
            "trust_root_attestations",
            "Running digests governed by each TrustRoot, by required attestation predicate type and its state (Verified, Missing, PolicyFailed, OtherDigest, BadSignature, Error), as of the last pass",
            trust_root_attestations.clone(),
        );
        let trust_root_tlog = Family::<TlogLabels, Gauge>::default();
        registry.register(
            "trust_root_tlog",
            "Running digests governed by each TrustRoot that verify, by whether an accepted signature's transparency-log entry was verified (Logged, Unlogged), as of the last pass",
            trust_root_tlog.clone(),
        );
        let verification_duration = Histogram::new(VERIFICATION_BUCKETS);
        registry.register_with_unit(
            "verification_duration",
            "Wall time to verify one running digest against its trust roots, registry included",
            Unit::Seconds,
            verification_duration.clone(),
        );
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Digest verifications by outcome",
            verifications.clone(),
        );
        let registry_requests = Family::<RegistryRequestLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Requests to image registries by operation and outcome (ok, or the error category: \
             not_found, unauthorized, rate_limited, server_error, timeout, unreachable, protocol)",
            registry_requests.clone(),
        );
        let registry_request_duration: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(registry_request_histogram);
        registry.register_with_unit(
            "registry_request_duration",
            "Duration of one request to an image registry, by operation",
            Unit::Seconds,
            registry_request_duration.clone(),
        );
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
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and writes verdicts, 0 on a standby",
            leader.clone(),
        );
        for verdict in VERDICTS {
            workloads.get_or_create(&VerdictLabels { verdict }).set(0);
        }
        for outcome in OUTCOMES {
            verifications.get_or_create(&OutcomeLabels { outcome }).inc_by(0);
        }
        for reason in EVENT_REASONS {
            events.get_or_create(&ReasonLabels { reason }).inc_by(0);
        }
        let rotations = Family::<PhaseLabels, Gauge>::default();
        registry.register("rotations", "KeyRotations by phase", rotations.clone());
        for phase in PHASES {
            rotations.get_or_create(&PhaseLabels { phase }).set(0);
        }
        let rotation_in_progress = Gauge::default();
        registry.register(
            "rotation_in_progress",
            "KeyRotations holding two keys in dual acceptance right now (DualAcceptance, Retiring, \
             Stalled): alert rules use it to silence signature alerts during a planned rotation",
            rotation_in_progress.clone(),
        );
        let rotation_workloads = Family::<StateLabels, Gauge>::default();
        registry.register(
            "rotation_workloads",
            "Workloads governed by rotations in progress, by where they stand (new_key, \
             old_key_only, neither, unknown)",
            rotation_workloads.clone(),
        );
        for state in ROTATION_STATES {
            rotation_workloads.get_or_create(&StateLabels { state }).set(0);
        }
        let rotation_duration = Histogram::new(ROTATION_BUCKETS);
        registry.register_with_unit(
            "rotation_duration",
            "Time from a KeyRotation's window start to its completion (the old key retired)",
            Unit::Seconds,
            rotation_duration.clone(),
        );
        let gitops = GitopsMetrics::register(&mut registry);
        let admission = AdmissionMetrics::register(&mut registry);
        Self {
            registry,
            workloads,
            verdicts_seen: Mutex::new(VERDICTS.into_iter().collect()),
            trust_root_workloads,
            trust_roots_seen: Mutex::default(),
            trust_root_attestations,
            attestations_seen: Mutex::default(),
            trust_root_tlog,
            tlog_seen: Mutex::default(),
            verification_duration,
            verifications,
            registry_requests,
            registry_request_duration,
            reconcile_errors,
            watch_lists,
            sweep_duration,
            sweep_digests,
            pass_duration,
            pass_workloads,
            events,
            leader,
            rotations,
            rotation_in_progress,
            rotation_workloads,
            rotation_duration,
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
        let mut seen = self.verdicts_seen.lock().unwrap_or_else(|p| p.into_inner());
        for verdict in seen.iter() {
            if !counts.iter().any(|(v, _)| v == verdict) {
                self.workloads.get_or_create(&VerdictLabels { verdict }).set(0);
            }
        }
        for &(verdict, count) in counts {
            seen.insert(verdict);
            self.workloads
                .get_or_create(&VerdictLabels { verdict })
                .set(count);
        }
    }

    /// Workloads of each active TrustRoot by verdict, set after each pass; the series of a
    /// TrustRoot absent now are removed.
    pub fn set_trust_root_workloads<'a>(&self, roots: impl IntoIterator<Item = (&'a str, WorkloadCounts)>) {
        let mut seen = self.trust_roots_seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = BTreeSet::new();
        for (name, c) in roots {
            for (verdict, n) in VERDICTS
                .into_iter()
                .zip([c.verified, c.unsigned, c.failed, c.stale])
            {
                let labels = TrustRootLabels {
                    trust_root: name.to_string(),
                    verdict,
                };
                self.trust_root_workloads.get_or_create(&labels).set(i64::from(n));
            }
            now.insert(name.to_string());
        }
        for gone in seen.difference(&now) {
            for verdict in VERDICTS {
                self.trust_root_workloads.remove(&TrustRootLabels {
                    trust_root: gone.clone(),
                    verdict,
                });
            }
        }
        *seen = now;
    }

    /// Governed digests per TrustRoot, required predicate type and attestation state (every
    /// state given, 0 included), set after each pass; requirements absent now lose their series.
    /// Transparency-log coverage per TrustRoot (M7); a TrustRoot gone takes its series with it.
    pub fn set_trust_root_tlog(&self, rows: &[super::tlog::Coverage]) {
        let rows = rows.iter().map(|c| (c.trust_root.clone(), &c.states[..]));
        set_by_state(
            &self.trust_root_tlog,
            &self.tlog_seen,
            &super::tlog::STATES,
            rows,
            |trust_root, state| TlogLabels {
                trust_root: trust_root.clone(),
                state,
            },
        );
    }

    pub fn set_trust_root_attestations(&self, rows: &[super::attestations::Coverage]) {
        let rows = rows
            .iter()
            .map(|c| ((c.trust_root.clone(), c.predicate_type.clone()), &c.states[..]));
        set_by_state(
            &self.trust_root_attestations,
            &self.attestations_seen,
            &super::attestations::STATES,
            rows,
            |(trust_root, predicate_type), state| AttestationLabels {
                trust_root: trust_root.clone(),
                predicate_type: predicate_type.clone(),
                state,
            },
        );
    }

    /// One digest verified (or failed to): outcome is `Outcome::name()`, elapsed the wall time.
    pub fn observe_verification(&self, outcome: &'static str, elapsed: Duration) {
        self.verification_duration.observe(elapsed.as_secs_f64());
        self.verifications.get_or_create(&OutcomeLabels { outcome }).inc();
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
        self.registry_requests
            .get_or_create(&RegistryRequestLabels { operation, outcome })
            .inc();
        self.registry_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    /// A reconcile step failed; `category` is the error's low-cardinality category.
    pub fn reconcile_error(&self, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    /// A watch of `resource` started a full list.
    pub fn watch_listed(&self, resource: &'static str) {
        self.watch_lists.get_or_create(&ResourceLabels { resource }).inc();
    }

    /// A pass over `scope` (`full` or `namespaces`) finished.
    pub fn pass_finished(&self, scope: &'static str, elapsed: Duration, workloads: usize) {
        let labels = ScopeLabels { scope };
        self.pass_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let workloads = u64::try_from(workloads).unwrap_or(u64::MAX);
        self.pass_workloads.get_or_create(&labels).inc_by(workloads);
    }

    pub fn sweep_finished(&self, elapsed: Duration, digests: usize) {
        self.sweep_duration.observe(elapsed.as_secs_f64());
        self.sweep_digests.set(i64::try_from(digests).unwrap_or(i64::MAX));
    }

    /// Events emitted, by reason (`SignatureDrift`, …).
    pub fn event_emitted(&self, reason: &'static str) {
        self.events.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// KeyRotations by phase, rotations in progress, and their workloads by state (in the order
    /// of [`ROTATION_STATES`]), as of the last pass.
    pub fn set_rotations(&self, phases: &[&'static str], in_progress: usize, states: [i64; 4]) {
        for phase in PHASES {
            let n = phases.iter().filter(|p| **p == phase).count();
            self.rotations
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.rotation_in_progress
            .set(i64::try_from(in_progress).unwrap_or(i64::MAX));
        for (state, n) in ROTATION_STATES.into_iter().zip(states) {
            self.rotation_workloads
                .get_or_create(&StateLabels { state })
                .set(n);
        }
    }

    /// A rotation completed, `elapsed` after its window opened.
    pub fn rotation_completed(&self, elapsed: Duration) {
        self.rotation_duration.observe(elapsed.as_secs_f64());
    }

    /// One TrustSource sync finished: `outcome` is `applied`, `unchanged` or an error category.
    /// What one TrustSource fetch received.
    pub fn gitops_fetched(&self, objects: usize, bytes: usize) {
        self.gitops.fetched_objects.inc_by(objects as u64);
        self.gitops.fetched_bytes.inc_by(bytes as u64);
    }

    pub fn gitops_sync(&self, outcome: &'static str, elapsed: Duration) {
        self.gitops.syncs.get_or_create(&OutcomeLabels { outcome }).inc();
        self.gitops.duration.observe(elapsed.as_secs_f64());
    }

    /// One admission review answered.
    pub fn admission(&self, decision: &'static str, reason: &'static str, elapsed: Duration) {
        self.admission
            .requests
            .get_or_create(&DecisionLabels { decision, reason })
            .inc();
        self.admission.duration.observe(elapsed.as_secs_f64());
    }

    /// A governed digest at admission: answered from the cache (`hit`) or not.
    pub fn admission_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.admission.cache.get_or_create(&ResultLabels { result }).inc();
    }

    /// Whether this replica leads (holds the Lease) right now.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
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

/// Sets a gauge family whose series are a key (a TrustRoot, say) times a state, from one count
/// per (key, state) in `rows`. The series of keys no longer in `rows` are removed, every state
/// of them, so that a TrustRoot deleted or a requirement dropped does not keep its last figures.
fn set_by_state<'r, K, L>(
    family: &Family<L, Gauge>,
    seen: &Mutex<BTreeSet<K>>,
    states: &[&'static str],
    rows: impl Iterator<Item = (K, &'r [(&'static str, i64)])>,
    labels: impl Fn(&K, &'static str) -> L,
) where
    K: Ord,
    L: Clone + std::hash::Hash + Eq,
{
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let mut now = BTreeSet::new();
    for (key, counts) in rows {
        for &(state, n) in counts {
            family.get_or_create(&labels(&key, state)).set(n);
        }
        now.insert(key);
    }
    for gone in seen.difference(&now) {
        for &state in states {
            family.remove(&labels(gone, state));
        }
    }
    *seen = now;
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
