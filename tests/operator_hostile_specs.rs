//! The corpus' hostile CRD specs (`tests/corpus/{trustroot,keyrotation,trustsource}`) on the
//! real control plane: refused by the apiserver (schema or CEL) naming the field the corpus
//! says (`apiserver`), or, where they get past it, named in the TrustRoot's status by the
//! operator (`status`, else the library's `field`). Used by operator_malformed.rs, in its
//! phases with and without the CRDs' CEL rules.

use std::time::Duration;

use anyhow::{Context, bail};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, PostParams},
};
use serde_json::Value;

use super::corpus::{self, Case};
use super::operator_common::{condition, dynamic, eventually, status};

const GROUP_VERSION: &str = "countersign.dev/v1alpha1";

/// (corpus kind, Kubernetes kind); all three are cluster-scoped.
const KINDS: &[(&str, &str)] = &[
    ("trustroot", "TrustRoot"),
    ("keyrotation", "KeyRotation"),
    ("trustsource", "TrustSource"),
];

/// The case's YAML document as an object named `hostile-<case>`.
fn object(kind: &str, case: &Case) -> Value {
    let bytes = case.bytes(kind);
    let text = std::str::from_utf8(&bytes).expect("utf-8 case");
    let mut object: Value = serde_saphyr::from_str(text).expect("a YAML object");
    object["metadata"]["name"] = Value::String(name(case));
    object
}

/// Creates it (a POST: the apiserver answers a bad object with 422 and its causes; a server-side
/// apply answers some type errors with a bare 500).
async fn create(client: &Client, kind: &str, object: Value) -> anyhow::Result<()> {
    let object: DynamicObject = serde_json::from_value(object)?;
    dynamic(client, GROUP_VERSION, kind, None)
        .create(&PostParams::default(), &object)
        .await?;
    Ok(())
}

fn name(case: &Case) -> String {
    format!("hostile-{}", case.name)
}

/// Whether the apiserver's refusal names `field`: a cause with that field (CEL and schema
/// errors carry one), else the field at the start of the message (`spec.x: Invalid value`).
fn refusal_names(error: &anyhow::Error, field: &str) -> Result<(), String> {
    let Some(kube::Error::Api(answer)) = error.downcast_ref::<kube::Error>() else {
        return Err(format!("not an API error: {error:#}"));
    };
    let causes = answer
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let named = causes.iter().any(|c| c.field == field) || answer.message.contains(&format!("{field}: "));
    if (400..500).contains(&answer.code) && named {
        Ok(())
    } else {
        Err(format!("{answer:?}"))
    }
}

async fn delete(client: &Client, kind: &str, case: &Case) {
    let _ = dynamic(client, GROUP_VERSION, kind, None)
        .delete(&name(case), &DeleteParams::default())
        .await;
}

/// With the CRDs as shipped: every case with an `apiserver` field is refused naming it, and
/// every valid baseline is accepted. Nothing is left behind.
pub async fn refused_by_the_apiserver(client: &Client) {
    let mut failures = Vec::new();
    for &(corpus_kind, kind) in KINDS {
        for case in corpus::cases(corpus_kind) {
            let expected = match (&case.apiserver, case.error.as_str(), &case.file) {
                (Some(field), _, _) => Some(field.clone()),
                (None, "ok", Some(_)) => None,
                _ => continue,
            };
            let result = create(client, kind, object(corpus_kind, &case)).await;
            let verdict = match (&expected, result) {
                (Some(field), Err(e)) => refusal_names(&e, field),
                (Some(field), Ok(())) => Err(format!("accepted; expected a refusal naming {field}")),
                (None, Ok(())) => Ok(()),
                (None, Err(e)) => Err(format!("a valid object refused: {e:#}")),
            };
            println!("{corpus_kind}/{:30} {verdict:?}", case.name);
            if let Err(why) = verdict {
                failures.push(format!("{corpus_kind}/{} ({}): {why}", case.name, case.what));
            }
            delete(client, kind, &case).await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With the CRDs' CEL rules removed (objects stored before a rule existed): each TrustRoot case
/// the structural schema lets through is named in its status by the operator, field first.
/// Returns the names created, for the caller to delete once it has checked the others.
pub async fn named_in_status(client: &Client, within: Duration) -> Vec<String> {
    let mut applied = Vec::new();
    for case in corpus::cases("trustroot") {
        let Some(field) = case.status.clone().or(case.field.clone()) else {
            continue;
        };
        // A type error never gets past the schema; file-level problems (kind, namespace,
        // status, name) are the TrustSource reader's, not the spec's; one object per case.
        if !field.starts_with("spec.") || case.document.is_some() {
            continue;
        }
        match create(client, "TrustRoot", object("trustroot", &case)).await {
            Ok(()) => applied.push((case, field)),
            // The structural schema (types, lengths, enums) still refuses it: named there.
            Err(e) => {
                let expected = case.apiserver.as_deref().unwrap_or(&field);
                if let Err(why) = refusal_names(&e, expected) {
                    panic!("trustroot/{}: {why}", case.name);
                }
            }
        }
    }
    assert!(applied.len() >= 10, "{} cases got past the schema", applied.len());
    for (case, field) in &applied {
        let name = name(case);
        let prefix = format!("{field}: ");
        eventually(&format!("{name}'s status naming {field}"), within, || async {
            let s = status(client, &name).await?;
            let named = ["Ready", "KeysValid"]
                .iter()
                .filter_map(|t| condition(&s, t))
                .find(|c| c.status == "False" && c.message.starts_with(&prefix));
            let ready = condition(&s, "Ready").context("Ready")?;
            if ready.status != "False" || named.is_none() {
                bail!("{:?}", s.conditions);
            }
            Ok(())
        })
        .await;
        println!("trustroot/{:30} named {field} in status", case.name);
    }
    applied.into_iter().map(|(case, _)| name(&case)).collect()
}

/// Deletes the TrustRoots [`named_in_status`] created.
pub async fn delete_trust_roots(client: &Client, names: &[String]) {
    let api: Api<countersign::crd::TrustRoot> = Api::all(client.clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}
