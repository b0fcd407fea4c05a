//! core/v1 kinds: namespace and pod defaults (including what kube-apiserver's
//! default admission plugins add: QoS class, not-ready/unreachable tolerations),
//! pod spec validation, and Services: defaults, validation and the allocation of
//! cluster IPs and node ports, held as reservation keys in the store so no two
//! Services ever share one and none leaks when a Service goes.

use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use super::{invalid, required};
use crate::api::status::Cause;

const SERVICE_IPS: &str = "/registry/ranges/serviceips/";
const NODE_PORTS: &str = "/registry/ranges/servicenodeports/";
/// Where all reservation keys live (one read finds every taken IP and port).
pub const RESERVATIONS: &str = "/registry/ranges/";

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

pub fn namespace_defaults(object: &mut Value) {
    if !object["spec"]["finalizers"].is_array() {
        object["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    object["status"] = json!({"phase": "Active"});
    let name = object["metadata"]["name"].clone();
    if name.is_string() {
        object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container_defaults(container: &mut Value) {
    let image = container["image"].as_str().unwrap_or_default().to_string();
    set_default(container, "imagePullPolicy", json!(pull_policy(&image)));
    set_default(container, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(container, "terminationMessagePolicy", json!("File"));
    set_default(container, "resources", json!({}));
    if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
        }
    }
    // Requests default to limits.
    if let Some(limits) = container["resources"]["limits"].as_object().cloned() {
        for (k, v) in limits {
            if container["resources"]["requests"][&k].is_null() {
                container["resources"]["requests"][&k] = v;
            }
        }
    }
}

pub fn pod_spec_defaults(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    set_default(spec, "serviceAccountName", json!("default"));
    set_default(spec, "serviceAccount", spec["serviceAccountName"].clone());
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container_defaults);
        }
    }
    // DefaultTolerationSeconds admission: pods ride out a node outage for 300 s.
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let mut added = tolerations.clone();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        // A toleration of every key (empty key, `Exists`) covers it too.
        let covered = tolerations.iter().any(|t| {
            (t["key"] == key || t["key"].as_str().is_none_or(str::is_empty))
                && (t["effect"] == "NoExecute" || t["effect"].as_str().is_none_or(str::is_empty))
        });
        if !covered {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = json!(added);
}

/// The QoS class of a pod spec (BestEffort, Burstable or Guaranteed).
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec[*l].as_array())
        .flatten()
        .collect();
    let resources = |c: &Value, kind: &str, res: &str| c["resources"][kind][res].as_str().map(str::to_string);
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| c["resources"][*k].as_object().is_some_and(|m| !m.is_empty()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = resources(c, "limits", r);
            limit.is_some() && resources(c, "requests", r).is_none_or(|req| Some(req) == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

pub fn validate_pod_spec(spec: &Value, at: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(required(&format!("{at}.containers")));
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let field = format!("{at}.{list}[{i}]");
            match c["name"].as_str() {
                None | Some("") => causes.push(required(&format!("{field}.name"))),
                Some(name) if !names.insert(name.to_string()) => causes.push(Cause {
                    reason: "FieldValueDuplicate".into(),
                    message: format!("Duplicate value: \"{name}\""),
                    field: format!("{field}.name"),
                }),
                Some(_) => {}
            }
            if c["image"].as_str().is_none_or(str::is_empty) {
                causes.push(required(&format!("{field}.image")));
            }
        }
    }
    let policy = &spec["restartPolicy"];
    if !matches!(policy.as_str(), None | Some("Always" | "OnFailure" | "Never")) {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: {policy}: supported values: \"Always\", \"OnFailure\", \"Never\""),
            field: format!("{at}.restartPolicy"),
        });
    }
    causes
}

/// A new pod's status: Pending, with its QoS class.
pub fn pod_status_on_create(object: &mut Value) {
    let qos = qos_class(&object["spec"]);
    object["status"] = json!({"phase": "Pending", "qosClass": qos});
}

pub fn secret_defaults(object: &mut Value) {
    set_default(object, "type", json!("Opaque"));
}

pub fn service_defaults(object: &mut Value) {
    let spec = &mut object["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
            let number = port["port"].clone();
            set_default(port, "targetPort", number);
        }
    }
    object["status"] = json!({"loadBalancer": {}});
}

fn service_type(object: &Value) -> &str {
    object["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

pub fn validate_service(object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let spec = &object["spec"];
    let mut causes = Vec::new();
    let kind = service_type(object);
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: \"{kind}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ),
            field: "spec.type".into(),
        });
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(required("spec.ports"));
    }
    for (i, port) in ports.iter().enumerate() {
        if !port["port"].as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
            causes.push(invalid(
                &format!("spec.ports[{i}].port"),
                &port["port"],
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.len() > 1 && port["name"].as_str().is_none_or(str::is_empty) {
            causes.push(required(&format!("spec.ports[{i}].name")));
        }
    }
    if let Some(old) = old {
        let before = &old["spec"]["clusterIP"];
        if before.is_string() && !spec["clusterIP"].is_null() && spec["clusterIP"] != *before && kind != "ExternalName"
        {
            causes.push(invalid(
                "spec.clusterIPs[0]",
                &spec["clusterIP"],
                "may not change once set",
            ));
        }
    }
    causes
}

/// The Service range and node port range this cluster allocates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRanges {
    pub network: Ipv4Addr,
    pub bits: u8,
    pub node_ports: RangeInclusive<u16>,
}

impl ServiceRanges {
    /// The address of the `kubernetes` Service: the first of the range.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.bits);
        u32::from(ip) & mask == u32::from(self.network) && ip != self.network && ip != self.broadcast()
    }

    fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !(u32::MAX << (32 - self.bits)))
    }
}

pub fn service_reservations(object: &Value) -> Vec<String> {
    let spec = &object["spec"];
    let mut keys = Vec::new();
    if let Some(ip) = spec["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None") {
        keys.push(format!("{SERVICE_IPS}{ip}"));
    }
    for port in spec["ports"].as_array().into_iter().flatten() {
        if let Some(node_port) = port["nodePort"].as_i64() {
            let key = format!("{NODE_PORTS}{node_port}");
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// Fills in a Service's cluster IP and node ports: kept from `old` on updates,
/// given ones checked against `taken` (the reservation keys held by other
/// objects), missing ones picked at random among the free ones.
pub fn allocate_service(
    object: &mut Value,
    old: Option<&Value>,
    ranges: &ServiceRanges,
    taken: &HashSet<String>,
) -> Result<(), Vec<Cause>> {
    let kind = service_type(object).to_string();
    let spec = &mut object["spec"];
    let mut rng = rand::rng();
    if kind == "ExternalName" {
        if let Some(map) = spec.as_object_mut() {
            map.remove("clusterIP");
            map.remove("clusterIPs");
        }
        return Ok(());
    }
    if spec["clusterIP"].as_str().is_none_or(str::is_empty)
        && let Some(previous) = old.and_then(|o| o["spec"]["clusterIP"].as_str())
    {
        spec["clusterIP"] = json!(previous);
    }
    match spec["clusterIP"].as_str() {
        Some("None") => {}
        Some(ip) if !ip.is_empty() => {
            let parsed: Option<Ipv4Addr> = ip.parse().ok();
            let value = json!([ip]);
            match parsed {
                Some(addr) if ranges.contains(addr) => {
                    if taken.contains(&format!("{SERVICE_IPS}{ip}")) {
                        return Err(vec![invalid(
                            "spec.clusterIPs",
                            &value,
                            &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                        )]);
                    }
                }
                _ => {
                    return Err(vec![invalid(
                        "spec.clusterIPs",
                        &value,
                        &format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                            ranges.network, ranges.bits
                        ),
                    )]);
                }
            }
        }
        _ => {
            let size = 1u32 << (32 - ranges.bits);
            let base = u32::from(ranges.network);
            let free = (0..256)
                .map(|_| Ipv4Addr::from(base + rng.random_range(1..size - 1)))
                .find(|ip| !taken.contains(&format!("{SERVICE_IPS}{ip}")))
                .or_else(|| {
                    (1..size - 1)
                        .map(|i| Ipv4Addr::from(base + i))
                        .find(|ip| !taken.contains(&format!("{SERVICE_IPS}{ip}")))
                });
            match free {
                Some(ip) => spec["clusterIP"] = json!(ip.to_string()),
                None => return Err(vec![invalid("spec.clusterIPs", &Value::Null, "range is full")]),
            }
        }
    }
    spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);

    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    let mut mine = HashSet::new();
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, port) in ports.iter_mut().enumerate() {
        if !wants_node_ports {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
            continue;
        }
        if port["nodePort"].is_null()
            && let Some(previous) = old_ports
                .iter()
                .find(|p| p["port"] == port["port"] && p["protocol"] == port["protocol"])
                .and_then(|p| p["nodePort"].as_i64())
        {
            port["nodePort"] = json!(previous);
        }
        match port["nodePort"].as_i64() {
            Some(n) => {
                let key = format!("{NODE_PORTS}{n}");
                let in_range = u16::try_from(n).is_ok_and(|n| ranges.node_ports.contains(&n));
                if !in_range {
                    return Err(vec![invalid(
                        &format!("spec.ports[{i}].nodePort"),
                        &json!(n),
                        &format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            ranges.node_ports.start(),
                            ranges.node_ports.end()
                        ),
                    )]);
                }
                if taken.contains(&key) && !mine.contains(&key) {
                    return Err(vec![invalid(
                        &format!("spec.ports[{i}].nodePort"),
                        &json!(n),
                        "provided port is already allocated",
                    )]);
                }
                mine.insert(key);
            }
            None => {
                let (lo, hi) = (*ranges.node_ports.start(), *ranges.node_ports.end());
                let pick = (0..256).map(|_| rng.random_range(lo..=hi)).chain(lo..=hi).find(|p| {
                    let key = format!("{NODE_PORTS}{p}");
                    !taken.contains(&key) && !mine.contains(&key)
                });
                match pick {
                    Some(p) => {
                        mine.insert(format!("{NODE_PORTS}{p}"));
                        port["nodePort"] = json!(p);
                    }
                    None => {
                        return Err(vec![invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            &Value::Null,
                            "range is full",
                        )]);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> ServiceRanges {
        super::super::default_ranges()
    }

    #[test]
    fn pods_get_kube_apiserver_defaults() {
        let mut spec = json!({"containers": [{"name": "a", "image": "busybox", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        pod_spec_defaults(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        // DefaultTolerationSeconds leaves pods that tolerate everything alone.
        let mut tolerant = json!({"containers": [], "tolerations": [{"operator": "Exists"}]});
        pod_spec_defaults(&mut tolerant);
        assert_eq!(tolerant["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(qos_class(&spec), "Guaranteed");
        assert_eq!(pull_policy("registry:5000/app:1.2"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/app"), "Always");
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        assert!(
            spec.get("initContainers").is_none() && spec["containers"][0].get("ports").is_none(),
            "no nulls added"
        );
    }

    #[test]
    fn services_get_free_ips_and_ports() {
        let mut taken = HashSet::new();
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        allocate_service(&mut svc, None, &ranges(), &taken).unwrap();
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(ranges().contains(ip));
        let port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&port));
        taken.extend(service_reservations(&svc));
        assert_eq!(taken.len(), 2);

        let mut clash = json!({"spec": {"clusterIP": ip.to_string(), "ports": [{"port": 80}]}});
        assert!(allocate_service(&mut clash, None, &ranges(), &taken).is_err());
        let mut outside = json!({"spec": {"clusterIP": "192.168.1.1", "ports": [{"port": 80}]}});
        assert!(allocate_service(&mut outside, None, &ranges(), &taken).is_err());

        // An update keeps what the service holds.
        let mut update = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        let mine: HashSet<String> = HashSet::new();
        allocate_service(&mut update, Some(&svc), &ranges(), &mine).unwrap();
        assert_eq!(update["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
        assert_eq!(update["spec"]["ports"][0]["nodePort"], port);
    }
}
