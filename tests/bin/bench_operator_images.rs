//! The benchmark's images, pushed and signed in process: one small image per digest, signed in
//! both formats the operator reads.

use std::collections::BTreeMap;

use anyhow::Result;
use countersign::{
    formats::oci::{OCI_CONFIG, OCI_MANIFEST},
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::{RegistryClient, RegistryOptions},
    sign::{SignRequest, sign_bundle, sign_legacy},
};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use super::Args;

/// Pushes and signatures in flight at once while preparing.
const PREPARE_CONCURRENCY: usize = 8;

/// A pushed, signed image.
pub struct Image {
    /// `host/bench/app-N@sha256:…`: what the pods run.
    pub pinned: String,
}

/// Pushes `args.digests` one-layer images and signs them with `key`: even ones as bundle
/// referrers (cosign v3's default), odd ones as `.sig` tags (cosign v2's format).
pub async fn prepare_images(host: &str, args: &Args, key: &SigningKey) -> Result<Vec<Image>> {
    let client = RegistryClient::new(RegistryOptions::default());
    let per_repo = args.per_repo.max(1);
    stream::iter(0..args.digests)
        .map(|i| {
            let client = &client;
            async move {
                let tagged =
                    ImageRef::parse(&format!("{host}/bench/app-{}:v{}", i / per_repo, i % per_repo))?;
                let digest = push_image(client, &tagged, i).await?;
                let image = tagged.at_digest(&digest);
                let request = SignRequest {
                    image: &image,
                    key,
                    annotations: BTreeMap::new(),
                    signature_repository: None,
                };
                if i >= args.digests - args.unsigned {
                    // left unsigned
                } else if i % 2 == 0 {
                    sign_bundle(client, &request).await?;
                } else {
                    sign_legacy(client, &request).await?;
                }
                anyhow::Ok((
                    i,
                    Image {
                        pinned: image.to_string(),
                    },
                ))
            }
        })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .try_collect::<BTreeMap<usize, Image>>()
        .await
        .map(|m| m.into_values().collect())
}

/// One image of one uncompressed layer (a tar holding one small file unique to `i`), pushed in
/// process: a few requests instead of a `crane` process per image.
async fn push_image(client: &RegistryClient, tagged: &ImageRef, i: usize) -> Result<Digest> {
    let layer = tar_of_one_file("app", format!("countersign bench image {i}\n").as_bytes());
    let layer_digest = client.push_blob(tagged, &layer).await?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    }))?;
    let config_digest = client.push_blob(tagged, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    }))?;
    Ok(client.push_manifest(tagged, &manifest, OCI_MANIFEST).await?)
}

/// A ustar archive of one regular file.
fn tar_of_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |offset: usize, field: &[u8]| header[offset..offset + field.len()].copy_from_slice(field);
    put(0, name.as_bytes());
    put(100, b"0000755\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}
