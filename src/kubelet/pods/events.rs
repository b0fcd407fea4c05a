//! The kubelet's events (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`,
//! `Unhealthy`, `FailedMount`, ...) as core/v1 Events with source `kubelet`, so that
//! `kubectl describe pod` and `kubectl events` show what the node did. Recording never
//! blocks a pod worker: events go through a bounded queue to one task that posts
//! them, and a repeat of the same event on the same object within ten minutes bumps
//! the existing event's count instead of creating another (the client-go
//! correlator's aggregation, simplified).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The object an event is about (always a pod here).
#[derive(Debug, Clone, Default)]
pub struct Object {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl Object {
    pub fn of(pod: &Pod) -> Object {
        Object {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resource_version: pod.metadata.resource_version.clone(),
        }
    }
}

/// One event waiting to be posted.
#[derive(Debug)]
pub struct Record {
    object: Object,
    field_path: Option<String>,
    type_: &'static str,
    reason: &'static str,
    message: String,
}

/// Cheap to clone; dropping events when the queue is full.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Record>>,
}

impl Recorder {
    /// A recorder and the receiving end for [`run`].
    pub fn new() -> (Recorder, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(1024);
        (Recorder { tx: Some(tx) }, rx)
    }

    /// A recorder that drops everything (unit tests).
    pub fn disabled() -> Recorder {
        Recorder { tx: None }
    }

    fn record(
        &self,
        object: &Object,
        container: Option<&str>,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let Some(tx) = &self.tx else { return };
        let _ = tx.try_send(Record {
            object: object.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            type_,
            reason,
            message,
        });
    }

    pub fn normal(&self, object: &Object, container: Option<&str>, reason: &'static str, message: impl Into<String>) {
        self.record(object, container, "Normal", reason, message.into());
    }

    pub fn warning(&self, object: &Object, container: Option<&str>, reason: &'static str, message: impl Into<String>) {
        self.record(object, container, "Warning", reason, message.into());
    }
}

/// What makes two events the same: object UID, field path, reason, message.
type Key = (String, Option<String>, &'static str, String);

/// Posts recorded events until shutdown.
pub async fn run(client: kube::Client, node: String, mut rx: mpsc::Receiver<Record>, shutdown: CancellationToken) {
    const AGGREGATE_FOR: Duration = Duration::from_secs(600);
    // (uid, field, reason, message) → (event name, namespace, count, first seen).
    let mut seen: HashMap<Key, (String, i32, Instant)> = HashMap::new();
    loop {
        let record = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.recv() => match r { Some(r) => r, None => return },
        };
        if seen.len() > 4096 {
            seen.retain(|_, (_, _, at)| at.elapsed() < AGGREGATE_FOR);
        }
        let api: Api<Event> = Api::namespaced(client.clone(), &record.object.namespace);
        let now = Timestamp::now();
        let key = (
            record.object.uid.clone(),
            record.field_path.clone(),
            record.reason,
            record.message.clone(),
        );
        if let Some((name, count, at)) = seen.get_mut(&key)
            && at.elapsed() < AGGREGATE_FOR
        {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => continue,
                Err(e) => tracing::debug!(error = %e, "updating event"),
            }
        }
        let name = format!("{}.{:016x}", record.object.name, rand::random::<u64>());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(record.object.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(record.object.name.clone()),
                namespace: Some(record.object.namespace.clone()),
                uid: Some(record.object.uid.clone()),
                resource_version: record.object.resource_version.clone(),
                field_path: record.field_path.clone(),
            },
            reason: Some(record.reason.to_string()),
            message: Some(record.message.clone()),
            type_: Some(record.type_.to_string()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                seen.insert(key, (name, 1, Instant::now()));
            }
            Err(e) => tracing::debug!(error = %e, reason = record.reason, "posting event"),
        }
    }
}
