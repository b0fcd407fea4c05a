//! Label and node selectors as the scheduler evaluates them, parsed once per pod:
//! metav1 `LabelSelector` (matchLabels plus In/NotIn/Exists/DoesNotExist) and the
//! core/v1 `NodeSelector` of node affinity (the same operators plus Gt/Lt on integer
//! label values, and `matchFields` on `metadata.name`). A missing selector matches
//! nothing, an empty one everything, as apimachinery's `LabelSelectorAsSelector`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A set of labels, as objects carry them.
pub type Labels = BTreeMap<String, String>;

/// The labels of an object, or none.
pub fn of(labels: &Option<Labels>) -> &Labels {
    static EMPTY: Labels = BTreeMap::new();
    labels.as_ref().unwrap_or(&EMPTY)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Op {
    fn parse(op: &str) -> Option<Op> {
        Some(match op {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt,
            "Lt" => Op::Lt,
            _ => return None,
        })
    }
}

/// One requirement on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    pub fn equals(key: &str, value: &str) -> Requirement {
        Requirement {
            key: key.to_string(),
            op: Op::In,
            values: vec![value.to_string()],
        }
    }

    pub fn not_equals(key: &str, value: &str) -> Requirement {
        Requirement {
            key: key.to_string(),
            op: Op::NotIn,
            values: vec![value.to_string()],
        }
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt | Op::Lt => {
                // Exactly one integer value; the label must be an integer too.
                let (Some(value), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                match (value.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) if self.op == Op::Gt => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
        }
    }
}

/// A parsed label selector: every requirement must hold. `None` inside means
/// "matches nothing" (a missing or invalid selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Option<Vec<Requirement>>);

impl Selector {
    pub fn nothing() -> Selector {
        Selector(None)
    }

    /// A metav1 `LabelSelector`; `None` (absent) matches nothing, as does an invalid
    /// one (an unknown operator, In/NotIn without values).
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Selector {
        let Some(selector) = selector else {
            return Selector::nothing();
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::equals(key, value));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let op = match expression.operator.as_str() {
                "In" if !values.is_empty() => Op::In,
                "NotIn" if !values.is_empty() => Op::NotIn,
                "Exists" if values.is_empty() => Op::Exists,
                "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
                _ => return Selector::nothing(),
            };
            requirements.push(Requirement {
                key: expression.key.clone(),
                op,
                values,
            });
        }
        Selector(Some(requirements))
    }

    /// Adds a requirement (matchLabelKeys / mismatchLabelKeys).
    pub fn and(&mut self, requirement: Requirement) {
        if let Some(requirements) = &mut self.0 {
            requirements.push(requirement);
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match &self.0 {
            None => false,
            Some(requirements) => requirements
                .iter()
                .all(|r| r.matches(labels.get(&r.key).map(String::as_str))),
        }
    }
}

/// One node selector term: label expressions and `metadata.name` fields, ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
    /// An unknown operator or field: the term matches no node.
    invalid: bool,
}

impl NodeTerm {
    pub fn parse(term: &NodeSelectorTerm) -> NodeTerm {
        let mut invalid = false;
        let mut parse = |requirements: &Option<Vec<NodeSelectorRequirement>>, fields: bool| {
            let mut out = Vec::new();
            for r in requirements.iter().flatten() {
                let values = r.values.clone().unwrap_or_default();
                match Op::parse(&r.operator) {
                    Some(op) if !fields || (r.key == "metadata.name" && matches!(op, Op::In | Op::NotIn)) => {
                        out.push(Requirement {
                            key: r.key.clone(),
                            op,
                            values,
                        })
                    }
                    _ => invalid = true,
                }
            }
            out
        };
        let labels = parse(&term.match_expressions, false);
        let fields = parse(&term.match_fields, true);
        NodeTerm {
            labels,
            fields,
            invalid,
        }
    }

    /// Whether a node with this name and these labels matches. A term with no
    /// requirements at all matches nothing (as kube-scheduler's
    /// `nodeaffinity.NewLazyErrorNodeSelector`).
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        if self.invalid || (self.labels.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.labels
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(name)))
    }

    /// The node names this term is limited to by `metadata.name In (...)`, if any
    /// (the intersection when there are several).
    pub fn names(&self) -> Option<Vec<String>> {
        let mut names: Option<Vec<String>> = None;
        for r in self.fields.iter().filter(|r| r.op == Op::In) {
            names = Some(match names {
                None => r.values.clone(),
                Some(before) => before.into_iter().filter(|n| r.values.contains(n)).collect(),
            });
        }
        names
    }
}

/// Required node affinity: any of the terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelectorTerms(pub Vec<NodeTerm>);

impl NodeSelectorTerms {
    pub fn parse(selector: &NodeSelector) -> NodeSelectorTerms {
        NodeSelectorTerms(selector.node_selector_terms.iter().map(NodeTerm::parse).collect())
    }

    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.0.iter().any(|t| t.matches(name, labels))
    }

    /// kube-scheduler's NodeAffinity PreFilter: when every term names its nodes
    /// with `metadata.name In`, only those nodes can match (the union over terms).
    pub fn names(&self) -> Option<Vec<String>> {
        let mut all = Vec::new();
        for term in &self.0 {
            let names = term.names()?;
            for name in names {
                if !all.contains(&name) {
                    all.push(name);
                }
            }
        }
        Some(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(value: serde_json::Value) -> Selector {
        let s: LabelSelector = serde_json::from_value(value).unwrap();
        Selector::from_label_selector(Some(&s))
    }

    fn terms(value: serde_json::Value) -> NodeSelectorTerms {
        let s: NodeSelector = serde_json::from_value(value).unwrap();
        NodeSelectorTerms::parse(&s)
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selector(json!({})).matches(&l));
        assert!(!Selector::from_label_selector(None).matches(&l));
        assert!(selector(json!({"matchLabels": {"app": "web"}})).matches(&l));
        assert!(!selector(json!({"matchLabels": {"app": "db"}})).matches(&l));
        let expr = |op: &str, values: serde_json::Value| {
            selector(json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}))
        };
        assert!(expr("In", json!(["front", "back"])).matches(&l));
        assert!(!expr("NotIn", json!(["front"])).matches(&l));
        assert!(expr("Exists", json!([])).matches(&l));
        assert!(!expr("DoesNotExist", json!([])).matches(&l));
        // Invalid: In without values, or an unknown operator, matches nothing.
        assert!(!expr("In", json!([])).matches(&l));
        assert!(!expr("Gt", json!(["1"])).matches(&l));
    }

    #[test]
    fn node_selector_operators_and_fields() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let one = |expr: serde_json::Value| terms(json!({"nodeSelectorTerms": [{"matchExpressions": [expr]}]}));
        assert!(one(json!({"key": "cores", "operator": "Gt", "values": ["4"]})).matches("n1", &l));
        assert!(!one(json!({"key": "cores", "operator": "Gt", "values": ["8"]})).matches("n1", &l));
        assert!(one(json!({"key": "cores", "operator": "Lt", "values": ["16"]})).matches("n1", &l));
        assert!(!one(json!({"key": "zone", "operator": "Lt", "values": ["16"]})).matches("n1", &l));
        assert!(one(json!({"key": "zone", "operator": "NotIn", "values": ["b"]})).matches("n1", &l));
        assert!(one(json!({"key": "gpu", "operator": "DoesNotExist"})).matches("n1", &l));
        assert!(!one(json!({"key": "zone", "operator": "Bogus", "values": ["a"]})).matches("n1", &l));
        // Terms are ORed; an empty term matches nothing.
        let t = terms(
            json!({"nodeSelectorTerms": [{}, {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}),
        );
        assert!(t.matches("n1", &l));
        assert!(!terms(json!({"nodeSelectorTerms": [{}]})).matches("n1", &l));
        // matchFields on metadata.name, and the names it limits the pod to.
        let f = terms(json!({"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]},
        ]}));
        assert!(f.matches("n3", &l) && f.matches("n1", &l) && !f.matches("n4", &l));
        assert_eq!(f.names(), Some(vec!["n1".into(), "n2".into(), "n3".into()]));
        assert_eq!(one(json!({"key": "zone", "operator": "Exists"})).names(), None);
        let bad_field = terms(
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]}]}),
        );
        assert!(!bad_field.matches("n1", &l));
    }
}
