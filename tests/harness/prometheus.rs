//! A real Prometheus (built by `e2e/peers.sh prometheus`) on 127.0.0.1, on a port the kernel
//! picks, scraping given targets every second and evaluating a rules file every second; and its
//! HTTP API (`/api/v1/query`, `/api/v1/alerts`) read as JSON.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{http::http_get, peer_path, ports, scratch_dir};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The job label of the scraped operator.
pub const JOB: &str = "countersign";

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path /metrics) as job [`JOB`], with
    /// `rules` (a rules document) as its only rule file.
    pub fn start(targets: &[String], rules: &Value) -> Result<Self> {
        let dir = scratch_dir("prometheus");
        let rules_file = dir.path().join("rules.json");
        // JSON is YAML: the rules as the test derived them, written without a YAML serializer.
        std::fs::write(&rules_file, serde_json::to_vec_pretty(rules)?)?;
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [rules_file],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        });
        let config_file = dir.path().join("prometheus.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config)?)?;
        let log = dir.path().join("prometheus.log");
        let out = std::fs::File::create(&log)?;
        let mut child = Command::new(peer_path("prometheus"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start prometheus")?;
        let port = match ports::wait_listening(&mut child, Duration::from_secs(60)) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "prometheus {e}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        };
        Ok(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        })
    }

    /// `GET path` of the HTTP API: its `data`, once `status` is `success`.
    pub async fn api(&self, path: &str) -> Result<Value> {
        let (status, body) = http_get(self.addr, path).await?;
        let reply: Value =
            serde_json::from_str(&body).with_context(|| format!("{path}: HTTP {status}: {body}"))?;
        ensure!(reply["status"] == "success", "{path}: {reply}");
        Ok(reply["data"].clone())
    }

    /// An instant query: the samples of its result vector (`[{metric, value: [t, "v"]}]`).
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(promql)))
            .await?;
        ensure!(data["resultType"] == "vector", "not a vector: {data}");
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The active alerts (pending or firing).
    pub async fn alerts(&self) -> Result<Vec<Alert>> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Alert {
                name: a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
                state: a["state"].as_str().unwrap_or_default().to_string(),
                labels: a["labels"].clone(),
            })
            .collect())
    }

    /// The state of alert `name` (`firing`, `pending`), `None` when it is not active.
    pub async fn alert_state(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .alerts()
            .await?
            .into_iter()
            .find(|a| a.name == name)
            .map(|a| a.state))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One active alert as `/api/v1/alerts` lists it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub state: String,
    pub labels: Value,
}

/// `promtool` built by `e2e/peers.sh prometheus`, run on `args` from `dir`: (success, output).
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(peer_path("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_promql() {
        assert_eq!(super::encode("a{b=\"c\"} > 0"), "a%7Bb%3D%22c%22%7D%20%3E%200");
    }
}
