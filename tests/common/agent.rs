//! A `kube server` with its node agent for tests: its own containerd (socket, root
//! and state under the test's data dir), a CNI bridge and pod range no other test or
//! run uses, the busybox image built by `scripts/busybox-image` in its airgap
//! directory, and a Drop guard that leaves nothing behind even when the test panics:
//! pod sandboxes are stopped and removed through CRI (so CNI releases addresses and
//! veths), other containerd tasks are killed, `kube` is stopped with SIGTERM (which
//! stops its containerd), leftover shims and mounts under the data dir are killed and
//! unmounted, and the bridge and the masquerade chain are deleted.

use std::collections::HashSet;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{Server, eventually, run};

/// A started agent-enabled server; see the module docs.
pub struct AgentServer {
    pub server: Server,
    /// The CNI bridge (`--cni-bridge`).
    pub bridge: String,
    /// `--cluster-cidr`, e.g. `10.173.0.0/16`.
    pub cluster_cidr: String,
}

impl Deref for AgentServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for AgentServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// A second octet `X` such that `10.X.0.0/16` is in no route of the host and was
/// given to no other test of this process.
fn free_cluster_octet() -> u8 {
    static GIVEN: OnceLock<Mutex<HashSet<u8>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let routes = run(Command::new("ip").args(["-4", "route", "show", "table", "all"])).stdout;
    let used: HashSet<u8> = routes
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("10."))
        .filter_map(|rest| rest.split(['.', '/']).next()?.parse().ok())
        .collect();
    for _ in 0..1000 {
        let octet: u8 = rand::random_range(100..=250);
        let mut given = given.lock().unwrap();
        if !used.contains(&octet) && given.insert(octet) {
            return octet;
        }
    }
    panic!("no free 10.X.0.0/16 pod range");
}

impl AgentServer {
    /// Prepared, not started: the agent enabled, a unique bridge and pod range, the
    /// busybox image in `<data-dir>/agent/images`, plus `extra` flags.
    pub fn new(extra: &[&str]) -> AgentServer {
        // `--cni-bridge` and `--cluster-cidr` in `extra` replace the unique defaults.
        let mut bridge = format!("kt{}", rand::random_range(0..100_000u32));
        let mut cluster_cidr = format!("10.{}.0.0/16", free_cluster_octet());
        let mut rest = Vec::new();
        let mut i = 0;
        while i < extra.len() {
            match (extra[i], extra.get(i + 1)) {
                ("--cni-bridge", Some(v)) => bridge = v.to_string(),
                ("--cluster-cidr", Some(v)) => cluster_cidr = v.to_string(),
                (other, _) => {
                    rest.push(other);
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        let mut args = vec!["--cluster-cidr", cluster_cidr.as_str(), "--cni-bridge", bridge.as_str()];
        args.extend(rest);
        let mut server = Server::new(&args);
        server.env("KUBE_DISABLE_AGENT", "false");
        let images = server.data_dir.join("agent").join("images");
        build_busybox_image(&images.join("busybox.tar"), None);
        AgentServer {
            server,
            bridge,
            cluster_cidr,
        }
    }

    /// A started agent-enabled server whose API answers.
    pub fn start(extra: &[&str]) -> AgentServer {
        let mut agent = AgentServer::new(extra);
        agent.spawn();
        agent.wait_ready();
        agent.wait_api();
        agent
    }

    /// The node's containerd socket.
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("agent/containerd/containerd.sock")
    }

    /// `ctr --address <socket> -n k8s.io ARGS`.
    pub fn ctr(&self, args: &[&str]) -> super::Out {
        run(Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args))
    }

    /// The pid of the supervised containerd (from its pid file).
    pub fn containerd_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join("agent/containerd/containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The node, as `kubectl get node -o json` prints it.
    pub fn node_json(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.kubectl(&["get", "node", name, "-o", "json"]);
        out.status.success().then(|| super::json(&out.stdout))
    }

    /// Waits until node `name` is Ready; returns it.
    pub fn wait_node_ready(&self, name: &str, timeout: Duration) -> serde_json::Value {
        let mut last = None;
        let ready = eventually(timeout, || {
            last = self.node_json(name);
            last.as_ref().is_some_and(|n| condition(n, "Ready") == Some("True"))
        });
        assert!(ready, "node {name} not Ready within {timeout:?}: {last:?}");
        last.unwrap()
    }

    fn cleanup(&mut self) {
        // Pod sandboxes through CRI (network teardown), then any other task.
        if self.socket().exists() && self.server.is_running() {
            let socket = self.socket();
            let cleaned = std::thread::spawn(move || remove_sandboxes(&socket)).join();
            if cleaned.is_err() {
                eprintln!("agent cleanup: removing sandboxes failed");
            }
            let tasks = self.ctr(&["tasks", "ls", "-q"]).stdout;
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
                eventually(Duration::from_secs(5), || {
                    self.ctr(&["tasks", "rm", id]).status.success()
                });
            }
            for id in self
                .ctr(&["containers", "ls", "-q"])
                .stdout
                .lines()
                .filter(|l| !l.is_empty())
            {
                let _ = self.ctr(&["containers", "rm", id]);
            }
        }
        if self.server.is_running() {
            let _ = self.server.signal_and_wait("TERM", Duration::from_secs(20));
        }
        let dir = self.server.dir.path().to_path_buf();
        kill_processes_mentioning(&dir);
        unmount_under(&dir);
        let _ = run(Command::new("ip").args(["link", "del", &self.bridge]));
        let chain = format!("KUBE-MASQ-{}", self.bridge);
        while run(Command::new("iptables").args(["-w", "-t", "nat", "-D", "POSTROUTING", "-j", &chain]))
            .status
            .success()
        {}
        let _ = run(Command::new("iptables").args(["-w", "-t", "nat", "-F", &chain]));
        let _ = run(Command::new("iptables").args(["-w", "-t", "nat", "-X", &chain]));
    }
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The status of condition `kind` of a node or pod JSON.
pub fn condition<'a>(object: &'a serde_json::Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// Runs `scripts/busybox-image OUT [REF]`.
pub fn build_busybox_image(out: &Path, reference: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox-image");
    let mut cmd = Command::new(script);
    cmd.arg(out);
    if let Some(r) = reference {
        cmd.arg(r);
    }
    let result = run(&mut cmd);
    assert!(
        result.status.success(),
        "scripts/busybox-image failed: {}",
        result.stderr
    );
}

/// Stops and removes every CRI pod sandbox (which stops their containers and
/// releases their network).
fn remove_sandboxes(socket: &Path) {
    use kubebox::kubelet::cri::{Cri, Runtime};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    rt.block_on(async {
        let Ok(cri) = Cri::new(&socket.to_string_lossy()) else {
            return;
        };
        let Ok(sandboxes) = cri.list_pod_sandbox(None).await else {
            return;
        };
        for sandbox in sandboxes {
            let _ = cri.stop_pod_sandbox(&sandbox.id).await;
            let _ = cri.remove_pod_sandbox(&sandbox.id).await;
        }
    });
}

/// SIGKILLs every process whose command line mentions `dir` (shims name their
/// containerd's socket, containerd its config).
fn kill_processes_mentioning(dir: &Path) {
    let needle = dir.to_string_lossy().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = run(Command::new("kill").args(["-9", &pid.to_string()]));
        }
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let needle = dir.to_string_lossy().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&needle))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = run(Command::new("umount").args(["-l", &p]));
    }
}
