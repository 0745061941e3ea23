//! The test harness: finds the real peers that `e2e/peers.sh` built and starts them on 127.0.0.1
//! with ephemeral ports. Nothing here imitates a peer.

pub mod admission;
pub mod bench;
pub mod cluster;
pub mod cosign;
pub mod faults;
pub mod gitea;
pub mod http;
pub mod images;
pub mod monitoring;
pub mod partition;
mod peers;
pub mod ports;
pub mod prometheus;
pub mod registry;
pub mod rekor_v1;
pub mod replica;
pub mod sigstore;

pub use peers::peer_path;
use std::path::{Path, PathBuf};

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Polls `probe` every 100 ms until it succeeds and returns its value; panics after `within`
/// with what it waited for and the probe's last error. A test waits on a condition this way,
/// never on a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}: {e:#}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// A scratch folder removed when dropped (kept when COUNTERSIGN_KEEP_SCRATCH=1, to debug).
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("countersign-{prefix}-"))
        .tempdir()
        .expect("scratch dir");
    if std::env::var_os("COUNTERSIGN_KEEP_SCRATCH").is_some() {
        dir.disable_cleanup(true);
    }
    dir
}

/// The `countersign` binary of this checkout, built once per test process (debug profile).
///
/// Several checkouts may share one `CARGO_TARGET_DIR` (CI's fresh clone beside a developer's
/// worktrees), and each build of any of them replaces `debug/countersign`. So the binary is copied
/// at once to a path of this checkout's own (`countersign-bins/<hash of the checkout's path>/`),
/// and that copy is what tests run: another checkout's build later cannot swap it under them.
///
/// The build must ask for what `cargo test` already built, or it rebuilds most of the tree (minutes
/// on CI's two cores, and then the next `cargo test` rebuilds it back): see `cargo_build_like_tests`.
pub fn countersign_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = cargo_build_like_tests()
                .args(["build", "-q", "--workspace", "--bin", "countersign"])
                .current_dir(repo_root())
                .status()
                .expect("cargo build countersign");
            assert!(status.success(), "building countersign failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo_root().join("target"), PathBuf::from);
            let built = target.join("debug/countersign");
            let checkout = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                repo_root().hash(&mut h);
                format!("{:016x}", h.finish())
            };
            let dir = target.join("countersign-bins").join(checkout);
            std::fs::create_dir_all(&dir).expect("create countersign-bins");
            // Copy, then rename: test processes running at once each see a whole file.
            let partial = dir.join(format!("countersign.{}", std::process::id()));
            std::fs::copy(&built, &partial).expect("copy the countersign binary");
            let own = dir.join("countersign");
            std::fs::rename(&partial, &own).expect("rename the countersign binary");
            own
        })
        .clone()
}

/// A `cargo` command that finds the artifacts `cargo test` built, fresh, so a build from inside a
/// test is a no-op when nothing changed. Two things would otherwise make it a different build:
/// - Features: cargo unifies them over the packages asked for, and `-p countersign` alone leaves
///   out what `countersign-tests` turns on in shared dependencies (`libc/extra_traits` through nix,
///   …), so every crate above them is built a second time. The callers ask for `--workspace`, what
///   `cargo test --workspace` and `-p countersign-tests` both resolve to (neither package has
///   dev-dependencies).
/// - Environment: a test runs with the variables cargo sets for a crate (`CARGO_MANIFEST_DIR`,
///   `CARGO_PKG_NAME`, …), and build scripts that read them (ring's) are rerun when they differ
///   from the last build, taking rustls, kube and countersign with them. They are removed, as in
///   the shell `cargo test` ran from.
fn cargo_build_like_tests() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_a_crate) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether cargo sets the variable `name` for the crate it builds or runs (not configuration
/// such as `CARGO_HOME` or `CARGO_TARGET_DIR`, which the nested build must keep).
fn set_by_cargo_for_a_crate(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    const PREFIXES: [&str; 4] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_", "CARGO_FEATURE_"];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The configuration of an operator run in a test's own process: every address on a port the
/// kernel picks, the Lease in `countersign-system`, nothing optional switched on.
pub fn operator_config(identity: &str) -> countersign::operator::Config {
    use std::time::Duration;
    countersign::operator::Config {
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        lease: countersign::operator::leader::LeaseConfig {
            namespace: bench::LEASE_NAMESPACE.into(),
            name: "countersign-controller".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        },
        registry_credentials: None,
        insecure_registries: Vec::new(),
        concurrency: 8,
        registry_requests: 16,
        gitops: countersign::gitops::Config::default(),
        admission: None,
        policy_reports: false,
    }
}

/// An operator running in the test's own process, as `countersign run` runs it.
pub struct InProcess {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<countersign::operator::Result<()>>,
}

impl InProcess {
    /// Starts `config`, binding its addresses itself.
    pub fn start(client: kube::Client, config: countersign::operator::Config) -> Self {
        Self::spawn(|shutdown| countersign::operator::run(client, config, shutdown))
    }

    /// Starts `config` on `listeners` (bound already, so the caller knows the ports).
    pub fn start_on(
        client: kube::Client,
        config: countersign::operator::Config,
        listeners: countersign::operator::Listeners,
    ) -> Self {
        Self::spawn(|shutdown| countersign::operator::run_on(client, config, listeners, shutdown))
    }

    fn spawn<F>(
        run: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = countersign::operator::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self { stop, task }
    }

    /// Stops it as SIGTERM would, and checks it ended cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops within 30s")
            .expect("the operator task does not panic");
        result.expect("the operator ends without error");
    }
}
