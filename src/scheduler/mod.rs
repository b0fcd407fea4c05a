//! The scheduler: kube-scheduler's default profile as one tokio task in the server.
//! It takes pods that ask for `default-scheduler` and have no node from the shared
//! Pod informer, picks a node for each (filters in [`filter`], scores in [`score`],
//! against the incremental cluster view of [`cache`]) and binds it through the
//! `pods/binding` subresource ([`bind`]), with several bindings in flight at once.
//! A pod that fits nowhere gets `PodScheduled=False` (reason `Unschedulable`) and a
//! `FailedScheduling` event worded as kube-scheduler words them, and waits in the
//! [`queue`] until a node or pod changes; a bound pod gets a `Scheduled` event.
//!
//! Everything runs off informer events: no polling, no periodic work, so an idle
//! cluster costs the scheduler no CPU (beyond renewing its leader Lease: with
//! several servers on one datastore, only the holder of `kube-scheduler` schedules).
//! All writes go through the in-process API client with the scheduler's identity
//! (`system:kube-scheduler`).
//!
//! Not done (as kube-scheduler does): preemption (the failure message says so the
//! way kube-scheduler does when it finds no victims), volume-related filters,
//! ScheduleAnyway topology spreading and image locality scoring.

mod bind;
mod cache;
mod filter;
mod labels;
mod pod;
mod queue;
mod resources;
mod score;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::informer::Informers;
pub use bind::SCHEDULER_NAME;
use cache::{Cache, pod_key};
use pod::PodInfo;
use queue::Queue;

/// Bindings in flight at once (the store commits concurrent writes together).
const BINDS_IN_FLIGHT: usize = 256;
/// Status patches of unschedulable pods in flight at once.
const STATUS_WRITES_IN_FLIGHT: usize = 8;
/// Informer changes taken in before scheduling more pods.
const CHANGES_PER_TURN: usize = 512;
/// Pods scheduled before looking at informer changes again.
const PODS_PER_TURN: usize = 128;
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest note of an event (events.k8s.io/v1 allows 1 kB).
const NOTE_LIMIT: usize = 1024;

/// The result of a binding request.
enum Outcome {
    Bound { key: String },
    Failed { key: String, uid: String, retry: bool },
}

/// Runs the scheduler while this server holds the `kube-system/kube-scheduler`
/// Lease (`identity` is its holder identity), until shutdown.
pub async fn run(client: kube::Client, informers: Arc<Informers>, identity: String, shutdown: CancellationToken) {
    let election = crate::leader::Config::new("kube-scheduler", &identity);
    crate::leader::run(client.clone(), election, shutdown, |leading| {
        schedule(client.clone(), informers.clone(), leading)
    })
    .await;
}

/// Schedules pods until `shutdown` (or the loss of leadership).
async fn schedule(client: kube::Client, informers: Arc<Informers>, shutdown: CancellationToken) {
    let synced = async {
        tokio::join!(
            informers.synced::<Node>(),
            informers.synced::<Pod>(),
            informers.synced::<Namespace>()
        )
    };
    let (nodes, pods, namespaces) = tokio::select! {
        _ = shutdown.cancelled() => return,
        informers = synced => informers,
    };
    let (writer, events) = bind::Writer::new(client);
    let tasks = TaskTracker::new();
    tasks.spawn(events.run(shutdown.clone()));
    let (results, outcomes) = mpsc::unbounded_channel();
    let scheduler = Scheduler {
        cache: Cache::default(),
        queue: Queue::default(),
        pods: pods.store().clone(),
        nodes: nodes.store().clone(),
        namespaces: namespaces.store().clone(),
        writer,
        tasks: tasks.clone(),
        binds: Arc::new(Semaphore::new(BINDS_IN_FLIGHT)),
        status_writes: Arc::new(Semaphore::new(STATUS_WRITES_IN_FLIGHT)),
        results,
        next_start: 0,
        burst: None,
    };
    tracing::info!("scheduler started");
    scheduler
        .run(nodes.subscribe(), pods.subscribe(), outcomes, shutdown)
        .await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
        tracing::warn!("scheduler requests still in flight at shutdown");
    }
}

struct Scheduler {
    cache: Cache,
    queue: Queue,
    pods: Store<Pod>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    writer: bind::Writer,
    tasks: TaskTracker,
    binds: Arc<Semaphore>,
    status_writes: Arc<Semaphore>,
    results: mpsc::UnboundedSender<Outcome>,
    /// The node slot the next search starts at.
    next_start: usize,
    /// Since when pods have been scheduled without a pause, how many, and the time
    /// spent deciding (logged at debug level when the queue runs dry).
    burst: Option<(Instant, usize, Duration)>,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// `note` cut to the events API's limit, as kube-scheduler's `truncateMessage`.
fn truncate(note: String) -> String {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

impl Scheduler {
    async fn run(
        mut self,
        node_changes: impl Stream<Item = Arc<Node>>,
        pod_changes: impl Stream<Item = Arc<Pod>>,
        mut outcomes: mpsc::UnboundedReceiver<Outcome>,
        shutdown: CancellationToken,
    ) {
        let mut node_changes = pin!(node_changes);
        let mut pod_changes = pin!(pod_changes);
        loop {
            // Take in the changes already there, then schedule while bindings can start.
            for _ in 0..CHANGES_PER_TURN {
                let mut any = false;
                if let Some(Some(node)) = node_changes.next().now_or_never() {
                    self.on_node(&node);
                    any = true;
                }
                if let Some(Some(pod)) = pod_changes.next().now_or_never() {
                    self.on_pod(&pod);
                    any = true;
                }
                while let Ok(outcome) = outcomes.try_recv() {
                    self.on_outcome(outcome);
                    any = true;
                }
                if !any {
                    break;
                }
            }
            self.queue.flush(Instant::now());
            let mut scheduled = 0;
            while scheduled < PODS_PER_TURN && self.queue.has_active() {
                let Ok(permit) = self.binds.clone().try_acquire_owned() else {
                    break;
                };
                self.schedule_one(permit);
                scheduled += 1;
            }
            if scheduled > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            if let Some((since, pods, deciding)) = self.burst.take_if(|_| !self.queue.has_active()) {
                tracing::debug!(
                    pods,
                    elapsed_ms = since.elapsed().as_millis() as u64,
                    deciding_ms = deciding.as_millis() as u64,
                    nodes = self.cache.node_count(),
                    "scheduling burst done"
                );
            }
            let deadline = self.queue.next_deadline();
            let waiting = self.queue.has_active();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(node) = node_changes.next() => self.on_node(&node),
                Some(pod) = pod_changes.next() => self.on_pod(&pod),
                Some(outcome) = outcomes.recv() => self.on_outcome(outcome),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                // A binding finished while pods wait for a slot.
                _ = self.binds.clone().acquire_owned(), if waiting => {}
            }
        }
    }

    fn on_node(&mut self, changed: &Node) {
        let name = changed.metadata.name.clone().unwrap_or_default();
        match self.nodes.get(&ObjectRef::new(&name)) {
            None => self.cache.remove_node(&name),
            Some(node) => {
                if self.cache.upsert_node(node) {
                    self.queue.move_all(Instant::now());
                }
            }
        }
    }

    /// Brings the cache and the queue in line with the informer's current copy of
    /// the changed pod (which may be newer than the change itself, or gone).
    fn on_pod(&mut self, changed: &Pod) {
        let namespace = changed.metadata.namespace.as_deref().unwrap_or_default();
        let name = changed.metadata.name.as_deref().unwrap_or_default();
        let key = pod_key(namespace, name);
        let current = self.pods.get(&ObjectRef::new(name).within(namespace));
        self.sync_pod(&key, current);
    }

    fn sync_pod(&mut self, key: &str, current: Option<Arc<Pod>>) {
        let now = Instant::now();
        let Some(pod) = current else {
            if self.cache.remove_pod(key) {
                self.queue.move_all(now);
            }
            self.queue.remove(key);
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.cache.pod(key).is_some_and(|p| p.uid != uid) {
            // Deleted and created again under the same name.
            self.cache.remove_pod(key);
            self.queue.move_all(now);
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(node) = node {
            self.queue.remove(key);
            if is_terminal(&pod) {
                if self.cache.remove_pod(key) {
                    self.queue.move_all(now);
                }
                return;
            }
            let news = self.cache.add_pod(key, Arc::new(PodInfo::new(pod)), &node, false);
            if news {
                // Its node now holds one more pod: only pods waiting for company can gain.
                self.queue.move_waiting_for_pods(now);
            }
            return;
        }
        if self.cache.pod(key).is_some_and(|p| p.assumed) {
            // Being bound; the informer has not caught up yet.
            return;
        }
        let spec = pod.spec.as_ref();
        let ours = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(SCHEDULER_NAME) == SCHEDULER_NAME;
        let gated = spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if !ours || gated || is_terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(key);
            return;
        }
        self.queue.add(key, pod, now);
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let now = Instant::now();
        match outcome {
            Outcome::Bound { key } => self.queue.done(&key),
            Outcome::Failed { key, uid, retry } => {
                if self.cache.pod(&key).is_some_and(|p| p.assumed && p.uid == uid) {
                    self.cache.remove_pod(&key);
                    self.queue.move_all(now);
                }
                if retry {
                    self.queue.retry(&key, now);
                } else {
                    // Gone or bound elsewhere: the informer has the truth.
                    self.queue.remove(&key);
                    let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                    let current = self.pods.get(&ObjectRef::new(name).within(namespace));
                    self.sync_pod(&key, current);
                }
            }
        }
    }

    /// Schedules the next pod of the active queue.
    fn schedule_one(&mut self, permit: OwnedSemaphorePermit) {
        let now = Instant::now();
        self.decide(permit, now);
        let burst = self.burst.get_or_insert((now, 0, Duration::ZERO));
        burst.1 += 1;
        burst.2 += now.elapsed();
    }

    fn decide(&mut self, permit: OwnedSemaphorePermit, now: Instant) {
        let Some((key, pod)) = self.queue.pop(now) else {
            return;
        };
        if self.cache.node_count() == 0 {
            self.queue.unschedulable(&key, now);
            self.report_failure(pod, "SchedulerError", "no nodes available to schedule pods".to_string());
            return;
        }
        let info = PodInfo::new(pod.clone());
        let namespaces = self.namespaces.clone();
        let namespace_labels = move |ns: &str| {
            namespaces
                .get(&ObjectRef::new(ns))
                .and_then(|n| n.metadata.labels.clone())
        };
        let chosen = match filter::find_feasible(&self.cache, &info, &mut self.next_start, &namespace_labels) {
            Ok(feasible) => score::pick(&self.cache, &info, &feasible, &namespace_labels),
            Err(fit) => {
                self.queue.unschedulable(&key, now);
                self.report_failure(pod, "Unschedulable", fit.message());
                return;
            }
        };
        let Some(node) = chosen.and_then(|i| self.cache.node(i)).map(|n| n.name.to_string()) else {
            self.queue.retry(&key, now);
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.cache.add_pod(&key, Arc::new(info), &node, true);
        let writer = self.writer.clone();
        let results = self.results.clone();
        self.tasks.spawn(async move {
            let outcome = match writer.bind(&pod, &node).await {
                Ok(()) => {
                    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                    let name = pod.metadata.name.as_deref().unwrap_or_default();
                    let note = format!("Successfully assigned {namespace}/{name} to {node}");
                    writer.event(&pod, EventType::Normal, "Scheduled", "Binding", note);
                    Outcome::Bound { key }
                }
                Err(err) => {
                    let status = match &err {
                        kube::Error::Api(status) => status.code,
                        _ => 0,
                    };
                    let retry = !matches!(status, 404 | 409);
                    if retry {
                        tracing::debug!(pod = key, node, error = %err, "binding failed");
                        writer.event(
                            &pod,
                            EventType::Warning,
                            "FailedScheduling",
                            "Scheduling",
                            truncate(format!("Binding rejected: {err}")),
                        );
                    }
                    Outcome::Failed { key, uid, retry }
                }
            };
            drop(permit);
            let _ = results.send(outcome);
        });
    }

    /// Records why the pod was not scheduled: a FailedScheduling event and the
    /// PodScheduled condition.
    fn report_failure(&self, pod: Arc<Pod>, reason: &'static str, message: String) {
        self.writer.event(
            &pod,
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            truncate(message.clone()),
        );
        let writer = self.writer.clone();
        let slots = self.status_writes.clone();
        self.tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            if let Err(err) = writer.mark_unschedulable(&pod, reason, &message).await {
                tracing::debug!(pod = pod.metadata.name.as_deref().unwrap_or_default(), error = %err,
                    "cannot set PodScheduled");
            }
        });
    }
}
