//! Label selectors (`spec.namespaceSelector`): checking them and matching labels against them,
//! with the semantics of `metav1.LabelSelectorAsSelector`.
//!
//! The apiserver does not validate a `LabelSelector` embedded in a custom resource, so a typo in
//! an operator would otherwise silently select nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::FieldError;

/// Whether `labels` satisfy `selector`. An empty selector matches everything; a requirement
/// with an unknown operator matches nothing (as an invalid selector selects nothing).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    by_label
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|requirement| requirement_matches(requirement, labels))
}

fn requirement_matches(requirement: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&requirement.key);
    let in_values = || {
        value.is_some_and(|v| {
            requirement
                .values
                .iter()
                .flatten()
                .any(|candidate| candidate == v)
        })
    };
    match requirement.operator.as_str() {
        "In" => in_values(),
        "NotIn" => !in_values(),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Pushes an error for each requirement that Kubernetes would refuse in a built-in object.
pub fn check(selector: &LabelSelector, path: &str, errors: &mut Vec<FieldError>) {
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if requirement.key.is_empty() {
            errors.push(FieldError::new(format!("{at}.key"), "must not be empty"));
        }
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::new(
                format!("{at}.values"),
                format!("must not be empty when the operator is {}", requirement.operator),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::new(
                format!("{at}.values"),
                format!("must be empty when the operator is {}", requirement.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{at}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    fn expressions(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(requirements),
            match_labels: None,
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
        assert!(matches(&LabelSelector::default(), &labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_must_all_be_equal() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "payments"), ("env", "prod")])),
            match_expressions: None,
        };
        assert!(matches(
            &selector,
            &labels(&[("team", "payments"), ("env", "prod"), ("x", "y")])
        ));
        assert!(!matches(&selector, &labels(&[("team", "payments")])));
        assert!(!matches(
            &selector,
            &labels(&[("team", "payments"), ("env", "dev")])
        ));
    }

    #[test]
    fn operators_follow_kubernetes() {
        let prod = labels(&[("env", "prod")]);
        let none = labels(&[]);
        let is = |op: &str, values: &[&str], l: &BTreeMap<String, String>| {
            matches(&expressions(vec![requirement("env", op, values)]), l)
        };
        assert!(is("In", &["prod", "staging"], &prod));
        assert!(!is("In", &["dev"], &prod));
        assert!(!is("In", &["prod"], &none));
        assert!(is("NotIn", &["dev"], &prod));
        assert!(is("NotIn", &["dev"], &none));
        assert!(!is("NotIn", &["prod"], &prod));
        assert!(is("Exists", &[], &prod));
        assert!(!is("Exists", &[], &none));
        assert!(is("DoesNotExist", &[], &none));
        assert!(!is("DoesNotExist", &[], &prod));
        assert!(!is("Equals", &["prod"], &prod));
    }

    #[test]
    fn check_names_the_bad_requirement() {
        let selector = expressions(vec![
            requirement("env", "In", &["prod"]),
            requirement("env", "In", &[]),
            requirement("team", "Exists", &["x"]),
            requirement("", "Equals", &[]),
        ]);
        let mut errors = Vec::new();
        check(&selector, "spec.namespaceSelector", &mut errors);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.namespaceSelector.matchExpressions[1].values: must not be empty when the operator is In",
                "spec.namespaceSelector.matchExpressions[2].values: must be empty when the operator is Exists",
                "spec.namespaceSelector.matchExpressions[3].key: must not be empty",
                "spec.namespaceSelector.matchExpressions[3].operator: \"Equals\" is not one of In, NotIn, Exists, DoesNotExist",
            ]
        );
    }
}
