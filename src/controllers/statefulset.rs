//! The StatefulSet controller (kube-controller-manager's `statefulset`
//! controller): pods with stable names `<set>-<ordinal>` (hostname = pod name,
//! subdomain = `serviceName`), each with its own PersistentVolumeClaims
//! `<template>-<set>-<ordinal>` from `volumeClaimTemplates`. `OrderedReady`
//! creates pods one at a time in ordinal order, each once the one before is
//! Running and Ready (available after `minReadySeconds`), and removes them in
//! reverse order; `Parallel` does both at once. `RollingUpdate` replaces pods
//! from the highest ordinal down to `partition`, one at a time; `OnDelete`
//! replaces only pods the user deletes. Templates are kept as
//! ControllerRevisions (`controller-revision-hash` on pods,
//! `currentRevision`/`updateRevision` in status) so `kubectl rollout status`,
//! `history` and `undo` work. `persistentVolumeClaimRetentionPolicy` sets the
//! claims' ownerReferences for the garbage collector.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::history::{self, Wanted};
use super::pods::{self, Written, controller_reference, is_available, is_ready};
use super::replicaset::Events;
use super::{Context, Error, drain, retry_after};

/// The pod label naming the revision (the ControllerRevision's name) a pod runs.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label with the revision's hash on a ControllerRevision.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct State {
    context: Context,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    written: Written,
    events: Events,
}

pub async fn run(context: Context) {
    let sets = context.informers.synced::<StatefulSet>().await;
    let pods = context.informers.synced::<Pod>().await;
    let claims = context.informers.synced::<PersistentVolumeClaim>().await;
    let revisions = context.informers.synced::<ControllerRevision>().await;
    let state = Arc::new(State {
        events: Events::new(context.client.clone(), "statefulset-controller"),
        context,
        pods: pods.store().clone(),
        claims: claims.store().clone(),
        revisions: revisions.store().clone(),
        written: Written::default(),
    });
    let controller = Controller::for_shared_stream(sets.subscribe(), sets.store().clone())
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        .run(reconcile, |_, err, _| Action::requeue(retry_after(err)), state);
    drain(controller).await;
}

/// The ordinal of a pod of set `name`, if the pod's name is `<name>-<ordinal>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse::<i32>().ok().filter(|o| *o >= 0)
}

/// The claim of volume claim template `template` for the pod with `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(REVISION_LABEL).map(String::as_str)
}

fn running_and_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    pods::phase(pod) == "Running" && is_available(pod, min_ready, now)
}

/// Running, Ready and not terminating (`isHealthy`).
fn healthy(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && is_ready(pod) && !pods::is_deleting(pod)
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Create the pod with this ordinal (and its claims).
    Create(i32),
    /// Delete this pod; `condemned` when it goes for good (scale down).
    Delete { name: String, condemned: bool },
}

/// The policy knobs of one sync.
struct Policy {
    start: i32,
    replicas: i32,
    /// OrderedReady: one change at a time, in order.
    monotonic: bool,
    /// RollingUpdate's partition (as an ordinal offset), or None for OnDelete.
    partition: Option<i32>,
    min_ready: i32,
}

/// The steps of one sync (`updateStatefulSet`'s monotonic algorithm), pure for tests.
fn steps(pods: &BTreeMap<i32, Arc<Pod>>, policy: &Policy, update_revision: &str, now: Timestamp) -> Vec<Step> {
    let mut out = Vec::new();
    let end = policy.start.saturating_add(policy.replicas.max(0));
    // Make every replica exist and run, in order.
    for ordinal in policy.start..end {
        match pods.get(&ordinal) {
            None => {
                out.push(Step::Create(ordinal));
                if policy.monotonic {
                    return out;
                }
            }
            Some(pod) if pods::is_terminal(pod) && !pods::is_deleting(pod) => {
                // A finished pod is replaced.
                out.push(Step::Delete {
                    name: pod.name_any(),
                    condemned: false,
                });
                if policy.monotonic {
                    return out;
                }
            }
            Some(pod) => {
                if policy.monotonic && (pods::is_deleting(pod) || !running_and_available(pod, policy.min_ready, now)) {
                    return out;
                }
            }
        }
    }
    // Scale down from the highest ordinal.
    let condemned: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|(o, _)| **o < policy.start || **o >= end)
        .rev()
        .map(|(_, p)| p)
        .collect();
    let first_unhealthy = pods
        .iter()
        .filter(|(o, _)| (policy.start..end).contains(*o))
        .map(|(_, p)| p)
        .chain(condemned.iter().rev().copied())
        .find(|p| !healthy(p))
        .map(|p| p.name_any());
    for pod in &condemned {
        if pods::is_deleting(pod) {
            if policy.monotonic {
                return out;
            }
            continue;
        }
        if policy.monotonic && !healthy(pod) && first_unhealthy.as_deref() != Some(&pod.name_any()) {
            return out;
        }
        out.push(Step::Delete {
            name: pod.name_any(),
            condemned: true,
        });
        if policy.monotonic {
            return out;
        }
    }
    // Roll out the update revision from the highest ordinal down to the partition.
    if let Some(partition) = policy.partition {
        let lowest = policy.start.saturating_add(partition.max(0));
        for ordinal in (lowest..end).rev() {
            let Some(pod) = pods.get(&ordinal) else { continue };
            if pod_revision(pod) != Some(update_revision) && !pods::is_deleting(pod) {
                out.push(Step::Delete {
                    name: pod.name_any(),
                    condemned: false,
                });
                return out;
            }
            if !healthy(pod) {
                return out;
            }
        }
    }
    out
}

/// The status from the set's pods (`computeReplicaStatus`, `completeRollingUpdate`).
fn status(
    set: &StatefulSet,
    pods: &BTreeMap<i32, Arc<Pod>>,
    current: &str,
    update: &str,
    collision_count: i32,
    now: Timestamp,
) -> StatefulSetStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let (mut replicas, mut ready, mut available, mut current_replicas, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods.values() {
        replicas += 1;
        if pods::phase(pod) == "Running" && is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !pods::is_deleting(pod) {
            if pod_revision(pod) == Some(current) {
                current_replicas += 1;
            }
            if pod_revision(pod) == Some(update) {
                updated += 1;
            }
        }
    }
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current_replicas),
        updated_replicas: Some(updated),
        current_revision: Some(current.to_string()),
        update_revision: Some(update.to_string()),
        collision_count: Some(collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && updated == replicas && ready == replicas {
        status.current_replicas = Some(updated);
        status.current_revision = Some(update.to_string());
    }
    status
}

/// Pod `ordinal` of `set` from `template` at revision `revision`.
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Option<Pod> {
    let set_name = set.metadata.name.as_deref()?;
    let spec = set.spec.as_ref()?;
    let name = format!("{set_name}-{ordinal}");
    let mut pod = pods::pod_from_template(template, controller_reference(set)?);
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.to_string(), name.clone());
    labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    let pod_spec = pod.spec.get_or_insert_with(PodSpec::default);
    pod_spec.hostname = Some(name);
    if let Some(service) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(service.clone());
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let Some(template_name) = claim.metadata.name.as_deref() else {
            continue;
        };
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != template_name);
        volumes.push(Volume {
            name: template_name.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(template_name, set_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Some(pod)
}

/// A plain ownerReference (not a controller) to `owner`.
fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.owner_ref(&())
}

/// The claims of pod `ordinal`, as the templates make them (labels: the
/// template's plus the set's selector labels).
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let (Some(set_name), Some(spec)) = (set.metadata.name.as_deref(), set.spec.as_ref()) else {
        return Vec::new();
    };
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|template| {
            let template_name = template.metadata.name.as_deref()?;
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            let owners = if delete_with_set {
                Some(vec![owner_reference(set)?])
            } else {
                None
            };
            Some(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template_name, set_name, ordinal)),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owners,
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            })
        })
        .collect()
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let (Some(namespace), Some(uid), Some(spec)) = (set.namespace(), set.uid(), set.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    if set.metadata.deletion_timestamp.is_some() {
        state.written.forget(&uid);
        return Ok(Action::await_change());
    }
    if state.written.is_stale(&*set) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = set.name_any();
    let client = state.context.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let revision_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let set_api: Api<StatefulSet> = Api::namespaced(client, &namespace);
    let selector = pods::selector(Some(&spec.selector));
    let pods: BTreeMap<i32, Arc<Pod>> = pods::owned_pods(&state.pods, &namespace, &uid)
        .into_iter()
        .filter(|p| pods::selects(selector.as_ref(), &p.metadata))
        .filter_map(|p| Some((ordinal(&name, &p.name_any())?, p)))
        .collect();

    // Revisions: the update revision is the current template's.
    let revisions = history::owned(&state.revisions, &namespace, &uid);
    let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let Some(owner) = controller_reference(&*set) else {
        return Ok(Action::await_change());
    };
    let update = history::ensure(
        &revision_api,
        &revisions,
        Wanted::template(&name, owner, &set.metadata, &spec.template, HASH_LABEL),
        &mut collision_count,
    )
    .await?;
    let update_name = update.name_any();
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .and_then(|n| revisions.iter().find(|r| r.name_any() == n))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    let current_name = current.name_any();
    let current_template = history::template_of(&current).unwrap_or_else(|| spec.template.clone());

    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = rolling.then(|| strategy.rolling_update.as_ref().and_then(|r| r.partition).unwrap_or(0));
    let policy = Policy {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0),
        replicas: spec.replicas.unwrap_or(1),
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        partition,
        min_ready: spec.min_ready_seconds.unwrap_or(0),
    };
    let status_before = status(&set, &pods, &current_name, &update_name, collision_count, now);

    let regarding = set.object_ref(&());
    for step in steps(&pods, &policy, &update_name, now) {
        match step {
            Step::Create(ordinal) => {
                for claim in claims_for(&set, ordinal) {
                    let key = ObjectRef::new(&claim.name_any()).within(&namespace);
                    if state.claims.get(&key).is_some() {
                        continue;
                    }
                    match claim_api.create(&PostParams::default(), &claim).await {
                        Ok(created) => {
                            let note = format!(
                                "create Claim {} Pod {name}-{ordinal} in StatefulSet {name} success",
                                created.name_any()
                            );
                            state
                                .events
                                .publish(&regarding, EventType::Normal, "SuccessfulCreate", note)
                                .await;
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                // Below the partition pods keep the current revision.
                let (template, revision) = match partition {
                    Some(p) if ordinal < policy.start.saturating_add(p) => (&current_template, &current_name),
                    _ => (&spec.template, &update_name),
                };
                let Some(pod) = new_pod(&set, template, revision, ordinal) else {
                    continue;
                };
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(created) => {
                        let note = format!("create Pod {} in StatefulSet {name} successful", created.name_any());
                        state
                            .events
                            .publish(&regarding, EventType::Normal, "SuccessfulCreate", note)
                            .await;
                    }
                    // Already there (the cache lags) or the namespace is going away.
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Step::Delete {
                name: pod_name,
                condemned,
            } => {
                let scaled_delete = spec
                    .persistent_volume_claim_retention_policy
                    .as_ref()
                    .and_then(|p| p.when_scaled.as_deref())
                    == Some("Delete");
                if condemned
                    && scaled_delete
                    && let Some(pod) = pods.values().find(|p| p.name_any() == pod_name)
                    && let Some(ordinal) = ordinal(&name, &pod_name)
                {
                    // The claims go with the pod: the garbage collector deletes them after it.
                    adopt_claims(&claim_api, &state.claims, &set, pod, ordinal, &namespace).await?;
                }
                match pod_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let note = format!("delete Pod {pod_name} in StatefulSet {name} successful");
                        state
                            .events
                            .publish(&regarding, EventType::Normal, "SuccessfulDelete", note)
                            .await;
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }

    let mut new_status = status_before;
    new_status.collision_count = Some(collision_count);
    if set.status.as_ref() != Some(&new_status) {
        let mut updated = (*set).clone();
        updated.status = Some(new_status);
        match set_api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(written) => state.written.wrote(&written),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(err.into()),
        }
    }

    // History: keep the revisions in use and the newest `revisionHistoryLimit` others.
    let mut live: HashSet<String> = pods
        .values()
        .filter_map(|p| pod_revision(p).map(str::to_string))
        .collect();
    live.insert(current_name);
    live.insert(update_name);
    let revisions = history::owned(&state.revisions, &namespace, &uid);
    history::truncate(
        &revision_api,
        &revisions,
        &live,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    // Pods that are ready but not yet available count once minReadySeconds pass.
    let min_ready = policy.min_ready;
    let wait = pods
        .values()
        .filter(|p| !is_available(p, min_ready, now))
        .filter_map(|p| pods::ready_since(p))
        .map(|since| since + SignedDuration::from_secs(i64::from(min_ready)))
        .min();
    Ok(match wait {
        Some(at) if min_ready > 0 => {
            Action::requeue(Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100))
        }
        _ => Action::await_change(),
    })
}

/// Adds the pod as an owner of its claims (`whenScaled: Delete`).
async fn adopt_claims(
    api: &Api<PersistentVolumeClaim>,
    claims: &Store<PersistentVolumeClaim>,
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
    namespace: &str,
) -> Result<(), Error> {
    let Some(owner) = owner_reference(pod) else {
        return Ok(());
    };
    for wanted in claims_for(set, ordinal) {
        let Some(claim) = claims.get(&ObjectRef::new(&wanted.name_any()).within(namespace)) else {
            continue;
        };
        let mut owners = claim.owner_references().to_vec();
        if owners.iter().any(|o| o.uid == owner.uid) {
            continue;
        }
        owners.push(owner.clone());
        let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": claim.resource_version()}});
        match api
            .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn set(extra: Value) -> StatefulSet {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": 3, "serviceName": "web-svc", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
        });
        json_patch::merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    fn pod(ordinal: i32, revision: &str, phase: &str, ready: bool) -> Arc<Pod> {
        let s = set(json!({}));
        let mut pod = new_pod(&s, &s.spec.as_ref().unwrap().template, revision, ordinal).unwrap();
        pod.status = serde_json::from_value(json!({"phase": phase, "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}))
        .unwrap();
        Arc::new(pod)
    }

    fn pods(list: Vec<Arc<Pod>>) -> BTreeMap<i32, Arc<Pod>> {
        list.into_iter()
            .map(|p| (ordinal("web", &p.name_any()).unwrap(), p))
            .collect()
    }

    fn policy(replicas: i32, monotonic: bool, partition: Option<i32>) -> Policy {
        Policy {
            start: 0,
            replicas,
            monotonic,
            partition,
            min_ready: 0,
        }
    }

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn delete(name: &str, condemned: bool) -> Step {
        Step::Delete {
            name: name.into(),
            condemned,
        }
    }

    #[test]
    fn ordinals_parse_strictly() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(claim_name("data", "web", 2), "data-web-2");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let p = policy(3, true, Some(0));
        assert_eq!(steps(&pods(vec![]), &p, "r1", now()), [Step::Create(0)]);
        // web-0 exists but is not ready: wait.
        assert_eq!(steps(&pods(vec![pod(0, "r1", "Pending", false)]), &p, "r1", now()), []);
        assert_eq!(
            steps(&pods(vec![pod(0, "r1", "Running", true)]), &p, "r1", now()),
            [Step::Create(1)]
        );
        // Parallel creates every missing pod at once.
        let parallel = policy(3, false, Some(0));
        assert_eq!(
            steps(&pods(vec![pod(1, "r1", "Pending", false)]), &parallel, "r1", now()),
            [Step::Create(0), Step::Create(2)]
        );
        // A failed pod is replaced.
        assert_eq!(
            steps(&pods(vec![pod(0, "r1", "Failed", false)]), &p, "r1", now()),
            [delete("web-0", false)]
        );
    }

    #[test]
    fn scale_down_goes_in_reverse_order() {
        let all = pods((0..4).map(|o| pod(o, "r1", "Running", true)).collect());
        assert_eq!(
            steps(&all, &policy(1, true, Some(0)), "r1", now()),
            [delete("web-3", true)]
        );
        assert_eq!(
            steps(&all, &policy(1, false, Some(0)), "r1", now()),
            [delete("web-3", true), delete("web-2", true), delete("web-1", true)]
        );
        // An unhealthy replica blocks ordered scale down.
        let mut sick = all.clone();
        sick.insert(0, pod(0, "r1", "Running", false));
        assert_eq!(steps(&sick, &policy(2, true, Some(0)), "r1", now()), []);
    }

    #[test]
    fn rolling_update_from_the_top_down_to_the_partition() {
        let old = pods((0..3).map(|o| pod(o, "r1", "Running", true)).collect());
        assert_eq!(
            steps(&old, &policy(3, true, Some(0)), "r2", now()),
            [delete("web-2", false)]
        );
        // web-2 updated and healthy: web-1 next.
        let mut next = old.clone();
        next.insert(2, pod(2, "r2", "Running", true));
        assert_eq!(
            steps(&next, &policy(3, true, Some(0)), "r2", now()),
            [delete("web-1", false)]
        );
        // web-2 updated but not ready yet: wait.
        let mut waiting = old.clone();
        waiting.insert(2, pod(2, "r2", "Running", false));
        assert_eq!(steps(&waiting, &policy(3, true, Some(0)), "r2", now()), []);
        // Partition 2: only web-2 is updated.
        assert_eq!(steps(&next, &policy(3, true, Some(2)), "r2", now()), []);
        // OnDelete: nothing is replaced.
        assert_eq!(steps(&old, &policy(3, true, None), "r2", now()), []);
    }

    #[test]
    fn pods_have_stable_identity_and_claims() {
        let s = set(json!({}));
        let pod = new_pod(&s, &s.spec.as_ref().unwrap().template, "web-abc", 1).unwrap();
        assert_eq!(pod.name_any(), "web-1");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
        let volume = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-1"
        );
        assert_eq!(pod.labels()[POD_NAME_LABEL], "web-1");
        assert_eq!(pod.labels()[POD_INDEX_LABEL], "1");
        assert_eq!(pod.labels()[REVISION_LABEL], "web-abc");
        let claims = claims_for(&s, 1);
        assert_eq!(claims[0].name_any(), "data-web-1");
        assert_eq!(claims[0].labels()["app"], "web");
        assert!(claims[0].metadata.owner_references.is_none(), "Retain by default");
        let deleting = set(json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}}));
        assert_eq!(claims_for(&deleting, 0)[0].owner_references()[0].kind, "StatefulSet");
    }

    #[test]
    fn status_counts_and_completes_rollouts() {
        let s = set(json!({}));
        let mixed = pods(vec![
            pod(0, "r1", "Running", true),
            pod(1, "r2", "Running", true),
            pod(2, "r2", "Pending", false),
        ]);
        let st = status(&s, &mixed, "r1", "r2", 0, now());
        assert_eq!(st.replicas, 3);
        assert_eq!((st.ready_replicas, st.available_replicas), (Some(2), Some(2)));
        assert_eq!((st.current_replicas, st.updated_replicas), (Some(1), Some(2)));
        assert_eq!(st.current_revision.as_deref(), Some("r1"));
        let done = pods((0..3).map(|o| pod(o, "r2", "Running", true)).collect());
        let st = status(&s, &done, "r1", "r2", 0, now());
        assert_eq!(
            (st.current_revision.as_deref(), st.current_replicas),
            (Some("r2"), Some(3))
        );
    }
}
