//! OpenAPI v3 documents, generated from the registry: `/openapi/v3` (the index of
//! group-versions) and `/openapi/v3/<api/v1|apis/g/v>`. Each resource's PATCH
//! operation carries its `x-kubernetes-group-version-kind` and an inline
//! `fieldValidation` parameter, which is what kubectl checks before it lets the
//! server validate (`kubectl apply` with its default `--validate=strict`).
//! Built-in kinds get their full component schemas (with descriptions, for
//! `kubectl explain`) from their typed models, custom resources their CRD's
//! schema. Documents are generated once per registry state and cached with the
//! hash the index advertises, so kubectl's per-invocation index fetch is cheap.
//! Strategic merge patch is
//! deliberately not declared: kubectl then computes its patches from its compiled-in
//! types, whose merge keys the server's `patch` module knows.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::discovery::KUBERNETES_MINOR;
use super::kinds::typed;
use super::resources::{Registry, ResourceType};

/// One group-version's document, serialized, and the hash the index names it by.
pub struct Document {
    pub bytes: Bytes,
    pub hash: String,
    /// What the document was generated from (the group-version's types).
    source: u64,
}

/// Generated documents by group-version path (`api/v1`, `apis/apps/v1`).
#[derive(Default)]
pub struct OpenApi {
    documents: Mutex<HashMap<String, Arc<Document>>>,
}

impl OpenApi {
    /// The index of every served group-version.
    pub fn index(&self, registry: &Registry) -> Value {
        let mut paths = Map::new();
        for (group, version) in registry.group_versions() {
            let Some(doc) = self.document(registry, &group, &version) else {
                continue;
            };
            let path = gv_path(&group, &version);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
            );
        }
        json!({"paths": paths})
    }

    /// The document of one group-version, `None` if it is not served.
    pub fn document(&self, registry: &Registry, group: &str, version: &str) -> Option<Arc<Document>> {
        let types: Vec<&ResourceType> = registry.in_group_version(group, version).collect();
        if types.is_empty() {
            return None;
        }
        let source = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            format!("{types:?}").hash(&mut hasher);
            hasher.finish()
        };
        let path = gv_path(group, version);
        let mut documents = self.documents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(doc) = documents.get(&path).filter(|d| d.source == source) {
            return Some(doc.clone());
        }
        let bytes = Bytes::from(group_version(registry, group, version)?.to_string());
        let hash = hex(&Sha256::digest(&bytes)[..8]);
        let doc = Arc::new(Document { bytes, hash, source });
        documents.insert(path, doc.clone());
        Some(doc)
    }
}

/// `api/v1` or `apis/<group>/<version>`: the key of a group-version in the index.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Generates the document of one group-version, `None` if it is not served.
fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    let mut schemas = Map::new();
    for t in registry.in_group_version(group, version) {
        let schema_name = match typed::of(&t.group, &t.resource) {
            Some(model) => {
                let reference = model.schema(&mut generator);
                let name = reference["$ref"].as_str().and_then(|r| r.rsplit('/').next());
                name.map_or_else(|| schema_name(t), str::to_string)
            }
            None => {
                let custom = t.custom.as_ref().map(|c| c.schema.clone()).filter(Value::is_object);
                let schema =
                    custom.unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
                schemas.insert(schema_name(t), schema);
                schema_name(t)
            }
        };
        kinds.push((schema_name.clone(), gvk(t)));
        paths.insert(item_path(t), item_operations(t, &schema_name));
    }
    if paths.is_empty() {
        return None;
    }
    schemas.extend(generator.take_definitions(true));
    for (name, gvk) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
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
        let index = OpenApi::default().index(&registry);
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
