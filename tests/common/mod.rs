//! Helpers shared by the integration test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use countersign_tests::{
    cosign::{self, Cosign, CosignVersion, Run},
    countersign_bin, scratch_dir,
};

/// One key pair made by the real cosign v3, and both cosigns ready to use it.
pub struct Keys {
    pub private: PathBuf,
    pub public: PathBuf,
    pub cosign3: Cosign,
    pub cosign2: Cosign,
    _dir: tempfile::TempDir,
}

impl Keys {
    pub fn generate() -> Keys {
        Self::generate_named("cosign")
    }

    pub fn generate_named(prefix: &str) -> Keys {
        let dir = scratch_dir("keys");
        let cosign3 = Cosign::new(CosignVersion::V3);
        let (private, public) = cosign3.generate_key_pair(dir.path(), prefix);
        Keys {
            private,
            public,
            cosign3,
            cosign2: Cosign::new(CosignVersion::V2),
            _dir: dir,
        }
    }

    /// The cosign of `version`, ready to use this key pair.
    pub fn cosign(&self, version: CosignVersion) -> &Cosign {
        match version {
            CosignVersion::V3 => &self.cosign3,
            CosignVersion::V2 => &self.cosign2,
        }
    }

    /// `cosign attest` of `version` (v3: a bundle referrer; v2: a `.att` layer), offline, with
    /// this key; panics naming the image when cosign fails.
    pub fn attest(&self, version: CosignVersion, predicate: &Path, kind: &str, image: &str) {
        let run = self
            .cosign(version)
            .attest(&self.private, predicate, kind, image, false);
        assert!(run.success, "cosign attest {image}: {}", run.stderr);
    }

    /// `cosign sign` (v3) of `image` with this key, logged in to its registry through the
    /// `config.json` in `docker_config_dir`; panics naming the image when cosign fails.
    pub fn sign_as(&self, docker_config_dir: &Path, image: &str) {
        let dir = docker_config_dir.to_str().expect("utf-8 path");
        let run = self
            .cosign3
            .sign_with_env(&[("DOCKER_CONFIG", dir)], &self.private, image, false);
        assert!(run.success, "cosign sign {image}: {}", run.stderr);
    }

    pub fn private_str(&self) -> &str {
        self.private.to_str().expect("utf-8 path")
    }

    pub fn public_str(&self) -> &str {
        self.public.to_str().expect("utf-8 path")
    }
}

/// Runs the countersign binary (password from COSIGN_PASSWORD, as cosign).
pub fn countersign(args: &[&str]) -> Run {
    countersign_in(Path::new("."), args)
}

pub fn countersign_in(dir: &Path, args: &[&str]) -> Run {
    std::process::Command::new(countersign_bin())
        .current_dir(dir)
        .args(args)
        .env("COSIGN_PASSWORD", cosign::PASSWORD)
        .env_remove("COSIGN_REPOSITORY")
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("running countersign")
        .into()
}
