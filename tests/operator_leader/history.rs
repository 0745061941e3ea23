//! A Lease's every version, from a watch, and what the tests read from them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::task::JoinHandle;

use super::{WAIT, eventually};

/// Every version of one Lease, in the order the API server stored them, from a watch that
/// starts where a list left off (so before anyone else writes it). A watch misses no write,
/// where polling could miss a release followed at once by a takeover; and the tests decide on
/// the Lease's own fields (holder, renewTime, acquireTime), not on how long they waited.
pub(super) struct LeaseHistory {
    versions: Arc<Mutex<Result<Vec<LeaseSpec>, String>>>,
    task: JoinHandle<()>,
}

impl LeaseHistory {
    pub(super) async fn start(leases: &Api<Lease>, name: &str) -> Self {
        let fields = format!("metadata.name={name}");
        let list = leases
            .list(&ListParams::default().fields(&fields))
            .await
            .expect("list the lease");
        let mut version = list.metadata.resource_version.expect("a list's resourceVersion");
        let initial = list.items.into_iter().map(|l| l.spec.unwrap_or_default());
        let versions = Arc::new(Mutex::new(Ok(initial.collect::<Vec<_>>())));
        let (api, seen) = (leases.clone(), Arc::clone(&versions));
        let task = tokio::spawn(async move {
            // The API server ends a watch after a while: resume from the last version seen.
            loop {
                let params = WatchParams::default().fields(&fields);
                let stream = match api.watch(&params, &version).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        *seen.lock().unwrap() = Err(format!("watch: {e}"));
                        return;
                    }
                };
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let lease = match event {
                        Ok(WatchEvent::Added(l) | WatchEvent::Modified(l) | WatchEvent::Deleted(l)) => l,
                        Ok(WatchEvent::Bookmark(b)) => {
                            version = b.metadata.resource_version;
                            continue;
                        }
                        Ok(WatchEvent::Error(e)) => {
                            *seen.lock().unwrap() = Err(format!("watch: {e:?}"));
                            return;
                        }
                        Err(e) => {
                            *seen.lock().unwrap() = Err(format!("watch: {e}"));
                            return;
                        }
                    };
                    version = lease.metadata.resource_version.clone().unwrap_or(version);
                    if let Ok(v) = seen.lock().unwrap().as_mut() {
                        v.push(lease.spec.unwrap_or_default());
                    }
                }
            }
        });
        Self { versions, task }
    }

    pub(super) fn versions(&self) -> Vec<LeaseSpec> {
        self.versions
            .lock()
            .unwrap()
            .clone()
            .expect("the Lease's history")
    }

    /// Waits until `done` holds for the versions so far; returns them.
    pub(super) async fn wait(&self, what: &str, done: impl Fn(&[LeaseSpec]) -> bool) -> Vec<LeaseSpec> {
        eventually(what, WAIT, || async {
            let v = self.versions();
            anyhow::ensure!(done(&v), "history: {v:?}");
            Ok(v)
        })
        .await
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn holder_of(spec: &LeaseSpec) -> Option<String> {
    spec.holder_identity.clone().filter(|h| !h.is_empty())
}

/// Where `identity` first holds the Lease in `versions` (its acquisition).
pub(super) fn first_held_by(versions: &[LeaseSpec], identity: &str) -> Option<usize> {
    versions
        .iter()
        .position(|s| holder_of(s).as_deref() == Some(identity))
}

/// How long `identity`, holding the Lease at its latest version, has held it: from its
/// acquireTime to its latest renewTime (zero if it does not hold it now).
pub(super) fn renewed_for(versions: &[LeaseSpec], identity: &str) -> Duration {
    match versions.last() {
        Some(last) if holder_of(last).as_deref() == Some(identity) => {
            let held = micros_between(last.acquire_time.as_ref(), last.renew_time.as_ref());
            Duration::from_micros(u64::try_from(held).unwrap_or(0))
        }
        _ => Duration::ZERO,
    }
}

/// Microseconds from `from` to `to`, two MicroTime fields of a Lease.
pub(super) fn micros_between(
    from: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
    to: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
) -> i64 {
    let (from, to) = (from.expect("a time field"), to.expect("a time field"));
    to.0.as_microsecond() - from.0.as_microsecond()
}

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
