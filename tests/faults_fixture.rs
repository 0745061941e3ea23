//! What the fault campaign (`faults.rs`) shares: signed and unsigned images in a real registry,
//! workloads running them, a watch that records every version of their verdicts (so a false
//! verdict shown for a moment during a fault is caught, not only the final one), the Events
//! counted per workload, and the recovery figure printed as one structured line.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::ensure;
use countersign::crd::WorkloadVerdict;
use countersign_tests::images::push_image;
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client,
    api::ListParams,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use crate::common::Keys;
use crate::operator_common::*;

pub const VERDICT: &str = "verdict";
pub const STALE: &str = "stale";

/// What an image really is, whatever the operator says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// Validly signed by an accepted key.
    Signed,
    /// Not signed by an accepted key (no signature, or another key's).
    NotSigned,
}

/// The verdict a workload must end with.
impl Truth {
    pub fn verdict(self, unsigned: bool) -> &'static str {
        match (self, unsigned) {
            (Truth::Signed, _) => "Verified",
            (Truth::NotSigned, true) => "Unsigned",
            (Truth::NotSigned, false) => "Failed",
        }
    }
}

/// Whether showing `verdict` for an image that is `truth` is false. `Unknown` (not verified
/// yet, the registry could not be asked) is never false: it claims nothing.
pub fn is_false(truth: Truth, verdict: &str) -> bool {
    match truth {
        Truth::Signed => matches!(verdict, "Unsigned" | "Failed"),
        Truth::NotSigned => verdict == "Verified",
    }
}

/// Images pushed to a real registry: some signed by key `a`, some by key `b`, some unsigned.
pub struct Images {
    pub a: Keys,
    pub b: Keys,
    /// `repo@sha256:…` without the registry host (workloads may reach it through a proxy).
    pub by_a: Vec<String>,
    pub by_b: Vec<String>,
    pub unsigned: Vec<String>,
}

impl Images {
    /// Pushes `n` images of each kind to `host` under `faults/` and signs them with the real
    /// cosign. Blocking (crane, cosign): call through [`blocking`].
    pub fn push(host: &str, n: usize) -> Images {
        let (a, b) = (Keys::generate_named("a"), Keys::generate_named("b"));
        let push = |kind: &str, i: usize, signer: Option<&Keys>| {
            let repo = format!("faults/{kind}-{i}");
            let digest = push_image(&format!("{host}/{repo}:v1"), &format!("{kind} {i}"));
            let image = format!("{repo}@{digest}");
            if let Some(keys) = signer {
                let run = keys
                    .cosign3
                    .sign(&keys.private, &format!("{host}/{image}"), false);
                assert!(run.success, "cosign sign {image}: {}", run.stderr);
            }
            image
        };
        let by_a = (0..n).map(|i| push("a", i, Some(&a))).collect();
        let by_b = (0..n).map(|i| push("b", i, Some(&b))).collect();
        let unsigned = (0..n).map(|i| push("unsigned", i, None)).collect();
        Images {
            a,
            b,
            by_a,
            by_b,
            unsigned,
        }
    }
}

/// A TrustRoot spec governing `host/faults/**` with `keys`, swept every 10 s (the least the
/// CRD allows).
pub fn root_spec(host: &str, keys: Value) -> Value {
    json!({"images": [format!("{host}/faults/**")], "keys": keys, "reverifyInterval": "10s"})
}

/// One workload of the campaign: its name, image, and what it must be found to be.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub image: String,
    pub truth: Truth,
    /// For a `NotSigned` one: no signature at all (`Unsigned`) rather than another key's (`Failed`).
    pub unsigned: bool,
}

impl Workload {
    pub fn new(name: impl Into<String>, image: impl Into<String>, truth: Truth, unsigned: bool) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            truth,
            unsigned,
        }
    }

    pub fn verdict(&self) -> &'static str {
        self.truth.verdict(self.unsigned)
    }

    /// The one verdict Event a workload whose truth never changed must have.
    pub fn first_event(&self) -> &'static str {
        match self.verdict() {
            "Verified" => "SignatureVerified",
            "Unsigned" => "Unsigned",
            _ => "VerificationFailed",
        }
    }
}

/// Every version of the verdicts of one kind of workload in a namespace, from a watch that
/// starts before the operator writes anything. Consecutive equal states are kept once, so each
/// entry after the first is a transition as the API server stored it.
pub struct History {
    states: Arc<Mutex<HashMap<String, Vec<State>>>>,
    relists: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

/// A workload's recorded state: its verdict (empty when none) and whether it is marked stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub verdict: String,
    pub stale: bool,
}

impl History {
    pub async fn start(client: &Client, (_, kind): (&str, &str), namespace: &str) -> History {
        let api: Api<WorkloadVerdict> = Api::namespaced(client.clone(), namespace);
        let kind = kind.to_string();
        let states = Arc::new(Mutex::new(HashMap::<String, Vec<State>>::new()));
        let relists = Arc::new(Mutex::new(0usize));
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let (s, r) = (states.clone(), relists.clone());
        let task = tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = stream.next().await {
                let object = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    Ok(watcher::Event::Init) => {
                        *r.lock().unwrap() += 1;
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                if object.spec.workload.kind != kind {
                    continue;
                }
                let state = State {
                    verdict: object.spec.verdict.clone(),
                    stale: object.spec.stale.is_some(),
                };
                let name = object.spec.workload.name.clone();
                let mut states = s.lock().unwrap();
                let seq = states.entry(name).or_default();
                if seq.last() != Some(&state) {
                    seq.push(state);
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(60), synced_rx).await;
        History {
            states,
            relists,
            task,
        }
    }

    pub fn states(&self) -> HashMap<String, Vec<State>> {
        self.states.lock().unwrap().clone()
    }

    /// Waits until the watch has seen, for each of `workloads`, the state the API server holds
    /// now. After an API server restart the watch may still be backing off when the verdicts
    /// are already right; what it has not seen yet cannot be checked.
    pub async fn catch_up(
        &self,
        client: &Client,
        kind: (&str, &str),
        namespace: &str,
        workloads: &[Workload],
    ) {
        eventually(
            "the history watch to see the current verdicts",
            Duration::from_secs(90),
            || async {
                let now = current(client, kind, namespace).await?;
                let states = self.states();
                let behind: Vec<&str> = workloads
                    .iter()
                    .filter(|w| {
                        let Some(a) = now.get(&w.name) else {
                            return false;
                        };
                        let current = State {
                            verdict: a.get(VERDICT).cloned().unwrap_or_default(),
                            stale: a.contains_key(STALE),
                        };
                        states.get(&w.name).and_then(|seq| seq.last()) != Some(&current)
                    })
                    .map(|w| w.name.as_str())
                    .collect();
                ensure!(behind.is_empty(), "behind on {behind:?}");
                Ok(())
            },
        )
        .await;
    }

    /// How many times the watch had to list again after its first list (a relist may hide
    /// versions written meanwhile).
    pub fn relists(&self) -> usize {
        self.relists.lock().unwrap().saturating_sub(1)
    }

    /// Every false verdict any version showed, as `name: verdict` (empty: none).
    pub fn false_verdicts(&self, workloads: &[Workload]) -> Vec<String> {
        let states = self.states();
        let mut out = Vec::new();
        for w in workloads {
            for s in states.get(&w.name).into_iter().flatten() {
                if is_false(w.truth, &s.verdict) {
                    out.push(format!("{}: {} (truth {:?})", w.name, s.verdict, w.truth));
                }
            }
        }
        out
    }

    /// The Events the recorded transitions of `name` call for, by reason (the table of
    /// `controller/src/operator/events.rs`; digest drift aside).
    pub fn expected_events(&self, name: &str) -> BTreeMap<String, i32> {
        let states = self.states();
        let mut out = BTreeMap::new();
        let mut before: Option<&State> = None;
        for next in states.get(name).into_iter().flatten() {
            if let Some(reason) = verdict_event(before.map(|b| b.verdict.as_str()), &next.verdict) {
                *out.entry(reason.to_string()).or_default() += 1;
            }
            if next.stale && !before.is_some_and(|b| b.stale) {
                *out.entry("VerificationStale".to_string()).or_default() += 1;
            }
            before = Some(next);
        }
        out
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Event a verdict change `before` → `after` announces (events.rs).
fn verdict_event(before: Option<&str>, after: &str) -> Option<&'static str> {
    let before = before.filter(|b| !b.is_empty());
    if after.is_empty() || before == Some(after) {
        return None;
    }
    match (before, after) {
        (_, "Verified") => Some("SignatureVerified"),
        (Some("Verified"), "Unsigned" | "Failed") => Some("SignatureDrift"),
        (_, "Unsigned") => Some("Unsigned"),
        (_, "Failed") => Some("VerificationFailed"),
        _ => None,
    }
}

/// countersign's Events in `namespace` on workloads of `kind`: by workload name, by reason,
/// counting an EventSeries as its count.
pub async fn event_counts(
    client: &Client,
    namespace: &str,
    kind: &str,
) -> anyhow::Result<HashMap<String, BTreeMap<String, i32>>> {
    let list = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    let mut out: HashMap<String, BTreeMap<String, i32>> = HashMap::new();
    for e in list.items {
        if e.reporting_controller.as_deref() != Some(countersign::operator::CONTROLLER) {
            continue;
        }
        let Some(r) = e.regarding.filter(|r| r.kind.as_deref() == Some(kind)) else {
            continue;
        };
        let count = e.series.map_or(1, |s| s.count);
        *out.entry(r.name.unwrap_or_default())
            .or_default()
            .entry(e.reason.unwrap_or_default())
            .or_default() += count;
    }
    Ok(out)
}

/// The recorded verdicts of every workload of `kind` in `namespace`, by workload name (fields
/// as [`recorded`] returns them).
pub async fn current(
    client: &Client,
    (_, kind): (&str, &str),
    namespace: &str,
) -> anyhow::Result<HashMap<String, BTreeMap<String, String>>> {
    let api: Api<WorkloadVerdict> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|v| v.spec.workload.kind == kind)
        .map(|v| (v.spec.workload.name.clone(), verdict_fields(v)))
        .collect())
}

/// Whether every workload shows its true verdict, current (not stale); `Err` says which do not.
pub async fn all_correct(
    client: &Client,
    kind: (&str, &str),
    namespace: &str,
    workloads: &[Workload],
) -> anyhow::Result<()> {
    let now = current(client, kind, namespace).await?;
    let wrong: Vec<String> = workloads
        .iter()
        .filter_map(|w| {
            // No record at all is as wrong as a wrong one.
            let none = BTreeMap::new();
            let a = now.get(&w.name).unwrap_or(&none);
            let verdict = a.get(VERDICT).map_or("", String::as_str);
            (verdict != w.verdict() || a.contains_key(STALE)).then(|| format!("{}: {a:?}", w.name))
        })
        .collect();
    ensure!(wrong.is_empty(), "{} not settled: {wrong:?}", wrong.len());
    Ok(())
}

/// Waits until every workload shows its true verdict, current; returns how long that took.
pub async fn wait_all_correct(
    client: &Client,
    kind: (&str, &str),
    namespace: &str,
    workloads: &[Workload],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    eventually("every verdict true and current", within, || {
        all_correct(client, kind, namespace, workloads)
    })
    .await;
    started.elapsed()
}

/// TrustRoot `root`'s status counts agree with the workloads' recorded verdicts.
pub async fn status_consistent(
    client: &Client,
    root: &str,
    kind: (&str, &str),
    namespace: &str,
) -> anyhow::Result<()> {
    let w = status(client, root).await?.workloads.unwrap_or_default();
    let now = current(client, kind, namespace).await?;
    let (mut verified, mut unsigned, mut failed, mut stale) = (0, 0, 0, 0);
    for a in now.values().filter(|a| a.contains_key(VERDICT)) {
        match (a.contains_key(STALE), a[VERDICT].as_str()) {
            (true, _) | (_, "Unknown") => stale += 1,
            (_, "Verified") => verified += 1,
            (_, "Unsigned") => unsigned += 1,
            _ => failed += 1,
        }
    }
    let annotated = (
        verified + unsigned + failed + stale,
        verified,
        unsigned,
        failed,
        stale,
    );
    ensure!(
        (w.total, w.verified, w.unsigned, w.failed, w.stale) == annotated,
        "status {w:?}, records (total, verified, unsigned, failed, stale) {annotated:?}"
    );
    Ok(())
}

/// The campaign's figure: one line per fault, for `e2e/faults.sh` to gather.
pub fn report(fault: &str, recovered: Duration, extra: &str) {
    eprintln!(
        "fault={fault} recovered_in_ms={}{}{extra}",
        recovered.as_millis(),
        if extra.is_empty() { "" } else { " " }
    );
}

/// Asserts the campaign's invariants over `workloads` once a fault is over and they settled:
/// no false verdict in any version the watch saw, then [`assert_events_and_status`].
pub async fn assert_invariants(
    client: &Client,
    history: &History,
    kind: (&str, &str),
    namespace: &str,
    root: &str,
    workloads: &[Workload],
) {
    history.catch_up(client, kind, namespace, workloads).await;
    let falses = history.false_verdicts(workloads);
    assert!(falses.is_empty(), "false verdicts were shown: {falses:?}");
    assert_events_and_status(client, history, kind, namespace, root, workloads).await;
}

/// Every Event called for by a recorded transition published once (none missing, none twice),
/// and the TrustRoot's status consistent with the records.
pub async fn assert_events_and_status(
    client: &Client,
    history: &History,
    kind: (&str, &str),
    namespace: &str,
    root: &str,
    workloads: &[Workload],
) {
    history.catch_up(client, kind, namespace, workloads).await;
    let events = event_counts(client, namespace, kind.1).await.expect("events");
    let mut wrong = Vec::new();
    for w in workloads {
        let got = events.get(&w.name).cloned().unwrap_or_default();
        let expected = history.expected_events(&w.name);
        if got != expected {
            wrong.push(format!(
                "{}: events {got:?}, transitions {:?} call for {expected:?}",
                w.name,
                history.states().get(&w.name)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} workloads with missing or duplicate events (watch relists: {}):\n{}",
        wrong.len(),
        history.relists(),
        wrong.join("\n")
    );
    eventually(
        "the TrustRoot status to agree with the records",
        Duration::from_secs(60),
        || status_consistent(client, root, kind, namespace),
    )
    .await;
}
