//! The `scale` subresource (`autoscaling/v1` Scale) of workloads: read and change
//! `spec.replicas` through a small object of its own, as `kubectl scale` and
//! autoscalers do, with the same optimistic concurrency as the parent.

use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::handlers::Context;
use super::json_response;
use super::status::{Cause, Status};

/// Where the replica counts and selector live: the built-in workloads' fields, or
/// the paths a CRD's scale subresource names (`.spec.replicas` style).
struct Paths {
    spec_replicas: String,
    status_replicas: String,
    selector: Option<String>,
}

impl Paths {
    fn of(ctx: &Context) -> Paths {
        let pointer = |path: &Value| path.as_str().map(|p| p.replace('.', "/"));
        match ctx.rtype.custom.as_ref().map(|c| &c.scale).filter(|s| s.is_object()) {
            Some(scale) => Paths {
                spec_replicas: pointer(&scale["specReplicasPath"]).unwrap_or_else(|| "/spec/replicas".into()),
                status_replicas: pointer(&scale["statusReplicasPath"]).unwrap_or_else(|| "/status/replicas".into()),
                selector: pointer(&scale["labelSelectorPath"]),
            },
            None => Paths {
                spec_replicas: "/spec/replicas".into(),
                status_replicas: "/status/replicas".into(),
                selector: None,
            },
        }
    }
}

/// The Scale view of a workload.
fn scale_of(parent: &Value, paths: &Paths) -> Value {
    let meta = &parent["metadata"];
    let selector = match &paths.selector {
        Some(p) => parent
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        None => parent["spec"]["selector"]["matchLabels"]
            .as_object()
            .or_else(|| parent["spec"]["selector"].as_object())
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    let replicas = |p: &str, default: i64| parent.pointer(p).and_then(Value::as_i64).unwrap_or(default);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": replicas(&paths.spec_replicas, 1)},
        "status": {"replicas": replicas(&paths.status_replicas, 0), "selector": selector},
    })
}

fn replicas_of(scale: &Value, ctx: &Context) -> Result<i64, Status> {
    match scale["spec"]["replicas"].as_i64() {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Status::invalid(
            "Scale",
            "autoscaling",
            ctx.name(),
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: must be greater than or equal to 0".into(),
                field: "spec.replicas".into(),
            }],
        )),
    }
}

/// Whether a write names the resourceVersion it expects: the Conflict when that is
/// not `revision`.
fn pinned(ctx: &Context, write: &Value, revision: i64) -> Result<bool, Status> {
    match write["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(false),
        Some(rv) if rv == revision.to_string() => Ok(true),
        Some(_) => Err(ctx.stale()),
    }
}

/// Serves GET, PUT and PATCH of a scale subresource. A write that names no
/// resourceVersion is applied again to the newer parent when another writer (its
/// controller updating status, say) got there first, as kube-apiserver's
/// GuaranteedUpdate does; one that names it gets the Conflict.
pub async fn handle(ctx: &Context, method: &Method, body: Bytes) -> Result<Response, Status> {
    let paths = Paths::of(ctx);
    for _ in 0..100 {
        let (parent, revision) = ctx.current().await?;
        let scale = scale_of(&parent, &paths);
        let (wanted, pinned) = match *method {
            Method::GET => return Ok(json_response(StatusCode::OK, &scale)),
            Method::PUT => {
                let incoming = ctx.decode(&body)?;
                let pinned = pinned(ctx, &incoming, revision)?;
                (replicas_of(&incoming, ctx)?, pinned)
            }
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(&body)
                    .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
                let content_type = ctx
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let mut patched = scale.clone();
                match content_type.split(';').next().unwrap_or("").trim() {
                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                        json_patch::merge(&mut patched, &patch)
                    }
                    "application/json-patch+json" => {
                        let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                            .map_err(|e| Status::bad_request(format!("invalid JSON patch: {e}")))?;
                        json_patch::patch(&mut patched, &ops).map_err(|e| Status::bad_request(e.to_string()))?;
                    }
                    other => return Err(Status::unsupported_media_type(other)),
                }
                (replicas_of(&patched, ctx)?, pinned(ctx, &patch, revision)?)
            }
            _ => return Err(Status::method_not_allowed()),
        };
        let mut next = parent.clone();
        match next.pointer_mut(&paths.spec_replicas) {
            Some(slot) => *slot = json!(wanted),
            None => next["spec"]["replicas"] = json!(wanted),
        }
        let next = ctx.updated(&parent, next);
        match ctx.commit(&parent, revision, next).await {
            Err(status) if status.reason == "Conflict" && !pinned => continue,
            Err(status) => return Err(status),
            Ok(written) => return Ok(json_response(StatusCode::OK, &scale_of(&written, &paths))),
        }
    }
    Err(ctx.stale())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_mirrors_replicas_and_selector() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "a", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let paths = Paths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: None,
        };
        let scale = scale_of(&deploy, &paths);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }
}
