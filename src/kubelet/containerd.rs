//! The node's containerd: a supervised child process with a generated config, or an
//! existing runtime named by `--container-runtime-endpoint`.
//!
//! Mirrors what k3s does for its agent: containerd runs with its root, state, socket
//! and log under `<data-dir>/agent/containerd`, the CRI plugin enabled with our own
//! sandbox image and CNI directories, and `restrict_oom_score_adj` when the process
//! may not lower OOM scores (no `CAP_SYS_RESOURCE`, as in unprivileged containers).
//! If containerd dies it is started again with back-off. On shutdown it gets SIGTERM,
//! but the pods' `containerd-shim` processes are left running, like k3s's systemd unit
//! with `KillMode=process`: the next start of `kube` starts a new containerd that
//! reconnects to them, so restarting `kube` never restarts a container.
//!
//! containerd runs in its own process group (a Ctrl-C in the terminal reaches only
//! `kube`, which then stops containerd in order) and with a parent-death signal of
//! SIGTERM, so a `kube` killed with SIGKILL does not leave a containerd behind either.
//! The supervisor is a dedicated OS thread, because Linux sends the parent-death
//! signal when the *thread* that forked the child exits.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// containerd's namespace for everything CRI (pods, containers, images) lives in.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// The cgroup driver the generated config tells runc to use, and so the one the
/// kubelet must use for `cgroup_parent` (`/kubepods/...` paths, not systemd slices).
pub const CGROUP_DRIVER: &str = "cgroupfs";

/// The snapshotter the generated config selects for CRI (and images are unpacked into).
pub const SNAPSHOTTER: &str = "overlayfs";

/// How long containerd may take from spawn to answering on its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping containerd gets after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Restart back-off: first delay, cap, and how long a run must last to reset it.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{binary} not found: install the Debian package `{package}` (scripts/install-deps does)")]
    Missing { binary: String, package: &'static str },
    #[error("no CNI plugins found in {searched}: install the Debian package `containernetworking-plugins`")]
    NoCniPlugins { searched: String },
    #[error(
        "the containerd socket path {0} is too long for a unix socket (at most 107 bytes): use a shorter --data-dir"
    )]
    SocketPathTooLong(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registries(#[from] super::registries::Error),
    #[error("cannot start containerd: {0}")]
    Spawn(std::io::Error),
    #[error("containerd exited before it was ready ({status}); last lines of {log}:\n{tail}")]
    Exited { status: String, log: PathBuf, tail: String },
    #[error("containerd did not answer on {socket} within {timeout:?}; see {log}")]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("cannot reach the container runtime at {socket}: {message}")]
    Unreachable { socket: PathBuf, message: String },
}

/// Where a supervised containerd keeps its files: all under `<data-dir>/agent/containerd`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    /// Persistent data: content store, snapshots, metadata database.
    pub root: PathBuf,
    /// Runtime state: task bundles, shim sockets.
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// The CRI plugin's `registry.config_path`: one `<host>/hosts.toml` per registry.
    pub hosts_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Paths {
        let dir = data_dir.join("agent").join("containerd");
        Paths {
            root: dir.join("root"),
            state: dir.join("state"),
            socket: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            pid_file: dir.join("containerd.pid"),
            hosts_dir: dir.join("certs.d"),
            dir,
        }
    }
}

/// Everything the generated `config.toml` depends on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    /// The CRI sandbox ("pause") image reference; it must already be in containerd
    /// (the agent imports it at start), because nothing is pulled for it.
    pub sandbox_image: String,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// Set when the process lacks `CAP_SYS_RESOURCE` (see [`lacks_cap_sys_resource`]).
    pub restrict_oom_score_adj: bool,
    /// Private registries (mirrors, TLS, credentials) from `registries.yaml`.
    pub registries: super::registries::Registries,
}

/// Whether this process lacks `CAP_SYS_RESOURCE` (bit 24 of `CapEff` in
/// `/proc/self/status`). Without it runc cannot lower `oom_score_adj` and every CRI
/// sandbox fails, unless containerd is told to `restrict_oom_score_adj`.
pub fn lacks_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    match cap_eff(&status) {
        Some(caps) => caps & (1 << 24) == 0,
        None => true,
    }
}

fn cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Renders containerd's config (version 2, as containerd 1.6 reads it).
pub fn render_config(s: &Settings) -> String {
    let q = |p: &Path| toml_string(&p.to_string_lossy());
    format!(
        r#"# Generated by kube at every start; edits are overwritten.
version = 2
root = {root}
state = {state}
# Snapshotters this node never uses (they only log errors on most hosts).
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = {restrict}
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # exec/attach/port-forward streams: loopback only, a port of its own per containerd.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
{registry}"#,
        root = q(&s.paths.root),
        state = q(&s.paths.state),
        socket = q(&s.paths.socket),
        opt = q(&s.paths.dir.join("opt")),
        sandbox = toml_string(&s.sandbox_image),
        restrict = s.restrict_oom_score_adj,
        snapshotter = SNAPSHOTTER,
        cni_bin = q(&s.cni_bin_dir),
        cni_conf = q(&s.cni_conf_dir),
        registry = s.registries.cri_config(&s.paths.hosts_dir),
    )
}

/// Writes `text` to `path` with mode 0600 (also when the file already existed).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// A TOML basic string.
pub(super) fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The CNI plugin directories searched, in order, after `--cni-bin-dir`.
pub const CNI_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];
/// The CNI plugins the generated conflist uses.
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// The first directory (the flag's, then [`CNI_BIN_DIRS`]) holding every plugin in
/// [`CNI_PLUGINS`].
pub fn find_cni_bin_dir(flag: Option<&Path>) -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = flag.map(Path::to_path_buf).into_iter().collect();
    candidates.extend(CNI_BIN_DIRS.iter().map(PathBuf::from));
    candidates
        .iter()
        .find(|dir| CNI_PLUGINS.iter().all(|p| is_executable(&dir.join(p))))
        .cloned()
        .ok_or_else(|| Error::NoCniPlugins {
            searched: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks that the binaries a supervised containerd needs are installed.
pub fn check_binaries() -> Result<(), Error> {
    for (binary, package) in [
        ("containerd", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
        ("iptables", "iptables"),
    ] {
        if find_in_path(binary).is_none() {
            return Err(Error::Missing {
                binary: binary.to_string(),
                package,
            });
        }
    }
    Ok(())
}

/// The search path containerd (and runc, shims, CNI plugins) runs with: ours plus
/// the sbin directories a non-login shell may lack (runc and iptables live there).
fn search_path() -> String {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    dirs.join(":")
}

fn find_in_path(binary: &str) -> Option<PathBuf> {
    search_path()
        .split(':')
        .map(|d| Path::new(d).join(binary))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A gRPC channel over the unix socket at `socket` (lazy: it connects on first use
/// and reconnects after containerd restarts). containerd's API and its CRI services
/// share this one socket.
pub fn channel(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector always dials the socket.
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
}

/// Asks containerd for its version over `channel` (`containerd://1.6.20` style string
/// needs the CRI `Version` call; this is containerd's own API).
pub async fn version(channel: Channel) -> Result<String, tonic::Status> {
    let mut client = containerd_client::services::v1::version_client::VersionClient::new(channel);
    Ok(client.version(()).await?.into_inner().version)
}

/// Waits until the runtime at `socket` answers a version request.
pub async fn wait_ready(socket: &Path, timeout: Duration) -> Result<String, Error> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    loop {
        if socket.exists() {
            match tokio::time::timeout(Duration::from_secs(5), version(channel(socket))).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) => last = status.message().to_string(),
                Err(_) => last = "timed out".to_string(),
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Unreachable {
                socket: socket.to_path_buf(),
                message: last,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running supervised containerd. Dropping it does not stop containerd; call
/// [`Supervisor::run`] (which stops it at shutdown) or [`Supervisor::stop`].
pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    paths: Paths,
    /// The pid of the running containerd, 0 when none runs.
    pid: AtomicU32,
    stopping: AtomicBool,
    /// How many times containerd was (re)started.
    starts: AtomicU32,
    /// Wakes the supervisor thread out of a back-off sleep when stopping.
    wake: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Supervisor {
    /// Writes the config, stops a containerd left over from an earlier `kube` on the
    /// same data dir, starts containerd and waits until it answers on its socket.
    pub async fn start(settings: &Settings) -> Result<Supervisor, Error> {
        check_binaries()?;
        let paths = settings.paths.clone();
        if paths.socket.as_os_str().len() > 107 {
            return Err(Error::SocketPathTooLong(paths.socket.clone()));
        }
        for dir in [&paths.dir, &paths.root, &paths.state] {
            fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: "cannot create",
                path: dir.clone(),
                source,
            })?;
        }
        // The config may hold registry passwords: readable by root only.
        write_private(&paths.config, &render_config(settings)).map_err(|source| Error::Io {
            what: "cannot write",
            path: paths.config.clone(),
            source,
        })?;
        settings.registries.write_hosts(&paths.hosts_dir)?;
        {
            let paths = paths.clone();
            tokio::task::spawn_blocking(move || stop_leftover(&paths))
                .await
                .map_err(|e| Error::Spawn(std::io::Error::other(e)))?;
        }

        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (wake_tx, wake_rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            paths: paths.clone(),
            pid: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            starts: AtomicU32::new(0),
            wake: Mutex::new(Some(wake_tx)),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("containerd-supervisor".into())
                .spawn(move || supervise(shared, ready_tx, wake_rx))
                .map_err(Error::Spawn)?
        };
        let mut supervisor = Supervisor {
            shared,
            thread: Some(thread),
        };
        // The first start: a spawn error or an early exit fails the agent's start.
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                supervisor.stop().await;
                return Err(err);
            }
            Err(_) => {
                supervisor.stop().await;
                return Err(Error::Spawn(std::io::Error::other("supervisor thread ended")));
            }
        }
        let started = Instant::now();
        loop {
            // An exit before the first answer is a failed start, not something to retry.
            let exited = supervisor.shared.pid.load(Ordering::SeqCst) == 0 || supervisor.starts() > 1;
            if exited {
                supervisor.stop().await;
                return Err(Error::Exited {
                    status: "exit".into(),
                    log: paths.log.clone(),
                    tail: log_tail(&paths.log, 20),
                });
            }
            match wait_ready(&paths.socket, Duration::from_millis(500)).await {
                Ok(version) => {
                    tracing::info!(%version, socket = %paths.socket.display(), "containerd ready");
                    return Ok(supervisor);
                }
                Err(_) if started.elapsed() < READY_TIMEOUT => {}
                Err(_) => {
                    supervisor.stop().await;
                    return Err(Error::NotReady {
                        socket: paths.socket.clone(),
                        timeout: READY_TIMEOUT,
                        log: paths.log.clone(),
                    });
                }
            }
        }
    }

    /// The socket containerd (and its CRI plugin) listens on.
    pub fn socket(&self) -> &Path {
        &self.shared.paths.socket
    }

    /// The pid of the running containerd, if one runs right now.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// How many times containerd has been started by this supervisor.
    pub fn starts(&self) -> u32 {
        self.shared.starts.load(Ordering::SeqCst)
    }

    /// Keeps containerd running until `shutdown`, then stops it (its shims stay).
    pub async fn run(mut self, shutdown: CancellationToken) {
        shutdown.cancelled().await;
        self.stop().await;
    }

    /// Stops containerd: SIGTERM, then SIGKILL after a grace period. Pods' shims
    /// are separate processes and keep running.
    pub async fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut wake) = self.shared.wake.lock()
            && let Some(tx) = wake.take()
        {
            let _ = tx.send(());
        }
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGTERM);
        }
        let Some(thread) = self.thread.take() else { return };
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() {
                if Instant::now() > deadline {
                    let pid = shared.pid.load(Ordering::SeqCst);
                    if pid != 0 {
                        tracing::warn!(pid, "containerd did not stop within {STOP_TIMEOUT:?}; killing it");
                        signal(pid, libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = thread.join();
        })
        .await;
        let _ = fs::remove_file(&self.shared.paths.pid_file);
        tracing::info!("containerd stopped");
    }
}

/// The supervisor thread: starts containerd, reports the first start, waits for
/// it, and starts it again with back-off until told to stop.
fn supervise(
    shared: Arc<Shared>,
    ready: tokio::sync::oneshot::Sender<Result<(), Error>>,
    wake: std::sync::mpsc::Receiver<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = BACKOFF_INITIAL;
    while !shared.stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        let mut child = match spawn(&shared.paths) {
            Ok(child) => child,
            Err(err) => {
                tracing::error!(error = %err, "cannot start containerd");
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(err));
                    return;
                }
                if wake.recv_timeout(backoff).is_ok() {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        shared.pid.store(child.id(), Ordering::SeqCst);
        shared.starts.fetch_add(1, Ordering::SeqCst);
        let _ = fs::write(&shared.paths.pid_file, format!("{}\n", child.id()));
        tracing::info!(pid = child.id(), log = %shared.paths.log.display(), "containerd started");
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let status = child.wait();
        shared.pid.store(0, Ordering::SeqCst);
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        if started.elapsed() > BACKOFF_RESET_AFTER {
            backoff = BACKOFF_INITIAL;
        }
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        tracing::error!(%status, restart_in = ?backoff, tail = %log_tail(&shared.paths.log, 5), "containerd exited; restarting");
        if wake.recv_timeout(backoff).is_ok() {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// containerd's log is kept below this size: at each start a larger one is moved to
/// `containerd.log.1` (replacing the previous one).
const LOG_ROTATE_BYTES: u64 = 50 << 20;

fn spawn(paths: &Paths) -> Result<Child, Error> {
    if fs::metadata(&paths.log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = fs::rename(&paths.log, paths.log.with_extension("log.1"));
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|source| Error::Io {
            what: "cannot open",
            path: paths.log.clone(),
            source,
        })?;
    let log2 = log.try_clone().map_err(Error::Spawn)?;
    let parent = std::process::id();
    let mut cmd = Command::new("containerd");
    cmd.arg("--config")
        .arg(&paths.config)
        .env("PATH", search_path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Missing {
            binary: "containerd".into(),
            package: "containerd",
        },
        _ => Error::Spawn(e),
    })
}

/// Stops a containerd that an earlier `kube` on this data dir left running (its pid
/// file names a live process whose command line uses our config).
fn stop_leftover(paths: &Paths) {
    let Some(pid) = fs::read_to_string(&paths.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    let ours = |pid: u32| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"containerd"))
                && args.iter().any(|a| *a == paths.config.as_os_str().as_encoded_bytes())
        })
    };
    if !ours(pid) {
        return;
    }
    tracing::info!(pid, "stopping the containerd left by an earlier run");
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while ours(pid) {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) with a positive pid only sends a signal.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The last `lines` lines of `path` (read from its last 16 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut text = String::new();
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_ok() {
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bit_24() {
        assert_eq!(cap_eff("Name:\tx\nCapEff:\t000001fffeffffff\n"), Some(0x1fffeffffff));
        let without = cap_eff("CapEff:\t000001fffeffffff").unwrap();
        assert_eq!(without & (1 << 24), 0);
        let with = cap_eff("CapEff:\t000001ffffffffff").unwrap();
        assert_ne!(with & (1 << 24), 0);
        assert_eq!(cap_eff("nothing"), None);
    }

    #[test]
    fn config_quotes_paths_and_sets_cri() {
        let settings = Settings {
            paths: Paths::new(Path::new("/var/lib/we\"ird")),
            sandbox_image: "kube.local/pause:1".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/var/lib/kube/agent/etc/cni/net.d".into(),
            restrict_oom_score_adj: true,
            registries: Default::default(),
        };
        let config = render_config(&settings);
        assert!(
            config.contains(r#"root = "/var/lib/we\"ird/agent/containerd/root""#),
            "{config}"
        );
        assert!(config.contains(r#"address = "/var/lib/we\"ird/agent/containerd/containerd.sock""#));
        assert!(config.contains("restrict_oom_score_adj = true"));
        assert!(config.contains(r#"sandbox_image = "kube.local/pause:1""#));
        assert!(config.contains("SystemdCgroup = false"));
        assert!(config.contains(r#"bin_dir = "/usr/lib/cni""#));
        assert!(
            config.contains(r#"config_path = "/var/lib/we\"ird/agent/containerd/certs.d""#),
            "{config}"
        );
    }

    #[test]
    fn missing_cni_plugins_name_the_package() {
        let dir = std::env::temp_dir().join(format!("kube-no-cni-{}", std::process::id()));
        let err = match find_cni_bin_dir(Some(&dir)) {
            Err(e) => e.to_string(),
            // The host has the plugins installed: the flag's dir is skipped for them.
            Ok(found) => {
                assert_ne!(found, dir);
                return;
            }
        };
        assert!(err.contains("containernetworking-plugins"), "{err}");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&dir.path().join("none"), 2), "");
    }
}
