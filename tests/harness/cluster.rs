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

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::{peer_path, ports};

/// Annotation by which kwok recognises the nodes it fakes (`--manage-nodes-with-annotation-selector`).
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Pod annotation prefix read by our kwok pod stage: `kwok.countersign.dev/image-id.<container>`
/// becomes that container's `status.containerStatuses[].imageID`, standing in for the digest a
/// kubelet reports after pulling (kwok's own stages never set `imageID`).
pub const IMAGE_ID_ANNOTATION_PREFIX: &str = "kwok.countersign.dev/image-id.";

/// Set to `1` to keep the cluster's temporary dir (logs, etcd data, kubeconfig) after it stops.
pub const KEEP_ENV: &str = "COUNTERSIGN_KEEP_CLUSTER";

/// The API server's audit log, in the cluster's dir.
const AUDIT_LOG: &str = "audit.log";

/// What the API server audits: the requests of ServiceAccounts (the identities least-privilege
/// tests run as), at `Metadata` level (who, what, the response code; no bodies), once each when
/// answered. The control plane's own components act as the admin and are left out, so a
/// benchmark's thousands of pods cost nothing here.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [\"system:serviceaccounts\"]
- level: None
";

/// One audited request (an `audit.k8s.io/v1` Event, the fields tests need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audited {
    /// `ResponseStarted` (a watch began) or `ResponseComplete`.
    pub stage: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, …
    pub verb: String,
    /// `resource` or `resource/subresource`, e.g. `deployments`, `trustroots/status`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub request_uri: String,
    /// The HTTP status code of the answer (0 if the event has none).
    pub code: u16,
}

impl Audited {
    fn parse(line: &str) -> Result<Self> {
        let event: serde_json::Value = serde_json::from_str(line).context("an audit event")?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let object = &event["objectRef"];
        let resource = match (text(&object["resource"]), text(&object["subresource"])) {
            (Some(r), Some(sub)) => format!("{r}/{sub}"),
            (r, _) => r.unwrap_or_default(),
        };
        Ok(Self {
            stage: text(&event["stage"]).context("stage")?,
            user: text(&event["user"]["username"]).context("user.username")?,
            verb: text(&event["verb"]).context("verb")?,
            resource,
            namespace: text(&object["namespace"]),
            name: text(&object["name"]),
            request_uri: text(&event["requestURI"]).unwrap_or_default(),
            // Every answered request has one; 0 stands for none rather than failing the read.
            code: event["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
        })
    }
}

impl std::fmt::Display for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} ({}) by {}",
            self.code, self.verb, self.resource, self.request_uri, self.user
        )
    }
}

/// Service IPs. Kept apart from the pod range so neither hides the other in a test's output.
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Pod IPs handed out by kwok; a /16 so a benchmark can run tens of thousands of pods.
const POD_CIDR: &str = "10.244.0.1/16";
/// The fake nodes' address. Loopback, so that anything that ever dials a node (logs, exec) stays
/// on this machine and reaches kwok's own server.
const NODE_IP: &str = "127.0.0.1";

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(60);
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long a component may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts at starting one component on fresh ports (see [`start_with_retry`]).
const START_ATTEMPTS: usize = 3;

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

/// Files every component shares: the static token file and the service-account key pair.
struct Credentials {
    token_file: PathBuf,
    sa_private: PathBuf,
    sa_public: PathBuf,
}

/// Writes the admin token file (`token,user,uid,"groups"`) and an ECDSA P-256 service-account
/// key pair (PKCS#8 / SPKI PEM), which kube-apiserver signs and checks ServiceAccount tokens with.
fn write_credentials(dir: &Path, admin_token: &str) -> Result<Credentials> {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let token_file = dir.join("tokens.csv");
    write_private(
        &token_file,
        format!("{admin_token},admin,admin,\"system:masters\"\n").as_bytes(),
    )?;

    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encode service-account key")?;
    let public = key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encode service-account public key")?;
    let sa_private = dir.join("sa.key");
    let sa_public = dir.join("sa.pub");
    write_private(&sa_private, private.as_bytes())?;
    std::fs::write(&sa_public, public).with_context(|| format!("write {}", sa_public.display()))?;
    Ok(Credentials {
        token_file,
        sa_private,
        sa_public,
    })
}

/// Writes a file only its owner may read: it holds a credential.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("write {}", path.display()))
}

/// `bytes` random bytes, hex-encoded.
fn random_hex(bytes: usize) -> String {
    use rand_core::RngCore;
    let mut buf = vec![0u8; bytes];
    rand_core::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A free port on 127.0.0.1 at the time of asking. Another process may take it before the
/// component binds it (these components advertise their ports, so cannot be started on port 0);
/// [`start_with_retry`] covers that race.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr().context("local address")?.port())
}

/// One child process and the file it logs to.
pub(crate) struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
    /// How it was started, to start it again on the same ports ([`LocalCluster::restart`]).
    binary: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl Component {
    /// Starts `binary` with `args`, stdout and stderr appended to `<dir>/<name>.log`.
    pub(crate) fn spawn(name: &'static str, binary: &Path, args: &[String], dir: &Path) -> Result<Self> {
        Self::spawn_with_env(name, binary, args, dir, &[])
    }

    /// [`Component::spawn`] with extra environment variables.
    pub(crate) fn spawn_with_env(
        name: &'static str,
        binary: &Path,
        args: &[String],
        dir: &Path,
        env: &[(&str, &Path)],
    ) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("open {}", log.display()))?;
        let child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            // kwok reads ~/.kwok/kwok.yaml when it exists; a developer's own must not leak in.
            .env("HOME", dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name} ({})", binary.display()))?;
        Ok(Self {
            name,
            child,
            log,
            binary: binary.to_path_buf(),
            args: args.to_vec(),
            dir: dir.to_path_buf(),
        })
    }

    /// Ends the process with `signal` (SIGKILL: a crash; SIGTERM: a rolling restart, killed
    /// after [`STOP_GRACE`]) and waits until it has exited.
    pub(crate) fn end(&mut self, signal: Signal) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()).map(Pid::from_raw) {
            let _ = kill(pid, signal);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the ended process again, with the same arguments (so on the same ports, with the
    /// same data and certificates).
    fn respawn(&mut self) -> Result<()> {
        let mut again = Self::spawn(self.name, &self.binary, &self.args, &self.dir)?;
        // `again` now holds the ended process, which its drop leaves alone.
        std::mem::swap(&mut self.child, &mut again.child);
        Ok(())
    }

    /// The exit status when the process has already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        const LINES: usize = 40;
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    return "(empty)".to_owned();
                }
                lines[lines.len().saturating_sub(LINES)..].join("\n")
            }
            Err(e) => format!("(could not read {}: {e})", self.log.display()),
        }
    }

    /// An error naming this component, what went wrong, and the tail of its log.
    pub(crate) fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{} {what}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail()
        )
    }

    /// The port the process listens on, once it does (see [`ports::wait_listening`]): for
    /// servers started on port 0.
    pub(crate) fn wait_listening(&mut self, within: Duration) -> Result<u16> {
        ports::wait_listening(&mut self.child, within).map_err(|e| self.failure(&e))
    }

    /// Whether the process itself listens on every one of `ports` (see [`ports`]).
    fn holds(&self, ports: &[u16]) -> bool {
        let listening = ports::listening_ports(self.child.id());
        ports.iter().all(|p| listening.contains(p))
    }

    /// Polls `probe` until it succeeds, failing when the process exits or `timeout` passes.
    pub(crate) async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(self.failure(&format!("exited ({status}) before {what}")));
            }
            let last = match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("not {what} after {timeout:?} (last probe: {last})")));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Component {
    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]: components flush and release ports cleanly.
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = i32::try_from(self.child.id()).map(Pid::from_raw);
        if let Ok(pid) = pid
            && kill(pid, Signal::SIGTERM).is_ok()
        {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "[cluster] {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
                self.name
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a component on fresh ports, and again on other fresh ports when it lost a port race.
/// `ports` is how many ports it needs; `spawn` starts it on them; `ready` waits for it and
/// returns what the caller needs to know about it (its URL, say).
///
/// A lost race is read from the process, not from its log (each component words a failed bind
/// its own way): either it exits before it is ready (its bind failed), or a probe passed while
/// the process does not hold its ports, so what answered was whoever took them (another test's
/// etcd, say). A component that exits for any other reason fails every attempt the same way, and
/// the error quotes its log.
pub(crate) async fn start_with_retry<S, R, Fut, T>(
    ports: usize,
    mut spawn: S,
    mut ready: R,
) -> Result<(Component, T)>
where
    S: FnMut(&[u16]) -> Result<Component>,
    R: FnMut(Component, Vec<u16>) -> Fut,
    Fut: Future<Output = (Component, Result<T>)>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let chosen = (0..ports).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let component = spawn(&chosen)?;
        let (mut component, outcome) = ready(component, chosen.clone()).await;
        let lost_race = match &outcome {
            Ok(_) => !component.holds(&chosen),
            Err(_) => component.exited().is_some(),
        };
        if !lost_race {
            return outcome.map(|value| (component, value));
        }
        if attempt == START_ATTEMPTS {
            return Err(match outcome {
                Err(e) => e,
                Ok(_) => component.failure(&format!("does not hold its ports {chosen:?}")),
            });
        }
        eprintln!(
            "[cluster] {} lost a port race on {chosen:?}; retrying on other ports",
            component.name
        );
    }
}

/// A client for a component's own HTTP(S) health endpoint. Components serve a self-signed
/// certificate nobody hands out, and /healthz needs no credentials, hence no CA and no token.
fn probe_client(url: &str) -> Result<kube::Client> {
    let mut config = kube::Config::new(url.parse().with_context(|| format!("parse {url}"))?);
    config.accept_invalid_certs = true;
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).context("build a probe client")
}

/// GET `path` and require a 2xx answer.
async fn probe_get(client: &kube::Client, path: &str) -> Result<()> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .context("build request")?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(anyhow::Error::from)
}

/// etcd on a client and a peer port, with fsync off (test data is disposable).
async fn start_etcd(binary: &Path, dir: &Path) -> Result<(Component, String)> {
    let data = dir.join("etcd");
    start_with_retry(
        2,
        |ports| {
            let client = format!("http://127.0.0.1:{}", ports[0]);
            let peer = format!("http://127.0.0.1:{}", ports[1]);
            let args = vec![
                "--name=default".to_owned(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=default={peer}"),
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ];
            Component::spawn("etcd", binary, &args, dir)
        },
        |component, ports| async move {
            let url = format!("http://127.0.0.1:{}", ports[0]);
            let (component, outcome) = wait_http(component, url.clone(), "/health", ETCD_TIMEOUT).await;
            (component, outcome.map(|()| url))
        },
    )
    .await
}

/// kube-apiserver, its URL, its admin kubeconfig and the matching client configuration.
struct ApiServer {
    component: Component,
    url: String,
    kubeconfig: PathBuf,
    config: kube::Config,
}

/// kube-apiserver with envtest's flags, RBAC authorization and static-token authentication. It
/// generates its own self-signed serving certificate in its cert dir; the kubeconfig trusts that
/// certificate's CA, so clients verify TLS for real.
async fn start_apiserver(
    binary: &Path,
    dir: &Path,
    files: &Credentials,
    etcd_url: &str,
    admin_token: &str,
    extra_args: &[String],
) -> Result<ApiServer> {
    let cert_dir = dir.join("apiserver-certs");
    let kubeconfig = dir.join("kubeconfig");
    let (cert_dir, kubeconfig) = (&cert_dir, &kubeconfig);
    let audit_policy = dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)
        .with_context(|| format!("write {}", audit_policy.display()))?;
    let audit_log = dir.join(AUDIT_LOG);
    let (component, (url, config)) = start_with_retry(
        1,
        |ports| {
            let port = ports[0];
            let args = vec![
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", cert_dir.display()),
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--allow-privileged=true".to_owned(),
                // As envtest: with it on, a pod in a namespace whose `default` ServiceAccount the
                // controller-manager has not created yet is refused, a race in every test.
                "--disable-admission-plugins=ServiceAccount".to_owned(),
                "--authorization-mode=Node,RBAC".to_owned(),
                format!("--token-auth-file={}", files.token_file.display()),
                format!("--service-account-issuer=https://127.0.0.1:{port}"),
                format!("--service-account-key-file={}", files.sa_public.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    files.sa_private.display()
                ),
                "--profiling=false".to_owned(),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                // Each event is written before the response is finished, so a client that got
                // its answer finds the request in the log.
                "--audit-log-mode=blocking".to_owned(),
                // Its lease-based reconciler would publish 127.0.0.1 as the `kubernetes`
                // Service's endpoint, which validation refuses (loopback), every 10 seconds.
                "--endpoint-reconciler-type=none".to_owned(),
            ];
            let args = [args.as_slice(), extra_args].concat();
            Component::spawn("kube-apiserver", binary, &args, dir)
        },
        |mut component, ports| async move {
            let url = format!("https://127.0.0.1:{}", ports[0]);
            let outcome = wait_apiserver(&mut component, &url, cert_dir, kubeconfig, admin_token).await;
            (component, outcome.map(|config| (url, config)))
        },
    )
    .await?;
    Ok(ApiServer {
        component,
        url,
        kubeconfig: kubeconfig.to_path_buf(),
        config,
    })
}

/// Waits for kube-apiserver's certificate, writes the kubeconfig that trusts it, then waits for
/// /readyz (which includes RBAC's bootstrap roles) through that kubeconfig's client.
async fn wait_apiserver(
    component: &mut Component,
    url: &str,
    cert_dir: &Path,
    kubeconfig: &Path,
    admin_token: &str,
) -> Result<kube::Config> {
    let cert = cert_dir.join("apiserver.crt");
    // The certificate appears before the port serves. The file exists (empty) a moment before
    // it is written: wait for a whole PEM bundle, not for the file.
    component
        .wait_until("writing its serving certificate", APISERVER_TIMEOUT, || {
            let pem = std::fs::read_to_string(&cert).unwrap_or_default();
            let outcome = if pem.trim_end().ends_with("-----END CERTIFICATE-----") {
                ca_of(&pem).map(drop)
            } else {
                Err(anyhow!("no certificate in {} yet", cert.display()))
            };
            std::future::ready(outcome)
        })
        .await?;
    let config = write_kubeconfig(kubeconfig, url, &cert, admin_token).await?;
    let client = kube::Client::try_from(config.clone()).context("build the admin client")?;
    component
        .wait_until("ready (/readyz)", APISERVER_TIMEOUT, || {
            probe_get(&client, "/readyz")
        })
        .await?;
    Ok(config)
}

/// Writes the admin kubeconfig and loads it the way any kube client would.
async fn write_kubeconfig(path: &Path, url: &str, cert: &Path, token: &str) -> Result<kube::Config> {
    use base64::Engine;

    let pem = std::fs::read_to_string(cert).with_context(|| format!("read {}", cert.display()))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_of(&pem)?);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: countersign-local
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: countersign-local
  context:
    cluster: countersign-local
    user: admin
current-context: countersign-local
"
    );
    write_private(path, text.as_bytes())?;
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("load {}", path.display()))
}

/// The CA of kube-apiserver's self-signed bundle: the file holds the serving certificate followed
/// by the CA that signed it; a lone certificate is its own CA.
fn ca_of(bundle: &str) -> Result<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = bundle
        .rfind(BEGIN)
        .context("no certificate in the API server's bundle")?;
    Ok(bundle[start..].to_owned())
}

/// What the API server's clients share.
struct ClientContext<'a> {
    dir: &'a Path,
    kubeconfig: &'a Path,
    files: &'a Credentials,
}

/// kube-controller-manager with every default controller, acting as the admin (no per-controller
/// ServiceAccount credentials: fewer moving parts, same controllers), and a high client QPS so a
/// benchmark's thousands of pods are created promptly.
async fn start_controller_manager(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let kubeconfig = ctx.kubeconfig.display().to_string();
    let cert_dir = ctx.dir.join("kcm-certs");
    let ca = ctx.dir.join("ca.crt");
    write_ca_file(ctx.kubeconfig, &ca)?;
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                // Client certificates are not in use, so there is no CA to look up in
                // kube-system/extension-apiserver-authentication (and the lookup logs errors).
                "--authentication-skip-lookup=true".to_owned(),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports[0]),
                format!("--cert-dir={}", cert_dir.display()),
                "--controllers=*".to_owned(),
                "--use-service-account-credentials=false".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    ctx.files.sa_private.display()
                ),
                format!("--root-ca-file={}", ca.display()),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--kube-api-qps=1000".to_owned(),
                "--kube-api-burst=2000".to_owned(),
                "--profiling=false".to_owned(),
            ];
            Component::spawn("kube-controller-manager", binary, &args, ctx.dir)
        },
        wait_healthz,
    )
    .await
    .map(|(component, ())| component)
}

/// The API server's CA as a PEM file (for `--root-ca-file`, published in every namespace's
/// `kube-root-ca.crt` ConfigMap), taken from the kubeconfig.
fn write_ca_file(kubeconfig: &Path, out: &Path) -> Result<()> {
    use base64::Engine;

    let config =
        Kubeconfig::read_from(kubeconfig).with_context(|| format!("read {}", kubeconfig.display()))?;
    let data = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .context("the kubeconfig has no CA")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("decode the CA")?;
    std::fs::write(out, pem).with_context(|| format!("write {}", out.display()))
}

/// kube-scheduler; its client settings come from a config file (the flags for them are
/// deprecated and ignored once a config file is given).
async fn start_scheduler(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let kubeconfig = ctx.kubeconfig.display().to_string();
    let config = ctx.dir.join("scheduler.yaml");
    let text = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
"
    );
    std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    let cert_dir = ctx.dir.join("scheduler-certs");
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--config={}", config.display()),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--authentication-skip-lookup=true".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports[0]),
                format!("--cert-dir={}", cert_dir.display()),
            ];
            Component::spawn("kube-scheduler", binary, &args, ctx.dir)
        },
        wait_healthz,
    )
    .await
    .map(|(component, ())| component)
}

/// Waits until `url` + `path` answers 2xx: the health endpoint every component serves.
async fn wait_http(
    mut component: Component,
    url: String,
    path: &'static str,
    timeout: Duration,
) -> (Component, Result<()>) {
    let outcome = match probe_client(&url) {
        Ok(probe) => {
            let what = format!("healthy ({path})");
            component
                .wait_until(&what, timeout, || probe_get(&probe, path))
                .await
        }
        Err(e) => Err(e),
    };
    (component, outcome)
}

/// Waits for the HTTPS /healthz of kube-controller-manager or kube-scheduler.
async fn wait_healthz(component: Component, ports: Vec<u16>) -> (Component, Result<()>) {
    let url = format!("https://127.0.0.1:{}", ports[0]);
    wait_http(component, url, "/healthz", COMPONENT_TIMEOUT).await
}

/// kwok, faking the nodes annotated `kwok.x-k8s.io/node=fake` and the pods scheduled onto them.
/// kwok alone applies no Stage at all ("no stages found"): kwokctl normally hands it its
/// defaults, so we hand it the same ones, see [`KWOK_STAGES`].
async fn start_kwok(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let config = ctx.dir.join("kwok.yaml");
    std::fs::write(&config, KWOK_STAGES).with_context(|| format!("write {}", config.display()))?;
    let kubeconfig = ctx.kubeconfig.display().to_string();
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", config.display()),
                "--manage-all-nodes=false".to_owned(),
                format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
                format!("--cidr={POD_CIDR}"),
                format!("--node-ip={NODE_IP}"),
                // The port a node advertises as its kubelet's, and kwok's own (plain HTTP) server.
                format!("--node-port={}", ports[0]),
                format!("--server-address=127.0.0.1:{}", ports[0]),
                // kwok renews a Lease per node, as kubelets do, so the node-lifecycle controller
                // never marks a fake node unreachable (and evicts its pods) in a long test.
                "--node-lease-duration-seconds=40".to_owned(),
            ];
            Component::spawn("kwok", binary, &args, ctx.dir)
        },
        |component, ports| {
            // kwok's server is plain HTTP.
            let url = format!("http://127.0.0.1:{}", ports[0]);
            wait_http(component, url, "/healthz", COMPONENT_TIMEOUT)
        },
    )
    .await
    .map(|(component, ())| component)
}

/// Creates the fake nodes: no taints, the annotation kwok selects on, and allocatable resources
/// (kwok's node stage keeps what the node declares).
async fn create_nodes(client: &kube::Client, options: &ClusterOptions) -> Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut names = Vec::with_capacity(options.nodes);
    for index in 0..options.nodes {
        let name = format!("kwok-node-{index}");
        let resources = serde_json::json!({
            "cpu": "1000",
            "memory": "1Ti",
            "pods": options.pods_per_node.to_string(),
        });
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    KWOK_NODE_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": resources, "capacity": resources},
        }))
        .context("build a Node")?;
        api.create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("create node {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// Waits until kwok has made every node Ready (kwok's log is the one that explains a failure).
async fn wait_nodes_ready(client: &kube::Client, names: &[String], kwok: &mut Component) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    kwok.wait_until("making the nodes Ready", NODE_TIMEOUT, || async {
        for name in names {
            let node = api.get(name).await.with_context(|| format!("get node {name}"))?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !ready {
                bail!("node {name} is not Ready");
            }
        }
        Ok(())
    })
    .await
}

/// The Stages kwok runs, as `kwokctl create cluster` configures them for kwok v0.8.0: node
/// initialisation and lease-based heartbeat (`kustomize/stage/node/{fast,heartbeat-with-lease}`)
/// and the fast pod lifecycle (`kustomize/stage/pod/fast`: Pending → Running, Job pods →
/// Succeeded, deletion). One addition, in pod-ready: kwok's own stage never sets
/// `containerStatuses[].imageID`; ours sets it from the pod annotation
/// `kwok.countersign.dev/image-id.<container>` when present, else to the image itself when that
/// is pinned by digest (as a kubelet reports it), else leaves it out like kwok does.
pub const KWOK_STAGES: &str = r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $annotations := or .metadata.annotations dict }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      {{ $imageID := index $annotations (printf "kwok.countersign.dev/image-id.%s" .name) }}
      {{ if and (not $imageID) (contains "@sha256:" .image) }}
      {{ $imageID = .image }}
      {{ end }}
      - image: {{ .image | Quote }}
        {{ with $imageID }}
        imageID: {{ . | Quote }}
        {{ end }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values:
      - 'Job'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      {{ $origin := index $root.status.containerStatuses $index }}
      - image: {{ $item.image | Quote }}
        {{ with $origin.imageID }}
        imageID: {{ . | Quote }}
        {{ end }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"#;

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
