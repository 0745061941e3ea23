//! Every way an image can fail to verify, each with the verdict it must get, against real
//! registries and signatures made by the real cosign. Hostile signature images are built with
//! our own format types and pushed to the real registry; registry faults that no real registry
//! produces on demand (500, 429, a stall) come from a proxy in front of a real one.

mod common;

use std::time::Duration;

use common::*;
use countersign::{
    formats::{
        encode_base64,
        oci::{Descriptor, Manifest, OCI_CONFIG, OCI_MANIFEST},
        simple_signing::{MEDIA_TYPE, Payload, SIGNATURE_ANNOTATION},
    },
    keys::{PublicKey, SigningKey},
    reference::{Digest, ImageRef},
    registry::{Credentials, Limits, RegistryClient, RegistryOptions},
    verify::{KeySet, NamedKey, Outcome, Policy, Verification, verify_image},
};
use countersign_tests::{
    faults::{Fault, FaultProxy},
    images::{crane, push_image, push_image_as},
    registry::{self, Registry, RegistryKind},
};

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions::default())
}

fn policy(keys: &Keys) -> Policy {
    let pem = std::fs::read_to_string(&keys.public).unwrap();
    Policy {
        keys: KeySet::new(
            vec![NamedKey {
                name: "trusted".into(),
                key: PublicKey::from_pem(&pem).unwrap(),
            }],
            1,
        ),
        signature_repository: None,
    }
}

async fn verify(client: &RegistryClient, image: &str, keys: &Keys) -> Verification {
    verify_image(client, &ImageRef::parse(image).unwrap(), &policy(keys)).await
}

/// Invalid for exactly `expected` causes (the rejected signatures' categories, sorted), with a
/// reason that says `reason_part` (what tells apart two rejections of one category).
fn assert_invalid(v: &Verification, expected: &[&str], reason_part: &str) {
    match &v.outcome {
        Outcome::Invalid { reason, causes } => {
            assert_eq!(causes, expected, "{v:#?}");
            assert!(
                reason.contains(reason_part),
                "reason {reason:?} lacks {reason_part:?}"
            );
        }
        other => panic!("expected Invalid ({expected:?}), got {other:?}\n{v:#?}"),
    }
}

fn assert_error(v: &Verification) {
    assert!(
        matches!(v.outcome, Outcome::Error { .. }),
        "expected Error, got {:#?}",
        v
    );
}

/// Pushes a `.sig` image with the given (payload, signature annotation) layers for `digest`.
async fn push_signature_image(
    client: &RegistryClient,
    repo: &ImageRef,
    digest: &Digest,
    layers: &[(Vec<u8>, String)],
) {
    let mut descriptors = Vec::new();
    for (payload, signature) in layers {
        client.push_blob(repo, payload).await.unwrap();
        descriptors.push(signature_layer(Descriptor::of(MEDIA_TYPE, payload), signature));
    }
    push_signature_manifest(client, repo, digest, descriptors).await;
}

fn signature_layer(mut layer: Descriptor, signature: &str) -> Descriptor {
    layer.annotations = Some([(SIGNATURE_ANNOTATION.to_string(), signature.to_string())].into());
    layer
}

/// Puts a `.sig` manifest with exactly these layer descriptors (whatever they claim) for `digest`.
async fn push_signature_manifest(
    client: &RegistryClient,
    repo: &ImageRef,
    digest: &Digest,
    layers: Vec<Descriptor>,
) {
    client.push_blob(repo, b"{}").await.unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        config: Descriptor::of(OCI_CONFIG, b"{}"),
        layers,
        annotations: None,
        subject: None,
        artifact_type: None,
    };
    let tag = repo.at_tag(&digest.signature_tag());
    client
        .push_manifest(&tag, &manifest.to_bytes(), OCI_MANIFEST)
        .await
        .unwrap();
}

fn signing_key(keys: &Keys) -> SigningKey {
    SigningKey::from_encrypted_pem(&std::fs::read_to_string(&keys.private).unwrap(), b"test").unwrap()
}

fn setup(name: &str) -> (Registry, String, Digest) {
    let registry = Registry::start(RegistryKind::Referrers);
    let tag = format!("{}:v1", registry.repo(name));
    let digest = Digest::parse(&push_image(&tag, name)).unwrap();
    (registry, tag, digest)
}

#[tokio::test]
async fn unsigned_image_is_unsigned_and_exits_10() {
    let keys = Keys::generate();
    let (_registry, tag, _) = setup("unsigned");
    assert_eq!(verify(&client(), &tag, &keys).await.outcome, Outcome::Unsigned);
    assert_eq!(
        countersign(&["verify", "--key", keys.public_str(), &tag]).code,
        Some(10)
    );
}

#[tokio::test]
async fn wrong_key_is_invalid_and_exits_12() {
    let signer = Keys::generate_named("signer");
    let other = Keys::generate_named("other");
    let (_registry, tag, _) = setup("wrongkey");
    assert!(signer.cosign3.sign(&signer.private, &tag, false).success);
    assert!(signer.cosign2.sign(&signer.private, &tag, false).success);
    let v = verify(&client(), &tag, &other).await;
    assert_invalid(&v, &["no_trusted_key"], "no trusted key verifies it");
    assert_eq!(v.signatures.len(), 2, "both formats seen: {v:#?}");
    let run = countersign(&["verify", "--key", other.public_str(), &tag]);
    assert_eq!(run.code, Some(12), "{}", run.stderr);
}

#[tokio::test]
async fn a_signature_copied_from_another_image_is_invalid() {
    let keys = Keys::generate();
    let (registry, signed_tag, signed) = setup("copy-a");
    let other_tag = format!("{}:v1", registry.repo("copy-b"));
    let other = Digest::parse(&push_image(&other_tag, "copy-b")).unwrap();
    assert!(keys.cosign2.sign(&keys.private, &signed_tag, false).success);
    crane(&[
        "copy",
        &format!("{}:{}", registry.repo("copy-a"), signed.signature_tag()),
        &format!("{}:{}", registry.repo("copy-b"), other.signature_tag()),
    ]);
    let v = verify(&client(), &other_tag, &keys).await;
    assert_invalid(&v, &["other_digest"], "not this image");
}

#[tokio::test]
async fn a_tampered_payload_is_invalid() {
    let keys = Keys::generate();
    let (_registry, tag, digest) = setup("tampered");
    let image = ImageRef::parse(&tag).unwrap();
    let payload = Payload::new(&image.repository_name(), &digest, &Default::default()).to_bytes();
    let signature = signing_key(&keys).sign(&payload);
    let mut tampered = payload.clone();
    let at = tampered.len() - 5;
    tampered.splice(at..at + 4, *b"true");
    push_signature_image(
        &client(),
        &image,
        &digest,
        &[(tampered, encode_base64(&signature))],
    )
    .await;
    let v = verify(&client(), &tag, &keys).await;
    assert_invalid(&v, &["no_trusted_key"], "no trusted key verifies it");
}

#[tokio::test]
async fn invalid_base64_and_invalid_der_are_invalid() {
    let keys = Keys::generate();
    let (_registry, tag, digest) = setup("garbled");
    let image = ImageRef::parse(&tag).unwrap();
    let payload = Payload::new(&image.repository_name(), &digest, &Default::default()).to_bytes();
    let layers = [
        (payload.clone(), "%%% not base64 %%%".to_string()),
        (payload, encode_base64(b"not DER at all")),
    ];
    push_signature_image(&client(), &image, &digest, &layers).await;
    let v = verify(&client(), &tag, &keys).await;
    assert_invalid(&v, &["format"], "not valid base64");
    assert_invalid(&v, &["format"], "not ASN.1 DER");
    assert_eq!(v.signatures.len(), 2, "both layers rejected: {v:#?}");
}

#[tokio::test]
async fn a_bundle_whose_subject_is_another_digest_is_invalid() {
    let keys = Keys::generate();
    let (registry, signed_tag, signed) = setup("subject-a");
    let other_tag = format!("{}:other", registry.repo("subject-a"));
    let other = Digest::parse(&push_image(&other_tag, "subject-b")).unwrap();
    assert!(keys.cosign3.sign(&keys.private, &signed_tag, false).success);
    // Re-point cosign's own referrer manifest at the other image.
    let client = client();
    let repo = ImageRef::parse(&signed_tag).unwrap();
    let referrer = client.referrers(&repo, &signed).await.unwrap().remove(0);
    let bytes = client.manifest_at(&repo, &referrer).await.unwrap();
    let mut manifest = Manifest::parse(&bytes).unwrap();
    let other_manifest = crane(&["manifest", &other_tag]);
    manifest.subject = Some(Descriptor::of(OCI_MANIFEST, other_manifest.as_bytes()));
    let moved = manifest.to_bytes();
    client
        .push_manifest(&repo.at_digest(&Digest::of(&moved)), &moved, OCI_MANIFEST)
        .await
        .unwrap();
    assert_eq!(manifest.subject.as_ref().unwrap().digest, other.as_str());
    let v = verify(&client, &other_tag, &keys).await;
    assert_invalid(&v, &["other_digest"], "not this image");
}

#[tokio::test]
async fn too_many_layers_is_invalid() {
    let keys = Keys::generate();
    let (_registry, tag, digest) = setup("layers");
    let image = ImageRef::parse(&tag).unwrap();
    let payload = Payload::new(&image.repository_name(), &digest, &Default::default()).to_bytes();
    let signature = encode_base64(&signing_key(&keys).sign(&payload));
    let layers = vec![(payload, signature); 1001];
    push_signature_image(&client(), &image, &digest, &layers).await;
    let v = verify(&client(), &tag, &keys).await;
    assert_invalid(&v, &["unreadable"], "1001 layers, more than the 1000 accepted");
}

#[tokio::test]
async fn an_oversized_blob_is_invalid_whether_declared_or_not() {
    let keys = Keys::generate();
    let (_registry, tag, digest) = setup("oversized");
    let image = ImageRef::parse(&tag).unwrap();
    let client = client();
    let huge = vec![b' '; Limits::default().max_blob_bytes + 1];
    client.push_blob(&image, &huge).await.unwrap();
    let honest = Descriptor::of(MEDIA_TYPE, &huge);
    let lying = Descriptor {
        size: 300,
        ..honest.clone()
    };
    for (layer, expected) in [(honest, "declares"), (lying, "over the")] {
        push_signature_manifest(&client, &image, &digest, vec![signature_layer(layer, "AA==")]).await;
        assert_invalid(&verify(&client, &tag, &keys).await, &["unreadable"], expected);
    }
}

#[tokio::test]
async fn a_missing_tag_is_an_error_not_unsigned() {
    let keys = Keys::generate();
    let (registry, _, _) = setup("missing");
    let v = verify(&client(), &format!("{}:nope", registry.repo("missing")), &keys).await;
    assert_error(&v);
    let run = countersign(&[
        "verify",
        "--key",
        keys.public_str(),
        &format!("{}:nope", registry.repo("missing")),
    ]);
    assert_eq!(run.code, Some(13), "{}", run.stderr);
}

#[tokio::test]
async fn private_registry_with_right_wrong_and_no_credentials() {
    let keys = Keys::generate();
    let registry = Registry::start(RegistryKind::Htpasswd);
    let tag = format!("{}:v1", registry.repo("private"));
    let config = countersign_tests::scratch_dir("docker");
    let right = config.path().join("right.json");
    std::fs::write(&right, registry.docker_config(registry::PASSWORD)).unwrap();
    let wrong = config.path().join("wrong.json");
    std::fs::write(&wrong, registry.docker_config("wrong")).unwrap();
    // Push and sign with the real tools, logged in through DOCKER_CONFIG.
    let docker_dir = countersign_tests::scratch_dir("docker-login");
    std::fs::write(
        docker_dir.path().join("config.json"),
        registry.docker_config(registry::PASSWORD),
    )
    .unwrap();
    push_image_as(Some(docker_dir.path()), &tag, "private");
    let docker_config = docker_dir.path().to_str().unwrap();
    let signed = keys
        .cosign3
        .sign_with_env(&[("DOCKER_CONFIG", docker_config)], &keys.private, &tag, false);
    assert!(signed.success, "{}", signed.stderr);

    let with = |password: &str| {
        RegistryClient::new(RegistryOptions {
            credentials: Credentials::from_docker_config(&registry.docker_config(password), "config.json")
                .unwrap(),
            ..RegistryOptions::default()
        })
    };
    assert!(matches!(
        verify(&with(registry::PASSWORD), &tag, &keys).await.outcome,
        Outcome::Verified { .. }
    ));
    assert_error(&verify(&with("wrong"), &tag, &keys).await);
    assert_error(&verify(&client(), &tag, &keys).await);
    let cli = |config: &std::path::Path| {
        countersign(&[
            "verify",
            "--key",
            keys.public_str(),
            "--registry-config",
            config.to_str().unwrap(),
            &tag,
        ])
        .code
    };
    assert_eq!(cli(&right), Some(0));
    assert_eq!(cli(&wrong), Some(13));
}

/// A client with a short request timeout, so a stalled registry fails fast. Only for the stall:
/// on a busy machine a real registry's answer can take longer than this, which would turn an
/// expected verdict into an error.
fn impatient() -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        limits: Limits {
            request_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..RegistryOptions::default()
    })
}

#[tokio::test]
async fn registry_faults_are_errors_never_unsigned() {
    let keys = Keys::generate();
    let (registry, _, digest) = setup("faults");
    let proxy = FaultProxy::start(&registry.host);
    let via_proxy = format!("{}/faults@{digest}", proxy.host);
    // Unsigned, but every lookup fails somewhere: never "Unsigned".
    for (path, fault) in [
        (".sig", Fault::Status(500)),
        ("/referrers/", Fault::Status(429)),
        ("/referrers/", Fault::Status(503)),
        (".sig", Fault::Stall),
        ("/v2/", Fault::Status(401)),
    ] {
        proxy.rules.clear();
        proxy.rules.set(path, fault.clone());
        let client = match fault {
            Fault::Stall => impatient(),
            Fault::Status(_) | Fault::TooManyRequests { .. } => client(),
        };
        let v = verify(&client, &via_proxy, &keys).await;
        assert_error(&v);
        println!("{path} {fault:?} → {:?}", v.outcome);
    }
    proxy.rules.clear();
    assert_eq!(
        verify(&client(), &via_proxy, &keys).await.outcome,
        Outcome::Unsigned
    );
}

#[tokio::test]
async fn a_valid_signature_stands_even_when_the_other_format_cannot_be_read() {
    let keys = Keys::generate();
    let (registry, tag, digest) = setup("partial");
    assert!(keys.cosign3.sign(&keys.private, &tag, false).success);
    let proxy = FaultProxy::start(&registry.host);
    proxy.rules.set(".sig", Fault::Status(500));
    let v = verify(&client(), &format!("{}/partial@{digest}", proxy.host), &keys).await;
    assert!(matches!(v.outcome, Outcome::Verified { .. }), "{v:#?}");
}
