//! Discovery and version documents: `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`
//! (legacy format, plain `application/json`, which every client accepts) and
//! `/version`. Only subresources that are really served are advertised.

use serde_json::{Value, json};

use super::resources::{Registry, ResourceType};

/// The Kubernetes release whose API this server implements.
pub const KUBERNETES_MINOR: &str = "33";

/// Subresources the handlers serve today.
const SERVED_SUBRESOURCES: &[&str] = &[
    "status",
    "scale",
    "binding",
    "eviction",
    "log",
    "exec",
    "attach",
    "portforward",
    "proxy",
];

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
    // The kubelet subresources: their option kinds and verbs, as kube-apiserver lists them.
    let (kind, verbs): (&str, &[&str]) = match sub {
        "log" => ("Pod", &["get"]),
        "exec" => ("PodExecOptions", &["create", "get"]),
        "attach" => ("PodAttachOptions", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", &["create", "get"]),
        "proxy" if t.resource == "nodes" => ("NodeProxyOptions", &["create", "delete", "get", "patch", "update"]),
        _ => ("", &[]),
    };
    if !kind.is_empty() {
        entry["kind"] = json!(kind);
        entry["verbs"] = json!(verbs);
        return entry;
    }
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
        assert!(names.contains(&"pods/log") && names.contains(&"pods/exec") && names.contains(&"nodes/proxy"));
        assert!(!names.contains(&"pods/proxy"), "nothing is advertised before it works");
        let exec = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/exec")
            .unwrap();
        assert_eq!(
            (&exec["kind"], &exec["verbs"]),
            (&json!("PodExecOptions"), &json!(["create", "get"]))
        );
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

/// The media type of aggregated discovery (`apidiscovery.k8s.io/v2`).
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client prefers aggregated discovery (client-go lists it first).
pub fn wants_aggregated(accept: &str) -> bool {
    let Some(first) = accept.split(',').next() else {
        return false;
    };
    let params: Vec<&str> = first.split(';').map(str::trim).collect();
    params.first() == Some(&"application/json")
        && params.contains(&"g=apidiscovery.k8s.io")
        && params.contains(&"v=v2")
        && params.contains(&"as=APIGroupDiscoveryList")
}

/// `/api` (`core`) or `/apis` as one aggregated document of every group,
/// version and resource, so clients need a single request.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let mut groups: Vec<String> = registry.group_versions().into_iter().map(|(g, _)| g).collect();
    groups.dedup();
    let items: Vec<Value> = groups
        .iter()
        .filter(|g| g.is_empty() == core)
        .map(|group| {
            let versions: Vec<Value> = registry
                .group_versions()
                .into_iter()
                .filter(|(g, _)| g == group)
                .map(|(_, version)| {
                    let resources: Vec<Value> = registry
                        .in_group_version(group, &version)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let subresources: Vec<Value> = t
        .subresources
        .iter()
        .filter(|s| SERVED_SUBRESOURCES.contains(&s.as_str()))
        .map(|sub| {
            let legacy = subresource_entry(t, sub);
            let group = legacy.get("group").cloned().unwrap_or_else(|| json!(t.group));
            let version = legacy.get("version").cloned().unwrap_or_else(|| json!(t.version));
            json!({
                "subresource": sub,
                "responseKind": {"group": group, "version": version, "kind": legacy["kind"]},
                "verbs": legacy["verbs"],
            })
        })
        .collect();
    let mut entry = json!({
        "resource": t.resource,
        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": VERBS,
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        entry["categories"] = json!(t.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

#[cfg(test)]
mod aggregated_tests {
    use super::*;

    #[test]
    fn aggregated_documents_split_core_and_groups() {
        let registry = Registry::builtin();
        let core = aggregated(&registry, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let apis = aggregated(&registry, false);
        let apps = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }
}
