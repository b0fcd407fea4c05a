//! The disruption controller: the status of every PodDisruptionBudget, as
//! kube-controller-manager's `disruption` controller computes it, which the
//! API's `pods/eviction` (and so `kubectl drain`) checks. For the pods the
//! budget selects it reports `expectedPods`, `desiredHealthy` (from
//! `minAvailable` as a number or percentage, or `maxUnavailable`, percentages
//! scaled by the replicas of the pods' controllers: ReplicaSet, Deployment,
//! ReplicationController, StatefulSet), `currentHealthy` (ready pods not being
//! deleted and not just evicted), `disruptionsAllowed` and the
//! `DisruptionAllowed` condition. Evictions the API granted are listed in
//! `disruptedPods` until the pod is gone, or for at most two minutes. When the
//! replicas cannot be found the budget fails safe: no disruption allowed,
//! condition reason `SyncFailed`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use super::{Context, Error, drain, pods};

/// How long an eviction the API granted may take to delete its pod.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);
const CONDITION: &str = "DisruptionAllowed";

pub async fn run(context: Context) {
    let budgets = context.informers.synced::<PodDisruptionBudget>().await;
    let pods = context.informers.synced::<Pod>().await;
    let membership = Membership {
        budgets: budgets.store().clone(),
        pods: pods.store().clone(),
        last: Mutex::new(HashMap::new()),
    };
    let controller = Controller::for_shared_stream(budgets.subscribe(), budgets.store().clone())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| membership.budgets_of(&pod))
        .run(
            {
                let pods = pods.store().clone();
                move |budget, context| reconcile(budget, context, pods.clone())
            },
            |_, err, _| Action::requeue(super::endpoints::retry_after(err)),
            Arc::new(context),
        );
    drain(controller).await;
}

/// The budget's selector: `None` (selects nothing) when it has none or it does
/// not parse; an empty selector selects every pod in the namespace.
pub fn selector_of(budget: &PodDisruptionBudget) -> Option<Selector> {
    let selector = budget.spec.as_ref()?.selector.as_ref()?;
    Selector::try_from(selector.clone()).ok()
}

/// Which budgets select a pod now or did before (so a pod relabelled out of a
/// budget still updates it).
struct Membership {
    budgets: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    last: Mutex<HashMap<ObjectRef<Pod>, Vec<ObjectRef<PodDisruptionBudget>>>>,
}

impl Membership {
    fn budgets_of(&self, pod: &Pod) -> Vec<ObjectRef<PodDisruptionBudget>> {
        let key = ObjectRef::from_obj(pod);
        let mut now: Vec<ObjectRef<PodDisruptionBudget>> = self
            .budgets
            .state()
            .iter()
            .filter(|b| b.metadata.namespace == pod.metadata.namespace)
            .filter(|b| pods::selects(selector_of(b).as_ref(), &pod.metadata))
            .map(|b| ObjectRef::from_obj(&**b))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let before = match self.pods.get(&key) {
            Some(_) => last.insert(key, now.clone()),
            None => last.remove(&key),
        };
        for budget in before.unwrap_or_default() {
            if !now.contains(&budget) {
                now.push(budget);
            }
        }
        now
    }
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, context: Arc<Context>, pods: Store<Pod>) -> Result<Action, Error> {
    let namespace = budget.metadata.namespace.clone().unwrap_or_default();
    let name = budget.metadata.name.clone().unwrap_or_default();
    let selector = selector_of(&budget);
    let mut selected: Vec<Arc<Pod>> = match &selector {
        None => Vec::new(),
        Some(selector) => pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .filter(|p| pods::selects(Some(selector), &p.metadata))
            .collect(),
    };
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let now = Timestamp::now();
    let status = match expected_pods(&budget, &selected, &context).await {
        Ok((expected, desired)) => {
            let (disrupted, recheck) = disrupted_pods(&budget, &selected, now);
            let healthy = current_healthy(&selected, &disrupted);
            let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
            let status = PodDisruptionBudgetStatus {
                current_healthy: healthy,
                desired_healthy: desired,
                expected_pods: expected,
                disruptions_allowed: allowed,
                disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
                observed_generation: budget.metadata.generation,
                conditions: budget.status.as_ref().and_then(|s| s.conditions.clone()),
            };
            let status = with_condition(status, allowed_condition(allowed, budget.metadata.generation));
            write_status(&context, &budget, status).await?;
            return Ok(match recheck {
                Some(at) => {
                    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::from_secs(1));
                    Action::requeue(wait.max(Duration::from_secs(1)))
                }
                None => Action::await_change(),
            });
        }
        Err(why) => {
            tracing::debug!(budget = %name, %namespace, %why, "failing safe");
            let old = budget.status.clone().unwrap_or_default();
            let status = PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                observed_generation: budget.metadata.generation,
                ..old
            };
            let condition = Condition {
                type_: CONDITION.to_string(),
                status: "False".to_string(),
                reason: "SyncFailed".to_string(),
                message: why,
                observed_generation: budget.metadata.generation,
                last_transition_time: Time(now),
            };
            with_condition(status, condition)
        }
    };
    write_status(&context, &budget, status).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// `expectedPods` and `desiredHealthy` (`getExpectedPodCount`); an error when
/// the replicas behind a percentage or `maxUnavailable` cannot be found.
async fn expected_pods(
    budget: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
    context: &Context,
) -> Result<(i32, i32), String> {
    let spec = budget.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = expected_scale(selected, context).await?;
        let unavailable = scaled(max_unavailable, expected)?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((i32::try_from(selected.len()).unwrap_or(i32::MAX), *n)),
        Some(percent @ IntOrString::String(_)) => {
            let expected = expected_scale(selected, context).await?;
            Ok((expected, scaled(percent, expected)?))
        }
        None => Ok((i32::try_from(selected.len()).unwrap_or(i32::MAX), 0)),
    }
}

/// A number as is, a percentage of `total` rounded up
/// (`intstr.GetScaledValueFromIntOrPercent(..., true)`).
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// The sum of the replicas of the selected pods' controllers, each counted once
/// (`getExpectedScale`). Pods without a controller are not counted.
async fn expected_scale(selected: &[Arc<Pod>], context: &Context) -> Result<i32, String> {
    let mut counted: HashSet<String> = HashSet::new();
    let mut total = 0i32;
    for pod in selected {
        let Some(owner) = pods::controller_of(&pod.metadata) else {
            continue;
        };
        if counted.contains(&owner.uid) {
            continue;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let Some((uid, replicas)) = scale_of(owner, &namespace, context).await else {
            return Err(format!(
                "found no controllers for pod {:?}",
                pod.metadata.name.clone().unwrap_or_default()
            ));
        };
        counted.insert(owner.uid.clone());
        if counted.insert(uid) {
            total = total.saturating_add(replicas);
        }
    }
    Ok(total)
}

/// The uid and replicas of the controller behind `owner`: a ReplicaSet's
/// Deployment when it has one, else the ReplicaSet, ReplicationController or
/// StatefulSet itself.
async fn scale_of(owner: &OwnerReference, namespace: &str, context: &Context) -> Option<(String, i32)> {
    let group = owner.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    fn key<K: kube::Resource<DynamicType = ()>>(name: &str, namespace: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(namespace)
    }
    match (group, owner.kind.as_str()) {
        ("apps" | "extensions", "ReplicaSet") => {
            let sets = context.informers.synced::<ReplicaSet>().await;
            let set = sets
                .store()
                .get(&key(&owner.name, namespace))
                .filter(|s| s.metadata.uid.as_deref() == Some(&owner.uid))?;
            if let Some(parent) = pods::controller_of(&set.metadata).filter(|p| p.kind == "Deployment") {
                let deployments = context.informers.synced::<Deployment>().await;
                let deployment = deployments
                    .store()
                    .get(&key(&parent.name, namespace))
                    .filter(|d| d.metadata.uid.as_deref() == Some(&parent.uid))?;
                let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                return Some((parent.uid.clone(), replicas));
            }
            Some((
                owner.uid.clone(),
                set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ))
        }
        ("", "ReplicationController") => {
            let controllers = context.informers.synced::<ReplicationController>().await;
            let rc = controllers
                .store()
                .get(&key(&owner.name, namespace))
                .filter(|r| r.metadata.uid.as_deref() == Some(&owner.uid))?;
            Some((
                owner.uid.clone(),
                rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ))
        }
        ("apps", "StatefulSet") => {
            let sets = context.informers.synced::<StatefulSet>().await;
            let set = sets
                .store()
                .get(&key(&owner.name, namespace))
                .filter(|s| s.metadata.uid.as_deref() == Some(&owner.uid))?;
            Some((
                owner.uid.clone(),
                set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ))
        }
        _ => None,
    }
}

/// The evictions still expected to delete their pod, and when to look again
/// (`buildDisruptedPodMap`).
fn disrupted_pods(
    budget: &PodDisruptionBudget,
    selected: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let listed = budget
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    for pod in selected {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if pods::is_deleting(pod) {
            continue;
        }
        let Some(at) = listed.get(&name) else { continue };
        let expires = at.0 + DELETION_TIMEOUT;
        if expires < now {
            tracing::info!(pod = %name, "an evicted pod was not deleted in time: it counts again");
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(name, at.clone());
    }
    (kept, recheck)
}

/// Ready pods that are neither being deleted nor just evicted.
fn current_healthy(selected: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    let healthy = selected
        .iter()
        .filter(|p| !pods::is_deleting(p) && pods::is_ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count();
    i32::try_from(healthy).unwrap_or(i32::MAX)
}

fn allowed_condition(allowed: i32, generation: Option<i64>) -> Condition {
    let (status, reason) = match allowed > 0 {
        true => ("True", "SufficientPods"),
        false => ("False", "InsufficientPods"),
    };
    Condition {
        type_: CONDITION.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: String::new(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// Sets the condition (`meta.SetStatusCondition`): its transition time moves
/// only when its status changes.
fn with_condition(mut status: PodDisruptionBudgetStatus, condition: Condition) -> PodDisruptionBudgetStatus {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(old) => {
            let transition = match old.status == condition.status {
                true => old.last_transition_time.clone(),
                false => condition.last_transition_time.clone(),
            };
            *old = Condition {
                last_transition_time: transition,
                ..condition
            };
        }
        None => conditions.push(condition),
    }
    status
}

async fn write_status(
    context: &Context,
    budget: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    if budget.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = budget.metadata.namespace.clone().unwrap_or_default();
    let name = budget.metadata.name.clone().unwrap_or_default();
    let mut next = budget.clone();
    next.status = Some(status);
    match Api::<PodDisruptionBudget>::namespaced(context.client.clone(), &namespace)
        .replace_status(&name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut value = json!({"metadata": {"name": name, "namespace": "ns"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10), Ok(1));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 10), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(4), 10), Ok(4));
        assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
    }

    #[test]
    fn healthy_pods_exclude_deleting_unready_and_just_evicted_ones() {
        let now: Timestamp = "2024-01-01T00:10:00Z".parse().unwrap();
        let selected = [
            pod("a", true, false),
            pod("b", true, false),
            pod("c", false, false),
            pod("d", true, true),
        ];
        let budget: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "pdb", "namespace": "ns"},
            "status": {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0,
                "disruptedPods": {"b": "2024-01-01T00:09:00Z", "a": "2024-01-01T00:01:00Z", "d": "2024-01-01T00:09:30Z"}}}))
        .unwrap();
        let (disrupted, recheck) = disrupted_pods(&budget, &selected, now);
        // `a`'s eviction expired, `d` is being deleted: only `b` is still expected to go.
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(recheck, Some("2024-01-01T00:11:00Z".parse().unwrap()));
        assert_eq!(current_healthy(&selected, &disrupted), 1);
    }

    #[test]
    fn the_condition_moves_only_on_change() {
        let status = with_condition(PodDisruptionBudgetStatus::default(), allowed_condition(1, Some(1)));
        let first = status.conditions.clone().unwrap()[0].clone();
        assert_eq!(
            (first.status.as_str(), first.reason.as_str()),
            ("True", "SufficientPods")
        );
        let mut again = allowed_condition(2, Some(1));
        again.last_transition_time = Time("2030-01-01T00:00:00Z".parse().unwrap());
        let same = with_condition(status.clone(), again);
        assert_eq!(
            same.conditions.unwrap()[0].last_transition_time,
            first.last_transition_time
        );
        let blocked = with_condition(status, allowed_condition(0, Some(1)));
        assert_eq!(blocked.conditions.unwrap()[0].reason, "InsufficientPods");
    }
}
