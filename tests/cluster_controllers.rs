//! The cluster-level controllers of `kube server` (agent disabled) driven with the
//! real kubectl: namespace deletion, Endpoints and EndpointSlices, node pod CIDRs,
//! node lifecycle (stale leases), PodDisruptionBudgets with eviction and
//! `kubectl drain`, and the controller manager's leader Lease. Nodes, leases and
//! pod statuses are posted by the tests through the API, as a kubelet would.

mod common;

use common::{Out, Server, eventually};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a controller may take to react to a change.
const REACT: Duration = Duration::from_secs(15);

struct Cluster {
    server: Server,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    fn start_with(flags: &[&str]) -> Cluster {
        let server = Server::start_with(flags);
        server.wait_api();
        Cluster { server }
    }

    fn kubectl(&self, args: &[&str]) -> Out {
        self.server.kubectl(args)
    }

    /// kubectl that must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args).ok()
    }

    /// `kubectl apply` of a YAML or JSON document.
    #[track_caller]
    fn apply(&self, manifest: &str) {
        let file = self
            .server
            .dir
            .path()
            .join(format!("manifest-{}.yaml", rand::random::<u32>()));
        std::fs::write(&file, manifest).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// The object as JSON, `None` when it does not exist.
    fn get(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        let out = self.kubectl(&all);
        if !out.status.success() {
            assert!(out.stderr.contains("NotFound"), "{out:?}");
            return None;
        }
        Some(serde_json::from_str(&out.stdout).unwrap())
    }

    /// Waits until `check` holds for the object (or its absence), failing with
    /// the last state seen.
    #[track_caller]
    fn wait_for(&self, args: &[&str], what: &str, mut check: impl FnMut(Option<&Value>) -> bool) -> Option<Value> {
        let deadline = Instant::now() + REACT;
        loop {
            let object = self.get(args);
            if check(object.as_ref()) {
                return object;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {object:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[test]
fn namespace_deletion_removes_everything_then_the_namespace() {
    let c = Cluster::start();
    c.apply(WIDGETS);
    c.wait_for(&["crd", "widgets.example.com"], "the CRD to be established", |crd| {
        crd.is_some_and(|crd| {
            crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
    });
    c.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: doomed}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: doomed}
data: {a: b}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: gadget, namespace: doomed}
spec: {size: 3}
---
apiVersion: v1
kind: Pod
metadata: {name: loose, namespace: doomed}
spec:
  containers: [{name: app, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: held, namespace: doomed, finalizers: [example.com/hold]}
spec:
  containers: [{name: app, image: busybox}]
"#,
    );
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    // Everything goes but the pod its finalizer holds, which keeps the namespace.
    let ns = c.wait_for(&["namespace", "doomed"], "the held pod to be reported", |ns| {
        ns.is_some_and(|ns| {
            ns["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
        })
    });
    let ns = ns.unwrap();
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    let conditions = ns["status"]["conditions"].as_array().unwrap();
    let condition = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    assert_eq!(
        condition("NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(
        condition("NamespaceContentRemaining")["message"],
        "Some resources are remaining: pods. has 1 resource instances"
    );
    assert_eq!(condition("NamespaceDeletionDiscoveryFailure")["status"], "False");
    assert!(c.get(&["-n", "doomed", "configmap", "settings"]).is_none());
    assert!(c.get(&["-n", "doomed", "widget", "gadget"]).is_none());
    assert!(c.get(&["-n", "doomed", "pod", "loose"]).is_none());
    let held = c.get(&["-n", "doomed", "pod", "held"]).expect("the held pod stays");
    assert!(held["metadata"]["deletionTimestamp"].is_string());

    // Releasing the pod lets the namespace go, promptly.
    let released = Instant::now();
    c.ok(&[
        "-n",
        "doomed",
        "patch",
        "pod",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    c.wait_for(&["namespace", "doomed"], "the namespace to go", |ns| ns.is_none());
    assert!(released.elapsed() < Duration::from_secs(5), "{:?}", released.elapsed());

    // A plain `kubectl delete namespace` waits for it and returns within seconds.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: quick}\n");
    c.ok(&["-n", "quick", "create", "configmap", "one", "--from-literal=a=b"]);
    let started = Instant::now();
    c.ok(&["delete", "namespace", "quick", "--timeout=20s"]);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(c.get(&["namespace", "quick"]).is_none());
}

#[test]
fn the_controller_manager_holds_and_renews_its_lease() {
    let mut c = Cluster::start();
    let lease = c
        .wait_for(
            &["-n", "kube-system", "lease", "kube-controller-manager"],
            "the lease",
            |l| l.is_some(),
        )
        .unwrap();
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap().to_string();
    let (host, uuid) = holder.rsplit_once('_').unwrap();
    assert!(!host.is_empty() && uuid.len() == 36, "{holder}");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    let renewed = spec["renewTime"].as_str().unwrap().to_string();
    c.wait_for(
        &["-n", "kube-system", "lease", "kube-controller-manager"],
        "a renewal",
        |l| l.is_some_and(|l| l["spec"]["renewTime"].as_str() != Some(&renewed)),
    );

    // A restarted server is the same candidate: it resumes leading at once.
    c.server.restart();
    c.server.wait_api();
    let lease = c
        .get(&["-n", "kube-system", "lease", "kube-controller-manager"])
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], holder.as_str());
    assert_eq!(lease["spec"]["leaseTransitions"], 0);
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: after-restart}\n");
    assert!(
        eventually(Duration::from_secs(5), || c
            .get(&["-n", "after-restart", "serviceaccount", "default"])
            .is_some()),
        "controllers run right after a restart"
    );
}
