//! The committed CRD YAML under `crds/` must be what the Rust types generate: the manifests,
//! Tilt and the integration tests install those files, not the types.

use std::{fs, path::PathBuf};

const REGENERATE: &str = "run `cargo run -p countersign -- crds --write crds/` and commit the result";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let files = match countersign::crd::files() {
        Ok(files) => files,
        Err(e) => panic!("cannot render the CRDs: {e}"),
    };
    let mut stale = Vec::new();
    for file in &files {
        let path = crds_dir().join(&file.name);
        match fs::read_to_string(&path) {
            Ok(committed) if committed == file.contents => {}
            Ok(_) => stale.push(format!("crds/{} is stale", file.name)),
            Err(e) => stale.push(format!("crds/{} cannot be read: {e}", file.name)),
        }
    }
    assert!(stale.is_empty(), "{}; {REGENERATE}", stale.join("; "));
}

#[test]
fn no_leftover_crd_files() {
    let expected: Vec<String> = match countersign::crd::files() {
        Ok(files) => files.into_iter().map(|f| f.name).collect(),
        Err(e) => panic!("cannot render the CRDs: {e}"),
    };
    let entries = match fs::read_dir(crds_dir()) {
        Ok(entries) => entries,
        Err(e) => panic!("cannot list crds/: {e}; {REGENERATE}"),
    };
    // A renamed or removed kind would otherwise keep being installed from an old file.
    let leftovers: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("countersign.dev_") && !expected.contains(name))
        .collect();
    assert!(
        leftovers.is_empty(),
        "crds/ holds files no type generates: {leftovers:?}; delete them and {REGENERATE}"
    );
}

#[test]
fn the_kustomization_lists_every_crd() {
    let kustomization = match fs::read_to_string(crds_dir().join("kustomization.yaml")) {
        Ok(text) => text,
        Err(e) => panic!("cannot read crds/kustomization.yaml: {e}"),
    };
    let files = countersign::crd::files().unwrap_or_default();
    assert!(!files.is_empty());
    for file in files {
        assert!(
            kustomization.contains(&format!("- {}", file.name)),
            "crds/kustomization.yaml does not list {}",
            file.name
        );
    }
}
