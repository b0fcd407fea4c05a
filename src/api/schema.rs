//! Structural OpenAPI v3 schemas of custom resources, applied the way
//! kube-apiserver applies them: unknown fields are pruned (or refused with
//! `fieldValidation=Strict`), `default`s are filled in, and the object is
//! validated (types, required, enums, bounds, lengths, item counts), every
//! violation a 422 cause with its field path.

use serde_json::{Map, Value};

use super::status::Cause;

/// What a schema check found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub causes: Vec<Cause>,
    /// Paths of fields dropped because the schema does not know them.
    pub unknown: Vec<String>,
}

/// Prunes, defaults and validates `object` against `schema` (the version's
/// `openAPIV3Schema`). `apiVersion`, `kind` and `metadata` are the server's.
pub fn apply(schema: &Value, object: &mut Value) -> Outcome {
    let mut outcome = Outcome::default();
    let Some(map) = object.as_object_mut() else {
        return outcome;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if let Some(value) = map.get_mut(&key) {
                    walk(sub, value, &key, &mut outcome);
                }
            }
            None if preserve => {}
            None => {
                map.remove(&key);
                outcome.unknown.push(key);
            }
        }
    }
    fill_defaults(schema, map, &mut outcome, "");
    required(schema, map, "", &mut outcome);
    outcome
}

fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, value: &mut Value, at: &str, outcome: &mut Outcome) {
    if value.is_null() {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(expected) = schema["type"].as_str() {
        let actual = type_name(value);
        let ok = actual == expected
            || (expected == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            outcome.causes.push(cause(
                "FieldValueTypeInvalid",
                at,
                format!("Invalid value: \"{actual}\": {at} in body must be of type {expected}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        outcome.causes.push(cause(
            "FieldValueNotSupported",
            at,
            format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        ));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                outcome.causes.push(cause(
                    "FieldValueInvalid",
                    at,
                    format!("Invalid value: {n}: {at} in body should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                outcome.causes.push(cause(
                    "FieldValueInvalid",
                    at,
                    format!("Invalid value: {n}: {at} in body should be less than or equal to {max}"),
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                outcome.causes.push(cause(
                    "FieldValueInvalid",
                    at,
                    format!("Invalid value: \"{s}\": {at} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                outcome.causes.push(cause(
                    "FieldValueTooLong",
                    at,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                outcome.causes.push(cause(
                    "FieldValueTooMany",
                    at,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                outcome.causes.push(cause(
                    "FieldValueInvalid",
                    at,
                    format!(
                        "Invalid value: {}: {at} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{at}[{i}]"), outcome);
                }
            }
        }
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let field = path(at, &key);
                let sub = properties.and_then(|p| p.get(&key)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(v) = map.get_mut(&key) {
                            walk(sub, v, &field, outcome);
                        }
                    }
                    None if preserve || properties.is_none() && schema["additionalProperties"] == true => {}
                    None => {
                        map.remove(&key);
                        outcome.unknown.push(field);
                    }
                }
            }
            fill_defaults(schema, map, outcome, at);
            required(schema, map, at, outcome);
        }
        _ => {}
    }
}

fn fill_defaults(schema: &Value, map: &mut Map<String, Value>, outcome: &mut Outcome, at: &str) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, sub) in properties {
        if map.get(key).is_none_or(Value::is_null)
            && let Some(default) = sub.get("default")
        {
            let mut value = default.clone();
            walk(sub, &mut value, &path(at, key), outcome);
            map.insert(key.clone(), value);
        }
    }
}

fn required(schema: &Value, map: &Map<String, Value>, at: &str, outcome: &mut Outcome) {
    for key in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if map.get(key).is_none_or(Value::is_null) {
            outcome
                .causes
                .push(cause("FieldValueRequired", &path(at, key), "Required value".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                "cronSpec": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn prunes_defaults_and_validates() {
        let mut cr = json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "a"},
            "spec": {"cronSpec": "* * * * *", "extra": 1, "port": "http", "free": {"anything": [1]}}, "junk": true});
        let outcome = apply(&schema(), &mut cr);
        assert!(outcome.causes.is_empty(), "{:?}", outcome.causes);
        assert_eq!(outcome.unknown, ["junk", "spec.extra"]);
        assert_eq!(cr["spec"]["replicas"], 1);
        assert_eq!(cr["spec"]["free"]["anything"], json!([1]));
        assert!(cr.get("junk").is_none());

        let mut bad = json!({"spec": {"replicas": 20, "mode": "c", "tags": ["x", "y", "z"], "cronSpec": 5}});
        let fields: Vec<String> = apply(&schema(), &mut bad).causes.into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["spec.cronSpec", "spec.mode", "spec.replicas", "spec.tags"]);
        let mut missing = json!({"spec": {}});
        let causes = apply(&schema(), &mut missing).causes;
        assert_eq!(
            (causes[0].field.as_str(), causes[0].reason.as_str()),
            ("spec.cronSpec", "FieldValueRequired")
        );
    }
}
