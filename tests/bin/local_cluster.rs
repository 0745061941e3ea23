//! `local-cluster up --dir DIR`: runs the real local control plane (see
//! `countersign_tests::cluster`) for the demo and the e2e scripts until SIGINT or SIGTERM.
//!
//! Writes `DIR/kubeconfig` and `DIR/env` (`export KUBECONFIG=…` and friends, for `source`), prints
//! one line `ready: KUBECONFIG=…` on stdout once every component is healthy, and on a signal stops
//! every component before exiting. Component logs stay in `DIR/*.log`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use countersign_tests::cluster::{ClusterOptions, LocalCluster};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    about = "A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane and keep it running until SIGINT or SIGTERM.
    Up {
        /// Where state, kubeconfig, env file and logs go (created if missing; a previous run's
        /// cluster state in it is discarded).
        #[arg(long)]
        dir: PathBuf,
        /// How many fake nodes kwok manages.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// Allocatable pods of each fake node.
        #[arg(long, default_value_t = 10_000)]
        pods_per_node: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let Cmd::Up {
        dir,
        nodes,
        pods_per_node,
    } = Cli::parse().command;
    // Listen before starting, so a signal during the start-up is not lost.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;

    let options = ClusterOptions {
        dir: Some(dir),
        nodes,
        pods_per_node,
        ..ClusterOptions::default()
    };
    let cluster = tokio::select! {
        started = LocalCluster::start_with(options) => started?,
        _ = interrupt.recv() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };
    let env = write_env(&cluster)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ready: KUBECONFIG={}",
        cluster.kubeconfig_path().display()
    )
    .context("write stdout")?;
    stdout.flush().context("flush stdout")?;
    drop(stdout);
    eprintln!(
        "[local-cluster] `source {}` to use it; Ctrl-C stops it",
        env.display()
    );

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("[local-cluster] stopping");
    cluster.stop();
    Ok(())
}

/// Writes `DIR/env`: shell lines naming the cluster for scripts and people.
fn write_env(cluster: &LocalCluster) -> Result<PathBuf> {
    let path = cluster.dir().join("env");
    let text = format!(
        "export KUBECONFIG={}\nexport COUNTERSIGN_APISERVER={}\nexport COUNTERSIGN_CLUSTER_DIR={}\n",
        shell_quote(cluster.kubeconfig_path()),
        cluster.apiserver_url(),
        shell_quote(cluster.dir()),
    );
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Single-quotes a path for sh.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
