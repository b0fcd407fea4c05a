//! Pod subresources that act rather than store: `binding` (the scheduler assigns
//! a node, once) and `eviction` (a delete that respects PodDisruptionBudgets, as
//! `kubectl drain` uses it).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::handlers::Context;
use super::json_response;
use super::selectors::LabelSelector;
use super::status::{Cause, Status};
use crate::store::{KeyRange, Range};

fn success(code: u16) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code});
    json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), &status)
}

/// `POST pods/<name>/binding`: sets `spec.nodeName` of an unbound pod.
pub async fn bind(ctx: &Context, body: Bytes) -> Result<Response, Status> {
    let binding = ctx.decode(&body)?;
    let Some(node) = binding["target"]["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(Status::invalid(
            "Binding",
            "",
            ctx.name(),
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    };
    let (pod, revision) = ctx.current().await?;
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Err(Status::conflict(
            "pods/binding",
            "",
            ctx.name(),
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(Status::conflict(
            "pods/binding",
            "",
            ctx.name(),
            &format!("pod {} is already assigned to node \"{bound}\"", ctx.name()),
        ));
    }
    let mut next = pod.clone();
    next["spec"]["nodeName"] = json!(node);
    let mut conditions: Vec<Value> = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": super::time::now_rfc3339()}));
    next["status"]["conditions"] = json!(conditions);
    ctx.commit(&pod, revision, next).await?;
    Ok(success(201))
}

/// `POST pods/<name>/eviction`: deletes the pod unless a PodDisruptionBudget
/// covering it allows no disruption now (429, as kube-apiserver answers).
pub async fn evict(ctx: &Context, body: Bytes) -> Result<Response, Status> {
    let eviction = ctx.decode(&body)?;
    let (pod, _) = ctx.current().await?;
    let namespace = ctx.target.namespace.clone().unwrap_or_default();
    let budgets = ctx
        .api
        .store
        .range(Range::of(KeyRange::prefix(format!(
            "/registry/poddisruptionbudgets/{namespace}/"
        ))))
        .await
        .map_err(super::handlers::store_error)?;
    let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    for kv in &budgets.kvs {
        let pdb = super::handlers::object_of(kv)?;
        let selector = match_labels(&pdb["spec"]["selector"]);
        if terminal || !selector.as_ref().is_some_and(|s| s.matches(&pod)) {
            continue;
        }
        let observed = pdb["status"]["observedGeneration"].as_i64().unwrap_or(0);
        let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
        if observed < pdb["metadata"]["generation"].as_i64().unwrap_or(1) || allowed < 1 {
            let mut status = Status::new(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            status.details.causes.push(Cause {
                reason: "DisruptionBudget".into(),
                message: format!(
                    "The disruption budget {} needs {} healthy pods and has {} currently",
                    pdb["metadata"]["name"].as_str().unwrap_or_default(),
                    pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                    pdb["status"]["currentHealthy"].as_i64().unwrap_or(0)
                ),
                field: String::new(),
            });
            return Err(status);
        }
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    ctx.object_context().delete(Bytes::from(options.to_string())).await?;
    Ok(success(201))
}

/// A PodDisruptionBudget's `matchLabels` and `matchExpressions` as a selector.
fn match_labels(selector: &Value) -> Option<LabelSelector> {
    let mut terms: Vec<String> = selector["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str()?;
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match e["operator"].as_str()? {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    LabelSelector::parse(&terms.join(",")).ok()
}
