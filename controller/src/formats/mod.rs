//! The bytes cosign reads and writes, parsed and built without any I/O.
//!
//! Everything here takes untrusted input from a registry, so every parser returns a
//! [`FormatError`] and never panics; the fuzz targets in `fuzz/` hold it to that.

pub mod attestation;
pub mod bundle;
pub mod dsse;
pub mod oci;
pub mod simple_signing;

/// Why some bytes are not what cosign would have written. The message is shown to people as the
/// reason a signature was rejected, so it says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} is not valid JSON: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{what} is not valid base64")]
    Base64 { what: &'static str },
}

impl FormatError {
    pub(crate) fn json(what: &'static str, e: serde_json::Error) -> Self {
        Self::Json {
            what,
            reason: e.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Base64 (standard alphabet, padded) as cosign writes it; decoding is lenient about a missing
/// padding since some writers omit it.
pub(crate) fn decode_base64(what: &'static str, s: &str) -> Result<Vec<u8>, FormatError> {
    use base64::{Engine, prelude::*};
    BASE64_STANDARD
        .decode(s.trim())
        .or_else(|_| BASE64_STANDARD_NO_PAD.decode(s.trim()))
        .map_err(|_| FormatError::Base64 { what })
}

pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::{Engine, prelude::BASE64_STANDARD};
    BASE64_STANDARD.encode(bytes)
}

/// Serialises like Go's `encoding/json`: compact, and with `<`, `>` and `&` escaped. Field order
/// is the struct's, which callers lay out in Go's order, so legacy payloads and manifests are
/// byte-identical to cosign's.
pub(crate) fn go_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_string(value).unwrap_or_default();
    // Outside strings JSON never contains these characters, so escaping them everywhere only
    // touches string contents, exactly as Go's HTML-safe encoder does.
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}
