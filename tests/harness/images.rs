//! Test images pushed with the real crane.

use std::{path::Path, process::Command};

use crate::{peer_path, scratch_dir};

/// Pushes a one-layer image with unique content to `reference` (`host/repo:tag`) and returns its
/// digest, so every test image has a digest of its own.
pub fn push_image(reference: &str, content: &str) -> String {
    push_image_as(None, reference, content)
}

/// An image pushed as `<repo>:v1` by [`Pushed::push`]: the references a workload runs it by.
pub struct Pushed {
    /// `<host>/<path>`.
    pub repo: String,
    pub digest: String,
}

impl Pushed {
    /// Pushes a one-layer image of `content` as `<repo>:v1` (see [`push_image`]).
    pub fn push(repo: &str, content: &str) -> Self {
        let digest = push_image(&format!("{repo}:v1"), content);
        Pushed {
            repo: repo.to_owned(),
            digest,
        }
    }

    /// `<repo>@<digest>`.
    pub fn pinned(&self) -> String {
        format!("{}@{}", self.repo, self.digest)
    }

    /// `<repo>:v1`.
    pub fn tagged(&self) -> String {
        format!("{}:v1", self.repo)
    }
}

/// [`push_image`] logged in through a docker config folder (`DOCKER_CONFIG`), for private
/// registries.
pub fn push_image_as(docker_config: Option<&Path>, reference: &str, content: &str) -> String {
    let dir = scratch_dir("image");
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, content).expect("layer file");
    let tar = dir.path().join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.path())
        .arg("hello.txt")
        .status()
        .expect("tar");
    assert!(status.success(), "tar failed");
    crane_as(
        docker_config,
        &["append", "-f", tar.to_str().expect("utf-8"), "-t", reference],
    );
    crane_as(docker_config, &["digest", reference]).trim().to_string()
}

/// A multi-arch index of two fresh images at `reference`; returns the index digest.
pub fn push_index(reference: &str, content: &str) -> String {
    let amd = push_image(&format!("{reference}-amd64"), &format!("{content}-amd64"));
    let arm = push_image(&format!("{reference}-arm64"), &format!("{content}-arm64"));
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    crane(&[
        "index",
        "append",
        "-m",
        &format!("{repo}@{amd}"),
        "-m",
        &format!("{repo}@{arm}"),
        "-t",
        reference,
    ]);
    crane(&["digest", reference]).trim().to_string()
}

/// Runs the real crane and returns its stdout; panics with its stderr on failure.
pub fn crane(args: &[&str]) -> String {
    crane_as(None, args)
}

/// [`crane`] with `DOCKER_CONFIG` pointing at a folder holding a `config.json`.
pub fn crane_as(docker_config: Option<&Path>, args: &[&str]) -> String {
    let mut command = Command::new(peer_path("crane"));
    if let Some(dir) = docker_config {
        command.env("DOCKER_CONFIG", dir);
    }
    let out = command.args(args).output().expect("running crane");
    assert!(
        out.status.success(),
        "crane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
