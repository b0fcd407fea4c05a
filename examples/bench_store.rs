//! Benchmarks one etcd v3 gRPC endpoint: `kube server` or a real etcd, with the same client code.
//!
//! ```text
//! cargo run --release --example bench_store -- --endpoint 127.0.0.1:2379 --name etcd
//! ```
//!
//! Phases (each independent; a failing phase prints an `error` line and the rest still run):
//! - `put_seq`: sequential puts of 256-byte values, one at a time, latency p50/p99;
//! - `put_c{N}`: N concurrent clients putting new keys for `--duration` seconds, throughput
//!   (one gRPC channel, i.e. one HTTP/2 connection, per up to 16 clients);
//! - `range`: load 10,000 keys under a prefix, then time full prefix ranges (linearizable);
//! - `watch`: 1,000 watches on a prefix over 10 streams; for each put, the time from sending
//!   the Put to each watcher receiving its event.
//!
//! Results go to stdout, one per line: `result <name> <metric> <value>` (`*_ms` are
//! milliseconds with three decimals, everything else an integer: `*_ops` per second); failures as `error <name> <phase> <message>`.
//! Progress goes to stderr. `scripts/bench-store` runs this against both servers and prints
//! the side-by-side table.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use kubebox::etcd::proto::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, kv_client::KvClient, watch_client::WatchClient,
    watch_request::RequestUnion,
};
use tokio::sync::Notify;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

mod common;
use common::{cpu_seconds, pct, print_free_ports};

/// Clients sharing one gRPC channel (HTTP/2 connection).
const CLIENTS_PER_CHANNEL: usize = 16;
/// Puts before the sequential put phase that are not counted.
const WARMUP: usize = 20;
/// Puts before the timed ones of the watch phase (their deliveries are not counted).
const WATCH_WARMUP: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Benchmark an etcd v3 gRPC endpoint (kube server or etcd)")]
struct Args {
    /// host:port of the etcd v3 gRPC endpoint (plaintext).
    #[arg(long, required_unless_present = "free_ports")]
    endpoint: Option<String>,
    /// Label printed in every result line.
    #[arg(long, default_value = "server")]
    name: String,
    /// Only wait until the endpoint answers a Range, then exit (0 = ready).
    #[arg(long)]
    wait_only: bool,
    /// Seconds to wait for the endpoint to answer before giving up.
    #[arg(long, default_value_t = 30.0)]
    wait_timeout: f64,
    /// Print N free loopback TCP ports (space separated) and exit.
    #[arg(long, value_name = "N")]
    free_ports: Option<usize>,
    /// The server's process id: the put phase then also reports the server's CPU time
    /// per put (`put_c{N}_server_us`), next to this client's own (`put_c{N}_client_us`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Comma-separated phases to run: put_seq, put, range, watch.
    #[arg(long, value_delimiter = ',', default_value = "put_seq,put,range,watch")]
    phases: Vec<String>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Number of sequential puts timed.
    #[arg(long, default_value_t = 2000)]
    seq_puts: usize,
    /// Concurrency levels of the throughput phase.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    clients: Vec<usize>,
    /// Seconds per throughput level.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Keys under the ranged prefix.
    #[arg(long, default_value_t = 10_000)]
    range_keys: usize,
    /// Number of full-prefix ranges timed.
    #[arg(long, default_value_t = 100)]
    range_iters: usize,
    /// Number of watches.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Number of Watch streams the watches are spread over.
    #[arg(long, default_value_t = 10)]
    watch_streams: usize,
    /// Number of puts whose delivery to every watcher is timed.
    #[arg(long, default_value_t = 200)]
    watch_puts: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(n) = args.free_ports {
        return print_free_ports(n);
    }
    let endpoint = args.endpoint.clone().expect("clap requires --endpoint");
    wait_ready(&endpoint, Duration::from_secs_f64(args.wait_timeout)).await?;
    if args.wait_only {
        return Ok(());
    }

    let bench = Bench {
        value: vec![b'x'; args.value_size],
        endpoint,
        args,
    };
    for phase in &bench.args.phases {
        let outcome = match phase.as_str() {
            "put_seq" => bench.put_seq().await,
            "put" => bench.put_throughput().await,
            "range" => bench.range().await,
            "watch" => bench.watch().await,
            other => Err(anyhow::anyhow!("unknown phase {other:?}")),
        };
        if let Err(e) = outcome {
            let msg = format!("{e:#}").replace('\n', " ");
            println!("error {} {phase} {msg}", bench.args.name);
            eprintln!("[{}] phase {phase} failed: {msg}", bench.args.name);
        }
    }
    Ok(())
}

struct Bench {
    args: Args,
    endpoint: String,
    value: Vec<u8>,
}

impl Bench {
    fn result(&self, metric: &str, value: f64) {
        let v = if metric.ends_with("_ms") {
            format!("{value:.3}")
        } else {
            format!("{value:.0}")
        };
        println!("result {} {metric} {v}", self.args.name);
    }

    /// CPU seconds used so far by the server (with `--server-pid`) and by this client.
    fn cpu_seconds(&self) -> (Option<f64>, Option<f64>) {
        (
            self.args.server_pid.and_then(cpu_seconds),
            cpu_seconds(std::process::id()),
        )
    }

    fn progress(&self, msg: &str) {
        eprintln!("[{}] {msg}", self.args.name);
    }

    fn put(&self, key: String) -> PutRequest {
        PutRequest {
            key: key.into_bytes(),
            value: self.value.clone(),
            ..Default::default()
        }
    }

    /// Sequential puts, one in flight at a time.
    async fn put_seq(&self) -> Result<()> {
        let n = self.args.seq_puts;
        self.progress(&format!("put_seq: {n} sequential puts"));
        let mut kv = kv_client(connect(&self.endpoint).await?);
        for i in 0..WARMUP {
            kv.put(self.put(format!("/bench/seq/warmup/{i}"))).await?;
        }
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            kv.put(self.put(format!("/bench/seq/{i}"))).await.context("put")?;
            lat.push(t.elapsed());
        }
        lat.sort_unstable();
        self.result("put_seq_p50_ms", ms(pct(&lat, 0.50)));
        self.result("put_seq_p99_ms", ms(pct(&lat, 0.99)));
        Ok(())
    }

    /// Put throughput at each concurrency level, `--duration` seconds per level.
    async fn put_throughput(&self) -> Result<()> {
        let next_key = Arc::new(AtomicU64::new(0));
        for &clients in &self.args.clients {
            let dur = Duration::from_secs_f64(self.args.duration);
            self.progress(&format!("put: {clients} concurrent clients for {dur:?}"));
            let mut channels = Vec::new();
            for _ in 0..clients.div_ceil(CLIENTS_PER_CHANNEL) {
                let mut kv = kv_client(connect(&self.endpoint).await?);
                kv.put(self.put("/bench/put/warmup".into())).await?;
                channels.push(kv);
            }
            let cpu_before = self.cpu_seconds();
            let deadline = Instant::now() + dur;
            let mut tasks = Vec::with_capacity(clients);
            for c in 0..clients {
                let mut kv = channels[c / CLIENTS_PER_CHANNEL].clone();
                let next_key = next_key.clone();
                let value = self.value.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let key = format!("/bench/put/{}", next_key.fetch_add(1, Ordering::Relaxed));
                        let req = PutRequest {
                            key: key.into_bytes(),
                            value: value.clone(),
                            ..Default::default()
                        };
                        let t = Instant::now();
                        kv.put(req).await?;
                        let done = Instant::now();
                        if done <= deadline {
                            lat.push(done - t);
                        }
                    }
                    anyhow::Ok(lat)
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await??);
            }
            let cpu_after = self.cpu_seconds();
            lat.sort_unstable();
            self.result(&format!("put_c{clients}_ops"), lat.len() as f64 / dur.as_secs_f64());
            // CPU until the last put was answered, over the puts answered in time (all
            // but at most one per client).
            let puts = lat.len().max(1) as f64;
            for (who, (before, after)) in [
                ("server", (cpu_before.0, cpu_after.0)),
                ("client", (cpu_before.1, cpu_after.1)),
            ] {
                if let (Some(before), Some(after)) = (before, after) {
                    self.result(&format!("put_c{clients}_{who}_us"), (after - before) * 1e6 / puts);
                }
            }
            self.result(&format!("put_c{clients}_p50_ms"), ms(pct(&lat, 0.50)));
            self.result(&format!("put_c{clients}_p99_ms"), ms(pct(&lat, 0.99)));
        }
        Ok(())
    }

    /// Latency of a full range over a prefix holding `--range-keys` keys.
    async fn range(&self) -> Result<()> {
        let n = self.args.range_keys;
        let prefix = "/bench/range/";
        self.progress(&format!("range: loading {n} keys under {prefix}"));
        let next = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        let mut kv = None;
        for l in 0..64 {
            if l % CLIENTS_PER_CHANNEL == 0 {
                kv = Some(kv_client(connect(&self.endpoint).await?));
            }
            let (mut kv, next, value) = (kv.clone().unwrap(), next.clone(), self.value.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(());
                    }
                    let key = format!("{prefix}{i:06}").into_bytes();
                    kv.put(PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    })
                    .await?;
                }
            }));
        }
        for h in handles {
            h.await??;
        }

        self.progress(&format!("range: {} full ranges of {n} keys", self.args.range_iters));
        let mut kv = kv_client(connect(&self.endpoint).await?);
        let req = RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        };
        let mut lat = Vec::with_capacity(self.args.range_iters);
        for i in 0..self.args.range_iters + 2 {
            let t = Instant::now();
            let resp = kv.range(req.clone()).await.context("range")?.into_inner();
            let elapsed = t.elapsed();
            ensure!(
                resp.kvs.len() == n && !resp.more,
                "range returned {} keys (count {}, more {}), expected {n}",
                resp.kvs.len(),
                resp.count,
                resp.more
            );
            if i >= 2 {
                lat.push(elapsed); // the first two are warm-up
            }
        }
        lat.sort_unstable();
        self.result("range_p50_ms", ms(pct(&lat, 0.50)));
        self.result("range_p99_ms", ms(pct(&lat, 0.99)));
        Ok(())
    }

    /// Delivery latency of put events to many watchers of one prefix.
    async fn watch(&self) -> Result<()> {
        let (watchers, streams) = (self.args.watchers, self.args.watch_streams.max(1));
        let warmup = WATCH_WARMUP;
        let puts = warmup + self.args.watch_puts;
        let prefix = "/bench/watch/";
        self.progress(&format!(
            "watch: {watchers} watches over {streams} streams, {puts} puts"
        ));

        let base = Instant::now();
        // Nanoseconds since `base` at which put i was sent (0 = not yet sent).
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..puts).map(|_| AtomicU64::new(0)).collect());
        let delivered = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(Notify::new());
        let samples = Arc::new(Mutex::new(Vec::<u64>::with_capacity(watchers * puts)));

        // Streams are "clients" too: one channel per up to 16 of them.
        let mut channel = None;
        let mut senders = Vec::new(); // keep the request sides open until the end
        let mut readers = Vec::new();
        for s in 0..streams {
            if s % CLIENTS_PER_CHANNEL == 0 {
                channel = Some(connect(&self.endpoint).await?);
            }
            let n = watchers / streams + usize::from(s < watchers % streams);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            for _ in 0..n {
                let create = WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    ..Default::default()
                };
                tx.send(WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(create)),
                })?;
            }
            senders.push(tx);
            let mut client = WatchClient::new(channel.clone().unwrap()).max_decoding_message_size(usize::MAX);
            let mut stream = client.watch(UnboundedReceiverStream::new(rx)).await?.into_inner();
            let mut created = 0;
            while created < n {
                let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .with_context(|| format!("stream {s}: {created}/{n} watches created after 10s"))??
                    .context("watch stream ended")?;
                ensure!(!resp.canceled, "watch canceled: {}", resp.cancel_reason);
                created += usize::from(resp.created);
            }
            let (sent, delivered, notify, samples) = (sent.clone(), delivered.clone(), notify.clone(), samples.clone());
            readers.push(tokio::spawn(async move {
                while let Ok(Some(resp)) = stream.message().await {
                    let now = base.elapsed().as_nanos() as u64;
                    let mut local = Vec::new();
                    for ev in &resp.events {
                        let Some(kv) = &ev.kv else { continue };
                        let idx = kv
                            .key
                            .strip_prefix(prefix.as_bytes())
                            .and_then(|k| std::str::from_utf8(k).ok())
                            .and_then(|k| k.parse::<usize>().ok());
                        let Some(i) = idx.filter(|&i| i < sent.len()) else {
                            continue;
                        };
                        if i >= warmup {
                            local.push(now.saturating_sub(sent[i].load(Ordering::Acquire)));
                        }
                        delivered.fetch_add(1, Ordering::AcqRel);
                    }
                    if !local.is_empty() {
                        samples.lock().unwrap().extend(local);
                    }
                    notify.notify_one();
                }
            }));
        }

        let mut kv = kv_client(connect(&self.endpoint).await?);
        let mut timed_out = 0;
        for i in 0..puts {
            sent[i].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            kv.put(self.put(format!("{prefix}{i}"))).await.context("put")?;
            // Wait for every watcher to get this event before the next put.
            let target = (i + 1) * watchers;
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                let notified = notify.notified();
                if delivered.load(Ordering::Acquire) >= target {
                    break;
                }
                if tokio::time::timeout_at(until.into(), notified).await.is_err() {
                    timed_out += 1;
                    break;
                }
            }
            if timed_out >= 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(senders);
        readers.iter().for_each(|r| r.abort());

        let mut lat: Vec<Duration> = samples
            .lock()
            .unwrap()
            .iter()
            .map(|&n| Duration::from_nanos(n))
            .collect();
        lat.sort_unstable();
        let expected = self.args.watch_puts * watchers;
        self.result("watch_events", lat.len() as f64);
        self.result("watch_missing", expected.saturating_sub(lat.len()) as f64);
        ensure!(!lat.is_empty(), "no watch events received");
        self.result("watch_p50_ms", ms(pct(&lat, 0.50)));
        self.result("watch_p99_ms", ms(pct(&lat, 0.99)));
        if lat.len() < expected {
            bail!("only {} of {expected} watch events arrived", lat.len());
        }
        Ok(())
    }
}

async fn connect(endpoint: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// Retries a Range until the endpoint serves it.
async fn wait_ready(endpoint: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let mut kv = kv_client(connect(endpoint).await?);
            let req = RangeRequest {
                key: b"/bench/ready".to_vec(),
                ..Default::default()
            };
            kv.range(req).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if start.elapsed() > timeout => {
                return Err(e.context(format!("{endpoint} not ready after {timeout:?}")));
            }
            Err(_) if start.elapsed() > timeout => bail!("{endpoint} not ready after {timeout:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `WithPrefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
