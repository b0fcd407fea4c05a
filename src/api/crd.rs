//! CustomResourceDefinitions: turning a CRD into served resource types (one per
//! served version, with its schema, printer columns and subresources), keeping
//! the registry in step as CRDs come and go, reporting them Established, and
//! removing a CRD's objects with it.

use serde_json::{Value, json};
use std::sync::Arc;

use super::resources::{CustomSpec, ResourceType};
use super::status::Status;
use super::{Api, time};
use crate::store::{KeyRange, Range};

/// The store prefix of CRD objects.
const CRDS: &str = "/registry/customresourcedefinitions/";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The resource types a CRD serves.
pub fn types_of(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return Vec::new();
    };
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != false)
        .filter_map(|v| {
            let version = v["name"].as_str()?;
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push("status".to_string());
            }
            if v["subresources"]["scale"].is_object() {
                subresources.push("scale".to_string());
            }
            Some(ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                resource: plural.to_string(),
                singular: names["singular"]
                    .as_str()
                    .map_or_else(|| kind.to_lowercase(), str::to_string),
                kind: kind.to_string(),
                namespaced: spec["scope"] != "Cluster",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                subresources,
                custom: Some(Arc::new(CustomSpec {
                    schema: v["schema"]["openAPIV3Schema"].clone(),
                    printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                    scale: v["subresources"]["scale"].clone(),
                })),
            })
        })
        .collect()
}

/// What kube-apiserver reports for a CRD it serves.
pub fn status_on_write(crd: &mut Value) {
    let now = time::now_rfc3339();
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found for names"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten()
            .filter(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .collect::<Vec<_>>(),
    });
}

/// Serves what `crd` defines now (or nothing, once it is gone).
pub fn sync(api: &Api, crd: &Value, gone: bool) {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let mut registry = api.registry.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    registry.remove(group, plural);
    if !gone {
        for t in types_of(crd) {
            registry.add(t);
        }
    }
}

/// Serves every CRD in the store (at start-up).
pub async fn load(api: &Api) -> Result<usize, Status> {
    let page = api
        .store
        .range(Range::of(KeyRange::prefix(CRDS)))
        .await
        .map_err(super::handlers::store_error)?;
    for kv in &page.kvs {
        let crd = super::handlers::object_of(kv)?;
        sync(api, &crd, false);
    }
    Ok(page.kvs.len())
}

/// Deletes every object of a CRD that is no longer served.
pub async fn delete_instances(api: Arc<Api>, crd: Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let prefix = format!("/registry/{group}/{plural}/");
    if let Err(err) = api.store.delete(KeyRange::prefix(prefix)).await {
        tracing::warn!(%err, group, plural, "deleting custom resources failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_versions_become_types() {
        let crd = json!({"spec": {"group": "stable.example.com", "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
        "versions": [
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}},
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
            {"name": "v1beta1", "served": false, "storage": false}
        ]}});
        let types = types_of(&crd);
        assert_eq!(types.len(), 1);
        let t = &types[0];
        assert_eq!(
            (t.api_version().as_str(), t.kind.as_str(), t.namespaced),
            ("stable.example.com/v1", "CronTab", true)
        );
        assert_eq!(t.subresources, ["status", "scale"]);
        assert_eq!(t.prefix(), "/registry/stable.example.com/crontabs/");
        let mut with_status = crd.clone();
        status_on_write(&mut with_status);
        assert_eq!(with_status["status"]["conditions"][1]["type"], "Established");
        assert_eq!(with_status["status"]["storedVersions"], json!(["v1"]));
    }
}
