//! [`Reader`]: the pull side of the registry protocol, on reqwest directly.
//!
//! oci-client 0.18 (still used for pushes) costs a re-verification sweep twice what it needs:
//! it sends `GET /v2/` before every request to a registry that allows anonymous pulls (its token
//! cache only remembers challenges that were answered, and an anonymous registry never
//! challenges), it retries a `HEAD` answered 404 as a `GET`, and building it builds a second
//! reqwest client that loads the system trust store. Pulling is five requests (HEAD and GET of
//! a manifest, GET of a blob, the referrers listing, a token), so they are made here instead:
//!
//! - **No ping.** A request goes out as it is; only a `401` says how to authenticate, and its
//!   `WWW-Authenticate` challenge is remembered per registry, so later repositories get their
//!   token before their first request.
//! - **Tokens** are cached per registry and repository until the `expires_in` the token server
//!   gave (60 s when it gave none, as the distribution spec says), and a `401` with a token
//!   (expired early, revoked) is answered by fetching a new one and retrying once: never by a
//!   verdict. A second `401` is an [`RegistryError::Unauthorized`] naming the registry.
//! - **Referrers** come from the OCI 1.1 API; only when it answers 404 (not supported) from the
//!   `sha256-<hex>` fallback tag, as go-containerregistry (and so cosign) does. A repository whose
//!   registry has no API goes straight to the tag for [`NO_REFERRERS_API_TTL`].
//! - Every HTTP request is reported to the observer, tokens included: the request counter is
//!   what the registry itself sees.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use reqwest::{Method, Response, StatusCode, header};

use super::{Credentials, FetchError, Limits, RegistryError, RequestObserver};
use crate::{
    formats::oci::{Index, MANIFEST_TYPES, OCI_INDEX},
    reference::{Digest, ImageRef, is_loopback_host},
};

/// How long a repository whose registry answered 404 to the referrers API is read from the
/// fallback tag alone. Short: a repository that did not exist yet also answers 404 on some
/// registries, and a registry may be upgraded; one more request per repository every ten
/// minutes is the price of noticing.
const NO_REFERRERS_API_TTL: Duration = Duration::from_secs(600);

/// A token is renewed this long before the expiry its server gave, so that it does not expire
/// on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// The lifetime of a token whose server did not say (the distribution token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Error bodies are read this far, for the message.
const MAX_ERROR_BODY: usize = 4096;

/// How a registry asked to be authenticated, learnt from its last `401`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

type RepoKey = (String, String);

pub(super) struct Reader {
    limits: Limits,
    credentials: Credentials,
    insecure_registries: Vec<String>,
    observer: Option<RequestObserver>,
    /// Built on first use: the plain-HTTP one never loads a trust store, the HTTPS one does.
    plain: OnceLock<reqwest::Client>,
    tls: OnceLock<reqwest::Client>,
    challenges: Mutex<HashMap<String, Challenge>>,
    /// One lock per repository, held while its token is fetched, so that the requests of a
    /// sweep that start together share one token request.
    tokens: Mutex<HashMap<RepoKey, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    no_referrers_api: Mutex<HashMap<RepoKey, Instant>>,
    /// By registry: until when its last 429 asked us to wait (`Retry-After`).
    throttled: Throttle,
}

/// The `Retry-After` of a registry's 429s, honoured for the whole registry: a rate limit is the
/// client's, not one digest's, so while it runs no request goes to that registry at all (each
/// fails at once as rate limited, the time left as its `retry_after`). Before, only the digest
/// that got the 429 waited, and a sweep of many digests kept asking during a storm (issue 11's
/// fault campaign, `tests/faults.rs`).
#[derive(Default)]
struct Throttle(Mutex<HashMap<String, Instant>>);

impl Throttle {
    /// How long `registry` is still to be left alone.
    fn left(&self, registry: &str, now: Instant) -> Option<Duration> {
        let until = *lock(&self.0).get(registry)?;
        (until > now).then(|| until - now)
    }

    /// A 429 from `registry` asked to wait `after`.
    fn note(&self, registry: &str, after: Duration, now: Instant) {
        let mut map = lock(&self.0);
        map.retain(|_, until| *until > now);
        let until = map.entry(registry.to_string()).or_insert(now);
        *until = (*until).max(now + after);
    }
}

impl Reader {
    pub(super) fn new(
        limits: Limits,
        credentials: Credentials,
        insecure_registries: Vec<String>,
        observer: Option<RequestObserver>,
    ) -> Self {
        Self {
            limits,
            credentials,
            insecure_registries,
            observer,
            plain: OnceLock::new(),
            tls: OnceLock::new(),
            challenges: Mutex::default(),
            tokens: Mutex::default(),
            no_referrers_api: Mutex::default(),
            throttled: Throttle::default(),
        }
    }

    fn is_plain_http(&self, registry: &str) -> bool {
        is_loopback_host(registry) || self.insecure_registries.iter().any(|r| r == registry)
    }

    fn http(&self, registry: &str) -> Result<&reqwest::Client, RegistryError> {
        let plain = self.is_plain_http(registry);
        let cell = if plain { &self.plain } else { &self.tls };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.limits.connect_timeout)
            .read_timeout(self.limits.request_timeout);
        if plain {
            // Why: see `placeholder_root` in client.rs.
            let root = reqwest::Certificate::from_pem(super::client::PLACEHOLDER_ROOT_PEM);
            builder = builder.tls_certs_only(root);
        }
        let client = builder.build().map_err(|e| RegistryError::Unreachable {
            registry: registry.to_string(),
            detail: format!("building the HTTP client: {e}"),
        })?;
        Ok(cell.get_or_init(|| client))
    }

    fn url(&self, repo: &ImageRef, path: &str) -> String {
        let scheme = if self.is_plain_http(repo.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}/{path}", repo.registry(), repo.repository())
    }

    fn observe(&self, op: &'static str, outcome: &'static str, started: Instant) {
        if let Some(observe) = &self.observer {
            observe(op, outcome, started.elapsed());
        }
    }

    /// One request to `repo`'s registry, authenticated as the registry asked last time, and once
    /// more after a `401` (new challenge, or a token that expired early). Returns any status: the
    /// callers decide what a 404 means.
    async fn send(
        &self,
        op: &'static str,
        repo: &ImageRef,
        method: Method,
        url: &str,
        accept: &[&str],
    ) -> Result<Response, RegistryError> {
        let registry = repo.registry();
        let http = self.http(registry)?;
        let mut answered_401 = false;
        loop {
            if let Some(left) = self.throttled.left(registry, Instant::now()) {
                return Err(RegistryError::RateLimited {
                    registry: registry.to_string(),
                    retry_after: Some(left),
                });
            }
            let authorization = self.authorization(repo).await?;
            let mut request = http.request(method.clone(), url);
            if !accept.is_empty() {
                request = request.header(header::ACCEPT, accept.join(", "));
            }
            if let Some(value) = authorization.as_deref() {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = self.send_once(op, registry, request).await?;
            if response.status() != StatusCode::UNAUTHORIZED || answered_401 {
                return Ok(response);
            }
            answered_401 = true;
            if !self.answer_again(repo, &response, authorization.as_deref()).await {
                return Ok(response);
            }
        }
    }

    /// Sends `request` and counts it, by its status or its transport error's category; a 429's
    /// `Retry-After` holds back every request to the registry until it has passed.
    async fn send_once(
        &self,
        op: &'static str,
        registry: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            let error = RegistryError::from_transport(registry, &e);
            self.observe(op, error.category(), started);
            error
        })?;
        let status = response.status();
        self.observe(op, outcome_of(status), started);
        if status == StatusCode::TOO_MANY_REQUESTS
            && let Some(after) = retry_after_of(&response)
        {
            self.throttled.note(registry, after, Instant::now());
        }
        Ok(response)
    }

    /// After a `401` to a request sent with `authorization`: keeps the registry's challenge and
    /// says whether asking again can change the answer.
    async fn answer_again(&self, repo: &ImageRef, response: &Response, authorization: Option<&str>) -> bool {
        let registry = repo.registry();
        let challenge = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        let Some(challenge) = challenge else {
            return false;
        };
        let bearer = matches!(challenge, Challenge::Bearer { .. });
        let sent_basic = authorization.is_some_and(|a| a.starts_with("Basic "));
        lock(&self.challenges).insert(registry.to_string(), challenge);
        if !bearer {
            // Basic credentials (or none, having none) were sent as asked: asking again changes
            // nothing.
            return !sent_basic && self.basic_credentials(registry).is_some();
        }
        // The token we sent is worth nothing now (expired early, revoked). Only that one:
        // requests that went out together without a token must share the one the first of them
        // fetches, not discard it.
        let slot = self.token_slot(repo);
        let mut token = slot.lock().await;
        let sent = |t: &Token| authorization == Some(format!("Bearer {}", t.value).as_str());
        if token.as_ref().is_some_and(sent) {
            *token = None;
        }
        true
    }

    /// The `Authorization` header for `repo`, fetching a token first when the registry wants
    /// bearer tokens and there is none current.
    async fn authorization(&self, repo: &ImageRef) -> Result<Option<String>, RegistryError> {
        let challenge = lock(&self.challenges).get(repo.registry()).cloned();
        let basic = self.basic_credentials(repo.registry());
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(basic.map(|(u, p)| basic_header(&u, &p))),
            Some(Challenge::Bearer { realm, service }) => {
                let slot = self.token_slot(repo);
                let mut token = slot.lock().await;
                if let Some(t) = token.as_ref().filter(|t| Instant::now() < t.renew_at) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let fresh = self.fetch_token(repo, &realm, service.as_deref(), basic).await?;
                let header = format!("Bearer {}", fresh.value);
                *token = Some(fresh);
                Ok(Some(header))
            }
        }
    }

    fn basic_credentials(&self, registry: &str) -> Option<(String, String)> {
        match self.credentials.for_registry(registry) {
            oci_client::secrets::RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    fn token_slot(&self, repo: &ImageRef) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let key = (repo.registry().to_string(), repo.repository().to_string());
        lock(&self.tokens).entry(key).or_default().clone()
    }

    /// The distribution token flow: `GET <realm>?service=…&scope=repository:<repo>:pull`, with
    /// basic credentials when we have some (anonymous tokens otherwise, as Docker Hub gives).
    async fn fetch_token(
        &self,
        repo: &ImageRef,
        realm: &str,
        service: Option<&str>,
        basic: Option<(String, String)>,
    ) -> Result<Token, RegistryError> {
        let registry = repo.registry();
        let scope = format!("repository:{}:pull", repo.repository());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http(registry)?.get(realm).query(&query);
        if let Some((user, password)) = &basic {
            request = request.basic_auth(user, Some(password));
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            let error = RegistryError::from_transport(registry, &e);
            self.observe("token", error.category(), started);
            error
        })?;
        let status = response.status();
        self.observe("token", outcome_of(status), started);
        if !status.is_success() {
            let error = self.status_error(registry, response, realm).await;
            return Err(match error {
                // A token server that does not know the repository is refusing us, not saying
                // that the signature is absent.
                RegistryError::NotFound => RegistryError::Unauthorized {
                    registry: registry.to_string(),
                    detail: format!(
                        "token server {realm} answered 404, with {}",
                        self.credentials.describe(registry)
                    ),
                },
                e => e,
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let body = read_capped(registry, response, self.limits.max_manifest_bytes)
            .await?
            .ok_or_else(|| protocol(registry, format!("token from {realm} is too large")))?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| protocol(registry, format!("token from {realm}: {e}")))?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| protocol(registry, format!("token server {realm} gave no token")))?;
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok(Token {
            value,
            renew_at: started + lifetime.saturating_sub(TOKEN_MARGIN),
        })
    }

    /// The error a non-success answer stands for; 404 is [`RegistryError::NotFound`].
    async fn status_error(&self, registry: &str, response: Response, url: &str) -> RegistryError {
        let status = response.status().as_u16();
        let retry_after = retry_after_of(&response);
        let body = read_capped(registry, response, MAX_ERROR_BODY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        match RegistryError::from_status(registry, status, retry_after, url, &body) {
            // Say which credentials were refused (a pull secret by namespace/name, a file, a
            // flag), never what they are: the one thing a person needs to fix it.
            RegistryError::Unauthorized { registry, detail } => {
                let detail = format!("{detail}, with {}", self.credentials.describe(&registry));
                RegistryError::Unauthorized { registry, detail }
            }
            other => other,
        }
    }

    /// The digest `image` points at, from a `HEAD` (its `Docker-Content-Digest`). A registry
    /// that leaves the header out is asked for the manifest itself.
    pub(super) async fn head(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        let registry = image.registry();
        let url = self.url(image, &format!("manifests/{}", reference_of(image)));
        let response = self
            .send("resolve", image, Method::HEAD, &url, MANIFEST_TYPES)
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(registry, response, &url).await);
        }
        match header_digest(&response) {
            Some(digest) => {
                if let Some(expected) = image.digest().filter(|d| *d != digest) {
                    return Err(protocol(
                        registry,
                        format!("{url} answered digest {digest}, not {expected}"),
                    ));
                }
                Ok(digest)
            }
            None => match self.manifest(image, MANIFEST_TYPES).await {
                Ok((_, digest)) => Ok(digest),
                Err(FetchError::Registry(e)) => Err(e),
                Err(FetchError::Rejected(reason)) => Err(protocol(registry, reason)),
            },
        }
    }

    /// A manifest's bytes and digest (the SHA-256 of the bytes, checked against the reference's
    /// digest and the registry's `Docker-Content-Digest`).
    pub(super) async fn manifest(
        &self,
        image: &ImageRef,
        accept: &[&str],
    ) -> Result<(Bytes, Digest), FetchError> {
        let registry = image.registry();
        let url = self.url(image, &format!("manifests/{}", reference_of(image)));
        let response = self.send("manifest", image, Method::GET, &url, accept).await?;
        if !response.status().is_success() {
            return Err(self.status_error(registry, response, &url).await.into());
        }
        let claimed = header_digest(&response);
        let max = self.limits.max_manifest_bytes;
        let bytes = read_capped(registry, response, max)
            .await?
            .ok_or_else(|| FetchError::Rejected(format!("manifest at {url} is over the {max} byte limit")))?;
        let digest = Digest::of(&bytes);
        for expected in [image.digest(), claimed].into_iter().flatten() {
            if expected != digest {
                return Err(protocol(
                    registry,
                    format!("manifest at {url} has digest {digest}, not {expected}"),
                )
                .into());
            }
        }
        Ok((bytes, digest))
    }

    /// A blob of at most `max` bytes; `None` past that. The caller checks the digest.
    pub(super) async fn blob(
        &self,
        repo: &ImageRef,
        digest: &Digest,
        max: usize,
    ) -> Result<Option<Bytes>, RegistryError> {
        let registry = repo.registry();
        let url = self.url(repo, &format!("blobs/{digest}"));
        let response = self.send("blob", repo, Method::GET, &url, &[]).await?;
        if !response.status().is_success() {
            return Err(self.status_error(registry, response, &url).await);
        }
        read_capped(registry, response, max).await
    }

    /// The referrers of `digest` in `repo`: the API's index, or the fallback tag's (empty when
    /// the tag does not exist) on registries without the API.
    pub(super) async fn referrers(&self, repo: &ImageRef, digest: &Digest) -> Result<Index, FetchError> {
        let registry = repo.registry();
        let key = (registry.to_string(), repo.repository().to_string());
        let known_absent = lock(&self.no_referrers_api)
            .get(&key)
            .is_some_and(|at| at.elapsed() < NO_REFERRERS_API_TTL);
        if !known_absent {
            let url = self.url(repo, &format!("referrers/{digest}"));
            let response = self
                .send("referrers", repo, Method::GET, &url, &[OCI_INDEX])
                .await?;
            let status = response.status();
            if status.is_success() {
                lock(&self.no_referrers_api).remove(&key);
                let max = self.limits.max_manifest_bytes;
                let bytes = read_capped(registry, response, max).await?.ok_or_else(|| {
                    FetchError::Rejected(format!("referrers index at {url} is over the {max} byte limit"))
                })?;
                return Index::parse(&bytes).map_err(|e| FetchError::Rejected(e.to_string()));
            }
            if status != StatusCode::NOT_FOUND {
                return Err(self.status_error(registry, response, &url).await.into());
            }
            // 404: the registry has no referrers API (the spec forbids a 404 for a subject
            // without referrers). Unless it said the repository is unknown, which some say
            // before the repository exists, remember it for this repository.
            let body = read_capped(registry, response, MAX_ERROR_BODY)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            if !String::from_utf8_lossy(&body).contains("NAME_UNKNOWN") {
                lock(&self.no_referrers_api).insert(key, Instant::now());
            }
        }
        self.fallback_referrers(repo, digest).await
    }

    /// The index at the referrers fallback tag; empty when the tag does not exist.
    pub(super) async fn fallback_referrers(
        &self,
        repo: &ImageRef,
        digest: &Digest,
    ) -> Result<Index, FetchError> {
        let tag = repo.at_tag(&digest.fallback_tag());
        match self.manifest(&tag, &[OCI_INDEX]).await {
            Ok((bytes, _)) => Index::parse(&bytes).map_err(|e| FetchError::Rejected(e.to_string())),
            Err(FetchError::Registry(RegistryError::NotFound)) => Ok(Index::empty()),
            Err(e) => Err(e),
        }
    }
}

/// The last path segment of a manifest URL: the digest when there is one (exact), else the tag.
fn reference_of(image: &ImageRef) -> String {
    match (image.digest(), image.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}

fn header_digest(response: &Response) -> Option<Digest> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

/// The body, or `None` when it is larger than `max` (refused before reading when the
/// `Content-Length` says so).
async fn read_capped(
    registry: &str,
    mut response: Response,
    max: usize,
) -> Result<Option<Bytes>, RegistryError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Ok(None);
    }
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > max {
                    return Ok(None);
                }
            }
            Ok(None) => return Ok(Some(body.freeze())),
            Err(e) => return Err(RegistryError::from_transport(registry, &e)),
        }
    }
}

fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        404 => "not_found",
        401 | 403 => "unauthorized",
        429 => "rate_limited",
        500..=599 => "server_error",
        _ => "protocol",
    }
}

fn protocol(registry: &str, detail: String) -> RegistryError {
    RegistryError::Protocol {
        registry: registry.to_string(),
        detail,
    }
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::{Engine, prelude::BASE64_STANDARD};
    format!("Basic {}", BASE64_STANDARD.encode(format!("{user}:{password}")))
}

/// The first challenge of a `WWW-Authenticate` value we can answer: Bearer (with a realm) or
/// Basic.
fn parse_challenge(value: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(value).ok()?;
    let bearer = challenges.iter().find_map(|c| {
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        Some(Challenge::Bearer {
            realm: param("realm").filter(|r| !r.is_empty())?,
            service: param("service"),
        })
    });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
            .then_some(Challenge::Basic)
    })
}

fn retry_after_of(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_bearer_before_basic_and_unknown_schemes_ignored() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="countersign-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x", Bearer realm="https://t/""#),
            Some(Challenge::Bearer {
                realm: "https://t/".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="no-realm""#), None);
    }

    #[test]
    fn a_retry_after_holds_the_whole_registry_until_it_is_over() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.left("reg", t0), None);
        throttle.note("reg", Duration::from_secs(20), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(throttle.left("reg", later), Some(Duration::from_secs(15)));
        assert_eq!(
            throttle.left("other", later),
            None,
            "other registries are not held"
        );
        // A shorter Retry-After meanwhile does not cut the wait short.
        throttle.note("reg", Duration::from_secs(1), later);
        assert_eq!(throttle.left("reg", later), Some(Duration::from_secs(15)));
        assert_eq!(throttle.left("reg", t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
