//! The kubelet API and the apiserver subresources that reach it, end to end: a real
//! `kube server` with its agent (its own containerd and CNI bridge, the busybox
//! image from `scripts/busybox-image`), driven with the real kubectl: `logs` (with
//! `-f`, `--previous`, `--tail`, `--timestamps`, `-c`), `exec` (output, exit code,
//! stdin, a TTY), `attach`, `port-forward`, `cp`, `nodes/proxy`, and the kubelet
//! port refusing anyone but the apiserver. One node runs every scenario, one after
//! another, on pods started side by side at the beginning.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static
//! (`scripts/install-deps`).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LineStream, Server, eventually};
use serde_json::Value;

const NODE: &str = "kapi-test-node";

/// The test's node. Dropping it deletes every pod, waits for their containers to
/// go, stops the server (and so its containerd) and removes the bridge.
struct Node {
    server: Server,
    bridge: String,
}

impl std::ops::Deref for Node {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let server = &self.server;
        let _ = server.kubectl(&["delete", "pods", "--all", "--grace-period=1", "--wait=false"]);
        let socket = server.data_dir.join("agent/containerd/containerd.sock");
        eventually(Duration::from_secs(30), || {
            let out = common::run(Command::new("ctr").arg("-a").arg(&socket).args([
                "-n",
                "k8s.io",
                "containers",
                "ls",
                "-q",
            ]));
            out.stdout.trim().is_empty()
        });
        let _ = self.server.signal_and_wait("TERM", Duration::from_secs(30));
        let bridge = &self.bridge;
        let chain = format!("KUBE-MASQ-{bridge}");
        let _ = common::run(Command::new("ip").args(["link", "del", bridge]));
        let _ = common::run(Command::new("iptables").args(["-t", "nat", "-D", "POSTROUTING", "-j", &chain]));
        let _ = common::run(Command::new("iptables").args(["-t", "nat", "-F", &chain]));
        let _ = common::run(Command::new("iptables").args(["-t", "nat", "-X", &chain]));
    }
}

fn start_node() -> Node {
    let tag: u16 = rand::random_range(0..10000);
    let octet = 100 + (tag % 100);
    let bridge = format!("ka{tag}");
    let mut server = Server::new(&[
        "--node-name",
        NODE,
        "--cluster-cidr",
        &format!("10.{octet}.0.0/16"),
        "--cni-bridge",
        &bridge,
    ]);
    server.env("KUBE_DISABLE_AGENT", "false");
    let images = server.data_dir.join("agent").join("images");
    std::fs::create_dir_all(&images).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox-image");
    let out = common::run(Command::new(script).arg(images.join("busybox.tar")));
    assert!(out.status.success(), "building the busybox image: {}", out.stderr);
    let mut node = Node { server, bridge };
    node.server.spawn();
    node.server.wait_ready();
    node.server.wait_api();
    node.wait_node_registered();
    node
}

impl Node {
    /// The agent registers its Node, saying where its kubelet API listens.
    fn wait_node_registered(&self) {
        let mut node = Value::Null;
        let registered = eventually(Duration::from_secs(60), || {
            node = serde_json::from_str(&self.kubectl(&["get", "node", NODE, "-o", "json"]).stdout).unwrap_or_default();
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].is_u64()
        });
        assert!(registered, "the node did not register: {node:#}");
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            u64::from(self.kubelet_port),
            "the Node's kubelet port"
        );
        let addresses = node["status"]["addresses"].as_array().cloned().unwrap_or_default();
        assert!(addresses.iter().any(|a| a["type"] == "InternalIP"), "{addresses:?}");
    }

    fn apply(&self, yaml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = common::write_file(dir.path(), "manifest.yaml", yaml);
        self.kubectl(&["apply", "-f", file.to_str().unwrap()]).ok();
    }

    fn pod(&self, name: &str) -> Value {
        serde_json::from_str(&self.kubectl(&["get", "pod", name, "-o", "json"]).stdout).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn wait_pod(&self, name: &str, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let ok = eventually(Duration::from_secs(60), || {
            last = self.pod(name);
            f(&last)
        });
        assert!(ok, "pod {name}: {what}; last seen:\n{last:#}");
        last
    }

    /// kubectl with `stdin` as its input.
    fn kubectl_stdin(&self, args: &[&str], stdin: &[u8]) -> common::Out {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        common::Out::from(child.wait_with_output().unwrap())
    }
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.iter().all(|c| c["state"]["running"].is_object()))
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: kapi-test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
---
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  nodeName: kapi-test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do echo a-$i; i=$((i+1)); sleep 0.3; done"]
  - name: b
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo b-says-hi; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: again}
spec:
  nodeName: kapi-test-node
  terminationGracePeriodSeconds: 1
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    volumeMounts: [{name: data, mountPath: /data}]
    command: ["sh", "-c", "n=$(cat /data/n 2>/dev/null || echo 0); echo run-$n; echo $((n+1)) > /data/n; [ $n = 0 ] && exit 1; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  nodeName: kapi-test-node
  restartPolicy: Never
  containers:
  - name: t
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.4; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {no-such-label: "true"}
  containers: [{name: c, image: busybox}]
"#;

#[test]
fn kubectl_reaches_containers_through_the_kubelet_api() {
    let node = start_node();
    node.apply(PODS);
    let mut follow = None;
    let ticker = node.wait_pod("ticker", "running", |p| {
        if running(p) && follow.is_none() {
            follow = Some((
                Instant::now(),
                LineStream::spawn(node.kubectl_command(&["logs", "-f", "ticker"])),
            ));
        }
        follow.is_some() || p["status"]["phase"] == "Succeeded"
    });
    assert!(
        follow.is_some(),
        "ticker finished before it was seen running: {ticker:#}"
    );

    follows_logs_until_the_container_exits(&node, follow.take().unwrap());
    reads_logs_of_a_pod_with_two_containers(&node);
    reads_the_previous_container_after_a_restart(&node);
    execs_commands(&node);
    forwards_ports_and_copies_files(&node);
    python_client_streams_over_websocket(&node);
    refuses_unscheduled_pods(&node);
    serves_only_the_apiserver(&node);
}

fn follows_logs_until_the_container_exits(node: &Node, (started, mut stream): (Instant, LineStream)) {
    let mut arrivals = Vec::new();
    for i in 1..=8 {
        let line = stream.next_line(Duration::from_secs(10));
        assert_eq!(line.as_deref(), Some(format!("tick-{i}").as_str()), "{:?}", stream.seen);
        arrivals.push(started.elapsed());
    }
    // Streamed as written, not at the end.
    assert!(
        arrivals[7] - arrivals[0] >= Duration::from_millis(1500),
        "lines arrived at {arrivals:?}"
    );
    let (status, stderr) = stream
        .wait_exit(Duration::from_secs(10))
        .expect("kubectl logs -f did not end when the container exited");
    assert!(status.success(), "{stderr}");

    node.wait_pod("ticker", "Succeeded", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(node.kubectl(&["logs", "ticker", "--tail=2"]).ok(), "tick-7\ntick-8\n");
    let stamped = node.kubectl(&["logs", "ticker", "--timestamps", "--tail=1"]).ok();
    let (time, text) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "tick-8");
    assert_eq!(time.len(), "2006-01-02T15:04:05.000000000Z".len(), "{stamped}");
    assert_eq!(node.kubectl(&["logs", "ticker", "--limit-bytes=8"]).ok(), "tick-1\nt");
    // A since time after the last line leaves nothing.
    assert_eq!(
        node.kubectl(&["logs", "ticker", "--since-time=2099-01-01T00:00:00Z"])
            .ok(),
        ""
    );
    let all = node.kubectl(&["logs", "ticker", "--since=1h"]).ok();
    assert_eq!(all.lines().count(), 8, "{all}");
}

fn reads_logs_of_a_pod_with_two_containers(node: &Node) {
    node.wait_pod("two", "running", running);
    assert!(eventually(Duration::from_secs(10), || node
        .kubectl(&["logs", "two", "-c", "b"])
        .stdout
        == "b-says-hi\n"));
    let a = node.kubectl(&["logs", "two", "-c", "a", "--tail=1"]).ok();
    assert!(a.starts_with("a-"), "{a}");
    // kubectl picks a container itself; the API insists on one, as kube-apiserver does.
    let err = node
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"])
        .err();
    assert!(
        err.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{err}"
    );
    let err = node
        .kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log?container=c"])
        .err();
    assert!(err.contains("container c is not valid for pod two"), "{err}");
    let err = node
        .kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/two/log?container=a&tailLines=-1",
        ])
        .err();
    assert!(err.contains("tailLines: Invalid value: -1"), "{err}");

    let mut attach = LineStream::spawn(node.kubectl_command(&["attach", "two", "-c", "a"]));
    let line = attach.next_line(Duration::from_secs(10));
    assert!(
        line.as_deref().is_some_and(|l| l.starts_with("a-")),
        "{:?}",
        attach.seen
    );
    attach.stop();
}

fn reads_the_previous_container_after_a_restart(node: &Node) {
    node.wait_pod("again", "restarted once and running", |p| {
        let c = &p["status"]["containerStatuses"][0];
        c["restartCount"] == 1 && c["state"]["running"].is_object()
    });
    assert!(
        eventually(Duration::from_secs(10), || node.kubectl(&["logs", "again"]).stdout
            == "run-1\n"),
        "{:?}",
        node.kubectl(&["logs", "again"])
    );
    assert_eq!(node.kubectl(&["logs", "again", "--previous"]).ok(), "run-0\n");
    let err = node.kubectl(&["logs", "web", "--previous"]).err();
    assert!(
        err.contains("previous terminated container \"httpd\" in pod \"web\" not found"),
        "{err}"
    );
}

fn execs_commands(node: &Node) {
    node.wait_pod("web", "running", running);
    assert_eq!(
        node.kubectl(&["exec", "web", "--", "cat", "/etc/hostname"]).ok(),
        "web\n"
    );
    let out = node.kubectl(&["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{}", out.stderr);
    let out = node.kubectl_stdin(&["exec", "-i", "web", "--", "sh", "-c", "tr a-z A-Z"], b"piped input\n");
    assert_eq!(out.ok(), "PIPED INPUT\n");

    // A terminal: `script` gives kubectl one.
    let kubectl = format!(
        "kubectl --kubeconfig {} exec -it web -- sh -c 'tty; exit 4'",
        node.kubeconfig().display()
    );
    let out = common::run_timeout(
        Command::new("script").args(["-qec", &kubectl, "/dev/null"]),
        Duration::from_secs(30),
    )
    .expect("kubectl exec -it hung");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "{out:?}");
}

fn forwards_ports_and_copies_files(node: &Node) {
    let port = common::free_port();
    let mut forward = LineStream::spawn(node.kubectl_command(&["port-forward", "pod/web", &format!("{port}:8080")]));
    let ready = forward.next_line(Duration::from_secs(15));
    assert!(
        ready.as_deref().is_some_and(|l| l.starts_with("Forwarding from")),
        "{:?}",
        forward.seen
    );
    for _ in 0..2 {
        let out = common::run(Command::new("curl").args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/index.html"),
        ]));
        assert_eq!(out.ok(), "hello\n");
    }
    forward.stop();

    let dir = tempfile::tempdir().unwrap();
    let local = common::write_file(dir.path(), "in.txt", "copied in\n");
    node.kubectl(&["cp", local.to_str().unwrap(), "web:/tmp/in.txt"]).ok();
    assert_eq!(
        node.kubectl(&["exec", "web", "--", "cat", "/tmp/in.txt"]).ok(),
        "copied in\n"
    );
    let out = dir.path().join("out.html");
    node.kubectl(&["cp", "web:/tmp/index.html", out.to_str().unwrap()]).ok();
    let mut text = String::new();
    std::fs::File::open(&out).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello\n");
}

/// The Python client speaks WebSocket (`v4.channel.k8s.io`) only, for exec and
/// port-forward alike; containerd's streaming server answers it through both proxies.
fn python_client_streams_over_websocket(node: &Node) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python/bin/python3");
    assert!(
        python.exists(),
        "{} missing: run scripts/install-deps",
        python.display()
    );
    let script = r#"
from kubernetes import client, config
from kubernetes.stream import stream, portforward
config.load_kube_config()
core = client.CoreV1Api()
out = stream(core.connect_get_namespaced_pod_exec, "web", "default",
             command=["sh", "-c", "echo out; echo err >&2"], stderr=True, stdin=False, stdout=True, tty=False)
print("exec", repr(out))
resp = stream(core.connect_get_namespaced_pod_exec, "web", "default", command=["sh", "-c", "exit 7"],
              stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
resp.run_forever(timeout=10)
print("code", resp.returncode)
pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
sock = pf.socket(8080)
sock.setblocking(True)
sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
print("forwarded", repr(data.split(b"\r\n\r\n", 1)[-1]))
pf.close()
"#;
    let out = common::run_timeout(
        Command::new(&python)
            .args(["-c", script])
            .env("KUBECONFIG", node.kubeconfig()),
        Duration::from_secs(60),
    )
    .expect("the Python client hung");
    let stdout = out.ok();
    // stream() joins stdout and stderr in arrival order; the two pipes race.
    assert!(
        stdout.contains(r"exec 'out\nerr\n'") || stdout.contains(r"exec 'err\nout\n'"),
        "{stdout}"
    );
    assert!(stdout.contains("code 7"), "{stdout}");
    assert!(stdout.contains(r"forwarded b'hello\n'"), "{stdout}");
}

fn refuses_unscheduled_pods(node: &Node) {
    let err = node.kubectl(&["exec", "nowhere", "--", "true"]).err();
    assert!(err.contains("pod nowhere does not have a host assigned"), "{err}");
}

fn serves_only_the_apiserver(node: &Node) {
    // Through the apiserver: nodes/proxy.
    let summary = node
        .kubectl(&["get", "--raw", &format!("/api/v1/nodes/{NODE}/proxy/stats/summary")])
        .ok();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["node"]["nodeName"], NODE);
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    let pods: Vec<&str> = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["podRef"]["name"].as_str())
        .collect();
    assert!(pods.contains(&"web"), "{pods:?}");
    let list = node
        .kubectl(&["get", "--raw", &format!("/api/v1/nodes/{NODE}/proxy/pods")])
        .ok();
    assert!(list.contains("\"kind\":\"PodList\""), "{list}");

    // Directly: nobody else.
    let url = format!("https://127.0.0.1:{}/pods", node.kubelet_port);
    let tls = node.data_dir.join("server/tls");
    let code = |extra: &[&str]| {
        let out = common::run(
            Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(extra)
                .arg(&url),
        );
        out.stdout
    };
    assert_eq!(code(&[]), "401");
    let cert = |stem: &str| tls.join(format!("{stem}.crt")).to_str().unwrap().to_string();
    let key = |stem: &str| tls.join(format!("{stem}.key")).to_str().unwrap().to_string();
    assert_eq!(
        code(&["--cert", &cert("client-admin"), "--key", &key("client-admin")]),
        "403"
    );
    let apiserver = "client-kube-apiserver-kubelet-client";
    assert_eq!(code(&["--cert", &cert(apiserver), "--key", &key(apiserver)]), "200");
}
