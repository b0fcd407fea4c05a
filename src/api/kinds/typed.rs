//! The typed model of each built-in kind, from `k8s-openapi`: what the Go types
//! are to kube-apiserver. It gives
//! - field validation (`fieldValidation=Strict`, kubectl's default, or `Warn`/`Ignore`):
//!   the object is decoded into its type and encoded again; whatever did not survive
//!   the round trip is an unknown field, named by its path as the Go decoder names
//!   it (`spec.containers[0].imagePullPolicyy`), and dropped as decoding drops it;
//! - the OpenAPI schemas (with descriptions) that `kubectl explain` reads.

use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// What the server does with a kind's type.
#[derive(Clone, Copy)]
pub struct Model {
    round_trip: fn(&Value) -> Result<Value, String>,
    schema: fn(&mut SchemaGenerator) -> Value,
}

fn model<T: DeserializeOwned + Serialize + JsonSchema>() -> Model {
    Model {
        round_trip: round_trip::<T>,
        schema: |generator| generator.subschema_for::<T>().to_value(),
    }
}

/// The model of a built-in resource, `None` for custom resources.
pub fn of(group: &str, resource: &str) -> Option<Model> {
    Some(match (group, resource) {
        ("", "pods") => model::<core::v1::Pod>(),
        ("", "services") => model::<core::v1::Service>(),
        ("", "configmaps") => model::<core::v1::ConfigMap>(),
        ("", "secrets") => model::<core::v1::Secret>(),
        ("", "namespaces") => model::<core::v1::Namespace>(),
        ("", "nodes") => model::<core::v1::Node>(),
        ("", "serviceaccounts") => model::<core::v1::ServiceAccount>(),
        ("", "endpoints") => model::<core::v1::Endpoints>(),
        ("", "persistentvolumes") => model::<core::v1::PersistentVolume>(),
        ("", "persistentvolumeclaims") => model::<core::v1::PersistentVolumeClaim>(),
        ("", "limitranges") => model::<core::v1::LimitRange>(),
        ("", "resourcequotas") => model::<core::v1::ResourceQuota>(),
        ("", "replicationcontrollers") => model::<core::v1::ReplicationController>(),
        ("", "events") => model::<core::v1::Event>(),
        ("apps", "deployments") => model::<apps::v1::Deployment>(),
        ("apps", "replicasets") => model::<apps::v1::ReplicaSet>(),
        ("apps", "statefulsets") => model::<apps::v1::StatefulSet>(),
        ("apps", "daemonsets") => model::<apps::v1::DaemonSet>(),
        ("apps", "controllerrevisions") => model::<apps::v1::ControllerRevision>(),
        ("batch", "jobs") => model::<batch::v1::Job>(),
        ("batch", "cronjobs") => model::<batch::v1::CronJob>(),
        ("coordination.k8s.io", "leases") => model::<coordination::v1::Lease>(),
        ("discovery.k8s.io", "endpointslices") => model::<discovery::v1::EndpointSlice>(),
        ("policy", "poddisruptionbudgets") => model::<policy::v1::PodDisruptionBudget>(),
        ("rbac.authorization.k8s.io", "roles") => model::<rbac::v1::Role>(),
        ("rbac.authorization.k8s.io", "rolebindings") => model::<rbac::v1::RoleBinding>(),
        ("rbac.authorization.k8s.io", "clusterroles") => model::<rbac::v1::ClusterRole>(),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => model::<rbac::v1::ClusterRoleBinding>(),
        ("apiextensions.k8s.io", "customresourcedefinitions") => model::<CustomResourceDefinition>(),
        _ => return None,
    })
}

impl Model {
    /// The unknown fields of an object, or the decoder's error when a known field
    /// has the wrong type or a required one is missing.
    pub fn unknown_fields(&self, object: &Value) -> Result<Vec<String>, String> {
        let decoded = (self.round_trip)(object)?;
        let mut unknown = Vec::new();
        missing(object, &decoded, &mut String::new(), &mut unknown);
        Ok(unknown)
    }

    /// A reference to the kind's schema; the generator collects it and every
    /// schema it refers to as definitions.
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Value {
        (self.schema)(generator)
    }
}

/// [`Model::unknown_fields`] of a resource; none for kinds without a model.
pub fn unknown_fields(group: &str, resource: &str, object: &Value) -> Result<Vec<String>, String> {
    of(group, resource).map_or(Ok(Vec::new()), |model| model.unknown_fields(object))
}

/// Drops the fields of `object` its type does not have, as decoding into the Go
/// type does (`fieldValidation=Warn|Ignore`), and names the dropped ones (null
/// ones are dropped without a name). The decoder's error when a known field has
/// the wrong type, leaving the object as it was; none for kinds without a model.
pub fn prune_unknown(group: &str, resource: &str, object: &mut Value) -> Result<Vec<String>, String> {
    let Some(model) = of(group, resource) else {
        return Ok(Vec::new());
    };
    let decoded = (model.round_trip)(object)?;
    let mut unknown = Vec::new();
    prune(object, &decoded, &mut String::new(), &mut unknown);
    Ok(unknown)
}

/// [`missing`], removing what it finds.
fn prune(given: &mut Value, kept: &Value, path: &mut String, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            given.retain(|key, value| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let keep = match kept.get(key) {
                    Some(kept) => {
                        prune(value, kept, path, out);
                        true
                    }
                    None if matches!(key.as_str(), "apiVersion" | "kind") => true,
                    None if value.is_null() => false,
                    None => {
                        out.push(path.clone());
                        false
                    }
                };
                path.truncate(len);
                keep
            });
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (value, kept)) in given.iter_mut().zip(kept).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune(value, kept, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
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
    fn unknown_fields_are_pruned_and_named() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a.b/c": "d"}, "bogus": null},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}], "foo": 1},
        });
        let unknown = prune_unknown("", "pods", &mut pod).unwrap();
        assert_eq!(unknown, ["spec.containers[0].imagePullPolicyy", "spec.foo"]);
        assert_eq!(
            pod,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a.b/c": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            })
        );
        let mut wrong = json!({"spec": {"containers": "no"}});
        assert!(prune_unknown("", "pods", &mut wrong).is_err());
        assert_eq!(wrong, json!({"spec": {"containers": "no"}}));
    }

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
