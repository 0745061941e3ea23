//! The operator's one error type. Every failure the controller can hit while running lands here,
//! with a low-cardinality [`Error::category`] that labels the `countersign_reconcile_errors_total`
//! metric (never the message: it carries names and would make the series count unbounded).

/// Something the operator could not do. None of these is a verdict: a failed write is retried
/// on the next pass, a failed read keeps what was known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setting up: a flag or the environment is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A list/watch of the API server failed (the watcher retries with backoff).
    #[error("watching {resource}: {source}")]
    Watch {
        resource: &'static str,
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// A Secret or ConfigMap a TrustRoot key or a pull secret refers to could not be read.
    #[error("reading {kind} {namespace}/{name}: {source}")]
    ReadObject {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Applying or deleting a workload's WorkloadVerdict failed.
    #[error("recording the verdict of {workload}: {source}")]
    Record {
        workload: String,
        #[source]
        source: kube::Error,
    },
    /// Removing the verdict annotations an earlier version wrote on a workload failed.
    #[error("annotating {workload}: {source}")]
    Annotate {
        workload: String,
        #[source]
        source: kube::Error,
    },
    /// Publishing an Event failed.
    #[error("publishing {reason} event on {workload}: {source}")]
    Event {
        reason: &'static str,
        workload: String,
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of a TrustRoot's status failed.
    #[error("updating the status of TrustRoot {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of a KeyRotation's status failed.
    #[error("updating the status of KeyRotation {name}: {source}")]
    RotationStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Applying or deleting a namespace's PolicyReport (`--policy-reports`) failed.
    #[error("writing the PolicyReport of namespace {namespace}: {source}")]
    Report {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    /// The Lease could not be acquired (API error), or was lost while leading.
    #[error("leader election: {0}")]
    Leadership(String),
    /// The metrics/probes server could not run.
    #[error("{0}")]
    Http(#[source] std::io::Error),
}

impl Error {
    /// A stable, low-cardinality name for metrics labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Watch { .. } => "watch",
            Self::ReadObject { .. } => "read_object",
            Self::Record { .. } => "record",
            Self::Annotate { .. } => "annotate",
            Self::Event { .. } => "event",
            Self::Status { .. } | Self::RotationStatus { .. } => "status",
            Self::Report { .. } => "policy_report",
            Self::Leadership(_) => "leadership",
            Self::Http(_) => "http",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_distinct_and_snake_case() {
        let io = || std::io::Error::other("x");
        let errors = [
            Error::Config("x".into()),
            Error::Leadership("x".into()),
            Error::Http(io()),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in &errors {
            let c = e.category();
            assert!(c.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{c}");
            assert!(seen.insert(c), "{c} twice");
        }
    }
}
