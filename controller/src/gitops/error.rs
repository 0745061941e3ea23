//! What can go wrong while syncing a TrustSource, with a low-cardinality [`Error::category`]
//! (metric label) and [`Error::reason`] (the Ready condition's reason and the `SyncFailure`'s).
//!
//! Messages never carry credentials: URLs are printed without their user-info (see
//! [`super::url::redact`]) and nothing read from a Secret is ever formatted.

use crate::crd::{FieldError, SyncFailure};

/// Where in a revision a problem is: file, document index and field, each when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    pub document: Option<usize>,
    pub field: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(file.clone());
        }
        if let Some(d) = self.document {
            parts.push(format!("document {d}"));
        }
        if let Some(field) = &self.field {
            parts.push(field.clone());
        }
        f.write_str(&parts.join(": "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TrustSource's own spec cannot be used (a duration, a missing Secret key, …).
    #[error("{0}")]
    Spec(FieldError),
    /// A Secret or ConfigMap it refers to could not be read or lacks a key.
    #[error("{0}")]
    Credentials(String),
    /// The repository could not be fetched (network, authentication, ref not found).
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// The server's SSH host key is not the one trusted.
    #[error("fetching {url}: {message}")]
    HostKey { url: String, message: String },
    /// The server's TLS certificate is not trusted: not issued by `ca.crt` (or, without it, the
    /// system's roots), expired, or for another host.
    #[error("fetching {url}: TLS: {message}")]
    Certificate { url: String, message: String },
    /// The fetch took longer than `spec.timeout`, or transferred more than the size limit.
    #[error("fetching {url}: {message}")]
    Limit { url: String, message: String },
    /// The commit in force is not signed by an allowed signer.
    #[error("commit {commit}: {message}")]
    Signature { commit: String, message: String },
    /// A file or document of the revision is refused; nothing is applied.
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
    /// The apiserver refused an object (dry run or apply); nothing (dry run) or part of the
    /// revision (apply) is applied.
    #[error("{location}: {message}")]
    Apply { location: Location, message: String },
    /// Listing, pruning or writing status failed.
    #[error("{0}")]
    Kube(String),
}

impl Error {
    /// A stable, low-cardinality name for metrics labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Spec(_) => "spec",
            Self::Credentials(_) => "credentials",
            Self::Fetch { .. } => "fetch",
            Self::HostKey { .. } => "host_key",
            Self::Certificate { .. } => "certificate",
            Self::Limit { .. } => "limit",
            Self::Signature { .. } => "signature",
            Self::Invalid { .. } => "invalid_object",
            Self::Apply { .. } => "apply",
            Self::Kube(_) => "kube",
        }
    }

    /// The Ready condition's reason (CamelCase, as Kubernetes writes reasons).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spec(_) => "InvalidSpec",
            Self::Credentials(_) => "CredentialsUnavailable",
            Self::Fetch { .. } => "FetchFailed",
            Self::HostKey { .. } => "HostKeyMismatch",
            Self::Certificate { .. } => "CertificateInvalid",
            Self::Limit { .. } => "LimitExceeded",
            Self::Signature { .. } => "SignatureInvalid",
            Self::Invalid { .. } => "InvalidObject",
            Self::Apply { .. } => "ApplyFailed",
            Self::Kube(_) => "ApiError",
        }
    }

    /// Whether trying again soon may help (network, apiserver), as opposed to waiting for a new
    /// commit or a spec change.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Fetch { .. } | Self::Limit { .. } | Self::Kube(_))
    }

    /// What status says about it.
    pub fn failure(&self) -> SyncFailure {
        let (location, message) = match self {
            Self::Invalid { location, message } | Self::Apply { location, message } => {
                (location.clone(), message.clone())
            }
            Self::Spec(e) => (
                Location {
                    field: Some(e.path.clone()),
                    ..Location::default()
                },
                e.message.clone(),
            ),
            other => (Location::default(), other.to_string()),
        };
        SyncFailure {
            reason: self.reason().into(),
            file: location.file,
            document: location.document.and_then(|d| i32::try_from(d).ok()),
            field: location.field,
            message: crate::operator::verdict::truncate_to(&message, 2048),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An invalid-object error at `file`, document `document`, field `field`.
pub fn invalid(
    file: &str,
    document: Option<usize>,
    field: Option<&str>,
    message: impl Into<String>,
) -> Error {
    Error::Invalid {
        location: Location {
            file: Some(file.into()),
            document,
            field: field.map(Into::into),
        },
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_snake_case_and_reasons_camel_case() {
        let errors = [
            Error::Spec(FieldError::new("spec.interval", "x")),
            Error::Credentials("x".into()),
            Error::Fetch {
                url: "u".into(),
                message: "m".into(),
            },
            invalid("a.yaml", Some(1), Some("spec.keys"), "bad"),
            Error::Kube("x".into()),
        ];
        for e in &errors {
            assert!(e.category().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(e.reason().starts_with(|c: char| c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn invalid_objects_name_file_document_and_field() {
        let e = invalid(
            "roots/a.yaml",
            Some(2),
            Some("spec.keys[0].publicKey"),
            "not a PEM",
        );
        assert_eq!(
            e.to_string(),
            "roots/a.yaml: document 2: spec.keys[0].publicKey: not a PEM"
        );
        let f = e.failure();
        assert_eq!(
            (
                f.reason.as_str(),
                f.file.as_deref(),
                f.document,
                f.field.as_deref()
            ),
            (
                "InvalidObject",
                Some("roots/a.yaml"),
                Some(2),
                Some("spec.keys[0].publicKey")
            )
        );
        assert_eq!(f.message, "not a PEM");
    }
}
