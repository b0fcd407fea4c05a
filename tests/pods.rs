//! Pods on a real node: `kube server` with its agent (its own containerd, CNI bridge
//! and the busybox image built by `scripts/busybox-image`), driven with the real
//! kubectl. One server runs every scenario side by side (a node per test would mean a
//! containerd per test), then is restarted to check that running containers are
//! adopted, not restarted. Pods are bound by `spec.nodeName` directly.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static
//! (`scripts/install-deps`).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::AgentServer;
use common::{Server, eventually};
use serde_json::Value;

const NODE: &str = "pods-test-node";

/// The test's node: a `kube server` whose agent runs containerd on a bridge and pod
/// range of its own; its guard removes everything even when a check panics.
fn start_node() -> AgentServer {
    let node = AgentServer::start(&["--node-name", NODE]);
    node.wait_node_ready(NODE, Duration::from_secs(60));
    node
}

fn socket(server: &Server) -> PathBuf {
    server.data_dir.join("agent/containerd/containerd.sock")
}

/// IDs of the CRI containers the node's containerd has.
fn containers(server: &Server) -> Vec<String> {
    let out =
        common::run(
            Command::new("ctr")
                .arg("-a")
                .arg(socket(server))
                .args(["-n", "k8s.io", "containers", "ls", "-q"]),
        );
    out.stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn apply(server: &Server, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_file(dir.path(), "manifest.yaml", yaml);
    server.kubectl(&["apply", "-f", file.to_str().unwrap()]).ok();
}

fn pod(server: &Server, name: &str) -> Value {
    let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a str> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// Polls the pod until `f` holds; panics with the pod's last state otherwise.
#[track_caller]
fn wait_pod(server: &Server, name: &str, timeout: Duration, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = eventually(timeout, || {
        last = pod(server, name);
        f(&last)
    });
    assert!(ok, "pod {name}: {what} within {timeout:?}; last seen:\n{last:#}");
    last
}

/// A container's log file content (the CRI log format's text part).
fn log_of(server: &Server, pod: &Value, container: &str) -> String {
    let dir = format!(
        "{}_{}_{}",
        pod["metadata"]["namespace"].as_str().unwrap(),
        pod["metadata"]["name"].as_str().unwrap(),
        pod["metadata"]["uid"].as_str().unwrap()
    );
    let path = server
        .data_dir
        .join("agent/logs/pods")
        .join(dir)
        .join(container)
        .join("0.log");
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: pods-test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
"#;

fn web_runs_and_becomes_ready(server: &Server) {
    let started = Instant::now();
    let pod = wait_pod(server, "web", Duration::from_secs(60), "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == Some("True")
    });
    let cs = container_status(&pod);
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"].as_str().unwrap().starts_with("containerd://"), "{cs}");
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10."), "pod IP {ip}");
    assert!(pod["status"]["hostIP"].is_string());
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    for kind in [
        "PodScheduled",
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
    ] {
        assert_eq!(condition(&pod, kind), Some("True"), "{kind}");
    }
    // The node reaches the pod on its IP.
    let body =
        common::run(Command::new("busybox").args(["wget", "-q", "-O", "-", &format!("http://{ip}:8080/index.html")]));
    assert_eq!(body.stdout.trim(), "hello", "{}", body.stderr);
    eprintln!("web: Ready after {:?}", started.elapsed());
}

const CRASH: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  nodeName: pods-test-node
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo dying; exit 3"]
"#;

fn crash_loops_with_growing_back_off(server: &Server) {
    let waiting = |p: &Value| {
        container_status(p)["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = wait_pod(server, "crash", Duration::from_secs(60), "CrashLoopBackOff 10s", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && waiting(p).starts_with("back-off 10s")
    });
    let cs = container_status(&first);
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs}");
    assert_eq!(cs["restartCount"], 1, "{cs}");
    let second = wait_pod(server, "crash", Duration::from_secs(40), "CrashLoopBackOff 20s", |p| {
        waiting(p).starts_with("back-off 20s")
    });
    let cs = container_status(&second);
    assert_eq!(cs["restartCount"], 2, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(second["status"]["phase"], "Running");
    assert!(log_of(server, &second, "c").contains("dying"));
}

const OOM: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  nodeName: pods-test-node
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo survived"]
    resources: {limits: {memory: 20Mi}}
"#;

fn oom_is_reported(server: &Server) {
    let pod = wait_pod(server, "oom", Duration::from_secs(60), "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    let t = &container_status(&pod)["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137, "{t}");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
}

const VOLUMES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: vol-cm}
data: {greeting: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: vol-secret}
data: {password: aHVudGVyMg==}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: vol-pv}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: PV_PATH, type: DirectoryOrCreate}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: vol-claim}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  volumeName: vol-pv
  storageClassName: ""
---
apiVersion: v1
kind: Pod
metadata: {name: volumes, labels: {app: volumes}}
spec:
  nodeName: pods-test-node
  restartPolicy: Never
  initContainers:
  - name: init
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo written-by-init > /scratch/file"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c"]
    args:
    - >-
      echo cm=$(cat /cm/greeting); echo secret=$(cat /secret/password);
      echo scratch=$(cat /scratch/file); echo labels=$(cat /info/labels);
      echo env=$GREETING/$POD_NAME; stat -c mode=%a /secret/..data/password;
      echo mem=$(mount | grep -c ' /mem type tmpfs'); echo to-the-claim > /claim/out
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: vol-cm, key: greeting}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: cm, mountPath: /cm}
    - {name: secret, mountPath: /secret}
    - {name: scratch, mountPath: /scratch}
    - {name: info, mountPath: /info}
    - {name: mem, mountPath: /mem}
    - {name: claim, mountPath: /claim}
  volumes:
  - {name: claim, persistentVolumeClaim: {claimName: vol-claim}}
  - {name: cm, configMap: {name: vol-cm}}
  - {name: secret, secret: {secretName: vol-secret, defaultMode: 0400}}
  - {name: scratch, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 4Mi}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
"#;

/// The hostPath behind the test's PersistentVolume (in the server's temp dir).
fn pv_path(server: &Server) -> PathBuf {
    server.dir.path().join("pv")
}

fn volumes_are_visible(server: &Server) {
    let pod = wait_pod(server, "volumes", Duration::from_secs(60), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    let log = log_of(server, &pod, "c");
    let written = std::fs::read_to_string(pv_path(server).join("out")).unwrap_or_default();
    assert_eq!(
        written, "to-the-claim\n",
        "the claim's hostPath PV holds what the pod wrote"
    );
    for line in [
        "cm=hello-from-configmap",
        "secret=hunter2",
        "scratch=written-by-init",
        "labels=app=\"volumes\"",
        "env=hello-from-configmap/volumes",
        "mode=400",
        "mem=1",
    ] {
        assert!(log.lines().any(|l| l == line), "{line:?} missing from the log:\n{log}");
    }
}

const LABELS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: labels, labels: {tier: one}}
spec:
  nodeName: pods-test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{name: info, mountPath: /info}]
  volumes:
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
"#;

fn downward_labels_follow_the_pod(server: &Server) {
    let pod = wait_pod(server, "labels", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let file = server
        .data_dir
        .join("agent/pods")
        .join(uid)
        .join("volumes/kubernetes.io~downward-api/info/labels");
    assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), "tier=\"one\"");
    server
        .kubectl(&["label", "pod", "labels", "tier=two", "--overwrite"])
        .ok();
    let updated = eventually(Duration::from_secs(15), || {
        std::fs::read_to_string(&file).unwrap_or_default() == "tier=\"two\""
    });
    assert!(
        updated,
        "the downward API file follows the label: {:?}",
        std::fs::read_to_string(&file)
    );
}

const CHATTY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  nodeName: pods-test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "head -c 11000000 /dev/zero | tr '\\0' x | fold -w 1000; while true; do echo tick; sleep 1; done"]
"#;

fn big_logs_are_rotated(server: &Server) {
    let pod = wait_pod(server, "chatty", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let dir = server
        .data_dir
        .join("agent/logs/pods")
        .join(format!("default_chatty_{}", pod["metadata"]["uid"].as_str().unwrap()));
    let dir = dir.join("c");
    let rotated = eventually(Duration::from_secs(40), || {
        let names: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let current = std::fs::read_to_string(dir.join("0.log")).unwrap_or_default();
        names.iter().any(|n| n.starts_with("0.log.")) && current.len() < 1_000_000 && current.contains(" tick")
    });
    assert!(
        rotated,
        "the 11 MB log is rotated and the runtime writes a new one: {:?}",
        std::fs::read_dir(&dir).map(|d| d
            .flatten()
            .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
            .collect::<Vec<_>>())
    );
}

const SLEEPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  nodeName: pods-test-node
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

fn delete_honours_the_grace_period(server: &Server) {
    let pod = wait_pod(server, "sleeper", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let id = container_status(&pod)["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let started = Instant::now();
    // `sleep` as PID 1 ignores SIGTERM: the kubelet waits the 3 s, then kills it.
    server.kubectl(&["delete", "pod", "sleeper", "--timeout=30s"]).ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "deleted after {took:?}, before its grace period"
    );
    assert!(
        took < Duration::from_secs(15),
        "deletion took {took:?} for a 3 s grace period"
    );
    assert!(
        eventually(Duration::from_secs(20), || !containers(server).contains(&id)),
        "the container of a deleted pod is removed"
    );
}

/// One scenario run against the shared node.
type Check = fn(&Server);

#[test]
fn pods_run_on_the_node() {
    let mut node = start_node();
    let volumes = VOLUMES.replace("PV_PATH", pv_path(&node).to_str().unwrap());
    for manifest in [WEB, CRASH, OOM, &volumes, LABELS, CHATTY, SLEEPER] {
        apply(&node, manifest);
    }
    std::thread::scope(|s| {
        let server: &Server = &node;
        let checks: [(&str, Check); 7] = [
            ("web", web_runs_and_becomes_ready),
            ("crash", crash_loops_with_growing_back_off),
            ("oom", oom_is_reported),
            ("volumes", volumes_are_visible),
            ("labels", downward_labels_follow_the_pod),
            ("logs", big_logs_are_rotated),
            ("delete", delete_honours_the_grace_period),
        ];
        let handles: Vec<_> = checks
            .into_iter()
            .map(|(name, check)| (name, s.spawn(move || check(server))))
            .collect();
        let failed: Vec<&str> = handles
            .into_iter()
            .filter_map(|(name, h)| h.join().is_err().then_some(name))
            .collect();
        assert!(failed.is_empty(), "failed scenarios: {failed:?}");
    });

    // Restart safety: a restarted server adopts the running container instead of
    // starting another one.
    let before = pod(&node, "web");
    let before_status = container_status(&before).clone();
    let stopped = node.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(stopped.is_some_and(|s| s.success()), "kube server stops on SIGTERM");
    node.spawn();
    node.wait_ready();
    node.wait_api();
    // A pod created now runs once the agent is back, so by then it has looked at
    // `web` too (and would have restarted it, were it going to).
    apply(&node, &SLEEPER.replace("sleeper", "after-restart"));
    wait_pod(&node, "after-restart", Duration::from_secs(60), "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    let after = pod(&node, "web");
    assert_eq!(condition(&after, "Ready"), Some("True"));
    let after_status = container_status(&after);
    assert_eq!(
        after_status["containerID"], before_status["containerID"],
        "{after_status}"
    );
    assert_eq!(after_status["restartCount"], 0, "{after_status}");
    assert_eq!(
        after_status["state"]["running"]["startedAt"], before_status["state"]["running"]["startedAt"],
        "{after_status}"
    );
    let id = after_status["containerID"].as_str().unwrap_or_default();
    assert!(containers(&node).contains(&id.trim_start_matches("containerd://").to_string()));
    let crash = pod(&node, "crash");
    assert!(container_status(&crash)["restartCount"].as_i64().unwrap_or(0) >= 2);

    // Deleted pods leave no container behind.
    node.kubectl(&["delete", "pods", "--all", "--grace-period=1", "--wait=false"])
        .ok();
    let empty = eventually(Duration::from_secs(60), || {
        node.kubectl(&["get", "pods", "-o", "name"]).stdout.trim().is_empty() && containers(&node).is_empty()
    });
    assert!(
        empty,
        "containers left after every pod was deleted: {:?}",
        containers(&node)
    );
}
