//! The CronJob controller (kube-controller-manager's `cronjob` controller, v2):
//! at each time of `spec.schedule` (read in `spec.timeZone`) it creates the Job
//! `<cronjob>-<scheduled time in minutes since the epoch>` from the job
//! template, honouring `startingDeadlineSeconds`, `concurrencyPolicy`
//! (Allow, Forbid, Replace) and `suspend`; it keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, and deletes the oldest finished
//! Jobs beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit`. It sleeps
//! until the next scheduled time (or a change): no polling.

pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::job::is_finished;
use super::pods::{controller_reference, is_controlled_by};
use super::replicaset::Events;
use super::{Context, Error, drain, retry_after};

/// The annotation with the scheduled time of a Job, in the CronJob's time zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Requeues land just after the scheduled time, as upstream's `nextScheduleDelta`.
const DELTA: Duration = Duration::from_millis(100);
/// More missed times than this earns a warning (upstream's `manyMissed`).
const MANY_MISSED: i64 = 100;

struct State {
    context: Context,
    jobs: Store<Job>,
    events: Events,
}

pub async fn run(context: Context) {
    let cronjobs = context.informers.synced::<CronJob>().await;
    let jobs = context.informers.synced::<Job>().await;
    let state = Arc::new(State {
        events: Events::new(context.client.clone(), "cronjob-controller"),
        context,
        jobs: jobs.store().clone(),
    });
    let controller = Controller::for_shared_stream(cronjobs.subscribe(), cronjobs.store().clone())
        .owns_shared_stream(jobs.subscribe())
        .run(reconcile, |_, err, _| Action::requeue(retry_after(err)), state);
    drain(controller).await;
}

/// The name of the Job for the time `scheduled`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job a CronJob runs at `scheduled`.
pub fn job_for(cronjob: &CronJob, scheduled: Timestamp, zone: &jiff::tz::TimeZone) -> Option<Job> {
    let name = cronjob.metadata.name.as_deref()?;
    let spec = cronjob.spec.as_ref()?;
    let template = spec.job_template.metadata.clone().unwrap_or_default();
    let mut annotations = template.annotations.unwrap_or_default();
    let local = scheduled.to_zoned(zone.clone());
    // Go's RFC 3339: `Z` for a zero offset, else `±hh:mm`.
    let stamp = if local.offset().seconds() == 0 {
        local.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), stamp);
    Some(Job {
        metadata: ObjectMeta {
            name: Some(job_name(name, scheduled)),
            labels: template.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cronjob)?]),
            ..Default::default()
        },
        spec: spec.job_template.spec.clone(),
        status: None,
    })
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// A requeue just after `at`.
fn requeue_at(now: Timestamp, at: Timestamp) -> Action {
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    Action::requeue(wait + DELTA)
}

async fn delete_job(api: &Api<Job>, name: &str) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

async fn reconcile(cronjob: Arc<CronJob>, state: Arc<State>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let (Some(namespace), Some(uid), Some(spec)) = (cronjob.namespace(), cronjob.uid(), cronjob.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    let name = cronjob.name_any();
    let client = state.context.client.clone();
    let job_api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let cronjob_api: Api<CronJob> = Api::namespaced(client, &namespace);
    let mut jobs: Vec<Arc<Job>> = state
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(namespace.as_str()) && is_controlled_by(&j.metadata, &uid))
        .collect();
    let old_status = cronjob.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut active = status.active.take().unwrap_or_default();

    // Reconcile the active list with the Jobs that exist.
    let children: HashSet<String> = jobs.iter().filter_map(|j| j.uid()).collect();
    let regarding = cronjob.object_ref(&());
    for job in &jobs {
        let listed = active.iter().any(|r| r.uid == job.uid());
        if listed && is_finished(job) {
            active.retain(|r| r.uid != job.uid());
            let how = if condition(job, "Complete") {
                "Complete"
            } else {
                "Failed"
            };
            let note = format!("Saw completed job: {}, condition: {how}", job.name_any());
            state
                .events
                .publish(&regarding, EventType::Normal, "SawCompletedJob", note)
                .await;
        }
        if condition(job, "Complete")
            && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone())
            && status.last_successful_time.as_ref().is_none_or(|last| last.0 < done.0)
        {
            status.last_successful_time = Some(done);
        }
    }
    let mut gone = Vec::new();
    for entry in &active {
        if entry.uid.as_ref().is_some_and(|u| children.contains(u)) {
            continue;
        }
        // Not in the cache: ask the API before calling it missing.
        match job_api.get_opt(entry.name.as_deref().unwrap_or_default()).await? {
            Some(job) if job.uid() == entry.uid => {}
            _ => {
                gone.push(entry.uid.clone());
                let note = format!("Active job went missing: {}", entry.name.as_deref().unwrap_or_default());
                state
                    .events
                    .publish(&regarding, EventType::Normal, "MissingJob", note)
                    .await;
            }
        }
    }
    active.retain(|r| !gone.contains(&r.uid));

    let action = if cronjob.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        Action::await_change()
    } else {
        match schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Err(err) => {
                let (reason, note) = match err {
                    schedule::Error::TimeZone(_) => (
                        "UnknownTimeZone",
                        format!(
                            "invalid timeZone: {:?}: {err}",
                            spec.time_zone.as_deref().unwrap_or_default()
                        ),
                    ),
                    _ => (
                        "UnparseableSchedule",
                        format!("unparseable schedule: {:?} : {err}", spec.schedule),
                    ),
                };
                state.events.publish(&regarding, EventType::Warning, reason, note).await;
                Action::await_change()
            }
            Ok(schedule) => {
                let created = cronjob.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
                let last = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
                let mut earliest = last;
                if let Some(deadline) = spec.starting_deadline_seconds {
                    let cutoff = now - SignedDuration::from_secs(deadline.max(0));
                    earliest = earliest.max(cutoff);
                }
                let due = schedule.most_recent(earliest, now);
                // Sleep until the next scheduled time (or a change).
                let wake = schedule
                    .next(now)
                    .map_or_else(Action::await_change, |t| requeue_at(now, t));
                match due {
                    None => wake,
                    Some((scheduled, missed)) => {
                        if missed > MANY_MISSED {
                            let note = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
                            state
                                .events
                                .publish(&regarding, EventType::Warning, "TooManyMissedTimes", note.into())
                                .await;
                        }
                        let too_late = spec
                            .starting_deadline_seconds
                            .is_some_and(|d| scheduled + SignedDuration::from_secs(d) < now);
                        let job_name = job_name(&name, scheduled);
                        let done = active.iter().any(|r| r.name.as_deref() == Some(job_name.as_str()))
                            || status.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled);
                        let forbid = spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty();
                        if too_late {
                            let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
                            let note = format!("Missed scheduled time to start a job: {when}");
                            state
                                .events
                                .publish(&regarding, EventType::Warning, "MissSchedule", note)
                                .await;
                        } else if forbid && !done {
                            let note =
                                "Not starting job because prior execution is running and concurrency policy is Forbid";
                            state
                                .events
                                .publish(&regarding, EventType::Normal, "JobAlreadyActive", note.into())
                                .await;
                        }
                        if too_late || done || forbid {
                            wake
                        } else {
                            if spec.concurrency_policy.as_deref() == Some("Replace") {
                                for entry in active.drain(..) {
                                    let job_name = entry.name.as_deref().unwrap_or_default();
                                    delete_job(&job_api, job_name).await?;
                                    let note = format!("Deleted job {job_name}");
                                    state
                                        .events
                                        .publish(&regarding, EventType::Normal, "SuccessfulDelete", note)
                                        .await;
                                }
                            }
                            let Some(job) = job_for(&cronjob, scheduled, schedule.time_zone()) else {
                                return Ok(Action::await_change());
                            };
                            let started = match job_api.create(&PostParams::default(), &job).await {
                                Ok(created) => {
                                    let note = format!("Created job {}", created.name_any());
                                    state
                                        .events
                                        .publish(&regarding, EventType::Normal, "SuccessfulCreate", note)
                                        .await;
                                    Some(created)
                                }
                                Err(kube::Error::Api(status)) if status.code == 409 => {
                                    // Created before the status said so: adopt it if it is ours.
                                    let existing = job_api.get(&job_name).await?;
                                    is_controlled_by(&existing.metadata, &uid).then_some(existing)
                                }
                                // The namespace is terminating.
                                Err(kube::Error::Api(status)) if status.code == 403 => None,
                                Err(err) => return Err(err.into()),
                            };
                            if let Some(started) = started {
                                if !active.iter().any(|r| r.uid == started.uid()) && !is_finished(&started) {
                                    active.push(reference(&started));
                                }
                                jobs.push(Arc::new(started));
                                status.last_schedule_time = Some(Time(scheduled));
                            }
                            wake
                        }
                    }
                }
            }
        }
    };

    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        let mut updated = (*cronjob).clone();
        updated.status = Some(status.clone());
        match cronjob_api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(err.into()),
        }
    }
    for deleted in cleanup(&job_api, spec, &jobs).await? {
        let note = format!("Deleted job {deleted}");
        state
            .events
            .publish(&regarding, EventType::Normal, "SuccessfulDelete", note)
            .await;
    }
    Ok(action)
}

/// Deletes the oldest finished Jobs beyond the history limits; returns their names.
async fn cleanup(
    api: &Api<Job>,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    jobs: &[Arc<Job>],
) -> Result<Vec<String>, Error> {
    let mut deleted = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| condition(j, kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = finished
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        // Oldest start first; Jobs that never started sort last.
        finished.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            (start.is_none(), start, j.metadata.name.clone())
        });
        for job in finished.into_iter().take(excess) {
            delete_job(api, &job.name_any()).await?;
            deleted.push(job.name_any());
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    fn scheduled_time(job: &Job) -> Option<&str> {
        job.meta()
            .annotations
            .as_ref()?
            .get(SCHEDULED_TIMESTAMP)
            .map(String::as_str)
    }

    #[test]
    fn jobs_are_named_by_scheduled_minute_and_stamped_in_the_time_zone() {
        let at: Timestamp = "2024-01-01T14:00:00Z".parse().unwrap();
        assert_eq!(job_name("backup", at), "backup-28401960");
        let cronjob: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "backup", "namespace": "ns", "uid": "cj-uid"},
            "spec": {"schedule": "0 9 * * *", "timeZone": "America/New_York",
                "jobTemplate": {"metadata": {"labels": {"team": "data"}, "annotations": {"a": "b"}},
                    "spec": {"backoffLimit": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
        }))
        .unwrap();
        let zone = schedule::time_zone("America/New_York").unwrap();
        let job = job_for(&cronjob, at, &zone).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("backup-28401960"));
        assert_eq!(scheduled_time(&job), Some("2024-01-01T09:00:00-05:00"));
        assert_eq!(job.annotations()["a"], "b");
        assert_eq!(job.labels()["team"], "data");
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
            ("CronJob", Some(true), Some(true))
        );
        assert_eq!(job.spec.unwrap().backoff_limit, Some(2));
        let utc = job_for(&cronjob, at, &jiff::tz::TimeZone::UTC).unwrap();
        assert_eq!(scheduled_time(&utc), Some("2024-01-01T14:00:00Z"));
    }
}
