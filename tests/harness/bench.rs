//! Pieces the benchmarks (`tests/bin/bench_*.rs`) share: the operator as a release process
//! (metrics address, memory, SIGTERM), its /metrics, the API server's `apiserver_request_total`,
//! and the CRDs installed as a benchmark installs them.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use countersign::crd::TrustRoot;
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::ports;

/// The field manager the benchmarks apply with.
pub const MANAGER: &str = "countersign-bench";
/// Where the operator's Lease (and its Secrets) live.
pub const LEASE_NAMESPACE: &str = "countersign-system";
/// How often progress is polled.
pub const POLL: Duration = Duration::from_millis(100);

pub fn progress(what: &str) {
    eprintln!("[bench] {what}");
}

/// The CRDs (server-side apply, as `kubectl apply --server-side` does) and the Lease namespace.
pub async fn install(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in countersign::crd::all() {
        let name = crd.metadata.name.clone().context("named CRD")?;
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("apply CRD {name}"))?;
    }
    create_namespace(client, LEASE_NAMESPACE).await?;
    let roots: Api<TrustRoot> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while roots.list(&ListParams::default().limit(1)).await.is_err() {
        ensure!(
            Instant::now() < deadline,
            "the TrustRoot API is not served after 30s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("create namespace {name}"))?;
    Ok(())
}

pub struct OperatorProcess {
    pub child: Child,
    pub started: Instant,
}

impl OperatorProcess {
    /// Starts it with its metrics server on a port the kernel picks (port 0; see
    /// [`OperatorProcess::metrics_addr`]), so no other process can take the port first.
    pub fn start(binary: &Path, kubeconfig: &Path, log: &Path, extra: &[String]) -> Result<Self> {
        let log = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,oci_client=error,kube=warn".into());
        let started = Instant::now();
        let child = Command::new(binary)
            .args(["run", "--metrics-addr", "127.0.0.1:0"])
            .args([
                "--leader-election-namespace",
                LEASE_NAMESPACE,
                "--identity",
                "bench",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        Ok(Self { child, started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `127.0.0.1:<port>` of its metrics server, once it listens (read from the process).
    pub fn metrics_addr(&mut self, log: &Path) -> Result<String> {
        let listening =
            tokio::task::block_in_place(|| ports::wait_listening(&mut self.child, Duration::from_secs(300)));
        match listening {
            Ok(port) => Ok(format!("127.0.0.1:{port}")),
            Err(e) => bail!(
                "the operator's metrics server {e}; its log ends with:\n{}",
                tail(log, 30)
            ),
        }
    }

    /// `VmHWM` (peak resident set) and `VmRSS`, in KiB.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            peak_kib: kib("VmHWM:"),
            rss_kib: kib("VmRSS:"),
        }
    }

    /// SIGTERM, as a kubelet stops it; SIGKILL after 20 s. Returns how long it took and how it
    /// ended.
    pub fn stop(mut self) -> String {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let t = Instant::now();
        let pid = Pid::from_raw(i32::try_from(self.pid()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("{status} {:.1}s after SIGTERM", t.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "killed: still running 20s after SIGTERM".into()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub peak_kib: u64,
    pub rss_kib: u64,
}

/// Whether a pid still runs, without owning its `Child`.
pub struct ChildProbe(pub u32);

impl ChildProbe {
    pub fn check(&mut self, log: &Path) -> Result<()> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0)).unwrap_or_default();
        let zombie = status.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
        ensure!(
            !status.is_empty() && !zombie,
            "the operator exited; its log ends with:\n{}",
            tail(log, 30)
        );
        Ok(())
    }
}

/// Polls the operator's metrics until `done` holds.
pub async fn wait_metric(
    metrics: &str,
    limit: Duration,
    operator: &OperatorProcess,
    log: &Path,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut probe = ChildProbe(operator.pid());
    loop {
        if let Ok(m) = scrape_metrics(metrics).await
            && done(&m)
        {
            return Ok(());
        }
        probe.check(log)?;
        ensure!(Instant::now() < deadline, "not within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The operator's /metrics as `series → value` (series as exposed, labels included).
pub async fn scrape_metrics(addr: &str) -> Result<HashMap<String, f64>> {
    let (status, body) = crate::http::http_get(addr.parse()?, "/metrics").await?;
    ensure!(status == 200, "metrics: HTTP {status}");
    Ok(parse_exposition(&body))
}

pub fn parse_exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            // `name{labels} value [timestamp]`; label values here never hold "} ".
            let (series, rest) = match l.find("} ") {
                Some(i) => (&l[..=i], &l[i + 2..]),
                None => l.split_once(' ')?,
            };
            Some((series.to_string(), rest.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

pub fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    metrics.get(series).copied().unwrap_or(0.0)
}

/// Requests this benchmark itself sends to the API server while the operator runs, subtracted
/// from the API server's counts.
#[derive(Default)]
pub struct OwnRequests(pub u64);

impl OwnRequests {
    pub fn count(&mut self, n: u64) {
        self.0 += n;
    }
}

/// `apiserver_request_total` summed by `VERB resource[/subresource]`, and when it was read.
#[derive(Clone)]
pub struct ApiServer {
    pub at: Instant,
    pub by_kind: BTreeMap<String, f64>,
    /// This benchmark's own requests until then.
    pub own: u64,
}

impl ApiServer {
    pub async fn scrape(client: &Client, own: &mut OwnRequests) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = client
            .request_text(request)
            .await
            .context("API server /metrics")?;
        own.count(1);
        let mut by_kind = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
            let Some((labels, v)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = v.parse::<f64>() else { continue };
            let label = |name: &str| prometheus_label(labels, name);
            let (resource, sub) = (label("resource"), label("subresource"));
            let what = match (resource.as_str(), sub.as_str()) {
                ("", _) => "(non-resource)".to_string(),
                (r, "") => r.to_string(),
                (r, s) => format!("{r}/{s}"),
            };
            // Failures (a 409 conflict, say) are told apart from successes.
            let code = label("code");
            let code = if code.starts_with('2') {
                String::new()
            } else {
                format!(" → {code}")
            };
            *by_kind
                .entry(format!("{} {what}{code}", label("verb")))
                .or_insert(0.0) += v;
        }
        Ok(Self {
            at: Instant::now(),
            by_kind,
            own: own.0,
        })
    }

    pub fn total(&self) -> f64 {
        self.by_kind.values().sum()
    }
}

/// Waits (up to 3 min) until the API server serves fewer than 3 requests a second.
pub async fn settle(client: &Client, own: &mut OwnRequests) -> Result<()> {
    settle_within(client, own, Duration::from_secs(180)).await
}

/// [`settle`], waiting at most `limit`.
pub async fn settle_within(client: &Client, own: &mut OwnRequests, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let a = ApiServer::scrape(client, own).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b = ApiServer::scrape(client, own).await?;
        let rate = (b.total() - a.total() - (b.own - a.own) as f64) / (b.at - a.at).as_secs_f64();
        if rate < 3.0 || started.elapsed() > limit {
            progress(&format!(
                "API server at {rate:.1} requests/s after {:.0}s of settling",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
    }
}

/// The value of label `name` in a Prometheus series' label set (`a="x",b="y"`).
pub fn prometheus_label(labels: &str, name: &str) -> String {
    labels
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("")
        .to_string()
}

/// CPU time of every thread of `pid` so far, from `/proc/<pid>/task/*/schedstat` (nanoseconds
/// on CPU; threads that have exited are not counted, so measure long-lived processes).
pub fn process_cpu(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}
