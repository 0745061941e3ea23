//! The Sigstore conformance suite's bundle-verification vectors, through countersign's own
//! verification path (`countersign::sigstore`), offline from each case's trusted root.
//!
//! The data is in `../shared/testdata/sigstore-conformance/` (see its SOURCE.md): one folder per
//! case, a name ending in `_fail` must fail. Every case must give its expected answer; a case
//! that fails for an unexpected category (e.g. a trusted root that does not parse when it
//! should) is reported with its error.

use std::path::{Path, PathBuf};

use countersign::{
    formats::dsse::pae,
    keys::PublicKey,
    sigstore::{
        Artifact, Failure, Identity, LegacyAttestation, Pattern, SigstoreError, TlogPolicy, TrustedRoot,
    },
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

/// The case's identity (its `identity` and `issuer` files, else the defaults), exact.
fn case_identity(dir: &Path) -> Result<Identity, SigstoreError> {
    let subject = optional(dir, "identity").map_or_else(|| DEFAULT_IDENTITY.to_string(), text);
    let issuer = optional(dir, "issuer").map_or_else(|| DEFAULT_ISSUER.to_string(), text);
    Ok(Identity {
        subject: Pattern::new(Some(&subject), None, "identity")?,
        issuer: Pattern::new(Some(&issuer), None, "issuer")?,
    })
}

fn case_root(dir: &Path) -> Result<TrustedRoot, SigstoreError> {
    let root_json = optional(dir, "trusted_root.json")
        .unwrap_or_else(|| read(&suite().join("public-good-trusted_root.json")));
    TrustedRoot::from_json("trusted_root.json", &root_json)
}

/// One case through the same calls the engine makes: the verdict, or why not.
fn verify_case(dir: &Path) -> Result<(), SigstoreError> {
    let root = case_root(dir)?;
    let bundle = read(&dir.join("bundle.sigstore.json"));
    let artifact = optional(dir, "artifact").unwrap_or_else(|| read(&suite().join("default-artifact.txt")));
    match optional(dir, "key.pub") {
        Some(pem) => {
            let key = PublicKey::from_pem(&text(pem))
                .map_err(|e| SigstoreError::verification(Failure::Invalid, format!("key.pub: {e}")))?;
            root.verify_with_key(&bundle, Artifact::Bytes(&artifact), key.spki_der())
        }
        None => root
            .verify_identity(
                &bundle,
                Artifact::Bytes(&artifact),
                &[case_identity(dir)?],
                TlogPolicy::Default,
            )
            .map(|_| ()),
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

/// A keyless bundle's material as a cosign v2 `.att` layer would carry it: the bytes its
/// timestamp covers (the signature, where a `.att` layer's token covers the envelope), what is
/// signed (the artifact, or the DSSE PAE), the signature, the PEM certificate and the timestamp
/// annotation.
struct AsAttestation {
    covered: Vec<u8>,
    signed: Vec<u8>,
    signatures: Vec<Vec<u8>>,
    certificate: String,
    timestamp: String,
}

fn as_attestation(dir: &Path) -> AsAttestation {
    use base64::{Engine as _, prelude::BASE64_STANDARD as B64};
    let bundle: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("bundle.sigstore.json"))).unwrap_or_else(|e| panic!("{e}"));
    let b64 = |v: &serde_json::Value| B64.decode(v.as_str().unwrap_or_default()).unwrap_or_default();
    let material = &bundle["verificationMaterial"];
    let leaf = match material.get("certificate") {
        Some(certificate) => certificate,
        None => &material["x509CertificateChain"]["certificates"][0],
    };
    let der = b64(&leaf["rawBytes"]);
    let lines: Vec<String> = B64
        .encode(der)
        .as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let certificate = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let token = &material["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"];
    let timestamp = serde_json::json!({"SignedRFC3161Timestamp": token}).to_string();
    let (signed, signature) = match bundle.get("dsseEnvelope") {
        Some(envelope) => (
            pae(
                envelope["payloadType"].as_str().unwrap_or_default(),
                &b64(&envelope["payload"]),
            ),
            b64(&envelope["signatures"][0]["sig"]),
        ),
        None => (
            optional(dir, "artifact").unwrap_or_else(|| read(&suite().join("default-artifact.txt"))),
            b64(&bundle["messageSignature"]["signature"]),
        ),
    };
    AsAttestation {
        covered: signature.clone(),
        signed,
        signatures: vec![signature],
        certificate,
        timestamp,
    }
}

impl AsAttestation {
    fn verify(&self, root: &TrustedRoot, identity: Identity) -> Result<(), SigstoreError> {
        let layer = LegacyAttestation {
            envelope: &self.covered,
            // Read only against a log entry, which these layers do not carry.
            payload: &self.signed,
            signed: &self.signed,
            signatures: &self.signatures,
            certificate: Some(&self.certificate),
            rekor_bundle: None,
            timestamp: Some(&self.timestamp),
        };
        root.verify_legacy_attestation(&layer, &[identity], TlogPolicy::Optional)
            .map(|_| ())
    }
}

/// The step-by-step checks of a keyless cosign v2 `.att` layer (`LegacyAttestation`: timestamp
/// over given bytes, certificate chain, validity and SCT at that time, signature with its key,
/// identity) on the vectors' real material: every case with a certificate and an RFC 3161
/// timestamp whose answer does not depend on the log (their entries are not of the kind a `.att`
/// carries: checked as a layer without one, the log optional). What
/// sigstore-verify accepts it accepts; what sigstore-verify refuses for the timestamp, the
/// certificate or the signature it refuses, in the same category.
#[test]
fn attestation_checks_agree_with_the_vectors() {
    let cases = [
        ("bundle-with-sct-with-extensions", None),
        ("intoto-with-custom-trust-root", None),
        ("rekor2-happy-path", None),
        ("rekor2-dsse-happy-path", None),
        ("rekor2-timestamp-with-embedded-cert", None),
        ("rekor2-timestamp-without-embedded-cert", None),
        ("rekor2-timestamp-with-expired-cert-chain", None),
        ("trust-root-tsa-validity-end-inclusive", None),
        (
            "intoto-tsa-timestamp-outside-cert-validity_fail",
            Some("untrusted_certificate"),
        ),
        ("rekor2-dsse-invalid-sig_fail", Some("invalid_signature")),
        (
            "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
            Some("untrusted_timestamp"),
        ),
        (
            "rekor2-timestamp-outside-tsa-cert-validity_fail",
            Some("untrusted_timestamp"),
        ),
        (
            "rekor2-timestamp-payload-mismatch_fail",
            Some("untrusted_timestamp"),
        ),
        (
            "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
            Some("untrusted_timestamp"),
        ),
        (
            "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
            Some("untrusted_timestamp"),
        ),
        (
            "rekor2-timestamp-with-incorrect-time_fail",
            Some("untrusted_timestamp"),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, expected) in cases {
        let dir = suite().join("cases").join(name);
        let root = case_root(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let identity = case_identity(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = as_attestation(&dir).verify(&root, identity);
        let got = result.as_ref().err().map(SigstoreError::category);
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {result:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// On the happy path's material: other bytes than the token covers (an envelope changed after
/// it was timestamped), another signed content, another identity. Each is refused for what it
/// is.
#[test]
fn attestation_checks_refuse_tampering_by_category() {
    let dir = suite().join("cases/rekor2-happy-path");
    let root = case_root(&dir).unwrap_or_else(|e| panic!("{e}"));
    let identity = || case_identity(&dir).unwrap_or_else(|e| panic!("{e}"));
    let category =
        |a: &AsAttestation, identity: Identity| a.verify(&root, identity).err().map(|e| e.category());
    let good = as_attestation(&dir);
    assert_eq!(category(&good, identity()), None);
    let mut covered = as_attestation(&dir);
    covered.covered.push(b' ');
    assert_eq!(category(&covered, identity()), Some("untrusted_timestamp"));
    let mut signed = as_attestation(&dir);
    signed.signed.push(b'!');
    assert_eq!(category(&signed, identity()), Some("invalid_signature"));
    let someone = Identity {
        subject: Pattern::new(Some("https://github.com/someone/else"), None, "s")
            .unwrap_or_else(|e| panic!("{e}")),
        issuer: identity().issuer,
    };
    assert_eq!(category(&good, someone), Some("identity_mismatch"));
    let mut untimed = as_attestation(&dir);
    untimed.timestamp = "{}".into();
    assert_eq!(category(&untimed, identity()), Some("bundle"));
    // A root whose CT log is another (the SCT then verifies under none) or without the CA.
    let root_json: serde_json::Value =
        serde_json::from_slice(&read(&dir.join("trusted_root.json"))).unwrap_or_else(|e| panic!("{e}"));
    let without = |field: &str, other: &str| {
        let mut json = root_json.clone();
        json[field] = json[other].clone();
        let json = serde_json::to_vec(&json).unwrap_or_default();
        TrustedRoot::from_json(field, &json).unwrap_or_else(|e| panic!("{e}"))
    };
    for root in [
        without("ctlogs", "tlogs"),
        without("certificateAuthorities", "timestampAuthorities"),
    ] {
        let result = good.verify(&root, identity());
        assert_eq!(
            result.as_ref().err().map(SigstoreError::category),
            Some("untrusted_certificate"),
            "{result:?}"
        );
    }
}
