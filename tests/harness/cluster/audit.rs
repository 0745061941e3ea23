//! The API server's audit log: what it records ([`AUDIT_POLICY`]) and one record read back
//! ([`Audited`]), so that tests learn of requests from the API server itself, in fields.

use anyhow::{Context, Result};

/// The API server's audit log, in the cluster's dir.
pub(super) const AUDIT_LOG: &str = "audit.log";

/// What the API server audits: the requests of ServiceAccounts (the identities least-privilege
/// tests run as), at `Metadata` level (who, what, the response code; no bodies), once each when
/// answered. The control plane's own components act as the admin and are left out, so a
/// benchmark's thousands of pods cost nothing here.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: [\"system:serviceaccounts\"]
- level: None
";

/// One audited request (an `audit.k8s.io/v1` Event, the fields tests need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audited {
    /// `ResponseStarted` (a watch began) or `ResponseComplete`.
    pub stage: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, …
    pub verb: String,
    /// `resource` or `resource/subresource`, e.g. `deployments`, `trustroots/status`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub request_uri: String,
    /// The HTTP status code of the answer (0 if the event has none).
    pub code: u16,
}

impl Audited {
    pub(super) fn parse(line: &str) -> Result<Self> {
        let event: serde_json::Value = serde_json::from_str(line).context("an audit event")?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let object = &event["objectRef"];
        let resource = match (text(&object["resource"]), text(&object["subresource"])) {
            (Some(r), Some(sub)) => format!("{r}/{sub}"),
            (r, _) => r.unwrap_or_default(),
        };
        Ok(Self {
            stage: text(&event["stage"]).context("stage")?,
            user: text(&event["user"]["username"]).context("user.username")?,
            verb: text(&event["verb"]).context("verb")?,
            resource,
            namespace: text(&object["namespace"]),
            name: text(&object["name"]),
            request_uri: text(&event["requestURI"]).unwrap_or_default(),
            // Every answered request has one; 0 stands for none rather than failing the read.
            code: event["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
        })
    }
}

impl std::fmt::Display for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} ({}) by {}",
            self.code, self.verb, self.resource, self.request_uri, self.user
        )
    }
}
