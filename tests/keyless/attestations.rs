//! `countersign verify-attestation` on keyless attestations: cosign v3 bundles and cosign v2
//! `.att` layers, in the CLI and through the engine.

use super::*;

/// What `countersign verify-attestation` answered for the first requirement.
#[derive(Debug, PartialEq)]
struct AttVerdict {
    code: Option<i32>,
    /// `attestations[0].state`.
    state: String,
    /// `attestations[0].rejectedCategory`, for a bad signature.
    category: Option<String>,
}

impl AttVerdict {
    fn new(code: i32, state: &str, category: Option<&str>) -> Self {
        Self {
            code: Some(code),
            state: state.into(),
            category: category.map(str::to_string),
        }
    }
}

/// `countersign verify-attestation --type slsaprovenance1` with identity flags and `extra`.
fn verify_attestation(
    stack: &SigstoreStack,
    image: &str,
    identity: &str,
    issuer: &str,
    extra: &[&str],
) -> AttVerdict {
    let args = [&["--type", SLSA1], extra].concat();
    let run = keyless_command("verify-attestation", stack, image, identity, issuer, &args);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("verify-attestation JSON ({e}): {run:?}"));
    let first = &json["attestations"][0];
    AttVerdict {
        code: run.code,
        state: first["state"].as_str().unwrap_or("none").to_string(),
        category: first["rejectedCategory"].as_str().map(str::to_string),
    }
}

/// A keyless cosign v2 `.att` (certificate, a TSA timestamp over the whole envelope, not logged)
/// verifies by identity when the log is optional, the timestamp being the trusted time, as its
/// `.sig` does; having no log entry, not otherwise (logged ones: tests/rekor_v1/attestations.rs).
/// Another identity or issuer is an identity mismatch. Real cosign v2 verifies the same
/// attestation.
pub fn keyless_v2_attestation_verdicts(stack: &SigstoreStack, cosign2: &Cosign, image: &str, id: &str) {
    let issuer = stack.issuer.as_str();
    let optional = ["--tlog", "optional"];
    let intruder = SigstoreStack::identity(NS, "intruder");
    let github = "https://token.actions.githubusercontent.com";
    let verified = AttVerdict::new(0, "verified", None);
    let refused = |category| AttVerdict::new(12, "badSignature", Some(category));
    let cases: [(&str, &str, &[&str], AttVerdict); 6] = [
        (id, issuer, &optional, verified),
        (
            id,
            issuer,
            &[&optional[..], &["--policy", POLICY_OK]].concat(),
            AttVerdict::new(0, "verified", None),
        ),
        (
            id,
            issuer,
            &[&optional[..], &["--policy", POLICY_FAILS]].concat(),
            AttVerdict::new(12, "policyFailed", None),
        ),
        (id, issuer, &[], refused("no_tlog_entry")),
        (&intruder, issuer, &optional, refused("identity_mismatch")),
        (id, github, &optional, refused("identity_mismatch")),
    ];
    for (identity, issuer, extra, expected) in cases {
        let got = verify_attestation(stack, image, identity, issuer, extra);
        assert_eq!(got, expected, "{identity} {issuer} {extra:?}");
    }
    let run = verify(stack, image, id, issuer, &optional);
    assert_eq!(verdict(&run), ("verified".to_string(), vec![None]), "{run:?}");
    // cosign v2 reads a trusted root only for bundles: the CA, the CT log's key and the TSA's
    // chain are handed to it directly.
    let tsa_chain = stack.tsa_chain().to_str().expect("utf-8 path");
    let run = cosign2.run_with_env(
        &stack.v2_env(),
        &[
            "verify-attestation",
            "--certificate-identity",
            id,
            "--certificate-oidc-issuer",
            issuer,
            "--timestamp-certificate-chain",
            tsa_chain,
            "--insecure-ignore-tlog=true",
            "--type",
            SLSA1,
            image,
        ],
    );
    assert!(run.success, "cosign v2 verify-attestation: {run:?}");
}

/// `countersign verify-attestation` with identity flags on the keyless attestation: its state
/// and exit code, with and without a policy, and for another identity.
pub fn attestation_verdicts(stack: &SigstoreStack, image: &str, id: &str) {
    let issuer = stack.issuer.as_str();
    let attestation =
        |identity: &str, extra: &[&str]| verify_attestation(stack, image, identity, issuer, extra);
    assert_eq!(attestation(id, &[]), AttVerdict::new(0, "verified", None));
    let got = attestation(id, &["--policy", POLICY_OK]);
    assert_eq!(got, AttVerdict::new(0, "verified", None));
    let got = attestation(id, &["--policy", POLICY_FAILS]);
    assert_eq!(got, AttVerdict::new(12, "policyFailed", None));
    // Signed by someone else: no valid signature for this identity.
    let got = attestation(&SigstoreStack::identity(NS, "intruder"), &[]);
    assert_eq!(
        got,
        AttVerdict::new(12, "badSignature", Some("identity_mismatch"))
    );
}

/// The v2 `.att` layer of `image` through the engine (what the CLI and the operator share), as
/// found and then tampered with: its envelope bytes changed after they were timestamped (a
/// newline appended: the JSON and its signature are the same, the bytes are not), and the
/// timestamp of its `.sig` instead of its own (a token over other bytes). Both are untrusted
/// timestamps.
pub fn tampered_v2_attestation(stack: &SigstoreStack, image: &str, id: &str) {
    let (repo, digest) = image.split_once('@').expect("a digest reference");
    let layer = |suffix: &str| {
        let tag = format!("{repo}:{}.{suffix}", digest.replace(':', "-"));
        let manifest: Value = serde_json::from_str(&crane(&["manifest", &tag])).expect("a manifest");
        let layer = &manifest["layers"][0];
        let blob = crane(&[
            "blob",
            &format!("{repo}@{}", layer["digest"].as_str().expect("a layer")),
        ]);
        let evidence = Evidence::from_annotations(|key| layer["annotations"][key].as_str());
        (blob.into_bytes(), evidence)
    };
    let (envelope, evidence) = layer("att");
    let (_, sig_evidence) = layer("sig");
    let keys = keyless_keys(stack, id).with_tlog(TlogPolicy::Optional, stack_root(stack));
    let digest = Digest::parse(digest).expect("a digest");
    let state = |envelope: Vec<u8>, evidence: Evidence| {
        let candidate = Candidate::Legacy {
            layer: "sha256:att".into(),
            payload: envelope.into(),
            signature: String::new(),
            evidence,
        };
        let fetched = Fetched {
            legacy: Ok(Found {
                revision: "r".into(),
                candidates: vec![candidate],
            }),
            bundles: Ok(Found::default()),
        };
        let required = [Requirement {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            policy: None,
        }];
        check_attestations(&digest, &fetched, &keys, &required, |_| None)
            .remove(0)
            .state
    };
    let got = state(envelope.clone(), evidence.clone());
    assert_eq!(got.name(), "Verified", "the layer as found: {got:?}");
    let untrusted = |got: AttestationState| {
        assert!(
            matches!(
                got,
                AttestationState::BadSignature {
                    category: "untrusted_timestamp",
                    ..
                }
            ),
            "{got:?}"
        );
    };
    untrusted(state([&envelope[..], b"\n"].concat(), evidence.clone()));
    let other_token = Evidence {
        timestamp: sig_evidence.timestamp,
        ..evidence
    };
    untrusted(state(envelope, other_token));
}
