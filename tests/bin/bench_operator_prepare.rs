//! The workloads the operator is benchmarked on: the images pushed and signed, the TrustRoot
//! governing them, one Deployment per image, and every pod Running before the operator starts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use countersign_tests::bench::{create_namespace, progress};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;

use super::{
    Args, BENCH_LABEL,
    images::{Image, prepare_images},
    rotation::Keys,
    trust_root::apply_trust_root,
};

/// Pods listed at once while counting the Running ones.
const PODS_PER_PAGE: u32 = 5000;

/// What the preparation leaves for the measurements.
pub struct Prepared {
    pub images: Vec<Image>,
    /// Pushing and signing every image.
    pub prepare_time: Duration,
    pub deployments: usize,
    /// Of them, those running a signed image.
    pub signed: usize,
    /// `host/bench/**`: the images the TrustRoot governs.
    pub glob: String,
}

/// Pushes and signs the images, applies the TrustRoot with `keys`, creates the Deployments
/// (their pods spread over `nodes`) and waits until every pod runs.
pub async fn prepare(
    client: &Client,
    host: &str,
    nodes: &[String],
    args: &Args,
    keys: &Keys<'_>,
) -> Result<Prepared> {
    let t = Instant::now();
    let images = prepare_images(host, args, keys.ci).await?;
    let prepare_time = t.elapsed();
    progress(&format!(
        "pushed and signed {} images in {:.1}s",
        images.len(),
        prepare_time.as_secs_f64()
    ));
    let glob = format!("{host}/bench/**");
    apply_trust_root(
        client,
        &glob,
        &[("ci", keys.ci), ("spare", keys.spare)],
        args.interval,
    )
    .await?;
    let t = Instant::now();
    let deployments = create_workloads(client, &images, args, nodes).await?;
    wait_pods_running(client, args.pods).await?;
    progress(&format!(
        "{} pods of {} Deployments Running in {:.1}s",
        args.pods,
        deployments,
        t.elapsed().as_secs_f64()
    ));
    Ok(Prepared {
        images,
        prepare_time,
        deployments,
        signed: deployments - args.unsigned,
        glob,
    })
}

/// each pinned to a fake node in turn (`nodeName` in its pod template). Pinned, because the
/// scheduler was the control plane's largest CPU consumer while the pods came up (its default
/// spreading looks at the pods already placed, so each pod costs more as the cluster fills):
/// in a 150,000-pod run it held pod creation to about 1,000 a minute on these 2 cores. The operator
/// reads no scheduling, so what it is measured on is the same.
async fn create_workloads(client: &Client, images: &[Image], args: &Args, nodes: &[String]) -> Result<usize> {
    let n = images.len();
    let per_namespace = args.per_namespace.max(1);
    for ns in 0..n.div_ceil(per_namespace) {
        create_namespace(client, &format!("bench-{ns}")).await?;
    }
    stream::iter(images.iter().enumerate())
        .map(|(i, image)| async move {
            // The first `pods % n` Deployments get one replica more.
            let replicas = args.pods / n + usize::from(i < args.pods % n);
            let name = format!("app-{i}");
            let deployment: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "nodeName": nodes[i % nodes.len()],
                            "containers": [{"name": "app", "image": image.pinned}],
                            "terminationGracePeriodSeconds": 0,
                        },
                    },
                },
            }))?;
            Api::<Deployment>::namespaced(client.clone(), &format!("bench-{}", i / per_namespace))
                .create(&PostParams::default(), &deployment)
                .await
                .with_context(|| format!("create Deployment {name}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(n)
}

/// Waits until `pods` pods are Running (kwok sets the phase and the `imageID` in one step).
async fn wait_pods_running(client: &Client, pods: usize) -> Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    // kwok runs a few dozen pods a second on a busy 2-core machine, fewer as etcd grows (100,000
    // took 40 min): 15 min, and 40 ms per pod more.
    let limit = Duration::from_secs(900) + Duration::from_millis(40) * u32::try_from(pods)?;
    let deadline = Instant::now() + limit;
    let mut last = 0;
    loop {
        let n = count_running(&api).await?;
        if n >= pods {
            return Ok(());
        }
        if n / 1000 != last / 1000 {
            progress(&format!("{n} pods Running"));
        }
        last = n;
        ensure!(
            Instant::now() < deadline,
            "only {n} of {pods} pods Running after {limit:?}"
        );
        // Each look lists every Running pod: less often for large clusters, to leave the API
        // server to kwok.
        tokio::time::sleep(Duration::from_secs(2 + pods as u64 / 5000)).await;
    }
}

/// How many pods are Running, counted a page at a time so that this process holds one page of
/// metadata, not every pod's: listed at once, 150,000 Running pods' metadata took it to 1.8 GiB.
async fn count_running(api: &Api<Pod>) -> Result<usize> {
    let running = ListParams::default()
        .fields("status.phase=Running")
        .limit(PODS_PER_PAGE);
    let mut page = api.list_metadata(&running).await?;
    let mut count = page.items.len();
    while let Some(token) = page.metadata.continue_.filter(|t| !t.is_empty()) {
        page = api.list_metadata(&running.clone().continue_token(&token)).await?;
        count += page.items.len();
    }
    Ok(count)
}
