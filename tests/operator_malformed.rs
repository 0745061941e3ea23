//! A malformed TrustRoot (a bad PEM, a bad glob) gets conditions that name the field, governs
//! nothing while it is broken, and does not affect the other TrustRoots; fixed, it verifies.
//!
//! The API server's CEL rules already refuse a bad glob (checked first). To show the operator's
//! own validation, which protects against objects stored before a rule existed, the CRD is then
//! installed without its CEL rules. A bad PEM between the right markers passes CEL anyway.
//!
//! The hostile-input corpus' CRD specs go through both phases too (operator_hostile_specs.rs):
//! refused by the apiserver naming the field, or named in the status by the operator, while the
//! good TrustRoot keeps verifying.

mod common;
#[path = "hostile_corpus.rs"]
mod corpus;
#[path = "operator_hostile_specs.rs"]
mod hostile_specs;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::Keys;
use countersign_tests::{
    images::push_image,
    registry::{Registry, RegistryKind},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use operator_common::*;
use serde_json::{Value, json};

const NS: &str = "malformed";
const WAIT: Duration = Duration::from_secs(60);
/// The message of the CRD's CEL rule against `***` in `spec.images`.
const GLOB_RULE: &str =
    "'***' is not a wildcard in an image glob: use '*' within a path segment or '**' across segments";
const BAD_PEM: &str = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";

/// The CRDs without `x-kubernetes-validations`.
fn without_cel() -> Vec<CustomResourceDefinition> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    countersign::crd::all()
        .into_iter()
        .map(|crd| {
            let mut v = serde_json::to_value(crd).expect("json");
            strip(&mut v);
            serde_json::from_value(v).expect("a CRD")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_trust_roots_name_the_field_and_leave_the_others_alone() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::NoReferrers);
    let host = registry.host.clone();
    let keys = blocking(|| Keys::generate_named("ci")).await;
    let bad_glob = format!("{host}/glob/***");

    the_apiserver_refuses_a_bad_glob_naming_the_field(&client, &host, &bad_glob, &keys).await;
    hostile_specs::refused_by_the_apiserver(&client).await;

    // Without the CEL rules, as for objects stored before a rule existed: the operator's own
    // validation must name the field.
    install_crds(&client, without_cel()).await;
    let images = push_and_sign_an_image_each(&host, &keys);
    let good_key = key("ci", &keys.public);
    create_a_good_and_two_broken_trust_roots(&client, &host, &bad_glob, &good_key).await;
    namespace(&client, NS, json!({})).await;
    let operator = Operator::start(&cluster, "malformed-test");
    for (name, image) in ["good", "pem", "glob"].iter().zip(&images) {
        pod(&client, NS, name, image, None).await;
    }

    wait_verdict(&client, POD, NS, "good", "Verified", WAIT).await;
    names_the_bad_pem_in_its_conditions(&client).await;
    names_the_bad_glob_in_its_conditions(&client).await;
    let hostile = hostile_specs::named_in_status(&client, WAIT).await;
    the_others_are_unaffected_and_the_broken_ones_govern_nothing(&client).await;
    fixed_it_verifies_and_says_so(&client, &host, good_key).await;
    hostile_specs::delete_trust_roots(&client, &hostile).await;
    operator.stop().await;
}

/// The API server refuses a bad glob, naming the field.
async fn the_apiserver_refuses_a_bad_glob_naming_the_field(
    client: &Client,
    host: &str,
    bad_glob: &str,
    keys: &Keys,
) {
    let refused = trust_root(
        client,
        "bad-glob",
        json!({"images": [format!("{host}/glob/**"), bad_glob], "keys": [key("ci", &keys.public)]}),
    )
    .await
    .expect_err("CEL refuses '***'");
    // The API server's answer, by its fields: 422 Invalid, caused by the field spec.images, with
    // the message of the CRD's own rule.
    let answer = match refused.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(answer)) => answer,
        _ => panic!("not an API error: {refused:#}"),
    };
    assert_eq!(
        (answer.code, answer.reason.as_str()),
        (422, "Invalid"),
        "{answer:?}"
    );
    let causes = answer
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    assert!(
        causes
            .iter()
            .any(|c| c.field == "spec.images" && c.message.ends_with(GLOB_RULE)),
        "{answer:?}"
    );
}

/// An image each for `good`, `pem` and `glob`, signed by the key as a legacy .sig (cosign v2);
/// returns them pinned by digest, in that order.
fn push_and_sign_an_image_each(host: &str, keys: &Keys) -> Vec<String> {
    let mut images = Vec::new();
    for name in ["good", "pem", "glob"] {
        let repo = format!("{host}/{name}/app");
        let digest = push_image(&format!("{repo}:v1"), name);
        let image = format!("{repo}@{digest}");
        let run = keys.cosign2.sign(&keys.private, &image, true);
        assert!(run.success, "cosign2 sign: {}", run.stderr);
        images.push(image);
    }
    images
}

/// The spec of `bad-pem`, with `keys`.
fn pem_spec(host: &str, keys: Value) -> Value {
    json!({"images": [format!("{host}/pem/**")], "keys": keys})
}

/// `good`; `bad-pem`, one of its keys a bad PEM between the right markers; `bad-glob`, now that
/// no CEL rule refuses it.
async fn create_a_good_and_two_broken_trust_roots(
    client: &Client,
    host: &str,
    bad_glob: &str,
    good_key: &Value,
) {
    trust_root(
        client,
        "good",
        json!({"images": [format!("{host}/good/**")], "keys": [good_key.clone()]}),
    )
    .await
    .expect("good");
    trust_root(
        client,
        "bad-pem",
        pem_spec(
            host,
            json!([good_key.clone(), {"name": "broken", "publicKey": BAD_PEM}]),
        ),
    )
    .await
    .expect("bad-pem (CEL only checks the markers)");
    trust_root(
        client,
        "bad-glob",
        json!({"images": [format!("{host}/glob/**"), bad_glob], "keys": [good_key.clone()]}),
    )
    .await
    .expect("bad-glob, without CEL");
}

/// `bad-pem`: KeysValid names the key's field, Ready says nothing is verified, the key is Invalid.
async fn names_the_bad_pem_in_its_conditions(client: &Client) {
    let pem = eventually("bad-pem's conditions", WAIT, || async {
        let s = status(client, "bad-pem").await?;
        let keys = condition(&s, "KeysValid").context("KeysValid")?;
        ensure!(keys.status == "False", "{keys:?}");
        Ok(s)
    })
    .await;
    let keys_valid = condition(&pem, "KeysValid").expect("KeysValid");
    assert_eq!(keys_valid.reason, "InvalidKey");
    assert!(
        keys_valid.message.starts_with("spec.keys[1].publicKey: "),
        "{keys_valid:?}"
    );
    let ready = condition(&pem, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("nothing is verified"), "{ready:?}");
    assert_eq!(ready.observed_generation, Some(1));
    let broken = pem.keys.iter().find(|k| k.name == "broken").expect("key status");
    assert_eq!(broken.state, countersign::crd::KeyState::Invalid);
}

/// `bad-glob`: Ready names the glob's field; its keys are valid.
async fn names_the_bad_glob_in_its_conditions(client: &Client) {
    let glob = eventually("bad-glob's conditions", WAIT, || async {
        let s = status(client, "bad-glob").await?;
        ensure!(
            condition(&s, "Ready").is_some_and(|c| c.status == "False"),
            "{s:?}"
        );
        Ok(s)
    })
    .await;
    let ready = condition(&glob, "Ready").expect("Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.starts_with("spec.images[1]: "), "{ready:?}");
    assert_eq!(
        condition(&glob, "KeysValid").map(|c| c.status.as_str()),
        Some("True")
    );
}

/// The others are unaffected; the broken ones govern nothing.
async fn the_others_are_unaffected_and_the_broken_ones_govern_nothing(client: &Client) {
    let good = status(client, "good").await.expect("good status");
    assert_eq!(condition(&good, "Ready").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(good.workloads.map(|w| (w.total, w.verified)), Some((1, 1)));
    for name in ["pem", "glob"] {
        let verdict = recorded(client, "Pod", NS, name).await.expect("pod");
        assert!(
            verdict.is_empty(),
            "{name} is governed by nothing in force: {verdict:?}"
        );
    }
}

/// Fixed: it verifies, and says so.
async fn fixed_it_verifies_and_says_so(client: &Client, host: &str, good_key: Value) {
    trust_root(client, "bad-pem", pem_spec(host, json!([good_key])))
        .await
        .expect("fixed");
    wait_verdict(client, POD, NS, "pem", "Verified", WAIT).await;
    eventually("bad-pem Ready", WAIT, || async {
        let s = status(client, "bad-pem").await?;
        let ready = condition(&s, "Ready").context("Ready")?;
        ensure!(
            ready.status == "True" && ready.observed_generation == Some(2),
            "{ready:?}"
        );
        ensure!(
            condition(&s, "KeysValid").is_some_and(|c| c.status == "True"),
            "{s:?}"
        );
        Ok(())
    })
    .await;
}
