//! Server-side apply: `PATCH` with `application/apply-patch+yaml` and a
//! `fieldManager`. The applied configuration is merged into the live object (or
//! creates it): maps merge key by key, list-maps item by item, sets value by value,
//! atomic lists and maps are replaced. What the same manager applied before and
//! no longer applies is removed, unless another manager owns it. Changing a field
//! another manager owns is a 409 conflict naming manager and field, unless
//! `force=true` moves the ownership. The applier's `Apply` entry in
//! `managedFields` then holds exactly the fields of its configuration.
//!
//! For `fieldManager=kubectl`, conflicts with values that are still those of the
//! client-side apply annotation are forgiven and that annotation is kept in step,
//! so `kubectl apply --server-side` can take over objects `kubectl apply` made.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::handlers::Context;
use super::managed::{self, Cursor, Entry, FieldSet, Managers, Operation, Path, PathElement, Schema, Scope};
use super::patch::{ListType, MapType};
use super::status::{Cause, Status};
use super::time;

pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The most annotation bytes an object may carry.
const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;

/// A field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: Entry,
    pub path: Path,
}

#[derive(Debug)]
pub enum ApplyError {
    Conflicts(Vec<Conflict>),
    /// The applied configuration does not fit the schema.
    Config(String),
    /// The live object does not (so it cannot be merged into).
    Live(String),
}

/// One apply request.
pub struct Applier<'a> {
    pub schema: Schema<'a>,
    pub scope: Scope,
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub force: bool,
    pub now: &'a str,
}

/// An applied object and its managers.
#[derive(Debug)]
pub struct Applied {
    pub object: Value,
    pub managers: Managers,
}

impl Applier<'_> {
    /// Applies `cfg` to `live` (without managedFields; `{}` for a create) owned
    /// by `managers`. `finish` turns the merged object into what would be stored
    /// (server-owned metadata and the fields this request may not change restored),
    /// so that ownership and conflicts follow the change actually made.
    pub fn apply(
        &self,
        live: &Value,
        cfg: &Value,
        managers: &Managers,
        finish: &dyn Fn(Value) -> Value,
    ) -> Result<Applied, ApplyError> {
        let applied = managed::field_set(self.schema, cfg, true).map_err(ApplyError::Config)?;
        let mut me = Entry::new(self.manager, Operation::Apply, self.api_version, self.subresource);
        let previous = managers.find(&me).cloned();
        me.set = self.scope.filter(&managed::strip(&applied));

        let mut merged = merge(self.schema, live, cfg).map_err(ApplyError::Live)?;
        if let Some(last) = previous.as_ref().filter(|p| !p.set.is_empty()) {
            // What anyone still owns stays; the configuration as sent counts in
            // full here, so that e.g. `metadata` (only its name applied) is kept.
            let owned = managers
                .0
                .iter()
                .filter(|e| !e.same_manager(&me))
                .fold(self.scope.filter(&applied), |owned, e| owned.union(&e.set));
            prune(&mut Cursor::new(self.schema), &mut merged, &last.set, &owned).map_err(ApplyError::Live)?;
        }
        drop_nulls(&mut merged);
        let object = finish(merged);

        let cmp = managed::compare(self.schema, live, &object).map_err(ApplyError::Live)?;
        let taken = cmp.added.union(&cmp.modified);
        let mut conflicts = Vec::new();
        let mut next = Managers::default();
        for entry in &managers.0 {
            // Managers at an apiVersion this server does not serve are dropped.
            if entry.same_manager(&me) || entry.api_version != self.api_version {
                continue;
            }
            let lost = entry.set.intersection(&taken);
            for path in lost.paths() {
                conflicts.push(Conflict {
                    manager: Entry {
                        set: FieldSet::default(),
                        time: None,
                        ..entry.clone()
                    },
                    path,
                });
            }
            let mut kept = entry.clone();
            kept.set = entry.set.difference(&lost).difference(&cmp.removed);
            next.0.push(kept);
        }
        if !conflicts.is_empty() && !self.force {
            conflicts.sort_by(|a, b| {
                a.manager
                    .identity()
                    .cmp(&b.manager.identity())
                    .then_with(|| a.path.cmp(&b.path))
            });
            return Err(ApplyError::Conflicts(conflicts));
        }
        let changed = !managed::strip(&cmp.all()).is_empty();
        me.time = match changed {
            true => Some(self.now.to_string()),
            false => previous.and_then(|p| p.time),
        };
        next.0.push(me);
        next.retain_nonempty();
        Ok(Applied { object, managers: next })
    }
}

/// Merges `cfg` into `live`: the configuration wins on leaves (scalars, atomic
/// lists and maps), maps are merged key by key, associative lists item by item.
pub fn merge(schema: Schema, live: &Value, cfg: &Value) -> Result<Value, String> {
    let merged = merge_values(&mut Cursor::new(schema), Some(live), Some(cfg))?;
    Ok(merged.unwrap_or_else(|| Value::Object(Map::new())))
}

fn merge_values(c: &mut Cursor, lhs: Option<&Value>, rhs: Option<&Value>) -> Result<Option<Value>, String> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return Ok(None),
        (Some(l), None) => return Ok(Some(l.clone())),
        (None, Some(r)) => return Ok(Some(r.clone())),
        (Some(l), Some(r)) => (l, r),
    };
    match (l, r) {
        (Value::Array(li), Value::Array(ri)) => {
            let list = c.schema.list(&c.names);
            if list == ListType::Atomic || li.is_empty() && ri.is_empty() {
                return Ok(Some(r.clone()));
            }
            merge_list(c, &list, li, ri).map(|items| Some(Value::Array(items)))
        }
        (Value::Object(lm), Value::Object(rm)) => {
            if c.schema.map(&c.names) == MapType::Atomic || lm.is_empty() && rm.is_empty() {
                return Ok(Some(r.clone()));
            }
            let mut out = lm.clone();
            for (key, value) in rm {
                c.names.push(key.clone());
                c.path.push(PathElement::field(key));
                let merged = merge_values(c, lm.get(key), Some(value));
                c.names.pop();
                c.path.pop();
                match merged? {
                    Some(v) => out.insert(key.clone(), v),
                    None => out.remove(key),
                };
            }
            Ok(Some(Value::Object(out)))
        }
        // A null list or map merges nothing into a granular live one.
        (Value::Array(items), Value::Null) if !items.is_empty() && c.schema.list(&c.names) != ListType::Atomic => {
            Ok(Some(l.clone()))
        }
        (Value::Object(map), Value::Null) if !map.is_empty() && c.schema.map(&c.names) != MapType::Atomic => {
            Ok(Some(l.clone()))
        }
        _ => Ok(Some(r.clone())),
    }
}

/// structured-merge-diff's list merge: live items the configuration does not
/// name keep their place; the others come in the configuration's order.
fn merge_list(c: &mut Cursor, list: &ListType, lhs: &[Value], rhs: &[Value]) -> Result<Vec<Value>, String> {
    let r = c.elements(list, rhs)?;
    let l = c.elements(list, lhs)?;
    let mut observed_r: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for (pe, item) in &r {
        observed_r.entry(pe.clone()).or_insert(item);
    }
    // Duplicated live items are not merged with the configuration's.
    let mut observed_l: BTreeMap<PathElement, Option<&Value>> = BTreeMap::new();
    for (pe, item) in &l {
        observed_l
            .entry(pe.clone())
            .and_modify(|seen| *seen = None)
            .or_insert(Some(item));
    }
    let mut shared = r
        .iter()
        .filter(|(pe, _)| observed_l.contains_key(pe))
        .map(|(pe, _)| pe.clone())
        .collect::<Vec<_>>()
        .into_iter();
    let mut next_shared = shared.next();
    let mut merged_r = BTreeSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &l[li].0;
            if *pe == r[ri].0 {
                merged_r.insert(pe.clone());
                let lchild = observed_l.get(pe).copied().flatten();
                out.extend(merge_item(c, pe, lchild, observed_r.get(pe).copied())?);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_r.contains_key(pe) && next_shared.as_ref().is_some_and(|s| s != pe) {
                // Shared, but not the one the configuration comes to next.
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &l[li].0;
            if !observed_r.contains_key(pe) {
                out.extend(merge_item(c, pe, Some(l[li].1), None)?);
                li += 1;
                continue;
            } else if merged_r.contains(pe) {
                li += 1;
            }
        }
        if ri < r.len() {
            let pe = r[ri].0.clone();
            merged_r.insert(pe.clone());
            let lchild = observed_l.get(&pe).copied().flatten();
            out.extend(merge_item(c, &pe, lchild, observed_r.get(&pe).copied())?);
            ri += 1;
            if next_shared.as_ref() == Some(&pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

fn merge_item(c: &mut Cursor, pe: &PathElement, l: Option<&Value>, r: Option<&Value>) -> Result<Option<Value>, String> {
    c.path.push(pe.clone());
    let merged = merge_values(c, l, r);
    c.path.pop();
    merged
}

/// Removes from `value` what the applier applied last time (`last`) and no one
/// owns now (`owned`, the new configuration included). A struct field goes as a
/// whole when nothing below it is owned any more; list items and map keys go
/// when they themselves are not owned.
fn prune(c: &mut Cursor, value: &mut Value, last: &FieldSet, owned: &FieldSet) -> Result<(), String> {
    let nothing = FieldSet::default();
    match value {
        Value::Object(map) => {
            if c.schema.map(&c.names) == MapType::Atomic {
                return Ok(());
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let pe = PathElement::field(&key);
                let Some(l) = last.child(&pe) else { continue };
                let Some(o) = owned.child(&pe) else {
                    map.remove(&key);
                    continue;
                };
                if !l.set.is_empty()
                    && let Some(child) = map.get_mut(&key)
                {
                    c.names.push(key.clone());
                    c.path.push(pe);
                    let result = prune(c, child, &l.set, &o.set);
                    c.names.pop();
                    c.path.pop();
                    result?;
                }
            }
        }
        Value::Array(items) => {
            let list = c.schema.list(&c.names);
            if list == ListType::Atomic {
                return Ok(());
            }
            let mut kept = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                let pe = c.schema.item_element(&c.names, &list, &item).map_err(|e| c.error(e))?;
                if let Some(l) = last.child(&pe) {
                    let o = owned.child(&pe);
                    if l.member && !o.is_some_and(|o| o.member) {
                        continue;
                    }
                    if !l.set.is_empty() {
                        c.path.push(pe);
                        let result = prune(c, &mut item, &l.set, o.map_or(&nothing, |o| &o.set));
                        c.path.pop();
                        result?;
                    }
                }
                kept.push(item);
            }
            *items = kept;
        }
        _ => {}
    }
    Ok(())
}

/// Null map values are dropped, as the typed round trip does.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The 409 kube-apiserver answers: one cause per field, managers sorted.
pub fn conflict_status(conflicts: &[Conflict]) -> Status {
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager.describe(),
            managed::path_string(&one.path)
        ),
        _ => {
            let mut by_manager: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
            for c in conflicts {
                by_manager
                    .entry(c.manager.identity())
                    .or_insert_with(|| (c.manager.describe(), Vec::new()))
                    .1
                    .push(managed::path_string(&c.path));
            }
            let mut lines = Vec::new();
            for (describe, paths) in by_manager.into_values() {
                lines.push(format!("conflicts with {describe}:"));
                lines.extend(paths.into_iter().map(|p| format!("- {p}")));
            }
            format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
        }
    };
    let mut status = Status::new(409, "Conflict", message);
    status.details.causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {}", c.manager.describe()),
            field: managed::path_string(&c.path),
        })
        .collect();
    status
}

/// The fields whose live values are still those of the client-side apply
/// annotation: taking them over from `kubectl apply` is not a conflict.
pub fn allowed_by_last_applied(schema: Schema, live: &Value, api_version: &str) -> Option<FieldSet> {
    let text = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .filter(|t| !t.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last["apiVersion"].as_str() != Some(api_version) {
        return None;
    }
    let set = managed::field_set(schema, &last, false).ok()?;
    let cmp = managed::compare(schema, &last, live).ok()?;
    Some(set.difference(&cmp.all()))
}

/// After a `kubectl` server-side apply, an existing client-side apply annotation
/// is rewritten to the applied configuration (dropped if it no longer fits).
fn update_last_applied(object: &mut Value, cfg: &Value) {
    let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if !annotations.contains_key(LAST_APPLIED) {
        return;
    }
    let mut applied = cfg.clone();
    if let Some(own) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        own.remove(LAST_APPLIED);
    }
    let mut text = applied.to_string();
    text.push('\n');
    annotations.insert(LAST_APPLIED.into(), Value::String(text));
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > MAX_ANNOTATIONS_SIZE {
        annotations.remove(LAST_APPLIED);
    }
}

/// 422 for `force` on a patch that is not an apply.
pub fn refuse_force(ctx: &Context) -> Result<(), Status> {
    if ctx.query.get("force").is_none() {
        return Ok(());
    }
    Err(Status::invalid(
        "PatchOptions",
        "meta.k8s.io",
        "",
        vec![Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: may not be specified for non-apply patch".into(),
            field: "force".into(),
        }],
    ))
}

/// The body: JSON, or YAML.
fn decode(body: &[u8]) -> Result<Value, Status> {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(_) => {
            let text =
                std::str::from_utf8(body).map_err(|_| Status::bad_request("error decoding YAML: body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| Status::bad_request(format!("error decoding YAML: {e}")))?
        }
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(json!({})),
        _ => Err(Status::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        )),
    }
}

/// `apps/v1, Kind=Deployment`, as Go prints a GroupVersionKind.
fn gvk(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

fn error_status(ctx: &Context, err: ApplyError) -> Status {
    let what = |which: &str, message: String| {
        let name = format!(
            "{}/{}",
            ctx.target.namespace.as_deref().unwrap_or_default(),
            ctx.target.name.as_deref().unwrap_or_default()
        );
        let gvk = gvk(&ctx.rtype.api_version(), &ctx.rtype.kind);
        // kube-apiserver 1.32 answers these with a plain 500.
        Status::new(
            500,
            "",
            format!("failed to create typed {which} object ({name}; {gvk}): {message}"),
        )
    };
    match err {
        ApplyError::Conflicts(conflicts) => conflict_status(&conflicts),
        ApplyError::Config(message) => what("patch", message),
        ApplyError::Live(message) => what("live", message),
    }
}

/// Handles an apply patch against `ctx`'s object.
pub async fn patch(ctx: &Context, body: &[u8]) -> Result<Response, Status> {
    let Some(manager) = ctx.query.get("fieldManager").map(str::to_string) else {
        return Err(Status::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        ));
    };
    managed::validate_field_manager("PatchOptions", &manager)?;
    let force = ctx.query.flag("force")?;
    ctx.query.dry_run()?;
    let mut cfg = decode(body)?;
    let (api_version, kind) = (cfg["apiVersion"].as_str(), cfg["kind"].as_str());
    if api_version != Some(&ctx.rtype.api_version()) || kind != Some(&ctx.rtype.kind) {
        return Err(Status::bad_request(format!(
            "invalid object type: {}",
            gvk(api_version.unwrap_or_default(), kind.unwrap_or_default())
        )));
    }
    if !cfg["metadata"]["managedFields"].is_null() {
        return Err(Status::bad_request("metadata.managedFields must be nil"));
    }
    let url_name = ctx.target.name.as_deref().unwrap_or_default();
    if let Some(name) = cfg["metadata"]["name"].as_str()
        && name != url_name
    {
        return Err(Status::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    if ctx.rtype.namespaced
        && let Some(ns) = cfg["metadata"]["namespace"].as_str()
        && !ns.is_empty()
        && Some(ns) != ctx.target.namespace.as_deref()
    {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    // An empty namespace is the URL's; a cluster-scoped object has none.
    if let Some(meta) = cfg.get_mut("metadata").and_then(Value::as_object_mut)
        && (!ctx.rtype.namespaced || meta.get("namespace").is_some_and(|ns| ns.is_null() || ns == ""))
    {
        meta.remove("namespace");
    }
    let cfg = cfg;
    let pinned = cfg["metadata"]["resourceVersion"].as_str().filter(|rv| !rv.is_empty());
    for _ in 0..5 {
        let result = match ctx.current().await {
            Ok((current, revision)) => {
                if let Some(rv) = pinned
                    && rv != revision.to_string()
                {
                    return Err(Status::stale(&ctx.rtype.resource, &ctx.rtype.group, url_name));
                }
                update(ctx, &cfg, &manager, force, current, revision).await
            }
            Err(status) if status.code == 404 => create(ctx, &cfg, &manager, force).await,
            Err(status) => Err(status),
        };
        // A write that raced another writer is applied again to the new object.
        let stale = Status::stale(&ctx.rtype.resource, &ctx.rtype.group, url_name);
        let raced = |s: &Status| *s == stale || s.reason == "AlreadyExists";
        match result {
            Err(status) if raced(&status) && pinned.is_none() => continue,
            other => return other,
        }
    }
    Err(Status::stale(&ctx.rtype.resource, &ctx.rtype.group, url_name))
}

async fn create(ctx: &Context, cfg: &Value, manager: &str, force: bool) -> Result<Response, Status> {
    let name = ctx.target.name.as_deref().unwrap_or_default();
    if ctx.target.subresource.is_some() {
        return Err(Status::not_found(&ctx.rtype.resource, &ctx.rtype.group, name));
    }
    if let Some(uid) = cfg["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
        return Err(Status::conflict(
            &ctx.rtype.resource,
            &ctx.rtype.group,
            name,
            &format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
        ));
    }
    if cfg["metadata"]["name"].as_str().is_none() {
        return Err(Status::bad_request(format!(
            "the name of the object () does not match the name on the URL ({name})"
        )));
    }
    let (api_version, now) = (ctx.rtype.api_version(), time::now_rfc3339());
    let applier = applier(ctx, manager, &api_version, "", force, &now);
    let applied = applier
        .apply(&json!({}), cfg, &Managers::default(), &|merged| merged)
        .map_err(|e| error_status(ctx, e))?;
    let mut object = applied.object;
    applied.managers.store_in(&mut object);
    ctx.create_object(object, false).await
}

async fn update(
    ctx: &Context,
    cfg: &Value,
    manager: &str,
    force: bool,
    current: Value,
    revision: i64,
) -> Result<Response, Status> {
    if let (Some(given), Some(uid)) = (cfg["metadata"]["uid"].as_str(), current["metadata"]["uid"].as_str())
        && !given.is_empty()
        && given != uid
    {
        let name = ctx.target.name.as_deref().unwrap_or_default();
        return Err(Status::invalid(
            &ctx.rtype.kind,
            &ctx.rtype.group,
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {}: field is immutable", Value::String(given.into())),
                field: "metadata.uid".into(),
            }],
        ));
    }
    let live = managed::without_managed_fields(&current);
    let mut managers =
        Managers::of(&current).map_err(|e| Status::internal(format!("failed to decode managed fields: {e}")))?;
    let api_version = ctx.rtype.api_version();
    let subresource = ctx.target.subresource.clone().unwrap_or_default();
    let now = time::now_rfc3339();
    let applier = applier(ctx, manager, &api_version, &subresource, force, &now);
    if managers.is_empty() {
        // An object nobody tracked yet: what it holds belongs to `before-first-apply`.
        let cmp =
            managed::compare(applier.schema, &json!({}), &live).map_err(|e| error_status(ctx, ApplyError::Live(e)))?;
        let mut entry = Entry::new("before-first-apply", Operation::Update, &api_version, &subresource);
        entry.set = applier.scope.filter(&managed::strip(&cmp.added.union(&cmp.modified)));
        entry.time = Some(now.clone());
        managers.upsert(entry);
        managers.retain_nonempty();
    }
    let finish = |merged: Value| ctx.updated(&live, merged);
    let applied = match applier.apply(&live, cfg, &managers, &finish) {
        Ok(applied) => applied,
        Err(ApplyError::Conflicts(conflicts)) if manager == "kubectl" => {
            let Some(allowed) = allowed_by_last_applied(applier.schema, &live, &api_version) else {
                return Err(conflict_status(&conflicts));
            };
            let remaining: Vec<Conflict> = conflicts.into_iter().filter(|c| !allowed.has(&c.path)).collect();
            if !remaining.is_empty() {
                return Err(conflict_status(&remaining));
            }
            let forced = Applier { force: true, ..applier };
            forced
                .apply(&live, cfg, &managers, &finish)
                .map_err(|e| error_status(ctx, e))?
        }
        Err(err) => return Err(error_status(ctx, err)),
    };
    let mut next = applied.object;
    applied.managers.store_in(&mut next);
    if manager == "kubectl" {
        update_last_applied(&mut next, cfg);
    }
    ctx.write(&current, revision, next).await
}

fn applier<'a>(
    ctx: &'a Context,
    manager: &'a str,
    api_version: &'a str,
    subresource: &'a str,
    force: bool,
    now: &'a str,
) -> Applier<'a> {
    Applier {
        schema: Schema::of(&ctx.rtype),
        scope: Scope::of(&ctx.rtype, ctx.target.subresource.as_deref()),
        manager,
        api_version,
        subresource,
        force,
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applier<'a>(kind: &'a str, manager: &'a str, force: bool) -> Applier<'a> {
        Applier {
            schema: Schema::builtin(kind),
            scope: Scope::Main {
                status_subresource: false,
            },
            manager,
            api_version: if kind == "Deployment" { "apps/v1" } else { "v1" },
            subresource: "",
            force,
            now: "2024-01-01T00:00:00Z",
        }
    }

    /// Applies `cfg` as `manager` to `object` (with managedFields), like the handler.
    fn apply(object: &Value, manager: &str, force: bool, cfg: Value) -> Result<Value, ApplyError> {
        let kind = cfg["kind"].as_str().unwrap().to_string();
        let live = managed::without_managed_fields(object);
        let managers = Managers::of(object).unwrap();
        let applied = applier(&kind, manager, force).apply(&live, &cfg, &managers, &|v| v)?;
        let mut out = applied.object;
        applied.managers.store_in(&mut out);
        Ok(out)
    }

    fn entry(object: &Value, manager: &str) -> Value {
        object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["manager"] == manager)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn fields(object: &Value, manager: &str) -> Value {
        entry(object, manager)["fieldsV1"].clone()
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    fn conflicts(result: Result<Value, ApplyError>) -> Status {
        match result {
            Err(ApplyError::Conflicts(c)) => conflict_status(&c),
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn apply_creates_updates_and_removes_what_it_no_longer_applies() {
        let created = apply(&json!({}), "a", false, cm(json!({"x": "1", "y": "2"}))).unwrap();
        assert_eq!(created["data"], json!({"x": "1", "y": "2"}));
        let entry = &created["metadata"]["managedFields"][0];
        assert_eq!(
            (&entry["manager"], &entry["operation"], &entry["apiVersion"]),
            (&json!("a"), &json!("Apply"), &json!("v1"))
        );
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert_eq!(entry["time"], "2024-01-01T00:00:00Z");
        assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:x": {}, "f:y": {}}}));

        // Omitting `y` removes it; changing `x` just changes it.
        let updated = apply(&created, "a", false, cm(json!({"x": "9"}))).unwrap();
        assert_eq!(updated["data"], json!({"x": "9"}));
        assert_eq!(fields(&updated, "a"), json!({"f:data": {"f:x": {}}}));

        // Omitting everything removes `data` altogether.
        let emptied = apply(
            &updated,
            "a",
            false,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        )
        .unwrap();
        assert!(emptied.get("data").is_none(), "{emptied}");
        assert_eq!(emptied["metadata"]["name"], "c");
        assert!(emptied["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn another_managers_fields_conflict_unless_forced() {
        let live = apply(&json!({}), "a", false, cm(json!({"x": "1", "y": "2"}))).unwrap();
        // Same value: shared ownership, no conflict.
        let shared = apply(&live, "b", false, cm(json!({"x": "1"}))).unwrap();
        assert_eq!(fields(&shared, "b"), json!({"f:data": {"f:x": {}}}));
        assert_eq!(fields(&shared, "a"), json!({"f:data": {"f:x": {}, "f:y": {}}}));
        assert!(entry(&shared, "b").get("time").is_none(), "no change, no time");

        let status = conflicts(apply(&shared, "b", false, cm(json!({"x": "2", "y": "3"}))));
        assert_eq!(status.code, 409);
        assert_eq!(
            status.to_json(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.x\n- .data.y","#,
                r#""reason":"Conflict","details":{"causes":["#,
                r#"{"reason":"FieldManagerConflict","message":"conflict with \"a\"","field":".data.x"},"#,
                r#"{"reason":"FieldManagerConflict","message":"conflict with \"a\"","field":".data.y"}]},"code":409}"#,
                "\n"
            )
        );
        let one = conflicts(apply(&shared, "c", false, cm(json!({"y": "3"}))));
        assert_eq!(
            one.message,
            r#"Apply failed with 1 conflict: conflict with "a": .data.y"#
        );

        // Forced: the value changes and ownership moves.
        let forced = apply(&shared, "b", true, cm(json!({"x": "2"}))).unwrap();
        assert_eq!(forced["data"], json!({"x": "2", "y": "2"}));
        assert_eq!(fields(&forced, "a"), json!({"f:data": {"f:y": {}}}));
        assert_eq!(fields(&forced, "b"), json!({"f:data": {"f:x": {}}}));

        // A field still owned by another manager stays when one owner lets go.
        let released = apply(&shared, "b", false, json!({"apiVersion": "v1", "kind": "ConfigMap"})).unwrap();
        assert_eq!(released["data"]["x"], "1");
        assert_eq!(fields(&released, "b"), Value::Null);
    }

    #[test]
    fn update_owners_conflict_too() {
        let mut live = cm(json!({"x": "1"}));
        let mut entry = Entry::new("kubectl-edit", Operation::Update, "v1", "");
        entry.set.insert(&[PathElement::field("data"), PathElement::field("x")]);
        Managers(vec![entry]).store_in(&mut live);
        let status = conflicts(apply(&live, "kubectl", false, cm(json!({"x": "2"}))));
        assert_eq!(
            status.message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.x"#
        );
        assert_eq!(
            status.details.causes[0].message,
            r#"conflict with "kubectl-edit" using v1"#
        );
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn two_managers_share_a_list_map() {
        let base = apply(
            &json!({}),
            "app",
            false,
            deployment(json!([{"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]}])),
        )
        .unwrap();
        // A second manager adds its own container: the first one's stays.
        let both = apply(
            &base,
            "sidecar",
            false,
            deployment(json!([{"name": "proxy", "image": "proxy:1"}])),
        )
        .unwrap();
        let containers = &both["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["name"], "app");
        assert_eq!(containers[1]["name"], "proxy");
        assert_eq!(
            fields(&both, "sidecar"),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(
            fields(&both, "app")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );

        // The first manager updates its container; the sidecar is untouched.
        let bumped = apply(
            &both,
            "app",
            false,
            deployment(json!([{"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]}])),
        )
        .unwrap();
        let containers = &bumped["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(containers[1], json!({"name": "proxy", "image": "proxy:1"}));

        // Changing the other's item conflicts on exactly that field.
        let status = conflicts(apply(
            &bumped,
            "app",
            false,
            deployment(
                json!([{"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]}, {"name": "proxy", "image": "proxy:2"}]),
            ),
        ));
        assert_eq!(
            status.message,
            r#"Apply failed with 1 conflict: conflict with "sidecar": .spec.template.spec.containers[name="proxy"].image"#
        );

        // The sidecar manager drops its container: only that item goes.
        let dropped = apply(&bumped, "sidecar", false, deployment(json!([]))).unwrap();
        let containers = dropped["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "app");
        assert_eq!(fields(&dropped, "sidecar"), Value::Null);
    }

    #[test]
    fn list_merge_order_follows_the_configuration() {
        let schema = Schema::builtin("ConfigMap");
        let fin = |items: Value| json!({"metadata": {"finalizers": items}});
        let merged = merge(schema, &fin(json!(["a", "b", "c"])), &fin(json!(["c", "d"]))).unwrap();
        assert_eq!(merged, fin(json!(["a", "b", "c", "d"])));
        let merged = merge(schema, &fin(json!(["a", "b"])), &fin(json!(["b", "a"]))).unwrap();
        assert_eq!(merged, fin(json!(["b", "a"])));
        // Atomic lists are replaced, and a selector (atomic struct) too.
        let d = Schema::builtin("Deployment");
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"spec": {"tolerations": [{"key": "x"}]}}}});
        let cfg = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "template": {"spec": {"tolerations": [{"key": "y"}]}}}});
        assert_eq!(merge(d, &live, &cfg).unwrap(), cfg);
    }

    #[test]
    fn custom_resources_merge_maps_and_replace_lists() {
        let live = json!({"spec": {"a": 1, "list": [1, 2], "nested": {"x": 1}}});
        let cfg = json!({"spec": {"b": 2, "list": [3], "nested": {"y": 2}}});
        assert_eq!(
            merge(Schema::custom(None), &live, &cfg).unwrap(),
            json!({"spec": {"a": 1, "b": 2, "list": [3], "nested": {"x": 1, "y": 2}}})
        );
    }

    #[test]
    fn custom_resources_follow_their_schema_markers() {
        let crd = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"}}}}});
        let schema = Schema::custom(Some(&crd));
        let live = json!({"spec": {"ports": [{"name": "a", "port": 1}], "tags": ["x"], "selector": {"a": "1"}}});
        let cfg = json!({"spec": {"ports": [{"name": "b", "port": 2}], "tags": ["y"], "selector": {"b": "2"}}});
        assert_eq!(
            merge(schema, &live, &cfg).unwrap(),
            json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}], "tags": ["x", "y"], "selector": {"b": "2"}}})
        );
        assert_eq!(
            managed::field_set(schema, &cfg, true).unwrap().to_json(),
            json!({"f:spec": {"f:ports": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:port": {}}},
                "f:selector": {}, "f:tags": {"v:\"y\"": {}}}})
        );
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply() {
        let last =
            r#"{"apiVersion":"v1","data":{"x":"1"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"c"}}"#;
        let mut live = cm(json!({"x": "1"}));
        live["metadata"]["annotations"] = json!({LAST_APPLIED: last});
        let allowed = allowed_by_last_applied(Schema::builtin("ConfigMap"), &live, "v1").unwrap();
        assert!(allowed.has(&[PathElement::field("data"), PathElement::field("x")]));
        live["data"]["x"] = json!("scaled");
        let allowed = allowed_by_last_applied(Schema::builtin("ConfigMap"), &live, "v1").unwrap();
        assert!(!allowed.has(&[PathElement::field("data"), PathElement::field("x")]));

        let mut object = cm(json!({"x": "1"}));
        object["metadata"]["annotations"] = json!({LAST_APPLIED: last, "keep": "me"});
        update_last_applied(&mut object, &cm(json!({"x": "2"})));
        assert_eq!(
            object["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"v1\",\"data\":{\"x\":\"2\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\"}}\n"
        );
        assert_eq!(object["metadata"]["annotations"]["keep"], "me");
    }

    #[test]
    fn bad_configurations_are_errors() {
        let dup = deployment(json!([{"name": "a"}, {"name": "a"}]));
        match apply(&json!({}), "m", false, dup) {
            Err(ApplyError::Config(message)) => {
                assert_eq!(
                    message,
                    r#".spec.template.spec.containers: duplicate entries for key [name="a"]"#
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gvk("apps/v1", "Deployment"), "apps/v1, Kind=Deployment");
        assert_eq!(gvk("v1", "ConfigMap"), "/v1, Kind=ConfigMap");
        assert_eq!(gvk("", ""), "/, Kind=");
        assert!(decode(b"apiVersion: v1\nkind: ConfigMap\n").unwrap()["kind"] == "ConfigMap");
        assert_eq!(decode(b"- 1").unwrap_err().code, 400);
    }

    /// The whole request path in-process: router, handlers and a real store.
    mod requests {
        use super::super::super::{Api, Router, auth, bootstrap, kinds, router};
        use crate::store::Store;
        use axum::body::Body;
        use axum::http::Request;
        use serde_json::{Value, json};
        use std::sync::Arc;
        use tower::ServiceExt;

        struct Harness {
            _dir: tempfile::TempDir,
            app: Router,
        }

        async fn harness() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("state.db"), crate::store::Options::default()).unwrap();
            let api = Api::new(store, "127.0.0.1:6443".into(), kinds::default_ranges());
            bootstrap(&api).await.unwrap();
            Harness {
                _dir: dir,
                app: router(api, Arc::new(auth::Authenticator::new())),
            }
        }

        const CM: &str = "/api/v1/namespaces/default/configmaps";

        impl Harness {
            async fn call(&self, method: &str, uri: &str, content_type: &str, body: &str) -> (u16, String) {
                let request = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", content_type)
                    .header("user-agent", "kubectl/v1.32.4 (linux/amd64) kubernetes/abc")
                    .extension(auth::User::new("tester", ["system:masters"]))
                    .body(Body::from(body.to_string()))
                    .unwrap();
                let response = self.app.clone().oneshot(request).await.unwrap();
                let code = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
                (code, String::from_utf8(bytes.to_vec()).unwrap())
            }

            async fn apply(&self, uri: &str, body: &str) -> (u16, Value) {
                let (code, text) = self.call("PATCH", uri, super::APPLY_PATCH, body).await;
                (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
        }

        fn managers(object: &Value) -> Vec<(String, String)> {
            object["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let name = e["manager"].as_str().unwrap().to_string();
                    (name, e["operation"].as_str().unwrap().to_string())
                })
                .collect()
        }

        #[tokio::test]
        async fn apply_patches_create_update_and_refuse_like_kube_apiserver() {
            let h = harness().await;
            let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: \"1\"\n";
            let (code, body) = h.call("PATCH", &format!("{CM}/a"), super::APPLY_PATCH, yaml).await;
            assert_eq!(code, 422);
            assert_eq!(
                body,
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch","#,
                    r#""reason":"Invalid","details":{"group":"meta.k8s.io","kind":"PatchOptions","causes":[{"reason":"FieldValueRequired","#,
                    r#""message":"Required value: is required for apply patch","field":"fieldManager"}]},"code":422}"#,
                    "\n"
                )
            );

            // Create (201), then update (200); YAML or JSON bodies.
            let (code, created) = h.apply(&format!("{CM}/a?fieldManager=one"), yaml).await;
            assert_eq!(code, 201, "{created}");
            assert_eq!(created["metadata"]["namespace"], "default");
            let entry = &created["metadata"]["managedFields"][0];
            assert_eq!(entry["manager"], "one");
            assert_eq!(entry["operation"], "Apply");
            assert_eq!(entry["apiVersion"], "v1");
            assert_eq!(entry["fieldsType"], "FieldsV1");
            assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:x": {}}}));
            assert!(entry["time"].is_string());
            let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}});
            let (code, updated) = h.apply(&format!("{CM}/a?fieldManager=one"), &cfg.to_string()).await;
            assert_eq!((code, &updated["data"]), (200, &json!({"x": "1", "y": "2"})));

            // Conflicts with the exact body kube-apiserver sends.
            let (code, body) = h
                .call(
                    "PATCH",
                    &format!("{CM}/a?fieldManager=two"),
                    super::APPLY_PATCH,
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"x":"2"}}"#,
                )
                .await;
            assert_eq!(code, 409);
            assert_eq!(
                body,
                concat!(
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                    r#""message":"Apply failed with 1 conflict: conflict with \"one\": .data.x","reason":"Conflict","#,
                    r#""details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"one\"","field":".data.x"}]},"code":409}"#,
                    "\n"
                )
            );
            let (code, forced) = h
                .apply(
                    &format!("{CM}/a?fieldManager=two&force=true"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"x":"2"}}"#,
                )
                .await;
            assert_eq!((code, &forced["data"]["x"]), (200, &json!("2")));
            assert_eq!(
                managers(&forced),
                [("one".into(), "Apply".into()), ("two".into(), "Apply".into())]
            );

            // What the request surface refuses.
            let bad = [
                (
                    r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a"}}"#,
                    "invalid object type: /v1, Kind=Secret",
                ),
                (
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","managedFields":[]}}"#,
                    "metadata.managedFields must be nil",
                ),
                (
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}"#,
                    "the name of the object (b) does not match the name on the URL (a)",
                ),
                (
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"kube-system"}}"#,
                    "the namespace of the provided object does not match the namespace sent on the request",
                ),
            ];
            for (body, message) in bad {
                let (code, status) = h.apply(&format!("{CM}/a?fieldManager=one"), body).await;
                assert_eq!((code, status["message"].as_str()), (400, Some(message)), "{body}");
            }
            let (code, _) = h.apply(&format!("{CM}/a?fieldManager=one"), "a: [b").await;
            assert_eq!(code, 400);
            let (code, status) = h
                .apply(
                    &format!("{CM}/a?fieldManager=one"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","uid":"other"}}"#,
                )
                .await;
            assert_eq!(code, 422, "{status}");
            let (code, status) = h
                .apply(
                    &format!("{CM}/fresh?fieldManager=one"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fresh","uid":"u"}}"#,
                )
                .await;
            assert_eq!(code, 409, "{status}");
            assert!(status["message"].as_str().unwrap().contains("uid mismatch"), "{status}");
            // An empty namespace in the body is the URL's.
            let (code, kept) = h
                .apply(
                    &format!("{CM}/a?fieldManager=one"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":""},"data":{"x":"2","y":"2"}}"#,
                )
                .await;
            assert_eq!(
                (code, &kept["metadata"]["namespace"]),
                (200, &json!("default")),
                "{kept}"
            );
            let (code, status) = h
                .apply(
                    "/api/v1/namespaces/nowhere/configmaps/a?fieldManager=one",
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#,
                )
                .await;
            assert_eq!(
                (code, status["message"].as_str()),
                (404, Some(r#"namespaces "nowhere" not found"#))
            );
            let (code, status) = h
                .call(
                    "PATCH",
                    &format!("{CM}/a?force=true"),
                    "application/merge-patch+json",
                    "{}",
                )
                .await;
            assert_eq!(code, 422, "{status}");
            assert!(
                status.contains("force: Forbidden: may not be specified for non-apply patch"),
                "{status}"
            );
        }

        #[tokio::test]
        async fn other_writes_record_update_entries() {
            let h = harness().await;
            let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"app":"x"}},"data":{"a":"1"}}"#;
            let (code, text) = h
                .call("POST", &format!("{CM}?fieldManager=creator"), "application/json", body)
                .await;
            assert_eq!(code, 201, "{text}");
            let created: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(managers(&created), [("creator".into(), "Update".into())]);
            assert_eq!(
                created["metadata"]["managedFields"][0]["fieldsV1"],
                json!({"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
            );

            // The manager defaults to the User-Agent's product name.
            let (code, text) = h
                .call(
                    "PATCH",
                    &format!("{CM}/c"),
                    "application/merge-patch+json",
                    r#"{"data":{"b":"2"}}"#,
                )
                .await;
            assert_eq!(code, 200, "{text}");
            let patched: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                managers(&patched),
                [("creator".into(), "Update".into()), ("kubectl".into(), "Update".into())]
            );

            // An apply then conflicts with the Update owners.
            let (code, status) = h
                .apply(
                    &format!("{CM}/c?fieldManager=applier"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"9","b":"9"}}"#,
                )
                .await;
            assert_eq!(code, 409);
            assert_eq!(
                status["message"],
                "Apply failed with 2 conflicts: conflicts with \"creator\" using v1:\n- .data.a\nconflicts with \"kubectl\" using v1:\n- .data.b"
            );

            // `managedFields: []` in an update resets them: the object is untracked.
            let mut reset = patched.clone();
            reset["metadata"]["managedFields"] = json!([]);
            reset["data"]["a"] = json!("3");
            let (code, text) = h
                .call("PUT", &format!("{CM}/c"), "application/json", &reset.to_string())
                .await;
            assert_eq!(code, 200, "{text}");
            let untracked: Value = serde_json::from_str(&text).unwrap();
            assert!(untracked["metadata"].get("managedFields").is_none(), "{untracked}");

            // Applying to an untracked object: what it holds is `before-first-apply`'s.
            let (code, status) = h
                .apply(
                    &format!("{CM}/c?fieldManager=applier"),
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"4"}}"#,
                )
                .await;
            assert_eq!(code, 409);
            assert_eq!(
                status["message"],
                "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .data.a"
            );
        }

        #[tokio::test]
        async fn status_applies_are_their_own_entries() {
            let h = harness().await;
            let deploy = "/apis/apps/v1/namespaces/default/deployments/web";
            let spec = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"replicas": 5}});
            let (code, created) = h.apply(&format!("{deploy}?fieldManager=user"), &spec.to_string()).await;
            assert_eq!(code, 201, "{created}");
            assert!(
                created.get("status").is_none_or(|s| s.get("replicas").is_none()),
                "{created}"
            );
            assert!(
                created["metadata"]["managedFields"][0]["fieldsV1"]
                    .get("f:status")
                    .is_none()
            );

            let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}});
            let (code, updated) = h
                .apply(&format!("{deploy}/status?fieldManager=controller"), &status.to_string())
                .await;
            assert_eq!(code, 200, "{updated}");
            assert_eq!(updated["status"]["replicas"], 1);
            assert_eq!(updated["spec"]["replicas"], 1);
            let entry = updated["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["manager"] == "controller")
                .unwrap()
                .clone();
            assert_eq!(entry["subresource"], "status");
            assert_eq!(
                entry["fieldsV1"],
                json!({"f:status": {"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
            );
        }
    }
}
