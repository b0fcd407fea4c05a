//! The Job controller (kube-controller-manager's `job` and `ttlafterfinished`
//! controllers): runs pods until `completions` of them succeed, at most
//! `parallelism` at a time, retrying failures with exponential back-off until
//! `backoffLimit`; `activeDeadlineSeconds`, `suspend`, the Indexed completion
//! mode (one index per pod: `batch.kubernetes.io/job-completion-index`, hostname
//! `<job>-<index>`, `status.completedIndexes`) and `ttlSecondsAfterFinished`.
//!
//! Pods are counted exactly once as upstream does it: each pod carries the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod's uid is first
//! written to `status.uncountedTerminatedPods`, then its finalizer is removed,
//! and only then is it moved into `succeeded`/`failed`. A pod deleted before it
//! finished counts as failed. As in Kubernetes 1.33, a Job first gets the
//! `SuccessCriteriaMet` or `FailureTarget` condition, and `Complete` or `Failed`
//! once none of its pods runs any more.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::pods::{
    self, Expectations, Written, controller_of, controller_reference, is_active, is_deleting, is_ready, phase,
};
use super::replicaset::Events;
use super::{Context, Error, drain, retry_after};

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
pub const LEGACY_JOB_NAME: &str = "job-name";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// `spec.managedBy` of Jobs this controller runs (unset means the same).
const MANAGER: &str = "kubernetes.io/job-controller";

/// First retry delay after a failed pod; doubles per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

struct State {
    context: Context,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    written: Written,
    events: Events,
    /// Per Job uid: failures since the last success and when the last one was seen.
    backoff: Mutex<HashMap<String, (u32, Timestamp)>>,
}

pub async fn run(context: Context) {
    let jobs = context.informers.synced::<Job>().await;
    let pods = context.informers.synced::<Pod>().await;
    let state = Arc::new(State {
        events: Events::new(context.client.clone(), "job-controller"),
        context,
        jobs: jobs.store().clone(),
        pods: pods.store().clone(),
        expectations: Expectations::default(),
        written: Written::default(),
        backoff: Mutex::new(HashMap::new()),
    });
    let jobs_loop = Controller::for_shared_stream(jobs.subscribe(), jobs.store().clone())
        .owns_shared_stream(pods.subscribe())
        .run(reconcile, |_, err, _| Action::requeue(retry_after(err)), state.clone());
    // Pods still holding the finalizer after their Job is gone (or orphaned).
    let tracked = pods
        .subscribe()
        .filter(|pod| futures_util::future::ready(has_finalizer(pod)));
    let orphans_loop = Controller::for_shared_stream(tracked, pods.store().clone()).run(
        release_orphan,
        |_, err, _| Action::requeue(retry_after(err)),
        state,
    );
    tokio::join!(drain(jobs_loop), drain(orphans_loop));
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index, if it has a valid one.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.and_then(|m| m.get(COMPLETION_INDEX))
            .and_then(|v| v.parse::<i32>().ok())
    };
    from(pod.metadata.annotations.as_ref())
        .or_else(|| from(pod.metadata.labels.as_ref()))
        .filter(|i| *i >= 0)
}

fn condition_true(job: &Job, kind: &str) -> Option<JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .cloned()
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    condition_true(job, "Complete").is_some() || condition_true(job, "Failed").is_some()
}

/// Parses `status.completedIndexes` ("1,3-5,7").
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(first), Ok(last)) = (first.parse::<i32>(), last.parse::<i32>()) {
            // A corrupt range is not worth a huge loop.
            if first >= 0 && last >= first && last - first <= 1_000_000 {
                indexes.extend(first..=last);
            }
        }
    }
    indexes
}

/// Formats indexes as `status.completedIndexes` does.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    parts.join(",")
}

fn set_condition(
    conditions: &mut Vec<JobCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let condition = JobCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) if existing.status == status => {}
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

fn find_true(conditions: &[JobCondition], kind: &str) -> Option<JobCondition> {
    conditions
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .cloned()
}

/// What one sync decided: the new status and the pods to create, delete and release.
#[derive(Debug, Default)]
struct Plan {
    status: JobStatus,
    /// One entry per pod to create: its completion index in Indexed mode.
    create: Vec<Option<i32>>,
    delete: Vec<Arc<Pod>>,
    /// Pods whose finalizer goes once the status is written.
    release: Vec<Arc<Pod>>,
    /// Finished pods counted for the first time.
    new_failed: u32,
    new_succeeded: u32,
    /// When to look again without any change (deadline, back-off).
    requeue: Option<Duration>,
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The delay before new pods after `failures` consecutive failures.
fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Deletion order among active pods (`controller.ActivePods`): unscheduled,
/// pending and not-ready pods go first, then the newest.
fn removal_order(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|pod| {
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let running = phase(pod) == "Running";
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (bound, running, is_ready(pod), std::cmp::Reverse(created))
    });
}

/// Decides one sync of an unfinished Job from its pods (pure, for tests).
fn plan(job: &Job, pods: &[Arc<Pod>], now: Timestamp, backoff: (u32, Timestamp), can_manage: bool) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let mut out = Plan::default();

    // Count finished pods exactly once (uncounted → finalizer removed → counters).
    let by_uid: HashMap<String, &Arc<Pod>> = pods.iter().filter_map(|p| Some((p.uid()?, p))).collect();
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let (mut succeeded, mut failed) = (old.succeeded.unwrap_or(0), old.failed.unwrap_or(0));
    let mut pending_succeeded = Vec::new();
    for uid in uncounted.succeeded.unwrap_or_default() {
        match by_uid.get(&uid) {
            Some(pod) if has_finalizer(pod) => pending_succeeded.push(uid),
            _ => succeeded += 1,
        }
    }
    let mut pending_failed = Vec::new();
    for uid in uncounted.failed.unwrap_or_default() {
        match by_uid.get(&uid) {
            Some(pod) if has_finalizer(pod) => pending_failed.push(uid),
            _ => failed += 1,
        }
    }
    let mut completed = parse_indexes(old.completed_indexes.as_deref().unwrap_or_default());
    let known: HashSet<String> = pending_succeeded.iter().chain(&pending_failed).cloned().collect();
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        let uid = pod.uid().unwrap_or_default();
        if known.contains(&uid) {
            continue;
        }
        if phase(pod) == "Succeeded" {
            pending_succeeded.push(uid);
            out.new_succeeded += 1;
            if indexed && let Some(index) = pod_index(pod).filter(|i| completions.is_none_or(|c| *i < c)) {
                completed.insert(index);
            }
        } else if phase(pod) == "Failed" || is_deleting(pod) {
            pending_failed.push(uid);
            out.new_failed += 1;
        }
    }
    let uncounted_uids: HashSet<&String> = pending_succeeded.iter().chain(&pending_failed).collect();
    out.release = pods
        .iter()
        .filter(|p| has_finalizer(p) && p.uid().is_some_and(|uid| uncounted_uids.contains(&uid)))
        .cloned()
        .collect();
    let succeeded_total = succeeded + i32::try_from(pending_succeeded.len()).unwrap_or(i32::MAX);
    let failed_total = failed + i32::try_from(pending_failed.len()).unwrap_or(i32::MAX);

    let mut active: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let terminating = pods.iter().filter(|p| is_deleting(p) && !pods::is_terminal(p)).count();

    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut start_time = old.start_time.clone();
    let mut completion_time = old.completion_time.clone();
    if start_time.is_none() && !suspended {
        start_time = Some(Time(now));
    }
    let mut failure = find_true(&conditions, "FailureTarget");
    let mut success = find_true(&conditions, "SuccessCriteriaMet");
    if failure.is_none() && success.is_none() {
        let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
        let restarts: i32 = if on_failure {
            active
                .iter()
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
                .flatten()
                .map(|c| c.restart_count)
                .sum()
        } else {
            0
        };
        let deadline = spec
            .active_deadline_seconds
            .zip(start_time.as_ref())
            .map(|(seconds, start)| start.0 + SignedDuration::from_secs(seconds));
        let complete = if indexed {
            completions.is_some_and(|c| i32::try_from(completed.len()).unwrap_or(i32::MAX) >= c)
        } else {
            match completions {
                Some(c) => succeeded_total >= c,
                None => succeeded_total > 0 && active.is_empty(),
            }
        };
        if failed_total.saturating_add(restarts) > backoff_limit
            || (on_failure && restarts > 0 && restarts >= backoff_limit)
        {
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            );
        } else if !suspended && deadline.is_some_and(|d| d <= now) {
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            );
        } else if complete {
            set_condition(
                &mut conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
        } else if !suspended && let Some(deadline) = deadline {
            out.requeue = Some(until(now, deadline));
        }
        failure = find_true(&conditions, "FailureTarget");
        success = find_true(&conditions, "SuccessCriteriaMet");
    }

    let mut created = 0usize;
    if failure.is_some() || success.is_some() {
        // Finishing: stop what still runs; the terminal condition follows once
        // nothing runs and every finished pod is counted.
        out.delete = std::mem::take(&mut active);
        if out.delete.is_empty() && terminating == 0 && pending_succeeded.is_empty() && pending_failed.is_empty() {
            if let Some(failure) = &failure {
                set_condition(
                    &mut conditions,
                    "Failed",
                    "True",
                    failure.reason.as_deref().unwrap_or_default(),
                    failure.message.as_deref().unwrap_or_default(),
                    now,
                );
            } else {
                set_condition(
                    &mut conditions,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
                completion_time = Some(Time(now));
            }
        }
    } else if suspended {
        out.delete = std::mem::take(&mut active);
        set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
        start_time = None;
    } else {
        if conditions.iter().any(|c| c.type_ == "Suspended" && c.status == "True") {
            set_condition(&mut conditions, "Suspended", "False", "JobResumed", "Job resumed", now);
            start_time = Some(Time(now));
        }
        if can_manage {
            let wait = {
                // Failures seen in this very sync count at once.
                let (failures, last) = match (out.new_failed, out.new_succeeded) {
                    (0, 0) => backoff,
                    (0, _) => (0, now),
                    (new, _) => (backoff.0.saturating_add(new), now),
                };
                let ready_at = last + SignedDuration::try_from(backoff_delay(failures)).unwrap_or(SignedDuration::ZERO);
                (ready_at > now).then(|| until(now, ready_at))
            };
            if indexed {
                let completions = completions.unwrap_or(0);
                let mut running: HashSet<i32> = HashSet::new();
                let mut keep = Vec::new();
                for pod in std::mem::take(&mut active) {
                    match pod_index(&pod) {
                        Some(i) if i < completions && !completed.contains(&i) && running.insert(i) => keep.push(pod),
                        _ => out.delete.push(pod),
                    }
                }
                let remaining = usize::try_from(completions)
                    .unwrap_or(0)
                    .saturating_sub(completed.len());
                let want = usize::try_from(parallelism).unwrap_or(0).min(remaining);
                if keep.len() > want {
                    keep.sort_by_key(|p| pod_index(p));
                    out.delete.extend(keep.split_off(want));
                } else if keep.len() < want {
                    if let Some(wait) = wait {
                        out.requeue = earliest(out.requeue, Some(wait));
                    } else {
                        out.create = (0..completions)
                            .filter(|i| !completed.contains(i) && !running.contains(i))
                            .take(want - keep.len())
                            .map(Some)
                            .collect();
                    }
                }
                active = keep;
            } else {
                let want = match completions {
                    None if succeeded_total > 0 => active.len(),
                    None => usize::try_from(parallelism).unwrap_or(0),
                    Some(c) => usize::try_from(parallelism.min((c - succeeded_total).max(0))).unwrap_or(0),
                };
                if active.len() > want {
                    removal_order(&mut active);
                    let extra = active.len() - want;
                    out.delete.extend(active.drain(..extra));
                } else if active.len() < want {
                    if let Some(wait) = wait {
                        out.requeue = earliest(out.requeue, Some(wait));
                    } else {
                        out.create = vec![None; want - active.len()];
                    }
                }
            }
            created = out.create.len();
        }
    }

    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let active_count = count(active.len() + created);
    let ready = count(active.iter().filter(|p| is_ready(p)).count());
    out.status = JobStatus {
        active: (active_count > 0).then_some(active_count),
        succeeded: (succeeded > 0).then_some(succeeded),
        failed: (failed > 0).then_some(failed),
        ready: Some(ready),
        terminating: Some(count(terminating)),
        start_time,
        completion_time,
        completed_indexes: (indexed && !completed.is_empty())
            .then(|| format_indexes(&completed))
            .or_else(|| indexed.then(String::new)),
        conditions: (!conditions.is_empty()).then_some(conditions),
        uncounted_terminated_pods: Some(UncountedTerminatedPods {
            succeeded: (!pending_succeeded.is_empty()).then_some(pending_succeeded),
            failed: (!pending_failed.is_empty()).then_some(pending_failed),
        }),
        failed_indexes: old.failed_indexes.clone(),
    };
    out
}

/// A new pod of `job`, for `index` in Indexed mode.
fn new_pod(job: &Job, index: Option<i32>) -> Option<Pod> {
    let name = job.metadata.name.as_deref()?;
    let uid = job.metadata.uid.as_deref()?;
    let template = &job.spec.as_ref()?.template;
    let mut pod = pods::pod_from_template(template, controller_reference(job)?);
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    for (key, value) in [
        (CONTROLLER_UID, uid),
        (LEGACY_CONTROLLER_UID, uid),
        (JOB_NAME, name),
        (LEGACY_JOB_NAME, name),
    ] {
        labels.entry(key.to_string()).or_insert_with(|| value.to_string());
    }
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.to_string());
    match index {
        None => pod.metadata.generate_name = Some(format!("{name}-")),
        Some(index) => {
            pod.metadata.generate_name = Some(format!("{name}-{index}-"));
            labels.insert(COMPLETION_INDEX.to_string(), index.to_string());
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(COMPLETION_INDEX.to_string(), index.to_string());
            if let Some(spec) = pod.spec.as_mut() {
                if spec.hostname.is_none() {
                    let mut hostname = format!("{name}-{index}");
                    hostname.truncate(63);
                    spec.hostname = Some(hostname.trim_end_matches(['-', '.']).to_string());
                }
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                        }),
                        ..Default::default()
                    }),
                };
                let containers = spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten());
                for container in containers {
                    let vars = container.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == env.name) {
                        vars.push(env.clone());
                    }
                }
            }
        }
    }
    Some(pod)
}

async fn release(api: &Api<Pod>, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        match api
            .patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let (Some(namespace), Some(uid)) = (job.namespace(), job.uid()) else {
        return Ok(Action::await_change());
    };
    let spec = job.spec.clone().unwrap_or_default();
    if spec.managed_by.as_deref().is_some_and(|m| m != MANAGER) {
        return Ok(Action::await_change());
    }
    let client = state.context.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let job_api: Api<Job> = Api::namespaced(client, &namespace);
    let pods = pods::owned_pods(&state.pods, &namespace, &uid);
    if state.written.is_stale(&*job) {
        // Our own newer status is on its way through the cache; its event syncs again.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if job.metadata.deletion_timestamp.is_some() {
        state.expectations.forget(&uid);
        state.written.forget(&uid);
        release(&pod_api, &pods).await?;
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        state.expectations.forget(&uid);
        state.written.forget(&uid);
        state
            .backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&uid);
        release(&pod_api, &pods).await?;
        return expire(&job_api, &job, now).await;
    }

    let backoff = state
        .backoff
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
        .copied()
        .unwrap_or((0, Timestamp::UNIX_EPOCH));
    let can_manage = state.expectations.satisfied(&uid, &state.pods);
    let plan = plan(&job, &pods, now, backoff, can_manage);

    let regarding = job.object_ref(&());
    for pod in &plan.delete {
        state.expectations.deleted(&uid, &**pod);
        ignore_missing(pod_api.delete(&pod.name_any(), &DeleteParams::default()).await)?;
        let note = format!("Deleted pod: {}", pod.name_any());
        state
            .events
            .publish(&regarding, EventType::Normal, "SuccessfulDelete", note)
            .await;
    }
    for index in &plan.create {
        let Some(pod) = new_pod(&job, *index) else { break };
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                state.expectations.created(&uid, &created);
                let note = format!("Created pod: {}", created.name_any());
                state
                    .events
                    .publish(&regarding, EventType::Normal, "SuccessfulCreate", note)
                    .await;
            }
            // The namespace is going away: nothing to run.
            Err(kube::Error::Api(status)) if status.code == 403 => break,
            Err(err) => return Err(err.into()),
        }
    }

    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = (*job).clone();
        updated.status = Some(plan.status.clone());
        match job_api
            .replace_status(&job.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(written) => state.written.wrote(&written),
            // A newer Job is on its way through the cache; its event syncs again.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(err.into()),
        }
        for (type_, reason, note) in transitions(&job, &plan.status) {
            state.events.publish(&regarding, type_, &reason, note).await;
        }
    }
    if plan.new_failed > 0 || plan.new_succeeded > 0 {
        let mut backoff = state.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = backoff.entry(uid.clone()).or_insert((0, now));
        if plan.new_succeeded > 0 {
            *entry = (0, now);
        }
        if plan.new_failed > 0 {
            *entry = (entry.0.saturating_add(plan.new_failed), now);
        }
    }
    release(&pod_api, &plan.release).await?;
    Ok(plan
        .requeue
        .map(|after| Action::requeue(after + Duration::from_millis(100)))
        .unwrap_or_else(Action::await_change))
}

/// The events of the conditions a new status turns on (`Completed`, the
/// failure reason, `Suspended`, `Resumed`).
fn transitions(job: &Job, status: &JobStatus) -> Vec<(EventType, String, String)> {
    let before = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut events = Vec::new();
    for condition in status.conditions.iter().flatten() {
        let was = before
            .iter()
            .find(|c| c.type_ == condition.type_)
            .map(|c| c.status.as_str());
        if was == Some(condition.status.as_str()) {
            continue;
        }
        match (condition.type_.as_str(), condition.status.as_str()) {
            ("Complete", "True") => events.push((EventType::Normal, "Completed".into(), "Job completed".into())),
            ("Failed", "True") => events.push((
                EventType::Warning,
                condition.reason.clone().unwrap_or_else(|| "Failed".into()),
                condition.message.clone().unwrap_or_default(),
            )),
            ("Suspended", "True") => events.push((EventType::Normal, "Suspended".into(), "Job suspended".into())),
            ("Suspended", "False") => events.push((EventType::Normal, "Resumed".into(), "Job resumed".into())),
            _ => {}
        }
    }
    events
}

/// `ttlSecondsAfterFinished`: deletes a finished Job (and, in the foreground,
/// its pods) once its time is up.
async fn expire(api: &Api<Job>, job: &Job, now: Timestamp) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let finished_at = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .or_else(|| condition_true(job, "Failed").and_then(|c| c.last_transition_time))
        .or_else(|| condition_true(job, "Complete").and_then(|c| c.last_transition_time))
        .map_or(now, |t| t.0);
    let expires = finished_at + SignedDuration::from_secs(i64::from(ttl.max(0)));
    if expires > now {
        return Ok(Action::requeue(until(now, expires) + Duration::from_millis(100)));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    ignore_missing(api.delete(&job.name_any(), &params).await)?;
    Ok(Action::await_change())
}

/// Removes the tracking finalizer from a pod whose Job is gone, is being
/// deleted or no longer controls it.
async fn release_orphan(pod: Arc<Pod>, state: Arc<State>) -> Result<Action, Error> {
    if !has_finalizer(&pod) {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let owner = controller_of(&pod.metadata).filter(|o| o.kind == "Job");
    let orphaned = match owner {
        None => true,
        Some(owner) => match state.jobs.get(&ObjectRef::new(&owner.name).within(&namespace)) {
            None => true,
            Some(job) => job.uid().as_deref() != Some(owner.uid.as_str()) || job.metadata.deletion_timestamp.is_some(),
        },
    };
    if orphaned {
        release(&Api::namespaced(state.context.client.clone(), &namespace), &[pod]).await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn job(spec: Value, status: Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, phase: &str, extra: Value) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "finalizers": [TRACKING_FINALIZER],
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase},
        });
        json_patch::merge(&mut value, &extra);
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2024-05-01T10:00:00Z";
    const NO_BACKOFF: (u32, Timestamp) = (0, Timestamp::UNIX_EPOCH);

    #[test]
    fn indexes_round_trip() {
        let set = parse_indexes("1,3-5,7");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
        assert_eq!(format_indexes(&set), "1,3-5,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert!(parse_indexes("x,5-2").is_empty());
    }

    #[test]
    fn creates_up_to_parallelism_then_counts_successes_once() {
        let j = job(json!({"completions": 3, "parallelism": 2, "template": {}}), json!({}));
        let p = plan(&j, &[], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.create.len(), 2);
        assert_eq!(p.status.active, Some(2));
        assert!(p.status.start_time.is_some());

        // One pod succeeded: it goes to uncounted first and its finalizer is released.
        let pods = vec![pod("a", "Succeeded", json!({})), pod("b", "Running", json!({}))];
        let p = plan(&j, &pods, at(NOW), NO_BACKOFF, true);
        let uncounted = p.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_string()]));
        assert_eq!(p.status.succeeded, None);
        assert_eq!(p.release.len(), 1);
        assert_eq!(p.create.len(), 1, "2 remaining, 1 active: one more");

        // Finalizer gone: counted in `succeeded`, no longer uncounted.
        let mut counted = j.clone();
        counted.status = Some(p.status.clone());
        let pods = vec![
            pod("a", "Succeeded", json!({"metadata": {"finalizers": null}})),
            pod("b", "Running", json!({})),
        ];
        let p = plan(&counted, &pods, at(NOW), NO_BACKOFF, true);
        assert_eq!(p.status.succeeded, Some(1));
        assert_eq!(p.status.uncounted_terminated_pods.unwrap().succeeded, None);
    }

    #[test]
    fn completes_after_all_succeeded_and_counted() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "template": {}}),
            json!({"succeeded": 1, "startTime": "2024-05-01T09:00:00Z"}),
        );
        let p = plan(&j, &[], at(NOW), NO_BACKOFF, true);
        let conditions = p.status.conditions.unwrap();
        assert!(conditions.iter().any(|c| c.type_ == "SuccessCriteriaMet"));
        let complete = conditions.iter().find(|c| c.type_ == "Complete").unwrap();
        assert_eq!(complete.status, "True");
        assert!(p.status.completion_time.is_some());
    }

    #[test]
    fn backoff_limit_fails_the_job_and_stops_its_pods() {
        let j = job(
            json!({"completions": 2, "parallelism": 2, "backoffLimit": 1, "template": {}}),
            json!({"failed": 1}),
        );
        let pods = vec![pod("a", "Failed", json!({})), pod("b", "Running", json!({}))];
        let p = plan(&j, &pods, at(NOW), NO_BACKOFF, true);
        let conditions = p.status.conditions.clone().unwrap();
        let target = conditions.iter().find(|c| c.type_ == "FailureTarget").unwrap();
        assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert!(!conditions.iter().any(|c| c.type_ == "Failed"), "pods still run");
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());

        // Later: nothing runs and everything is counted: Failed.
        let mut later = j.clone();
        later.status = Some(JobStatus {
            failed: Some(3),
            conditions: Some(conditions),
            ..Default::default()
        });
        let p = plan(&later, &[], at(NOW), NO_BACKOFF, true);
        let failed = p
            .status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    }

    #[test]
    fn failures_wait_for_backoff() {
        let j = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 3, "template": {}}),
            json!({"failed": 1}),
        );
        let p = plan(&j, &[], at(NOW), (1, at("2024-05-01T09:59:55Z")), true);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(5)));
        let p = plan(&j, &[], at(NOW), (1, at("2024-05-01T09:59:50Z")), true);
        assert_eq!(p.create.len(), 1);
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(30), MAX_BACKOFF);
    }

    #[test]
    fn deadline_exceeded() {
        let j = job(
            json!({"completions": 1, "activeDeadlineSeconds": 60, "template": {}}),
            json!({"startTime": "2024-05-01T09:58:00Z"}),
        );
        let p = plan(&j, &[pod("a", "Running", json!({}))], at(NOW), NO_BACKOFF, true);
        let target = p
            .status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "FailureTarget")
            .unwrap();
        assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(p.delete.len(), 1);
        let j = job(
            json!({"completions": 1, "activeDeadlineSeconds": 600, "template": {}}),
            json!({"startTime": "2024-05-01T09:58:00Z"}),
        );
        let p = plan(&j, &[pod("a", "Running", json!({}))], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.requeue, Some(Duration::from_secs(480)));
    }

    #[test]
    fn indexed_runs_each_missing_index() {
        let j = job(
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed", "template": {}}),
            json!({"completedIndexes": "0"}),
        );
        let running = pod(
            "b",
            "Running",
            json!({"metadata": {"annotations": {COMPLETION_INDEX: "2"}}}),
        );
        let p = plan(&j, &[running], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.create, vec![Some(1)]);
        let done = pod(
            "c",
            "Succeeded",
            json!({"metadata": {"labels": {COMPLETION_INDEX: "3"}}}),
        );
        let p = plan(&j, &[done], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0,3"));
        assert_eq!(p.create, vec![Some(1), Some(2)]);

        let j = job(
            json!({"completions": 4, "completionMode": "Indexed",
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}),
            json!({}),
        );
        let pod = new_pod(&j, Some(2)).unwrap();
        let env = pod.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("j-2-"));
        assert_eq!(pod.labels()[COMPLETION_INDEX], "2");
        assert_eq!(pod.annotations()[COMPLETION_INDEX], "2");
        assert_eq!(pod.labels()[JOB_NAME], "j");
        assert_eq!(pod.labels()[LEGACY_CONTROLLER_UID], "job-uid");
        assert_eq!(pod.spec.as_ref().unwrap().hostname.as_deref(), Some("j-2"));
        assert_eq!(pod.finalizers(), [TRACKING_FINALIZER]);
        assert_eq!(controller_of(&pod.metadata).unwrap().uid, "job-uid");
    }

    #[test]
    fn suspend_stops_pods_and_resume_restarts_the_clock() {
        let j = job(json!({"completions": 1, "suspend": true, "template": {}}), json!({}));
        let p = plan(&j, &[pod("a", "Running", json!({}))], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());
        assert!(p.status.start_time.is_none());
        let suspended = p.status.conditions.clone().unwrap();
        assert_eq!(suspended[0].type_, "Suspended");
        let mut resumed = job(json!({"completions": 1, "template": {}}), json!({}));
        resumed.status = Some(JobStatus {
            conditions: Some(suspended),
            ..Default::default()
        });
        let p = plan(&resumed, &[], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.create.len(), 1);
        let condition = &p.status.conditions.unwrap()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
    }

    #[test]
    fn deleted_running_pods_count_as_failed() {
        let j = job(json!({"completions": 1, "backoffLimit": 6, "template": {}}), json!({}));
        let deleting = pod("a", "Running", json!({"metadata": {"deletionTimestamp": NOW}}));
        let p = plan(&j, &[deleting], at(NOW), NO_BACKOFF, true);
        assert_eq!(p.new_failed, 1);
        assert_eq!(p.status.terminating, Some(1));
        assert!(p.create.is_empty(), "the replacement waits out the back-off");
        assert_eq!(p.requeue, Some(BASE_BACKOFF));
    }
}
