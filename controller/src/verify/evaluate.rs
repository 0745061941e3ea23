//! Deciding: every signature against every key, then the verdict. Pure, so it is tested
//! exhaustively without a registry.

use std::{collections::BTreeSet, sync::Arc};

use super::{Candidate, Fetched, Outcome, SignatureCheck, SignatureFormat, cause};
use crate::{
    formats::{
        FormatError,
        bundle::Bundle,
        decode_base64,
        dsse::{COSIGN_SIGN_PREDICATE, Statement, pae},
        simple_signing::Payload,
    },
    keys::{PublicKey, check_signature_encoding},
    reference::Digest,
    registry::RegistryError,
    sigstore::{self, Artifact, Identity, LegacySignature, TlogPolicy, TrustedRoot},
};

/// A key with the name it has in a trust root (or the file it came from, on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKey {
    pub name: String,
    pub key: PublicKey,
}

/// A keyless signer (certificate identity and issuer) with its name in a trust root: a name in
/// the same namespace as key names, so thresholds and rotations count it like a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedIdentity {
    pub name: String,
    pub identity: Identity,
}

impl AsRef<Identity> for NamedIdentity {
    fn as_ref(&self) -> &Identity {
        &self.identity
    }
}

/// The keys and identities accepted right now, and how many distinct ones must have signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<NamedKey>,
    pub identities: Vec<NamedIdentity>,
    /// What keyless signatures and log entries are verified against (Fulcio CAs, CT logs,
    /// Rekor, TSAs); `None` when there are no identities and the log is not required.
    pub trusted_root: Option<Arc<TrustedRoot>>,
    /// What the transparency log must show.
    pub tlog: TlogPolicy,
    pub threshold: usize,
}

impl KeySet {
    pub fn new(keys: Vec<NamedKey>, threshold: usize) -> Self {
        Self {
            keys,
            identities: Vec::new(),
            trusted_root: None,
            tlog: TlogPolicy::Default,
            threshold: threshold.max(1),
        }
    }

    /// Log entries checked as `tlog` says, against `root`'s logs.
    pub fn with_tlog(mut self, tlog: TlogPolicy, root: Arc<TrustedRoot>) -> Self {
        self.tlog = tlog;
        self.trusted_root = Some(root);
        self
    }

    /// The trusted root, required for a log entry to be checked.
    pub(super) fn log_root(&self) -> Result<&TrustedRoot, Rejection> {
        self.trusted_root.as_deref().ok_or_else(|| {
            Rejection::new(
                sigstore::Failure::NoTlogEntry.category(),
                format!(
                    "{}: the log is required and no trusted root names its keys",
                    sigstore::Failure::NoTlogEntry
                ),
            )
        })
    }

    /// Also accepts keyless signatures by `identities`, certified under `root`.
    pub fn with_identities(mut self, identities: Vec<NamedIdentity>, root: Arc<TrustedRoot>) -> Self {
        self.identities = identities;
        self.trusted_root = Some(root);
        self
    }

    /// Every name that can sign: keys, then identities.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let keys = self.keys.iter().map(|k| k.name.as_str());
        keys.chain(self.identities.iter().map(|i| i.name.as_str()))
    }

    /// The first key that verifies `signature` over `message`, trying the hinted key first.
    pub(super) fn verifying_key(
        &self,
        message: &[u8],
        signature: &[u8],
        hint: Option<&str>,
    ) -> Option<&NamedKey> {
        let hinted = self
            .keys
            .iter()
            .filter(|k| hint.is_some_and(|h| k.key.hint() == h));
        let others = self
            .keys
            .iter()
            .filter(|k| hint.is_none_or(|h| k.key.hint() != h));
        hinted
            .chain(others)
            .find(|k| k.key.verify(message, signature).is_ok())
    }
}

/// Checks every fetched signature and decides the outcome, every key of `keys` accepted.
pub fn evaluate(digest: &Digest, fetched: &Fetched, keys: &KeySet) -> (Outcome, Vec<SignatureCheck>) {
    let checks = check_all(digest, fetched, keys);
    let outcome = decide(&checks, fetched, keys.threshold, |_| None);
    (outcome, checks)
}

/// Every fetched signature against every key: the costly half (signature verification), and
/// the half that does not depend on which keys are accepted right now. The operator keeps it
/// while the signatures and the declared keys stay the same, and decides again when only the
/// acceptance changes (a rotation window opening or closing).
pub fn check_all(digest: &Digest, fetched: &Fetched, keys: &KeySet) -> Vec<SignatureCheck> {
    fetched
        .candidates()
        .filter_map(|c| check(digest, c, keys))
        .collect()
}

/// The outcome of `checks` when `refusal(key)` says why a key that verified a signature is not
/// accepted now (`None`: accepted). A signature by a refused key counts as invalid, with that
/// reason: "retired by KeyRotation …" is what the on-call needs to read.
pub fn decide(
    checks: &[SignatureCheck],
    fetched: &Fetched,
    threshold: usize,
    refusal: impl Fn(&str) -> Option<String>,
) -> Outcome {
    let refused: Vec<String> = checks
        .iter()
        .filter_map(|c| c.key.as_deref())
        .filter_map(|k| refusal(k).map(|why| format!("key {k} {why}")))
        .collect();
    let signed_by: BTreeSet<&str> = checks
        .iter()
        .filter_map(|c| c.key.as_deref())
        .filter(|k| refusal(k).is_none())
        .collect();
    if signed_by.len() >= threshold.max(1) {
        return Outcome::Verified {
            keys: signed_by.into_iter().map(str::to_string).collect(),
        };
    }
    // Short of the threshold, what we could not read might have made the difference.
    if let Some(error) = fetched.error() {
        return Outcome::Error {
            reason: error.to_string(),
            error: error.clone(),
        };
    }
    if checks.is_empty() {
        return Outcome::Unsigned;
    }
    Outcome::Invalid {
        reason: invalid_reason(checks, &signed_by, &refused, threshold),
        causes: invalid_causes(checks, &signed_by, &refused),
    }
}

/// [`invalid_reason`]'s causes, sorted: each rejected signature's category, a refused key,
/// and too few keys when some did verify.
fn invalid_causes(
    checks: &[SignatureCheck],
    signed_by: &BTreeSet<&str>,
    refused: &[String],
) -> Vec<&'static str> {
    let causes: BTreeSet<&'static str> = checks
        .iter()
        .filter_map(|c| c.rejected_category)
        .chain((!refused.is_empty()).then_some(cause::REFUSED_SIGNER))
        .chain((!signed_by.is_empty()).then_some(cause::BELOW_THRESHOLD))
        .collect();
    causes.into_iter().collect()
}

fn invalid_reason(
    checks: &[SignatureCheck],
    signed_by: &BTreeSet<&str>,
    refused: &[String],
    threshold: usize,
) -> String {
    if !signed_by.is_empty() {
        let names: Vec<&str> = signed_by.iter().copied().collect();
        return format!(
            "signed by {} of the {threshold} distinct keys required ({})",
            signed_by.len(),
            names.join(", ")
        );
    }
    let reasons: BTreeSet<&str> = checks
        .iter()
        .filter_map(|c| c.rejected.as_deref())
        .chain(refused.iter().map(String::as_str))
        .collect();
    let noun = if checks.len() == 1 {
        "signature"
    } else {
        "signatures"
    };
    format!(
        "{} {noun}, none valid: {}",
        checks.len(),
        reasons.into_iter().collect::<Vec<_>>().join("; ")
    )
}

/// One candidate against the key set. `None` for bundles that are attestations rather than
/// signatures: they are not counted either way.
fn check(digest: &Digest, candidate: &Candidate, keys: &KeySet) -> Option<SignatureCheck> {
    let (format, source, result) = match candidate {
        Candidate::Legacy {
            layer,
            payload,
            signature,
            evidence,
        } => {
            let legacy = LegacySignature {
                payload,
                signature,
                certificate: evidence.certificate.as_deref(),
                chain: evidence.chain.as_deref(),
                rekor_bundle: evidence.rekor_bundle.as_deref(),
                timestamp: evidence.timestamp.as_deref(),
            };
            (
                SignatureFormat::Legacy,
                layer,
                check_legacy(digest, &legacy, keys),
            )
        }
        Candidate::Bundle { manifest, bundle } => {
            let result = check_bundle(digest, bundle, keys)?;
            (SignatureFormat::Bundle, manifest, result)
        }
        Candidate::Rejected {
            format,
            source,
            reason,
        } => (*format, source, Err(Rejection::new("unreadable", reason.clone()))),
    };
    Some(match result {
        Ok(signed) => SignatureCheck {
            format,
            source: source.clone(),
            key: Some(signed.name),
            fingerprint: Some(signed.fingerprint),
            signer: signed.signer,
            rejected: None,
            rejected_category: None,
            logged: signed.logged,
        },
        Err(rejection) => SignatureCheck {
            format,
            source: source.clone(),
            key: None,
            fingerprint: None,
            signer: None,
            rejected: Some(rejection.reason),
            rejected_category: Some(rejection.category),
            logged: false,
        },
    })
}

/// Who verified a signature: a key, or an identity (with the certificate's claims).
struct Signed {
    name: String,
    fingerprint: String,
    signer: Option<String>,
    /// A log entry of the signature was verified.
    logged: bool,
}

impl Signed {
    fn keyless(identity: &NamedIdentity, signer: &sigstore::Signer, logged: bool) -> Self {
        Self {
            name: identity.name.clone(),
            fingerprint: identity.identity.fingerprint(),
            signer: Some(format!("{} ({})", signer.subject, signer.issuer)),
            logged,
        }
    }

    /// A key-based signature, whose log entry was verified when the log is required.
    fn by_key(key: &NamedKey, keys: &KeySet) -> Self {
        Self {
            logged: keys.tlog == TlogPolicy::Required,
            ..Self::from(key)
        }
    }
}

impl From<&NamedKey> for Signed {
    fn from(key: &NamedKey) -> Self {
        Self {
            name: key.name.clone(),
            fingerprint: key.key.fingerprint(),
            signer: None,
            logged: false,
        }
    }
}

pub(super) const NO_KEY: &str = "no trusted key verifies it";

/// Why one signature does not count: a low-cardinality category (what `SignatureCheck`'s
/// `rejectedCategory` and tests match on) and the detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rejection {
    pub category: &'static str,
    pub reason: String,
}

impl Rejection {
    pub fn new(category: &'static str, reason: impl Into<String>) -> Self {
        Self {
            category,
            reason: reason.into(),
        }
    }

    pub(super) fn no_key() -> Self {
        Self::new("no_trusted_key", NO_KEY)
    }
}

impl From<sigstore::SigstoreError> for Rejection {
    fn from(e: sigstore::SigstoreError) -> Self {
        Self::new(e.category(), e.to_string())
    }
}

impl From<FormatError> for Rejection {
    fn from(e: FormatError) -> Self {
        Self::new("format", e.to_string())
    }
}

impl From<crate::keys::SignatureError> for Rejection {
    fn from(e: crate::keys::SignatureError) -> Self {
        Self::new("format", e.to_string())
    }
}

/// A `.sig` layer: keyless when it carries a certificate, else by key (and its log entry when
/// the log is required); either way the payload must name this digest.
fn check_legacy(digest: &Digest, legacy: &LegacySignature<'_>, keys: &KeySet) -> Result<Signed, Rejection> {
    let signed = match legacy.certificate {
        Some(_) => verify_legacy_keyless(legacy, keys)?,
        None => Signed::by_key(verify_legacy_key(legacy, keys)?, keys),
    };
    let payload = Payload::parse(legacy.payload)?;
    if payload.signed_digest() != digest.as_str() {
        return Err(Rejection::new(
            "other_digest",
            format!(
                "the signed payload names {}, not this image (a signature copied from another image?)",
                payload.signed_digest()
            ),
        ));
    }
    Ok(signed)
}

fn verify_legacy_key<'k>(legacy: &LegacySignature<'_>, keys: &'k KeySet) -> Result<&'k NamedKey, Rejection> {
    let signature = decode_base64("signature annotation", legacy.signature)?;
    check_signature_encoding(&signature)?;
    let key = keys
        .verifying_key(legacy.payload, &signature, None)
        .ok_or_else(Rejection::no_key)?;
    if keys.tlog == TlogPolicy::Required {
        keys.log_root()?
            .verify_legacy_with_key(legacy, key.key.spki_der())?;
    }
    Ok(key)
}

/// A keyless `.sig`: the Sigstore verification of its annotations over the payload, then the
/// identities.
fn verify_legacy_keyless(legacy: &LegacySignature<'_>, keys: &KeySet) -> Result<Signed, Rejection> {
    let root = keyless_root(keys)?;
    let (identity, signer) = root.verify_legacy_identity(legacy, &keys.identities, keys.tlog)?;
    let logged = keys.tlog != TlogPolicy::Optional || legacy.rekor_bundle.is_some();
    Ok(Signed::keyless(identity, &signer, logged))
}

/// The root keyless signatures verify against, when identities are trusted.
pub(super) fn keyless_root(keys: &KeySet) -> Result<&TrustedRoot, Rejection> {
    keys.trusted_root
        .as_deref()
        .filter(|_| !keys.identities.is_empty())
        .ok_or_else(|| {
            Rejection::new(
                "no_identity",
                "signed keylessly (a certificate), and no identity is trusted",
            )
        })
}

/// `None` when the bundle is a well-formed attestation (another predicate type).
fn check_bundle(digest: &Digest, bundle: &[u8], keys: &KeySet) -> Option<Result<Signed, Rejection>> {
    let parsed = match parse_bundle(bundle) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.into())),
    };
    if parsed.statement.predicate_type != COSIGN_SIGN_PREDICATE {
        return None;
    }
    if sigstore::is_keyless_bundle(bundle) {
        return Some(verify_keyless(digest, bundle, keys));
    }
    let verified = verify_bundle(digest, &parsed, keys).and_then(|key| {
        if keys.tlog == TlogPolicy::Required {
            keys.log_root()?.verify_with_key(
                bundle,
                Artifact::Sha256Hex(sha256_hex(digest)?),
                key.key.spki_der(),
            )?;
        }
        Ok(key)
    });
    Some(verified.map(|key| Signed::by_key(key, keys)))
}

/// The hex of a `sha256:` digest: what Sigstore bundles sign.
fn sha256_hex(digest: &Digest) -> Result<&str, Rejection> {
    digest.as_str().strip_prefix("sha256:").ok_or_else(|| {
        Rejection::new(
            "format",
            format!("Sigstore bundles name sha256 digests, not {digest}"),
        )
    })
}

/// A bundle signed with a Fulcio certificate: the whole Sigstore verification (chain, SCT, log,
/// time, signature over this digest), then the identities.
fn verify_keyless(digest: &Digest, bundle: &[u8], keys: &KeySet) -> Result<Signed, Rejection> {
    let root = keyless_root(keys)?;
    let (identity, signer) = root.verify_identity(
        bundle,
        Artifact::Sha256Hex(sha256_hex(digest)?),
        &keys.identities,
        keys.tlog,
    )?;
    let logged = keys.tlog != TlogPolicy::Optional || sigstore::has_tlog_entry(bundle);
    Ok(Signed::keyless(identity, &signer, logged))
}

struct ParsedBundle {
    hint: Option<String>,
    signed: Vec<u8>,
    signatures: Vec<Vec<u8>>,
    statement: Statement,
}

fn parse_bundle(bytes: &[u8]) -> Result<ParsedBundle, FormatError> {
    let bundle = Bundle::parse(bytes)?;
    let envelope = bundle.envelope()?;
    let payload = envelope.payload_bytes()?;
    let statement = Statement::parse(&payload)?;
    let signatures = envelope
        .signatures
        .iter()
        .map(|s| decode_base64("DSSE signature", &s.sig))
        .collect::<Result<_, _>>()?;
    Ok(ParsedBundle {
        hint: bundle
            .verification_material
            .public_key
            .as_ref()
            .map(|k| k.hint.clone()),
        signed: pae(&envelope.payload_type, &payload),
        signatures,
        statement,
    })
}

fn verify_bundle<'k>(
    digest: &Digest,
    bundle: &ParsedBundle,
    keys: &'k KeySet,
) -> Result<&'k NamedKey, Rejection> {
    if let Some(e) = bundle
        .signatures
        .iter()
        .find_map(|s| check_signature_encoding(s).err())
    {
        return Err(e.into());
    }
    let key = bundle
        .signatures
        .iter()
        .find_map(|sig| keys.verifying_key(&bundle.signed, sig, bundle.hint.as_deref()))
        .ok_or_else(Rejection::no_key)?;
    if !bundle.statement.names_digest(digest) {
        return Err(Rejection::new(
            "other_digest",
            format!(
                "the signed statement names {}, not this image",
                bundle.statement.subject_digests().join(", ")
            ),
        ));
    }
    Ok(key)
}

impl Outcome {
    /// For tests and the CLI: an error outcome from a registry error.
    pub fn from_registry_error(error: RegistryError) -> Self {
        Self::Error {
            reason: error.to_string(),
            error,
        }
    }
}

#[cfg(test)]
mod rejection_tests {
    use base64::Engine as _;
    use bytes::Bytes;

    use super::*;
    use crate::{formats::simple_signing::Evidence, keys::SigningKey, verify::Found};

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    fn legacy(signature: String) -> Candidate {
        Candidate::Legacy {
            layer: "sha256:layer".into(),
            payload: Bytes::from_static(b"{}"),
            signature,
            evidence: Evidence::default(),
        }
    }

    /// The category of each signature's rejection, as `--output json` prints it.
    fn categories(candidates: Vec<Candidate>, keys: &KeySet) -> Vec<Option<&'static str>> {
        let fetched = Fetched {
            legacy: Ok(Found {
                revision: "r".into(),
                candidates,
            }),
            bundles: Ok(Found::default()),
        };
        check_all(&digest(), &fetched, keys)
            .iter()
            .map(|c| c.rejected_category)
            .collect()
    }

    #[test]
    fn rejections_name_their_category() {
        let key = SigningKey::generate();
        let other = SigningKey::generate().sign(b"{}");
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let keys = KeySet::new(
            vec![NamedKey {
                name: "ci".into(),
                key: key.public_key(),
            }],
            1,
        );
        let candidates = vec![
            legacy("not base64!".into()),
            legacy(b64(&other)),
            Candidate::Rejected {
                format: SignatureFormat::Bundle,
                source: "sha256:m".into(),
                reason: "too large".into(),
            },
        ];
        assert_eq!(
            categories(candidates, &keys),
            [Some("format"), Some("no_trusted_key"), Some("unreadable")]
        );
    }

    /// What `decide` says is wrong, for scripts: each rejection's category, a refused key, and
    /// too few keys when some did verify.
    #[test]
    fn an_invalid_outcome_names_its_causes() {
        let check = |key: Option<&str>, category: Option<&'static str>| SignatureCheck {
            format: SignatureFormat::Legacy,
            source: "sha256:layer".into(),
            key: key.map(str::to_string),
            fingerprint: None,
            signer: None,
            rejected: category.map(|c| format!("rejected: {c}")),
            rejected_category: category,
            logged: false,
        };
        let fetched = Fetched {
            legacy: Ok(Found::default()),
            bundles: Ok(Found::default()),
        };
        let causes = |checks: &[SignatureCheck], threshold| {
            let refusal = |k: &str| (k == "old").then(|| "retired by KeyRotation r".to_string());
            match decide(checks, &fetched, threshold, refusal) {
                Outcome::Invalid { causes, .. } => causes,
                other => panic!("not invalid: {other:?}"),
            }
        };
        let rejected = [
            check(None, Some("no_trusted_key")),
            check(None, Some("format")),
            check(None, Some("no_trusted_key")),
        ];
        assert_eq!(causes(&rejected, 1), ["format", "no_trusted_key"]);
        let one_of_two = [check(Some("ci"), None), check(None, Some("no_trusted_key"))];
        assert_eq!(causes(&one_of_two, 2), ["below_threshold", "no_trusted_key"]);
        assert_eq!(causes(&[check(Some("old"), None)], 1), ["refused_signer"]);
    }

    #[test]
    fn a_required_log_without_a_trusted_root_is_no_tlog_entry() {
        let key = SigningKey::generate();
        let mut keys = KeySet::new(
            vec![NamedKey {
                name: "ci".into(),
                key: key.public_key(),
            }],
            1,
        );
        keys.tlog = TlogPolicy::Required;
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(b"{}"));
        assert_eq!(
            categories(vec![legacy(signature)], &keys),
            [Some("no_tlog_entry")]
        );
    }
}
