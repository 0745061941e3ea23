//! The signature cache the controller verifies through.
//!
//! Keyed by signature repository and digest, it keeps what was *found* (the candidates), not a
//! verdict: verdicts are recomputed in memory for each key set, so a key removed from a trust root
//! is reflected without a single registry request. Re-checking an entry costs one small request
//! for each format that had signatures (a HEAD of the `.sig` tag, or a referrers listing; both
//! for a digest that had none) and downloads nothing when the revision is unchanged. Concurrent requests for one entry share one fetch, and a failed refresh
//! keeps the last good answer, marked with the error, so a registry hiccup never becomes a verdict.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};

use super::{Fetched, SignatureSource, fetch_signatures};
use crate::{
    reference::{Digest, ImageRef},
    registry::RegistryError,
};

/// A full download is forced at least this often, whatever the revisions say, so that a format
/// that was not re-checked (see [`formats_to_check`]) is seen eventually.
const MAX_WITHOUT_FULL_FETCH: Duration = Duration::from_secs(6 * 3600);

/// After a failed refresh, the registry is left alone this long (or as long as a 429's
/// `Retry-After` says) before it is asked again: during an outage every sweep would otherwise
/// wait on the same timeouts again.
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);

/// What the cache knows about one digest.
#[derive(Debug, Clone)]
pub struct Signatures {
    /// The last answer that could be read (after a failed first fetch: the failure itself).
    pub fetched: Fetched,
    /// When `fetched` was last confirmed current.
    pub checked_at: Instant,
    /// Set when the latest refresh failed: `fetched` is then the last good answer, stale.
    pub error: Option<RegistryError>,
    fetched_at: Instant,
    failed_at: Option<Instant>,
}

impl Signatures {
    /// Whether `fetched` is known to be current.
    pub fn is_stale(&self) -> bool {
        self.error.is_some() || self.fetched.error().is_some()
    }

    /// Still backing off after a failure: the answer is the one we have.
    fn backing_off(&self) -> bool {
        let Some(failed_at) = self.failed_at else {
            return false;
        };
        let wait = match self.error.as_ref().or(self.fetched.error()) {
            Some(RegistryError::RateLimited {
                retry_after: Some(after),
                ..
            }) => (*after).max(FAILURE_BACKOFF),
            _ => FAILURE_BACKOFF,
        };
        failed_at.elapsed() < wait
    }
}

type Key = (String, Digest);
type Pending = Shared<BoxFuture<'static, Arc<Signatures>>>;

pub struct SignatureCache<S> {
    source: Arc<S>,
    entries: Mutex<HashMap<Key, Arc<Signatures>>>,
    pending: Mutex<HashMap<Key, Pending>>,
}

impl<S: SignatureSource + Send + Sync + 'static> SignatureCache<S> {
    pub fn new(source: Arc<S>) -> Self {
        Self {
            source,
            entries: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// The signatures of `digest` in `repo`, confirmed within `max_age`.
    pub async fn get(&self, repo: &ImageRef, digest: &Digest, max_age: Duration) -> Arc<Signatures> {
        let key = (repo.repository_name(), digest.clone());
        let previous = lock(&self.entries).get(&key).cloned();
        if let Some(entry) = &previous
            && ((entry.error.is_none() && entry.checked_at.elapsed() < max_age) || entry.backing_off())
        {
            return entry.clone();
        }
        let pending = {
            let mut pending = lock(&self.pending);
            pending
                .entry(key.clone())
                .or_insert_with(|| {
                    deadline(self.source.clone(), repo.clone(), digest.clone(), previous)
                        .boxed()
                        .shared()
                })
                .clone()
        };
        let fresh = pending.await;
        lock(&self.pending).remove(&key);
        lock(&self.entries).insert(key, fresh.clone());
        fresh
    }

    /// What the cache holds for `digest` in `repo`, without asking the registry.
    pub fn peek(&self, repo: &ImageRef, digest: &Digest) -> Option<Arc<Signatures>> {
        lock(&self.entries)
            .get(&(repo.repository_name(), digest.clone()))
            .cloned()
    }

    /// Forgets digests no longer in use (`keep` says which to keep) unless confirmed within
    /// `recent`: admission asks about digests before any pod runs them.
    pub fn retain(&self, recent: Duration, mut keep: impl FnMut(&str, &Digest) -> bool) {
        lock(&self.entries).retain(|(repo, digest), e| keep(repo, digest) || e.checked_at.elapsed() < recent);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One refresh may take this long in all, whatever the registry does (every request also has
/// its own timeout): a registry that trickles a thousand layers cannot hold a sweep hostage.
const REFRESH_DEADLINE: Duration = Duration::from_secs(60);

/// [`refresh`] within [`REFRESH_DEADLINE`]; past it, the last good answer marked timed out.
async fn deadline<S: SignatureSource>(
    source: Arc<S>,
    repo: ImageRef,
    digest: Digest,
    previous: Option<Arc<Signatures>>,
) -> Arc<Signatures> {
    let registry = repo.registry().to_string();
    let fallback = previous.clone();
    match tokio::time::timeout(REFRESH_DEADLINE, refresh(source, repo, digest, previous)).await {
        Ok(fresh) => fresh,
        Err(_) => {
            let now = Instant::now();
            let error = RegistryError::Timeout { registry };
            Arc::new(match fallback {
                Some(good) => Signatures {
                    error: Some(error),
                    failed_at: Some(now),
                    ..(*good).clone()
                },
                None => Signatures {
                    fetched: Fetched {
                        legacy: Err(error.clone()),
                        bundles: Err(error.clone()),
                    },
                    checked_at: now,
                    error: Some(error),
                    fetched_at: now,
                    failed_at: Some(now),
                },
            })
        }
    }
}

/// Re-checks an entry cheaply when there is a good one, downloads everything otherwise.
async fn refresh<S: SignatureSource>(
    source: Arc<S>,
    repo: ImageRef,
    digest: Digest,
    previous: Option<Arc<Signatures>>,
) -> Arc<Signatures> {
    let now = Instant::now();
    let good =
        previous.filter(|p| p.fetched.error().is_none() && p.fetched_at.elapsed() < MAX_WITHOUT_FULL_FETCH);
    if let Some(good) = good {
        match unchanged(source.as_ref(), &repo, &digest, &good.fetched).await {
            Ok(true) => {
                return Arc::new(Signatures {
                    checked_at: now,
                    error: None,
                    failed_at: None,
                    ..(*good).clone()
                });
            }
            Ok(false) => {}
            Err(error) => {
                return Arc::new(Signatures {
                    error: Some(error),
                    failed_at: Some(now),
                    ..(*good).clone()
                });
            }
        }
        return full_fetch(source.as_ref(), &repo, &digest, Some(&good)).await;
    }
    full_fetch(source.as_ref(), &repo, &digest, None).await
}

async fn full_fetch<S: SignatureSource>(
    source: &S,
    repo: &ImageRef,
    digest: &Digest,
    good: Option<&Signatures>,
) -> Arc<Signatures> {
    let fetched = fetch_signatures(source, repo, digest).await;
    let now = Instant::now();
    match (fetched.error().cloned(), good) {
        // Keep the last good answer rather than a half-read new one.
        (Some(error), Some(good)) => Arc::new(Signatures {
            error: Some(error),
            failed_at: Some(now),
            ..good.clone()
        }),
        (error, _) => Arc::new(Signatures {
            fetched,
            checked_at: now,
            failed_at: error.as_ref().map(|_| now),
            error,
            fetched_at: now,
        }),
    }
}

/// Whether the revisions of the formats worth re-checking are what they were. Both formats
/// (a digest without signatures) are asked at the same time.
async fn unchanged<S: SignatureSource>(
    source: &S,
    repo: &ImageRef,
    digest: &Digest,
    fetched: &Fetched,
) -> Result<bool, RegistryError> {
    let (check_legacy, check_bundles) = formats_to_check(fetched);
    let was =
        |r: &Result<super::Found, RegistryError>| r.as_ref().map(|f| f.revision.clone()).unwrap_or_default();
    let legacy = async {
        match check_legacy {
            true => Ok(source.legacy_revision(repo, digest).await? == was(&fetched.legacy)),
            false => Ok(true),
        }
    };
    let bundles = async {
        match check_bundles {
            true => Ok(source.bundle_revision(repo, digest).await? == was(&fetched.bundles)),
            false => Ok(true),
        }
    };
    let (legacy, bundles) = tokio::join!(legacy, bundles);
    Ok(legacy? && bundles?)
}

/// The formats that had signatures; both when neither had any (a signature may appear in either).
/// Skipping an empty format next to a signed one means a second format's first signature is
/// seen at the next full fetch rather than at once: it can only add trust, never remove it.
fn formats_to_check(fetched: &Fetched) -> (bool, bool) {
    let has = |r: &Result<super::Found, RegistryError>| r.as_ref().is_ok_and(|f| !f.candidates.is_empty());
    match (has(&fetched.legacy), has(&fetched.bundles)) {
        (false, false) => (true, true),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    //! The cache's bookkeeping against a scripted source (a stand-in: the real registry is in the
    //! integration tests and the operator benchmark).

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::verify::{Candidate, Found};

    #[derive(Default)]
    struct Scripted {
        revision: Mutex<String>,
        down: std::sync::atomic::AtomicBool,
        full_fetches: AtomicUsize,
        revision_checks: AtomicUsize,
    }

    impl Scripted {
        fn answer(&self) -> Result<Found, RegistryError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(RegistryError::Unreachable {
                    registry: "r".into(),
                    detail: "down".into(),
                });
            }
            Ok(Found {
                revision: lock(&self.revision).clone(),
                candidates: vec![Candidate::Rejected {
                    format: crate::verify::SignatureFormat::Legacy,
                    source: "s".into(),
                    reason: "r".into(),
                }],
            })
        }
    }

    impl SignatureSource for Scripted {
        async fn resolve(&self, _: &ImageRef) -> Result<Digest, RegistryError> {
            Ok(Digest::of(b"x"))
        }
        async fn legacy_signatures(&self, _: &ImageRef, _: &Digest) -> Result<Found, RegistryError> {
            self.full_fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.answer()
        }
        async fn bundle_signatures(&self, _: &ImageRef, _: &Digest) -> Result<Found, RegistryError> {
            Ok(Found {
                revision: super::super::ABSENT.into(),
                candidates: Vec::new(),
            })
        }
        async fn legacy_revision(&self, _: &ImageRef, _: &Digest) -> Result<String, RegistryError> {
            self.revision_checks.fetch_add(1, Ordering::SeqCst);
            self.answer().map(|f| f.revision)
        }
        async fn bundle_revision(&self, _: &ImageRef, _: &Digest) -> Result<String, RegistryError> {
            Ok(super::super::ABSENT.into())
        }
    }

    fn setup() -> (Arc<Scripted>, SignatureCache<Scripted>, ImageRef, Digest) {
        let source = Arc::new(Scripted::default());
        *lock(&source.revision) = "one".into();
        let cache = SignatureCache::new(source.clone());
        (
            source,
            cache,
            ImageRef::parse("localhost/app").unwrap(),
            Digest::of(b"app"),
        )
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch() {
        let (source, cache, repo, digest) = setup();
        let max_age = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            cache.get(&repo, &digest, max_age),
            cache.get(&repo, &digest, max_age)
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(source.full_fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unchanged_revision_downloads_nothing_and_a_changed_one_refetches() {
        let (source, cache, repo, digest) = setup();
        cache.get(&repo, &digest, Duration::ZERO).await;
        cache.get(&repo, &digest, Duration::ZERO).await;
        assert_eq!(source.full_fetches.load(Ordering::SeqCst), 1);
        assert_eq!(source.revision_checks.load(Ordering::SeqCst), 1);
        *lock(&source.revision) = "two".into();
        let fresh = cache.get(&repo, &digest, Duration::ZERO).await;
        assert_eq!(source.full_fetches.load(Ordering::SeqCst), 2);
        assert_eq!(fresh.fetched.legacy.as_ref().unwrap().revision, "two");
    }

    #[tokio::test]
    async fn a_failure_keeps_the_last_answer_marked_stale_and_backs_off() {
        let (source, cache, repo, digest) = setup();
        let good = cache.get(&repo, &digest, Duration::ZERO).await;
        source.down.store(true, Ordering::SeqCst);
        let stale = cache.get(&repo, &digest, Duration::ZERO).await;
        assert!(stale.is_stale());
        assert_eq!(stale.fetched.legacy, good.fetched.legacy, "last good answer kept");
        let checks = source.revision_checks.load(Ordering::SeqCst);
        cache.get(&repo, &digest, Duration::ZERO).await;
        assert_eq!(
            source.revision_checks.load(Ordering::SeqCst),
            checks,
            "no retry while backing off"
        );
    }
}
