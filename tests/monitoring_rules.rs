//! The monitoring files, checked by the real promtool (`e2e/peers.sh prometheus`): the rules
//! load, every alert has a unit test that makes it fire (tests/monitoring/rules.test.yaml) and a
//! runbook, the PrometheusRule carries exactly the rules file, and every dashboard query parses.
//! tests/monitoring_e2e.rs runs them against a real operator.

use std::{collections::BTreeSet, path::Path};

use countersign_tests::{
    monitoring::{self, PanelQuery},
    prometheus::promtool,
    repo_root, scratch_dir,
};
use serde_json::{Value, json};

/// The header of the generated PrometheusRule; the rules file's `groups:` follow under `spec:`.
const PROMETHEUS_RULE_HEADER: &str = "\
# Generated from countersign.rules.yaml by tests/monitoring_rules.rs (COUNTERSIGN_BLESS=1 cargo test
# -p countersign-tests --test monitoring_rules): edit the rules file, not this one.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: countersign
  labels:
    app.kubernetes.io/name: countersign
    app.kubernetes.io/component: controller
spec:
";

fn assert_promtool(dir: &Path, args: &[&str]) {
    let (ok, out) = promtool(dir, args);
    assert!(ok, "promtool {args:?} failed:\n{out}");
    eprintln!("promtool {args:?}:\n{out}");
}

#[test]
fn rules_load_and_their_unit_tests_pass() {
    let root = repo_root();
    assert_promtool(
        &root,
        &["check", "rules", "manifests/monitoring/countersign.rules.yaml"],
    );
    assert_promtool(&root, &["test", "rules", "tests/monitoring/rules.test.yaml"]);
}

#[test]
fn every_alert_fires_in_a_unit_test_pages_or_tickets_and_has_a_runbook() {
    let rules = monitoring::load_yaml(&monitoring::rules_path());
    let tests = monitoring::load_yaml(&repo_root().join("tests/monitoring/rules.test.yaml"));
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|c| c["alertname"].as_str())
        .collect();
    let alerts = monitoring::alerts(&rules);
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    for (name, rule) in &alerts {
        assert!(
            fired.contains(name.as_str()),
            "{name}: no unit test makes it fire"
        );
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name}: severity {severity:?}"
        );
        let runbook = format!("docs/runbooks/{name}.md");
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        assert!(
            url.ends_with(&format!("/blob/main/{runbook}")),
            "{name}: runbook_url {url}"
        );
        let text = std::fs::read_to_string(repo_root().join(&runbook))
            .unwrap_or_else(|e| panic!("{name}: {runbook}: {e}"));
        for section in ["## Meaning", "## Confirm", "## Act"] {
            assert!(text.contains(section), "{runbook} has no {section:?}");
        }
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name}: no {key}");
        }
    }
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    let stray: Vec<&&str> = fired.difference(&names).collect();
    assert!(
        stray.is_empty(),
        "unit tests of alerts that do not exist: {stray:?}"
    );
}

/// The PrometheusRule as generated from the rules file: the header, then the file from its
/// `groups:` line on, indented under `spec:`.
fn generated_prometheus_rule(rules_text: &str) -> String {
    let start = rules_text.find("\ngroups:").expect("a groups: line") + 1;
    let mut out = PROMETHEUS_RULE_HEADER.to_string();
    for line in rules_text[start..].lines() {
        if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_prometheus_rule_is_the_rules_file() {
    let rules_text = std::fs::read_to_string(monitoring::rules_path()).expect("rules file");
    let expected = generated_prometheus_rule(&rules_text);
    let path = monitoring::monitoring_dir().join("prometheusrule.yaml");
    if std::env::var_os("COUNTERSIGN_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write prometheusrule.yaml");
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is not generated from the rules file: run COUNTERSIGN_BLESS=1 cargo test -p \
         countersign-tests --test monitoring_rules",
        path.display()
    );
    // The same content once parsed, whatever the text.
    let rule = monitoring::load_yaml(&path);
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["spec"], monitoring::load_yaml(&monitoring::rules_path()));
}

fn all_panel_queries() -> Vec<PanelQuery> {
    monitoring::dashboards()
        .iter()
        .flat_map(|(name, d)| monitoring::panel_queries(name, d))
        .collect()
}

/// Every panel query, its Grafana variables expanded, parses as PromQL: each becomes a recording
/// rule of a scratch rules file that `promtool check rules` (Prometheus' own parser) reads.
#[test]
fn every_dashboard_query_parses() {
    let queries = all_panel_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"record": format!("dashboard_query_{i}"), "expr": monitoring::expand(&q.expr, ".*")}))
        .collect();
    let dir = scratch_dir("dashboard-queries");
    let file = dir.path().join("queries.json");
    let doc = json!({"groups": [{"name": "dashboards", "rules": rules}]});
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
    let (ok, out) = promtool(dir.path(), &["check", "rules", "queries.json"]);
    assert!(
        ok,
        "dashboard queries that do not parse:\n{out}\nqueries: {queries:#?}"
    );
}

/// Each dashboard is templated by data source (every panel and target uses it) and TrustRoot,
/// and ships as a ConfigMap the Grafana sidecar picks up.
#[test]
fn dashboards_are_templated_and_shipped_as_configmaps() {
    let kustomization = monitoring::load_yaml(&monitoring::monitoring_dir().join("kustomization.yaml"));
    assert_eq!(
        kustomization["generatorOptions"]["labels"]["grafana_dashboard"],
        "1"
    );
    let shipped: BTreeSet<String> = kustomization["configMapGenerator"]
        .as_array()
        .expect("configMapGenerator")
        .iter()
        .flat_map(|g| g["files"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    let dashboards = monitoring::dashboards();
    assert_eq!(dashboards.len(), 3);
    for (name, d) in &dashboards {
        assert!(
            shipped.contains(&format!("dashboards/{name}")),
            "{name} not in a ConfigMap"
        );
        let variables: Vec<&str> = d["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(variables, ["datasource", "trust_root"], "{name}");
        let mut uses_trust_root = false;
        for panel in d["panels"].as_array().expect("panels") {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                panel["title"]
            );
            for target in panel["targets"].as_array().expect("targets") {
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{name}: {}",
                    panel["title"]
                );
                uses_trust_root |= target["expr"].as_str().is_some_and(|e| e.contains("$trust_root"));
            }
        }
        assert!(uses_trust_root, "{name}: no panel filters by $trust_root");
    }
}
