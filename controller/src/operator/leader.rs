//! Leader election on a `coordination.k8s.io/v1` Lease, with the semantics of client-go's
//! `leaderelection` package, so that two replicas never both write verdicts.
//!
//! - **Acquire**: read the Lease; create it when absent; take it over when it is free (no
//!   holder, or ours) or expired. Every write carries the `resourceVersion` that was read (a
//!   create carries none and fails if the Lease exists), so of two candidates that both saw it
//!   free, the API server lets exactly one write succeed and the other gets `409 Conflict`.
//! - **Expired** means: the record (holder, renew time, …) has not changed for
//!   `leaseDurationSeconds` *as measured by our own monotonic clock* from the moment we first saw
//!   it. We never compare the holder's `renewTime` with our wall clock: the holder wrote it with
//!   its clock, and a skew of a few seconds between nodes would let us steal a live lease (or
//!   wait forever). This is how client-go decides, and the price is the same: a fresh candidate
//!   waits one lease duration before taking over a lease that expired before it started.
//! - **Renew**: every `renew_every` the leader writes a new `renewTime`, again with the
//!   `resourceVersion` it last wrote; a conflict means someone else wrote the Lease, so it is
//!   read again and leadership is lost unless we still hold it.
//! - **Lost**: another holder, the Lease deleted, or no successful renewal for
//!   [`renew_deadline`] (90% of the lease duration), counted from the moment the last
//!   successful renewal was *sent*. A standby starts its own expiry clock only once it has seen
//!   that renewal, which is later, so the old leader always stops first.
//! - **Release**: on graceful shutdown the holder is cleared (and `leaseDurationSeconds` set to
//!   1, as client-go does), so a standby takes over at its next poll instead of waiting for
//!   expiry.
//!
//! Only `get`, `create` and `update` on `leases` are used (see `manifests/rbac.yaml`).

use std::{fmt, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, api::PostParams};
use rand_core::{OsRng, RngCore};
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Instant, sleep, sleep_until, timeout, timeout_at},
};

/// The usual values (client-go's defaults: 15 s lease; we renew and poll every 2 s).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_EVERY: Duration = Duration::from_secs(2);

/// Giving the Lease back must not hold up shutdown for long: if the API server does not answer,
/// the Lease simply expires.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at one write when another writer keeps changing the Lease under us.
const CONFLICT_ATTEMPTS: usize = 3;

/// Where the lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica (pod name, plus a random suffix when run outside a pod).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// A config with [`DEFAULT_LEASE_DURATION`] and [`DEFAULT_RENEW_EVERY`].
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_every: DEFAULT_RENEW_EVERY,
        }
    }

    /// `leaseDurationSeconds`: whole seconds, rounded up, at least 1.
    fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    /// How often to renew (and, while waiting, to poll). A renewal interval that is not well
    /// inside the lease duration would let the lease expire between two renewals; it is
    /// capped at a third of the duration, leaving room for two failed attempts.
    fn renew_interval(&self) -> Duration {
        let cap = self.lease_duration / 3;
        if self.renew_every > cap || self.renew_every.is_zero() {
            cap.max(Duration::from_millis(100))
        } else {
            self.renew_every
        }
    }
}

/// The leader stops leading when it has not renewed for this long: 90% of the lease duration.
/// The 10% margin covers the time the process needs to notice and stop writing, and a standby
/// whose clock runs slightly fast.
pub fn renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration.mul_f64(0.9)
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// Another identity holds the Lease (it took it over, or someone edited it).
    TakenBy(String),
    /// The Lease no longer exists.
    Deleted,
    /// No renewal succeeded within the renew deadline (API server unreachable or refusing).
    RenewDeadline,
    /// The renewal task ended without saying why (it panicked).
    Stopped,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TakenBy(holder) if holder.is_empty() => {
                f.write_str("the lease was released by someone else")
            }
            Self::TakenBy(holder) => write!(f, "the lease is now held by {holder:?}"),
            Self::Deleted => f.write_str("the lease was deleted"),
            Self::RenewDeadline => f.write_str("the lease could not be renewed in time"),
            Self::Stopped => f.write_str("the renewal task stopped"),
        }
    }
}

/// Held while we lead; renews the lease in the background.
///
/// Dropping it without [`Leadership::release`] stops the renewals and leaves the Lease to expire,
/// as a crash would.
pub struct Leadership {
    api: Api<Lease>,
    config: LeaseConfig,
    lost: watch::Receiver<Option<LostReason>>,
    renewer: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Resolves if the lease is lost (renewal failed past the renew deadline, 90% of its
    /// duration, or another holder took it). The caller stops leading then: the process exits
    /// and restarts as a standby. Safe to call again (in a `select!` loop): once lost, it
    /// resolves at once.
    pub async fn lost(&mut self) {
        // An error means the renewal task is gone without a word (it panicked): we no longer
        // renew, so we must not lead either.
        let _ = self.lost.wait_for(Option::is_some).await;
    }

    /// Why leadership was lost, once it is.
    pub fn lost_reason(&self) -> Option<LostReason> {
        let reason = self.lost.borrow().clone();
        match reason {
            None if self.renewer.as_ref().is_some_and(JoinHandle::is_finished) => Some(LostReason::Stopped),
            reason => reason,
        }
    }

    /// Our identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Gives the lease up at once (graceful shutdown), so a standby takes over without waiting
    /// for it to expire. Stops renewing first; does nothing to a Lease someone else holds by
    /// now. Errors are logged, not returned: the Lease then expires on its own.
    pub async fn release(mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        let (api, config) = (self.api.clone(), self.config.clone());
        match timeout(RELEASE_TIMEOUT, release(&api, &config)).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "released the leader lease")
            }
            Ok(Ok(false)) => {
                tracing::info!(lease = %config.name, "leader lease already held by someone else")
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %config.name, error = %e, "could not release the leader lease; it will expire")
            }
            Err(_) => {
                tracing::warn!(lease = %config.name, "releasing the leader lease timed out; it will expire")
            }
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("config", &self.config)
            .field("lost", &*self.lost.borrow())
            .finish_non_exhaustive()
    }
}

/// Waits until this replica holds the lease.
///
/// Returns an error only for what waiting cannot fix: no permission (401/403), the namespace
/// missing (404), an invalid Lease (400/422). Transient errors (API server unreachable, 5xx,
/// 429) are logged and retried every `renew_every` (jittered).
pub async fn acquire(client: kube::Client, config: LeaseConfig) -> Result<Leadership, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut candidate = Candidate::default();
    loop {
        let attempt = Instant::now();
        match try_acquire(&api, &config, &mut candidate).await {
            Ok(Attempt::Acquired(lease)) => {
                tracing::info!(
                    lease = %config.name,
                    namespace = %config.namespace,
                    identity = %config.identity,
                    transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
                    "acquired the leader lease"
                );
                return Ok(start_renewing(api, config, *lease, attempt));
            }
            Ok(Attempt::Held { holder, expires_in }) => {
                if candidate.logged_holder.as_deref() != Some(holder.as_str()) {
                    tracing::info!(
                        lease = %config.name,
                        %holder,
                        expires_in_secs = expires_in.as_secs_f64(),
                        "leader lease held by another replica; standing by"
                    );
                    candidate.logged_holder = Some(holder);
                }
            }
            Ok(Attempt::Raced) => tracing::debug!(lease = %config.name, "lost a race for the leader lease"),
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => tracing::warn!(lease = %config.name, error = %e, "leader election: will retry"),
        }
        sleep(jittered(config.renew_interval())).await;
    }
}

// === acquiring ===

/// What a candidate remembers between attempts.
#[derive(Default)]
struct Candidate {
    /// The Lease record as last read, and when (our monotonic clock) we first saw it so.
    observed: Option<(LeaseSpec, Instant)>,
    /// The holder we last told the log about, to say it once per holder.
    logged_holder: Option<String>,
}

enum Attempt {
    Acquired(Box<Lease>),
    Held {
        holder: String,
        expires_in: Duration,
    },
    /// Someone else wrote the Lease between our read and our write.
    Raced,
}

async fn try_acquire(
    api: &Api<Lease>,
    config: &LeaseConfig,
    candidate: &mut Candidate,
) -> Result<Attempt, kube::Error> {
    let Some(current) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.lease_seconds()),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => Ok(Attempt::Acquired(Box::new(created))),
            Err(e) if is_race(&e) => Ok(Attempt::Raced),
            Err(e) => Err(e),
        };
    };

    let spec = current.spec.clone().unwrap_or_default();
    let first_seen = match &candidate.observed {
        Some((seen, at)) if *seen == spec => *at,
        _ => {
            let at = Instant::now();
            candidate.observed = Some((spec.clone(), at));
            at
        }
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|&s| s > 0)
        .map_or(config.lease_duration, Duration::from_secs);
    let expires_in = duration.saturating_sub(first_seen.elapsed());
    let free = holder.is_empty() || holder == config.identity || expires_in.is_zero();
    if !free {
        return Ok(Attempt::Held { holder, expires_in });
    }

    // `current` keeps its resourceVersion: the update fails with 409 if anyone wrote since.
    let mut next = current;
    let spec = next.spec.get_or_insert_with(LeaseSpec::default);
    if holder != config.identity {
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    spec.holder_identity = Some(config.identity.clone());
    spec.lease_duration_seconds = Some(config.lease_seconds());
    spec.renew_time = Some(now());
    match api.replace(&config.name, &PostParams::default(), &next).await {
        Ok(taken) => {
            if !holder.is_empty() && holder != config.identity {
                tracing::info!(lease = %config.name, previous = %holder, "took over an expired leader lease");
            }
            Ok(Attempt::Acquired(Box::new(taken)))
        }
        Err(e) if is_race(&e) => Ok(Attempt::Raced),
        Err(e) => Err(e),
    }
}

// === renewing ===

fn start_renewing(api: Api<Lease>, config: LeaseConfig, lease: Lease, renewed_at: Instant) -> Leadership {
    let (tx, rx) = watch::channel(None);
    let renewer = tokio::spawn(renew_loop(api.clone(), config.clone(), lease, renewed_at, tx));
    Leadership {
        api,
        config,
        lost: rx,
        renewer: Some(renewer),
    }
}

/// Renews until leadership is lost, then says why on `lost` and ends.
async fn renew_loop(
    api: Api<Lease>,
    config: LeaseConfig,
    mut lease: Lease,
    mut renewed_at: Instant,
    lost: watch::Sender<Option<LostReason>>,
) {
    let interval = config.renew_interval();
    let deadline_after = renew_deadline(config.lease_duration);
    let mut next = renewed_at + interval;
    let reason = loop {
        let deadline = renewed_at + deadline_after;
        sleep_until(next.min(deadline)).await;
        let started = Instant::now();
        if started >= deadline {
            break LostReason::RenewDeadline;
        }
        // A hung request must not carry us past the deadline.
        match timeout_at(deadline, renew(&api, &config, &mut lease)).await {
            Err(_) => break LostReason::RenewDeadline,
            Ok(Ok(())) => {
                renewed_at = started;
                next = started + interval;
            }
            Ok(Err(RenewError::Lost(reason))) => break reason,
            Ok(Err(RenewError::Api(e))) => {
                tracing::warn!(
                    lease = %config.name,
                    error = %e,
                    left_secs = deadline.saturating_duration_since(Instant::now()).as_secs_f64(),
                    "could not renew the leader lease; retrying"
                );
                // Retry sooner than the usual interval: the deadline is running.
                next = Instant::now() + jittered(interval / 4);
            }
        }
    };
    tracing::warn!(lease = %config.name, identity = %config.identity, %reason, "lost the leader lease");
    let _ = lost.send(Some(reason));
}

enum RenewError {
    Lost(LostReason),
    Api(kube::Error),
}

impl From<kube::Error> for RenewError {
    fn from(e: kube::Error) -> Self {
        Self::Api(e)
    }
}

/// One renewal: a new `renewTime` on the Lease we last wrote (so with its resourceVersion).
async fn renew(api: &Api<Lease>, config: &LeaseConfig, lease: &mut Lease) -> Result<(), RenewError> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let mut next = lease.clone();
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(config.lease_seconds());
        match api.replace(&config.name, &PostParams::default(), &next).await {
            Ok(renewed) => {
                *lease = renewed;
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                return Err(RenewError::Lost(LostReason::Deleted));
            }
            Err(e) if is_race(&e) => {
                // Someone else wrote it: still ours (a label added, say) or not?
                let Some(current) = api.get_opt(&config.name).await? else {
                    return Err(RenewError::Lost(LostReason::Deleted));
                };
                let holder = current.spec.as_ref().and_then(|s| s.holder_identity.clone());
                if holder.as_deref() != Some(config.identity.as_str()) {
                    return Err(RenewError::Lost(LostReason::TakenBy(holder.unwrap_or_default())));
                }
                *lease = current;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RenewError::Api(conflict_error(config)))
}

// === releasing ===

/// Clears the holder if it is still us. `Ok(false)`: someone else holds it (or nobody).
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    for _ in 0..CONFLICT_ATTEMPTS {
        let Some(mut lease) = api.get_opt(&config.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match api.replace(&config.name, &PostParams::default(), &lease).await {
            Ok(_) => return Ok(true),
            Err(e) if is_race(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(conflict_error(config))
}

// === helpers ===

/// The wall clock, for the Lease's own fields only (people read them; we never decide on them).
fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// `d` stretched by a random 0–20%, like client-go's `JitterUntil(…, 1.2, …)`, so candidates
/// that started together do not keep hitting the API server in lockstep.
fn jittered(d: Duration) -> Duration {
    let factor = f64::from(OsRng.next_u32()) / f64::from(u32::MAX);
    d.mul_f64(1.0 + 0.2 * factor)
}

/// Another writer got there first: 409 Conflict on update, 409 AlreadyExists on create.
fn is_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

/// Errors that retrying will not fix.
fn is_permanent(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if matches!(s.code, 400 | 401 | 403 | 404 | 422))
}

fn conflict_error(config: &LeaseConfig) -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure(
            &format!(
                "lease {}/{} kept changing under {} writes",
                config.namespace, config.name, CONFLICT_ATTEMPTS
            ),
            "Conflict",
        )
        .with_code(409),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lease: Duration, renew: Duration) -> LeaseConfig {
        LeaseConfig {
            lease_duration: lease,
            renew_every: renew,
            ..LeaseConfig::new("ns", "lease", "me")
        }
    }

    #[test]
    fn lease_seconds_round_up_and_are_at_least_one() {
        assert_eq!(
            config(Duration::from_secs(15), DEFAULT_RENEW_EVERY).lease_seconds(),
            15
        );
        assert_eq!(
            config(Duration::from_millis(2500), DEFAULT_RENEW_EVERY).lease_seconds(),
            3
        );
        assert_eq!(
            config(Duration::from_millis(10), DEFAULT_RENEW_EVERY).lease_seconds(),
            1
        );
    }

    #[test]
    fn renewal_interval_stays_well_inside_the_lease() {
        let secs = Duration::from_secs;
        assert_eq!(config(secs(15), secs(2)).renew_interval(), secs(2));
        assert_eq!(config(secs(15), secs(15)).renew_interval(), secs(5));
        assert_eq!(config(secs(3), Duration::ZERO).renew_interval(), secs(1));
        assert_eq!(renew_deadline(secs(10)), secs(9));
    }

    #[test]
    fn jitter_stretches_by_at_most_a_fifth() {
        for _ in 0..1000 {
            let j = jittered(Duration::from_secs(1));
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_millis(1200),
                "{j:?}"
            );
        }
    }

    #[test]
    fn conflicts_and_existing_leases_are_races_and_forbidden_is_permanent() {
        let status = |code, reason: &str| {
            kube::Error::Api(Box::new(kube::core::Status::failure("x", reason).with_code(code)))
        };
        assert!(is_race(&status(409, "Conflict")));
        assert!(is_race(&status(409, "AlreadyExists")));
        assert!(!is_race(&status(500, "InternalError")));
        assert!(is_permanent(&status(403, "Forbidden")));
        assert!(is_permanent(&status(404, "NotFound")));
        assert!(!is_permanent(&status(503, "ServiceUnavailable")));
        assert!(!is_permanent(&status(429, "TooManyRequests")));
    }
}
