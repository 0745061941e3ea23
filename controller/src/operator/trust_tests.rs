use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::{
    keys::SigningKey,
    operator::objects::{Data, Fixture as Objects},
};

pub fn pem() -> String {
    SigningKey::generate().public_key().to_pem()
}

pub fn root(generation: i64, keys: serde_json::Value) -> Arc<TrustRoot> {
    let value = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": "prod", "uid": "uid-prod", "generation": generation},
        "spec": {"images": ["reg.example/**"], "keys": keys, "threshold": 1, "reverifyInterval": "30s"}
    });
    Arc::new(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
}

pub fn compile(compiler: &mut TrustCompiler, objects: &Objects, root: Arc<TrustRoot>) -> RootReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(compiler.compile(&[Ok(root)], objects)).remove(0)
}

#[test]
fn a_valid_root_compiles_with_its_keys_active() {
    let mut compiler = TrustCompiler::default();
    let keys = json!([{"name": "a", "publicKey": pem()}, {"name": "b", "publicKey": pem()}]);
    let report = compile(&mut compiler, &Objects::default(), root(1, keys));
    assert!(report.spec_errors.is_empty() && report.key_errors.is_empty());
    assert!(report.is_current());
    let active = report.active.unwrap_or_else(|| panic!("active"));
    assert_eq!(active.interval, Duration::from_secs(30));
    assert!(active.declares("a") && active.declares("b") && !active.declares("c"));
    assert!(
        report
            .keys
            .iter()
            .all(|k| k.state == KeyState::Active && k.fingerprint.is_some())
    );
}

#[test]
fn a_bad_pem_names_its_field_and_the_last_good_generation_stays_in_force() {
    let mut compiler = TrustCompiler::default();
    let objects = Objects::default();
    let good = json!([{"name": "a", "publicKey": pem()}]);
    let first = compile(&mut compiler, &objects, root(1, good));
    let version = first.active.map(|a| a.version);
    let bad_pem = "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n";
    let bad = json!([{"name": "a", "publicKey": pem()}, {"name": "b", "publicKey": bad_pem}]);
    let report = compile(&mut compiler, &objects, root(2, bad.clone()));
    assert_eq!(report.key_errors.len(), 1, "{:?}", report.key_errors);
    assert_eq!(report.key_errors[0].path, "spec.keys[1].publicKey");
    assert_eq!(report.keys[1].state, KeyState::Invalid);
    assert!(!report.is_current());
    assert_eq!(report.active.map(|a| a.version), version);
    // A process that never saw a valid generation has nothing to keep.
    let fresh = compile(&mut TrustCompiler::default(), &objects, root(2, bad));
    assert!(fresh.active.is_none());
}

#[test]
fn keys_in_secrets_and_config_maps_are_loaded_and_missing_ones_reported() {
    let mut objects = Objects::default();
    let data: Data = Arc::new(BTreeMap::from([("cosign.pub".to_string(), pem().into_bytes())]));
    objects
        .0
        .insert((ObjectKind::Secret, "keys".into(), "ci".into()), data.clone());
    objects
        .0
        .insert((ObjectKind::ConfigMap, "keys".into(), "cm".into()), data);
    let keys = json!([
        {"name": "s", "secretRef": {"namespace": "keys", "name": "ci"}},
        {"name": "c", "configMapRef": {"namespace": "keys", "name": "cm"}},
        {"name": "gone", "secretRef": {"namespace": "keys", "name": "missing"}}
    ]);
    let report = compile(&mut TrustCompiler::default(), &objects, root(1, keys));
    let active = report.active.unwrap_or_else(|| panic!("active"));
    assert!(active.declares("s") && active.declares("c") && !active.declares("gone"));
    assert_eq!(
        report
            .key_errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["spec.keys[2].secretRef: Secret keys/missing not found"]
    );
    assert_eq!(report.keys[2].state, KeyState::Invalid);
}

#[test]
fn an_undecodable_object_is_reported_by_name() {
    let invalid = InvalidObject {
        error: "invalid type: string \"x\", expected i32".into(),
        metadata: kube::api::ObjectMeta {
            name: Some("broken".into()),
            generation: Some(3),
            ..Default::default()
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let reports =
        rt.block_on(TrustCompiler::default().compile(&[Err(Arc::new(invalid))], &Objects::default()));
    assert_eq!(reports[0].name, "broken");
    assert!(reports[0].active.is_none());
    assert!(reports[0].spec_errors[0].message.contains("cannot be read"));
}
