//! Admission of images under a TrustRoot that requires attestations, end to end: the real
//! kube-apiserver calls countersign's webhook, images in a real registry are signed and attested
//! by the real cosign. Admission's answer is the operator's: signed and attested with provenance
//! passing the CEL policy is admitted; a missing attestation or one failing the policy is denied
//! under `Enforce` (warned under `Audit`), each with a Status cause naming the reason, the image
//! field, the TrustRoot and the predicate type. A TrustRoot without `spec.attestations` costs no
//! attestation request (the registry's own log says so).

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use common::Keys;
use countersign_tests::{
    admission::*,
    cosign::{CosignVersion, slsa_provenance_v1},
    images::push_image,
    registry::{Registry, RegistryKind},
    scratch_dir,
};
use operator_common::{blocking, cluster, eventually, key, namespace, trust_root};
use serde_json::{Value, json};

const NS: &str = "attested";
const WAIT: Duration = Duration::from_secs(60);
const SLSA1: &str = "https://slsa.dev/provenance/v1";
const POLICY: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/main'";
const FIELD: &str = "spec.containers[0].image";

/// The Status causes of a denial: (reason, field, message).
fn causes(created: &Created) -> Vec<(String, String, String)> {
    let text = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    created.body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (text(c, "reason"), text(c, "field"), text(c, "message")))
        .collect()
}

/// Denied (403, Forbidden) with exactly one cause, of `reason`, on the image field, whose
/// message names each of `names`.
fn denied_for(created: &Created, reason: &str, names: &[&str]) {
    assert_eq!(
        (created.code, created.body["reason"].as_str()),
        (403, Some("Forbidden")),
        "{created:?}"
    );
    let causes = causes(created);
    assert_eq!(causes.len(), 1, "{created:?}");
    let (r, field, message) = &causes[0];
    assert_eq!((r.as_str(), field.as_str()), (reason, FIELD), "{created:?}");
    for name in names {
        assert!(message.contains(name), "{name:?} not in {message:?}");
    }
}

fn admitted(created: &Created) {
    assert_eq!(created.code, 201, "{created:?}");
}

/// Paths the registry was asked for a `.att` tag (a v2 attestation lookup) under `repo`.
fn attestation_requests(registry: &Registry, repo: &str) -> usize {
    let prefix = format!("/v2/{repo}/manifests/");
    registry
        .requests()
        .iter()
        .filter(|p| p.starts_with(&prefix) && p.ends_with(".att"))
        .count()
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_requires_the_attestations_the_operator_requires() {
    let cluster = cluster().await;
    let client = cluster.client();
    let mut registry = Registry::start(RegistryKind::Referrers);
    let keys = blocking(|| Keys::generate_named("ci")).await;
    let images = Images::push_sign_and_attest(&registry.host, &keys);
    create_trust_roots(&client, &registry.host, &keys).await;
    namespace(&client, NS, json!({})).await;
    let replica = Replica::start(&cluster, "admission-attestations").await;
    install_webhooks(&client, &[replica.admission], false).await;
    wait_ca_bundles(&client).await.expect("caBundles");
    let admission = Admission::of_pods_in(&client, NS);

    admits_an_image_attested_as_required(&admission, &images.good).await;
    denies_an_image_without_the_attestation(&admission, &images.missing).await;
    denies_an_attestation_failing_the_policy(&admission, &images.failing).await;
    warns_instead_under_audit(&admission, &images.audited).await;
    asks_for_attestations_only_where_required(&admission, &registry, &images.plain).await;
    registry.stop();
    answers_from_its_cache_without_the_registry(&admission, &images).await;
    counts_the_denials_in_its_metrics(replica.metrics).await;
    replica.stop().await;
    cluster.stop();
}

/// Each image, signed by `ci`, as `repo@digest`; its attestations made by the real cosign.
struct Images {
    /// Provenance from `refs/heads/main`, passing [`POLICY`] (cosign v3, a bundle referrer).
    good: String,
    /// No attestation.
    missing: String,
    /// Provenance from `refs/heads/release`, failing [`POLICY`] (cosign v2, `.att`).
    failing: String,
    /// Attested as `good` is, but never asked about before the registry goes away.
    never_seen: String,
    /// No attestation, under the `Audit` TrustRoot.
    audited: String,
    /// Under the TrustRoot that requires no attestation.
    plain: String,
}

impl Images {
    fn push_sign_and_attest(host: &str, keys: &Keys) -> Self {
        let dir = scratch_dir("provenance");
        let (main, release) = (dir.path().join("main.json"), dir.path().join("release.json"));
        std::fs::write(&main, slsa_provenance_v1("refs/heads/main")).expect("write");
        std::fs::write(&release, slsa_provenance_v1("refs/heads/release")).expect("write");

        // Each image signed by `ci`, pushed to `<host>/<path>`; returns `repo@digest`.
        let signed = |path: &str| {
            let repo = format!("{host}/{path}");
            let digest = push_image(&format!("{repo}:v1"), path);
            let image = format!("{repo}@{digest}");
            let run = keys.cosign3.sign(&keys.private, &image, false);
            assert!(run.success, "cosign sign: {}", run.stderr);
            image
        };
        let attest = |version, predicate: &std::path::Path, image: &str| {
            keys.attest(version, predicate, "slsaprovenance1", image);
        };
        let good = signed("att/good");
        attest(CosignVersion::V3, &main, &good);
        let missing = signed("att/missing");
        let failing = signed("att/policy");
        attest(CosignVersion::V2, &release, &failing);
        let never_seen = signed("att/never-seen");
        attest(CosignVersion::V3, &main, &never_seen);
        let audited = signed("audit/missing");
        let plain = signed("plain/app");
        Images {
            good,
            missing,
            failing,
            never_seen,
            audited,
            plain,
        }
    }
}

/// `provenance` (`att/`, Enforce) and `provenance-audit` (`audit/`, Audit) require provenance
/// passing [`POLICY`]; `plain` (`plain/`, Enforce) requires no attestation. All trust `ci`.
async fn create_trust_roots(client: &kube::Client, host: &str, keys: &Keys) {
    let required = json!([{"predicateType": "slsaprovenance1", "policy": POLICY}]);
    let root = |images: &str, mode: &str, attestations: Option<&Value>| {
        let mut spec = json!({"images": [format!("{host}/{images}/**")], "keys": [key("ci", &keys.public)],
                              "mode": mode, "reverifyInterval": "1m"});
        if let Some(a) = attestations {
            spec["attestations"] = a.clone();
        }
        spec
    };
    for (name, spec) in [
        ("provenance", root("att", "Enforce", Some(&required))),
        ("provenance-audit", root("audit", "Audit", Some(&required))),
        ("plain", root("plain", "Enforce", None)),
    ] {
        trust_root(client, name, spec)
            .await
            .unwrap_or_else(|e| panic!("TrustRoot {name}: {e}"));
    }
}

/// Asks admission about pods in a namespace. Dry runs throughout: nothing is created, so only
/// admission asks the registry.
struct Admission<'a> {
    client: &'a kube::Client,
    pods: String,
}

impl<'a> Admission<'a> {
    fn of_pods_in(client: &'a kube::Client, namespace: &str) -> Self {
        Admission {
            client,
            pods: pods_path(namespace),
        }
    }

    /// The API server's answer to a dry-run create of pod `name` running `image`.
    async fn ask(&self, name: &str, image: &str) -> Created {
        post(self.client, &self.pods, &pod(name, image), true).await
    }
}

/// (a) Signed, attested, the provenance passing the policy: admitted, silently. The first
/// call may race the API server's reload of the caBundle, hence the wait.
async fn admits_an_image_attested_as_required(admission: &Admission<'_>, good: &str) {
    let first = eventually("the API server to call the webhook", WAIT, || async {
        let created = admission.ask("good", good).await;
        anyhow::ensure!(created.code == 201, "{created:?}");
        Ok(created)
    })
    .await;
    assert!(first.warnings.is_empty(), "{first:?}");
}

/// (b) Signed, no attestation: denied, naming TrustRoot, image and predicate type.
async fn denies_an_image_without_the_attestation(admission: &Admission<'_>, missing: &str) {
    let created = admission.ask("missing", missing).await;
    denied_for(
        &created,
        "attestation_missing",
        &[
            &format!("image {missing}"),
            "TrustRoot provenance (Enforce)",
            &format!("attestation {SLSA1} missing"),
        ],
    );
}

/// (c) Attested (cosign v2, `.att`), but the provenance fails the policy.
async fn denies_an_attestation_failing_the_policy(admission: &Admission<'_>, failing: &str) {
    let created = admission.ask("policy", failing).await;
    denied_for(
        &created,
        "attestation_policy_failed",
        &[
            &format!("image {failing}"),
            "TrustRoot provenance (Enforce)",
            &format!("attestation {SLSA1} fails policy"),
            POLICY,
        ],
    );
}

/// Audit: the same refusal is a warning, and the pod is admitted.
async fn warns_instead_under_audit(admission: &Admission<'_>, audited: &str) {
    let created = admission.ask("audited", audited).await;
    admitted(&created);
    assert_eq!(created.warnings.len(), 1, "{created:?}");
    assert!(
        created.warnings[0].contains(&format!(
            "TrustRoot provenance-audit (Audit): attestation {SLSA1} missing"
        )),
        "{created:?}"
    );
}

/// (d) A TrustRoot that requires no attestation: admitted, and no attestation asked for;
/// under one that does, the attestations were asked for (the same log shows it can tell).
async fn asks_for_attestations_only_where_required(
    admission: &Admission<'_>,
    registry: &Registry,
    plain: &str,
) {
    admitted(&admission.ask("plain", plain).await);
    assert_eq!(attestation_requests(registry, "plain/app"), 0);
    assert!(attestation_requests(registry, "att/missing") >= 1);
}

/// With the registry gone, what was verified stands from the cache; a digest never seen is a
/// registry problem, not a missing attestation.
async fn answers_from_its_cache_without_the_registry(admission: &Admission<'_>, images: &Images) {
    admitted(&admission.ask("cached", &images.good).await);
    denied_for(
        &admission.ask("never-seen", &images.never_seen).await,
        "registry",
        &["TrustRoot provenance (Enforce): registry unreachable"],
    );
}

async fn counts_the_denials_in_its_metrics(metrics: std::net::SocketAddr) {
    let denials = metric(
        metrics,
        r#"countersign_admission_requests_total{decision="denied",reason="attestation_missing"}"#,
    )
    .await;
    assert!(denials >= 1.0, "denied/attestation_missing {denials}");
}
