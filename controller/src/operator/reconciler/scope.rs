//! How much of the cluster a pass looks at, and what it keeps of the workloads it did not.
//!
//! A pass over every workload costs O(cluster): at 50,000 pods about 280 ms of CPU, spent
//! grouping pods, planning and assessing workloads nothing happened to. Most passes follow a
//! handful of pod changes, so a pass re-assesses only the workloads of the namespaces where
//! something changed ([`Index::take_changed`](super::Index)), and counts the others from what
//! they contributed when last assessed ([`Contributions`]). Namespaces, not single workloads,
//! because every change arrives with its namespace while a deleted pod no longer says which
//! workload it belonged to; grouping the pods of one namespace is cheap.
//!
//! Every workload is looked at when the answer may differ for workloads nothing happened to: the
//! first pass, a due sweep (digests re-checked), the trust roots compiled differently (a key, a
//! threshold, a Secret's content), a rotation in progress (its tally counts every workload), a
//! failed write to retry, or a relist or a cluster-scoped change (TrustRoot, KeyRotation).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{crd::WorkloadCounts, operator::index::Changed, reports};

/// The workloads a pass looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Everything,
    Namespaces(HashSet<String>),
}

impl Scope {
    /// The namespaces to look at; `None` for all.
    pub fn namespaces(&self) -> Option<&HashSet<String>> {
        match self {
            Self::Everything => None,
            Self::Namespaces(n) => Some(n),
        }
    }

    pub fn is_everything(&self) -> bool {
        matches!(self, Self::Everything)
    }

    /// The metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Everything => "full",
            Self::Namespaces(_) => "namespaces",
        }
    }
}

/// What, besides the index' changes, makes a pass look at every workload.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reasons {
    /// No pass has looked at every workload yet.
    pub first: bool,
    pub sweep_due: bool,
    /// The active trust roots or their compiled versions differ from the last pass'.
    pub roots_changed: bool,
    /// A rotation is live (its tally, stragglers and window edges cover every workload).
    pub rotation_live: bool,
    /// A write of the last pass failed.
    pub retry: bool,
}

/// The scope of a pass: pure.
pub fn decide(reasons: Reasons, changed: Changed) -> Scope {
    let Reasons {
        first,
        sweep_due,
        roots_changed,
        rotation_live,
        retry,
    } = reasons;
    if first || sweep_due || roots_changed || rotation_live || retry || changed.everything {
        Scope::Everything
    } else {
        Scope::Namespaces(changed.namespaces)
    }
}

/// What one workload contributed when it was last assessed.
pub struct Contribution {
    pub namespace: String,
    /// Per TrustRoot governing it: the workload's bucket in that root's counts (`total` 1).
    pub counts: Vec<(String, WorkloadCounts)>,
    /// Its verdict's metrics label; `None` when no TrustRoot governs it.
    pub bucket: Option<&'static str>,
    /// Its findings, with `--policy-reports`.
    pub entry: Option<reports::Entry>,
}

/// By workload uid, every running workload's [`Contribution`]: the totals of a pass that looked
/// at a few namespaces still count every workload.
#[derive(Default)]
pub struct Contributions {
    by_uid: HashMap<String, Contribution>,
}

impl Contributions {
    /// Forgets what the pass is about to assess again: everything, or its namespaces.
    pub fn begin(&mut self, scope: &Scope) {
        match scope {
            Scope::Everything => self.by_uid.clear(),
            Scope::Namespaces(namespaces) => {
                self.by_uid.retain(|_, c| !namespaces.contains(&c.namespace));
            }
        }
    }

    pub fn record(&mut self, uid: String, contribution: Contribution) {
        self.by_uid.insert(uid, contribution);
    }

    /// Whether the workload of `uid` runs (was assessed by this pass or kept from an earlier one).
    pub fn contains(&self, uid: &str) -> bool {
        self.by_uid.contains_key(uid)
    }

    /// Governed workloads by verdict, per TrustRoot.
    pub fn counts(&self) -> HashMap<String, WorkloadCounts> {
        let mut out: HashMap<String, WorkloadCounts> = HashMap::new();
        for (root, c) in self.by_uid.values().flat_map(|c| &c.counts) {
            let total = out.entry(root.clone()).or_default();
            total.total += c.total;
            total.verified += c.verified;
            total.failed += c.failed;
            total.unsigned += c.unsigned;
            total.stale += c.stale;
        }
        out
    }

    /// Governed workloads by verdict label (the metric).
    pub fn by_verdict(&self) -> Vec<(&'static str, i64)> {
        let mut out: BTreeMap<&'static str, i64> = BTreeMap::new();
        for bucket in self.by_uid.values().filter_map(|c| c.bucket) {
            *out.entry(bucket).or_default() += 1;
        }
        out.into_iter().collect()
    }

    /// Every governed workload's findings (`--policy-reports`).
    pub fn entries(&self) -> impl Iterator<Item = &reports::Entry> {
        self.by_uid.values().filter_map(|c| c.entry.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(everything: bool, namespaces: &[&str]) -> Changed {
        Changed {
            everything,
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_pod_change_alone_looks_at_its_namespace_only() {
        let scope = decide(Reasons::default(), changed(false, &["team-a"]));
        assert_eq!(scope, Scope::Namespaces(["team-a".to_string()].into()));
        assert_eq!(scope.name(), "namespaces");
    }

    #[test]
    fn anything_that_can_change_other_workloads_looks_at_every_one() {
        let each = [
            Reasons {
                first: true,
                ..Reasons::default()
            },
            Reasons {
                sweep_due: true,
                ..Reasons::default()
            },
            Reasons {
                roots_changed: true,
                ..Reasons::default()
            },
            Reasons {
                rotation_live: true,
                ..Reasons::default()
            },
            Reasons {
                retry: true,
                ..Reasons::default()
            },
        ];
        for reasons in each {
            let scope = decide(reasons, changed(false, &["team-a"]));
            assert_eq!(scope, Scope::Everything, "{reasons:?}");
        }
        let relisted = decide(Reasons::default(), changed(true, &[]));
        assert_eq!(relisted, Scope::Everything);
    }

    fn contribution(namespace: &str, root: &str, verified: bool) -> Contribution {
        let counts = WorkloadCounts {
            total: 1,
            verified: i32::from(verified),
            failed: i32::from(!verified),
            ..WorkloadCounts::default()
        };
        Contribution {
            namespace: namespace.into(),
            counts: vec![(root.into(), counts)],
            bucket: Some(if verified { "Verified" } else { "Failed" }),
            entry: None,
        }
    }

    #[test]
    fn totals_count_kept_workloads_with_those_assessed_again() {
        let mut kept = Contributions::default();
        kept.begin(&Scope::Everything);
        kept.record("a1".into(), contribution("a", "prod", true));
        kept.record("a2".into(), contribution("a", "prod", true));
        kept.record("b1".into(), contribution("b", "prod", true));
        // A pass over namespace a: a2 is gone, a1 now fails; b1 is counted as it was.
        kept.begin(&Scope::Namespaces(["a".to_string()].into()));
        kept.record("a1".into(), contribution("a", "prod", false));
        let prod = kept.counts()["prod"];
        assert_eq!((prod.total, prod.verified, prod.failed), (2, 1, 1));
        assert_eq!(kept.by_verdict(), [("Failed", 1), ("Verified", 1)]);
        assert!(kept.contains("b1") && !kept.contains("a2"));
        kept.begin(&Scope::Everything);
        assert!(kept.counts().is_empty());
    }
}
