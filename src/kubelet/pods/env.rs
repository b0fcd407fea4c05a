//! A container's environment, as `makeEnvironmentVariables` builds it: `envFrom`
//! (ConfigMaps and Secrets, with prefix), then `env` in order (`value` with `$(VAR)`
//! expansion, `valueFrom` fieldRef / resourceFieldRef / configMapKeyRef /
//! secretKeyRef, honouring `optional`), then the Service variables (`NAME_SERVICE_HOST`,
//! `NAME_PORT_…`) not already set. Also the `$(VAR)` expansion of command and args.
//!
//! Resolution is a pure function over objects fetched beforehand ([`Sources`]), so it
//! is tested without an API server.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};

use super::quantity;
use super::resources;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported container resource: {0}")]
    Resource(String),
    #[error("container {0:?} referenced by resourceFieldRef not found")]
    NoContainer(String),
}

/// The objects a pod's environment and volumes refer to, fetched beforehand.
/// `None` means "does not exist".
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    /// Services whose variables containers get (`kubernetes` in `default` and, with
    /// `enableServiceLinks`, those of the pod's namespace).
    pub services: Vec<Service>,
}

/// What the node knows about the pod that the pod object may not say yet.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub node_name: String,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// Node allocatable CPU (millicores) and memory (bytes): the value of a
    /// `limits.*` reference when the container sets no limit.
    pub node_cpu_milli: i64,
    pub node_memory: i64,
}

/// Names of ConfigMaps and Secrets a container's environment needs.
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            config_maps.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            config_maps.push(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    (config_maps, secrets)
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    secret.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

fn config_map_value(cm: &ConfigMap, key: &str) -> Option<String> {
    if let Some(v) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// The container's environment, in the order the kubelet builds it (later entries
/// of the same name replace earlier ones).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |vars: &mut Vec<(String, String)>, name: String, value: String| match index.get(&name) {
        Some(&i) => vars[i].1 = value,
        None => {
            index.insert(name.clone(), vars.len());
            vars.push((name, value));
        }
    };

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).and_then(Option::as_ref) {
                Some(cm) => {
                    let data: BTreeMap<_, _> = cm.data.clone().unwrap_or_default();
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).and_then(Option::as_ref) {
                Some(secret) => {
                    for (k, v) in secret.data.clone().unwrap_or_default() {
                        set(
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }

    let services = service_env(pod, &sources.services);
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, field, facts)?
            } else if let Some(res) = &from.resource_field_ref {
                resource_value(pod, container, res, facts)?
            } else if let Some(r) = &from.config_map_key_ref {
                let cm = sources.config_maps.get(&r.name).and_then(Option::as_ref);
                match (cm, cm.and_then(|cm| config_map_value(cm, &r.key))) {
                    (_, Some(v)) => v,
                    _ if r.optional == Some(true) => continue,
                    (None, _) => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                    (Some(_), None) => {
                        return Err(EnvError::ConfigMapKey {
                            key: r.key.clone(),
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let secret = sources.secrets.get(&r.name).and_then(Option::as_ref);
                match (secret, secret.and_then(|s| secret_value(s, &r.key))) {
                    (_, Some(v)) => v,
                    _ if r.optional == Some(true) => continue,
                    (None, _) => return Err(EnvError::SecretNotFound(r.name.clone())),
                    (Some(_), None) => {
                        return Err(EnvError::SecretKey {
                            key: r.key.clone(),
                            namespace: namespace.clone(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            let known: HashMap<&str, &str> = vars
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(services.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .collect();
            expand(var.value.as_deref().unwrap_or_default(), &|name| {
                known.get(name).map(|v| v.to_string())
            })
        };
        set(&mut vars, var.name.clone(), value);
    }

    for (k, v) in services {
        if !vars.iter().any(|(name, _)| *name == k) {
            vars.push((k, v));
        }
    }
    Ok(vars)
}

/// `fieldRef` values (`ExtractFieldPathAsString` plus the kubelet's own fields).
pub fn field_value(pod: &Pod, field: &ObjectFieldSelector, facts: &PodFacts) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => facts.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => facts.host_ips.join(","),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        _ => {
            if let Some(key) = subscript("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath(path.to_string()));
            }
        }
    })
}

/// Labels and annotations as the downward API writes them: `key="value"` lines,
/// sorted, values quoted like Go's `%q`.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `resourceFieldRef` values: the container's (or another named container's)
/// requests and limits, divided by the divisor and rounded up; an unset limit is the
/// node's allocatable.
pub fn resource_value(
    pod: &Pod,
    container: &Container,
    field: &ResourceFieldSelector,
    facts: &PodFacts,
) -> Result<String, EnvError> {
    let target = match field.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) if name != container.name => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| EnvError::NoContainer(name.to_string()))?,
        _ => container,
    };
    container_resource_value(target, &field.resource, field.divisor.as_ref(), facts)
}

pub fn container_resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    facts: &PodFacts,
) -> Result<String, EnvError> {
    let r = container.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(resource.to_string()))?;
    let map = match kind {
        "limits" => resources::limits(r),
        "requests" => resources::requests(r),
        _ => return Err(EnvError::Resource(resource.to_string())),
    };
    let divisor = divisor.and_then(|d| quantity::parse(&d.0)).filter(|d| *d > 0.0);
    let value: f64 = match name {
        "cpu" => {
            let milli = map.get("cpu").and_then(quantity::milli).unwrap_or(match kind {
                "limits" => facts.node_cpu_milli,
                _ => 0,
            });
            milli as f64 / 1000.0
        }
        "memory" | "ephemeral-storage" => map.get(name).and_then(quantity::value).unwrap_or(match kind {
            "limits" if name == "memory" => facts.node_memory,
            _ => 0,
        }) as f64,
        _ if name.starts_with("hugepages-") => map.get(name).and_then(quantity::value).unwrap_or(0) as f64,
        _ => return Err(EnvError::Resource(resource.to_string())),
    };
    let divisor = divisor.unwrap_or(1.0);
    Ok(format!("{}", (value / divisor - 1e-9).ceil().max(0.0) as i64))
}

/// Expands `$(VAR)` references the way Kubernetes does: a defined variable is
/// replaced, an undefined one is left as written, `$$` is a literal `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[start..i]);
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        i += end + 3;
                    }
                    None => {
                        out.push_str(&input[i..]);
                        i = bytes.len();
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
            start = i;
        } else {
            i += 1;
        }
    }
    if start < input.len() {
        out.push_str(&input[start..]);
    }
    out
}

/// The Service link variables (`envvars.FromServices`).
pub fn service_env(pod: &Pod, services: &[Service]) -> Vec<(String, String)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let is_master = ns == "default" && name == "kubernetes";
        if (links && ns == namespace) || is_master {
            // The pod's own namespace wins over `default` for the same name.
            if ns == namespace || !chosen.contains_key(&name) {
                chosen.insert(name, svc);
            }
        }
    }
    let mut out = Vec::new();
    for (name, svc) in chosen {
        let Some(spec) = &svc.spec else { continue };
        let ip = match spec.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() && ip != "None" => ip,
            _ => continue,
        };
        let Some(ports) = spec.ports.as_ref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let prefix = name.to_uppercase().replace('-', "_");
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()));
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_uppercase().replace('-', "_");
                out.push((format!("{prefix}_SERVICE_PORT_{port_name}"), p.port.to_string()));
            }
        }
        let first = &ports[0];
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let protocol = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
            out.push((base.clone(), format!("{}://{ip}:{}", protocol.to_lowercase(), p.port)));
            out.push((format!("{base}_PROTO"), protocol.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("1".into()),
            "B" => Some("two".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("x$(A)y", &lookup), "x1y");
        assert_eq!(expand("$(A)$(B)", &lookup), "1two");
        assert_eq!(expand("$(C)", &lookup), "$(C)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("a$b", &lookup), "a$b");
        assert_eq!(expand("cost $", &lookup), "cost $");
        assert_eq!(expand("é$(A)ü", &lookup), "é1ü");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{
                "name": "c",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                            {"secretRef": {"name": "missing", "optional": true}}],
                "env": [
                    {"name": "PLAIN", "value": "v"},
                    {"name": "REF", "value": "$(PLAIN)-$(CM_k)-$(NOPE)"},
                    {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                    {"name": "CPULIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "absent", "optional": true}}},
                    {"name": "CM_k", "value": "override"}
                ]
            }]}
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "cmv"}})).unwrap();
        let s: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}})).unwrap();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}
        }))
        .unwrap();
        Sources {
            config_maps: [("cm".to_string(), Some(cm))].into(),
            secrets: [("s".to_string(), Some(s)), ("missing".to_string(), None)].into(),
            services: vec![svc],
        }
    }

    #[test]
    fn resolves_every_source() {
        let pod = pod();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let facts = PodFacts {
            node_name: "n1".into(),
            pod_ips: vec!["10.42.0.5".into()],
            host_ips: vec!["192.168.1.2".into()],
            node_cpu_milli: 2000,
            node_memory: 1 << 30,
        };
        let env: HashMap<String, String> = resolve(&pod, c, &sources(), &facts).unwrap().into_iter().collect();
        assert_eq!(env["CM_k"], "override");
        assert_eq!(env["REF"], "v-cmv-$(NOPE)");
        assert_eq!(env["NAME"], "p");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["NODE"], "n1");
        assert_eq!(env["IP"], "10.42.0.5");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CPU"], "250");
        assert_eq!(env["CPULIM"], "2");
        assert_eq!(env["PASS"], "hunter2");
        assert!(!env.contains_key("OPT"));
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.43.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.43.0.1");
    }

    #[test]
    fn missing_sources_are_errors() {
        let pod = pod();
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let mut s = sources();
        s.secrets.insert("s".into(), None);
        assert_eq!(
            resolve(&pod, c, &s, &PodFacts::default()),
            Err(EnvError::SecretNotFound("s".into()))
        );
        let mut s = sources();
        s.config_maps.insert("cm".into(), None);
        assert_eq!(
            resolve(&pod, c, &s, &PodFacts::default()),
            Err(EnvError::ConfigMapNotFound("cm".into()))
        );
        assert_eq!(references(c).0, vec!["cm", "cm"]);
    }

    #[test]
    fn downward_maps() {
        let m: BTreeMap<String, String> = [("b".to_string(), "x\"y".to_string()), ("a".into(), "1".into())].into();
        assert_eq!(format_map(Some(&m)), "a=\"1\"\nb=\"x\\\"y\"");
    }
}
