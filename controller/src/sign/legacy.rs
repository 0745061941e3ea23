//! cosign v2's `.sig` image: one layer per signature.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{SignError, SignRequest, Signed};
use crate::{
    formats::{
        decode_base64, encode_base64, go_json,
        oci::{DOCKER_MANIFEST, Descriptor, Manifest, OCI_CONFIG, OCI_MANIFEST},
        simple_signing::{MEDIA_TYPE, Payload, SIGNATURE_ANNOTATION},
    },
    reference::ImageRef,
    registry::{FetchError, RegistryClient, RegistryError},
};

/// Appends a signature layer to the image's `.sig` tag, as `cosign sign` v2 does.
pub async fn sign_legacy(client: &RegistryClient, request: &SignRequest<'_>) -> Result<Signed, SignError> {
    let image = request.image;
    let digest = super::resolve(client, image).await?;
    let payload = Payload::new(&image.repository_name(), &digest, &request.annotations).to_bytes();
    let repo = request.signature_repo();
    let tag = repo.at_tag(&digest.signature_tag());
    let manifest = existing_signatures(client, &tag).await?;
    let signed = |written| Signed {
        image: image.to_string(),
        digest: digest.clone(),
        signature: tag.to_string(),
        written,
    };
    // cosign's duplicate detector: a layer over the same payload that our key verifies already
    // says what we would say.
    if manifest
        .layers
        .iter()
        .any(|l| is_same_signature(l, &payload, request))
    {
        return Ok(signed(false));
    }
    let signature = request.key.sign(&payload);
    let annotations = [(SIGNATURE_ANNOTATION.to_string(), encode_base64(&signature))].into();
    append_layer(client, repo, &tag, manifest, MEDIA_TYPE, &payload, annotations).await?;
    Ok(signed(true))
}

/// Pushes `blob` and appends it as a layer (with `annotations`) to `manifest`, the image at
/// `tag` (`.sig` or `.att`), with the config go-containerregistry would compute.
pub(super) async fn append_layer(
    client: &RegistryClient,
    repo: &ImageRef,
    tag: &ImageRef,
    mut manifest: Manifest,
    media_type: &str,
    blob: &[u8],
    annotations: BTreeMap<String, String>,
) -> Result<(), SignError> {
    client
        .push_blob(repo, blob)
        .await
        .map_err(|e| SignError::registry(repo, e))?;
    let mut layer = Descriptor::of(media_type, blob);
    layer.annotations = Some(annotations);
    manifest.layers.push(layer);
    let config = signature_image_config(&manifest.layers);
    client
        .push_blob(repo, &config)
        .await
        .map_err(|e| SignError::registry(repo, e))?;
    manifest.config = Descriptor::of(OCI_CONFIG, &config);
    client
        .push_manifest(tag, &manifest.to_bytes(), &manifest.media_type)
        .await
        .map_err(|e| SignError::registry(tag, e))?;
    Ok(())
}

/// The `.sig` image as it is now, or an empty one.
pub(super) async fn existing_signatures(
    client: &RegistryClient,
    tag: &ImageRef,
) -> Result<Manifest, SignError> {
    match client.manifest(tag, &[OCI_MANIFEST, DOCKER_MANIFEST]).await {
        Ok((bytes, _)) => Manifest::parse(&bytes).map_err(|e| SignError::Existing {
            image: tag.to_string(),
            reason: format!("existing signature image is malformed: {e}"),
        }),
        Err(FetchError::Registry(RegistryError::NotFound)) => Ok(Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.to_string(),
            config: Descriptor::of(OCI_CONFIG, b""),
            layers: Vec::new(),
            annotations: None,
            subject: None,
            artifact_type: None,
        }),
        Err(e) => Err(SignError::registry(tag, e)),
    }
}

fn is_same_signature(layer: &Descriptor, payload: &[u8], request: &SignRequest<'_>) -> bool {
    let Some(existing) = layer.annotation(SIGNATURE_ANNOTATION) else {
        return false;
    };
    let same_payload = layer.digest == crate::reference::Digest::of(payload).as_str();
    same_payload
        && decode_base64("signature", existing)
            .is_ok_and(|sig| request.key.public_key().verify(payload, &sig).is_ok())
}

/// go-containerregistry's config for an image built from uncompressed layers: one diff_id and
/// one empty history entry per layer, zero times. Nobody verifies it; matching it keeps our
/// signature images byte-identical to cosign's.
fn signature_image_config(layers: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    struct History {
        created: &'static str,
    }
    #[derive(Serialize)]
    struct RootFs<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        diff_ids: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Config<'a> {
        architecture: &'static str,
        created: &'static str,
        history: Vec<History>,
        os: &'static str,
        rootfs: RootFs<'a>,
        config: serde_json::Map<String, serde_json::Value>,
    }
    const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
    go_json(&Config {
        architecture: "",
        created: ZERO_TIME,
        history: layers.iter().map(|_| History { created: ZERO_TIME }).collect(),
        os: "",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.digest.as_str()).collect(),
        },
        config: serde_json::Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_matches_go_containerregistry() {
        let layer = Descriptor::of(MEDIA_TYPE, b"p");
        let config = String::from_utf8(signature_image_config(std::slice::from_ref(&layer))).unwrap();
        assert_eq!(
            config,
            format!(
                r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
                layer.digest
            )
        );
    }
}
