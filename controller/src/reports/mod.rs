//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, `--policy-reports`): one per namespace, one result
//! per workload, image and TrustRoot, so that tools that already read them (Kyverno's Policy
//! Reporter, the `kubectl get polr` printer columns) show countersign's verdicts as they are.
//!
//! ```text
//! pass findings ─build (pure)─► content per namespace ─compare with the last written─► apply | delete
//! ```
//!
//! The content is built without timestamps and compared with what this process last wrote:
//! a pass that changed nothing writes nothing, however often it runs. Timestamps are stamped on
//! only when a report is written, so they say when the result last changed.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

use crate::operator::{
    CONTROLLER,
    error::Error,
    verdict::{Check, Finding},
    workload::WorkloadRef,
};

/// The report's name in every namespace, and its `policy` and `source`.
pub const NAME: &str = "countersign";
/// Reports written at once.
const WRITE_CONCURRENCY: usize = 8;
/// How long a missing PolicyReport CRD is believed missing before asking again: installing the
/// CRD later is noticed without a 404 (and a warning) every pass.
const CRD_RECHECK: Duration = Duration::from_secs(300);

/// What the reports need of one workload in a pass: its findings (one per image and TrustRoot).
#[derive(Clone, Debug)]
pub struct Entry {
    pub workload: WorkloadRef,
    pub findings: Vec<Finding>,
}

/// The `PolicyReport` kind, namespaced, for [`DynamicObject`] requests: no Rust type is generated
/// for a CRD the project does not own.
pub fn api_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport");
    ApiResource::from_gvk_with_plural(&gvk, "policyreports")
}

/// A finding as a PolicyReport result: `pass`, `fail` or `error`, and a message for people.
///
/// Unsigned and Failed are `fail` whatever the TrustRoot's mode: the report says whether the
/// image verifies, the mode only decides what admission does about it (it is in the TrustRoot,
/// and a `warn` would make an Audit root's unsigned image look half-right).
pub fn result(f: &Finding) -> (&'static str, String) {
    match (&f.check, f.stale) {
        (None, stale) => (
            "error",
            format!(
                "not verified yet: the registry could not be asked ({})",
                stale.unwrap_or("error")
            ),
        ),
        (Some(check), Some(stale)) => (
            "error",
            format!(
                "the registry could not be asked ({stale}); the last answer was: {}",
                describe(check)
            ),
        ),
        (Some(check @ Check::Verified { .. }), None) => ("pass", describe(check)),
        (Some(check), None) => ("fail", describe(check)),
    }
}

fn describe(check: &Check) -> String {
    match check {
        Check::Verified { keys } => format!("verified by {}", keys.join(", ")),
        Check::Unsigned => "no signature".into(),
        Check::Failed { reason, .. } => reason.clone(),
    }
}

/// One report per namespace with governed workloads, without timestamps (see [`stamped`]).
/// Results are sorted (workload, image, TrustRoot), so equal findings give equal content.
pub fn build<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> BTreeMap<String, Value> {
    type Key<'a> = (&'a WorkloadRef, &'a str, &'a str);
    let mut by_namespace: BTreeMap<&str, BTreeMap<Key<'_>, &Finding>> = BTreeMap::new();
    for e in entries {
        for f in &e.findings {
            by_namespace
                .entry(&e.workload.namespace)
                .or_default()
                .insert((&e.workload, &f.image, &f.root), f);
        }
    }
    by_namespace
        .into_iter()
        .map(|(namespace, findings)| {
            let mut summary =
                BTreeMap::from([("pass", 0), ("fail", 0), ("warn", 0), ("error", 0), ("skip", 0)]);
            let results: Vec<Value> = findings
                .into_iter()
                .map(|((w, image, root), f)| {
                    let (outcome, message) = result(f);
                    *summary.entry(outcome).or_default() += 1;
                    let mut properties = BTreeMap::from([("image", image.to_string())]);
                    if let Some(d) = &f.digest {
                        properties.insert("digest", d.to_string());
                    }
                    // What the WorkloadVerdict's `causes` say, for the same filters in other tools.
                    let causes = f.check.as_ref().map(Check::causes).unwrap_or_default();
                    if !causes.is_empty() {
                        properties.insert("causes", causes.join(","));
                    }
                    json!({
                        "policy": NAME,
                        "rule": root,
                        "result": outcome,
                        "source": NAME,
                        "category": "Image signatures",
                        "message": message,
                        "resources": [{
                            "apiVersion": w.kind.api_version(),
                            "kind": w.kind.as_str(),
                            "namespace": w.namespace,
                            "name": w.name,
                            "uid": w.uid,
                        }],
                        "properties": properties,
                    })
                })
                .collect();
            let report = json!({
                "apiVersion": "wgpolicyk8s.io/v1alpha2",
                "kind": "PolicyReport",
                "metadata": {
                    "name": NAME,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": CONTROLLER},
                },
                "summary": summary,
                "results": results,
            });
            (namespace.to_string(), report)
        })
        .collect()
}

/// `content` with every result stamped `now` (`{seconds, nanos}`, as the CRD wants it).
pub fn stamped(content: &Value, now: Timestamp) -> Value {
    let mut report = content.clone();
    if let Some(results) = report["results"].as_array_mut() {
        for r in results {
            r["timestamp"] = json!({"seconds": now.as_second(), "nanos": now.subsec_nanosecond()});
        }
    }
    report
}

/// Writes reports when their content changed, and deletes those of namespaces left with nothing
/// governed. Remembers what it wrote (this process only: after a restart every report is applied
/// once again, which server-side apply makes harmless).
pub struct Writer {
    client: Client,
    /// By namespace: the content (without timestamps) last written.
    written: HashMap<String, Value>,
    /// When the PolicyReport CRD was found missing.
    missing_since: Option<Instant>,
}

enum Outcome {
    Written(String, Value),
    Deleted(String),
    CrdMissing,
    Failed(Error),
}

impl Writer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            written: HashMap::new(),
            missing_since: None,
        }
    }

    /// Brings the cluster's reports to `reports` (from [`build`]). Returns the failed writes
    /// (retried on a later pass); a missing CRD is not one of them.
    pub async fn write(&mut self, reports: BTreeMap<String, Value>, now: Timestamp) -> Vec<Error> {
        if self.missing_since.is_some_and(|t| t.elapsed() < CRD_RECHECK) {
            return Vec::new();
        }
        let emptied: Vec<Op> = self
            .written
            .keys()
            .filter(|ns| !reports.contains_key(*ns))
            .map(|ns| Op::Delete(ns.clone()))
            .collect();
        let changed = reports
            .into_iter()
            .filter(|(ns, content)| self.written.get(ns) != Some(content))
            .map(|(ns, content)| Op::Apply(ns, content));
        let ops: Vec<Op> = changed.chain(emptied).collect();
        self.run(ops, now).await
    }

    async fn run(&mut self, ops: Vec<Op>, now: Timestamp) -> Vec<Error> {
        let client = &self.client;
        let outcomes: Vec<Outcome> = stream::iter(ops)
            .map(|op| async move { op.send(client, now).await })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Written(ns, content) => {
                    if self.missing_since.take().is_some() {
                        tracing::info!("the PolicyReport CRD is installed now: writing reports");
                    }
                    self.written.insert(ns, content);
                }
                Outcome::Deleted(ns) => {
                    self.written.remove(&ns);
                }
                Outcome::CrdMissing => {
                    if self.missing_since.is_none() {
                        tracing::warn!(
                            "--policy-reports is on but the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) \
                             is not installed; asking again every {}s",
                            CRD_RECHECK.as_secs()
                        );
                    }
                    self.missing_since = Some(Instant::now());
                    // Installed again later, every report is written again.
                    self.written.clear();
                }
                Outcome::Failed(e) => errors.push(e),
            }
        }
        errors
    }
}

enum Op {
    Apply(String, Value),
    Delete(String),
}

impl Op {
    async fn send(self, client: &Client, now: Timestamp) -> Outcome {
        let namespace = match &self {
            Self::Apply(ns, _) | Self::Delete(ns) => ns.as_str(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
        match self {
            Self::Apply(namespace, content) => {
                let params = PatchParams::apply(CONTROLLER).force();
                match api
                    .patch(NAME, &params, &Patch::Apply(&stamped(&content, now)))
                    .await
                {
                    Ok(_) => Outcome::Written(namespace, content),
                    Err(e) if crd_missing(&e) => Outcome::CrdMissing,
                    Err(source) => Outcome::Failed(Error::Report { namespace, source }),
                }
            }
            Self::Delete(namespace) => match api.delete(NAME, &DeleteParams::default()).await {
                // Gone already (or the CRD with it): nothing left to empty.
                Ok(_) => Outcome::Deleted(namespace),
                Err(kube::Error::Api(s)) if s.is_not_found() => Outcome::Deleted(namespace),
                Err(source) => Outcome::Failed(Error::Report { namespace, source }),
            },
        }
    }
}

/// A 404 about the resource type itself (no CRD serves it), told apart from one about the
/// namespace (deleted meanwhile): the latter names the kind it did not find in its details.
fn crd_missing(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.is_not_found() && s.details.as_ref().is_none_or(|d| d.kind.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
