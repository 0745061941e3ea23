//! What an admission review asks about, read from the object as JSON: which kind, where its pod
//! spec is, and the images to check with the JSON pointers of their fields (for the pinning
//! patch). Pure.
//!
//! On UPDATE only images that the old object did not have are checked: an edit that does not
//! change images (a label, a scale, the verdict annotations countersign itself writes) must
//! never be refused because a key was retired since. The pods such a change creates are
//! checked at their own CREATE.

use std::collections::BTreeSet;

use serde_json::Value;

/// Where the pod spec of each kind the webhooks receive lives.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "/spec",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => "/spec/template/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    })
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One image field of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageAt {
    /// JSON pointer of the `image` field, e.g. `/spec/template/spec/containers/0/image`.
    pub pointer: String,
    pub image: String,
}

impl ImageAt {
    /// The field as a Status cause names it: `spec.template.spec.containers[0].image` (the
    /// API conventions' dotted form, arrays zero-indexed).
    pub fn field(&self) -> String {
        let mut out = String::new();
        for part in self.pointer.split('/').filter(|p| !p.is_empty()) {
            if part.bytes().all(|b| b.is_ascii_digit()) {
                out.push_str(&format!("[{part}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(part);
            }
        }
        out
    }
}

/// The object under review, reduced to what a decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub namespace: String,
    /// The name, or the `generateName` prefix of an object not yet named.
    pub name: String,
    /// Created by a controller (a ReplicaSet's pods): its owner was reviewed already, so a
    /// warning or an Event for it would only repeat.
    pub controlled: bool,
    /// Images to check: all of them on CREATE, the new ones on UPDATE.
    pub images: Vec<ImageAt>,
    pub pull_secrets: Vec<String>,
}

/// Reads the subject of a review; `None` for a kind without a pod spec (nothing to check).
pub fn subject(kind: &str, namespace: &str, object: &Value, old: Option<&Value>) -> Option<Subject> {
    let at = pod_spec_pointer(kind)?;
    let spec = object.pointer(at)?;
    let before: BTreeSet<&str> = old
        .and_then(|o| o.pointer(at))
        .map(|s| images(s, at).into_iter().map(|i| i.1).collect())
        .unwrap_or_default();
    let images = images(spec, at)
        .into_iter()
        .filter(|(_, image)| !before.contains(image))
        .map(|(pointer, image)| ImageAt {
            pointer,
            image: image.to_string(),
        })
        .collect();
    let meta = object.get("metadata");
    let text = |field: &str| meta.and_then(|m| m.get(field)).and_then(Value::as_str);
    let controlled = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners
                .iter()
                .any(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    Some(Subject {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: text("name")
            .or_else(|| text("generateName"))
            .unwrap_or_default()
            .to_string(),
        controlled,
        images,
        pull_secrets,
    })
}

/// Every non-empty `image` of the pod spec at `at`, with its pointer.
fn images<'a>(spec: &'a Value, at: &str) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for list in CONTAINER_LISTS {
        let containers = spec.get(list).and_then(Value::as_array).into_iter().flatten();
        for (i, container) in containers.enumerate() {
            if let Some(image) = container
                .get("image")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                out.push((format!("{at}/{list}/{i}/image"), image));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_container_list_of_every_kind_is_read() {
        let spec = json!({
            "containers": [{"name": "a", "image": "r.example/a:1"}],
            "initContainers": [{"name": "i", "image": "r.example/i@sha256:00"}],
            "ephemeralContainers": [{"name": "e", "image": "r.example/e"}, {"name": "x", "image": ""}],
            "imagePullSecrets": [{"name": "pull"}],
        });
        let pod = json!({"metadata": {"generateName": "web-", "ownerReferences": [{"controller": true}]}, "spec": spec});
        let s = subject("Pod", "apps", &pod, None).unwrap_or_else(|| panic!("a pod"));
        assert_eq!((s.name.as_str(), s.controlled), ("web-", true));
        assert_eq!(s.pull_secrets, ["pull"]);
        let pointers: Vec<&str> = s.images.iter().map(|i| i.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/spec/containers/0/image",
                "/spec/initContainers/0/image",
                "/spec/ephemeralContainers/0/image"
            ]
        );
        assert_eq!(s.images[1].field(), "spec.initContainers[0].image");
        let cronjob = json!({"metadata": {"name": "nightly"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}});
        let s = subject("CronJob", "apps", &cronjob, None).unwrap_or_else(|| panic!("a cronjob"));
        assert_eq!(
            s.images[0].pointer,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        assert!(!s.controlled);
        assert!(subject("ConfigMap", "apps", &json!({}), None).is_none());
    }

    #[test]
    fn an_update_checks_only_images_it_adds() {
        let old = json!({"spec": {"template": {"spec": {"containers": [{"image": "r.example/a:1"}]}}}});
        let same = json!({"metadata": {"name": "web", "labels": {"x": "y"}}, "spec": {"template": {"spec": {"containers": [{"image": "r.example/a:1"}]}}}});
        let s = subject("Deployment", "apps", &same, Some(&old)).unwrap_or_else(|| panic!("a deployment"));
        assert!(s.images.is_empty());
        let added = json!({"spec": {"template": {"spec": {"containers": [{"image": "r.example/a:1"}, {"image": "r.example/b:2"}]}}}});
        let s = subject("Deployment", "apps", &added, Some(&old)).unwrap_or_else(|| panic!("a deployment"));
        assert_eq!(s.images.len(), 1);
        assert_eq!(s.images[0].image, "r.example/b:2");
    }
}
