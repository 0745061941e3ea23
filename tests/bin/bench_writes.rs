//! `bench-writes [VERDICTS]`: what the operator's writes cost the control plane, in CPU per write,
//! on the real local control plane. It answers one question: how fast can any operator write N
//! verdicts on this machine? A key removed from a TrustRoot changes every verdict it governed, and
//! each change is two writes (the transition's Event, then the WorkloadVerdict), so the API
//! server's and etcd's CPU per pair, times the verdicts, over the machine's cores, is a floor that
//! no change to the operator's own code can go below.
//!
//! It writes through the operator's own functions (`writes::record`, `events::announce`), 16 at a
//! time as the operator does, for VERDICTS paused Deployments with no pods (default 2,000):
//! 1. every record created (server-side apply), then every record changed;
//! 2. every transition Event created alone;
//! 3. every verdict changed the way a key removal changes it: its Event, then its record.
//!
//! Each phase prints requests/s and the CPU that kube-apiserver and etcd spent per write, from their
//! own `/proc/<pid>/task/*/schedstat`. `e2e/bench-writes.sh` builds and runs it; figures in
//! docs/benchmarks.md ("What one verdict costs the API server").

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countersign::operator::{
    events::{self, Announcement},
    verdict::{Recorded, Verdict},
    workload::{WorkloadKind, WorkloadRef},
    writes,
};
use countersign_tests::{
    bench::{create_namespace, install, process_cpu, progress},
    cluster::{ClusterOptions, LocalCluster},
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;

const NAMESPACE: &str = "bench-writes";
/// As many writes in flight as the operator allows itself.
const IN_FLIGHT: usize = 16;
/// The verdict counts the key-removal goals of issue 11 name: 10,000 pods in 1,000 Deployments,
/// 50,000 in 5,000.
const GOALS: [(usize, f64); 2] = [(1_000, 2.0), (5_000, 10.0)];

#[tokio::main]
async fn main() -> Result<()> {
    let verdicts: usize = std::env::args().nth(1).map_or(Ok(2_000), |s| s.parse())?;
    let cluster = LocalCluster::start_with(ClusterOptions::default()).await?;
    let client = cluster.client();
    install(&client).await?;
    create_namespace(&client, NAMESPACE).await?;
    let workloads = create_deployments(&client, verdicts).await?;
    let pids = [
        ("kube-apiserver", cluster.pid("kube-apiserver")?),
        ("etcd", cluster.pid("etcd")?),
    ];
    wait_idle(&pids).await;

    let verified = recorded(Verdict::Verified);
    let failed = recorded(Verdict::Failed);
    let drift = Announcement {
        reason: "SignatureDrift",
        warning: true,
        note: "no signature by a trusted key: bench/ci was removed from its trust root".into(),
    };
    let mut rows = Vec::new();
    rows.push(
        phase("WorkloadVerdict created (apply)", &workloads, &pids, |w| {
            record(&client, w, &verified)
        })
        .await?,
    );
    rows.push(
        phase("WorkloadVerdict changed (apply)", &workloads, &pids, |w| {
            record(&client, w, &failed)
        })
        .await?,
    );
    rows.push(
        phase("transition Event created", &workloads, &pids, |w| {
            announce(&client, w, &verified, &drift)
        })
        .await?,
    );
    let pair = phase("verdict changed: Event, then record", &workloads, &pids, |w| {
        let (client, drift, verified) = (&client, &drift, &verified);
        async move {
            let previous = recorded_at(Verdict::Failed, "2026-11-30T00:00:01.000Z");
            announce(client, w, &previous, drift).await?;
            record(client, w, verified).await
        }
    })
    .await?;
    rows.push(pair.clone());
    print(verdicts, &rows, &pair);
    Ok(())
}

/// Paused Deployments of no replicas: real owners for the records (the garbage collector deletes
/// a record whose owner does not exist), and no pods to keep the control plane busy.
async fn create_deployments(client: &Client, n: usize) -> Result<Vec<WorkloadRef>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let started = Instant::now();
    let created: Vec<Deployment> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": format!("web-{i}")},
                    "spec": {
                        "replicas": 0, "paused": true,
                        "selector": {"matchLabels": {"app": format!("web-{i}")}},
                        "template": {
                            "metadata": {"labels": {"app": format!("web-{i}")}},
                            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
                        }
                    }
                }))?;
                Ok::<_, anyhow::Error>(api.create(&PostParams::default(), &d).await?)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
    progress(&format!(
        "{n} paused Deployments in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let listed = api.list(&ListParams::default()).await?.items.len();
    anyhow::ensure!(listed == n, "{listed} Deployments listed, {n} created");
    created
        .into_iter()
        .map(|d| {
            Ok(WorkloadRef {
                kind: WorkloadKind::Deployment,
                namespace: NAMESPACE.into(),
                name: d.metadata.name.context("named")?,
                uid: d.metadata.uid.context("uid")?,
            })
        })
        .collect()
}

/// Waits until the API server spends less than a tenth of a core (the Deployments created, the
/// controller-manager done with them), so each phase measures its own writes.
async fn wait_idle(pids: &[(&str, u32)]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let before = process_cpu(pids[0].1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = process_cpu(pids[0].1) - before;
        if busy < Duration::from_millis(100) || Instant::now() > deadline {
            progress(&format!(
                "kube-apiserver at {} ms of CPU per second",
                busy.as_millis()
            ));
            return;
        }
    }
}

fn recorded(verdict: Verdict) -> Recorded {
    recorded_at(verdict, "2026-11-30T00:00:00.000Z")
}

fn recorded_at(verdict: Verdict, changed: &str) -> Recorded {
    let verified = verdict == Verdict::Verified;
    Recorded {
        verdict: Some(verdict),
        verified_by: if verified {
            vec!["bench/ci".into()]
        } else {
            Vec::new()
        },
        reason: (!verified).then(|| "no signature by a trusted key".into()),
        causes: if verified {
            Vec::new()
        } else {
            vec!["no_trusted_key".into()]
        },
        digests: vec![format!(
            "registry.example/web@sha256:{}",
            "0123456789abcdef".repeat(4)
        )],
        since: Some(changed[..19].to_string() + "Z"),
        stale: None,
        drift: None,
        changed: Some(changed.into()),
    }
}

async fn record(client: &Client, w: &WorkloadRef, r: &Recorded) -> Result<()> {
    writes::record(client, w, r).await?;
    Ok(())
}

async fn announce(client: &Client, w: &WorkloadRef, previous: &Recorded, a: &Announcement) -> Result<()> {
    events::announce(client, "bench-writes", w, Some(previous), a).await?;
    Ok(())
}

#[derive(Clone)]
struct Row {
    what: &'static str,
    writes: usize,
    seconds: f64,
    /// CPU per write (per verdict for the pair), by process.
    cpu: Vec<(&'static str, Duration)>,
}

async fn phase<'w, F, Fut>(
    what: &'static str,
    workloads: &'w [WorkloadRef],
    pids: &[(&'static str, u32)],
    write: F,
) -> Result<Row>
where
    F: Fn(&'w WorkloadRef) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let before: Vec<Duration> = pids.iter().map(|(_, pid)| process_cpu(*pid)).collect();
    let started = Instant::now();
    stream::iter(workloads)
        .map(&write)
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .with_context(|| format!("phase {what}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let n = u32::try_from(workloads.len())?;
    let cpu = pids
        .iter()
        .zip(before)
        .map(|((name, pid), before)| (*name, (process_cpu(*pid) - before) / n))
        .collect();
    progress(&format!("{what}: {} in {seconds:.2}s", workloads.len()));
    wait_idle(pids).await;
    Ok(Row {
        what,
        writes: workloads.len(),
        seconds,
        cpu,
    })
}

fn print(verdicts: usize, rows: &[Row], pair: &Row) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# What one verdict costs the API server ({verdicts} verdicts, {cores} cores)\n");
    println!(
        "| write, {IN_FLIGHT} in flight | per second | kube-apiserver CPU per write | etcd CPU per write |"
    );
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms |",
            r.what,
            r.writes as f64 / r.seconds,
            ms(r.cpu[0].1),
            ms(r.cpu[1].1)
        );
    }
    let per_verdict: f64 = pair.cpu.iter().map(|(_, c)| ms(*c)).sum();
    println!(
        "\nA changed verdict costs the control plane **{per_verdict:.2} ms** of CPU (Event and record). \
         With every core of this machine given to kube-apiserver and etcd, and none to the operator, \
         the controller-manager or kwok, changing N verdicts takes at least N × {per_verdict:.2} ms / {cores}:\n"
    );
    println!("| verdicts changed | floor | goal |");
    println!("|---|---|---|");
    for (n, goal) in GOALS {
        let floor = n as f64 * per_verdict / 1e3 / cores as f64;
        println!("| {n} | {floor:.2} s | ≤ {goal} s |");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
