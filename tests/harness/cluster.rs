//! A real local Kubernetes control plane for tests and the demo: etcd, kube-apiserver (RBAC on),
//! kube-controller-manager, kube-scheduler and kwok (fake nodes and pod status), each a plain
//! process bound to 127.0.0.1 on an ephemeral port, built by `e2e/peers.sh`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = countersign_tests::cluster::LocalCluster::start().await?;
//! let client = cluster.client();
//! // … create objects, run the controller against `cluster.kubeconfig_path()` …
//! cluster.stop();
//! # Ok(()) }
//! ```
//!
//! Every component logs to `<dir>/<name>.log`; a failed wait names the component and quotes the
//! tail of its log. The API server audits ServiceAccounts' requests to `<dir>/audit.log`
//! ([`LocalCluster::audited_requests`]). Dropping the cluster stops every process (SIGTERM, then SIGKILL) and removes a
//! temporary dir unless `COUNTERSIGN_KEEP_CLUSTER=1`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
pub use nix::sys::signal::Signal;

use crate::peer_path;

mod audit;
mod component;
mod control_plane;
mod kwok;

use audit::AUDIT_LOG;
pub use audit::{AUDIT_POLICY, Audited};
pub(crate) use component::{Component, start_with_retry};
use component::{probe_client, probe_get};
use control_plane::{
    ClientContext, start_apiserver, start_controller_manager, start_etcd, start_scheduler, write_credentials,
};
use kwok::{create_nodes, start_kwok, wait_nodes_ready};

/// Annotation by which kwok recognises the nodes it fakes (`--manage-nodes-with-annotation-selector`).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Pod annotation prefix read by our kwok pod stage: `kwok.countersign.dev/image-id.<container>`
/// becomes that container's `status.containerStatuses[].imageID`, standing in for the digest a
/// kubelet reports after pulling (kwok's own stages never set `imageID`).
pub const IMAGE_ID_ANNOTATION_PREFIX: &str = "kwok.countersign.dev/image-id.";

/// Set to `1` to keep the cluster's temporary dir (logs, etcd data, kubeconfig) after it stops.
pub const KEEP_ENV: &str = "COUNTERSIGN_KEEP_CLUSTER";

/// How long kube-apiserver may take to serve, at start and after a restart.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the controller-manager, the scheduler and kwok may take to report healthy.
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The processes, by the names their logs carry.
const COMPONENTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// What to start. `Default` is one fake node with room for 10,000 pods in a fresh temporary dir.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Where the cluster keeps its state, keys, kubeconfig and logs. `None`: a fresh temporary
    /// dir, removed on stop. `Some`: created if missing, cleared of a previous run's state, and
    /// left in place on stop (its owner decides).
    pub dir: Option<PathBuf>,
    /// How many fake nodes kwok manages.
    pub nodes: usize,
    /// Allocatable pods of each fake node.
    pub pods_per_node: u32,
    /// More kube-apiserver flags (e.g. `--etcd-compaction-interval=10s` for a test of watches
    /// that must relist).
    pub apiserver_args: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            dir: None,
            nodes: 1,
            pods_per_node: 10_000,
            apiserver_args: Vec::new(),
        }
    }
}

/// A running control plane. See the module documentation.
pub struct LocalCluster {
    dir: PathBuf,
    remove_dir: bool,
    /// In start order; stopped in reverse.
    components: Vec<Component>,
    apiserver_url: String,
    admin_token: String,
    kubeconfig: PathBuf,
    kube_config: Option<kube::Config>,
    nodes: Vec<String>,
}

impl LocalCluster {
    /// Starts a cluster with [`ClusterOptions::default`].
    pub async fn start() -> Result<Self> {
        Self::start_with(ClusterOptions::default()).await
    }

    /// Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, creates the
    /// fake nodes and returns once every component is healthy and every node is Ready.
    pub async fn start_with(options: ClusterOptions) -> Result<Self> {
        install_crypto_provider();
        // Resolve every binary first: a missing one fails here, naming e2e/peers.sh, before any
        // process is started.
        let bins = Binaries::find();
        let (dir, remove_dir) = prepare_dir(options.dir.as_deref())?;
        let mut cluster = Self {
            dir,
            remove_dir,
            components: Vec::new(),
            apiserver_url: String::new(),
            admin_token: random_hex(32),
            kubeconfig: PathBuf::new(),
            kube_config: None,
            nodes: Vec::new(),
        };
        // On any error below, dropping `cluster` stops what was started.
        cluster.boot(&bins, &options).await?;
        Ok(cluster)
    }

    async fn boot(&mut self, bins: &Binaries, options: &ClusterOptions) -> Result<()> {
        let started = Instant::now();
        let files = write_credentials(&self.dir, &self.admin_token)?;

        let (etcd, etcd_url) = start_etcd(&bins.etcd, &self.dir).await?;
        self.components.push(etcd);
        let etcd_ready = started.elapsed();

        let apiserver = start_apiserver(
            &bins.apiserver,
            &self.dir,
            &files,
            &etcd_url,
            &self.admin_token,
            &options.apiserver_args,
        )
        .await?;
        self.apiserver_url = apiserver.url.clone();
        self.kubeconfig = apiserver.kubeconfig.clone();
        self.kube_config = Some(apiserver.config.clone());
        self.components.push(apiserver.component);
        let apiserver_ready = started.elapsed();

        // The three clients of the API server start side by side: they only need the API server.
        let ctx = ClientContext {
            dir: &self.dir,
            kubeconfig: &self.kubeconfig,
            files: &files,
        };
        let (kcm, scheduler, kwok) = tokio::join!(
            start_controller_manager(&bins.controller_manager, &ctx),
            start_scheduler(&bins.scheduler, &ctx),
            start_kwok(&bins.kwok, &ctx),
        );
        // Keep whichever started, so that they are stopped even when another one failed.
        let (kcm, scheduler, kwok) = (
            keep(&mut self.components, kcm),
            keep(&mut self.components, scheduler),
            keep(&mut self.components, kwok),
        );
        kcm?;
        scheduler?;
        kwok?;

        self.nodes = create_nodes(&self.client(), options).await?;
        let client = self.client();
        // kwok, pushed last, is the component whose log explains a node that never gets Ready.
        let kwok = self.components.last_mut().context("kwok is running")?;
        wait_nodes_ready(&client, &self.nodes, kwok).await?;
        eprintln!(
            "[cluster] ready in {:.1}s (etcd {:.1}s, kube-apiserver {:.1}s) at {}; dir {}",
            started.elapsed().as_secs_f64(),
            etcd_ready.as_secs_f64(),
            apiserver_ready.as_secs_f64(),
            self.apiserver_url,
            self.dir.display(),
        );
        Ok(())
    }

    /// The admin kubeconfig (token of a `system:masters` user, the API server's CA).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client authenticated as the admin.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("the config was already used to reach the API server")
    }

    /// A client that presents `token` (e.g. a ServiceAccount token from a TokenRequest) instead of
    /// the admin's: what least-privilege RBAC tests need.
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let mut config = self.config();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_owned().into()),
            ..Default::default()
        };
        kube::Client::try_from(config).expect("the config was already used to reach the API server")
    }

    /// The admin's client configuration.
    pub fn config(&self) -> kube::Config {
        self.kube_config.clone().expect("a started cluster has a config")
    }

    /// `https://127.0.0.1:<port>`.
    pub fn apiserver_url(&self) -> &str {
        &self.apiserver_url
    }

    /// The admin's bearer token (user `admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The cluster's dir: state, keys, kubeconfig and one `<component>.log` per process.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The names of the fake nodes kwok manages.
    pub fn node_names(&self) -> &[String] {
        &self.nodes
    }

    /// Every request of a ServiceAccount the API server has answered so far, from its audit log
    /// (see [`AUDIT_POLICY`]): who asked, what, and the status code of the answer. The API
    /// server's own record, so a test learns of a refused request whether or not the client
    /// logged it, and in fields rather than in log text.
    pub fn audited_requests(&self) -> Result<Vec<Audited>> {
        let path = self.dir.join(AUDIT_LOG);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // No ServiceAccount has sent a request yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        // A line still being written has no newline yet: it is read next time.
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| Audited::parse(line).with_context(|| format!("{}: {line}", path.display())))
            .collect()
    }

    /// Ends one component (`etcd`, `kube-apiserver`, …) with `signal` and waits for it to exit:
    /// SIGKILL is a crash, SIGTERM a rolling restart. [`LocalCluster::start_component`] starts
    /// it again.
    pub fn stop_component(&mut self, name: &str, signal: Signal) -> Result<()> {
        self.component(name)?.end(signal);
        Ok(())
    }

    /// Starts a component ended by [`LocalCluster::stop_component`] again, with the same flags, so
    /// on the same ports with the same data and certificates (clients keep their addresses), and
    /// waits until it serves: etcd its `/health`, kube-apiserver its `/readyz`. A port taken
    /// meanwhile by another process makes it exit: then it is started again until it holds it.
    pub async fn start_component(&mut self, name: &str) -> Result<()> {
        let probe = match name {
            "etcd" => {
                let component = self.component(name)?;
                let url = component
                    .args
                    .iter()
                    .find_map(|a| a.strip_prefix("--listen-client-urls="))
                    .context("etcd's client URL")?
                    .to_owned();
                Some((probe_client(&url)?, "/health"))
            }
            "kube-apiserver" => Some((self.client(), "/readyz")),
            _ => None,
        };
        let deadline = Instant::now() + APISERVER_TIMEOUT;
        let component = self.component(name)?;
        loop {
            component.respawn()?;
            let outcome = match &probe {
                Some((client, path)) => {
                    let what = format!("serving again ({path})");
                    let left = deadline.saturating_duration_since(Instant::now());
                    component
                        .wait_until(&what, left, || probe_get(client, path))
                        .await
                }
                None => Ok(()),
            };
            match outcome {
                Err(_) if component.exited().is_some() && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                other => return other,
            }
        }
    }

    /// [`LocalCluster::stop_component`] then [`LocalCluster::start_component`]; returns how long
    /// the component was away.
    pub async fn restart_component(&mut self, name: &str, signal: Signal) -> Result<Duration> {
        let started = Instant::now();
        self.stop_component(name, signal)?;
        self.start_component(name).await?;
        Ok(started.elapsed())
    }

    /// The process id of component `name` (`etcd`, `kube-apiserver`, …), to read its CPU time.
    pub fn pid(&self, name: &str) -> Result<u32> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.child.id())
            .with_context(|| format!("no component {name} (one of {COMPONENTS:?})"))
    }

    fn component(&mut self, name: &str) -> Result<&mut Component> {
        self.components
            .iter_mut()
            .find(|c| c.name == name)
            .with_context(|| format!("no component {name} (one of {COMPONENTS:?})"))
    }

    /// Stops every process and removes a temporary dir: dropping the cluster does it (see `Drop`),
    /// this only says so at the call site.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let started = Instant::now();
        // Clients first, etcd last, so no component logs a storm of errors about a missing peer.
        while let Some(component) = self.components.pop() {
            drop(component);
        }
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        if self.remove_dir && !keep {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                eprintln!("[cluster] could not remove {}: {e}", self.dir.display());
            }
        } else {
            eprintln!("[cluster] kept {}", self.dir.display());
        }
        eprintln!("[cluster] stopped in {:.1}s", started.elapsed().as_secs_f64());
    }
}

/// Picks rustls' process-wide crypto provider. The workspace compiles rustls with both `ring`
/// (kube) and `aws-lc-rs` (reqwest, via oci-client), and then rustls refuses to guess, panicking
/// in the first TLS client built. `ring` is kube's choice; a provider installed earlier stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Moves a started component into `components` and returns the outcome without it.
fn keep(components: &mut Vec<Component>, started: Result<Component>) -> Result<()> {
    components.push(started?);
    Ok(())
}

/// The peer binaries, resolved once.
struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
    kwok: PathBuf,
}

impl Binaries {
    /// Panics naming `e2e/peers.sh` when one is missing (see [`peer_path`]).
    fn find() -> Self {
        Self {
            etcd: peer_path("etcd"),
            apiserver: peer_path("kube-apiserver"),
            controller_manager: peer_path("kube-controller-manager"),
            scheduler: peer_path("kube-scheduler"),
            kwok: peer_path("kwok"),
        }
    }
}

/// Creates (or clears) the cluster dir. Returns it and whether it is ours to remove.
fn prepare_dir(requested: Option<&Path>) -> Result<(PathBuf, bool)> {
    match requested {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            clear_previous_run(dir)?;
            let dir = std::fs::canonicalize(dir).with_context(|| format!("resolve {}", dir.display()))?;
            Ok((dir, false))
        }
        None => {
            let dir = std::env::temp_dir().join(format!(
                "countersign-cluster-{}-{}",
                std::process::id(),
                random_hex(4)
            ));
            std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
            Ok((dir, true))
        }
    }
}

/// Removes what a previous cluster left in `dir`: its etcd data and certificates would resurrect
/// its objects and keys, and its logs would mix with the new ones in error messages.
fn clear_previous_run(dir: &Path) -> Result<()> {
    for stale in ["etcd", "apiserver-certs", "kcm-certs", "scheduler-certs"] {
        let path = dir.join(stale);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("clear {}", path.display()))?;
        }
    }
    let logs = COMPONENTS.iter().map(|c| format!("{c}.log"));
    for name in logs.chain([AUDIT_LOG.to_owned()]) {
        let log = dir.join(name);
        if log.exists() {
            std::fs::remove_file(&log).with_context(|| format!("clear {}", log.display()))?;
        }
    }
    Ok(())
}

/// `bytes` random bytes, hex-encoded.
fn random_hex(bytes: usize) -> String {
    use rand_core::RngCore;
    let mut buf = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Creates an object from JSON; `apiVersion` and `kind` come from the Api's type, so test
/// fixtures stay short.
pub async fn create<K>(api: &kube::Api<K>, mut object: serde_json::Value)
where
    K: kube::Resource<DynamicType = ()>
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    object["apiVersion"] = serde_json::json!(K::api_version(&()));
    object["kind"] = serde_json::json!(K::kind(&()));
    let typed: K = serde_json::from_value(object).expect("a valid object");
    api.create(&kube::api::PostParams::default(), &typed)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", K::kind(&())));
}
