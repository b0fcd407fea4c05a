//! The registry of resource types the API server serves: group, version, kind,
//! scope, names, subresources and where their objects live in the store. Built-in
//! kinds come from one table; custom resources will be added at run time.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One resource type, e.g. `apps/v1 deployments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    /// Plural, lower case: `deployments`.
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Subresources served below each object: `status`, `scale`, ...
    pub subresources: Vec<String>,
    /// What a CustomResourceDefinition says about a custom resource version.
    pub custom: Option<Arc<CustomSpec>>,
}

/// The parts of a CRD version the handlers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSpec {
    /// `openAPIV3Schema` (Null when the version has none).
    pub schema: Value,
    pub printer_columns: Vec<Value>,
    /// The `scale` subresource's paths, Null without one.
    pub scale: Value,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// A kind compiled into Kubernetes (not a custom resource).
    pub fn is_builtin(&self) -> bool {
        self.group.is_empty() || BUILTIN_GROUPS.contains(&self.group.as_str())
    }

    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }

    /// The store key prefix of all objects of this type (ends with `/`).
    pub fn prefix(&self) -> String {
        if self.is_builtin() {
            format!("/registry/{}/", self.resource)
        } else {
            format!("/registry/{}/{}/", self.group, self.resource)
        }
    }

    /// The store key prefix of one namespace's objects, or of all for cluster scope.
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.namespace_prefix(namespace))
    }
}

/// Groups whose built-in resources are stored as `/registry/<resource>/...`,
/// as kube-apiserver lays them out (so etcd backups look familiar).
const BUILTIN_GROUPS: &[&str] = &[
    "apps",
    "batch",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
];

/// (group, version, resource, kind, namespaced, short names, categories, subresources)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static str,
    &'static str,
    &'static str,
);

const BUILTINS: &[Row] = &[
    ("", "v1", "namespaces", "Namespace", false, "ns", "", "status finalize"),
    (
        "",
        "v1",
        "pods",
        "Pod",
        true,
        "po",
        "all",
        "attach binding eviction exec log portforward status",
    ),
    ("", "v1", "services", "Service", true, "svc", "all", "status"),
    ("", "v1", "endpoints", "Endpoints", true, "ep", "", ""),
    ("", "v1", "configmaps", "ConfigMap", true, "cm", "", ""),
    ("", "v1", "secrets", "Secret", true, "", "", ""),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, "sa", "", ""),
    ("", "v1", "nodes", "Node", false, "no", "", "proxy status"),
    ("", "v1", "events", "Event", true, "ev", "", ""),
    (
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        "pv",
        "",
        "status",
    ),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        "pvc",
        "",
        "status",
    ),
    ("", "v1", "limitranges", "LimitRange", true, "limits", "", ""),
    ("", "v1", "resourcequotas", "ResourceQuota", true, "quota", "", "status"),
    (
        "",
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        "rc",
        "all",
        "status scale",
    ),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        "deploy",
        "all",
        "status scale",
    ),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        "rs",
        "all",
        "status scale",
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        "sts",
        "all",
        "status scale",
    ),
    ("apps", "v1", "daemonsets", "DaemonSet", true, "ds", "all", "status"),
    (
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        "",
        "",
        "",
    ),
    ("batch", "v1", "jobs", "Job", true, "", "all", "status"),
    ("batch", "v1", "cronjobs", "CronJob", true, "cj", "all", "status"),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, "", "", ""),
    ("events.k8s.io", "v1", "events", "Event", true, "ev", "", ""),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        "",
        "",
        "",
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        "pdb",
        "",
        "status",
    ),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, "", "", ""),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        "",
        "",
        "",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        "",
        "",
        "",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        "",
        "",
        "",
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        "crd crds",
        "",
        "status",
    ),
];

/// All served resource types, by group/version/resource.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<(String, String, String), ResourceType>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Registry {
    pub fn builtin() -> Registry {
        let mut registry = Registry::default();
        for &(group, version, resource, kind, namespaced, short, categories, subresources) in BUILTINS {
            registry.add(ResourceType {
                group: group.into(),
                version: version.into(),
                resource: resource.into(),
                singular: kind.to_lowercase(),
                kind: kind.into(),
                namespaced,
                short_names: words(short),
                categories: words(categories),
                subresources: words(subresources),
                custom: None,
            });
        }
        registry
    }

    pub fn add(&mut self, t: ResourceType) {
        self.types
            .insert((t.group.clone(), t.version.clone(), t.resource.clone()), t);
    }

    /// Stops serving every version of a group's resource.
    pub fn remove(&mut self, group: &str, resource: &str) {
        self.types.retain(|(g, _, r), _| !(g == group && r == resource));
    }

    pub fn get(&self, group: &str, version: &str, resource: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
    }

    /// Every (group, version) served, core first.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut gvs: Vec<(String, String)> = self.types.keys().map(|(g, v, _)| (g.clone(), v.clone())).collect();
        gvs.dedup();
        gvs
    }

    pub fn in_group_version<'a>(&'a self, group: &'a str, version: &'a str) -> impl Iterator<Item = &'a ResourceType> {
        self.types
            .values()
            .filter(move |t| t.group == group && t.version == version)
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver_layout() {
        let registry = Registry::builtin();
        let pods = registry.get("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
        let nodes = registry.get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/nodes/n1");
        let deployments = registry.get("apps", "v1", "deployments").unwrap();
        assert_eq!(deployments.api_version(), "apps/v1");
        assert_eq!(deployments.namespace_prefix(Some("a")), "/registry/deployments/a/");
    }
}
