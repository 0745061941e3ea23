//! Pods, reduced to what verification needs. A full Pod is tens of kilobytes; what is kept here
//! is its uid and a pointer to its [`PodShape`] (owner, images and the digests they run, pull
//! secrets), which the pods of one template share.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, LazyLock, Mutex},
};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{annotations::ours, workload::Owner};
use crate::reference::Digest;

/// One image a pod runs: the reference from its spec, and the digest the kubelet reported
/// pulling for it (when it did).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunningImage {
    pub image: String,
    pub digest: Option<Digest>,
}

/// What is kept of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// (Its name is the index' key.)
    pub uid: String,
    /// Shared with every pod of the same owner that runs the same digests (see [`intern`]).
    pub shape: Arc<PodShape>,
    /// Our own annotations: the verdict of a bare pod, as an earlier version recorded it.
    pub annotations: BTreeMap<String, String>,
}

/// What a pass needs of a pod besides its name and uid: the same for all the pods of one
/// ReplicaSet (or Job, StatefulSet, …) once they run the same digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodShape {
    pub owner: Option<Owner>,
    /// Containers, init containers and ephemeral containers, deduplicated and sorted.
    pub images: Vec<RunningImage>,
    /// Names of `spec.imagePullSecrets` (in the pod's namespace).
    pub pull_secrets: Vec<String>,
}

impl PodInfo {
    /// Whether the change from `old` can change a verdict. Our own annotations cannot (we
    /// write them), so a pod whose only change is them does not start a new pass.
    pub fn matters(&self, old: &Self) -> bool {
        self.shape != old.shape
    }
}

/// Every shape a reduced pod holds, each kept once. Interning is what keeps the index small:
/// a Deployment's pods are alike, and a heap profile at 10,000 pods put the owner, images and
/// digests each pod kept for itself (and the wider map entries) at about 700 of the 960 bytes
/// a reduced pod cost. Process-wide because pods are reduced by plain functions (the watch's,
/// `countersign rotation resign`'s); one lock per reduced pod, never held across anything else.
static SHAPES: LazyLock<Mutex<Shapes>> = LazyLock::new(Mutex::default);

/// Shapes are pruned when the set reaches this size (and then at twice what survived).
const FIRST_PRUNE: usize = 1024;

#[derive(Default)]
struct Shapes {
    set: HashSet<Arc<PodShape>>,
    prune_at: usize,
}

impl Shapes {
    fn intern(&mut self, shape: PodShape) -> Arc<PodShape> {
        if let Some(kept) = self.set.get(&shape) {
            return kept.clone();
        }
        if self.set.len() >= self.prune_at.max(FIRST_PRUNE) {
            self.prune();
        }
        let shape = Arc::new(shape);
        self.set.insert(shape.clone());
        shape
    }

    /// Drops the shapes no pod holds any more. A count of one is the set's own reference, and
    /// no other can appear meanwhile: new ones are handed out only here, under the lock.
    /// Pruning when the set has doubled keeps it amortised O(1) per pod.
    fn prune(&mut self) {
        self.set.retain(|shape| Arc::strong_count(shape) > 1);
        self.prune_at = self.set.len() * 2;
    }
}

/// The shared copy of `shape`.
pub fn intern(shape: PodShape) -> Arc<PodShape> {
    SHAPES.lock().unwrap_or_else(|p| p.into_inner()).intern(shape)
}

/// Reduces a pod. `None` for pods that no longer run (Succeeded, Failed) or are being deleted
/// without containers.
pub fn reduce(pod: &Pod) -> Option<PodInfo> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref();
    let mut images = Vec::new();
    let containers = spec.containers.iter().map(|c| (&c.name, c.image.as_deref()));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (&c.name, c.image.as_deref()));
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| (&c.name, c.image.as_deref()));
    let statuses: Vec<&ContainerStatus> = status
        .into_iter()
        .flat_map(|s| {
            let all = [
                &s.container_statuses,
                &s.init_container_statuses,
                &s.ephemeral_container_statuses,
            ];
            all.into_iter().flatten().flatten()
        })
        .collect();
    for (name, image) in containers.chain(init).chain(ephemeral) {
        let Some(image) = image.filter(|i| !i.is_empty()) else {
            continue;
        };
        let digest = statuses
            .iter()
            .find(|s| &s.name == name)
            .and_then(|s| running_digest(&s.image_id));
        images.push(RunningImage {
            image: image.to_string(),
            digest,
        });
    }
    images.sort();
    images.dedup();
    let shape = PodShape {
        owner: Owner::controller_of(pod.metadata.owner_references.as_ref()),
        images,
        pull_secrets: spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    Some(PodInfo {
        uid: pod.metadata.uid.clone()?,
        shape: intern(shape),
        annotations: ours(pod.metadata.annotations.as_ref()),
    })
}

/// The manifest digest in a container status' `imageID`: `repo@sha256:…`, with or without a
/// scheme (`docker-pullable://repo@sha256:…`). A bare `sha256:…` is the image *config* digest
/// some runtimes report for images they did not pull by reference; it is not a manifest digest
/// and so is not what is signed: treated as absent, like the empty string.
pub fn running_digest(image_id: &str) -> Option<Digest> {
    let without_scheme = image_id.rsplit_once("://").map_or(image_id, |(_, rest)| rest);
    let (_repo, digest) = without_scheme.rsplit_once('@')?;
    Digest::parse(digest).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HEX: &str = "4a5e1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{HEX}")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn image_ids_in_every_spelling() {
        let d = Some(digest());
        assert_eq!(running_digest(&format!("reg.example/app@sha256:{HEX}")), d);
        assert_eq!(
            running_digest(&format!("docker-pullable://nginx@sha256:{HEX}")),
            d
        );
        assert_eq!(
            running_digest(&format!("docker.io/library/nginx@sha256:{HEX}")),
            d
        );
        assert_eq!(running_digest(&format!("localhost:5000/a/b@sha256:{HEX}")), d);
        assert_eq!(running_digest(""), None);
        assert_eq!(running_digest(&format!("sha256:{HEX}")), None, "a config digest");
        assert_eq!(running_digest(&format!("docker://sha256:{HEX}")), None);
        assert_eq!(running_digest("app@sha256:short"), None);
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_container_counts_and_digests_come_from_statuses() {
        let p = pod(json!({
            "metadata": {"name": "p", "uid": "u", "namespace": "ns",
                "annotations": {"countersign.dev/verdict": "Verified", "other": "x"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "1"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "2", "controller": true}
                ]},
            "spec": {
                "containers": [{"name": "app", "image": "reg.example/app:v1"},
                               {"name": "side", "image": "reg.example/side:v1"}],
                "initContainers": [{"name": "init", "image": "reg.example/init:v1"}],
                "ephemeralContainers": [{"name": "debug", "image": "reg.example/debug:v1"}],
                "imagePullSecrets": [{"name": "pull"}]
            },
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "app", "image": "x", "imageID": format!("reg.example/app@sha256:{HEX}"),
                     "ready": true, "restartCount": 0},
                    {"name": "side", "image": "x", "imageID": "", "ready": true, "restartCount": 0}
                ]
            }
        }));
        let info = reduce(&p).unwrap_or_else(|| panic!("running pod"));
        let images: Vec<(&str, bool)> = info
            .shape
            .images
            .iter()
            .map(|i| (i.image.as_str(), i.digest.is_some()))
            .collect();
        assert_eq!(
            images,
            [
                ("reg.example/app:v1", true),
                ("reg.example/debug:v1", false),
                ("reg.example/init:v1", false),
                ("reg.example/side:v1", false),
            ]
        );
        assert_eq!(info.shape.owner.as_ref().map(|o| o.name.as_str()), Some("rs"));
        assert_eq!(info.shape.pull_secrets, ["pull"]);
        assert_eq!(
            info.annotations.keys().collect::<Vec<_>>(),
            ["countersign.dev/verdict"]
        );
    }

    #[test]
    fn finished_pods_are_dropped_and_annotation_changes_do_not_matter() {
        let base = json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "app", "image": "a"}]},
            "status": {"phase": "Succeeded"}
        });
        assert!(reduce(&pod(base.clone())).is_none());
        let mut running = base;
        running["status"]["phase"] = json!("Running");
        let a = reduce(&pod(running.clone())).unwrap_or_else(|| panic!("running"));
        running["metadata"]["annotations"] = json!({"countersign.dev/verdict": "Unsigned"});
        let b = reduce(&pod(running)).unwrap_or_else(|| panic!("running"));
        assert_ne!(a, b);
        assert!(!b.matters(&a));
    }

    fn shape(image: &str) -> PodShape {
        PodShape {
            images: vec![RunningImage {
                image: image.into(),
                digest: None,
            }],
            ..PodShape::default()
        }
    }

    #[test]
    fn pods_alike_share_one_shape() {
        let mut running = json!({
            "metadata": {"name": "web-1", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "reg.example/shared:v1"}]},
            "status": {"phase": "Running"}
        });
        let a = reduce(&pod(running.clone())).unwrap_or_else(|| panic!("running"));
        running["metadata"] = json!({"name": "web-2", "uid": "u2"});
        let b = reduce(&pod(running)).unwrap_or_else(|| panic!("running"));
        assert_ne!(a.uid, b.uid);
        assert!(Arc::ptr_eq(&a.shape, &b.shape));
    }

    #[test]
    fn shapes_no_pod_holds_are_pruned_once_the_set_doubles() {
        let mut shapes = Shapes::default();
        let held: Vec<Arc<PodShape>> = (0..FIRST_PRUNE / 2)
            .map(|i| shapes.intern(shape(&format!("held-{i}"))))
            .collect();
        for i in 0..FIRST_PRUNE / 2 {
            drop(shapes.intern(shape(&format!("gone-{i}"))));
        }
        assert_eq!(
            shapes.set.len(),
            FIRST_PRUNE,
            "nothing pruned before the threshold"
        );
        let again = shapes.intern(shape("held-0"));
        assert!(Arc::ptr_eq(&again, &held[0]), "a held shape is found, not copied");
        assert_eq!(shapes.set.len(), FIRST_PRUNE, "a shape found adds nothing");
        let new = shapes.intern(shape("new"));
        assert_eq!(
            shapes.set.len(),
            FIRST_PRUNE / 2 + 1,
            "only the held shapes survive"
        );
        assert_eq!(shapes.prune_at, FIRST_PRUNE);
        drop((held, again, new));
    }
}
