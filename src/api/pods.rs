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

/// How often an eviction is retried when the budget changed under it.
const EVICTION_RETRIES: usize = 10;
/// More evictions than this not yet confirmed by the disruption controller are refused.
const MAX_DISRUPTED_PODS: usize = 2000;

/// `POST pods/<name>/eviction`: kube-apiserver's eviction subresource. A pod
/// that is finished, pending or already being deleted, or that no
/// PodDisruptionBudget selects, is simply deleted. Otherwise its (single)
/// budget must allow a disruption: the eviction then takes one from
/// `status.disruptionsAllowed` and records the pod in `status.disruptedPods`
/// (a compare-and-swap on the budget, so concurrent evictions, such as
/// `kubectl drain`'s, cannot both take the last one) before deleting the pod;
/// if none is left it is refused with 429 TooManyRequests. An unready pod may
/// go without taking one while the budget is met (or with
/// `unhealthyPodEvictionPolicy: AlwaysAllow`).
pub async fn evict(ctx: &Context, body: Bytes) -> Result<Response, Status> {
    let eviction = ctx.decode(&body)?;
    let mut options = eviction
        .get("deleteOptions")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    let dry_run = ctx.query.dry_run()?
        || options["dryRun"]
            .as_array()
            .is_some_and(|modes| modes.iter().any(|m| m == "All"));
    let namespace = ctx.target.namespace.clone().unwrap_or_default();
    for _ in 0..EVICTION_RETRIES {
        let (pod, revision) = ctx.current().await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed" | "Pending") || pod["metadata"]["deletionTimestamp"].is_string() {
            return delete_evicted(ctx, &options).await;
        }
        let mut budgets = budgets_of(ctx, &namespace, &pod).await?;
        if budgets.len() > 1 {
            return Err(Status::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some((budget, budget_revision)) = budgets.pop() else {
            return delete_evicted(ctx, &options).await;
        };
        let status = &budget["status"];
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if !ready {
            let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
            let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
            if budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow" || (healthy >= desired && desired > 0) {
                // Only this pod as it is now: it must not turn ready in between.
                if options["preconditions"]["resourceVersion"].is_null() {
                    options["preconditions"]["resourceVersion"] = json!(revision.to_string());
                }
                return delete_evicted(ctx, &options).await;
            }
        }
        let next = take_disruption(&budget, ctx.name())?;
        if dry_run {
            return delete_evicted(ctx, &options).await;
        }
        let name = budget["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut budget_ctx = super::context(&ctx.api, "policy/poddisruptionbudgets", Some(&namespace), Some(&name))?;
        budget_ctx.target.subresource = Some("status".into());
        match budget_ctx.commit(&budget, budget_revision, next).await {
            Ok(_) => return delete_evicted(ctx, &options).await,
            Err(status) if status.reason == "Conflict" => continue,
            Err(status) => return Err(status),
        }
    }
    Err(too_many_requests(
        "the disruption budget kept changing; try again".to_string(),
        1,
    ))
}

async fn delete_evicted(ctx: &Context, options: &Value) -> Result<Response, Status> {
    ctx.object_context().delete(Bytes::from(options.to_string())).await?;
    Ok(success(201))
}

/// The budgets in the namespace whose selector selects the pod, with their revisions.
async fn budgets_of(ctx: &Context, namespace: &str, pod: &Value) -> Result<Vec<(Value, i64)>, Status> {
    let budgets = ctx
        .api
        .store
        .range(Range::of(KeyRange::prefix(format!(
            "/registry/poddisruptionbudgets/{namespace}/"
        ))))
        .await
        .map_err(super::handlers::store_error)?;
    let mut matching = Vec::new();
    for kv in &budgets.kvs {
        let budget = super::handlers::object_of(kv)?;
        if match_labels(&budget["spec"]["selector"]).is_some_and(|s| s.matches(pod)) {
            matching.push((budget, kv.mod_revision));
        }
    }
    Ok(matching)
}

/// 429 with a `DisruptionBudget` cause, as kube-apiserver refuses evictions.
fn too_many_requests(cause: String, retry_after: i32) -> Status {
    let mut status = Status::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    status.details.retry_after_seconds = retry_after;
    status.details.causes.push(Cause {
        reason: "DisruptionBudget".into(),
        message: cause,
        field: String::new(),
    });
    status
}

/// The budget with one disruption taken for `pod` (`checkAndDecrement`), or why not.
fn take_disruption(budget: &Value, pod: &str) -> Result<Value, Status> {
    let name = budget["metadata"]["name"].as_str().unwrap_or_default();
    let status = &budget["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < budget["metadata"]["generation"].as_i64().unwrap_or(1) {
        return Err(too_many_requests(
            format!("The disruption budget {name} is still being processed by the server."),
            10,
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(Status::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: pdb disruptions allowed is negative"
        )));
    }
    if status["disruptedPods"]
        .as_object()
        .is_some_and(|m| m.len() > MAX_DISRUPTED_PODS)
    {
        return Err(Status::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status["desiredHealthy"].as_i64().unwrap_or(0),
                status["currentHealthy"].as_i64().unwrap_or(0)
            ),
            0,
        ));
    }
    let mut next = budget.clone();
    let now = super::time::now_rfc3339();
    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        let mut conditions: Vec<Value> = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let observed = json!(observed);
        match conditions.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
            Some(c) => {
                if c["status"] != "False" {
                    c["lastTransitionTime"] = json!(now);
                }
                c["status"] = json!("False");
                c["reason"] = json!("InsufficientPods");
                c["message"] = json!("");
                c["observedGeneration"] = observed;
            }
            None => conditions.push(json!({"type": "DisruptionAllowed", "status": "False",
                "reason": "InsufficientPods", "message": "", "observedGeneration": observed, "lastTransitionTime": now})),
        }
        next["status"]["conditions"] = json!(conditions);
    }
    if !next["status"]["disruptedPods"].is_object() {
        next["status"]["disruptedPods"] = json!({});
    }
    next["status"]["disruptedPods"][pod] = json!(now);
    Ok(next)
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
