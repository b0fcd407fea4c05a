//! OpenAPI v3 documents, generated from the registry: `/openapi/v3` (the index of
//! group-versions) and `/openapi/v3/<api/v1|apis/g/v>`. Each resource's PATCH
//! operation carries its `x-kubernetes-group-version-kind` and an inline
//! `fieldValidation` parameter, which is what kubectl checks before it lets the
//! server validate (`kubectl apply` with its default `--validate=strict`).
//! Schemas are open objects for now; full component schemas (for
//! `kubectl explain`) come from the typed models later. Strategic merge patch is
//! deliberately not declared: kubectl then computes its patches from its compiled-in
//! types, whose merge keys the server's `patch` module knows.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::discovery::KUBERNETES_MINOR;
use super::resources::{Registry, ResourceType};

/// `api/v1` or `apis/<group>/<version>`: the key of a group-version in the index.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, version) in registry.group_versions() {
        let path = gv_path(&group, &version);
        let doc = group_version(registry, &group, &version).unwrap_or_default();
        let hash = hex(&Sha256::digest(doc.to_string().as_bytes())[..8]);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The document of one group-version, `None` if it is not served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in registry.in_group_version(group, version) {
        let schema_name = schema_name(t);
        schemas.insert(
            schema_name.clone(),
            json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk(t)],
            }),
        );
        paths.insert(item_path(t), item_operations(t, &schema_name));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

/// `io.k8s.api.core.v1.ConfigMap`-style names.
fn schema_name(t: &ResourceType) -> String {
    let group = match t.group.as_str() {
        "" => "core".to_string(),
        g => g.split('.').next().unwrap_or(g).to_string(),
    };
    format!("io.k8s.api.{group}.{}.{}", t.version, t.kind)
}

fn item_path(t: &ResourceType) -> String {
    let base = format!("/{}", gv_path(&t.group, &t.version));
    if t.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.resource)
    } else {
        format!("{base}/{}/{{name}}", t.resource)
    }
}

fn item_operations(t: &ResourceType, schema: &str) -> Value {
    let reference = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
    let object = json!({"application/json": reference});
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
    let write_parameters = json!([query("dryRun"), query("fieldManager"), query("fieldValidation")]);
    let patch_body = json!({
        "content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        },
        "required": true,
    });
    json!({
        "get": {
            "operationId": format!("read{}", t.kind),
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": gvk(t),
            "responses": {"200": {"description": "OK", "content": object}},
        },
        "put": {
            "operationId": format!("replace{}", t.kind),
            "x-kubernetes-action": "put",
            "x-kubernetes-group-version-kind": gvk(t),
            "parameters": write_parameters,
            "requestBody": {"content": object, "required": true},
            "responses": {"200": {"description": "OK", "content": object}},
        },
        "patch": {
            "operationId": format!("patch{}", t.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk(t),
            "parameters": write_parameters,
            "requestBody": patch_body,
            "responses": {"200": {"description": "OK", "content": object}},
        },
        "delete": {
            "operationId": format!("delete{}", t.kind),
            "x-kubernetes-action": "delete",
            "x-kubernetes-group-version-kind": gvk(t),
            "responses": {"200": {"description": "OK"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_declare_field_validation_inline() {
        let registry = Registry::builtin();
        let index = index(&registry);
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = group_version(&registry, "apps", "v1").unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let ns = group_version(&registry, "", "v1").unwrap();
        assert!(ns["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
        assert!(group_version(&registry, "nope", "v1").is_none());
    }
}
