//! Signers × verifiers × registries, against real cosign v2 and v3 and real registries, and the
//! negative cases each with the verdict it must get.

mod common;

use common::*;
use countersign_tests::{
    cosign::{Cosign, CosignVersion},
    images::{crane, push_image, push_index},
    registry::{Registry, RegistryKind},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Cosign2,
    Cosign3Legacy,
    Cosign3Bundle,
    CountersignLegacy,
    CountersignBundle,
}

const SIGNERS: [Signer; 5] = [
    Signer::Cosign2,
    Signer::Cosign3Legacy,
    Signer::Cosign3Bundle,
    Signer::CountersignLegacy,
    Signer::CountersignBundle,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verifier {
    Countersign,
    Cosign3,
    Cosign2,
}

impl Signer {
    fn writes_bundle(self) -> bool {
        matches!(self, Signer::Cosign3Bundle | Signer::CountersignBundle)
    }

    fn sign(self, keys: &Keys, image: &str) {
        let run = match self {
            Signer::Cosign2 => keys.cosign2.sign(&keys.private, image, false),
            Signer::Cosign3Legacy => keys.cosign3.sign(&keys.private, image, true),
            Signer::Cosign3Bundle => keys.cosign3.sign(&keys.private, image, false),
            Signer::CountersignLegacy => {
                countersign(&["sign", "--format", "legacy", "--key", keys.private_str(), image])
            }
            Signer::CountersignBundle => countersign(&["sign", "--key", keys.private_str(), image]),
        };
        assert!(run.success, "{self:?} failed to sign {image}: {}", run.stderr);
    }
}

/// What each cosign does is what we expect: cosign v2 does not read v3 bundles (it asks for a
/// trusted root, or finds nothing), everything else verifies.
fn expected(signer: Signer, verifier: Verifier) -> bool {
    !(verifier == Verifier::Cosign2 && signer.writes_bundle())
}

fn verify_with(keys: &Keys, verifier: Verifier, image: &str) -> countersign_tests::cosign::Run {
    match verifier {
        Verifier::Countersign => countersign(&["verify", "--key", keys.public_str(), image]),
        Verifier::Cosign3 => keys.cosign3.verify(&keys.public, image),
        Verifier::Cosign2 => keys.cosign2.verify(&keys.public, image),
    }
}

#[test]
fn every_signer_with_every_verifier_on_both_kinds_of_registry() {
    let keys = Keys::generate();
    let mut table = Vec::new();
    let mut mismatches = Vec::new();
    for kind in [RegistryKind::Referrers, RegistryKind::NoReferrers] {
        let registry = Registry::start(kind);
        for (i, signer) in SIGNERS.into_iter().enumerate() {
            let tag = format!("{}:{i}", registry.repo("matrix"));
            let digest = push_image(&tag, &format!("{kind:?} {signer:?}"));
            let image = format!("{}@{digest}", registry.repo("matrix"));
            signer.sign(&keys, &image);
            for verifier in [Verifier::Countersign, Verifier::Cosign3, Verifier::Cosign2] {
                let run = verify_with(&keys, verifier, &image);
                let want = expected(signer, verifier);
                table.push(format!(
                    "{kind:?} | {signer:?} | {verifier:?} | {}",
                    if run.success { "verified" } else { "not verified" }
                ));
                if run.success != want {
                    mismatches.push(format!(
                        "{kind:?} {signer:?} → {verifier:?}: expected {want}, got {} (exit {:?})\n{}{}",
                        run.success, run.code, run.stdout, run.stderr
                    ));
                }
            }
        }
    }
    println!("registry | signer | verifier | result\n{}", table.join("\n"));
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n---\n"));
}

#[test]
fn countersign_json_names_digest_signatures_formats_and_keys() {
    let keys = Keys::generate();
    let registry = Registry::start(RegistryKind::Referrers);
    let tag = format!("{}:v1", registry.repo("json"));
    let digest = push_image(&tag, "json");
    Signer::Cosign3Bundle.sign(&keys, &tag);
    Signer::Cosign2.sign(&keys, &tag);
    let run = countersign(&["verify", "--key", keys.public_str(), "-o", "json", &tag]);
    assert!(run.success, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["digest"], digest.as_str());
    assert_eq!(json["verdict"], "verified");
    let formats: Vec<&str> = json["signatures"]
        .as_array()
        .expect("signatures")
        .iter()
        .map(|s| {
            assert_eq!(s["key"], "cosign", "{s}");
            assert_eq!(s["fingerprint"].as_str().map(str::len), Some(64), "{s}");
            s["format"].as_str().expect("format")
        })
        .collect();
    assert!(
        formats.contains(&"legacy") && formats.contains(&"bundle"),
        "{formats:?}"
    );
}

#[test]
fn a_multi_arch_index_is_verified_by_its_index_digest() {
    let keys = Keys::generate();
    let registry = Registry::start(RegistryKind::Referrers);
    let tag = format!("{}:multi", registry.repo("index"));
    let index_digest = push_index(&tag, "multi");
    Signer::Cosign3Bundle.sign(&keys, &format!("{}@{index_digest}", registry.repo("index")));
    let run = countersign(&["verify", "--key", keys.public_str(), "-o", "json", &tag]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(json["digest"], index_digest.as_str());
}

#[test]
fn a_signature_repository_holds_signatures_for_cosign_and_countersign_alike() {
    let keys = Keys::generate();
    let registry = Registry::start(RegistryKind::NoReferrers);
    let tag = format!("{}:v1", registry.repo("app"));
    push_image(&tag, "override");
    let sigs = registry.repo("signatures");
    let signed = keys.cosign2.run_with_env(
        &[("COSIGN_REPOSITORY", sigs.as_str())],
        &[
            "sign",
            "--key",
            keys.private_str(),
            "--tlog-upload=false",
            "-y",
            &tag,
        ],
    );
    assert!(signed.success, "{}", signed.stderr);
    let elsewhere = countersign(&[
        "verify",
        "--key",
        keys.public_str(),
        "--signature-repository",
        &sigs,
        &tag,
    ]);
    assert!(elsewhere.success, "{}", elsewhere.stderr);
    let here = countersign(&["verify", "--key", keys.public_str(), &tag]);
    assert_eq!(
        here.code,
        Some(10),
        "the image's own repository has no signature: {}",
        here.stderr
    );
    // And the other way round: countersign writes there, cosign v2 reads there.
    let tag2 = format!("{}:v2", registry.repo("app"));
    push_image(&tag2, "override-2");
    let ours = countersign(&[
        "sign",
        "--format",
        "legacy",
        "--key",
        keys.private_str(),
        "--signature-repository",
        &sigs,
        &tag2,
    ]);
    assert!(ours.success, "{}", ours.stderr);
    let theirs = keys.cosign2.run_with_env(
        &[("COSIGN_REPOSITORY", sigs.as_str())],
        &[
            "verify",
            "--key",
            keys.public_str(),
            "--insecure-ignore-tlog=true",
            &tag2,
        ],
    );
    assert!(theirs.success, "{}", theirs.stderr);
}

#[test]
fn countersign_legacy_signature_images_are_byte_identical_in_layout_to_cosign_v2() {
    // Same payload bytes, same config, same manifest shape: only the (random) signatures differ.
    let keys = Keys::generate();
    let registry = Registry::start(RegistryKind::Referrers);
    let a = format!("{}:a", registry.repo("bytes"));
    let digest = push_image(&a, "bytes");
    Signer::Cosign2.sign(&keys, &a);
    let sig_tag = format!("{}:{}.sig", registry.repo("bytes"), digest.replace(':', "-"));
    let theirs: serde_json::Value = serde_json::from_str(&crane(&["manifest", &sig_tag])).expect("json");
    crane(&[
        "delete",
        &format!(
            "{}@{}",
            registry.repo("bytes"),
            crane(&["digest", &sig_tag]).trim()
        ),
    ]);
    Signer::CountersignLegacy.sign(&keys, &a);
    let ours: serde_json::Value = serde_json::from_str(&crane(&["manifest", &sig_tag])).expect("json");
    assert_eq!(ours["config"], theirs["config"], "config blob differs");
    assert_eq!(
        ours["layers"][0]["digest"], theirs["layers"][0]["digest"],
        "payload differs"
    );
    assert_eq!(ours["layers"][0]["mediaType"], theirs["layers"][0]["mediaType"]);
    assert_eq!(ours["mediaType"], theirs["mediaType"]);
}

#[test]
fn cosign_generated_keys_sign_with_countersign_and_our_keys_sign_with_cosign() {
    let registry = Registry::start(RegistryKind::Referrers);
    let dir = countersign_tests::scratch_dir("ourkeys");
    let made = countersign_in(dir.path(), &["generate-key-pair", "--output-key-prefix", "ours"]);
    assert!(made.success, "{}", made.stderr);
    let (private, public) = (dir.path().join("ours.key"), dir.path().join("ours.pub"));
    let cosign3 = Cosign::new(CosignVersion::V3);
    let tag = format!("{}:v1", registry.repo("keys"));
    push_image(&tag, "keys");
    let signed = cosign3.sign(&private, &tag, false);
    assert!(
        signed.success,
        "cosign signs with a countersign key: {}",
        signed.stderr
    );
    let verified = countersign(&["verify", "--key", public.to_str().expect("utf-8"), &tag]);
    assert!(verified.success, "{}", verified.stderr);
}
