//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send (`kubectl create deployment`, `create secret`,
//! the eviction of `kubectl drain`, ...), turned into the JSON object the same client
//! would have sent as `application/json`.
//!
//! The body is the magic `k8s\0` and a `runtime.Unknown` { typeMeta = 1 {apiVersion = 1,
//! kind = 2}, raw = 2, contentEncoding = 3, contentType = 4 }; `raw` is the object's
//! own message (without apiVersion and kind), read with the field tables of
//! `schema`/`types`. Fields we have no row for are skipped (a newer client may send
//! them); malformed input is an error.

pub mod schema;
pub mod types;
pub mod wire;

use base64::Engine;
use serde_json::{Map, Value};

use schema::{Field, Kind, Message, Shape};
use types::{apps_v1, batch_v1, core_v1, meta_v1, networking_v1, policy_v1, rbac_v1, scheduling_v1};
use wire::Reader;

/// What every protobuf-encoded Kubernetes object starts with.
pub const MAGIC: &[u8; 4] = b"k8s\x00";

/// The media type of the encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The kinds we can read, by apiVersion and kind. An empty apiVersion matches any:
/// `DeleteOptions` is registered in every group version.
static KINDS: &[(&str, &str, &Message)] = &[
    ("v1", "ConfigMap", &core_v1::CONFIG_MAP),
    ("v1", "Event", &core_v1::EVENT),
    ("v1", "Namespace", &core_v1::NAMESPACE),
    ("v1", "Pod", &core_v1::POD),
    ("v1", "ReplicationController", &core_v1::REPLICATION_CONTROLLER),
    ("v1", "ResourceQuota", &core_v1::RESOURCE_QUOTA),
    ("v1", "Secret", &core_v1::SECRET),
    ("v1", "Service", &core_v1::SERVICE),
    ("v1", "ServiceAccount", &core_v1::SERVICE_ACCOUNT),
    ("apps/v1", "ControllerRevision", &apps_v1::CONTROLLER_REVISION),
    ("apps/v1", "DaemonSet", &apps_v1::DAEMON_SET),
    ("apps/v1", "Deployment", &apps_v1::DEPLOYMENT),
    ("apps/v1", "ReplicaSet", &apps_v1::REPLICA_SET),
    ("apps/v1", "StatefulSet", &apps_v1::STATEFUL_SET),
    ("batch/v1", "CronJob", &batch_v1::CRON_JOB),
    ("batch/v1", "Job", &batch_v1::JOB),
    ("networking.k8s.io/v1", "Ingress", &networking_v1::INGRESS),
    ("policy/v1", "Eviction", &policy_v1::EVICTION),
    ("policy/v1", "PodDisruptionBudget", &policy_v1::POD_DISRUPTION_BUDGET),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &rbac_v1::CLUSTER_ROLE),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &rbac_v1::CLUSTER_ROLE_BINDING,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", &rbac_v1::ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &rbac_v1::ROLE_BINDING),
    ("scheduling.k8s.io/v1", "PriorityClass", &scheduling_v1::PRIORITY_CLASS),
    ("", "DeleteOptions", &meta_v1::DELETE_OPTIONS),
];

/// The message type of `kind` in `api_version`, if we have its table.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    KINDS
        .iter()
        .find(|(v, k, _)| *k == kind && (v.is_empty() || *v == api_version))
        .map(|(_, _, m)| *m)
}

/// Objects nest deeper than this only in malicious input.
const MAX_DEPTH: usize = 64;

/// A protobuf request body as the JSON object the client would have sent.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    decode_object(body, 0)
}

fn decode_object(body: &[u8], depth: usize) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the magic k8s\\x00")?;
    let envelope = Envelope::read(unknown).map_err(|e| format!("error decoding protobuf envelope: {e}"))?;
    if !envelope.content_encoding.is_empty() {
        return Err(format!(
            "unsupported protobuf content encoding {:?}",
            envelope.content_encoding
        ));
    }
    let (api_version, kind) = (envelope.api_version, envelope.kind);
    if kind.is_empty() {
        return Err("the protobuf body has no kind".into());
    }
    let fields = match envelope.content_type.as_str() {
        "" | MEDIA_TYPE => {
            let message = message_for(&api_version, &kind)
                .ok_or_else(|| format!("cannot decode {kind} ({api_version}) from protobuf; send it as JSON"))?;
            let mut fields = Map::new();
            merge_message(envelope.raw, message, depth, &mut fields).map_err(|e| {
                let e = e.strip_prefix('.').unwrap_or(&e);
                format!("error decoding {kind} from protobuf: {e}")
            })?;
            fields
        }
        "application/json" => match serde_json::from_slice(envelope.raw) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err("the embedded JSON is not an object".into()),
            Err(e) => return Err(format!("error decoding the embedded JSON: {e}")),
        },
        other => return Err(format!("unsupported embedded content type {other:?}")),
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// `runtime.Unknown`.
#[derive(Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn read(buf: &'a [u8]) -> Result<Envelope<'a>, String> {
        let mut envelope = Envelope::default();
        let mut r = Reader::new(buf);
        while let Some((number, value)) = r.field()? {
            match number {
                1 => {
                    let mut tm = Reader::new(bytes(value, "typeMeta")?);
                    while let Some((number, value)) = tm.field()? {
                        match number {
                            1 => envelope.api_version = string(value, "apiVersion")?,
                            2 => envelope.kind = string(value, "kind")?,
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = bytes(value, "raw")?,
                3 => envelope.content_encoding = string(value, "contentEncoding")?,
                4 => envelope.content_type = string(value, "contentType")?,
                _ => {}
            }
        }
        Ok(envelope)
    }
}

fn bytes<'a>(value: wire::Value<'a>, what: &str) -> Result<&'a [u8], String> {
    match value {
        wire::Value::Bytes(b) => Ok(b),
        other => Err(format!("expected {what} (length-delimited), got {}", other.wire_name())),
    }
}

fn string(value: wire::Value<'_>, what: &str) -> Result<String, String> {
    // Go does not check UTF-8 when it reads proto2 strings; its JSON encoder then
    // writes U+FFFD for invalid sequences, as this does.
    Ok(String::from_utf8_lossy(bytes(value, what)?).into_owned())
}

fn varint(value: wire::Value<'_>, what: &str) -> Result<u64, String> {
    match value {
        wire::Value::Varint(v) => Ok(v),
        other => Err(format!("expected {what} (varint), got {}", other.wire_name())),
    }
}

/// An error under path segment `segment` (".spec", "[2]"), so that the final
/// message names the field it happened in: ".spec.template.spec.containers[0]: ...".
fn under(segment: String, e: String) -> String {
    if e.starts_with('.') || e.starts_with('[') {
        segment + &e
    } else {
        format!("{segment}: {e}")
    }
}

/// Reads `buf` as `message` into `object` (protobuf merge semantics: a repeated
/// singular message merges, a repeated scalar's last value wins).
fn merge_message(
    buf: &[u8],
    message: &'static Message,
    depth: usize,
    object: &mut Map<String, Value>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{} nested too deeply", message.name));
    }
    let mut r = Reader::new(buf);
    while let Some((number, value)) = r.field()? {
        let Some(field) = message.field(number) else {
            continue; // a field newer than our table: skipped
        };
        merge_field(field, value, depth, object).map_err(|e| match field.shape {
            Shape::Inline => e,
            _ => under(format!(".{}", field.name), e),
        })?;
    }
    Ok(())
}

fn merge_field(
    field: &Field,
    value: wire::Value<'_>,
    depth: usize,
    object: &mut Map<String, Value>,
) -> Result<(), String> {
    match field.shape {
        Shape::Inline => {
            let Kind::Msg(message) = field.kind else {
                return Err("an inline field must be a message".into());
            };
            merge_message(bytes(value, message.name)?, message, depth + 1, object)
        }
        Shape::One => match field.kind {
            Kind::Msg(message) => {
                let inner = object_at(object, field.name);
                merge_message(bytes(value, message.name)?, message, depth + 1, inner)
            }
            kind => {
                match element(kind, value, depth)? {
                    Some(v) if !(field.omit_empty && is_zero(&v)) => object.insert(field.name.into(), v),
                    _ => object.remove(field.name),
                };
                Ok(())
            }
        },
        Shape::Repeated => {
            let items = array_at(object, field.name);
            match value {
                // Packed repeated scalars: a run of varints.
                wire::Value::Bytes(packed) if field.kind.is_varint() => {
                    let mut r = Reader::new(packed);
                    while !r.at_end() {
                        items.push(scalar(field.kind, r.varint()?));
                    }
                }
                value => {
                    let i = items.len();
                    let item = element(field.kind, value, depth).map_err(|e| under(format!("[{i}]"), e))?;
                    items.push(item.unwrap_or(Value::Null));
                }
            }
            Ok(())
        }
        Shape::Map => {
            let (key, v) = map_entry(field.kind, bytes(value, "map entry")?, depth)?;
            object_at(object, field.name).insert(key, v);
            Ok(())
        }
    }
}

/// The object under `name`, made (or made an object) if need be.
fn object_at<'m>(object: &'m mut Map<String, Value>, name: &str) -> &'m mut Map<String, Value> {
    let slot = object.entry(name).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object above"),
    }
}

/// The array under `name`, made if need be.
fn array_at<'m>(object: &'m mut Map<String, Value>, name: &str) -> &'m mut Vec<Value> {
    let slot = object.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("made an array above"),
    }
}

/// One entry of a `map<string, kind>`: { key = 1, value = 2 }.
fn map_entry(kind: Kind, buf: &[u8], depth: usize) -> Result<(String, Value), String> {
    let (mut key, mut val) = (String::new(), None);
    let mut r = Reader::new(buf);
    while let Some((number, value)) = r.field()? {
        match number {
            1 => key = string(value, "map key")?,
            2 => val = Some(element(kind, value, depth).map_err(|e| under(format!("[{key:?}]"), e))?),
            _ => {}
        }
    }
    Ok((key, val.map_or_else(|| zero(kind), |v| v.unwrap_or(Value::Null))))
}

/// What Go's JSON writes for a zero value of `kind` (a map entry without a value).
fn zero(kind: Kind) -> Value {
    match kind {
        Kind::Str | Kind::Bytes => Value::String(String::new()),
        Kind::I32 | Kind::I64 | Kind::IntOrString => Value::from(0),
        Kind::Bool => Value::Bool(false),
        Kind::Msg(_) => Value::Object(Map::new()),
        Kind::Quantity => Value::String("0".into()),
        Kind::Duration => Value::String("0s".into()),
        Kind::Time | Kind::MicroTime | Kind::Raw | Kind::FieldsV1 => Value::Null,
    }
}

/// A varint as `kind` (one of the varint kinds; anything else is read as int64).
fn scalar(kind: Kind, v: u64) -> Value {
    match kind {
        Kind::I32 => Value::from(v as u32 as i32), // Go keeps the low 32 bits
        Kind::Bool => Value::Bool(v != 0),
        _ => Value::from(v as i64),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// One value of `kind`; `None` for what JSON writes as `null` (the zero time, an
/// empty RawExtension).
fn element(kind: Kind, value: wire::Value<'_>, depth: usize) -> Result<Option<Value>, String> {
    let v = match kind {
        Kind::Str => Value::String(string(value, "string")?),
        Kind::I32 => scalar(kind, varint(value, "int32")?),
        Kind::I64 => scalar(kind, varint(value, "int64")?),
        Kind::Bool => scalar(kind, varint(value, "bool")?),
        Kind::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes(value, "bytes")?)),
        Kind::Msg(message) => {
            let mut object = Map::new();
            merge_message(bytes(value, message.name)?, message, depth + 1, &mut object)?;
            Value::Object(object)
        }
        Kind::Time | Kind::MicroTime => return time(bytes(value, "time")?, matches!(kind, Kind::MicroTime)),
        Kind::Duration => {
            let mut nanos = 0i64;
            each(bytes(value, "duration")?, |n, v| {
                if n == 1 {
                    nanos = varint(v, "duration")? as i64;
                }
                Ok(())
            })?;
            Value::String(go_duration(nanos))
        }
        Kind::Quantity => {
            let mut s = String::from("0");
            each(bytes(value, "quantity")?, |n, v| {
                if n == 1 {
                    s = string(v, "quantity")?;
                }
                Ok(())
            })?;
            Value::String(s)
        }
        Kind::IntOrString => {
            let (mut typ, mut int, mut s) = (0u64, 0i32, String::new());
            each(bytes(value, "intstr")?, |n, v| {
                match n {
                    1 => typ = varint(v, "intstr type")?,
                    2 => int = varint(v, "intVal")? as u32 as i32,
                    3 => s = string(v, "strVal")?,
                    _ => {}
                }
                Ok(())
            })?;
            match typ {
                0 => Value::from(int),
                1 => Value::String(s),
                t => return Err(format!("invalid IntOrString type {t}")),
            }
        }
        Kind::Raw | Kind::FieldsV1 => {
            let mut raw: &[u8] = &[];
            each(bytes(value, "raw")?, |n, v| {
                if n == 1 {
                    raw = bytes(v, "raw")?;
                }
                Ok(())
            })?;
            if raw.is_empty() {
                return Ok(None);
            }
            if raw.starts_with(MAGIC) {
                decode_object(raw, depth + 1)?
            } else {
                serde_json::from_slice(raw).map_err(|e| format!("embedded JSON: {e}"))?
            }
        }
    };
    Ok(Some(v))
}

/// Calls `f` for each field of a small special message.
fn each<'a>(buf: &'a [u8], mut f: impl FnMut(u32, wire::Value<'a>) -> Result<(), String>) -> Result<(), String> {
    let mut r = Reader::new(buf);
    while let Some((number, value)) = r.field()? {
        f(number, value)?;
    }
    Ok(())
}

/// First and last second that Go's RFC 3339 JSON encoding accepts (years 0-9999).
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_799;

/// `metav1.Time`/`MicroTime`: empty is the zero time (`null`); otherwise UTC RFC 3339.
fn time(buf: &[u8], micro: bool) -> Result<Option<Value>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    each(buf, |n, v| {
        match n {
            1 => seconds = varint(v, "seconds")? as i64,
            2 => nanos = i64::from(varint(v, "nanos")? as u32 as i32),
            _ => {}
        }
        Ok(())
    })?;
    // Like Go's time.Unix: nanoseconds outside [0, 1e9) carry into the seconds.
    let seconds = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .filter(|s| (MIN_SECONDS..=MAX_SECONDS).contains(s))
        .ok_or("time out of range")?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    let text = crate::api::time::format_rfc3339(seconds);
    Ok(Some(Value::String(if micro {
        format!("{}.{:06}Z", text.trim_end_matches('Z'), nanos / 1000)
    } else {
        text
    })))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    // Below a second: one unit, with a fraction.
    let frac = |value: u64, unit: u64, digits: usize| -> String {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            whole.to_string()
        } else {
            let s = format!("{whole}.{rest:0digits$}");
            s.trim_end_matches('0').to_string()
        }
    };
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000, 6));
    }
    let (hours, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = frac(rest, 1_000_000_000, 9);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests;
