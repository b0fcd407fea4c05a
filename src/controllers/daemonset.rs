//! The DaemonSet controller (kube-controller-manager's `daemon` controller): one
//! pod on every node the template fits (node name, `nodeSelector`, required
//! node affinity, and taints against the template's tolerations plus the ones
//! every daemon pod gets), pinned to its node with a `matchFields`
//! `metadata.name` node affinity for the default scheduler to bind, as
//! upstream does. Updates roll out by `RollingUpdate` (`maxUnavailable`,
//! `maxSurge`) or `OnDelete`; templates are kept as ControllerRevisions, and
//! pods carry `controller-revision-hash`, so `kubectl rollout status`,
//! `history` and `undo` work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::history::{self, Wanted};
use super::pods::{self, Expectations, Written, controller_reference, is_available, is_ready};
use super::replicaset::Events;
use super::{Context, Error, drain, retry_after};

/// The pod label with the hash of the template revision the pod runs.
pub const REVISION_HASH: &str = "controller-revision-hash";
/// The deprecated pod label with the DaemonSet generation that made it.
const TEMPLATE_GENERATION: &str = "pod-template-generation";
/// Back-off before replacing a daemon pod that failed on a node again.
const FAILED_BACKOFF: Duration = Duration::from_secs(1);
const MAX_FAILED_BACKOFF: Duration = Duration::from_secs(15 * 60);

struct State {
    context: Context,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    written: Written,
    events: Events,
    /// Per (DaemonSet uid, node): failed pods replaced in a row and when to allow the next.
    failures: Mutex<HashMap<(String, String), (u32, Timestamp)>>,
}

pub async fn run(context: Context) {
    let daemonsets = context.informers.synced::<DaemonSet>().await;
    let nodes = context.informers.synced::<Node>().await;
    let pods = context.informers.synced::<Pod>().await;
    let revisions = context.informers.synced::<ControllerRevision>().await;
    let state = Arc::new(State {
        events: Events::new(context.client.clone(), "daemonset-controller"),
        context,
        nodes: nodes.store().clone(),
        pods: pods.store().clone(),
        revisions: revisions.store().clone(),
        expectations: Expectations::default(),
        written: Written::default(),
        failures: Mutex::new(HashMap::new()),
    });
    // Node changes that matter to placement (not heartbeats) sync every DaemonSet.
    let all = daemonsets.store().clone();
    let node_store = nodes.store().clone();
    let seen: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let node_changes = move |node: Arc<Node>| {
        let name = node.name_any();
        let gone = node_store.get(&ObjectRef::new(&name)).is_none();
        let fingerprint = placement_fingerprint(&node);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if gone {
            seen.remove(&name).is_some()
        } else {
            seen.insert(name, fingerprint) != Some(fingerprint)
        };
        let targets: Vec<ObjectRef<DaemonSet>> = if changed {
            all.state().iter().map(|ds| ObjectRef::from_obj(&**ds)).collect()
        } else {
            Vec::new()
        };
        targets
    };
    let controller = Controller::for_shared_stream(daemonsets.subscribe(), daemonsets.store().clone())
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        .watches_shared_stream(nodes.subscribe(), node_changes)
        .run(reconcile, |_, err, _| Action::requeue(retry_after(err)), state);
    drain(controller).await;
}

/// What about a node decides where daemon pods go: labels, taints,
/// schedulability and readiness (heartbeats alone change nothing).
fn placement_fingerprint(node: &Node) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node.metadata.labels.hash(&mut hasher);
    if let Some(spec) = &node.spec {
        spec.unschedulable.hash(&mut hasher);
        for taint in spec.taints.iter().flatten() {
            (&taint.key, &taint.value, &taint.effect).hash(&mut hasher);
        }
    }
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    ready.hash(&mut hasher);
    hasher.finish()
}

/// Tolerations every daemon pod gets (`util.AddOrUpdateDaemonPodTolerations`):
/// it stays on not-ready and unreachable nodes and lands on nodes under
/// pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let present = tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect));
        if !present {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Default::default()
            });
        }
    }
}

/// `v1helper.TolerationsTolerateTaint` for one toleration.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (value.and_then(number), values.first().and_then(|v| number(v))) else {
                return false;
            };
            if requirement.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// A node selector term: all of its label expressions and `metadata.name`
/// fields; a term with neither matches no node.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, node.metadata.name.as_deref()))
}

/// Whether `spec`'s `nodeSelector` and required node affinity admit `node`.
fn fits_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// (should run, should continue running) as `NodeShouldRunDaemonPod`: a
/// NoSchedule taint keeps new pods off, a NoExecute one also evicts.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) || !fits_affinity(spec, node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|t| t.effect == effect && !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    if untolerated("NoSchedule") {
        return (false, true);
    }
    (true, true)
}

/// The node a daemon pod is for: its `nodeName`, else the `metadata.name` of
/// its required node affinity (`util.GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|term| {
        term.match_fields.iter().flatten().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In" && r.values.as_ref().is_some_and(|v| v.len() == 1))
                .then(|| r.values.as_ref().and_then(|v| v.first().cloned()))
                .flatten()
        })
    })
}

/// Pins a pod to `node` by replacing its required node affinity terms with
/// `metadata.name In [node]` (`ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The template spec with the daemon tolerations, as placement sees it.
fn placement_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Option<Pod> {
    let template = &ds.spec.as_ref()?.template;
    let mut pod = pods::pod_from_template(template, controller_reference(ds)?);
    pod.metadata.generate_name = Some(format!("{}-", ds.metadata.name.as_deref()?));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH.to_string(), hash.to_string());
    if let Some(generation) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION.to_string(), generation.to_string());
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    add_daemon_tolerations(spec);
    pin_to_node(spec, node);
    Some(pod)
}

fn revision_hash(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

/// Oldest first, scheduled and running ones ahead (`podByCreationTimestampAndPhase`).
fn sort_pods(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let unscheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none();
        let not_running = pods::phase(p) != "Running";
        (
            unscheduled,
            not_running,
            p.metadata.creation_timestamp.clone(),
            p.name_any(),
        )
    });
}

/// An int-or-percent of `total`, rounded up.
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(text)) => match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) => i32::try_from((percent * i64::from(total) + 99).div_euclid(100)).unwrap_or(default),
            None => text.parse().unwrap_or(default),
        },
    }
}

/// What one sync decided.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Nodes to put a pod of the current revision on.
    create: Vec<String>,
    /// Pods to delete (by name).
    delete: Vec<String>,
    status: DaemonSetStatus,
    /// When a pod becomes available by `minReadySeconds` or a back-off ends.
    requeue: Option<Duration>,
}

/// Decides one sync (pure, for tests). `pods` are the DaemonSet's; `failures`
/// is the failed-pod back-off per node; `manage` is false while the cache lags.
fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
    failures: &HashMap<String, (u32, Timestamp)>,
    manage: bool,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let placement = placement_spec(ds);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    for list in by_node.values_mut() {
        sort_pods(list);
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let rolling_update = strategy.rolling_update.clone().unwrap_or_default();
    let surge_allowed = rolling && scaled(rolling_update.max_surge.as_ref(), 1, 0) > 0;

    let mut out = Plan::default();
    let mut delete: Vec<String> = Vec::new();
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    // Nodes where a pod should run, with the pods there (for the rolling update).
    let mut eligible: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
    let known: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    for node in nodes {
        let name = node.name_any();
        let (run, keep) = should_run(&placement, node);
        let here = by_node.get(&name).cloned().unwrap_or_default();
        let live: Vec<Arc<Pod>> = here.iter().filter(|p| !pods::is_deleting(p)).cloned().collect();
        // Status, from the oldest pod on the node.
        if run {
            status.desired_number_scheduled += 1;
            if let Some(pod) = here.first() {
                status.current_number_scheduled += 1;
                if is_ready(pod) {
                    status.number_ready += 1;
                    if is_available(pod, min_ready, now) {
                        available += 1;
                    } else if let Some(since) = pods::ready_since(pod) {
                        let at = since + SignedDuration::from_secs(i64::from(min_ready));
                        let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                        out.requeue = Some(out.requeue.map_or(wait, |r| r.min(wait)));
                    }
                }
                if revision_hash(pod) == Some(hash) {
                    updated += 1;
                }
            }
            eligible.push((name.clone(), here.clone()));
        } else if !here.is_empty() {
            status.number_misscheduled += 1;
        }
        if !manage {
            continue;
        }
        if run && here.is_empty() {
            let backoff = failures.get(&name).copied();
            match backoff {
                Some((_, until)) if until > now => {
                    let wait = Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO);
                    out.requeue = Some(out.requeue.map_or(wait, |r| r.min(wait)));
                }
                _ => out.create.push(name.clone()),
            }
        } else if keep {
            let mut running = Vec::new();
            for pod in &live {
                if pods::phase(pod) == "Failed" || pods::phase(pod) == "Succeeded" {
                    delete.push(pod.name_any());
                } else {
                    running.push(pod.clone());
                }
            }
            if !surge_allowed {
                // One pod per node: all but the oldest go.
                delete.extend(running.iter().skip(1).map(|p| p.name_any()));
            } else {
                // With surge, an old and a new pod may overlap while the new one
                // gets ready; anything else goes.
                let (mut oldest_new, mut oldest_old) = (None, None);
                for pod in &running {
                    let slot = if revision_hash(pod) == Some(hash) {
                        &mut oldest_new
                    } else {
                        &mut oldest_old
                    };
                    if slot.is_none() {
                        *slot = Some(pod.clone());
                    } else {
                        delete.push(pod.name_any());
                    }
                }
                if let (Some(new), Some(old)) = (&oldest_new, &oldest_old)
                    && (!is_ready(old) || is_ready(new))
                {
                    delete.push(old.name_any());
                }
            }
        } else {
            delete.extend(live.iter().map(|p| p.name_any()));
        }
    }
    if manage {
        // Pods for nodes that no longer exist.
        for (node, list) in &by_node {
            if !known.contains(node) {
                delete.extend(list.iter().filter(|p| !pods::is_deleting(p)).map(|p| p.name_any()));
            }
        }
        if rolling {
            let desired = status.desired_number_scheduled;
            let max_surge = scaled(rolling_update.max_surge.as_ref(), desired, 0).max(0);
            let mut max_unavailable = scaled(rolling_update.max_unavailable.as_ref(), desired, 1).max(0);
            if max_surge == 0 && max_unavailable == 0 {
                max_unavailable = 1;
            }
            rolling_step(
                &eligible,
                hash,
                now,
                min_ready,
                max_surge,
                max_unavailable,
                &mut delete,
                &mut out.create,
            );
        }
    }
    let mut seen = HashSet::new();
    delete.retain(|name| seen.insert(name.clone()));
    out.delete = delete;
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some((status.desired_number_scheduled - available).max(0));
    out.status = status;
    out
}

/// The pod of the current revision and the old one on a node, either may be missing.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// One step of a rolling update (`rollingUpdate`): replaces old pods within
/// `maxUnavailable` (deleting first) or `maxSurge` (creating first).
#[allow(clippy::too_many_arguments)]
fn rolling_step(
    eligible: &[(String, Vec<Arc<Pod>>)],
    hash: &str,
    now: Timestamp,
    min_ready: i32,
    max_surge: i32,
    max_unavailable: i32,
    delete: &mut Vec<String>,
    create: &mut Vec<String>,
) {
    // (new pod, old pod) per node, or None when the node has several of either.
    let split = |list: &[Arc<Pod>]| -> Option<NewAndOld> {
        let (mut new, mut old) = (None, None);
        for pod in list.iter().filter(|p| !pods::is_deleting(p)) {
            let slot = if revision_hash(pod) == Some(hash) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(pod.clone());
        }
        Some((new, old))
    };
    let available = |pod: &Pod| is_available(pod, min_ready, now);
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for (_, list) in eligible {
            match split(list) {
                None => unavailable += 1,
                Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if available(&old) {
                        candidates.push(old.name_any());
                    } else {
                        replace.push(old.name_any());
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        delete.extend(replace);
        delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surging = 0;
        let mut wanting = Vec::new();
        let mut candidates = Vec::new();
        for (node, list) in eligible {
            match split(list) {
                None => surging += 1,
                Some((_, None)) => {}
                Some((None, Some(old))) => {
                    if available(&old) {
                        candidates.push(node.clone());
                    } else {
                        wanting.push(node.clone());
                    }
                }
                Some((Some(new), Some(old))) => {
                    if available(&new) {
                        delete.push(old.name_any());
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
        for node in wanting.into_iter().chain(candidates.into_iter().take(room)) {
            if !create.contains(&node) {
                create.push(node);
            }
        }
    }
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let (Some(namespace), Some(uid), Some(spec)) = (ds.namespace(), ds.uid(), ds.spec.as_ref()) else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        state.expectations.forget(&uid);
        state.written.forget(&uid);
        return Ok(Action::await_change());
    }
    if state.written.is_stale(&*ds) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = ds.name_any();
    let client = state.context.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let revision_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);
    let ds_api: Api<DaemonSet> = Api::namespaced(client, &namespace);
    let selector = pods::selector(Some(&spec.selector));
    let owned: Vec<Arc<Pod>> = pods::owned_pods(&state.pods, &namespace, &uid)
        .into_iter()
        .filter(|p| pods::selects(selector.as_ref(), &p.metadata))
        .collect();

    // The revision of the current template.
    let revisions = history::owned(&state.revisions, &namespace, &uid);
    let mut collision_count = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let Some(owner) = controller_reference(&*ds) else {
        return Ok(Action::await_change());
    };
    let current = history::ensure(
        &revision_api,
        &revisions,
        Wanted::template(&name, owner, &ds.metadata, &spec.template, REVISION_HASH),
        &mut collision_count,
    )
    .await?;
    let hash = current
        .labels()
        .get(REVISION_HASH)
        .cloned()
        .unwrap_or_else(|| history::hash(&history::template_patch(&spec.template), collision_count));

    let nodes = state.nodes.state();
    let failures: HashMap<String, (u32, Timestamp)> = state
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|((owner, _), _)| *owner == uid)
        .map(|((_, node), value)| (node.clone(), *value))
        .collect();
    let manage = state.expectations.satisfied(&uid, &state.pods);
    let mut plan = plan(&ds, &nodes, &owned, &hash, now, &failures, manage);
    plan.status.collision_count = (collision_count > 0).then_some(collision_count);

    let regarding = ds.object_ref(&());
    for pod_name in &plan.delete {
        let Some(pod) = owned.iter().find(|p| p.name_any() == *pod_name) else {
            continue;
        };
        if pods::phase(pod) == "Failed" {
            // A node that keeps failing the pod gets it back after a growing delay.
            if let Some(node) = target_node(pod) {
                let mut failures = state.failures.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = failures.entry((uid.clone(), node)).or_insert((0, now));
                let delay = FAILED_BACKOFF
                    .saturating_mul(1u32.checked_shl(entry.0).unwrap_or(u32::MAX))
                    .min(MAX_FAILED_BACKOFF);
                *entry = (
                    entry.0.saturating_add(1),
                    now + SignedDuration::try_from(delay).unwrap_or_default(),
                );
            }
        }
        state.expectations.deleted(&uid, &**pod);
        match pod_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                let note = format!("Deleted pod: {pod_name}");
                state
                    .events
                    .publish(&regarding, EventType::Normal, "SuccessfulDelete", note)
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    for node in &plan.create {
        let Some(pod) = new_pod(&ds, node, &hash) else { break };
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                state.expectations.created(&uid, &created);
                let note = format!("Created pod: {}", created.name_any());
                state
                    .events
                    .publish(&regarding, EventType::Normal, "SuccessfulCreate", note)
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 403 => break,
            Err(err) => return Err(err.into()),
        }
    }
    // Pods that run well again end their node's back-off.
    state
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(owner, node), _| {
            *owner != uid
                || !owned
                    .iter()
                    .any(|p| target_node(p).as_ref() == Some(node) && is_ready(p))
        });

    let old_status = ds.status.clone().unwrap_or_default();
    let mut status = plan.status.clone();
    status.conditions = old_status.conditions.clone();
    if status != old_status {
        let mut updated = (*ds).clone();
        updated.status = Some(status);
        match ds_api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(written) => state.written.wrote(&written),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(err.into()),
        }
    }

    // History: keep what pods use and the newest `revisionHistoryLimit` others.
    let mut hashes: HashSet<&str> = owned.iter().filter_map(|p| revision_hash(p)).collect();
    hashes.insert(&hash);
    let revisions = history::owned(&state.revisions, &namespace, &uid);
    let live_names: HashSet<String> = revisions
        .iter()
        .filter(|r| {
            r.labels()
                .get(REVISION_HASH)
                .is_some_and(|h| hashes.contains(h.as_str()))
        })
        .map(|r| r.name_any())
        .collect();
    history::truncate(
        &revision_api,
        &revisions,
        &live_names,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;

    Ok(plan
        .requeue
        .map(|after| Action::requeue(after + Duration::from_millis(100)))
        .unwrap_or_else(Action::await_change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut value = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        json_patch::merge(&mut value, &extra);
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn daemonset(extra: Value) -> DaemonSet {
        let mut value = json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}},
        });
        json_patch::merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let mut pod = new_pod(&daemonset(json!({})), node, hash).unwrap();
        pod.metadata.name = Some(name.to_string());
        pod.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2024-01-01T00:00:00Z".parse().unwrap(),
        ));
        pod.status = serde_json::from_value(json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}))
        .unwrap();
        Arc::new(pod)
    }

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn placement_follows_selectors_affinity_and_taints() {
        let spec = placement_spec(&daemonset(json!({})));
        assert_eq!(should_run(&spec, &node("a", json!({}))), (true, true));
        let tainted = node(
            "b",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(should_run(&spec, &tainted), (false, true));
        let evicting = node(
            "c",
            json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&spec, &evicting), (false, false));
        // The default daemon tolerations: cordoned and not-ready nodes still run daemons.
        let cordoned = node(
            "d",
            json!({"spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&spec, &cordoned), (true, true));

        let picky = placement_spec(&daemonset(json!({"spec": {"template": {"spec": {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}})));
        assert!(!should_run(&picky, &node("e", json!({}))).0);
        assert!(
            !should_run(
                &picky,
                &node("e", json!({"metadata": {"labels": {"disk": "ssd", "cores": "2"}}}))
            )
            .0
        );
        let good = node("e", json!({"metadata": {"labels": {"disk": "ssd", "cores": "8"}}}));
        assert_eq!(should_run(&picky, &good), (true, true));
        let tainted_good = node(
            "f",
            json!({"metadata": {"labels": {"disk": "ssd", "cores": "8"}},
            "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&picky, &tainted_good), (true, true));
    }

    #[test]
    fn pods_are_pinned_to_their_node_with_daemon_tolerations() {
        let ds = daemonset(json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}}}));
        let pod = new_pod(&ds, "node-1", "abc").unwrap();
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        let spec = pod.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(
            terms[0].match_fields.as_ref().unwrap()[0].values,
            Some(vec!["node-1".to_string()])
        );
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);
        assert_eq!(pod.labels()[REVISION_HASH], "abc");
        assert_eq!(pod.labels()[TEMPLATE_GENERATION], "2");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
    }

    #[test]
    fn one_pod_per_eligible_node_and_status() {
        let ds = daemonset(json!({}));
        let nodes = vec![
            node("a", json!({})),
            node("b", json!({})),
            node("c", json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})),
        ];
        let p = plan(&ds, &nodes, &[], "h1", now(), &HashMap::new(), true);
        let mut create = p.create.clone();
        create.sort();
        assert_eq!(create, ["a", "b"]);
        assert_eq!(p.status.desired_number_scheduled, 2);
        // A pod on the tainted node stays (NoSchedule does not evict) but is misscheduled.
        let pods = vec![
            pod("pa", "a", "h1", true),
            pod("pc", "c", "h1", true),
            pod("pa2", "a", "h1", false),
        ];
        let p = plan(&ds, &nodes, &pods, "h1", now(), &HashMap::new(), true);
        assert_eq!(p.create, ["b"]);
        assert_eq!(p.delete, ["pa2"], "one pod per node");
        let s = &p.status;
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.number_misscheduled
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(
            (s.number_available, s.updated_number_scheduled, s.number_unavailable),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(s.observed_generation, Some(2));
        // While the cache lags nothing is created or deleted.
        let p = plan(&ds, &nodes, &pods, "h1", now(), &HashMap::new(), false);
        assert!(p.create.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn rolling_update_replaces_within_max_unavailable() {
        let ds = daemonset(json!({}));
        let nodes = vec![node("a", json!({})), node("b", json!({})), node("c", json!({}))];
        let old = vec![
            pod("pa", "a", "old", true),
            pod("pb", "b", "old", true),
            pod("pc", "c", "old", true),
        ];
        let p = plan(&ds, &nodes, &old, "new", now(), &HashMap::new(), true);
        assert_eq!(p.delete.len(), 1, "maxUnavailable 1");
        // Node a is being replaced (no pod): nothing more goes.
        let p = plan(&ds, &nodes, &old[1..], "new", now(), &HashMap::new(), true);
        assert_eq!(p.create, ["a"]);
        assert!(p.delete.is_empty());
        // A new pod that is ready frees the next.
        let mut next = vec![pod("na", "a", "new", true)];
        next.extend_from_slice(&old[1..]);
        let p = plan(&ds, &nodes, &next, "new", now(), &HashMap::new(), true);
        assert_eq!(p.delete.len(), 1);
        // OnDelete leaves old pods alone.
        let on_delete = daemonset(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
        let p = plan(&on_delete, &nodes, &old, "new", now(), &HashMap::new(), true);
        assert!(p.delete.is_empty() && p.create.is_empty());
    }

    #[test]
    fn rolling_update_with_surge_creates_first() {
        let ds =
            daemonset(json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}));
        let nodes = vec![node("a", json!({})), node("b", json!({}))];
        let old = vec![pod("pa", "a", "old", true), pod("pb", "b", "old", true)];
        let p = plan(&ds, &nodes, &old, "new", now(), &HashMap::new(), true);
        assert_eq!(p.create.len(), 1);
        assert!(p.delete.is_empty());
        // The surged pod is not ready: both stay, nothing more.
        let mut both = old.clone();
        both.push(pod("na", "a", "new", false));
        let p = plan(&ds, &nodes, &both, "new", now(), &HashMap::new(), true);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        // Ready: the old one on that node goes.
        let mut both = old.clone();
        both.push(pod("na", "a", "new", true));
        let p = plan(&ds, &nodes, &both, "new", now(), &HashMap::new(), true);
        assert_eq!(p.delete, ["pa"]);
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 3, 1), 1);
        assert_eq!(scaled(Some(&IntOrString::String("50%".into())), 3, 1), 2);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 3, 1), 2);
        assert_eq!(scaled(None, 3, 1), 1);
    }
}
