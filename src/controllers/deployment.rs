//! The Deployment loop (kube-controller-manager's `deployment` controller): a
//! Deployment owns one ReplicaSet per pod template it has had. The one whose
//! template equals the Deployment's (ignoring the `pod-template-hash` label) is
//! the *new* ReplicaSet, named `<deployment>-<hash>`; the others are old.
//!
//! Mirrors upstream's `syncDeployment`: adopt and release ReplicaSets by
//! selector; a paused Deployment or a changed `spec.replicas` only scales
//! (proportionally across the active ReplicaSets during a rollout); otherwise a
//! `RollingUpdate` scales the new ReplicaSet up within `maxSurge` and old ones
//! down within `maxUnavailable` (percentages rounded as upstream: surge up,
//! unavailability down, never both zero), and `Recreate` scales the old ones to
//! zero and waits for their pods to go before creating the new one. Revisions
//! are the `deployment.kubernetes.io/revision` annotations of the ReplicaSets
//! (and of the Deployment); a rollback (`kubectl rollout undo`, which writes an
//! old template back) makes the matching old ReplicaSet new again with the next
//! revision. Old ReplicaSets scaled to zero beyond `revisionHistoryLimit` are
//! deleted. The status counts replicas, and the `Progressing` and `Available`
//! conditions carry upstream's reasons, including `ProgressDeadlineExceeded`
//! once `progressDeadlineSeconds` pass without progress: what `kubectl rollout
//! status` reads.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::pods::{self, controller_of, controller_reference};
use super::replicaset::{Error, Events, adopt, refers_to, release};
use super::{Context, drain};
use crate::informer::Informer;

/// The revision of a ReplicaSet (and the Deployment's latest).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet served before a rollback made it new again.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last sized the ReplicaSet.
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` then: the base of proportional scaling.
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the pods of the Deployment's ReplicaSets apart.
pub const HASH_LABEL: &str = "pod-template-hash";
/// Deployment annotations not copied to its ReplicaSets (and kept on rollback).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/error-selector-overlapping-with",
    "deployment.kubernetes.io/selector-updated-at",
];

const PROGRESSING: &str = "Progressing";
const AVAILABLE: &str = "Available";
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Runs the loop until shutdown.
pub async fn run(context: Context) {
    let deployments = context.informers.synced::<Deployment>().await;
    let sets = context.informers.synced::<ReplicaSet>().await;
    let pods = context.informers.synced::<Pod>().await;
    let state = Arc::new(Loop {
        events: Events::new(context.client.clone(), "deployment-controller"),
        client: context.client.clone(),
        deployments: deployments.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
    });
    let (by_set, by_pod) = (state.clone(), state.clone());
    let controller = Controller::for_shared_stream(deployments.subscribe(), deployments.store().clone())
        .watches_shared_stream(sets.subscribe(), move |set: Arc<ReplicaSet>| {
            by_set.deployments_of_set(&set)
        })
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            by_pod.recreating_deployment_of(&pod)
        })
        .run(sync, |_, err: &Error, _| Action::requeue(retry_after(err)), state);
    drain(controller).await;
}

fn retry_after(error: &Error) -> Duration {
    match error {
        Error::Api(kube::Error::Api(status)) if status.code == 409 => Duration::from_millis(500),
        _ => Duration::from_secs(5),
    }
}

/// What the loop shares between its syncs.
struct Loop {
    client: kube::Client,
    deployments: Informer<Deployment>,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    events: Events,
}

impl Loop {
    /// The Deployment that controls a ReplicaSet, or for an orphan every
    /// Deployment in its namespace whose selector matches it (it may adopt it).
    fn deployments_of_set(&self, set: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
        let Some(namespace) = set.metadata.namespace.as_deref() else {
            return Vec::new();
        };
        if let Some(reference) = controller_of(&set.metadata) {
            return if refers_to::<Deployment>(reference) {
                vec![ObjectRef::new(&reference.name).within(namespace)]
            } else {
                Vec::new()
            };
        }
        self.deployments
            .store()
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
            .filter(|d| pods::selects(deployment_selector(d).as_ref(), &set.metadata))
            .map(|d| ObjectRef::from_obj(&**d))
            .collect()
    }

    /// A `Recreate` Deployment waits for the pods of its old ReplicaSets to go:
    /// the Deployment of a changed pod, if it is one.
    fn recreating_deployment_of(&self, pod: &Pod) -> Option<ObjectRef<Deployment>> {
        let namespace = pod.metadata.namespace.as_deref()?;
        let set_ref = controller_of(&pod.metadata).filter(|r| refers_to::<ReplicaSet>(r))?;
        let set = self
            .sets
            .store()
            .get(&ObjectRef::new(&set_ref.name).within(namespace))?;
        let d_ref = controller_of(&set.metadata).filter(|r| refers_to::<Deployment>(r))?;
        let deployment = self
            .deployments
            .store()
            .get(&ObjectRef::new(&d_ref.name).within(namespace))?;
        let recreate = deployment
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            == Some("Recreate");
        recreate.then(|| ObjectRef::from_obj(&*deployment))
    }
}

fn deployment_selector(d: &Deployment) -> Option<kube::core::Selector> {
    let selector = &d.spec.as_ref()?.selector;
    if selector == &LabelSelector::default() {
        return None;
    }
    pods::selector(Some(selector))
}

/// One sync of one Deployment (`syncDeployment`).
async fn sync(deployment: Arc<Deployment>, state: Arc<Loop>) -> Result<Action, Error> {
    let d = (*deployment).clone();
    let namespace = d.namespace().unwrap_or_default();
    let api = Api::<Deployment>::namespaced(state.client.clone(), &namespace);
    if d.spec.as_ref().map(|s| &s.selector) == Some(&LabelSelector::default()) {
        let note = "This deployment is selecting all pods. A non-empty selector is required.";
        let regarding = d.object_ref(&());
        state
            .events
            .publish(&regarding, EventType::Warning, "SelectingAll", note.into())
            .await;
        let generation = d.metadata.generation.unwrap_or(0);
        if observed_generation(&d) < generation {
            let mut next = d.clone();
            next.status.get_or_insert_with(Default::default).observed_generation = Some(generation);
            api.replace_status(&d.name_any(), &PostParams::default(), &next).await?;
        }
        return Ok(Action::await_change());
    }
    let sets = claim_sets(&d, &state).await?;
    let mut rollout = Rollout {
        state: &state,
        api,
        d,
        sets,
    };
    let wake = if rollout.d.metadata.deletion_timestamp.is_some() {
        rollout.sync_status_only().await?
    } else {
        rollout.check_paused_conditions().await?;
        if rollout.spec_paused() || rollout.is_scaling_event().await? {
            rollout.sync_scale().await?
        } else if rollout.is_recreate() {
            rollout.rollout_recreate().await?
        } else {
            rollout.rollout_rolling().await?
        }
    };
    Ok(wake.map_or_else(Action::await_change, Action::requeue))
}

fn observed_generation(d: &Deployment) -> i64 {
    d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0)
}

/// The ReplicaSets in the Deployment's namespace it controls and selects,
/// after adopting matching orphans and releasing those it no longer selects
/// (`getReplicaSetsForDeployment`).
async fn claim_sets(d: &Deployment, state: &Loop) -> Result<Vec<ReplicaSet>, Error> {
    let namespace = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let selector = deployment_selector(d);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api = Api::<ReplicaSet>::namespaced(state.client.clone(), &namespace);
    let mut claimed = Vec::new();
    let mut may_adopt = None;
    for set in state.sets.store().state() {
        if set.metadata.namespace.as_deref() != Some(namespace.as_str()) {
            continue;
        }
        let selected = pods::selects(selector.as_ref(), &set.metadata);
        match controller_of(&set.metadata) {
            Some(reference) if reference.uid != uid => {}
            Some(_) if selected => claimed.push((*set).clone()),
            Some(_) if !deleting => release(&api, &*set, &uid).await?,
            Some(_) => {}
            None if selected && !deleting && set.metadata.deletion_timestamp.is_none() => {
                if may_adopt.is_none() {
                    let fresh = Api::<Deployment>::namespaced(state.client.clone(), &namespace)
                        .get_opt(&d.name_any())
                        .await?;
                    may_adopt =
                        Some(fresh.is_some_and(|f| f.uid() == d.uid() && f.metadata.deletion_timestamp.is_none()));
                }
                if may_adopt == Some(true) && adopt(&api, &*set, d).await? {
                    let mut adopted = (*set).clone();
                    adopted.metadata.owner_references = controller_reference(d).map(|r| vec![r]);
                    claimed.push(adopted);
                }
            }
            None => {}
        }
    }
    Ok(claimed)
}

/// `spec.replicas` of a ReplicaSet.
fn replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn status_replicas(set: &ReplicaSet) -> i32 {
    set.status.as_ref().map_or(0, |s| s.replicas)
}

fn available(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn ready(set: &ReplicaSet) -> i32 {
    set.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// The revision annotation; 0 when missing or unreadable.
fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation_int(set: &ReplicaSet, key: &str) -> Option<i32> {
    set.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Oldest first, then by name (`ReplicaSetsByCreationTimestamp`).
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |s: &ReplicaSet| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// An int or a percentage of `total`, rounded up or down
/// (`GetScaledValueFromIntOrPercent`); a malformed value counts as zero.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let scaled = percent * i64::from(total);
            let value = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(0)
        }
    }
}

/// `maxSurge` and `maxUnavailable` for `desired` replicas (`ResolveFenceposts`):
/// if both come to zero, one pod may be unavailable.
pub fn fenceposts(max_surge: Option<&IntOrString>, max_unavailable: Option<&IntOrString>, desired: i32) -> (i32, i32) {
    let surge = scaled_value(max_surge, desired, true);
    let unavailable = scaled_value(max_unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The pod template's hash that names the new ReplicaSet (`ComputeHash`): FNV-1a
/// of the template, and of the collision count if any, spelled with the
/// alphabet of `rand.SafeEncodeString`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.to_le_bytes());
        feed(&bytes);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Drops nulls, empty maps and empty lists: Go's semantic equality treats
/// missing, nil and empty alike.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Whether two pod templates are the same apart from `pod-template-hash`
/// (`EqualIgnoreHash`).
pub fn equal_ignore_hash(a: Option<&PodTemplateSpec>, b: Option<&PodTemplateSpec>) -> bool {
    let plain = |t: Option<&PodTemplateSpec>| {
        let mut t = t.cloned().unwrap_or_default();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
        normalized(serde_json::to_value(t).unwrap_or_default())
    };
    plain(a) == plain(b)
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == type_)
}

/// Adds or replaces a condition unless one with the same status and reason is
/// there; keeps the transition time when the status stays (`SetDeploymentCondition`).
fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    if let Some(current) = get_condition(status, &new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &new.type_);
    status.conditions.get_or_insert_with(Vec::new).push(new);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// One sync in progress: the Deployment and its ReplicaSets as last written.
struct Rollout<'a> {
    state: &'a Loop,
    api: Api<Deployment>,
    d: Deployment,
    sets: Vec<ReplicaSet>,
}

impl Rollout<'_> {
    fn namespace(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.state.client.clone(), &self.namespace())
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn desired(&self) -> i32 {
        self.d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn spec_paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    fn template(&self) -> PodTemplateSpec {
        self.d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
    }

    fn strategy_type(&self) -> &str {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
    }

    fn is_recreate(&self) -> bool {
        self.strategy_type() == "Recreate"
    }

    fn is_rolling(&self) -> bool {
        self.strategy_type() == "RollingUpdate"
    }

    fn rolling_params(&self) -> (Option<&IntOrString>, Option<&IntOrString>) {
        let rolling = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref());
        (
            rolling.and_then(|r| r.max_surge.as_ref()),
            rolling.and_then(|r| r.max_unavailable.as_ref()),
        )
    }

    /// `MaxSurge`: 0 unless rolling.
    fn max_surge(&self) -> i32 {
        if !self.is_rolling() {
            return 0;
        }
        let (surge, unavailable) = self.rolling_params();
        fenceposts(surge, unavailable, self.desired()).0
    }

    /// `MaxUnavailable`: 0 unless rolling, at most `spec.replicas`.
    fn max_unavailable(&self) -> i32 {
        if !self.is_rolling() {
            return 0;
        }
        let (surge, unavailable) = self.rolling_params();
        fenceposts(surge, unavailable, self.desired()).1.min(self.desired())
    }

    fn progress_deadline(&self) -> Option<i32> {
        self.d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .filter(|s| *s != i32::MAX)
    }

    /// The new ReplicaSet: the oldest whose template is the Deployment's.
    fn new_set(&self) -> Option<&ReplicaSet> {
        let template = self.template();
        let mut matching: Vec<&ReplicaSet> = self
            .sets
            .iter()
            .filter(|s| equal_ignore_hash(s.spec.as_ref().and_then(|s| s.template.as_ref()), Some(&template)))
            .collect();
        matching.sort_by(|a, b| by_creation(a, b));
        matching.first().copied()
    }

    fn new_uid(&self) -> Option<String> {
        self.new_set().and_then(|s| s.uid())
    }

    /// Every ReplicaSet but the new one.
    fn old_sets(&self) -> Vec<&ReplicaSet> {
        let new = self.new_uid();
        self.sets.iter().filter(|s| new.is_none() || s.uid() != new).collect()
    }

    fn set_by_uid(&self, uid: &str) -> Option<&ReplicaSet> {
        self.sets.iter().find(|s| s.uid().as_deref() == Some(uid))
    }

    fn store_set(&mut self, set: ReplicaSet) {
        match self.sets.iter_mut().find(|s| s.uid() == set.uid()) {
            Some(slot) => *slot = set,
            None => self.sets.push(set),
        }
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.state
            .events
            .publish(&self.d.object_ref(&()), type_, reason, note)
            .await;
    }

    /// Writes the Deployment's revision annotation if it changed.
    async fn set_revision(&mut self, revision: &str) -> Result<(), Error> {
        if self.d.annotations().get(REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "annotations": {REVISION: revision},
            "resourceVersion": self.d.metadata.resource_version,
        }});
        let patched = self
            .api
            .patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        self.d.metadata = patched.metadata;
        Ok(())
    }

    /// Writes `status` if it differs from the Deployment's.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut next = self.d.clone();
        next.status = Some(status);
        self.d = self
            .api
            .replace_status(&self.d.name_any(), &PostParams::default(), &next)
            .await?;
        Ok(())
    }

    /// Copies the Deployment's annotations to the new ReplicaSet, raises its
    /// revision to `new_revision` (keeping the ones it had in the history), and
    /// on creation records the replica annotations (`SetNewReplicaSetAnnotations`).
    fn set_new_set_annotations(&self, set: &mut ReplicaSet, new_revision: &str, exists: bool) -> bool {
        let annotations = set.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (key, value) in self.d.annotations() {
            if NOT_COPIED.contains(&key.as_str()) || annotations.get(key) == Some(value) {
                continue;
            }
            annotations.insert(key.clone(), value.clone());
            changed = true;
        }
        let old = annotations.get(REVISION).cloned();
        let old_number = old.as_deref().and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
        let new_number = new_revision.parse::<i64>().unwrap_or(0);
        if old.is_none() || old_number < new_number {
            annotations.insert(REVISION.into(), new_revision.into());
            changed = true;
        }
        if let Some(old) = old.filter(|_| changed) {
            let history = match annotations.get(REVISION_HISTORY).filter(|h| !h.is_empty()) {
                Some(history) => format!("{history},{old}"),
                None => old,
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
        if !exists && self.set_replica_annotations(set) {
            changed = true;
        }
        changed
    }

    /// Records `spec.replicas` and `spec.replicas + maxSurge` on a ReplicaSet.
    fn set_replica_annotations(&self, set: &mut ReplicaSet) -> bool {
        let annotations = set.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let desired = self.desired().to_string();
        let max = (self.desired() + self.max_surge()).to_string();
        let mut changed = false;
        for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
            if annotations.get(key) != Some(&value) {
                annotations.insert(key.into(), value);
                changed = true;
            }
        }
        changed
    }

    /// Finds (and updates) or, if `create`, creates the new ReplicaSet; syncs
    /// the Deployment's revision (`getAllReplicaSetsAndSyncRevision`).
    async fn sync_revision(&mut self, create: bool) -> Result<Option<String>, Error> {
        let new_revision = (self.old_sets().iter().map(|s| revision(&s.metadata)).max().unwrap_or(0) + 1).to_string();
        if let Some(existing) = self.new_set() {
            let mut set = existing.clone();
            let annotations_changed = self.set_new_set_annotations(&mut set, &new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = set.spec.get_or_insert_with(Default::default);
            if annotations_changed || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                let name = set.name_any();
                let updated = self.sets_api().replace(&name, &PostParams::default(), &set).await?;
                let uid = updated.uid();
                self.store_set(updated);
                return Ok(uid);
            }
            let set_revision = set.annotations().get(REVISION).cloned().unwrap_or_default();
            self.set_revision(&set_revision).await?;
            let mut status = self.status();
            if self.progress_deadline().is_some() && get_condition(&status, PROGRESSING).is_none() {
                let message = format!("Found new replica set \"{}\"", set.name_any());
                set_condition(
                    &mut status,
                    condition(PROGRESSING, "True", "FoundNewReplicaSet", message),
                );
                self.write_status(status).await?;
            }
            return Ok(set.uid());
        }
        if !create {
            return Ok(None);
        }
        let template = self.template();
        let mut status = self.status();
        let hash = template_hash(&template, status.collision_count);
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace()),
                owner_references: controller_reference(&self.d).map(|r| vec![r]),
                labels: new_template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        let current: i32 = self.sets.iter().map(replicas).sum();
        let count = self.new_set_replicas(current, 0);
        if let Some(spec) = set.spec.as_mut() {
            spec.replicas = Some(count);
        }
        self.set_new_set_annotations(&mut set, &new_revision, false);
        let api = self.sets_api();
        let (created, already_existed) = match api.create(&PostParams::default(), &set).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(err)) if err.code == 409 => {
                let existing = api.get_opt(&name).await?;
                let ours = existing.filter(|e| {
                    controller_of(&e.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref())
                        && equal_ignore_hash(e.spec.as_ref().and_then(|s| s.template.as_ref()), Some(&template))
                });
                match ours {
                    Some(existing) => (existing, true),
                    None => {
                        // A hash collision: the next sync names the ReplicaSet anew.
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                        self.write_status(status).await?;
                        return Err(kube::Error::Api(err).into());
                    }
                }
            }
            Err(kube::Error::Api(err)) if err.code == 403 && err.message.contains("terminated") => {
                return Err(kube::Error::Api(err).into());
            }
            Err(err) => {
                let message = format!("Failed to create new replica set \"{name}\": {err}");
                if self.progress_deadline().is_some() {
                    set_condition(
                        &mut status,
                        condition(PROGRESSING, "False", "ReplicaSetCreateError", message.clone()),
                    );
                    let _ = self.write_status(status).await;
                }
                self.event(EventType::Warning, "ReplicaSetCreateError", message).await;
                return Err(err.into());
            }
        };
        if !already_existed && count > 0 {
            let note = format!("Scaled up replica set {name} from 0 to {count}");
            self.event(EventType::Normal, "ScalingReplicaSet", note).await;
        }
        let uid = created.uid();
        self.store_set(created);
        self.set_revision(&new_revision).await?;
        if !already_existed && self.progress_deadline().is_some() {
            let mut status = self.status();
            let message = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut status,
                condition(PROGRESSING, "True", "NewReplicaSetCreated", message),
            );
            self.write_status(status).await?;
        }
        Ok(uid)
    }

    /// How many replicas the new ReplicaSet may have now (`NewRSNewReplicas`),
    /// given the replicas of all ReplicaSets and its own.
    fn new_set_replicas(&self, all: i32, new: i32) -> i32 {
        if !self.is_rolling() {
            return self.desired();
        }
        let (surge, _) = self.rolling_params();
        let max_total = self.desired() + scaled_value(surge, self.desired(), true);
        if all >= max_total {
            return new;
        }
        let up = (max_total - all).min(self.desired() - new);
        new + up
    }

    /// Sets a ReplicaSet's size (and replica annotations); records a
    /// `ScalingReplicaSet` event when the size changed (`scaleReplicaSet`).
    async fn scale(&mut self, uid: &str, size: i32) -> Result<bool, Error> {
        let Some(set) = self.set_by_uid(uid) else {
            return Ok(false);
        };
        let mut next = set.clone();
        let old = replicas(set);
        let resized = old != size;
        let annotated = self.set_replica_annotations(&mut next);
        if !resized && !annotated {
            return Ok(false);
        }
        next.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let name = next.name_any();
        let updated = self.sets_api().replace(&name, &PostParams::default(), &next).await?;
        self.store_set(updated);
        if resized {
            let direction = if old < size { "up" } else { "down" };
            let note = format!("Scaled {direction} replica set {name} from {old} to {size}");
            self.event(EventType::Normal, "ScalingReplicaSet", note).await;
        }
        Ok(resized)
    }

    /// The status the ReplicaSets add up to (`calculateStatus`).
    fn calculate_status(&self) -> DeploymentStatus {
        let available_replicas: i32 = self.sets.iter().map(available).sum();
        let total: i32 = self.sets.iter().map(replicas).sum();
        let new = self.new_set();
        let old = self.status();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(self.sets.iter().map(status_replicas).sum()),
            updated_replicas: Some(new.map_or(0, status_replicas)),
            ready_replicas: Some(self.sets.iter().map(ready).sum()),
            available_replicas: Some(available_replicas),
            unavailable_replicas: Some((total - available_replicas).max(0)),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
            terminating_replicas: old.terminating_replicas,
        };
        for field in [
            &mut status.replicas,
            &mut status.updated_replicas,
            &mut status.ready_replicas,
            &mut status.available_replicas,
            &mut status.unavailable_replicas,
        ] {
            if *field == Some(0) {
                *field = None;
            }
        }
        if available_replicas >= self.desired() - self.max_unavailable() {
            let c = condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            );
            set_condition(&mut status, c);
        } else {
            let c = condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            );
            set_condition(&mut status, c);
        }
        status
    }

    /// `syncDeploymentStatus`: the counts, no progress estimate.
    async fn sync_status(&mut self) -> Result<Option<Duration>, Error> {
        let status = self.calculate_status();
        self.write_status(status).await?;
        Ok(None)
    }

    /// A Deployment being deleted only reports (`syncStatusOnly`).
    async fn sync_status_only(&mut self) -> Result<Option<Duration>, Error> {
        self.sync_revision(false).await?;
        self.sync_status().await
    }

    /// Records pausing and resuming in the `Progressing` condition, so that time
    /// spent paused does not count against the progress deadline.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if self.progress_deadline().is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let current = get_condition(&status, PROGRESSING);
        if current.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            return Ok(());
        }
        let paused_recorded = current.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if self.spec_paused() && !paused_recorded {
            let c = condition(
                PROGRESSING,
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            );
            set_condition(&mut status, c);
        } else if !self.spec_paused() && paused_recorded {
            let c = condition(
                PROGRESSING,
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            );
            set_condition(&mut status, c);
        } else {
            return Ok(());
        }
        self.write_status(status).await
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were sized.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        self.sync_revision(false).await?;
        let desired = self.desired();
        Ok(self
            .sets
            .iter()
            .filter(|s| replicas(s) > 0)
            .filter_map(|s| annotation_int(s, DESIRED_REPLICAS))
            .any(|d| d != desired))
    }

    /// Scaling only: a paused Deployment or a changed `spec.replicas` (`sync`).
    async fn sync_scale(&mut self) -> Result<Option<Duration>, Error> {
        let new = self.sync_revision(false).await?;
        self.scale_sets(new.as_deref()).await?;
        if self.spec_paused() {
            self.cleanup().await?;
        }
        self.sync_status().await
    }

    /// Sizes the ReplicaSets for `spec.replicas`: all of it to the only active
    /// one, old ones to zero once the new one is saturated, else proportionally
    /// to their share of the last size (`scale`).
    async fn scale_sets(&mut self, new: Option<&str>) -> Result<(), Error> {
        let desired = self.desired();
        let active: Vec<&ReplicaSet> = self.sets.iter().filter(|s| replicas(s) > 0).collect();
        // The only active one, or the newest when none is active.
        let target = match active.len() {
            1 => active.first().and_then(|s| s.uid()),
            0 => match new {
                Some(uid) => Some(uid.to_string()),
                None => {
                    let mut old = self.old_sets();
                    old.sort_by(|a, b| by_creation(b, a));
                    old.first().and_then(|s| s.uid())
                }
            },
            _ => None,
        };
        if let Some(uid) = target {
            if self.set_by_uid(&uid).is_some_and(|s| replicas(s) != desired) {
                self.scale(&uid, desired).await?;
            }
            return Ok(());
        }
        let new_set = new.and_then(|uid| self.set_by_uid(uid));
        let saturated = new_set.is_some_and(|s| {
            replicas(s) == desired && annotation_int(s, DESIRED_REPLICAS) == Some(desired) && available(s) == desired
        });
        if saturated {
            let old: Vec<String> = self
                .old_sets()
                .iter()
                .filter(|s| replicas(s) > 0)
                .filter_map(|s| s.uid())
                .collect();
            for uid in old {
                self.scale(&uid, 0).await?;
            }
            return Ok(());
        }
        if !self.is_rolling() {
            return Ok(());
        }
        let mut active: Vec<ReplicaSet> = active.into_iter().cloned().collect();
        let current: i32 = active.iter().map(replicas).sum();
        let allowed = if desired > 0 { desired + self.max_surge() } else { 0 };
        let to_add = allowed - current;
        match to_add.cmp(&0) {
            // Larger first; among equals the newer when growing, the older when shrinking.
            Ordering::Greater => active.sort_by(|a, b| replicas(b).cmp(&replicas(a)).then_with(|| by_creation(b, a))),
            Ordering::Less => active.sort_by(|a, b| replicas(b).cmp(&replicas(a)).then_with(|| by_creation(a, b))),
            Ordering::Equal => {}
        }
        let mut added = 0;
        let mut sizes: Vec<(String, i32)> = Vec::new();
        for set in &active {
            let size = if to_add != 0 {
                let proportion = self.proportion(set, to_add, added);
                added += proportion;
                replicas(set) + proportion
            } else {
                replicas(set)
            };
            sizes.push((set.uid().unwrap_or_default(), size));
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (uid, size) in sizes {
            self.scale(&uid, size).await?;
        }
        Ok(())
    }

    /// A ReplicaSet's share of `to_add` more (or fewer) replicas, `added`
    /// having been handed out already (`GetProportion`).
    fn proportion(&self, set: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if replicas(set) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(set);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn fraction(&self, set: &ReplicaSet) -> i32 {
        if self.desired() == 0 {
            return -replicas(set);
        }
        let total = self.desired() + self.max_surge();
        let annotated = annotation_int(set, MAX_REPLICAS)
            .unwrap_or_else(|| self.status().replicas.unwrap_or(0))
            .max(1);
        let size = f64::from(replicas(set)) * f64::from(total) / f64::from(annotated);
        // Go's math.Round: halves away from zero, as f64::round.
        (size.round() as i32) - replicas(set)
    }

    /// Deletes old ReplicaSets scaled to zero beyond `revisionHistoryLimit`,
    /// lowest revision first (`cleanupDeployment`).
    async fn cleanup(&mut self) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut old: Vec<ReplicaSet> = self
            .old_sets()
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        let excess = i64::try_from(old.len()).unwrap_or(0) - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        old.sort_by(|a, b| {
            revision(&a.metadata)
                .cmp(&revision(&b.metadata))
                .then_with(|| by_creation(a, b))
        });
        let api = self.sets_api();
        for set in old.iter().take(usize::try_from(excess).unwrap_or(0)) {
            let observed = set.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if status_replicas(set) != 0 || replicas(set) != 0 || set.metadata.generation.unwrap_or(0) > observed {
                continue;
            }
            match api.delete(&set.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(err)) if err.code == 404 => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// `rolloutRolling`: scale the new ReplicaSet up, else old ones down.
    async fn rollout_rolling(&mut self) -> Result<Option<Duration>, Error> {
        let Some(new) = self.sync_revision(true).await? else {
            return self.sync_rollout_status().await;
        };
        if self.reconcile_new(&new).await? {
            return self.sync_rollout_status().await;
        }
        if self.reconcile_old(&new).await? {
            return self.sync_rollout_status().await;
        }
        if self.complete(&self.status()) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Scales the new ReplicaSet towards `spec.replicas` within the surge.
    async fn reconcile_new(&mut self, new: &str) -> Result<bool, Error> {
        let Some(set) = self.set_by_uid(new) else {
            return Ok(false);
        };
        let (size, desired) = (replicas(set), self.desired());
        if size == desired {
            return Ok(false);
        }
        if size > desired {
            return self.scale(new, desired).await;
        }
        let all: i32 = self.sets.iter().map(replicas).sum();
        let target = self.new_set_replicas(all, size);
        self.scale(new, target).await
    }

    /// Scales old ReplicaSets down as far as `maxUnavailable` allows, unhealthy
    /// replicas first (`reconcileOldReplicaSets`).
    async fn reconcile_old(&mut self, new: &str) -> Result<bool, Error> {
        let old_count: i32 = self
            .sets
            .iter()
            .filter(|s| s.uid().as_deref() != Some(new))
            .map(replicas)
            .sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all: i32 = self.sets.iter().map(replicas).sum();
        let min_available = self.desired() - self.max_unavailable();
        let new_unavailable = self.set_by_uid(new).map_or(0, |s| replicas(s) - available(s));
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(new, max_scaled_down).await?;
        let scaled = self.scale_down_old(new).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Active old ReplicaSets, oldest first.
    fn active_old(&self, new: &str) -> Vec<(String, i32, i32)> {
        let mut old: Vec<&ReplicaSet> = self
            .sets
            .iter()
            .filter(|s| s.uid().as_deref() != Some(new) && replicas(s) > 0)
            .collect();
        old.sort_by(|a, b| by_creation(a, b));
        old.iter()
            .map(|s| (s.uid().unwrap_or_default(), replicas(s), available(s)))
            .collect()
    }

    /// Scales away replicas of old ReplicaSets that are not available anyway.
    async fn cleanup_unhealthy(&mut self, new: &str, max: i32) -> Result<i32, Error> {
        let mut total = 0;
        for (uid, size, available) in self.active_old(new) {
            if total >= max {
                break;
            }
            if size == available {
                continue;
            }
            let down = (max - total).min(size - available);
            self.scale(&uid, size - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Scales old ReplicaSets down while availability stays above
    /// `spec.replicas - maxUnavailable`.
    async fn scale_down_old(&mut self, new: &str) -> Result<i32, Error> {
        let min_available = self.desired() - self.max_unavailable();
        let available_now: i32 = self.sets.iter().map(available).sum();
        if available_now <= min_available {
            return Ok(0);
        }
        let wanted = available_now - min_available;
        let mut total = 0;
        for (uid, size, _) in self.active_old(new) {
            if total >= wanted {
                break;
            }
            let down = size.min(wanted - total);
            self.scale(&uid, size - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to go,
    /// then the new ReplicaSet to full size.
    async fn rollout_recreate(&mut self) -> Result<Option<Duration>, Error> {
        let new = self.sync_revision(false).await?;
        let active_old: Vec<String> = self
            .sets
            .iter()
            .filter(|s| s.uid() != new && replicas(s) > 0)
            .filter_map(|s| s.uid())
            .collect();
        let mut scaled_down = false;
        for uid in active_old {
            scaled_down |= self.scale(&uid, 0).await?;
        }
        if scaled_down || self.old_pods_running(new.as_deref()) {
            return self.sync_rollout_status().await;
        }
        let new = match new {
            Some(uid) => uid,
            None => match self.sync_revision(true).await? {
                Some(uid) => uid,
                None => return self.sync_rollout_status().await,
            },
        };
        let desired = self.desired();
        self.scale(&new, desired).await?;
        if self.complete(&self.status()) {
            self.cleanup().await?;
        }
        self.sync_rollout_status().await
    }

    /// Whether old ReplicaSets still have pods that are not finished (`oldPodsRunning`).
    fn old_pods_running(&self, new: Option<&str>) -> bool {
        let old: HashSet<String> = self
            .sets
            .iter()
            .filter(|s| s.uid().as_deref() != new)
            .filter_map(|s| s.uid())
            .collect();
        if self
            .sets
            .iter()
            .filter(|s| s.uid().is_some_and(|u| old.contains(&u)))
            .any(|s| status_replicas(s) > 0)
        {
            return true;
        }
        let namespace = self.namespace();
        let selector = deployment_selector(&self.d);
        self.state.pods.store().state().iter().any(|pod| {
            pod.metadata.namespace.as_deref() == Some(namespace.as_str())
                && pods::selects(selector.as_ref(), &pod.metadata)
                && controller_of(&pod.metadata).is_some_and(|r| old.contains(&r.uid))
                && !pods::is_terminal(pod)
        })
    }

    /// Every replica updated and available, and the spec observed (`DeploymentComplete`).
    fn complete(&self, status: &DeploymentStatus) -> bool {
        let desired = self.desired();
        status.updated_replicas.unwrap_or(0) == desired
            && status.replicas.unwrap_or(0) == desired
            && status.available_replicas.unwrap_or(0) == desired
            && status.observed_generation.unwrap_or(0) >= self.d.metadata.generation.unwrap_or(0)
    }

    /// The counts plus the progress estimate (`syncRolloutStatus`); returns when
    /// to look again for a rollout that may miss its deadline.
    async fn sync_rollout_status(&mut self) -> Result<Option<Duration>, Error> {
        let mut status = self.calculate_status();
        let old = self.status();
        let deadline = self.progress_deadline();
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = get_condition(&old, PROGRESSING).cloned();
        let completed_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let new_name = self.new_set().map(|s| s.name_any());
        if deadline.is_some() && !completed_before {
            if self.complete(&status) {
                let message = match &new_name {
                    Some(name) => format!("ReplicaSet \"{name}\" has successfully progressed."),
                    None => format!("Deployment \"{}\" has successfully progressed.", self.d.name_any()),
                };
                set_condition(
                    &mut status,
                    condition(PROGRESSING, "True", "NewReplicaSetAvailable", message),
                );
            } else if progressing(&old, &status) {
                let message = match &new_name {
                    Some(name) => format!("ReplicaSet \"{name}\" is progressing."),
                    None => format!("Deployment \"{}\" is progressing.", self.d.name_any()),
                };
                let mut c = condition(PROGRESSING, "True", "ReplicaSetUpdated", message);
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if self.timed_out(&status) {
                let message = match &new_name {
                    Some(name) => format!("ReplicaSet \"{name}\" has timed out progressing."),
                    None => format!("Deployment \"{}\" has timed out progressing.", self.d.name_any()),
                };
                set_condition(
                    &mut status,
                    condition(PROGRESSING, "False", "ProgressDeadlineExceeded", message),
                );
            }
        }
        // A failure to create or delete pods, raised from the ReplicaSets.
        let failure = self
            .new_set()
            .into_iter()
            .chain(self.old_sets())
            .filter_map(|s| s.status.as_ref()?.conditions.as_ref())
            .flatten()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .cloned();
        match failure {
            Some(c) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: c.type_,
                    status: c.status,
                    last_update_time: c.last_transition_time.clone(),
                    last_transition_time: c.last_transition_time,
                    reason: c.reason,
                    message: c.message,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if self.d.status.as_ref() == Some(&status) {
            return Ok(self.stuck_requeue(&status));
        }
        self.write_status(status).await?;
        Ok(None)
    }

    /// Whether the rollout made no progress within the deadline (`DeploymentTimedOut`).
    fn timed_out(&self, status: &DeploymentStatus) -> bool {
        let Some(deadline) = self.progress_deadline() else {
            return false;
        };
        let Some(c) = get_condition(status, PROGRESSING) else {
            return false;
        };
        match c.reason.as_deref() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => c
                .last_update_time
                .as_ref()
                .is_some_and(|from| from.0 + SignedDuration::from_secs(i64::from(deadline)) < Timestamp::now()),
        }
    }

    /// When to check a rollout without progress for its deadline
    /// (`requeueStuckDeployment`).
    fn stuck_requeue(&self, status: &DeploymentStatus) -> Option<Duration> {
        let deadline = self.progress_deadline()?;
        let current = get_condition(&self.status(), PROGRESSING)?.clone();
        if self.complete(status) || current.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return None;
        }
        let from = current.last_update_time?.0;
        let due = from + SignedDuration::from_secs(i64::from(deadline));
        let left = Duration::try_from(due.duration_since(Timestamp::now())).unwrap_or_default();
        Some(if left < Duration::from_secs(1) {
            Duration::from_millis(100)
        } else {
            left + Duration::from_secs(1)
        })
    }
}

/// Whether the counts moved forward since the last status (`DeploymentProgressing`).
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_round_as_upstream() {
        let pct = |s: &str| IntOrString::String(s.into());
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10), (3, 2));
        // 25% of 1: surge 1, unavailable 0.
        assert_eq!(fenceposts(Some(&pct("25%")), Some(&pct("25%")), 1), (1, 0));
        // Both zero: one may be unavailable.
        assert_eq!(fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5), (0, 1));
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 4),
            (2, 1)
        );
        assert_eq!(scaled_value(Some(&pct("junk")), 10, true), 0);
    }

    #[test]
    fn template_hash_is_stable_and_changes_with_template_and_collisions() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
        }))
        .unwrap();
        let hash = template_hash(&template, None);
        assert_eq!(hash, template_hash(&template, None));
        assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(hash, template_hash(&template, Some(1)));
        let mut other = template.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(hash, template_hash(&other, None));
        // The hash label and empty fields do not make templates differ.
        let mut labelled = template.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), hash);
        labelled.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        assert!(equal_ignore_hash(Some(&template), Some(&labelled)));
        assert!(!equal_ignore_hash(Some(&template), Some(&other)));
    }

    #[test]
    fn progress_is_more_updated_ready_or_available_or_fewer_old() {
        let status = |replicas, updated, ready, available| DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        };
        assert!(progressing(&status(4, 1, 3, 3), &status(4, 2, 3, 3)));
        assert!(progressing(&status(5, 1, 3, 3), &status(4, 1, 3, 3)));
        assert!(progressing(&status(4, 1, 3, 3), &status(4, 1, 4, 3)));
        assert!(!progressing(&status(4, 1, 3, 3), &status(4, 1, 3, 3)));
    }
}
