//! cosign v2 `.att` attestations logged in the Rekor v1: real cosign v2 `attest` uploads each
//! envelope as an intoto entry, its SET the `.att` layer's `dev.sigstore.cosign/bundle`
//! annotation. `countersign verify-attestation --tlog required` counts them by it, key-signed and
//! keyless (no TSA: the SET's integrated time is the certificate's only trusted time), and so does
//! the operator under a TrustRoot with `tlog: Required`. Real cosign v2 `verify-attestation`
//! accepts the same. An entry changed or of another `.att` is `untrusted_log`; none is
//! `no_tlog_entry`.

use std::{path::PathBuf, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use countersign_tests::{cluster::LocalCluster, cosign::slsa_provenance_v1};

use super::*;
use crate::operator_common::{DEPLOYMENT, Operator, create, deployment, key, trust_root, wait_verdict};

const SLSA1: &str = "slsaprovenance1";

/// Images attested with cosign v2, logged in the Rekor v1.
pub struct Attested {
    /// Signed and attested by key (a dsse entry, cosign v2's default).
    pub by_key: String,
    /// Signed and attested keylessly, not timestamped.
    pub keyless: String,
    /// Attested by key as an intoto entry (`--rekor-entry-type intoto`).
    pub intoto: String,
}

/// Pushes images to one repository and signs or attests them with cosign v2, logged in the
/// Rekor v1: by key, or keylessly with the stack's Fulcio and no TSA.
pub struct Attester<'a> {
    rekor: &'a RekorV1,
    stack: &'a SigstoreStack,
    keys: &'a Keys,
    token: &'a str,
    repo: String,
    /// A SLSA provenance v1 predicate.
    predicate: PathBuf,
}

impl<'a> Attester<'a> {
    pub fn new(
        rekor: &'a RekorV1,
        stack: &'a SigstoreStack,
        keys: &'a Keys,
        token: &'a str,
        repo: String,
    ) -> Self {
        let predicate = stack.dir().join("provenance-rekor-v1.json");
        std::fs::write(&predicate, slsa_provenance_v1("refs/heads/main")).expect("write the predicate");
        Self {
            rekor,
            stack,
            keys,
            token,
            repo,
            predicate,
        }
    }

    /// A new image `tag`, attested (`keyless` or by key): the image by digest.
    pub fn attest(&self, tag: &str, keyless: bool) -> String {
        self.attest_with(tag, keyless, &[])
    }

    /// [`Self::attest`] with `extra` arguments to `cosign attest --key`.
    pub fn attest_with(&self, tag: &str, keyless: bool, extra: &[&str]) -> String {
        let digest = push_image(&format!("{}:{tag}", self.repo), tag);
        let image = format!("{}@{digest}", self.repo);
        let cosign = &self.keys.cosign2;
        let (rekor, predicate) = (self.rekor, self.predicate.as_path());
        let run = match keyless {
            true => rekor.attest_v2_keyless(self.stack, cosign, self.token, predicate, SLSA1, &image),
            false => rekor.attest_v2_with_key(cosign, &self.keys.private, (predicate, SLSA1), extra, &image),
        };
        assert!(run.success, "attesting {tag}: {}", run.stderr);
        image
    }

    /// [`Self::attest`], and signed the same way: what a TrustRoot with attestations requires.
    pub fn sign_and_attest(&self, tag: &str, keyless: bool) -> String {
        let image = self.attest(tag, keyless);
        let cosign = &self.keys.cosign2;
        let run = match keyless {
            true => self.rekor.sign_v2_keyless(self.stack, cosign, self.token, &image),
            false => self.rekor.sign_v2_with_key(cosign, &self.keys.private, &image),
        };
        assert!(run.success, "signing {tag}: {}", run.stderr);
        image
    }
}

/// What `countersign verify-attestation` answered: exit code, the requirement's state and its
/// `rejectedCategory`.
type Answer = (Option<i32>, String, Option<String>);

fn answer(run: &Run) -> Answer {
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("verify-attestation JSON ({e}): {run:?}"));
    let first = &json["attestations"][0];
    (
        run.code,
        first["state"].as_str().unwrap_or("none").to_string(),
        first["rejectedCategory"].as_str().map(str::to_string),
    )
}

fn verified() -> Answer {
    (Some(0), "verified".into(), None)
}

fn refused(category: &str) -> Answer {
    (Some(12), "badSignature".into(), Some(category.into()))
}

/// `countersign verify-attestation --type slsaprovenance1` against `root`: with the identity
/// flags and `extra` when `keyless`, else with the key and the log required.
fn verify_attestation(trust: &Trust<'_>, root: &str, keyless: bool, extra: &[&str], image: &str) -> Answer {
    let extra = [&["--type", SLSA1], extra].concat();
    let run = match keyless {
        true => trust.keyless_command("verify-attestation", root, &extra, image),
        false => trust.key_command("verify-attestation", root, &extra, image),
    };
    answer(&run)
}

/// Each is logged in this Rekor as the kind cosign v2 was asked for, and counts by its SET,
/// against the root that lists the Rekor v1 and not against one without it; the keyless one by
/// default (keyless needs the log) and with the log required. Real cosign v2
/// `verify-attestation` (`cosign`: offline, by the SET) accepts them.
pub async fn verdicts(trust: &Trust<'_>, rekor: &RekorV1, attested: &Attested, cosign: &CosignVerify<'_>) {
    for (image, kind) in [
        (&attested.by_key, "dsse"),
        (&attested.keyless, "dsse"),
        (&attested.intoto, "intoto"),
    ] {
        let entry: Value = serde_json::from_str(&entry_of(image).await).expect("the SET annotation is JSON");
        let body = entry["Payload"]["body"].as_str().expect("a body");
        let body: Value = serde_json::from_slice(&B64.decode(body).expect("base64")).expect("JSON");
        let logged = (entry["Payload"]["logID"].as_str(), body["kind"].as_str());
        assert_eq!(
            logged,
            (Some(rekor.log_id().as_str()), Some(kind)),
            "{image}: {entry}"
        );
    }
    let (root, without_log) = (trust.root, trust.root_without_log);
    let required: &[&str] = &["--tlog", "required"];
    let cases: [(&str, &str, bool, &[&str], Answer); 6] = [
        (&attested.by_key, root, false, &[], verified()),
        (&attested.intoto, root, false, &[], verified()),
        (
            &attested.by_key,
            without_log,
            false,
            &[],
            refused("untrusted_log"),
        ),
        (&attested.keyless, root, true, &[], verified()),
        (&attested.keyless, root, true, required, verified()),
        (
            &attested.keyless,
            without_log,
            true,
            &[],
            refused("untrusted_log"),
        ),
    ];
    for (image, root, keyless, extra, expected) in cases {
        let got = verify_attestation(trust, root, keyless, extra, image);
        assert_eq!(
            got, expected,
            "{image} keyless={keyless} {extra:?} against {root}"
        );
    }
    for image in [&attested.by_key, &attested.intoto] {
        let run = cosign(&["--key", trust.public_key, "--type", SLSA1, image]);
        assert!(
            run.success,
            "cosign v2 verifies its key-signed, logged .att: {run:?}"
        );
    }
    let identity = [
        "--certificate-identity",
        trust.identity,
        "--certificate-oidc-issuer",
        trust.issuer,
        "--type",
        SLSA1,
        &attested.keyless,
    ];
    let run = cosign(&identity);
    assert!(
        run.success,
        "cosign v2 verifies its keyless, logged .att: {run:?}"
    );
}

/// The `.att` SET annotation of `image`, as cosign wrote it.
async fn entry_of(image: &str) -> String {
    let (manifest, _) = layer_manifest(image, Layer::Att).await;
    let entry = &manifest["layers"][0]["annotations"][REKOR_BUNDLE_ANNOTATION];
    entry
        .as_str()
        .unwrap_or_else(|| panic!("a SET annotation: {manifest}"))
        .to_string()
}

/// `entry` (an annotation's JSON) changed by `edit`.
fn edited(entry: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut entry: Value = serde_json::from_str(entry).expect("the SET annotation is JSON");
    edit(&mut entry);
    entry.to_string()
}

/// Re-pushes `image`'s `.att` manifest with the SET annotation `entry`, or without one.
async fn set_entry(image: &str, entry: Option<&str>) {
    edit_layer(image, Layer::Att, |annotations| {
        let annotations = annotations.as_object_mut().expect("annotations");
        match entry {
            Some(entry) => annotations.insert(REKOR_BUNDLE_ANNOTATION.into(), json!(entry)),
            None => annotations.remove(REKOR_BUNDLE_ANNOTATION),
        };
    })
    .await;
}

/// One key-signed and one keyless `.att` of their own image, their SET annotation replaced in
/// turn: one byte of the SET flipped, the body of another image's `.att` under this SET, the
/// whole (valid) entry of another image's `.att`: each `untrusted_log`; the annotation removed:
/// `no_tlog_entry` when the log is needed, `no_trusted_time` for the keyless one when it is not
/// (no TSA timestamp either). Before, each verifies as attested.
pub async fn tampered(trust: &Trust<'_>, attester: &Attester<'_>, attested: &Attested) {
    let root = trust.root;
    for keyless in [false, true] {
        let image = attester.attest(
            if keyless {
                "att-keyless-tampered"
            } else {
                "att-key-tampered"
            },
            keyless,
        );
        let other = entry_of(if keyless {
            &attested.keyless
        } else {
            &attested.by_key
        })
        .await;
        let own = entry_of(&image).await;
        let check = |extra: &[&str]| verify_attestation(trust, root, keyless, extra, &image);
        assert_eq!(check(&[]), verified(), "{image} as attested");
        let flipped = edited(&own, |e| {
            let set = e["SignedEntryTimestamp"].as_str().expect("a SET").to_string();
            e["SignedEntryTimestamp"] = json!(flip_one_byte(&set));
        });
        let other_body = edited(&own, |e| e["Payload"]["body"] = other_body_of(&other));
        for (what, entry) in [
            ("flipped SET", flipped),
            ("another body", other_body),
            ("another entry", other.clone()),
        ] {
            set_entry(&image, Some(&entry)).await;
            assert_eq!(check(&[]), refused("untrusted_log"), "{image}: {what}");
        }
        set_entry(&image, None).await;
        assert_eq!(check(&[]), refused("no_tlog_entry"), "{image} unlogged");
        if keyless {
            let optional = ["--tlog", "optional"];
            assert_eq!(check(&optional), refused("no_trusted_time"), "{image} unlogged");
        }
    }
}

/// The body of the entry `entry` (an annotation's JSON).
fn other_body_of(entry: &str) -> Value {
    let entry: Value = serde_json::from_str(entry).expect("the SET annotation is JSON");
    entry["Payload"]["body"].clone()
}

/// The operator counts both under a TrustRoot that requires the log (`tlog: Required`, the key
/// and the identity, the root with the Rekor v1 from a ConfigMap) and the SLSA provenance: their
/// Deployments are Verified.
pub async fn operator_counts(cluster: &LocalCluster, trust: &Trust<'_>, keys: &Keys, attested: &Attested) {
    let client = cluster.client();
    let root = std::fs::read_to_string(trust.root).expect("trusted root");
    create(
        &client,
        "v1",
        "ConfigMap",
        Some(NS),
        json!({"metadata": {"name": "rekor-v1-root"}, "data": {"trusted_root.json": root}}),
    )
    .await;
    let repo = attested.by_key.split_once('@').expect("a digest reference").0;
    trust_root(
        &client,
        "logged-attestations",
        json!({
            "images": [repo],
            "keys": [key("ci", &keys.public)],
            "identities": [{"name": "builder", "subject": trust.identity, "issuer": trust.issuer}],
            "trustedRoot": {"configMapRef": {"name": "rekor-v1-root", "namespace": NS}},
            "tlog": "Required",
            "attestations": [{"predicateType": SLSA1}],
        }),
    )
    .await
    .expect("TrustRoot logged-attestations");
    let operator = Operator::start(cluster, "rekor-v1");
    let workloads = [
        ("att-key", "key", &attested.by_key, "ci"),
        ("att-keyless", "keyless", &attested.keyless, "builder"),
    ];
    for (name, tag, image, _) in workloads {
        let digest = image.split_once('@').expect("a digest reference").1;
        deployment(&client, NS, name, &format!("{repo}:{tag}"), Some(digest)).await;
    }
    for (name, _, _, signer) in workloads {
        let a = wait_verdict(&client, DEPLOYMENT, NS, name, "Verified", Duration::from_secs(60)).await;
        assert_eq!(
            a["verifiedBy"],
            format!("logged-attestations/{signer}"),
            "{name}: {a:?}"
        );
    }
    operator.stop().await;
}
