//! Collections: list (label and field selectors, `limit`/`continue` paging at a
//! pinned revision, `resourceVersion` semantics) and watch (newline-delimited JSON
//! events fed by a store watcher, replay from a resourceVersion, bookmarks,
//! `timeoutSeconds`, an in-stream 410 `ERROR` when history is compacted).

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

use super::handlers::{Context, set_resource_version, store_error};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::Status;
use super::{json_response, table};
use crate::store::{Event, EventKind, KeyRange, Range, StoreError};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a watch runs without `timeoutSeconds` (kube-apiserver: 30-60 min).
const MAX_WATCH: Duration = Duration::from_secs(1800);

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn of(ctx: &Context) -> Result<Selectors, Status> {
        Ok(Selectors {
            labels: LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or("")).map_err(Status::bad_request)?,
            fields: FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or("")).map_err(Status::bad_request)?,
        })
    }

    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// The keys to read: one object when the field selector pins a name.
    fn range(&self, ctx: &Context) -> KeyRange {
        let prefix = ctx.rtype.namespace_prefix(ctx.target.namespace.as_deref());
        match self.fields.exact_name() {
            Some(name) if ctx.target.namespace.is_some() || !ctx.rtype.namespaced => {
                KeyRange::key(format!("{prefix}{name}"))
            }
            _ => KeyRange::prefix(prefix),
        }
    }
}

/// A continue token: the revision the list is pinned at and the next key.
fn encode_continue(revision: i64, next: &[u8]) -> String {
    use base64::Engine;
    let token = json!({"rv": revision, "start": String::from_utf8_lossy(next)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, Vec<u8>), Status> {
    use base64::Engine;
    let invalid = || Status::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let revision = value["rv"].as_i64().ok_or_else(invalid)?;
    let start = value["start"].as_str().ok_or_else(invalid)?;
    Ok((revision, start.as_bytes().to_vec()))
}

/// The revision a list or watch asks for: `None` for "the newest".
fn requested_revision(ctx: &Context) -> Result<Option<i64>, Status> {
    match ctx.query.get("resourceVersion") {
        None | Some("0") => Ok(None),
        Some(rv) => rv
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Status::bad_request(format!("invalid resource version: {rv}"))),
    }
}

pub async fn list(ctx: &Context) -> Result<Response, Status> {
    let selectors = Selectors::of(ctx)?;
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0);
    let range = selectors.range(ctx);
    let end = if range.is_single_key() {
        range.start.clone()
    } else {
        range.end.clone()
    };
    let (mut revision, mut start) = match ctx.query.get("continue") {
        Some(token) => {
            if requested_revision(ctx)?.is_some() {
                return Err(Status::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            decode_continue(token)?
        }
        None => {
            let exact = match requested_revision(ctx)? {
                Some(rv) if limit.is_some() || ctx.query.get("resourceVersionMatch") == Some("Exact") => rv,
                Some(rv) if rv > ctx.api.store.revision() => {
                    return Err(Status::new(504, "Timeout", "Too large resource version"));
                }
                _ => 0,
            };
            (exact, range.start.clone())
        }
    };

    // Objects for a Table or metadata view; otherwise the stored bytes themselves,
    // appended to the body as each page is read: a list of thousands of objects is
    // never a tree of `Value`s, nor held twice.
    let view = table::requested(&ctx.headers, ctx.query.get("includeObject"))?;
    let mut objects: Vec<Value> = Vec::new();
    let mut items: Vec<u8> = Vec::new();
    let mut taken = 0i64;
    let mut next = None;
    loop {
        let read = Range {
            range: if range.is_single_key() {
                range.clone()
            } else {
                KeyRange::new(start.clone(), end.clone())
            },
            limit: limit.map_or(PAGE, |l| l.max(100)),
            revision,
            ..Default::default()
        };
        let page = ctx.api.store.range(read).await.map_err(|err| match err {
            StoreError::Compacted { .. } if ctx.query.get("continue").is_some() => Status::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            StoreError::Compacted { .. } => Status::expired(format!(
                "The resourceVersion for the provided list is too old. ({err})"
            )),
            other => store_error(other),
        })?;
        // Pin later pages to the revision of the first (the store reports its
        // newest revision, even for a read in the past).
        if revision == 0 {
            revision = page.revision;
        }
        let scanned = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            if view.is_some() || !selectors.is_empty() {
                let object = ctx.served(kv)?;
                if !selectors.matches(&object) {
                    continue;
                }
                if view.is_some() {
                    objects.push(object);
                } else {
                    push_item(&mut items, &ctx.served_bytes(kv)?);
                }
            } else {
                push_item(&mut items, &ctx.served_bytes(kv)?);
            }
            taken += 1;
            if limit.is_some_and(|l| taken >= l) && (i + 1 < scanned || page.more) {
                let mut after = kv.key.clone();
                after.push(0);
                next = Some(after);
                break;
            }
        }
        if next.is_some() || !page.more {
            break;
        }
        let Some(last) = page.kvs.last() else { break };
        start = last.key.clone();
        start.push(0);
    }

    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(next) = &next {
        metadata["continue"] = json!(encode_continue(revision, next));
    }
    match view {
        Some(table::View::Table(form)) => Ok(json_response(
            StatusCode::OK,
            &table::render(&ctx.rtype, &objects, Some(metadata), form),
        )),
        Some(table::View::Metadata) => {
            let items: Vec<Value> = objects.iter().map(table::partial).collect();
            let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
            Ok(json_response(StatusCode::OK, &list))
        }
        None => {
            let head = json!({"kind": format!("{}List", ctx.rtype.kind), "apiVersion": ctx.rtype.api_version(), "metadata": metadata});
            let mut head = head.to_string().into_bytes();
            head.pop();
            head.extend_from_slice(b",\"items\":[");
            // Three chunks, so the items (most of the bytes) are never copied.
            let chunks = [head, items, b"]}\n".to_vec()].map(Ok::<_, std::convert::Infallible>);
            let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
    }
}

/// How many objects a list reads from the store at a time when the client set
/// no limit: bounds what one list holds besides its response body.
const PAGE: i64 = 1000;

/// Appends one object to a comma-separated JSON array body.
fn push_item(items: &mut Vec<u8>, object: &[u8]) {
    if !items.is_empty() {
        items.push(b',');
    }
    items.extend_from_slice(object);
}

/// Every object in scope matching the request's selectors, at the newest revision.
pub async fn matching(ctx: &Context) -> Result<Vec<Value>, Status> {
    let selectors = Selectors::of(ctx)?;
    let page = ctx
        .api
        .store
        .range(Range::of(selectors.range(ctx)))
        .await
        .map_err(store_error)?;
    let mut items = Vec::new();
    for kv in &page.kvs {
        let object = ctx.served(kv)?;
        if selectors.matches(&object) {
            items.push(object);
        }
    }
    Ok(items)
}

pub async fn watch(ctx: Context) -> Result<Response, Status> {
    let selectors = Selectors::of(&ctx)?;
    let bookmarks = ctx.query.flag("allowWatchBookmarks")?;
    let send_initial = ctx.query.flag("sendInitialEvents")?;
    if send_initial && ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(Status::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![super::status::Cause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                field: "resourceVersionMatch".into(),
            }],
        ));
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64).min(MAX_WATCH),
        _ => MAX_WATCH,
    };
    let view = table::requested(&ctx.headers, ctx.query.get("includeObject"))?;
    let range = selectors.range(&ctx);

    // Without a resourceVersion (or "0") the watch starts with the current state,
    // turned into events one object at a time as the stream is written.
    let (initial, start) = match requested_revision(&ctx)? {
        Some(rv) if !send_initial => (Vec::new(), rv + 1),
        _ => {
            let page = ctx
                .api
                .store
                .range(Range::of(range.clone()))
                .await
                .map_err(store_error)?;
            (page.kvs, page.revision + 1)
        }
    };
    let watcher = ctx.api.store.watch(range, start);

    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let stream = Stream {
        ctx,
        selectors,
        tx,
        view,
        first_table: true,
    };
    tokio::spawn(stream.run(watcher, initial, start - 1, timeout, bookmarks, send_initial));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One watch response being written.
struct Stream {
    ctx: Context,
    selectors: Selectors,
    tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    view: Option<table::View>,
    first_table: bool,
}

impl Stream {
    async fn run(
        mut self,
        watcher: crate::store::Result<crate::store::Watcher>,
        initial: Vec<crate::store::KeyValue>,
        initial_revision: i64,
        timeout: Duration,
        bookmarks: bool,
        send_initial: bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(err) => {
                self.error(err).await;
                return;
            }
        };
        for kv in initial {
            let Ok(object) = self.ctx.served(&kv) else { continue };
            if self.selectors.matches(&object) && !self.send("ADDED", object).await {
                return;
            }
        }
        if send_initial {
            let mut mark = self.bookmark(initial_revision);
            mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            if !self.send_raw("BOOKMARK", mark).await {
                return;
            }
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = self.bookmark(watcher.next_revision() - 1);
                    if !self.send_raw("BOOKMARK", mark).await {
                        return;
                    }
                }
                events = watcher.next() => match events {
                    Ok(events) => {
                        for event in events {
                            if !self.event(event).await {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        self.error(err).await;
                        return;
                    }
                },
            }
        }
    }

    fn bookmark(&self, revision: i64) -> Value {
        json!({
            "kind": self.ctx.rtype.kind,
            "apiVersion": self.ctx.rtype.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        })
    }

    /// Turns a store event into a watch event, as the selectors see it: an object
    /// that stops matching is DELETED for this watch, one that starts is ADDED.
    async fn event(&mut self, event: Event) -> bool {
        let revision = event.kv.mod_revision;
        let previous = match &event.prev {
            Some(kv) => self.ctx.served(kv).ok(),
            None => None,
        };
        let was = previous.as_ref().is_some_and(|o| self.selectors.matches(o));
        match event.kind {
            EventKind::Put => {
                let Ok(object) = self.ctx.served(&event.kv) else {
                    return true;
                };
                let is = self.selectors.matches(&object);
                match (was, is) {
                    (false, true) => self.send("ADDED", object).await,
                    (true, true) => self.send("MODIFIED", object).await,
                    (true, false) => self.send("DELETED", object).await,
                    (false, false) => true,
                }
            }
            EventKind::Delete => match previous {
                Some(mut object) if was => {
                    set_resource_version(&mut object, revision);
                    self.send("DELETED", object).await
                }
                _ => true,
            },
        }
    }

    async fn send(&mut self, kind: &str, object: Value) -> bool {
        let object = match self.view {
            Some(table::View::Table(form)) => {
                let mut t = table::render(&self.ctx.rtype, &[object], None, form);
                if !self.first_table {
                    t["columnDefinitions"] = json!([]);
                }
                self.first_table = false;
                t
            }
            Some(table::View::Metadata) => table::partial(&object),
            None => object,
        };
        self.send_raw(kind, object).await
    }

    async fn send_raw(&self, kind: &str, object: Value) -> bool {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Ok(line)).await.is_ok()
    }

    async fn error(&self, err: StoreError) {
        let status = match err {
            StoreError::Compacted { compact_revision } => Status::expired(format!(
                "too old resource version: {} ({compact_revision})",
                self.ctx.query.get("resourceVersion").unwrap_or("0")
            )),
            other => store_error(other),
        };
        let _ = self.send_raw("ERROR", status.to_value()).await;
    }
}
