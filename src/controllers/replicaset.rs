//! The ReplicaSet and ReplicationController loops (kube-controller-manager's
//! `replicaset` and `replicationcontroller` controllers, which share one
//! implementation upstream as they do here): keep `spec.replicas` active pods
//! that match the selector, adopting matching orphans and releasing pods that no
//! longer match, and report `replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//! `availableReplicas` (ready for `minReadySeconds`) and `observedGeneration`.
//!
//! As upstream: pods are created in slow-start batches (1, 2, 4, ...) of at most
//! 500 per sync, surplus pods are deleted in Kubernetes' order (unscheduled before
//! scheduled, pending before running, not ready before ready, lower
//! `pod-deletion-cost` first, doubled-up before spread, then the most recently
//! ready and created), and *expectations* remember the pods a sync created or
//! deleted so that a cache which has not caught up yet causes no second round.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::pods::{self, controller_of, controller_reference, is_active, is_ready};
use super::{Context, drain};
use crate::events::EventType;
use crate::informer::{Informer, Kind};

/// At most this many pods are created or deleted in one sync (`burstReplicas`).
const BURST: usize = 500;
/// Expectations not met within this time are dropped (`ExpectationsTimeout`).
const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);
/// The annotation that makes a pod cheaper or dearer to delete on scale-down.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Why a sync failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0} has no pod template")]
    NoTemplate(String),
}

impl Error {
    /// A write lost a race with another writer: the newer object is on its way.
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(status)) if status.code == 409)
    }
}

/// How long until a failed sync is retried.
fn retry_after(error: &Error) -> Duration {
    if error.is_conflict() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    }
}

/// Runs both loops until shutdown.
pub async fn run(context: Context) {
    tokio::join!(
        run_kind::<ReplicaSet>(context.clone()),
        run_kind::<ReplicationController>(context)
    );
}

/// A ReplicaSet or a ReplicationController: what the loop reads and writes.
pub(super) trait Replicated:
    Kind + Serialize + Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
{
    /// The reporting controller of its events.
    const REPORTER: &'static str;
    fn desired(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// The pods it selects; `None` selects nothing.
    fn pod_selector(&self) -> Option<Selector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn observed(&self) -> Observed;
    fn set_observed(&mut self, observed: &Observed);
}

/// A status as the loop computes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Observed {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
    generation: i64,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Converts between condition types of identical shape.
fn convert<A: Serialize, B: serde::de::DeserializeOwned>(from: &[A]) -> Vec<B> {
    from.iter()
        .filter_map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
        })
        .collect()
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

impl Replicated for ReplicaSet {
    const REPORTER: &'static str = "replicaset-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn pod_selector(&self) -> Option<Selector> {
        let selector = &self.spec.as_ref()?.selector;
        if selector == &LabelSelector::default() {
            return None;
        }
        pods::selector(Some(selector))
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn observed(&self) -> Observed {
        let status = self.status.clone().unwrap_or_default();
        Observed {
            replicas: status.replicas,
            fully_labeled: status.fully_labeled_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            generation: status.observed_generation.unwrap_or(0),
            conditions: convert(status.conditions.as_deref().unwrap_or_default()),
        }
    }

    fn set_observed(&mut self, observed: &Observed) {
        let status = self.status.get_or_insert_with(Default::default);
        status.replicas = observed.replicas;
        status.fully_labeled_replicas = nonzero(observed.fully_labeled);
        status.ready_replicas = nonzero(observed.ready);
        status.available_replicas = nonzero(observed.available);
        status.observed_generation = Some(observed.generation);
        let conditions: Vec<ReplicaSetCondition> = convert(&observed.conditions);
        status.conditions = (!conditions.is_empty()).then_some(conditions);
    }
}

impl Replicated for ReplicationController {
    const REPORTER: &'static str = "replication-controller";

    fn desired(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn pod_selector(&self) -> Option<Selector> {
        let labels = self.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
        Some(labels.clone().into_iter().collect())
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn observed(&self) -> Observed {
        let status = self.status.clone().unwrap_or_default();
        Observed {
            replicas: status.replicas,
            fully_labeled: status.fully_labeled_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            generation: status.observed_generation.unwrap_or(0),
            conditions: convert(status.conditions.as_deref().unwrap_or_default()),
        }
    }

    fn set_observed(&mut self, observed: &Observed) {
        let status = self.status.get_or_insert_with(Default::default);
        status.replicas = observed.replicas;
        status.fully_labeled_replicas = nonzero(observed.fully_labeled);
        status.ready_replicas = nonzero(observed.ready);
        status.available_replicas = nonzero(observed.available);
        status.observed_generation = Some(observed.generation);
        let conditions: Vec<ReplicationControllerCondition> = convert(&observed.conditions);
        status.conditions = (!conditions.is_empty()).then_some(conditions);
    }
}

/// What one loop shares between its syncs.
struct Loop<K: Replicated> {
    client: kube::Client,
    owners: Informer<K>,
    pods: Informer<Pod>,
    expectations: Expectations,
    events: Events,
}

async fn run_kind<K: Replicated>(context: Context) {
    let owners = context.informers.synced::<K>().await;
    let pods = context.informers.synced::<Pod>().await;
    let state = Arc::new(Loop {
        events: Events::new(context.client.clone(), K::REPORTER),
        client: context.client.clone(),
        owners: owners.clone(),
        pods: pods.clone(),
        expectations: Expectations::default(),
    });
    let mapper = state.clone();
    let controller = Controller::for_shared_stream(owners.subscribe(), owners.store().clone())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| mapper.owners_of(&pod))
        .run(
            |owner, state| sync(owner, state),
            |_, err, _| Action::requeue(retry_after(err)),
            state,
        );
    drain(controller).await;
}

impl<K: Replicated> Loop<K> {
    /// The owners a pod's change concerns: its controller if that is one of ours,
    /// else (an orphan) every owner in its namespace that selects it.
    fn owners_of(&self, pod: &Pod) -> Vec<ObjectRef<K>> {
        let Some(namespace) = pod.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        if let Some(reference) = controller_of(&pod.metadata) {
            if !refers_to::<K>(reference) {
                return Vec::new();
            }
            self.expectations
                .observe(&format!("{namespace}/{}", reference.name), &pod.name_any());
            return vec![ObjectRef::new(&reference.name).within(namespace)];
        }
        if !is_active(pod) {
            return Vec::new();
        }
        self.owners
            .store()
            .state()
            .iter()
            .filter(|owner| owner.namespace().as_deref() == Some(namespace))
            .filter(|owner| pods::selects(owner.pod_selector().as_ref(), &pod.metadata))
            .map(|owner| ObjectRef::from_obj(&**owner))
            .collect()
    }

    async fn event(&self, owner: &K, type_: EventType, reason: &str, note: String) {
        self.events.publish(&owner.object_ref(&()), type_, reason, note).await;
    }
}

/// A controller's event recorder.
pub(super) use crate::events::Recorder as Events;

/// Whether an ownerReference points at an object of kind `K`.
pub(super) fn refers_to<K: Resource<DynamicType = ()>>(reference: &OwnerReference) -> bool {
    let group = reference.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    reference.kind == K::kind(&()) && group == K::group(&())
}

/// One sync of one owner (`syncReplicaSet`).
async fn sync<K: Replicated>(owner: Arc<K>, state: Arc<Loop<K>>) -> Result<Action, Error> {
    let namespace = owner.namespace().unwrap_or_default();
    let name = owner.name_any();
    let uid = owner.uid().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let pod_store = state.pods.store();
    let needs_sync = state.expectations.satisfied(&key, &uid, &namespace, pod_store);
    let active: Vec<Arc<Pod>> = pod_store
        .state()
        .into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()) && is_active(pod))
        .collect();
    let pods = claim(&*owner, active, &state).await?;
    let mut failure = None;
    if needs_sync && owner.meta().deletion_timestamp.is_none() {
        failure = manage(&*owner, &pods, &key, &state).await.err();
    }
    let now = Timestamp::now();
    let observed = observe(&*owner, &pods, failure.as_ref(), now);
    if observed != owner.observed() {
        let mut next = (*owner).clone();
        next.set_observed(&observed);
        Api::<K>::namespaced(state.client.clone(), &namespace)
            .replace_status(&name, &PostParams::default(), &next)
            .await?;
    }
    if let Some(err) = failure {
        return Err(err);
    }
    // Come back when a ready pod becomes available, or when expectations expire.
    let mut wake = (!needs_sync).then_some(EXPECTATIONS_TTL);
    if owner.min_ready_seconds() > 0 {
        let min_ready = Duration::from_secs(u64::try_from(owner.min_ready_seconds()).unwrap_or(0));
        for since in pods.iter().filter_map(|pod| pods::ready_since(pod)) {
            let age = Duration::try_from(now.duration_since(since)).unwrap_or_default();
            if age < min_ready {
                let after = min_ready - age + Duration::from_millis(100);
                wake = Some(wake.map_or(after, |w| w.min(after)));
            }
        }
    }
    Ok(wake.map_or_else(Action::await_change, Action::requeue))
}

/// Adopts active orphans the owner selects and releases its pods it no longer
/// selects (`ClaimPods`); returns the pods it owns and selects.
async fn claim<K: Replicated>(owner: &K, candidates: Vec<Arc<Pod>>, state: &Loop<K>) -> Result<Vec<Arc<Pod>>, Error> {
    let uid = owner.uid().unwrap_or_default();
    let selector = owner.pod_selector();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let namespace = owner.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(state.client.clone(), &namespace);
    let mut claimed = Vec::new();
    let mut may_adopt = None;
    for pod in candidates {
        let selected = pods::selects(selector.as_ref(), &pod.metadata);
        match controller_of(&pod.metadata) {
            Some(reference) if reference.uid != uid => {}
            Some(_) if selected => claimed.push(pod),
            Some(_) if !deleting => release(&api, &pod, &uid).await?,
            Some(_) => {}
            None if selected && !deleting => {
                if may_adopt.is_none() {
                    may_adopt = Some(can_adopt(owner, &state.client).await?);
                }
                if may_adopt == Some(true) && adopt(&api, &pod, owner).await? {
                    claimed.push(pod);
                }
            }
            None => {}
        }
    }
    Ok(claimed)
}

/// Whether the owner, read afresh, is still the same object and not being
/// deleted (`RecheckDeletionTimestamp`): a stale cache must not adopt.
async fn can_adopt<K: Replicated>(owner: &K, client: &kube::Client) -> Result<bool, Error> {
    let namespace = owner.namespace().unwrap_or_default();
    let fresh = Api::<K>::namespaced(client.clone(), &namespace)
        .get_opt(&owner.name_any())
        .await?;
    Ok(fresh.is_some_and(|fresh| fresh.uid() == owner.uid() && fresh.meta().deletion_timestamp.is_none()))
}

/// Makes `owner` the controller of an orphan; false if the pod is gone.
pub(super) async fn adopt<T, K>(api: &Api<T>, object: &T, owner: &K) -> Result<bool, Error>
where
    T: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Resource<DynamicType = ()>,
{
    let Some(reference) = controller_reference(owner) else {
        return Ok(false);
    };
    let patch = json!({"metadata": {
        "ownerReferences": [reference],
        "resourceVersion": object.meta().resource_version,
    }});
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Removes the ownerReference to `owner_uid` from an object (`ReleasePod`).
pub(super) async fn release<T>(api: &Api<T>, object: &T, owner_uid: &str) -> Result<(), Error>
where
    T: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}]}});
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 422 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Creates or deletes pods until `spec.replicas` are active (`manageReplicas`).
async fn manage<K: Replicated>(owner: &K, pods: &[Arc<Pod>], key: &str, state: &Loop<K>) -> Result<(), Error> {
    let desired = usize::try_from(owner.desired()).unwrap_or(0);
    let namespace = owner.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(state.client.clone(), &namespace);
    let uid = owner.uid().unwrap_or_default();
    if pods.len() < desired {
        let missing = (desired - pods.len()).min(BURST);
        let template = owner.template().ok_or_else(|| Error::NoTemplate(key.to_string()))?;
        let Some(reference) = controller_reference(owner) else {
            return Ok(());
        };
        let mut pod = pods::pod_from_template(template, reference);
        pod.metadata.generate_name = Some(format!("{}-", owner.name_any()));
        pod.metadata.namespace = Some(namespace.clone());
        state.expectations.start(key, &uid);
        slow_start(missing, || {
            let (api, pod) = (&api, &pod);
            async move {
                match api.create(&PostParams::default(), pod).await {
                    Ok(created) => {
                        let name = created.name_any();
                        state.expectations.expect_creation(key, &name);
                        state
                            .event(
                                owner,
                                EventType::Normal,
                                "SuccessfulCreate",
                                format!("Created pod: {name}"),
                            )
                            .await;
                        Ok(())
                    }
                    // The namespace is going away: nothing to create there.
                    Err(kube::Error::Api(status)) if status.code == 403 && status.message.contains("terminated") => {
                        Ok(())
                    }
                    Err(err) => {
                        let note = format!("Error creating: {err}");
                        state.event(owner, EventType::Warning, "FailedCreate", note).await;
                        Err(Error::from(err))
                    }
                }
            }
        })
        .await
    } else if pods.len() > desired {
        let surplus = (pods.len() - desired).min(BURST);
        let related = related_pods(owner, state);
        let victims = deletion_order(pods, &related, Timestamp::now());
        let victims = &victims[..surplus.min(victims.len())];
        state.expectations.start(key, &uid);
        for pod in victims {
            state
                .expectations
                .expect_deletion(key, &pod.name_any(), &pod.uid().unwrap_or_default());
        }
        let results = join_all(victims.iter().map(|pod| {
            let api = &api;
            async move {
                let name = pod.name_any();
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: pod.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &params).await {
                    Ok(_) => {
                        state
                            .event(
                                owner,
                                EventType::Normal,
                                "SuccessfulDelete",
                                format!("Deleted pod: {name}"),
                            )
                            .await;
                        Ok(())
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        state.expectations.observe_deletion(key, &name);
                        Ok(())
                    }
                    Err(err) => {
                        state.expectations.observe_deletion(key, &name);
                        let note = format!("Error deleting: {err}");
                        state.event(owner, EventType::Warning, "FailedDelete", note).await;
                        Err(Error::from(err))
                    }
                }
            }
        }))
        .await;
        results.into_iter().collect()
    } else {
        Ok(())
    }
}

/// Runs `count` calls of `call` in batches of 1, 2, 4, ... and stops after the
/// first batch with a failure (`slowStartBatch`), so a failing create does not
/// hammer the API with a whole burst.
pub(super) async fn slow_start<F, Fut>(count: usize, call: F) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(1);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| call())).await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return Err(err);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    Ok(())
}

/// Active pods of every ReplicaSet that shares this owner's controller (the
/// Deployment's other revisions): a pod doubled up on a node with them goes first.
fn related_pods<K: Replicated>(owner: &K, state: &Loop<K>) -> Vec<Arc<Pod>> {
    let namespace = owner.namespace();
    let mut owners: HashSet<String> = owner.uid().into_iter().collect();
    if let Some(parent) = controller_of(owner.meta()) {
        owners.extend(
            state
                .owners
                .store()
                .state()
                .iter()
                .filter(|other| other.namespace() == namespace)
                .filter(|other| controller_of(other.meta()).is_some_and(|r| r.uid == parent.uid))
                .filter_map(|other| other.uid()),
        );
    }
    state
        .pods
        .store()
        .state()
        .into_iter()
        .filter(|pod| pod.namespace() == namespace && is_active(pod))
        .filter(|pod| controller_of(&pod.metadata).is_some_and(|r| owners.contains(&r.uid)))
        .collect()
}

/// `pods` in the order they are deleted on scale-down (`ActivePodsWithRanks`,
/// with logarithmic age buckets as kube-controller-manager uses by default).
pub(super) fn deletion_order(pods: &[Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) -> Vec<Arc<Pod>> {
    let mut on_node: HashMap<&str, i64> = HashMap::new();
    for pod in related {
        if let Some(node) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            *on_node.entry(node).or_default() += 1;
        }
    }
    let mut ranked: Vec<_> = pods
        .iter()
        .map(|pod| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
            let phase = match pods::phase(pod) {
                "Unknown" => 1,
                "Running" => 2,
                _ => 0,
            };
            let cost: i32 = pod
                .annotations()
                .get(DELETION_COST)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let doubled = if node.is_empty() {
                0
            } else {
                on_node.get(node).copied().unwrap_or(0)
            };
            let ready_bucket = pods::ready_since(pod).map_or(0, |since| log_age(since, now));
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|statuses| statuses.iter().map(|c| c.restart_count).max())
                .unwrap_or(0);
            let created = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(-1, |t| log_age(t.0, now));
            let key = (
                !node.is_empty(),
                phase,
                is_ready(pod),
                cost,
                Reverse(doubled),
                ready_bucket,
                Reverse(restarts),
                created,
                pod.uid().unwrap_or_default(),
            );
            (key, pod.clone())
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().map(|(_, pod)| pod).collect()
}

/// log2 of the nanoseconds since `then`: pods of similar age rank alike.
fn log_age(then: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.as_nanosecond() - then.as_nanosecond();
    if nanos <= 0 {
        return -1;
    }
    i64::from(127 - nanos.leading_zeros())
}

/// The status a sync reports (`calculateStatus`).
fn observe<K: Replicated>(owner: &K, pods: &[Arc<Pod>], failure: Option<&Error>, now: Timestamp) -> Observed {
    let template_labels: Selector = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let empty = Default::default();
    let mut observed = Observed {
        replicas: count(pods.len()),
        fully_labeled: count(
            pods.iter()
                .filter(|p| template_labels.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
                .count(),
        ),
        ready: count(pods.iter().filter(|p| is_ready(p)).count()),
        available: count(
            pods.iter()
                .filter(|p| pods::is_available(p, owner.min_ready_seconds(), now))
                .count(),
        ),
        generation: owner.meta().generation.unwrap_or(0),
        conditions: owner.observed().conditions,
    };
    let has_failure = observed.conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(err) if !has_failure => {
            let reason = if pods.len() < usize::try_from(owner.desired()).unwrap_or(0) {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            observed.conditions.push(Condition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                last_transition_time: Some(Time(now)),
                reason: Some(reason.into()),
                message: Some(err.to_string()),
            });
        }
        None if has_failure => observed.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    observed
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The pods a sync created or deleted that the cache has not shown yet
/// (`ControllerExpectations`); an owner with unmet expectations is not synced
/// again, which would count the same pods twice.
#[derive(Default)]
pub(super) struct Expectations(Mutex<HashMap<String, Pending>>);

struct Pending {
    owner: String,
    since: Instant,
    creations: HashSet<String>,
    /// Pod name to uid.
    deletions: HashMap<String, String>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the cache shows everything the owner's last sync did (or that
    /// was long ago): then it may sync again.
    pub(super) fn satisfied(&self, key: &str, owner: &str, namespace: &str, pods: &Store<Pod>) -> bool {
        let mut all = self.lock();
        let Some(pending) = all.get_mut(key) else {
            return true;
        };
        if pending.owner != owner || pending.since.elapsed() > EXPECTATIONS_TTL {
            all.remove(key);
            return true;
        }
        let cached = |name: &str| pods.get(&ObjectRef::new(name).within(namespace));
        pending.creations.retain(|name| cached(name).is_none());
        pending.deletions.retain(|name, uid| {
            cached(name)
                .is_some_and(|pod| pod.uid().as_deref() == Some(uid) && pod.metadata.deletion_timestamp.is_none())
        });
        if pending.creations.is_empty() && pending.deletions.is_empty() {
            all.remove(key);
            return true;
        }
        false
    }

    /// A sync of `owner` begins to create or delete.
    pub(super) fn start(&self, key: &str, owner: &str) {
        self.lock().insert(
            key.to_string(),
            Pending {
                owner: owner.to_string(),
                since: Instant::now(),
                creations: HashSet::new(),
                deletions: HashMap::new(),
            },
        );
    }

    pub(super) fn expect_creation(&self, key: &str, name: &str) {
        if let Some(pending) = self.lock().get_mut(key) {
            pending.creations.insert(name.to_string());
        }
    }

    pub(super) fn expect_deletion(&self, key: &str, name: &str, uid: &str) {
        if let Some(pending) = self.lock().get_mut(key) {
            pending.deletions.insert(name.to_string(), uid.to_string());
        }
    }

    /// The informer showed the pod `name` (created, changed or deleted).
    pub(super) fn observe(&self, key: &str, name: &str) {
        if let Some(pending) = self.lock().get_mut(key) {
            pending.creations.remove(name);
        }
    }

    /// A deletion that will not happen (it failed, or the pod was gone).
    pub(super) fn observe_deletion(&self, key: &str, name: &str) {
        if let Some(pending) = self.lock().get_mut(key) {
            pending.deletions.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn surplus_pods_go_in_kubernetes_order() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let ready = |name: &str, node: &str, since: &str, created: &str| {
            pod(
                json!({"metadata": {"name": name, "uid": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": since}]}}),
            )
        };
        let pods = vec![
            ready("old-ready", "n1", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
            pod(json!({"metadata": {"name": "unscheduled", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z"}})),
            pod(
                json!({"metadata": {"name": "pending", "uid": "u2", "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"nodeName": "n2", "containers": []}, "status": {"phase": "Pending"}}),
            ),
            pod(
                json!({"metadata": {"name": "not-ready", "uid": "u3", "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"nodeName": "n2", "containers": []}, "status": {"phase": "Running"}}),
            ),
            ready("new-ready", "n2", "2024-01-01T00:59:00Z", "2024-01-01T00:58:00Z"),
        ];
        let order: Vec<String> = deletion_order(&pods, &[], now).iter().map(|p| p.name_any()).collect();
        assert_eq!(order, ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]);
        // A pod sharing its node with more of the same family goes before a lone one.
        let related = vec![pods[0].clone(), pods[0].clone(), pods[4].clone()];
        let both_old = vec![
            ready("alone", "n2", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
            ready("crowded", "n1", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ];
        let order: Vec<String> = deletion_order(&both_old, &related, now)
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(order, ["crowded", "alone"]);
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_a_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let result = slow_start(10, || {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 4 {
                    Err(Error::NoTemplate("x".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(result.is_err());
        // Batches 1, 2, then 4 (holding the failure): 7 calls, not 10.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        slow_start(10, || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok(()) }
        })
        .await
        .unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 10);
    }
}
