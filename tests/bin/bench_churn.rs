//! Two measurements of `bench-operator` that start from a warm operator:
//!
//! - **one pod changed**: one pod deleted (its ReplicaSet makes another, kwok runs it). The passes
//!   that follow are counted from the operator's `countersign_pass_duration_seconds`, and the CPU
//!   the whole process spent meanwhile (every thread's `schedstat`, watches included) is divided
//!   among them: what a pass costs when nothing but one pod changed. Watching for the passes means
//!   scraping `/metrics` every [`POLL`], which costs the operator CPU too (about 1.7 ms a scrape
//!   at 10,000 pods: most of what was measured as a one-pod pass before this was subtracted), so
//!   the same polling is first measured with nothing changing, and its rate is taken off.
//! - **churn** (`--churn SECONDS`): every `--churn-every` seconds a tenth of the Deployments roll
//!   to another signed digest (and back on their next turn). For each rollout, the time until the
//!   Deployment's WorkloadVerdict names the new digest in `digests`; the operator's RSS
//!   sampled at every round; the Events it emitted (a rollout from one signed digest to another
//!   is no verdict transition, so the expected number is zero).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use countersign::crd::WorkloadVerdict;
use countersign_tests::bench::{OperatorProcess, process_cpu, scrape_metrics, value};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::sync::mpsc;

/// Passes over every workload (`full`) and over the workloads something changed.
const SCOPES: [&str; 2] = ["full", "changed"];
/// How often `/metrics` is scraped while waiting for passes.
const POLL: Duration = Duration::from_millis(200);
/// Passes are over once none started for this long (the operator debounces changes by far less).
const QUIET: Duration = Duration::from_secs(3);

pub struct OnePod {
    pub passes: f64,
    /// Of them, passes over every workload (expected 0: one pod changed).
    pub full: f64,
    /// Workloads the passes assessed (`countersign_pass_workloads_total`).
    pub workloads: f64,
    /// The process' CPU per pass, the polling's share taken off.
    pub cpu_per_pass: Duration,
    /// The same before taking the polling's share off.
    pub raw_cpu_per_pass: Duration,
    /// The process' CPU per second while only polled (scrapes, lease renewals, watch bookmarks).
    pub idle_cpu_per_second: Duration,
    pub wall_per_pass: Duration,
}

/// Passes finished, of `scope` (both when `None`), from the pass-duration histogram's `_count`.
fn passes_of(metrics: &HashMap<String, f64>, scope: Option<&str>) -> f64 {
    pass_series(metrics, scope, "count")
}

/// Their wall time in seconds (`_sum`).
fn pass_seconds(metrics: &HashMap<String, f64>) -> f64 {
    pass_series(metrics, None, "sum")
}

fn pass_series(metrics: &HashMap<String, f64>, scope: Option<&str>, suffix: &str) -> f64 {
    SCOPES
        .iter()
        .filter(|s| scope.is_none_or(|scope| scope == **s))
        .map(|s| {
            value(
                metrics,
                &format!("countersign_pass_duration_seconds_{suffix}{{scope=\"{s}\"}}"),
            )
        })
        .sum()
}

/// Deletes one running pod of `namespace` and measures the passes that follow.
pub async fn one_pod_changed(
    client: &Client,
    operator: &OperatorProcess,
    metrics: &str,
    namespace: &str,
) -> Result<OnePod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let victim = pods
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|p| p.metadata.name)
        .context("a pod to delete")?;
    let idle_cpu_per_second = idle_polling(operator, metrics).await?;
    let before = scrape_metrics(metrics).await?;
    let started = Instant::now();
    let cpu_before = process_cpu(operator.pid());
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await?;
    // Wait for the passes to start, then for them to stop.
    let mut last = passes_of(&before, None);
    let mut quiet_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(POLL).await;
        let now = passes_of(&scrape_metrics(metrics).await?, None);
        if now > last {
            last = now;
            quiet_since = Instant::now();
        } else if last > passes_of(&before, None) && quiet_since.elapsed() >= QUIET {
            break;
        }
        ensure!(Instant::now() < deadline, "no pass after deleting pod {victim}");
    }
    let cpu = process_cpu(operator.pid()) - cpu_before;
    let polling = idle_cpu_per_second.mul_f64(started.elapsed().as_secs_f64());
    let after = scrape_metrics(metrics).await?;
    let passes = passes_of(&after, None) - passes_of(&before, None);
    let wall = pass_seconds(&after) - pass_seconds(&before);
    let full = passes_of(&after, Some("full")) - passes_of(&before, Some("full"));
    let workloads = pass_workloads(&after) - pass_workloads(&before);
    Ok(OnePod {
        passes,
        full,
        workloads,
        cpu_per_pass: cpu.saturating_sub(polling).div_f64(passes),
        raw_cpu_per_pass: cpu.div_f64(passes),
        idle_cpu_per_second,
        wall_per_pass: Duration::from_secs_f64(wall / passes),
    })
}

/// [`one_pod_changed`] `runs` times (a different pod each time): the run of median CPU per pass,
/// and every run's CPU per pass, sorted. One run subtracts an estimate of the polling's share that
/// is as large as what it measures at 50,000 pods, so one run alone is noise.
pub async fn one_pod_median(
    client: &Client,
    operator: &OperatorProcess,
    metrics: &str,
    namespace: &str,
    runs: usize,
) -> Result<(OnePod, Vec<Duration>)> {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        all.push(one_pod_changed(client, operator, metrics, namespace).await?);
    }
    all.sort_by_key(|o| o.cpu_per_pass);
    let spread = all.iter().map(|o| o.cpu_per_pass).collect();
    let median = all.swap_remove(runs / 2);
    Ok((median, spread))
}

/// The operator's CPU per second while polled as [`one_pod_changed`] polls it, with nothing
/// changing (no pass may run meanwhile, or the measure is taken again).
async fn idle_polling(operator: &OperatorProcess, metrics: &str) -> Result<Duration> {
    const WINDOW: Duration = Duration::from_secs(4);
    for _ in 0..5 {
        let before = passes_of(&scrape_metrics(metrics).await?, None);
        let started = Instant::now();
        let cpu_before = process_cpu(operator.pid());
        let mut after = before;
        while started.elapsed() < WINDOW {
            tokio::time::sleep(POLL).await;
            after = passes_of(&scrape_metrics(metrics).await?, None);
        }
        let cpu = process_cpu(operator.pid()) - cpu_before;
        if after == before {
            return Ok(cpu.div_f64(started.elapsed().as_secs_f64()));
        }
    }
    anyhow::bail!("passes kept running while the operator should have been idle")
}

/// Workloads assessed by passes so far, over both scopes.
fn pass_workloads(metrics: &HashMap<String, f64>) -> f64 {
    SCOPES
        .iter()
        .map(|s| {
            value(
                metrics,
                &format!("countersign_pass_workloads_total{{scope=\"{s}\"}}"),
            )
        })
        .sum()
}

pub struct Churn {
    pub rounds: usize,
    pub rollouts: usize,
    /// Rollout → new digest in the Deployment's WorkloadVerdict, sorted.
    pub latencies: Vec<Duration>,
    /// The operator's share of those: the first pod running the new digest (as the benchmark's
    /// own pod watch saw it Running with its imageID) → new digest in the WorkloadVerdict, sorted.
    pub after_running: Vec<Duration>,
    /// Rollouts whose new digest was not seen by the end.
    pub unseen: usize,
    /// Rollouts to a digest the WorkloadVerdict already named (pods of an earlier rollout to it
    /// still running): nothing for the operator to record, so not timed.
    pub already_named: usize,
    /// VmRSS at each round, KiB.
    pub rss_kib: Vec<u64>,
    pub events: f64,
    pub passes: f64,
    pub cpu: Duration,
    pub elapsed: Duration,
}

/// The Deployments to churn: `(namespace, name, [digest A, digest B])`; each starts on A.
pub type Targets = Vec<(String, String, [String; 2])>;

pub async fn churn(
    client: &Client,
    operator: &OperatorProcess,
    metrics: &str,
    targets: &Targets,
    (every, total): (Duration, Duration),
) -> Result<Churn> {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let watching = tokio::spawn(watch_digests(client.clone(), seen_tx));
    let running = Running::default();
    let watching_pods = tokio::spawn(watch_running(client.clone(), running.clone()));
    let mut tracker = Tracker::new(seen, running);
    let before = scrape_metrics(metrics).await?;
    let cpu_before = process_cpu(operator.pid());
    let started = Instant::now();
    let mut on_b = vec![false; targets.len()];
    let mut rss_kib = Vec::new();
    let mut round = 0;
    let mut rollouts = 0;
    while started.elapsed() < total {
        let round_start = Instant::now();
        let chosen: Vec<usize> = (0..targets.len()).filter(|i| i % 10 == round % 10).collect();
        let patches = chosen.iter().map(|&i| {
            on_b[i] = !on_b[i];
            let (ns, name, digests) = &targets[i];
            let image = digests[usize::from(on_b[i])].clone();
            tracker.rolled((ns.clone(), name.clone()), &image);
            roll(client.clone(), ns.clone(), name.clone(), image)
        });
        stream::iter(patches)
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
        rollouts += chosen.len();
        round += 1;
        rss_kib.push(operator.memory().rss_kib);
        tracker.drain(round_start + every).await;
    }
    // The last rounds' rollouts: give them the time a rollout takes.
    let limit = Instant::now() + every * 6;
    while !tracker.pending.is_empty() && Instant::now() < limit {
        tracker.drain(Instant::now() + every).await;
    }
    watching.abort();
    watching_pods.abort();
    let after = scrape_metrics(metrics).await?;
    let events = |m: &HashMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with("countersign_events_total"))
            .map(|(_, v)| v)
            .sum()
    };
    let Tracker {
        pending,
        mut from_rollout,
        mut from_running,
        already_named,
        ..
    } = tracker;
    from_rollout.sort();
    from_running.sort();
    Ok(Churn {
        rounds: round,
        rollouts,
        latencies: from_rollout,
        after_running: from_running,
        unseen: pending.len(),
        already_named,
        rss_kib,
        events: events(&after) - events(&before),
        passes: passes_of(&after, None) - passes_of(&before, None),
        cpu: process_cpu(operator.pid()) - cpu_before,
        elapsed: started.elapsed(),
    })
}

async fn roll(client: Client, namespace: String, name: String, image: String) -> Result<()> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    Api::<Deployment>::namespaced(client, &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .with_context(|| format!("roll {namespace}/{name}"))?;
    Ok(())
}

/// When each pod running a digest was first seen Running, by (namespace, its `app` label,
/// digest). A Deployment rolls back and forth between two digests, so a rollout's pods are those
/// first seen Running after it.
type Running = Arc<Mutex<HashMap<(String, String, String), Vec<Instant>>>>;

/// A Deployment: (namespace, name).
type Key = (String, String);

/// The rollouts under way and how long the settled ones took, from the WorkloadVerdicts' digests
/// (as [`watch_digests`] sends them) and the pods seen Running.
struct Tracker {
    seen: mpsc::UnboundedReceiver<(Key, String)>,
    running: Running,
    /// The digests each Deployment's WorkloadVerdict names now.
    recorded: HashMap<Key, String>,
    /// Rollouts not settled yet: the image rolled to, and when.
    pending: HashMap<Key, (String, Instant)>,
    /// Rollout → new digest recorded, per settled rollout.
    from_rollout: Vec<Duration>,
    /// First pod of the new digest Running → new digest recorded.
    from_running: Vec<Duration>,
    already_named: usize,
}

impl Tracker {
    fn new(seen: mpsc::UnboundedReceiver<(Key, String)>, running: Running) -> Self {
        Self {
            seen,
            running,
            recorded: HashMap::new(),
            pending: HashMap::new(),
            from_rollout: Vec::new(),
            from_running: Vec::new(),
            already_named: 0,
        }
    }

    /// Deployment `key` rolled to `image` now.
    fn rolled(&mut self, key: Key, image: &str) {
        if self
            .recorded
            .get(&key)
            .is_some_and(|r| r.contains(digest_of(image)))
        {
            // Its record will not change when the new pods run: the digest is there already.
            self.already_named += 1;
            self.pending.remove(&key);
        } else {
            self.pending.insert(key, (image.to_string(), Instant::now()));
        }
    }

    /// Takes what the watch saw until `until`, settling the rollouts whose digest appeared.
    async fn drain(&mut self, until: Instant) {
        while let Ok(Some((key, digests))) = tokio::time::timeout_at(until.into(), self.seen.recv()).await {
            if let Some((image, at)) = self.pending.get(&key) {
                let digest = digest_of(image);
                if digests.contains(digest) {
                    self.from_rollout.push(at.elapsed());
                    let first = (key.0.clone(), key.1.clone(), digest.to_string());
                    let since = self
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&first)
                        .and_then(|times| times.iter().filter(|t| **t >= *at).min().copied());
                    if let Some(since) = since {
                        self.from_running.push(since.elapsed());
                    }
                    self.pending.remove(&key);
                }
            }
            self.recorded.insert(key, digests);
        }
    }
}

/// `sha256:…` of `repo@sha256:…`.
fn digest_of(image: &str) -> &str {
    image.rsplit_once('@').map_or(image, |(_, d)| d)
}

/// Every change of the `digests` a Deployment's WorkloadVerdict records, by Deployment.
async fn watch_digests(client: Client, out: mpsc::UnboundedSender<(Key, String)>) {
    let api = Api::<WorkloadVerdict>::all(client);
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(Ok(record)) = events.next().await {
        if record.spec.workload.kind != "Deployment" {
            continue;
        }
        let digests = record.spec.digests.join(",");
        let key = (
            record.metadata.namespace.unwrap_or_default(),
            record.spec.workload.name,
        );
        if out.send((key, digests)).is_err() {
            return;
        }
    }
}

/// Notes when a benchmark pod is first seen Running with the digest it runs (its imageID).
async fn watch_running(client: Client, running: Running) {
    let api = Api::<Pod>::all(client);
    let config = watcher::Config::default().labels("app");
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    let mut seen_running = std::collections::HashSet::new();
    while let Some(Ok(pod)) = events.next().await {
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() != Some("Running") || !seen_running.insert(pod.metadata.uid.clone()) {
            continue;
        }
        let app = pod
            .metadata
            .labels
            .and_then(|mut l| l.remove("app"))
            .unwrap_or_default();
        let namespace = pod.metadata.namespace.unwrap_or_default();
        let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
        for c in status.container_statuses.unwrap_or_default() {
            // The pulled digest; the image itself when kwok reports no imageID (images are pinned).
            let pulled = [&c.image_id, &c.image]
                .into_iter()
                .find_map(|i| i.rsplit_once('@'));
            if let Some((_, digest)) = pulled {
                let key = (namespace.clone(), app.clone(), digest.to_string());
                running.entry(key).or_default().push(Instant::now());
            }
        }
    }
}

/// Percentile of sorted durations (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
