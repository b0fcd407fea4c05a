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

/// The Scale view of a workload.
fn scale_of(parent: &Value) -> Value {
    let meta = &parent["metadata"];
    let selector = parent["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| parent["spec"]["selector"].as_object())
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
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
        "spec": {"replicas": parent["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": parent["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
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

pub async fn handle(ctx: &Context, method: &Method, body: Bytes) -> Result<Response, Status> {
    let (parent, revision) = ctx.current().await?;
    let scale = scale_of(&parent);
    let wanted = match *method {
        Method::GET => return Ok(json_response(StatusCode::OK, &scale)),
        Method::PUT => {
            let incoming = ctx.decode(&body)?;
            if let Some(rv) = incoming["metadata"]["resourceVersion"].as_str()
                && rv != revision.to_string()
            {
                return Err(ctx.stale());
            }
            replicas_of(&incoming, ctx)?
        }
        Method::PATCH => {
            let patch: Value =
                serde_json::from_slice(&body).map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
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
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| Status::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut patched, &ops).map_err(|e| Status::bad_request(e.to_string()))?;
                }
                other => return Err(Status::unsupported_media_type(other)),
            }
            replicas_of(&patched, ctx)?
        }
        _ => return Err(Status::method_not_allowed()),
    };
    let mut next = parent.clone();
    next["spec"]["replicas"] = json!(wanted);
    let next = ctx.updated(&parent, next);
    let written = ctx.commit(&parent, revision, next).await?;
    Ok(json_response(StatusCode::OK, &scale_of(&written)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_mirrors_replicas_and_selector() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "a", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let scale = scale_of(&deploy);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }
}
