//! The watches that feed the [`Index`]: each object is reduced as it arrives, and the passes are
//! woken only by changes that can change a verdict (not by our own records or statuses).
//!
//! Pods are watched whole (their images and statuses are in spec and status) but kept reduced;
//! owners and namespaces are watched through the metadata API (`PartialObjectMeta`), which sends
//! only metadata over the wire. TrustRoots are watched through `DeserializeGuard`, so one object
//! that does not decode is reported instead of wedging the watch for all the others.
//!
//! The first picture comes as a *streaming list* (`sendInitialEvents`, Kubernetes' WatchList)
//! where the API server offers it: objects arrive one at a time from its watch cache and are
//! reduced as they come. A plain list of a large cluster arrives as one response (a list at
//! resourceVersion 0 is served whole, `limit` ignored) that is parsed whole before the first
//! object can be dropped: at 50,000 pods that one response was most of the operator's peak
//! memory. Where WatchList is switched off (Kubernetes 1.33's default), watches fall back to
//! lists of [`PAGE_SIZE`] objects.

use std::{collections::BTreeMap, fmt::Debug, sync::Arc};

use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client, Resource,
    api::WatchParams,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

use super::{
    annotations::ours,
    error::Error,
    index::{Guarded, Index, Key, KeyRotationEntry, Meta, Mirror, Touch, TrustRootEntry},
    metrics::Metrics,
    pods, records,
    workload::Owner,
};
use crate::crd::WorkloadVerdict;

/// How one kind of object is kept.
struct Feed<K, T> {
    resource: &'static str,
    reduce: fn(&K) -> Option<T>,
    /// Whether a change from the old value to the new one can change a verdict.
    matters: fn(&T, &T) -> bool,
    /// The name of its controller, whose workload a change of it may change.
    owner: fn(&T) -> Option<&str>,
    /// Whether its changes start a pass (they do, but for our own records).
    wakes: bool,
}

/// Objects per page when the first picture is listed rather than streamed.
pub const PAGE_SIZE: u32 = 500;

/// How every watch gets its first picture, decided once per process by [`initial_lists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialLists {
    /// `sendInitialEvents`: one object at a time from the API server's watch cache.
    Streamed,
    /// Consistent lists of [`PAGE_SIZE`] objects, then a watch.
    Paged,
}

impl InitialLists {
    fn config(self) -> watcher::Config {
        match self {
            Self::Streamed => watcher::Config::default().streaming_lists(),
            Self::Paged => watcher::Config::default().page_size(PAGE_SIZE),
        }
    }
}

/// Asks the API server once whether it streams lists: a watch of namespaces (metadata only, a
/// second at most) with `sendInitialEvents`. A server with WatchList switched off refuses it
/// with 422 (Invalid) or 400 (older ones); anything else (an unreachable server included) keeps
/// streaming, whose watches retry like any other.
pub async fn initial_lists(client: &Client) -> InitialLists {
    let api = Api::<Namespace>::all(client.clone());
    let params = WatchParams::default().initial_events().timeout(1);
    match api.watch_metadata(&params, "").await {
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422) => {
            tracing::info!(reason = %status.message, "the API server does not stream lists (WatchList off): paged lists");
            InitialLists::Paged
        }
        _ => InitialLists::Streamed,
    }
}

/// Every watch, as futures that run until dropped. All of them must have synced (see
/// [`Index::synced`]) before a pass: a partial picture would remove verdicts it did not see.
pub fn all(
    client: &Client,
    lists: InitialLists,
    index: &Arc<Index>,
    metrics: &Arc<Metrics>,
) -> Vec<BoxFuture<'static, ()>> {
    let w = Watches {
        client: client.clone(),
        lists,
        index: index.clone(),
        metrics: metrics.clone(),
    };
    vec![
        w.of(pod_feed(), |i| &i.pods),
        w.of(meta_feed::<ReplicaSet>("replicasets"), |i| &i.replicasets),
        w.of(meta_feed::<Deployment>("deployments"), |i| &i.deployments),
        w.of(meta_feed::<StatefulSet>("statefulsets"), |i| &i.statefulsets),
        w.of(meta_feed::<DaemonSet>("daemonsets"), |i| &i.daemonsets),
        w.of(meta_feed::<Job>("jobs"), |i| &i.jobs),
        w.of(meta_feed::<CronJob>("cronjobs"), |i| &i.cronjobs),
        w.of(namespace_feed(), |i| &i.namespaces),
        w.of(guarded_feed("trustroots", trust_root_matters), |i| &i.trust_roots),
        w.of(guarded_feed("keyrotations", key_rotation_matters), |i| {
            &i.key_rotations
        }),
        w.of(verdict_feed(), |i| &i.verdicts),
    ]
}

/// What every watch shares.
struct Watches {
    client: Client,
    lists: InitialLists,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
}

impl Watches {
    /// The watch of every `K` in the cluster, kept through `feed` in the index's `mirror`.
    fn of<K, T>(&self, feed: Feed<K, T>, mirror: fn(&Index) -> &Mirror<T>) -> BoxFuture<'static, ()>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default,
        T: Send + Sync + 'static,
    {
        let api = Api::all(self.client.clone());
        run(
            api,
            feed,
            self.lists,
            self.index.clone(),
            mirror,
            self.metrics.clone(),
        )
    }
}

fn pod_feed() -> Feed<Pod, pods::PodInfo> {
    Feed {
        resource: "pods",
        reduce: pods::reduce,
        matters: pods::PodInfo::matters,
        owner: |p| p.shape.owner.as_ref().map(|o| o.name.as_str()),
        wakes: true,
    }
}

/// A namespace's labels decide which TrustRoots govern its workloads.
fn namespace_feed() -> Feed<PartialObjectMeta<Namespace>, Arc<BTreeMap<String, String>>> {
    Feed {
        resource: "namespaces",
        reduce: |ns| Some(Arc::new(ns.metadata.labels.clone().unwrap_or_default())),
        matters: |new, old| new != old,
        owner: |_| None,
        wakes: true,
    }
}

/// A cluster-scoped object of ours, kept whole, or as the error that says why it does not decode
/// (reported by the pass rather than wedging the watch); `matters` says which changes start one.
fn guarded_feed<K>(
    resource: &'static str,
    matters: fn(&Guarded<K>, &Guarded<K>) -> bool,
) -> Feed<DeserializeGuard<K>, Guarded<K>>
where
    K: Clone,
{
    Feed {
        resource,
        reduce: |g| Some(g.0.clone().map(Arc::new).map_err(Arc::new)),
        matters,
        owner: |_| None,
        wakes: true,
    }
}

/// Our own records: what they say is compared by the next pass that reaches their workload (and
/// rewritten if someone edited or deleted one); a change to them never starts a pass, or every
/// verdict written would start another.
fn verdict_feed() -> Feed<DeserializeGuard<WorkloadVerdict>, records::Stored> {
    Feed {
        resource: "workloadverdicts",
        reduce: |g| g.0.as_ref().ok().and_then(records::stored),
        matters: |new, old| new != old,
        owner: |_| None,
        wakes: false,
    }
}

fn meta_feed<K>(resource: &'static str) -> Feed<PartialObjectMeta<K>, Meta> {
    Feed {
        resource,
        reduce: reduce_meta,
        matters: Meta::matters,
        owner: |m| m.owner.as_ref().map(|o| o.name.as_str()),
        wakes: true,
    }
}

fn reduce_meta<K>(object: &PartialObjectMeta<K>) -> Option<Meta> {
    Some(Meta {
        uid: object.metadata.uid.clone()?,
        owner: Owner::controller_of(object.metadata.owner_references.as_ref()),
        annotations: ours(object.metadata.annotations.as_ref()),
    })
}

/// Only the spec (through its generation) of a TrustRoot matters: our own status writes must not
/// start another pass.
fn trust_root_matters(new: &TrustRootEntry, old: &TrustRootEntry) -> bool {
    match (new, old) {
        (Ok(n), Ok(o)) => {
            (&n.metadata.uid, n.metadata.generation, &n.spec)
                != (&o.metadata.uid, o.metadata.generation, &o.spec)
        }
        _ => true,
    }
}

/// A KeyRotation's spec matters, and so does its status when someone else changed it (a restore
/// from backup): our own status writes, the same phase as we computed, start no pass.
fn key_rotation_matters(new: &KeyRotationEntry, old: &KeyRotationEntry) -> bool {
    match (new, old) {
        (Ok(n), Ok(o)) => {
            (&n.metadata.uid, n.metadata.generation, &n.spec)
                != (&o.metadata.uid, o.metadata.generation, &o.spec)
                || n.status.as_ref().and_then(|s| s.phase) != o.status.as_ref().and_then(|s| s.phase)
        }
        (Err(e), _) => {
            tracing::warn!(error = %e.error, name = ?e.metadata.name, "a KeyRotation cannot be read; it has no effect");
            true
        }
        _ => true,
    }
}

fn key_of<K: Resource>(object: &K) -> Option<Key> {
    let meta = object.meta();
    Some((meta.namespace.clone().unwrap_or_default(), meta.name.clone()?))
}

fn run<K, T>(
    api: Api<K>,
    feed: Feed<K, T>,
    lists: InitialLists,
    index: Arc<Index>,
    mirror: fn(&Index) -> &Mirror<T>,
    metrics: Arc<Metrics>,
) -> BoxFuture<'static, ()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    Box::pin(async move {
        let mut stream = std::pin::pin!(watcher(api, lists.config()).default_backoff());
        let mut buffer: Option<BTreeMap<Key, T>> = None;
        let mut synced = false;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(source) => {
                    let e = Error::Watch {
                        resource: feed.resource,
                        source,
                    };
                    tracing::warn!(error = %e, "watch failed; retrying");
                    metrics.reconcile_error(e.category());
                    continue;
                }
            };
            if matches!(event, watcher::Event::Init) {
                metrics.watch_listed(feed.resource);
            }
            let trust = matches!(feed.resource, "trustroots" | "keyrotations")
                && !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_));
            let changed = apply(&feed, mirror(&index), &mut buffer, event);
            if trust {
                index.trust_changes.send_modify(|n| *n += 1);
            }
            if changed == Applied::Synced && !synced {
                synced = true;
                tracing::debug!(resource = feed.resource, "synced");
                index.synced().add_one();
            }
            if feed.wakes && changed != Applied::Nothing {
                index.mark_changed(changed.touch(feed.resource));
                index.changes.notify_one();
            }
        }
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Nothing,
    /// The object of this key changed; its owners' names before and after.
    Changed {
        key: Key,
        owners: Vec<String>,
    },
    /// A full list was swapped in.
    Synced,
}

impl Applied {
    /// The workloads the change can affect. A Namespace's own change (its labels) is every
    /// workload of it; a cluster-scoped object's (TrustRoot, KeyRotation) and a relist are every
    /// workload anywhere.
    fn touch(&self, resource: &str) -> Touch<'_> {
        match self {
            Self::Changed { key: (_, name), .. } if resource == "namespaces" => Touch::Namespace(name),
            Self::Changed {
                key: (namespace, name),
                owners,
            } if !namespace.is_empty() => Touch::Objects {
                namespace,
                names: std::iter::once(name).chain(owners).map(String::as_str).collect(),
            },
            _ => Touch::Everything,
        }
    }
}

fn apply<K: Resource, T>(
    feed: &Feed<K, T>,
    mirror: &Mirror<T>,
    buffer: &mut Option<BTreeMap<Key, T>>,
    event: watcher::Event<K>,
) -> Applied {
    let owners = |values: [Option<&T>; 2]| -> Vec<String> {
        let mut names: Vec<String> = values
            .into_iter()
            .flatten()
            .filter_map(|v| (feed.owner)(v).map(str::to_string))
            .collect();
        names.dedup();
        names
    };
    match event {
        watcher::Event::Init => {
            *buffer = Some(BTreeMap::new());
            Applied::Nothing
        }
        watcher::Event::InitApply(object) => {
            if let (Some(key), Some(value), Some(buffer)) =
                (key_of(&object), (feed.reduce)(&object), buffer.as_mut())
            {
                buffer.insert(key, value);
            }
            Applied::Nothing
        }
        watcher::Event::InitDone => {
            let listed = buffer.take().unwrap_or_default();
            mirror.write(|m| *m = listed.into_iter().collect());
            Applied::Synced
        }
        watcher::Event::Apply(object) => {
            let Some(key) = key_of(&object) else {
                return Applied::Nothing;
            };
            let changed = match (feed.reduce)(&object) {
                Some(value) => mirror.write(|m| {
                    let old = m.get(&key);
                    let matters = old.is_none_or(|old| (feed.matters)(&value, old));
                    let names = matters.then(|| owners([old, Some(&value)]));
                    m.insert(key.clone(), value);
                    names
                }),
                None => mirror.write(|m| m.remove(&key).map(|old| owners([Some(&old), None]))),
            };
            match changed {
                Some(owners) => Applied::Changed { key, owners },
                None => Applied::Nothing,
            }
        }
        watcher::Event::Delete(object) => {
            let Some(key) = key_of(&object) else {
                return Applied::Nothing;
            };
            match mirror.write(|m| m.remove(&key)) {
                Some(old) => Applied::Changed {
                    owners: owners([Some(&old), None]),
                    key,
                },
                None => Applied::Nothing,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(owner: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-1-abc", "namespace": "team", "uid": "u1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                     "uid": format!("uid-{owner}"), "controller": true}]
            },
            "spec": {"containers": [{"name": "app", "image": "r.example/app:v1"}]}
        }))
        .expect("a pod")
    }

    #[test]
    fn a_pod_change_names_the_pod_and_its_owners_before_and_after() {
        let (feed, mirror, mut buffer) = (pod_feed(), Mirror::default(), None);
        let added = apply(&feed, &mirror, &mut buffer, watcher::Event::Apply(pod("web-1")));
        assert_eq!(
            added.touch("pods"),
            Touch::Objects {
                namespace: "team",
                names: vec!["web-1-abc", "web-1"]
            }
        );
        // Adopted by another ReplicaSet: both owners' workloads may change.
        let moved = apply(&feed, &mirror, &mut buffer, watcher::Event::Apply(pod("web-2")));
        let Applied::Changed { owners, .. } = &moved else {
            panic!("{moved:?}")
        };
        assert_eq!(owners, &["web-1", "web-2"]);
        // A deleted pod still names its ReplicaSet.
        let deleted = apply(&feed, &mirror, &mut buffer, watcher::Event::Delete(pod("web-2")));
        assert_eq!(
            deleted.touch("pods"),
            Touch::Objects {
                namespace: "team",
                names: vec!["web-1-abc", "web-2"]
            }
        );
        assert_eq!(
            apply(&feed, &mirror, &mut buffer, watcher::Event::Delete(pod("web-2"))),
            Applied::Nothing
        );
    }
}
