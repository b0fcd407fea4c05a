//! The node agent (kubelet) of `kube server` (unless `--disable-agent`) and, later,
//! `kube agent`: it gets a container runtime (a supervised containerd, or the one
//! `--container-runtime-endpoint` names), imports the sandbox image and the airgap
//! images, writes the pod network's CNI config, registers the Node and keeps its
//! Lease and status fresh, and runs the pod workers.
//!
//! Start order, as the upstream kubelet and k3s's agent do it: runtime first (a node
//! is not Ready without one), images before pods (so no pod waits for an image the
//! node has on disk), the Node object before the CNI config (the pod range comes
//! from its `spec.podCIDR`), pods last.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod cni;
pub mod containerd;
pub mod cri;
pub mod images;
pub mod node;
pub mod pause;
pub mod pods;
pub mod registries;
pub mod server;

/// The agent's flags, shared by `kube server` and `kube agent` (k3s names).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Use this existing CRI socket (containerd) instead of starting containerd.
    #[arg(long, env = "KUBE_CONTAINER_RUNTIME_ENDPOINT", value_name = "SOCKET")]
    pub container_runtime_endpoint: Option<String>,
    /// Directory holding the CNI plugins [default: /usr/lib/cni, then /opt/cni/bin].
    #[arg(long, env = "KUBE_CNI_BIN_DIR", value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Name of the Linux bridge pods attach to (and of the CNI network); nodes that
    /// share a host need different names.
    #[arg(long, env = "KUBE_CNI_BRIDGE", default_value = "kube0")]
    pub cni_bridge: String,
    /// Port of the kubelet API (HTTPS); nodes that share a host need different ones.
    #[arg(long, env = "KUBE_KUBELET_PORT", default_value_t = server::DEFAULT_PORT, hide = true)]
    pub kubelet_port: u16,
    /// Private registry configuration (k3s `registries.yaml` shape: mirrors, auth,
    /// TLS) [default: /etc/kube/registries.yaml, when it exists].
    #[arg(long, env = "KUBE_PRIVATE_REGISTRY", value_name = "FILE")]
    pub private_registry: Option<PathBuf>,
    /// The node's InternalIP [default: the host's first IPv4 address outside the
    /// cluster CIDR].
    #[arg(long, env = "KUBE_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,
}

impl NodeArgs {
    /// The existing runtime socket, if one was given (`unix://` prefix allowed).
    pub fn runtime_socket(&self) -> Option<PathBuf> {
        self.container_runtime_endpoint
            .as_deref()
            .map(|e| PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)))
    }
}

/// Everything the agent needs to know about its node.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// Whether the node runs the control plane (`kube server`): it gets the
    /// `node-role.kubernetes.io/control-plane` label.
    pub control_plane: bool,
    pub cluster_cidr: (Ipv4Addr, u8),
    pub cluster_dns: Ipv4Addr,
    pub args: NodeArgs,
    /// The kubelet API's TLS identity: its serving certificate and the client CA
    /// the apiserver's certificate is checked against.
    pub kubelet_tls: Arc<rustls::ServerConfig>,
}

impl Config {
    /// `<data-dir>/agent`.
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    /// The airgap images directory: archives here are imported at every start.
    pub fn images_dir(&self) -> PathBuf {
        images_dir(&self.data_dir)
    }

    /// Where containerd's CRI plugin reads the CNI config from.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.agent_dir().join("etc").join("cni").join("net.d")
    }
}

/// `<data-dir>/agent/images`.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

/// The CRI socket for a data dir: the `--container-runtime-endpoint` if given,
/// else the supervised containerd's.
pub fn runtime_socket(data_dir: &Path, args: &NodeArgs) -> PathBuf {
    args.runtime_socket()
        .unwrap_or_else(|| containerd::Paths::new(data_dir).socket)
}

/// The node name: `--node-name`, else the host name (lower-cased).
pub fn node_name(flag: Option<&str>) -> String {
    flag.map(str::to_ascii_lowercase)
        .or_else(crate::pki::hostname)
        .unwrap_or_else(|| "localhost".to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Containerd(#[from] containerd::Error),
    #[error("importing the sandbox image: {0}")]
    SandboxImage(images::Error),
    #[error(transparent)]
    Cni(#[from] cni::Error),
    #[error("the pause (sandbox) image is not available for {0}")]
    Arch(&'static str),
    #[error(transparent)]
    KubeletApi(#[from] server::ServerError),
    #[error(transparent)]
    Node(#[from] node::Error),
    #[error(transparent)]
    Cri(#[from] cri::Error),
    #[error(transparent)]
    Registries(#[from] registries::Error),
}

/// How long the agent waits for the node IPAM controller to assign a pod range
/// before it takes a free one itself.
pub const POD_CIDR_WAIT: Duration = Duration::from_secs(3);

/// Runs the node agent until `shutdown`. Returns an error only when the node cannot
/// start (no runtime, no sandbox image): `kube server` then exits with it.
pub async fn run(config: Config, client: kube::Client, shutdown: CancellationToken) -> Result<(), Error> {
    cni::check_bridge_name(&config.args.cni_bridge)?;
    // The kubelet API's port first: a taken port fails the start before anything runs.
    let kubelet_listener = server::bind((Ipv4Addr::UNSPECIFIED, config.args.kubelet_port).into()).await?;
    let tasks = TaskTracker::new();
    let local = shutdown.child_token();
    let result = start(&config, client, kubelet_listener, &tasks, local.clone()).await;
    if result.is_err() {
        // Stop what did start (containerd) before reporting.
        local.cancel();
    }
    tasks.close();
    local.cancelled().await;
    tasks.wait().await;
    result
}

/// Starts the node's parts on `tasks`; returns once the pod workers run.
async fn start(
    config: &Config,
    client: kube::Client,
    kubelet_listener: tokio::net::TcpListener,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // 1. The container runtime.
    let registries = match &config.args.private_registry {
        Some(path) => registries::Registries::load(path, true)?,
        None => registries::Registries::load(Path::new(registries::DEFAULT_PATH), false)?,
    };
    for warning in registries.warnings() {
        tracing::warn!("{warning}");
    }
    let socket = match config.args.runtime_socket() {
        Some(socket) => {
            if registries != registries::Registries::default() {
                tracing::warn!("the registries file applies only to the containerd kube starts itself");
            }
            let version = containerd::wait_ready(&socket, Duration::from_secs(30)).await?;
            tracing::info!(socket = %socket.display(), %version, "using the existing container runtime");
            socket
        }
        None => {
            let settings = containerd::Settings {
                paths: containerd::Paths::new(&config.data_dir),
                sandbox_image: pause::IMAGE.to_string(),
                cni_bin_dir: containerd::find_cni_bin_dir(config.args.cni_bin_dir.as_deref())?,
                cni_conf_dir: config.cni_conf_dir(),
                restrict_oom_score_adj: containerd::lacks_cap_sys_resource(),
                registries,
            };
            let supervisor = containerd::Supervisor::start(&settings).await?;
            let socket = supervisor.socket().to_path_buf();
            tasks.spawn(supervisor.run(shutdown.clone()));
            socket
        }
    };
    let runtime: Arc<dyn cri::Runtime> = Arc::new(cri::Cri::new(&socket.to_string_lossy())?);

    // 2. Images: the sandbox image must be there before any pod; airgap archives next.
    let importer = images::Importer::new(&socket);
    let arch = pause::Arch::host().ok_or(Error::Arch(std::env::consts::ARCH))?;
    let imported = importer
        .import_memory(&pause::image(arch))
        .await
        .map_err(Error::SandboxImage)?;
    tracing::info!(image = %imported.name, "sandbox image ready");
    importer.import_dir(&config.images_dir()).await;

    // 3. The Node object (retried: the API may still be starting its loops).
    let node_config = node::NodeConfig {
        name: config.node_name.clone(),
        control_plane: config.control_plane,
        data_dir: config.data_dir.clone(),
        node_ip: config.args.node_ip,
        cluster_cidr: config.cluster_cidr,
        kubelet_port: config.args.kubelet_port,
    };
    let mut agent = node::NodeAgent::new(node_config, client.clone(), runtime.clone(), Arc::new(node::ProcHost));
    let mut delay = Duration::from_millis(200);
    loop {
        match agent.register().await {
            Ok(_) => break,
            Err(err) => {
                tracing::warn!(error = %err, "cannot register the node yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }

    // 4. The pod network on the node's pod range.
    let pod_cidr = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        cidr = agent.pod_cidr(POD_CIDR_WAIT) => cidr?,
    };
    let network = cni::Network {
        name: config.args.cni_bridge.clone(),
        bridge: config.args.cni_bridge.clone(),
        pod_cidr,
        cluster_cidr: config.cluster_cidr,
        ipam_dir: config.agent_dir().join("cni").join("networks"),
    };
    let path = cni::write(&config.cni_conf_dir(), &network)?;
    if let Err(err) = cni::Masquerade::ensure(&cni::Iptables, &network.bridge, pod_cidr, config.cluster_cidr) {
        tracing::warn!(error = %err, "cannot set up masquerading for pod traffic");
    }
    tracing::info!(path = %path.display(), pod_cidr = %cni::cidr_string(pod_cidr), "CNI config written");

    // 5. Heartbeat and status, then the pods.
    let node_ips = agent.addresses();
    tasks.spawn(agent.run(shutdown.clone()));

    let mut settings = pods::Settings::new(&config.data_dir);
    settings.cluster_dns = vec![IpAddr::V4(config.cluster_dns)];
    settings.node_ips = node_ips;
    tasks.spawn(pods::run(
        client.clone(),
        config.node_name.clone(),
        runtime.clone(),
        settings,
        shutdown.clone(),
    ));

    // 6. The kubelet API: logs, exec, attach, port-forward and stats for the apiserver.
    let kubelet = server::Kubelet::new(config.node_name.clone(), config.agent_dir(), runtime, client);
    tasks.spawn(server::run(
        Arc::new(kubelet),
        kubelet_listener,
        config.kubelet_tls.clone(),
        shutdown,
    ));
    Ok(())
}
