//! `metadata.managedFields`: which field manager set which fields of an object.
//!
//! A field set is a trie of path elements: `f:<name>` (a struct field or map key),
//! `k:{…}` (a list-map item by its key fields), `v:<json>` (a set item) and `i:<n>`
//! (an index). On the wire it is FieldsV1 JSON, where `{}` marks a member and
//! `".": {}` a member that also has children. The shape of an object (which lists
//! are keyed maps, sets or atomic, which maps are atomic structs or free maps)
//! comes from the type table in `patch` for built-in kinds, and from the CRD's
//! structural schema for custom resources (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`): without those
//! markers their lists are atomic and their maps granular.
//!
//! Every create, update and non-apply patch records an `Update` entry for its field
//! manager (`record_update`); server-side apply (`apply`) records `Apply` entries
//! with the same sets, walkers and manager list.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use axum::http::header;
use serde_json::{Map, Value};

use super::handlers::Context;
use super::patch::{self, ListType, MapType};
use super::resources::ResourceType;
use super::status::{Cause, Status};
use super::time;

/// Longest field manager name accepted.
pub const MAX_MANAGER_LENGTH: usize = 128;

/// Most `Update` entries kept; older ones merge into `ancient-changes`.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// One step of a path into an object.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// A list-map item, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// A set item.
    Value(Value),
    /// An item of an atomic list, by position.
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    pub fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 key: `f:name`, `k:{"name":"x"}`, `v:"x"` or `i:3`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let map: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(map))
            }
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; `None` for a prefix this server does not know (dropped).
    pub fn decode(key: &str) -> Result<Option<PathElement>, String> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 || bytes[1] != b':' {
            return Err(format!("{key:?} is not a valid path element"));
        }
        let payload = &key[2..];
        let invalid = |e: serde_json::Error| format!("{key:?} is not a valid path element: {e}");
        Ok(Some(match bytes[0] {
            b'f' => PathElement::Field(payload.to_string()),
            b'k' => {
                let fields: Map<String, Value> = serde_json::from_str(payload).map_err(invalid)?;
                PathElement::Key(fields.into_iter().collect())
            }
            b'v' => PathElement::Value(serde_json::from_str(payload).map_err(invalid)?),
            b'i' => PathElement::Index(
                payload
                    .parse()
                    .map_err(|_| format!("{key:?} is not a valid path element"))?,
            ),
            _ => return Ok(None),
        }))
    }
}

impl Ord for PathElement {
    /// structured-merge-diff's order: fields (bytewise), then keys (field by field,
    /// name then value), then set values, then indices.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let order = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if order != Ordering::Equal {
                        return order;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    /// The human form used in conflicts and errors: `.name`, `[name="x"]`, `[="v"]`, `[3]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", go_string(v))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", go_string(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A value as structured-merge-diff prints it: strings quoted, the rest as is.
fn go_string(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(go_string).collect::<Vec<_>>().join(",")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}={}", go_string(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// `.spec.containers[name="app"].image`
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A total order on values: numbers (compared as numbers), strings, booleans,
/// lists, maps, then null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x.cmp(&y);
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x.cmp(&y);
            }
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let order = compare_values(a, b);
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((ak, av), (bk, bv)) in x.iter().zip(y) {
                let order = ak.cmp(bk).then_with(|| compare_values(av, bv));
                if order != Ordering::Equal {
                    return order;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Deep equality with numbers compared by value (`1` equals `1.0`).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// A set of paths into an object, as a trie.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    children: BTreeMap<PathElement, Node>,
}

/// One element of a [`FieldSet`]: whether the path that ends here is in the set,
/// and the paths below it. Nodes that are neither are never stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub member: bool,
    pub set: FieldSet,
}

impl Node {
    fn is_empty(&self) -> bool {
        !self.member && self.set.is_empty()
    }
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn child(&self, element: &PathElement) -> Option<&Node> {
        self.children.get(element)
    }

    /// Adds `node` under `element` (merging with what is there); empty nodes are dropped.
    pub fn insert_node(&mut self, element: PathElement, node: Node) {
        if node.is_empty() {
            return;
        }
        match self.children.get_mut(&element) {
            Some(existing) => {
                existing.member |= node.member;
                existing.set = existing.set.union(&node.set);
            }
            None => {
                self.children.insert(element, node);
            }
        }
    }

    /// Adds `path` as a member. The empty path (the whole object) is never tracked.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = self.children.entry(first.clone()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.set.insert(rest);
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match self.children.get(first) {
            Some(node) if rest.is_empty() => node.member,
            Some(node) => node.set.has(rest),
            None => false,
        }
    }

    pub fn remove_child(&mut self, element: &PathElement) {
        self.children.remove(element);
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (element, node) in &other.children {
            out.insert_node(element.clone(), node.clone());
        }
        out
    }

    /// The members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (element, node) in &self.children {
            let rest = match other.children.get(element) {
                None => node.clone(),
                Some(o) => Node {
                    member: node.member && !o.member,
                    set: node.set.difference(&o.set),
                },
            };
            out.insert_node(element.clone(), rest);
        }
        out
    }

    /// The members of both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (element, node) in &self.children {
            if let Some(o) = other.children.get(element) {
                let both = Node {
                    member: node.member && o.member,
                    set: node.set.intersection(&o.set),
                };
                out.insert_node(element.clone(), both);
            }
        }
        out
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (element, node) in &self.children {
            prefix.push(element.clone());
            if node.member {
                out.push(prefix.clone());
            }
            node.set.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// FieldsV1 as a JSON value.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (element, node) in &self.children {
            let mut inner = match node.set.to_json() {
                Value::Object(inner) => inner,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            map.insert(element.encode(), Value::Object(inner));
        }
        Value::Object(map)
    }

    #[cfg(test)]
    /// FieldsV1 as text, keys in structured-merge-diff's order (`.` first, then
    /// fields, keys, values, indices), as kube-apiserver writes it.
    pub fn to_json_string(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for (element, node) in &self.children {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&Value::String(element.encode()).to_string());
            out.push(':');
            let inner = node.set.to_json_string();
            if node.member && !node.set.is_empty() {
                out.push_str("{\".\":{},");
                out.push_str(&inner[1..]);
            } else {
                out.push_str(&inner);
            }
        }
        out.push('}');
        out
    }

    /// Parses FieldsV1.
    pub fn from_json(value: &Value) -> Result<FieldSet, String> {
        let map = value.as_object().ok_or("FieldsV1 must be a JSON object")?;
        let mut out = FieldSet::default();
        for (key, child) in map {
            if key == "." {
                continue;
            }
            let Some(element) = PathElement::decode(key)? else {
                continue;
            };
            let inner = child
                .as_object()
                .ok_or_else(|| format!("FieldsV1 entry {key:?} must be an object"))?;
            let node = Node {
                member: inner.is_empty() || inner.contains_key("."),
                set: FieldSet::from_json(child)?,
            };
            out.insert_node(element, node);
        }
        Ok(out)
    }

    /// Keeps only what is under the field `name`.
    fn only_field(&self, name: &str) -> FieldSet {
        let mut out = FieldSet::default();
        let element = PathElement::field(name);
        if let Some(node) = self.children.get(&element) {
            out.insert_node(element, node.clone());
        }
        out
    }
}

/// The shape of an object, for one resource type.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    kind: &'a str,
    /// Built-in kinds are typed throughout; custom resources only in `metadata`.
    typed: bool,
    /// A custom resource's structural schema (`openAPIV3Schema`), if any.
    crd: Option<&'a Value>,
}

impl<'a> Schema<'a> {
    pub fn of(rtype: &'a ResourceType) -> Schema<'a> {
        Schema {
            kind: &rtype.kind,
            typed: rtype.is_builtin(),
            crd: rtype.custom.as_ref().map(|c| &c.schema).filter(|s| s.is_object()),
        }
    }

    /// A built-in kind.
    #[cfg(test)]
    pub fn builtin(kind: &'a str) -> Schema<'a> {
        Schema {
            kind,
            typed: true,
            crd: None,
        }
    }

    /// A custom resource with this schema (`None`: lists atomic, maps granular).
    #[cfg(test)]
    pub fn custom(crd: Option<&'a Value>) -> Schema<'a> {
        Schema {
            kind: "",
            typed: false,
            crd,
        }
    }

    fn typed_at(&self, names: &[String]) -> bool {
        self.typed || names.first().is_some_and(|n| n == "metadata")
    }

    /// The CRD schema node of the field at `names` (list items not descended into).
    fn crd_node(&self, names: &[String]) -> Option<&'a Value> {
        let mut node = self.crd?;
        for name in names {
            if let Some(items) = node.get("items").filter(|i| i.is_object()) {
                node = items;
            }
            node = match node.get("properties").and_then(|p| p.get(name)) {
                Some(field) => field,
                None => node.get("additionalProperties").filter(|a| a.is_object())?,
            };
        }
        Some(node)
    }

    /// The topology of the list at `names` (the field names from the root).
    pub(crate) fn list(&self, names: &[String]) -> ListType {
        if self.typed_at(names) {
            return patch::list_type(self.kind, names);
        }
        let Some(node) = self.crd_node(names) else {
            return ListType::Atomic;
        };
        match node["x-kubernetes-list-type"].as_str() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        }
    }

    /// The topology of the map at `names` (for list items, the list's names).
    pub(crate) fn map(&self, names: &[String]) -> MapType {
        if self.typed_at(names) && !names.is_empty() {
            return patch::map_type(names);
        }
        if self.typed {
            return MapType::Struct;
        }
        let Some(mut node) = self.crd_node(names) else {
            return MapType::Free;
        };
        if let Some(items) = node.get("items").filter(|i| i.is_object()) {
            node = items;
        }
        if node["x-kubernetes-map-type"] == "atomic" {
            MapType::Atomic
        } else if node.get("properties").is_some() {
            MapType::Struct
        } else {
            MapType::Free
        }
    }

    /// The default of a list-map key field an item leaves out.
    fn key_default(&self, names: &[String], key: &str) -> Option<Value> {
        if self.typed_at(names) {
            return patch::key_default(key).map(|d| Value::String(d.into()));
        }
        let node = self.crd_node(names)?;
        node["items"]["properties"][key].get("default").cloned()
    }

    /// The path element of an item of the associative list at `names`.
    pub(crate) fn item_element(&self, names: &[String], list: &ListType, item: &Value) -> Result<PathElement, String> {
        match list {
            ListType::Map(keys) => {
                let map = item
                    .as_object()
                    .ok_or("associative list with keys has an element that is not a map")?;
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match map.get(key).filter(|v| !v.is_null()) {
                        Some(v) => v.clone(),
                        None => match self.key_default(names, key) {
                            Some(default) => default,
                            None => {
                                return Err(format!(
                                    "associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                                ));
                            }
                        },
                    };
                    fields.push((key.to_string(), value));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(fields))
            }
            _ => Ok(PathElement::Value(item.clone())),
        }
    }
}

/// What a walk is at: the field names (for the schema) and the full path.
pub(crate) struct Cursor<'s> {
    pub schema: Schema<'s>,
    pub names: Vec<String>,
    pub path: Path,
}

impl<'s> Cursor<'s> {
    pub fn new(schema: Schema<'s>) -> Self {
        Cursor {
            schema,
            names: Vec::new(),
            path: Vec::new(),
        }
    }

    pub fn error(&self, message: impl fmt::Display) -> String {
        if self.path.is_empty() {
            message.to_string()
        } else {
            format!("{}: {message}", path_string(&self.path))
        }
    }

    /// The items of an associative list with their path elements.
    pub fn elements<'v>(&self, list: &ListType, items: &'v [Value]) -> Result<Vec<(PathElement, &'v Value)>, String> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.schema
                    .item_element(&self.names, list, item)
                    .map(|pe| (pe, item))
                    .map_err(|e| self.error(format!("element {i}: {e}")))
            })
            .collect()
    }

    /// The fields `value` sets below the cursor, and whether `value` is a leaf.
    fn field_set(&mut self, value: &Value, strict: bool) -> Result<(bool, FieldSet), String> {
        let mut set = FieldSet::default();
        match value {
            Value::Array(items) => {
                let list = self.schema.list(&self.names);
                if list == ListType::Atomic {
                    return Ok((true, set));
                }
                let elements = self.elements(&list, items)?;
                let mut seen = BTreeSet::new();
                let mut duplicates = BTreeSet::new();
                for (pe, _) in &elements {
                    if !seen.insert(pe.clone()) {
                        if strict {
                            return Err(self.error(format!("duplicate entries for key {pe}")));
                        }
                        duplicates.insert(pe.clone());
                    }
                }
                for pe in &duplicates {
                    set.insert(std::slice::from_ref(pe));
                }
                for (pe, item) in elements {
                    if duplicates.contains(&pe) {
                        continue;
                    }
                    self.path.push(pe.clone());
                    let (_, children) = self.field_set(item, strict)?;
                    self.path.pop();
                    set.insert_node(
                        pe,
                        Node {
                            member: true,
                            set: children,
                        },
                    );
                }
                Ok((false, set))
            }
            Value::Object(map) => {
                let kind = self.schema.map(&self.names);
                if kind == MapType::Atomic {
                    return Ok((true, set));
                }
                for (key, child) in map {
                    self.names.push(key.clone());
                    self.path.push(PathElement::field(key));
                    let result = self.field_set(child, strict);
                    self.names.pop();
                    self.path.pop();
                    let (leaf, children) = result?;
                    let member = leaf
                        || child.is_null()
                        || child.as_object().is_some_and(Map::is_empty)
                        || kind == MapType::Free;
                    set.insert_node(PathElement::field(key), Node { member, set: children });
                }
                Ok((false, set))
            }
            _ => Ok((true, set)),
        }
    }

    /// Whether the pair is compared (and merged) as one value.
    fn is_leaf(&self, lhs: Option<&Value>, rhs: Option<&Value>) -> bool {
        let empty = |v: Option<&Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            Some(_) => false,
        };
        match (lhs, rhs) {
            (Some(Value::Array(_)), None)
            | (None, Some(Value::Array(_)))
            | (Some(Value::Array(_)), Some(Value::Array(_))) => {
                self.schema.list(&self.names) == ListType::Atomic || empty(lhs) && empty(rhs)
            }
            (Some(Value::Object(_)), None)
            | (None, Some(Value::Object(_)))
            | (Some(Value::Object(_)), Some(Value::Object(_))) => {
                self.schema.map(&self.names) == MapType::Atomic || empty(lhs) && empty(rhs)
            }
            _ => true,
        }
    }

    fn compare(&mut self, lhs: Option<&Value>, rhs: Option<&Value>, out: &mut Comparison) -> Result<(), String> {
        if self.is_leaf(lhs, rhs) {
            match (lhs, rhs) {
                (None, Some(_)) => out.added.insert(&self.path),
                (Some(_), None) => out.removed.insert(&self.path),
                (Some(a), Some(b)) if !values_equal(a, b) => out.modified.insert(&self.path),
                _ => {}
            }
            return Ok(());
        }
        match lhs.or(rhs) {
            Some(Value::Object(_)) => {
                let (l, r) = (lhs.and_then(Value::as_object), rhs.and_then(Value::as_object));
                let keys: BTreeSet<&String> = l.into_iter().chain(r).flat_map(Map::keys).collect();
                for key in keys {
                    self.names.push(key.clone());
                    self.path.push(PathElement::field(key));
                    let result = self.compare(l.and_then(|m| m.get(key)), r.and_then(|m| m.get(key)), out);
                    self.names.pop();
                    self.path.pop();
                    result?;
                }
            }
            Some(Value::Array(_)) => {
                let list = self.schema.list(&self.names);
                let empty = Vec::new();
                let l = self.elements(&list, lhs.and_then(Value::as_array).unwrap_or(&empty))?;
                let r = self.elements(&list, rhs.and_then(Value::as_array).unwrap_or(&empty))?;
                let mut by_element: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
                for (pe, item) in l {
                    by_element.entry(pe).or_default().0.push(item);
                }
                for (pe, item) in r {
                    by_element.entry(pe).or_default().1.push(item);
                }
                for (pe, (l, r)) in by_element {
                    self.path.push(pe);
                    let result = match (l.len(), r.len()) {
                        (0..=1, 0..=1) => self.compare(l.first().copied(), r.first().copied(), out),
                        (2.., 2..) => {
                            let same = l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| values_equal(a, b));
                            if !same {
                                out.modified.insert(&self.path);
                            }
                            Ok(())
                        }
                        (2.., _) => {
                            let result = match r.first() {
                                Some(item) => self.compare(None, Some(item), out),
                                None => Ok(()),
                            };
                            out.removed.insert(&self.path);
                            result
                        }
                        (_, _) => {
                            let result = match l.first() {
                                Some(item) => self.compare(Some(item), None, out),
                                None => Ok(()),
                            };
                            out.added.insert(&self.path);
                            result
                        }
                    };
                    self.path.pop();
                    result?;
                }
            }
            _ => {}
        }
        match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(&self.path),
            (Some(_), None) => out.removed.insert(&self.path),
            _ => {}
        }
        Ok(())
    }
}

/// The fields `value` sets (structured-merge-diff's `ToFieldSet`). `strict`
/// refuses duplicate list-map keys (an applied configuration); otherwise a
/// duplicated item is owned as a whole (a live object).
pub fn field_set(schema: Schema, value: &Value, strict: bool) -> Result<FieldSet, String> {
    Cursor::new(schema).field_set(value, strict).map(|(_, set)| set)
}

/// How one object differs from another, field by field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Everything that changed.
    pub fn all(&self) -> FieldSet {
        self.added.union(&self.modified).union(&self.removed)
    }
}

/// Compares `lhs` with `rhs`: leaves (scalars, atomic lists and maps) are added,
/// removed or modified; maps and list items only ever added or removed.
pub fn compare(schema: Schema, lhs: &Value, rhs: &Value) -> Result<Comparison, String> {
    let mut out = Comparison::default();
    Cursor::new(schema).compare(Some(lhs), Some(rhs), &mut out)?;
    Ok(out)
}

/// Paths no manager ever owns: type and identity metadata the server controls.
pub fn strip(set: &FieldSet) -> FieldSet {
    let mut stripped = FieldSet::default();
    stripped.insert(&[PathElement::field("apiVersion")]);
    stripped.insert(&[PathElement::field("kind")]);
    stripped.insert(&[PathElement::field("metadata")]);
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        stripped.insert(&[PathElement::field("metadata"), PathElement::field(field)]);
    }
    set.difference(&stripped)
}

/// Which part of an object a request may change (the strategy's reset fields
/// are everything else): the main resource leaves `status` alone when there is a
/// status subresource; `/status` changes only `status`, `/finalize` only
/// `spec.finalizers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Main { status_subresource: bool },
    Status,
    Finalize,
}

impl Scope {
    pub fn of(rtype: &ResourceType, subresource: Option<&str>) -> Scope {
        match subresource {
            Some("status") => Scope::Status,
            Some("finalize") => Scope::Finalize,
            _ => Scope::Main {
                status_subresource: rtype.has_status(),
            },
        }
    }

    /// `set` without the fields this scope cannot change.
    pub fn filter(&self, set: &FieldSet) -> FieldSet {
        match self {
            Scope::Main {
                status_subresource: true,
            } => {
                let mut out = set.clone();
                out.remove_child(&PathElement::field("status"));
                out
            }
            Scope::Main { .. } => set.clone(),
            Scope::Status => set.only_field("status"),
            Scope::Finalize => {
                let spec = PathElement::field("spec");
                let mut out = FieldSet::default();
                if let Some(node) = set.child(&spec) {
                    let finalizers = node.set.only_field("finalizers");
                    out.insert_node(
                        spec,
                        Node {
                            member: false,
                            set: finalizers,
                        },
                    );
                }
                out
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    /// RFC 3339, seconds, UTC.
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Entry {
        Entry {
            manager: if manager.is_empty() { "unknown" } else { manager }.to_string(),
            operation,
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: None,
            set: FieldSet::default(),
        }
    }

    /// Whether both are the same manager: one Apply entry per (manager,
    /// subresource), one Update entry per (manager, apiVersion, subresource).
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The manager identity kube-apiserver keys managers by (the entry as JSON
    /// without set and time; without apiVersion for Apply).
    pub fn identity(&self) -> String {
        let s = |v: &str| Value::String(v.to_string()).to_string();
        let mut out = format!(
            "{{\"manager\":{},\"operation\":{}",
            s(&self.manager),
            s(self.operation.as_str())
        );
        if self.operation == Operation::Update {
            out.push_str(&format!(",\"apiVersion\":{}", s(&self.api_version)));
        }
        if !self.subresource.is_empty() {
            out.push_str(&format!(",\"subresource\":{}", s(&self.subresource)));
        }
        out.push('}');
        out
    }

    /// How conflicts name a manager: `"kubectl"`, `"kubectl-edit" using v1`,
    /// `"x" with subresource "status" using apps/v1`.
    pub fn describe(&self) -> String {
        let quote = |v: &str| Value::String(v.to_string()).to_string();
        let mut out = quote(&self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn seconds(&self) -> i64 {
        self.time.as_deref().and_then(time::parse_rfc3339).unwrap_or(0)
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), Value::String(self.manager.clone()));
        entry.insert("operation".into(), Value::String(self.operation.as_str().into()));
        entry.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            entry.insert("time".into(), Value::String(time.clone()));
        }
        entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        entry.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            entry.insert("subresource".into(), Value::String(self.subresource.clone()));
        }
        Value::Object(entry)
    }

    fn from_json(value: &Value, index: usize) -> Result<Entry, String> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {index}")),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {index}")),
        }
        let set = match value.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(fields) => FieldSet::from_json(fields)?,
        };
        Ok(Entry {
            manager: text("manager").to_string(),
            operation,
            api_version: text("apiVersion").to_string(),
            subresource: text("subresource").to_string(),
            time: value.get("time").and_then(Value::as_str).map(str::to_string),
            set,
        })
    }
}

/// The managers of an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managers(pub Vec<Entry>);

impl Managers {
    /// Decodes `metadata.managedFields` (absent or null: no managers).
    pub fn decode(list: Option<&Value>) -> Result<Managers, String> {
        let mut managers = Managers::default();
        match list {
            None | Some(Value::Null) => {}
            Some(Value::Array(entries)) => {
                for (i, entry) in entries.iter().enumerate() {
                    managers.upsert(Entry::from_json(entry, i)?);
                }
            }
            Some(_) => return Err("managedFields must be a list".into()),
        }
        Ok(managers)
    }

    /// The managers of `object` (its `metadata.managedFields`).
    pub fn of(object: &Value) -> Result<Managers, String> {
        Managers::decode(object.pointer("/metadata/managedFields"))
    }

    /// `metadata.managedFields`, sorted as kube-apiserver sorts it: Apply before
    /// Update, then by time, manager, apiVersion and subresource.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self.0.iter().collect();
        entries.sort_by(|p, q| {
            p.operation
                .cmp(&q.operation)
                .then_with(|| p.seconds().cmp(&q.seconds()))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
        Value::Array(entries.into_iter().map(Entry::to_json).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn find(&self, like: &Entry) -> Option<&Entry> {
        self.0.iter().find(|e| e.same_manager(like))
    }

    /// Adds `entry`, replacing the same manager's.
    pub fn upsert(&mut self, entry: Entry) {
        match self.0.iter_mut().find(|e| e.same_manager(&entry)) {
            Some(existing) => *existing = entry,
            None => self.0.push(entry),
        }
    }

    /// Drops managers that own nothing.
    pub fn retain_nonempty(&mut self) {
        self.0.retain(|e| !e.set.is_empty());
    }

    /// Writes these managers into `object` (none: no `managedFields` at all).
    pub fn store_in(&self, object: &mut Value) {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if self.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), self.encode());
        }
    }

    /// Keeps at most `max` Update entries: the oldest are merged into one
    /// `ancient-changes` entry per apiVersion.
    pub fn cap_updates(&mut self, max: usize) {
        let mut updaters: Vec<Entry> = self
            .0
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| {
            a.seconds()
                .cmp(&b.seconds())
                .then_with(|| a.identity().cmp(&b.identity()))
        });
        let mut length = updaters.len();
        let mut first_of_version: BTreeMap<String, Entry> = BTreeMap::new();
        for entry in updaters {
            if length <= max {
                break;
            }
            let bucket = Entry::new("ancient-changes", Operation::Update, &entry.api_version, "");
            let Some(first) = first_of_version.get(&entry.api_version) else {
                first_of_version.insert(entry.api_version.clone(), entry);
                continue;
            };
            if self.find(&bucket).is_none() {
                // The first of this version becomes the bucket.
                let mut moved = bucket.clone();
                if let Some(found) = self.find(first) {
                    moved.set = found.set.clone();
                    moved.time = found.time.clone();
                }
                self.0.retain(|e| !e.same_manager(first));
                self.0.push(moved);
            }
            if let Some(target) = self.0.iter_mut().find(|e| e.same_manager(&bucket)) {
                target.set = target.set.union(&entry.set);
                target.time = entry.time.clone();
            }
            self.0.retain(|e| !e.same_manager(&entry));
            length -= 1;
        }
    }
}

/// An object without `metadata.managedFields`.
pub fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// `managedFields: []` or `[{}]`: the client asks for the managers to be reset.
fn is_reset_request(list: Option<&Value>) -> bool {
    match list.and_then(Value::as_array) {
        Some(entries) if entries.is_empty() => true,
        Some(entries) => entries.len() == 1 && entries[0].as_object().is_some_and(Map::is_empty),
        None => false,
    }
}

/// A non-apply write, for [`updated_managers`].
pub struct Write<'a> {
    pub schema: Schema<'a>,
    pub scope: Scope,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub manager: &'a str,
    pub now: &'a str,
}

/// The managers after a create, update or non-apply patch of `live` (`None`
/// for a create) into `next` (with the managedFields the request carried);
/// `None` when the object is not tracked (no managers, and not a create).
///
/// The managers start from the request's managedFields when it sets valid ones
/// (an empty list resets them), else from the live object's (always on a
/// subresource). Every other manager loses what the write changed or removed;
/// the writer's Update entry gains what it added or changed, and its time is
/// set when it did.
pub fn updated_managers(write: &Write, live: Option<&Value>, next: &Value) -> Result<Option<Managers>, String> {
    let live_managers =
        || Managers::decode(live.and_then(|l| l.pointer("/metadata/managedFields"))).unwrap_or_default();
    let requested = next.pointer("/metadata/managedFields");
    let mut managers = if !write.subresource.is_empty() {
        live_managers()
    } else if is_reset_request(requested) {
        Managers::default()
    } else {
        match Managers::decode(requested) {
            Ok(m) if !m.is_empty() => m,
            _ => live_managers(),
        }
    };
    if managers.is_empty() && live.is_some() {
        return Ok(None);
    }
    let old = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let new = without_managed_fields(next);
    let cmp = compare(write.schema, &old, &new)?;
    let taken = cmp.added.union(&cmp.modified);
    // Managers at another apiVersion cannot be compared: they are dropped.
    managers.0.retain(|e| e.api_version == write.api_version);
    for entry in &mut managers.0 {
        entry.set = entry.set.difference(&taken).difference(&cmp.removed);
    }
    let mine = write.scope.filter(&strip(&taken.difference(&cmp.removed)));
    if !mine.is_empty() {
        let mut entry = Entry::new(write.manager, Operation::Update, write.api_version, write.subresource);
        if let Some(previous) = managers.find(&entry) {
            entry.set = previous.set.clone();
        }
        entry.set = entry.set.union(&mine);
        entry.time = Some(write.now.to_string());
        managers.upsert(entry);
    }
    managers.retain_nonempty();
    managers.cap_updates(MAX_UPDATE_MANAGERS);
    Ok(Some(managers))
}

/// Go's `unicode.IsPrint`, near enough.
fn printable(c: char) -> bool {
    c == ' ' || !(c.is_control() || c.is_whitespace())
}

/// 422 for a bad `fieldManager` query parameter; `options` is `PatchOptions` etc.
pub fn validate_field_manager(options: &str, manager: &str) -> Result<(), Status> {
    let mut causes = Vec::new();
    if manager.len() > MAX_MANAGER_LENGTH {
        causes.push(Cause {
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"),
            field: "fieldManager".into(),
        });
    }
    for (i, c) in manager.char_indices() {
        if !printable(c) {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: invalid character U+{:04X} (at position {i})",
                    Value::String(manager.into()),
                    c as u32
                ),
                field: "fieldManager".into(),
            });
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid(options, "meta.k8s.io", "", causes))
    }
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent up to
/// its first `/` (`kubectl/v1.32.0 (…)` is `kubectl`), printable, ≤128 bytes.
fn update_manager(ctx: &Context) -> String {
    if let Some(manager) = ctx.query.get("fieldManager") {
        return manager.to_string();
    }
    let agent = ctx
        .headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut out = String::new();
    for c in agent.split('/').next().unwrap_or_default().chars() {
        if !printable(c) {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// Records a create (`live` is `None`), update or non-apply patch in `next`'s
/// managedFields. Only a bad `fieldManager` fails the request; if the managers
/// cannot be worked out, the object is written without managedFields, as
/// kube-apiserver does.
pub fn record_update(ctx: &Context, live: Option<&Value>, next: &mut Value) -> Result<(), Status> {
    let media = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let options = match live {
        None => "CreateOptions",
        Some(_) if media.contains("patch") => "PatchOptions",
        Some(_) => "UpdateOptions",
    };
    let manager = update_manager(ctx);
    validate_field_manager(options, &manager)?;
    let api_version = ctx.rtype.api_version();
    let subresource = ctx.target.subresource.clone().unwrap_or_default();
    let now = time::now_rfc3339();
    let write = Write {
        schema: Schema::of(&ctx.rtype),
        scope: Scope::of(&ctx.rtype, ctx.target.subresource.as_deref()),
        api_version: &api_version,
        subresource: &subresource,
        manager: &manager,
        now: &now,
    };
    let managers = match updated_managers(&write, live, next) {
        Ok(managers) => managers.unwrap_or_default(),
        Err(err) => {
            tracing::warn!(resource = %ctx.rtype.resource, %err, "managedFields dropped: cannot track this write");
            Managers::default()
        }
    };
    managers.store_in(next);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(json: Value) -> FieldSet {
        FieldSet::from_json(&json).unwrap()
    }

    const DEPLOYMENT_SET: &str = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#;

    fn nginx() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    #[test]
    fn deployment_field_set_matches_the_reference_example() {
        let fields = strip(&field_set(Schema::builtin("Deployment"), &nginx(), true).unwrap());
        assert_eq!(fields.to_json_string(), DEPLOYMENT_SET);
        // And the encoding round-trips through JSON.
        let parsed: Value = serde_json::from_str(DEPLOYMENT_SET).unwrap();
        assert_eq!(set(parsed.clone()), fields);
        assert_eq!(fields.to_json(), parsed);
    }

    #[test]
    fn path_elements_encode_order_and_print_like_structured_merge_diff() {
        let key = PathElement::Key(vec![
            ("containerPort".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(key.encode(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(key.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::decode(&key.encode()).unwrap(), Some(key.clone()));
        let fin = PathElement::Value(json!("example.com/fin"));
        assert_eq!(fin.encode(), r#"v:"example.com/fin""#);
        assert_eq!(fin.to_string(), r#"[="example.com/fin"]"#);
        assert_eq!(PathElement::Index(3).to_string(), "[3]");
        assert_eq!(
            PathElement::decode("x:1").unwrap(),
            None,
            "unknown prefixes are dropped"
        );
        assert!(PathElement::decode("f").is_err());
        assert!(PathElement::decode("fx").is_err());
        // Fields, then keys, then values, then indices; numbers before strings.
        let mut elements = [
            PathElement::Index(0),
            PathElement::Value(json!("a")),
            PathElement::Value(json!(2)),
            key,
            PathElement::field("b"),
            PathElement::field("a"),
        ];
        elements.sort();
        let encoded: Vec<String> = elements.iter().map(PathElement::encode).collect();
        assert_eq!(
            encoded,
            [
                "f:a",
                "f:b",
                r#"k:{"containerPort":80,"protocol":"TCP"}"#,
                "v:2",
                r#"v:"a""#,
                "i:0"
            ]
        );
        let path = vec![
            PathElement::field("spec"),
            PathElement::field("containers"),
            PathElement::Key(vec![("name".into(), json!("nginx"))]),
            PathElement::field("image"),
        ];
        assert_eq!(path_string(&path), r#".spec.containers[name="nginx"].image"#);
    }

    #[test]
    fn set_operations_are_member_wise() {
        let a = set(json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}}));
        let b = set(json!({"f:data": {"f:b": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}));
        assert_eq!(
            a.difference(&b).to_json(),
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {}}})
        );
        assert_eq!(
            a.intersection(&b).to_json(),
            json!({"f:data": {"f:b": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
        );
        assert_eq!(a.union(&b), a);
        assert!(a.has(&[PathElement::field("metadata"), PathElement::field("labels")]));
        assert!(!b.has(&[PathElement::field("metadata"), PathElement::field("labels")]));
        assert_eq!(a.paths().len(), 4);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn custom_resources_are_deduced_and_sets_claim_nulls_and_empty_maps() {
        let cr = json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w", "finalizers": ["a"]},
            "spec": {"replicas": 1, "list": [{"name": "a"}], "empty": {}, "none": null}});
        let fields = strip(&field_set(Schema::custom(None), &cr, true).unwrap());
        assert_eq!(
            fields.to_json_string(),
            r#"{"f:metadata":{"f:finalizers":{"v:\"a\"":{}}},"f:spec":{".":{},"f:empty":{},"f:list":{},"f:none":{},"f:replicas":{}}}"#
        );
        let cm = json!({"data": {"a": "1"}, "metadata": {"labels": {}}});
        assert_eq!(
            field_set(Schema::builtin("ConfigMap"), &cm, true)
                .unwrap()
                .to_json_string(),
            r#"{"f:data":{"f:a":{}},"f:metadata":{"f:labels":{}}}"#
        );
    }

    #[test]
    fn duplicates_and_missing_keys() {
        let pod = json!({"spec": {"containers": [{"name": "c", "env": [{"name": "FOO"}, {"name": "FOO"}]}]}});
        let err = field_set(Schema::builtin("Pod"), &pod, true).unwrap_err();
        assert_eq!(
            err,
            r#".spec.containers[name="c"].env: duplicate entries for key [name="FOO"]"#
        );
        let live = field_set(Schema::builtin("Pod"), &pod, false).unwrap();
        assert_eq!(
            live.to_json_string(),
            r#"{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:env":{"k:{\"name\":\"FOO\"}":{}},"f:name":{}}}}}"#
        );
        let nameless = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(
            field_set(Schema::builtin("Pod"), &nameless, true)
                .unwrap_err()
                .contains("omits key field \"name\"")
        );
    }

    #[test]
    fn compare_reports_leaves_and_added_or_removed_nodes() {
        let schema = Schema::builtin("ConfigMap");
        let old = json!({"data": {"a": "1", "b": "2"}, "metadata": {"finalizers": ["x"]}});
        let new = json!({"data": {"a": "9", "c": "3"}, "metadata": {"finalizers": ["x", "y"], "labels": {"l": "v"}}});
        let cmp = compare(schema, &old, &new).unwrap();
        assert_eq!(cmp.modified.to_json(), json!({"f:data": {"f:a": {}}}));
        assert_eq!(cmp.removed.to_json(), json!({"f:data": {"f:b": {}}}));
        assert_eq!(
            cmp.added.to_json(),
            json!({"f:data": {"f:c": {}}, "f:metadata": {"f:finalizers": {"v:\"y\"": {}}, "f:labels": {".": {}, "f:l": {}}}})
        );
        assert!(compare(schema, &old, &old).unwrap().all().is_empty());
    }

    fn entry(manager: &str, operation: Operation, time: &str, fields: Value) -> Entry {
        let mut e = Entry::new(manager, operation, "v1", "");
        e.time = Some(time.into());
        e.set = set(fields);
        e
    }

    #[test]
    fn managers_encode_sorted_and_decode_strictly() {
        let managers = Managers(vec![
            entry(
                "b",
                Operation::Update,
                "2024-01-01T00:00:02Z",
                json!({"f:data": {"f:b": {}}}),
            ),
            entry(
                "a",
                Operation::Update,
                "2024-01-01T00:00:02Z",
                json!({"f:data": {"f:a": {}}}),
            ),
            entry(
                "z",
                Operation::Apply,
                "2024-01-01T00:00:09Z",
                json!({"f:data": {"f:z": {}}}),
            ),
            entry(
                "c",
                Operation::Update,
                "2024-01-01T00:00:01Z",
                json!({"f:data": {"f:c": {}}}),
            ),
        ]);
        let encoded = managers.encode();
        let names: Vec<&str> = encoded
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["z", "c", "a", "b"]);
        assert_eq!(
            encoded[0],
            json!({"manager": "z", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-01T00:00:09Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:z": {}}}})
        );
        let decoded = Managers::decode(Some(&encoded)).unwrap();
        assert_eq!(decoded.0.len(), 4);
        assert!(Managers::decode(Some(&json!([{"operation": "Apply", "apiVersion": "v1"}]))).is_err());
        assert!(
            Managers::decode(Some(
                &json!([{"operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}])
            ))
            .is_err()
        );
        assert!(Managers::decode(Some(&json!([{"operation": "Apply", "fieldsType": "FieldsV1"}]))).is_err());

        let update = Entry::new("kubectl-edit", Operation::Update, "apps/v1", "status");
        assert_eq!(
            update.identity(),
            r#"{"manager":"kubectl-edit","operation":"Update","apiVersion":"apps/v1","subresource":"status"}"#
        );
        assert_eq!(
            update.describe(),
            r#""kubectl-edit" with subresource "status" using apps/v1"#
        );
        assert_eq!(
            Entry::new("kubectl", Operation::Apply, "v1", "").describe(),
            r#""kubectl""#
        );
    }

    fn write<'a>(manager: &'a str, now: &'a str) -> Write<'a> {
        Write {
            schema: Schema::builtin("ConfigMap"),
            scope: Scope::Main {
                status_subresource: false,
            },
            api_version: "v1",
            subresource: "",
            manager,
            now,
        }
    }

    #[test]
    fn updates_take_what_they_change_from_others() {
        let created = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u", "labels": {"app": "x"}}, "data": {"a": "1", "b": "2"}});
        let managers = updated_managers(&write("kubectl-create", "2024-01-01T00:00:00Z"), None, &created)
            .unwrap()
            .unwrap();
        assert_eq!(managers.0.len(), 1);
        assert_eq!(
            managers.0[0].set.to_json_string(),
            r#"{"f:data":{".":{},"f:a":{},"f:b":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#
        );
        let mut live = created.clone();
        managers.store_in(&mut live);

        // An update changes `a`, removes `b` and adds a label.
        let mut next = live.clone();
        next["data"] = json!({"a": "9"});
        next["metadata"]["labels"]["tier"] = json!("web");
        let managers = updated_managers(&write("kubectl-edit", "2024-01-01T00:00:05Z"), Some(&live), &next)
            .unwrap()
            .unwrap();
        let create = managers.0.iter().find(|e| e.manager == "kubectl-create").unwrap();
        assert_eq!(
            create.set.to_json(),
            json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        );
        let edit = managers.0.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert_eq!(
            edit.set.to_json(),
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:tier": {}}}})
        );
        assert_eq!(edit.time.as_deref(), Some("2024-01-01T00:00:05Z"));

        // A no-op write changes nothing, not even times.
        let mut same = next.clone();
        managers.store_in(&mut same);
        let again = updated_managers(&write("kubectl-edit", "2024-01-02T00:00:00Z"), Some(&same), &same)
            .unwrap()
            .unwrap();
        assert_eq!(again, managers);
    }

    #[test]
    fn clients_may_set_or_reset_managed_fields() {
        let mut live = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        updated_managers(&write("one", "2024-01-01T00:00:00Z"), None, &live)
            .unwrap()
            .unwrap()
            .store_in(&mut live);
        // An empty list (or `[{}]`) resets: the object is no longer tracked.
        for reset in [json!([]), json!([{}])] {
            let mut next = live.clone();
            next["metadata"]["managedFields"] = reset;
            next["data"]["a"] = json!("2");
            assert_eq!(
                updated_managers(&write("two", "2024-01-01T00:00:01Z"), Some(&live), &next).unwrap(),
                None
            );
        }
        // Valid managedFields in the request replace the live ones.
        let mut next = live.clone();
        let mine = Managers(vec![entry(
            "mine",
            Operation::Apply,
            "2024-01-01T00:00:00Z",
            json!({"f:data": {"f:a": {}}}),
        )]);
        mine.store_in(&mut next);
        let managers = updated_managers(&write("two", "2024-01-01T00:00:01Z"), Some(&live), &next)
            .unwrap()
            .unwrap();
        assert_eq!(managers, mine);
        // Invalid ones are ignored: the live managers stay.
        let mut next = live.clone();
        next["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        let managers = updated_managers(&write("two", "2024-01-01T00:00:01Z"), Some(&live), &next)
            .unwrap()
            .unwrap();
        assert_eq!(managers.0[0].manager, "one");
    }

    #[test]
    fn update_entries_are_capped_into_ancient_changes() {
        let mut managers = Managers(
            (0..12)
                .map(|i| {
                    entry(
                        &format!("m{i:02}"),
                        Operation::Update,
                        &format!("2024-01-01T00:00:{i:02}Z"),
                        json!({"f:data": {format!("f:k{i}"): {}}}),
                    )
                })
                .collect(),
        );
        managers.upsert(entry(
            "applier",
            Operation::Apply,
            "2024-01-01T00:00:00Z",
            json!({"f:data": {"f:z": {}}}),
        ));
        managers.cap_updates(MAX_UPDATE_MANAGERS);
        let updates: Vec<&Entry> = managers.0.iter().filter(|e| e.operation == Operation::Update).collect();
        assert_eq!(updates.len(), MAX_UPDATE_MANAGERS);
        let ancient = updates.iter().find(|e| e.manager == "ancient-changes").unwrap();
        assert_eq!(
            ancient.set.to_json(),
            json!({"f:data": {"f:k0": {}, "f:k1": {}, "f:k2": {}}})
        );
        assert_eq!(ancient.time.as_deref(), Some("2024-01-01T00:00:02Z"));
        assert!(managers.0.iter().any(|e| e.manager == "applier"));
    }
}
