use serde_json::json;

use super::*;

fn declared(kind: Kind, name: &str, spec: Value) -> Declared {
    Declared {
        kind,
        name: name.into(),
        file: format!("{name}.yaml"),
        document: 0,
        body: json!({
            "apiVersion": "countersign.dev/v1alpha1",
            "kind": kind.as_str(),
            "metadata": {"name": name, "labels": {SOURCE_LABEL: "team"}},
            "spec": spec,
        }),
    }
}

fn live(kind: Kind, name: &str, owner: Option<&str>, spec: Value) -> Live {
    Live {
        kind,
        name: name.into(),
        labels: owner
            .map(|o| (SOURCE_LABEL.to_string(), o.to_string()))
            .into_iter()
            .collect(),
        spec,
        foreign_spec_owner: false,
        object: json!({"metadata": {"name": name}}),
    }
}

#[test]
fn nothing_to_write_when_the_cluster_matches_even_with_defaults() {
    let revision = vec![declared(Kind::TrustRoot, "a", json!({"images": ["x/**"]}))];
    let cluster = [live(
        Kind::TrustRoot,
        "a",
        Some("team"),
        json!({"images": ["x/**"], "threshold": 1}),
    )];
    assert!(plan("team", &revision, &cluster, true, true).unwrap().is_empty());
}

#[test]
fn creates_updates_drift_and_prunes() {
    let revision = vec![
        declared(Kind::TrustRoot, "new", json!({"threshold": 1})),
        declared(Kind::TrustRoot, "edited", json!({"threshold": 1})),
    ];
    let cluster = [
        live(Kind::TrustRoot, "edited", Some("team"), json!({"threshold": 2})),
        live(Kind::KeyRotation, "gone", Some("team"), json!({})),
        live(Kind::KeyRotation, "not-ours", None, json!({})),
    ];
    let p = plan("team", &revision, &cluster, true, true).unwrap();
    let whys: Vec<_> = p
        .writes
        .iter()
        .map(|w| (w.declared.name.as_str(), w.why))
        .collect();
    assert_eq!(whys, [("new", Why::Create), ("edited", Why::Drift)]);
    assert_eq!(p.prunes, [(Kind::KeyRotation, "gone".to_string())]);
    // A new commit changing it is an update, not drift; without prune nothing is deleted.
    let p = plan("team", &revision, &cluster, false, false).unwrap();
    assert_eq!(p.writes[1].why, Why::Update);
    assert!(p.prunes.is_empty());
}

#[test]
fn an_object_of_another_source_is_refused_naming_the_declaration() {
    let revision = vec![declared(Kind::TrustRoot, "a", json!({}))];
    let cluster = [live(Kind::TrustRoot, "a", Some("other"), json!({}))];
    match plan("team", &revision, &cluster, true, false) {
        Err(Error::Invalid { location, message }) => {
            assert_eq!(location.file.as_deref(), Some("a.yaml"));
            assert!(message.contains("managed by the TrustSource other"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fields_owned_by_another_manager_are_replaced() {
    let revision = vec![declared(Kind::TrustRoot, "a", json!({"keys": [{"name": "k"}]}))];
    let mut edited = live(
        Kind::TrustRoot,
        "a",
        Some("team"),
        json!({"keys": [{"name": "k"}]}),
    );
    edited.foreign_spec_owner = true;
    edited.object = json!({
        "metadata": {"name": "a", "resourceVersion": "7", "managedFields": [
            {"manager": "kubectl-edit", "operation": "Update"},
            {"manager": FIELD_MANAGER, "operation": "Apply"},
            {"manager": "countersign", "operation": "Apply", "subresource": "status"},
        ]},
        "spec": {"keys": [{"name": "k"}, {"name": "added"}]},
        "status": {},
    });
    let p = plan("team", &revision, &[edited], true, true).unwrap();
    let replace = p.writes[0].replace.clone().unwrap();
    assert_eq!(replace["spec"], json!({"keys": [{"name": "k"}]}));
    assert_eq!(replace["metadata"]["resourceVersion"], "7");
    let managers: Vec<_> = replace["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, [FIELD_MANAGER, "countersign"]);
    assert!(replace.get("status").is_none());
}

#[test]
fn contains_is_a_recursive_subset() {
    assert!(contains(
        &json!({"a": 1, "b": [{"c": 1, "d": 2}]}),
        &json!({"b": [{"c": 1}]})
    ));
    assert!(!contains(
        &json!({"b": [{"c": 1}, {"c": 2}]}),
        &json!({"b": [{"c": 1}]})
    ));
    assert!(!contains(&json!({"a": 1}), &json!({"a": 2})));
    assert!(!contains(&json!({}), &json!({"a": 1})));
}
