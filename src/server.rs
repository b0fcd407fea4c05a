//! `kube server`: wires the control plane: the store, its etcd endpoint and the
//! Kubernetes API over HTTPS with the cluster PKI. It owns the data dir (one server
//! per data dir, enforced with a lock), writes the admin kubeconfig, and shuts
//! everything down in order on SIGTERM/SIGINT.

use anyhow::{Context, bail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, auth};
use crate::informer::Informers;
use crate::store::{self, Store};
use crate::{client, controllers, etcd, kubelet, leader, pki, scheduler};

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Where the server keeps its state.
    #[arg(long, env = "KUBE_DATA_DIR", default_value = "/var/lib/kube")]
    pub data_dir: PathBuf,
    /// Address of the etcd v3 endpoint (loopback only).
    #[arg(long, env = "KUBE_ETCD_LISTEN_ADDRESS", default_value = "127.0.0.1:2379")]
    pub etcd_listen_address: SocketAddr,
    /// Do not serve the etcd endpoint.
    #[arg(long, env = "KUBE_DISABLE_ETCD_ENDPOINT")]
    pub disable_etcd_endpoint: bool,
    /// `full` fsyncs every commit (no acknowledged write lost on power loss);
    /// `normal` only survives a crash of the process.
    #[arg(long, env = "KUBE_DATASTORE_SYNC", value_enum, default_value_t = store::Sync::Full)]
    pub datastore_sync: store::Sync,
    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, env = "KUBE_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address the Kubernetes API listens on.
    #[arg(long, env = "KUBE_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Extra host names or IPs for the API serving certificate (repeatable).
    #[arg(long = "tls-san", env = "KUBE_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Where to write the admin kubeconfig.
    #[arg(long, env = "KUBE_WRITE_KUBECONFIG", default_value = "/etc/kube/kube.yaml")]
    pub write_kubeconfig: PathBuf,
    /// File mode of the admin kubeconfig, in octal.
    #[arg(long, env = "KUBE_WRITE_KUBECONFIG_MODE", default_value = "0600", value_parser = parse_mode)]
    pub write_kubeconfig_mode: u32,
    /// Static bearer tokens, one `token,user,uid,"group1,group2"` per line.
    #[arg(long, env = "KUBE_TOKEN_AUTH_FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// IPv4 range of Service cluster IPs; its first address is the `kubernetes` Service.
    #[arg(long, env = "KUBE_SERVICE_CIDR", default_value = "10.43.0.0/16", value_parser = parse_cidr)]
    pub service_cidr: (Ipv4Addr, u8),
    /// Port range for NodePort Services.
    #[arg(long, env = "KUBE_SERVICE_NODE_PORT_RANGE", default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: std::ops::RangeInclusive<u16>,
    /// IPv4 range of pod IPs; each node gets a /24 of it.
    #[arg(long, env = "KUBE_CLUSTER_CIDR", default_value = "10.42.0.0/16", value_parser = parse_cidr)]
    pub cluster_cidr: (Ipv4Addr, u8),
    /// The cluster DNS Service IP that pods resolve through.
    #[arg(long, env = "KUBE_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: Ipv4Addr,
    /// The name of the local node (default: the host name).
    #[arg(long, env = "KUBE_NODE_NAME")]
    pub node_name: Option<String>,
    /// Run only the control plane: no local node, containerd or pods.
    #[arg(long, env = "KUBE_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Do not run the scheduler.
    #[arg(long, env = "KUBE_DISABLE_SCHEDULER")]
    pub disable_scheduler: bool,
    /// Do not run the controllers.
    #[arg(long, env = "KUBE_DISABLE_CONTROLLER_MANAGER")]
    pub disable_controller_manager: bool,
    #[command(flatten)]
    pub node: kubelet::NodeArgs,
    /// How often the node lifecycle controller checks node health.
    #[arg(long, env = "KUBE_NODE_MONITOR_PERIOD", default_value = "5s", value_parser = parse_duration, hide = true)]
    pub node_monitor_period: std::time::Duration,
    /// How long a node may go without a heartbeat before it is marked Unknown.
    #[arg(long, env = "KUBE_NODE_MONITOR_GRACE_PERIOD", default_value = "40s", value_parser = parse_duration, hide = true)]
    pub node_monitor_grace_period: std::time::Duration,
    /// How long a new node may take to post its first status.
    #[arg(long, env = "KUBE_NODE_STARTUP_GRACE_PERIOD", default_value = "60s", value_parser = parse_duration, hide = true)]
    pub node_startup_grace_period: std::time::Duration,
}

/// A Go-style duration: `40s`, `1m30s`, `500ms`, `2h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration like 40s, 500ms or 1m30s");
    let mut total = std::time::Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let millis = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += std::time::Duration::from_millis(number.checked_mul(millis).ok_or_else(bad)?);
        rest = &rest[unit..];
    }
    Ok(total)
}

fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range like 30000-32767");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode like 0600"))
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("{s:?} is not an IPv4 CIDR like 10.43.0.0/16");
    let (ip, bits) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let bits: u8 = bits.parse().ok().filter(|b| (8..=30).contains(b)).ok_or_else(bad)?;
    let mask = u32::MAX << (32 - bits);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

impl ServerArgs {
    /// The `kubernetes` Service's cluster IP: the first address of the range.
    fn api_service_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(u32::from(self.service_cidr.0) + 1))
    }
}

/// The store's database inside a data dir.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir).with_context(|| format!("cannot create data dir {}", server_dir.display()))?;
    let _lock = lock_data_dir(&server_dir.join("kube.lock"), &args.data_dir)?;
    // Who this server is in leader-election Leases (kept across restarts).
    let leader_identity = leader::identity(&server_dir)
        .with_context(|| format!("cannot write the leader identity in {}", server_dir.display()))?;

    // Bind before opening anything, so a bad address has no side effects.
    let etcd_listener = match args.disable_etcd_endpoint {
        true => None,
        false => Some(etcd::bind(args.etcd_listen_address).await?),
    };
    let api_address = SocketAddr::new(args.bind_address, args.https_listen_port);
    let api_listener = tokio::net::TcpListener::bind(api_address)
        .await
        .with_context(|| format!("cannot listen on {api_address} for the Kubernetes API"))?;
    let authenticator = match &args.token_auth_file {
        Some(path) => auth::Authenticator::from_token_file(path)?,
        None => auth::Authenticator::new(),
    };
    let pki = {
        let sans = pki::Sans::apiserver(args.api_service_ip(), &args.tls_san)?;
        pki::Pki::load_or_create(&server_dir.join("tls"), &sans)?
    };
    let tls = pki::server_tls_config(&pki)?;
    // The local node's name and its kubelet API's serving certificate.
    let agent = match args.disable_agent {
        true => None,
        false => {
            let node_name = kubelet::node_name(args.node_name.as_deref());
            let tls = kubelet::server::tls_config(&pki, &args.data_dir.join("agent"), &node_name)?;
            Some((node_name, tls))
        }
    };

    let db = database_path(&args.data_dir);
    let store = {
        let path = db.clone();
        let options = store::Options {
            sync: args.datastore_sync,
        };
        tokio::task::spawn_blocking(move || Store::open(&path, options))
            .await?
            .with_context(|| format!("cannot open the store at {}", db.display()))?
    };
    tracing::info!(path = %db.display(), revision = store.revision(), "store open");

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(store.clone().run(shutdown.clone()));

    let ranges = api::kinds::ServiceRanges {
        network: args.service_cidr.0,
        bits: args.service_cidr.1,
        node_ports: args.service_node_port_range.clone(),
    };
    let api = api::Api::new(
        store.clone(),
        format!("{}:{}", advertised_ip(&args), args.https_listen_port),
        ranges,
    );
    let kubelet_client = pki::kubelet_client_tls_config(pki.server_ca_pem(), &pki.kubelet_client()?)?;
    api.set_kubelet_client(api::KubeletClient::new(kubelet_client));
    if let Err(status) = api::bootstrap(&api).await {
        close(store).await;
        bail!("bootstrapping the API failed: {status}");
    }
    let app = api::router(api, Arc::new(authenticator));
    tasks.spawn(api::tls::serve(api_listener, tls, app.clone(), shutdown.clone()));
    // One watch per kind for the whole process, shared by the controllers and the scheduler.
    let informers = Informers::new(
        client::in_process(app.clone(), client::identity::controller_manager()),
        tasks.clone(),
        shutdown.clone(),
    );
    if !args.disable_controller_manager {
        let client = client::in_process(app.clone(), client::identity::controller_manager());
        let settings = controllers::Settings {
            cluster_cidr: args.cluster_cidr,
            leader_identity: leader_identity.clone(),
            node_monitor_period: args.node_monitor_period,
            node_monitor_grace_period: args.node_monitor_grace_period,
            node_startup_grace_period: args.node_startup_grace_period,
        };
        tasks.spawn(controllers::run(client, informers.clone(), settings, shutdown.clone()));
    }
    if !args.disable_scheduler {
        let client = client::in_process(app.clone(), client::identity::scheduler());
        tasks.spawn(scheduler::run(
            client,
            informers.clone(),
            leader_identity.clone(),
            shutdown.clone(),
        ));
    }
    let kubeconfig_url = format!("https://127.0.0.1:{}", args.https_listen_port);
    pki::write_kubeconfig(
        &args.write_kubeconfig,
        args.write_kubeconfig_mode,
        &kubeconfig_url,
        &pki,
    )?;
    tracing::info!(address = %api_address, kubeconfig = %args.write_kubeconfig.display(), "Kubernetes API listening");

    let etcd_task = etcd_listener.map(|listener| tasks.spawn(etcd::serve(store.clone(), listener, shutdown.clone())));
    let agent_task = agent.map(|(node_name, kubelet_tls)| {
        let client = client::in_process(app.clone(), client::identity::node(&node_name));
        let config = kubelet::Config {
            data_dir: args.data_dir.clone(),
            node_name,
            control_plane: true,
            cluster_cidr: args.cluster_cidr,
            cluster_dns: args.cluster_dns,
            args: args.node.clone(),
            kubelet_tls,
        };
        tasks.spawn(kubelet::run(config, client, shutdown.clone()))
    });

    let failed = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            None
        }
        result = async {
            match etcd_task {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("etcd endpoint stopped unexpectedly"),
            Ok(Err(err)) => err.into(),
            Err(err) => err.into(),
        }),
        // The agent returns early only when the node cannot start.
        result = async {
            match agent_task {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => Some(match result {
            Ok(Ok(())) => anyhow::anyhow!("the node agent stopped unexpectedly"),
            Ok(Err(err)) => anyhow::anyhow!("the node agent cannot start: {err}"),
            Err(err) => err.into(),
        }),
    };

    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    close(store).await;
    tracing::info!("stopped");
    match failed {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The address other hosts reach the API on: the bind address, or the first
/// non-loopback address of the host when bound to all of them.
fn advertised_ip(args: &ServerArgs) -> IpAddr {
    if !args.bind_address.is_unspecified() {
        return args.bind_address;
    }
    pki::interface_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

async fn close(store: Store) {
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Takes the data dir's exclusive lock (released when the file is closed, even
/// on `kill -9`) and records our pid in it.
fn lock_data_dir(path: &Path, data_dir: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        let who = if pid.is_empty() {
            String::new()
        } else {
            format!(" (pid {pid})")
        };
        bail!(
            "another kube server{who} is already running with data dir {}",
            data_dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_like_go_ones() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "40", "s", "4x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
