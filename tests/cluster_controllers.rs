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

fn pod_cidrs(c: &Cluster) -> std::collections::BTreeMap<String, String> {
    let nodes = c.get(&["nodes"]).unwrap();
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| {
            let cidr = n["spec"]["podCIDR"].as_str()?;
            assert_eq!(n["spec"]["podCIDRs"], json!([cidr]));
            Some((n["metadata"]["name"].as_str()?.to_string(), cidr.to_string()))
        })
        .collect()
}

#[test]
fn nodes_get_unique_pod_cidrs_released_on_deletion() {
    // Room for two /24s only.
    let mut c = Cluster::start_with(&["--cluster-cidr", "10.99.0.0/23"]);
    c.apply(&node("cidr-a"));
    c.apply(&node("cidr-b"));
    assert!(eventually(REACT, || pod_cidrs(&c).len() == 2), "{:?}", pod_cidrs(&c));
    let first = pod_cidrs(&c);
    let mut ranges: Vec<&String> = first.values().collect();
    ranges.sort();
    assert_eq!(ranges, ["10.99.0.0/24", "10.99.1.0/24"]);

    // Exhausted: a third node waits until one is deleted, then gets its range.
    c.apply(&node("cidr-c"));
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!pod_cidrs(&c).contains_key("cidr-c"));
    let freed = first["cidr-a"].clone();
    c.ok(&["delete", "node", "cidr-a"]);
    assert!(
        eventually(REACT, || pod_cidrs(&c).get("cidr-c") == Some(&freed)),
        "{:?}",
        pod_cidrs(&c)
    );

    // After a restart the allocation is rebuilt from the nodes: no range twice.
    c.server.restart();
    c.server.wait_api();
    c.ok(&["delete", "node", "cidr-b"]);
    c.apply(&node("cidr-d"));
    assert!(eventually(REACT, || pod_cidrs(&c).len() == 2), "{:?}", pod_cidrs(&c));
    let after = pod_cidrs(&c);
    assert_eq!(after["cidr-c"], freed);
    assert_ne!(after["cidr-d"], freed);
}

impl Cluster {
    /// Posts a node's status as its kubelet would: Ready, heartbeat now.
    #[track_caller]
    fn node_ready(&self, name: &str) {
        let now = now_rfc3339();
        let status = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now},
        ]}});
        self.ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    /// Creates or renews a node's Lease in kube-node-lease, as its kubelet would.
    #[track_caller]
    fn renew_lease(&self, name: &str) {
        self.apply(&format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\n\
             spec: {{holderIdentity: {name}, leaseDurationSeconds: 40, renewTime: \"{}\"}}\n",
            now_micro()
        ));
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn taint_keys(node: &Value) -> Vec<String> {
    let mut keys: Vec<String> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or_default(),
                t["effect"].as_str().unwrap_or_default()
            )
        })
        .collect();
    keys.sort();
    keys
}

/// A pod on `node` tolerating the unreachable taint for `seconds` (forever when
/// `None`; the API adds its 300 s default when `Some(-1)`).
fn tolerant_pod(name: &str, node: &str, seconds: Option<i64>) -> String {
    let toleration = match seconds {
        Some(-1) => String::new(),
        Some(s) => format!(
            "  tolerations: [{{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: {s}}}]\n"
        ),
        None => "  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]\n".into(),
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  nodeName: {node}\n{toleration}  containers: [{{name: app, image: busybox}}]\n"
    )
}

#[test]
fn a_node_whose_lease_goes_stale_becomes_unknown_and_its_pods_go() {
    let c = Cluster::start_with(&["--node-monitor-period=1s", "--node-monitor-grace-period=4s"]);
    for name in ["live", "dead"] {
        c.apply(&node(name));
        c.node_ready(name);
        c.renew_lease(name);
    }
    // Only `live`'s kubelet keeps renewing its lease.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = {
        let (stop, kubeconfig) = (stop.clone(), c.server.kubeconfig());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let patch = json!({"spec": {"renewTime": now_micro()}}).to_string();
                let _ = std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "-n",
                        "kube-node-lease",
                        "patch",
                        "lease",
                        "live",
                        "--type=merge",
                        "-p",
                        &patch,
                    ])
                    .output();
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    c.apply(&tolerant_pod("brief", "dead", Some(2)));
    c.apply(&tolerant_pod("patient", "dead", Some(-1)));
    c.apply(&tolerant_pod("forever", "dead", None));
    c.apply(&tolerant_pod("fine", "live", Some(-1)));
    for (pod, ip) in [
        ("brief", "10.42.0.2"),
        ("patient", "10.42.0.3"),
        ("forever", "10.42.0.4"),
        ("fine", "10.42.1.2"),
    ] {
        c.pod_status("default", pod, ip, true);
    }
    let patient = c.get(&["pod", "patient"]).unwrap();
    let defaults: Vec<&Value> = patient["spec"]["tolerations"].as_array().unwrap().iter().collect();
    assert!(
        defaults
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300),
        "DefaultTolerationSeconds: {defaults:?}"
    );

    let dead = c
        .wait_for(&["node", "dead"], "dead to become Unknown", |n| {
            n.is_some_and(|n| condition(n, "Ready").is_some_and(|r| r["status"] == "Unknown"))
        })
        .unwrap();
    let ready = condition(&dead, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(condition(&dead, "MemoryPressure").unwrap()["status"], "Unknown");
    let dead = c
        .wait_for(&["node", "dead"], "dead's taints", |n| {
            n.is_some_and(|n| taint_keys(n).len() == 2)
        })
        .unwrap();
    assert_eq!(
        taint_keys(&dead),
        [
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule"
        ]
    );
    let live = c.get(&["node", "live"]).unwrap();
    assert_eq!(condition(&live, "Ready").unwrap()["status"], "True");
    assert!(taint_keys(&live).is_empty(), "{live:#}");

    // Its pods stop being ready at once; those that tolerate the taint only
    // briefly are evicted, the others stay.
    for pod in ["patient", "forever"] {
        c.wait_for(&["pod", pod], "the pod to be marked not ready", |p| {
            p.is_some_and(|p| condition(p, "Ready").is_some_and(|r| r["status"] == "False"))
        });
    }
    let brief = c
        .wait_for(&["pod", "brief"], "brief to be evicted", |p| {
            p.is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string())
        })
        .expect("terminating, not gone: its kubelet is not there to confirm");
    assert_eq!(
        condition(&brief, "DisruptionTarget").unwrap()["reason"],
        "DeletionByTaintManager"
    );
    assert_eq!(
        condition(&c.get(&["pod", "fine"]).unwrap(), "Ready").unwrap()["status"],
        "True"
    );
    for pod in ["patient", "forever"] {
        assert!(c.get(&["pod", pod]).unwrap()["metadata"]["deletionTimestamp"].is_null());
    }

    // The kubelet comes back: the taints go.
    c.node_ready("dead");
    c.wait_for(&["node", "dead"], "the taints to go", |n| {
        n.is_some_and(|n| taint_keys(n).is_empty())
    });

    // A deleted node's pods are deleted once the quarantine has passed.
    c.ok(&["delete", "node", "dead"]);
    for pod in ["brief", "patient", "forever"] {
        c.wait_for(&["pod", pod], "the orphaned pod to go", |p| p.is_none());
    }
    assert!(c.get(&["pod", "fine"]).is_some());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    heartbeat.join().unwrap();
}

/// A bare pod labelled `app=db` on `node`, deleted at once (no kubelet to wait for).
fn db_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: db}}}}\n\
         spec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: db, image: busybox}}]\n"
    )
}

impl Cluster {
    /// `POST pods/<name>/eviction`, as kubectl drain sends it.
    fn evict(&self, pod: &str) -> Out {
        let body =
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}});
        let file = self.server.dir.path().join(format!("eviction-{pod}.json"));
        std::fs::write(&file, body.to_string()).unwrap();
        self.kubectl(&[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            file.to_str().unwrap(),
        ])
    }

    /// Waits for the budget's status to show `allowed` disruptions with `healthy` pods.
    #[track_caller]
    fn wait_budget(&self, allowed: i64, healthy: i64) -> Value {
        self.wait_for(&["pdb", "db"], "the budget's status", |b| {
            b.is_some_and(|b| b["status"]["disruptionsAllowed"] == allowed && b["status"]["currentHealthy"] == healthy)
        })
        .unwrap()
    }
}

#[test]
fn disruption_budgets_guard_evictions_and_kubectl_drain() {
    let c = Cluster::start();
    for name in ["drained", "spare"] {
        c.apply(&node(name));
        c.node_ready(name);
    }
    for (pod, node, ip) in [
        ("db-1", "drained", "10.42.0.5"),
        ("db-2", "drained", "10.42.0.6"),
        ("db-3", "spare", "10.42.1.5"),
    ] {
        c.apply(&db_pod(pod, node));
        c.pod_status("default", pod, ip, true);
    }
    c.apply("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db, namespace: default}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: db}}\n");
    let budget = c.wait_budget(1, 3);
    let status = &budget["status"];
    assert_eq!(
        (status["expectedPods"].as_i64(), status["desiredHealthy"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(status["observedGeneration"], budget["metadata"]["generation"]);
    let allowed = condition(&budget, "DisruptionAllowed").unwrap();
    assert_eq!(
        (allowed["status"].as_str(), allowed["reason"].as_str()),
        (Some("True"), Some("SufficientPods"))
    );

    // One eviction is allowed; it uses the budget up at once.
    c.evict("db-3").ok();
    c.wait_for(&["pod", "db-3"], "db-3 to go", |p| p.is_none());
    let budget = c.wait_budget(0, 2);
    assert_eq!(
        condition(&budget, "DisruptionAllowed").unwrap()["reason"],
        "InsufficientPods"
    );
    let refused = c.evict("db-1").err();
    assert!(
        refused.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{refused}"
    );
    assert!(c.get(&["pod", "db-1"]).is_some());

    // kubectl drain evicts what the budget allows and retries the rest until a
    // replacement is ready elsewhere.
    let drain = {
        let mut cmd = c
            .server
            .kubectl_command(&["drain", "drained", "--force", "--timeout=60s"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    let drained = c.get(&["node", "drained"]).unwrap();
    assert_eq!(drained["spec"]["unschedulable"], true, "cordoned");
    assert!(
        c.get(&["pod", "db-1"]).is_some() && c.get(&["pod", "db-2"]).is_some(),
        "the budget holds"
    );
    c.apply(&db_pod("db-4", "spare"));
    c.pod_status("default", "db-4", "10.42.1.6", true);
    c.apply(&db_pod("db-5", "spare"));
    c.pod_status("default", "db-5", "10.42.1.7", true);
    let out = drain.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("disruption budget"),
        "drain was held back by the budget: {stderr}"
    );
    assert!(c.get(&["pod", "db-1"]).is_none() && c.get(&["pod", "db-2"]).is_none());
    let drained = c.get(&["node", "drained"]).unwrap();
    assert!(taint_keys(&drained).contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string()));
}
