//! Benchmark of the operator (`countersign run`) on a loaded local control plane.
//!
//!   e2e/bench-operator.sh [PODS] [DIGESTS]      (default 5000 pods over 500 digests)
//!
//! It starts the real local control plane (etcd, kube-apiserver, controller-manager, scheduler,
//! kwok) and one go-containerregistry registry with the referrers API; pushes DIGESTS small images
//! and signs them in process (even ones as Sigstore bundle referrers, odd ones as cosign v2 `.sig`
//! tags); creates one Deployment per digest, pinned by digest (so kwok reports it as the
//! containers' `imageID`), PODS replicas in all; applies a TrustRoot governing them; waits until
//! every pod runs; and only then starts `countersign run` as a process. It measures:
//!
//! 1. the cold sweep: operator start → every Deployment recorded `Verified` (watched, not polled);
//! 2. the warm sweeps: each re-verification sweep's `status.lastSweep.durationMs`;
//! 3. a key removed from the TrustRoot → every Deployment recorded `Failed`, and every
//!    `SignatureDrift` event emitted (from the operator's `countersign_events_total`);
//! 4. registry requests, from the registry's own log (one line per request), by kind, per
//!    distinct digest: cold, per warm sweep, and during the reaction to the key removal; next to
//!    the operator's own `countersign_registry_requests_total`;
//! 5. the operator's peak RSS (`VmHWM` of `/proc/<pid>/status`);
//! 6. the API server's request rate (its own `apiserver_request_total`, whole cluster, with a
//!    window before the operator starts as the baseline).
//!
//! With `--rotation`, a key rotation runs between the warm sweeps and the key removal: every
//! digest re-signed by `countersign rotation resign`, then the time to `Completed` (see
//! `bench_rotation.rs`).
//!
//! Phase boundaries come from the operator's sweep counter (`countersign_sweep_duration_seconds`
//! count): the registry log is cut the moment a sweep is seen finished, and the next sweep starts
//! a `reverifyInterval` later, so each warm window holds exactly one sweep's requests.
//!
//! Everything it prints on stdout is markdown; progress goes to stderr.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use countersign::keys::SigningKey;
use countersign_tests::{
    bench::{MANAGER, install, progress},
    cluster::{ClusterOptions, LocalCluster},
    registry::{Registry, RegistryKind},
};

#[path = "bench_churn.rs"]
mod churn;
#[path = "bench_operator_images.rs"]
mod images;
#[path = "bench_operator_measure.rs"]
mod measure;
#[path = "bench_operator_phases.rs"]
mod phases;
#[path = "bench_operator_prepare.rs"]
mod prepare;
#[path = "bench_operator_reactions.rs"]
mod reactions;
#[path = "bench_operator_report.rs"]
mod report;
#[path = "bench_operator_requests.rs"]
mod requests;
#[path = "bench_rotation.rs"]
mod rotation;
#[path = "bench_operator_sweeps.rs"]
mod sweeps;
#[path = "bench_operator_tables.rs"]
mod tables;
#[path = "bench_operator_trust_root.rs"]
mod trust_root;
#[path = "bench_operator_verdicts.rs"]
mod verdicts;

// What bench_rotation.rs takes from here (`super::…`), besides `MANAGER` and `progress`.
use trust_root::{TRUST_ROOT, apply_trust_root};
use verdicts::Verdicts;

/// The label every benchmark Deployment carries, to watch them and nothing else.
const BENCH_LABEL: &str = "countersign.dev/bench";

#[derive(Parser)]
#[command(about = "Benchmark of `countersign run` on a real local control plane and registry")]
struct Args {
    /// Pods in all, spread evenly over the Deployments.
    #[arg(default_value_t = 5000)]
    pods: usize,
    /// Distinct digests; one Deployment (and one image) per digest.
    #[arg(default_value_t = 500)]
    digests: usize,
    /// The TrustRoot's reverifyInterval, in seconds (the CRD allows 10s to 24h).
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Warm sweeps to measure.
    #[arg(long, default_value_t = 3)]
    warm_sweeps: usize,
    /// Digests per repository (tags v0, v1, … of `bench/app-N`).
    #[arg(long, default_value_t = 10)]
    per_repo: usize,
    /// Of the DIGESTS, how many are pushed but left unsigned (the last ones): their workloads
    /// stay `Unsigned`, and each of their warm re-checks looks at both formats.
    #[arg(long, default_value_t = 0)]
    unsigned: usize,
    /// Deployments per namespace.
    #[arg(long, default_value_t = 100)]
    per_namespace: usize,
    /// Also rotate the TrustRoot's key and re-sign every digest (after the warm sweeps).
    #[arg(long)]
    rotation: bool,
    /// After the warm sweeps, roll a tenth of the Deployments to another signed digest every
    /// `--churn-every` seconds, for this many seconds (0: no churn).
    #[arg(long, default_value_t = 0)]
    churn: u64,
    #[arg(long, default_value_t = 5)]
    churn_every: u64,
    /// Flags handed to `countersign run` as they are (after `--`), e.g.
    /// `-- --max-concurrent-verifications 32`.
    #[arg(last = true)]
    operator_args: Vec<String>,
}

impl Args {
    fn check(&self) -> Result<()> {
        ensure!(
            self.digests > 0 && self.pods >= self.digests,
            "need PODS >= DIGESTS > 0"
        );
        ensure!(
            self.unsigned < self.digests,
            "--unsigned must leave at least one signed digest"
        );
        ensure!(
            self.interval >= 10,
            "the CRD accepts a reverifyInterval of 10s or more"
        );
        Ok(())
    }

    /// Fake nodes for the pods: up to 5,000 on each.
    fn nodes(&self) -> usize {
        self.pods.div_ceil(5000).max(1)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.check()?;
    let countersign = countersign_binary()?;
    let started = Instant::now();
    let (registry, cluster) = start_registry_and_cluster(&args).await?;
    let client = cluster.client();
    install(&client).await?;
    let (trusted, spare) = (SigningKey::generate(), SigningKey::generate());
    let keys = rotation::Keys {
        ci: &trusted,
        spare: &spare,
    };
    let prepared = prepare::prepare(&client, &registry.host, cluster.node_names(), &args, &keys).await?;
    let setup = measure::Setup {
        args: &args,
        countersign: &countersign,
        registry: &registry,
        cluster: &cluster,
        client: &client,
        keys: &keys,
        prepared: &prepared,
        operator_log: cluster.dir().join("operator.log"),
    };
    let verdicts = verdicts::watch_verdicts(client.clone());
    let measured = measure::run(&setup, verdicts).await?;

    let log = registry.log();
    let _ = std::fs::write(cluster.dir().join("registry.log"), &log);
    let report = report::Report {
        args: &args,
        host: &registry.host,
        prepared: &prepared,
        measured,
        log: log.lines().collect(),
    };
    report.print();
    progress(&format!(
        "done in {:.0}s (operator log: {}; COUNTERSIGN_KEEP_CLUSTER=1 keeps it)",
        started.elapsed().as_secs_f64(),
        setup.operator_log.display()
    ));
    drop(cluster);
    Ok(())
}

/// The `countersign` binary under test.
fn countersign_binary() -> Result<PathBuf> {
    std::env::var("COUNTERSIGN_BIN")
        .map(PathBuf::from)
        .context("COUNTERSIGN_BIN: the countersign binary to benchmark (e2e/bench-operator.sh sets it)")
}

/// The registry, and the control plane sized for the pods, with room to spare on each node.
async fn start_registry_and_cluster(args: &Args) -> Result<(Registry, LocalCluster)> {
    let nodes = args.nodes();
    let pods_per_node = u32::try_from(args.pods.div_ceil(nodes) + 110)?;
    let registry = Registry::start(RegistryKind::Referrers);
    let cluster = LocalCluster::start_with(ClusterOptions {
        dir: None,
        nodes,
        pods_per_node,
        ..ClusterOptions::default()
    })
    .await?;
    Ok((registry, cluster))
}
