//! The scheduler's view of the cluster, kept incrementally from the shared
//! informers: per node, what is allocatable and what the pods bound to it already
//! take (requested resources, host ports, replicas per owner), so that checking a
//! node is O(1) and no pod list is copied per decision. Pods the scheduler has
//! bound but the informer has not yet shown bound are "assumed" and counted as
//! well, as in kube-scheduler's cache (`AssumePod`/`ForgetPod`).
//!
//! Node conditions count as the taints the node lifecycle controller derives from
//! them (`node.kubernetes.io/not-ready` and friends, effect NoSchedule), so a node
//! that is not Ready rejects pods with the same message a real cluster prints.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::labels::{self, Labels};
use super::pod::{HostPort, PodInfo};
use super::resources::Resources;

pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// One node and the pods on it.
#[derive(Debug)]
pub struct NodeInfo {
    pub name: Arc<str>,
    /// `None` while only pods bound to it are known (the node is gone or not seen yet).
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    /// The node's taints plus those its conditions imply.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    /// Region and zone, for spreading across zones.
    pub zone: Option<Arc<str>>,
    /// What the pods on the node request (`pods` counts them).
    pub requested: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
    /// (protocol, port) → host IP → number of pods using it.
    ports: HashMap<(String, i32), HashMap<String, u32>>,
    /// Pods per controller uid.
    pub owners: HashMap<Arc<str>, u32>,
    /// Keys of the pods on the node.
    pub pods: HashSet<String>,
}

impl NodeInfo {
    fn new(name: Arc<str>) -> NodeInfo {
        NodeInfo {
            name,
            node: None,
            allocatable: Resources::default(),
            taints: Vec::new(),
            unschedulable: false,
            zone: None,
            requested: Resources::default(),
            nonzero_cpu: 0,
            nonzero_memory: 0,
            ports: HashMap::new(),
            owners: HashMap::new(),
            pods: HashSet::new(),
        }
    }

    pub fn labels(&self) -> &Labels {
        match &self.node {
            Some(node) => labels::of(&node.metadata.labels),
            None => labels::of(&None),
        }
    }

    /// Whether `port` is taken on this node (kube-scheduler's `HostPortInfo.CheckConflict`).
    pub fn port_conflict(&self, port: &HostPort) -> bool {
        let Some(ips) = self.ports.get(&(port.protocol.clone(), port.port)) else {
            return false;
        };
        port.ip == "0.0.0.0" || ips.contains_key("0.0.0.0") || ips.contains_key(&port.ip)
    }

    fn account(&mut self, info: &PodInfo, add: bool) {
        if add {
            self.requested.add(&info.request.requests);
            self.nonzero_cpu += info.request.nonzero_cpu;
            self.nonzero_memory += info.request.nonzero_memory;
        } else {
            self.requested.sub(&info.request.requests);
            self.nonzero_cpu -= info.request.nonzero_cpu;
            self.nonzero_memory -= info.request.nonzero_memory;
        }
        for port in &info.ports {
            let ips = self.ports.entry((port.protocol.clone(), port.port)).or_default();
            let count = ips.entry(port.ip.clone()).or_insert(0);
            if add {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    ips.remove(&port.ip);
                }
                if ips.is_empty() {
                    self.ports.remove(&(port.protocol.clone(), port.port));
                }
            }
        }
        if let Some(owner) = &info.owner {
            let count = self.owners.entry(owner.clone()).or_insert(0);
            if add {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.owners.remove(owner);
                }
            }
        }
    }
}

/// The taints a node's conditions imply (`TaintNodesByCondition`).
fn condition_taints(node: &Node) -> Vec<Taint> {
    let taint = |key: &str| Taint {
        key: key.to_string(),
        value: None,
        effect: "NoSchedule".to_string(),
        time_added: None,
    };
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let status = |kind: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.as_str())
    };
    let mut out = Vec::new();
    match status("Ready") {
        Some("True") => {}
        Some("Unknown") => out.push(taint("node.kubernetes.io/unreachable")),
        _ => out.push(taint("node.kubernetes.io/not-ready")),
    }
    for (condition, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
    ] {
        if status(condition) == Some("True") {
            out.push(taint(key));
        }
    }
    out
}

/// A pod counted on a node.
#[derive(Debug)]
pub struct Placed {
    pub info: Arc<PodInfo>,
    pub uid: String,
    pub node: usize,
    /// Bound by us, not yet seen bound in the informer.
    pub assumed: bool,
}

impl Placed {
    pub fn terminating(&self) -> bool {
        self.info.pod.metadata.deletion_timestamp.is_some()
    }
}

/// Every node and every pod bound (or being bound) to one.
#[derive(Debug, Default)]
pub struct Cache {
    /// Node slots; a slot keeps its index for as long as the node or a pod on it exists.
    slots: Vec<Option<NodeInfo>>,
    by_name: HashMap<Arc<str>, usize>,
    free: Vec<usize>,
    /// Nodes known from the API (slots whose `node` is set).
    node_count: usize,
    pods: HashMap<String, Placed>,
    /// (zone, owner uid) → pods.
    zone_owners: HashMap<(Arc<str>, Arc<str>), u32>,
    /// Pods on nodes with any inter-pod affinity term (they matter to others' scoring).
    with_affinity: usize,
}

/// The key of a pod in the cache and the queue.
pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Cache {
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The node in slot `index`, if that slot holds a node known from the API.
    pub fn node(&self, index: usize) -> Option<&NodeInfo> {
        self.slots.get(index)?.as_ref().filter(|n| n.node.is_some())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Every node known from the API, with its slot index.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &NodeInfo)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().filter(|n| n.node.is_some()).map(|n| (i, n)))
    }

    pub fn pod(&self, key: &str) -> Option<&Placed> {
        self.pods.get(key)
    }

    /// Every pod on a node, with the labels of its node.
    pub fn placed(&self) -> impl Iterator<Item = (&Placed, &NodeInfo)> {
        self.pods
            .values()
            .filter_map(|p| self.slots.get(p.node)?.as_ref().map(|n| (p, n)))
    }

    pub fn any_affinity(&self) -> bool {
        self.with_affinity > 0
    }

    pub fn zone_count(&self, zone: &Arc<str>, owner: &Arc<str>) -> u32 {
        self.zone_owners
            .get(&(zone.clone(), owner.clone()))
            .copied()
            .unwrap_or(0)
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(index) = self.by_name.get(name) {
            return *index;
        }
        let name: Arc<str> = Arc::from(name);
        let info = NodeInfo::new(name.clone());
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(info);
                index
            }
            None => {
                self.slots.push(Some(info));
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name, index);
        index
    }

    /// Frees a slot that holds neither a node nor pods.
    fn release_if_empty(&mut self, index: usize) {
        let empty = matches!(&self.slots[index], Some(n) if n.node.is_none() && n.pods.is_empty());
        if empty && let Some(info) = self.slots[index].take() {
            self.by_name.remove(&info.name);
            self.free.push(index);
        }
    }

    /// Adds or updates a node; true when something the scheduler decides on changed
    /// (so pods that did not fit before may fit now).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let index = self.slot(&name);
        let status = node.status.as_ref();
        let allocatable = match status.and_then(|s| s.allocatable.as_ref()).filter(|a| !a.is_empty()) {
            Some(allocatable) => Resources::from_list(Some(allocatable)),
            None => Resources::from_list(status.and_then(|s| s.capacity.as_ref())),
        };
        let mut taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        for implied in condition_taints(&node) {
            if !taints
                .iter()
                .any(|t| t.key == implied.key && t.effect == implied.effect)
            {
                taints.push(implied);
            }
        }
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let node_labels = labels::of(&node.metadata.labels);
        let zone = match (node_labels.get(REGION_LABEL), node_labels.get(ZONE_LABEL)) {
            (None, None) => None,
            (region, zone) => Some(Arc::from(format!(
                "{}:{}",
                region.map_or("", String::as_str),
                zone.map_or("", String::as_str)
            ))),
        };
        let Some(info) = self.slots[index].as_mut() else {
            return false;
        };
        let changed = match &info.node {
            None => {
                self.node_count += 1;
                true
            }
            Some(old) => {
                info.allocatable != allocatable
                    || info.taints != taints
                    || info.unschedulable != unschedulable
                    || old.metadata.labels != node.metadata.labels
            }
        };
        if info.zone != zone {
            for (owner, count) in &info.owners {
                if let Some(old) = &info.zone {
                    decrement(&mut self.zone_owners, (old.clone(), owner.clone()), *count);
                }
                if let Some(new) = &zone {
                    *self.zone_owners.entry((new.clone(), owner.clone())).or_insert(0) += count;
                }
            }
        }
        info.allocatable = allocatable;
        info.taints = taints;
        info.unschedulable = unschedulable;
        info.zone = zone;
        info.node = Some(node);
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(index) = self.by_name.get(name).copied() else {
            return;
        };
        if let Some(info) = self.slots[index].as_mut()
            && info.node.take().is_some()
        {
            self.node_count -= 1;
        }
        self.release_if_empty(index);
    }

    /// Counts `info` on node `node_name`, replacing what was counted for the same
    /// key before. Returns whether this is news to the cache (a pod it did not know
    /// on that node), as opposed to an update or the confirmation of an assumed pod.
    pub fn add_pod(&mut self, key: &str, info: Arc<PodInfo>, node_name: &str, assumed: bool) -> bool {
        let uid = info.pod.metadata.uid.clone().unwrap_or_default();
        let known = self
            .pods
            .get(key)
            .is_some_and(|p| p.uid == uid && self.by_name.get(node_name) == Some(&p.node));
        self.remove_pod(key);
        let node = self.slot(node_name);
        if let Some(slot) = self.slots[node].as_mut() {
            slot.account(&info, true);
            slot.pods.insert(key.to_string());
            if let (Some(zone), Some(owner)) = (&slot.zone, &info.owner) {
                *self.zone_owners.entry((zone.clone(), owner.clone())).or_insert(0) += 1;
            }
        }
        if info.has_affinity() {
            self.with_affinity += 1;
        }
        self.pods.insert(
            key.to_string(),
            Placed {
                info,
                uid,
                node,
                assumed,
            },
        );
        !known
    }

    /// Stops counting the pod; true if it was counted.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(placed) = self.pods.remove(key) else {
            return false;
        };
        if placed.info.has_affinity() {
            self.with_affinity -= 1;
        }
        if let Some(slot) = self.slots[placed.node].as_mut() {
            slot.account(&placed.info, false);
            slot.pods.remove(key);
            if let (Some(zone), Some(owner)) = (&slot.zone, &placed.info.owner) {
                decrement(&mut self.zone_owners, (zone.clone(), owner.clone()), 1);
            }
        }
        self.release_if_empty(placed.node);
        true
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K, by: u32) {
    if let Some(count) = map.get_mut(&key) {
        *count = count.saturating_sub(by);
        if *count == 0 {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// A Ready node with these labels, allocatable and taints.
    pub fn node(
        name: &str,
        labels: serde_json::Value,
        allocatable: serde_json::Value,
        taints: serde_json::Value,
    ) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints},
                "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap(),
        )
    }

    pub fn pod(name: &str, spec: serde_json::Value) -> Arc<PodInfo> {
        pod_with(name, json!({}), spec)
    }

    pub fn pod_with(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> Arc<PodInfo> {
        let pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": spec,
        }))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn pods_are_counted_on_their_node_and_uncounted_when_removed() {
        let mut cache = Cache::default();
        assert!(cache.upsert_node(node(
            "n1",
            json!({"topology.kubernetes.io/zone": "a"}),
            json!({"cpu": "2", "pods": "10"}),
            json!([])
        )));
        let p = pod(
            "p",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}},
                "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
        );
        assert!(cache.add_pod("default/p", p.clone(), "n1", true));
        assert!(
            !cache.add_pod("default/p", p.clone(), "n1", false),
            "confirming is no news"
        );
        let n = cache.node(0).unwrap();
        assert_eq!((n.requested.milli_cpu, n.requested.pods), (500, 1));
        assert!(n.port_conflict(&p.ports[0]));
        let zone: Arc<str> = Arc::from(":a");
        let owner: Arc<str> = Arc::from("rs-1");
        assert_eq!(cache.zone_count(&zone, &owner), 1);
        // Moving the node to another zone moves its replicas' count.
        cache.upsert_node(node(
            "n1",
            json!({"topology.kubernetes.io/zone": "b"}),
            json!({"cpu": "2", "pods": "10"}),
            json!([]),
        ));
        assert_eq!(cache.zone_count(&zone, &owner), 0);
        assert_eq!(cache.zone_count(&Arc::from(":b"), &owner), 1);
        assert!(cache.remove_pod("default/p"));
        let n = cache.node(0).unwrap();
        assert_eq!((n.requested.milli_cpu, n.requested.pods), (0, 0));
        assert!(!n.port_conflict(&p.ports[0]));
        assert!(n.owners.is_empty());
        // A pod on an unknown node keeps a slot that is not a node.
        cache.add_pod("default/q", p, "ghost", false);
        assert_eq!(cache.node_count(), 1);
        assert_eq!(cache.nodes().count(), 1);
        cache.remove_pod("default/q");
        cache.remove_node("n1");
        assert_eq!((cache.node_count(), cache.by_name.len()), (0, 0));
    }

    #[test]
    fn conditions_become_taints() {
        let mut cache = Cache::default();
        let not_ready: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "True"}]},
        }))
        .unwrap();
        cache.upsert_node(Arc::new(not_ready));
        let keys: Vec<&str> = cache.node(0).unwrap().taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(
            keys,
            ["node.kubernetes.io/not-ready", "node.kubernetes.io/disk-pressure"]
        );
        // A heartbeat that changes nothing the scheduler looks at is no news.
        assert!(cache.upsert_node(node("m", json!({}), json!({}), json!([]))));
        assert!(!cache.upsert_node(node("m", json!({}), json!({}), json!([]))));
    }
}
