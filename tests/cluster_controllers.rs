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

/// A pod selected by `app=web`, bound to `node`, serving port 8080 as `http`.
fn web_pod(name: &str, namespace: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  hostname: {name}
  subdomain: web-all
  containers:
  - name: app
    image: busybox
    ports: [{{name: http, containerPort: 8080}}]
"#
    )
}

/// A node as a kubelet registers it, Ready.
fn node(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: zone-a}}}}
"#
    )
}

impl Cluster {
    /// Posts a pod's status as its kubelet would: running with `ip`, ready or not.
    #[track_caller]
    fn pod_status(&self, namespace: &str, name: &str, ip: &str, ready: bool) {
        let ready = if ready { "True" } else { "False" };
        let status = json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready}],
        }});
        self.ok(&[
            "-n",
            namespace,
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }
}

/// `ip` addresses of an Endpoints' subsets: (ready, not ready).
fn endpoint_ips(endpoints: &Value) -> (Vec<String>, Vec<String>) {
    let collect = |field: &str| {
        let mut ips: Vec<String> = endpoints["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .map(|a| a["ip"].as_str().unwrap_or_default().to_string())
            .collect();
        ips.sort();
        ips
    };
    (collect("addresses"), collect("notReadyAddresses"))
}

/// (address, ready, serving, terminating) of every endpoint in the slices.
fn slice_endpoints(slices: &Value) -> Vec<(String, bool, bool, bool)> {
    let mut all: Vec<(String, bool, bool, bool)> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                c["ready"] == true,
                c["serving"] == true,
                c["terminating"] == true,
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn endpoints_and_slices_follow_pod_readiness_and_named_ports() {
    let c = Cluster::start();
    c.apply(&node("ep-node"));
    c.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: ep}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ep, labels: {team: shop}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-all, namespace: ep}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#,
    );
    c.apply(&web_pod("one", "ep", "ep-node"));
    c.apply(&web_pod("two", "ep", "ep-node"));
    c.pod_status("ep", "one", "10.42.7.11", true);
    c.pod_status("ep", "two", "10.42.7.12", false);

    let endpoints = c
        .wait_for(&["-n", "ep", "endpoints", "web"], "web's endpoints", |e| {
            e.is_some_and(|e| endpoint_ips(e) == (vec!["10.42.7.11".into()], vec!["10.42.7.12".into()]))
        })
        .unwrap();
    let subset = &endpoints["subsets"][0];
    assert_eq!(
        subset["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let address = &subset["addresses"][0];
    assert_eq!(address["nodeName"], "ep-node");
    assert_eq!(address["targetRef"]["name"], "one");
    assert!(
        address.get("hostname").is_none(),
        "the pods' subdomain is the other Service"
    );
    assert_eq!(endpoints["metadata"]["labels"]["team"], "shop");

    // Headless with publishNotReadyAddresses: everyone is an address, named
    // after its hostname (the pods' subdomain is this Service).
    let all = c
        .wait_for(&["-n", "ep", "endpoints", "web-all"], "web-all's endpoints", |e| {
            e.is_some_and(|e| endpoint_ips(e).0.len() == 2)
        })
        .unwrap();
    assert_eq!(all["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    let hostnames: Vec<&str> = all["subsets"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(hostnames, ["one", "two"]);

    let slices = c
        .wait_for(
            &["-n", "ep", "endpointslices", "-l", "kubernetes.io/service-name=web"],
            "web's slice",
            |s| s.is_some_and(|s| slice_endpoints(s).len() == 2),
        )
        .unwrap();
    let items = slices["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{slices:#}");
    let slice = &items[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["labels"]["team"], "shop");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let first = slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["targetRef"]["name"] == "one")
        .unwrap();
    assert_eq!(first["nodeName"], "ep-node");
    assert_eq!(first["zone"], "zone-a");
    assert_eq!(
        slice_endpoints(&slices),
        [
            ("10.42.7.11".to_string(), true, true, false),
            ("10.42.7.12".to_string(), false, false, false)
        ]
    );

    // Readiness flips are followed.
    c.pod_status("ep", "two", "10.42.7.12", true);
    c.pod_status("ep", "one", "10.42.7.11", false);
    c.wait_for(&["-n", "ep", "endpoints", "web"], "the readiness flip", |e| {
        e.is_some_and(|e| endpoint_ips(e) == (vec!["10.42.7.12".into()], vec!["10.42.7.11".into()]))
    });
    let slices = c
        .wait_for(
            &["-n", "ep", "endpointslices", "-l", "kubernetes.io/service-name=web"],
            "the readiness flip in the slice",
            |s| s.is_some_and(|s| slice_endpoints(s).iter().any(|e| e.0 == "10.42.7.12" && e.1)),
        )
        .unwrap();

    // A change that matters to neither is not written.
    let versions = |c: &Cluster| {
        let e = c.get(&["-n", "ep", "endpoints", "web"]).unwrap();
        let s = c
            .get(&["-n", "ep", "endpointslices", "-l", "kubernetes.io/service-name=web"])
            .unwrap();
        (
            e["metadata"]["resourceVersion"].clone(),
            s["items"][0]["metadata"]["resourceVersion"].clone(),
        )
    };
    let before = versions(&c);
    assert_eq!(before.1, slices["items"][0]["metadata"]["resourceVersion"]);
    c.ok(&["-n", "ep", "annotate", "pod", "one", "note=unrelated"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(versions(&c), before);

    // A pod that stops matching the selector leaves; a deleted pod leaves.
    c.ok(&["-n", "ep", "label", "pod", "one", "app=other", "--overwrite"]);
    c.wait_for(&["-n", "ep", "endpoints", "web"], "relabelled pod to leave", |e| {
        e.is_some_and(|e| endpoint_ips(e) == (vec!["10.42.7.12".into()], vec![]))
    });
    c.ok(&["-n", "ep", "delete", "pod", "two", "--grace-period=0", "--force"]);
    c.wait_for(&["-n", "ep", "endpoints", "web"], "the deleted pod to leave", |e| {
        e.is_some_and(|e| e.get("subsets").is_none_or(|s| s.as_array().is_none_or(Vec::is_empty)))
    });
    let placeholder = c.wait_for(
        &["-n", "ep", "endpointslices", "-l", "kubernetes.io/service-name=web"],
        "an empty placeholder slice",
        |s| s.is_some_and(|s| slice_endpoints(s).is_empty() && s["items"].as_array().is_some_and(|i| i.len() == 1)),
    );
    assert!(placeholder.unwrap()["items"][0].get("ports").is_none());

    // Deleting the Service deletes its Endpoints.
    c.ok(&["-n", "ep", "delete", "service", "web"]);
    c.wait_for(&["-n", "ep", "endpoints", "web"], "the Endpoints to go", |e| {
        e.is_none()
    });

    // The API server's own Service has its Endpoints and EndpointSlice.
    let slice = c
        .get(&["-n", "default", "endpointslice", "kubernetes"])
        .expect("the kubernetes slice");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
    assert_eq!(slice["ports"][0]["name"], "https");
    assert!(c.get(&["-n", "default", "endpoints", "kubernetes"]).is_some());
}
