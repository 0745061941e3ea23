//! The Sigstore conformance suite's bundle-verification vectors, through countersign's own
//! verification path (`countersign::sigstore`), offline from each case's trusted root.
//!
//! The data is in `../shared/testdata/sigstore-conformance/` (see its SOURCE.md): one folder per
//! case, a name ending in `_fail` must fail. Every case must give its expected answer; a case
//! that fails for an unexpected category (e.g. a trusted root that does not parse when it
//! should) is reported with its error.

use std::path::{Path, PathBuf};

use countersign::{
    keys::PublicKey,
    sigstore::{Artifact, Failure, Identity, Pattern, SigstoreError, TlogPolicy, TrustedRoot},
};
use countersign_tests::repo_root;

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// `shared/testdata/sigstore-conformance` beside the repository (`../shared`), or beside one of
/// its parent folders, wherever the clone was made; `COUNTERSIGN_TESTDATA` overrides.
fn suite() -> PathBuf {
    if let Some(dir) = std::env::var_os("COUNTERSIGN_TESTDATA") {
        return PathBuf::from(dir).join("sigstore-conformance");
    }
    let root = repo_root();
    root.ancestors()
        .skip(1)
        .map(|a| a.join("shared/testdata/sigstore-conformance"))
        .find(|candidate| candidate.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no shared/testdata/sigstore-conformance beside {} or its parents (set COUNTERSIGN_TESTDATA)",
                root.display()
            )
        })
}

/// A failure to set a case up (a file we ship that does not read) is the test's, not a verdict.
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn optional(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let path = dir.join(name);
    path.exists().then(|| read(&path))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("not text: {e}"))
        .trim()
        .to_string()
}

/// One case through the same calls the engine makes: the verdict, or why not.
fn verify_case(dir: &Path) -> Result<(), SigstoreError> {
    let root_json = optional(dir, "trusted_root.json")
        .unwrap_or_else(|| read(&suite().join("public-good-trusted_root.json")));
    let root = TrustedRoot::from_json("trusted_root.json", &root_json)?;
    let bundle = read(&dir.join("bundle.sigstore.json"));
    let artifact = optional(dir, "artifact").unwrap_or_else(|| read(&suite().join("default-artifact.txt")));
    match optional(dir, "key.pub") {
        Some(pem) => {
            let key = PublicKey::from_pem(&text(pem))
                .map_err(|e| SigstoreError::verification(Failure::Invalid, format!("key.pub: {e}")))?;
            root.verify_with_key(&bundle, Artifact::Bytes(&artifact), key.spki_der())
        }
        None => {
            let subject = optional(dir, "identity").map_or_else(|| DEFAULT_IDENTITY.to_string(), text);
            let issuer = optional(dir, "issuer").map_or_else(|| DEFAULT_ISSUER.to_string(), text);
            let identity = Identity {
                subject: Pattern::new(Some(&subject), None, "identity")?,
                issuer: Pattern::new(Some(&issuer), None, "issuer")?,
            };
            root.verify_identity(
                &bundle,
                Artifact::Bytes(&artifact),
                &[identity],
                TlogPolicy::Default,
            )
            .map(|_| ())
        }
    }
}

#[test]
fn every_conformance_vector_gives_its_expected_answer() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite().join("cases"))
        .unwrap_or_else(|e| panic!("{}: {e}", suite().display()))
        .map(|e| e.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    cases.sort();
    let mut wrong = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for dir in &cases {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let must_fail = name.ends_with("_fail");
        let result = verify_case(dir);
        match (&result, must_fail) {
            (Ok(()), false) => passed += 1,
            (Err(_), true) => failed += 1,
            (Ok(()), true) => wrong.push(format!("{name}: verified but must fail")),
            (Err(e), false) => wrong.push(format!("{name}: must verify, failed ({}): {e}", e.category())),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} vectors wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // The suite as SOURCE.md describes it: 70 cases, 49 that must fail.
    assert_eq!((cases.len(), passed, failed), (70, 21, 49));
}

/// The identity policy is what decides: the happy path with another identity or issuer fails,
/// as an identity mismatch (not as a broken signature).
#[test]
fn happy_path_with_another_identity_is_an_identity_mismatch() {
    let dir = suite().join("cases/happy-path-v0.3");
    let root = TrustedRoot::from_json(
        "public-good",
        &read(&suite().join("public-good-trusted_root.json")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bundle = read(&dir.join("bundle.sigstore.json"));
    let artifact = read(&suite().join("default-artifact.txt"));
    let regexp = |s: &str, field: &str| Pattern::new(None, Some(s), field).unwrap_or_else(|e| panic!("{e}"));
    let exact = |s: &str| Pattern::new(Some(s), None, "exact").unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            exact("https://github.com/someone/else"),
            exact(DEFAULT_ISSUER),
            false,
        ),
        (
            exact(DEFAULT_IDENTITY),
            exact("https://accounts.google.com"),
            false,
        ),
        (
            regexp("^https://github.com/sigstore-conformance/", "s"),
            regexp("githubusercontent", "i"),
            true,
        ),
    ];
    for (subject, issuer, ok) in cases {
        let identity = Identity { subject, issuer };
        let result = root.verify_identity(
            &bundle,
            Artifact::Bytes(&artifact),
            std::slice::from_ref(&identity),
            TlogPolicy::Default,
        );
        match result {
            Ok(_) => assert!(ok, "{identity:?} must not verify"),
            Err(e) => {
                assert!(!ok, "{identity:?}: {e}");
                assert_eq!(e.category(), "identity_mismatch");
            }
        }
    }
}

/// The engine's side: a keyless bundle found as an image signature (cosign's sign predicate)
/// is rejected, with a reason, when the trust root has no identity, and goes through the full
/// Sigstore verification when it has one (here it fails: the statement was rewritten, so the
/// DSSE signature no longer verifies). Never a verdict of Verified, never a panic.
#[test]
fn engine_rejects_keyless_bundles_it_cannot_verify() {
    use countersign::{
        reference::Digest,
        verify::{Candidate, Fetched, Found, KeySet, NamedIdentity, Outcome, evaluate},
    };
    let dir = suite().join("cases/happy-path-intoto-in-dsse-v3");
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("bundle.sigstore.json"))).unwrap_or_else(|e| panic!("{e}"));
    let digest = Digest::parse("sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf")
        .unwrap_or_else(|e| panic!("{e}"));
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": digest.as_str().trim_start_matches("sha256:")}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    });
    use base64::Engine as _;
    bundle["dsseEnvelope"]["payload"] = base64::prelude::BASE64_STANDARD
        .encode(statement.to_string())
        .into();
    let fetched = Fetched {
        legacy: Ok(Found::default()),
        bundles: Ok(Found {
            revision: "r".into(),
            candidates: vec![Candidate::Bundle {
                manifest: "sha256:m".into(),
                bundle: serde_json::to_vec(&bundle).unwrap_or_default().into(),
            }],
        }),
    };
    let identity = Identity {
        subject: Pattern::new(None, Some(".*"), "s").unwrap_or_else(|e| panic!("{e}")),
        issuer: Pattern::new(None, Some(".*"), "i").unwrap_or_else(|e| panic!("{e}")),
    };
    let root = TrustedRoot::public_good().unwrap_or_else(|e| panic!("{e}"));
    let without = KeySet::new(Vec::new(), 1);
    let with = KeySet::new(Vec::new(), 1).with_identities(
        vec![NamedIdentity {
            name: "anyone".into(),
            identity,
        }],
        root,
    );
    for keys in [without, with] {
        let (outcome, checks) = evaluate(&digest, &fetched, &keys);
        assert!(matches!(outcome, Outcome::Invalid { .. }), "{outcome:?}");
        assert_eq!(checks.len(), 1);
        assert!(checks[0].key.is_none() && checks[0].rejected.is_some());
    }
}
