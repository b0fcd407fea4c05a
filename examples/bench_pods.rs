//! Pod start-up latency of `kube server`'s node against the raw CRI floor, on the
//! same containerd in the same run (issue 5's benchmark).
//!
//! ```text
//! cargo run --release --example bench_pods -- --kubeconfig K --cri-socket S --server-pid PID
//! ```
//!
//! `scripts/bench-pods` starts a fresh server with its node and runs this against it.
//! For each batch size (1, 10 and 50 pods created at once):
//! - `floor`: the same busybox pod driven straight through CRI, as a kubelet must at
//!   least do: `RunPodSandbox`, `CreateContainer`, `StartContainer`, all pods
//!   concurrently; latency from the batch start to each container started;
//! - `kube`: the pods created through the API (scheduled, started by the node),
//!   latency from sending each create to the watch showing the pod Running, and Ready.
//!
//! Then, with 50 pods running, the server's RSS (containerd and the shims are other
//! processes) and its CPU use over 10 idle seconds. A table on stdout, progress on
//! stderr; exit status 1 only when a phase failed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use kubebox::kubelet::cri::{Cri, Runtime, api};
use serde_json::json;

mod common;
use common::{cpu_seconds, pct, proc_status_mb};

const NAMESPACE: &str = "bench-pods";
const IMAGE: &str = "docker.io/library/busybox:latest";

#[derive(Parser, Debug)]
#[command(about = "Pod start-up latency of kube against the raw CRI floor")]
struct Args {
    /// The admin kubeconfig of the server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The CRI socket of the node's containerd.
    #[arg(long)]
    cri_socket: String,
    /// Process id of the server, for its memory and CPU figures.
    #[arg(long)]
    server_pid: u32,
    /// Where the floor's pods write their logs.
    #[arg(long, default_value = "/tmp/kube-bench-floor")]
    floor_log_dir: PathBuf,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    batches: Vec<usize>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let cri = Arc::new(Cri::new(&args.cri_socket)?);
    let rss_before = proc_status_mb(args.server_pid, "VmRSS");
    let mut rows = Vec::new();
    for &n in &args.batches {
        eprintln!("bench-pods: floor, {n} pods");
        let floor = floor(&cri, n, &args.floor_log_dir).await.context("CRI floor")?;
        eprintln!("bench-pods: kube, {n} pods");
        let (running, ready) = through_kube(&client, n).await.context("pods through kube")?;
        rows.push((n, floor, running, ready));
        if n != *args.batches.last().unwrap_or(&0) {
            clean_namespace(&client).await?;
        }
    }
    eprintln!("bench-pods: idle with the last batch running");
    let rss = proc_status_mb(args.server_pid, "VmRSS");
    // Idle CPU over 10 s, in % of one core.
    let window = Duration::from_secs(10);
    let before = cpu_seconds(args.server_pid);
    tokio::time::sleep(window).await;
    let cpu = cpu_seconds(args.server_pid)
        .zip(before)
        .map(|(after, before)| (after - before) / window.as_secs_f64() * 100.0);
    clean_namespace(&client).await?;

    println!(
        "{:<6} {:>12} {:>12} {:>14} {:>14} {:>12} {:>12}",
        "pods", "floor p50", "floor p99", "running p50", "running p99", "ready p50", "ready p99"
    );
    for (n, floor, running, ready) in &rows {
        println!(
            "{n:<6} {:>12} {:>12} {:>14} {:>14} {:>12} {:>12}",
            ms(pct(floor, 0.5)),
            ms(pct(floor, 0.99)),
            format!("{} ({:.2}x)", ms(pct(running, 0.5)), ratio(running, floor)),
            ms(pct(running, 0.99)),
            ms(pct(ready, 0.5)),
            ms(pct(ready, 0.99)),
        );
    }
    println!("targets: running p50 within 1.5x of the floor; p99 under 2 s for 50 pods");
    // One process runs the API, the store, the controllers and the node agent; the
    // agent's share is at most the whole.
    match (rss_before, rss) {
        (Some(before), Some(mb)) => println!(
            "server RSS (API + store + controllers + node agent; containerd excluded): {before:.1} MB with no pods, \
             {mb:.1} MB with the last batch running (target < 30 MB for the node agent)"
        ),
        _ => println!("server RSS: unavailable"),
    }
    match cpu {
        Some(pct) => println!("server CPU over 10 s idle: {pct:.2}% of one core (target < 0.5%)"),
        None => println!("server CPU: unavailable"),
    }
    Ok(())
}

/// `n` busybox pods straight through CRI, all at once; the time each took to start.
async fn floor(cri: &Arc<Cri>, n: usize, log_dir: &std::path::Path) -> Result<Vec<Duration>> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let cri = cri.clone();
            let log_dir = log_dir.to_path_buf();
            tokio::spawn(async move {
                let sandbox = sandbox_config(&format!("floor-{n}-{i}"), &log_dir);
                std::fs::create_dir_all(format!("{}/main", sandbox.log_directory))?;
                let id = cri.run_pod_sandbox(sandbox.clone(), String::new()).await?;
                let container = api::ContainerConfig {
                    metadata: Some(api::ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    }),
                    image: Some(api::ImageSpec {
                        image: IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: "main/0.log".into(),
                    ..Default::default()
                };
                let container = cri.create_container(&id, container, sandbox).await?;
                cri.start_container(&container).await?;
                anyhow::Ok((id, start.elapsed()))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut sandboxes = Vec::new();
    for task in tasks {
        let (id, took) = task.await??;
        sandboxes.push(id);
        latencies.push(took);
    }
    for id in sandboxes {
        cri.stop_pod_sandbox(&id).await?;
        cri.remove_pod_sandbox(&id).await?;
    }
    latencies.sort();
    Ok(latencies)
}

fn sandbox_config(name: &str, log_dir: &std::path::Path) -> api::PodSandboxConfig {
    let uid = format!("bench-{name}-{}", std::process::id());
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "bench-floor".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.join(name).to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `n` pods through the API at once; per pod the time from its create to Running
/// and to Ready, as a watch sees them.
async fn through_kube(client: &Client, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err.into()),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // The default service account must exist before pods can be created.
    for _ in 0..100 {
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
        if accounts.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revision = pods
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut events = pods
        .watch(&WatchParams::default().timeout(290), &revision)
        .await?
        .boxed();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let creates: Vec<_> = (0..n)
        .map(|i| {
            let pods = pods.clone();
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("pod-{n}-{i}")},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]
                }
            }))
            .expect("pod");
            async move {
                let sent = Instant::now();
                pods.create(&PostParams::default(), &pod).await.map(|p| (p.name_any(), sent))
            }
        })
        .collect();
    for result in futures_util::future::join_all(creates).await {
        let (name, sent) = result?;
        created.insert(name, sent);
    }
    let (mut running, mut ready) = (HashMap::new(), HashMap::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while ready.len() < n {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => bail!("watch ended with {}/{n} pods ready", ready.len()),
            Err(_) => bail!("only {}/{n} pods ready after 120 s", ready.len()),
        };
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        let name = pod.name_any();
        let Some(sent) = created.get(&name) else { continue };
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) == Some("Running") {
            running.entry(name.clone()).or_insert_with(|| sent.elapsed());
        }
        let is_ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if is_ready {
            ready.entry(name).or_insert_with(|| sent.elapsed());
        }
    }
    let mut running: Vec<Duration> = running.into_values().collect();
    let mut ready: Vec<Duration> = ready.into_values().collect();
    running.sort();
    ready.sort();
    Ok((running, ready))
}

/// Deletes the benchmark's pods and waits until they are gone.
async fn clean_namespace(client: &Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    for _ in 0..600 {
        if pods.list(&ListParams::default()).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("pods of {NAMESPACE} still there after 60 s")
}

fn ratio(kube: &[Duration], floor: &[Duration]) -> f64 {
    pct(kube, 0.5).as_secs_f64() / pct(floor, 0.5).as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
