//! Admission, end to end: the real kube-apiserver calls countersign's webhooks over TLS (the
//! certificate and the caBundle are countersign's own), with the webhook configurations of
//! `manifests/webhooks.yaml`, images in a real registry signed by the real cosign.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::Keys;
use countersign_tests::{
    admission::*,
    images::{Pushed, push_image},
    registry::{Registry, RegistryKind},
};
use jiff::{SignedDuration, Timestamp};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use operator_common::{apply, blocking, cluster, events, eventually, key, namespace, trust_root, wait_event};
use serde_json::{Value, json};

const NS: &str = "apps";
const SKIPPED: &str = "skipped";
const WAIT: Duration = Duration::from_secs(60);

fn at(offset_secs: i64) -> String {
    (Timestamp::now() + SignedDuration::from_secs(offset_secs)).to_string()
}

fn denied(created: &Created, says: &[&str]) {
    assert_eq!(created.code, 403, "{created:?}");
    assert_eq!(created.body["reason"], "Forbidden", "{created:?}");
    for s in says {
        assert!(
            created.message().contains(s),
            "{s:?} not in {:?}",
            created.message()
        );
    }
}

fn admitted(created: &Created) {
    assert_eq!(created.code, 201, "{created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enforce_denies_audit_warns_and_rotations_and_keys_are_seen_at_once() {
    let cluster = cluster().await;
    let client = cluster.client();
    let mut registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let (a, b) = blocking(|| (Keys::generate_named("a"), Keys::generate_named("b"))).await;
    let images = Images::push_and_sign(&host, &a, &b);
    let f = Fixture {
        pods: pods_path(NS),
        client,
        host,
        a,
        b,
        images,
    };
    set_up_trust_roots_and_namespaces(&f).await;
    let replica = Replica::start(&cluster, "admission-test").await;
    install_webhooks(&f.client, &[replica.admission], true).await;
    wait_ca_bundles(&f.client).await.expect("caBundles");

    admits_a_signed_pod_silently(&f).await;
    denies_unsigned_and_untrusted_saying_why(&f).await;
    audit_admits_with_a_warning_and_an_event(&f).await;
    // A denial is recorded too.
    wait_event(&f.client, NS, "Pod", "unsigned", "AdmissionDenied", WAIT).await;
    checks_an_image_change_but_not_a_label(&f).await;
    skips_a_namespace_labelled_out(&f).await;
    pins_the_verified_tag_to_its_digest(&f).await;
    denies_a_removed_key_at_once(&f).await;
    // A rotation b → a: before its window a is held back, during it both are accepted, after
    // it (AtWindowEnd) b is retired.
    holds_a_back_before_the_rotations_window(&f).await;
    accepts_both_keys_in_the_window(&f).await;
    retires_b_once_the_window_closed(&f).await;
    answers_from_the_cache_while_the_registry_is_gone(&f, &mut registry).await;
    counts_denials_and_cache_hits(replica.metrics).await;
    replica.stop().await;
    cluster.stop();
}

/// What the steps share: the admin client, the registry's host, the key pairs `a` and `b`, the
/// images and the path of the pods of [`NS`].
struct Fixture {
    client: kube::Client,
    host: String,
    a: Keys,
    b: Keys,
    images: Images,
    pods: String,
}

impl Fixture {
    /// A TrustRoot's spec for the images under `adm/<images>/`.
    fn root(&self, images: &str, mode: &str, keys: Value) -> Value {
        let host = &self.host;
        json!({"images": [format!("{host}/adm/{images}/**")], "keys": keys, "mode": mode, "reverifyInterval": "1m"})
    }

    /// Posts a pod of `image`.
    async fn post_pod(&self, name: &str, image: &str, dry_run: bool) -> Created {
        post(&self.client, &self.pods, &pod(name, image), dry_run).await
    }
}

/// Pushes `<host>/adm/<path>:v1`.
fn push(host: &str, path: &str, content: &str) -> Pushed {
    Pushed::push(&format!("{host}/adm/{path}"), content)
}

/// Signs `image` by digest with the real cosign v3 and `keys`.
fn sign(image: &Pushed, keys: &Keys) {
    let run = keys.cosign3.sign(&keys.private, &image.pinned(), false);
    assert!(run.success, "cosign sign: {}", run.stderr);
}

/// The images, under `prod/` (Enforce), `audit/` (Audit) and `pinned/` (Enforce, pinning).
struct Images {
    /// Signed by a.
    signed: Pushed,
    /// Signed by b.
    by_b: Pushed,
    /// Not signed.
    unsigned: Pushed,
    /// Signed by a, and first asked about while the registry is gone.
    never_seen: Pushed,
    /// Not signed.
    audited: Pushed,
    /// Signed by a.
    pinned: Pushed,
}

impl Images {
    fn push_and_sign(host: &str, a: &Keys, b: &Keys) -> Self {
        let signed = push(host, "prod/signed", "signed by a");
        sign(&signed, a);
        let by_b = push(host, "prod/by-b", "signed by b");
        sign(&by_b, b);
        let unsigned = push(host, "prod/unsigned", "not signed");
        let never_seen = push(host, "prod/never-seen", "never asked before the outage");
        sign(&never_seen, a);
        let audited = push(host, "audit/unsigned", "audit, unsigned");
        let pinned = push(host, "pinned/app", "pinned");
        sign(&pinned, a);
        Images {
            signed,
            by_b,
            unsigned,
            never_seen,
            audited,
            pinned,
        }
    }
}

/// TrustRoots `prod` (Enforce), `audit` (Audit) and `pinned` (Enforce, pinning to digests), each
/// holding key a; namespace [`NS`], and [`SKIPPED`] labelled out of admission.
async fn set_up_trust_roots_and_namespaces(f: &Fixture) {
    let client = &f.client;
    trust_root(
        client,
        "prod",
        f.root("prod", "Enforce", json!([key("a", &f.a.public)])),
    )
    .await
    .expect("TrustRoot prod");
    trust_root(
        client,
        "audit",
        f.root("audit", "Audit", json!([key("a", &f.a.public)])),
    )
    .await
    .expect("TrustRoot audit");
    let mut pin = f.root("pinned", "Enforce", json!([key("a", &f.a.public)]));
    pin["pinToDigest"] = json!(true);
    trust_root(client, "pinned", pin).await.expect("TrustRoot pinned");
    namespace(client, NS, json!({})).await;
    namespace(client, SKIPPED, json!({"countersign.dev/admission": "disabled"})).await;
}

/// Signed by a trusted key: admitted, silently. The first call may still race the API server's
/// reload of the configuration's caBundle, hence the wait on the first answer.
async fn admits_a_signed_pod_silently(f: &Fixture) {
    let first = eventually("the API server to call the webhook", WAIT, || async {
        let created = f.post_pod("signed", &f.images.signed.pinned(), false).await;
        anyhow::ensure!(created.code == 201, "{created:?}");
        Ok(created)
    })
    .await;
    assert!(first.warnings.is_empty(), "{first:?}");
}

/// Unsigned, and signed by a key the TrustRoot does not hold: denied, saying which and why.
async fn denies_unsigned_and_untrusted_saying_why(f: &Fixture) {
    let unsigned = &f.images.unsigned;
    let no_sig = f.post_pod("unsigned", &unsigned.tagged(), false).await;
    denied(
        &no_sig,
        &[
            &format!("image {} ({})", unsigned.tagged(), unsigned.digest),
            "TrustRoot prod (Enforce): no signature",
        ],
    );
    let untrusted = f.post_pod("by-b", &f.images.by_b.pinned(), false).await;
    denied(&untrusted, &["TrustRoot prod (Enforce): no trusted key"]);
    // A Deployment is refused at apply time, not discovered later as pods failing to appear.
    let deploy = post(
        &f.client,
        &deployments_path(NS),
        &deployment("web", &unsigned.tagged()),
        false,
    )
    .await;
    denied(&deploy, &["TrustRoot prod (Enforce): no signature"]);
}

/// Audit: admitted with a warning kubectl prints, and an Event; a dry run records nothing.
async fn audit_admits_with_a_warning_and_an_event(f: &Fixture) {
    let audited_image = f.images.audited.pinned();
    let dry = f.post_pod("dry", &audited_image, true).await;
    admitted(&dry);
    assert_eq!(dry.warnings.len(), 1, "{dry:?}");
    assert!(
        dry.warnings[0].contains("TrustRoot audit (Audit): no signature"),
        "{dry:?}"
    );
    admitted(&f.post_pod("audited", &audited_image, false).await);
    let event = wait_event(&f.client, NS, "Pod", "audited", "AdmissionAudited", WAIT).await;
    assert_eq!(event.type_, "Warning");
    assert!(
        events(&f.client, NS, "Pod", "dry")
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// Changing a running pod's image to one that does not verify is an UPDATE that is checked; a
/// label is an UPDATE that changes no image: not even sent to the webhook.
async fn checks_an_image_change_but_not_a_label(f: &Fixture) {
    let pod_api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(f.client.clone(), NS);
    let swap = json!({"spec": {"containers": [{"name": "app", "image": f.images.unsigned.tagged()}]}});
    let swapped = pod_api
        .patch("signed", &PatchParams::default(), &Patch::Strategic(swap))
        .await;
    assert!(
        matches!(&swapped, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("no signature")),
        "{swapped:?}"
    );
    let labelled = json!({"metadata": {"labels": {"team": "payments"}}});
    pod_api
        .patch("signed", &PatchParams::default(), &Patch::Merge(labelled))
        .await
        .expect("a label added");
}

/// A namespace labelled out is not checked.
async fn skips_a_namespace_labelled_out(f: &Fixture) {
    admitted(
        &post(
            &f.client,
            &pods_path(SKIPPED),
            &pod("anything", &f.images.unsigned.tagged()),
            false,
        )
        .await,
    );
}

/// Pin to digest: the tag that was verified is what the kubelet will pull.
async fn pins_the_verified_tag_to_its_digest(f: &Fixture) {
    let pinned = &f.images.pinned;
    let stored = f.post_pod("pinned", &pinned.tagged(), false).await;
    admitted(&stored);
    assert_eq!(
        stored.body["spec"]["containers"][0]["image"],
        json!(format!("{}@{}", pinned.tagged(), pinned.digest))
    );
}

/// Key a removed from prod: a pod it signed is denied within moments, no restart needed.
async fn denies_a_removed_key_at_once(f: &Fixture) {
    let removed = Instant::now();
    trust_root(
        &f.client,
        "prod",
        f.root("prod", "Enforce", json!([key("b", &f.b.public)])),
    )
    .await
    .expect("TrustRoot prod without a");
    eventually("key a's signature refused", WAIT, || async {
        let c = f.post_pod("after-removal", &f.images.signed.pinned(), true).await;
        anyhow::ensure!(c.code == 403, "{c:?}");
        Ok(())
    })
    .await;
    eprintln!("key removed → denied at admission after {:?}", removed.elapsed());
}

/// Prod holds b and a, and a KeyRotation b → a has its window an hour from now.
async fn holds_a_back_before_the_rotations_window(f: &Fixture) {
    trust_root(
        &f.client,
        "prod",
        f.root(
            "prod",
            "Enforce",
            json!([key("b", &f.b.public), key("a", &f.a.public)]),
        ),
    )
    .await
    .expect("TrustRoot prod with b and a");
    let spec = json!({"trustRootRef": "prod", "fromKey": "b", "toKey": "a", "retirement": "AtWindowEnd",
                      "window": {"start": at(3600), "duration": "1h"}});
    apply(
        &f.client,
        "countersign.dev/v1alpha1",
        "KeyRotation",
        None,
        json!({"metadata": {"name": "b-to-a"}, "spec": spec}),
    )
    .await
    .expect("KeyRotation b-to-a");
    eventually("a held back before the window", WAIT, || async {
        let c = f.post_pod("scheduled", &f.images.signed.pinned(), true).await;
        anyhow::ensure!(c.code == 403 && c.message().contains("held back"), "{c:?}");
        Ok(())
    })
    .await;
}

/// The window moved to open in two seconds: a accepted, and b still.
async fn accepts_both_keys_in_the_window(f: &Fixture) {
    let rotations = Api::<countersign::crd::KeyRotation>::all(f.client.clone());
    rotations
        .patch("b-to-a", &PatchParams::default(), &window(at(2), "1h"))
        .await
        .expect("open the window");
    eventually("a accepted once the window opens", WAIT, || async {
        let c = f.post_pod("window", &f.images.signed.pinned(), true).await;
        anyhow::ensure!(c.code == 201, "{c:?}");
        Ok(())
    })
    .await;
    admitted(&f.post_pod("b-in-window", &f.images.by_b.pinned(), true).await);
}

/// The window moved to have closed a minute ago: b retired.
async fn retires_b_once_the_window_closed(f: &Fixture) {
    let rotations = Api::<countersign::crd::KeyRotation>::all(f.client.clone());
    rotations
        .patch("b-to-a", &PatchParams::default(), &window(at(-120), "1m"))
        .await
        .expect("close the window");
    eventually("b retired once the window closed", WAIT, || async {
        let c = f.post_pod("b-retired", &f.images.by_b.pinned(), true).await;
        anyhow::ensure!(c.code == 403 && c.message().contains("retired"), "{c:?}");
        Ok(())
    })
    .await;
}

/// A patch of a KeyRotation's window.
fn window(start: String, duration: &str) -> Patch<Value> {
    Patch::Merge(json!({"spec": {"window": {"start": start, "duration": duration}}}))
}

/// The registry goes away: a digest verified before is admitted from the cache; one never seen
/// cannot be shown to be signed, and Enforce denies it, saying why.
async fn answers_from_the_cache_while_the_registry_is_gone(f: &Fixture, registry: &mut Registry) {
    registry.stop();
    admitted(&f.post_pod("cached", &f.images.signed.pinned(), true).await);
    let unknown = f
        .post_pod("never-seen", &f.images.never_seen.pinned(), true)
        .await;
    denied(&unknown, &["TrustRoot prod (Enforce): registry unreachable"]);
}

async fn counts_denials_and_cache_hits(metrics: SocketAddr) {
    let denials = metric(
        metrics,
        r#"countersign_admission_requests_total{decision="denied",reason="unsigned"}"#,
    )
    .await;
    let hits = metric(metrics, r#"countersign_admission_cache_total{result="hit"}"#).await;
    assert!(
        denials >= 2.0 && hits >= 1.0,
        "denied/unsigned {denials}, cache hits {hits}"
    );
}

/// Two replicas, each called by the API server (one webhook entry per replica): the standby
/// answers as the leader does. Then one stops: the validating webhook's `failurePolicy: Fail`
/// refuses what it cannot check, the mutating one's `Ignore` lets it through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_both_answer_and_a_webhook_down_fails_closed() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::NoReferrers);
    let host = registry.host.clone();
    let a = blocking(|| Keys::generate_named("a")).await;
    let repo = format!("{host}/two/app");
    let digest = push_image(&format!("{repo}:v1"), "two replicas");
    let run = a.cosign3.sign(&a.private, &format!("{repo}@{digest}"), true);
    assert!(run.success, "cosign sign: {}", run.stderr);
    let unsigned_digest = push_image(&format!("{repo}:unsigned"), "two replicas, unsigned");
    trust_root(
        &client,
        "two",
        json!({"images": [format!("{host}/two/**")], "keys": [key("a", &a.public)], "mode": "Enforce"}),
    )
    .await
    .expect("TrustRoot two");
    namespace(&client, NS, json!({})).await;
    let leader = Replica::start(&cluster, "replica-0").await;
    let standby = Replica::start(&cluster, "replica-1").await;
    install_webhooks(&client, &[leader.admission, standby.admission], true).await;
    wait_ca_bundles(&client).await.expect("caBundles");
    let pods = pods_path(NS);
    eventually("both replicas to admit a signed pod", WAIT, || async {
        let c = post(&client, &pods, &pod("signed", &format!("{repo}@{digest}")), true).await;
        anyhow::ensure!(c.code == 201, "{c:?}");
        Ok(())
    })
    .await;
    let denied_by_both = post(
        &client,
        &pods,
        &pod("unsigned", &format!("{repo}@{unsigned_digest}")),
        true,
    )
    .await;
    denied(&denied_by_both, &["TrustRoot two (Enforce): no signature"]);
    for replica in [&leader, &standby] {
        let series = r#"countersign_admission_requests_total{decision="allowed",reason="verified"}"#;
        assert!(
            metric(replica.metrics, series).await >= 1.0,
            "{} answered nothing",
            replica.admission
        );
    }

    standby.stop().await;
    let down = post(
        &client,
        &pods,
        &pod("while-down", &format!("{repo}@{digest}")),
        true,
    )
    .await;
    assert_eq!(down.code, 500, "{down:?}");
    assert!(down.message().contains("failed calling webhook"), "{down:?}");
    leader.stop().await;
    cluster.stop();
}

/// A serving certificate past two thirds of its life (here: one minute left of six) is renewed
/// from the same CA as soon as a replica starts, and the API server goes on calling the
/// webhook: the caBundle did not have to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiring_serving_certificate_is_renewed_without_breaking_calls() {
    use countersign::admission::certs::{self, Names};
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    use std::time::SystemTime;

    let cluster = cluster().await;
    let client = cluster.client();
    let now = SystemTime::now();
    let ca = certs::new_ca(
        "countersign-webhook-ca-test",
        now,
        Duration::from_secs(3650 * 86_400),
    )
    .expect("a CA");
    let names = Names {
        dns: vec!["countersign-webhook.countersign-system.svc".into()],
        ips: vec!["127.0.0.1".parse().expect("an IP")],
    };
    let expiring = certs::issue(&ca, &names, now, Duration::from_secs(60)).expect("a certificate");
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(CERT_SECRET.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("ca.crt".to_string(), bytes(&ca.cert)),
                ("ca.key".into(), bytes(&ca.key)),
                ("tls.crt".into(), bytes(&expiring.cert)),
                ("tls.key".into(), bytes(&expiring.key)),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), operator_common::LEASE_NAMESPACE);
    secrets
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .expect("the Secret");
    namespace(&client, NS, json!({})).await;
    let replica = Replica::start(&cluster, "renewal").await;
    install_webhooks(&client, &[replica.admission], false).await;
    wait_ca_bundles(&client).await.expect("caBundles");

    let renewed = eventually("the serving certificate renewed", WAIT, || async {
        let s = secrets.get(CERT_SECRET).await?;
        let data = s.data.unwrap_or_default();
        let text = |k: &str| String::from_utf8(data.get(k).map(|b| b.0.clone()).unwrap_or_default());
        let cert = text("tls.crt")?;
        anyhow::ensure!(cert != expiring.cert, "not yet");
        anyhow::ensure!(text("ca.crt")? == ca.cert, "the CA changed");
        Ok(certs::facts(&cert)?)
    })
    .await;
    let left = renewed
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(left > Duration::from_secs(80 * 86_400), "{left:?} left");
    assert_eq!(renewed.names, names);
    // Ungoverned (no TrustRoot): admitted, which needs the API server to reach the webhook
    // over TLS with the renewed certificate.
    eventually("a call through the renewed certificate", WAIT, || async {
        let c = post(
            &client,
            &pods_path(NS),
            &pod("through-tls", "registry.example/any:1"),
            true,
        )
        .await;
        anyhow::ensure!(c.code == 201, "{c:?}");
        let series = r#"countersign_admission_requests_total{decision="allowed",reason="ungoverned"}"#;
        anyhow::ensure!(
            metric(replica.metrics, series).await >= 1.0,
            "the webhook was not called"
        );
        Ok(())
    })
    .await;
    replica.stop().await;
    cluster.stop();
}
