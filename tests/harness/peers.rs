//! The real programs `e2e/peers.sh` builds, found where it caches them, and waited for while it
//! is still building them.
//!
//! A cold `e2e/test.sh` starts the tests as soon as the Rust build is done, beside the peers'
//! build (docs/ci.md), and a test whose peer is not built yet waits here for it. It says so with
//! `COUNTERSIGN_PEERS_BUILDING`, a file that exists until the build ends, in success or failure,
//! so that a test never waits for a peer that will not come. Each peer's files appear whole
//! and last of its build (`e2e/peers.sh` renames them into place), so one that exists is complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The path of a peer binary built by `e2e/peers.sh` (`cosign3`, `cosign2`, `crane`,
/// `ggcr-referrers`, `distribution`, `etcd`, `kwok`, `kube-apiserver`, …). Taken from
/// `COUNTERSIGN_PEER_<NAME>` when set, otherwise asked of the script. Waits while the peers are
/// still being built, then panics with the command to run when the peer has not been built: a
/// test must never silently skip its real peer.
pub fn peer_path(name: &str) -> PathBuf {
    let path = expected_path(name);
    if !path.exists() {
        wait_while_building(name, &path);
    }
    assert!(
        path.is_file(),
        "peer {name} not built at {}: run e2e/peers.sh",
        path.display()
    );
    path
}

fn expected_path(name: &str) -> PathBuf {
    let var = format!("COUNTERSIGN_PEER_{}", name.to_uppercase().replace('-', "_"));
    match std::env::var_os(&var) {
        Some(p) => PathBuf::from(p),
        None => {
            let out = std::process::Command::new("bash")
                .arg(super::repo_root().join("e2e/peers.sh"))
                .args(["path", name])
                .output()
                .expect("run e2e/peers.sh");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    }
}

/// Blocks until `path` exists or the peers' build has ended. A blocking sleep, also inside a
/// test's runtime: the test cannot go on without its peer anyway.
fn wait_while_building(name: &str, path: &Path) {
    let Some(building) = std::env::var_os("COUNTERSIGN_PEERS_BUILDING").map(PathBuf::from) else {
        return;
    };
    if !building.exists() {
        return;
    }
    let _waiting = Waiting::mark(name);
    let started = Instant::now();
    eprintln!("waiting for peer {name}: e2e/peers.sh is still building it");
    while building.exists() && !path.exists() {
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("peer {name}: waited {:.0?}", started.elapsed());
}

/// A file in `COUNTERSIGN_TEST_WAITING` (a folder per test executable, made by
/// `e2e/run-tests.sh`) while a test waits for a peer: the executable is then not using the machine,
/// and another may start in its place.
struct Waiting(Option<PathBuf>);

impl Waiting {
    fn mark(peer: &str) -> Waiting {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let file = std::env::var_os("COUNTERSIGN_TEST_WAITING").map(|dir| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            PathBuf::from(dir).join(format!("{peer}.{}.{n}", std::process::id()))
        });
        if let Some(file) = &file {
            // Best effort: without the mark, run-tests.sh only starts fewer executables at once.
            let _ = std::fs::write(file, b"");
        }
        Waiting(file)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}
