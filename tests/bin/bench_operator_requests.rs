//! The registry's own log, one line per request: what each request was, and how many of each
//! kind a window of the log holds.

use std::collections::{BTreeMap, HashMap};

/// What one line of go-containerregistry's log was (`2025/01/02 15:04:05 GET /v2/… [status code
/// message]`; the status appears only on errors): `METHOD kind`, `→ status` when it failed.
/// `None` for lines that are not requests.
fn classify(line: &str) -> Option<(String, Option<String>)> {
    let mut parts = line.split_whitespace();
    let (_date, _time, method, url) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !matches!(method, "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE") {
        return None;
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()));
    let path = url.split('?').next()?;
    let mut digest = None;
    let kind = if path == "/v2/" || path == "/v2" {
        "/v2/ (ping)"
    } else if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        if let Some(hex) = reference.strip_prefix("sha256-") {
            digest = Some(hex.trim_end_matches(".sig").to_string());
            if reference.ends_with(".sig") {
                "manifest, .sig tag"
            } else {
                "manifest, referrers fallback tag"
            }
        } else if reference.starts_with("sha256:") {
            "manifest, by digest"
        } else {
            "manifest, by tag"
        }
    } else if let Some((_, subject)) = path.rsplit_once("/referrers/") {
        digest = Some(subject.trim_start_matches("sha256:").to_string());
        "referrers"
    } else if path.contains("/blobs/uploads") {
        "blob upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else {
        "other"
    };
    let status = status.map_or_else(String::new, |s| format!(" → {s}"));
    Some((format!("{method} {kind}{status}"), digest))
}

/// Requests by kind in `lines`, and the most any one subject digest got (pings and blobs
/// name no subject).
pub fn count_requests(lines: &[&str]) -> (BTreeMap<String, usize>, usize, usize) {
    let mut kinds = BTreeMap::new();
    let mut per_digest: HashMap<String, usize> = HashMap::new();
    for line in lines {
        if let Some((kind, digest)) = classify(line) {
            *kinds.entry(kind).or_insert(0) += 1;
            if let Some(d) = digest {
                *per_digest.entry(d).or_insert(0) += 1;
            }
        }
    }
    let max = per_digest.values().copied().max().unwrap_or(0);
    (kinds, per_digest.len(), max)
}
