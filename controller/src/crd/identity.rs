//! Keyless signers of a TrustRoot (`spec.identities`) and the Sigstore trusted root they are
//! certified under (`spec.trustedRoot`), with their validation.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::FieldError;
use crate::sigstore::{Identity, Pattern};

/// A keyless signer: whoever holds a Fulcio certificate with this identity from this OIDC
/// issuer, as cosign's `--certificate-identity[-regexp]` and `--certificate-oidc-issuer[-regexp]`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.subject) != has(self.subjectRegExp)")
        .message("an identity needs exactly one of subject and subjectRegExp"),
    validation = Rule::new("has(self.issuer) != has(self.issuerRegExp)")
        .message("an identity needs exactly one of issuer and issuerRegExp"),
)]
pub struct TrustRootIdentity {
    /// A stable name for the identity (e.g. `release-workflow`), in the same namespace as key
    /// names: thresholds count it as one signer, KeyRotations may rotate from or to it, events
    /// and status name it. Lowercase letters, digits, '-' and '.', starting and ending with a
    /// letter or digit.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')")
        .message("identity name must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. release-workflow)"))]
    pub name: String,

    /// The certificate's identity (its SAN: an email address, or a URI such as
    /// `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,

    /// A regular expression (RE2 syntax, unanchored as cosign's: use `^…$` to match the whole
    /// value) the certificate's identity must match.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "subjectRegExp")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject_regexp: Option<String>,

    /// The OIDC issuer recorded in the certificate, exactly (e.g.
    /// `https://token.actions.githubusercontent.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,

    /// A regular expression (RE2 syntax, unanchored) the certificate's OIDC issuer must match.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "issuerRegExp")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer_regexp: Option<String>,
}

/// Where the Sigstore `trusted_root.json` comes from; unset means the public-good instance's,
/// shipped in countersign.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.configMapRef)")
    .message("trustedRoot needs exactly one source: set one of secretRef or configMapRef (omit trustedRoot for the public-good instance)"))]
pub struct TrustedRootSource {
    /// A Secret holding the `trusted_root.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<TrustedRootRef>,

    /// A ConfigMap holding the `trusted_root.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<TrustedRootRef>,
}

/// A data key of a namespaced Secret or ConfigMap that holds a `trusted_root.json`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootRef {
    /// The name of the Secret or ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Its namespace (TrustRoots are cluster-scoped, so there is no default).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// The data key holding the JSON; defaults to `trusted_root.json`.
    #[serde(default = "default_trusted_root_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')")
        .message("key must be a valid Secret/ConfigMap data key: letters, digits, '-', '_' and '.'"))]
    pub key: String,
}

fn default_trusted_root_key() -> String {
    "trusted_root.json".into()
}

impl TrustRootIdentity {
    /// The matcher, or the problem at its field (`spec.identities[0].subjectRegExp: …`).
    pub fn compile(&self, at: &str) -> Result<Identity, FieldError> {
        let pattern = |exact: &Option<String>, regexp: &Option<String>, field: &str, regexp_field: &str| {
            let path = match (exact, regexp) {
                (None, Some(_)) => format!("{at}.{regexp_field}"),
                _ => format!("{at}.{field}"),
            };
            Pattern::new(exact.as_deref(), regexp.as_deref(), &path).map_err(|e| match e {
                crate::sigstore::SigstoreError::Pattern { detail, .. } => FieldError::new(
                    path,
                    if exact.is_some() == regexp.is_some() {
                        format!("set exactly one of {field} and {regexp_field}")
                    } else {
                        detail
                    },
                ),
                other => FieldError::new(path, other.to_string()),
            })
        };
        Ok(Identity {
            subject: pattern(&self.subject, &self.subject_regexp, "subject", "subjectRegExp")?,
            issuer: pattern(&self.issuer, &self.issuer_regexp, "issuer", "issuerRegExp")?,
        })
    }
}
