//! What the scheduler needs to know of a pod, parsed once from its spec: resource
//! requests, host ports, tolerations, node selector and affinity, inter-pod
//! (anti-)affinity terms and topology spread constraints. kube-scheduler keeps the
//! same digest as `framework.PodInfo`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint};

use super::labels::{self, Labels, NodeSelectorTerms, NodeTerm, Requirement, Selector};
use super::resources::PodRequest;

/// A `hostPort` a container asks for on its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// The namespaces an affinity term looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    names: Vec<String>,
    selector: Selector,
}

impl Namespaces {
    pub fn matches(&self, namespace: &str, namespace_labels: impl FnOnce() -> Option<Labels>) -> bool {
        self.names.iter().any(|n| n == namespace)
            || (self.selector != Selector::nothing() && namespace_labels().is_some_and(|l| self.selector.matches(&l)))
    }
}

/// One inter-pod (anti-)affinity term, as kube-scheduler's `framework.AffinityTerm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityTerm {
    pub selector: Selector,
    pub namespaces: Namespaces,
    pub topology_key: String,
}

impl AffinityTerm {
    /// Parses a term of `pod`: namespaces default to the pod's own, and
    /// matchLabelKeys/mismatchLabelKeys add the pod's own label values.
    fn parse(term: &PodAffinityTerm, namespace: &str, pod_labels: &Labels) -> AffinityTerm {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        for key in term.match_label_keys.iter().flatten() {
            if let Some(value) = pod_labels.get(key) {
                selector.and(Requirement::equals(key, value));
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(value) = pod_labels.get(key) {
                selector.and(Requirement::not_equals(key, value));
            }
        }
        let mut names = term.namespaces.clone().unwrap_or_default();
        let ns_selector = match &term.namespace_selector {
            Some(s) => Selector::from_label_selector(Some(s)),
            None => Selector::nothing(),
        };
        if names.is_empty() && term.namespace_selector.is_none() {
            names.push(namespace.to_string());
        }
        AffinityTerm {
            selector,
            namespaces: Namespaces {
                names,
                selector: ns_selector,
            },
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (in `namespace` with `labels`) is one this term selects.
    pub fn matches(&self, namespace: &str, labels: &Labels, namespace_labels: impl FnOnce() -> Option<Labels>) -> bool {
        self.namespaces.matches(namespace, namespace_labels) && self.selector.matches(labels)
    }
}

/// A `DoNotSchedule` topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: Option<i64>,
    /// nodeAffinityPolicy Honor (the default): only nodes the pod may land on count.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor: only nodes whose taints the pod tolerates count.
    pub honor_taints: bool,
}

impl SpreadConstraint {
    fn parse(c: &TopologySpreadConstraint, pod_labels: &Labels) -> SpreadConstraint {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = pod_labels.get(key) {
                selector.and(Requirement::equals(key, value));
            }
        }
        SpreadConstraint {
            max_skew: i64::from(c.max_skew.max(1)),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }
}

/// The digest of one pod.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub request: PodRequest,
    pub ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    pub required_node: Option<NodeSelectorTerms>,
    pub preferred_node: Vec<(i64, NodeTerm)>,
    pub spread: Vec<SpreadConstraint>,
    pub affinity: Vec<AffinityTerm>,
    pub anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
    /// The uid of the pod's controller (its ReplicaSet, StatefulSet, Job...).
    pub owner: Option<Arc<str>>,
    pub preempt_never: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_labels = labels::of(&pod.metadata.labels);
        let default_spec = Default::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let request = PodRequest::of(spec);
        let mut ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for container in spec.containers.iter().chain(sidecars) {
            for port in container.ports.iter().flatten() {
                let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                    continue;
                };
                let ip = port
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into());
                ports.push(HostPort {
                    ip,
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: host_port,
                });
            }
        }
        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let required_node = node_affinity
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(NodeSelectorTerms::parse);
        let preferred_node = node_affinity
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), NodeTerm::parse(&t.preference)))
            .collect();
        let terms = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &namespace, pod_labels))
                .collect()
        };
        let weighted = |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| {
                    (
                        i64::from(t.weight),
                        AffinityTerm::parse(&t.pod_affinity_term, &namespace, pod_labels),
                    )
                })
                .collect::<Vec<_>>()
        };
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| Arc::from(o.uid.as_str()));
        PodInfo {
            request,
            ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node,
            preferred_node,
            spread: spec
                .topology_spread_constraints
                .iter()
                .flatten()
                .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
                .map(|c| SpreadConstraint::parse(c, pod_labels))
                .collect(),
            affinity: terms(pod_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            anti_affinity: terms(
                pod_anti_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: weighted(
                pod_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: weighted(
                pod_anti_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            owner,
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            namespace,
            pod,
        }
    }

    pub fn labels(&self) -> &Labels {
        labels::of(&self.pod.metadata.labels)
    }

    /// Whether the pod may go to a node with these labels by its nodeSelector and
    /// required node affinity (kube-scheduler's `RequiredNodeAffinity.Match`).
    pub fn fits_node_selector(&self, node_name: &str, node_labels: &Labels) -> bool {
        self.node_selector.iter().all(|(k, v)| node_labels.get(k) == Some(v))
            && self
                .required_node
                .as_ref()
                .is_none_or(|t| t.matches(node_name, node_labels))
    }

    /// Whether the pod has any inter-pod affinity term at all.
    pub fn has_affinity(&self) -> bool {
        !(self.affinity.is_empty()
            && self.anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

/// Whether `toleration` tolerates `taint` (core/v1 `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key with Equal is invalid; it tolerates nothing.
            !key.is_empty() && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first of `taints` with one of `effects` that none of `tolerations` tolerates.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration], effects: &[&str]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toleration(value: serde_json::Value) -> Toleration {
        serde_json::from_value(value).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&toleration(json!({"key": "dedicated", "value": "gpu"})), &t));
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(
            tolerates(&toleration(json!({"operator": "Exists"})), &t),
            "tolerates everything"
        );
        assert!(!tolerates(&toleration(json!({"key": "dedicated", "value": "cpu"})), &t));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(
            !tolerates(&toleration(json!({"value": "gpu"})), &t),
            "Equal needs a key"
        );
        let taints = [
            taint("a", "1", "PreferNoSchedule"),
            t.clone(),
            taint("b", "2", "NoExecute"),
        ];
        let found = untolerated(&taints, &[], &["NoSchedule", "NoExecute"]).unwrap();
        assert_eq!(found.key, "dedicated");
        let tols = [toleration(json!({"key": "dedicated", "operator": "Exists"}))];
        assert_eq!(
            untolerated(&taints, &tols, &["NoSchedule", "NoExecute"]).unwrap().key,
            "b"
        );
    }

    #[test]
    fn digest_of_a_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "rev": "1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]},
            "spec": {
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rev"], "topologyKey": "kubernetes.io/hostname"}
                ]}},
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}},
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {}},
                ],
            }
        }))
        .unwrap();
        let info = PodInfo::new(Arc::new(pod));
        assert_eq!(
            info.ports,
            [HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        assert_eq!(info.owner.as_deref(), Some("u1"));
        assert_eq!(info.spread.len(), 1, "only DoNotSchedule constraints filter");
        let term = &info.anti_affinity[0];
        let l = |rev: &str| {
            Labels::from([
                ("app".to_string(), "web".to_string()),
                ("rev".to_string(), rev.to_string()),
            ])
        };
        assert!(term.matches("ns", &l("1"), || None));
        assert!(!term.matches("ns", &l("2"), || None), "matchLabelKeys adds rev=1");
        assert!(
            !term.matches("other", &l("1"), || None),
            "the pod's own namespace by default"
        );
    }
}
