//! `countersign verify` against a real registry (go-containerregistry's, no referrers API, so
//! bundles are found through the `sha256-<hex>` fallback tag) that serves the corpus' hostile
//! signature manifests, fallback indexes, payloads and bundles. The registry stores whatever it
//! is given; everything hostile is pushed there and read back by the real CLI, which must answer
//! `invalid` (exit 12) with the rejected signature's reason naming the object.

use std::{path::PathBuf, process::Command, time::Instant};

use countersign::{
    formats::{
        bundle::{BUNDLE_V03, referrer_manifest},
        dsse::{COSIGN_SIGN_PREDICATE, pae},
        encode_base64,
        oci::{Descriptor, EMPTY_JSON, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST},
        simple_signing::{MEDIA_TYPE, SIGNATURE_ANNOTATION},
    },
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::{Limits, RegistryClient, RegistryOptions},
};
use countersign_tests::registry::{Registry, RegistryKind};
use serde_json::Value;

use super::{
    MEMORY, TIME_LIMIT,
    corpus::{self, Case},
};

struct Served {
    registry: Registry,
    client: RegistryClient,
    key: SigningKey,
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Self {
        countersign_tests::countersign_bin(); // built before anything is timed
        let dir = countersign_tests::scratch_dir("hostile-registry");
        let key = SigningKey::generate();
        let key_file = dir.path().join("trusted.pub");
        std::fs::write(&key_file, key.public_key().to_pem()).expect("key file");
        Served {
            registry: Registry::start(RegistryKind::NoReferrers),
            client: RegistryClient::new(RegistryOptions::default()),
            key,
            key_file,
            _dir: dir,
        }
    }

    /// A small image of our own (no layers), its repository and its manifest.
    async fn image(&self, name: &str) -> (ImageRef, Digest, Descriptor) {
        let repo = ImageRef::parse(&self.registry.repo(name)).expect("repo");
        let config = format!(r#"{{"hostile":"{name}"}}"#).into_bytes();
        self.client.push_blob(&repo, &config).await.expect("config");
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            config: Descriptor::of(OCI_CONFIG, &config),
            layers: Vec::new(),
            annotations: None,
            subject: None,
            artifact_type: None,
        }
        .to_bytes();
        let digest = self
            .client
            .push_manifest(&repo.at_tag("v1"), &manifest, OCI_MANIFEST)
            .await
            .expect("image");
        (repo, digest, Descriptor::of(OCI_MANIFEST, &manifest))
    }

    /// Puts these raw bytes at the image's `.sig` tag.
    async fn signature_manifest(&self, repo: &ImageRef, digest: &Digest, bytes: &[u8]) {
        self.client.push_blob(repo, b"{}").await.expect("config");
        let tag = repo.at_tag(&digest.signature_tag());
        self.client
            .push_manifest(&tag, bytes, OCI_MANIFEST)
            .await
            .expect("the registry stores any manifest");
    }

    /// A `.sig` manifest whose one layer is `payload`, signed by the trusted key.
    async fn legacy_signature(&self, repo: &ImageRef, digest: &Digest, payload: &[u8]) {
        self.client.push_blob(repo, payload).await.expect("payload");
        let signature = encode_base64(&self.key.sign(payload));
        let manifest = legacy_manifest(Descriptor::of(MEDIA_TYPE, payload), signature);
        self.signature_manifest(repo, digest, &manifest).await;
    }

    /// Puts these raw bytes at the image's fallback referrers tag. The registry checks what it
    /// stores as an index, not what it stores as a manifest: a broken index goes in as the
    /// latter, and the tag is read whatever its content type says, as any registry could serve.
    async fn fallback_index(&self, repo: &ImageRef, digest: &Digest, bytes: &[u8]) {
        let tag = repo.at_tag(&digest.fallback_tag());
        if self.client.push_manifest(&tag, bytes, OCI_INDEX).await.is_err() {
            self.client
                .push_manifest(&tag, bytes, OCI_MANIFEST)
                .await
                .expect("the registry stores any manifest");
        }
    }

    /// A referrer manifest whose one layer is `bundle`, listed in the fallback index.
    async fn bundle(&self, repo: &ImageRef, digest: &Digest, subject: &Descriptor, bundle: &[u8]) {
        self.client.push_blob(repo, bundle).await.expect("bundle");
        self.client
            .push_blob(repo, EMPTY_JSON)
            .await
            .expect("empty config");
        let manifest = referrer_manifest(
            bundle,
            subject.clone(),
            COSIGN_SIGN_PREDICATE,
            "2026-01-01T00:00:00Z",
        )
        .to_bytes();
        let at = repo.at_digest(&Digest::of(&manifest));
        self.client
            .push_manifest(&at, &manifest, OCI_MANIFEST)
            .await
            .expect("referrer");
        let mut entry = Descriptor::of(OCI_MANIFEST, &manifest);
        entry.artifact_type = Some(BUNDLE_V03.into());
        let mut index = Index::empty();
        index.manifests.push(entry);
        self.fallback_index(repo, digest, &index.to_bytes()).await;
    }

    /// The bundle with its DSSE envelope signed by the trusted key (and its hint).
    fn sign_envelope(&self, bundle: &[u8]) -> Vec<u8> {
        let mut bundle: Value = serde_json::from_slice(bundle).expect("a JSON bundle");
        let envelope = &bundle["dsseEnvelope"];
        let payload_type = envelope["payloadType"].as_str().expect("payloadType");
        let payload = envelope["payload"].as_str().expect("payload");
        let payload = base64::Engine::decode(&base64::prelude::BASE64_STANDARD, payload).expect("base64");
        let signature = encode_base64(&self.key.sign(&pae(payload_type, &payload)));
        bundle["dsseEnvelope"]["signatures"] = serde_json::json!([{"sig": signature}]);
        bundle["verificationMaterial"]["publicKey"]["hint"] = self.key.public_key().hint().into();
        serde_json::to_vec(&bundle).expect("json")
    }

    /// `countersign verify -o json` of the image; its exit code and output.
    fn verify(&self, repo: &ImageRef, digest: &Digest) -> (Option<i32>, Value, String) {
        let image = repo.at_digest(digest).to_string();
        let key = self.key_file.to_str().expect("utf-8");
        let run = super::countersign(&["verify", "--key", key, "-o", "json", &image]);
        let json = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        (run.code, json, run.stderr)
    }
}

/// A `.sig` manifest with one layer carrying `signature`, as cosign v2 writes them.
fn legacy_manifest(mut layer: Descriptor, signature: String) -> Vec<u8> {
    layer.annotations = Some([(SIGNATURE_ANNOTATION.to_string(), signature)].into());
    Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        config: Descriptor::of(OCI_CONFIG, b"{}"),
        layers: vec![layer],
        annotations: None,
        subject: None,
        artifact_type: None,
    }
    .to_bytes()
}

/// The reason the CLI gives for rejecting the case: the corpus' `registry` if it has one, else
/// the object its library error names. A broken envelope is a broken bundle, as the CLI reads it.
fn expected_reason(case: &Case) -> Option<String> {
    if let Some(r) = &case.registry {
        return Some(r.clone());
    }
    if case.error == "ok" || case.max_mib.is_some() {
        return None;
    }
    let names = case.names.clone()?;
    Some(if names == "DSSE envelope" {
        "bundle".into()
    } else {
        names
    })
}

/// Whether the verdict is `invalid` (exit 12) with a `format` signature rejected for `reason`.
fn check(code: Option<i32>, json: &Value, format: &str, reason: &str) -> bool {
    let rejected = json["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["format"] == format && s["rejected"].as_str().is_some_and(|r| r.contains(reason)));
    code == Some(12) && json["verdict"] == "invalid" && rejected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_every_hostile_signature_a_registry_serves() {
    let served = Served::start();
    let mut failures = Vec::new();
    let mut count = 0;
    for (kind, format) in [
        ("oci-manifest", "legacy"),
        ("oci-index", "bundle"),
        ("simple-signing", "legacy"),
        ("bundle", "bundle"),
        ("dsse", "bundle"),
    ] {
        // One image per case: each starts without signatures.
        for case in corpus::cases(kind) {
            let Some(reason) = expected_reason(&case) else {
                continue;
            };
            let bytes = case.bytes(kind);
            if kind == "dsse" && serde_json::from_slice::<Value>(&bytes).is_err() {
                // Not JSON: it cannot be embedded in a bundle as an envelope.
                continue;
            }
            let (repo, digest, subject) = served.image(&format!("{kind}-{}", case.name)).await;
            match kind {
                "oci-manifest" => served.signature_manifest(&repo, &digest, &bytes).await,
                "oci-index" => served.fallback_index(&repo, &digest, &bytes).await,
                "simple-signing" => served.legacy_signature(&repo, &digest, &bytes).await,
                "bundle" if case.registry.is_some() => {
                    // Its point lies past the signature check: signed by the trusted key.
                    let signed = served.sign_envelope(&bytes);
                    served.bundle(&repo, &digest, &subject, &signed).await
                }
                "bundle" => served.bundle(&repo, &digest, &subject, &bytes).await,
                _ => {
                    let envelope = String::from_utf8_lossy(&bytes);
                    let bundle = format!(
                        r#"{{"mediaType":"{BUNDLE_V03}","verificationMaterial":{{"publicKey":{{"hint":"x"}}}},"dsseEnvelope":{envelope}}}"#
                    );
                    served.bundle(&repo, &digest, &subject, bundle.as_bytes()).await
                }
            }
            count += 1;
            let started = Instant::now();
            let (code, json, stderr) = tokio::task::block_in_place(|| served.verify(&repo, &digest));
            let elapsed = started.elapsed();
            println!(
                "{kind}/{:40} exit {code:?} {:>7.1} ms",
                case.name,
                elapsed.as_secs_f64() * 1e3
            );
            if !check(code, &json, format, &reason) || elapsed > TIME_LIMIT {
                failures.push(format!(
                    "{kind}/{} ({}): expected invalid, a {format} signature rejected for {reason:?}; \
                     exit {code:?} in {elapsed:?}: {json:#} {stderr}",
                    case.name, case.what
                ));
            }
        }
    }
    assert!(count > 30, "{count} cases served");
    // A blob declared huge (or negative) is refused from its descriptor: never requested.
    let log = served.registry.log();
    let zero_blob = format!("/blobs/sha256:{}", "0".repeat(64));
    assert!(
        log.contains("/blobs/sha256:"),
        "the registry logs its requests:\n{log}"
    );
    assert!(
        !log.contains(&zero_blob),
        "a declared-huge blob was requested:\n{log}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The largest heap `countersign verify` may use while refusing a blob four times the blob limit
/// that declares 300 bytes (its data segment limit, `ulimit -d`, in KiB).
const VERIFY_DATA_LIMIT_KIB: u64 = 48 * 1024;

// The memory lock is only ever taken by this test and the synchronous library test (on its own
// thread), never by another task of this runtime: holding it across the push cannot deadlock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_lying_about_its_size_is_read_no_further_than_the_limit() {
    let served = Served::start();
    let (repo, digest, _) = served.image("lying-blob").await;
    let huge_len = 4 * Limits::default().max_blob_bytes;
    {
        let _memory = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
        let huge = vec![b' '; huge_len];
        served.client.push_blob(&repo, &huge).await.expect("huge blob");
        let mut layer = Descriptor::of(MEDIA_TYPE, &huge);
        layer.size = 300;
        let manifest = legacy_manifest(layer, "AA==".into());
        served.signature_manifest(&repo, &digest, &manifest).await;
    }
    let image = repo.at_digest(&digest).to_string();
    // The same command under a data limit far below the blob's size: reading it whole would
    // fail to allocate (abort), reading it up to the limit succeeds with a verdict.
    let started = Instant::now();
    let output = tokio::task::block_in_place(|| {
        Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -d {VERIFY_DATA_LIMIT_KIB} && exec \"$@\""))
            .arg("countersign")
            .arg(countersign_tests::countersign_bin())
            .args(["verify", "--key"])
            .arg(&served.key_file)
            .args(["-o", "json", &image])
            .env("DOCKER_CONFIG", "/nonexistent")
            .env_remove("COSIGN_REPOSITORY")
            .output()
            .expect("bash")
    });
    println!(
        "{huge_len} B blob declared as 300 B: exit {:?} in {:?} under a {VERIFY_DATA_LIMIT_KIB} KiB data limit",
        output.status.code(),
        started.elapsed()
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert!(
        check(output.status.code(), &json, "legacy", "over the"),
        "{json:#} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
