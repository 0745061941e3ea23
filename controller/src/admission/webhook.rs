//! The two endpoints the API server calls: `POST /validate` (the decision) and `POST /mutate`
//! (pin to digest). Both read the review, judge its images (see [`super::judge`]) and answer;
//! the validating one also counts the decision and records Events.
//!
//! Until this replica's watches have synced there is no picture of trust to answer from: both
//! endpoints answer 503, so the API server applies the `failurePolicy` the manifests chose,
//! rather than an "ungoverned, admitted" no TrustRoot was consulted for.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    routing::post,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    api::DynamicObject,
    core::{
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
        response::{StatusCause, StatusDetails},
    },
    runtime::events::Recorder,
};
use tokio::sync::watch;

use super::{
    decide::{self, Decision},
    judge::{Judge, Judgement},
    review::{self, Subject},
    trust::Trust,
};
use crate::operator::{
    events::{Announcement, publish_on},
    index::Index,
    metrics::Metrics,
};

/// The API server sends at most its request size limit (3 MiB by default) in `object`, plus
/// `oldObject` on updates.
const MAX_BODY: usize = 8 << 20;

/// Namespaces labelled this way are not checked (`countersign.dev/admission: disabled`).
pub const EXCLUDE_LABEL: (&str, &str) = ("countersign.dev/admission", "disabled");

/// One replica's webhook.
pub struct Webhook {
    pub judge: Judge,
    pub trust: watch::Receiver<Option<Arc<Trust>>>,
    pub index: Arc<Index>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Namespaces never checked (kube-system, the operator's own).
    pub excluded: Vec<String>,
    /// Pin every governed image, whatever its TrustRoot says (`--pin-digests`).
    pub pin_all: bool,
}

pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(webhook)
}

/// What one review is about, once read.
struct Reviewed {
    request: AdmissionRequest<DynamicObject>,
    subject: Option<Subject>,
    labels: Arc<BTreeMap<String, String>>,
}

type Answer = Result<Json<AdmissionReview<DynamicObject>>, (StatusCode, String)>;

async fn validate(
    State(w): State<Arc<Webhook>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Answer {
    let started = Instant::now();
    let (trust, reviewed) = w.read(review)?;
    let Reviewed {
        request,
        subject,
        labels,
    } = reviewed;
    let (decision, subject) = match subject {
        Some(s) if !w.excluded(&s.namespace, &labels) => {
            let judgements = w.judge.judge(&trust, &s, &labels).await;
            let judged: Vec<decide::Judged> = judgements.into_iter().flat_map(|j| j.judged).collect();
            (decide::decide(&judged), Some(s))
        }
        Some(s) => (excluded(), Some(s)),
        None => (decide::decide(&[]), None),
    };
    w.metrics
        .admission(decision.decision, decision.reason, started.elapsed());
    if let Some(s) = subject.filter(|s| !s.controlled && !request.dry_run) {
        w.record(&request, &s, &decision);
    }
    let mut response = AdmissionResponse::from(&request);
    if !decision.warnings.is_empty() {
        response.warnings = Some(decision.warnings.clone());
    }
    if let (false, Some(message)) = (decision.allowed, decision.message.clone()) {
        response = response.deny(message);
        response.result.code = 403;
        response.result.reason = "Forbidden".into();
        response.result.details = Some(details(&request, &decision));
    }
    Ok(Json(response.into_review()))
}

/// The structured half of a denial: the API server passes it on to the client as the
/// Status's `details`, one cause per refusal.
fn details(request: &AdmissionRequest<DynamicObject>, decision: &Decision) -> StatusDetails {
    let causes = decision.causes.iter().map(|c| StatusCause {
        reason: c.reason.to_string(),
        message: c.message.clone(),
        field: c.field.clone(),
    });
    StatusDetails {
        name: request.name.clone(),
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        uid: String::new(),
        causes: causes.collect(),
        retry_after_seconds: 0,
    }
}

async fn mutate(State(w): State<Arc<Webhook>>, Json(review): Json<AdmissionReview<DynamicObject>>) -> Answer {
    let (trust, reviewed) = w.read(review)?;
    let response = AdmissionResponse::from(&reviewed.request);
    let pinning = w.pin_all || trust.roots.iter().any(|r| r.spec.pin_to_digest);
    let subject = match reviewed.subject {
        Some(s) if pinning && !w.excluded(&s.namespace, &reviewed.labels) => s,
        _ => return Ok(Json(response.into_review())),
    };
    let judgements = w.judge.judge(&trust, &subject, &reviewed.labels).await;
    let patch = pins(&judgements, w.pin_all);
    if patch.is_empty() {
        return Ok(Json(response.into_review()));
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(patch))
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let response = response
        .with_patch(patch)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    Ok(Json(response.into_review()))
}

/// JSON Patch operations rewriting each governed, verified tag to `tag@digest`. Images that
/// already name a digest are left as written.
fn pins(judgements: &[Judgement], pin_all: bool) -> Vec<serde_json::Value> {
    judgements
        .iter()
        .filter(|j| (pin_all || j.pin) && !j.at.image.contains('@'))
        .filter_map(|j| {
            let digest = j.verified_digest.as_ref()?;
            Some(serde_json::json!({
                "op": "replace",
                "path": j.at.pointer,
                "value": format!("{}@{digest}", j.at.image),
            }))
        })
        .collect()
}

fn excluded() -> Decision {
    Decision {
        allowed: true,
        decision: "allowed",
        reason: "excluded",
        message: None,
        causes: Vec::new(),
        warnings: Vec::new(),
        recorded: Vec::new(),
    }
}

impl Webhook {
    /// The request, its subject and its namespace's labels, with the picture of trust to judge
    /// it by; an HTTP error when the review cannot be answered at all.
    fn read(
        &self,
        review: AdmissionReview<DynamicObject>,
    ) -> Result<(Arc<Trust>, Reviewed), (StatusCode, String)> {
        let request: AdmissionRequest<DynamicObject> = review
            .try_into()
            .map_err(|_| error(StatusCode::BAD_REQUEST, "an AdmissionReview without a request"))?;
        let Some(trust) = self.trust.borrow().clone() else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the caches are syncing",
            ));
        };
        let namespace = request.namespace.clone().unwrap_or_default();
        let to_value = |o: &Option<DynamicObject>| o.as_ref().and_then(|o| serde_json::to_value(o).ok());
        let (object, old) = (to_value(&request.object), to_value(&request.old_object));
        let subject = object
            .as_ref()
            .and_then(|o| review::subject(&request.kind.kind, &namespace, o, old.as_ref()));
        let labels = self
            .index
            .namespaces
            .read(|m| m.get(&(String::new(), namespace.clone())).cloned())
            .unwrap_or_default();
        Ok((
            trust,
            Reviewed {
                request,
                subject,
                labels,
            },
        ))
    }

    fn excluded(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.excluded.iter().any(|n| n == namespace)
            || labels.get(EXCLUDE_LABEL.0).is_some_and(|v| v == EXCLUDE_LABEL.1)
    }

    /// An Event on the object for each refusal that is recorded (Enforce, Audit), published in
    /// the background: the answer does not wait for it.
    fn record(&self, request: &AdmissionRequest<DynamicObject>, subject: &Subject, decision: &Decision) {
        if decision.recorded.is_empty() {
            return;
        }
        let reason = if decision.allowed {
            "AdmissionAudited"
        } else {
            "AdmissionDenied"
        };
        let object = ObjectReference {
            api_version: Some(api_version(&request.kind)),
            kind: Some(subject.kind.clone()),
            namespace: Some(subject.namespace.clone()),
            name: Some(subject.name.clone()),
            uid: request.object.as_ref().and_then(|o| o.metadata.uid.clone()),
            ..ObjectReference::default()
        };
        let what = format!("{} {}/{}", subject.kind, subject.namespace, subject.name);
        let note = decision.recorded.join("; ");
        let (recorder, metrics) = (self.recorder.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let a = Announcement {
                reason,
                warning: true,
                note,
            };
            match publish_on(&recorder, &object, &what, &a).await {
                Ok(()) => metrics.event_emitted(reason),
                Err(e) => tracing::warn!(error = %e, "admission event not published"),
            }
        });
    }
}

fn api_version(kind: &kube::core::GroupVersionKind) -> String {
    if kind.group.is_empty() {
        kind.version.clone()
    } else {
        format!("{}/{}", kind.group, kind.version)
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, String) {
    (status, message.to_string())
}
