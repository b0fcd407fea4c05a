//! The OpenAPI v2 (Swagger 2.0) document at `/openapi/v2`, as kube-apiserver
//! serves it: JSON, or gnostic's protobuf encoding (`openapi_v2.Document`) when
//! the client asks for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//! (client-go's `DiscoveryClient.OpenAPISchema()`, which `kubectl explain
//! --output plaintext-openapiv2`, client-side `kubectl apply` and older clients'
//! validation read). Definitions are named like kube-apiserver's
//! (`io.k8s.api.apps.v1.Deployment`, custom resources `com.example.v1.Widget`)
//! and carry `x-kubernetes-group-version-kind`; list fields carry the strategic
//! merge patch metadata (`x-kubernetes-patch-strategy`/`-merge-key`) of the Go
//! struct tags, since client-side apply computes its patches from them. The
//! schemas are the v3 ones (typed models, CRD schemas) turned into v2: refs to
//! `#/definitions/`, no `nullable`/`anyOf`/`oneOf`, one type per schema.
//! The document is generated once per registry state; both encodings share the
//! ETag of the JSON (quoted upper-case SHA-512, as kube-openapi's handler), and
//! `If-None-Match` gets 304.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status as StatusModel};
use k8s_openapi::schemars::generate::SchemaSettings;
use prost::Message as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::discovery::KUBERNETES_MINOR;
use super::kinds::typed;
use super::resources::{Registry, ResourceType};

/// gnostic's `openapi.v2` messages (our subset of `OpenAPIv2.proto`).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/openapi.v2.rs"));
}

/// The content type of the protobuf encoding.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The subtypes a client may ask for the protobuf encoding with.
const PROTOBUF_SUBTYPES: [&str; 2] = [
    "com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

const DEFINITIONS: &str = "#/definitions/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// The generated document in both encodings.
pub struct Document {
    pub json: Bytes,
    pub protobuf: Bytes,
    /// `"<SHA-512 of the JSON>"`, quoted.
    pub etag: String,
    /// What the document was generated from (every served type).
    source: u64,
}

/// The cached document.
#[derive(Default)]
pub struct OpenApiV2 {
    cached: Mutex<Option<Arc<Document>>>,
}

impl OpenApiV2 {
    /// The document of the registry's current state.
    pub fn document(&self, registry: &Registry) -> Arc<Document> {
        let mut types: Vec<&ResourceType> = registry.all().collect();
        types.sort_by(|a, b| (&a.group, &a.version, &a.resource).cmp(&(&b.group, &b.version, &b.resource)));
        let source = {
            let mut hasher = DefaultHasher::new();
            format!("{types:?}").hash(&mut hasher);
            hasher.finish()
        };
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(doc) = cached.as_ref().filter(|d| d.source == source) {
            return doc.clone();
        }
        let value = generate(&types);
        let json = Bytes::from(value.to_string());
        let protobuf = Bytes::from(to_proto(&value).encode_to_vec());
        let etag = format!("\"{}\"", hex_upper(&Sha512::digest(&json)));
        let doc = Arc::new(Document {
            json,
            protobuf,
            etag,
            source,
        });
        *cached = Some(doc.clone());
        doc
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Which encoding an `Accept` header gets, as kube-openapi negotiates it: the
/// clauses by preference, the first that JSON or protobuf satisfies; `None`
/// (406) when none does. An empty header accepts anything.
pub fn negotiate(accept: &str) -> Option<Encoding> {
    let accept = if accept.trim().is_empty() { "*/*" } else { accept };
    let mut clauses: Vec<(String, String, f32)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            let (kind, sub) = media.split_once('/').unwrap_or((media.as_str(), "*"));
            (q > 0.0).then(|| (kind.trim().to_string(), sub.trim().to_string(), q))
        })
        .collect();
    let specificity = |c: &(String, String, f32)| usize::from(c.0 != "*") + usize::from(c.1 != "*");
    clauses.sort_by(|a, b| b.2.total_cmp(&a.2).then(specificity(b).cmp(&specificity(a))));
    let offered = [
        ("json", Encoding::Json),
        (PROTOBUF_SUBTYPES[0], Encoding::Protobuf),
        (PROTOBUF_SUBTYPES[1], Encoding::Protobuf),
    ];
    clauses.iter().find_map(|(kind, sub, _)| {
        if kind != "application" && kind != "*" {
            return None;
        }
        offered
            .iter()
            .find(|(offer, _)| sub == "*" || sub == offer)
            .map(|(_, encoding)| *encoding)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

/// Whether an `If-None-Match` header names this ETag (or `*`).
pub fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    })
}

/// The Swagger 2.0 document of these types.
fn generate(types: &[&ResourceType]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<ListMeta>();
    generator.subschema_for::<StatusModel>();
    let mut definitions = Map::new();
    let mut kinds: Vec<(String, &ResourceType)> = Vec::new();
    for t in types {
        let name = match typed::of(&t.group, &t.resource) {
            Some(model) => {
                let reference = model.schema(&mut generator);
                let name = reference["$ref"].as_str().and_then(|r| r.rsplit('/').next());
                name.map_or_else(|| definition_name(t), str::to_string)
            }
            None => {
                let name = definition_name(t);
                definitions.insert(name.clone(), custom_schema(t));
                name
            }
        };
        kinds.push((name, t));
    }
    definitions.extend(generator.take_definitions(true));
    definitions.insert(
        PATCH.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    for schema in definitions.values_mut() {
        to_v2(schema);
    }
    let mut paths = Map::new();
    for (name, t) in &kinds {
        if let Some(schema) = definitions.get_mut(name).and_then(Value::as_object_mut) {
            let gvks = schema
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Some(list) = gvks.as_array_mut().filter(|l| !l.contains(&gvk(t, &t.kind))) {
                list.push(gvk(t, &t.kind));
            }
        }
        let list_name = format!("{name}List");
        definitions
            .entry(list_name.clone())
            .or_insert_with(|| list_schema(t, name));
        let (collection, item) = operations(t, name, &list_name);
        paths.insert(collection_path(t), collection);
        paths.insert(format!("{}/{{name}}", collection_path(t)), item);
    }
    annotate_patch_strategies(&mut definitions);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "definitions": definitions,
    })
}

/// kube-apiserver's definition name of a kind without a typed model: custom
/// resources by their reversed group (`com.example.v1.Widget`), built-in groups
/// as `io.k8s.api.<group>.<version>.<Kind>`.
fn definition_name(t: &ResourceType) -> String {
    if t.custom.is_some() {
        let reversed: Vec<&str> = t.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), t.version, t.kind);
    }
    let group = match t.group.as_str() {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{group}.{}.{}", t.version, t.kind)
}

/// A custom resource's schema (or an open object), with the `apiVersion`,
/// `kind` and `metadata` every object has, as kube-apiserver publishes it.
fn custom_schema(t: &ResourceType) -> Value {
    let mut schema = t
        .custom
        .as_ref()
        .map(|c| c.schema.clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    object.insert("type".into(), json!("object"));
    let properties = object.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert(
            "apiVersion".into(),
            json!({"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"}),
        );
        properties.insert(
            "kind".into(),
            json!({"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"}),
        );
        properties.insert(
            "metadata".into(),
            json!({"description": "Standard object's metadata.", "$ref": format!("{DEFINITIONS}{OBJECT_META}")}),
        );
    }
    schema
}

fn list_schema(t: &ResourceType, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {}.", t.kind, t.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {}.", t.resource), "type": "array", "items": {"$ref": format!("{DEFINITIONS}{item}")}},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"description": "Standard list metadata.", "$ref": format!("{DEFINITIONS}{LIST_META}")},
        },
        "x-kubernetes-group-version-kind": [gvk(t, &format!("{}List", t.kind))],
    })
}

fn gvk(t: &ResourceType, kind: &str) -> Value {
    json!({"group": t.group, "version": t.version, "kind": kind})
}

/// Turns an OpenAPI v3 schema into a v2 one, in place.
fn to_v2(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    for key in [
        "nullable",
        "anyOf",
        "oneOf",
        "not",
        "$schema",
        "deprecated",
        "writeOnly",
        "const",
        "examples",
    ] {
        object.remove(key);
    }
    // `allOf: [{$ref}]` (a reference with siblings, v3 style) is a plain reference in v2.
    if let Some(Value::Array(all)) = object.get("allOf")
        && all.len() == 1
        && all[0].get("$ref").is_some()
        && !object.contains_key("$ref")
    {
        let reference = all[0]["$ref"].clone();
        object.remove("allOf");
        object.insert("$ref".into(), reference);
    }
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let reference = match reference.strip_prefix("#/components/schemas/") {
            Some(name) => format!("{DEFINITIONS}{name}"),
            None => reference.to_string(),
        };
        object.insert("$ref".into(), json!(reference));
        object.retain(|k, _| k == "$ref" || k == "description" || k.starts_with("x-"));
        return;
    }
    match object.get("type") {
        Some(Value::Array(types)) => match types.iter().filter_map(Value::as_str).find(|t| *t != "null") {
            Some(t) => {
                let t = t.to_string();
                object.insert("type".into(), json!(t));
            }
            None => {
                object.remove("type");
            }
        },
        Some(Value::String(t)) if t == "null" => {
            object.remove("type");
        }
        _ => {}
    }
    if object.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        object.remove("type");
    }
    for bound in ["exclusiveMinimum", "exclusiveMaximum"] {
        if let Some(n) = object.get(bound).filter(|v| v.is_number()).cloned() {
            object.insert(bound.into(), json!(true));
            object.insert(
                if bound == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                }
                .into(),
                n,
            );
        }
    }
    if object.get("type").and_then(Value::as_str) == Some("array") {
        match object.get_mut("items") {
            Some(Value::Array(items)) => {
                let first = items.first().cloned().unwrap_or_else(|| json!({}));
                object.insert("items".into(), first);
            }
            Some(_) => {}
            None => {
                object.insert("items".into(), json!({}));
            }
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(to_v2);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = object.get_mut(key) {
            to_v2(sub);
        }
    }
    if let Some(Value::Array(all)) = object.get_mut("allOf") {
        all.iter_mut().for_each(to_v2);
    }
}

/// The strategic merge patch metadata of the Go struct tags of k8s.io/api
/// (`patchStrategy`, `patchMergeKey`): definition, field, strategy, merge key.
/// The same table, by path, is `patch::strategy`.
const PATCH_STRATEGIES: &[(&str, &str, &str, &str)] = &[
    ("core.v1.PodSpec", "containers", "merge", "name"),
    ("core.v1.PodSpec", "initContainers", "merge", "name"),
    ("core.v1.PodSpec", "ephemeralContainers", "merge", "name"),
    ("core.v1.PodSpec", "volumes", "merge,retainKeys", "name"),
    ("core.v1.PodSpec", "imagePullSecrets", "merge", "name"),
    ("core.v1.PodSpec", "hostAliases", "merge", "ip"),
    ("core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey"),
    ("core.v1.PodSpec", "schedulingGates", "merge", "name"),
    ("core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name"),
    ("core.v1.Container", "env", "merge", "name"),
    ("core.v1.Container", "ports", "merge", "containerPort"),
    ("core.v1.Container", "volumeMounts", "merge", "mountPath"),
    ("core.v1.Container", "volumeDevices", "merge", "devicePath"),
    ("core.v1.EphemeralContainer", "env", "merge", "name"),
    ("core.v1.EphemeralContainer", "ports", "merge", "containerPort"),
    ("core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath"),
    ("core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath"),
    ("core.v1.PodStatus", "conditions", "merge", "type"),
    ("core.v1.PodStatus", "podIPs", "merge", "ip"),
    ("core.v1.PodStatus", "hostIPs", "merge", "ip"),
    ("core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name"),
    ("core.v1.ServiceSpec", "ports", "merge", "port"),
    ("core.v1.ServiceStatus", "conditions", "merge", "type"),
    ("core.v1.ServiceAccount", "secrets", "merge", "name"),
    ("core.v1.NodeSpec", "podCIDRs", "merge", ""),
    ("core.v1.NodeStatus", "conditions", "merge", "type"),
    ("core.v1.NodeStatus", "addresses", "merge", "type"),
    ("core.v1.NamespaceStatus", "conditions", "merge", "type"),
    ("core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type"),
    ("core.v1.ReplicationControllerStatus", "conditions", "merge", "type"),
    ("apps.v1.DeploymentSpec", "strategy", "retainKeys", ""),
    ("apps.v1.DeploymentStatus", "conditions", "merge", "type"),
    ("apps.v1.ReplicaSetStatus", "conditions", "merge", "type"),
    ("apps.v1.DaemonSetStatus", "conditions", "merge", "type"),
    ("apps.v1.StatefulSetStatus", "conditions", "merge", "type"),
    ("batch.v1.JobStatus", "conditions", "merge", "type"),
    ("policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type"),
];

fn annotate_patch_strategies(definitions: &mut Map<String, Value>) {
    let mut rows: Vec<(String, &str, &str, &str)> = PATCH_STRATEGIES
        .iter()
        .map(|(def, field, strategy, key)| (format!("io.k8s.api.{def}"), *field, *strategy, *key))
        .collect();
    rows.push((OBJECT_META.into(), "finalizers", "merge", ""));
    rows.push((OBJECT_META.into(), "ownerReferences", "merge", "uid"));
    for (definition, field, strategy, key) in rows {
        let Some(property) = definitions
            .get_mut(&definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if !key.is_empty() {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

/// `/api/v1/namespaces/{namespace}/pods`-style collection path.
fn collection_path(t: &ResourceType) -> String {
    let base = match t.group.as_str() {
        "" => format!("/api/{}", t.version),
        g => format!("/apis/{g}/{}", t.version),
    };
    match t.namespaced {
        true => format!("{base}/namespaces/{{namespace}}/{}", t.resource),
        false => format!("{base}/{}", t.resource),
    }
}

/// The collection's and the item's path items.
fn operations(t: &ResourceType, name: &str, list: &str) -> (Value, Value) {
    let reference = |name: &str| json!({"$ref": format!("{DEFINITIONS}{name}")});
    let query = |param: &str, description: &str| json!({"name": param, "in": "query", "description": description, "type": "string", "uniqueItems": true});
    let path = |param: &str, description: &str| json!({"name": param, "in": "path", "description": description, "required": true, "type": "string", "uniqueItems": true});
    let body = |schema: Value| json!({"name": "body", "in": "body", "required": true, "schema": schema});
    let ok =
        |schema: Value| json!({"200": {"description": "OK", "schema": schema}, "401": {"description": "Unauthorized"}});
    let writes = [
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) and Strict.",
        ),
    ];
    let gvk = gvk(t, &t.kind);
    let operation = |verb: &str, action: &str, extra: Vec<Value>, consumes: Value, responses: Value| {
        json!({
            "description": format!("{verb} {}", t.kind),
            "consumes": consumes,
            "produces": ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
            "schemes": ["https"],
            "tags": [tag(t)],
            "operationId": format!("{action}{}", t.kind),
            "parameters": extra,
            "responses": responses,
            "x-kubernetes-action": action_name(action),
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let json_in = json!(["*/*"]);
    let mut collection_params = vec![query("pretty", "If 'true', then the output is pretty printed.")];
    let mut item_params = vec![
        path("name", &format!("name of the {}", t.kind)),
        query("pretty", "If 'true', then the output is pretty printed."),
    ];
    if t.namespaced {
        let ns = path(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        );
        collection_params.insert(0, ns.clone());
        item_params.insert(1, ns);
    }
    let mut create_params = vec![body(reference(name))];
    create_params.extend(writes.iter().cloned());
    let mut replace_params = create_params.clone();
    replace_params.truncate(writes.len() + 1);
    let mut patch_params = vec![body(reference(PATCH))];
    patch_params.extend(writes.iter().cloned());
    patch_params.push(query("force", "Force is going to \"force\" Apply requests."));
    let mut patch_types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if t.custom.is_none() {
        patch_types.insert(2, "application/strategic-merge-patch+json");
    }
    let list_query = [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "watch",
    ]
    .map(|p| query(p, p));
    let collection = json!({
        "get": operation("list or watch objects of kind", "list", list_query.to_vec(), json_in.clone(), ok(reference(list))),
        "post": operation("create a", "create", create_params, json_in.clone(), ok(reference(name))),
        "parameters": collection_params,
    });
    let item = json!({
        "get": operation("read the specified", "read", vec![], json_in.clone(), ok(reference(name))),
        "put": operation("replace the specified", "replace", replace_params, json_in.clone(), ok(reference(name))),
        "patch": operation("partially update the specified", "patch", patch_params, json!(patch_types), ok(reference(name))),
        "delete": operation("delete a", "delete", writes[..1].to_vec(), json_in, ok(reference(STATUS))),
        "parameters": item_params,
    });
    (collection, item)
}

/// kube-apiserver's tag of an operation: `appsV1`, `coreV1`, `stableExampleComV1`.
fn tag(t: &ResourceType) -> String {
    let group = match t.group.as_str() {
        "" => "core".to_string(),
        g => {
            let mut out = String::new();
            for (i, part) in g.split(['.', '-']).enumerate() {
                let mut chars = part.chars();
                if let Some(first) = chars.next() {
                    match i {
                        0 => out.push_str(part),
                        _ => {
                            out.extend(first.to_uppercase());
                            out.push_str(chars.as_str());
                        }
                    }
                }
            }
            out
        }
    };
    let mut version = t.version.chars();
    let version = version
        .next()
        .map(|c| c.to_uppercase().chain(version).collect::<String>())
        .unwrap_or_default();
    format!("{group}{version}")
}

fn action_name(operation: &str) -> &str {
    match operation {
        "read" => "get",
        "replace" => "put",
        "create" => "post",
        other => other,
    }
}

// --- JSON to gnostic's messages -------------------------------------------------------------------------------

fn to_proto(doc: &Value) -> proto::Document {
    proto::Document {
        swagger: string(doc, "swagger"),
        info: Some(proto::Info {
            title: string(&doc["info"], "title"),
            version: string(&doc["info"], "version"),
            ..Default::default()
        }),
        paths: Some(proto::Paths {
            vendor_extension: Vec::new(),
            path: entries(&doc["paths"])
                .map(|(name, item)| proto::NamedPathItem {
                    name: name.clone(),
                    value: Some(path_item(item)),
                })
                .collect(),
        }),
        definitions: Some(proto::Definitions {
            additional_properties: named_schemas(&doc["definitions"]),
        }),
        ..Default::default()
    }
}

fn entries(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

fn string(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn boolean(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn float(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A value as gnostic keeps it: YAML text (JSON is YAML).
fn any(value: &Value) -> proto::Any {
    proto::Any {
        yaml: format!("{value}\n"),
    }
}

fn extensions(value: &Value) -> Vec<proto::NamedAny> {
    entries(value)
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| proto::NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

fn named_schemas(value: &Value) -> Vec<proto::NamedSchema> {
    entries(value)
        .map(|(name, s)| proto::NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

fn schema(s: &Value) -> proto::Schema {
    use proto::additional_properties_item::Oneof as Additional;
    let types = match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(_)) => strings(s, "type"),
        _ => Vec::new(),
    };
    let items = match s.get("items") {
        Some(Value::Array(items)) => Some(items.iter().map(schema).collect()),
        Some(item @ Value::Object(_)) => Some(vec![schema(item)]),
        _ => None,
    };
    let additional = match s.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Additional::Boolean(*b)),
        Some(sub @ Value::Object(_)) => Some(Additional::Schema(Box::new(schema(sub)))),
        _ => None,
    };
    proto::Schema {
        reference: string(s, "$ref"),
        format: string(s, "format"),
        title: string(s, "title"),
        description: string(s, "description"),
        default: s.get("default").map(any),
        multiple_of: float(s, "multipleOf"),
        maximum: float(s, "maximum"),
        exclusive_maximum: boolean(s, "exclusiveMaximum"),
        minimum: float(s, "minimum"),
        exclusive_minimum: boolean(s, "exclusiveMinimum"),
        max_length: int(s, "maxLength"),
        min_length: int(s, "minLength"),
        pattern: string(s, "pattern"),
        max_items: int(s, "maxItems"),
        min_items: int(s, "minItems"),
        unique_items: boolean(s, "uniqueItems"),
        max_properties: int(s, "maxProperties"),
        min_properties: int(s, "minProperties"),
        required: strings(s, "required"),
        r#enum: s
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: additional.map(|oneof| Box::new(proto::AdditionalPropertiesItem { oneof: Some(oneof) })),
        r#type: (!types.is_empty()).then_some(proto::TypeItem { value: types }),
        items: items.map(|schema| proto::ItemsItem { schema }),
        all_of: s
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: s
            .get("properties")
            .filter(|p| p.is_object())
            .map(|p| proto::Properties {
                additional_properties: named_schemas(p),
            }),
        discriminator: string(s, "discriminator"),
        read_only: boolean(s, "readOnly"),
        example: s.get("example").map(any),
        vendor_extension: extensions(s),
    }
}

fn path_item(item: &Value) -> proto::PathItem {
    let op = |verb: &str| item.get(verb).map(operation);
    proto::PathItem {
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        patch: op("patch"),
        parameters: parameters(item),
        vendor_extension: extensions(item),
        ..Default::default()
    }
}

fn operation(op: &Value) -> proto::Operation {
    use proto::response_value::Oneof as ResponseOneof;
    use proto::schema_item::Oneof as SchemaOneof;
    proto::Operation {
        tags: strings(op, "tags"),
        description: string(op, "description"),
        operation_id: string(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op),
        responses: Some(proto::Responses {
            response_code: entries(&op["responses"])
                .map(|(code, response)| proto::NamedResponseValue {
                    name: code.clone(),
                    value: Some(proto::ResponseValue {
                        oneof: Some(ResponseOneof::Response(proto::Response {
                            description: string(response, "description"),
                            schema: response.get("schema").map(|s| proto::SchemaItem {
                                oneof: Some(SchemaOneof::Schema(schema(s))),
                            }),
                            vendor_extension: Vec::new(),
                        })),
                    }),
                })
                .collect(),
            vendor_extension: Vec::new(),
        }),
        schemes: strings(op, "schemes"),
        vendor_extension: extensions(op),
        ..Default::default()
    }
}

fn parameters(owner: &Value) -> Vec<proto::ParametersItem> {
    use proto::non_body_parameter::Oneof as NonBody;
    use proto::parameter::Oneof as ParameterOneof;
    use proto::parameters_item::Oneof as ItemOneof;
    let Some(list) = owner.get("parameters").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|p| {
            let parameter = match p["in"].as_str() {
                Some("body") => ParameterOneof::BodyParameter(proto::BodyParameter {
                    description: string(p, "description"),
                    name: string(p, "name"),
                    r#in: string(p, "in"),
                    required: boolean(p, "required"),
                    schema: p.get("schema").map(schema),
                    vendor_extension: extensions(p),
                }),
                Some("path") => ParameterOneof::NonBodyParameter(proto::NonBodyParameter {
                    oneof: Some(NonBody::PathParameterSubSchema(proto::PathParameterSubSchema {
                        required: boolean(p, "required"),
                        r#in: string(p, "in"),
                        description: string(p, "description"),
                        name: string(p, "name"),
                        r#type: string(p, "type"),
                        format: string(p, "format"),
                        unique_items: boolean(p, "uniqueItems"),
                        vendor_extension: extensions(p),
                    })),
                }),
                _ => ParameterOneof::NonBodyParameter(proto::NonBodyParameter {
                    oneof: Some(NonBody::QueryParameterSubSchema(proto::QueryParameterSubSchema {
                        required: boolean(p, "required"),
                        r#in: string(p, "in"),
                        description: string(p, "description"),
                        name: string(p, "name"),
                        r#type: string(p, "type"),
                        format: string(p, "format"),
                        unique_items: boolean(p, "uniqueItems"),
                        vendor_extension: extensions(p),
                        ..Default::default()
                    })),
                }),
            };
            proto::ParametersItem {
                oneof: Some(ItemOneof::Parameter(proto::Parameter { oneof: Some(parameter) })),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(registry: &Registry) -> (Value, proto::Document) {
        let doc = OpenApiV2::default().document(registry);
        let json: Value = serde_json::from_slice(&doc.json).unwrap();
        let proto = proto::Document::decode(doc.protobuf.as_ref()).unwrap();
        (json, proto)
    }

    fn named<'a>(schemas: &'a [proto::NamedSchema], name: &str) -> &'a proto::Schema {
        schemas
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.value.as_ref())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn definitions_are_v2_and_decode_from_protobuf() {
        let registry = Registry::builtin();
        let (json, doc) = decoded(&registry);
        assert_eq!(json["swagger"], "2.0");
        let deployment = &json["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert_eq!(
            deployment["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        // No v3 leftovers anywhere: every reference resolves to a definition.
        let text = json.to_string();
        assert!(!text.contains("#/components/schemas/"));
        let definitions = json["definitions"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(definitions.contains_key(name), "dangling {name}");
        }
        let containers = &json["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");

        let defs = &doc.definitions.as_ref().unwrap().additional_properties;
        assert_eq!(defs.len(), definitions.len());
        let spec = named(defs, "io.k8s.api.apps.v1.DeploymentSpec");
        assert_eq!(spec.r#type.as_ref().unwrap().value, ["object"]);
        let fields = &spec.properties.as_ref().unwrap().additional_properties;
        let strategy = named(fields, "strategy");
        assert_eq!(
            strategy.reference,
            "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy.r#type.is_none());
        let gvk = named(defs, "io.k8s.api.apps.v1.Deployment")
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.as_ref())
            .unwrap();
        let gvk: Value = serde_json::from_str(&gvk.yaml).unwrap();
        assert_eq!(gvk[0]["kind"], "Deployment");
        let path = doc
            .paths
            .as_ref()
            .unwrap()
            .path
            .iter()
            .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
            .and_then(|p| p.value.as_ref())
            .unwrap();
        let patch = path.patch.as_ref().unwrap();
        assert_eq!(patch.operation_id, "patchDeployment");
        assert!(
            patch
                .parameters
                .iter()
                .any(|p| format!("{p:?}").contains("\"fieldValidation\""))
        );
    }

    #[test]
    fn v3_constructs_become_v2() {
        let mut schema = json!({
            "type": ["string", "null"],
            "nullable": true,
            "properties": {
                "a": {"allOf": [{"$ref": "#/components/schemas/x.Y"}], "description": "d"},
                "b": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "c": {"type": "array"},
                "d": {"type": "integer", "exclusiveMinimum": 3},
            }
        });
        to_v2(&mut schema);
        assert_eq!(schema["type"], "string");
        assert!(schema.get("nullable").is_none());
        assert_eq!(
            schema["properties"]["a"],
            json!({"$ref": "#/definitions/x.Y", "description": "d"})
        );
        assert_eq!(schema["properties"]["b"], json!({"x-kubernetes-int-or-string": true}));
        assert_eq!(schema["properties"]["c"]["items"], json!({}));
        assert_eq!(schema["properties"]["d"]["minimum"], 3);
        assert_eq!(schema["properties"]["d"]["exclusiveMinimum"], true);
    }

    #[test]
    fn accept_negotiation_and_etags() {
        assert_eq!(negotiate(""), Some(Encoding::Json));
        assert_eq!(negotiate("application/json"), Some(Encoding::Json));
        assert_eq!(
            negotiate("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            negotiate("application/com.github.proto-openapi.spec.v2.v1.0+protobuf;q=0.9, application/json;q=0.5"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(negotiate("application/json;q=0.1, */*;q=0.9"), Some(Encoding::Json));
        assert_eq!(negotiate("text/html"), None);
        assert!(not_modified(Some("\"AB\""), "\"AB\""));
        assert!(not_modified(Some("W/\"AB\", \"CD\""), "\"CD\""));
        assert!(!not_modified(Some("\"AB\""), "\"CD\""));
        assert!(!not_modified(None, "\"CD\""));
        let registry = Registry::builtin();
        let cache = OpenApiV2::default();
        assert!(Arc::ptr_eq(&cache.document(&registry), &cache.document(&registry)));
        assert!(cache.document(&registry).etag.len() == 130);
    }

    #[test]
    fn tags_name_group_versions_like_kube_apiserver() {
        let registry = Registry::builtin();
        let deployments = registry.get("apps", "v1", "deployments").unwrap();
        assert_eq!(tag(deployments), "appsV1");
        let leases = registry.get("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(tag(leases), "coordinationK8sIoV1");
    }
}
