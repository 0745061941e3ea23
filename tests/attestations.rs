//! Attestations against real cosign v2 and v3 in both layouts (`.att` tag, bundle referrer), in
//! both directions, through the CLI and the engine; and the negative cases, each with its state
//! and exit code.

mod common;

use std::{path::Path, sync::Arc};

use common::*;
use countersign::{
    reference::ImageRef,
    registry::{RegistryClient, RegistryOptions},
    verify::{Attestations, KeySet, Policy, PredicatePolicy, Requirement, verify_attestations},
};
use countersign_tests::{
    cosign::{Cosign, Run},
    images::push_image,
    registry::{Registry, RegistryKind},
    scratch_dir,
};

const SLSA1: &str = "https://slsa.dev/provenance/v1";
const PREDICATE: &str = r#"{"buildDefinition":{"buildType":"https://example.com/ci/v1","externalParameters":{"ref":"refs/heads/main"}},"runDetails":{"builder":{"id":"https://example.com/builder"}}}"#;
const POLICY_OK: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/main'";
const POLICY_FAILS: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/release'";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attester {
    Cosign2,
    Cosign3Legacy,
    Cosign3Bundle,
    CountersignLegacy,
    CountersignBundle,
}

const ATTESTERS: [Attester; 5] = [
    Attester::Cosign2,
    Attester::Cosign3Legacy,
    Attester::Cosign3Bundle,
    Attester::CountersignLegacy,
    Attester::CountersignBundle,
];

impl Attester {
    fn writes_bundle(self) -> bool {
        matches!(self, Attester::Cosign3Bundle | Attester::CountersignBundle)
    }

    fn attest(self, keys: &Keys, predicate: &Path, kind: &str, image: &str) -> Run {
        match self {
            Attester::Cosign2 => keys.cosign2.attest(&keys.private, predicate, kind, image, false),
            Attester::Cosign3Legacy => keys.cosign3.attest(&keys.private, predicate, kind, image, true),
            Attester::Cosign3Bundle => keys.cosign3.attest(&keys.private, predicate, kind, image, false),
            Attester::CountersignLegacy | Attester::CountersignBundle => {
                let predicate = predicate.to_str().expect("utf-8 path");
                let format = if self == Attester::CountersignLegacy {
                    "legacy"
                } else {
                    "bundle"
                };
                countersign(&[
                    "attest",
                    "--key",
                    keys.private_str(),
                    "--predicate",
                    predicate,
                    "--type",
                    kind,
                    "--format",
                    format,
                    image,
                ])
            }
        }
    }
}

/// `cosign verify-attestation --key` offline. v2 reads only `.att` tags unless asked for
/// bundles (`--new-bundle-format`), which it then verifies against a trusted root: offline it
/// reads the `.att` layout only.
fn cosign_verify_attestation(cosign: &Cosign, keys: &Keys, kind: &str, image: &str) -> Run {
    cosign.run(&[
        "verify-attestation",
        "--key",
        keys.public_str(),
        "--type",
        kind,
        "--insecure-ignore-tlog=true",
        image,
    ])
}

fn countersign_verify_attestation(
    keys: &Keys,
    kind: &str,
    policy: Option<&str>,
    image: &str,
) -> (Run, serde_json::Value) {
    let mut args = vec![
        "verify-attestation",
        "--key",
        keys.public_str(),
        "--type",
        kind,
        "-o",
        "json",
    ];
    if let Some(policy) = policy {
        args.extend(["--policy", policy]);
    }
    args.push(image);
    let run = countersign(&args);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("verify-attestation JSON ({e}): {}{}", run.stdout, run.stderr));
    (run, json)
}

/// The state countersign gives the one requirement.
fn state(json: &serde_json::Value) -> &str {
    json["attestations"][0]["state"].as_str().unwrap_or("none")
}

fn predicate_file(dir: &Path, name: &str, json: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json).expect("write predicate");
    path
}

/// The engine itself (what the operator and the CLI share), on one image.
fn engine_state(keys: &Keys, image: &str, policy: Option<&str>) -> String {
    let pem = std::fs::read_to_string(&keys.public).expect("public key");
    let key = countersign::keys::PublicKey::from_pem(&pem).expect("key");
    let policy_ = Policy {
        keys: KeySet::new(
            vec![countersign::verify::NamedKey {
                name: "cosign".into(),
                key,
            }],
            1,
        ),
        signature_repository: None,
    };
    let requirements = [Requirement {
        predicate_type: SLSA1.into(),
        policy: policy.map(|p| PredicatePolicy::compile(p).expect("policy")),
    }];
    let source = Attestations(Arc::new(RegistryClient::new(RegistryOptions::default())));
    let image = ImageRef::parse(image).expect("image");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v = runtime.block_on(verify_attestations(&source, &image, &policy_, &requirements));
    v.attestations[0].state.name().to_string()
}

#[test]
fn every_attester_with_every_verifier_on_both_kinds_of_registry() {
    let keys = Keys::generate();
    let dir = scratch_dir("predicates");
    let predicate = predicate_file(dir.path(), "slsa.json", PREDICATE);
    let mut table = Vec::new();
    let mut mismatches = Vec::new();
    for kind in [RegistryKind::Referrers, RegistryKind::NoReferrers] {
        let registry = Registry::start(kind);
        for (i, attester) in ATTESTERS.into_iter().enumerate() {
            let tag = format!("{}:{i}", registry.repo("att"));
            let digest = push_image(&tag, &format!("att {kind:?} {attester:?}"));
            let image = format!("{}@{digest}", registry.repo("att"));
            let run = attester.attest(&keys, &predicate, "slsaprovenance1", &image);
            assert!(run.success, "{attester:?} attest: {}{}", run.stdout, run.stderr);
            let mut check = |verifier: &str, got: bool, want: bool, detail: String| {
                table.push(format!(
                    "{kind:?} | {attester:?} | {verifier} | {}",
                    if got { "verified" } else { "not verified" }
                ));
                if got != want {
                    mismatches.push(format!(
                        "{kind:?} {attester:?} → {verifier}: expected {want}, got {got}\n{detail}"
                    ));
                }
            };
            let (run, json) =
                countersign_verify_attestation(&keys, "slsaprovenance1", Some(POLICY_OK), &image);
            check(
                "countersign",
                run.success && state(&json) == "verified",
                true,
                format!("{json}\n{}", run.stderr),
            );
            let engine = engine_state(&keys, &image, Some(POLICY_OK));
            check("engine", engine == "Verified", true, engine);
            let run = cosign_verify_attestation(&keys.cosign3, &keys, "slsaprovenance1", &image);
            check(
                "cosign3",
                run.success,
                true,
                format!("{}{}", run.stdout, run.stderr),
            );
            let run = cosign_verify_attestation(&keys.cosign2, &keys, "slsaprovenance1", &image);
            check(
                "cosign2",
                run.success,
                !attester.writes_bundle(),
                format!("{}{}", run.stdout, run.stderr),
            );
        }
    }
    println!("registry | attester | verifier | result\n{}", table.join("\n"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n---\n"));
}

#[test]
fn negative_cases_each_with_their_state_and_exit_code() {
    let keys = Keys::generate();
    let other = Keys::generate_named("other");
    let dir = scratch_dir("predicates");
    let predicate = predicate_file(dir.path(), "slsa.json", PREDICATE);
    let registry = Registry::start(RegistryKind::Referrers);
    let repo = registry.repo("neg");
    let image = |name: &str| {
        let digest = push_image(&format!("{repo}:{name}"), name);
        format!("{repo}@{digest}")
    };
    let expect = |what: &str,
                  image: &str,
                  keys: &Keys,
                  kind: &str,
                  policy: Option<&str>,
                  want_state: &str,
                  want_code: i32| {
        let (run, json) = countersign_verify_attestation(keys, kind, policy, image);
        assert_eq!(state(&json), want_state, "{what}: {json}\n{}", run.stderr);
        assert_eq!(run.code, Some(want_code), "{what}: {json}\n{}", run.stderr);
        json
    };

    // A predicate failing the policy: names the expression.
    let policy = image("policy");
    for attester in [Attester::Cosign3Bundle, Attester::Cosign2] {
        let run = attester.attest(&keys, &predicate, "slsaprovenance1", &policy);
        assert!(run.success, "{}", run.stderr);
    }
    let json = expect(
        "policy",
        &policy,
        &keys,
        "slsaprovenance1",
        Some(POLICY_FAILS),
        "policyFailed",
        12,
    );
    assert_eq!(json["attestations"][0]["expression"], POLICY_FAILS);
    assert_eq!(engine_state(&keys, &policy, Some(POLICY_FAILS)), "PolicyFailed");

    // The wrong key: a signature, none valid.
    expect(
        "wrong key",
        &policy,
        &other,
        "slsaprovenance1",
        None,
        "badSignature",
        12,
    );
    let run = cosign_verify_attestation(&keys.cosign3, &other, "slsaprovenance1", &policy);
    assert!(!run.success, "cosign agrees the key is wrong");

    // A type never attested: missing, as cosign's "none of the attestations matched".
    expect("missing", &policy, &keys, "spdx", None, "missing", 10);

    // An attestation for another digest, copied onto this one (a `.att` layer and a bundle
    // referrer both name the digest they were made for).
    let victim = image("victim");
    let source = image("source");
    let run = Attester::Cosign2.attest(&keys, &predicate, "slsaprovenance1", &source);
    assert!(run.success, "{}", run.stderr);
    let hex = |image: &str| image.rsplit_once("sha256:").expect("digest").1.to_string();
    let from = format!("{repo}:sha256-{}.att", hex(&source));
    let to = format!("{repo}:sha256-{}.att", hex(&victim));
    countersign_tests::images::crane(&["copy", &from, &to]);
    let json = expect(
        "another digest",
        &victim,
        &keys,
        "slsaprovenance1",
        None,
        "otherDigest",
        12,
    );
    assert_eq!(
        json["attestations"][0]["subjects"][0].as_str(),
        Some(source.rsplit_once('@').expect("digest").1)
    );
    let run = cosign_verify_attestation(&keys.cosign2, &keys, "slsaprovenance1", &victim);
    assert!(!run.success, "cosign refuses it too: {}", run.stdout);
}

#[test]
fn countersign_legacy_attestation_layers_have_cosigns_layout() {
    let keys = Keys::generate();
    let dir = scratch_dir("predicates");
    let predicate = predicate_file(dir.path(), "slsa.json", PREDICATE);
    let registry = Registry::start(RegistryKind::NoReferrers);
    let repo = registry.repo("layout");
    let mut layers = Vec::new();
    for (name, attester) in [
        ("theirs", Attester::Cosign2),
        ("ours", Attester::CountersignLegacy),
    ] {
        let digest = push_image(&format!("{repo}:{name}"), name);
        let run = attester.attest(&keys, &predicate, "slsaprovenance1", &format!("{repo}@{digest}"));
        assert!(run.success, "{}", run.stderr);
        let att = format!("{repo}:{}.att", digest.replace(':', "-"));
        let manifest: serde_json::Value =
            serde_json::from_str(&countersign_tests::images::crane(&["manifest", &att])).expect("json");
        layers.push(manifest);
    }
    let (theirs, ours) = (&layers[0], &layers[1]);
    assert_eq!(ours["mediaType"], theirs["mediaType"]);
    assert_eq!(ours["config"]["mediaType"], theirs["config"]["mediaType"]);
    assert_eq!(ours["layers"][0]["mediaType"], theirs["layers"][0]["mediaType"]);
    assert_eq!(
        ours["layers"][0]["annotations"],
        theirs["layers"][0]["annotations"]
    );
}
