//! Benchmarks the Kubernetes API of `kube server` over HTTPS with kube-rs clients, as a
//! controller or kubelet would use it: creating, getting, listing and watching pods.
//!
//! ```text
//! cargo run --release --example bench_api -- --kubeconfig /etc/kube/kube.yaml --server-pid PID
//! ```
//!
//! `scripts/bench-api` starts a fresh server and runs this against it. Phases, in order:
//! - `create`: `--clients` concurrent clients (one kube-rs `Client`, so one HTTPS connection,
//!   each) create `--pods` minimal pods (one busybox container): `--small-pods` of them in
//!   namespace `bench-small`, the rest in `bench-large`;
//! - `get`: random pods, by one client sequentially, then by `--clients` clients at once;
//! - `watch`: `--watchers` watches of namespace `bench-watch` while one writer creates a pod
//!   every `--watch-interval-ms`: the time from sending each create to each watcher
//!   receiving its ADDED event. Once over HTTP/2 (kube-rs itself speaks HTTP/1.1 only, so
//!   these clients put a hyper HTTP/2 connector under `kube::Client`: 100 watches
//!   multiplexed per connection), once over HTTP/1.1 (10 plain kube-rs clients, which open
//!   one connection per watch);
//! - `list`: the `bench-small` namespace (1k pods) and all pods (10k) by one client: the time
//!   to the whole response body, and once more with kube-rs decoding into typed `Pod`s.
//!
//! The server's resident memory (VmRSS of `--server-pid` from /proc) is sampled after each
//! phase. The result is a table on stdout with the targets next to the figures; progress
//! goes to stderr. The exit status is 0 even when a target is missed, 1 when a phase failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::client::ConfigExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod common;
use common::{load_config, pct, print_free_ports, proc_status_mb, wait_ready};

const SMALL_NS: &str = "bench-small";
const LARGE_NS: &str = "bench-large";
const WATCH_NS: &str = "bench-watch";
/// Writes of the watch phase before the timed ones (their deliveries are not counted).
const WATCH_WARMUP: usize = 5;
/// Watches multiplexed over one HTTP/2 connection.
const WATCHES_PER_H2_CONNECTION: usize = 100;

#[derive(Parser, Debug)]
#[command(about = "Benchmark the Kubernetes API of kube server with kube-rs clients")]
struct Args {
    /// The admin kubeconfig the server writes (waited for).
    #[arg(long, required_unless_present = "free_ports")]
    kubeconfig: Option<PathBuf>,
    /// Process id of the server, for its memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print N free loopback TCP ports (space separated) and exit.
    #[arg(long, value_name = "N")]
    free_ports: Option<usize>,
    /// Seconds to wait for the kubeconfig and the API.
    #[arg(long, default_value_t = 60.0)]
    wait_timeout: f64,
    /// Comma-separated phases, run in this order: create, get, watch, list (the memory
    /// glibc keeps after the big lists would otherwise hide what the watches cost).
    #[arg(long, value_delimiter = ',', default_value = "create,get,watch,list")]
    phases: Vec<String>,
    /// Concurrent clients of the create and get phases.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Pods stored in all (the "10k" list).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Pods of them in their own namespace (the "1k" list).
    #[arg(long, default_value_t = 1_000)]
    small_pods: usize,
    /// Sequential gets by one client.
    #[arg(long, default_value_t = 2_000)]
    seq_gets: usize,
    /// Seconds of gets by `--clients` concurrent clients.
    #[arg(long, default_value_t = 5.0)]
    get_seconds: f64,
    /// Timed lists of the small namespace.
    #[arg(long, default_value_t = 20)]
    small_lists: usize,
    /// Timed lists of all pods.
    #[arg(long, default_value_t = 10)]
    large_lists: usize,
    /// Timed lists of all pods decoded into typed pods by kube-rs.
    #[arg(long, default_value_t = 3)]
    typed_lists: usize,
    /// Concurrent watches.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Timed writes whose delivery to every watcher is measured.
    #[arg(long, default_value_t = 30)]
    watch_writes: usize,
    /// Time between two writes of the watch phase.
    #[arg(long, default_value_t = 100)]
    watch_interval_ms: u64,
    /// Transports of the watch phase: h2 (multiplexed), h1 (one connection per watch).
    #[arg(long, value_delimiter = ',', default_value = "h2,h1")]
    watch_transports: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.free_ports {
        return print_free_ports(n);
    }
    let path = args.kubeconfig.clone().expect("clap requires --kubeconfig");
    let config = load_config(&path, Duration::from_secs_f64(args.wait_timeout)).await?;
    let client = Client::try_from(config.clone())?;
    wait_ready(&client, Duration::from_secs_f64(args.wait_timeout)).await?;

    let mut bench = Bench {
        args,
        config,
        client,
        rows: Vec::new(),
        memory: Vec::new(),
        failed: false,
        stored: 0,
    };
    bench.sample_memory("idle, nothing stored");
    bench.setup().await?;
    for phase in bench.args.phases.clone() {
        eprintln!("== {phase}");
        let outcome = match phase.as_str() {
            "create" => bench.create().await,
            "get" => bench.get().await,
            "list" => bench.list().await,
            "watch" => bench.watch().await,
            other => Err(anyhow!("unknown phase {other:?}")),
        };
        if let Err(e) = outcome {
            bench.failed = true;
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("phase {phase} failed: {msg}");
            bench.rows.push(Row::failed(&format!("{phase}: FAILED: {msg}")));
        }
    }
    bench.print();
    if bench.failed {
        std::process::exit(1);
    }
    Ok(())
}

/// A kube-rs client whose requests go over one multiplexed HTTP/2 connection.
///
/// kube-rs' own client enables HTTP/1.1 only; this is its documented custom-client
/// recipe (`ConfigExt` layers over a hyper client) with an HTTP/2-only connector.
fn h2_client(config: &kube::Config) -> Result<Client> {
    let tls = config.rustls_client_config()?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .build();
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace.clone()))
}

/// The pod every benchmark write stores: as small as a valid pod gets.
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .expect("a valid pod")
}

/// Name and namespace of the `i`th stored pod.
fn pod_slot(i: usize, small: usize) -> (&'static str, String) {
    let ns = if i < small { SMALL_NS } else { LARGE_NS };
    (ns, format!("pod-{i:05}"))
}

struct Bench {
    args: Args,
    config: kube::Config,
    client: Client,
    rows: Vec<Row>,
    memory: Vec<(String, Option<f64>)>,
    failed: bool,
    /// Pods the create phase stored.
    stored: usize,
}

impl Bench {
    /// Records the server's VmRSS now.
    fn sample_memory(&mut self, label: &str) {
        let rss = self.args.server_pid.and_then(|pid| proc_status_mb(pid, "VmRSS"));
        if let Some(mb) = rss {
            eprintln!("server RSS ({label}): {mb:.1} MB");
        }
        self.memory.push((label.to_string(), rss));
    }

    async fn setup(&mut self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for name in [SMALL_NS, LARGE_NS, WATCH_NS] {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
            match namespaces.create(&PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
                Err(e) => return Err(e).context(format!("create namespace {name}")),
            }
        }
        Ok(())
    }

    /// `n` clients, each with its own connection, already connected.
    async fn clients(&self, n: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let client = Client::try_from(self.config.clone())?;
            Api::<Namespace>::all(client.clone()).get("default").await?;
            clients.push(client);
        }
        Ok(clients)
    }

    async fn create(&mut self) -> Result<()> {
        let (pods, small, n) = (
            self.args.pods,
            self.args.small_pods.min(self.args.pods),
            self.args.clients,
        );
        let clients = self.clients(n).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in clients {
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pods {
                        break;
                    }
                    let (ns, name) = pod_slot(i, small);
                    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                    let pod = pod(&name);
                    let t = Instant::now();
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(e) => errors.push(format!("{name}: {e}")),
                    }
                    if i > 0 && i.is_multiple_of(2000) {
                        eprintln!("  {i} pods created");
                    }
                }
                (latencies, errors)
            }));
        }
        let (latencies, errors) = join_all(tasks).await?;
        let elapsed = start.elapsed();
        if let Some(e) = errors.first() {
            eprintln!("{} creates failed, e.g. {e}", errors.len());
        }
        let latencies_len = latencies.len();
        self.rows.push(Row::latencies(
            &format!("create pod ({n} clients)"),
            latencies,
            errors.len(),
            Some(elapsed),
            Some(Target::P99Below(25.0)),
        ));
        self.stored = latencies_len;
        self.sample_memory(&format!("{} pods stored", self.stored));
        ensure!(
            errors.is_empty(),
            "{} of {pods} creates failed: {}",
            errors.len(),
            errors[0]
        );
        Ok(())
    }

    async fn get(&mut self) -> Result<()> {
        let (pods, small) = (self.args.pods, self.args.small_pods.min(self.args.pods));
        ensure!(pods > 0, "no pods to get");

        // One client, one request at a time: the latency of a get alone.
        let client = Client::try_from(self.config.clone())?;
        let (mut latencies, mut errors) = (Vec::new(), 0);
        let start = Instant::now();
        for _ in 0..self.args.seq_gets {
            let (ns, name) = pod_slot(rand::random_range(0..pods), small);
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let t = Instant::now();
            match api.get(&name).await {
                Ok(_) => latencies.push(t.elapsed()),
                Err(_) => errors += 1,
            }
        }
        let elapsed = start.elapsed();
        self.rows.push(Row::latencies(
            "get pod (1 client)",
            latencies,
            errors,
            Some(elapsed),
            Some(Target::P99Below(5.0)),
        ));

        // Many clients at once, for a fixed time.
        let n = self.args.clients;
        let clients = self.clients(n).await?;
        let duration = Duration::from_secs_f64(self.args.get_seconds);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in clients {
            tasks.push(tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while start.elapsed() < duration {
                    let (ns, name) = pod_slot(rand::random_range(0..pods), small);
                    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
                    let t = Instant::now();
                    match api.get(&name).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (latencies, errors)
            }));
        }
        let (latencies, errors) = join_all(tasks).await?;
        let elapsed = start.elapsed();
        self.rows.push(Row::latencies(
            &format!("get pod ({n} clients)"),
            latencies,
            errors.len(),
            Some(elapsed),
            Some(Target::P99Below(5.0)),
        ));
        self.sample_memory(&format!("{} pods stored, after gets", self.stored));
        Ok(())
    }

    async fn list(&mut self) -> Result<()> {
        let small = self.args.small_pods.min(self.args.pods);
        let client = Client::try_from(self.config.clone())?;
        let runs = [
            (
                format!("list {} pods, 1 namespace", human(small)),
                format!("/api/v1/namespaces/{SMALL_NS}/pods"),
                small,
                self.args.small_lists,
                None,
            ),
            (
                format!("list {} pods, all namespaces", human(self.args.pods)),
                "/api/v1/pods".to_string(),
                self.args.pods,
                self.args.large_lists,
                Some(Target::P99Below(300.0)),
            ),
        ];
        for (label, path, expected, times, target) in runs {
            let mut latencies = Vec::new();
            let mut bytes = 0;
            let start = Instant::now();
            for i in 0..times {
                let request = kube::core::Request::new(&path).list(&ListParams::default())?;
                let t = Instant::now();
                let body = client
                    .request_text(request)
                    .await
                    .with_context(|| format!("GET {path}"))?;
                latencies.push(t.elapsed());
                if i == 0 {
                    // Checked once, outside the timing: the list is complete.
                    let list: serde_json::Value = serde_json::from_str(&body)?;
                    let items = list["items"].as_array().map_or(0, |a| a.len());
                    ensure!(items == expected, "{path}: {items} items, expected {expected}");
                    bytes = body.len();
                }
            }
            let elapsed = start.elapsed();
            eprintln!("  {label}: {:.1} MB per response", bytes as f64 / 1e6);
            self.rows
                .push(Row::latencies(&label, latencies, 0, Some(elapsed), target));
        }

        // The same large list as a kube-rs user sees it: decoded into typed pods.
        let api: Api<Pod> = Api::all(client.clone());
        let mut latencies = Vec::new();
        let start = Instant::now();
        for _ in 0..self.args.typed_lists {
            let t = Instant::now();
            let list = api.list(&ListParams::default()).await?;
            latencies.push(t.elapsed());
            ensure!(
                list.items.len() == self.args.pods,
                "typed list: {} items",
                list.items.len()
            );
        }
        let elapsed = start.elapsed();
        self.rows.push(Row::latencies(
            "  same, decoded by kube-rs",
            latencies,
            0,
            Some(elapsed),
            None,
        ));
        self.sample_memory(&format!("{} pods stored, after lists", self.stored));
        Ok(())
    }

    async fn watch(&mut self) -> Result<()> {
        for transport in self.args.watch_transports.clone() {
            let http2 = match transport.as_str() {
                "h2" => true,
                "h1" => false,
                other => bail!("unknown watch transport {other:?} (h2 or h1)"),
            };
            if let Err(e) = self.watch_over(http2).await {
                self.failed = true;
                let msg = format!("{e:#}").replace('\n', " ");
                eprintln!("watch over {transport} failed: {msg}");
                self.rows
                    .push(Row::failed(&format!("watch {transport}: FAILED: {msg}")));
            }
        }
        Ok(())
    }

    /// `--watchers` watches, then timed writes; every delivery is timed.
    async fn watch_over(&mut self, http2: bool) -> Result<()> {
        let watchers = self.args.watchers;
        let (transport, connections) = if http2 {
            ("HTTP/2", watchers.div_ceil(WATCHES_PER_H2_CONNECTION).max(1))
        } else {
            ("HTTP/1.1", watchers)
        };
        // h1: a few kube-rs clients, each opening one connection per watch.
        let clients: Vec<Client> = if http2 {
            (0..connections)
                .map(|_| h2_client(&self.config))
                .collect::<Result<_>>()?
        } else {
            (0..10.min(watchers).max(1))
                .map(|_| Client::try_from(self.config.clone()).map_err(Into::into))
                .collect::<Result<_>>()?
        };
        let prefix = if http2 { "h2-" } else { "h1-" };
        let total = WATCH_WARMUP + self.args.watch_writes;
        let writer: Api<Pod> = Api::namespaced(self.client.clone(), WATCH_NS);
        let from = writer
            .list(&ListParams::default().limit(1))
            .await?
            .metadata
            .resource_version
            .context("a list without resourceVersion")?;

        let cancel = CancellationToken::new();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<()>>();
        let mut tasks = Vec::with_capacity(watchers);
        let start = Instant::now();
        for w in 0..watchers {
            let api: Api<Pod> = Api::namespaced(clients[w % clients.len()].clone(), WATCH_NS);
            let (from, cancel, ready) = (from.clone(), cancel.clone(), ready_tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut received: Vec<(usize, Instant)> = Vec::with_capacity(total);
                let params = WatchParams::default().timeout(290);
                let stream = match api.watch(&params, &from).await {
                    Ok(stream) => {
                        let _ = ready.send(Ok(()));
                        stream
                    }
                    Err(e) => {
                        let _ = ready.send(Err(anyhow!("watch {w}: {e}")));
                        return received;
                    }
                };
                let mut stream = std::pin::pin!(stream);
                loop {
                    let event = tokio::select! {
                        () = cancel.cancelled() => break,
                        event = stream.next() => event,
                    };
                    match event {
                        Some(Ok(WatchEvent::Added(pod))) => {
                            let at = Instant::now();
                            let name = pod.name_any();
                            if let Some(k) = name.strip_prefix(prefix).and_then(|k| k.parse().ok()) {
                                received.push((k, at));
                                if received.len() == total {
                                    break;
                                }
                            }
                        }
                        Some(Ok(WatchEvent::Error(e))) => {
                            eprintln!("watch {w}: error event {e:?}");
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            eprintln!("watch {w}: {e}");
                            break;
                        }
                        None => break,
                    }
                }
                received
            }));
        }
        drop(ready_tx);
        let mut established = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while established < watchers {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(Ok(()))) => established += 1,
                Ok(Some(Err(e))) => {
                    cancel.cancel();
                    return Err(e);
                }
                Ok(None) => break,
                Err(_) => {
                    cancel.cancel();
                    bail!("only {established} of {watchers} watches established after 60 s");
                }
            }
        }
        eprintln!(
            "  {watchers} watches over {connections} {transport} connections established in {:.1} s",
            start.elapsed().as_secs_f64()
        );

        // The writes, evenly spaced; each one's send time is its delivery's zero.
        let interval = Duration::from_millis(self.args.watch_interval_ms);
        let mut sent = Vec::with_capacity(total);
        let mut write_latencies = Vec::new();
        let first = tokio::time::Instant::now();
        for k in 0..total {
            tokio::time::sleep_until(first + interval * k as u32).await;
            let pod = pod(&format!("{prefix}{k:04}"));
            let t = Instant::now();
            sent.push(t);
            writer.create(&PostParams::default(), &pod).await?;
            write_latencies.push(t.elapsed());
        }
        // Every watcher ends after its last event; stragglers get 10 s more.
        let stop = cancel.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            stop.cancel();
        });
        let mut all = Vec::new();
        for task in tasks {
            all.push(task.await?);
        }
        timer.abort();
        self.sample_memory(&format!(
            "{} pods stored, {watchers} {transport} watches open",
            self.stored
        ));
        drop(clients);

        let mut deliveries = Vec::new();
        let mut slowest = vec![Duration::ZERO; total];
        let mut received = 0;
        for events in &all {
            for &(k, at) in events {
                if k < total {
                    received += 1;
                    let latency = at.saturating_duration_since(sent[k]);
                    slowest[k] = slowest[k].max(latency);
                    if k >= WATCH_WARMUP {
                        deliveries.push(latency);
                    }
                }
            }
        }
        let missed = watchers * total - received;
        if missed > 0 {
            eprintln!("  {missed} deliveries missing");
        }
        let label = format!("watch: {watchers} watchers, {connections} {transport} conns");
        self.rows.push(Row::latencies(
            &format!("{label}: each delivery"),
            deliveries,
            missed,
            None,
            Some(Target::P99Below(100.0)),
        ));
        self.rows.push(Row::latencies(
            &format!("  write reaching all {watchers} watchers"),
            slowest[WATCH_WARMUP..].to_vec(),
            0,
            None,
            Some(Target::P99Below(100.0)),
        ));
        self.rows.push(Row::latencies(
            "  the write itself (create pod)",
            write_latencies[WATCH_WARMUP..].to_vec(),
            0,
            None,
            None,
        ));

        // Leave the stored pods as they were.
        for k in 0..total {
            let _ = writer
                .delete(&format!("{prefix}{k:04}"), &DeleteParams::default())
                .await;
        }
        Ok(())
    }

    fn print(&self) {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "kube server API benchmark: {} pods stored, {} clients, {} watchers, {cpus} CPUs shared by server and clients",
            self.stored, self.args.clients, self.args.watchers
        );
        println!();
        let header = format!(
            "{:<58} {:>7} {:>8} {:>9} {:>9} {:>9}  target",
            "operation", "ops", "ops/s", "p50 ms", "p99 ms", "max ms"
        );
        println!("{header}");
        println!("{}", "-".repeat(header.len() + 4));
        for row in &self.rows {
            println!("{}", row.render());
        }
        if self.memory.iter().any(|(_, mb)| mb.is_some()) {
            println!();
            println!("{:<58} {:>9}  target", "server memory", "RSS MB");
            println!("{}", "-".repeat(86));
            for (label, mb) in &self.memory {
                let stored = self.stored > 0 && label.contains("pods stored");
                let target = if stored { "< 150 MB" } else { "" };
                let verdict = match (stored, mb) {
                    (true, Some(mb)) if *mb < 150.0 => "ok",
                    (true, Some(_)) => "MISSED",
                    _ => "",
                };
                let mb = mb.map_or("n/a".to_string(), |mb| format!("{mb:.1}"));
                println!("{}", format!("{label:<58} {mb:>9}  {target:<14} {verdict}").trim_end());
            }
            if let Some(peak) = self.args.server_pid.and_then(|pid| proc_status_mb(pid, "VmHWM")) {
                println!("{:<58} {peak:>9.1}", "peak (VmHWM, whole run)");
            }
        }
    }
}

/// Waits for every task and merges their latencies and errors.
async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, Vec<String>)>>,
) -> Result<(Vec<Duration>, Vec<String>)> {
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    Ok((latencies, errors))
}

enum Target {
    /// p99 below this many milliseconds.
    P99Below(f64),
}

/// One line of the result table.
struct Row {
    label: String,
    ops: usize,
    errors: usize,
    rate: Option<f64>,
    /// p50, p99, max in milliseconds.
    latency: Option<(f64, f64, f64)>,
    target: Option<Target>,
}

impl Row {
    fn latencies(
        label: &str,
        mut latencies: Vec<Duration>,
        errors: usize,
        elapsed: Option<Duration>,
        target: Option<Target>,
    ) -> Row {
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let latency = (!latencies.is_empty()).then(|| {
            (
                ms(pct(&latencies, 0.50)),
                ms(pct(&latencies, 0.99)),
                ms(*latencies.last().unwrap()),
            )
        });
        Row {
            label: label.to_string(),
            ops: latencies.len(),
            errors,
            rate: elapsed.map(|e| latencies.len() as f64 / e.as_secs_f64()),
            latency,
            target,
        }
    }

    fn failed(label: &str) -> Row {
        Row {
            label: label.to_string(),
            ops: 0,
            errors: 0,
            rate: None,
            latency: None,
            target: None,
        }
    }

    fn render(&self) -> String {
        let (p50, p99, max) = match self.latency {
            Some((a, b, c)) => (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}")),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let rate = self.rate.map_or("-".to_string(), |r| format!("{r:.0}"));
        let (target, verdict) = match (&self.target, self.latency) {
            (Some(Target::P99Below(limit)), Some((_, p99, _))) => {
                let ok = p99 < *limit && self.errors == 0;
                (format!("p99 < {limit} ms"), if ok { "ok" } else { "MISSED" })
            }
            (Some(Target::P99Below(limit)), None) => (format!("p99 < {limit} ms"), "MISSED"),
            (None, _) => (String::new(), ""),
        };
        let errors = if self.errors > 0 {
            format!(" ({} errors/missed)", self.errors)
        } else {
            String::new()
        };
        let ops = if self.latency.is_some() || self.errors > 0 {
            self.ops.to_string()
        } else {
            String::new()
        };
        format!(
            "{:<58} {ops:>7} {rate:>8} {p50:>9} {p99:>9} {max:>9}  {target:<14} {verdict}{errors}",
            self.label
        )
        .trim_end()
        .to_string()
    }
}

/// "1k" for 1000, "10k" for 10000, else the number.
fn human(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}
