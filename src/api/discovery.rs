//! Discovery and version documents: `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`
//! (legacy format, plain `application/json`, which every client accepts) and
//! `/version`. Only subresources that are really served are advertised.

use serde_json::{Value, json};

use super::resources::{Registry, ResourceType};

/// The Kubernetes release whose API this server implements.
pub const KUBERNETES_MINOR: &str = "33";

/// Subresources the handlers serve today.
const SERVED_SUBRESOURCES: &[&str] = &["status", "scale", "binding", "eviction"];

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0+kube.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(registry: &Registry, group: &str) -> Option<Value> {
    let versions: Vec<Value> = registry
        .group_versions()
        .into_iter()
        .filter(|(g, _)| g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({"name": group, "versions": versions, "preferredVersion": preferred}))
}

pub fn api_group_list(registry: &Registry) -> Value {
    let mut groups: Vec<String> = registry
        .group_versions()
        .into_iter()
        .map(|(g, _)| g)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups.iter().filter_map(|g| group_entry(registry, g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let mut entry = group_entry(registry, group)?;
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

fn resource_entry(t: &ResourceType) -> Value {
    let mut entry = json!({
        "name": t.resource,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": VERBS,
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        entry["categories"] = json!(t.categories);
    }
    entry
}

fn subresource_entry(t: &ResourceType, sub: &str) -> Value {
    let mut entry = json!({
        "name": format!("{}/{sub}", t.resource),
        "singularName": "",
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": ["get", "patch", "update"],
    });
    // Clients find these kinds here (else they assume the parent's group).
    let (group, kind) = match sub {
        "scale" => ("autoscaling", "Scale"),
        "eviction" => ("policy", "Eviction"),
        "binding" => ("", "Binding"),
        _ => return entry,
    };
    if !group.is_empty() {
        entry["group"] = json!(group);
        entry["version"] = json!("v1");
    }
    entry["kind"] = json!(kind);
    if sub != "scale" {
        entry["verbs"] = json!(["create"]);
    }
    entry
}

pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for t in registry.in_group_version(group, version) {
        resources.push(resource_entry(t));
        for sub in t
            .subresources
            .iter()
            .filter(|s| SERVED_SUBRESOURCES.contains(&s.as_str()))
        {
            resources.push(subresource_entry(t, sub));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_group_documents() {
        let registry = Registry::builtin();
        let core = api_resource_list(&registry, "", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"namespaces"));
        assert!(!names.contains(&"pods/log"), "nothing is advertised before it works");
        let groups = api_group_list(&registry);
        let apps = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(api_resource_list(&registry, "nope", "v1").is_none());
    }
}
