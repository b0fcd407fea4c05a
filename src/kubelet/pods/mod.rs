//! The kubelet's pod lifecycle: runs the pods bound to this node through CRI.
//!
//! [`run`] watches the pods with `spec.nodeName=<node>` (the kubelet's own watch, as
//! upstream's), keeps one [`worker`] per pod UID fed with pod updates and runtime
//! changes from the [`pleg`], and runs the [`gc`] and the [`events`] poster beside
//! them. On start it adopts whatever the runtime already runs for known pods (their
//! containers are never restarted) and removes what belongs to pods that are gone.
//! Shutdown leaves every container running, so restarting `kube` is invisible to
//! pods (like k3s with `KillMode=process`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::kubelet::cri::Runtime;

pub mod backoff;
pub mod containers;
pub mod env;
pub mod events;
#[cfg(test)]
pub mod fake;
pub mod gc;
pub mod handlers;
pub mod image_gc;
pub mod logs;
pub mod objects;
pub mod pleg;
pub mod probes;
pub mod quantity;
pub mod resources;
pub mod sandbox;
pub mod snapshot;
pub mod status;
pub mod volumes;
pub mod worker;

pub use resources::CgroupDriver;

/// What the pod lifecycle needs from the agent's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--cluster-dns`: the nameservers of ClusterFirst pods.
    pub cluster_dns: Vec<IpAddr>,
    /// `cluster.local`.
    pub cluster_domain: String,
    /// Pod directories (volumes, `/etc/hosts`): `<data-dir>/agent/pods`.
    pub pods_dir: PathBuf,
    /// Container logs, `/var/log/pods` upstream: `<data-dir>/agent/logs/pods`.
    pub logs_dir: PathBuf,
    /// The node's addresses: `status.hostIP(s)`, and pod IPs of hostNetwork pods.
    pub node_ips: Vec<IpAddr>,
    /// Must match the runtime's (`SystemdCgroup` in containerd's config).
    pub cgroup_driver: CgroupDriver,
    /// The resolver config `dnsPolicy: Default` pods get.
    pub resolv_conf: PathBuf,
}

impl Settings {
    /// Defaults for a node whose data dir is `data_dir`.
    pub fn new(data_dir: &Path) -> Settings {
        Settings {
            cluster_dns: vec![IpAddr::from([10, 43, 0, 10])],
            cluster_domain: "cluster.local".into(),
            pods_dir: data_dir.join("agent").join("pods"),
            logs_dir: data_dir.join("agent").join("logs").join("pods"),
            node_ips: Vec::new(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }

    #[cfg(test)]
    pub fn for_tests(dir: &str) -> Settings {
        Settings {
            node_ips: vec![IpAddr::from([192, 168, 0, 2])],
            ..Settings::new(Path::new(dir))
        }
    }
}

/// What every worker shares: the node's clients and facts.
pub struct Node {
    pub client: kube::Client,
    pub name: String,
    pub runtime: Arc<dyn Runtime>,
    pub objects: Arc<dyn objects::Objects>,
    pub mounter: Arc<dyn volumes::Mounter>,
    pub settings: Settings,
    pub recorder: events::Recorder,
    pub host_resolv: sandbox::ResolvConf,
    /// Image pulls are serialized (`serializeImagePulls`).
    pub pull_lock: tokio::sync::Mutex<()>,
    pub busy: Arc<pleg::Busy>,
    /// Image pull back-off, per image for the whole node.
    pub image_backoff: std::sync::Mutex<backoff::Backoff>,
    /// `containerd` (CRI `Version.runtime_name`), for container IDs.
    pub runtime_name: String,
    pub memory_capacity: i64,
    pub cpu_milli: i64,
}

/// The address this host uses to reach others (the source address of its default
/// route), for `status.hostIP` until the Node's own addresses say otherwise.
pub fn host_ip() -> Option<IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the route.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Runs the pods bound to `node_name` until shutdown.
pub async fn run(
    client: kube::Client,
    node_name: String,
    runtime: Arc<dyn Runtime>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let runtime_name = match runtime.version().await {
        Ok(v) if !v.runtime_name.is_empty() => v.runtime_name,
        _ => "containerd".to_string(),
    };
    for dir in [&settings.pods_dir, &settings.logs_dir] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create a kubelet directory");
        }
    }
    // Without ImageFsInfo, the images are taken to share the pods' filesystem.
    let image_fs_fallback = settings.pods_dir.clone();
    let (recorder, events_rx) = events::Recorder::new();
    let node = Arc::new(Node {
        objects: Arc::new(objects::ApiObjects::new(client.clone())),
        mounter: Arc::new(volumes::HostMounter),
        host_resolv: sandbox::ResolvConf::load(&settings.resolv_conf),
        client: client.clone(),
        name: node_name.clone(),
        runtime: runtime.clone(),
        settings,
        recorder,
        pull_lock: tokio::sync::Mutex::new(()),
        busy: Arc::new(pleg::Busy::default()),
        image_backoff: std::sync::Mutex::new(backoff::Backoff::containers()),
        runtime_name,
        memory_capacity: memory_capacity(),
        cpu_milli: std::thread::available_parallelism()
            .map(|n| n.get() as i64 * 1000)
            .unwrap_or(1000),
    });
    let known = Arc::new(gc::Known::default());
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();
    tokio::join!(
        events::run(client, node_name, events_rx, shutdown.clone()),
        pleg::run(runtime, node.busy.clone(), changed_tx, shutdown.clone()),
        gc::run(node.clone(), known.clone(), shutdown.clone()),
        image_gc::run(
            node.clone(),
            vec![crate::kubelet::pause::IMAGE.to_string()],
            image_fs_fallback,
            shutdown.clone()
        ),
        logs::run(node.clone(), shutdown.clone()),
        dispatch(node, known, changed_rx, shutdown),
    );
}

/// The pod watch and the workers.
async fn dispatch(
    node: Arc<Node>,
    known: Arc<gc::Known>,
    mut changed: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut pods = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, mpsc::UnboundedSender<worker::Update>> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut listing: Option<std::collections::HashSet<String>> = None;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let upsert =
        |pod: Pod, workers: &mut HashMap<String, mpsc::UnboundedSender<worker::Update>>, tasks: &mut JoinSet<()>| {
            let Some(uid) = pod.metadata.uid.clone() else { return };
            let pod = Arc::new(pod);
            if let Some(tx) = workers.get(&uid)
                && tx.send(worker::Update::Pod(pod.clone())).is_ok()
            {
                return;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            known.insert(&uid);
            workers.insert(uid, tx);
            let w = worker::Worker::new(node.clone(), pod);
            let (done, token) = (done_tx.clone(), shutdown.clone());
            tasks.spawn(async move {
                let uid = w.run(rx, token.clone()).await;
                if !token.is_cancelled() {
                    let _ = done.send(uid);
                }
            });
        };

    loop {
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = pods.next() => match event {
                Some(Ok(Event::Init)) => listing = Some(Default::default()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    upsert(pod, &mut workers, &mut tasks);
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(seen) = listing.take() {
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) {
                                let _ = tx.send(worker::Update::Removed);
                            }
                        }
                    }
                    known.synced();
                }
                Some(Ok(Event::Apply(pod))) => upsert(pod, &mut workers, &mut tasks),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                        let _ = tx.send(worker::Update::Removed);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "watching this node's pods"),
                None => break,
            },
            Some(uid) = changed.recv() => {
                if let Some(tx) = workers.get(&uid) {
                    let _ = tx.send(worker::Update::Runtime);
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                known.remove(&uid);
            }
        }
    }
    // Workers stop on the same token; wait for them so nothing is cut mid-call.
    while tasks.join_next().await.is_some() {}
}
