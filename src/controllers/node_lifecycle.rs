//! The node lifecycle controller, with the taint-based eviction and orphaned-pod
//! parts of kube-controller-manager that go with it (`nodelifecycle`,
//! `taint-eviction-controller`, and `podgc`'s orphan sweep):
//!
//! - **Health**: every `--node-monitor-period` (5 s) the cached nodes and their
//!   Leases in `kube-node-lease` are checked, with no API reads. A node whose
//!   Lease renewal and `Ready` heartbeat have not changed for
//!   `--node-monitor-grace-period` (`--node-startup-grace-period` before its
//!   first status) gets `Ready`, `MemoryPressure`, `DiskPressure` and
//!   `PIDPressure` set to `Unknown` ("Kubelet stopped posting node status.").
//!   Silence is measured on our clock from when a change was last seen, as
//!   upstream does, so clock skew between nodes and server does not matter.
//! - **Taints**: from each node's conditions, the `NoSchedule` taints
//!   (`not-ready`, `unreachable`, the pressure ones, `network-unavailable`,
//!   `unschedulable`) and the `NoExecute` `not-ready` / `unreachable` taints
//!   (stamped with `timeAdded`). When no node at all is ready the `NoExecute`
//!   taints are withheld and removed, as upstream's full-disruption mode does,
//!   so a control-plane or network outage does not evict every pod.
//! - **Pods**: pods on a node that is not ready are marked `Ready=False` at
//!   once, so Services stop sending them traffic. Pods on a node with
//!   `NoExecute` taints they do not tolerate are deleted (with a
//!   `DisruptionTarget` condition) at once, or when the shortest
//!   `tolerationSeconds` of the tolerations they use runs out after the taint
//!   was added. Pods bound to a node that no longer exists are failed and
//!   force-deleted after a quarantine as long as the grace period.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Context, Error, drain, pods};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";
/// The conditions a silent node's kubelet can no longer vouch for.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Condition type and status → the NoSchedule taint that stands for it.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
];

/// What the three loops share.
struct Shared {
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// No node is ready: hold back NoExecute taints (full disruption).
    all_down: AtomicBool,
    /// When a taint without `timeAdded` was first seen: (node, key) → time.
    taints_seen: Mutex<HashMap<(String, String), Timestamp>>,
    /// When a pod's node was first found missing: node → time.
    missing_since: Mutex<HashMap<String, Instant>>,
}

pub async fn run(context: Context) {
    let nodes = context.informers.synced::<Node>().await;
    let leases = context.informers.synced::<Lease>().await;
    let pods = context.informers.synced::<Pod>().await;
    let shared = Arc::new(Shared {
        nodes: nodes.store().clone(),
        pods: pods.store().clone(),
        all_down: AtomicBool::new(false),
        taints_seen: Mutex::new(HashMap::new()),
        missing_since: Mutex::new(HashMap::new()),
    });
    let (disruption_changed, retaint) = mpsc::channel::<()>(1);
    let taints = Controller::for_shared_stream(nodes.subscribe(), nodes.store().clone())
        .reconcile_all_on(tokio_stream::wrappers::ReceiverStream::new(retaint))
        .run(
            {
                let shared = shared.clone();
                move |node, context| reconcile_taints(node, context, shared.clone())
            },
            |_, err, _| Action::requeue(super::endpoints::retry_after(err)),
            Arc::new(context.clone()),
        );
    let watched = Mutex::new(HashMap::<String, NodeView>::new());
    let pod_loop = Controller::for_shared_stream(pods.subscribe(), pods.store().clone())
        .watches_shared_stream(nodes.subscribe(), {
            let shared = shared.clone();
            move |node: Arc<Node>| pods_to_recheck(&node, &shared, &watched)
        })
        .run(
            {
                let shared = shared.clone();
                move |pod, context| reconcile_pod(pod, context, shared.clone())
            },
            |_, err, _| Action::requeue(super::endpoints::retry_after(err)),
            Arc::new(context.clone()),
        );
    tokio::join!(
        monitor(context, leases.store().clone(), shared, disruption_changed),
        drain(taints),
        drain(pod_loop),
    );
}

// ----- health -----

/// What the monitor last saw of a node, and when it last changed.
struct Health {
    uid: Option<String>,
    probed: Instant,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The node's `Ready` status (`True`, `False`, `Unknown`), if it has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// Checks node health every monitor period from the caches; never lists.
async fn monitor(context: Context, leases: Store<Lease>, shared: Arc<Shared>, disruption_changed: mpsc::Sender<()>) {
    let settings = context.settings.clone();
    let mut health: HashMap<String, Health> = HashMap::new();
    let mut ticks = tokio::time::interval(settings.node_monitor_period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let api: Api<Node> = Api::all(context.client.clone());
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let nodes = shared.nodes.state();
        let names: std::collections::HashSet<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        health.retain(|name, _| names.contains(name.as_str()));
        let (mut total, mut ready) = (0usize, 0usize);
        for node in &nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let entry = health.entry(name.clone()).or_insert_with(|| Health {
                uid: node.metadata.uid.clone(),
                probed: now,
                heartbeat: None,
                renewed: None,
            });
            if entry.uid != node.metadata.uid {
                *entry = Health {
                    uid: node.metadata.uid.clone(),
                    probed: now,
                    heartbeat: None,
                    renewed: None,
                };
            }
            let heartbeat = condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
            if heartbeat != entry.heartbeat {
                entry.heartbeat = heartbeat;
                entry.probed = now;
            }
            let renewed = leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
                .and_then(|lease| lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
            if renewed != entry.renewed {
                entry.renewed = renewed;
                entry.probed = now;
            }
            let grace = match condition(node, "Ready") {
                Some(_) => settings.node_monitor_grace_period,
                None => settings.node_startup_grace_period,
            };
            let mut status = ready_status(node).unwrap_or("Unknown").to_string();
            if now.duration_since(entry.probed) > grace
                && let Some(unknown) = marked_unknown(node)
            {
                match api.replace_status(&name, &PostParams::default(), &unknown).await {
                    Ok(_) => {
                        tracing::info!(node = %name, "node stopped posting status: marked Unknown");
                        status = "Unknown".to_string();
                    }
                    // Conflicts and the like: the next period tries again.
                    Err(err) => tracing::debug!(node = %name, error = %err, "marking node Unknown failed"),
                }
            }
            total += 1;
            ready += usize::from(status == "True");
        }
        let all_down = total > 0 && ready == 0;
        if shared.all_down.swap(all_down, Ordering::SeqCst) != all_down {
            match all_down {
                true => tracing::warn!("no node is ready: holding back NoExecute taints (full disruption)"),
                false => tracing::info!("a node is ready again: NoExecute taints apply"),
            }
            let _ = disruption_changed.try_send(());
        }
    }
}

/// The node with the kubelet's conditions set to `Unknown`, or `None` when they
/// already are.
pub fn marked_unknown(node: &Node) -> Option<Node> {
    let mut node = node.clone();
    let now = Time(Timestamp::now());
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".to_string(),
                    reason: Some("NodeStatusNeverUpdated".to_string()),
                    message: Some("Kubelet never posted node status.".to_string()),
                    last_heartbeat_time: Some(node_creation(&node.metadata)),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".to_string();
                c.reason = Some("NodeStatusUnknown".to_string());
                c.message = Some("Kubelet stopped posting node status.".to_string());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(node)
}

/// The current time as the API writes it (whole seconds).
fn now() -> serde_json::Value {
    serde_json::to_value(pods::now()).unwrap_or_default()
}

fn node_creation(meta: &kube::api::ObjectMeta) -> Time {
    meta.creation_timestamp.clone().unwrap_or(Time(Timestamp::now()))
}

// ----- taints -----

/// The taints the node should carry given its conditions; other taints are kept.
pub fn desired_taints(node: &Node, all_down: bool) -> Vec<Taint> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let managed = |t: &Taint| match t.effect.as_str() {
        NO_SCHEDULE => t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, key)| t.key == *key),
        NO_EXECUTE => t.key == NOT_READY || t.key == UNREACHABLE,
        _ => false,
    };
    let mut wanted: Vec<(&str, &str)> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, status, _)| condition(node, type_).is_some_and(|c| c.status == *status))
        .map(|(_, _, key)| (*key, NO_SCHEDULE))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        wanted.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    if !all_down {
        match ready_status(node) {
            Some("False") => wanted.push((NOT_READY, NO_EXECUTE)),
            Some("Unknown") => wanted.push((UNREACHABLE, NO_EXECUTE)),
            _ => {}
        }
    }
    let mut taints: Vec<Taint> = current
        .into_iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                time_added: (effect == NO_EXECUTE).then(|| Time(Timestamp::now())),
            });
        }
    }
    taints
}

async fn reconcile_taints(node: Arc<Node>, context: Arc<Context>, shared: Arc<Shared>) -> Result<Action, Error> {
    let taints = desired_taints(&node, shared.all_down.load(Ordering::SeqCst));
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if taints == current {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut next = (*node).clone();
    next.spec.get_or_insert_with(Default::default).taints = (!taints.is_empty()).then_some(taints);
    match Api::<Node>::all(context.client.clone())
        .replace(&name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}

// ----- pods -----

/// What about a node decides its pods' fate.
#[derive(Debug, Clone, PartialEq)]
struct NodeView {
    exists: bool,
    ready: Option<String>,
    no_execute: Vec<(String, Option<String>)>,
}

/// The pods on a node whose readiness, NoExecute taints or existence changed.
fn pods_to_recheck(node: &Node, shared: &Shared, watched: &Mutex<HashMap<String, NodeView>>) -> Vec<ObjectRef<Pod>> {
    let Some(name) = node.metadata.name.clone() else {
        return Vec::new();
    };
    let exists = shared.nodes.get(&ObjectRef::from_obj(node)).is_some();
    let view = NodeView {
        exists,
        ready: ready_status(node).map(str::to_string),
        no_execute: no_execute_taints(node)
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
    };
    {
        let mut watched = watched.lock().unwrap_or_else(PoisonError::into_inner);
        let before = match exists {
            true => watched.insert(name.clone(), view.clone()),
            false => watched.remove(&name),
        };
        if before.as_ref() == Some(&view) {
            return Vec::new();
        }
    }
    if exists {
        shared
            .missing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
    }
    shared
        .pods
        .state()
        .iter()
        .filter(|pod| node_of(pod) == Some(name.as_str()))
        .map(|pod| ObjectRef::from_obj(&**pod))
        .collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect()
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

async fn reconcile_pod(pod: Arc<Pod>, context: Arc<Context>, shared: Arc<Shared>) -> Result<Action, Error> {
    let Some(node_name) = node_of(&pod).map(str::to_string) else {
        return Ok(Action::await_change());
    };
    if pods::is_terminal(&pod) && pods::is_deleting(&pod) {
        return Ok(Action::await_change());
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let Some(node) = shared.nodes.get(&ObjectRef::new(&node_name)) else {
        return orphaned(&pod, &node_name, &context, &shared, &api).await;
    };
    if pods::is_terminal(&pod) {
        return Ok(Action::await_change());
    }
    // Not ready node: the pod cannot be trusted to serve (`MarkPodsNotReady`).
    if ready_status(&node).is_some_and(|s| s != "True")
        && pod_condition(&pod, "Ready").is_some_and(|c| c.status != "False")
    {
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": now()}]}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => tracing::debug!(pod = %name, %namespace, node = %node_name, "marked not ready"),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err.into()),
        }
    }
    if pods::is_deleting(&pod) {
        return Ok(Action::await_change());
    }
    let taints = no_execute_taints(&node);
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let Some(deadline) = eviction_time(&taints, &tolerations, |taint| {
        taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(|| {
            *shared
                .taints_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry((node_name.clone(), taint.key.clone()))
                .or_insert_with(Timestamp::now)
        })
    }) else {
        return Ok(Action::await_change());
    };
    let wait = deadline.duration_since(Timestamp::now());
    if wait > SignedDuration::ZERO {
        let wait = Duration::try_from(wait).unwrap_or(Duration::from_secs(1));
        return Ok(Action::requeue(wait + Duration::from_millis(50)));
    }
    tracing::info!(pod = %name, %namespace, node = %node_name, "evicting pod: NoExecute taint not tolerated");
    let patch = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": now()}]}});
    delete_with(&api, &name, &patch, DeleteParams::default()).await
}

/// When a pod on a node with these NoExecute taints must go (upstream's
/// taint manager): at once if one is not tolerated, never if the tolerations
/// used have no `tolerationSeconds`, else the shortest of them after the taint
/// was added.
pub fn eviction_time(
    taints: &[Taint],
    tolerations: &[Toleration],
    added: impl Fn(&Taint) -> Timestamp,
) -> Option<Timestamp> {
    let mut deadline: Option<Timestamp> = None;
    for taint in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(Timestamp::UNIX_EPOCH);
        };
        if let Some(seconds) = toleration.toleration_seconds {
            let at = added(taint) + SignedDuration::from_secs(seconds.max(0));
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline
}

/// Whether a toleration tolerates a taint (`Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// A pod bound to a node that does not exist (PodGC's orphan sweep): after a
/// quarantine (and a check with the API, not just the cache) it is failed and
/// deleted at once.
async fn orphaned(
    pod: &Pod,
    node_name: &str,
    context: &Context,
    shared: &Shared,
    api: &Api<Pod>,
) -> Result<Action, Error> {
    let quarantine = context.settings.node_monitor_grace_period;
    let since = *shared
        .missing_since
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(node_name.to_string())
        .or_insert_with(Instant::now);
    if since.elapsed() < quarantine {
        return Ok(Action::requeue(
            quarantine - since.elapsed() + Duration::from_millis(50),
        ));
    }
    if Api::<Node>::all(context.client.clone())
        .get_opt(node_name)
        .await?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    tracing::info!(pod = %name, node = %node_name, "deleting pod of a node that no longer exists");
    let mut status = json!({"conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists",
        "lastTransitionTime": now()}]});
    if !pods::is_terminal(pod) {
        status["phase"] = json!("Failed");
    }
    delete_with(
        api,
        &name,
        &json!({ "status": status }),
        DeleteParams::default().grace_period(0),
    )
    .await
}

/// Records why (a status patch) and deletes the pod.
async fn delete_with(
    api: &Api<Pod>,
    name: &str,
    status: &serde_json::Value,
    params: DeleteParams,
) -> Result<Action, Error> {
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(err) => return Err(err.into()),
    }
    match api.delete(name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        let mut keys: Vec<String> = taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        keys.sort();
        keys
    }

    #[test]
    fn silent_nodes_become_unknown_once() {
        let n = node(serde_json::json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}}));
        let unknown = marked_unknown(&n).unwrap();
        let ready = condition(&unknown, "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(
            ready.last_heartbeat_time.as_ref().unwrap().0.to_string(),
            "2024-01-01T00:00:00Z"
        );
        let memory = condition(&unknown, "MemoryPressure").unwrap();
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert!(marked_unknown(&unknown).is_none(), "already unknown");
    }

    #[test]
    fn taints_follow_conditions_and_keep_foreign_ones() {
        let unknown = node(serde_json::json!({"metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [{"key": "user", "effect": "NoSchedule"},
                {"key": NOT_READY, "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"},
                {"type": "DiskPressure", "status": "True"}]}}));
        let taints = desired_taints(&unknown, false);
        assert_eq!(
            keys(&taints),
            [
                "node.kubernetes.io/disk-pressure:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
                "user:NoSchedule"
            ]
        );
        let no_execute = taints.iter().find(|t| t.effect == NO_EXECUTE).unwrap();
        assert!(no_execute.time_added.is_some());
        // Full disruption: no NoExecute taints.
        assert!(desired_taints(&unknown, true).iter().all(|t| t.effect != NO_EXECUTE));
        let ready = node(serde_json::json!({"metadata": {"name": "n"},
            "spec": {"taints": [{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": UNREACHABLE, "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(desired_taints(&ready, false).is_empty());
    }

    #[test]
    fn evictions_wait_for_the_shortest_toleration() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            value: None,
            time_added: None,
        };
        let toleration = |key: &str, seconds: Option<i64>| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        };
        let added = |_: &Taint| at("2024-01-01T00:00:00Z");
        let taints = std::slice::from_ref(&taint);
        assert_eq!(eviction_time(taints, &[], added), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(
            eviction_time(taints, &[toleration(UNREACHABLE, Some(300))], added),
            Some(at("2024-01-01T00:05:00Z"))
        );
        assert_eq!(eviction_time(taints, &[toleration(UNREACHABLE, None)], added), None);
        assert_eq!(
            eviction_time(taints, &[toleration(NOT_READY, Some(1))], added),
            Some(Timestamp::UNIX_EPOCH),
            "a toleration for another taint does not help"
        );
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&everything, &taint));
        let other_value = Toleration {
            key: Some(UNREACHABLE.into()),
            value: Some("x".into()),
            ..Default::default()
        };
        assert!(!tolerates(&other_value, &taint));
    }
}
