//! One component of the control plane as a child process: started with its log in the cluster's
//! dir, probed until healthy, restarted on the same ports, stopped (SIGTERM, then SIGKILL), and
//! started again on other ports when another process took one of its ports first.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{COMPONENT_TIMEOUT, POLL};
use crate::ports;

/// How long a component may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Attempts at starting one component on fresh ports (see [`start_with_retry`]).
const START_ATTEMPTS: usize = 3;

/// One child process and the file it logs to.
pub(crate) struct Component {
    pub(super) name: &'static str,
    pub(super) child: Child,
    log: PathBuf,
    /// How it was started, to start it again on the same ports ([`LocalCluster::restart`]).
    binary: PathBuf,
    pub(super) args: Vec<String>,
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
    pub(super) fn respawn(&mut self) -> Result<()> {
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
/// `port_count` is how many ports it needs; `spawn` starts it on them; `ready` waits for it and
/// returns what the caller needs to know about it (its URL, say).
///
/// A lost race is read from the process, not from its log (each component words a failed bind
/// its own way): either it exits before it is ready (its bind failed), or a probe passed while
/// the process does not hold its ports, so what answered was whoever took them (another test's
/// etcd, say). A component that exits for any other reason fails every attempt the same way, and
/// the error quotes its log.
pub(crate) async fn start_with_retry<S, R, Fut, T>(
    port_count: usize,
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
        let chosen = (0..port_count)
            .map(|_| ports::free_port().context("bind 127.0.0.1:0"))
            .collect::<Result<Vec<_>>>()?;
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
pub(super) fn probe_client(url: &str) -> Result<kube::Client> {
    let mut config = kube::Config::new(url.parse().with_context(|| format!("parse {url}"))?);
    config.accept_invalid_certs = true;
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).context("build a probe client")
}

/// GET `path` and require a 2xx answer.
pub(super) async fn probe_get(client: &kube::Client, path: &str) -> Result<()> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .context("build request")?;
    client
        .request_text(request)
        .await
        .map(drop)
        .map_err(anyhow::Error::from)
}

/// Waits until `url` + `path` answers 2xx: the health endpoint every component serves.
pub(super) async fn wait_http(
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
pub(super) async fn wait_healthz(component: Component, ports: Vec<u16>) -> (Component, Result<()>) {
    let url = format!("https://127.0.0.1:{}", ports[0]);
    wait_http(component, url, "/healthz", COMPONENT_TIMEOUT).await
}
