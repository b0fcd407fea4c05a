//! Image pulls from real registries: two Debian `docker-registry` (the distribution
//! registry) instances on loopback with htpasswd auth, the busybox image pushed
//! into them with `skopeo`, and a node whose `--private-registry` file makes the
//! first reachable over plain HTTP and mirrors a made-up registry name onto the
//! second with credentials. Checks that a pod pulls with its `imagePullSecrets`,
//! fails with ErrImagePull then ImagePullBackOff (an auth failure) without them,
//! runs from the mirror, and that `imagePullPolicy: Never` gives ErrImageNeverPull.
//!
//! Needs root, containerd, runc, the CNI plugins, busybox-static, docker-registry,
//! skopeo and apache2-utils (`scripts/install-deps`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::agent::AgentServer;
use common::{eventually, free_port, run};
use serde_json::Value;

const NODE: &str = "registry-test-node";

/// A `docker-registry` on 127.0.0.1 with one htpasswd user; killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = run(Command::new("htpasswd").args(["-Bbn", user, password]));
        assert!(
            htpasswd.status.success(),
            "htpasswd failed (install apache2-utils): {}",
            htpasswd.stderr
        );
        let users = common::write_file(dir.path(), "htpasswd", &htpasswd.stdout);
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n  secret: kube-test\nauth:\n  htpasswd:\n    realm: kube-test\n    path: {}\n",
            dir.path().join("data").display(),
            users.display()
        );
        let config = common::write_file(dir.path(), "config.yml", &config);
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry not found: install the Debian package docker-registry (scripts/install-deps)");
        let registry = Registry { child, host, _dir: dir };
        let url = format!("http://{}/v2/", registry.host);
        let up = eventually(Duration::from_secs(20), || {
            run(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])).stdout == "401"
        });
        assert!(up, "docker-registry on {} did not answer", registry.host);
        registry
    }

    /// Pushes the OCI archive `image` as `<host>/<reference>`.
    fn push(&self, image: &Path, reference: &str, creds: &str) {
        let out = run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &format!("oci-archive:{}", image.display()),
            &format!("docker://{}/{reference}", self.host),
        ]));
        assert!(out.status.success(), "skopeo copy to {}: {}", self.host, out.stderr);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod_manifest(name: &str, image: &str, secret: Option<&str>, policy: &str) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets:\n  - name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n{secrets}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sleep, \"3600\"]\n"
    )
}

fn create(server: &AgentServer, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = common::write_file(dir.path(), "pod.yaml", yaml);
    server.kubectl(&["create", "-f", file.to_str().unwrap()]).ok();
}

fn pod(server: &AgentServer, name: &str) -> Value {
    let out = server.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
}

#[track_caller]
fn wait_pod(server: &AgentServer, name: &str, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(60), || {
        last = pod(server, name);
        f(&last)
    });
    assert!(ok, "pod {name}: {what} not reached; last: {last:#}");
    last
}

fn waiting_reason(pod: &Value) -> &str {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn pulls_with_secrets_mirrors_and_policies() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("busybox.tar");
    common::agent::build_busybox_image(&image, None);
    let private = Registry::start("alice", "alice-pw");
    private.push(&image, "test/busybox:v1", "alice:alice-pw");
    let mirror = Registry::start("bob", "bob-pw");
    mirror.push(&image, "team/busybox:v1", "bob:bob-pw");

    // The private registry speaks plain HTTP (its own endpoint); the made-up name
    // is served by the mirror, whose credentials live in the file.
    let registries = format!(
        "mirrors:\n  \"{p}\":\n    endpoint: [\"http://{p}\"]\n  made-up.registry.invalid:\n    endpoint: [\"http://{m}\"]\nconfigs:\n  \"{m}\":\n    auth:\n      username: bob\n      password: bob-pw\n",
        p = private.host,
        m = mirror.host
    );
    let file = common::write_file(scratch.path(), "registries.yaml", &registries);
    let server = AgentServer::start(&["--node-name", NODE, "--private-registry", file.to_str().unwrap()]);
    server.wait_node_ready(NODE, Duration::from_secs(60));
    let hosts = server
        .data_dir
        .join("agent/containerd/certs.d")
        .join(&private.host)
        .join("hosts.toml");
    assert!(hosts.is_file(), "no {}", hosts.display());

    let private_image = format!("{}/test/busybox:v1", private.host);
    // Without credentials first, so the image is certainly not on the node yet.
    create(
        &server,
        &pod_manifest("no-secret", &private_image, None, "IfNotPresent"),
    );
    create(&server, &pod_manifest("never", "kube.test/not-here:1", None, "Never"));
    // No registry in reach (no DNS, no network) but the image was imported: an
    // airgapped node runs it even with `Always`, as `kubectl create deployment
    // --image=busybox` asks.
    create(&server, &pod_manifest("airgapped", "busybox", None, "Always"));
    create(
        &server,
        &pod_manifest(
            "mirrored",
            "made-up.registry.invalid/team/busybox:v1",
            None,
            "IfNotPresent",
        ),
    );
    let mut seen = Vec::new();
    wait_pod(&server, "no-secret", "ImagePullBackOff after ErrImagePull", |p| {
        let reason = waiting_reason(p).to_string();
        if !reason.is_empty() && seen.last() != Some(&reason) {
            seen.push(reason.clone());
        }
        reason == "ImagePullBackOff" && seen.iter().any(|r| r == "ErrImagePull")
    });
    let events = server
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=no-secret",
            "-o",
            "json",
        ])
        .ok();
    let events = events.to_lowercase();
    assert!(
        events.contains("401") || events.contains("unauthorized"),
        "the pull failed for another reason than auth: {events}"
    );
    let never = wait_pod(&server, "never", "ErrImageNeverPull", |p| {
        waiting_reason(p) == "ErrImageNeverPull"
    });
    assert_ne!(never["status"]["phase"], "Running");

    server
        .kubectl(&[
            "create",
            "secret",
            "docker-registry",
            "private-pull",
            &format!("--docker-server={}", private.host),
            "--docker-username=alice",
            "--docker-password=alice-pw",
        ])
        .ok();
    create(
        &server,
        &pod_manifest("with-secret", &private_image, Some("private-pull"), "Always"),
    );
    let ok = wait_pod(&server, "with-secret", "Running", running);
    assert!(
        ok["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .is_some_and(|id| id.contains("sha256:")),
        "{ok:#}"
    );
    wait_pod(&server, "mirrored", "Running from the mirror", running);
    wait_pod(&server, "airgapped", "Running from the imported image", running);

    // Now that the image is on the node, a pod that must pull (`Always`) without
    // credentials is still refused: the registry answered 401, so the present image
    // is not used as it is when no registry can be reached at all.
    create(
        &server,
        &pod_manifest("always-no-secret", &private_image, None, "Always"),
    );
    let refused = wait_pod(&server, "always-no-secret", "ErrImagePull", |p| {
        matches!(waiting_reason(p), "ErrImagePull" | "ImagePullBackOff")
    });
    assert_ne!(refused["status"]["phase"], "Running", "{refused:#}");
}
