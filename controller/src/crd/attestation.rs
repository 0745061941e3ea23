//! Attestations a TrustRoot requires (`spec.attestations`): predicate types, each with an
//! optional CEL policy over the predicate, and their validation.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::FieldError;
use crate::{
    formats::attestation::predicate_type,
    verify::{MAX_POLICY, PredicatePolicy, Requirement},
};

/// cosign's `--type` names, or a URI (a scheme, then `://`): what the apiserver can check
/// cheaply. Whether the policy is valid CEL is checked by countersign (the TrustRoot's
/// `Ready` condition names the field).
const PREDICATE_TYPE_RULE: &str = "self.matches('^(slsaprovenance|slsaprovenance02|slsaprovenance1|spdx|spdxjson|cyclonedx|link|vuln|openvex|custom)$') || self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^ ]+$')";

/// One attestation every governed image must carry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustRootAttestation {
    /// The predicate type, as `cosign attest --type` takes it: `slsaprovenance` (v0.2),
    /// `slsaprovenance1`, `spdx`, `cyclonedx`, `vuln`, `openvex`, `link`, `custom`, or any URI
    /// such as `https://slsa.dev/provenance/v1`. An image verifies only when an attestation of
    /// this type, signed by one of the TrustRoot's keys or identities, names its digest.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(PREDICATE_TYPE_RULE)
        .message("predicateType must be a URI (https://slsa.dev/provenance/v1) or one of cosign's names: slsaprovenance, slsaprovenance02, slsaprovenance1, spdx, spdxjson, cyclonedx, link, vuln, openvex, custom"))]
    pub predicate_type: String,

    /// A CEL expression that must evaluate to true for the attestation to count, over
    /// `predicate` (the statement's predicate), `predicateType` and `subject`, e.g.
    /// `predicate.buildDefinition.buildType == "https://example.com/ci/v1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub policy: Option<String>,
}

impl TrustRootAttestation {
    /// The requirement this declares, or the field errors (`at` is `spec.attestations[i]`).
    pub fn compile(&self, at: &str) -> Result<Requirement, Vec<FieldError>> {
        let mut errors = Vec::new();
        let predicate_type = predicate_type(&self.predicate_type)
            .map_err(|e| errors.push(FieldError::new(format!("{at}.predicateType"), e.to_string())))
            .ok();
        let policy = match self.policy.as_deref().map(PredicatePolicy::compile).transpose() {
            Ok(p) => p,
            Err(e) => {
                errors.push(FieldError::new(format!("{at}.policy"), e.to_string()));
                None
            }
        };
        match predicate_type {
            Some(predicate_type) if errors.is_empty() => Ok(Requirement {
                predicate_type,
                policy,
            }),
            _ => Err(errors),
        }
    }
}

/// `spec.attestations`, compiled; each predicate type at most once.
pub(super) fn check_attestations(
    declared: &[TrustRootAttestation],
    errors: &mut Vec<FieldError>,
) -> Vec<Requirement> {
    const _: () = assert!(MAX_POLICY == 4096, "the CRD's maxLength for policy");
    let mut compiled: Vec<Requirement> = Vec::with_capacity(declared.len());
    for (i, a) in declared.iter().enumerate() {
        let at = format!("spec.attestations[{i}]");
        match a.compile(&at) {
            Ok(r) => match compiled.iter().position(|c| c.predicate_type == r.predicate_type) {
                Some(first) => errors.push(FieldError::new(
                    format!("{at}.predicateType"),
                    format!(
                        "{} is already required by spec.attestations[{first}]: combine the policies with &&",
                        r.predicate_type
                    ),
                )),
                None => compiled.push(r),
            },
            Err(e) => errors.extend(e),
        }
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(predicate_type: &str, policy: Option<&str>) -> TrustRootAttestation {
        TrustRootAttestation {
            predicate_type: predicate_type.into(),
            policy: policy.map(str::to_string),
        }
    }

    #[test]
    fn short_names_uris_and_policies_compile() {
        let mut errors = Vec::new();
        let r = check_attestations(
            &[
                declared("slsaprovenance1", Some("predicate.x == 1")),
                declared("https://example.com/p", None),
            ],
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(r[0].predicate_type, "https://slsa.dev/provenance/v1");
        assert_eq!(r[1].predicate_type, "https://example.com/p");
    }

    #[test]
    fn errors_name_the_field() {
        let mut errors = Vec::new();
        check_attestations(
            &[
                declared("slsaprovenance1", Some("predicate.x ==")),
                declared("provenance", None),
                declared("https://slsa.dev/provenance/v1", None),
            ],
            &mut errors,
        );
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.attestations[0].policy",
                "spec.attestations[1].predicateType",
            ]
        );
        assert!(
            errors[0].message.starts_with("invalid CEL expression"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_type_is_required_once() {
        let mut errors = Vec::new();
        check_attestations(
            &[
                declared("slsaprovenance1", None),
                declared("https://slsa.dev/provenance/v1", None),
            ],
            &mut errors,
        );
        assert_eq!(errors[0].path, "spec.attestations[1].predicateType");
    }
}
