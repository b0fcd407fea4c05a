//! The scheduler of `kube server` (agent disabled) against nodes registered through
//! the API: the test posts Node objects, then their status (Ready, allocatable),
//! as a kubelet would. Pods land as kube-scheduler would place them (nodeSelector,
//! node affinity, taints and tolerations, resources, pod anti-affinity, topology
//! spread), and a pod that fits nowhere gets kube-scheduler's PodScheduled
//! condition and FailedScheduling event, seen with the real kubectl, until a node
//! it fits appears.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use common::{Server, run};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(20);

struct Cluster {
    server: Server,
    client: Client,
}

async fn step<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("step took longer than 20 s")
}

impl Cluster {
    async fn start() -> Cluster {
        let server = Server::start();
        let deadline = Instant::now() + STEP;
        while !(server.kubeconfig().exists()
            && run(server
                .kubectl_command(&["get", "--raw", "/readyz"])
                .stdout(std::process::Stdio::null()))
            .status
            .success())
        {
            assert!(Instant::now() < deadline, "the API did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a kube-rs config");
        let client = Client::try_from(config).expect("a kube-rs client");
        Cluster { server, client }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Registers a node, then reports its status as a kubelet does: Ready, with
    /// `allocatable` (also its capacity).
    async fn node(&self, name: &str, labels: Value, taints: Value, allocatable: Value) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut labels = labels;
        labels["kubernetes.io/hostname"] = json!(name);
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap();
        step(nodes.create(&PostParams::default(), &node))
            .await
            .expect("create node");
        let now = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let status = json!({"status": {
            "capacity": allocatable, "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        }});
        step(nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)))
            .await
            .expect("node status");
    }

    /// Creates pod `name` in `default` (retrying while the namespace's service
    /// account does not exist yet).
    async fn pod(&self, name: &str, labels: Value, spec: Value) {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "app", "image": "busybox", "resources": spec["resources"].clone()}]);
        if let Some(object) = spec.as_object_mut() {
            object.remove("resources");
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }))
        .unwrap();
        let deadline = Instant::now() + STEP;
        loop {
            match step(self.pods().create(&PostParams::default(), &pod)).await {
                Ok(_) => return,
                Err(err) if Instant::now() < deadline && err.to_string().contains("serviceaccount") => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => panic!("create pod {name}: {err}"),
            }
        }
    }

    /// Waits until `check` holds for the pod, and returns it.
    async fn wait_pod(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + STEP;
        loop {
            let pod = step(self.pods().get(name)).await.expect("get pod");
            if check(&pod) {
                return pod;
            }
            assert!(Instant::now() < deadline, "pod {name}: {what} did not happen: {pod:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node pod `name` gets bound to.
    async fn bound(&self, name: &str) -> String {
        let pod = self.wait_pod(name, "binding", |p| node_of(p).is_some()).await;
        let condition = scheduled_condition(&pod).expect("a PodScheduled condition");
        assert_eq!(condition.status, "True", "{condition:?}");
        node_of(&pod).unwrap()
    }

    /// The message of pod `name`'s PodScheduled=False (Unschedulable) condition,
    /// once it says `expected`.
    async fn unschedulable(&self, name: &str, expected: &str) {
        let pod = self
            .wait_pod(name, "the Unschedulable condition", |p| {
                scheduled_condition(p).is_some_and(|c| c.message.as_deref() == Some(expected))
            })
            .await;
        let condition = scheduled_condition(&pod).unwrap();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("False", Some("Unschedulable"))
        );
        assert_eq!(node_of(&pod), None);
    }

    /// `kubectl get events` for one pod, as (type, reason, message) once `check` holds.
    fn events(&self, pod: &str, check: impl Fn(&[(String, String, String)]) -> bool) -> Vec<(String, String, String)> {
        let deadline = Instant::now() + STEP;
        loop {
            let selector = format!("involvedObject.name={pod}");
            let out = self.server.kubectl(&[
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                &selector,
                "-o",
                "json",
            ]);
            let events: Vec<(String, String, String)> = match serde_json::from_str::<Value>(&out.stdout) {
                Ok(list) => list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                        (text("type"), text("reason"), text("message"))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            if check(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "events of {pod}: {events:?} ({})",
                out.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn scheduled_condition(pod: &Pod) -> Option<k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
}

const GPU_TAINT: &str = r#"[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]"#;

/// n1 (zone a, ssd, 2 CPUs), n2 (zone b, hdd, 4 CPUs), n3 (zone b, ssd, 4 CPUs,
/// tainted dedicated=gpu:NoSchedule).
async fn three_nodes(c: &Cluster) {
    let small = json!({"cpu": "2", "memory": "4Gi", "pods": "110"});
    let large = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    c.node(
        "n1",
        json!({"topology.kubernetes.io/zone": "a", "disk": "ssd"}),
        json!([]),
        small,
    )
    .await;
    c.node(
        "n2",
        json!({"topology.kubernetes.io/zone": "b", "disk": "hdd"}),
        json!([]),
        large.clone(),
    )
    .await;
    let taints: Value = serde_json::from_str(GPU_TAINT).unwrap();
    c.node(
        "n3",
        json!({"topology.kubernetes.io/zone": "b", "disk": "ssd"}),
        taints,
        large,
    )
    .await;
}

fn tolerate_gpu() -> Value {
    json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
}

#[tokio::test]
async fn pods_land_where_kubernetes_puts_them() {
    let c = Cluster::start().await;
    three_nodes(&c).await;

    // nodeSelector: the only untainted ssd node.
    c.pod("ssd", json!({}), json!({"nodeSelector": {"disk": "ssd"}})).await;
    assert_eq!(c.bound("ssd").await, "n1");
    // Required node affinity plus a toleration: the tainted ssd node in zone b.
    c.pod(
        "gpu",
        json!({}),
        json!({"tolerations": tolerate_gpu(), "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]},
                {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["a"]}]}]}}}}),
    )
    .await;
    assert_eq!(c.bound("gpu").await, "n3");
    // Resources: 3 CPUs fit only on a 4-CPU node without the taint.
    c.pod(
        "big",
        json!({}),
        json!({"resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}),
    )
    .await;
    assert_eq!(c.bound("big").await, "n2");
    // matchFields on the node name.
    c.pod(
        "named",
        json!({}),
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
    )
    .await;
    assert_eq!(c.bound("named").await, "n1");

    // Required anti-affinity by host name: one "solo" pod per node, the fourth waits.
    let solo = json!({"tolerations": tolerate_gpu(), "affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for name in ["solo-1", "solo-2", "solo-3", "solo-4"] {
        c.pod(name, json!({"app": "solo"}), solo.clone()).await;
    }
    let mut placed = BTreeMap::new();
    let mut waiting = Vec::new();
    for name in ["solo-1", "solo-2", "solo-3", "solo-4"] {
        let pod = c
            .wait_pod(name, "a decision", |p| {
                node_of(p).is_some() || scheduled_condition(p).is_some_and(|c| c.status == "False")
            })
            .await;
        match node_of(&pod) {
            Some(node) => assert!(placed.insert(node, name).is_none(), "two solo pods on one node"),
            None => waiting.push(name),
        }
    }
    assert_eq!(placed.len(), 3, "{placed:?}");
    let [last] = waiting[..] else {
        panic!("exactly one solo pod should wait: {waiting:?}")
    };
    c.unschedulable(
        last,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
    )
    .await;
    // Deleting one of them makes room at once (no polling: the deletion triggers the retry).
    let (freed, first) = placed.iter().next().map(|(n, p)| (n.clone(), *p)).unwrap();
    step(c.pods().delete(first, &DeleteParams::default().grace_period(0)))
        .await
        .expect("delete pod");
    assert_eq!(c.bound(last).await, freed);

    // Topology spread across zones (maxSkew 1): zone a has one node, zone b two.
    let spread = json!({"tolerations": tolerate_gpu(), "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..4 {
        c.pod(&format!("spread-{i}"), json!({"app": "spread"}), spread.clone())
            .await;
    }
    let mut zones = BTreeMap::new();
    for i in 0..4 {
        let node = c.bound(&format!("spread-{i}")).await;
        let zone = if node == "n1" { "a" } else { "b" };
        *zones.entry(zone).or_insert(0) += 1;
    }
    assert_eq!(zones, BTreeMap::from([("a", 2), ("b", 2)]));

    // Everything bound got a Scheduled event from default-scheduler.
    let events = c.events("ssd", |e| e.iter().any(|(_, reason, _)| reason == "Scheduled"));
    assert!(
        events.contains(&(
            "Normal".into(),
            "Scheduled".into(),
            "Successfully assigned default/ssd to n1".into()
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn an_unschedulable_pod_says_why_and_waits_for_a_node() {
    let c = Cluster::start().await;
    three_nodes(&c).await;

    c.pod("late", json!({}), json!({"nodeSelector": {"pool": "late"}}))
        .await;
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
        2 node(s) didn't match Pod's node affinity/selector. \
        preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..";
    c.unschedulable("late", message).await;
    let events = c.events("late", |e| e.iter().any(|(_, reason, _)| reason == "FailedScheduling"));
    assert!(
        events.contains(&("Warning".into(), "FailedScheduling".into(), message.into())),
        "{events:?}"
    );
    let describe = c.server.kubectl(&["describe", "pod", "late"]).ok();
    assert!(
        describe.contains("FailedScheduling") && describe.contains("default-scheduler"),
        "{describe}"
    );

    // A node changes without helping: the pod is tried again and fails the same way,
    // which counts in the one FailedScheduling event instead of making another.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
    step(nodes.patch("n1", &PatchParams::default(), &Patch::Merge(&touch)))
        .await
        .expect("label node n1");
    let deadline = Instant::now() + STEP;
    let failed = loop {
        let list = c
            .server
            .kubectl(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=late",
                "-o",
                "json",
            ])
            .ok();
        let list: Value = serde_json::from_str(&list).expect("kubectl get events -o json");
        let failed: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == "FailedScheduling")
            .cloned()
            .collect();
        if failed.iter().any(|e| e["count"].as_i64().unwrap_or(0) > 1) || Instant::now() > deadline {
            break failed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(failed.len(), 1, "one FailedScheduling event: {failed:#?}");
    let event = &failed[0];
    assert!(event["count"].as_i64().unwrap_or(0) >= 2, "{event:#}");
    assert_eq!(event["series"]["count"], event["count"], "{event:#}");
    assert!(event["series"]["lastObservedTime"].is_string(), "{event:#}");
    assert_ne!(event["lastTimestamp"], event["firstTimestamp"], "{event:#}");
    let table = c
        .server
        .kubectl(&["get", "events", "--field-selector", "involvedObject.name=late"])
        .ok();
    assert!(table.contains(" (x") && table.contains(" over "), "{table}");

    // Too much CPU for any node: Insufficient cpu, and preemption could not help.
    c.pod(
        "huge",
        json!({}),
        json!({"resources": {"requests": {"cpu": "64"}}, "tolerations": tolerate_gpu()}),
    )
    .await;
    c.unschedulable(
        "huge",
        "0/3 nodes are available: 3 Insufficient cpu. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
    )
    .await;

    // A node the pod fits joins: it is scheduled there without being touched.
    c.node(
        "n4",
        json!({"pool": "late"}),
        json!([]),
        json!({"cpu": "2", "memory": "2Gi", "pods": "10"}),
    )
    .await;
    assert_eq!(c.bound("late").await, "n4");
    let events = c.events("late", |e| e.iter().any(|(_, reason, _)| reason == "Scheduled"));
    assert!(
        events.contains(&(
            "Normal".into(),
            "Scheduled".into(),
            "Successfully assigned default/late to n4".into()
        )),
        "{events:?}"
    );
    // The huge pod still waits, now counting four nodes.
    c.unschedulable(
        "huge",
        "0/4 nodes are available: 4 Insufficient cpu. \
         preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling..",
    )
    .await;
    assert_eq!(c.pods().get("huge").await.unwrap().name_any(), "huge");
}
