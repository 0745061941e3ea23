//! The TrustRoot the benchmark governs its images with, and the sweeps it reports.

use anyhow::{Context, Result};
use countersign::{crd::TrustRoot, keys::SigningKey};
use countersign_tests::bench::{MANAGER, OwnRequests};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

pub const TRUST_ROOT: &str = "bench";

/// The TrustRoot governing every benchmark image, with `keys` (threshold 1).
pub async fn apply_trust_root(
    client: &Client,
    glob: &str,
    keys: &[(&str, &SigningKey)],
    interval: u64,
) -> Result<()> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(name, key)| json!({"name": name, "publicKey": key.public_key().to_pem()}))
        .collect();
    let object = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": TRUST_ROOT},
        "spec": {
            "images": [glob],
            "keys": keys,
            "threshold": 1,
            "reverifyInterval": format!("{interval}s"),
        },
    });
    Api::<TrustRoot>::all(client.clone())
        .patch(
            TRUST_ROOT,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .context("apply the TrustRoot")?;
    Ok(())
}

pub async fn get_trust_root(client: &Client) -> Result<TrustRoot> {
    Ok(Api::<TrustRoot>::all(client.clone()).get(TRUST_ROOT).await?)
}

/// The TrustRoot's `status.lastSweep`.
pub async fn last_sweep(client: &Client, own: &mut OwnRequests) -> Result<Sweep> {
    own.count(1);
    let root = get_trust_root(client).await?;
    let sweep = root
        .status
        .and_then(|s| s.last_sweep)
        .context("the TrustRoot has no status.lastSweep")?;
    Ok(Sweep {
        digests: i64::from(sweep.digests),
        duration_ms: sweep.duration_ms,
    })
}

#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub digests: i64,
    pub duration_ms: i64,
}
