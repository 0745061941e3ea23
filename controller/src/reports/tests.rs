use super::*;
use crate::operator::verdict::fixtures::{digest, finding};
use crate::operator::workload::WorkloadKind;

fn entry(namespace: &str, name: &str, findings: Vec<Finding>) -> Entry {
    Entry {
        workload: WorkloadRef {
            kind: WorkloadKind::Deployment,
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        },
        findings,
    }
}

fn verified() -> Option<Check> {
    Some(Check::Verified {
        keys: vec!["ci".into()],
    })
}

#[test]
fn one_report_per_namespace_with_a_result_per_image_and_root() {
    let entries = [
        entry("a", "web", vec![finding(1, "prod", verified(), None)]),
        entry("a", "db", vec![finding(2, "prod", Some(Check::Unsigned), None)]),
        entry(
            "b",
            "job",
            vec![
                finding(
                    3,
                    "prod",
                    Some(Check::failed("no trusted key verifies it", "no_trusted_key")),
                    None,
                ),
                finding(3, "team", verified(), Some("unreachable")),
                finding(4, "team", None, Some("unauthorized")),
            ],
        ),
    ];
    let reports = build(&entries);
    assert_eq!(reports.keys().collect::<Vec<_>>(), ["a", "b"]);

    let a = &reports["a"];
    assert_eq!(a["metadata"]["name"], NAME);
    assert_eq!(a["metadata"]["namespace"], "a");
    assert_eq!(
        a["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "countersign"
    );
    assert_eq!(
        a["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let results = a["results"].as_array().unwrap_or_else(|| panic!("results"));
    // Sorted by workload: db before web.
    assert_eq!(results[0]["resources"][0]["name"], "db");
    assert_eq!(results[0]["result"], "fail");
    assert_eq!(results[0]["message"], "no signature");
    assert_eq!(results[0]["properties"]["causes"], "no_signature");
    assert!(
        results[1]["properties"].get("causes").is_none(),
        "a pass has none"
    );
    assert_eq!(results[1]["result"], "pass");
    assert_eq!(results[1]["rule"], "prod");
    assert_eq!(results[1]["policy"], "countersign");
    assert_eq!(results[1]["source"], "countersign");
    assert_eq!(results[1]["message"], "verified by ci");
    assert_eq!(
        results[1]["resources"][0],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "a", "name": "web", "uid": "uid-web"})
    );
    assert_eq!(results[1]["properties"]["digest"], digest(1).to_string());
    assert_eq!(
        results[1]["properties"]["image"],
        format!("reg.example/app1@{}", digest(1))
    );
    assert!(
        results[1].get("timestamp").is_none(),
        "content carries no timestamp"
    );

    let b = &reports["b"];
    assert_eq!(
        b["summary"],
        json!({"pass": 0, "fail": 1, "warn": 0, "error": 2, "skip": 0})
    );
    let messages: Vec<&str> = b["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "no trusted key verifies it",
            "the registry could not be asked (unreachable); the last answer was: verified by ci",
            "not verified yet: the registry could not be asked (unauthorized)",
        ]
    );
}

#[test]
fn equal_findings_give_equal_content_and_stamps_touch_only_timestamps() {
    let one = [
        entry("a", "web", vec![finding(1, "prod", verified(), None)]),
        entry("a", "db", vec![finding(2, "prod", Some(Check::Unsigned), None)]),
    ];
    let other_order = [one[1].clone(), one[0].clone()];
    assert_eq!(build(&one), build(&other_order));

    let content = &build(&one)["a"];
    let now = Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
    let mut stamped = stamped(content, now);
    for r in stamped["results"].as_array_mut().into_iter().flatten() {
        assert_eq!(r["timestamp"], json!({"seconds": 1_800_000_000_i64, "nanos": 0}));
        r.as_object_mut().map(|o| o.remove("timestamp"));
    }
    assert_eq!(&stamped, content);
}

#[test]
fn nothing_governed_is_no_report() {
    assert!(build(&[]).is_empty());
    assert!(build(&[entry("a", "web", Vec::new())]).is_empty());
}

#[test]
fn a_missing_crd_is_told_from_a_missing_namespace() {
    // The bodies the API server answers with: a resource type nothing serves, and a namespace
    // that is gone.
    let not_found = |details: Value| {
        let status = json!({
            "status": "Failure", "code": 404, "reason": "NotFound",
            "message": "the server could not find the requested resource", "details": details,
        });
        kube::Error::Api(Box::new(
            serde_json::from_value(status).unwrap_or_else(|e| panic!("{e}")),
        ))
    };
    assert!(crd_missing(&not_found(json!({}))));
    assert!(!crd_missing(&not_found(
        json!({"name": "apps", "kind": "namespaces"})
    )));
}
