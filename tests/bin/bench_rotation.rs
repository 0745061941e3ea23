//! The rotation phase of the operator benchmark (`--rotation`): on the loaded cluster, after the
//! warm sweeps, rotate the TrustRoot from `ci` to a new key `next` and re-sign everything.
//!
//! 1. `next` is declared in the TrustRoot and a KeyRotation `ci` → `next` opens now, with
//!    `retireEarly` (so it completes the moment the gate is met);
//! 2. `countersign rotation resign` (the release binary, as an SRE runs it) re-signs every running
//!    digest: its wall time gives the resign throughput;
//! 3. the time from its last signature pushed (the process exiting) to the KeyRotation's phase
//!    `Completed`, polled every 50 ms;
//! 4. throughout, the verdict watch records the most Deployments ever annotated anything but
//!    Verified: the goal is none, ever.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use countersign::{crd::KeyRotation, keys::SigningKey};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::sync::watch;

use super::{MANAGER, TRUST_ROOT, Verdicts, apply_trust_root, progress};

const ROTATION: &str = "bench-rotation";
const PASSWORD: &str = "bench";
/// How often the KeyRotation's phase is read while waiting for it.
const PHASE_POLL: Duration = Duration::from_millis(50);

/// What the rotation phase measured.
pub struct Rotation {
    /// `countersign rotation resign`'s wall time, and its summary line.
    pub resign: Duration,
    pub summary: String,
    /// From the last signature pushed (resign exited) to the phase `Completed`.
    pub completed_after: Duration,
    /// From the KeyRotation created to `Completed`.
    pub total: Duration,
    /// The most Deployments annotated something other than Verified at any moment.
    pub worst_not_verified: usize,
}

/// The keys the TrustRoot declares before the rotation.
pub struct Keys<'a> {
    pub ci: &'a SigningKey,
    pub spare: &'a SigningKey,
}

pub async fn rotate(
    client: &Client,
    countersign: &Path,
    kubeconfig: &Path,
    dir: &Path,
    (glob, interval): (&str, u64),
    keys: Keys<'_>,
    verdicts: &watch::Receiver<Verdicts>,
) -> Result<Rotation> {
    let next = SigningKey::generate();
    let key_file = dir.join("next.key");
    std::fs::write(&key_file, next.to_encrypted_pem(PASSWORD.as_bytes())?).context("writing next.key")?;
    let worst = watch_worst(verdicts.clone());
    apply_trust_root(
        client,
        glob,
        &[("ci", keys.ci), ("spare", keys.spare), ("next", &next)],
        interval,
    )
    .await?;
    let started = Instant::now();
    let api: Api<KeyRotation> = Api::all(client.clone());
    let rotation = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "KeyRotation",
        "metadata": {"name": ROTATION},
        "spec": {
            "trustRootRef": TRUST_ROOT, "fromKey": "ci", "toKey": "next",
            "window": {"start": jiff::Timestamp::now().to_string(), "duration": "1h"},
            "retirement": "WhenResigned", "retireEarly": true,
        },
    });
    api.patch(
        ROTATION,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&rotation),
    )
    .await
    .context("apply the KeyRotation")?;
    wait_phase(&api, "DualAcceptance").await?;
    progress("rotation window open; re-signing every running digest");

    let t = Instant::now();
    let (binary, kubeconfig, key) = (
        countersign.to_path_buf(),
        kubeconfig.to_path_buf(),
        key_file.clone(),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args(["rotation", "resign", ROTATION, "--key"])
            .arg(key)
            .args(["--concurrency", "16"])
            .env("KUBECONFIG", kubeconfig)
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
    })
    .await??;
    let resign = t.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "rotation resign failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default().to_string();
    progress(&format!("resign: {summary}"));

    let last_signed = Instant::now();
    wait_phase(&api, "Completed").await?;
    let completed_after = last_signed.elapsed();
    let total = started.elapsed();
    progress(&format!(
        "last re-sign → Completed in {:.2}s",
        completed_after.as_secs_f64()
    ));
    Ok(Rotation {
        resign,
        summary,
        completed_after,
        total,
        worst_not_verified: worst.load(Ordering::Relaxed),
    })
}

/// Records, until the receiver's sender goes, the most Deployments not annotated Verified.
fn watch_worst(mut rx: watch::Receiver<Verdicts>) -> Arc<AtomicUsize> {
    let worst = Arc::new(AtomicUsize::new(0));
    let seen = worst.clone();
    tokio::spawn(async move {
        loop {
            let c = *rx.borrow_and_update();
            seen.fetch_max(c.failed + c.unsigned + c.other, Ordering::Relaxed);
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    worst
}

async fn wait_phase(api: &Api<KeyRotation>, phase: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = api.get(ROTATION).await?;
        let now = r.status.as_ref().and_then(|s| s.phase);
        if now.map(countersign::rotation::status::phase_name) == Some(phase) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "KeyRotation {ROTATION} not {phase} after 5 min: {:?}",
            r.status
        );
        tokio::time::sleep(PHASE_POLL).await;
    }
}
