//! Step 1 of a pass: from the index to workloads, each with the union of its pods' images (init
//! and ephemeral containers count), pull secrets and the verdict recorded on it. Pure apart from
//! taking the index' read locks.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use super::{
    index::{Index, Key},
    pods::{PodInfo, PodShape, RunningImage},
    records,
    verdict::Recorded,
    workload::{OwnerMeta, Walk, WorkloadKind, WorkloadRef, walk},
};

/// A workload as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub workload: WorkloadRef,
    pub images: BTreeSet<RunningImage>,
    pub pull_secrets: BTreeSet<String>,
    pub namespace_labels: Arc<BTreeMap<String, String>>,
    /// The verdict recorded for it (its `WorkloadVerdict`), as watched.
    pub record: Option<Recorded>,
    /// Verdict annotations an earlier version left on the object.
    pub annotations: BTreeMap<String, String>,
}

/// Every workload with running pods whose owners and object are known, of the namespaces that
/// `reaches` and named as `covers(namespace, name)` allows, with the verdict recorded for it. One whose owner chain or object has
/// not reached the caches yet is left for a later pass (its arrival starts one).
pub fn workloads(
    index: &Index,
    reaches: impl Fn(&str) -> bool,
    covers: impl Fn(&str, &str) -> bool,
) -> Vec<Workload> {
    let wanted = |w: &WorkloadRef| covers(&w.namespace, &w.name);
    let mut found = index.pods.read(|pods| {
        index.replicasets.read(|replicasets| {
            index.jobs.read(|jobs| {
                let owner = |kind: WorkloadKind, namespace: &str, name: &str| {
                    let key = (namespace.to_string(), name.to_string());
                    match kind {
                        WorkloadKind::ReplicaSet => replicasets.get(&key).map(|m| m.owner_meta()),
                        WorkloadKind::Job => jobs.get(&key).map(|m| m.owner_meta()),
                        _ => None,
                    }
                };
                let annotations = |w: &WorkloadRef| legacy_annotations(index, pods, w);
                let labels = |namespace: &str| {
                    index
                        .namespaces
                        .read(|m| m.get(&(String::new(), namespace.to_string())).cloned())
                        .unwrap_or_default()
                };
                group(pods, (reaches, wanted), owner, annotations, labels)
            })
        })
    });
    index.verdicts.read(|verdicts| {
        for w in &mut found {
            w.record = verdicts
                .get(&records::key(&w.workload))
                .filter(|s| s.workload_uid == w.workload.uid)
                .map(|s| s.recorded.clone());
        }
    });
    found
}

/// The controllers' names of the ReplicaSet and of the Job called `name` in `namespace`, as far
/// as the caches know them.
pub fn owners(index: &Index, namespace: &str, name: &str) -> Vec<String> {
    let key = (namespace.to_string(), name.to_string());
    let owner = |m: &std::collections::HashMap<Key, super::index::Meta>| {
        m.get(&key)
            .and_then(|meta| meta.owner.as_ref())
            .map(|o| o.name.clone())
    };
    let replicaset = index.replicasets.read(owner);
    let job = index.jobs.read(owner);
    replicaset.into_iter().chain(job).collect()
}

/// The verdict annotations an earlier version left on `w`, when the object is known (and is
/// the same object: same uid).
fn legacy_annotations(
    index: &Index,
    pods: &HashMap<Key, PodInfo>,
    w: &WorkloadRef,
) -> Option<BTreeMap<String, String>> {
    let key = (w.namespace.clone(), w.name.clone());
    match index.metas(w.kind) {
        Some(mirror) => mirror.read(|m| {
            m.get(&key)
                .filter(|meta| meta.uid == w.uid)
                .map(|meta| meta.annotations.clone())
        }),
        None => pods.get(&key).map(|p| p.annotations.clone()),
    }
}

/// Groups by workload the pods of the namespaces `included.0` accepts, keeping the workloads
/// `included.1` accepts. `owner(kind, namespace, name)` looks up ReplicaSets and Jobs,
/// `annotations(workload)` reads the object's leftover verdict annotations (`None`: the object
/// is not known yet), `labels(namespace)` the
/// namespace's labels.
pub fn group(
    pods: &HashMap<Key, PodInfo>,
    included: (impl Fn(&str) -> bool, impl Fn(&WorkloadRef) -> bool),
    owner: impl Fn(WorkloadKind, &str, &str) -> Option<OwnerMeta>,
    annotations: impl Fn(&WorkloadRef) -> Option<BTreeMap<String, String>>,
    labels: impl Fn(&str) -> Arc<BTreeMap<String, String>>,
) -> Vec<Workload> {
    // Each workload with the shapes already merged into it: a ReplicaSet's pods share one, so
    // its images are copied once, not once per pod.
    let mut by_workload: BTreeMap<WorkloadRef, (Workload, Vec<&Arc<PodShape>>)> = BTreeMap::new();
    let mut pending: BTreeSet<WorkloadRef> = BTreeSet::new();
    let (namespaces, wanted) = included;
    for ((namespace, name), pod) in pods.iter().filter(|((ns, _), _)| namespaces(ns)) {
        let lookup = |kind, name: &str| owner(kind, namespace, name);
        let shape = &pod.shape;
        let Walk::Workload(w) = walk(namespace, name, &pod.uid, shape.owner.as_ref(), lookup) else {
            continue;
        };
        if pending.contains(&w) || !wanted(&w) {
            continue;
        }
        if !by_workload.contains_key(&w) {
            let Some(annotations) = annotations(&w) else {
                pending.insert(w);
                continue;
            };
            let entry = Workload {
                workload: w.clone(),
                images: BTreeSet::new(),
                pull_secrets: BTreeSet::new(),
                namespace_labels: labels(namespace),
                record: None,
                annotations,
            };
            by_workload.insert(w.clone(), (entry, Vec::new()));
        }
        if let Some((entry, merged)) = by_workload.get_mut(&w)
            && !merged.iter().any(|m| Arc::ptr_eq(m, shape))
        {
            merged.push(shape);
            entry.images.extend(shape.images.iter().cloned());
            entry.pull_secrets.extend(shape.pull_secrets.iter().cloned());
        }
    }
    by_workload.into_values().map(|(workload, _)| workload).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::workload::Owner;

    fn pod(name: &'static str, owner: Option<Owner>, image: &str, secret: &str) -> (&'static str, PodInfo) {
        let info = PodInfo {
            uid: format!("uid-{name}"),
            shape: crate::operator::pods::intern(PodShape {
                owner,
                images: vec![RunningImage {
                    image: image.into(),
                    digest: None,
                }],
                pull_secrets: vec![secret.into()],
            }),
            annotations: BTreeMap::from([("countersign.dev/verdict".into(), "Verified".into())]),
        };
        (name, info)
    }

    fn rs(name: &str) -> Owner {
        Owner {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn pods_of_one_deployment_are_one_workload_with_the_union_of_their_images() {
        let pods: HashMap<Key, PodInfo> = [
            pod("web-a", Some(rs("web-1")), "app:v1", "s1"),
            pod("web-b", Some(rs("web-2")), "app:v2", "s2"),
            pod("bare", None, "tool:v1", "s3"),
            pod("orphan", Some(rs("unknown")), "x:v1", "s4"),
        ]
        .into_iter()
        .map(|(name, p)| (("ns".to_string(), name.to_string()), p))
        .collect();
        let owner = |_: WorkloadKind, _: &str, name: &str| {
            name.starts_with("web-").then(|| OwnerMeta {
                uid: format!("uid-{name}"),
                owner: Some(Owner {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    uid: "uid-web".into(),
                }),
            })
        };
        let annotations =
            |w: &WorkloadRef| (w.kind != WorkloadKind::Pod || w.name == "bare").then(BTreeMap::new);
        let labels = |_: &str| Arc::new(BTreeMap::from([("team".to_string(), "a".to_string())]));
        let everything = (|_: &str| true, |_: &WorkloadRef| true);
        let found = group(&pods, everything, owner, annotations, labels);
        let summary: Vec<(String, Vec<&str>, Vec<&str>)> = found
            .iter()
            .map(|w| {
                (
                    w.workload.to_string(),
                    w.images.iter().map(|i| i.image.as_str()).collect(),
                    w.pull_secrets.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "Deployment ns/web".to_string(),
                    vec!["app:v1", "app:v2"],
                    vec!["s1", "s2"]
                ),
                ("Pod ns/bare".to_string(), vec!["tool:v1"], vec!["s3"]),
            ]
        );
        assert_eq!(
            found[0].namespace_labels.get("team").map(String::as_str),
            Some("a")
        );
        // A pass over other namespaces groups none of these pods.
        let elsewhere = (|ns: &str| ns == "other", |_: &WorkloadRef| true);
        assert!(group(&pods, elsewhere, owner, annotations, labels).is_empty());
        // A pass over one workload groups its pods only.
        let web = (|_: &str| true, |w: &WorkloadRef| w.name == "web");
        let found = group(&pods, web, owner, annotations, labels);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].images.len(), 2);
    }
}
