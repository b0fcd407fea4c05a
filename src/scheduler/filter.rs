//! Which nodes a pod may go to: kube-scheduler's default filter plugins in their
//! order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit, PodTopologySpread, InterPodAffinity), each node stopping at the
//! first plugin that rejects it, with the reasons worded as kube-scheduler words them.
//! When no node fits, [`FitError::message`] is the `PodScheduled` condition message
//! and `FailedScheduling` event note kube-scheduler writes, down to the preemption
//! postscript (no preemption is attempted: pods are never evicted for others).
//!
//! Like kube-scheduler, a search stops once enough feasible nodes are found in big
//! clusters (all of them below 100 nodes, 42% at 1,000), starting where the previous
//! search stopped so that every node gets its turn.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::cache::{Cache, NodeInfo};
use super::labels::Labels;
use super::pod::{PodInfo, untolerated};
use super::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};

/// Looks up the labels of a namespace (for namespaceSelector in affinity terms).
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> Option<Labels>;

/// Why one node was rejected, as kube-scheduler words it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    Unschedulable,
    Taint {
        key: String,
        value: String,
    },
    NodeAffinity,
    NodePorts,
    TooManyPods,
    Insufficient(String),
    SpreadMissingLabel,
    Spread,
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
    /// Not among the nodes the pod's `metadata.name` node affinity names.
    NotNamed,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::Taint { key, value } => write!(f, "node(s) had untolerated taint {{{key}: {value}}}"),
            Reason::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::NodePorts => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::SpreadMissingLabel => {
                f.write_str("node(s) didn't match pod topology spread constraints (missing required label)")
            }
            Reason::Spread => f.write_str("node(s) didn't match pod topology spread constraints"),
            Reason::Affinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinity => f.write_str("node(s) didn't satisfy existing pods anti-affinity rules"),
            Reason::NotNamed => f.write_str("node(s) didn't satisfy plugin(s) [NodeAffinity]"),
        }
    }
}

/// A node's rejection: its reasons, and whether evicting pods could ever help
/// (kube-scheduler's Unschedulable vs UnschedulableAndUnresolvable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reasons: Vec<Reason>,
    pub resolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: Reason) -> Rejection {
        Rejection {
            reasons: vec![reason],
            resolvable: false,
        }
    }

    fn resolvable(reason: Reason) -> Rejection {
        Rejection {
            reasons: vec![reason],
            resolvable: true,
        }
    }
}

/// Why a pod fits no node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// A rejection of the pod before any node was looked at.
    pub prefilter: Option<String>,
    /// How many nodes gave each reason.
    pub reasons: HashMap<Reason, usize>,
    /// Nodes whose rejection preemption could resolve.
    pub resolvable: usize,
    /// `preemptionPolicy: Never`.
    pub preempt_never: bool,
}

/// The histogram "N reason, M other reason" sorted as Go's `sort.Strings`.
fn histogram(counts: impl IntoIterator<Item = (String, usize)>) -> String {
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl FitError {
    fn record(&mut self, rejection: Rejection) {
        if rejection.resolvable {
            self.resolvable += 1;
        }
        for reason in rejection.reasons {
            *self.reasons.entry(reason).or_insert(0) += 1;
        }
    }

    /// kube-scheduler's `FitError.Error()` followed by DefaultPreemption's message, e.g.
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint
    /// {k: v}. preemption: 0/3 nodes are available: 1 No preemption victims found for
    /// incoming pod, 2 Preemption is not helpful for scheduling..` (the doubled period
    /// is kube-scheduler's).
    pub fn message(&self) -> String {
        let mut message = format!("0/{} nodes are available:", self.nodes);
        if let Some(prefilter) = &self.prefilter {
            message.push_str(&format!(" {prefilter}."));
        } else if !self.reasons.is_empty() {
            let counts = self.reasons.iter().map(|(r, n)| (r.to_string(), *n));
            message.push_str(&format!(" {}.", histogram(counts)));
        }
        let preemption = if self.preempt_never {
            "preemption: not eligible due to preemptionPolicy=Never.".to_string()
        } else {
            let mut counts = Vec::new();
            if self.resolvable > 0 {
                counts.push((
                    "No preemption victims found for incoming pod".to_string(),
                    self.resolvable,
                ));
            }
            let unresolvable = self.nodes.saturating_sub(self.resolvable);
            if unresolvable > 0 {
                counts.push(("Preemption is not helpful for scheduling".to_string(), unresolvable));
            }
            format!(
                "preemption: 0/{} nodes are available: {}.",
                self.nodes,
                histogram(counts)
            )
        };
        message.push_str(&format!(" {preemption}."));
        message
    }
}

/// Counts of matching pods by topology key and value.
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

fn bump(counts: &mut TopologyCounts, labels: &Labels, key: &str, by: i64) {
    if let Some(value) = labels.get(key) {
        *counts
            .entry(key.to_string())
            .or_default()
            .entry(value.clone())
            .or_insert(0) += by;
    }
}

fn count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
}

/// Per-constraint state of PodTopologySpread: matching pods per domain and the
/// global minimum.
#[derive(Debug, Default)]
struct Spread {
    /// constraint index → domain → matching pods.
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

/// Per-pod state of InterPodAffinity.
#[derive(Debug, Default)]
struct Affinity {
    /// Existing pods whose anti-affinity terms match the pod, by their domain.
    existing_anti: TopologyCounts,
    /// Pods matching all the pod's affinity terms, by domain.
    affinity: TopologyCounts,
    /// Pods matching any of the pod's anti-affinity terms, by domain.
    anti: TopologyCounts,
}

/// What is computed once per scheduling attempt before nodes are filtered.
#[derive(Debug, Default)]
pub struct PreFilter {
    names: Option<HashSet<String>>,
    spread: Option<Spread>,
    affinity: Option<Affinity>,
}

/// The node-independent part of filtering. `Err` carries a message when the pod
/// can fit no node at all.
pub fn prefilter(cache: &Cache, pod: &PodInfo, namespace_labels: NamespaceLabels) -> Result<PreFilter, String> {
    let mut pre = PreFilter::default();
    if let Some(names) = pod.required_node.as_ref().and_then(|t| t.names()) {
        if names.is_empty() {
            return Err("pod affinity terms conflict".to_string());
        }
        pre.names = Some(names.into_iter().collect());
    }
    if !pod.spread.is_empty() {
        pre.spread = Some(spread_state(cache, pod));
    }
    if !pod.affinity.is_empty() || !pod.anti_affinity.is_empty() || cache.any_affinity() {
        pre.affinity = Some(affinity_state(cache, pod, namespace_labels));
    }
    Ok(pre)
}

fn spread_state(cache: &Cache, pod: &PodInfo) -> Spread {
    let constraints = &pod.spread;
    let mut state = Spread {
        counts: vec![HashMap::new(); constraints.len()],
        min: vec![0; constraints.len()],
    };
    for (_, node) in cache.nodes() {
        let labels = node.labels();
        if !constraints.iter().all(|c| labels.contains_key(&c.topology_key)) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if c.honor_node_affinity && !pod.fits_node_selector(&node.name, labels) {
                continue;
            }
            if c.honor_taints && untolerated(&node.taints, &pod.tolerations, &["NoSchedule", "NoExecute"]).is_some() {
                continue;
            }
            let matching = node
                .pods
                .iter()
                .filter_map(|key| cache.pod(key))
                .filter(|p| {
                    !p.terminating() && p.info.namespace == pod.namespace && c.selector.matches(p.info.labels())
                })
                .count() as i64;
            *state.counts[i].entry(labels[&c.topology_key].clone()).or_insert(0) += matching;
        }
    }
    for (i, c) in constraints.iter().enumerate() {
        let domains = &state.counts[i];
        state.min[i] = match c.min_domains {
            Some(min_domains) if (domains.len() as i64) < min_domains => 0,
            _ => domains.values().copied().min().unwrap_or(0),
        };
    }
    state
}

fn affinity_state(cache: &Cache, pod: &PodInfo, namespace_labels: NamespaceLabels) -> Affinity {
    let mut state = Affinity::default();
    let labels = pod.labels();
    for (placed, node) in cache.placed() {
        let node_labels = node.labels();
        let other = &placed.info;
        for term in &other.anti_affinity {
            if term.matches(&pod.namespace, labels, || namespace_labels(&pod.namespace)) {
                bump(&mut state.existing_anti, node_labels, &term.topology_key, 1);
            }
        }
        let other_ns = || namespace_labels(&other.namespace);
        if !pod.affinity.is_empty()
            && pod
                .affinity
                .iter()
                .all(|t| t.matches(&other.namespace, other.labels(), other_ns))
        {
            for term in &pod.affinity {
                bump(&mut state.affinity, node_labels, &term.topology_key, 1);
            }
        }
        for term in &pod.anti_affinity {
            if term.matches(&other.namespace, other.labels(), other_ns) {
                bump(&mut state.anti, node_labels, &term.topology_key, 1);
            }
        }
    }
    state
}

/// Checks one node, in kube-scheduler's plugin order.
pub fn filter(node: &NodeInfo, pod: &PodInfo, pre: &PreFilter) -> Result<(), Rejection> {
    let labels = node.labels();
    // NodeUnschedulable: cordoned, unless the pod tolerates the cordon's taint.
    if node.unschedulable {
        let cordon = k8s_openapi::api::core::v1::Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if !pod.tolerations.iter().any(|t| super::pod::tolerates(t, &cordon)) {
            return Err(Rejection::unresolvable(Reason::Unschedulable));
        }
    }
    // TaintToleration.
    if let Some(taint) = untolerated(&node.taints, &pod.tolerations, &["NoSchedule", "NoExecute"]) {
        return Err(Rejection::unresolvable(Reason::Taint {
            key: taint.key.clone(),
            value: taint.value.clone().unwrap_or_default(),
        }));
    }
    // NodeAffinity (nodeSelector and required node affinity).
    if !pod.fits_node_selector(&node.name, labels) {
        return Err(Rejection::unresolvable(Reason::NodeAffinity));
    }
    // NodePorts.
    if pod.ports.iter().any(|p| node.port_conflict(p)) {
        return Err(Rejection::resolvable(Reason::NodePorts));
    }
    // NodeResourcesFit.
    fit_resources(node, pod)?;
    // PodTopologySpread.
    if let Some(spread) = &pre.spread {
        for (i, c) in pod.spread.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Err(Rejection::unresolvable(Reason::SpreadMissingLabel));
            };
            let matching = spread.counts[i].get(value).copied().unwrap_or(0);
            let own = i64::from(c.selector.matches(pod.labels()));
            if matching + own - spread.min[i] > c.max_skew {
                return Err(Rejection::resolvable(Reason::Spread));
            }
        }
    }
    // InterPodAffinity.
    if let Some(affinity) = &pre.affinity {
        check_affinity(labels, pod, affinity)?;
    }
    Ok(())
}

fn fit_resources(node: &NodeInfo, pod: &PodInfo) -> Result<(), Rejection> {
    let mut rejection = Rejection {
        reasons: Vec::new(),
        resolvable: true,
    };
    if node.requested.pods + 1 > node.allocatable.pods {
        rejection.reasons.push(Reason::TooManyPods);
    }
    let request = &pod.request.requests;
    let mut check = |name: &str, wanted: i64| {
        let allocatable = node.allocatable.get(name);
        if wanted > 0 && wanted > allocatable - node.requested.get(name) {
            rejection.reasons.push(Reason::Insufficient(name.to_string()));
            if wanted > allocatable {
                rejection.resolvable = false;
            }
        }
    };
    check(CPU, request.milli_cpu);
    check(MEMORY, request.memory);
    check(EPHEMERAL_STORAGE, request.ephemeral_storage);
    for (name, wanted) in &request.scalar {
        check(name, *wanted);
    }
    if rejection.reasons.is_empty() {
        Ok(())
    } else {
        Err(rejection)
    }
}

fn check_affinity(labels: &Labels, pod: &PodInfo, state: &Affinity) -> Result<(), Rejection> {
    // The pod's required affinity: every term needs a matching pod in the node's
    // domain, unless no pod matches anywhere and the pod matches its own terms (the
    // first of a group that wants to be together).
    let mut pods_exist = true;
    for term in &pod.affinity {
        let Some(value) = labels.get(&term.topology_key) else {
            return Err(Rejection::unresolvable(Reason::Affinity));
        };
        if count(&state.affinity, &term.topology_key, value) <= 0 {
            pods_exist = false;
        }
    }
    if !pods_exist {
        let first = state.affinity.is_empty()
            && pod
                .affinity
                .iter()
                .all(|t| t.matches(&pod.namespace, pod.labels(), || Some(Labels::new())));
        if !first {
            return Err(Rejection::unresolvable(Reason::Affinity));
        }
    }
    for term in &pod.anti_affinity {
        if let Some(value) = labels.get(&term.topology_key)
            && count(&state.anti, &term.topology_key, value) > 0
        {
            return Err(Rejection::resolvable(Reason::AntiAffinity));
        }
    }
    if !state.existing_anti.is_empty()
        && labels
            .iter()
            .any(|(key, value)| count(&state.existing_anti, key, value) > 0)
    {
        return Err(Rejection::resolvable(Reason::ExistingAntiAffinity));
    }
    Ok(())
}

/// kube-scheduler's `numFeasibleNodesToFind` with the default
/// percentageOfNodesToScore: every node below 100, then 50% minus 1% per 125 nodes
/// (at least 5%, at least 100 nodes).
pub fn feasible_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let percentage = (50 - (nodes / 125) as i64).max(5) as usize;
    (nodes * percentage / 100).max(100)
}

/// The nodes (slot indexes) `pod` may go to, or why there is none. `start` is the
/// rotating slot to begin with; it moves past the nodes looked at.
pub fn find_feasible(
    cache: &Cache,
    pod: &PodInfo,
    start: &mut usize,
    namespace_labels: NamespaceLabels,
) -> Result<Vec<usize>, FitError> {
    let mut error = FitError {
        nodes: cache.node_count(),
        preempt_never: pod.preempt_never,
        ..Default::default()
    };
    let pre = match prefilter(cache, pod, namespace_labels) {
        Ok(pre) => pre,
        Err(message) => {
            error.prefilter = Some(message);
            return Err(error);
        }
    };
    let mut feasible = Vec::new();
    if let Some(names) = &pre.names {
        let mut candidates: Vec<usize> = names
            .iter()
            .filter_map(|n| cache.index_of(n))
            .filter(|i| cache.node(*i).is_some())
            .collect();
        candidates.sort_unstable();
        let absent = error.nodes - candidates.len();
        if absent > 0 {
            error.reasons.insert(Reason::NotNamed, absent);
        }
        for index in candidates {
            if let Some(node) = cache.node(index) {
                match filter(node, pod, &pre) {
                    Ok(()) => feasible.push(index),
                    Err(rejection) => error.record(rejection),
                }
            }
        }
    } else {
        let slots = cache.slot_count();
        let wanted = feasible_to_find(error.nodes);
        let mut looked = 0;
        while looked < slots && feasible.len() < wanted {
            let index = (*start + looked) % slots;
            looked += 1;
            let Some(node) = cache.node(index) else {
                continue;
            };
            match filter(node, pod, &pre) {
                Ok(()) => feasible.push(index),
                Err(rejection) => error.record(rejection),
            }
        }
        if slots > 0 {
            *start = (*start + looked) % slots;
        }
    }
    if feasible.is_empty() { Err(error) } else { Ok(feasible) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod, pod_with};
    use serde_json::json;

    fn no_namespaces(_: &str) -> Option<Labels> {
        None
    }

    fn feasible(cache: &Cache, p: &PodInfo) -> Result<Vec<String>, String> {
        let mut start = 0;
        find_feasible(cache, p, &mut start, &no_namespaces)
            .map(|nodes| {
                let mut names: Vec<String> = nodes.iter().map(|i| cache.node(*i).unwrap().name.to_string()).collect();
                names.sort();
                names
            })
            .map_err(|e| e.message())
    }

    fn three_nodes() -> Cache {
        let mut cache = Cache::default();
        cache.upsert_node(node(
            "a",
            json!({"disk": "ssd", "kubernetes.io/hostname": "a", "topology.kubernetes.io/zone": "z1"}),
            json!({"cpu": "1", "memory": "1Gi", "pods": "3"}),
            json!([]),
        ));
        cache.upsert_node(node(
            "b",
            json!({"disk": "hdd", "kubernetes.io/hostname": "b", "topology.kubernetes.io/zone": "z1"}),
            json!({"cpu": "4", "memory": "4Gi", "pods": "3"}),
            json!([]),
        ));
        cache.upsert_node(node(
            "c",
            json!({"disk": "ssd", "kubernetes.io/hostname": "c", "topology.kubernetes.io/zone": "z2"}),
            json!({"cpu": "4", "memory": "4Gi", "pods": "3"}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        ));
        cache
    }

    fn cpu(amount: &str) -> serde_json::Value {
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": amount}}}]})
    }

    #[test]
    fn resources_taints_and_selectors_with_kube_scheduler_messages() {
        let cache = three_nodes();
        assert_eq!(feasible(&cache, &pod("p", cpu("2"))), Ok(vec!["b".into()]));
        assert_eq!(
            feasible(&cache, &pod("p", cpu("8"))).unwrap_err(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
        let selector = json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}});
        assert_eq!(feasible(&cache, &pod("p", selector)), Ok(vec!["a".into()]));
        let tolerant = json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]});
        assert_eq!(feasible(&cache, &pod("p", tolerant)), Ok(vec!["a".into(), "c".into()]));
        let nowhere = json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "nvme"}});
        assert_eq!(
            feasible(&cache, &pod("p", nowhere)).unwrap_err(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
             2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
        let never = json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "5Gi"}}}],
            "preemptionPolicy": "Never"});
        assert_eq!(
            feasible(&cache, &pod("p", never)).unwrap_err(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory. \
             preemption: not eligible due to preemptionPolicy=Never.."
        );
    }

    #[test]
    fn bound_pods_take_resources_ports_and_pod_slots() {
        let mut cache = three_nodes();
        cache.add_pod("default/x", pod("x", cpu("3500m")), "b", true);
        assert_eq!(
            feasible(&cache, &pod("p", cpu("2"))).unwrap_err(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
             2 Preemption is not helpful for scheduling.."
        );
        let port = json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]});
        cache.add_pod("default/y", pod("y", port.clone()), "a", true);
        assert_eq!(feasible(&cache, &pod("p", port.clone())), Ok(vec!["b".into()]));
        let on_ip = json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"}]}]});
        assert_eq!(
            feasible(&cache, &pod("p", on_ip)),
            Ok(vec!["b".into()]),
            "0.0.0.0 conflicts with any IP"
        );
        let udp =
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80, "protocol": "UDP"}]}]});
        assert_eq!(feasible(&cache, &pod("p", udp)), Ok(vec!["a".into(), "b".into()]));
        cache.add_pod("default/z1", pod("z1", json!({"containers": []})), "b", true);
        cache.add_pod("default/z2", pod("z2", json!({"containers": []})), "b", true);
        assert_eq!(
            feasible(&cache, &pod("p", json!({"containers": []}))),
            Ok(vec!["a".into()]),
            "b holds 3 pods"
        );
    }

    #[test]
    fn required_node_affinity_and_named_nodes() {
        let cache = three_nodes();
        let affinity = |terms: serde_json::Value| {
            pod(
                "p",
                json!({"containers": [], "tolerations": [{"operator": "Exists"}], "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        let zone2_or_hdd = json!([
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z2"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]},
        ]);
        assert_eq!(
            feasible(&cache, &affinity(zone2_or_hdd)),
            Ok(vec!["b".into(), "c".into()])
        );
        let named = json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "gone"]}]}]);
        assert_eq!(feasible(&cache, &affinity(named)), Ok(vec!["a".into()]));
        let named_full = json!([{
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}],
            "matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}],
        }]);
        assert_eq!(
            feasible(&cache, &affinity(named_full)).unwrap_err(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             2 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
        let conflict = json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a"]},
            {"key": "metadata.name", "operator": "In", "values": ["b"]},
        ]}]);
        assert_eq!(
            feasible(&cache, &affinity(conflict)).unwrap_err(),
            "0/3 nodes are available: pod affinity terms conflict. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
    }

    #[test]
    fn cordoned_and_not_ready_nodes() {
        let mut cache = Cache::default();
        let cordoned: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "metadata": {"name": "a"}, "spec": {"unschedulable": true},
            "status": {"allocatable": {"pods": "10"}, "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let not_ready: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
            "metadata": {"name": "b"}, "status": {"allocatable": {"pods": "10"}, "conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .unwrap();
        cache.upsert_node(std::sync::Arc::new(cordoned));
        cache.upsert_node(std::sync::Arc::new(not_ready));
        assert_eq!(
            feasible(&cache, &pod("p", json!({"containers": []}))).unwrap_err(),
            "0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             1 node(s) were unschedulable. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
        );
        let daemon = json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]});
        assert_eq!(feasible(&cache, &pod("p", daemon)), Ok(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn pod_anti_affinity_and_affinity() {
        let mut cache = three_nodes();
        let web = json!({"app": "web"});
        let anti = json!({"containers": [], "tolerations": [{"operator": "Exists"}], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        cache.add_pod("default/w1", pod_with("w1", web.clone(), anti.clone()), "a", false);
        assert_eq!(
            feasible(&cache, &pod_with("w2", web.clone(), anti.clone())),
            Ok(vec!["b".into(), "c".into()])
        );
        // Existing pods' anti-affinity keeps even a pod without terms away.
        assert_eq!(
            feasible(
                &cache,
                &pod_with(
                    "w3",
                    web.clone(),
                    json!({"containers": [], "tolerations": [{"operator": "Exists"}]})
                )
            ),
            Ok(vec!["b".into(), "c".into()])
        );
        cache.add_pod("default/w2", pod_with("w2", web.clone(), anti.clone()), "b", false);
        cache.add_pod("default/w3", pod_with("w3", web.clone(), anti.clone()), "c", false);
        assert_eq!(
            feasible(&cache, &pod_with("w4", web.clone(), anti.clone())).unwrap_err(),
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
        );
        // Zone anti-affinity: z1 holds a web pod.
        let mut cache = three_nodes();
        cache.add_pod(
            "default/w1",
            pod_with("w1", web.clone(), json!({"containers": []})),
            "a",
            false,
        );
        let zone_anti = json!({"containers": [], "tolerations": [{"operator": "Exists"}], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
        assert_eq!(feasible(&cache, &pod("x", zone_anti)), Ok(vec!["c".into()]));
        // Affinity to web pods' zone; the first pod of a self-affine group may go anywhere.
        let zone_affinity = json!({"containers": [], "tolerations": [{"operator": "Exists"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
        assert_eq!(
            feasible(&cache, &pod("y", zone_affinity.clone())),
            Ok(vec!["a".into(), "b".into()])
        );
        let empty = three_nodes();
        assert_eq!(
            feasible(&empty, &pod_with("y", json!({"app": "db"}), zone_affinity.clone())).unwrap_err(),
            "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
        assert_eq!(
            feasible(&empty, &pod_with("y", web.clone(), zone_affinity)),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn topology_spread_do_not_schedule() {
        let mut cache = three_nodes();
        let spread = |key: &str| {
            json!({"containers": [], "tolerations": [{"operator": "Exists"}], "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": "web"}}}]})
        };
        let web = json!({"app": "web"});
        cache.add_pod(
            "default/w1",
            pod_with("w1", web.clone(), spread("topology.kubernetes.io/zone")),
            "a",
            false,
        );
        assert_eq!(
            feasible(
                &cache,
                &pod_with("w2", web.clone(), spread("topology.kubernetes.io/zone"))
            ),
            Ok(vec!["c".into()]),
            "z1 has one, z2 none"
        );
        assert_eq!(
            feasible(&cache, &pod_with("w2", web.clone(), spread("kubernetes.io/hostname"))),
            Ok(vec!["b".into(), "c".into()])
        );
        assert_eq!(
            feasible(&cache, &pod_with("w2", web.clone(), spread("rack"))).unwrap_err(),
            "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label). \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
        );
        cache.add_pod(
            "default/w2",
            pod_with("w2", web.clone(), json!({"containers": []})),
            "b",
            false,
        );
        cache.add_pod(
            "default/w3",
            pod_with("w3", web.clone(), json!({"containers": []})),
            "c",
            false,
        );
        // One web pod per node: any node takes the fourth.
        assert_eq!(
            feasible(&cache, &pod_with("w4", web.clone(), spread("kubernetes.io/hostname"))).map(|n| n.len()),
            Ok(3)
        );
        cache.add_pod(
            "default/w4",
            pod_with("w4", web.clone(), json!({"containers": []})),
            "a",
            false,
        );
        assert_eq!(
            feasible(&cache, &pod_with("w5", web.clone(), spread("kubernetes.io/hostname"))),
            Ok(vec!["b".into(), "c".into()])
        );
    }

    #[test]
    fn big_clusters_stop_early_and_rotate() {
        assert_eq!(feasible_to_find(50), 50);
        assert_eq!(feasible_to_find(100), 100);
        assert_eq!(feasible_to_find(1000), 420);
        assert_eq!(feasible_to_find(10_000), 500);
        let mut cache = Cache::default();
        for i in 0..200 {
            cache.upsert_node(node(&format!("n{i}"), json!({}), json!({"pods": "10"}), json!([])));
        }
        let mut start = 0;
        let p = pod("p", json!({"containers": []}));
        let first = find_feasible(&cache, &p, &mut start, &no_namespaces).unwrap();
        assert_eq!((first.len(), start), (100, 100));
        let second = find_feasible(&cache, &p, &mut start, &no_namespaces).unwrap();
        assert_eq!((second[0], start), (100, 0));
    }
}
