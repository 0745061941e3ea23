//! The push webhook receiver (every replica): `POST /hooks/git` from a Git host, authenticated
//! by GitHub's (and Gitea's) `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` or
//! GitLab's `X-Gitlab-Token`, both with the `token` of one Secret. The payload's repository URLs
//! are matched against every TrustSource's `spec.url`; each match gets a new
//! `countersign.dev/requested-at` annotation, which wakes the leader's controller. Working
//! through the API this way, the receiver needs no leader and any replica can answer.
//!
//! Answers: 202 with the number of TrustSources woken, 401 without a signature or token, 403
//! with a wrong one, 404/405 elsewhere, 413 for bodies over 1 MiB.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use hmac::{Hmac, Mac};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

use super::{Config, credentials::read_secret, url::match_key};
use crate::crd::{REQUESTED_AT_ANNOTATION, TrustSource};

pub const PATH: &str = "/hooks/git";
const MAX_BODY: usize = 1 << 20;

struct Receiver {
    client: Client,
    namespace: String,
    secret: String,
}

/// Binds `addr`; the error names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    crate::server::bind("git webhook", addr).await
}

/// The receiver's routes: `POST /hooks/git`; bodies over 1 MiB are refused with 413.
pub fn router(client: Client, config: &Config) -> Router {
    let state = Arc::new(Receiver {
        client,
        namespace: config.namespace.clone(),
        secret: config.webhook_secret.clone(),
    });
    Router::new()
        .route(PATH, post(handle))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("not found: POST {PATH}")}),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn handle(State(state): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let credential = match (header("x-hub-signature-256"), header("x-gitlab-token")) {
        (Some(sig), _) => Presented::Signature(sig),
        (None, Some(token)) => Presented::Token(token),
        (None, None) => {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "X-Hub-Signature-256 or X-Gitlab-Token required"}),
            );
        }
    };
    let token = match read_secret(&state.client, &state.namespace, &state.secret).await {
        Ok(data) => data.get("token").cloned().filter(|t| !t.is_empty()),
        Err(e) => {
            tracing::warn!(error = %e, "git webhook: cannot read its Secret");
            None
        }
    };
    let Some(token) = token else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the webhook Secret is not readable"}),
        );
    };
    if !authentic(&credential, &token, &body) {
        return reply(StatusCode::FORBIDDEN, json!({"error": "bad signature or token"}));
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "the body is not JSON"}));
    };
    match wake(&state, &repository_keys(&payload)).await {
        Ok(n) => reply(StatusCode::ACCEPTED, json!({"triggered": n})),
        Err(e) => {
            tracing::warn!(error = %e, "git webhook: cannot wake TrustSources");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "cannot reach the API server"}),
            )
        }
    }
}

/// What the caller presented.
pub enum Presented {
    /// `sha256=<hex>`.
    Signature(String),
    Token(String),
}

/// Constant-time checks of the signature (HMAC-SHA256 of the body) or the token.
pub fn authentic(presented: &Presented, token: &[u8], body: &[u8]) -> bool {
    match presented {
        Presented::Signature(sig) => {
            let Some(expected) = sig
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h.trim()).ok())
            else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        }
        Presented::Token(t) => {
            // HMAC both sides with a fixed key: comparing the digests takes the same time
            // whatever the first differing byte.
            let digest = |v: &[u8]| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(b"countersign").unwrap_or_else(|_| unreachable!());
                mac.update(v);
                mac.finalize()
            };
            digest(t.as_bytes()) == digest(token)
        }
    }
}

/// The repository URLs of a GitHub, Gitea or GitLab push payload, as match keys.
pub fn repository_keys(payload: &Value) -> Vec<String> {
    let mut out: Vec<String> = [
        "/repository/clone_url",
        "/repository/ssh_url",
        "/repository/git_url",
        "/repository/html_url",
        "/repository/url",
        "/repository/git_http_url",
        "/repository/git_ssh_url",
        "/repository/homepage",
        "/project/git_http_url",
        "/project/git_ssh_url",
        "/project/web_url",
        "/project/http_url",
        "/project/ssh_url",
    ]
    .iter()
    .filter_map(|p| payload.pointer(p).and_then(Value::as_str))
    .filter_map(match_key)
    .collect();
    out.sort();
    out.dedup();
    out
}

async fn wake(state: &Receiver, keys: &[String]) -> Result<usize, kube::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let api = Api::<TrustSource>::all(state.client.clone());
    let now = Timestamp::now().to_string();
    let mut woken = 0;
    for source in api.list(&ListParams::default()).await? {
        if match_key(&source.spec.url).is_some_and(|k| keys.contains(&k)) {
            let patch = json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: now}}});
            api.patch(&source.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            woken += 1;
        }
    }
    Ok(woken)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(token: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(token).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_and_tokens() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert!(authentic(
            &Presented::Signature(sign(b"s3cret", body)),
            b"s3cret",
            body
        ));
        assert!(!authentic(
            &Presented::Signature(sign(b"other", body)),
            b"s3cret",
            body
        ));
        assert!(!authentic(
            &Presented::Signature(sign(b"s3cret", b"{}")),
            b"s3cret",
            body
        ));
        assert!(!authentic(
            &Presented::Signature("sha1=00".into()),
            b"s3cret",
            body
        ));
        assert!(authentic(&Presented::Token("s3cret".into()), b"s3cret", body));
        assert!(!authentic(&Presented::Token("s3cre".into()), b"s3cret", body));
    }

    #[test]
    fn repository_urls_of_github_gitea_and_gitlab_payloads() {
        let gitea = json!({"repository": {
            "clone_url": "http://127.0.0.1:3000/alice/trust.git",
            "ssh_url": "ssh://root@127.0.0.1:2222/alice/trust.git",
            "html_url": "http://127.0.0.1:3000/alice/trust",
        }});
        assert_eq!(
            repository_keys(&gitea),
            ["127.0.0.1:2222/alice/trust", "127.0.0.1:3000/alice/trust"]
        );
        let gitlab = json!({"project": {"git_ssh_url": "git@gitlab.example.com:team/trust.git"}});
        assert_eq!(repository_keys(&gitlab), ["gitlab.example.com/team/trust"]);
        assert!(repository_keys(&json!({})).is_empty());
    }
}
