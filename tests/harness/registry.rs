//! Real registries on 127.0.0.1 with ephemeral ports, one process per test.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{peer_path, ports, scratch_dir};

/// How long a registry may take to start listening (generous: a busy machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Registry::restart`] keeps trying to get its old port back.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// Which real registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// go-containerregistry's registry with its OCI 1.1 referrers API switched on.
    Referrers,
    /// `crane registry serve`: no referrers API, so the `sha256-<hex>` fallback tag is used.
    NoReferrers,
    /// distribution v3 with htpasswd authentication (no referrers API either); storage on disk,
    /// so it can be stopped and started again with its content.
    Htpasswd,
}

pub const USER: &str = "countersign";
pub const PASSWORD: &str = "s3cret-pa55";

pub struct Registry {
    pub kind: RegistryKind,
    /// `127.0.0.1:<port>`.
    pub host: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Registry {
    /// Starts it on a port the kernel picks (port 0), read back from the process itself: no
    /// other process can take the port between choosing and binding it.
    pub fn start(kind: RegistryKind) -> Registry {
        let mut registry = Registry {
            kind,
            host: String::new(),
            dir: scratch_dir("registry"),
            child: None,
        };
        let mut child = registry.spawn("127.0.0.1:0");
        match ports::wait_listening(&mut child, START_TIMEOUT) {
            Ok(port) => registry.host = format!("127.0.0.1:{port}"),
            Err(e) => panic!("{kind:?} registry {e}:\n{}", registry.log()),
        }
        registry.child = Some(child);
        registry
    }

    /// Stops the process; the address stays reserved for [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (content survives only for `Htpasswd`, which is on disk).
    /// The port is free once it stopped, but another process may bind it meanwhile (an outgoing
    /// connection can get it as its local port): then the registry exits, and it is started
    /// again until it holds its port.
    pub fn restart(&mut self) {
        self.stop();
        let port: u16 = self
            .host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("host is 127.0.0.1:<port>");
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            let mut child = self.spawn(&self.host);
            let outcome = ports::wait_listening(&mut child, START_TIMEOUT);
            match outcome {
                Ok(p) if p == port => {
                    self.child = Some(child);
                    return;
                }
                Ok(p) => panic!("{:?} registry listens on {p}, not {port}", self.kind),
                Err(e) if Instant::now() >= deadline => {
                    panic!("{:?} registry on {} {e}:\n{}", self.kind, self.host, self.log())
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// `127.0.0.1:<port>/<repo>`.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// A docker config.json with this registry's credentials (right or wrong).
    pub fn docker_config(&self, password: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "auths": { &self.host: { "username": USER, "password": password } }
        }))
        .expect("json")
    }

    /// Starts the registry process on `address` (`127.0.0.1:<port>`, port 0 for any), its log
    /// appended to `registry.log`.
    fn spawn(&self, address: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("log file");
        let mut command = match self.kind {
            RegistryKind::Referrers => {
                let mut c = Command::new(peer_path("ggcr-referrers"));
                c.arg(address);
                c
            }
            RegistryKind::NoReferrers => {
                let mut c = Command::new(peer_path("crane"));
                c.args(["registry", "serve", "--address", address]);
                c
            }
            RegistryKind::Htpasswd => {
                let config = write_distribution_config(self.dir.path(), address);
                let mut c = Command::new(peer_path("distribution"));
                c.args(["serve"]).arg(config).env("OTEL_TRACES_EXPORTER", "none");
                c
            }
        };
        command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?} registry: {e}", self.kind))
    }

    /// Requests the registry logged (go-containerregistry logs one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The paths of the requests in the log (go-containerregistry's format: `date time METHOD
    /// path status …`).
    pub fn requests(&self) -> Vec<String> {
        // The registry logs a request once it has answered: give the last line time to land.
        std::thread::sleep(Duration::from_millis(50));
        self.log()
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace().skip(2);
                let method = parts.next()?;
                let path = parts.next()?;
                matches!(method, "GET" | "HEAD" | "PUT" | "POST" | "PATCH").then(|| path.to_string())
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_distribution_config(dir: &Path, host: &str) -> std::path::PathBuf {
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 5).expect("bcrypt");
    std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).expect("htpasswd");
    let config = dir.join("config.yml");
    let storage = dir.join("storage");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http: {{addr: {host}}}\nauth: {{htpasswd: {{realm: countersign-test, path: {}}}}}\n",
            storage.display(),
            htpasswd.display()
        ),
    )
    .expect("config");
    config
}
