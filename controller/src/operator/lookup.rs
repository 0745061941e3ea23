//! Step 3 of a pass, the registry I/O: resolve the distinct tags, then fetch the distinct
//! digests' signatures, at most `concurrency` at a time (each registry client also bounds its
//! requests in flight). Everything goes through the caches, so a lookup younger than its
//! `max_age` costs nothing, and an older one costs one cheap revision check per format.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};

use super::{
    clients::{CredentialsKey, RegistryPool, Tag, Verifier},
    objects::ObjectSource,
    plan::{SignatureKey, TagKey},
};
use crate::{reference::ImageRef, verify::Signatures};

/// A digest's signatures as the cache answered, and how long asking took.
#[derive(Clone)]
pub struct Fetched {
    pub signatures: Arc<Signatures>,
    /// The digest's attestations, when a TrustRoot governing it requires some.
    pub attestations: Option<Arc<Signatures>>,
    pub elapsed: Duration,
}

/// The verifier of each credential set in use.
pub async fn verifiers(
    keys: HashSet<CredentialsKey>,
    pool: &RegistryPool,
    objects: &impl ObjectSource,
) -> HashMap<CredentialsKey, Arc<Verifier>> {
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let verifier = pool.verifier(&key, objects).await;
        out.insert(key, verifier);
    }
    out
}

pub async fn tags(
    requests: HashMap<TagKey, (ImageRef, Duration)>,
    verifiers: &HashMap<CredentialsKey, Arc<Verifier>>,
    concurrency: usize,
) -> HashMap<TagKey, Tag> {
    stream::iter(requests)
        .map(|(key, (image, max_age))| async move {
            let verifier = verifiers.get(&key.0)?;
            let tag = verifier.tags.resolve(verifier.client(), &image, max_age).await;
            Some((key, tag))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|answer| async move { answer })
        .collect()
        .await
}

/// The signatures of each requested digest, and its attestations too when `attested` holds it
/// (asked at the same time).
pub async fn signatures(
    requests: HashMap<SignatureKey, (ImageRef, Duration)>,
    attested: &HashSet<SignatureKey>,
    verifiers: &HashMap<CredentialsKey, Arc<Verifier>>,
    concurrency: usize,
) -> HashMap<SignatureKey, Fetched> {
    stream::iter(requests)
        .map(|(key, (repo, max_age))| async move {
            let verifier = verifiers.get(&key.0)?;
            let started = Instant::now();
            let attestations = async {
                match attested.contains(&key) {
                    true => Some(verifier.attestations.get(&repo, &key.2, max_age).await),
                    false => None,
                }
            };
            let (signatures, attestations) =
                tokio::join!(verifier.signatures.get(&repo, &key.2, max_age), attestations);
            let fetched = Fetched {
                signatures,
                attestations,
                elapsed: started.elapsed(),
            };
            Some((key, fetched))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|answer| async move { answer })
        .collect()
        .await
}

/// Answers asked for within this time are kept even when nothing runs them: admission asks
/// about a Deployment's digest before its pods exist, and about a pod's before it runs.
pub const RECENT: Duration = Duration::from_secs(600);

/// Forgets cached answers no running workload needs any more (nor admission lately), so memory
/// follows what runs.
pub fn prune(
    verifiers: &HashMap<CredentialsKey, Arc<Verifier>>,
    tags: &HashMap<TagKey, Tag>,
    signatures: &HashMap<SignatureKey, Fetched>,
) {
    for (credentials, verifier) in verifiers {
        let keep_tags: HashSet<String> = tags
            .keys()
            .filter(|(c, _)| c == credentials)
            .map(|(_, t)| t.clone())
            .collect();
        verifier.tags.retain(RECENT, &keep_tags);
        let keep: HashSet<(&str, &crate::reference::Digest)> = signatures
            .keys()
            .filter(|(c, _, _)| c == credentials)
            .map(|(_, repo, digest)| (repo.as_str(), digest))
            .collect();
        verifier
            .signatures
            .retain(RECENT, |repo, digest| keep.contains(&(repo, digest)));
        verifier
            .attestations
            .retain(RECENT, |repo, digest| keep.contains(&(repo, digest)));
    }
}
