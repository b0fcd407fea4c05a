//! Which feasible node a pod goes to: kube-scheduler's scoring plugins with its
//! default weights, each normalised to 0-100 over the feasible nodes:
//! TaintToleration (3: fewer untolerated PreferNoSchedule taints), NodeAffinity
//! (2: preferred node affinity), replica spreading (2: fewer pods of the same
//! controller on the node and in its zone, as the SelectorSpread plugin and the
//! default topology spreading do), InterPodAffinity (2: preferred pod affinity and
//! anti-affinity, both the pod's and the existing pods'), NodeResourcesFit (1:
//! least allocated) and NodeResourcesBalancedAllocation (1). Ties go to the node
//! found first, and the search starts at a rotating node.

use super::cache::{Cache, NodeInfo};
use super::filter::NamespaceLabels;
use super::labels::Labels;
use super::pod::{PodInfo, untolerated};

const MAX: i64 = 100;

/// Scales raw scores to 0..=MAX by the largest; `reverse` makes fewer better.
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        *score = match (max > 0, reverse) {
            (false, true) => MAX,
            (false, false) => 0,
            (true, true) => MAX - MAX * *score / max,
            (true, false) => MAX * *score / max,
        };
    }
}

fn taint_scores(nodes: &[&NodeInfo], pod: &PodInfo) -> Vec<i64> {
    let tolerations: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
        .cloned()
        .collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|t| untolerated(std::slice::from_ref(*t), &tolerations, &["PreferNoSchedule"]).is_some())
                .count() as i64
        })
        .collect();
    normalize(&mut scores, true);
    scores
}

fn node_affinity_scores(nodes: &[&NodeInfo], pod: &PodInfo) -> Vec<i64> {
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            pod.preferred_node
                .iter()
                .filter(|(_, term)| term.matches(&n.name, n.labels()))
                .map(|(weight, _)| *weight)
                .sum()
        })
        .collect();
    normalize(&mut scores, false);
    scores
}

/// Fewer replicas of the pod's controller on the node, and (weighted 2/3) in its
/// zone, score higher.
fn spread_scores(cache: &Cache, nodes: &[&NodeInfo], pod: &PodInfo) -> Vec<i64> {
    let Some(owner) = &pod.owner else {
        return vec![0; nodes.len()];
    };
    let by_node: Vec<i64> = nodes
        .iter()
        .map(|n| i64::from(n.owners.get(owner).copied().unwrap_or(0)))
        .collect();
    let by_zone: Vec<Option<i64>> = nodes
        .iter()
        .map(|n| n.zone.as_ref().map(|z| i64::from(cache.zone_count(z, owner))))
        .collect();
    let max_node = by_node.iter().copied().max().unwrap_or(0);
    let max_zone = by_zone.iter().flatten().copied().max().unwrap_or(0);
    by_node
        .iter()
        .zip(&by_zone)
        .map(|(count, zone)| {
            let mut score = match max_node {
                0 => MAX as f64,
                max => MAX as f64 * (max - count) as f64 / max as f64,
            };
            if let Some(zone) = zone {
                let zone_score = match max_zone {
                    0 => MAX as f64,
                    max => MAX as f64 * (max - zone) as f64 / max as f64,
                };
                score = score / 3.0 + zone_score * 2.0 / 3.0;
            }
            score as i64
        })
        .collect()
}

/// Preferred inter-pod affinity: by topology domain, the weights of the pod's
/// preferred terms matching existing pods and of existing pods' terms matching it.
fn inter_pod_scores(cache: &Cache, nodes: &[&NodeInfo], pod: &PodInfo, namespace_labels: NamespaceLabels) -> Vec<i64> {
    let mine = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    if !mine && !cache.any_affinity() {
        return vec![0; nodes.len()];
    }
    let mut domains: std::collections::HashMap<(String, String), i64> = Default::default();
    let mut add = |labels: &Labels, key: &str, weight: i64| {
        if let Some(value) = labels.get(key) {
            *domains.entry((key.to_string(), value.clone())).or_insert(0) += weight;
        }
    };
    let labels = pod.labels();
    for (placed, node) in cache.placed() {
        let other = &placed.info;
        let node_labels = node.labels();
        let other_ns = || namespace_labels(&other.namespace);
        for (weight, term) in &pod.preferred_affinity {
            if term.matches(&other.namespace, other.labels(), other_ns) {
                add(node_labels, &term.topology_key, *weight);
            }
        }
        for (weight, term) in &pod.preferred_anti_affinity {
            if term.matches(&other.namespace, other.labels(), other_ns) {
                add(node_labels, &term.topology_key, -*weight);
            }
        }
        let pod_ns = || namespace_labels(&pod.namespace);
        for (weight, term) in &other.preferred_affinity {
            if term.matches(&pod.namespace, labels, pod_ns) {
                add(node_labels, &term.topology_key, *weight);
            }
        }
        for (weight, term) in &other.preferred_anti_affinity {
            if term.matches(&pod.namespace, labels, pod_ns) {
                add(node_labels, &term.topology_key, -*weight);
            }
        }
        // Existing pods' required affinity counts with kube-scheduler's hardPodAffinityWeight 1.
        for term in &other.affinity {
            if term.matches(&pod.namespace, labels, pod_ns) {
                add(node_labels, &term.topology_key, 1);
            }
        }
    }
    if domains.is_empty() {
        return vec![0; nodes.len()];
    }
    let raw: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.labels()
                .iter()
                .filter_map(|(k, v)| domains.get(&(k.clone(), v.clone())))
                .sum()
        })
        .collect();
    let (min, max) = (
        raw.iter().copied().min().unwrap_or(0),
        raw.iter().copied().max().unwrap_or(0),
    );
    raw.iter()
        .map(|s| {
            if max > min {
                (MAX as f64 * (s - min) as f64 / (max - min) as f64) as i64
            } else {
                0
            }
        })
        .collect()
}

/// NodeResourcesFit's LeastAllocated over CPU and memory (with the scoring
/// defaults for pods that request nothing).
fn least_allocated(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let least = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX / capacity
        }
    };
    let cpu = least(node.nonzero_cpu + pod.request.nonzero_cpu, node.allocatable.milli_cpu);
    let memory = least(
        node.nonzero_memory + pod.request.nonzero_memory,
        node.allocatable.memory,
    );
    (cpu + memory) / 2
}

/// NodeResourcesBalancedAllocation: CPU and memory used in equal shares is best.
fn balanced(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let fraction = |requested: i64, capacity: i64| {
        if capacity <= 0 {
            1.0
        } else {
            (requested as f64 / capacity as f64).min(1.0)
        }
    };
    let cpu = fraction(node.nonzero_cpu + pod.request.nonzero_cpu, node.allocatable.milli_cpu);
    let memory = fraction(
        node.nonzero_memory + pod.request.nonzero_memory,
        node.allocatable.memory,
    );
    let deviation = ((cpu - memory) / 2.0).abs();
    ((1.0 - deviation) * MAX as f64) as i64
}

/// The best of `feasible` (slot indexes, in search order) for `pod`.
pub fn pick(cache: &Cache, pod: &PodInfo, feasible: &[usize], namespace_labels: NamespaceLabels) -> Option<usize> {
    if feasible.len() <= 1 {
        return feasible.first().copied();
    }
    let nodes: Vec<&NodeInfo> = feasible.iter().filter_map(|i| cache.node(*i)).collect();
    if nodes.len() != feasible.len() {
        return feasible.first().copied();
    }
    let taints = taint_scores(&nodes, pod);
    let affinity = node_affinity_scores(&nodes, pod);
    let spread = spread_scores(cache, &nodes, pod);
    let inter_pod = inter_pod_scores(cache, &nodes, pod, namespace_labels);
    let mut best: Option<(i64, usize)> = None;
    for (i, node) in nodes.iter().enumerate() {
        let total = 3 * taints[i]
            + 2 * affinity[i]
            + 2 * spread[i]
            + 2 * inter_pod[i]
            + least_allocated(node, pod)
            + balanced(node, pod);
        if best.is_none_or(|(score, _)| total > score) {
            best = Some((total, feasible[i]));
        }
    }
    best.map(|(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod, pod_with};
    use serde_json::json;

    fn none(_: &str) -> Option<Labels> {
        None
    }

    fn best(cache: &Cache, p: &PodInfo) -> String {
        let feasible: Vec<usize> = cache.nodes().map(|(i, _)| i).collect();
        let index = pick(cache, p, &feasible, &none).unwrap();
        cache.node(index).unwrap().name.to_string()
    }

    fn cluster(n: usize) -> Cache {
        let mut cache = Cache::default();
        for i in 0..n {
            cache.upsert_node(node(
                &format!("n{i}"),
                json!({"kubernetes.io/hostname": format!("n{i}"), "topology.kubernetes.io/zone": format!("z{}", i % 2)}),
                json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
                json!([]),
            ));
        }
        cache
    }

    #[test]
    fn least_allocated_node_wins_and_replicas_spread() {
        let mut cache = cluster(3);
        let busy = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "6Gi"}}}]});
        cache.add_pod("default/big", pod("big", busy), "n0", false);
        let p = pod("p", json!({"containers": [{"name": "c"}]}));
        assert_ne!(best(&cache, &p), "n0");
        // Nine replicas of one ReplicaSet over three empty nodes: spread evenly.
        let mut cache = Cache::default();
        for i in 0..3 {
            cache.upsert_node(node(
                &format!("n{i}"),
                json!({}),
                json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
                json!([]),
            ));
        }
        for i in 0..9 {
            let replica = pod(&format!("r{i}"), json!({"containers": [{"name": "c"}]}));
            let chosen = best(&cache, &replica);
            cache.add_pod(&format!("default/r{i}"), replica, &chosen, true);
        }
        let counts: Vec<u32> = cache.nodes().map(|(_, n)| n.owners.values().sum()).collect();
        assert_eq!(counts, [3, 3, 3]);
        // Across zones first: two nodes in z0, one in z1.
        let mut cache = cluster(3);
        for i in 0..8 {
            let replica = pod(&format!("r{i}"), json!({"containers": [{"name": "c"}]}));
            let chosen = best(&cache, &replica);
            cache.add_pod(&format!("default/r{i}"), replica, &chosen, true);
        }
        let owner: std::sync::Arc<str> = std::sync::Arc::from("rs-1");
        let zones = [":z0", ":z1"].map(|z| cache.zone_count(&std::sync::Arc::from(z), &owner));
        assert_eq!(zones, [4, 4]);
    }

    #[test]
    fn preferences_and_prefer_no_schedule() {
        let mut cache = cluster(2);
        cache.upsert_node(node(
            "n2",
            json!({"kubernetes.io/hostname": "n2", "disk": "ssd"}),
            json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
            json!([]),
        ));
        let prefers_ssd = pod(
            "p",
            json!({"containers": [], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        );
        assert_eq!(best(&cache, &prefers_ssd), "n2");
        let mut tainted = cluster(2);
        tainted.upsert_node(node(
            "n0",
            json!({}),
            json!({"cpu": "40", "memory": "80Gi", "pods": "110"}),
            json!([{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]),
        ));
        assert_eq!(best(&tainted, &pod("p", json!({"containers": []}))), "n1");
        // With near co-location preferred, the pod joins its peer's zone.
        let mut cache = cluster(4);
        cache.add_pod(
            "default/db",
            pod_with("db", json!({"app": "db"}), json!({"containers": []})),
            "n1",
            false,
        );
        let near_db = pod_with(
            "web",
            json!({"app": "web"}),
            json!({"containers": [], "affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}}]}}}),
        );
        let chosen = best(&cache, &near_db);
        assert!(chosen == "n1" || chosen == "n3", "zone z1, got {chosen}");
    }
}
