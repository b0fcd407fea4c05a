//! What the scheduler writes through the API: the `pods/binding` subresource that
//! assigns a pod to its node, the `PodScheduled=False` condition of a pod that fits
//! nowhere (patched only when it changes, as kube-scheduler's `updatePod`), and the
//! `Scheduled` / `FailedScheduling` events of the `default-scheduler` reporting
//! controller (events.k8s.io/v1, through the shared recorder of `crate::events`,
//! which folds repeats into a series). Events are sent from a bounded queue by a few workers
//! and dropped when it is full, like client-go's event broadcaster, so that they
//! never hold up binding.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::Resource;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{EventType, Recorder};

/// The scheduler's name, as pods ask for it and events report it.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// Events waiting to be sent before new ones are dropped.
const EVENT_QUEUE: usize = 4096;
/// Events sent at once.
const EVENT_WORKERS: usize = 16;

/// An event about a pod, not yet sent.
struct PodEvent {
    type_: EventType,
    reason: &'static str,
    action: &'static str,
    note: String,
    pod: ObjectReference,
}

/// The API side of scheduling.
#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    events: mpsc::Sender<PodEvent>,
}

/// Sends queued events until shutdown (or until every [`Writer`] is gone).
pub struct EventSender {
    recorder: Recorder,
    queue: mpsc::Receiver<PodEvent>,
}

fn recorder(client: kube::Client) -> Recorder {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let instance = match host.trim() {
        "" => SCHEDULER_NAME.to_string(),
        host => format!("{SCHEDULER_NAME}-{host}"),
    };
    Recorder::new(client, SCHEDULER_NAME).instance(instance)
}

impl Writer {
    pub fn new(client: kube::Client) -> (Writer, EventSender) {
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        let sender = EventSender {
            recorder: recorder(client.clone()),
            queue,
        };
        (Writer { client, events }, sender)
    }

    /// POSTs the pod's Binding to `node`.
    pub async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..Default::default()
            },
        };
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
            .await?;
        Ok(())
    }

    /// Sets `PodScheduled=False` with `reason` and `message` unless the pod already
    /// says exactly that.
    pub async fn mark_unschedulable(&self, pod: &Pod, reason: &str, message: &str) -> Result<(), kube::Error> {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message)
        }) {
            return Ok(());
        }
        let transition = match current {
            // The time of the last change of status, kept while the status stays False.
            Some(c) if c.status == "False" => c.last_transition_time.as_ref().map(|t| t.0.to_string()),
            _ => None,
        }
        .unwrap_or_else(|| {
            k8s_openapi::jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        });
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]}});
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await?;
        Ok(())
    }

    /// Queues an event about `pod`; dropped if too many are waiting.
    pub fn event(&self, pod: &Pod, type_: EventType, reason: &'static str, action: &'static str, note: String) {
        let event = PodEvent {
            type_,
            reason,
            action,
            note,
            pod: pod.object_ref(&()),
        };
        if self.events.try_send(event).is_err() {
            tracing::debug!(reason, "event queue full, event dropped");
        }
    }
}

impl EventSender {
    pub async fn run(self, shutdown: CancellationToken) {
        let recorder = Arc::new(self.recorder);
        let send = tokio_stream::wrappers::ReceiverStream::new(self.queue).for_each_concurrent(EVENT_WORKERS, |e| {
            let recorder = recorder.clone();
            async move { recorder.write(&e.pod, e.type_, e.reason, e.action, e.note).await }
        });
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = send => {}
        }
    }
}
