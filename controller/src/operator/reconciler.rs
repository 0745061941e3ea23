//! The leader's loop: passes over every running workload, each a pipeline of small steps.
//!
//! ```text
//! trust roots ─compile─► roots ─┐
//! index ─workloads─► workloads ─┴─plan─► planned ─lookup (I/O)─► answers
//!        ─findings + derive (pure)─► recorded state ─diff (pure)─► patches, events, statuses (I/O)
//! ```
//!
//! A pass runs when something that can change a verdict changed (a pod, an owner, a namespace's
//! labels, a TrustRoot's spec; debounced), when a TrustRoot's re-verification interval is up,
//! and shortly after a failed write. Cached signatures make a pass cheap: a TrustRoot change
//! (a key removed) is re-evaluated in memory, with no registry request at all; only a due sweep
//! re-checks every governed digest (one small request per format, nothing downloaded when
//! nothing changed).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Client, runtime::events::Recorder};
use serde_json::Value;

mod rotations;
mod scope;

use super::{
    annotations, attestations,
    clients::{RegistryPool, Tag},
    error::Error,
    events::{self, Announcement},
    http::Health,
    index::Index,
    lookup::{self, Fetched},
    metrics::Metrics,
    objects::ObjectCache,
    plan::{self, Evaluation, Planned, SignatureKey, TagKey},
    status::{self, Observed},
    tlog,
    trust::{CompiledRoot, RootReport, TrustCompiler},
    verdict::{self, Check, Recorded},
    workload::WorkloadRef,
    world::{self, Workload},
    writes,
};
use crate::{
    crd::{KeyRotationStatus, KeyStatus, SweepSummary, TrustRootStatus, WorkloadCounts},
    reports,
    rotation::Acceptance,
    verify::{Outcome, SignatureCheck, Signatures, check_all, decide},
};

/// Changes arriving in a burst (a Deployment's pods) are taken in one pass.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A failed write is retried after this long.
const RETRY: Duration = Duration::from_secs(5);
/// Patches and events sent at once.
const WRITE_CONCURRENCY: usize = 16;
/// How long unused Secrets and ConfigMaps stay cached.
const OBJECT_KEEP: Duration = Duration::from_secs(600);
/// While a rotation waits on re-signing, how often the digests not yet signed by its new key
/// are re-checked (one small request each; nothing downloaded unless they changed), so that
/// completion follows the last re-sign within seconds rather than a `reverifyInterval`.
const STRAGGLER_RECHECK: Duration = Duration::from_secs(2);
/// A window edge wakes the pass this much after it, so that the clock reads past it.
const EDGE_SLACK: Duration = Duration::from_millis(20);

/// What the loop needs from the outside.
pub struct Parts {
    pub client: Client,
    pub index: Arc<Index>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// This replica's identity, the `reportingInstance` of its Events.
    pub instance: String,
    pub pool: Arc<RegistryPool>,
    pub objects: ObjectCache,
    /// Digests verified at once.
    pub concurrency: usize,
    /// Whether to write PolicyReports (`--policy-reports`).
    pub policy_reports: bool,
}

/// The signatures of a digest checked against a root's declared keys, kept while both stay the
/// same: which keys are accepted (rotations) is decided on top, without verifying again.
struct Memo {
    signatures: Arc<Signatures>,
    version: u64,
    checks: Arc<[SignatureCheck]>,
}

pub struct Reconciler {
    parts: Parts,
    compiler: TrustCompiler,
    /// By workload uid: the state last written (or read back) — what events compare against,
    /// so that a watch that lags behind our own patch cannot make us announce twice.
    known: HashMap<String, Recorded>,
    /// By TrustRoot name: when its last sweep started, and what it found.
    swept_at: HashMap<String, Instant>,
    sweeps: HashMap<String, SweepSummary>,
    /// By TrustRoot name: the status last applied.
    statuses: HashMap<String, TrustRootStatus>,
    memo: HashMap<(SignatureKey, String), Memo>,
    /// By TrustRoot name: what rotations let it accept, as of this pass.
    acceptance: HashMap<String, Acceptance>,
    /// By KeyRotation name: the status last applied.
    rotation_statuses: HashMap<String, KeyRotationStatus>,
    /// Signature lookups re-checked every [`STRAGGLER_RECHECK`] while a rotation waits on them.
    rechecks: HashSet<SignatureKey>,
    /// The next window edge of any rotation.
    next_edge: Option<Instant>,
    retry: bool,
    /// `Some` with `--policy-reports`: what was last written, per namespace.
    reports: Option<reports::Writer>,
    /// Required attestations by TrustRoot, predicate type and state (metrics).
    attested: attestations::Tally,
    /// Verified digests by TrustRoot and whether their log entries were (M7).
    logged: tlog::Tally,
    /// What each running workload contributed when last assessed (see `scope`).
    contributions: scope::Contributions,
    /// The active trust roots and their compiled versions at the last pass; `None` before the
    /// first pass that looked at every workload.
    versions: Option<Vec<(String, u64)>>,
}

/// A workload whose verdict, events or leftover annotations must be written.
struct Change {
    workload: WorkloadRef,
    /// Whether its WorkloadVerdict must be written (`next`), or deleted when `next` is `None`.
    record: bool,
    /// Removes the verdict annotations an earlier version wrote on the workload.
    legacy: Option<Value>,
    announcements: Vec<Announcement>,
    /// The state recorded before (what the announcements' names are derived from).
    previous: Option<Recorded>,
    /// The state once written; `None` when the verdict is removed.
    next: Option<Recorded>,
}

impl Reconciler {
    pub fn new(parts: Parts) -> Self {
        Self {
            compiler: TrustCompiler::default(),
            known: HashMap::new(),
            swept_at: HashMap::new(),
            sweeps: HashMap::new(),
            statuses: HashMap::new(),
            memo: HashMap::new(),
            acceptance: HashMap::new(),
            rotation_statuses: HashMap::new(),
            rechecks: HashSet::new(),
            next_edge: None,
            retry: false,
            attested: attestations::Tally::default(),
            logged: tlog::Tally::default(),
            contributions: scope::Contributions::default(),
            versions: None,
            reports: parts
                .policy_reports
                .then(|| reports::Writer::new(parts.client.clone())),
            parts,
        }
    }

    /// Runs passes until dropped. `health` turns ready after the first one.
    pub async fn run(mut self, health: Health) {
        loop {
            self.pass().await;
            health.set_ready(true);
            let wake = self.next_wake();
            tokio::select! {
                () = self.parts.index.changes.notified() => tokio::time::sleep(DEBOUNCE).await,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let sweeps = self
            .compiler
            .active()
            .filter_map(|r| self.swept_at.get(&r.name).map(|t| *t + r.interval));
        let retry = self.retry.then(|| now + RETRY);
        let recheck = (!self.rechecks.is_empty()).then(|| now + STRAGGLER_RECHECK);
        sweeps
            .chain(retry)
            .chain(recheck)
            .chain(self.next_edge)
            .min()
            .unwrap_or(now + Duration::from_secs(3600))
    }

    /// One pass: over every running workload, or over those of the namespaces where something
    /// changed when nothing else can have changed a verdict (see `scope`).
    pub async fn pass(&mut self) {
        let started = Instant::now();
        let changed = self.parts.index.take_changed();
        let objects = self.parts.index.trust_roots();
        let reports = self.compiler.compile(&objects, &self.parts.objects).await;
        let roots: Vec<Arc<CompiledRoot>> = reports.iter().filter_map(|r| r.active.clone()).collect();
        let due: HashSet<String> = roots
            .iter()
            .filter(|r| {
                self.swept_at
                    .get(&r.name)
                    .is_none_or(|t| started >= *t + r.interval)
            })
            .map(|r| r.name.clone())
            .collect();
        let versions: Vec<(String, u64)> = roots.iter().map(|r| (r.name.clone(), r.version)).collect();
        let reasons = scope::Reasons {
            first: self.versions.is_none(),
            sweep_due: !due.is_empty(),
            roots_changed: self.versions.as_ref() != Some(&versions),
            rotation_live: self.rotation_live(),
            retry: std::mem::take(&mut self.retry),
        };
        let index = &self.parts.index;
        let scope = scope::decide(reasons, changed).resolve(|ns, name| world::owners(index, ns, name));
        // A due sweep re-checks every digest; otherwise only answers older than the interval.
        let max_age = |r: &CompiledRoot| {
            if due.contains(&r.name) {
                Duration::ZERO
            } else {
                r.interval
            }
        };
        let pool = &self.parts.pool;
        let workloads = world::workloads(index, |ns| scope.reaches(ns), |ns, name| scope.covers(ns, name));
        let planned = plan::plan(workloads, &roots, |ns, secrets| pool.key(ns, secrets));
        let (tags, signatures) = self.lookup(&planned, max_age, &scope).await;
        let now = Timestamp::now();
        let (rotations, keys) = self.rotations(&reports, &planned, &tags, &signatures, now);
        let changes = self.assess(&planned, &roots, &tags, &signatures, &scope, now);
        let counts = self.contributions.counts();
        let by_root = roots
            .iter()
            .map(|r| (r.name.as_str(), counts.get(&r.name).copied().unwrap_or_default()));
        self.parts.metrics.set_trust_root_workloads(by_root);
        self.write(changes).await;
        self.write_reports(now).await;
        self.finish_sweeps(&due, &planned, &tags, started, now);
        self.write_statuses(&reports, &counts, keys, now).await;
        self.write_rotations(&rotations, now).await;
        self.forget(&scope, &signatures);
        self.versions = Some(versions);
        if !due.is_empty() {
            self.parts
                .metrics
                .sweep_finished(started.elapsed(), signatures.len());
        }
        let elapsed = started.elapsed();
        self.parts
            .metrics
            .pass_finished(scope.name(), elapsed, planned.len());
        tracing::debug!(
            scope = scope.name(),
            workloads = planned.len(),
            digests = signatures.len(),
            elapsed_ms = started.elapsed().as_millis(),
            due = due.len(),
            "pass finished"
        );
    }

    /// Whether a rotation is live: its tally and stragglers need every workload.
    fn rotation_live(&self) -> bool {
        !self.rechecks.is_empty()
            || self.next_edge.is_some()
            || self
                .parts
                .index
                .key_rotations()
                .iter()
                .any(|r| crate::rotation::is_live(r))
    }

    async fn lookup(
        &self,
        planned: &[Planned],
        max_age: impl Fn(&CompiledRoot) -> Duration + Copy,
        scope: &scope::Scope,
    ) -> (HashMap<TagKey, Tag>, HashMap<SignatureKey, Fetched>) {
        let keys = planned
            .iter()
            .filter(|p| !p.images.is_empty())
            .map(|p| p.credentials.clone())
            .collect();
        let verifiers = lookup::verifiers(keys, &self.parts.pool, &self.parts.objects).await;
        let n = self.parts.concurrency;
        let tags = lookup::tags(plan::tag_requests(planned, max_age), &verifiers, n).await;
        let mut requests = plan::signature_requests(planned, &tags, max_age);
        for (key, (_, age)) in requests.iter_mut() {
            if self.rechecks.contains(key) {
                *age = (*age).min(STRAGGLER_RECHECK);
            }
        }
        let attested = plan::attestation_keys(planned, &tags);
        let signatures = lookup::signatures(requests, &attested, &verifiers, n).await;
        // Only a pass that saw every workload knows which answers nobody needs any more.
        if scope.is_everything() {
            lookup::prune(&verifiers, &tags, &signatures);
            let used = verifiers.into_keys().collect();
            self.parts.pool.retain(lookup::RECENT, &used);
        }
        (tags, signatures)
    }

    /// The pure heart of a pass: findings → recorded state → what to write; what each workload
    /// contributes to the counts is kept in `contributions`.
    fn assess(
        &mut self,
        planned: &[Planned],
        roots: &[Arc<CompiledRoot>],
        tags: &HashMap<TagKey, Tag>,
        signatures: &HashMap<SignatureKey, Fetched>,
        scope: &scope::Scope,
        now: Timestamp,
    ) -> Vec<Change> {
        // To the millisecond (`since`, `changed`): two transitions of a workload within one
        // second (a TrustRoot flapping) must differ, as their Events' names derive from them.
        let since = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        self.contributions.begin(scope);
        self.attested.begin(scope.is_everything());
        self.logged.begin(scope.is_everything());
        let mut changes = Vec::new();
        for p in planned {
            let w = &p.workload;
            let mut contribution = scope::Contribution {
                namespace: w.workload.namespace.clone(),
                name: w.workload.name.clone(),
                counts: Vec::new(),
                bucket: None,
                entry: None,
            };
            if p.images.is_empty() {
                changes.extend(removal(w));
                self.contributions.record(w.workload.uid.clone(), contribution);
                continue;
            }
            let previous = self
                .known
                .get(&w.workload.uid)
                .or(w.record.as_ref())
                .cloned()
                .or_else(|| annotations::decode(&w.annotations));
            let (findings, checks) =
                plan::findings(p, tags, |key, root| self.evaluate(key, root, signatures));
            let mut counts = HashMap::new();
            plan::count(&findings, &mut counts);
            contribution.counts = counts.into_iter().collect();
            let next = verdict::derive(&findings, &checks, previous.as_ref(), &since);
            contribution.bucket = Some(bucket(&next));
            if self.reports.is_some() {
                contribution.entry = Some(reports::Entry {
                    workload: w.workload.clone(),
                    findings,
                });
            }
            self.contributions.record(w.workload.uid.clone(), contribution);
            match change(w, previous.as_ref(), next, |k| {
                refusal(roots, &self.acceptance, k)
            }) {
                Next::Write(change) => changes.push(*change),
                Next::Unchanged(unchanged) => {
                    self.known.insert(w.workload.uid.clone(), unchanged);
                }
            }
        }
        let totals = self.contributions.by_verdict();
        self.parts.metrics.set_workloads_by_verdict(&totals);
        let attested = self.attested.coverage(roots.iter().map(|r| r.as_ref()));
        self.parts.metrics.set_trust_root_attestations(&attested);
        let logged = self.logged.coverage(roots.iter().map(|r| r.as_ref()));
        self.parts.metrics.set_trust_root_tlog(&logged);
        changes
    }

    /// After the verdicts: the reports are a copy of the verdicts for other tools, so a
    /// failure here is retried like any write but never holds the verdicts back.
    async fn write_reports(&mut self, now: Timestamp) {
        let Some(writer) = &mut self.reports else {
            return;
        };
        let built = reports::build(self.contributions.entries());
        for e in writer.write(built, now).await {
            tracing::warn!(error = %e, "PolicyReport not written; retrying soon");
            self.parts.metrics.reconcile_error(e.category());
            self.retry = true;
        }
    }

    /// A digest's signatures under a root's keys as accepted now. The signatures are verified
    /// again only when they or the root's declared keys changed.
    fn evaluate(
        &mut self,
        key: &SignatureKey,
        root: &CompiledRoot,
        signatures: &HashMap<SignatureKey, Fetched>,
    ) -> Evaluation {
        let Some(fetched) = signatures.get(key) else {
            return (None, Some("error"));
        };
        let checks = self.checks(key, root, fetched);
        let acceptance = self.acceptance.get(&root.name);
        let refusal = |k: &str| acceptance.and_then(|a| a.refusal(k)).map(str::to_string);
        let outcome = decide(&checks, &fetched.signatures.fetched, root.keys.threshold, refusal);
        let verified = matches!(outcome, Outcome::Verified { .. });
        let state = verified.then(|| tlog::state(&checks, |k| refusal(k).is_none()));
        self.logged.record(key, &root.name, state);
        let signed = to_evaluation(outcome, &fetched.signatures);
        let (evaluation, attested) = attestations::apply(key, root, fetched, signed, refusal);
        self.attested.add(key, root, &attested);
        evaluation
    }

    /// The declared keys with a valid signature on a digest; `None` without a current answer.
    fn signers(
        &mut self,
        key: &SignatureKey,
        root: &CompiledRoot,
        signatures: &HashMap<SignatureKey, Fetched>,
    ) -> Option<BTreeSet<String>> {
        let fetched = signatures.get(key).filter(|f| !f.signatures.is_stale())?;
        let checks = self.checks(key, root, fetched);
        Some(checks.iter().filter_map(|c| c.key.clone()).collect())
    }

    fn checks(
        &mut self,
        key: &SignatureKey,
        root: &CompiledRoot,
        fetched: &Fetched,
    ) -> Arc<[SignatureCheck]> {
        let memo_key = (key.clone(), root.name.clone());
        if let Some(m) = self.memo.get(&memo_key)
            && Arc::ptr_eq(&m.signatures, &fetched.signatures)
            && m.version == root.version
        {
            return m.checks.clone();
        }
        let started = Instant::now();
        let checks: Arc<[SignatureCheck]> = check_all(&key.2, &fetched.signatures.fetched, &root.keys).into();
        let outcome = decide(&checks, &fetched.signatures.fetched, root.keys.threshold, |_| {
            None
        });
        let elapsed = fetched.elapsed + started.elapsed();
        self.parts.metrics.observe_verification(outcome.name(), elapsed);
        self.memo.insert(
            memo_key,
            Memo {
                signatures: fetched.signatures.clone(),
                version: root.version,
                checks: checks.clone(),
            },
        );
        checks
    }

    async fn write(&mut self, changes: Vec<Change>) {
        let parts = &self.parts;
        let results: Vec<(Change, Result<(), Error>)> = stream::iter(changes)
            .map(|change| async move {
                let result = write_one(parts, &change).await;
                (change, result)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (change, result) in results {
            match (result, change.next) {
                (Ok(()), Some(next)) => {
                    self.known.insert(change.workload.uid, next);
                }
                (Ok(()), None) => {
                    self.known.remove(&change.workload.uid);
                }
                (Err(e), _) => {
                    tracing::warn!(error = %e, "write failed; retrying soon");
                    self.parts.metrics.reconcile_error(e.category());
                    self.retry = true;
                }
            }
        }
    }

    fn finish_sweeps(
        &mut self,
        due: &HashSet<String>,
        planned: &[Planned],
        tags: &HashMap<TagKey, Tag>,
        started: Instant,
        now: Timestamp,
    ) {
        let digests = plan::digests_per_root(planned, tags);
        for name in due {
            self.swept_at.insert(name.clone(), started);
            let count = digests.get(name).copied().unwrap_or_default();
            let summary = SweepSummary {
                finished_at: Time(now),
                digests: i32::try_from(count).unwrap_or(i32::MAX),
                duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            };
            self.sweeps.insert(name.clone(), summary);
        }
    }

    async fn write_statuses(
        &mut self,
        reports: &[RootReport],
        counts: &HashMap<String, WorkloadCounts>,
        mut keys: HashMap<String, Vec<KeyStatus>>,
        now: Timestamp,
    ) {
        for report in reports.iter().filter(|r| !r.name.is_empty()) {
            let on_object = report.root.as_ref().and_then(|r| r.status.as_ref());
            let observed = Observed {
                counts: counts.get(&report.name).copied().unwrap_or_default(),
                last_sweep: self
                    .sweeps
                    .get(&report.name)
                    .cloned()
                    .or_else(|| on_object.and_then(|s| s.last_sweep.clone())),
                keys: keys.remove(&report.name),
            };
            let previous = self.statuses.get(&report.name).or(on_object);
            let status = status::build(report, &observed, previous, now);
            if previous == Some(&status) {
                self.statuses.insert(report.name.clone(), status);
                continue;
            }
            match status::apply(&self.parts.client, &report.name, &status).await {
                Ok(()) => {
                    self.statuses.insert(report.name.clone(), status);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status update failed; retrying soon");
                    self.parts.metrics.reconcile_error(e.category());
                    self.retry = true;
                }
            }
        }
        let present: HashSet<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        self.statuses.retain(|name, _| present.contains(name.as_str()));
        self.sweeps.retain(|name, _| present.contains(name.as_str()));
        self.swept_at.retain(|name, _| present.contains(name.as_str()));
    }

    /// Keeps memory to what runs: state of workloads gone, evaluations of digests gone (known
    /// only after a pass that saw every workload).
    fn forget(&mut self, scope: &scope::Scope, signatures: &HashMap<SignatureKey, Fetched>) {
        let contributions = &self.contributions;
        self.known.retain(|uid, _| contributions.contains(uid));
        if scope.is_everything() {
            self.memo.retain(|(key, _), _| signatures.contains_key(key));
        }
        self.parts.objects.prune(OBJECT_KEEP);
    }
}

/// Announces, then records. An Event published again is refused as a duplicate (its name is
/// the transition's, see [`events::announce`]), so a failure anywhere, or a leader killed
/// between the two, is retried from the record as it is without losing or repeating an Event.
/// (Recording first lost the Event of a leader killed in between: issue 11's fault campaign,
/// `tests/faults.rs`.) An earlier version's annotations go last, once the record holds what they
/// said.
async fn write_one(parts: &Parts, change: &Change) -> Result<(), Error> {
    let w = &change.workload;
    for a in &change.announcements {
        let previous = change.previous.as_ref();
        events::announce(&parts.client, &parts.instance, w, previous, a).await?;
        parts.metrics.event_emitted(a.reason);
    }
    if change.record {
        let stored = match &change.next {
            Some(next) => writes::record(&parts.client, w, next).await?,
            None => writes::unrecord(&parts.client, w).await.map(|()| None)?,
        };
        writes::remember_record(&parts.index, w, stored);
    }
    if let Some(patch) = &change.legacy {
        let now = writes::annotate(&parts.client, w, patch).await?;
        writes::remember(&parts.index, w, now);
    }
    if !change.announcements.is_empty() || change.record {
        tracing::info!(
            workload = %change.workload,
            verdict = change.next.as_ref().and_then(|n| n.verdict).map_or("-", |v| v.as_str()),
            events = ?change.announcements.iter().map(|a| a.reason).collect::<Vec<_>>(),
            "recorded"
        );
    }
    Ok(())
}

/// Either something to write, or the state to remember as it is.
enum Next {
    Write(Box<Change>),
    Unchanged(Recorded),
}

/// What to write for `w` going from `previous` to `next`: its record when it differs from the one
/// watched, the Events of the transition, and the removal of an earlier version's annotations.
fn change(
    w: &Workload,
    previous: Option<&Recorded>,
    next: Recorded,
    refusal: impl Fn(&str) -> Option<String>,
) -> Next {
    let announcements = events::announcements(previous, &next, refusal);
    let record = w.record.as_ref() != Some(&next);
    let legacy = annotations::merge_patch(&w.annotations, &BTreeMap::new());
    if !record && legacy.is_none() && announcements.is_empty() {
        return Next::Unchanged(next);
    }
    Next::Write(Box::new(Change {
        workload: w.workload.clone(),
        record,
        legacy,
        announcements,
        previous: previous.cloned(),
        next: Some(next),
    }))
}

/// A workload no TrustRoot governs any more loses its verdict, silently.
fn removal(w: &Workload) -> Option<Change> {
    let record = w.record.is_some();
    let legacy = annotations::merge_patch(&w.annotations, &BTreeMap::new());
    (record || legacy.is_some()).then(|| Change {
        workload: w.workload.clone(),
        record,
        legacy,
        announcements: Vec::new(),
        previous: None,
        next: None,
    })
}

fn to_evaluation(outcome: Outcome, signatures: &Signatures) -> Evaluation {
    let stale = signatures.error.as_ref().map(|e| e.category());
    match outcome {
        Outcome::Verified { keys } => (Some(Check::Verified { keys }), stale),
        Outcome::Unsigned => (Some(Check::Unsigned), stale),
        Outcome::Invalid { reason, causes } => {
            let causes = causes.into_iter().map(str::to_string).collect();
            (Some(Check::Failed { reason, causes }), stale)
        }
        Outcome::Error { error, .. } => (None, Some(stale.unwrap_or(error.category()))),
    }
}

/// Why `root/key` is not accepted by that root now (`None`: it is).
fn refusal(
    roots: &[Arc<CompiledRoot>],
    acceptance: &HashMap<String, Acceptance>,
    key: &str,
) -> Option<String> {
    let Some((root, name)) = key.split_once('/') else {
        return Some("is not a key of a trust root".into());
    };
    if !roots.iter().any(|r| r.name == root && r.declares(name)) {
        return Some("removed from its trust root".into());
    }
    acceptance
        .get(root)
        .and_then(|a| a.refusal(name))
        .map(str::to_string)
}

/// The metrics label of a recorded state.
fn bucket(r: &Recorded) -> &'static str {
    if r.stale.is_some() {
        return "Stale";
    }
    r.verdict.map_or("Unknown", verdict::Verdict::as_str)
}
