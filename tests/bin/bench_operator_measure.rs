//! The measurements, in the order they run once every pod runs: the API server's baseline, the
//! operator started, its cold and warm sweeps (`bench_operator_sweeps.rs`), then what it reacts
//! to (`bench_operator_reactions.rs`), and the operator stopped. Each window between two
//! snapshots is a [`Phase`] of the report.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;
use countersign::crd::TrustRootStatus;
use countersign_tests::{
    bench::{ApiServer, Memory, OperatorProcess, OwnRequests, settle, wait_metric},
    cluster::LocalCluster,
    registry::Registry,
};
use kube::Client;
use tokio::sync::watch;

use super::{
    Args, churn,
    phases::{Phase, Snapshot, snapshot},
    prepare::Prepared,
    reactions::Drift,
    rotation::{self, Keys},
    sweeps::Cold,
    trust_root::{Sweep, get_trust_root, last_sweep},
    verdicts::Verdicts,
};

/// The baseline window of the API server's request rate, before the operator starts.
const BASELINE: Duration = Duration::from_secs(10);

/// What the measurements work with, all of it ready before the operator starts.
pub struct Setup<'a> {
    pub args: &'a Args,
    /// The `countersign` binary under test.
    pub countersign: &'a Path,
    pub registry: &'a Registry,
    pub cluster: &'a LocalCluster,
    pub client: &'a Client,
    pub keys: &'a Keys<'a>,
    pub prepared: &'a Prepared,
    pub operator_log: PathBuf,
}

/// Everything measured, for the report.
pub struct Measured {
    pub cold: Cold,
    /// The cold sweep as the TrustRoot's `status.lastSweep` reports it.
    pub cold_sweep: Sweep,
    pub warm: Vec<Sweep>,
    pub drift: Drift,
    pub rss_after_cold: Memory,
    /// The operator's memory at the end.
    pub memory: Memory,
    /// The API server's counts at the start and at the end of the baseline window.
    pub baseline: (ApiServer, ApiServer),
    pub phases: Vec<Phase>,
    pub knock_on: Phase,
    pub status: Option<TrustRootStatus>,
    /// How the operator stopped.
    pub stopped: String,
    pub rotation: Option<rotation::Rotation>,
    pub one_pod: churn::OnePod,
    /// CPU per pass of every one-pod run, sorted.
    pub one_pod_runs: Vec<Duration>,
    pub churned: Option<churn::Churn>,
}

pub async fn run(setup: &Setup<'_>, verdicts: watch::Receiver<Verdicts>) -> Result<Measured> {
    let args = setup.args;
    let mut own = OwnRequests::default();
    let baseline_start = start_baseline(setup.client, &mut own).await?;
    let (mut bench, op_start) = Bench::start(setup, own, verdicts).await?;

    let cold = bench.cold_sweep().await?;
    let rss_after_cold = bench.operator.memory();
    let after_cold = bench.snapshot().await?;
    let cold_sweep = bench.last_sweep().await?;
    bench.record("cold", &op_start, &after_cold);
    let warm = bench.warm_sweeps(after_cold).await?;

    let (one_pod, one_pod_runs) = bench.one_pod_changed().await?;
    let churned = if args.churn > 0 {
        Some(bench.churn().await?)
    } else {
        None
    };
    let rotation = if args.rotation {
        Some(bench.rotate_key().await?)
    } else {
        None
    };
    let (drift, after_drift) = bench.remove_key().await?;
    let knock_on = bench.knock_on(&after_drift).await?;

    let memory = bench.operator.memory();
    let status = get_trust_root(setup.client).await?.status;
    let stopped = bench.operator.stop();
    Ok(Measured {
        cold,
        cold_sweep,
        warm,
        drift,
        rss_after_cold,
        memory,
        baseline: (baseline_start, op_start.apiserver),
        phases: bench.phases,
        knock_on,
        status,
        stopped,
        rotation,
        one_pod,
        one_pod_runs,
        churned,
    })
}

/// Opens the baseline window of the API server once the controller-manager has caught up with
/// the Deployments (their status), while nothing but the cluster itself runs; the snapshot
/// before the operator starts, [`BASELINE`] later, closes it.
async fn start_baseline(client: &Client, own: &mut OwnRequests) -> Result<ApiServer> {
    settle(client, own).await?;
    let start = ApiServer::scrape(client, own).await?;
    tokio::time::sleep(BASELINE).await;
    Ok(start)
}

/// The benchmark while the operator runs: the operator, and the windows measured so far.
pub struct Bench<'a> {
    pub setup: &'a Setup<'a>,
    pub operator: OperatorProcess,
    /// Where the operator serves `/metrics`.
    pub metrics: String,
    pub own: OwnRequests,
    pub verdicts: watch::Receiver<Verdicts>,
    pub phases: Vec<Phase>,
}

impl<'a> Bench<'a> {
    /// Starts the operator, right after the snapshot that opens the cold window (returned).
    async fn start(
        setup: &'a Setup<'a>,
        mut own: OwnRequests,
        verdicts: watch::Receiver<Verdicts>,
    ) -> Result<(Self, Snapshot)> {
        let op_start = snapshot(setup.registry, setup.client, "", &mut own, false).await?;
        let mut operator = OperatorProcess::start(
            setup.countersign,
            setup.cluster.kubeconfig_path(),
            &setup.operator_log,
            &setup.args.operator_args,
        )?;
        let metrics = operator.metrics_addr(&setup.operator_log)?;
        let bench = Self {
            setup,
            operator,
            metrics,
            own,
            verdicts,
            phases: Vec::new(),
        };
        Ok((bench, op_start))
    }

    pub async fn snapshot(&mut self) -> Result<Snapshot> {
        let Setup { registry, client, .. } = self.setup;
        snapshot(registry, client, &self.metrics, &mut self.own, true).await
    }

    /// The window `from` → `to`, as the report names it.
    pub fn record(&mut self, name: &str, from: &Snapshot, to: &Snapshot) {
        self.phases.push(Phase::new(name, from, to));
    }

    pub async fn last_sweep(&mut self) -> Result<Sweep> {
        last_sweep(self.setup.client, &mut self.own).await
    }

    /// Polls the operator's metrics until `done` holds, failing after `limit` or if it exits.
    pub async fn wait_metric(
        &self,
        limit: Duration,
        done: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> Result<()> {
        wait_metric(
            &self.metrics,
            limit,
            &self.operator,
            &self.setup.operator_log,
            done,
        )
        .await
    }
}
