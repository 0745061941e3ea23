//! What the workloads look like, as of the last pass: by verdict, and per TrustRoot by verdict,
//! by required attestation and by transparency-log coverage.

use std::{collections::BTreeSet, sync::Mutex};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::crd::WorkloadCounts;
use crate::operator::{attestations, tlog};

/// The verdicts of the design, exported as 0 from the start so that a dashboard's ratio and an
/// alert's `absent()` work before the first sweep (and on a standby replica).
const VERDICTS: [&str; 4] = ["Verified", "Unsigned", "Failed", "Stale"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustRootLabels {
    trust_root: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestationLabels {
    trust_root: String,
    predicate_type: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlogLabels {
    trust_root: String,
    state: &'static str,
}

pub(super) struct WorkloadMetrics {
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
}

impl WorkloadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let workloads = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "workloads",
            "Governed workloads by verdict (Verified, Unsigned, Failed, Stale), as of the last sweep",
            workloads.clone(),
        );
        for verdict in VERDICTS {
            workloads.get_or_create(&VerdictLabels { verdict }).set(0);
        }
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
        Self {
            workloads,
            verdicts_seen: Mutex::new(VERDICTS.into_iter().collect()),
            trust_root_workloads,
            trust_roots_seen: Mutex::default(),
            trust_root_attestations,
            attestations_seen: Mutex::default(),
            trust_root_tlog,
            tlog_seen: Mutex::default(),
        }
    }

    pub(super) fn set_by_verdict(&self, counts: &[(&'static str, i64)]) {
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

    pub(super) fn set_trust_roots<'a>(&self, roots: impl IntoIterator<Item = (&'a str, WorkloadCounts)>) {
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

    pub(super) fn set_tlog(&self, rows: &[tlog::Coverage]) {
        let rows = rows.iter().map(|c| (c.trust_root.clone(), &c.states[..]));
        set_by_state(
            &self.trust_root_tlog,
            &self.tlog_seen,
            &tlog::STATES,
            rows,
            |trust_root, state| TlogLabels {
                trust_root: trust_root.clone(),
                state,
            },
        );
    }

    pub(super) fn set_attestations(&self, rows: &[attestations::Coverage]) {
        let rows = rows
            .iter()
            .map(|c| ((c.trust_root.clone(), c.predicate_type.clone()), &c.states[..]));
        set_by_state(
            &self.trust_root_attestations,
            &self.attestations_seen,
            &attestations::STATES,
            rows,
            |(trust_root, predicate_type), state| AttestationLabels {
                trust_root: trust_root.clone(),
                predicate_type: predicate_type.clone(),
                state,
            },
        );
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
