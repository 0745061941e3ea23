//! [`RegistryClient`]: oci-client behind limits, timeouts and error classification.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use oci_client::{
    Client, RegistryOperation, client::ClientConfig, client::ClientProtocol, errors::OciDistributionError,
    secrets::RegistryAuth,
};
use tokio::sync::Semaphore;

use super::{Credentials, RegistryError, reader::Reader};
use crate::{
    formats::oci::{Descriptor, Index, MANIFEST_TYPES},
    reference::{Digest, ImageRef, is_loopback_host},
};

/// Bounds that keep a hostile or broken registry from costing more than a signature is worth.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Signature layers in one `.sig` image, and referrers per image (cosign refuses more than
    /// 1000 layers).
    pub max_signatures: usize,
    /// Largest manifest or index accepted.
    pub max_manifest_bytes: usize,
    /// Largest signature payload or bundle accepted.
    pub max_blob_bytes: usize,
    /// One request, connect to last byte.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Requests in flight at once, over all registries.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_signatures: 1000,
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 16 << 20,
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_concurrent_requests: 32,
        }
    }
}

/// Called once per registry request with the operation, the outcome category (`ok` or a
/// [`RegistryError::category`]) and how long it took: the hook for metrics and benchmarks. For
/// reads, once per HTTP request (token requests and answered 401s included); for pushes, once
/// per oci-client call.
pub type RequestObserver = Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

#[derive(Clone, Default)]
pub struct RegistryOptions {
    pub limits: Limits,
    pub credentials: Credentials,
    /// Registries (`host[:port]`) reached over plain HTTP in addition to loopback ones.
    pub insecure_registries: Vec<String>,
    pub observer: Option<RequestObserver>,
}

/// Why some content could not be used: the registry could not be asked, or it answered with
/// something we refuse (too large, wrong digest). The second is a property of the content, so
/// it rejects a signature instead of making the verdict unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Rejected(String),
}

/// Reads through [`Reader`] (reqwest, no `/v2/` pings); writes (`sign`, `rotation resign`)
/// through oci-client, whose push protocol (uploads, the missing-`Location` workarounds) is worth
/// keeping and whose per-request ping costs nothing that matters there.
pub struct RegistryClient {
    options: RegistryOptions,
    reader: Reader,
    pushers: Mutex<HashMap<String, Arc<Client>>>,
    in_flight: Semaphore,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Self {
        let in_flight = Semaphore::new(options.limits.max_concurrent_requests.max(1));
        let reader = Reader::new(
            options.limits.clone(),
            options.credentials.clone(),
            options.insecure_registries.clone(),
            options.observer.clone(),
        );
        Self {
            options,
            reader,
            pushers: Mutex::new(HashMap::new()),
            in_flight,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.options.limits
    }

    /// The oci-client for pushing to a registry host, made on first push. One per host because
    /// the protocol (HTTP for loopback and flagged registries) is a per-client setting.
    fn pusher_for(&self, registry: &str) -> Arc<Client> {
        let mut clients = self.pushers.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let plain_http = is_loopback_host(registry)
                    || self.options.insecure_registries.iter().any(|r| r == registry);
                let limits = &self.options.limits;
                Arc::new(Client::new(ClientConfig {
                    protocol: if plain_http {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    tls_certs_only: if plain_http {
                        placeholder_root()
                    } else {
                        Vec::new()
                    },
                    read_timeout: Some(limits.request_timeout),
                    connect_timeout: Some(limits.connect_timeout),
                    user_agent: concat!("countersign/", env!("CARGO_PKG_VERSION")),
                    platform_resolver: None,
                    // One request per blob: signature blobs are small, and chunked uploads
                    // are where registries disagree most.
                    use_monolithic_push: true,
                    ..ClientConfig::default()
                }))
            })
            .clone()
    }

    fn auth(&self, image: &ImageRef) -> RegistryAuth {
        self.options.credentials.for_registry(image.registry())
    }

    /// Runs one operation (one or a few requests) under the concurrency bound and the request
    /// timeout.
    async fn bounded<T, E, F>(&self, image: &ImageRef, f: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<RegistryError>,
    {
        let _permit = self.in_flight.acquire().await;
        match tokio::time::timeout(self.options.limits.request_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                registry: image.registry().to_string(),
            }
            .into()),
        }
    }

    /// Runs one oci-client call [`bounded`](Self::bounded), classifies its error, and reports it
    /// to the observer (the reader reports each of its requests itself).
    async fn call<T, F>(&self, op: &'static str, image: &ImageRef, f: F) -> Result<T, RegistryError>
    where
        F: Future<Output = Result<T, OciDistributionError>>,
    {
        let registry = image.registry();
        let started = Instant::now();
        let result = self
            .bounded(image, async {
                f.await.map_err(|e| RegistryError::from_oci(registry, e))
            })
            .await;
        if let Some(observe) = &self.options.observer {
            let outcome = result.as_ref().map_or_else(|e| e.category(), |_| "ok");
            observe(op, outcome, started.elapsed());
        }
        result
    }

    /// The digest a tag (or digest) reference points at: one `HEAD`. For a multi-arch image
    /// this is the index digest, which is what cosign signs.
    pub async fn resolve(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        if let Some(d) = image.digest() {
            return Ok(d);
        }
        self.bounded(image, self.reader.head(image)).await
    }

    /// A manifest's bytes and digest, checked against the requested digest.
    pub async fn manifest(&self, image: &ImageRef, accept: &[&str]) -> Result<(Bytes, Digest), FetchError> {
        self.bounded(image, self.reader.manifest(image, accept)).await
    }

    /// The manifest a descriptor points at, refused before any download when the descriptor
    /// already says it is too large.
    pub async fn manifest_at(&self, repo: &ImageRef, descriptor: &Descriptor) -> Result<Bytes, FetchError> {
        let digest = descriptor
            .digest()
            .map_err(|e| FetchError::Rejected(e.to_string()))?;
        if descriptor.size < 0 || descriptor.size as u64 > self.options.limits.max_manifest_bytes as u64 {
            return Err(FetchError::Rejected(format!(
                "manifest {digest} declares {} bytes, over the {} byte limit",
                descriptor.size, self.options.limits.max_manifest_bytes
            )));
        }
        let (bytes, _) = self.manifest(&repo.at_digest(&digest), MANIFEST_TYPES).await?;
        Ok(bytes)
    }

    /// A blob, streamed with a size cap and checked against its digest.
    pub async fn blob(&self, repo: &ImageRef, descriptor: &Descriptor) -> Result<Bytes, FetchError> {
        let digest = descriptor
            .digest()
            .map_err(|e| FetchError::Rejected(e.to_string()))?;
        let max = self.options.limits.max_blob_bytes;
        if descriptor.size < 0 || descriptor.size as u64 > max as u64 {
            return Err(FetchError::Rejected(format!(
                "blob {digest} declares {} bytes, over the {max} byte limit",
                descriptor.size
            )));
        }
        let body = self
            .bounded(repo, self.reader.blob(repo, &digest, max))
            .await?
            .ok_or_else(|| FetchError::Rejected(format!("blob {digest} is over the {max} byte limit")))?;
        if Digest::of(&body) != digest {
            return Err(FetchError::Rejected(format!(
                "blob content does not match its digest {digest}"
            )));
        }
        Ok(body)
    }

    /// The referrers of `digest` in `repo`: the OCI 1.1 referrers API, or the `sha256-<hex>`
    /// fallback tag on registries without it (one request either way once the registry is
    /// known).
    pub async fn referrers(&self, repo: &ImageRef, digest: &Digest) -> Result<Vec<Descriptor>, FetchError> {
        let index = self.bounded(repo, self.reader.referrers(repo, digest)).await?;
        if index.manifests.len() > self.options.limits.max_signatures {
            return Err(FetchError::Rejected(format!(
                "{} referrers, more than the {} accepted",
                index.manifests.len(),
                self.options.limits.max_signatures
            )));
        }
        Ok(index.manifests)
    }

    /// The index at the referrers fallback tag; empty when the tag does not exist.
    pub async fn fallback_referrers(&self, repo: &ImageRef, digest: &Digest) -> Result<Index, FetchError> {
        self.bounded(repo, self.reader.fallback_referrers(repo, digest))
            .await
    }

    /// Uploads a blob unless the registry has it already.
    pub async fn push_blob(&self, repo: &ImageRef, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let client = self.pusher_for(repo.registry());
        let auth = self.auth(repo);
        self.call(
            "auth",
            repo,
            client.auth(repo.oci(), &auth, RegistryOperation::Push),
        )
        .await?;
        if self
            .call(
                "blob_exists",
                repo,
                client.blob_exists(repo.oci(), digest.as_str()),
            )
            .await?
        {
            return Ok(digest);
        }
        let data = Bytes::copy_from_slice(bytes);
        let push = async {
            match client.push_blob(repo.oci(), data, digest.as_str()).await {
                // go-containerregistry's registry (and others) answer 201 without the Location
                // header the spec asks for. oci-client forgives that for manifests but not for
                // blobs; the blob is there all the same, which one HEAD confirms.
                Err(OciDistributionError::RegistryNoLocationError) => {
                    match client.blob_exists(repo.oci(), digest.as_str()).await? {
                        true => Ok(String::new()),
                        false => Err(OciDistributionError::RegistryNoLocationError),
                    }
                }
                other => other,
            }
        };
        self.call("push_blob", repo, push).await?;
        Ok(digest)
    }

    /// Puts a manifest at `image`'s tag (or digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let client = self.pusher_for(image.registry());
        let auth = self.auth(image);
        let content_type = media_type.parse().map_err(|_| RegistryError::Protocol {
            registry: image.registry().to_string(),
            detail: format!("bad media type {media_type:?}"),
        })?;
        self.call(
            "auth",
            image,
            client.auth(image.oci(), &auth, RegistryOperation::Push),
        )
        .await?;
        let data = Bytes::copy_from_slice(bytes);
        let target = push_target(image);
        self.call(
            "push_manifest",
            image,
            client.push_manifest_raw(&target, data, content_type),
        )
        .await?;
        Ok(Digest::of(bytes))
    }
}

/// A plain-HTTP client never makes a TLS handshake, yet reqwest loads the whole system trust
/// store when it is built (some 300 files here: most of a `countersign verify` against a
/// loopback registry). Handing it one root of its own, which nothing will ever be checked
/// against, skips that. The certificate is self-signed and its key was never kept.
fn placeholder_root() -> Vec<oci_client::client::Certificate> {
    vec![oci_client::client::Certificate {
        encoding: oci_client::client::CertificateEncoding::Pem,
        data: PLACEHOLDER_ROOT_PEM.to_vec(),
    }]
}

pub(super) const PLACEHOLDER_ROOT_PEM: &[u8] = include_bytes!("plain_http_placeholder.pem");

/// The reference a manifest PUT goes to. A push by digest is addressed as a "tag" spelled like
/// the digest: the URL is the same (`/manifests/sha256:…`), and it keeps oci-client 0.18 from
/// panicking in its workaround for registries that answer without a `Location` header (it
/// strips the tag from the URL, and a digest reference has none).
fn push_target(image: &ImageRef) -> oci_client::Reference {
    match (image.tag(), image.digest()) {
        (None, Some(digest)) => oci_client::Reference::with_tag(
            image.oci().registry().to_string(),
            image.repository().to_string(),
            digest.to_string(),
        ),
        _ => image.oci().clone(),
    }
}
