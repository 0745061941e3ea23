//! `countersign run` as a process of its own, as a Deployment runs its replicas: for the tests
//! of leader election, handover and crashes (`kill -9`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ports;

/// How long a replica may take to serve its metrics.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `countersign run` process, its log in a file; killed if still running when dropped.
pub struct Replica {
    pub identity: String,
    pub metrics: SocketAddr,
    log: PathBuf,
    pub child: Child,
}

impl Replica {
    /// Starts `countersign run` with its Lease in `lease_namespace` and its metrics server on a
    /// port the kernel picks (port 0), read back from the process: no other process can take it
    /// between choosing and binding.
    pub fn start(
        bin: &Path,
        kubeconfig: &Path,
        identity: &str,
        dir: &Path,
        lease_namespace: &str,
        extra: &[&str],
    ) -> Self {
        let log = dir.join(format!("{identity}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin)
            .arg("run")
            .args(["--identity", identity])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--leader-election-namespace", lease_namespace])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            // Plain text in the log file (tracing-subscriber honours NO_COLOR).
            .env("NO_COLOR", "1")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let port = tokio::task::block_in_place(|| ports::wait_listening(&mut child, START_TIMEOUT));
        let port = port.unwrap_or_else(|e| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("{identity}: its metrics server {e}:\n{text}")
        });
        Self {
            identity: identity.to_owned(),
            metrics: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM: a graceful shutdown.
    pub fn terminate(&self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
    }

    /// SIGKILL (`kill -9`): a crash, with no chance to release anything; waits for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {limit:?} after SIGTERM:\n{}",
                self.identity,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.identity, self.log());
        }
    }
}
