//! Real registries on 127.0.0.1 with ephemeral ports, one process per test.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{peer_path, scratch_dir};

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
    pub fn start(kind: RegistryKind) -> Registry {
        let dir = scratch_dir("registry");
        let port = free_port();
        let mut registry = Registry {
            kind,
            host: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        registry.spawn();
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
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
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

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log file");
        let mut command = match self.kind {
            RegistryKind::Referrers => {
                let mut c = Command::new(peer_path("ggcr-referrers"));
                c.arg(&self.host);
                c
            }
            RegistryKind::NoReferrers => {
                let mut c = Command::new(peer_path("crane"));
                c.args(["registry", "serve", "--address", &self.host]);
                c
            }
            RegistryKind::Htpasswd => {
                let config = write_distribution_config(self.dir.path(), &self.host);
                let mut c = Command::new(peer_path("distribution"));
                c.args(["serve"]).arg(config).env("OTEL_TRACES_EXPORTER", "none");
                c
            }
        };
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?} registry: {e}", self.kind));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!("{:?} registry on {} did not start:\n{log}", self.kind, self.host);
    }

    /// Requests the registry logged (go-containerregistry logs one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
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

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
