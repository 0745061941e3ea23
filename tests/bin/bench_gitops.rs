//! Benchmark of TrustSources: a repository of ROOTS TrustRoots and ROTATIONS KeyRotations in a
//! real Gitea, the real local control plane, and `countersign run` as a release process.
//!
//!   e2e/bench-gitops.sh [--roots 200] [--rotations 50] [--pushes 5] [--resyncs 3]
//!
//! It measures:
//!
//! 1. the first sync: TrustSource created → `status.lastAppliedRevision` is the commit;
//! 2. an unchanged resync (the TrustSource polls every `--interval`), once the API server has
//!    settled after the first sync: API writes during RESYNCS passes, from the API server's own `apiserver_request_total` (whole cluster, by resource,
//!    so lease renewals of every component show apart), and what the fetches received (the
//!    operator's `countersign_gitops_fetched_{objects,bytes}_total`); goal: no writes to
//!    countersign objects, no objects transferred;
//! 3. push → applied: a commit changing one TrustRoot, pushed with the `git` CLI, announced by
//!    Gitea's webhook, until the TrustSource's `lastAppliedRevision` is it (goal ≤ 2 s), PUSHES
//!    times;
//! 4. the operator's memory: `VmRSS` before the TrustSource and after the first sync, `VmHWM`.
//!
//! Everything it prints on stdout is markdown; progress goes to stderr.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use countersign::{
    crd::{REQUESTED_AT_ANNOTATION, TrustSource},
    keys::SigningKey,
};
use countersign_tests::{
    bench::{
        ApiServer, ChildProbe, LEASE_NAMESPACE, MANAGER, Memory, OperatorProcess, OwnRequests, POLL, install,
        progress, scrape_metrics, settle, value, wait_metric,
    },
    cluster::LocalCluster,
    gitea::{self, Gitea, WorkTree},
    ports, scratch_dir,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

const SOURCE: &str = "bench";
const REPO: &str = "trust";
const WEBHOOK_TOKEN: &str = "bench-webhook-token";
/// The resources whose writes count against the goal: what the gitops controller writes.
const COUNTED: [&str; 7] = [
    "trustroots",
    "trustroots/status",
    "keyrotations",
    "keyrotations/status",
    "trustsources",
    "trustsources/status",
    "events",
];

#[derive(Parser)]
#[command(about = "Benchmark of TrustSources against a real Gitea")]
struct Args {
    /// TrustRoots in the repository.
    #[arg(long, default_value_t = 200)]
    roots: usize,
    /// KeyRotations in the repository (one per TrustRoot, on the first ones).
    #[arg(long, default_value_t = 50)]
    rotations: usize,
    /// Pushes timed from `git push` to applied.
    #[arg(long, default_value_t = 5)]
    pushes: usize,
    /// Unchanged resyncs measured.
    #[arg(long, default_value_t = 3)]
    resyncs: usize,
    /// The TrustSource's `spec.interval`, in seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.rotations <= args.roots,
        "one KeyRotation per TrustRoot at most"
    );
    let countersign = std::env::var("COUNTERSIGN_BIN")
        .map(PathBuf::from)
        .context("COUNTERSIGN_BIN: the countersign binary to benchmark (e2e/bench-gitops.sh sets it)")?;
    let scratch = scratch_dir("bench-gitops");

    progress("starting the control plane and gitea");
    let cluster = LocalCluster::start().await?;
    let gitea = tokio::task::spawn_blocking(Gitea::start).await?;
    let client = cluster.client();
    install(&client).await?;
    secret(
        &client,
        "git-http",
        json!({"username": gitea::USER, "password": gitea::PASSWORD}),
    )
    .await?;
    secret(
        &client,
        "countersign-git-webhook",
        json!({"token": WEBHOOK_TOKEN}),
    )
    .await?;

    progress(&format!(
        "committing {} TrustRoots and {} KeyRotations",
        args.roots, args.rotations
    ));
    let tree = tokio::task::block_in_place(|| {
        gitea.create_repo(REPO);
        let tree = WorkTree::new(&gitea, REPO);
        write_repository(&tree, &args);
        tree
    });
    let first = commit_and_push(&tree, "trust: every team");

    let log = scratch.path().join("operator.log");
    let cache = scratch.path().join("git-cache");
    let extra = [
        "--git-webhook-addr".to_string(),
        "127.0.0.1:0".into(),
        "--git-cache-dir".into(),
        cache.display().to_string(),
    ];
    let operator = OperatorProcess::start(&countersign, cluster.kubeconfig_path(), &log, &extra)?;
    let (metrics, webhook) = addresses(&operator, &log).await?;
    wait_metric(&metrics, Duration::from_secs(120), &operator, &log, |m| {
        value(m, "countersign_leader") >= 1.0
    })
    .await
    .context("the operator leading")?;
    tokio::task::block_in_place(|| gitea.add_webhook(REPO, &webhook, WEBHOOK_TOKEN));
    let idle = operator.memory();

    progress("first sync");
    let mut own = OwnRequests::default();
    let started = Instant::now();
    create_source(&client, &gitea.http_url(REPO), args.interval).await?;
    wait_applied(&client, &first, &operator, &log, &mut own).await?;
    let first_sync = started.elapsed();
    let synced = operator.memory();
    let inventory = source(&client).await?.status.map_or(0, |s| s.inventory.len());
    ensure!(
        inventory == args.roots + args.rotations,
        "inventory of {inventory} objects"
    );

    // The verifying and rotation controllers write the first status of the new objects after
    // the sync; the resyncs are measured once that is over.
    settle(&client, &mut own).await?;
    progress(&format!(
        "{} unchanged resyncs, one every {}s",
        args.resyncs, args.interval
    ));
    let resync = measure_resyncs(&client, &metrics, &operator, &log, &args, &mut own).await?;

    progress(&format!("{} pushes", args.pushes));
    let mut pushes = Vec::new();
    for i in 0..args.pushes {
        tree.write("roots/team-000.yaml", &trust_root(0, &format!("{}m", 11 + i)));
        let commit = commit_and_push(&tree, &format!("team-000: reverify every {}m", 11 + i));
        let pushed = Timestamp::now();
        wait_applied(&client, &commit, &operator, &log, &mut own).await?;
        let applied = Timestamp::now();
        // The receiver stamps the time the Git host's call arrived on the TrustSource: the
        // Git host's share of the wait and ours, apart.
        let received = source(&client)
            .await?
            .metadata
            .annotations
            .and_then(|a| {
                a.get(REQUESTED_AT_ANNOTATION)
                    .and_then(|t| t.parse::<Timestamp>().ok())
            })
            .context("the receiver's requested-at annotation")?;
        let secs = |from: Timestamp, to: Timestamp| to.duration_since(from).as_secs_f64();
        pushes.push(Push {
            total: secs(pushed, applied),
            delivery: secs(pushed, received),
            ours: secs(received, applied),
        });
    }
    let end = operator.memory();
    let operator_metrics = scrape_metrics(&metrics).await?;
    let ended = operator.stop();

    Report {
        args: &args,
        first_sync,
        memory: [idle, synced, end],
        resync: &resync,
        pushes: &pushes,
        syncs: &operator_metrics,
        ended: &ended,
    }
    .print();
    drop(gitea);
    drop(cluster);
    Ok(())
}

/// The TrustRoots (`roots/`) and KeyRotations (`rotations/`), one file each.
fn write_repository(tree: &WorkTree, args: &Args) {
    for i in 0..args.roots {
        tree.write(&format!("roots/team-{i:03}.yaml"), &trust_root(i, "10m"));
    }
    for i in 0..args.rotations {
        // A window far ahead: the rotations stay Pending, and the operator's rotation work stays
        // out of the figures.
        let rotation = format!(
            "apiVersion: countersign.dev/v1alpha1\nkind: KeyRotation\nmetadata:\n  name: team-{i:03}-next\nspec:\n  trustRootRef: team-{i:03}\n  fromKey: ci\n  toKey: ci-next\n  window:\n    start: \"2030-01-01T00:00:00Z\"\n    duration: 72h\n"
        );
        tree.write(&format!("rotations/team-{i:03}.yaml"), &rotation);
    }
}

/// TrustRoot `team-NNN`: two keys (made once per process), `reverifyInterval` as given.
fn trust_root(i: usize, reverify: &str) -> String {
    static KEYS: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let pem = || {
            let pem = SigningKey::generate().public_key().to_pem();
            pem.lines().map(|l| format!("        {l}\n")).collect::<String>()
        };
        [pem(), pem()]
    });
    format!(
        "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: team-{i:03}\nspec:\n  images: [\"registry.example.com/team-{i:03}/**\"]\n  keys:\n    - name: ci\n      publicKey: |\n{}    - name: ci-next\n      publicKey: |\n{}  threshold: 1\n  reverifyInterval: {reverify}\n",
        keys[0], keys[1]
    )
}

fn commit_and_push(tree: &WorkTree, message: &str) -> String {
    tokio::task::block_in_place(|| {
        let commit = tree.commit(message, None);
        tree.push(false);
        commit
    })
}

async fn secret(client: &Client, name: &str, data: serde_json::Value) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let body: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))?;
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await
        .with_context(|| format!("secret {name}"))?;
    Ok(())
}

async fn create_source(client: &Client, url: &str, interval: u64) -> Result<()> {
    let body: TrustSource = serde_json::from_value(json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustSource",
        "metadata": {"name": SOURCE},
        "spec": {"url": url, "ref": {"branch": "main"}, "interval": format!("{interval}s"), "secretRef": {"name": "git-http"}},
    }))?;
    Api::<TrustSource>::all(client.clone())
        .patch(SOURCE, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body))
        .await
        .context("create the TrustSource")?;
    Ok(())
}

async fn source(client: &Client) -> Result<TrustSource> {
    Ok(Api::<TrustSource>::all(client.clone()).get(SOURCE).await?)
}

/// The operator's metrics address and its webhook URL: of its two listening ports, the one
/// serving /metrics and the other.
async fn addresses(operator: &OperatorProcess, log: &Path) -> Result<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut probe = ChildProbe(operator.pid());
    loop {
        let ports = ports::listening_ports(operator.pid());
        if ports.len() >= 2 {
            let mut metrics = None;
            for port in &ports {
                if scrape_metrics(&format!("127.0.0.1:{port}")).await.is_ok() {
                    metrics = Some(*port);
                }
            }
            if let Some(m) = metrics {
                let hook = ports.iter().find(|p| **p != m).context("a second port")?;
                let hook = format!("http://127.0.0.1:{hook}{}", countersign::gitops::receiver::PATH);
                return Ok((format!("127.0.0.1:{m}"), hook));
            }
        }
        probe.check(log)?;
        ensure!(
            Instant::now() < deadline,
            "the operator not listening on two ports after 120s"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the TrustSource until it has applied `commit`; fails early if it reports an error.
async fn wait_applied(
    client: &Client,
    commit: &str,
    operator: &OperatorProcess,
    log: &Path,
    own: &mut OwnRequests,
) -> Result<()> {
    let revision = format!("main@sha1:{commit}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut probe = ChildProbe(operator.pid());
    loop {
        let status = source(client).await?.status.unwrap_or_default();
        own.count(1);
        if status.last_applied_revision.as_deref() == Some(revision.as_str()) {
            return Ok(());
        }
        if let Some(failure) = &status.failure
            && status.last_attempted_revision.as_deref() == Some(revision.as_str())
        {
            bail!("{revision} not applied: {failure:?}");
        }
        probe.check(log)?;
        ensure!(Instant::now() < deadline, "{revision} not applied within 300s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Resync {
    passes: f64,
    elapsed: Duration,
    objects: f64,
    bytes: f64,
    /// API server requests during the passes, by `VERB resource`, the benchmark's own (reads)
    /// left in: it sends none while waiting.
    requests: BTreeMap<String, f64>,
}

async fn measure_resyncs(
    client: &Client,
    metrics: &str,
    operator: &OperatorProcess,
    log: &Path,
    args: &Args,
    own: &mut OwnRequests,
) -> Result<Resync> {
    let unchanged = r#"countersign_gitops_syncs_total{outcome="unchanged"}"#;
    let before = scrape_metrics(metrics).await?;
    let api_before = ApiServer::scrape(client, own).await?;
    let target = value(&before, unchanged) + args.resyncs as f64;
    let limit = Duration::from_secs(args.interval * (args.resyncs as u64 + 2) + 60);
    wait_metric(metrics, limit, operator, log, |m| value(m, unchanged) >= target).await?;
    let after = scrape_metrics(metrics).await?;
    let api_after = ApiServer::scrape(client, own).await?;
    let diff = |m: &HashMap<String, f64>, n: &HashMap<String, f64>, s: &str| value(n, s) - value(m, s);
    let mut requests = BTreeMap::new();
    for (kind, n) in &api_after.by_kind {
        let d = n - api_before.by_kind.get(kind).copied().unwrap_or(0.0);
        if d > 0.0 {
            requests.insert(kind.clone(), d);
        }
    }
    Ok(Resync {
        passes: diff(&before, &after, unchanged),
        elapsed: api_after.at - api_before.at,
        objects: diff(&before, &after, "countersign_gitops_fetched_objects_total"),
        bytes: diff(&before, &after, "countersign_gitops_fetched_bytes_total"),
        requests,
    })
}

fn is_write(kind: &str) -> bool {
    let verb = kind.split(' ').next().unwrap_or_default();
    !matches!(verb, "GET" | "LIST" | "WATCH")
}

fn counted(kind: &str) -> bool {
    let resource = kind.split(' ').nth(1).unwrap_or_default();
    COUNTED.contains(&resource)
}

/// One push, in seconds: pushed → applied, pushed → the webhook call received (the Git host's
/// delivery), received → applied (countersign's share).
struct Push {
    total: f64,
    delivery: f64,
    ours: f64,
}

/// The median and the max of `values`.
fn median_max(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
    (median, values.last().copied().unwrap_or(0.0))
}

struct Report<'a> {
    args: &'a Args,
    first_sync: Duration,
    /// Idle (leading, no TrustSource), after the first sync, at the end.
    memory: [Memory; 3],
    resync: &'a Resync,
    pushes: &'a [Push],
    syncs: &'a HashMap<String, f64>,
    ended: &'a str,
}

impl Report<'_> {
    fn print(&self) {
        let a = self.args;
        let r = self.resync;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let [idle, synced, end] = self.memory;
        let (median, max) = median_max(self.pushes.iter().map(|p| p.total).collect());
        let (delivery, delivery_max) = median_max(self.pushes.iter().map(|p| p.delivery).collect());
        let (ours, ours_max) = median_max(self.pushes.iter().map(|p| p.ours).collect());
        let writes: Vec<(&String, &f64)> = r.requests.iter().filter(|(k, _)| is_write(k)).collect();
        let written: f64 = writes
            .iter()
            .filter(|(k, _)| counted(k))
            .fold(0.0, |sum, (_, n)| sum + **n);
        println!(
            "### TrustSource: {} TrustRoots + {} KeyRotations in one repository\n",
            a.roots, a.rotations
        );
        println!("| measure | value | goal |\n|---|---|---|");
        println!(
            "| first sync (TrustSource created → {} objects applied) | {:.2} s | |",
            a.roots + a.rotations,
            self.first_sync.as_secs_f64()
        );
        println!(
            "| unchanged resyncs measured | {:.0} in {:.1} s | |",
            r.passes,
            r.elapsed.as_secs_f64()
        );
        println!(
            "| API writes to countersign objects and events, per unchanged resync | {:.1} | 0 |",
            written / r.passes.max(1.0)
        );
        println!(
            "| Git objects / bytes received, per unchanged resync | {:.0} / {:.0} | 0 / 0 |",
            r.objects / r.passes.max(1.0),
            r.bytes / r.passes.max(1.0)
        );
        println!(
            "| push → applied (webhook), median / max of {} | {median:.2} s / {max:.2} s | ≤ 2 s |",
            self.pushes.len()
        );
        println!(
            "| of which push → webhook call received (the Git host's delivery) | {delivery:.2} s / {delivery_max:.2} s | |"
        );
        println!("| of which call received → applied (countersign) | {ours:.2} s / {ours_max:.2} s | |");
        println!(
            "| operator RSS: leading, no TrustSource → after the first sync | {:.1} → {:.1} MiB (+{:.1}) | |",
            mib(idle.rss_kib),
            mib(synced.rss_kib),
            mib(synced.rss_kib.saturating_sub(idle.rss_kib))
        );
        println!(
            "| operator RSS at the end / peak (VmHWM) | {:.1} / {:.1} MiB | |",
            mib(end.rss_kib),
            mib(end.peak_kib)
        );
        println!(
            "\nAll API writes during the unchanged resyncs (whole cluster; `apiserver_request_total`):\n"
        );
        println!("| request | count |\n|---|---|");
        for (kind, n) in &writes {
            println!("| {kind} | {n:.0} |");
        }
        if writes.is_empty() {
            println!("| (none) | 0 |");
        }
        println!("\nSyncs by outcome (the operator's `countersign_gitops_syncs_total`):\n");
        for (series, n) in self
            .syncs
            .iter()
            .filter(|(s, _)| s.starts_with("countersign_gitops_syncs_total"))
        {
            println!("- `{series}` {n:.0}");
        }
        println!("\nOperator stopped: {}.", self.ended);
    }
}
