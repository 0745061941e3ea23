//! cosign v2 signatures logged in a real Rekor v1 (on Trillian and PostgreSQL), end to end: real
//! cosign v2 signs with a key and keylessly (the local Sigstore stack's Fulcio, no TSA), each
//! `.sig` layer carrying the log's SET (`dev.sigstore.cosign/bundle`), and `countersign verify`
//! verifies them offline from a trusted root that lists both the stack's Rekor v2 and this log.
//! Real `cosign verify` of cosign v2 accepts the same signatures against the same logs. Its `.att`
//! attestations, logged the same way, in [`attestations`]. One stack for the whole file, as
//! tests/keyless.rs.

#[path = "rekor_v1/attestations.rs"]
mod attestations;
mod common;
mod operator_common;

use common::{Keys, countersign};
use countersign::{
    formats::simple_signing::{REKOR_BUNDLE_ANNOTATION, TIMESTAMP_ANNOTATION},
    reference::{Digest, ImageRef},
    registry::{RegistryClient, RegistryOptions},
};
use countersign_tests::{
    cosign::Run,
    images::{crane, push_image},
    registry::{Registry, RegistryKind},
    rekor_v1::RekorV1,
    sigstore::{SigstoreStack, keyless_args, verify_args},
};
use operator_common::{cluster, namespace};
use serde_json::{Value, json};

const NS: &str = "ci";
const BUILDER: &str = "builder";

/// What each `countersign verify` here is given.
struct Trust<'a> {
    /// The stack's trusted root: its Rekor v2 and this Rekor v1.
    root: &'a str,
    /// The same without this Rekor v1.
    root_without_log: &'a str,
    public_key: &'a str,
    identity: &'a str,
    issuer: &'a str,
}

impl Trust<'_> {
    /// `countersign verify --key … --tlog required` against `root`, JSON out.
    fn with_key(&self, root: &str, image: &str) -> Run {
        self.key_command("verify", root, &[], image)
    }

    /// `countersign <command> --key … --tlog required` against `root`, JSON out, then `extra`.
    fn key_command(&self, command: &str, root: &str, extra: &[&str], image: &str) -> Run {
        let key = ["--key", self.public_key, "--tlog", "required"];
        countersign(&verify_args(command, &key, root, extra, image))
    }

    /// `countersign verify` with the identity flags against `root`, JSON out.
    fn keyless(&self, root: &str, extra: &[&str], image: &str) -> Run {
        self.keyless_command("verify", root, extra, image)
    }

    /// `countersign <command>` with the identity flags against `root`, JSON out.
    fn keyless_command(&self, command: &str, root: &str, extra: &[&str], image: &str) -> Run {
        countersign(&keyless_args(
            command,
            self.identity,
            self.issuer,
            root,
            extra,
            image,
        ))
    }
}

/// The verdict, and per signature its rejection category and whether its log entry verified.
fn verdict(run: &Run) -> (String, Vec<(Option<String>, bool)>) {
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("JSON from countersign verify ({e}): {run:?}"));
    let signatures = v["signatures"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|c| {
                    let category = c["rejectedCategory"].as_str().map(str::to_string);
                    (category, c["logged"].as_bool().unwrap_or(false))
                })
                .collect()
        })
        .unwrap_or_default();
    (v["verdict"].as_str().unwrap_or_default().to_string(), signatures)
}

/// Verified by its one signature, whose log entry verified.
fn assert_verified_logged(run: &Run) {
    assert_eq!(
        verdict(run),
        ("verified".to_string(), vec![(None, true)]),
        "{run:?}"
    );
}

/// Invalid, its one signature rejected for `category`.
fn assert_invalid(run: &Run, category: &str) {
    assert_eq!(
        verdict(run),
        ("invalid".to_string(), vec![(Some(category.to_string()), false)]),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_v2_signatures_logged_in_rekor_v1_verify_by_their_set() {
    let cluster = cluster().await;
    namespace(&cluster.client(), NS, json!({})).await;
    let stack = SigstoreStack::start(&cluster).await.expect("the Sigstore stack");
    let rekor = RekorV1::start()
        .await
        .expect("Rekor v1 on Trillian and PostgreSQL");
    let root_without_log = stack.dir().join("trusted_root-without-rekor-v1.json");
    std::fs::copy(stack.trusted_root(), &root_without_log).expect("copy the trusted root");
    stack
        .trust_log(rekor.tlog())
        .expect("Rekor v1 in the trusted root");
    let token = SigstoreStack::token(&cluster, NS, BUILDER)
        .await
        .expect("an ID token");
    let registry = Registry::start(RegistryKind::NoReferrers);
    let repo = registry.repo("app");
    let keys = Keys::generate();
    let cosign2 = &keys.cosign2;
    let sign = |tag: &str, how: &dyn Fn(&str) -> Run| {
        let digest = push_image(&format!("{repo}:{tag}"), tag);
        let image = format!("{repo}@{digest}");
        let run = how(&image);
        assert!(run.success, "signing {tag}: {}", run.stderr);
        image
    };
    let by_key = |tag: &str| sign(tag, &|i| rekor.sign_v2_with_key(cosign2, &keys.private, i));
    let keyless = |tag: &str| sign(tag, &|i| rekor.sign_v2_keyless(&stack, cosign2, &token, i));

    let identity = SigstoreStack::identity(NS, BUILDER);
    let trust = Trust {
        root: stack.trusted_root().to_str().expect("utf-8 path"),
        root_without_log: root_without_log.to_str().expect("utf-8 path"),
        public_key: keys.public_str(),
        identity: &identity,
        issuer: &stack.issuer,
    };
    let signed_by_key = by_key("key");
    let signed_keyless = keyless("keyless");
    for image in [&signed_by_key, &signed_keyless] {
        let (manifest, _) = layer_manifest(image, Layer::Sig).await;
        let annotations = &manifest["layers"][0]["annotations"];
        let set: Value =
            serde_json::from_str(annotations[REKOR_BUNDLE_ANNOTATION].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("a SET annotation ({e}): {manifest}"));
        assert_eq!(
            set["Payload"]["logID"],
            json!(rekor.log_id()),
            "logged in this Rekor: {set}"
        );
        // No timestamp: the SET's integrated time is the only trusted time.
        assert!(annotations.get(TIMESTAMP_ANNOTATION).is_none(), "{manifest}");
    }

    let mut cosign_env = stack.v2_env();
    cosign_env.extend(rekor.cosign_env());
    let cosign_v2 = |command: &str, extra: &[&str]| {
        let mut args = vec![command, "--rekor-url", &rekor.url, "--offline"];
        args.extend_from_slice(extra);
        cosign2.run_with_env(&cosign_env, &args)
    };
    let cosign_verify = |extra: &[&str]| cosign_v2("verify", extra);
    real_cosign_accepts(&cosign_verify, &trust, &signed_by_key, &signed_keyless);
    key_signed(&trust, &signed_by_key);
    keyless_signed(&trust, &signed_keyless);
    tampered(&trust, &by_key, &keyless, &cosign_verify).await;

    let attester = attestations::Attester::new(&rekor, &stack, &keys, &token, registry.repo("attested"));
    let attested = attestations::Attested {
        by_key: attester.sign_and_attest("key", false),
        keyless: attester.sign_and_attest("keyless", true),
        intoto: attester.attest_with("intoto", false, &["--rekor-entry-type", "intoto"]),
    };
    let cosign_verify_attestation = |extra: &[&str]| cosign_v2("verify-attestation", extra);
    attestations::verdicts(&trust, &rekor, &attested, &cosign_verify_attestation).await;
    attestations::tampered(&trust, &attester, &attested).await;
    attestations::operator_counts(&cluster, &trust, &keys, &attested).await;
}

/// `cosign verify` of cosign v2 (`cosign_verify`: offline, by the SET, the stack's keys from the
/// environment) accepts both.
fn real_cosign_accepts(cosign_verify: &CosignVerify<'_>, trust: &Trust<'_>, by_key: &str, keyless: &str) {
    let run = cosign_verify(&["--key", trust.public_key, by_key]);
    assert!(
        run.success,
        "cosign v2 verifies its key-signed, logged signature: {run:?}"
    );
    let identity = [
        "--certificate-identity",
        trust.identity,
        "--certificate-oidc-issuer",
        trust.issuer,
        keyless,
    ];
    let run = cosign_verify(&identity);
    assert!(
        run.success,
        "cosign v2 verifies its keyless, logged signature: {run:?}"
    );
}

/// `cosign verify` of cosign v2 with these arguments, trusting the stack and this Rekor v1.
type CosignVerify<'a> = dyn Fn(&[&str]) -> Run + 'a;

/// With `--tlog required`, the key-signed `.sig` verifies by its SET against the trusted root's
/// logs, and not against a root without this log.
fn key_signed(trust: &Trust<'_>, image: &str) {
    assert_verified_logged(&trust.with_key(trust.root, image));
    assert_invalid(&trust.with_key(trust.root_without_log, image), "untrusted_log");
}

/// The keyless `.sig` (no TSA timestamp) verifies with the SET's integrated time as its only
/// trusted time, by default (keyless needs the log) and with `--tlog required`, and not against a
/// root without this log.
fn keyless_signed(trust: &Trust<'_>, image: &str) {
    assert_verified_logged(&trust.keyless(trust.root, &[], image));
    assert_verified_logged(&trust.keyless(trust.root, &["--tlog", "required"], image));
    assert_invalid(
        &trust.keyless(trust.root_without_log, &[], image),
        "untrusted_log",
    );
}

/// Each signature of its own image, its `.sig` manifest re-pushed changed: one byte of the SET,
/// or the integrated time it signs, is `untrusted_log`; the keyless one without its log entry
/// (and no timestamp) has no trusted time left.
async fn tampered(
    trust: &Trust<'_>,
    by_key: &dyn Fn(&str) -> String,
    keyless: &dyn Fn(&str) -> String,
    cosign_verify: &CosignVerify<'_>,
) {
    let image = by_key("key-bad-set");
    edit_set(&image, |set| {
        let text = set["SignedEntryTimestamp"].as_str().expect("a SET").to_string();
        set["SignedEntryTimestamp"] = json!(flip_one_byte(&text));
    })
    .await;
    assert_invalid(&trust.with_key(trust.root, &image), "untrusted_log");
    let run = cosign_verify(&["--key", trust.public_key, &image]);
    assert!(!run.success, "cosign v2 refuses the changed SET too: {run:?}");

    let image = by_key("key-bad-time");
    edit_set(&image, later).await;
    assert_invalid(&trust.with_key(trust.root, &image), "untrusted_log");

    let image = keyless("keyless-bad-time");
    edit_set(&image, later).await;
    assert_invalid(&trust.keyless(trust.root, &[], &image), "untrusted_log");

    let image = keyless("keyless-unlogged");
    edit_layer(&image, Layer::Sig, |annotations| {
        annotations
            .as_object_mut()
            .expect("the recorded verdict")
            .remove(REKOR_BUNDLE_ANNOTATION)
            .expect("a SET annotation");
    })
    .await;
    assert_invalid(
        &trust.keyless(trust.root, &["--tlog", "optional"], &image),
        "no_trusted_time",
    );
    assert_invalid(&trust.keyless(trust.root, &[], &image), "no_tlog_entry");
}

/// The SET's payload says it was integrated a second later than the log signed.
fn later(set: &mut Value) {
    let time = set["Payload"]["integratedTime"]
        .as_i64()
        .expect("an integrated time");
    set["Payload"]["integratedTime"] = json!(time + 1);
}

/// `text` (base64) with one byte of what it encodes changed.
fn flip_one_byte(text: &str) -> String {
    use base64::{Engine, engine::general_purpose::STANDARD as B64};
    let mut bytes = B64.decode(text).expect("base64");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    B64.encode(bytes)
}

/// Re-pushes `image`'s `.sig` manifest with its SET annotation changed by `edit`.
async fn edit_set(image: &str, edit: impl FnOnce(&mut Value)) {
    edit_layer(image, Layer::Sig, |annotations| {
        let text = annotations[REKOR_BUNDLE_ANNOTATION]
            .as_str()
            .expect("a SET annotation");
        let mut set: Value = serde_json::from_str(text).expect("the SET annotation is JSON");
        edit(&mut set);
        annotations[REKOR_BUNDLE_ANNOTATION] = json!(set.to_string());
    })
    .await;
}

/// Which of cosign v2's tags of an image.
#[derive(Debug, Clone, Copy)]
enum Layer {
    /// `sha256-<hex>.sig`
    Sig,
    /// `sha256-<hex>.att`
    Att,
}

/// Re-pushes `image`'s `layer` manifest (one layer) with that layer's annotations changed by
/// `edit`; the blob stays as cosign pushed it.
async fn edit_layer(image: &str, layer: Layer, edit: impl FnOnce(&mut Value)) {
    let (mut manifest, tag) = layer_manifest(image, layer).await;
    edit(&mut manifest["layers"][0]["annotations"]);
    let media_type = manifest["mediaType"].as_str().expect("a media type").to_string();
    let bytes = serde_json::to_vec(&manifest).expect("JSON");
    RegistryClient::new(RegistryOptions::default())
        .push_manifest(&tag, &bytes, &media_type)
        .await
        .expect("push the changed manifest");
}

/// `image`'s `layer` manifest (as JSON, with one layer) and its tag.
async fn layer_manifest(image: &str, layer: Layer) -> (Value, ImageRef) {
    let (repo, digest) = image.split_once('@').expect("a digest reference");
    let digest = Digest::parse(digest).expect("a digest");
    let tag = match layer {
        Layer::Sig => digest.signature_tag(),
        Layer::Att => digest.attestation_tag(),
    };
    let tag = ImageRef::parse(repo).expect("a repository").at_tag(&tag);
    let manifest = crane(&["manifest", &tag.to_string()]);
    let manifest: Value = serde_json::from_str(&manifest).expect("a manifest");
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1), "{manifest}");
    (manifest, tag)
}
