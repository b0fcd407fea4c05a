//! What the benchmarks share: percentiles, readings of a process from /proc, free
//! ports for the scripts, and waiting for a freshly started API server.
#![allow(dead_code)] // each benchmark uses a part

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The `q` quantile (0..=1) of sorted durations, by nearest rank; zero when empty.
pub fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A `kB` field of /proc/PID/status (e.g. `VmRSS`) in MB.
pub fn proc_status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// Prints `n` free loopback ports, space-separated, for the benchmark scripts.
pub fn print_free_ports(n: usize) -> Result<()> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port().to_string()))
        .collect::<std::io::Result<_>>()?;
    println!("{}", ports.join(" "));
    Ok(())
}

/// Reads the kubeconfig once the server has written it.
pub async fn load_config(path: &Path, timeout: Duration) -> Result<kube::Config> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let kubeconfig = Kubeconfig::read_from(path)?;
            Ok::<_, anyhow::Error>(
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?,
            )
        };
        match attempt.await {
            Ok(config) => return Ok(config),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("no kubeconfig at {}", path.display())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until the API serves the `default` namespace.
pub async fn wait_ready(client: &Client, timeout: Duration) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), namespaces.get("default")).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if Instant::now() > deadline => bail!("the API is not ready: {e}"),
            Err(_) if Instant::now() > deadline => bail!("the API is not ready: no answer"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
