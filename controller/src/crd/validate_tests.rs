use std::{collections::BTreeMap, time::Duration};

use super::*;
use crate::crd::{KeyRotation, TrustRoot, TrustRootSpec};

const PEM_A: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1WANxE1OU1KaI7tHSDWuz4PfiKs0
1Nh1TN+1r2SbZJ/Su/G7BguCOshPNPi6qkeP1FdW3g9FNTMjBv6rFryLLg==
-----END PUBLIC KEY-----
";

const PEM_ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA2r+fhbL+V0yr4jMETxMafGoyCdElP1zUTJy30pcBtYQ=
-----END PUBLIC KEY-----
";

fn spec(yaml: &str) -> TrustRootSpec {
    match serde_saphyr::from_str(yaml) {
        Ok(spec) => spec,
        Err(e) => panic!("fixture does not parse: {e}\n{yaml}"),
    }
}

/// A valid spec with one inline key, for tests to break one field at a time.
fn valid() -> TrustRootSpec {
    spec(&format!(
        "images: [\"registry.example.com/payments/**\"]\nkeys:\n  - name: ci-2026\n    publicKey: |\n{}",
        indent(PEM_A, 6)
    ))
}

fn indent(text: &str, by: usize) -> String {
    text.lines().map(|l| format!("{}{l}\n", " ".repeat(by))).collect()
}

fn errors(spec: &TrustRootSpec) -> Vec<String> {
    match spec.validate() {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_one_error(spec: &TrustRootSpec, expected: &str) {
    let errors = errors(spec);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with(expected), "{errors:#?}");
}

#[test]
fn a_valid_spec_is_read_with_its_defaults() {
    let validated = match valid().validate() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(validated.threshold, 1);
    assert_eq!(validated.reverify_interval, Duration::from_secs(600));
    assert_eq!(validated.mode, Mode::Audit);
    assert_eq!(validated.keys.len(), 1);
    assert_eq!(validated.keys[0].name, "ci-2026");
    assert!(matches!(validated.keys[0].source, KeySource::Inline(_)));
    assert!(validated.governs("registry.example.com/payments/api:v1"));
    assert!(!validated.governs("registry.example.com/web/api:v1"));
    assert!(validated.selects_namespace(&BTreeMap::new()));
}

#[test]
fn secret_and_config_map_refs_default_to_cosign_pub() {
    let spec = spec(
        "images: ['**']\nthreshold: 2\nkeys:\n\
         - name: a\n  secretRef: {name: signing, namespace: ci}\n\
         - name: b\n  configMapRef: {name: keys, namespace: ci, key: release.pub}\n",
    );
    let validated = match spec.validate() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    let KeySource::Secret(secret) = &validated.keys[0].source else {
        panic!("{:?}", validated.keys[0]);
    };
    assert_eq!(
        (secret.namespace.as_str(), secret.key.as_str()),
        ("ci", "cosign.pub")
    );
    let KeySource::ConfigMap(config_map) = &validated.keys[1].source else {
        panic!("{:?}", validated.keys[1]);
    };
    assert_eq!(config_map.key, "release.pub");
    assert_eq!(validated.threshold, 2);
}

#[test]
fn a_bad_pem_names_the_key() {
    let mut s = valid();
    s.keys.push(TrustRootKey {
        name: "other".into(),
        public_key: Some("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n".into()),
        secret_ref: None,
        config_map_ref: None,
    });
    assert_one_error(&s, "spec.keys[1].publicKey: not a PEM public key");

    s.keys[1].public_key = Some(PEM_ED25519.into());
    assert_one_error(&s, "spec.keys[1].publicKey: unsupported key type");
}

#[test]
fn a_key_needs_exactly_one_source() {
    let mut s = valid();
    s.keys[0].secret_ref = Some(ObjectKeyRef {
        name: "k".into(),
        namespace: "ci".into(),
        key: "cosign.pub".into(),
    });
    assert_one_error(&s, "spec.keys[0]: a key needs exactly one source");

    s.keys[0].public_key = None;
    s.keys[0].secret_ref = None;
    assert_one_error(&s, "spec.keys[0]: a key needs exactly one source");
}

#[test]
fn object_refs_are_checked() {
    let mut s = valid();
    s.keys[0].public_key = None;
    s.keys[0].config_map_ref = Some(ObjectKeyRef {
        name: String::new(),
        namespace: "ci".into(),
        key: "cosign pub".into(),
    });
    assert_eq!(
        errors(&s),
        [
            "spec.keys[0].configMapRef.name: must be 1 to 253 characters long",
            "spec.keys[0].configMapRef.key: \"cosign pub\" is not a data key: use letters, digits, '-', '_' and '.'",
        ]
    );
}

#[test]
fn key_names_are_unique_and_well_formed() {
    let mut s = valid();
    s.keys.push(s.keys[0].clone());
    s.keys.push(s.keys[0].clone());
    s.threshold = 1;
    assert_eq!(
        errors(&s),
        [
            "spec.keys[1].name: duplicate key name \"ci-2026\" (also spec.keys[0])",
            "spec.keys[2].name: duplicate key name \"ci-2026\" (also spec.keys[0])",
        ]
    );

    for bad in ["", "CI", "-ci", "ci-", "ci_2026", &"a".repeat(64)] {
        let mut s = valid();
        s.keys[0].name = bad.into();
        assert_one_error(&s, "spec.keys[0].name: ");
    }
}

#[test]
fn threshold_is_between_one_and_the_number_of_keys() {
    let mut s = valid();
    s.threshold = 2;
    assert_one_error(
        &s,
        "spec.threshold: 2 must not exceed the number of keys and identities (1)",
    );
    s.threshold = 0;
    assert_one_error(&s, "spec.threshold: 0 must be at least 1");
    s.threshold = -1;
    assert_one_error(&s, "spec.threshold: -1 must be at least 1");
}

#[test]
fn images_and_keys_must_not_be_empty() {
    let mut s = valid();
    s.images.clear();
    s.keys.clear();
    assert_eq!(
        errors(&s),
        [
            "spec.images: must list at least one image glob, e.g. registry.example.com/team/**",
            "spec.keys: must declare at least one public key (or a keyless signer in spec.identities)",
            "spec.threshold: 1 must not exceed the number of keys and identities (0)",
        ]
    );
}

#[test]
fn every_bad_glob_is_reported_at_its_index() {
    let mut s = valid();
    s.images = vec!["ghcr.io/ok/**".into(), "ghcr.io/app:v1".into(), "Bad Glob".into()];
    let errors = errors(&s);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("spec.images[1]: \"ghcr.io/app:v1\" must name repositories without a tag"));
    assert!(errors[1].starts_with("spec.images[2]: \"Bad Glob\" must not contain whitespace"));
}

#[test]
fn reverify_interval_is_a_duration_within_bounds() {
    let mut s = valid();
    s.reverify_interval = "1h30m".into();
    assert_eq!(
        s.validate().map(|v| v.reverify_interval).ok(),
        Some(Duration::from_secs(5_400))
    );

    s.reverify_interval = "5s".into();
    assert_one_error(&s, "spec.reverifyInterval: \"5s\" must be between 10s and 24h");
    s.reverify_interval = "25h".into();
    assert_one_error(&s, "spec.reverifyInterval: \"25h\" must be between 10s and 24h");
    s.reverify_interval = "10 minutes".into();
    assert_one_error(
        &s,
        "spec.reverifyInterval: \"10 minutes\" is not a duration like 30s, 10m or 1h30m",
    );
}

#[test]
fn signature_repository_is_a_plain_repository() {
    let mut s = valid();
    s.signature_repository = Some("registry.example.com/signatures".into());
    assert!(s.validate().is_ok());
    for (bad, expected) in [
        ("registry.example.com/sigs/**", "not a glob"),
        ("registry.example.com/sigs:v1", "without a tag"),
        ("registry.example.com", "<registry>/<path>"),
        ("", "must not be empty"),
    ] {
        s.signature_repository = Some(bad.into());
        let errors = errors(&s);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("spec.signatureRepository: "), "{errors:#?}");
        assert!(errors[0].contains(expected), "{bad}: {errors:#?}");
    }
}

#[test]
fn namespace_selector_operators_are_checked_and_applied() {
    let mut s = valid();
    s.namespace_selector = Some(spec_selector(
        "matchExpressions: [{key: team, operator: Equals, values: [a]}]",
    ));
    assert_one_error(
        &s,
        "spec.namespaceSelector.matchExpressions[0].operator: \"Equals\"",
    );

    s.namespace_selector = Some(spec_selector("matchLabels: {team: payments}"));
    let validated = match s.validate() {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    };
    let payments = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
    assert!(validated.selects_namespace(&payments));
    assert!(!validated.selects_namespace(&BTreeMap::new()));
}

fn spec_selector(yaml: &str) -> LabelSelector {
    match serde_saphyr::from_str(yaml) {
        Ok(selector) => selector,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn governs_matches_repositories_of_any_reference_form() {
    let root = TrustRoot::new(
        "payments",
        spec(
            "images: ['registry.example.com/payments/**', 'docker.io/library/nginx', 'Bad Glob']\nkeys: []\n",
        ),
    );
    assert!(root.governs("registry.example.com/payments/api:1.2.3"));
    assert!(root.governs(
        "registry.example.com/payments/team/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    ));
    assert!(root.governs("nginx:1.27"));
    assert!(!root.governs("registry.example.com/web/api:1.2.3"));
    assert!(!root.governs("bad glob"));
}

#[test]
fn the_samples_are_valid() {
    let root: TrustRoot =
        match serde_saphyr::from_str(include_str!("../../../manifests/samples/trustroot.yaml")) {
            Ok(root) => root,
            Err(e) => panic!("{e}"),
        };
    if let Err(errors) = root.validate() {
        panic!("{errors:#?}");
    }
    let rotation: KeyRotation =
        match serde_saphyr::from_str(include_str!("../../../manifests/samples/keyrotation.yaml")) {
            Ok(rotation) => rotation,
            Err(e) => panic!("{e}"),
        };
    assert_eq!(
        rotation.spec.trust_root_ref,
        root.metadata.name.unwrap_or_default()
    );
    assert_eq!(
        rotation.window_duration().ok(),
        Some(Duration::from_secs(72 * 3_600))
    );
    let names: Vec<&str> = root.spec.keys.iter().map(|k| k.name.as_str()).collect();
    assert!(names.contains(&rotation.spec.from_key.as_str()));
    assert!(names.contains(&rotation.spec.to_key.as_str()));
}

const IDENTITY: &str = "  - name: release\n    subjectRegExp: '^https://github.com/org/'\n    issuer: https://token.actions.githubusercontent.com\n";

#[test]
fn identities_alone_are_signers_and_count_towards_the_threshold() {
    let s = spec(&format!(
        "images: [\"registry.example.com/**\"]\nthreshold: 1\nidentities:\n{IDENTITY}"
    ));
    let v = s.validate().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(v.identities.len(), 1);
    assert_eq!(v.identities[0].name, "release");
    let mut s = valid();
    s.identities = spec(&format!("images: [a/b]\nidentities:\n{IDENTITY}")).identities;
    s.threshold = 2;
    assert_eq!(
        s.validate()
            .map(|v| v.threshold)
            .unwrap_or_else(|e| panic!("{e:?}")),
        2
    );
}

#[test]
fn identity_errors_name_their_field() {
    let mut s = valid();
    s.identities = spec(&format!(
        "images: [a/b]\nidentities:\n{IDENTITY}  - name: ci-2026\n    subject: a@example.com\n    issuerRegExp: '('\n  - name: both\n    subject: a\n    subjectRegExp: b\n    issuer: c\n"
    ))
    .identities;
    let fields: Vec<String> = match s.validate() {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(errors) => errors.into_iter().map(|e| e.path).collect(),
    };
    assert_eq!(
        fields,
        [
            "spec.identities[1].name",
            "spec.identities[1].issuerRegExp",
            "spec.identities[2].subject",
        ]
    );
}
