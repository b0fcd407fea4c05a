//! What the workload controllers share about the pods they own, as
//! kube-controller-manager's `controller_utils.go` and `podutil` do: the
//! controller ownerReference, a pod stamped from a template, which pods count as
//! active, ready and available, and label selectors as the controllers read them
//! (an unparsable selector selects nothing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

/// The ownerReference a controller puts on what it creates: `controller: true`
/// and `blockOwnerDeletion: true`, so foreground deletion waits for it.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut reference = owner.controller_owner_ref(&())?;
    reference.block_owner_deletion = Some(true);
    Some(reference)
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|reference| reference.controller == Some(true))
}

/// Whether the object's controller is the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|reference| reference.uid == uid)
}

/// A new pod from `template` (labels, annotations, finalizers and spec) owned by
/// `owner`; the caller names it (`name` or `generateName`).
pub fn pod_from_template(template: &PodTemplateSpec, owner: OwnerReference) -> Pod {
    let source = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            labels: source.labels,
            annotations: source.annotations,
            finalizers: source.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The pod's phase, `Pending` when none is reported yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or("Pending")
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether a deletion of the pod has begun.
pub fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Neither finished nor being deleted (`controller.IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_deleting(pod)
}

/// The time the pod's `Ready` condition last became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_deref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    if ready.status != "True" {
        return None;
    }
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Running with its `Ready` condition True (`podutil.IsPodReady`).
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// A workload's selector as a matcher; `None` (matches nothing) when it is
/// missing or does not parse.
pub fn selector(selector: Option<&LabelSelector>) -> Option<Selector> {
    Selector::try_from(selector?.clone()).ok()
}

/// Whether `selector` (from [`selector`]) selects an object with these labels.
pub fn selects(selector: Option<&Selector>, meta: &ObjectMeta) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    selector.is_some_and(|s| s.matches(meta.labels.as_ref().unwrap_or(&EMPTY)))
}

/// Pods in `namespace` the object with `uid` controls, from the informer cache.
pub fn owned_pods(
    store: &kube::runtime::reflector::Store<Pod>,
    namespace: &str,
    uid: &str,
) -> Vec<std::sync::Arc<Pod>> {
    store
        .state()
        .into_iter()
        .filter(|pod| pod.namespace().as_deref() == Some(namespace) && is_controlled_by(&pod.metadata, uid))
        .collect()
}

/// The current time as the API's `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// How long a controller waits for its cache to show what it created or deleted
/// before acting again anyway (kube-controller-manager waits 5 minutes).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Objects a controller created or deleted that its informer cache has not shown
/// yet (kube-controller-manager's `ControllerExpectations`): until it has, the
/// controller does not count its pods again, so a stale cache never makes it
/// create or delete twice. Keyed by the owner's uid.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    /// (namespace, name) created but not yet in the cache.
    created: Vec<(String, String)>,
    /// (namespace, name, uid) deleted but still in the cache as not deleting.
    deleted: Vec<(String, String, String)>,
    since: Instant,
}

impl Expectations {
    fn entry<R>(&self, owner: &str, change: impl FnOnce(&mut Pending) -> R) -> R {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            created: Vec::new(),
            deleted: Vec::new(),
            since: Instant::now(),
        });
        entry.since = Instant::now();
        change(entry)
    }

    /// Records that the owner created `object`.
    pub fn created<K: Resource>(&self, owner: &str, object: &K) {
        let key = (object.namespace().unwrap_or_default(), object.name_any());
        self.entry(owner, |p| p.created.push(key));
    }

    /// Records that the owner deleted `object`.
    pub fn deleted<K: Resource>(&self, owner: &str, object: &K) {
        let key = (
            object.namespace().unwrap_or_default(),
            object.name_any(),
            object.uid().unwrap_or_default(),
        );
        self.entry(owner, |p| p.deleted.push(key));
    }

    /// Whether the cache shows everything the owner did (or it has waited long enough).
    pub fn satisfied<K>(&self, owner: &str, store: &kube::runtime::reflector::Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = pending.get_mut(owner) else {
            return true;
        };
        entry
            .created
            .retain(|(namespace, name)| store.get(&ObjectRef::new(name).within(namespace)).is_none());
        entry.deleted.retain(|(namespace, name, uid)| {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .is_some_and(|o| o.uid().as_deref() == Some(uid.as_str()) && o.meta().deletion_timestamp.is_none())
        });
        let done =
            (entry.created.is_empty() && entry.deleted.is_empty()) || entry.since.elapsed() > EXPECTATION_TIMEOUT;
        if done {
            pending.remove(owner);
        }
        done
    }

    /// Forgets a deleted owner.
    pub fn forget(&self, owner: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(owner);
    }
}

/// The resourceVersions a controller last wrote, per object uid, so it does not
/// act on an older copy of its own object still in the cache (a stale status
/// would make it count or create twice). Revisions are this server's store
/// revisions; one it cannot parse is never stale.
#[derive(Default)]
pub struct Written {
    versions: Mutex<HashMap<String, u64>>,
}

impl Written {
    /// Records what a write returned.
    pub fn wrote<K: Resource>(&self, object: &K) {
        if let (Some(uid), Some(version)) = (object.uid(), object.resource_version().and_then(|v| v.parse().ok())) {
            self.versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uid, version);
        }
    }

    /// Whether `object` is older than what this controller last wrote of it.
    pub fn is_stale<K: Resource>(&self, object: &K) -> bool {
        let (Some(uid), Some(version)) = (
            object.uid(),
            object.resource_version().and_then(|v| v.parse::<u64>().ok()),
        ) else {
            return false;
        };
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&uid)
            .is_some_and(|written| version < *written)
    }

    /// Forgets a deleted object.
    pub fn forget(&self, uid: &str) {
        self.versions.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn readiness_and_availability() {
        let ready = pod(
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(is_ready(&ready) && is_active(&ready));
        assert!(is_available(&ready, 0, at("2024-01-01T00:00:00Z")));
        assert!(!is_available(&ready, 10, at("2024-01-01T00:00:09Z")));
        assert!(is_available(&ready, 10, at("2024-01-01T00:00:10Z")));
        let pending = pod(json!({"metadata": {"name": "p"}}));
        assert!(!is_ready(&pending) && is_active(&pending) && phase(&pending) == "Pending");
        let done = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        assert!(is_terminal(&done) && !is_active(&done));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}))
        .unwrap();
        let sel = selector(Some(&sel));
        let meta =
            |labels: serde_json::Value| -> ObjectMeta { serde_json::from_value(json!({"labels": labels})).unwrap() };
        assert!(selects(sel.as_ref(), &meta(json!({"app": "a", "tier": "web"}))));
        assert!(!selects(sel.as_ref(), &meta(json!({"app": "a"}))));
        assert!(!selects(None, &meta(json!({"app": "a"}))));
        let bad: LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "k", "operator": "Near"}]})).unwrap();
        assert!(selector(Some(&bad)).is_none());
    }
}
