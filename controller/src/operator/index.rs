//! The in-memory picture of the cluster, fed by the watches (see `watch.rs`) and read by each
//! pass. Every entry is reduced to what verification needs: no full Pod or ReplicaSet is kept.
//!
//! ```text
//! pods ──owner──► replicasets ──owner──► deployments      namespaces (labels, for selectors)
//!      ──owner──► jobs ──owner──► cronjobs                trust_roots (decoded, or why not)
//!      ──owner──► statefulsets | daemonsets
//! ```

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
};

use kube::core::error_boundary::InvalidObject;
use tokio::sync::{Notify, watch};

use super::{
    pods::PodInfo,
    records::Stored,
    workload::{Owner, OwnerMeta, WorkloadKind},
};
use crate::crd::{KeyRotation, TrustRoot};

/// Namespace (empty for cluster-scoped objects) and name.
pub type Key = (String, String);

/// A map behind a lock, read in place by the passes (no copies of the whole map).
pub struct Mirror<T> {
    map: RwLock<HashMap<Key, T>>,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<T> Mirror<T> {
    /// Runs `f` on the map. Keep `f` short and synchronous: watches wait for the lock.
    pub fn read<R>(&self, f: impl FnOnce(&HashMap<Key, T>) -> R) -> R {
        f(&self.map.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn write<R>(&self, f: impl FnOnce(&mut HashMap<Key, T>) -> R) -> R {
        f(&mut self.map.write().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What is kept of a workload or an intermediate owner: enough to walk owners, and the verdict
/// annotations an earlier version left on it (removed by the next pass that reaches it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub uid: String,
    pub owner: Option<Owner>,
    /// Our own annotations only (written by earlier versions).
    pub annotations: BTreeMap<String, String>,
}

impl Meta {
    /// Our annotations are ours to change; any other change may matter.
    pub fn matters(&self, old: &Self) -> bool {
        (&self.uid, &self.owner) != (&old.uid, &old.owner)
    }

    pub fn owner_meta(&self) -> OwnerMeta {
        OwnerMeta {
            uid: self.uid.clone(),
            owner: self.owner.clone(),
        }
    }
}

/// An object watched through `DeserializeGuard`: decoded, or the reason it could not be.
pub type Guarded<K> = Result<Arc<K>, Arc<InvalidObject>>;

/// A TrustRoot as watched.
pub type TrustRootEntry = Guarded<TrustRoot>;

/// A KeyRotation as watched.
pub type KeyRotationEntry = Guarded<KeyRotation>;

/// Everything the watches keep.
#[derive(Default)]
pub struct Index {
    pub pods: Mirror<PodInfo>,
    /// The recorded verdicts, keyed by (namespace, `records::name`).
    pub verdicts: Mirror<Stored>,
    pub replicasets: Mirror<Meta>,
    pub deployments: Mirror<Meta>,
    pub statefulsets: Mirror<Meta>,
    pub daemonsets: Mirror<Meta>,
    pub jobs: Mirror<Meta>,
    pub cronjobs: Mirror<Meta>,
    /// Namespace labels, keyed by ("", name).
    /// Shared: every workload a pass finds in the namespace points at them.
    pub namespaces: Mirror<Arc<BTreeMap<String, String>>>,
    /// Keyed by ("", name).
    pub trust_roots: Mirror<TrustRootEntry>,
    /// Keyed by ("", name).
    pub key_rotations: Mirror<KeyRotationEntry>,
    /// Woken whenever something that can change a verdict changed.
    pub changes: Notify,
    /// Bumped on every change of a TrustRoot or KeyRotation, status included (admission
    /// rebuilds what it accepts from both).
    pub trust_changes: watch::Sender<u64>,
    /// Where verdicts may have changed since the last pass took it (see [`Changed`]).
    changed: Mutex<Changed>,
    synced: Synced,
}

/// Where something that can change a verdict changed since the last pass: the objects that
/// changed (with their owners' names), whole namespaces (their labels changed), or everything (a
/// relist, a cluster-scoped object). A pass re-assesses only the workloads these lead to unless
/// it has to look at all of them anyway (see `reconciler::scope`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub everything: bool,
    /// Namespaces whose every workload may have changed.
    pub namespaces: HashSet<String>,
    /// By namespace, the names of the objects that changed and of their owners (before and after
    /// the change). Names only, whatever their kind: two objects of one name cost one more
    /// workload assessed, never one missed.
    pub objects: HashMap<String, HashSet<String>>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        !self.everything && self.namespaces.is_empty() && self.objects.is_empty()
    }
}

/// What one watched change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch<'a> {
    /// Every workload: a relist, a cluster-scoped object.
    Everything,
    /// Every workload of a namespace: its labels changed.
    Namespace(&'a str),
    /// The workloads of an object of this namespace: its name and its owners' names.
    Objects { namespace: &'a str, names: Vec<&'a str> },
}

impl Index {
    /// The mirror of a workload kind's metadata; `None` for pods (kept whole in `pods`).
    pub fn metas(&self, kind: WorkloadKind) -> Option<&Mirror<Meta>> {
        Some(match kind {
            WorkloadKind::Deployment => &self.deployments,
            WorkloadKind::StatefulSet => &self.statefulsets,
            WorkloadKind::DaemonSet => &self.daemonsets,
            WorkloadKind::ReplicaSet => &self.replicasets,
            WorkloadKind::Job => &self.jobs,
            WorkloadKind::CronJob => &self.cronjobs,
            WorkloadKind::Pod => return None,
        })
    }

    /// The TrustRoots, sorted by name.
    pub fn trust_roots(&self) -> Vec<TrustRootEntry> {
        let mut roots: Vec<(String, TrustRootEntry)> = self.trust_roots.read(|m| {
            m.iter()
                .map(|((_, name), entry)| (name.clone(), entry.clone()))
                .collect()
        });
        roots.sort_by(|a, b| a.0.cmp(&b.0));
        roots.into_iter().map(|(_, e)| e).collect()
    }

    /// The KeyRotations that decode, sorted by name. One that does not decode is logged by the
    /// watch (the CRD's schema and CEL rules make that rare) and has no effect.
    pub fn key_rotations(&self) -> Vec<Arc<KeyRotation>> {
        let mut rotations: Vec<Arc<KeyRotation>> = self
            .key_rotations
            .read(|m| m.values().filter_map(|e| e.as_ref().ok().cloned()).collect());
        rotations.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        rotations
    }

    /// Notes a change for the next pass.
    pub fn mark_changed(&self, touch: Touch<'_>) {
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        if changed.everything {
            return;
        }
        match touch {
            Touch::Everything => {
                *changed = Changed {
                    everything: true,
                    ..Changed::default()
                };
            }
            Touch::Namespace(ns) => {
                changed.namespaces.insert(ns.to_string());
            }
            Touch::Objects { namespace, names } => {
                let objects = changed.objects.entry(namespace.to_string()).or_default();
                objects.extend(names.into_iter().map(str::to_string));
            }
        }
    }

    /// What changed since the last call.
    pub fn take_changed(&self) -> Changed {
        std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn synced(&self) -> &Synced {
        &self.synced
    }
}

/// Counts the watches whose first list completed.
pub struct Synced {
    count: watch::Sender<usize>,
}

impl Default for Synced {
    fn default() -> Self {
        Self {
            count: watch::channel(0).0,
        }
    }
}

impl Synced {
    pub fn add_one(&self) {
        self.count.send_modify(|n| *n += 1);
    }

    /// Resolves once `total` watches have listed everything once.
    pub async fn wait_for(&self, total: usize) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n >= total).await;
    }
}
