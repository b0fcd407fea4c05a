//! Handlers for one object: get, create, update (and the status/finalize
//! subresources), patch (JSON patch and merge patch), delete with finalizers and
//! preconditions. Writes are compare-and-swap transactions on the object's key, so
//! a stale resourceVersion is a 409 and nothing is ever overwritten blindly.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::kinds;
use super::request::{Query, Target};
use super::resources::ResourceType;
use super::status::{Cause, Status};
use super::{Api, json_response, table, time};
use crate::store::{Compare, CompareOp, CompareTarget, Delete, KeyRange, KeyValue, Op, OpResult, Put, StoreError, Txn};
use std::collections::HashSet;

/// One request against one resource type.
pub struct Context {
    pub api: Arc<Api>,
    pub rtype: ResourceType,
    pub target: Target,
    pub query: Query,
    pub headers: HeaderMap,
    /// Warnings for the client (`Warning: 299 - "..."` response headers).
    pub warnings: Warnings,
}

/// The warnings of a request, shared by the contexts it spawns.
#[derive(Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    pub fn add(&self, text: String) {
        let mut list = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !list.contains(&text) {
            list.push(text);
        }
    }

    /// Adds the warnings to a response as kube-apiserver words them:
    /// `299 - "<text>"`, with `"` and `\` escaped.
    pub fn attach(&self, mut response: Response) -> Response {
        let list = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for text in list.iter() {
            let mut quoted = String::from("299 - \"");
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    quoted.push('\\');
                }
                quoted.push(c);
            }
            quoted.push('"');
            if let Ok(value) = header::HeaderValue::from_str(&quoted) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
        response
    }
}

/// `fieldValidation`: what a write does with fields the type does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    /// Refuse the request (400).
    Strict,
    /// Drop them and warn (the default).
    Warn,
    /// Drop them silently.
    Ignore,
}

pub fn store_error(err: StoreError) -> Status {
    match err {
        StoreError::Compacted { .. } => Status::expired(format!("too old resource version: {err}")),
        StoreError::FutureRevision => Status::new(504, "Timeout", "Too large resource version"),
        StoreError::TooLarge => Status::too_large(),
        StoreError::NoSpace | StoreError::ReadOnly(_) | StoreError::Stopped => Status::unavailable(err.to_string()),
        other => Status::internal(other),
    }
}

/// The stored object with its resourceVersion filled in.
pub fn object_of(kv: &KeyValue) -> Result<Value, Status> {
    let mut object: Value =
        serde_json::from_slice(&kv.value).map_err(|e| Status::internal(format!("stored object is not JSON: {e}")))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// The stored object's JSON with its resourceVersion spliced into the top-level
/// `metadata`, without building a `Value` (lists of thousands of objects stay
/// cheap). Falls back to parsing for bytes it does not recognise.
pub fn object_bytes(kv: &KeyValue) -> Result<Vec<u8>, Status> {
    let Some(at) = top_level_metadata(&kv.value) else {
        return serde_json::to_vec(&object_of(kv)?).map_err(Status::internal);
    };
    let rest = &kv.value[at..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field = format!(
        "\"resourceVersion\":\"{}\"{}",
        kv.mod_revision,
        if empty { "" } else { "," }
    );
    let mut out = Vec::with_capacity(kv.value.len() + field.len());
    out.extend_from_slice(&kv.value[..at]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(rest);
    Ok(out)
}

/// Where the top-level `"metadata":{` object's contents begin.
fn top_level_metadata(json: &[u8]) -> Option<usize> {
    let skip_space = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let (mut depth, mut i) = (0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                let key = json.get(start..i)?;
                i += 1;
                if depth == 1 && key == b"metadata" {
                    let colon = skip_space(i);
                    if json.get(colon) == Some(&b':') {
                        let open = skip_space(colon + 1);
                        return (json.get(open) == Some(&b'{')).then_some(open + 1);
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

fn meta(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("metadata is an object")
}

/// The bytes stored for an object: everything but the derived resourceVersion.
fn stored_bytes(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    meta(&mut object).remove("resourceVersion");
    serde_json::to_vec(&object).unwrap_or_default()
}

/// The 400 a strict decoder gives for unknown fields (none: no error).
fn strict_error(unknown: &[String]) -> Result<(), Status> {
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    Err(Status::bad_request(format!(
        "strict decoding error: {}",
        fields.join(", ")
    )))
}

/// The fields a JSON body gives more than once, by path (`spec.replicas`,
/// `spec.containers[0].name`), as Go's strict decoder names them. Malformed
/// JSON has none here (decoding reports it).
fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let Walk { path, out } = self;
            let mut i = 0;
            loop {
                let item = Walk {
                    path: format!("{path}[{i}]"),
                    out: &mut *out,
                };
                if seq.next_element_seed(item)?.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let Walk { path, out } = self;
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let child = match path.is_empty() {
                    true => key.clone(),
                    false => format!("{path}.{key}"),
                };
                if !seen.insert(key) && !out.contains(&child) {
                    out.push(child.clone());
                }
                map.next_value_seed(Walk {
                    path: child,
                    out: &mut *out,
                })?;
            }
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        path: String::new(),
        out: &mut out,
    };
    match walk.deserialize(&mut deserializer) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

fn mod_revision_is(key: &str, revision: i64) -> Compare {
    Compare {
        range: KeyRange::key(key),
        op: CompareOp::Equal,
        target: CompareTarget::ModRevision(revision),
    }
}

impl Context {
    /// A stored object as this request's resource serves it.
    pub fn served(&self, kv: &KeyValue) -> Result<Value, Status> {
        let object = object_of(kv)?;
        Ok(match kinds::events::converts(&self.rtype.group, &self.rtype.resource) {
            true => kinds::events::from_core(object),
            false => object,
        })
    }

    /// [`Context::served`] as JSON bytes (spliced without parsing where possible).
    pub fn served_bytes(&self, kv: &KeyValue) -> Result<Vec<u8>, Status> {
        match kinds::events::converts(&self.rtype.group, &self.rtype.resource) {
            true => serde_json::to_vec(&self.served(kv)?).map_err(Status::internal),
            false => object_bytes(kv),
        }
    }

    /// The store write of `object` at `key`, in its stored form; events get the
    /// shared lease that expires them.
    async fn put(&self, key: &str, object: &Value) -> Result<Op, Status> {
        let (group, resource) = (self.rtype.group.as_str(), self.rtype.resource.as_str());
        let value = match kinds::events::converts(group, resource) {
            true => stored_bytes(&kinds::events::to_core(object.clone())),
            false => stored_bytes(object),
        };
        let lease = match kinds::events::expires(group, resource) {
            true => self.api.event_lease().await?,
            false => 0,
        };
        Ok(Op::Put(Put {
            key: key.into(),
            value,
            lease,
            ..Default::default()
        }))
    }
}

/// Marks a reservation key as held by the object at `owner`.
fn reserve(key: &str, owner: &str) -> Op {
    Op::Put(Put {
        key: key.into(),
        value: owner.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn delete(key: &str) -> Op {
    Op::Delete(Delete {
        range: KeyRange::key(key),
        prev_kv: false,
    })
}

/// A random name suffix as kube-apiserver makes them (no vowels, no look-alikes).
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let hex = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    let version = (b[6] & 0x0f) | 0x40;
    let variant = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{version:02x}{}-{variant:02x}{}-{}",
        hex(0..4),
        hex(4..6),
        hex(7..8),
        hex(9..10),
        hex(10..16)
    )
}

/// `metadata.name` rules: DNS-1123 labels for namespaces, subdomains otherwise.
fn name_causes(rtype: &ResourceType, name: &str) -> Vec<Cause> {
    let invalid = |message: String| {
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message,
            field: "metadata.name".into(),
        }]
    };
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if rtype.resource == "namespaces" {
        if !label_ok(name) {
            return invalid(format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ));
        }
    } else if name.len() > 253 || !name.split('.').all(label_ok) {
        return invalid(format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ));
    }
    Vec::new()
}

/// Kinds with a spec/status split count spec changes in `metadata.generation`
/// (custom resources too); plain data objects such as ConfigMaps have none.
fn tracks_generation(rtype: &ResourceType) -> bool {
    rtype.has_status() || !rtype.is_builtin()
}

/// Everything of an object except metadata and status: what `generation` tracks.
fn spec_of(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    rest
}

impl Context {
    /// The same request, addressed to the object itself rather than a subresource.
    pub(super) fn object_context(&self) -> Context {
        Context {
            api: self.api.clone(),
            rtype: self.rtype.clone(),
            target: Target {
                subresource: None,
                ..self.target.clone()
            },
            query: self.query.clone(),
            headers: HeaderMap::new(),
            warnings: self.warnings.clone(),
        }
    }

    pub(super) fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn key(&self, name: &str) -> String {
        self.rtype.key(self.namespace(), name)
    }

    fn not_found(&self) -> Status {
        Status::not_found(&self.rtype.resource, &self.rtype.group, self.name())
    }

    pub(super) fn stale(&self) -> Status {
        Status::stale(&self.rtype.resource, &self.rtype.group, self.name())
    }

    /// Parses a request body (JSON or YAML) into an object.
    pub(super) fn decode(&self, body: &[u8]) -> Result<Value, Status> {
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let media = content_type.split(';').next().unwrap_or("").trim();
        let value: Value = match media {
            "application/json" | "" | "*/*" => serde_json::from_slice(body)
                .map_err(|e| Status::bad_request(format!("error decoding JSON body: {e}")))?,
            "application/yaml" | "application/x-yaml" | "text/yaml" => {
                let text = std::str::from_utf8(body).map_err(|_| Status::bad_request("body is not UTF-8"))?;
                serde_saphyr::from_str(text)
                    .map_err(|e| Status::bad_request(format!("error decoding YAML body: {e}")))?
            }
            "application/vnd.kubernetes.protobuf" => super::protobuf::decode(body).map_err(Status::bad_request)?,
            _ => return Err(Status::unsupported_media_type(content_type)),
        };
        if !value.is_object() {
            return Err(Status::bad_request("the body of the request must be a JSON object"));
        }
        Ok(value)
    }

    /// The body's apiVersion and kind, when given, must be this resource's.
    fn check_type(&self, object: &mut Value) -> Result<(), Status> {
        let expected = self.rtype.api_version();
        match object.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != expected => {
                return Err(Status::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected})"
                )));
            }
            Some(_) => {}
            None => object["apiVersion"] = json!(expected),
        }
        match object.get("kind").and_then(Value::as_str) {
            Some(k) if k != self.rtype.kind => Err(Status::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                self.rtype.kind
            ))),
            Some(_) => Ok(()),
            None => {
                object["kind"] = json!(self.rtype.kind);
                Ok(())
            }
        }
    }

    fn check_namespace(&self, object: &mut Value) -> Result<(), Status> {
        let ns = self.namespace().map(str::to_string);
        let m = meta(object);
        if !self.rtype.namespaced {
            m.remove("namespace");
            return Ok(());
        }
        match (m.get("namespace").and_then(Value::as_str), ns.as_deref()) {
            (Some(given), Some(url)) if given != url => Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            (_, Some(url)) => {
                m.insert("namespace".into(), json!(url));
                Ok(())
            }
            (_, None) => Err(Status::method_not_allowed()),
        }
    }

    /// The object now, with its revision; 404 if absent.
    pub(super) async fn current(&self) -> Result<(Value, i64), Status> {
        let kv = self
            .api
            .store
            .get(self.key(self.name()))
            .await
            .map_err(store_error)?
            .ok_or_else(|| self.not_found())?;
        Ok((self.served(&kv)?, kv.mod_revision))
    }

    /// One object, as JSON or as a Table when the client asked for one.
    fn respond(&self, code: StatusCode, object: &Value) -> Result<Response, Status> {
        match table::requested(&self.headers, self.query.get("includeObject"))? {
            Some(table::View::Table(form)) => Ok(json_response(
                code,
                &table::render(&self.rtype, std::slice::from_ref(object), None, form),
            )),
            Some(table::View::Metadata) => Ok(json_response(code, &table::partial(object))),
            None => Ok(json_response(code, object)),
        }
    }

    pub async fn get(&self) -> Result<Response, Status> {
        if self.target.subresource.as_deref().is_some_and(|s| s != "status") {
            return Err(Status::method_not_allowed());
        }
        let (object, _) = self.current().await?;
        self.respond(StatusCode::OK, &object)
    }

    fn check_valid(&self, object: &Value, old: Option<&Value>) -> Result<(), Status> {
        let causes = kinds::validate(&self.rtype, object, old);
        if causes.is_empty() {
            return Ok(());
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        Err(Status::invalid(&self.rtype.kind, &self.rtype.group, name, causes))
    }

    /// Fills in allocated values (a Service's cluster IP and node ports). Returns
    /// whether anything was allocated here (a collision is then worth a retry).
    async fn allocate(&self, object: &mut Value, old: Option<&Value>) -> Result<bool, Status> {
        if !kinds::allocates(&self.rtype) {
            return Ok(false);
        }
        let page = self
            .api
            .store
            .range(crate::store::Range {
                keys_only: true,
                ..crate::store::Range::of(KeyRange::prefix(kinds::RESERVATIONS))
            })
            .await
            .map_err(store_error)?;
        let mine = old.map(|o| kinds::reservations(&self.rtype, o)).unwrap_or_default();
        let taken: HashSet<String> = page
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .filter(|k| !mine.contains(k))
            .collect();
        let before = kinds::reservations(&self.rtype, object);
        kinds::allocate_service(object, old, &self.api.service_ranges, &taken).map_err(|causes| {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            Status::invalid(&self.rtype.kind, &self.rtype.group, &name, causes)
        })?;
        Ok(kinds::reservations(&self.rtype, object) != before)
    }

    /// NamespaceLifecycle: objects go only into namespaces that exist and are not terminating.
    async fn check_namespace_open(&self) -> Result<(), Status> {
        let Some(ns) = self.namespace() else { return Ok(()) };
        let key = format!("/registry/namespaces/{ns}");
        let kv = self.api.store.get(key).await.map_err(store_error)?;
        let Some(kv) = kv else {
            return Err(Status::not_found("namespaces", "", ns));
        };
        let namespace = object_of(&kv)?;
        if namespace["metadata"]["deletionTimestamp"].is_string() {
            return Err(Status::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    pub async fn create(&self, body: Bytes) -> Result<Response, Status> {
        if self.target.subresource.is_some() {
            return Err(Status::method_not_allowed());
        }
        let object = self.decode(&body)?;
        self.check_duplicates(&body)?;
        self.create_object(object, true).await
    }

    /// Creates `object`. `track`: record the request's `Update` in managedFields
    /// (server-side apply brings its own `Apply` entry instead).
    pub(super) async fn create_object(&self, mut object: Value, track: bool) -> Result<Response, Status> {
        self.check_type(&mut object)?;
        self.check_namespace(&mut object)?;
        let m = meta(&mut object);
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(field);
        }
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(time::now_rfc3339()));
        if tracks_generation(&self.rtype) {
            m.insert("generation".into(), json!(1));
        }
        let generate = m.get("generateName").and_then(Value::as_str).map(str::to_string);
        let given = m.get("name").and_then(Value::as_str).map(str::to_string);
        if self.rtype.has_status()
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        kinds::defaults(&self.rtype, &mut object);
        self.apply_schema(&mut object)?;
        if track {
            super::managed::record_update(self, None, &mut object)?;
        }

        let fixed_name = given.is_some();
        if given.is_none() && generate.is_none() {
            return Err(Status::invalid(
                &self.rtype.kind,
                &self.rtype.group,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        self.check_namespace_open().await?;
        // A generated name may collide; try a few.
        for _ in 0..8 {
            let name = match (&given, &generate) {
                (Some(name), _) => name.clone(),
                (None, Some(prefix)) => format!("{prefix}{}", name_suffix()),
                (None, None) => unreachable!("checked above"),
            };
            let causes = name_causes(&self.rtype, &name);
            if !causes.is_empty() {
                return Err(Status::invalid(&self.rtype.kind, &self.rtype.group, &name, causes));
            }
            meta(&mut object).insert("name".into(), json!(name));
            self.check_valid(&object, None)?;
            let mut candidate = object.clone();
            let allocated = self.allocate(&mut candidate, None).await?;
            if self.query.dry_run()? {
                return self.respond(StatusCode::CREATED, &candidate);
            }
            let key = self.key(&name);
            let reserved = kinds::reservations(&self.rtype, &candidate);
            let mut compare = vec![mod_revision_is(&key, 0)];
            compare.extend(reserved.iter().map(|k| mod_revision_is(k, 0)));
            let mut success = vec![self.put(&key, &candidate).await?];
            success.extend(reserved.iter().map(|k| reserve(k, &key)));
            let result = self
                .api
                .store
                .txn(Txn {
                    compare,
                    success,
                    failure: vec![Op::Range(crate::store::Range::of(KeyRange::key(key.clone())))],
                })
                .await
                .map_err(store_error)?;
            if result.succeeded {
                set_resource_version(&mut candidate, result.revision);
                self.written(&candidate, false);
                return self.respond(StatusCode::CREATED, &candidate);
            }
            let name_taken = matches!(&result.results[..], [OpResult::Range(r)] if !r.kvs.is_empty());
            if !name_taken && allocated {
                // Another object reserved the same IP or port meanwhile: allocate again.
                continue;
            }
            if fixed_name {
                return Err(Status::already_exists(&self.rtype.resource, &self.rtype.group, &name));
            }
        }
        let mut status = Status::already_exists(&self.rtype.resource, &self.rtype.group, "");
        status.message = format!(
            "{} \"{}\" already exists, the server was not able to generate a unique name for the object",
            super::status::qualified(&self.rtype.resource, &self.rtype.group),
            generate.unwrap_or_default()
        );
        status.details.retry_after_seconds = 1;
        Err(status)
    }

    /// The object an update leads to: the incoming object for the main resource
    /// (with status and server-owned metadata kept), or only the subresource's part.
    pub(super) fn updated(&self, current: &Value, incoming: Value) -> Value {
        match self.target.subresource.as_deref() {
            Some("status") => {
                let mut next = current.clone();
                next["status"] = incoming.get("status").cloned().unwrap_or(json!({}));
                next
            }
            Some("finalize") => {
                let mut next = current.clone();
                next["spec"]["finalizers"] = incoming["spec"]["finalizers"].clone();
                next
            }
            _ => {
                let mut next = incoming;
                if self.rtype.has_status() {
                    match current.get("status") {
                        Some(status) => next["status"] = status.clone(),
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                let old = &current["metadata"];
                let m = meta(&mut next);
                for field in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "name",
                ] {
                    match old.get(field) {
                        Some(v) => m.insert(field.into(), v.clone()),
                        None => m.remove(field),
                    };
                }
                if tracks_generation(&self.rtype) {
                    let generation = old["generation"].as_i64().unwrap_or(1);
                    let changed = spec_of(current) != spec_of(&next);
                    meta(&mut next).insert("generation".into(), json!(generation + i64::from(changed)));
                } else {
                    meta(&mut next).remove("generation");
                }
                next
            }
        }
    }

    /// Writes `next` over the object at `revision` and answers with it.
    pub(super) async fn write(&self, current: &Value, revision: i64, next: Value) -> Result<Response, Status> {
        let written = self.commit(current, revision, next).await?;
        self.respond(StatusCode::OK, &written)
    }

    /// Writes `next` over the object at `revision`; 409 if it changed meanwhile.
    /// An object being deleted whose finalizers are all gone is deleted instead.
    /// Returns the object as stored (unchanged objects are not written).
    pub(super) async fn commit(&self, current: &Value, revision: i64, mut next: Value) -> Result<Value, Status> {
        set_resource_version(&mut next, revision);
        if self.target.subresource.as_deref() != Some("scale") {
            self.apply_schema(&mut next)?;
        }
        if self.rtype.resource == "customresourcedefinitions" && self.rtype.group == "apiextensions.k8s.io" {
            super::crd::status_on_write(&mut next);
        }
        if matches!(self.target.subresource.as_deref(), None | Some("scale")) {
            self.check_valid(&next, Some(current))?;
            self.allocate(&mut next, Some(current)).await?;
        }
        if next == *current || self.query.dry_run()? {
            return Ok(next);
        }
        let key = self.key(self.name());
        let finished = next["metadata"]["deletionTimestamp"].is_string()
            && next["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
            && finalizers(&next).is_empty();
        let held = kinds::reservations(&self.rtype, current);
        let wanted = if finished {
            Vec::new()
        } else {
            kinds::reservations(&self.rtype, &next)
        };
        let mut compare = vec![mod_revision_is(&key, revision)];
        let mut success = vec![if finished {
            delete(&key)
        } else {
            self.put(&key, &next).await?
        }];
        for k in wanted.iter().filter(|k| !held.contains(k)) {
            compare.push(mod_revision_is(k, 0));
            success.push(reserve(k, &key));
        }
        success.extend(held.iter().filter(|k| !wanted.contains(k)).map(|k| delete(k)));
        let result = self
            .api
            .store
            .txn(Txn {
                compare,
                success,
                failure: vec![],
            })
            .await
            .map_err(store_error)?;
        if !result.succeeded {
            return Err(self.stale());
        }
        set_resource_version(&mut next, result.revision);
        self.written(&next, finished);
        Ok(next)
    }

    /// Side effects of a successful write: a CRD's resources are served (or not).
    fn written(&self, object: &Value, gone: bool) {
        if self.rtype.resource != "customresourcedefinitions" || self.rtype.group != "apiextensions.k8s.io" {
            return;
        }
        super::crd::sync(&self.api, object, gone);
        if gone {
            tokio::spawn(super::crd::delete_instances(self.api.clone(), object.clone()));
        }
    }

    /// The request's `fieldValidation` (Warn when not given); 422 for another value.
    fn field_validation(&self) -> Result<FieldValidation, Status> {
        match self.query.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(Status::invalid(
                "CreateOptions",
                "meta.k8s.io",
                "",
                vec![Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!(
                        "Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
                    ),
                    field: "fieldValidation".into(),
                }],
            )),
        }
    }

    /// A custom resource against its version's schema: unknown fields pruned,
    /// defaults filled, 422 on violations. Built-in objects lose the fields their
    /// typed model does not have, as decoding into the Go type drops them.
    /// Unknown fields are refused with `fieldValidation=Strict` (400, as the Go
    /// decoder words it), warned about with `Warn` (the default), dropped silently
    /// with `Ignore`. Objects the model cannot decode are left to validation (422).
    fn apply_schema(&self, object: &mut Value) -> Result<(), Status> {
        let validation = self.field_validation()?;
        let Some(schema) = self.rtype.custom.as_ref().map(|c| &c.schema).filter(|s| s.is_object()) else {
            if self.rtype.custom.is_some() {
                return Ok(());
            }
            let unknown = kinds::typed::prune_unknown(&self.rtype.group, &self.rtype.resource, object);
            return self.unknown_fields(validation, &unknown.unwrap_or_default());
        };
        let outcome = super::schema::apply(schema, object);
        self.unknown_fields(validation, &outcome.unknown)?;
        if outcome.causes.is_empty() {
            return Ok(());
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        Err(Status::invalid(
            &self.rtype.kind,
            &self.rtype.group,
            &name,
            outcome.causes,
        ))
    }

    /// What `fieldValidation` makes of fields a JSON body gives twice (the last
    /// one counts): refused with Strict, warned about with Warn.
    fn check_duplicates(&self, body: &[u8]) -> Result<(), Status> {
        let media = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let media = media
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !matches!(media, "application/json" | "" | "*/*") {
            return Ok(());
        }
        let validation = self.field_validation()?;
        if validation == FieldValidation::Ignore {
            return Ok(());
        }
        let duplicates = duplicate_fields(body);
        let messages: Vec<String> = duplicates.iter().map(|f| format!("duplicate field \"{f}\"")).collect();
        match validation {
            FieldValidation::Strict if !messages.is_empty() => Err(Status::bad_request(format!(
                "strict decoding error: {}",
                messages.join(", ")
            ))),
            _ => {
                messages.into_iter().for_each(|m| self.warnings.add(m));
                Ok(())
            }
        }
    }

    /// What `fieldValidation` makes of the unknown fields an object had.
    fn unknown_fields(&self, validation: FieldValidation, unknown: &[String]) -> Result<(), Status> {
        match validation {
            FieldValidation::Strict => strict_error(unknown),
            FieldValidation::Warn => {
                for field in unknown {
                    self.warnings.add(format!("unknown field \"{field}\""));
                }
                Ok(())
            }
            FieldValidation::Ignore => Ok(()),
        }
    }

    pub async fn update(&self, body: Bytes) -> Result<Response, Status> {
        let mut incoming = self.decode(&body)?;
        self.check_duplicates(&body)?;
        self.check_type(&mut incoming)?;
        self.check_namespace(&mut incoming)?;
        match incoming["metadata"]["name"].as_str() {
            Some(n) if n == self.name() => {}
            Some(n) => {
                return Err(Status::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    self.name()
                )));
            }
            None => {
                meta(&mut incoming).insert("name".into(), json!(self.name()));
            }
        }
        let (current, revision) = self.current().await?;
        if let Some(rv) = incoming["metadata"]["resourceVersion"].as_str()
            && rv != revision.to_string()
        {
            return Err(self.stale());
        }
        let mut next = self.updated(&current, incoming);
        super::managed::record_update(self, Some(&current), &mut next)?;
        self.write(&current, revision, next).await
    }

    pub async fn patch(&self, body: Bytes) -> Result<Response, Status> {
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = content_type.split(';').next().unwrap_or("").trim().to_string();
        if media == super::apply::APPLY_PATCH {
            return super::apply::patch(self, &body).await;
        }
        super::apply::refuse_force(self)?;
        let patch: Value =
            serde_json::from_slice(&body).map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
        // Retry a patch that raced another writer, as kube-apiserver does, unless
        // the patch itself pins a resourceVersion.
        let pins = match media.as_str() {
            "application/json-patch+json" => patch
                .as_array()
                .into_iter()
                .flatten()
                .any(|op| op["path"] == "/metadata/resourceVersion"),
            _ => !patch["metadata"]["resourceVersion"].is_null(),
        };
        // Each conflict means another writer got through, so this terminates;
        // the bound only guards against a pathological storm.
        for _ in 0..100 {
            let (current, revision) = self.current().await?;
            let mut patched = current.clone();
            match media.as_str() {
                "application/merge-patch+json" => json_patch::merge(&mut patched, &patch),
                "application/strategic-merge-patch+json" if self.rtype.is_builtin() => {
                    patched =
                        super::patch::strategic_merge(&self.rtype.kind, &current, &patch).map_err(|e| match e {
                            super::patch::PatchError::BadRequest(m) => Status::bad_request(m),
                            super::patch::PatchError::Invalid(m) => Status::invalid(
                                &self.rtype.kind,
                                &self.rtype.group,
                                self.name(),
                                vec![Cause {
                                    reason: "FieldValueInvalid".into(),
                                    message: m,
                                    field: "patch".into(),
                                }],
                            ),
                        })?;
                }
                "application/json-patch+json" => {
                    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                        .map_err(|e| Status::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut patched, &ops).map_err(|e| {
                        Status::invalid(
                            &self.rtype.kind,
                            &self.rtype.group,
                            self.name(),
                            vec![Cause {
                                reason: "FieldValueInvalid".into(),
                                message: e.to_string(),
                                field: String::new(),
                            }],
                        )
                    })?;
                }
                _ => return Err(Status::unsupported_media_type(&content_type)),
            }
            let pinned = patched["metadata"]["resourceVersion"].as_str().map(str::to_string);
            if let Some(rv) = &pinned
                && *rv != revision.to_string()
            {
                return Err(self.stale());
            }
            if patched["metadata"]["name"].as_str() != Some(self.name()) {
                return Err(Status::bad_request("metadata.name cannot be changed by a patch"));
            }
            self.check_type(&mut patched)?;
            let mut next = self.updated(&current, patched);
            super::managed::record_update(self, Some(&current), &mut next)?;
            match self.write(&current, revision, next).await {
                Err(status) if status.reason == "Conflict" && !pins => continue,
                other => return other,
            }
        }
        Err(self.stale())
    }

    pub async fn delete(&self, body: Bytes) -> Result<Response, Status> {
        if self.target.subresource.is_some() {
            return Err(Status::method_not_allowed());
        }
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            // JSON, YAML or protobuf (`kubectl drain --disable-eviction` sends the latter).
            self.decode(&body)?
        };
        let policy = propagation_policy(&options, &self.query)?;
        for _ in 0..5 {
            let (current, revision) = self.current().await?;
            let pre = &options["preconditions"];
            if let Some(uid) = pre["uid"].as_str() {
                let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
                if uid != actual {
                    return Err(Status::conflict(
                        &self.rtype.resource,
                        &self.rtype.group,
                        self.name(),
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = pre["resourceVersion"].as_str()
                && rv != revision.to_string()
            {
                return Err(Status::conflict(
                    &self.rtype.resource,
                    &self.rtype.group,
                    self.name(),
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
                    ),
                ));
            }
            let grace = self.pod_grace_period(&options, &current)?;
            // The garbage collector's finalizers as the propagation policy asks.
            let collected = self.gc_finalizers(&current, policy);
            let mut next = current.clone();
            if let Some(list) = &collected {
                meta(&mut next).insert("finalizers".into(), json!(list));
                if list.is_empty() {
                    meta(&mut next).remove("finalizers");
                }
            }
            // A namespace's `spec.finalizers` count: the namespace controller empties it
            // and then removes its `kubernetes` finalizer through `finalize`.
            let held = !finalizers(&next).is_empty();
            let terminating = current["metadata"]["deletionTimestamp"].is_string();
            // A second delete with grace 0 (`--force --grace-period=0`) finishes a graceful one.
            let forced = terminating && grace == Some(0) && !held;
            let result = if (held || grace.is_some_and(|g| g > 0)) && !forced {
                // Mark for deletion; the finalizers' owners (or the kubelet) finish it.
                if terminating {
                    // Only the propagation policy may still change (e.g. orphan to
                    // foreground), and the grace period only shorten (the kubelet's final
                    // delete of a pod that finalizers still hold: once they are gone, it goes).
                    let pending = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
                    let shorter = grace.filter(|g| pending.is_some_and(|p| *g < p));
                    if collected.is_none() && shorter.is_none() {
                        return self.respond(StatusCode::OK, &current);
                    }
                    if let Some(grace) = shorter {
                        let m = meta(&mut next);
                        m.insert(
                            "deletionTimestamp".into(),
                            json!(time::format_rfc3339(time::now_seconds() + grace)),
                        );
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                    return match self.write(&current, revision, next).await {
                        Err(status) if status.reason == "Conflict" && pre.is_null() => continue,
                        other => other,
                    };
                }
                let grace = grace.unwrap_or(0);
                let m = meta(&mut next);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(time::format_rfc3339(time::now_seconds() + grace)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if self.rtype.resource == "namespaces" {
                    next["status"]["phase"] = json!("Terminating");
                }
                self.write(&current, revision, next).await
            } else if self.query.dry_run()? {
                self.respond(StatusCode::OK, &current)
            } else {
                let key = self.key(self.name());
                let mut success = vec![delete(&key)];
                success.extend(kinds::reservations(&self.rtype, &current).iter().map(|k| delete(k)));
                let result = self
                    .api
                    .store
                    .txn(Txn {
                        compare: vec![mod_revision_is(&key, revision)],
                        success,
                        failure: vec![],
                    })
                    .await
                    .map_err(store_error)?;
                if result.succeeded {
                    self.written(&current, true);
                    self.respond(StatusCode::OK, &current)
                } else {
                    Err(self.stale())
                }
            };
            match result {
                Err(status) if status.reason == "Conflict" && pre.is_null() => continue,
                other => return other,
            }
        }
        Err(self.stale())
    }

    /// The object's finalizers after a delete with `policy`, when they change
    /// (kube-apiserver's `deletionFinalizersForGarbageCollection`): `Orphan` adds
    /// `orphan`, `Foreground` adds `foregroundDeletion`, `Background` removes both;
    /// without a policy the finalizers already there decide (the default is
    /// background). The garbage collector acts on them and removes them.
    fn gc_finalizers(&self, object: &Value, policy: Option<&str>) -> Option<Vec<Value>> {
        if self.rtype.group.is_empty() && self.rtype.resource == "namespaces" {
            return None;
        }
        let policy = policy?;
        let old: Vec<Value> = object["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        let mut new: Vec<Value> = old
            .iter()
            .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
            .cloned()
            .collect();
        match policy {
            "Orphan" => new.push(json!(FINALIZER_ORPHAN)),
            "Foreground" => new.push(json!(FINALIZER_FOREGROUND)),
            _ => {}
        }
        let set = |list: &[Value]| -> std::collections::BTreeSet<String> {
            list.iter().filter_map(Value::as_str).map(str::to_string).collect()
        };
        (set(&old) != set(&new)).then_some(new)
    }

    /// How long a pod gets to stop: the request's `gracePeriodSeconds`, else the
    /// pod's `terminationGracePeriodSeconds`; 0 for a pod no node runs (nothing to
    /// wait for). `None` for other kinds.
    fn pod_grace_period(&self, options: &Value, pod: &Value) -> Result<Option<i64>, Status> {
        if !(self.rtype.group.is_empty() && self.rtype.resource == "pods") {
            return Ok(None);
        }
        let unscheduled = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
        let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if unscheduled || finished {
            return Ok(Some(0));
        }
        let requested = match options["gracePeriodSeconds"].as_i64() {
            Some(g) => Some(g),
            None => self.query.int("gracePeriodSeconds")?,
        };
        let grace = requested
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        Ok(Some(grace.max(0)))
    }

    pub async fn delete_collection(&self) -> Result<Response, Status> {
        let items = super::list::matching(self).await?;
        let mut deleted = Vec::new();
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let one = Context {
                api: self.api.clone(),
                rtype: self.rtype.clone(),
                target: Target {
                    name: Some(name),
                    namespace: item["metadata"]["namespace"].as_str().map(str::to_string),
                    ..self.target.clone()
                },
                query: self.query.clone(),
                headers: HeaderMap::new(),
                warnings: self.warnings.clone(),
            };
            match one.delete(Bytes::new()).await {
                Ok(_) => deleted.push(item),
                Err(status) if status.code == 404 => {}
                Err(status) => return Err(status),
            }
        }
        let list = json!({
            "kind": format!("{}List", self.rtype.kind),
            "apiVersion": self.rtype.api_version(),
            "metadata": {"resourceVersion": self.api.store.revision().to_string()},
            "items": deleted,
        });
        Ok(json_response(StatusCode::OK, &list))
    }
}

/// The finalizer of an owner deleted with `propagationPolicy=Orphan`.
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The finalizer of an owner deleted with `propagationPolicy=Foreground`.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// The DeleteOptions' propagation policy (body, else query parameters), with the
/// deprecated `orphanDependents` read as `Orphan`/`Background`; checked as
/// kube-apiserver's `ValidateDeleteOptions` does.
fn propagation_policy(options: &Value, query: &Query) -> Result<Option<&'static str>, Status> {
    let policy = match options["propagationPolicy"].as_str() {
        Some(policy) => Some(policy.to_string()),
        None => query.get("propagationPolicy").map(str::to_string),
    };
    let orphan = match options["orphanDependents"].as_bool() {
        Some(orphan) => Some(orphan),
        None if query.get("orphanDependents").is_some() => Some(query.flag("orphanDependents")?),
        None => None,
    };
    let invalid = |message: String| {
        Status::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueNotSupported".into(),
                message,
                field: "propagationPolicy".into(),
            }],
        )
    };
    match (policy.as_deref(), orphan) {
        (Some(_), Some(_)) => Err(invalid(
            "orphanDependents and deletionPropagation cannot be both set".into(),
        )),
        (Some("Orphan"), None) | (None, Some(true)) => Ok(Some("Orphan")),
        (Some("Background"), None) | (None, Some(false)) => Ok(Some("Background")),
        (Some("Foreground"), None) => Ok(Some("Foreground")),
        (Some(other), None) => Err(invalid(format!(
            "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ))),
        (None, None) => Ok(None),
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    let mut all: Vec<String> = object["metadata"]["finalizers"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if object["kind"] == "Namespace"
        && let Some(spec) = object["spec"]["finalizers"].as_array()
    {
        all.extend(spec.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    all
}
