//! Strategic merge patch for built-in kinds, as kube-apiserver applies it: maps
//! merge recursively (`null` deletes), lists are replaced unless the field is a
//! merge list (by merge key, or a set of scalars), and the directives `$patch`
//! (`replace`/`delete`, on maps and list items), `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are honoured.
//! Merge keys come from the Go struct tags of k8s.io/api (the table in `strategy`),
//! looked up by kind and field path. Custom resources do not accept this patch type.
//! The same table, corrected by the `+listType` markers, gives server-side apply its
//! view of these types (`list_type`, `map_type`, `key_default`).

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Replace,
    /// Maps merged by this key.
    Key(&'static str),
    /// A set of scalars.
    Set,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The merge strategy of the list at `path` (map keys from the object's root) in `kind`.
fn strategy(kind: &str, path: &[String]) -> Strategy {
    let Some(field) = path.last().map(String::as_str) else {
        return Strategy::Replace;
    };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    let in_container = path[..path.len() - 1]
        .iter()
        .any(|p| CONTAINER_LISTS.contains(&p.as_str()));
    let in_status = path.first().map(String::as_str) == Some("status");
    match field {
        f if CONTAINER_LISTS.contains(&f) => Strategy::Key("name"),
        "volumes" | "resourceClaims" | "schedulingGates" if !in_status => Strategy::Key("name"),
        "resourceClaimStatuses" => Strategy::Key("name"),
        "env" if in_container => Strategy::Key("name"),
        "ports" if in_container => Strategy::Key("containerPort"),
        "ports" if kind == "Service" && parent == Some("spec") => Strategy::Key("port"),
        "volumeMounts" => Strategy::Key("mountPath"),
        "volumeDevices" => Strategy::Key("devicePath"),
        "conditions" if in_status => Strategy::Key("type"),
        "imagePullSecrets" if kind != "ServiceAccount" => Strategy::Key("name"),
        "secrets" if kind == "ServiceAccount" && path.len() == 1 => Strategy::Key("name"),
        "hostAliases" => Strategy::Key("ip"),
        "topologySpreadConstraints" => Strategy::Key("topologyKey"),
        "ownerReferences" if parent == Some("metadata") => Strategy::Key("uid"),
        "finalizers" if parent == Some("metadata") => Strategy::Set,
        "podCIDRs" => Strategy::Set,
        "podIPs" | "hostIPs" if in_status => Strategy::Key("ip"),
        "addresses" if kind == "Node" && in_status => Strategy::Key("type"),
        _ => Strategy::Replace,
    }
}

/// How server-side apply treats the list at `path` in `kind` (its
/// `x-kubernetes-list-type`): the `strategy` table, corrected where the Go
/// `+listType`/`+listMapKey` markers differ from the patch tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced and owned as a whole.
    Atomic,
    /// A set of scalars, each owned on its own.
    Set,
    /// Maps keyed by these fields.
    Map(Vec<String>),
}

pub(crate) fn list_type(kind: &str, path: &[String]) -> ListType {
    let Some(field) = path.last().map(String::as_str) else {
        return ListType::Atomic;
    };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    let in_container = path[..path.len() - 1]
        .iter()
        .any(|p| CONTAINER_LISTS.contains(&p.as_str()));
    let in_status = path.first().map(String::as_str) == Some("status");
    let keys = |keys: &[&str]| ListType::Map(keys.iter().map(|k| k.to_string()).collect());
    match field {
        "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "ports" if in_container => keys(&["containerPort", "protocol"]),
        "ports" if kind == "Service" && parent == Some("spec") => keys(&["port", "protocol"]),
        "claims" if parent == Some("resources") => keys(&["name"]),
        "allocatedResourcesStatus" => keys(&["name"]),
        "resources" if parent == Some("allocatedResourcesStatus") => keys(&["resourceID"]),
        "hostIPs" if in_status => ListType::Atomic,
        "conditions" if in_status && kind == "Job" => ListType::Atomic,
        "succeeded" | "failed" if parent == Some("uncountedTerminatedPods") => ListType::Set,
        _ => match strategy(kind, path) {
            Strategy::Replace => ListType::Atomic,
            Strategy::Set => ListType::Set,
            Strategy::Key(key) => keys(&[key]),
        },
    }
}

/// The value server-side apply assumes for a list-map key field an item leaves
/// out (the schema default), e.g. a port's `protocol`.
pub(crate) fn key_default(field: &str) -> Option<&'static str> {
    match field {
        "protocol" => Some("TCP"),
        _ => None,
    }
}

/// How server-side apply treats the map at `path` (for a list, its items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapType {
    /// `+structType=atomic` / `+mapType=atomic`: replaced and owned as a whole.
    Atomic,
    /// A Go struct: declared fields, each owned on its own.
    Struct,
    /// A map with keys of the user's choosing (labels, data, resources...).
    Free,
}

pub(crate) fn map_type(path: &[String]) -> MapType {
    let Some(field) = path.last().map(String::as_str) else {
        return MapType::Struct;
    };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    match field {
        // LabelSelector, selector maps, object references and other atomic structs.
        "selector" | "nodeSelector" | "labelSelector" | "namespaceSelector" | "podSelector" | "objectSelector"
        | "scopeSelector" | "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef" | "secretRef"
        | "claimRef" | "targetRef" | "involvedObject" | "regarding" | "related" | "dataSource" | "preference"
        | "ownerReferences" | "imagePullSecrets" => MapType::Atomic,
        "required" | "requiredDuringSchedulingIgnoredDuringExecution" if parent == Some("nodeAffinity") => {
            MapType::Atomic
        }
        "labels" | "annotations" if parent == Some("metadata") => MapType::Free,
        "data" | "binaryData" | "stringData" if path.len() == 1 => MapType::Free,
        "limits" | "requests" | "capacity" | "allocatable" | "hard" | "used" | "allocatedResources" | "overhead"
        | "parameters" | "volumeAttributes" => MapType::Free,
        _ => MapType::Struct,
    }
}

/// Why a patch could not be applied: a 400 (`bad`) or a 422/500 class error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    BadRequest(String),
    Invalid(String),
}

fn bad(message: impl Into<String>) -> PatchError {
    PatchError::BadRequest(message.into())
}

/// Applies a strategic merge patch to `original` (an object of `kind`).
pub fn strategic_merge(kind: &str, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let (Some(original), Some(patch)) = (original.as_object(), patch.as_object()) else {
        return Err(bad("invalid JSON document"));
    };
    merge_map(kind, &mut Vec::new(), original.clone(), patch).map(Value::Object)
}

fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(strip_directives(patch)),
        Some("delete") => return Ok(Map::new()),
        Some(other) => return Err(PatchError::Invalid(format!("unknown patch type: {other} in map"))),
        None => {}
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad("invalid patch format of retainKeys"))?
            .iter()
            .map(|k| k.as_str().ok_or_else(|| bad("invalid patch format of retainKeys")))
            .collect::<Result<_, _>>()?;
        for (k, v) in patch {
            if !k.starts_with('$') && !v.is_null() && !keep.contains(&k.as_str()) {
                return Err(bad("invalid patch format of retainKeys"));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            if patch.contains_key(field) {
                continue; // applied together with the list itself
            }
            let order = value
                .as_array()
                .ok_or_else(|| bad("invalid patch format of setElementOrder list"))?;
            if let Some(Value::Array(list)) = original.get(field) {
                path.push(field.to_string());
                let reordered = order_like(kind, path, list.clone(), list, order);
                path.pop();
                original.insert(field.to_string(), Value::Array(reordered));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value
                .as_array()
                .ok_or_else(|| bad("invalid patch format of primitive list"))?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(bad(format!("unknown patch directive {key:?}")));
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        path.push(key.clone());
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(kind, path, o, p)?),
            (Some(Value::Array(o)), Value::Array(p)) => {
                let order = patch.get(&format!("$setElementOrder/{key}")).and_then(Value::as_array);
                Value::Array(merge_list(kind, path, o, p, order)?)
            }
            (_, other) => clean(other),
        };
        path.pop();
        original.insert(key.clone(), merged);
    }
    Ok(original)
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    original: Vec<Value>,
    patch: &[Value],
    order: Option<&Vec<Value>>,
) -> Result<Vec<Value>, PatchError> {
    match strategy(kind, path) {
        Strategy::Replace => Ok(patch.iter().map(clean).collect()),
        Strategy::Set => {
            let mut merged = original.clone();
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(order_like(
                kind,
                path,
                merged,
                &original,
                order.map_or(patch, |o| o.as_slice()),
            ))
        }
        Strategy::Key(key) => {
            if patch
                .iter()
                .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                return Ok(patch.iter().filter(|p| p.get("$patch").is_none()).map(clean).collect());
            }
            let mut merged = original.clone();
            let mut listed = Vec::new();
            for item in patch {
                let map = item
                    .as_object()
                    .ok_or_else(|| PatchError::Invalid(format!("list {} must hold maps", path.join("."))))?;
                let id = map
                    .get(key)
                    .ok_or_else(|| PatchError::Invalid(format!("map does not contain declared merge key: {key}")))?;
                match map.get("$patch").and_then(Value::as_str) {
                    Some("delete") => {
                        merged.retain(|m| m.get(key) != Some(id));
                        continue;
                    }
                    Some(other) => return Err(PatchError::Invalid(format!("unknown patch type: {other} in list"))),
                    None => {}
                }
                listed.push(item.clone());
                match merged.iter_mut().find(|m| m.get(key) == Some(id)) {
                    Some(existing) => {
                        let base = existing.as_object().cloned().unwrap_or_default();
                        *existing = Value::Object(merge_map(kind, path, base, map)?);
                    }
                    None => merged.push(clean(item)),
                }
            }
            let order = order.cloned().unwrap_or(listed);
            Ok(order_like(kind, path, merged, &original, &order))
        }
    }
}

/// Orders a merged list as kube-apiserver does: the items the patch (or its
/// `$setElementOrder`) names come in that order, the others keep their place
/// relative to the original, interleaved by original position.
fn order_like(kind: &str, path: &[String], merged: Vec<Value>, original: &[Value], order: &[Value]) -> Vec<Value> {
    let identity = |v: &Value| -> Value {
        match strategy(kind, path) {
            Strategy::Key(key) => v.get(key).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(&identity).collect();
    let original_ids: Vec<Value> = original.iter().map(&identity).collect();
    let position = |ids: &[Value], v: &Value| ids.iter().position(|x| *x == identity(v));
    let (mut named, mut rest): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|v| position(&order_ids, v).is_some());
    named.sort_by_key(|v| position(&order_ids, v));
    rest.sort_by_key(|v| position(&original_ids, v));
    let mut out = Vec::with_capacity(named.len() + rest.len());
    let (mut named, mut rest) = (named.into_iter().peekable(), rest.into_iter().peekable());
    while let (Some(l), Some(r)) = (rest.peek(), named.peek()) {
        let (li, ri) = (position(&original_ids, l), position(&original_ids, r));
        let take_rest = matches!((li, ri), (Some(a), Some(b)) if a < b);
        out.extend(if take_rest { rest.next() } else { named.next() });
    }
    out.extend(rest);
    out.extend(named);
    out
}

/// A patch value inserted as is: nulls inside it and directives dropped.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
            "spec": {
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {
                    "containers": [
                        {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "side:1"}
                    ],
                    "tolerations": [{"key": "x"}]
                }}
            }
        })
    }

    #[test]
    fn merges_containers_by_name_and_keeps_the_rest() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "app:2"}]
        }}}});
        let out = strategic_merge("Deployment", &deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(
            containers[0]["ports"][0]["containerPort"], 80,
            "fields the patch did not name stay"
        );
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn directives_delete_replace_retain_and_primitive_lists() {
        let patch = json!({
            "metadata": {"labels": {"tier": null}, "$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                "template": {"spec": {
                    "containers": [{"name": "sidecar", "$patch": "delete"}],
                    "tolerations": [{"key": "y"}]
                }}
            }
        });
        let out = strategic_merge("Deployment", &deployment(), &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "y"}]),
            "lists without a merge key are replaced"
        );

        let replace = json!({"spec": {"template": {"spec": {"$patch": "replace", "containers": []}}}});
        let out = strategic_merge("Deployment", &deployment(), &replace).unwrap();
        assert_eq!(out["spec"]["template"]["spec"], json!({"containers": []}));
    }

    #[test]
    fn merged_list_order_follows_the_patch_then_the_original() {
        let original = json!({"metadata": {"finalizers": ["1", "2", "3"]}});
        let out = strategic_merge("ConfigMap", &original, &json!({"metadata": {"finalizers": ["3", "1"]}})).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["2", "3", "1"]));
        let env = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "1"}]}]}});
        let out = strategic_merge("Pod", &env, &patch).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "Y", "value": "1"}, {"name": "X"}])
        );
    }

    #[test]
    fn malformed_patches_are_refused() {
        let cm = json!({"data": {}});
        assert!(matches!(
            strategic_merge("ConfigMap", &cm, &json!([1])),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            strategic_merge("ConfigMap", &cm, &json!({"data": {"$patch": "explode"}})),
            Err(PatchError::Invalid(_))
        ));
        let pod = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(strategic_merge("Pod", &pod, &json!({"spec": {"containers": [{"image": "x"}]}})).is_err());
    }
}
