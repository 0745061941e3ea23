//! The verdicts recorded for the benchmark Deployments, as the operator writes them, watched
//! rather than polled.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use countersign::crd::WorkloadVerdict;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;

use super::BENCH_LABEL;

/// How many benchmark Deployments there are, and how many of them have each verdict recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verdicts {
    pub deployments: usize,
    pub verified: usize,
    pub failed: usize,
    pub unsigned: usize,
    pub other: usize,
    pub unrecorded: usize,
}

/// The recorded verdicts of the benchmark Deployments, from two watches (one long request
/// each instead of polling thousands of objects): the Deployments' metadata, and the
/// WorkloadVerdicts by their workload's uid.
pub fn watch_verdicts(client: Client) -> watch::Receiver<Verdicts> {
    let (tx, rx) = watch::channel(Verdicts::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deployments: Api<PartialObjectMeta<Deployment>> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}=1"));
    let (s, t) = (seen.clone(), tx.clone());
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(deployments, config).default_backoff());
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut seen = s.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    seen.deployments.insert(o.metadata.uid.unwrap_or_default());
                }
                watcher::Event::Delete(o) => {
                    seen.deployments.remove(&o.metadata.uid.unwrap_or_default());
                }
                watcher::Event::Init => seen.deployments.clear(),
                watcher::Event::InitDone => {}
            }
            let _ = t.send(seen.counts());
        }
    });
    let records: Api<WorkloadVerdict> = Api::all(client);
    tokio::spawn(async move {
        let mut events =
            std::pin::pin!(watcher::watcher(records, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    seen.verdicts.insert(o.spec.workload.uid, o.spec.verdict);
                }
                watcher::Event::Delete(o) => {
                    seen.verdicts.remove(&o.spec.workload.uid);
                }
                watcher::Event::Init => seen.verdicts.clear(),
                watcher::Event::InitDone => {}
            }
            let _ = tx.send(seen.counts());
        }
    });
    rx
}

/// What the two watches of [`watch_verdicts`] have seen.
#[derive(Default)]
struct Seen {
    /// Benchmark Deployments by uid.
    deployments: HashSet<String>,
    /// Verdicts by their workload's uid.
    verdicts: HashMap<String, String>,
}

impl Seen {
    fn counts(&self) -> Verdicts {
        let mut counts = Verdicts {
            deployments: self.deployments.len(),
            ..Verdicts::default()
        };
        for uid in &self.deployments {
            match self.verdicts.get(uid).map(String::as_str) {
                Some("Verified") => counts.verified += 1,
                Some("Failed") => counts.failed += 1,
                Some("Unsigned") => counts.unsigned += 1,
                Some(_) => counts.other += 1,
                None => counts.unrecorded += 1,
            }
        }
        counts
    }
}
