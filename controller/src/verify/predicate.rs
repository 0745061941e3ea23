//! Policies over an attestation's predicate: one CEL expression, compiled once, evaluated with
//! the predicate bound to `predicate` (and the statement's `predicateType` and `subject`).
//! It must evaluate to `true`; anything else (false, an error, a non-boolean) fails the policy.

use std::sync::Arc;

/// Longest expression accepted: policies are one-liners over a predicate, and the CRD bounds
/// the field the same way.
pub const MAX_POLICY: usize = 4096;

/// A compiled CEL expression, with its source for reasons and equality.
#[derive(Clone)]
pub struct PredicatePolicy {
    expression: String,
    program: Arc<cel::Program>,
}

impl std::fmt::Debug for PredicatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PredicatePolicy").field(&self.expression).finish()
    }
}

impl PartialEq for PredicatePolicy {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}
impl Eq for PredicatePolicy {}

/// Why an expression cannot be a policy (the parser's own message, one line per problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CEL expression: {0}")]
pub struct PolicyError(pub String);

impl PredicatePolicy {
    pub fn compile(expression: &str) -> Result<Self, PolicyError> {
        if expression.trim().is_empty() {
            return Err(PolicyError("the expression is empty".into()));
        }
        if expression.len() > MAX_POLICY {
            return Err(PolicyError(format!(
                "{} characters, more than the {MAX_POLICY} accepted",
                expression.len()
            )));
        }
        // The parser reports positions in its own words; one line reads better in a status.
        let program =
            cel::Program::compile(expression).map_err(|e| PolicyError(e.to_string().replace('\n', "; ")))?;
        Ok(Self {
            expression: expression.to_string(),
            program: Arc::new(program),
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// `Ok(())` when the expression is `true` for this statement; otherwise what it gave.
    pub fn evaluate(
        &self,
        predicate_type: &str,
        subject: &serde_json::Value,
        predicate: &serde_json::Value,
    ) -> Result<(), String> {
        let mut context = cel::Context::default();
        let bind = |v: &serde_json::Value| cel::to_value(v).map_err(|e| format!("predicate: {e}"));
        context.add_variable_from_value("predicate", bind(predicate)?);
        context.add_variable_from_value("subject", bind(subject)?);
        context.add_variable_from_value("predicateType", predicate_type.to_string());
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(true)) => Ok(()),
            Ok(cel::Value::Bool(false)) => Err("evaluated to false".into()),
            Ok(other) => Err(format!("evaluated to {other:?}, not a boolean")),
            Err(e) => Err(format!("evaluation failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(expr: &str, predicate: serde_json::Value) -> Result<(), String> {
        PredicatePolicy::compile(expr).unwrap().evaluate(
            "https://slsa.dev/provenance/v1",
            &json!([]),
            &predicate,
        )
    }

    #[test]
    fn true_passes_false_and_errors_fail() {
        let p = json!({"buildDefinition": {"buildType": "https://example.com/ci/v1", "externalParameters": {"ref": "refs/heads/main"}}});
        assert_eq!(
            eval(
                "predicate.buildDefinition.externalParameters.ref == 'refs/heads/main'",
                p.clone()
            ),
            Ok(())
        );
        assert_eq!(
            eval(
                "predicate.buildDefinition.buildType.startsWith('https://other')",
                p.clone()
            ),
            Err("evaluated to false".into())
        );
        assert!(
            eval("predicate.missing.field == 1", p.clone())
                .unwrap_err()
                .contains("evaluation failed")
        );
        assert!(eval("1 + 1", p.clone()).unwrap_err().contains("not a boolean"));
        assert_eq!(
            eval(
                "predicateType == 'https://slsa.dev/provenance/v1' && has(predicate.buildDefinition)",
                p
            ),
            Ok(())
        );
    }

    #[test]
    fn numbers_and_lists_from_json() {
        let p = json!({"scanner": {"result": {"summary": {"critical": 0, "high": 2}}}, "tags": ["a", "b"]});
        assert_eq!(
            eval(
                "predicate.scanner.result.summary.critical == 0 && predicate.tags.exists(t, t == 'b')",
                p
            ),
            Ok(())
        );
    }

    #[test]
    fn invalid_expressions_are_refused_with_the_parser_message() {
        let e = PredicatePolicy::compile("predicate.a ==").unwrap_err();
        assert!(e.to_string().starts_with("invalid CEL expression"), "{e}");
        assert!(PredicatePolicy::compile("  ").is_err());
        assert!(PredicatePolicy::compile(&"a".repeat(MAX_POLICY + 1)).is_err());
    }
}
