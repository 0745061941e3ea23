//! What re-checking signatures costs in registry requests, counted against real registries
//! (issue 11: at most one cheap request per signed digest per warm sweep, no repeated `/v2/`
//! ping). Two counts must agree: the registry client's observer (every HTTP request it makes,
//! token requests included: what `countersign_registry_requests_total` counts) and, for the
//! go-containerregistry registries, the registry's own log (one line per request received), so
//! that a request the client would not report, a ping, cannot hide.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use countersign::{
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::{Credentials, RegistryClient, RegistryOptions},
    sign::{SignRequest, sign_bundle, sign_legacy},
    verify::SignatureCache,
};
use countersign_tests::{
    gitea::{self, Gitea},
    images::push_image_as,
    registry::{self, Registry, RegistryKind},
    scratch_dir,
};

/// `(operation, outcome)` of each request the client reported.
#[derive(Default)]
struct Seen(Mutex<Vec<(&'static str, &'static str)>>);

impl Seen {
    fn take(&self) -> Vec<(&'static str, &'static str)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn client(seen: &Arc<Seen>, credentials: Credentials) -> RegistryClient {
    let seen = seen.clone();
    RegistryClient::new(RegistryOptions {
        credentials,
        observer: Some(Arc::new(move |op, outcome, _| {
            seen.0.lock().unwrap().push((op, outcome))
        })),
        ..RegistryOptions::default()
    })
}

fn is_ping(path: &str) -> bool {
    matches!(path.split('?').next(), Some("/v2/" | "/v2"))
}

struct Fixture {
    /// go-containerregistry and distribution registries; `None` for Gitea.
    registry: Option<Registry>,
    _gitea: Option<Gitea>,
    credentials: Credentials,
    /// Two bundle-signed, two `.sig`-signed, one unsigned.
    images: Vec<ImageRef>,
}

const SIGNED: usize = 4;

async fn fixture(kind: RegistryKind) -> Fixture {
    let registry = Registry::start(kind);
    let (credentials, images) = match kind {
        RegistryKind::Htpasswd => {
            let json = registry.docker_config(registry::PASSWORD);
            signed_images(&registry.host, "", json).await
        }
        _ => signed_images(&registry.host, "", b"{}".to_vec()).await,
    };
    Fixture {
        registry: Some(registry),
        _gitea: None,
        credentials,
        images,
    }
}

/// Pushes and signs the images in `<host>/<prefix>app0` and `…app1`, logged in with the docker
/// config `json`.
async fn signed_images(host: &str, prefix: &str, json: Vec<u8>) -> (Credentials, Vec<ImageRef>) {
    let dir = scratch_dir("requests");
    std::fs::write(dir.path().join("config.json"), &json).unwrap();
    let credentials = Credentials::from_docker_config(&json, "config.json").unwrap();
    let signer = RegistryClient::new(RegistryOptions {
        credentials: credentials.clone(),
        ..RegistryOptions::default()
    });
    let key = SigningKey::generate();
    let mut images = Vec::new();
    for i in 0..=SIGNED {
        let tag = format!("{host}/{prefix}app{}:v{i}", i % 2);
        let digest = push_image_as(Some(dir.path()), &tag, &format!("requests {i}"));
        let image = ImageRef::parse(&tag)
            .unwrap()
            .at_digest(&Digest::parse(&digest).unwrap());
        let request = SignRequest {
            image: &image,
            key: &key,
            annotations: Default::default(),
            signature_repository: None,
        };
        match i {
            0 | 1 => drop(sign_bundle(&signer, &request).await.unwrap()),
            2 | 3 => drop(sign_legacy(&signer, &request).await.unwrap()),
            _ => {}
        }
        images.push(image);
    }
    (credentials, images)
}

/// Fills a cache (cold), then re-checks every digest once (warm). Returns the warm requests as
/// the client reported them, as many as the registry logged, and the pings it logged cold and
/// warm.
async fn warm_recheck(f: &Fixture) -> Counts {
    let seen = Arc::new(Seen::default());
    let cache = SignatureCache::new(Arc::new(client(&seen, f.credentials.clone())));
    let log = || f.registry.as_ref().map(Registry::requests).unwrap_or_default();
    let before_cold = log().len();
    for image in &f.images {
        let entry = cache.get(image, &image.digest().unwrap(), Duration::ZERO).await;
        assert!(!entry.is_stale(), "{image}: {:?}", entry.error);
    }
    let cold = seen.take();
    assert!(
        cold.iter()
            .all(|(_, outcome)| matches!(*outcome, "ok" | "not_found" | "unauthorized")),
        "cold: {cold:?}"
    );
    let before_warm = log().len();
    for image in &f.images {
        let entry = cache.get(image, &image.digest().unwrap(), Duration::ZERO).await;
        assert!(!entry.is_stale(), "{image}: {:?}", entry.error);
    }
    let logged = log();
    let pings = logged[before_cold..].iter().filter(|p| is_ping(p)).count();
    Counts {
        cold,
        warm: seen.take(),
        logged: logged.len() - before_warm,
        pings,
    }
}

struct Counts {
    cold: Vec<(&'static str, &'static str)>,
    warm: Vec<(&'static str, &'static str)>,
    /// Warm requests in the registry's log.
    logged: usize,
    /// Pings in the registry's log, cold and warm.
    pings: usize,
}

fn kind(f: &Fixture) -> String {
    f.registry
        .as_ref()
        .map_or_else(|| "gitea".into(), |r| format!("{:?}", r.kind))
}

/// Per warm re-check: one request per signed digest (the `.sig` HEAD or the referrers listing
/// of the format it is signed in), two for the unsigned one (both formats), never a ping.
fn assert_warm_costs(kind: impl std::fmt::Debug, warm: &[(&'static str, &'static str)]) {
    assert_eq!(warm.len(), SIGNED + 2, "{kind:?}: warm requests {warm:?}");
    assert!(
        warm.iter()
            .all(|(_, outcome)| matches!(*outcome, "ok" | "not_found")),
        "{kind:?}: {warm:?}"
    );
    let heads = warm.iter().filter(|(op, _)| *op == "resolve").count();
    assert_eq!(
        heads,
        2 + 1,
        "{kind:?}: a HEAD per .sig-signed digest and the unsigned one: {warm:?}"
    );
}

/// The registry's own log agrees with the client, and holds no ping.
fn assert_logged_as_reported(c: &Counts) {
    assert_eq!(
        c.logged,
        c.warm.len(),
        "the registry saw what the client reported"
    );
    assert_eq!(c.pings, 0, "no /v2/ ping, cold or warm");
}

#[tokio::test]
async fn warm_recheck_referrers_api_registry_is_one_request_per_signed_digest() {
    let f = fixture(RegistryKind::Referrers).await;
    let c = warm_recheck(&f).await;
    assert_warm_costs(kind(&f), &c.warm);
    assert_logged_as_reported(&c);
}

#[tokio::test]
async fn warm_recheck_fallback_tag_registry_is_one_request_per_signed_digest() {
    let f = fixture(RegistryKind::NoReferrers).await;
    let c = warm_recheck(&f).await;
    assert_warm_costs(kind(&f), &c.warm);
    // Without the API, the bundle format is read from the fallback tag at once: the registry
    // said 404 to the referrers API when the cache was filled.
    assert!(c.warm.iter().all(|(op, _)| *op != "referrers"), "{:?}", c.warm);
    assert_logged_as_reported(&c);
}

#[tokio::test]
async fn warm_recheck_with_authentication_is_one_request_per_signed_digest() {
    let f = fixture(RegistryKind::Htpasswd).await;
    let c = warm_recheck(&f).await;
    // The registry's challenge was learnt cold: warm requests carry credentials at once, no 401.
    assert_warm_costs(kind(&f), &c.warm);
}

/// Gitea's registry hands out bearer tokens (as Docker Hub, GHCR, ECR and Harbor do): cold, one
/// token per repository (the challenge is learnt from the first 401); warm, the cached tokens
/// are sent at once.
#[tokio::test]
async fn warm_recheck_with_bearer_tokens_is_one_request_per_signed_digest() {
    let gitea = Gitea::start();
    let host = format!("127.0.0.1:{}", gitea.http_port);
    let json = serde_json::to_vec(&serde_json::json!({
        "auths": { &host: { "username": gitea::USER, "password": gitea::PASSWORD } }
    }))
    .unwrap();
    let (credentials, images) = signed_images(&host, &format!("{}/", gitea::USER), json).await;
    let f = Fixture {
        registry: None,
        _gitea: Some(gitea),
        credentials,
        images,
    };
    let counts = warm_recheck(&f).await;
    let tokens = counts.cold.iter().filter(|(op, _)| *op == "token").count();
    assert_eq!(tokens, 2, "one token per repository: {:?}", counts.cold);
    assert_warm_costs("gitea", &counts.warm);
}
