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

/// A representation other than the object itself that the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `as=Table`, rows carrying what `includeObject` says.
    Table(Form),
    /// `as=PartialObjectMetadata(List)`: metadata only (metadata informers, GC).
    Metadata,
}

/// The view the `Accept` header asks for (`application/json;as=Table;g=meta.k8s.io;v=v1`
/// and the like), first acceptable choice first; `None` for plain objects.
pub fn requested(headers: &HeaderMap, include: Option<&str>) -> Result<Option<View>, Status> {
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
        let meta_v1 = params.contains(&"g=meta.k8s.io") && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"));
        if !meta_v1 {
            if params
                .first()
                .is_some_and(|m| matches!(*m, "application/json" | "*/*" | "application/*"))
            {
                return Ok(None);
            }
            continue;
        }
        if params.contains(&"as=Table") {
            return Ok(Some(View::Table(form)));
        }
        if params.contains(&"as=PartialObjectMetadata") || params.contains(&"as=PartialObjectMetadataList") {
            return Ok(Some(View::Metadata));
        }
    }
    Ok(None)
}

/// An object reduced to its metadata.
pub fn partial(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// One column: its definition and how a row's cell is computed.
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: i64,
    description: &'static str,
    cell: fn(&Value) -> Value,
}

/// An event's "Last Seen" as kubectl prints it (`printEvent`): the age of its last
/// occurrence and, for a repeated one, `(x3 over 5m)` since the first.
fn event_last_seen(o: &Value) -> String {
    let first = o["firstTimestamp"].as_str().or(o["eventTime"].as_str());
    let (last, count) = match o.get("series").filter(|s| s.is_object()) {
        Some(series) => (
            series["lastObservedTime"].as_str(),
            series["count"].as_i64().unwrap_or(1),
        ),
        None => (o["lastTimestamp"].as_str().or(first), o["count"].as_i64().unwrap_or(1)),
    };
    let last = time::age(last);
    if count > 1 {
        format!("{last} (x{count} over {})", time::age(first))
    } else {
        last
    }
}

const fn col(name: &'static str, priority: i64, cell: fn(&Value) -> Value) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority,
        description: "",
        cell,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
    cell: |o| json!(str_at(o, "/metadata/name")),
};
const AGE: Column = Column {
    name: "Age",
    kind: "string",
    format: "",
    priority: 0,
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    cell: |o| {
        json!(time::age(
            o.pointer("/metadata/creationTimestamp").and_then(Value::as_str)
        ))
    },
};
const CREATED_AT: Column = Column {
    name: "Created At",
    kind: "date",
    format: "",
    priority: 0,
    description: "Creation time",
    cell: |o| o["metadata"]["creationTimestamp"].clone(),
};

fn str_at<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn int_at(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn len_at(o: &Value, pointer: &str) -> usize {
    match o.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn or_none(s: String) -> Value {
    json!(if s.is_empty() { "<none>".to_string() } else { s })
}

/// `a=b,c=d` of a label map (selectors, node selectors).
fn pairs(o: &Value, pointer: &str) -> String {
    o.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn template_field(o: &Value, field: &str) -> Value {
    let containers = o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    json!(
        containers
            .iter()
            .map(|c| c[field].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    )
}

const CONTAINERS: Column = col("Containers", 1, |o| template_field(o, "name"));
const IMAGES: Column = col("Images", 1, |o| template_field(o, "image"));
const SELECTOR: Column = col("Selector", 1, |o| or_none(pairs(o, "/spec/selector/matchLabels")));

/// Pod STATUS: the waiting/terminated reason of a container, else the phase.
fn pod_status(o: &Value) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array);
    for s in statuses.into_iter().flatten() {
        for state in ["waiting", "terminated"] {
            if let Some(reason) = s["state"][state]["reason"].as_str() {
                return json!(reason);
            }
        }
    }
    json!(
        o.pointer("/status/reason")
            .and_then(Value::as_str)
            .unwrap_or(str_at(o, "/status/phase"))
    )
}

fn pod_ready(o: &Value) -> Value {
    let total = len_at(o, "/spec/containers");
    let ready = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(o: &Value) -> Value {
    let restarts: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).sum());
    json!(restarts.to_string())
}

fn service_ports(o: &Value) -> Value {
    let ports = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text: Vec<String> = ports
        .iter()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node) => format!("{}:{node}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    or_none(text.join(","))
}

fn external_ip(o: &Value) -> Value {
    let mut ips: Vec<String> = o
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(ingress) = o.pointer("/status/loadBalancer/ingress").and_then(Value::as_array) {
        ips.extend(
            ingress
                .iter()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(str::to_string)),
        );
    }
    match (ips.is_empty(), str_at(o, "/spec/type")) {
        (true, "LoadBalancer") => json!("<pending>"),
        (true, "ExternalName") => json!(str_at(o, "/spec/externalName")),
        _ => or_none(ips.join(",")),
    }
}

fn node_status(o: &Value) -> Value {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"].as_str().unwrap_or_default().to_string());
    let mut status = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn node_roles(o: &Value) -> Value {
    let roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    or_none(roles.join(","))
}

fn node_address(o: &Value, kind: &str) -> Value {
    let address = o
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == kind))
        .and_then(|a| a["address"].as_str());
    json!(address.unwrap_or("<none>"))
}

fn job_status(o: &Value) -> Value {
    let conditions = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
    json!(if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else {
        "Running"
    })
}

type Cells = Vec<Box<dyn Fn(&Value) -> Value>>;

/// A CRD's `additionalPrinterColumns`, after the Name column kube-apiserver adds.
fn printer_columns(columns: &[Value]) -> (Vec<Value>, Cells) {
    let mut definitions = vec![
        json!({"name": NAME.name, "type": "string", "format": "name", "description": NAME.description, "priority": 0}),
    ];
    let mut cells: Cells = vec![Box::new(NAME.cell)];
    for c in columns {
        let kind = c["type"].as_str().unwrap_or("string").to_string();
        definitions.push(json!({
            "name": c["name"], "type": kind, "format": c["format"].as_str().unwrap_or(""),
            "description": c["description"].as_str().unwrap_or(""), "priority": c["priority"].as_i64().unwrap_or(0),
        }));
        let pointer = json_path_pointer(c["jsonPath"].as_str().unwrap_or(""));
        cells.push(Box::new(move |o: &Value| {
            let value = pointer
                .as_deref()
                .and_then(|p| o.pointer(p))
                .cloned()
                .unwrap_or(Value::Null);
            match (kind.as_str(), &value) {
                ("date", Value::String(t)) => json!(time::age(Some(t))),
                (_, Value::Null) => Value::Null,
                _ => value,
            }
        }));
    }
    (definitions, cells)
}

/// `.spec.items[0].name` → `/spec/items/0/name` (the simple JSONPath that
/// printer columns use); `None` for expressions beyond that.
fn json_path_pointer(path: &str) -> Option<String> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = path.strip_prefix('.')?;
    let mut pointer = String::new();
    for part in path.split('.') {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        if name.is_empty() {
            return None;
        }
        pointer.push('/');
        pointer.push_str(name);
        if !rest.is_empty() {
            let index = rest.strip_suffix(']')?;
            index.parse::<usize>().ok()?;
            pointer.push('/');
            pointer.push_str(index);
        }
    }
    Some(pointer)
}

/// The columns kubectl shows for a resource (k8s.io/kubernetes printers.go).
fn columns(rtype: &ResourceType) -> Vec<Column> {
    match (rtype.group.as_str(), rtype.resource.as_str()) {
        ("", "namespaces") => vec![NAME, col("Status", 0, |o| json!(str_at(o, "/status/phase"))), AGE],
        ("", "configmaps") => vec![
            NAME,
            col("Data", 0, |o| json!(len_at(o, "/data") + len_at(o, "/binaryData"))),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            col("Type", 0, |o| json!(o["type"].as_str().unwrap_or("Opaque"))),
            col("Data", 0, |o| json!(len_at(o, "/data"))),
            AGE,
        ],
        ("", "serviceaccounts") => vec![NAME, col("Secrets", 0, |o| json!(len_at(o, "/secrets"))), AGE],
        ("", "pods") => vec![
            NAME,
            col("Ready", 0, pod_ready),
            col("Status", 0, pod_status),
            col("Restarts", 0, pod_restarts),
            AGE,
            col("IP", 1, |o| {
                json!(o.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("<none>"))
            }),
            col("Node", 1, |o| {
                json!(o.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("<none>"))
            }),
            col("Nominated Node", 1, |o| {
                json!(
                    o.pointer("/status/nominatedNodeName")
                        .and_then(Value::as_str)
                        .unwrap_or("<none>")
                )
            }),
            col("Readiness Gates", 1, |o| {
                json!(if len_at(o, "/spec/readinessGates") == 0 {
                    "<none>".to_string()
                } else {
                    len_at(o, "/spec/readinessGates").to_string()
                })
            }),
        ],
        ("", "services") => vec![
            NAME,
            col("Type", 0, |o| {
                json!(o.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP"))
            }),
            col("Cluster-IP", 0, |o| or_none(str_at(o, "/spec/clusterIP").to_string())),
            col("External-IP", 0, external_ip),
            col("Port(s)", 0, service_ports),
            AGE,
            col("Selector", 1, |o| or_none(pairs(o, "/spec/selector"))),
        ],
        ("", "nodes") => vec![
            NAME,
            col("Status", 0, node_status),
            col("Roles", 0, node_roles),
            AGE,
            col("Version", 0, |o| json!(str_at(o, "/status/nodeInfo/kubeletVersion"))),
            col("Internal-IP", 1, |o| node_address(o, "InternalIP")),
            col("External-IP", 1, |o| node_address(o, "ExternalIP")),
            col("OS-Image", 1, |o| json!(str_at(o, "/status/nodeInfo/osImage"))),
            col("Kernel-Version", 1, |o| {
                json!(str_at(o, "/status/nodeInfo/kernelVersion"))
            }),
            col("Container-Runtime", 1, |o| {
                json!(str_at(o, "/status/nodeInfo/containerRuntimeVersion"))
            }),
        ],
        ("", "endpoints") => vec![
            NAME,
            col("Endpoints", 0, |o| {
                let subsets = o["subsets"].as_array().cloned().unwrap_or_default();
                let mut list = Vec::new();
                for s in &subsets {
                    for a in s["addresses"].as_array().into_iter().flatten() {
                        for p in s["ports"].as_array().into_iter().flatten() {
                            list.push(format!("{}:{}", a["ip"].as_str().unwrap_or_default(), p["port"]));
                        }
                    }
                }
                or_none(list.join(","))
            }),
            AGE,
        ],
        ("", "events") => vec![
            col("Last Seen", 0, |o| json!(event_last_seen(o))),
            col("Type", 0, |o| json!(str_at(o, "/type"))),
            col("Reason", 0, |o| json!(str_at(o, "/reason"))),
            col("Object", 0, |o| {
                json!(format!(
                    "{}/{}",
                    str_at(o, "/involvedObject/kind").to_lowercase(),
                    str_at(o, "/involvedObject/name")
                ))
            }),
            col("Message", 0, |o| json!(str_at(o, "/message"))),
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            col("Status", 0, |o| json!(str_at(o, "/status/phase"))),
            col("Volume", 0, |o| json!(str_at(o, "/spec/volumeName"))),
            col("Capacity", 0, |o| json!(str_at(o, "/status/capacity/storage"))),
            col("Storage Class", 0, |o| json!(str_at(o, "/spec/storageClassName"))),
            AGE,
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            col("Capacity", 0, |o| json!(str_at(o, "/spec/capacity/storage"))),
            col("Reclaim Policy", 0, |o| {
                json!(str_at(o, "/spec/persistentVolumeReclaimPolicy"))
            }),
            col("Status", 0, |o| json!(str_at(o, "/status/phase"))),
            AGE,
        ],
        ("apps", "deployments") => vec![
            NAME,
            col("Ready", 0, |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }),
            col("Up-to-date", 0, |o| json!(int_at(o, "/status/updatedReplicas"))),
            col("Available", 0, |o| json!(int_at(o, "/status/availableReplicas"))),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "replicasets") | ("", "replicationcontrollers") => vec![
            NAME,
            col("Desired", 0, |o| json!(int_at(o, "/spec/replicas"))),
            col("Current", 0, |o| json!(int_at(o, "/status/replicas"))),
            col("Ready", 0, |o| json!(int_at(o, "/status/readyReplicas"))),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            col("Ready", 0, |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            col("Desired", 0, |o| json!(int_at(o, "/status/desiredNumberScheduled"))),
            col("Current", 0, |o| json!(int_at(o, "/status/currentNumberScheduled"))),
            col("Ready", 0, |o| json!(int_at(o, "/status/numberReady"))),
            col("Up-to-date", 0, |o| json!(int_at(o, "/status/updatedNumberScheduled"))),
            col("Available", 0, |o| json!(int_at(o, "/status/numberAvailable"))),
            col("Node Selector", 0, |o| {
                or_none(pairs(o, "/spec/template/spec/nodeSelector"))
            }),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "jobs") => vec![
            NAME,
            col("Status", 0, job_status),
            col("Completions", 0, |o| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "/status/succeeded"),
                    o.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1)
                ))
            }),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("batch", "cronjobs") => vec![
            NAME,
            col("Schedule", 0, |o| json!(str_at(o, "/spec/schedule"))),
            col("Timezone", 0, |o| or_none(str_at(o, "/spec/timeZone").to_string())),
            col("Suspend", 0, |o| {
                json!(if o.pointer("/spec/suspend") == Some(&json!(true)) {
                    "True"
                } else {
                    "False"
                })
            }),
            col("Active", 0, |o| json!(len_at(o, "/status/active"))),
            col("Last Schedule", 0, |o| {
                json!(
                    o.pointer("/status/lastScheduleTime")
                        .and_then(Value::as_str)
                        .map_or("<none>".to_string(), |t| time::age(Some(t)))
                )
            }),
            AGE,
        ],
        ("coordination.k8s.io", "leases") => {
            vec![
                NAME,
                col("Holder", 0, |o| json!(str_at(o, "/spec/holderIdentity"))),
                AGE,
            ]
        }
        (_, "customresourcedefinitions") => vec![NAME, CREATED_AT],
        _ => vec![NAME, AGE],
    }
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn render(rtype: &ResourceType, objects: &[Value], list_meta: Option<Value>, form: Form) -> Value {
    let (definitions, cells) = match rtype.custom.as_ref().filter(|c| !c.printer_columns.is_empty()) {
        Some(custom) => printer_columns(&custom.printer_columns),
        None => {
            let columns = columns(rtype);
            let definitions = columns
                .iter()
                .map(|c| {
                    json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority})
                })
                .collect();
            let cells: Cells = columns
                .into_iter()
                .map(|c| Box::new(c.cell) as Box<dyn Fn(&Value) -> Value>)
                .collect();
            (definitions, cells)
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = cells.iter().map(|cell| cell(object)).collect();
            let mut row = json!({"cells": cells});
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::Registry;

    fn row(group: &str, resource: &str, object: Value) -> Vec<Value> {
        let registry = Registry::builtin();
        let rtype = registry.get(group, "v1", resource).unwrap();
        render(rtype, &[object], None, Form::Nothing)["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn pods_services_and_deployments_like_kubectl() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let cells = row("", "pods", pod);
        assert_eq!(
            &cells[..4],
            &[json!("p"), json!("1/2"), json!("CrashLoopBackOff"), json!("3")]
        );
        assert_eq!(&cells[5..7], &[json!("10.42.0.5"), json!("n1")]);
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.43.0.9",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}});
        let cells = row("", "services", svc);
        assert_eq!(
            &cells[..5],
            &[
                json!("s"),
                json!("NodePort"),
                json!("10.43.0.9"),
                json!("<none>"),
                json!("80:30080/TCP")
            ]
        );
        assert_eq!(cells[6], json!("app=web"));
        let deploy = json!({"metadata": {"name": "d"}, "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let cells = row("apps", "deployments", deploy);
        assert_eq!(&cells[..4], &[json!("d"), json!("2/3"), json!(3), json!(2)]);
        assert_eq!(&cells[5..7], &[json!("app"), json!("busybox")]);
    }

    #[test]
    fn repeated_events_show_their_count() {
        let now = time::format_rfc3339(time::now_seconds());
        let earlier = time::format_rfc3339(time::now_seconds() - 300);
        let single = json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m", "eventTime": earlier});
        assert_eq!(row("", "events", single)[0], json!("5m"));
        let series = json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "FailedScheduling",
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m", "eventTime": earlier,
            "count": 3, "series": {"count": 4, "lastObservedTime": now}});
        let cells = row("", "events", series);
        assert_eq!(
            &cells[..4],
            &[
                json!("0s (x4 over 5m)"),
                json!("Warning"),
                json!("FailedScheduling"),
                json!("pod/p")
            ]
        );
    }
}
