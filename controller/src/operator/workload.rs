//! Workloads: what a person manages, reached from a pod through controller owner references.
//!
//! ```text
//! Pod ──► ReplicaSet ──► Deployment          (a ReplicaSet without a Deployment is itself the workload)
//! Pod ──► Job ──► CronJob                    (a Job without a CronJob is itself the workload)
//! Pod ──► StatefulSet | DaemonSet
//! Pod                                        (no controller, or one of a kind we do not know)
//! ```
//!
//! Walking is pure: the owners' metadata comes from the watch caches through a lookup function,
//! so it is tested with plain maps.

use std::{borrow::Cow, fmt};

use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::OwnerReference};

/// The kinds of workload verdicts are written on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Pod,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::Pod => "Pod",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Self::Deployment | Self::StatefulSet | Self::DaemonSet | Self::ReplicaSet => "apps/v1",
            Self::Job | Self::CronJob => "batch/v1",
            Self::Pod => "v1",
        }
    }

    /// The kind an owner reference names, when it is one we know (same group, any version).
    fn of_owner(owner: &Owner) -> Option<Self> {
        let group = owner.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = match (group, &*owner.kind) {
            ("apps", "Deployment") => Self::Deployment,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("apps", "DaemonSet") => Self::DaemonSet,
            ("apps", "ReplicaSet") => Self::ReplicaSet,
            ("batch", "Job") => Self::Job,
            ("batch", "CronJob") => Self::CronJob,
            _ => return None,
        };
        Some(kind)
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One workload, by kind, namespace, name and uid (the uid tells a re-created object apart).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl WorkloadRef {
    /// What Events point at.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.kind.api_version().into()),
            kind: Some(self.kind.as_str().into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A controller owner reference, reduced to what walking needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Borrowed when it is one of [`COMMON`] (one fewer allocation per pod in the index).
    pub api_version: Cow<'static, str>,
    pub kind: Cow<'static, str>,
    pub name: String,
    pub uid: String,
}

/// The group versions and kinds nearly every owner reference names.
const COMMON: [&str; 8] = [
    "apps/v1",
    "batch/v1",
    "ReplicaSet",
    "Job",
    "StatefulSet",
    "DaemonSet",
    "Deployment",
    "CronJob",
];

fn shared(s: &str) -> Cow<'static, str> {
    COMMON
        .iter()
        .find(|c| **c == s)
        .map_or_else(|| Cow::Owned(s.to_string()), |c| Cow::Borrowed(*c))
}

impl Owner {
    /// The controller among `refs` (at most one has `controller: true`).
    pub fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<Self> {
        refs?.iter().find(|r| r.controller == Some(true)).map(|r| Self {
            api_version: shared(&r.api_version),
            kind: shared(&r.kind),
            name: r.name.clone(),
            uid: r.uid.clone(),
        })
    }
}

/// What the watch caches know of an intermediate owner (a ReplicaSet or a Job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerMeta {
    pub uid: String,
    pub owner: Option<Owner>,
}

/// Where walking from a pod ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Walk {
    Workload(WorkloadRef),
    /// An owner is not in the caches yet (or was re-created under the same name): decide later,
    /// rather than write a verdict onto the wrong object.
    Pending,
}

/// The workload of a pod in `namespace`. `lookup(kind, name)` returns the cached metadata of a
/// ReplicaSet or Job in that namespace.
pub fn walk(
    namespace: &str,
    pod_name: &str,
    pod_uid: &str,
    owner: Option<&Owner>,
    lookup: impl Fn(WorkloadKind, &str) -> Option<OwnerMeta>,
) -> Walk {
    let workload = |kind, owner: &Owner| {
        Walk::Workload(WorkloadRef {
            kind,
            namespace: namespace.to_string(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        })
    };
    let Some(owner) = owner else {
        return Walk::Workload(WorkloadRef {
            kind: WorkloadKind::Pod,
            namespace: namespace.to_string(),
            name: pod_name.to_string(),
            uid: pod_uid.to_string(),
        });
    };
    let kind = match WorkloadKind::of_owner(owner) {
        Some(kind) => kind,
        // Owned by a controller we do not know (an operator's CRD): the pod is what we can
        // annotate, and its owner's name is in its owner references for people to follow.
        None => return walk(namespace, pod_name, pod_uid, None, lookup),
    };
    let parent_kind = match kind {
        WorkloadKind::ReplicaSet => WorkloadKind::Deployment,
        WorkloadKind::Job => WorkloadKind::CronJob,
        _ => return workload(kind, owner),
    };
    let Some(meta) = lookup(kind, &owner.name).filter(|m| m.uid == owner.uid) else {
        return Walk::Pending;
    };
    match &meta.owner {
        Some(parent) if WorkloadKind::of_owner(parent) == Some(parent_kind) => workload(parent_kind, parent),
        _ => workload(kind, owner),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str) -> Owner {
        Owner {
            api_version: api_version.to_string().into(),
            kind: kind.to_string().into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn caches(entries: &[(WorkloadKind, &str, Option<Owner>)]) -> HashMap<(WorkloadKind, String), OwnerMeta> {
        entries
            .iter()
            .map(|(kind, name, parent)| {
                let meta = OwnerMeta {
                    uid: format!("uid-{name}"),
                    owner: parent.clone(),
                };
                ((*kind, name.to_string()), meta)
            })
            .collect()
    }

    fn walk_in(cache: &HashMap<(WorkloadKind, String), OwnerMeta>, owner: Option<&Owner>) -> Walk {
        walk("ns", "pod", "uid-pod", owner, |k, n| {
            cache.get(&(k, n.to_string())).cloned()
        })
    }

    fn expect(kind: WorkloadKind, name: &str) -> Walk {
        Walk::Workload(WorkloadRef {
            kind,
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        })
    }

    #[test]
    fn a_pod_without_controller_is_its_own_workload() {
        assert_eq!(walk_in(&HashMap::new(), None), expect(WorkloadKind::Pod, "pod"));
    }

    #[test]
    fn replicasets_lead_to_their_deployment_or_stand_alone() {
        let cache = caches(&[
            (
                WorkloadKind::ReplicaSet,
                "web-1",
                Some(owner("apps/v1", "Deployment", "web")),
            ),
            (WorkloadKind::ReplicaSet, "lonely", None),
            (
                WorkloadKind::ReplicaSet,
                "rollout-1",
                Some(owner("argoproj.io/v1alpha1", "Rollout", "r")),
            ),
        ]);
        let rs = |name| owner("apps/v1", "ReplicaSet", name);
        assert_eq!(
            walk_in(&cache, Some(&rs("web-1"))),
            expect(WorkloadKind::Deployment, "web")
        );
        assert_eq!(
            walk_in(&cache, Some(&rs("lonely"))),
            expect(WorkloadKind::ReplicaSet, "lonely")
        );
        assert_eq!(
            walk_in(&cache, Some(&rs("rollout-1"))),
            expect(WorkloadKind::ReplicaSet, "rollout-1")
        );
    }

    #[test]
    fn jobs_lead_to_their_cronjob_or_stand_alone() {
        let cache = caches(&[
            (
                WorkloadKind::Job,
                "nightly-123",
                Some(owner("batch/v1", "CronJob", "nightly")),
            ),
            (WorkloadKind::Job, "once", None),
        ]);
        let job = |name| owner("batch/v1", "Job", name);
        assert_eq!(
            walk_in(&cache, Some(&job("nightly-123"))),
            expect(WorkloadKind::CronJob, "nightly")
        );
        assert_eq!(
            walk_in(&cache, Some(&job("once"))),
            expect(WorkloadKind::Job, "once")
        );
    }

    #[test]
    fn statefulsets_and_daemonsets_are_direct() {
        let cache = HashMap::new();
        assert_eq!(
            walk_in(&cache, Some(&owner("apps/v1", "StatefulSet", "db"))),
            expect(WorkloadKind::StatefulSet, "db")
        );
        assert_eq!(
            walk_in(&cache, Some(&owner("apps/v1", "DaemonSet", "agent"))),
            expect(WorkloadKind::DaemonSet, "agent")
        );
    }

    #[test]
    fn unknown_controllers_leave_the_pod() {
        let cache = HashMap::new();
        assert_eq!(
            walk_in(&cache, Some(&owner("example.com/v1", "Thing", "t"))),
            expect(WorkloadKind::Pod, "pod")
        );
        // Same kind name, other group: not ours either.
        assert_eq!(
            walk_in(&cache, Some(&owner("example.com/v1", "Deployment", "d"))),
            expect(WorkloadKind::Pod, "pod")
        );
    }

    #[test]
    fn an_owner_not_cached_yet_or_recreated_is_pending() {
        let mut cache = caches(&[(WorkloadKind::ReplicaSet, "web-1", None)]);
        let rs = owner("apps/v1", "ReplicaSet", "web-2");
        assert_eq!(walk_in(&cache, Some(&rs)), Walk::Pending);
        if let Some(meta) = cache.get_mut(&(WorkloadKind::ReplicaSet, "web-1".to_string())) {
            meta.uid = "another-uid".into();
        }
        assert_eq!(
            walk_in(&cache, Some(&owner("apps/v1", "ReplicaSet", "web-1"))),
            Walk::Pending
        );
    }

    #[test]
    fn object_refs_carry_api_version_and_uid() {
        let r = WorkloadRef {
            kind: WorkloadKind::CronJob,
            namespace: "ns".into(),
            name: "nightly".into(),
            uid: "u".into(),
        };
        let o = r.object_ref();
        assert_eq!(o.api_version.as_deref(), Some("batch/v1"));
        assert_eq!(o.kind.as_deref(), Some("CronJob"));
        assert_eq!(o.uid.as_deref(), Some("u"));
        assert_eq!(r.to_string(), "CronJob ns/nightly");
    }
}
