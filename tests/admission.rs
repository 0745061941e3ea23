//! Admission, end to end: the real kube-apiserver calls countersign's webhooks over TLS (the
//! certificate and the caBundle are countersign's own), with the webhook configurations of
//! `manifests/webhooks.yaml`, images in a real registry signed by the real cosign.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::{Duration, Instant};

use common::Keys;
use countersign_tests::{
    admission::*,
    images::push_image,
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
    let image = |path: &str, content: &str| {
        let digest = push_image(&format!("{host}/adm/{path}:v1"), content);
        (format!("{host}/adm/{path}"), digest)
    };
    let sign = |keys: &Keys, repo: &str, digest: &str| {
        let run = keys
            .cosign3
            .sign(&keys.private, &format!("{repo}@{digest}"), false);
        assert!(run.success, "cosign sign: {}", run.stderr);
    };
    let (signed, signed_digest) = image("prod/signed", "signed by a");
    sign(&a, &signed, &signed_digest);
    let (by_b, by_b_digest) = image("prod/by-b", "signed by b");
    sign(&b, &by_b, &by_b_digest);
    let (unsigned, unsigned_digest) = image("prod/unsigned", "not signed");
    let (never_seen, never_seen_digest) = image("prod/never-seen", "never asked before the outage");
    sign(&a, &never_seen, &never_seen_digest);
    let (audited, audited_digest) = image("audit/unsigned", "audit, unsigned");
    let (pinned, pinned_digest) = image("pinned/app", "pinned");
    sign(&a, &pinned, &pinned_digest);

    let root = |images: &str, mode: &str, keys: Value| json!({"images": [format!("{host}/adm/{images}/**")], "keys": keys, "mode": mode, "reverifyInterval": "1m"});
    trust_root(
        &client,
        "prod",
        root("prod", "Enforce", json!([key("a", &a.public)])),
    )
    .await
    .expect("TrustRoot prod");
    trust_root(
        &client,
        "audit",
        root("audit", "Audit", json!([key("a", &a.public)])),
    )
    .await
    .expect("TrustRoot audit");
    let mut pin = root("pinned", "Enforce", json!([key("a", &a.public)]));
    pin["pinToDigest"] = json!(true);
    trust_root(&client, "pinned", pin)
        .await
        .expect("TrustRoot pinned");
    namespace(&client, NS, json!({})).await;
    namespace(&client, SKIPPED, json!({"countersign.dev/admission": "disabled"})).await;

    let replica = Replica::start(&cluster, "admission-test").await;
    install_webhooks(&client, &[replica.admission], true).await;
    wait_ca_bundles(&client).await.expect("caBundles");
    let pods = pods_path(NS);

    // Signed by a trusted key: admitted, silently. The first call may still race the API
    // server's reload of the configuration's caBundle, hence the wait on the first answer.
    let first = eventually("the API server to call the webhook", WAIT, || async {
        let created = post(
            &client,
            &pods,
            &pod("signed", &format!("{signed}@{signed_digest}")),
            false,
        )
        .await;
        anyhow::ensure!(created.code == 201, "{created:?}");
        Ok(created)
    })
    .await;
    assert!(first.warnings.is_empty(), "{first:?}");

    // Unsigned, and signed by a key the TrustRoot does not hold: denied, saying which and why.
    let no_sig = post(&client, &pods, &pod("unsigned", &format!("{unsigned}:v1")), false).await;
    denied(
        &no_sig,
        &[
            &format!("image {unsigned}:v1 ({unsigned_digest})"),
            "TrustRoot prod (Enforce): no signature",
        ],
    );
    let untrusted = post(
        &client,
        &pods,
        &pod("by-b", &format!("{by_b}@{by_b_digest}")),
        false,
    )
    .await;
    denied(&untrusted, &["TrustRoot prod (Enforce): no trusted key"]);
    // A Deployment is refused at apply time, not discovered later as pods failing to appear.
    let deploy = post(
        &client,
        &deployments_path(NS),
        &deployment("web", &format!("{unsigned}:v1")),
        false,
    )
    .await;
    denied(&deploy, &["TrustRoot prod (Enforce): no signature"]);

    // Audit: admitted with a warning kubectl prints, and an Event; a dry run records nothing.
    let audited_image = format!("{audited}@{audited_digest}");
    let dry = post(&client, &pods, &pod("dry", &audited_image), true).await;
    admitted(&dry);
    assert_eq!(dry.warnings.len(), 1, "{dry:?}");
    assert!(
        dry.warnings[0].contains("TrustRoot audit (Audit): no signature"),
        "{dry:?}"
    );
    admitted(&post(&client, &pods, &pod("audited", &audited_image), false).await);
    let event = wait_event(&client, NS, "Pod", "audited", "AdmissionAudited", WAIT).await;
    assert_eq!(event.type_, "Warning");
    assert!(
        events(&client, NS, "Pod", "dry")
            .await
            .unwrap_or_default()
            .is_empty()
    );
    // A denial is recorded too.
    wait_event(&client, NS, "Pod", "unsigned", "AdmissionDenied", WAIT).await;

    // Changing a running pod's image to one that does not verify is an UPDATE that is checked.
    let pod_api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), NS);
    let swap = json!({"spec": {"containers": [{"name": "app", "image": format!("{unsigned}:v1")}]}});
    let swapped = pod_api
        .patch("signed", &PatchParams::default(), &Patch::Strategic(swap))
        .await;
    assert!(
        matches!(&swapped, Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("no signature")),
        "{swapped:?}"
    );
    // A label is an UPDATE that changes no image: not even sent to the webhook.
    let labelled = json!({"metadata": {"labels": {"team": "payments"}}});
    pod_api
        .patch("signed", &PatchParams::default(), &Patch::Merge(labelled))
        .await
        .expect("a label added");

    // A namespace labelled out is not checked.
    admitted(
        &post(
            &client,
            &pods_path(SKIPPED),
            &pod("anything", &format!("{unsigned}:v1")),
            false,
        )
        .await,
    );

    // Pin to digest: the tag that was verified is what the kubelet will pull.
    let stored = post(&client, &pods, &pod("pinned", &format!("{pinned}:v1")), false).await;
    admitted(&stored);
    assert_eq!(
        stored.body["spec"]["containers"][0]["image"],
        json!(format!("{pinned}:v1@{pinned_digest}"))
    );

    // Key a removed from prod: a pod it signed is denied within moments, no restart needed.
    let signed_pod = |name: &str| pod(name, &format!("{signed}@{signed_digest}"));
    let removed = Instant::now();
    trust_root(
        &client,
        "prod",
        root("prod", "Enforce", json!([key("b", &b.public)])),
    )
    .await
    .expect("TrustRoot prod without a");
    eventually("key a's signature refused", WAIT, || async {
        let c = post(&client, &pods, &signed_pod("after-removal"), true).await;
        anyhow::ensure!(c.code == 403, "{c:?}");
        Ok(())
    })
    .await;
    eprintln!("key removed → denied at admission after {:?}", removed.elapsed());

    // A rotation b → a: before its window a is held back, during it both are accepted, after
    // it (AtWindowEnd) b is retired.
    trust_root(
        &client,
        "prod",
        root(
            "prod",
            "Enforce",
            json!([key("b", &b.public), key("a", &a.public)]),
        ),
    )
    .await
    .expect("TrustRoot prod with b and a");
    let spec = json!({"trustRootRef": "prod", "fromKey": "b", "toKey": "a", "retirement": "AtWindowEnd",
                      "window": {"start": at(3600), "duration": "1h"}});
    apply(
        &client,
        "countersign.dev/v1alpha1",
        "KeyRotation",
        None,
        json!({"metadata": {"name": "b-to-a"}, "spec": spec}),
    )
    .await
    .expect("KeyRotation b-to-a");
    eventually("a held back before the window", WAIT, || async {
        let c = post(&client, &pods, &signed_pod("scheduled"), true).await;
        anyhow::ensure!(c.code == 403 && c.message().contains("held back"), "{c:?}");
        Ok(())
    })
    .await;
    let rotations = Api::<countersign::crd::KeyRotation>::all(client.clone());
    let window = |start: String, duration: &str| {
        Patch::Merge(json!({"spec": {"window": {"start": start, "duration": duration}}}))
    };
    rotations
        .patch("b-to-a", &PatchParams::default(), &window(at(2), "1h"))
        .await
        .expect("open the window");
    eventually("a accepted once the window opens", WAIT, || async {
        let c = post(&client, &pods, &signed_pod("window"), true).await;
        anyhow::ensure!(c.code == 201, "{c:?}");
        Ok(())
    })
    .await;
    admitted(
        &post(
            &client,
            &pods,
            &pod("b-in-window", &format!("{by_b}@{by_b_digest}")),
            true,
        )
        .await,
    );
    rotations
        .patch("b-to-a", &PatchParams::default(), &window(at(-120), "1m"))
        .await
        .expect("close the window");
    eventually("b retired once the window closed", WAIT, || async {
        let c = post(
            &client,
            &pods,
            &pod("b-retired", &format!("{by_b}@{by_b_digest}")),
            true,
        )
        .await;
        anyhow::ensure!(c.code == 403 && c.message().contains("retired"), "{c:?}");
        Ok(())
    })
    .await;

    // The registry goes away: a digest verified before is admitted from the cache; one never
    // seen cannot be shown to be signed, and Enforce denies it, saying why.
    registry.stop();
    admitted(&post(&client, &pods, &signed_pod("cached"), true).await);
    let unknown = post(
        &client,
        &pods,
        &pod("never-seen", &format!("{never_seen}@{never_seen_digest}")),
        true,
    )
    .await;
    denied(&unknown, &["TrustRoot prod (Enforce): registry unreachable"]);

    let denials = metric(
        replica.metrics,
        r#"countersign_admission_requests_total{decision="denied",reason="unsigned"}"#,
    )
    .await;
    let hits = metric(
        replica.metrics,
        r#"countersign_admission_cache_total{result="hit"}"#,
    )
    .await;
    assert!(
        denials >= 2.0 && hits >= 1.0,
        "denied/unsigned {denials}, cache hits {hits}"
    );
    replica.stop().await;
    cluster.stop();
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
