use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::{
    crd::TrustRoot,
    operator::{
        objects::Fixture,
        pods::RunningImage,
        trust::{TrustCompiler, tests::pem},
        workload::{WorkloadKind, WorkloadRef},
    },
    registry::RegistryError,
};

fn digest(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap_or_else(|e| panic!("{e}"))
}

fn compiled(name: &str, spec: serde_json::Value) -> Arc<CompiledRoot> {
    let mut spec = spec;
    spec["keys"] = json!([{"name": "ci", "publicKey": pem()}]);
    let root: TrustRoot = serde_json::from_value(json!({
        "apiVersion": "countersign.dev/v1alpha1", "kind": "TrustRoot",
        "metadata": {"name": name, "uid": name, "generation": 1},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reports =
        rt.block_on(TrustCompiler::default().compile(&[Ok(Arc::new(root))], &Fixture::default()));
    reports
        .remove(0)
        .active
        .unwrap_or_else(|| panic!("{name} compiles"))
}

fn workload(namespace: &str, team: &str, images: &[(&str, Option<Digest>)]) -> Workload {
    Workload {
        workload: WorkloadRef {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: "web".into(),
            uid: "uid-web".into(),
        },
        images: images
            .iter()
            .map(|(i, d)| RunningImage {
                image: i.to_string(),
                digest: d.clone(),
            })
            .collect(),
        pull_secrets: BTreeSet::new(),
        namespace_labels: std::sync::Arc::new(BTreeMap::from([("team".to_string(), team.to_string())])),
        record: None,
        annotations: BTreeMap::new(),
    }
}

fn no_credentials(_: &str, _: &[String]) -> CredentialsKey {
    Vec::new()
}

#[test]
fn globs_and_namespace_selectors_decide_what_is_governed() {
    let payments = compiled(
        "payments",
        json!({"images": ["reg.example/payments/**"], "namespaceSelector": {"matchLabels": {"team": "payments"}}}),
    );
    let base = compiled("base", json!({"images": ["reg.example/base/*"]}));
    let roots = [payments, base];
    let images = [
        ("reg.example/payments/api:v1", None),
        ("reg.example/base/alpine:3", None),
        ("docker.io/library/nginx:1", None),
    ];
    let planned = plan(
        vec![
            workload("pay", "payments", &images),
            workload("other", "web", &images),
        ],
        &roots,
        no_credentials,
    );
    let governed = |p: &Planned| -> Vec<(String, Vec<String>)> {
        p.images
            .iter()
            .map(|g| (g.spec.clone(), g.roots.iter().map(|r| r.name.clone()).collect()))
            .collect()
    };
    assert_eq!(
        governed(&planned[0]),
        [
            ("reg.example/base/alpine:3".to_string(), vec!["base".to_string()]),
            (
                "reg.example/payments/api:v1".to_string(),
                vec!["payments".to_string()]
            ),
        ]
    );
    assert_eq!(
        governed(&planned[1]),
        [("reg.example/base/alpine:3".to_string(), vec!["base".to_string()])]
    );
}

#[test]
fn requests_are_distinct_and_use_the_shortest_age() {
    let slow = compiled(
        "slow",
        json!({"images": ["reg.example/**"], "reverifyInterval": "1h"}),
    );
    let fast = compiled(
        "fast",
        json!({"images": ["reg.example/app"], "reverifyInterval": "10s"}),
    );
    let roots = [slow, fast];
    let images = [
        ("reg.example/app:v1", Some(digest(1))),
        (
            "reg.example/pinned@sha256:0202020202020202020202020202020202020202020202020202020202020202",
            None,
        ),
    ];
    let planned = plan(
        vec![workload("a", "x", &images), workload("b", "x", &images)],
        &roots,
        no_credentials,
    );
    let tags = tag_requests(&planned, |r| r.interval);
    assert_eq!(tags.len(), 1, "the pinned image has no tag to resolve");
    let (_, age) = &tags[&(Vec::new(), "reg.example/app:v1".to_string())];
    assert_eq!(*age, Duration::from_secs(10));
    let signatures = signature_requests(&planned, &HashMap::new(), |r| r.interval);
    assert_eq!(signatures.len(), 2);
    let app = &signatures[&(Vec::new(), "reg.example/app".to_string(), digest(1))];
    assert_eq!(app.1, Duration::from_secs(10));
}

#[test]
fn a_signature_repository_moves_the_lookup() {
    let root = compiled(
        "sigs",
        json!({"images": ["reg.example/**"], "signatureRepository": "sigs.example/signatures"}),
    );
    let planned = plan(
        vec![workload("a", "x", &[("reg.example/app:v1", Some(digest(1)))])],
        &[root],
        no_credentials,
    );
    let signatures = signature_requests(&planned, &HashMap::new(), |r| r.interval);
    let keys: Vec<&String> = signatures.keys().map(|(_, repo, _)| repo).collect();
    assert_eq!(keys, ["sigs.example/signatures"]);
}

#[test]
fn findings_from_answers_tags_moved_and_digests_unknown() {
    let root = compiled("prod", json!({"images": ["reg.example/**"]}));
    let planned = plan(
        vec![workload(
            "a",
            "x",
            &[
                ("reg.example/moved:v1", Some(digest(1))),
                ("reg.example/pending:v1", None),
            ],
        )],
        &[root],
        no_credentials,
    );
    let tags = HashMap::from([
        (
            (Vec::new(), "reg.example/moved:v1".to_string()),
            Tag {
                digest: Some(digest(2)),
                error: None,
            },
        ),
        (
            (Vec::new(), "reg.example/pending:v1".to_string()),
            Tag {
                digest: None,
                error: Some(RegistryError::Timeout {
                    registry: "reg.example".into(),
                }),
            },
        ),
    ]);
    let mut asked = Vec::new();
    let (found, checks) = findings(&planned[0], &tags, |key, root| {
        asked.push((key.1.clone(), key.2.clone(), root.name.clone()));
        (
            Some(Check::Verified {
                keys: vec!["ci".into()],
            }),
            None,
        )
    });
    assert_eq!(
        asked,
        [("reg.example/moved".to_string(), digest(1), "prod".to_string())],
        "the running digest is verified, not the tag's new one"
    );
    assert_eq!(
        checks,
        [TagCheck::Moved {
            image: "reg.example/moved:v1".into(),
            now: digest(2),
            running: digest(1),
        }]
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].image, format!("reg.example/moved@{}", digest(1)));
    assert_eq!((found[1].check.clone(), found[1].stale), (None, Some("timeout")));

    let mut counts = HashMap::new();
    count(&found, &mut counts);
    count(&found[..1], &mut counts);
    let prod = counts["prod"];
    assert_eq!((prod.total, prod.stale, prod.verified), (2, 1, 1));
}
