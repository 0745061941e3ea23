//! Windows of the benchmark: what is read at each boundary (a [`Snapshot`]), and what happened
//! between two of them (a [`Phase`], a column or row of the report).

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use countersign_tests::{
    bench::{ApiServer, OwnRequests, prometheus_label, scrape_metrics, value},
    registry::Registry,
};
use kube::Client;

/// Everything read at a phase boundary.
pub struct Snapshot {
    log_lines: usize,
    pub operator: HashMap<String, f64>,
    pub apiserver: ApiServer,
}

impl Snapshot {
    pub fn sweeps(&self) -> f64 {
        value(&self.operator, "countersign_sweep_duration_seconds_count")
    }
}

/// The registry log's length, the operator's metrics (when it runs) and the API server's.
pub async fn snapshot(
    registry: &Registry,
    client: &Client,
    metrics: &str,
    own: &mut OwnRequests,
    operator_running: bool,
) -> Result<Snapshot> {
    // The registry log first: it is what the window boundaries must be exact for.
    let log_lines = registry.log().lines().count();
    let operator = if operator_running {
        scrape_metrics(metrics).await?
    } else {
        HashMap::new()
    };
    let apiserver = ApiServer::scrape(client, own).await?;
    Ok(Snapshot {
        log_lines,
        operator,
        apiserver,
    })
}

/// What happened between two snapshots.
pub struct Phase {
    pub name: String,
    /// Its lines of the registry log.
    pub log: (usize, usize),
    /// `countersign_registry_requests_total` deltas by `operation/outcome`.
    pub client_requests: BTreeMap<String, f64>,
    pub apiserver: BTreeMap<String, f64>,
    pub apiserver_own: u64,
    pub apiserver_seconds: f64,
    /// Sweeps the operator finished in the window.
    pub sweeps: f64,
}

impl Phase {
    pub fn new(name: &str, from: &Snapshot, to: &Snapshot) -> Self {
        let mut client_requests = BTreeMap::new();
        for (series, v) in &to.operator {
            let Some(labels) = series.strip_prefix("countersign_registry_requests_total{") else {
                continue;
            };
            let delta = v - from.operator.get(series).copied().unwrap_or(0.0);
            if delta > 0.0 {
                let label = |name: &str| prometheus_label(labels, name);
                client_requests.insert(format!("{} {}", label("operation"), label("outcome")), delta);
            }
        }
        let apiserver = to
            .apiserver
            .by_kind
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v - from.apiserver.by_kind.get(k).copied().unwrap_or(0.0),
                )
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        Self {
            name: name.to_string(),
            log: (from.log_lines, to.log_lines),
            client_requests,
            apiserver,
            apiserver_own: to.apiserver.own - from.apiserver.own,
            apiserver_seconds: (to.apiserver.at - from.apiserver.at).as_secs_f64(),
            sweeps: to.sweeps() - from.sweeps(),
        }
    }
}
