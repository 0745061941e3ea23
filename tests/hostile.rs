//! The hostile-input corpus (`tests/corpus/<kind>/`, see docs/hostile-inputs.md) through the
//! library's parsers, the CLI's file arguments, and `countersign verify` against a real registry
//! serving each hostile manifest, index, payload and bundle. Every case: no panic, the error
//! category (and the object, field or file) the corpus expects, bounded time, and bounded memory
//! where the case is about size. The operator's side (hostile CRD specs on a real control plane)
//! is in operator_malformed.rs.

mod common;
#[path = "hostile_corpus.rs"]
mod corpus;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::Mutex,
    time::Instant,
};

use common::countersign;
use corpus::{Case, Outcome, TIME_LIMIT};

/// Every kind of the corpus, each read by the parser [`corpus::parse`] names.
const KINDS: &[&str] = &[
    "oci-manifest",
    "oci-index",
    "simple-signing",
    "dsse",
    "bundle",
    "public-key",
    "private-key",
    "docker-config",
    "image-ref",
    "trusted-root",
    "trustroot",
    "keyrotation",
    "trustsource",
    "ca-bundle",
];

/// Held while a test measures this process' memory, or allocates much of it: the measurements
/// are of one case alone.
static MEMORY: Mutex<()> = Mutex::new(());

/// Whether `outcome` is what `case` expects; `None` if it is.
fn mismatch(case: &Case, outcome: &Outcome) -> Option<String> {
    let expected = (case.error.as_str(), case.names.as_deref(), case.field.as_deref());
    let got = (
        outcome.category.as_str(),
        outcome.names.as_deref(),
        outcome.field.as_deref(),
    );
    let document_ok = case.document.is_none() || case.document == outcome.document;
    // `names` and `field` are checked where the corpus states them.
    let ok = expected.0 == got.0
        && (expected.1.is_none() || expected.1 == got.1)
        && (expected.2.is_none() || expected.2 == got.2)
        && document_ok;
    (!ok).then(|| format!("expected {expected:?}, got {got:?}: {}", outcome.message))
}

#[test]
fn every_case_through_the_library_parsers() {
    let mut failures = Vec::new();
    let mut count = 0;
    for kind in KINDS {
        for case in corpus::cases(kind) {
            count += 1;
            let bytes = case.bytes(kind);
            let guard = case
                .max_mib
                .map(|_| MEMORY.lock().unwrap_or_else(|e| e.into_inner()));
            let before = corpus::reset_peak_rss();
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| corpus::parse(kind, &bytes)));
            let elapsed = started.elapsed();
            let grown_mib = corpus::peak_rss().saturating_sub(before) / 1024;
            drop(guard);
            let at = format!("{kind}/{}", case.name);
            println!(
                "{at:45} {:>9} B {:>7.1} ms  +{grown_mib} MiB",
                bytes.len(),
                elapsed.as_secs_f64() * 1e3
            );
            let outcome = match result {
                Ok(o) => o,
                Err(_) => {
                    failures.push(format!("{at}: PANICKED ({})", case.what));
                    continue;
                }
            };
            if let Some(m) = mismatch(&case, &outcome) {
                failures.push(format!("{at} ({}): {m}", case.what));
            }
            if elapsed > TIME_LIMIT {
                failures.push(format!("{at}: took {elapsed:?}"));
            }
            if let Some(max) = case.max_mib
                && grown_mib > max
            {
                failures.push(format!("{at}: grew {grown_mib} MiB, over {max}"));
            }
        }
    }
    assert!(count > 150, "the corpus has {count} cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A registry nothing listens on: a command that gets as far as the network exits 13.
const NOWHERE: &str =
    "127.0.0.1:9/hostile@sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The CLI arguments that read `path` as a case of `kind`, or `None` for kinds no command reads
/// from a file.
fn command_for(kind: &str, path: &str, good_key: &str) -> Option<Vec<String>> {
    let args: Vec<&str> = match kind {
        "public-key" => vec!["verify", "--key", path, NOWHERE],
        "private-key" => vec!["sign", "--key", path, NOWHERE],
        "docker-config" => vec!["verify", "--key", good_key, "--registry-config", path, NOWHERE],
        "trusted-root" => vec![
            "verify",
            "--certificate-identity",
            "someone@example.com",
            "--certificate-oidc-issuer",
            "https://issuer.example",
            "--trusted-root",
            path,
            NOWHERE,
        ],
        _ => return None,
    };
    Some(args.into_iter().map(String::from).collect())
}

#[test]
fn the_cli_names_the_file_of_every_bad_input() {
    countersign_tests::countersign_bin(); // built before anything is timed
    let scratch = countersign_tests::scratch_dir("hostile-cli");
    let good_key = corpus::dir("public-key").join("crlf.pem");
    let good_key = good_key.to_str().expect("utf-8");
    let mut failures = Vec::new();
    for kind in ["public-key", "private-key", "docker-config", "trusted-root"] {
        for case in corpus::cases(kind) {
            // Generated cases are written out; committed ones are read where they are.
            let path = match &case.file {
                Some(file) => corpus::dir(kind).join(file),
                None => {
                    let path = scratch.path().join(format!("{kind}-{}", case.name));
                    std::fs::write(&path, case.bytes(kind)).expect("write case");
                    path
                }
            };
            let path = path.to_str().expect("utf-8 path");
            let args = command_for(kind, path, good_key).expect("a command");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let started = Instant::now();
            let run = countersign(&args);
            let elapsed = started.elapsed();
            let at = format!("{kind}/{}", case.name);
            println!(
                "{at:45} exit {:?} {:>7.1} ms",
                run.code,
                elapsed.as_secs_f64() * 1e3
            );
            let ok = if case.error == "ok" {
                // Accepted: the command got as far as the (absent) registry.
                run.code == Some(13)
            } else {
                run.code == Some(1) && run.stderr.contains(path)
            };
            if !ok || elapsed > TIME_LIMIT {
                failures.push(format!(
                    "{at} ({}): exit {:?} in {elapsed:?}, stderr {}",
                    case.what, run.code, run.stderr
                ));
            }
        }
    }
    for case in corpus::cases("image-ref") {
        let reference = String::from_utf8(case.bytes("image-ref")).expect("utf-8");
        // Valid references would go to the network; a NUL cannot be an argument at all, nor
        // can a megabyte (the kernel's limit for one argument is 128 KiB).
        if case.error == "ok" || reference.contains('\0') || reference.len() > 64 << 10 {
            continue;
        }
        let run = countersign(&["verify", "--key", good_key, &reference]);
        if run.code != Some(1) {
            failures.push(format!(
                "image-ref/{}: exit {:?}: {}",
                case.name, run.code, run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[path = "hostile_registry.rs"]
mod registry_cases;

/// Reads a file of the corpus that is not a case (helpers for the registry tests).
pub fn corpus_file(kind: &str, file: &str) -> Vec<u8> {
    std::fs::read(Path::new(&corpus::dir(kind)).join(file)).expect("corpus file")
}
