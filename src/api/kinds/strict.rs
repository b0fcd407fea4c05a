//! Strict field validation of built-in kinds (`fieldValidation=Strict`, which
//! kubectl sends by default): kube-apiserver decodes built-in objects into its Go
//! types and reports every field those types do not have. Here the object is
//! decoded into its `k8s-openapi` type and encoded again; whatever did not survive
//! the round trip is an unknown field, named by its path as the Go decoder names it
//! (`spec.containers[0].imagePullPolicyy`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The unknown fields of a built-in object, or the decoder's error when a known
/// field has the wrong type; `Ok(vec![])` for kinds without a typed model.
pub fn unknown_fields(group: &str, resource: &str, object: &Value) -> Result<Vec<String>, String> {
    let round_trip = match (group, resource) {
        ("", "pods") => round_trip::<core::v1::Pod>,
        ("", "services") => round_trip::<core::v1::Service>,
        ("", "configmaps") => round_trip::<core::v1::ConfigMap>,
        ("", "secrets") => round_trip::<core::v1::Secret>,
        ("", "namespaces") => round_trip::<core::v1::Namespace>,
        ("", "nodes") => round_trip::<core::v1::Node>,
        ("", "serviceaccounts") => round_trip::<core::v1::ServiceAccount>,
        ("", "endpoints") => round_trip::<core::v1::Endpoints>,
        ("", "persistentvolumes") => round_trip::<core::v1::PersistentVolume>,
        ("", "persistentvolumeclaims") => round_trip::<core::v1::PersistentVolumeClaim>,
        ("", "limitranges") => round_trip::<core::v1::LimitRange>,
        ("", "resourcequotas") => round_trip::<core::v1::ResourceQuota>,
        ("", "replicationcontrollers") => round_trip::<core::v1::ReplicationController>,
        ("", "events") => round_trip::<core::v1::Event>,
        ("apps", "deployments") => round_trip::<apps::v1::Deployment>,
        ("apps", "replicasets") => round_trip::<apps::v1::ReplicaSet>,
        ("apps", "statefulsets") => round_trip::<apps::v1::StatefulSet>,
        ("apps", "daemonsets") => round_trip::<apps::v1::DaemonSet>,
        ("apps", "controllerrevisions") => round_trip::<apps::v1::ControllerRevision>,
        ("batch", "jobs") => round_trip::<batch::v1::Job>,
        ("batch", "cronjobs") => round_trip::<batch::v1::CronJob>,
        ("coordination.k8s.io", "leases") => round_trip::<coordination::v1::Lease>,
        ("discovery.k8s.io", "endpointslices") => round_trip::<discovery::v1::EndpointSlice>,
        ("policy", "poddisruptionbudgets") => round_trip::<policy::v1::PodDisruptionBudget>,
        ("rbac.authorization.k8s.io", "roles") => round_trip::<rbac::v1::Role>,
        ("rbac.authorization.k8s.io", "rolebindings") => round_trip::<rbac::v1::RoleBinding>,
        ("rbac.authorization.k8s.io", "clusterroles") => round_trip::<rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io", "clusterrolebindings") => round_trip::<rbac::v1::ClusterRoleBinding>,
        ("apiextensions.k8s.io", "customresourcedefinitions") => round_trip::<CustomResourceDefinition>,
        _ => return Ok(Vec::new()),
    };
    let decoded = round_trip(object)?;
    let mut unknown = Vec::new();
    missing(object, &decoded, &mut String::new(), &mut unknown);
    Ok(unknown)
}

fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Paths present (and not null) in `given` but absent from `kept`.
fn missing(given: &Value, kept: &Value, path: &mut String, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match kept.get(key) {
                    Some(kept) => missing(value, kept, path, out),
                    None if !value.is_null() && !matches!(key.as_str(), "apiVersion" | "kind") => {
                        out.push(path.clone())
                    }
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (value, kept)) in given.iter().zip(kept).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                missing(value, kept, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_by_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"any": "label"}, "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicyy": "Always",
                "resources": {"limits": {"cpu": "1"}}}], "nodeName": null},
            "extra": {"x": 1}});
        assert_eq!(
            unknown_fields("", "pods", &pod).unwrap(),
            ["extra", "metadata.bogus", "spec.containers[0].imagePullPolicyy"]
        );
        let fine = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}}});
        assert_eq!(
            unknown_fields("apps", "deployments", &fine).unwrap(),
            Vec::<String>::new()
        );
        assert!(unknown_fields("", "pods", &json!({"spec": {"containers": "no"}})).is_err());
        assert!(
            unknown_fields("example.com", "widgets", &json!({"any": 1}))
                .unwrap()
                .is_empty()
        );
    }
}
