//! Per-kind behaviour the generic handlers call: defaults applied on create,
//! validation (422 with field causes), and the cluster-wide unique resources an
//! object holds (a Service's cluster IP and node ports), which are allocated on
//! create and update and released with the object. One file per API group.

mod apps;
mod core;
pub mod events;
pub mod typed;

use serde_json::Value;
use std::net::Ipv4Addr;

use super::resources::ResourceType;
use super::status::Cause;

pub use self::core::{RESERVATIONS, ServiceRanges, allocate_service};

/// Fills in what the API server defaults for a new (or replaced) object.
pub fn defaults(rtype: &ResourceType, object: &mut Value) {
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "namespaces") => core::namespace_defaults(object),
        ("", "pods") => {
            core::pod_spec_defaults(&mut object["spec"]);
            core::pod_status_on_create(object);
        }
        ("", "services") => core::service_defaults(object),
        ("", "secrets") => core::secret_defaults(object),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") | ("", "replicationcontrollers") => {
            apps::workload_defaults(&rtype.resource, object)
        }
        ("batch", "jobs") => {
            apps::job_defaults(object);
            apps::job_selector(object);
        }
        ("batch", "cronjobs") => apps::cronjob_defaults(object),
        ("apiextensions.k8s.io", "customresourcedefinitions") => crate::api::crd::status_on_write(object),
        _ => {}
    }
}

/// Field errors of an object about to be stored (`old` on updates).
pub fn validate(rtype: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "pods") => core::validate_pod_spec(&object["spec"], "spec"),
        ("", "services") => core::validate_service(object, old),
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") => apps::validate_workload(object),
        ("batch", "jobs") => apps::validate_job(object),
        ("batch", "cronjobs") => apps::validate_cronjob(object),
        _ => Vec::new(),
    }
}

/// Whether objects of this type hold allocated values (cluster IPs, node ports).
pub fn allocates(rtype: &ResourceType) -> bool {
    rtype.group.is_empty() && rtype.resource == "services"
}

/// Store keys an object holds exclusively while it exists.
pub fn reservations(rtype: &ResourceType, object: &Value) -> Vec<String> {
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "services") => core::service_reservations(object),
        _ => Vec::new(),
    }
}

pub fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

pub fn invalid(field: &str, value: &Value, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: {value}: {why}"),
        field: field.into(),
    }
}

/// The IPv4 range of Service cluster IPs and the node port range.
pub fn default_ranges() -> ServiceRanges {
    ServiceRanges {
        network: Ipv4Addr::new(10, 43, 0, 0),
        bits: 16,
        node_ports: 30000..=32767,
    }
}
