//! The TrustSource controller (leader only): one reconcile per TrustSource, requeued at its
//! interval, with per-source backoff after failures that may pass (network, apiserver).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::ConfigMap, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, EventType, Recorder},
        watcher,
    },
};

use super::{
    Config,
    apply::{self, Why},
    credentials::{self, Credentials},
    error::Error,
    fetch::{self, Fetched},
    read::{self, Revision},
    status::{self, Announcement, Applied, Outcome},
    tls::CaBundle,
    url::RepoUrl,
    verify,
};
use crate::{
    crd::{CommitVerification, FieldError, InventoryEntry, REQUESTED_AT_ANNOTATION, TrustSource},
    operator::metrics::Metrics,
};

/// Bytes one fetch may receive.
const MAX_FETCH_BYTES: usize = 64 << 20;
/// How long past `spec.timeout` the reconcile waits for the blocking fetch: the callbacks' own
/// deadline aborts a transfer that is still moving a little after it; a silent server triggers
/// no callback at all, so this timer ends the wait (libgit2's read timeout frees the thread).
const FETCH_GRACE: Duration = Duration::from_secs(2);
/// The first retry after a transient failure; doubles up to the source's interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The allowed signers' key in the Secret or ConfigMap.
const ALLOWED_SIGNERS: &str = "allowed_signers";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    /// The operator's one Recorder (it aggregates repeats only when shared).
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per TrustSource, for the backoff; cleared on success.
    failures: Mutex<HashMap<String, u32>>,
    /// One fetch at a time per cache folder, even when a timed-out one still runs.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Context {
    pub fn new(client: Client, config: Config, recorder: Recorder, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            client,
            config,
            recorder,
            metrics,
            failures: Mutex::default(),
            locks: Mutex::default(),
        })
    }
}

/// Runs until dropped.
pub async fn run(ctx: Arc<Context>) {
    fetch::set_process_timeouts();
    let api = Api::<TrustSource>::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(4))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "trust source reconcile");
            }
        })
        .await;
}

async fn reconcile(source: Arc<TrustSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = source.name_any();
    if source.spec.suspend {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let outcome = sync(&source, &ctx).await;
    let previous = source.status.clone().unwrap_or_default();
    let requested_at = source
        .annotations()
        .get(REQUESTED_AT_ANNOTATION)
        .map(String::as_str);
    let next = status::build(
        &previous,
        source.meta().generation,
        requested_at,
        &outcome,
        Timestamp::now(),
    );
    let label = match &outcome.result {
        Ok(a) if a.written.is_empty() && a.pruned.is_empty() => "unchanged",
        Ok(_) => "applied",
        Err(e) => e.category(),
    };
    ctx.metrics.gitops_sync(label, started.elapsed());
    for a in status::announcements(&previous, &next, &outcome) {
        publish(&ctx, &source, &a).await;
    }
    if next != previous {
        status::write(&ctx.client, &name, &next).await?;
    }
    let interval = source.interval().unwrap_or(Duration::from_secs(300));
    match outcome.result {
        Ok(_) => {
            lock(&ctx.failures).remove(&name);
            Ok(Action::requeue(interval))
        }
        Err(e) => {
            tracing::warn!(trust_source = %name, category = e.category(), error = %e, "sync failed");
            Err(e)
        }
    }
}

fn error_policy(source: Arc<TrustSource>, error: &Error, ctx: Arc<Context>) -> Action {
    let interval = source.interval().unwrap_or(Duration::from_secs(300));
    if !error.is_transient() {
        // A new commit or spec is needed; the next poll looks for one.
        return Action::requeue(interval);
    }
    let mut failures = lock(&ctx.failures);
    let n = failures.entry(source.name_any()).or_insert(0);
    *n = n.saturating_add(1);
    let backoff = FIRST_BACKOFF.saturating_mul(1 << (*n - 1).min(10));
    Action::requeue(backoff.min(interval))
}

async fn publish(ctx: &Context, source: &TrustSource, a: &Announcement) {
    let event = Event {
        type_: if a.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: a.reason.into(),
        note: Some(crate::operator::verdict::truncate_to(&a.note, 1000)),
        action: "Sync".into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &source.object_ref(&())).await {
        Ok(()) => ctx.metrics.event_emitted(a.reason),
        Err(e) => tracing::warn!(reason = a.reason, error = %e, "publishing a TrustSource event failed"),
    }
}

/// Fetch, verify, read, apply: the pass, as one outcome.
async fn sync(source: &TrustSource, ctx: &Context) -> Outcome {
    let mut attempted = None;
    let result = sync_steps(source, ctx, &mut attempted).await;
    Outcome { attempted, result }
}

async fn sync_steps(
    source: &TrustSource,
    ctx: &Context,
    attempted: &mut Option<String>,
) -> Result<Applied, Error> {
    let timeout = source.timeout().map_err(Error::Spec)?;
    source.interval().map_err(Error::Spec)?;
    let url = RepoUrl::parse(&source.spec.url).map_err(|m| Error::Spec(FieldError::new("spec.url", m)))?;
    let (credentials, ca) = credentials_of(source, ctx).await?;
    let signers = match &source.spec.verify {
        Some(v) => Some(allowed_signers(ctx, v).await?),
        None => None,
    };
    let checkout = fetch_and_read(source, ctx, url, credentials, ca, timeout).await?;
    *attempted = Some(checkout.fetched.revision.clone());
    ctx.metrics
        .gitops_fetched(checkout.fetched.received_objects, checkout.fetched.received_bytes);
    if let Some(signers) = signers {
        verify::check(checkout.signature.as_deref(), &checkout.signed_data, &signers).map_err(|message| {
            Error::Signature {
                commit: checkout.fetched.commit.to_string(),
                message,
            }
        })?;
    }
    let revision = checkout.revision?;
    apply_revision(source, ctx, &checkout.fetched.revision, &revision).await
}

/// The credentials of `spec.secretRef` (none without one), and its CA bundle parsed. Read before
/// any fetch: a bundle that cannot be used is the Secret's fault, said as such, not a TLS failure
/// of the server.
async fn credentials_of(
    source: &TrustSource,
    ctx: &Context,
) -> Result<(Credentials, Option<CaBundle>), Error> {
    let Some(r) = &source.spec.secret_ref else {
        return Ok((Credentials::default(), None));
    };
    let ns = &ctx.config.namespace;
    let credentials = Credentials::from_data(&credentials::read_secret(&ctx.client, ns, &r.name).await?);
    let ca = credentials
        .ca
        .as_deref()
        .map(|pem| {
            let origin = format!("{} of Secret {ns}/{}", credentials::CA, r.name);
            CaBundle::parse(pem, &origin).map_err(Error::Credentials)
        })
        .transpose()?;
    Ok((credentials, ca))
}

/// Fetches the source's ref into its cache folder and reads its tree, on a blocking thread (one
/// fetch at a time per folder), given up after `timeout` and [`FETCH_GRACE`].
async fn fetch_and_read(
    source: &TrustSource,
    ctx: &Context,
    url: RepoUrl,
    credentials: Credentials,
    ca: Option<CaBundle>,
    timeout: Duration,
) -> Result<Checkout, Error> {
    let name = source.name_any();
    let dir = fetch::cache_dir(&ctx.config.cache_dir, &name, &source.uid().unwrap_or_default());
    let lock = {
        let mut locks = lock(&ctx.locks);
        locks.entry(dir.display().to_string()).or_default().clone()
    };
    let spec = source.spec.clone();
    let blocking = move || {
        let _one_at_a_time = lock.lock().unwrap_or_else(|p| p.into_inner());
        let request = fetch::Request {
            url: &url,
            git_ref: &spec.git_ref,
            credentials: &credentials,
            ca: ca.as_ref(),
            dir: &dir,
            limits: fetch::Limits {
                timeout,
                max_bytes: MAX_FETCH_BYTES,
            },
        };
        checkout(&request, spec.path.as_deref().unwrap_or_default(), &name)
    };
    tokio::time::timeout(timeout + FETCH_GRACE, tokio::task::spawn_blocking(blocking))
        .await
        .map_err(|_| Error::Limit {
            url: super::url::redact(&source.spec.url),
            message: format!("the fetch did not finish within {timeout:?}"),
        })?
        .map_err(|e| Error::Kube(format!("the fetch task failed: {e}")))?
}

/// The blocking part: fetch, then the fetched commit's signature and tree.
fn checkout(request: &fetch::Request<'_>, path: &str, name: &str) -> Result<Checkout, Error> {
    let fetched = fetch::fetch(request)?;
    let repo = fetch::open(request.dir).map_err(|e| Error::Kube(e.message().to_string()))?;
    let (signature, signed_data) = match repo.extract_signature(&fetched.commit, None) {
        Ok((s, d)) => (Some(s.to_vec()), d.to_vec()),
        Err(_) => (None, Vec::new()),
    };
    let revision = read::read_tree(&repo, fetched.commit, path, name, read::Limits::default());
    Ok(Checkout {
        fetched,
        signature,
        signed_data,
        revision,
    })
}

/// A fetched commit: its signature (if signed), the data it signs, and the tree read at its path.
struct Checkout {
    fetched: Fetched,
    signature: Option<Vec<u8>>,
    signed_data: Vec<u8>,
    revision: Result<Revision, Error>,
}

async fn apply_revision(
    source: &TrustSource,
    ctx: &Context,
    at: &str,
    revision: &Revision,
) -> Result<Applied, Error> {
    let name = source.name_any();
    let live = apply::list_live(&ctx.client).await?;
    let previous = source
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.as_deref());
    let plan = apply::plan(&name, revision, &live, source.spec.prune, previous == Some(at))?;
    if !plan.is_empty() {
        apply::execute(&ctx.client, &plan).await?;
    }
    Ok(Applied {
        revision: at.to_string(),
        inventory: revision
            .iter()
            .map(|d| InventoryEntry {
                kind: d.kind.as_str().into(),
                name: d.name.clone(),
            })
            .collect(),
        written: plan
            .writes
            .iter()
            .map(|w| (format!("{} {}", w.declared.kind.as_str(), w.declared.name), w.why))
            .collect::<Vec<(String, Why)>>(),
        pruned: plan
            .prunes
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect(),
    })
}

async fn allowed_signers(ctx: &Context, v: &CommitVerification) -> Result<Vec<verify::AllowedSigner>, Error> {
    let ns = &ctx.config.namespace;
    let text = match (&v.secret_ref, &v.config_map_ref) {
        (Some(s), _) => {
            let data = credentials::read_secret(&ctx.client, ns, &s.name).await?;
            data.get(ALLOWED_SIGNERS)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| {
                    Error::Credentials(format!("Secret {ns}/{} has no {ALLOWED_SIGNERS} key", s.name))
                })?
        }
        (None, Some(c)) => Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
            .get_opt(&c.name)
            .await
            .map_err(|e| Error::Credentials(format!("reading ConfigMap {ns}/{}: {e}", c.name)))?
            .and_then(|cm| cm.data.unwrap_or_default().remove(ALLOWED_SIGNERS))
            .ok_or_else(|| {
                Error::Credentials(format!("ConfigMap {ns}/{} has no {ALLOWED_SIGNERS} key", c.name))
            })?,
        (None, None) => {
            return Err(Error::Spec(FieldError::new(
                "spec.verify",
                "set secretRef or configMapRef",
            )));
        }
    };
    let signers = verify::parse_allowed_signers(&text).map_err(Error::Credentials)?;
    if signers.is_empty() {
        return Err(Error::Credentials("the allowed signers list is empty".into()));
    }
    Ok(signers)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
