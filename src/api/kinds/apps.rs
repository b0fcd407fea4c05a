//! apps/v1 and batch/v1 workloads: the defaults kube-apiserver gives them (so
//! controllers and `kubectl rollout` see what they expect) and their basic
//! validation (a selector that matches the template).

use serde_json::{Value, json};

use super::core::{pod_spec_defaults, validate_pod_spec};
use super::{invalid, required};
use crate::api::status::Cause;

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
    }
}

pub fn workload_defaults(resource: &str, object: &mut Value) {
    let spec = &mut object["spec"];
    if resource != "daemonsets" {
        set_default(spec, "replicas", json!(1));
    }
    match resource {
        "deployments" => {
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(spec, "strategy", json!({"type": "RollingUpdate"}));
            if spec["strategy"]["type"] == "RollingUpdate" {
                set_default(&mut spec["strategy"], "rollingUpdate", json!({}));
                set_default(&mut spec["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
                set_default(&mut spec["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
            }
        }
        "statefulsets" => {
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        "daemonsets" => {
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
        }
        _ => {}
    }
    if resource == "replicationcontrollers" && spec["selector"].is_null() {
        spec["selector"] = spec["template"]["metadata"]["labels"].clone();
    }
    if spec["template"]["spec"].is_object() {
        pod_spec_defaults(&mut spec["template"]["spec"]);
    }
}

pub fn job_defaults(object: &mut Value) {
    let spec = &mut object["spec"];
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec["completions"].is_null() && spec["parallelism"] == 1 {
        spec["completions"] = json!(1);
    }
    if spec["template"]["spec"].is_object() {
        set_default(&mut spec["template"]["spec"], "restartPolicy", json!("Never"));
        pod_spec_defaults(&mut spec["template"]["spec"]);
    }
}

/// A new Job's generated selector (unless `spec.manualSelector`), as
/// kube-apiserver's job strategy does on create: the template gets the
/// `controller-uid` and `job-name` labels (current and legacy keys) and the
/// selector matches `batch.kubernetes.io/controller-uid`.
pub fn job_selector(object: &mut Value) {
    if object["spec"]["manualSelector"] == json!(true) || !object["spec"].is_object() {
        return;
    }
    let uid = object["metadata"]["uid"].clone();
    let name = object["metadata"]["name"].clone();
    if !uid.is_string() {
        return;
    }
    let spec = &mut object["spec"];
    if !spec["template"]["metadata"]["labels"].is_object() {
        spec["template"]["metadata"]["labels"] = json!({});
    }
    let labels = &mut spec["template"]["metadata"]["labels"];
    if name.is_string() {
        set_default(labels, "batch.kubernetes.io/job-name", name.clone());
        set_default(labels, "job-name", name);
    }
    set_default(labels, "batch.kubernetes.io/controller-uid", uid.clone());
    set_default(labels, "controller-uid", uid.clone());
    if !spec["selector"]["matchLabels"].is_object() {
        spec["selector"]["matchLabels"] = json!({});
    }
    set_default(
        &mut spec["selector"]["matchLabels"],
        "batch.kubernetes.io/controller-uid",
        uid,
    );
}

pub fn cronjob_defaults(object: &mut Value) {
    let spec = &mut object["spec"];
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if spec["jobTemplate"]["spec"].is_object() {
        let mut job = json!({"spec": spec["jobTemplate"]["spec"].take()});
        job_defaults(&mut job);
        spec["jobTemplate"]["spec"] = job["spec"].take();
    }
}

pub fn validate_workload(object: &Value) -> Vec<Cause> {
    let spec = &object["spec"];
    let mut causes = Vec::new();
    let selector = &spec["selector"]["matchLabels"];
    let labels = &spec["template"]["metadata"]["labels"];
    if spec["selector"].is_null() {
        causes.push(required("spec.selector"));
    } else if let Some(wanted) = selector.as_object() {
        let matches = wanted.iter().all(|(k, v)| labels.get(k) == Some(v));
        if !matches {
            causes.push(invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            ));
        }
    }
    if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
        causes.push(invalid(
            "spec.replicas",
            &spec["replicas"],
            "must be greater than or equal to 0",
        ));
    }
    causes.extend(validate_pod_spec(&spec["template"]["spec"], "spec.template.spec"));
    causes
}

fn unsupported(field: &str, value: &Value, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    Cause {
        reason: "FieldValueNotSupported".into(),
        message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        field: field.into(),
    }
}

/// A Job spec at `path` (`spec`, or `spec.jobTemplate.spec` of a CronJob), as
/// kube-apiserver's `ValidateJobSpec` checks what the controller relies on.
fn validate_job_spec(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if spec[field].as_i64().is_some_and(|n| n < 0) {
            causes.push(invalid(
                &format!("{path}.{field}"),
                &spec[field],
                "must be greater than or equal to 0",
            ));
        }
    }
    if spec["activeDeadlineSeconds"].as_i64() == Some(0) {
        causes.push(invalid(
            &format!("{path}.activeDeadlineSeconds"),
            &spec["activeDeadlineSeconds"],
            "must be greater than 0",
        ));
    }
    match spec["completionMode"].as_str() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec["completions"].is_null() {
                causes.push(Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: when completion mode is Indexed".into(),
                    field: format!("{path}.completions"),
                });
            }
        }
        Some(_) => causes.push(unsupported(
            &format!("{path}.completionMode"),
            &spec["completionMode"],
            &["NonIndexed", "Indexed"],
        )),
    }
    let restart = &spec["template"]["spec"]["restartPolicy"];
    if !matches!(restart.as_str(), Some("Never" | "OnFailure")) {
        causes.push(unsupported(
            &format!("{path}.template.spec.restartPolicy"),
            restart,
            &["OnFailure", "Never"],
        ));
    }
    causes.extend(validate_pod_spec(
        &spec["template"]["spec"],
        &format!("{path}.template.spec"),
    ));
    causes
}

pub fn validate_job(object: &Value) -> Vec<Cause> {
    validate_job_spec(&object["spec"], "spec")
}

/// A CronJob's schedule and time zone must parse, as the controller reads them.
pub fn validate_cronjob(object: &Value) -> Vec<Cause> {
    use crate::controllers::cronjob::schedule;
    let spec = &object["spec"];
    let mut causes = Vec::new();
    match spec["schedule"].as_str() {
        None | Some("") => causes.push(required("spec.schedule")),
        Some(text) => {
            if let Err(err) = schedule::parse(text, None) {
                causes.push(invalid("spec.schedule", &spec["schedule"], &err.to_string()));
            } else if spec["timeZone"].is_string() && (text.contains("TZ=")) {
                causes.push(invalid(
                    "spec.schedule",
                    &spec["schedule"],
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(zone) = spec["timeZone"].as_str() {
        let known = !zone.is_empty() && !zone.eq_ignore_ascii_case("local") && schedule::time_zone(zone).is_ok();
        if !known {
            causes.push(invalid(
                "spec.timeZone",
                &spec["timeZone"],
                &format!("unknown time zone {zone}"),
            ));
        }
    }
    if spec["startingDeadlineSeconds"].as_i64().is_some_and(|n| n < 0) {
        causes.push(invalid(
            "spec.startingDeadlineSeconds",
            &spec["startingDeadlineSeconds"],
            "must be greater than or equal to 0",
        ));
    }
    if let Some(policy) = spec["concurrencyPolicy"].as_str()
        && !matches!(policy, "Allow" | "Forbid" | "Replace")
    {
        causes.push(unsupported(
            "spec.concurrencyPolicy",
            &spec["concurrencyPolicy"],
            &["Allow", "Forbid", "Replace"],
        ));
    }
    causes.extend(validate_job_spec(&spec["jobTemplate"]["spec"], "spec.jobTemplate.spec"));
    causes
}
