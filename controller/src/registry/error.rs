//! Registry errors, classified so that "the registry said it is not there" never gets confused
//! with "we could not ask".

use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};

/// A failure to talk to a registry. Every variant except [`RegistryError::NotFound`] means the
/// answer is unknown: callers must not turn it into a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The manifest, tag or blob does not exist.
    #[error("not found")]
    NotFound,
    /// 401/403: missing or wrong credentials.
    #[error("{registry}: authentication failed: {detail}")]
    Unauthorized { registry: String, detail: String },
    /// 429. `retry_after` when the registry said how long to wait.
    #[error("{registry}: rate limited (429)")]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("{registry}: server error {status}")]
    Server { registry: String, status: u16 },
    /// A request or the whole verification took too long.
    #[error("{registry}: timed out")]
    Timeout { registry: String },
    /// Connection refused, reset, DNS, TLS.
    #[error("{registry}: unreachable: {detail}")]
    Unreachable { registry: String, detail: String },
    /// The registry answered something that is not the protocol (an unexpected status, a
    /// digest that does not match the content).
    #[error("{registry}: {detail}")]
    Protocol { registry: String, detail: String },
}

impl RegistryError {
    /// A low-cardinality name for metrics labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Timeout { .. } => "timeout",
            Self::Unreachable { .. } => "unreachable",
            Self::Protocol { .. } => "protocol",
        }
    }

    /// Worth trying again later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout { .. } | Self::Unreachable { .. }
        )
    }

    /// Classifies an oci-client error for requests to `registry`.
    pub fn from_oci(registry: &str, error: OciDistributionError) -> Self {
        let registry = registry.to_string();
        match error {
            OciDistributionError::ImageManifestNotFoundError(_) => Self::NotFound,
            OciDistributionError::AuthenticationFailure(detail) => Self::Unauthorized { registry, detail },
            OciDistributionError::UnauthorizedError { url } => Self::Unauthorized {
                registry,
                detail: format!("401 from {url}"),
            },
            OciDistributionError::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                from_error_codes(registry, &codes, &url)
            }
            OciDistributionError::ServerError { code, url, .. } => from_status(registry, code, None, &url),
            OciDistributionError::RequestError(e) => from_reqwest(registry, &e),
            other => Self::Protocol {
                registry,
                detail: other.to_string(),
            },
        }
    }
}

impl RegistryError {
    /// Classifies a non-success answer of `registry` to a request for `url`, as oci-client
    /// does (so that both halves of the client agree): a client error with an OCI error
    /// envelope by its codes (a 404 means "not found" only if every code says so), anything
    /// else by its status. A 429 keeps its `Retry-After`.
    pub(super) fn from_status(
        registry: &str,
        status: u16,
        retry_after: Option<Duration>,
        url: &str,
        body: &[u8],
    ) -> Self {
        let registry = registry.to_string();
        if matches!(status, 401 | 403 | 429) {
            return from_status(registry, status, retry_after, url);
        }
        match serde_json::from_slice::<OciEnvelope>(body) {
            Ok(envelope) if (400..500).contains(&status) => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                from_error_codes(registry, &codes, url)
            }
            _ => from_status(registry, status, retry_after, url),
        }
    }

    /// A request that got no answer: refused, reset, timed out, TLS.
    pub(super) fn from_transport(registry: &str, error: &impl std::error::Error) -> Self {
        from_reqwest(registry.to_string(), error)
    }
}

fn from_status(registry: String, status: u16, retry_after: Option<Duration>, url: &str) -> RegistryError {
    match status {
        404 => RegistryError::NotFound,
        401 | 403 => RegistryError::Unauthorized {
            registry,
            detail: format!("{status} from {url}"),
        },
        429 => RegistryError::RateLimited {
            registry,
            retry_after,
        },
        500..=599 => RegistryError::Server { registry, status },
        _ => RegistryError::Protocol {
            registry,
            detail: format!("unexpected status {status} from {url}"),
        },
    }
}

fn from_error_codes(registry: String, codes: &[&OciErrorCode], url: &str) -> RegistryError {
    use OciErrorCode as C;
    let not_found = |c: &&&OciErrorCode| {
        matches!(
            c,
            C::ManifestUnknown | C::BlobUnknown | C::NameUnknown | C::NotFound
        )
    };
    if !codes.is_empty() && codes.iter().all(|c| not_found(&c)) {
        return RegistryError::NotFound;
    }
    if codes.iter().any(|c| matches!(c, C::Unauthorized | C::Denied)) {
        return RegistryError::Unauthorized {
            registry,
            detail: format!("denied by {url}"),
        };
    }
    if codes.iter().any(|c| matches!(c, C::Toomanyrequests)) {
        return RegistryError::RateLimited {
            registry,
            retry_after: None,
        };
    }
    RegistryError::Protocol {
        registry,
        detail: format!("registry error {codes:?} from {url}"),
    }
}

fn from_reqwest(registry: String, e: &impl std::error::Error) -> RegistryError {
    // reqwest's own classification is behind its type; its Display and sources say enough.
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if detail.contains("timed out") || detail.contains("deadline") {
        RegistryError::Timeout { registry }
    } else {
        RegistryError::Unreachable { registry, detail }
    }
}
