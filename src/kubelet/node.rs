//! The Node object of this agent: registration, the node Lease heartbeat and the
//! node status, as the upstream kubelet's `kubelet_node_status.go` and
//! `nodelease` controller do it.
//!
//! - **Registration** creates the Node with its labels (`kubernetes.io/hostname`,
//!   `kubernetes.io/os`, `kubernetes.io/arch`, their `beta.` twins, and
//!   `node-role.kubernetes.io/control-plane=true` on servers) and a first status; a
//!   Node that already exists (a restart) keeps its other labels, spec and podCIDR.
//! - **Heartbeat**: the Lease `kube-node-lease/<node>` (duration 40 s) is renewed
//!   every 10 s. That is the only write an idle node makes.
//! - **Status** is computed every 10 s (every second while the node is not Ready)
//!   from real measurements: capacity and allocatable (cpu, memory, pods=110,
//!   ephemeral-storage of the data dir's filesystem), addresses, `nodeInfo`, the
//!   runtime's images, and the conditions MemoryPressure (MemAvailable < 100Mi),
//!   DiskPressure (data dir filesystem with less than 5% (k3s's default) or 2 GiB
//!   free, whichever is smaller, or less than 5% of its inodes),
//!   PIDPressure (< 10% of the pid limit free) and Ready (the runtime and its
//!   network, i.e. the CNI config, are ready). It is written (one merge patch of
//!   `nodes/<name>/status`) only when something changed or 5 minutes passed, with
//!   upstream's `lastHeartbeatTime` (every write) and `lastTransitionTime` (status
//!   changes) semantics.
//!
//! The host is read through the [`Host`] trait ([`ProcHost`] reads `/proc`, `statvfs`
//! and `/etc/os-release`), the runtime through [`cri::Runtime`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cni::{self, Cidr};
use super::cri;

/// Namespace of the node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `nodeLeaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Lease renewal: a quarter of the duration, as upstream.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// `nodeStatusUpdateFrequency`: how often the status is computed.
pub const STATUS_CHECK: Duration = Duration::from_secs(10);
/// How often it is computed while the node is not Ready yet.
pub const STATUS_CHECK_NOT_READY: Duration = Duration::from_secs(1);
/// `nodeStatusReportFrequency`: an unchanged status is still written this often.
pub const STATUS_REPORT: Duration = Duration::from_secs(300);
/// `maxPods`.
pub const MAX_PODS: u32 = 110;
/// Hard eviction threshold for memory (upstream's default), also subtracted from
/// allocatable memory.
pub const MEMORY_EVICTION: u64 = 100 << 20;
/// Disk pressure below this fraction of the data dir filesystem free (k3s's
/// `nodefs.available<5%`), also kept out of allocatable ephemeral storage...
pub const DISK_EVICTION_PERCENT: u64 = 5;
/// ... or below this many bytes, whichever is smaller: on a large disk 5% is many
/// gigabytes, far more than a node needs to keep running (a 1 TB disk with 40 GB
/// free is not under pressure).
pub const DISK_EVICTION_BYTES: u64 = 2 << 30;
/// Inode pressure below this fraction free (upstream's `nodefs.inodesFree<5%`).
pub const INODES_EVICTION_PERCENT: u64 = 5;
/// PID pressure below this fraction of the pid limit free.
pub const PID_EVICTION_PERCENT: u64 = 10;
/// Upstream's `nodeStatusMaxImages`.
const MAX_IMAGES: usize = 50;
/// The port the kubelet API serves on, announced in `daemonEndpoints`.
pub const KUBELET_PORT: u16 = 10250;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering node {name}: {source}")]
    Register { name: String, source: kube::Error },
    #[error("node {0} has no pod CIDR and none is free in the cluster CIDR")]
    NoPodCidr(String),
    #[error("node {name}: {source}")]
    Api { name: String, source: kube::Error },
}

/// Static facts about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub hostname: String,
    /// Non-loopback addresses of the host's interfaces.
    pub addresses: Vec<IpAddr>,
}

/// One measurement of the things the pressure conditions watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub memory_available: u64,
    pub fs_total: u64,
    pub fs_available: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub pid_limit: u64,
    pub pids: u64,
}

/// The host as the node status sees it.
pub trait Host: Send + Sync {
    fn info(&self) -> HostInfo;
    /// Measures memory, the filesystem holding `data_dir`, and processes.
    fn sample(&self, data_dir: &Path) -> Sample;
}

/// [`Host`] from `/proc`, `/sys`, `/etc` and `statvfs(2)`.
pub struct ProcHost;

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(text: &str, field: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `PRETTY_NAME` of an os-release file.
fn os_pretty_name(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim().trim_matches('"').to_string())
}

impl Host for ProcHost {
    fn info(&self) -> HostInfo {
        let meminfo_text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let machine_id = read_trim("/etc/machine-id");
        let system_uuid = {
            let uuid = read_trim("/sys/class/dmi/id/product_uuid");
            if uuid.is_empty() { machine_id.clone() } else { uuid }
        };
        HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_bytes: meminfo(&meminfo_text, "MemTotal").unwrap_or(0),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image: os_pretty_name(&os_release).unwrap_or_else(|| "Linux".to_string()),
            machine_id,
            system_uuid,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            hostname: crate::pki::hostname().unwrap_or_default(),
            addresses: crate::pki::interface_addresses()
                .into_iter()
                .filter(|ip| !ip.is_loopback())
                .collect(),
        }
    }

    fn sample(&self, data_dir: &Path) -> Sample {
        let meminfo_text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (fs_total, fs_available, inodes_total, inodes_free) = statvfs(data_dir).unwrap_or_default();
        // Running and total scheduling entities (threads): `0.00 0.01 0.05 2/345 6789`.
        let pids = read_trim("/proc/loadavg")
            .split_whitespace()
            .nth(3)
            .and_then(|f| f.split_once('/'))
            .and_then(|(_, total)| total.parse().ok())
            .unwrap_or(0);
        let pid_max: u64 = read_trim("/proc/sys/kernel/pid_max").parse().unwrap_or(32768);
        let threads_max: u64 = read_trim("/proc/sys/kernel/threads-max").parse().unwrap_or(pid_max);
        Sample {
            memory_available: meminfo(&meminfo_text, "MemAvailable").unwrap_or(0),
            fs_total,
            fs_available,
            inodes_total,
            inodes_free,
            pid_limit: pid_max.min(threads_max),
            pids,
        }
    }
}

/// (bytes total, bytes available to unprivileged users, inodes total, inodes free)
/// of the filesystem holding `path` (or its nearest existing ancestor).
pub fn statvfs(path: &Path) -> Option<(u64, u64, u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let mut path = path.to_path_buf();
    while !path.exists() {
        path = path.parent()?.to_path_buf();
    }
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((
        st.f_blocks as u64 * frsize,
        st.f_bavail as u64 * frsize,
        st.f_files as u64,
        st.f_ffree as u64,
    ))
}

/// What the node says about itself.
#[derive(Clone)]
pub struct NodeConfig {
    pub name: String,
    pub control_plane: bool,
    pub data_dir: PathBuf,
    /// `--node-ip`: the InternalIP (default: the host's first non-loopback IPv4
    /// address outside the cluster CIDR).
    pub node_ip: Option<IpAddr>,
    pub cluster_cidr: Cidr,
    pub kubelet_port: u16,
}

/// The labels this node sets on itself.
pub fn labels(name: &str, control_plane: bool) -> BTreeMap<String, String> {
    let arch = super::images::host_arch().to_string();
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch),
    ]);
    if control_plane {
        labels.insert("node-role.kubernetes.io/control-plane".to_string(), "true".to_string());
    }
    labels
}

/// The node's InternalIP.
pub fn internal_ip(config: &NodeConfig, info: &HostInfo) -> Option<IpAddr> {
    if let Some(ip) = config.node_ip {
        return Some(ip);
    }
    let outside_pods = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !cni::contains(config.cluster_cidr, (*v4, 32)),
        IpAddr::V6(_) => true,
    };
    info.addresses
        .iter()
        .find(|ip| ip.is_ipv4() && outside_pods(ip))
        .or_else(|| info.addresses.iter().find(|ip| outside_pods(ip)))
        .copied()
}

/// A condition's status, reason and message (upstream's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The pressure conditions from one sample, in upstream's order.
pub fn pressure_conditions(sample: &Sample) -> Vec<Condition> {
    let memory = sample.memory_available < MEMORY_EVICTION;
    let disk_floor = (sample.fs_total * DISK_EVICTION_PERCENT / 100).min(DISK_EVICTION_BYTES);
    let disk = (sample.fs_total > 0 && sample.fs_available < disk_floor)
        || (sample.inodes_total > 0 && sample.inodes_free * 100 < sample.inodes_total * INODES_EVICTION_PERCENT);
    let pid = sample.pid_limit > 0
        && sample.pid_limit.saturating_sub(sample.pids) * 100 < sample.pid_limit * PID_EVICTION_PERCENT;
    let cond = |kind, status: bool, yes: (&str, &str), no: (&str, &str)| {
        let (reason, message) = if status { yes } else { no };
        Condition {
            kind,
            status,
            reason: reason.to_string(),
            message: message.to_string(),
        }
    };
    vec![
        cond(
            "MemoryPressure",
            memory,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ),
        cond(
            "DiskPressure",
            disk,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        cond(
            "PIDPressure",
            pid,
            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ),
    ]
}

/// The Ready condition from the runtime's status (`None`: runtime unreachable).
pub fn ready_condition(runtime: Option<&cri::api::StatusResponse>, runtime_error: &str) -> Condition {
    let not_ready = |message: String| Condition {
        kind: "Ready",
        status: false,
        reason: "KubeletNotReady".to_string(),
        message,
    };
    let Some(status) = runtime else {
        return not_ready(format!("container runtime is down: {runtime_error}"));
    };
    let conditions = status.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let find = |kind: &str| conditions.iter().find(|c| c.r#type == kind);
    for (kind, what) in [
        (
            "RuntimeReady",
            "container runtime status check may not have completed yet",
        ),
        ("NetworkReady", "container runtime network not ready"),
    ] {
        match find(kind) {
            Some(c) if c.status => {}
            Some(c) => {
                return not_ready(format!(
                    "{what}: {kind}=false reason:{} message:{}",
                    c.reason, c.message
                ));
            }
            None => return not_ready(format!("{what}: {kind} missing")),
        }
    }
    Condition {
        kind: "Ready",
        status: true,
        reason: "KubeletReady".to_string(),
        message: "kubelet is posting ready status".to_string(),
    }
}

/// `status` without the parts that change on every write (heartbeat times), for
/// deciding whether anything changed.
fn comparable(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for c in conditions {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
            }
        }
    }
    status
}

/// The node's status writer and Lease keeper.
pub struct NodeAgent {
    pub config: NodeConfig,
    pub client: kube::Client,
    pub runtime: Arc<dyn cri::Runtime>,
    pub host: Arc<dyn Host>,
    info: HostInfo,
    kubelet_version: String,
    /// Each condition's status and when it last changed.
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
    last_posted: Option<(Value, Instant)>,
    uid: Option<String>,
}

impl NodeAgent {
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        runtime: Arc<dyn cri::Runtime>,
        host: Arc<dyn Host>,
    ) -> NodeAgent {
        let info = host.info();
        NodeAgent {
            config,
            client,
            runtime,
            host,
            info,
            kubelet_version: String::new(),
            transitions: BTreeMap::new(),
            last_posted: None,
            uid: None,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn api_err(&self) -> impl Fn(kube::Error) -> Error + '_ {
        |source| Error::Api {
            name: self.config.name.clone(),
            source,
        }
    }

    /// The node's addresses: InternalIP and Hostname.
    pub fn addresses(&self) -> Vec<IpAddr> {
        internal_ip(&self.config, &self.info).into_iter().collect()
    }

    /// Creates the Node, or updates the labels of the one a previous run created.
    /// Returns it as stored.
    pub async fn register(&mut self) -> Result<Node, Error> {
        if self.kubelet_version.is_empty() {
            self.kubelet_version = match self.client.apiserver_version().await {
                Ok(info) => info.git_version,
                Err(_) => format!("v{}", env!("CARGO_PKG_VERSION")),
            };
        }
        let labels = labels(&self.config.name, self.config.control_plane);
        let status = self.status().await;
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.config.name,
                "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
            },
            "spec": {},
            "status": status,
        }))
        .unwrap_or_default();
        let register_err = |source| Error::Register {
            name: self.config.name.clone(),
            source,
        };
        let node = match self.nodes().create(&PostParams::default(), &node).await {
            Ok(node) => {
                tracing::info!(node = %self.config.name, "node registered");
                node
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = json!({"metadata": {"labels": labels}});
                let node = self
                    .nodes()
                    .patch(&self.config.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(register_err)?;
                tracing::info!(node = %self.config.name, "node already registered; labels updated");
                node
            }
            Err(e) => return Err(register_err(e)),
        };
        self.uid = node.metadata.uid.clone();
        Ok(node)
    }

    /// The node's `spec.podCIDR`: waits up to `wait` for the node IPAM controller to
    /// assign one; if none comes, takes the first `/24` of the cluster CIDR no other
    /// node has and records it in the Node's spec itself (so a single server works
    /// without the controller, and the controller sees the range as taken).
    pub async fn pod_cidr(&self, wait: Duration) -> Result<Cidr, Error> {
        let deadline = Instant::now() + wait;
        loop {
            let node = self.nodes().get(&self.config.name).await.map_err(self.api_err())?;
            if let Some(cidr) = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(cni::parse_cidr)
            {
                return Ok(cidr);
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let others = self.nodes().list(&Default::default()).await.map_err(self.api_err())?;
        let taken: Vec<Cidr> = others
            .items
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
            .filter_map(cni::parse_cidr)
            .collect();
        let cidr = cni::first_free_subnet(self.config.cluster_cidr, &taken)
            .ok_or_else(|| Error::NoPodCidr(self.config.name.clone()))?;
        let text = cni::cidr_string(cidr);
        let patch = json!({"spec": {"podCIDR": text, "podCIDRs": [text]}});
        self.nodes()
            .patch(&self.config.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(self.api_err())?;
        tracing::info!(node = %self.config.name, pod_cidr = %text, "no pod CIDR assigned; took a free one");
        Ok(cidr)
    }

    /// The status as it would be written now (conditions with fresh heartbeat times).
    pub async fn status(&mut self) -> Value {
        let sample = self.host.sample(&self.config.data_dir);
        let runtime_status = self.runtime.status().await;
        let (runtime, runtime_error) = match &runtime_status {
            Ok(s) => (Some(s), String::new()),
            Err(e) => (None, e.message()),
        };
        let mut conditions = pressure_conditions(&sample);
        conditions.push(ready_condition(runtime, &runtime_error));
        let runtime_version = match self.runtime.version().await {
            Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(_) => String::new(),
        };
        let mut images: Vec<(u64, Vec<String>)> = match self.runtime.list_images().await {
            Ok(images) => images
                .into_iter()
                .map(|i| {
                    let mut names = i.repo_tags;
                    names.extend(i.repo_digests);
                    (i.size, names)
                })
                .filter(|(_, names)| !names.is_empty())
                .collect(),
            Err(_) => Vec::new(),
        };
        images.sort_by_key(|i| std::cmp::Reverse(i.0));
        images.truncate(MAX_IMAGES);

        let now = Timestamp::now();
        let conditions: Vec<Value> = conditions
            .into_iter()
            .map(|c| {
                let since = match self.transitions.get(c.kind) {
                    Some((status, since)) if *status == c.status => *since,
                    _ => {
                        self.transitions.insert(c.kind, (c.status, now));
                        now
                    }
                };
                json!({
                    "type": c.kind,
                    "status": if c.status { "True" } else { "False" },
                    "reason": c.reason,
                    "message": c.message,
                    "lastHeartbeatTime": now.to_string(),
                    "lastTransitionTime": since.to_string(),
                })
            })
            .collect();

        let info = &self.info;
        let memory_ki = info.memory_bytes / 1024;
        let allocatable_memory_ki = info.memory_bytes.saturating_sub(MEMORY_EVICTION) / 1024;
        let storage = sample.fs_total;
        let allocatable_storage = storage - storage * DISK_EVICTION_PERCENT / 100;
        let mut addresses: Vec<Value> = self
            .addresses()
            .into_iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
            .collect();
        addresses.push(json!({"type": "Hostname", "address": self.config.name}));
        json!({
            "capacity": {
                "cpu": info.cpus.to_string(),
                "memory": format!("{memory_ki}Ki"),
                "pods": MAX_PODS.to_string(),
                "ephemeral-storage": format!("{}Ki", storage / 1024),
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
            },
            "allocatable": {
                "cpu": info.cpus.to_string(),
                "memory": format!("{allocatable_memory_ki}Ki"),
                "pods": MAX_PODS.to_string(),
                "ephemeral-storage": allocatable_storage.to_string(),
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
            },
            "conditions": conditions,
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.config.kubelet_port}},
            "nodeInfo": {
                "machineID": info.machine_id,
                "systemUUID": info.system_uuid,
                "bootID": info.boot_id,
                "kernelVersion": info.kernel_version,
                "osImage": info.os_image,
                "containerRuntimeVersion": runtime_version,
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": super::images::host_arch(),
            },
            "images": images
                .into_iter()
                .map(|(size, names)| json!({"names": names, "sizeBytes": size}))
                .collect::<Vec<_>>(),
        })
    }

    /// Whether the last status written says Ready.
    pub fn is_ready(&self) -> bool {
        self.transitions.get("Ready").is_some_and(|(ready, _)| *ready)
    }

    /// Computes the status and writes it if it changed or the report interval
    /// passed. Returns whether it wrote.
    pub async fn sync_status(&mut self) -> Result<bool, Error> {
        let status = self.status().await;
        let now = Instant::now();
        let unchanged = self
            .last_posted
            .as_ref()
            .is_some_and(|(last, at)| comparable(last) == comparable(&status) && now - *at < STATUS_REPORT);
        if unchanged {
            return Ok(false);
        }
        let patch = json!({"status": status});
        self.nodes()
            .patch_status(&self.config.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(self.api_err())?;
        if self.last_posted.as_ref().map(|(s, _)| s["conditions"].clone()) != Some(status["conditions"].clone()) {
            let summary: Vec<String> = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or("")
                    )
                })
                .collect();
            tracing::info!(node = %self.config.name, conditions = %summary.join(","), "node status updated");
        }
        self.last_posted = Some((status, now));
        Ok(true)
    }

    fn lease(&self, existing: Option<&Lease>) -> Lease {
        let mut lease = existing.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(LEASE_NAMESPACE.to_string()),
                owner_references: self.uid.as_ref().map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: self.config.name.clone(),
                        uid: uid.clone(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.config.name.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease
    }

    /// Renews the node Lease (creating it if needed). `current` is the Lease as last
    /// written; it is replaced by the new one.
    pub async fn renew_lease(&self, current: &mut Option<Lease>) -> Result<(), Error> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        if let Some(existing) = current.as_ref() {
            let lease = self.lease(Some(existing));
            match api.replace(&self.config.name, &PostParams::default(), &lease).await {
                Ok(l) => {
                    *current = Some(l);
                    return Ok(());
                }
                // Someone else changed or deleted it: start again from the stored one.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => *current = None,
                Err(e) => return Err(self.api_err()(e)),
            }
        }
        let stored = match api.get_opt(&self.config.name).await.map_err(self.api_err())? {
            Some(existing) => {
                let lease = self.lease(Some(&existing));
                api.replace(&self.config.name, &PostParams::default(), &lease).await
            }
            None => api.create(&PostParams::default(), &self.lease(None)).await,
        };
        *current = Some(stored.map_err(self.api_err())?);
        Ok(())
    }

    /// Keeps the Lease and the status fresh until `shutdown`, starting with both at
    /// once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut lease = None;
        let mut next_lease = Instant::now();
        let mut next_status = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_lease) => {
                    if let Err(err) = self.renew_lease(&mut lease).await {
                        tracing::warn!(error = %err, "cannot renew the node lease");
                    }
                    next_lease = Instant::now() + LEASE_RENEW;
                }
                _ = tokio::time::sleep_until(next_status) => {
                    if let Err(err) = self.sync_status().await {
                        tracing::warn!(error = %err, "cannot update the node status");
                        // A deleted Node is registered again, as upstream.
                        if let Error::Api { source: kube::Error::Api(e), .. } = &err
                            && e.code == 404
                            && let Err(err) = self.register().await
                        {
                            tracing::warn!(error = %err, "cannot register the node again");
                        }
                    }
                    let every = if self.is_ready() { STATUS_CHECK } else { STATUS_CHECK_NOT_READY };
                    next_status = Instant::now() + every;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const GI: u64 = 1 << 30;

    fn sample() -> Sample {
        Sample {
            memory_available: 8 * GI,
            fs_total: 100 * GI,
            fs_available: 50 * GI,
            inodes_total: 1000,
            inodes_free: 500,
            pid_limit: 4_000_000,
            pids: 500,
        }
    }

    fn statuses(s: &Sample) -> Vec<(&'static str, bool)> {
        pressure_conditions(s).into_iter().map(|c| (c.kind, c.status)).collect()
    }

    #[test]
    fn pressure_thresholds() {
        let ok = sample();
        assert_eq!(
            statuses(&ok),
            [
                ("MemoryPressure", false),
                ("DiskPressure", false),
                ("PIDPressure", false)
            ]
        );
        let memory = Sample {
            memory_available: 99 << 20,
            ..ok
        };
        assert!(statuses(&memory)[0].1);
        let disk = Sample { fs_available: GI, ..ok };
        assert!(statuses(&disk)[1].1);
        // 4% of a big disk is still 4 GiB: no pressure.
        let big = Sample {
            fs_available: 4 * GI,
            ..ok
        };
        assert!(!statuses(&big)[1].1);
        let small_disk = Sample {
            fs_total: 10 * GI,
            fs_available: GI / 3,
            ..ok
        };
        assert!(statuses(&small_disk)[1].1);
        let inodes = Sample { inodes_free: 40, ..ok };
        assert!(statuses(&inodes)[1].1);
        let pids = Sample { pids: 3_700_000, ..ok };
        assert!(statuses(&pids)[2].1);
        let c = &pressure_conditions(&memory)[0];
        assert_eq!(c.reason, "KubeletHasInsufficientMemory");
    }

    #[test]
    fn ready_needs_runtime_and_network() {
        let status = |runtime: bool, network: bool| cri::api::StatusResponse {
            status: Some(cri::api::RuntimeStatus {
                conditions: vec![
                    cri::api::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: runtime,
                        ..Default::default()
                    },
                    cri::api::RuntimeCondition {
                        r#type: "NetworkReady".into(),
                        status: network,
                        reason: "NetworkPluginNotReady".into(),
                        message: "cni config uninitialized".into(),
                    },
                ],
            }),
            ..Default::default()
        };
        assert!(ready_condition(Some(&status(true, true)), "").status);
        let not = ready_condition(Some(&status(true, false)), "");
        assert!(!not.status);
        assert_eq!(not.reason, "KubeletNotReady");
        assert!(not.message.contains("network not ready"), "{}", not.message);
        let down = ready_condition(None, "connection refused");
        assert!(!down.status && down.message.contains("connection refused"));
    }

    #[test]
    fn labels_and_addresses() {
        let l = labels("n1", true);
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert!(!labels("n1", false).contains_key("node-role.kubernetes.io/control-plane"));
        let config = NodeConfig {
            name: "n1".into(),
            control_plane: false,
            data_dir: "/tmp".into(),
            node_ip: None,
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            kubelet_port: KUBELET_PORT,
        };
        let info = HostInfo {
            addresses: vec![
                "fd00::1".parse().unwrap(),
                "10.42.0.1".parse().unwrap(),
                "192.168.1.5".parse().unwrap(),
            ],
            ..Default::default()
        };
        assert_eq!(internal_ip(&config, &info), Some("192.168.1.5".parse().unwrap()));
        let forced = NodeConfig {
            node_ip: Some("10.0.0.9".parse().unwrap()),
            ..config
        };
        assert_eq!(internal_ip(&forced, &info), Some("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn host_facts_parse() {
        assert_eq!(
            meminfo("MemTotal:       16000 kB\nMemAvailable:    8000 kB\n", "MemAvailable"),
            Some(8000 * 1024)
        );
        assert_eq!(meminfo("MemTotalX: 1 kB", "MemTotal"), None);
        assert_eq!(
            os_pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let real = ProcHost.sample(Path::new("/"));
        assert!(real.fs_total > 0 && real.pid_limit > 0 && real.pids > 0);
        assert!(ProcHost.info().memory_bytes > 0);
    }

    #[test]
    fn heartbeat_times_do_not_count_as_changes() {
        let a = json!({"conditions": [{"type": "Ready", "lastHeartbeatTime": "1", "lastTransitionTime": "0"}]});
        let b = json!({"conditions": [{"type": "Ready", "lastHeartbeatTime": "2", "lastTransitionTime": "0"}]});
        let c = json!({"conditions": [{"type": "Ready", "lastHeartbeatTime": "2", "lastTransitionTime": "2"}]});
        assert_eq!(comparable(&a), comparable(&b));
        assert_ne!(comparable(&a), comparable(&c));
    }
}
