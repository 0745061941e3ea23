//! cosign attestations: in-toto statements in DSSE envelopes, stored as layers of the
//! `sha256-<hex>.att` image (cosign v2, `--new-bundle-format=false`) or in Sigstore bundles
//! pushed as OCI referrers (cosign v3).

use serde::Serialize;

use super::{
    FormatError,
    dsse::{Envelope, STATEMENT_V01, Statement},
};
use crate::reference::Digest;

/// The media type of a `.att` layer: the layer is one DSSE envelope (JSON).
pub const DSSE_LAYER: &str = "application/vnd.dsse.envelope.v1+json";
/// The `.att` layer annotation naming the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The referrer manifest annotation naming a bundle's predicate type.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// cosign's `--type` short names and the predicate type each stands for.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
    ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
    ("spdx", "https://spdx.dev/Document"),
    ("spdxjson", "https://spdx.dev/Document"),
    ("cyclonedx", "https://cyclonedx.org/bom"),
    ("link", "https://in-toto.io/Link/v1"),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
    ("openvex", "https://openvex.dev/ns"),
    ("custom", "https://cosign.sigstore.dev/attestation/v1"),
];

/// The predicate type a `--type` value (or a TrustRoot's `predicateType`) names: a cosign short
/// name, or a URI taken as it is. Anything else is refused, as cosign refuses it.
pub fn predicate_type(name: &str) -> Result<String, FormatError> {
    if let Some((_, uri)) = SHORT_NAMES.iter().find(|(short, _)| *short == name) {
        return Ok((*uri).to_string());
    }
    let scheme_end = name.find("://").unwrap_or(0);
    let valid_scheme = scheme_end > 0
        && name[..scheme_end]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if valid_scheme && name.len() > scheme_end + 3 && !name.contains(char::is_whitespace) {
        return Ok(name.to_string());
    }
    let names: Vec<&str> = SHORT_NAMES.iter().map(|(s, _)| *s).collect();
    Err(FormatError::invalid(
        "predicate type",
        format!("{name:?} is neither a URI nor one of {}", names.join(", ")),
    ))
}

/// The statement `cosign attest --key` (legacy layout) signs: in-toto v0.1, the subject named
/// by repository, fields in the order of cosign's Go structs.
pub fn legacy_statement(
    repository: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: &serde_json::Value,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Subject<'a> {
        name: &'a str,
        digest: Sha256<'a>,
    }
    #[derive(Serialize)]
    struct Sha256<'a> {
        sha256: &'a str,
    }
    #[derive(Serialize)]
    struct Legacy<'a> {
        #[serde(rename = "_type")]
        kind: &'a str,
        #[serde(rename = "predicateType")]
        predicate_type: &'a str,
        subject: [Subject<'a>; 1],
        predicate: &'a serde_json::Value,
    }
    super::go_json(&Legacy {
        kind: STATEMENT_V01,
        predicate_type,
        subject: [Subject {
            name: repository,
            digest: Sha256 { sha256: digest.hex() },
        }],
        predicate,
    })
}

/// An attestation as found, before any key is tried: its envelope and the statement it
/// claims to carry (unverified: only used to sort attestations by predicate type).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub envelope: Envelope,
    pub payload: Vec<u8>,
    pub statement: Statement,
}

impl Claimed {
    /// A `.att` layer: one DSSE envelope.
    pub fn from_envelope_json(bytes: &[u8]) -> Result<Self, FormatError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| FormatError::json("DSSE envelope", e))?;
        Self::from_envelope(envelope)
    }

    pub fn from_envelope(envelope: Envelope) -> Result<Self, FormatError> {
        let payload = envelope.payload_bytes()?;
        let statement = Statement::parse(&payload)?;
        Ok(Self {
            envelope,
            payload,
            statement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_uris() {
        assert_eq!(
            predicate_type("slsaprovenance1").unwrap(),
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(
            predicate_type("slsaprovenance").unwrap(),
            "https://slsa.dev/provenance/v0.2"
        );
        assert_eq!(
            predicate_type("https://example.com/p/v1").unwrap(),
            "https://example.com/p/v1"
        );
        assert!(predicate_type("provenance").is_err());
        assert!(predicate_type("https://").is_err());
        assert!(predicate_type("").is_err());
    }

    #[test]
    fn legacy_statement_in_cosign_order() {
        let d = Digest::of(b"img");
        let json = String::from_utf8(legacy_statement(
            "r/x",
            &d,
            "https://slsa.dev/provenance/v1",
            &serde_json::json!({"a": 1}),
        ))
        .unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v1","subject":[{{"name":"r/x","digest":{{"sha256":"{}"}}}}],"predicate":{{"a":1}}}}"#,
                d.hex()
            )
        );
        let parsed = Statement::parse(json.as_bytes()).unwrap();
        assert!(parsed.names_digest(&d));
    }
}
