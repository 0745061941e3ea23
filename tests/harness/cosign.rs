//! The real cosign CLIs, run offline (no TUF, no Rekor) in a scratch HOME.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::{peer_path, scratch_dir};

pub const PASSWORD: &str = "test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignVersion {
    V3,
    V2,
}

pub struct Cosign {
    pub version: CosignVersion,
    bin: PathBuf,
    home: tempfile::TempDir,
}

/// What a cosign run said.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            success: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cosign {
    pub fn new(version: CosignVersion) -> Cosign {
        let bin = peer_path(match version {
            CosignVersion::V3 => "cosign3",
            CosignVersion::V2 => "cosign2",
        });
        Cosign {
            version,
            bin,
            home: scratch_dir("cosign-home"),
        }
    }

    pub fn binary(&self) -> &Path {
        &self.bin
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("HOME", self.home.path())
            .env("TUF_ROOT", self.home.path().join("tuf"))
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("COSIGN_YES", "true")
            .env_remove("COSIGN_REPOSITORY")
            .env_remove("DOCKER_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(&[], args)
    }

    pub fn run_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        self.command()
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()))
            .into()
    }

    /// `cosign generate-key-pair` into `dir`: returns (private, public).
    pub fn generate_key_pair(&self, dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
        let run = self
            .command()
            .current_dir(dir)
            .args(["generate-key-pair", "--output-key-prefix", prefix])
            .output()
            .expect("cosign generate-key-pair");
        assert!(
            run.status.success(),
            "cosign generate-key-pair: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        (
            dir.join(format!("{prefix}.key")),
            dir.join(format!("{prefix}.pub")),
        )
    }

    /// Signs as this cosign does by default (v3: bundle referrer; v2: `.sig`), or the legacy
    /// `.sig` form with v3 (`--new-bundle-format=false`).
    pub fn sign(&self, key: &Path, image: &str, legacy: bool) -> Run {
        self.sign_with_env(&[], key, image, legacy)
    }

    /// [`Cosign::sign`] with extra environment (`DOCKER_CONFIG`, `COSIGN_REPOSITORY`, …).
    pub fn sign_with_env(&self, env: &[(&str, &str)], key: &Path, image: &str, legacy: bool) -> Run {
        let key = key.to_str().expect("utf-8 path");
        let mut args = vec!["sign", "--key", key, "--tlog-upload=false", "-y"];
        if self.version == CosignVersion::V3 {
            args.push("--use-signing-config=false");
            if legacy {
                args.push("--new-bundle-format=false");
            }
        }
        args.push(image);
        self.run_with_env(env, &args)
    }

    /// `cosign attest --key` offline (no transparency log, and for v3 no signing config) with
    /// the predicate in the file `predicate` of type `kind` (`slsaprovenance1`, a URI, …): v3
    /// attaches a bundle referrer, v2 (or v3 with `legacy`) a `.att` layer.
    pub fn attest(&self, key: &Path, predicate: &Path, kind: &str, image: &str, legacy: bool) -> Run {
        let key = key.to_str().expect("utf-8 path");
        let predicate = predicate.to_str().expect("utf-8 path");
        let mut args = vec![
            "attest",
            "--key",
            key,
            "--predicate",
            predicate,
            "--type",
            kind,
            "--tlog-upload=false",
            "-y",
        ];
        if self.version == CosignVersion::V3 {
            args.push("--use-signing-config=false");
            if legacy {
                args.push("--new-bundle-format=false");
            }
        }
        args.push(image);
        self.run(&args)
    }

    /// `cosign verify --key … --insecure-ignore-tlog` (offline).
    pub fn verify(&self, public_key: &Path, image: &str) -> Run {
        let key = public_key.to_str().expect("utf-8 path");
        self.run(&["verify", "--key", key, "--insecure-ignore-tlog=true", image])
    }
}

/// A SLSA provenance v1 predicate built from `git_ref` (its `externalParameters.ref`), for
/// policies to pass or fail on. Both halves are there: cosign v2 checks that they are.
pub fn slsa_provenance_v1(git_ref: &str) -> String {
    serde_json::json!({
        "buildDefinition": {"buildType": "https://example.com/ci/v1", "externalParameters": {"ref": git_ref}},
        "runDetails": {"builder": {"id": "https://example.com/builder"}},
    })
    .to_string()
}
