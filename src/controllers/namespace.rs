//! The namespace controller: empties a namespace being deleted and then lets the
//! API server remove it, as kube-controller-manager's `namespace` controller
//! (`namespaced_resources_deleter.go`) does. The API only marks a deleted
//! namespace `Terminating` and keeps its `kubernetes` finalizer; this loop finds
//! every namespaced resource type through API discovery (custom resources
//! included), deletes each type's objects (a delete collection where served,
//! else one by one), and reports progress in the namespace's conditions
//! (`NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`). When nothing is left it removes the
//! `kubernetes` finalizer through `namespaces/<name>/finalize`, and the API
//! deletes the namespace. Objects held by finalizers or a pod's grace period keep
//! it `Terminating`; the loop looks again when a pod in it changes and otherwise
//! after half the time it expects the rest to take.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use super::{Context, drain};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";
/// How long objects held by finalizers are expected to take (upstream's guess).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Content(String),
}

pub async fn run(context: Context) {
    let namespaces = context.informers.synced::<Namespace>().await;
    let pods = context.informers.synced::<Pod>().await;
    let cache = namespaces.store().clone();
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store().clone())
        // A pod going away in a terminating namespace may be the last thing left.
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            let name = pod.metadata.namespace.as_deref()?;
            let namespace = cache.get(&ObjectRef::new(name))?;
            namespace.metadata.deletion_timestamp.as_ref()?;
            Some(ObjectRef::new(name))
        })
        .run(
            move |namespace, context| reconcile(namespace, context, pods.store().clone()),
            |_, _, _| Action::requeue(Duration::from_secs(2)),
            Arc::new(context),
        );
    drain(controller).await;
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>, pods: Store<Pod>) -> Result<Action, Error> {
    let Some(deleted_at) = namespace.metadata.deletion_timestamp.clone() else {
        return Ok(Action::await_change());
    };
    let spec_finalizers = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !spec_finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(context.client.clone());
    let mut namespace = (*namespace).clone();
    let status = namespace.status.get_or_insert_with(Default::default);
    if status.phase.as_deref() != Some("Terminating") {
        status.phase = Some("Terminating".to_string());
        namespace = match api.replace_status(&name, &PostParams::default(), &namespace).await {
            Ok(updated) => updated,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err.into()),
        };
    }

    let outcome = delete_all_content(&context.client, &name, deleted_at.0, &pods).await;
    let mut updated = namespace.clone();
    if set_conditions(&mut updated, &outcome) {
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(written) => namespace = written,
            Err(err) => tracing::debug!(namespace = %name, error = %err, "updating namespace conditions failed"),
        }
    }
    if !outcome.errors.is_empty() {
        let mut errors = outcome.errors.clone();
        errors.sort();
        return Err(Error::Content(errors.join(", ")));
    }
    if outcome.estimate > 0 {
        let wait = u64::try_from(outcome.estimate / 2 + 1).unwrap_or(1);
        return Ok(Action::requeue(Duration::from_secs(wait)));
    }
    // Retry a finalize that raced another writer with the namespace as it is now.
    for _ in 0..3 {
        match finalize(&context.client, &namespace).await {
            Err(Error::Api(kube::Error::Api(s))) if s.code == 409 => match api.get_opt(&name).await? {
                Some(fresh) if fresh.metadata.uid == namespace.metadata.uid => namespace = fresh,
                _ => return Ok(Action::await_change()),
            },
            other => return other.map(|()| Action::await_change()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// What one pass over the namespace's content found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Discovery failed (for some groups): the message.
    pub discovery_error: Option<String>,
    /// Per resource type that could not be emptied: why.
    pub errors: Vec<String>,
    /// Seconds the remaining content is expected to take to go (0: none expected).
    pub estimate: i64,
    /// `resource.group` → how many objects remain.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → how many remaining objects carry it.
    pub finalizers: BTreeMap<String, usize>,
}

/// Deletes every namespaced object in `namespace`, type by type, and counts what
/// is left.
async fn delete_all_content(
    client: &kube::Client,
    namespace: &str,
    deleted_at: Timestamp,
    pods: &Store<Pod>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => Some(discovery),
        Err(_) => match Discovery::new(client.clone()).run().await {
            Ok(discovery) => Some(discovery),
            Err(err) => {
                outcome.discovery_error = Some(err.to_string());
                None
            }
        },
    };
    let Some(discovery) = discovery else { return outcome };
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope != Scope::Namespaced || !capabilities.supports_operation(verbs::DELETE) {
                continue;
            }
            let can = |verb: &str| capabilities.supports_operation(verb);
            let estimate = if resource.group.is_empty() && resource.plural == "pods" {
                pod_grace_estimate(pods, namespace, deleted_at)
            } else {
                0
            };
            let one = delete_resource(
                client,
                namespace,
                &resource,
                can(verbs::DELETE_COLLECTION),
                can(verbs::LIST),
                estimate,
            )
            .await;
            outcome.estimate = outcome.estimate.max(one.estimate);
            if one.remaining > 0 {
                outcome
                    .remaining
                    .insert(format!("{}.{}", resource.plural, resource.group), one.remaining);
                for (finalizer, count) in one.finalizers {
                    *outcome.finalizers.entry(finalizer).or_default() += count;
                }
            }
            if let Some(err) = one.error {
                outcome.errors.push(err);
            }
        }
    }
    outcome
}

/// The longest grace period of a live pod in the namespace, while the
/// namespace's deletion is younger than it (`estimateGracefulTerminationForPods`).
fn pod_grace_estimate(pods: &Store<Pod>, namespace: &str, deleted_at: Timestamp) -> i64 {
    let estimate = pods
        .state()
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| !super::pods::is_terminal(pod))
        .filter_map(|pod| pod.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0);
    let elapsed = Timestamp::now().duration_since(deleted_at).as_secs();
    if elapsed >= estimate { 0 } else { estimate }
}

/// What deleting one resource type's objects left behind.
#[derive(Debug, Default)]
struct TypeOutcome {
    estimate: i64,
    remaining: usize,
    finalizers: BTreeMap<String, usize>,
    error: Option<String>,
}

async fn delete_resource(
    client: &kube::Client,
    namespace: &str,
    resource: &ApiResource,
    delete_collection: bool,
    list: bool,
    estimate: i64,
) -> TypeOutcome {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let gvr = format!("{}/{}, Resource={}", resource.group, resource.version, resource.plural);
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let failed = |err: kube::Error| TypeOutcome {
        estimate,
        error: Some(format!("{gvr}: {err}")),
        ..Default::default()
    };
    let gone = |err: &kube::Error| matches!(err, kube::Error::Api(s) if s.code == 404 || s.code == 405);
    let mut collection_deleted = false;
    if delete_collection {
        match api.delete_collection(&background, &ListParams::default()).await {
            Ok(_) => collection_deleted = true,
            Err(err) if gone(&err) => {}
            Err(err) => return failed(err),
        }
    }
    if !list {
        return TypeOutcome {
            estimate,
            ..Default::default()
        };
    }
    let listed = |api: Api<DynamicObject>| async move { api.list_metadata(&ListParams::default()).await };
    if !collection_deleted {
        let items = match listed(api.clone()).await {
            Ok(items) => items,
            Err(err) if gone(&err) => return TypeOutcome::default(),
            Err(err) => return failed(err),
        };
        for item in items {
            let Some(name) = item.metadata.name.as_deref() else {
                continue;
            };
            if let Err(err) = api.delete(name, &background).await
                && !gone(&err)
            {
                return failed(err);
            }
        }
    }
    let items = match listed(api.clone()).await {
        Ok(items) => items.items,
        Err(err) if gone(&err) => return TypeOutcome::default(),
        Err(err) => return failed(err),
    };
    if items.is_empty() {
        return TypeOutcome::default();
    }
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        for finalizer in item.metadata.finalizers.iter().flatten() {
            *finalizers.entry(finalizer.clone()).or_default() += 1;
        }
    }
    let mut outcome = TypeOutcome {
        estimate,
        remaining: items.len(),
        ..Default::default()
    };
    if estimate == 0 {
        if finalizers.is_empty() {
            outcome.error = Some(format!(
                "unexpected items still remain in namespace: {namespace} for gvr: {gvr}"
            ));
        } else {
            outcome.estimate = FINALIZER_ESTIMATE_SECONDS;
        }
    }
    outcome.finalizers = finalizers;
    outcome
}

/// The five deletion conditions, in upstream's order, with their "all is well"
/// reason and message.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// The failing conditions an outcome calls for: type → (reason, message).
fn failures(outcome: &Outcome) -> BTreeMap<&'static str, (String, String)> {
    let mut failing = BTreeMap::new();
    if let Some(err) = &outcome.discovery_error {
        failing.insert(
            "NamespaceDeletionDiscoveryFailure",
            ("DiscoveryFailed".to_string(), err.clone()),
        );
    }
    if !outcome.errors.is_empty() {
        let mut errors = outcome.errors.clone();
        errors.sort();
        failing.insert(
            "NamespaceDeletionContentFailure",
            (
                "ContentDeletionFailed".to_string(),
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    errors.len(),
                    errors.join(", ")
                ),
            ),
        );
    }
    if !outcome.remaining.is_empty() {
        let mut parts: Vec<String> = outcome
            .remaining
            .iter()
            .map(|(resource, n)| format!("{resource} has {n} resource instances"))
            .collect();
        parts.sort();
        failing.insert(
            "NamespaceContentRemaining",
            (
                "SomeResourcesRemain".to_string(),
                format!("Some resources are remaining: {}", parts.join(", ")),
            ),
        );
    }
    if !outcome.finalizers.is_empty() {
        let mut parts: Vec<String> = outcome
            .finalizers
            .iter()
            .map(|(finalizer, n)| format!("{finalizer} in {n} resource instances"))
            .collect();
        parts.sort();
        failing.insert(
            "NamespaceFinalizersRemaining",
            (
                "SomeFinalizersRemain".to_string(),
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    parts.join(", ")
                ),
            ),
        );
    }
    failing
}

/// Brings the namespace's deletion conditions in line with `outcome`; whether
/// anything changed (a transition moves `lastTransitionTime`).
pub fn set_conditions(namespace: &mut Namespace, outcome: &Outcome) -> bool {
    let failing = failures(outcome);
    let now = Time(Timestamp::now());
    let status = namespace.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for (type_, ok_reason, ok_message) in CONDITIONS {
        let (state, reason, message) = match failing.get(type_) {
            Some((reason, message)) => ("True", reason.clone(), message.clone()),
            None => ("False", ok_reason.to_string(), ok_message.to_string()),
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: type_.to_string(),
                    status: state.to_string(),
                    reason: Some(reason),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(old) => {
                if old.status != state
                    || old.reason.as_deref() != Some(&reason)
                    || old.message.as_deref() != Some(&message)
                {
                    if old.status != state {
                        old.last_transition_time = Some(now.clone());
                    }
                    old.status = state.to_string();
                    old.reason = Some(reason);
                    old.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Removes our finalizer through the `finalize` subresource; the API then
/// deletes the namespace (unless other finalizers remain).
async fn finalize(client: &kube::Client, namespace: &Namespace) -> Result<(), Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let mut body = namespace.clone();
    let spec = body.spec.get_or_insert_with(Default::default);
    let mut rest: Vec<String> = spec
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    spec.finalizers = Some(rest);
    let data = serde_json::to_vec(&body).map_err(|e| Error::Content(e.to_string()))?;
    let request = kube::core::Request::new("/api/v1/namespaces")
        .replace_subresource("finalize", &name, &PostParams::default(), data)
        .map_err(|e| Error::Content(e.to_string()))?;
    match client.request::<Namespace>(request).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(namespace: &Namespace) -> Vec<(String, String, String)> {
        let status = namespace.status.as_ref().unwrap();
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.message.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn conditions_report_what_remains_and_change_only_on_news() {
        let mut namespace = Namespace::default();
        let outcome = Outcome {
            estimate: 15,
            remaining: BTreeMap::from([("widgets.example.com".to_string(), 2), ("pods.".to_string(), 1)]),
            finalizers: BTreeMap::from([("example.com/hold".to_string(), 2)]),
            ..Default::default()
        };
        assert!(set_conditions(&mut namespace, &outcome));
        let got = conditions(&namespace);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].0, "NamespaceDeletionDiscoveryFailure");
        assert_eq!(got[0].1, "False");
        assert_eq!(
            got[3],
            (
                "NamespaceContentRemaining".to_string(),
                "True".to_string(),
                "Some resources are remaining: pods. has 1 resource instances, widgets.example.com has 2 resource instances"
                    .to_string()
            )
        );
        assert_eq!(
            got[4].2,
            "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances"
        );
        assert!(!set_conditions(&mut namespace, &outcome), "nothing new");
        assert!(set_conditions(&mut namespace, &Outcome::default()));
        assert!(conditions(&namespace).iter().all(|c| c.1 == "False"));
    }

    #[test]
    fn failures_are_reported_sorted() {
        let outcome = Outcome {
            discovery_error: Some("boom".into()),
            errors: vec!["b".into(), "a".into()],
            ..Default::default()
        };
        let mut namespace = Namespace::default();
        set_conditions(&mut namespace, &outcome);
        let got = conditions(&namespace);
        assert_eq!(
            got[0],
            ("NamespaceDeletionDiscoveryFailure".into(), "True".into(), "boom".into())
        );
        assert_eq!(got[2].2, "Failed to delete all resource types, 2 remaining: a, b");
    }
}
