//! Attestation checks on hand-made attestations in both layouts.

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::{
    formats::{attestation::legacy_statement, dsse::STATEMENT_V1},
    keys::SigningKey,
    sign::signed_envelope,
    verify::{Found, NamedKey, SignatureFormat},
};

const SLSA1: &str = "https://slsa.dev/provenance/v1";

fn keys(key: &SigningKey) -> KeySet {
    KeySet::new(
        vec![NamedKey {
            name: "ci".into(),
            key: key.public_key(),
        }],
        1,
    )
}

fn legacy(
    key: &SigningKey,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Candidate {
    let statement = legacy_statement("r/app", digest, predicate_type, &predicate);
    let envelope = serde_json::to_vec(&signed_envelope(key, &statement)).unwrap();
    Candidate::Legacy {
        layer: "sha256:layer".into(),
        payload: Bytes::from(envelope),
        signature: String::new(),
        evidence: Default::default(),
    }
}

fn bundle(
    key: &SigningKey,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Candidate {
    let statement = crate::formats::dsse::Statement {
        kind: STATEMENT_V1.into(),
        subject: vec![crate::formats::dsse::Subject {
            name: String::new(),
            digest: [("sha256".to_string(), digest.hex().to_string())].into(),
            annotations: None,
        }],
        predicate_type: predicate_type.into(),
        predicate,
    };
    let envelope = signed_envelope(key, &statement.to_bytes());
    Candidate::Bundle {
        manifest: "sha256:referrer".into(),
        bundle: Bytes::from(Bundle::for_key(key.public_key().hint(), envelope).to_bytes()),
    }
}

fn fetched(legacy: Vec<Candidate>, bundles: Vec<Candidate>) -> Fetched {
    let found = |candidates| {
        Ok(Found {
            revision: "r".into(),
            candidates,
        })
    };
    Fetched {
        legacy: found(legacy),
        bundles: found(bundles),
    }
}

fn require(policy: Option<&str>) -> Vec<Requirement> {
    vec![Requirement {
        predicate_type: SLSA1.into(),
        policy: policy.map(|p| PredicatePolicy::compile(p).unwrap()),
    }]
}

fn state(digest: &Digest, f: &Fetched, k: &KeySet, r: &[Requirement]) -> AttestationState {
    check_attestations(digest, f, k, r, |_| None).remove(0).state
}

#[test]
fn both_layouts_verify_and_pass_a_policy() {
    let key = SigningKey::generate();
    let d = Digest::of(b"app");
    let p = json!({"buildDefinition": {"buildType": "ci"}});
    let policy = Some("predicate.buildDefinition.buildType == 'ci'");
    for f in [
        fetched(vec![legacy(&key, &d, SLSA1, p.clone())], vec![]),
        fetched(vec![], vec![bundle(&key, &d, SLSA1, p.clone())]),
    ] {
        assert_eq!(
            state(&d, &f, &keys(&key), &require(policy)),
            AttestationState::Verified { signer: "ci".into() }
        );
    }
}

#[test]
fn each_failure_has_its_own_state() {
    let key = SigningKey::generate();
    let other_key = SigningKey::generate();
    let d = Digest::of(b"app");
    let p = json!({"buildDefinition": {"buildType": "ci"}});
    let k = keys(&key);
    // Missing: only another predicate type.
    let f = fetched(
        vec![legacy(&key, &d, "https://spdx.dev/Document", p.clone())],
        vec![],
    );
    assert_eq!(state(&d, &f, &k, &require(None)), AttestationState::Missing);
    // Another digest.
    let f = fetched(
        vec![legacy(&key, &Digest::of(b"other"), SLSA1, p.clone())],
        vec![],
    );
    assert_eq!(state(&d, &f, &k, &require(None)).name(), "OtherDigest");
    // Wrong key.
    let f = fetched(vec![], vec![bundle(&other_key, &d, SLSA1, p.clone())]);
    assert_eq!(state(&d, &f, &k, &require(None)).name(), "BadSignature");
    // Policy.
    let f = fetched(vec![legacy(&key, &d, SLSA1, p.clone())], vec![]);
    let s = state(
        &d,
        &f,
        &k,
        &require(Some("predicate.buildDefinition.buildType == 'other'")),
    );
    assert_eq!(
        s,
        AttestationState::PolicyFailed {
            expression: "predicate.buildDefinition.buildType == 'other'".into(),
            detail: "evaluated to false".into()
        }
    );
    // The closest miss wins: a policy failure over a bad signature.
    let f = fetched(
        vec![legacy(&key, &d, SLSA1, p.clone())],
        vec![bundle(&other_key, &d, SLSA1, p.clone())],
    );
    assert_eq!(state(&d, &f, &k, &require(Some("false"))).name(), "PolicyFailed");
    // And one good attestation is enough.
    let f = fetched(
        vec![legacy(&key, &Digest::of(b"other"), SLSA1, p.clone())],
        vec![bundle(&key, &d, SLSA1, p)],
    );
    assert_eq!(state(&d, &f, &k, &require(None)).name(), "Verified");
}

#[test]
fn a_refused_signer_and_a_registry_error() {
    let key = SigningKey::generate();
    let d = Digest::of(b"app");
    let f = fetched(vec![legacy(&key, &d, SLSA1, json!({}))], vec![]);
    let checks = check_attestations(&d, &f, &keys(&key), &require(None), |_| Some("is retired".into()));
    assert_eq!(
        checks[0].state,
        AttestationState::BadSignature {
            category: "refused_signer",
            reason: "ci is retired".into()
        }
    );
    assert_eq!(
        checks[0].state.cause().as_deref(),
        Some("attestation_refused_signer")
    );
    let f = Fetched {
        legacy: Ok(Found::default()),
        bundles: Err(crate::registry::RegistryError::NotFound),
    };
    assert_eq!(state(&d, &f, &keys(&key), &require(None)).name(), "Error");
    let _ = SignatureFormat::Legacy;
}

/// The category of the one requirement's `BadSignature`.
fn rejected(d: &Digest, f: &Fetched, k: &KeySet) -> &'static str {
    match state(d, f, k, &require(None)) {
        AttestationState::BadSignature { category, .. } => category,
        other => panic!("not a bad signature: {other:?}"),
    }
}

/// A keyless `.att` layer (a certificate annotation) is verified by identity and, as a keyless
/// signature, needs a log entry unless the log is optional. Here it has neither a log entry nor
/// a timestamp, so with the log optional nothing says when it was signed. A key-signed one needs
/// a log entry only when the log is required.
#[test]
fn keyless_att_layers_need_an_identity_and_a_log_entry_or_timestamp() {
    use crate::sigstore::{Identity, Pattern, TrustedRoot};
    let key = SigningKey::generate();
    let d = Digest::of(b"app");
    let mut layer = legacy(&key, &d, SLSA1, json!({}));
    if let Candidate::Legacy { evidence, .. } = &mut layer {
        evidence.certificate = Some("not a certificate".into());
    }
    let f = fetched(vec![layer], vec![]);
    assert_eq!(rejected(&d, &f, &KeySet::new(Vec::new(), 1)), "no_identity");
    let anyone = super::super::NamedIdentity {
        name: "anyone".into(),
        identity: Identity {
            subject: Pattern::new(None, Some(".*"), "s").unwrap(),
            issuer: Pattern::new(None, Some(".*"), "i").unwrap(),
        },
    };
    let root = TrustedRoot::public_good().unwrap();
    let mut k = KeySet::new(Vec::new(), 1).with_identities(vec![anyone], root.clone());
    for (tlog, category) in [
        (TlogPolicy::Default, "no_tlog_entry"),
        (TlogPolicy::Required, "no_tlog_entry"),
        (TlogPolicy::Optional, "no_trusted_time"),
    ] {
        k.tlog = tlog;
        assert_eq!(rejected(&d, &f, &k), category, "{tlog:?}");
    }
    let f = fetched(vec![legacy(&key, &d, SLSA1, json!({}))], vec![]);
    let k = keys(&key).with_tlog(TlogPolicy::Required, root);
    assert_eq!(rejected(&d, &f, &k), "no_tlog_entry");
}

/// With the log required, a key-signed `.att` layer counts by its Rekor v1 entry (the tests'
/// own log, a dsse entry as cosign v2 logs by default): one of this envelope by this key
/// verifies; one of another envelope or by another key, or one under a log the root does not
/// list, is `untrusted_log`.
#[test]
fn key_signed_att_layers_count_by_their_log_entry_when_required() {
    use crate::sigstore::test_log::{TestLog, dsse_body};
    let key = SigningKey::generate();
    let d = Digest::of(b"app");
    let log = TestLog::new();
    let root = log.root.clone();
    let layer = legacy(&key, &d, SLSA1, json!({}));
    let Candidate::Legacy {
        payload: envelope, ..
    } = &layer
    else {
        unreachable!()
    };
    let claimed = Claimed::from_envelope_json(envelope).unwrap();
    let signature = decode_base64("sig", &claimed.envelope.signatures[0].sig).unwrap();
    let logged = |envelope: &[u8], signer: &SigningKey| {
        let mut layer = layer.clone();
        let pem = signer.public_key().to_pem();
        let body = dsse_body(envelope, &claimed.payload, &signature, &pem);
        if let Candidate::Legacy { evidence, .. } = &mut layer {
            evidence.rekor_bundle = Some(log.entry(&body));
        }
        fetched(vec![layer], vec![])
    };
    let k = keys(&key).with_tlog(TlogPolicy::Required, root.clone());
    let f = logged(envelope, &key);
    assert_eq!(
        state(&d, &f, &k, &require(None)),
        AttestationState::Verified { signer: "ci".into() }
    );
    assert_eq!(rejected(&d, &logged(b"{}", &key), &k), "untrusted_log");
    assert_eq!(
        rejected(&d, &logged(envelope, &SigningKey::generate()), &k),
        "untrusted_log"
    );
    let elsewhere = keys(&key).with_tlog(TlogPolicy::Required, TestLog::new().root);
    assert_eq!(rejected(&d, &f, &elsewhere), "untrusted_log");
    // Not required: the log is not looked up, the envelope's signature is enough.
    assert_eq!(
        state(&d, &logged(b"{}", &key), &keys(&key), &require(None)).name(),
        "Verified"
    );
}
