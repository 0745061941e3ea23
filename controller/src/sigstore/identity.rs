//! Who may sign keylessly: a certificate identity (SAN) and OIDC issuer, each exact or a regular
//! expression, as cosign's `--certificate-identity[-regexp]` and
//! `--certificate-oidc-issuer[-regexp]`.

use sha2::{Digest as _, Sha256};

use super::SigstoreError;

/// The claims of a verified Fulcio certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The SAN: an email address, or a URI (a CI workflow, a SPIFFE ID).
    pub subject: String,
    /// The OIDC issuer extension (1.3.6.1.4.1.57264.1.8, or the deprecated .1.1).
    pub issuer: String,
}

impl Signer {
    /// The signer a verified certificate names. A claim the certificate lacks is empty: no exact
    /// identity matches it, so a certificate without a SAN or an issuer is nobody's.
    pub fn from_claims(subject: Option<&str>, issuer: Option<&str>) -> Self {
        Self {
            subject: subject.unwrap_or_default().to_string(),
            issuer: issuer.unwrap_or_default().to_string(),
        }
    }
}

/// One value to match: exact, or a regular expression.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    /// Unanchored, as cosign's (Go's `regexp.MatchString`): write `^…$` to match the whole value.
    Regex(regex::Regex),
}

impl Pattern {
    /// `exact` or `regexp`, whichever is set (callers validate that exactly one is); `field`
    /// names the regexp in errors (`spec.identities[0].subjectRegExp`, `--certificate-identity-regexp`).
    pub fn new(exact: Option<&str>, regexp: Option<&str>, field: &str) -> Result<Self, SigstoreError> {
        match (exact, regexp) {
            (Some(e), None) => Ok(Self::Exact(e.to_string())),
            (None, Some(r)) => regex::Regex::new(r)
                .map(Self::Regex)
                .map_err(|e| SigstoreError::Pattern {
                    field: field.to_string(),
                    detail: e.to_string(),
                }),
            _ => Err(SigstoreError::Pattern {
                field: field.to_string(),
                detail: "set exactly one of the exact value and the regular expression".into(),
            }),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(e) => e == value,
            Self::Regex(r) => r.is_match(value),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Exact(e) => format!("exact:{e}"),
            Self::Regex(r) => format!("regexp:{}", r.as_str()),
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.describe() == other.describe()
    }
}
impl Eq for Pattern {}

/// A trusted keyless signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Pattern,
    pub issuer: Pattern,
}

impl AsRef<Identity> for Identity {
    fn as_ref(&self) -> &Identity {
        self
    }
}

impl Identity {
    pub fn matches(&self, signer: &Signer) -> bool {
        self.subject.matches(&signer.subject) && self.issuer.matches(&signer.issuer)
    }

    /// Hex SHA-256 of what is matched: plays the part a key's fingerprint plays (status, and
    /// "the same identity" for a retired one).
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "subject {}\nissuer {}",
            self.subject.describe(),
            self.issuer.describe()
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}
