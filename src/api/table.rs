//! `meta.k8s.io/v1` Table output for `kubectl get`: the columns kubectl shows
//! against a real cluster for the common kinds, Name and Age (or Created At) for
//! the rest; each row carries the object's metadata (or the object) so kubectl can
//! add namespace and label columns.

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::resources::ResourceType;
use super::status::Status;
use super::time;

/// What a row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Metadata,
    Object,
    Nothing,
}

/// Whether the client asked for a Table (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
/// and what rows carry (`includeObject`).
pub fn requested(headers: &HeaderMap, include: Option<&str>) -> Result<Option<Form>, Status> {
    let form = match include {
        None | Some("Metadata") => Form::Metadata,
        Some("Object") => Form::Object,
        Some("None") => Form::Nothing,
        Some(other) => {
            return Err(Status::bad_request(format!(
                "unrecognized includeObject value: {other:?}"
            )));
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for choice in accept.split(',') {
        let params: Vec<&str> = choice.split(';').map(str::trim).collect();
        if !params.contains(&"as=Table") {
            continue;
        }
        if params.contains(&"g=meta.k8s.io") && (params.contains(&"v=v1") || params.contains(&"v=v1beta1")) {
            return Ok(Some(form));
        }
    }
    Ok(None)
}

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: i64,
    description: &'static str,
}

const fn col(name: &'static str, kind: &'static str, priority: i64, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority,
        description,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(rtype: &ResourceType) -> Vec<Column> {
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "namespaces") => vec![NAME, col("Status", "string", 0, "The status of the namespace"), AGE],
        ("", "configmaps") => vec![NAME, col("Data", "string", 0, "Number of data entries"), AGE],
        ("", "secrets") => vec![
            NAME,
            col("Type", "string", 0, "The type of the secret"),
            col("Data", "string", 0, "Number of data entries"),
            AGE,
        ],
        ("", "serviceaccounts") => vec![NAME, col("Secrets", "string", 0, "Number of secrets"), AGE],
        (_, "customresourcedefinitions") => vec![NAME, col("Created At", "date", 0, "Creation time")],
        _ if rtype.group.is_empty() || is_builtin_group(&rtype.group) => vec![NAME, AGE],
        _ => vec![NAME, col("Created At", "date", 0, "Creation time")],
    }
}

fn is_builtin_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

fn cells(rtype: &ResourceType, object: &Value) -> Vec<Value> {
    let meta = &object["metadata"];
    let name = json!(meta["name"].as_str().unwrap_or_default());
    let age = json!(time::age(meta["creationTimestamp"].as_str()));
    let created = meta["creationTimestamp"].clone();
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "namespaces") => vec![name, json!(object["status"]["phase"].as_str().unwrap_or_default()), age],
        ("", "configmaps") => vec![name, json!(count(&object["data"]) + count(&object["binaryData"])), age],
        ("", "secrets") => vec![
            name,
            json!(object["type"].as_str().unwrap_or("Opaque")),
            json!(count(&object["data"])),
            age,
        ],
        ("", "serviceaccounts") => {
            vec![name, json!(object["secrets"].as_array().map_or(0, Vec::len)), age]
        }
        (_, "customresourcedefinitions") => vec![name, created],
        _ if rtype.group.is_empty() || is_builtin_group(&rtype.group) => vec![name, age],
        _ => vec![name, created],
    }
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn render(rtype: &ResourceType, objects: &[Value], list_meta: Option<Value>, form: Form) -> Value {
    let definitions: Vec<Value> = columns(rtype)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(rtype, object)});
            match form {
                Form::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object["metadata"],
                    })
                }
                Form::Object => row["object"] = object.clone(),
                Form::Nothing => {}
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta.unwrap_or_else(|| json!({})),
        "columnDefinitions": definitions,
        "rows": rows,
    })
}
