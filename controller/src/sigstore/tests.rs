use super::*;

fn signer(subject: &str, issuer: &str) -> Signer {
    Signer {
        subject: subject.into(),
        issuer: issuer.into(),
    }
}

fn identity(subject: (Option<&str>, Option<&str>), issuer: (Option<&str>, Option<&str>)) -> Identity {
    Identity {
        subject: Pattern::new(subject.0, subject.1, "subject").unwrap_or_else(|e| panic!("{e}")),
        issuer: Pattern::new(issuer.0, issuer.1, "issuer").unwrap_or_else(|e| panic!("{e}")),
    }
}

const GH: &str = "https://token.actions.githubusercontent.com";

#[test]
fn exact_identity_matches_only_the_same_values() {
    let id = identity((Some("a@example.com"), None), (Some(GH), None));
    assert!(id.matches(&signer("a@example.com", GH)));
    assert!(!id.matches(&signer("a@example.com.evil", GH)));
    assert!(!id.matches(&signer("a@example.com", "https://accounts.google.com")));
}

#[test]
fn regexp_is_unanchored_like_cosign() {
    let id = identity(
        (None, Some("github.com/org/")),
        (None, Some("^https://token\\.actions\\.githubusercontent\\.com$")),
    );
    assert!(id.matches(&signer(
        "https://github.com/org/repo/.github/workflows/x.yml@refs/heads/main",
        GH
    )));
    assert!(!id.matches(&signer("https://github.com/other/repo", GH)));
    assert!(!id.matches(&signer(
        "https://github.com/org/repo",
        "https://token.actions.githubusercontent.com.evil"
    )));
}

#[test]
fn invalid_regexp_names_its_field() {
    let err = Pattern::new(None, Some("("), "spec.identities[0].subjectRegExp").expect_err("invalid");
    assert_eq!(err.category(), "pattern");
    assert!(
        matches!(err, SigstoreError::Pattern { ref field, .. } if field == "spec.identities[0].subjectRegExp")
    );
}

#[test]
fn exactly_one_form_per_value() {
    assert!(Pattern::new(Some("a"), Some("b"), "f").is_err());
    assert!(Pattern::new(None, None, "f").is_err());
}

#[test]
fn fingerprint_tells_exact_from_regexp() {
    let exact = identity((Some("a"), None), (Some(GH), None));
    let regexp = identity((None, Some("a")), (Some(GH), None));
    assert_ne!(exact.fingerprint(), regexp.fingerprint());
    assert_eq!(exact.fingerprint(), exact.clone().fingerprint());
}

#[test]
fn public_good_root_ships_and_parses() {
    let root = TrustedRoot::public_good().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(root.source_name(), "public-good");
    assert_eq!(root.fingerprint().len(), 64);
}

#[test]
fn a_bad_trusted_root_names_its_source() {
    let err = TrustedRoot::from_json("ConfigMap ns/root", b"{\"mediaType\": 1}").expect_err("bad root");
    assert!(
        matches!(err, SigstoreError::TrustedRoot { ref source_name, .. } if source_name == "ConfigMap ns/root")
    );
}

#[test]
fn garbage_bundle_is_a_bundle_error_not_a_panic() {
    let root = TrustedRoot::public_good().unwrap_or_else(|e| panic!("{e}"));
    let err = root
        .verify_keyless(b"not json", Artifact::Bytes(b"x"), TlogPolicy::Default)
        .expect_err("garbage");
    assert_eq!(err.category(), "bundle");
    assert!(!is_keyless_bundle(b"not json"));
}
