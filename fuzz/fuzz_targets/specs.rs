//! What users and Git repositories hand the operator, fed arbitrary bytes: TrustSource files
//! (YAML, TrustRoots and KeyRotations validated), the fields the controller reads itself
//! (durations, globs, repository URLs), commit-signing keys and signatures, CA bundles, Sigstore
//! trusted roots and keyless bundles, webhook payloads. No input may panic.
#![no_main]

use countersign::{
    crd::{Glob, parse_duration},
    gitops::{
        read::{Limits, parse_file},
        receiver::repository_keys,
        tls::CaBundle,
        url::RepoUrl,
        verify::{check, parse_allowed_signers},
    },
    sigstore::{Artifact, TlogPolicy, TrustedRoot, has_tlog_entry, is_keyless_bundle},
};
use libfuzzer_sys::fuzz_target;

/// Small limits so that the fuzzer spends its time on structure, not on size.
const LIMITS: Limits = Limits {
    max_file_bytes: 64 << 10,
    max_entries: 100,
    max_objects: 100,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_file("fuzz.yaml", data, LIMITS);
    let _ = TrustedRoot::from_json("fuzz", data);
    let _ = CaBundle::parse(data, "fuzz");
    if let Ok(payload) = serde_json::from_slice(data) {
        let _ = repository_keys(&payload);
    }
    if is_keyless_bundle(data)
        && let Ok(root) = TrustedRoot::public_good()
    {
        // Optional: log entries verified when present, timestamps otherwise (the widest path).
        let _ = root.verify_keyless(data, Artifact::Bytes(b"fuzz"), TlogPolicy::Optional);
    }
    let _ = has_tlog_entry(data);
    // A signature over the rest of the input, checked against the signers its first line allows.
    let (first, rest) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
    if let Ok(text) = std::str::from_utf8(first)
        && let Ok(signers) = parse_allowed_signers(text)
    {
        let _ = check(Some(rest), rest, &signers);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_duration("fuzz", text);
        let _ = RepoUrl::parse(text);
        // The glob's own text as the repository too: matching must stay polynomial.
        if let Some((pattern, repository)) = text.split_once('\n')
            && let Ok(glob) = Glob::new(pattern)
        {
            let _ = glob.matches(repository);
            let _ = glob.matches(pattern);
        }
    }
});
