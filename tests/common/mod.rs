//! Shared helpers for the integration tests: start the real `kube server` on a fresh
//! data dir and a port of its own, drive it with the real `etcdctl` or the generated
//! gRPC clients, stop it (SIGKILL on drop, SIGTERM on request) and restart it on the
//! same data dir.
//!
//! Setting `KUBEBOX_TEST_AGAINST=etcd` makes [`Server::start_etcd_compatible`] start a
//! real etcd (from Debian's `etcd-server`) instead of `kube server`, so the etcd-level
//! tests can be checked against the reference implementation.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod agent;

/// The binary under test, built by cargo for this test run.
pub const KUBE: &str = env!("CARGO_BIN_EXE_kube");

/// How long a server may take from spawn to answering on its port.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody else in this test process was given, outside Linux's default
/// ephemeral range (32768-60999) so that outgoing client connections cannot take
/// it between our check and the server's bind, and never 2379/6443.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..1000 {
        let port: u16 = rand::random_range(20000..32000);
        let mut given = given.lock().unwrap();
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port found in 20000..32000");
}

/// Runs `cmd` and captures its result.
pub fn run(cmd: &mut Command) -> Out {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out::from(output)
}

/// Runs `cmd` to completion, SIGKILLing it and returning `None` after `timeout`.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Option<Out> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    status.map(|status| Out { status, stdout, stderr })
}

/// A finished command: exit status and its output as text.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(o: std::process::Output) -> Self {
        Out {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    /// The stdout of a command that must have succeeded.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(
            self.status.success(),
            "command failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// The stderr of a command that must have failed.
    #[track_caller]
    pub fn err(self) -> String {
        assert!(
            !self.status.success(),
            "command unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.stderr
    }
}

/// What a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Kube,
    RealEtcd,
}

/// One `kube server` child process on its own temp dir and port.
///
/// The temp dir holds `data/` (the `--data-dir`), `server.log` (stdout and stderr of
/// every start, appended) and whatever files a test puts there. Dropping the value
/// SIGKILLs the child and removes the temp dir; when the test is panicking the tail
/// of the log is printed first.
pub struct Server {
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub port: u16,
    /// Port of the Kubernetes API (HTTPS).
    pub api_port: u16,
    /// Port of the local node's kubelet API (HTTPS), when the agent runs.
    pub kubelet_port: u16,
    pub log: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    flavor: Flavor,
    /// Whether `--data-dir` and `--etcd-listen-address` are passed as flags.
    default_flags: bool,
    child: Option<Child>,
}

impl Server {
    /// A started and ready `kube server` with default flags.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A started and ready `kube server` with extra flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let mut s = Server::new(extra);
        s.spawn();
        s.wait_ready();
        s
    }

    /// Like [`Server::start`], but a real etcd when `KUBEBOX_TEST_AGAINST=etcd`. The
    /// control-plane loops (controllers, scheduler) do not run, so that the only
    /// writes to the store are the test's own, as with a bare etcd.
    pub fn start_etcd_compatible() -> Server {
        let mut s = Server::new(&[]);
        if std::env::var("KUBEBOX_TEST_AGAINST").as_deref() == Ok("etcd") {
            s.flavor = Flavor::RealEtcd;
        } else {
            s.args(&["--disable-controller-manager", "--disable-scheduler"]);
        }
        s.spawn();
        s.wait_ready();
        s
    }

    /// Prepared but not started: `--data-dir` and `--etcd-listen-address` plus `extra`.
    pub fn new(extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("kubebox-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("server.log");
        Server {
            data_dir,
            log,
            port: free_port(),
            api_port: free_port(),
            kubelet_port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
            flavor: Flavor::Kube,
            default_flags: true,
            child: None,
            dir,
        }
    }

    /// Prepared but not started, running `kube server EXTRA` with no flags of ours:
    /// the test supplies data dir and address (by flag, env or config file) itself.
    /// `data_dir` and `port` are still fresh and meant for that.
    pub fn bare(extra: &[&str]) -> Server {
        let mut s = Server::new(extra);
        s.default_flags = false;
        s
    }

    /// Adds command-line arguments for later starts.
    pub fn args(&mut self, extra: &[&str]) -> &mut Self {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// Sets an environment variable for later starts.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// The admin kubeconfig this server writes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// A started server whose Kubernetes API answers.
    pub fn start_api() -> Server {
        let server = Server::start();
        server.wait_api();
        server
    }

    /// Waits until the admin kubeconfig exists and `kubectl get --raw /readyz` succeeds.
    pub fn wait_api(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !(self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success()) {
            assert!(Instant::now() < deadline, "the Kubernetes API did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kubectl --kubeconfig <this server's admin kubeconfig> ARGS`, not yet run.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Out {
        run(&mut self.kubectl_command(args))
    }

    /// `https://127.0.0.1:PORT` of the Kubernetes API.
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// `127.0.0.1:PORT`, what etcdctl's `--endpoints` takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, what a tonic channel takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the child was started and has not been stopped or reaped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn is_real_etcd(&self) -> bool {
        self.flavor == Flavor::RealEtcd
    }

    /// The command line of one start of this server.
    pub fn command(&self) -> Command {
        let mut cmd = match self.flavor {
            Flavor::Kube => {
                let mut cmd = kube_command();
                cmd.arg("server");
                // The API server of every test server gets its own loopback port and
                // kubeconfig (tests may override these through `env`).
                cmd.env("KUBE_HTTPS_LISTEN_PORT", self.api_port.to_string())
                    .env("KUBE_BIND_ADDRESS", "127.0.0.1")
                    .env("KUBE_WRITE_KUBECONFIG", self.kubeconfig())
                    .env("KUBE_KUBELET_PORT", self.kubelet_port.to_string())
                    // No local node unless a test asks for one (`env("KUBE_DISABLE_AGENT", "false")`).
                    .env("KUBE_DISABLE_AGENT", "true");
                if self.default_flags {
                    cmd.arg("--data-dir")
                        .arg(&self.data_dir)
                        .arg("--etcd-listen-address")
                        .arg(self.endpoint());
                }
                cmd
            }
            Flavor::RealEtcd => {
                let peer = format!("http://127.0.0.1:{}", self.port + 1);
                let mut cmd = Command::new("etcd");
                cmd.arg("--data-dir")
                    .arg(self.data_dir.join("etcd"))
                    .args(["--name", "default"])
                    .args(["--listen-client-urls", &self.url()])
                    .args(["--advertise-client-urls", &self.url()])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &format!("default={peer}")]);
                cmd
            }
        };
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the child without waiting for it to be ready.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let mut cmd = self.command();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        self.child = Some(child);
    }

    /// Waits until the port accepts connections; panics (with the log) if the child
    /// exits or the time runs out.
    pub fn wait_ready(&mut self) {
        let addr: SocketAddr = self.endpoint().parse().unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "server exited before it was ready ({status}); log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "server not answering on {addr} after {READY_TIMEOUT:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, the way a power cut or the OOM killer ends a process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for the exit.
    /// Returns `None` (after SIGKILLing it) if the child did not exit in time.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.pid();
        send_signal(pid, signal);
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("server not running");
        let status = wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// SIGKILLs the child if it runs, then starts it again on the same data dir and
    /// port and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// Everything the server wrote to stdout and stderr so far (all starts).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs etcdctl against this server.
    pub fn etcdctl(&self, args: &[&str]) -> Out {
        etcdctl(&self.endpoint(), args, None)
    }

    /// Runs etcdctl against this server with `stdin` as its standard input.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        etcdctl(&self.endpoint(), args, Some(stdin))
    }

    /// A long-running etcdctl (e.g. `watch`) whose stdout lines can be awaited.
    pub fn etcdctl_stream(&self, args: &[&str]) -> LineStream {
        let mut cmd = etcdctl_command(&self.endpoint());
        cmd.args(args);
        LineStream::spawn(cmd)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of {} ----\n{}\n----",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// `kube` with a clean environment: no `KUBE_*` variable leaks in from the caller.
pub fn kube_command() -> Command {
    let mut cmd = Command::new(KUBE);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KUBE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `kube ARGS` to completion.
pub fn kube(args: &[&str]) -> Out {
    run(kube_command().args(args))
}

/// Sends a signal with the shell's `kill` (no libc in the tests).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {pid}"))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// etcdctl v3 aimed at one endpoint, with no ETCDCTL_* settings from the caller.
pub fn etcdctl_command(endpoint: &str) -> Command {
    let mut cmd = Command::new("etcdctl");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout=5s", "--command-timeout=15s"]);
    cmd
}

pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = etcdctl_command(endpoint);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A writer thread, so a large input cannot deadlock against unread output.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    Out::from(child.wait_with_output().expect("wait for etcdctl"))
}

/// Lines of a running child's stdout, readable with timeouts. The child is killed
/// on drop.
pub struct LineStream {
    child: Child,
    lines: Receiver<String>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<String>,
}

impl LineStream {
    pub fn spawn(mut cmd: Command) -> LineStream {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineStream {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The next line, or `None` when none came within `timeout` (or stdout closed).
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Reads exactly `expected.len()` lines and asserts they are `expected`.
    #[track_caller]
    pub fn expect_lines(&mut self, expected: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) => got.push(line),
                None => break,
            }
        }
        assert_eq!(
            got,
            expected,
            "unexpected output lines (stderr so far: {})",
            self.stderr_now()
        );
    }

    /// Asserts no further line arrives within `wait`.
    #[track_caller]
    pub fn expect_silence(&mut self, wait: Duration) {
        if let Some(line) = self.next_line(wait) {
            panic!("unexpected line {line:?}; all lines: {:?}", self.seen);
        }
    }

    /// Kills the child and returns its stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr_now()
    }

    /// Waits up to `timeout` for the child to exit on its own; its status and stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, String)> {
        let status = wait_timeout(&mut self.child, timeout)?;
        Some((status, self.stderr_now()))
    }

    /// The child's stderr; only complete once the child has exited.
    fn stderr_now(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_none() {
            return String::from("(child still running)");
        }
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as etcdctl's JSON output encodes keys and values.
pub fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Parses JSON output of `etcdctl -w json`.
#[track_caller]
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An integer field of etcdctl JSON (etcdctl prints them as numbers; missing = 0,
/// because Go omits zero values).
#[track_caller]
pub fn int(v: &serde_json::Value, pointer: &str) -> i64 {
    match v.pointer(pointer) {
        None => 0,
        Some(x) => x
            .as_i64()
            .or_else(|| x.as_u64().map(|u| u as i64))
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("{pointer} is not an integer in {v}")),
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// gRPC helpers over the generated etcd clients.
pub mod grpc {
    use std::time::{Duration, Instant};

    use kubebox::etcd::proto::etcdserverpb::kv_client::KvClient;
    use kubebox::etcd::proto::etcdserverpb::lease_client::LeaseClient;
    use kubebox::etcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use kubebox::etcd::proto::etcdserverpb::watch_client::WatchClient;
    use kubebox::etcd::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};
    use tokio::sync::mpsc;
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::{Channel, Endpoint};

    /// Large enough for a whole test keyspace in one Range response.
    pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

    /// A connected channel to `url`, retried for up to 10 s.
    pub async fn channel(url: &str) -> Channel {
        let endpoint = Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match endpoint.connect().await {
                Ok(ch) => return ch,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn kv(url: &str) -> KvClient<Channel> {
        KvClient::new(channel(url).await).max_decoding_message_size(MAX_MESSAGE)
    }

    pub async fn watch(url: &str) -> WatchClient<Channel> {
        WatchClient::new(channel(url).await).max_decoding_message_size(MAX_MESSAGE)
    }

    pub async fn lease(url: &str) -> LeaseClient<Channel> {
        LeaseClient::new(channel(url).await).max_decoding_message_size(MAX_MESSAGE)
    }

    pub async fn maintenance(url: &str) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(channel(url).await).max_decoding_message_size(MAX_MESSAGE)
    }

    /// One Watch stream: requests go in through `send`, responses come out of `next`.
    pub struct Watch {
        tx: mpsc::Sender<WatchRequest>,
        pub rx: tonic::Streaming<WatchResponse>,
    }

    impl Watch {
        /// Opens a stream whose first request creates a watch (a server may send no
        /// response headers before it has something to say, so the request goes
        /// first).
        pub async fn open(url: &str, create: WatchCreateRequest) -> Watch {
            let mut client = watch(url).await;
            let (tx, rx) = mpsc::channel(16);
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .await
            .unwrap();
            let rx = client
                .watch(ReceiverStream::new(rx))
                .await
                .expect("open watch stream")
                .into_inner();
            Watch { tx, rx }
        }

        /// A stream watching every key from `start`, and the watch id.
        pub async fn all_keys(url: &str, start: i64, prev_kv: bool) -> (Watch, i64) {
            let create = WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                start_revision: start,
                prev_kv,
                ..Default::default()
            };
            let mut w = Watch::open(url, create).await;
            let resp = w.next().await;
            assert!(resp.created, "first response must confirm the watch: {resp:?}");
            (w, resp.watch_id)
        }

        pub async fn send(&self, req: watch_request::RequestUnion) {
            self.tx
                .send(WatchRequest {
                    request_union: Some(req),
                })
                .await
                .expect("watch stream closed");
        }

        /// Creates another watch on this stream and returns its id.
        pub async fn create(&mut self, create: WatchCreateRequest) -> i64 {
            self.send(watch_request::RequestUnion::CreateRequest(create)).await;
            let resp = self.next().await;
            assert!(resp.created, "watch not created: {resp:?}");
            resp.watch_id
        }

        /// The next response, failing the test after 10 s.
        pub async fn next(&mut self) -> WatchResponse {
            tokio::time::timeout(Duration::from_secs(10), self.rx.next())
                .await
                .expect("no watch response within 10 s")
                .expect("watch stream ended")
                .expect("watch stream error")
        }

        /// The next response if one comes within `wait`.
        pub async fn next_within(&mut self, wait: Duration) -> Option<WatchResponse> {
            match tokio::time::timeout(wait, self.rx.next()).await {
                Ok(Some(Ok(resp))) => Some(resp),
                Ok(Some(Err(e))) => panic!("watch stream error: {e}"),
                Ok(None) => panic!("watch stream ended"),
                Err(_) => None,
            }
        }
    }
}
