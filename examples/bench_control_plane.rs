//! Benchmarks the scheduler of `kube server` (agent disabled) the way a cluster loads it:
//! registers `--nodes` simulated nodes through the API (a Node, then its status: Ready,
//! 32 CPUs, 128 GiB, 110 pods), then creates `--pods` pods, each requesting 10m CPU and
//! 16 MiB, and watches them until every one is bound to a node.
//!
//! ```text
//! cargo run --release --example bench_control_plane -- --kubeconfig FILE --server-pid PID --nodes 100
//! ```
//!
//! `scripts/bench-control-plane` starts fresh servers and runs this in two scenarios per
//! node count: `--phase all` creates the pods while the scheduler runs (so the rate of
//! binding cannot exceed the rate of creation), and `--phase create` on a server with
//! `--disable-scheduler` followed by `--phase drain` once it is restarted with its
//! scheduler measures how fast the scheduler binds a backlog of pending pods.
//! Pods come through Deployments (`--deployments` of them, replicas split evenly) when
//! the server runs a Deployment controller, else as bare pods created by `--clients`
//! concurrent clients; `--via` forces one or the other, `auto` probes with a one-replica
//! Deployment and says which it used.
//!
//! Printed: pods bound per second (first to last binding, from a watch of the pods),
//! the time to the last binding, the server's resident memory (VmRSS of `--server-pid`),
//! its CPU while binding and over `--idle-seconds` once everything is bound (utime+stime
//! from /proc, in % of one core). Progress goes to stderr. The exit status is 0 even when
//! a target is missed, 1 when a step failed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

mod common;
use common::{cpu_seconds, load_config, print_free_ports, proc_status_mb, wait_ready};

const NAMESPACE: &str = "bench";

#[derive(Parser, Debug)]
#[command(about = "Benchmark the scheduler of kube server with simulated nodes")]
struct Args {
    /// The admin kubeconfig the server writes (waited for).
    #[arg(long, required_unless_present = "free_ports")]
    kubeconfig: Option<PathBuf>,
    /// Process id of the server, for its memory and CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print N free loopback TCP ports (space separated) and exit.
    #[arg(long, value_name = "N")]
    free_ports: Option<usize>,
    /// Seconds to wait for the kubeconfig and the API.
    #[arg(long, default_value_t = 60.0)]
    wait_timeout: f64,
    /// Simulated nodes to register.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 3000)]
    pods: usize,
    /// How pods are created: deployments, pods, or auto (deployments if the server
    /// runs a Deployment controller).
    #[arg(long, default_value = "auto")]
    via: String,
    /// Deployments the pods are split over.
    #[arg(long, default_value_t = 30)]
    deployments: usize,
    /// Concurrent clients registering nodes and creating bare pods.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds to wait for every pod to be bound.
    #[arg(long, default_value_t = 300.0)]
    bind_timeout: f64,
    /// Seconds of idle CPU measured once everything is bound.
    #[arg(long, default_value_t = 10.0)]
    idle_seconds: f64,
    /// all: create pods while the scheduler runs and time them until bound; create:
    /// only create nodes and pods (for a server with `--disable-scheduler`); drain: time
    /// the pending pods until bound (after restarting the server with its scheduler).
    #[arg(long, default_value = "all")]
    phase: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.free_ports {
        return print_free_ports(n);
    }
    let path = args.kubeconfig.clone().expect("clap requires --kubeconfig");
    let timeout = Duration::from_secs_f64(args.wait_timeout);
    let config = load_config(&path, timeout).await?;
    let client = Client::try_from(config.clone())?;
    wait_ready(&client, timeout).await?;
    let clients = (0..args.clients.max(1))
        .map(|_| Client::try_from(config.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = match args.phase.as_str() {
        "all" => end_to_end(&args, client, clients).await,
        "create" => create_only(&args, client, clients).await,
        "drain" => drain(&args, client).await,
        other => Err(anyhow::anyhow!("--phase {other:?}: want all, create or drain")),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(e) => {
            println!(
                "== {} nodes, {} pods ({}): FAILED: {e:#}",
                args.nodes, args.pods, args.phase
            );
            std::process::exit(1);
        }
    }
}

/// What `--phase create` leaves behind.
struct Created {
    registered: Duration,
    created_in: Duration,
    mode: String,
}

/// The namespace, the nodes and the pods (or their Deployments).
async fn create(args: &Args, client: &Client, clients: &[Client], before_pods: impl AsyncFnOnce()) -> Result<Created> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .context("create namespace")?;
    wait_for_service_account(client).await?;

    eprintln!("registering {} nodes", args.nodes);
    let start = Instant::now();
    register_nodes(args.nodes, clients).await?;
    let registered = start.elapsed();

    let deployments = match args.via.as_str() {
        "deployments" => true,
        "pods" => false,
        "auto" => probe_deployments(client).await?,
        other => bail!("--via {other:?}: want deployments, pods or auto"),
    };
    let mode = if deployments {
        format!("through {} Deployments", args.deployments)
    } else if args.via == "auto" {
        "as bare pods: this server runs no Deployment controller".to_string()
    } else {
        "as bare pods".to_string()
    };
    before_pods().await;
    eprintln!("creating {} pods {mode}", args.pods);
    let created_in = if deployments {
        create_deployments(client, args.deployments, args.pods).await?
    } else {
        create_pods(args.pods, clients).await?
    };
    Ok(Created {
        registered,
        created_in,
        mode,
    })
}

/// Waits until `count` pods are bound, as the watch counts them.
async fn all_bound(rx: &mut watch::Receiver<Bound>, count: usize, timeout: Duration) -> Result<Bound> {
    let start = Instant::now();
    loop {
        let state = rx.borrow_and_update().clone();
        if state.count >= count {
            return Ok(state);
        }
        match tokio::time::timeout(timeout.saturating_sub(start.elapsed()), rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the pod watch ended after {} bindings", state.count),
            Err(_) => bail!("only {} of {count} pods bound after {timeout:?}", state.count),
        }
    }
}

/// CPU, memory and idle figures of the server, shared by the report lines.
struct Figures {
    rate: f64,
    busy_cpu: Option<f64>,
    busy_for: Duration,
    rss: Option<f64>,
    rss_idle: Option<f64>,
    idle_cpu: Option<f64>,
}

/// Measures the server over `--idle-seconds` once it has settled: the last events and
/// status writes sent (up to 60 s, until a second passes with under 1% of a core used).
async fn idle(args: &Args) -> (Option<f64>, Option<f64>) {
    let settle = Instant::now();
    let mut last = args.server_pid.and_then(cpu_seconds);
    while settle.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = args.server_pid.and_then(cpu_seconds);
        match (now, last) {
            (Some(now), Some(before)) if now - before < 0.01 => break,
            (None, _) | (_, None) => break,
            _ => last = now,
        }
    }
    eprintln!(
        "settled after {:.1} s; measuring idle CPU for {} s",
        settle.elapsed().as_secs_f64(),
        args.idle_seconds
    );
    let before = args.server_pid.and_then(cpu_seconds);
    tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
    let idle = args.server_pid.and_then(cpu_seconds).zip(before).map(|(a, b)| a - b);
    (idle, args.server_pid.and_then(|pid| proc_status_mb(pid, "VmRSS")))
}

fn report_lines(args: &Args, f: &Figures) -> String {
    let target = match args.nodes {
        n if n >= 1000 => 300.0,
        _ => 1000.0,
    };
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let percent = |cpu: Option<f64>, over: Duration| {
        cpu.map_or("-".to_string(), |c| {
            format!("{:.1}% of one core", 100.0 * c / over.as_secs_f64())
        })
    };
    let rss_line = |mb: Option<f64>| mb.map_or("-".to_string(), |m| format!("{m:.0} MB"));
    let idle_pct = f.idle_cpu.map(|c| 100.0 * c / args.idle_seconds);
    let mut out = String::new();
    out += &format!(
        "  pods bound per second              {:>8.0}    target >= {target:.0}: {}\n",
        f.rate,
        verdict(f.rate >= target)
    );
    out += &format!(
        "  server CPU while binding           {}\n",
        percent(f.busy_cpu, f.busy_for)
    );
    out += &format!(
        "  server RSS, all bound / idle       {} / {}{}\n",
        rss_line(f.rss),
        rss_line(f.rss_idle),
        match (args.nodes >= 1000, f.rss) {
            (true, Some(mb)) => format!("    target < 300 MB: {}", verdict(mb < 300.0)),
            _ => String::new(),
        }
    );
    out += &format!(
        "  server CPU idle over {:.0} s          {}    target 0: {}",
        args.idle_seconds,
        percent(f.idle_cpu, Duration::from_secs_f64(args.idle_seconds)),
        verdict(idle_pct.is_some_and(|p| p < 0.5))
    );
    out
}

fn bind_rate(count: usize, bound: &Bound, fallback: Duration) -> f64 {
    let window = match (bound.first, bound.last) {
        (Some(first), Some(last)) if last > first => last.duration_since(first),
        _ => fallback,
    };
    count as f64 / window.as_secs_f64().max(1e-3)
}

/// Scheduler running: nodes, then pods, timed until every pod is bound.
async fn end_to_end(args: &Args, client: Client, clients: Vec<Client>) -> Result<String> {
    let (progress, mut bound_rx) = watch::channel(Bound::default());
    let mut watcher_task = None;
    let mut started = None;
    let created = create(args, &client, &clients, async || {
        // Count bindings from a watch started before the first pod exists.
        watcher_task = Some(tokio::spawn(watch_bindings(client.clone(), progress)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        started = Some((Instant::now(), args.server_pid.and_then(cpu_seconds)));
    })
    .await?;
    let (start, cpu_before) = started.context("pods created without a watch")?;
    let bound = all_bound(&mut bound_rx, args.pods, Duration::from_secs_f64(args.bind_timeout)).await?;
    let busy_cpu = args
        .server_pid
        .and_then(cpu_seconds)
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let busy_for = start.elapsed();
    let rss = args.server_pid.and_then(|pid| proc_status_mb(pid, "VmRSS"));
    if let Some(task) = watcher_task {
        task.abort();
    }
    let total = bound.last.map(|t| t.duration_since(start)).unwrap_or_default();
    let (idle_cpu, rss_idle) = idle(args).await;
    let figures = Figures {
        rate: bind_rate(args.pods, &bound, total),
        busy_cpu,
        busy_for,
        rss,
        rss_idle,
        idle_cpu,
    };
    let mut out = format!(
        "== {} nodes, {} pods created {} while the scheduler runs\n",
        args.nodes, args.pods, created.mode
    );
    out += &format!(
        "  nodes registered (Node + status)   {:>8.2} s\n",
        created.registered.as_secs_f64()
    );
    let what = if created.mode.starts_with("through") {
        "Deployments"
    } else {
        "pods"
    };
    out += &format!(
        "  {:<35}{:>8.2} s\n",
        format!("{what} created (API calls)"),
        created.created_in.as_secs_f64()
    );
    let appeared = bound.last_created.map(|t| t.duration_since(start)).unwrap_or_default();
    out += &format!(
        "  all pods seen created              {:>8.2} s ({:.0}/s)\n",
        appeared.as_secs_f64(),
        args.pods as f64 / appeared.as_secs_f64().max(1e-3)
    );
    out += &format!("  first create to all bound          {:>8.2} s\n", total.as_secs_f64());
    out += &report_lines(args, &figures);
    Ok(out)
}

/// Scheduler disabled: only nodes and pods, to be scheduled after a restart.
async fn create_only(args: &Args, client: Client, clients: Vec<Client>) -> Result<String> {
    let created = create(args, &client, &clients, async || {}).await?;
    // Deployments: wait for their controllers to have created every pod.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs_f64(args.bind_timeout);
    loop {
        let list = pods.list_metadata(&ListParams::default()).await?;
        let count = list
            .items
            .iter()
            .filter(|p| p.labels().get("app").is_some_and(|a| a != "probe"))
            .count();
        if count >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {count} of {} pods created after {:?}",
                args.pods,
                args.bind_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(format!(
        "  ({} nodes and {} pods created {} with the scheduler off, in {:.2} s)",
        args.nodes,
        args.pods,
        created.mode,
        (created.registered + created.created_in).as_secs_f64()
    ))
}

/// The server was restarted with its scheduler on, `--pods` pods pending: timed until
/// every one is bound.
async fn drain(args: &Args, client: Client) -> Result<String> {
    let start = Instant::now();
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let (progress, mut bound_rx) = watch::channel(Bound::default());
    let watcher_task = tokio::spawn(watch_bindings(client.clone(), progress));
    let bound = all_bound(&mut bound_rx, args.pods, Duration::from_secs_f64(args.bind_timeout)).await?;
    let busy_cpu = args
        .server_pid
        .and_then(cpu_seconds)
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let busy_for = start.elapsed();
    let rss = args.server_pid.and_then(|pid| proc_status_mb(pid, "VmRSS"));
    watcher_task.abort();
    let total = bound.last.map(|t| t.duration_since(start)).unwrap_or_default();
    let (idle_cpu, rss_idle) = idle(args).await;
    let figures = Figures {
        rate: bind_rate(args.pods, &bound, total),
        busy_cpu,
        busy_for,
        rss,
        rss_idle,
        idle_cpu,
    };
    let mut out = format!(
        "== {} nodes, {} pods pending when the scheduler starts (server restarted with it on)\n",
        args.nodes, args.pods
    );
    out += &format!("  API ready to all bound             {:>8.2} s\n", total.as_secs_f64());
    out += &report_lines(args, &figures);
    Ok(out)
}

/// The namespace's `default` ServiceAccount (pods need it) from the controller.
async fn wait_for_service_account(client: &Client) -> Result<()> {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(30);
    while accounts.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount in {NAMESPACE} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Registers nodes `bench-node-0...` as a kubelet does: the Node, then its status.
async fn register_nodes(count: usize, clients: &[Client]) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let nodes: Api<Node> = Api::all(client);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("bench-node-{i}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                    }},
                }))?;
                nodes.create(&PostParams::default(), &node).await.context("create node")?;
                let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                let resources = json!({"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"});
                let status = json!({"status": {
                    "capacity": resources, "allocatable": resources,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
                }});
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .context("node status")?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn pod_template(app: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "busybox",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

/// Whether the server runs a Deployment controller: a one-replica Deployment gets
/// its pod within 10 s.
async fn probe_deployments(client: &Client) -> Result<bool> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let probe: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "probe"}}, "template": pod_template("probe")},
    }))?;
    deployments
        .create(&PostParams::default(), &probe)
        .await
        .context("create probe")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let list = pods.list(&ListParams::default().labels("app=probe")).await?;
        if !list.items.is_empty() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Scale to zero, and force the pod away: once bound it would wait for a kubelet.
    let zero = json!({"spec": {"replicas": 0}});
    deployments
        .patch("probe", &PatchParams::default(), &Patch::Merge(&zero))
        .await?;
    for pod in pods.list(&ListParams::default().labels("app=probe")).await?.items {
        let _ = pods
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await;
    }
    Ok(found)
}

async fn create_deployments(client: &Client, count: usize, pods: usize) -> Result<Duration> {
    let start = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let count = count.clamp(1, pods.max(1));
    for i in 0..count {
        let replicas = pods / count + usize::from(i < pods % count);
        let app = format!("bench-{i}");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": app},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": pod_template(&app)},
        }))?;
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .context("create deployment")?;
    }
    Ok(start.elapsed())
}

async fn create_pods(count: usize, clients: &[Client]) -> Result<Duration> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut pod = pod_template(&format!("bench-{}", i % 30));
                pod["metadata"]["name"] = json!(format!("bench-{i}"));
                let pod: Pod = serde_json::from_value(pod)?;
                pods.create(&PostParams::default(), &pod).await.context("create pod")?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(start.elapsed())
}

/// How many pods are bound, and when the first and the latest were; when the
/// latest pod appeared.
#[derive(Debug, Clone, Default)]
struct Bound {
    count: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    created: usize,
    last_created: Option<Instant>,
}

async fn watch_bindings(client: Client, progress: watch::Sender<Bound>) {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut seen = HashSet::new();
    let mut appeared = HashSet::new();
    let mut state = Bound::default();
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("pod watch: {e}");
                continue;
            }
        };
        let ours = pod.labels().get("app").is_some_and(|a| a != "probe");
        if ours && appeared.insert(pod.uid()) {
            state.created += 1;
            state.last_created = Some(Instant::now());
        }
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        // Pods bound before the watch started (none in a fresh run) count too; their
        // time is the watch's first event.
        if bound && ours && seen.insert(pod.uid()) {
            let now = Instant::now();
            state.count += 1;
            state.first.get_or_insert(now);
            state.last = Some(now);
            progress.send_replace(state.clone());
        }
    }
}
