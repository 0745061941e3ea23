//! How much of the cluster a pass looks at, and what it keeps of the workloads it did not.
//!
//! A pass over every workload costs O(cluster): at 50,000 pods about 280 ms of CPU, spent
//! grouping pods, planning and assessing workloads nothing happened to. Most passes follow a
//! handful of pod changes, so a pass re-assesses only the workloads those changes lead to
//! ([`Index::take_changed`](super::Index)), and counts the others from what they contributed when
//! last assessed ([`Contributions`]).
//!
//! A change names its object and the object's owner, before and after (a deleted pod still names
//! its ReplicaSet); [`Scope::resolve`] follows ReplicaSets and Jobs one step further, to their
//! Deployments and CronJobs, so that the workload is reached even when the changed pod was the
//! last of its ReplicaSet. A Namespace's labels reach every workload of that namespace.
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
    /// The workloads of these namespaces, and of these names by namespace.
    Changed {
        namespaces: HashSet<String>,
        names: HashMap<String, HashSet<String>>,
    },
}

impl Scope {
    pub fn is_everything(&self) -> bool {
        matches!(self, Self::Everything)
    }

    /// The metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Everything => "full",
            Self::Changed { .. } => "changed",
        }
    }

    /// Whether any workload of `namespace` may be in scope (its pods are worth grouping).
    pub fn reaches(&self, namespace: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Changed { namespaces, names } => {
                namespaces.contains(namespace) || names.contains_key(namespace)
            }
        }
    }

    /// Whether the workload `name` of `namespace` is in scope.
    pub fn covers(&self, namespace: &str, name: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Changed { namespaces, names } => {
                namespaces.contains(namespace) || names.get(namespace).is_some_and(|n| n.contains(name))
            }
        }
    }

    /// Adds the owners of the named objects: `owner(namespace, name)` is the controller's name of
    /// a ReplicaSet or Job of that name. One step is enough: Deployments and CronJobs own nothing
    /// that owns workloads.
    pub fn resolve(mut self, owner: impl Fn(&str, &str) -> Vec<String>) -> Self {
        if let Self::Changed { names, .. } = &mut self {
            for (namespace, names) in names.iter_mut() {
                let owners: Vec<String> = names.iter().flat_map(|n| owner(namespace, n)).collect();
                names.extend(owners);
            }
        }
        self
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
        Scope::Changed {
            namespaces: changed.namespaces,
            names: changed.objects,
        }
    }
}

/// What one workload contributed when it was last assessed.
pub struct Contribution {
    pub namespace: String,
    /// The workload's name.
    pub name: String,
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
    /// Forgets what the pass is about to assess again (a workload in scope that no longer runs
    /// is not assessed, so it is forgotten here).
    pub fn begin(&mut self, scope: &Scope) {
        match scope {
            Scope::Everything => self.by_uid.clear(),
            Scope::Changed { .. } => self.by_uid.retain(|_, c| !scope.covers(&c.namespace, &c.name)),
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

    fn changed(everything: bool, namespaces: &[&str], objects: &[(&str, &str)]) -> Changed {
        let mut by_namespace: HashMap<String, HashSet<String>> = HashMap::new();
        for (ns, name) in objects {
            by_namespace
                .entry(ns.to_string())
                .or_default()
                .insert(name.to_string());
        }
        Changed {
            everything,
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            objects: by_namespace,
        }
    }

    #[test]
    fn a_pod_change_alone_looks_at_its_workload_only() {
        // A pod of ReplicaSet web-1 (Deployment web) deleted: the change names both objects.
        let scope = decide(
            Reasons::default(),
            changed(false, &[], &[("a", "web-1-x"), ("a", "web-1")]),
        );
        assert_eq!(scope.name(), "changed");
        let owner = |ns: &str, name: &str| {
            (ns == "a" && name == "web-1")
                .then(|| "web".to_string())
                .into_iter()
                .collect()
        };
        let scope = scope.resolve(owner);
        assert!(scope.covers("a", "web"), "the Deployment, through its ReplicaSet");
        assert!(!scope.covers("a", "api"), "another workload of the namespace");
        assert!(!scope.covers("b", "web"), "a namespace nothing happened in");
        assert!(scope.reaches("a") && !scope.reaches("b"));
    }

    #[test]
    fn a_namespace_change_looks_at_every_workload_of_it() {
        let scope = decide(Reasons::default(), changed(false, &["a"], &[("b", "tool")]));
        let scope = scope.resolve(|_, _| Vec::new());
        assert!(scope.covers("a", "web") && scope.covers("a", "api"));
        assert!(scope.covers("b", "tool") && !scope.covers("b", "web"));
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
            let scope = decide(reasons, changed(false, &["team-a"], &[]));
            assert_eq!(scope, Scope::Everything, "{reasons:?}");
        }
        let relisted = decide(Reasons::default(), changed(true, &[], &[]));
        assert_eq!(relisted, Scope::Everything);
    }

    fn contribution(namespace: &str, name: &str, root: &str, verified: bool) -> Contribution {
        let counts = WorkloadCounts {
            total: 1,
            verified: i32::from(verified),
            failed: i32::from(!verified),
            ..WorkloadCounts::default()
        };
        Contribution {
            namespace: namespace.into(),
            name: name.into(),
            counts: vec![(root.into(), counts)],
            bucket: Some(if verified { "Verified" } else { "Failed" }),
            entry: None,
        }
    }

    #[test]
    fn totals_count_kept_workloads_with_those_assessed_again() {
        let mut kept = Contributions::default();
        kept.begin(&Scope::Everything);
        kept.record("a1".into(), contribution("a", "one", "prod", true));
        kept.record("a2".into(), contribution("a", "two", "prod", true));
        kept.record("a3".into(), contribution("a", "three", "prod", true));
        kept.record("b1".into(), contribution("b", "one", "prod", true));
        // A pass over a/one and a/two: a/two is gone, a/one now fails; a/three and b/one are
        // counted as they were.
        let scope = decide(
            Reasons::default(),
            changed(false, &[], &[("a", "one"), ("a", "two")]),
        );
        kept.begin(&scope);
        kept.record("a1".into(), contribution("a", "one", "prod", false));
        let prod = kept.counts()["prod"];
        assert_eq!((prod.total, prod.verified, prod.failed), (3, 2, 1));
        assert_eq!(kept.by_verdict(), [("Failed", 1), ("Verified", 2)]);
        assert!(kept.contains("b1") && kept.contains("a3") && !kept.contains("a2"));
        kept.begin(&Scope::Everything);
        assert!(kept.counts().is_empty());
    }
}
