//! `metav1.Status`: the one error type of the API server and its wire form. The
//! JSON is written by hand in the field order Go's encoder uses, compact, with a
//! trailing newline, because clients (the Python e2e suite among them) compare
//! error bodies byte for byte. Every failure of a request becomes one of these.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One field-level cause (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, ...
    pub reason: String,
    pub message: String,
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    /// API group; empty for the core group (and then omitted).
    pub group: String,
    /// The resource (plural), as Kubernetes puts it here.
    pub kind: String,
    pub uid: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: i32,
}

impl Details {
    fn is_empty(&self) -> bool {
        *self == Details::default()
    }
}

/// A failed request: HTTP code, machine-readable reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in `Result`s everywhere and should stay small.
    pub details: Box<Details>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Status {}

/// The resource a `Status` is about: `pods`, or `deployments.apps`.
pub fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl Status {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Status {
        Status {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, name: &str, group: &str, resource: &str) -> Status {
        self.details.name = name.to_string();
        self.details.group = group.to_string();
        self.details.kind = resource.to_string();
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Status {
        Status::new(403, "Forbidden", message)
    }

    pub fn not_found(resource: &str, group: &str, name: &str) -> Status {
        let what = qualified(resource, group);
        Status::new(404, "NotFound", format!("{what} \"{name}\" not found")).about(name, group, resource)
    }

    /// A path that names no resource at all.
    pub fn no_route() -> Status {
        Status::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed() -> Status {
        Status::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn already_exists(resource: &str, group: &str, name: &str) -> Status {
        let what = qualified(resource, group);
        Status::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists")).about(name, group, resource)
    }

    pub fn conflict(resource: &str, group: &str, name: &str, why: &str) -> Status {
        let what = qualified(resource, group);
        Status::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
        )
        .about(name, group, resource)
    }

    /// The object changed since the client read it.
    pub fn stale(resource: &str, group: &str, name: &str) -> Status {
        Status::conflict(
            resource,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// A resourceVersion from before the last compaction.
    pub fn expired(message: impl Into<String>) -> Status {
        Status::new(410, "Expired", message)
    }

    pub fn gone(message: impl Into<String>) -> Status {
        Status::new(410, "Gone", message)
    }

    pub fn too_large() -> Status {
        Status::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Status {
        Status::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 422: `<Kind[.group]> "<name>" is invalid: <causes>`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Status {
        let summary = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect::<Vec<_>>();
        let summary = match summary.len() {
            1 => summary[0].clone(),
            _ => format!("[{}]", summary.join(", ")),
        };
        let what = qualified(kind, group);
        let mut status = Status::new(422, "Invalid", format!("{what} \"{name}\" is invalid: {summary}"));
        *status.details = Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
            ..Default::default()
        };
        status
    }

    pub fn internal(message: impl std::fmt::Display) -> Status {
        Status::new(500, "InternalError", format!("Internal error occurred: {message}"))
    }

    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(503, "ServiceUnavailable", message)
    }

    /// The body Go's encoder writes: compact, Go field order, trailing newline.
    pub fn to_json(&self) -> String {
        // serde_json::Map keeps insertion order only with `preserve_order`; build
        // the text piece by piece instead so the order is fixed here.
        let s = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        let mut out = String::from(r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure""#);
        if !self.message.is_empty() {
            out.push_str(&format!(r#","message":{}"#, s(&self.message)));
        }
        if !self.reason.is_empty() {
            out.push_str(&format!(r#","reason":{}"#, s(self.reason)));
        }
        if !self.details.is_empty() {
            let d = &self.details;
            let mut fields = Vec::new();
            for (key, value) in [
                ("name", &d.name),
                ("group", &d.group),
                ("kind", &d.kind),
                ("uid", &d.uid),
            ] {
                if !value.is_empty() {
                    fields.push(format!("{}:{}", s(key), s(value)));
                }
            }
            if !d.causes.is_empty() {
                let causes = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut parts = Vec::new();
                        for (key, value) in [("reason", &c.reason), ("message", &c.message), ("field", &c.field)] {
                            if !value.is_empty() {
                                parts.push(format!("{}:{}", s(key), s(value)));
                            }
                        }
                        format!("{{{}}}", parts.join(","))
                    })
                    .collect::<Vec<_>>();
                fields.push(format!(r#""causes":[{}]"#, causes.join(",")));
            }
            if d.retry_after_seconds != 0 {
                fields.push(format!(r#""retryAfterSeconds":{}"#, d.retry_after_seconds));
            }
            out.push_str(&format!(r#","details":{{{}}}"#, fields.join(",")));
        }
        out.push_str(&format!(r#","code":{}}}"#, self.code));
        out.push('\n');
        out
    }

    /// The Status as a JSON value (for watch `ERROR` events and Table rows).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_json()).unwrap_or_else(|_| json!({}))
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.to_json()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.details.retry_after_seconds > 0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(self.details.retry_after_seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_byte_identical_to_go() {
        assert_eq!(
            Status::not_found("pods", "", "x").to_json(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    #[test]
    fn groups_and_causes_are_in_go_order() {
        let status = Status::invalid(
            "Deployment",
            "apps",
            "web",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.selector".into(),
            }],
        );
        assert_eq!(
            status.to_json(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Deployment.apps \\\"web\\\" is invalid: spec.selector: Required value\",\"reason\":\"Invalid\",\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"Deployment\",\"causes\":[{\"reason\":\"FieldValueRequired\",\"message\":\"Required value\",\"field\":\"spec.selector\"}]},\"code\":422}\n"
        );
    }
}
