//! A cosign v2 `.att` layer's intoto entry, from the tests' own log: bound to this envelope,
//! payload and signer, under a log of the root, or `untrusted_log`.

use serde_json::{Value, json};
use x509_cert::der::pem::{LineEnding, encode_string};

use super::*;
use crate::{
    keys::SigningKey,
    sigstore::test_log::{TestLog, intoto_body},
};

const ENVELOPE: &[u8] = br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#;
const PAYLOAD: &[u8] = b"{}";

struct Case {
    log: TestLog,
    key: SigningKey,
}

impl Case {
    fn new() -> Self {
        Self {
            log: TestLog::new(),
            key: SigningKey::generate(),
        }
    }

    fn spki(&self) -> Vec<u8> {
        self.key.public_key().spki_der().to_vec()
    }

    /// The entry cosign v2 would log for [`ENVELOPE`] signed by this key.
    fn body(&self) -> Value {
        intoto_body(ENVELOPE, PAYLOAD, &self.key.public_key().to_pem())
    }

    /// What verifying `entry` against [`ENVELOPE`], [`PAYLOAD`] and `signer` says: the
    /// category of its refusal, or `None`.
    fn verify(
        &self,
        root: &TrustedRoot,
        entry: &str,
        envelope: &[u8],
        signer: LoggedSigner<'_>,
    ) -> Option<&'static str> {
        let logged = Logged {
            envelope,
            payload: PAYLOAD,
            signer,
        };
        root.verify_attestation_entry(entry, &logged)
            .err()
            .map(|e| e.category())
    }

    fn by_key(&self, entry: &str) -> Option<&'static str> {
        self.verify(&self.log.root, entry, ENVELOPE, LoggedSigner::Key(&self.spki()))
    }
}

#[test]
fn an_entry_of_this_envelope_by_this_key_verifies_at_its_integrated_time() {
    let case = Case::new();
    let entry = case.log.entry(&case.body());
    let logged = Logged {
        envelope: ENVELOPE,
        payload: PAYLOAD,
        signer: LoggedSigner::Key(&case.spki()),
    };
    let time = case
        .log
        .root
        .verify_attestation_entry(&entry, &logged)
        .unwrap_or_else(|e| panic!("{e}"));
    let ago = Timestamp::now().as_second() - time.as_second();
    assert!((60..120).contains(&ago), "integrated a minute ago: {time}");
}

/// An entry of the same log, signed, about something else: another envelope (or the same JSON
/// with a byte more), another payload, another key, a certificate where a key was expected.
#[test]
fn an_entry_about_another_envelope_payload_or_signer_is_untrusted_log() {
    let case = Case::new();
    let other_key = SigningKey::generate();
    let pem = case.key.public_key().to_pem();
    let bodies = [
        intoto_body(b"{}", PAYLOAD, &pem),
        intoto_body(&[ENVELOPE, b"\n"].concat(), PAYLOAD, &pem),
        intoto_body(ENVELOPE, b"{\"other\":1}", &pem),
        intoto_body(ENVELOPE, PAYLOAD, &other_key.public_key().to_pem()),
        intoto_body(
            ENVELOPE,
            PAYLOAD,
            &encode_string("CERTIFICATE", LineEnding::LF, &case.spki()).unwrap_or_default(),
        ),
    ];
    for body in bodies {
        let entry = case.log.entry(&body);
        assert_eq!(case.by_key(&entry), Some("untrusted_log"), "{body}");
    }
}

/// A keyless entry names the certificate: the same certificate binds, another does not.
#[test]
fn a_keyless_entry_binds_its_certificate() {
    let case = Case::new();
    let (leaf, other) = (b"leaf certificate DER".to_vec(), b"another certificate".to_vec());
    let pem = encode_string("CERTIFICATE", LineEnding::LF, &leaf).unwrap_or_default();
    let entry = case.log.entry(&intoto_body(ENVELOPE, PAYLOAD, &pem));
    let root = &case.log.root;
    assert_eq!(
        case.verify(root, &entry, ENVELOPE, LoggedSigner::Certificate(&leaf)),
        None
    );
    assert_eq!(
        case.verify(root, &entry, ENVELOPE, LoggedSigner::Certificate(&other)),
        Some("untrusted_log")
    );
    assert_eq!(
        case.verify(root, &entry, ENVELOPE, LoggedSigner::Key(&leaf)),
        Some("untrusted_log"),
        "a certificate is not a key"
    );
}

/// Entries logged before Rekor recorded the payload's hash bind by the envelope and the key.
#[test]
fn an_entry_without_a_payload_hash_binds_by_envelope_and_key() {
    let case = Case::new();
    let mut body = case.body();
    body["spec"]["content"]
        .as_object_mut()
        .map(|c| c.remove("payloadHash"));
    assert_eq!(case.by_key(&case.log.entry(&body)), None);
}

/// The SET changed, the body changed under it, an integrated time it did not sign, a log the
/// root does not list, an entry of another kind: each is `untrusted_log`. An annotation that
/// is not one is `bundle`, as for a `.sig`.
#[test]
fn a_changed_set_an_unknown_log_or_another_kind_is_untrusted_log() {
    let case = Case::new();
    let entry: Value = serde_json::from_str(&case.log.entry(&case.body())).unwrap_or_default();
    let changed = |edit: &dyn Fn(&mut Value)| {
        let mut entry = entry.clone();
        edit(&mut entry);
        case.by_key(&entry.to_string())
    };
    let flip = |text: &str| {
        let mut bytes = B64.decode(text).unwrap_or_default();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        B64.encode(bytes)
    };
    let set = entry["SignedEntryTimestamp"].as_str().unwrap_or_default();
    assert_eq!(
        changed(&|e| e["SignedEntryTimestamp"] = json!(flip(set))),
        Some("untrusted_log")
    );
    let other_body = B64.encode(intoto_body(b"{}", PAYLOAD, &case.key.public_key().to_pem()).to_string());
    assert_eq!(
        changed(&|e| e["Payload"]["body"] = json!(other_body)),
        Some("untrusted_log")
    );
    let time = entry["Payload"]["integratedTime"].as_i64().unwrap_or_default();
    assert_eq!(
        changed(&|e| e["Payload"]["integratedTime"] = json!(time - 1)),
        Some("untrusted_log")
    );
    assert_eq!(
        changed(&|e| e["Payload"]["logID"] = json!("00".repeat(32))),
        Some("untrusted_log")
    );
    let elsewhere = TestLog::new();
    let entry = case.log.entry(&case.body());
    assert_eq!(
        case.verify(&elsewhere.root, &entry, ENVELOPE, LoggedSigner::Key(&case.spki())),
        Some("untrusted_log")
    );
    for (kind, version) in [("intoto", "0.0.2"), ("hashedrekord", "0.0.1"), ("dsse", "0.0.1")] {
        let mut body = case.body();
        body["kind"] = json!(kind);
        body["apiVersion"] = json!(version);
        assert_eq!(
            case.by_key(&case.log.entry(&body)),
            Some("untrusted_log"),
            "{kind} {version}"
        );
    }
    assert_eq!(case.by_key("not JSON"), Some("bundle"));
}
