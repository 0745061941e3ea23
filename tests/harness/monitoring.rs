//! The monitoring files of `manifests/monitoring/` as the tests read them: the rules file (the one
//! source of the PrometheusRule), the Grafana dashboards and their queries, and the rules with
//! every duration cut down for the end-to-end test.

use std::path::PathBuf;

use serde_json::Value;

use crate::repo_root;

pub fn monitoring_dir() -> PathBuf {
    repo_root().join("manifests/monitoring")
}

/// The plain Prometheus rules file.
pub fn rules_path() -> PathBuf {
    monitoring_dir().join("countersign.rules.yaml")
}

/// A YAML (or JSON) file as JSON values.
pub fn load_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every rule of every group of a rules document (`{groups: [{rules: [...]}]}`).
pub fn rules(doc: &Value) -> impl Iterator<Item = &Value> {
    doc["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
}

/// The alerting rules of a rules document: (alert name, rule).
pub fn alerts(doc: &Value) -> Vec<(String, &Value)> {
    rules(doc)
        .filter_map(|r| Some((r["alert"].as_str()?.to_string(), r)))
        .collect()
}

/// The rules with every duration scaled down 60 times (`for: 30m` → `30s`, `[15m]` → `[15s]`,
/// `[1h]` → `[1m]`), for a test that must see alerts fire and resolve in seconds. Derived from the
/// real rules, never copied: what the end-to-end test checks is their logic at another time scale.
pub fn accelerated(doc: &Value) -> Value {
    let mut doc = doc.clone();
    for group in doc["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if let Some(d) = rule["for"].as_str() {
                rule["for"] = Value::String(scale_duration(d));
            }
            if let Some(e) = rule["expr"].as_str() {
                rule["expr"] = Value::String(scale_ranges(e));
            }
        }
    }
    doc
}

/// `15m` → `15s`, `2h` → `2m`, `1d` → `1h`; seconds are not used by the rules (a range of one
/// second holds no two samples) and are refused.
fn scale_duration(d: &str) -> String {
    let (n, unit) = d.split_at(d.len() - 1);
    assert!(
        n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty(),
        "duration {d:?}"
    );
    let smaller = match unit {
        "m" => "s",
        "h" => "m",
        "d" => "h",
        _ => panic!("duration {d:?}: the rules use m, h or d"),
    };
    format!("{n}{smaller}")
}

/// Scales the range of every range selector `[N<unit>]` in a PromQL expression (the rules have
/// no subqueries and no `[` inside label values).
fn scale_ranges(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map(|i| open + i).expect("a closed range");
        out.push_str(&rest[..=open]);
        out.push_str(&scale_duration(&rest[open + 1..close]));
        out.push(']');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The Grafana dashboards: (file name, dashboard JSON).
pub fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(monitoring_dir().join("dashboards"))
        .expect("manifests/monitoring/dashboards")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            (name, serde_json::from_str(&text).expect("dashboard JSON"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One panel query: where it is (dashboard, panel title, refId) and its PromQL.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub place: String,
    pub expr: String,
}

/// Every target of every panel (rows' nested panels included).
pub fn panel_queries(name: &str, dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(name: &str, panels: &Value, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let reference = target["refId"].as_str().unwrap_or("?");
                    out.push(PanelQuery {
                        place: format!("{name} / {title} / {reference}"),
                        expr: expr.to_string(),
                    });
                }
            }
            walk(name, &panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(name, &dashboard["panels"], &mut out);
    out
}

/// A panel query as Grafana sends it: its variables replaced (`$trust_root` by `trust_root`,
/// a regex matcher's value; the interval variables by fixed windows).
pub fn expand(expr: &str, trust_root: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${trust_root:regex}", trust_root)
        .replace("$trust_root", trust_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_for_and_ranges() {
        assert_eq!(scale_duration("30m"), "30s");
        assert_eq!(scale_duration("1d"), "1h");
        assert_eq!(
            scale_ranges("rate(a[5m]) / increase(b{x=\"y\"}[15m])"),
            "rate(a[5s]) / increase(b{x=\"y\"}[15s])"
        );
    }
}
