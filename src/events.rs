//! The event recorder of the control-plane components (scheduler, controllers):
//! events.k8s.io/v1 `Event`s with the aggregation of Kubernetes' recorders. An event
//! that repeats one already sent (same regarding object, type, reason, note and
//! reporting component) within [`SERIES_WINDOW`] of its last occurrence updates that
//! Event instead of creating another: `series.count` and `series.lastObservedTime`,
//! and the core/v1 view's `count` and `lastTimestamp` (`deprecatedCount`,
//! `deprecatedLastTimestamp`), so `kubectl get events` shows `(x3 over 2m)`. Writes
//! for one series are serialised so that counts never go back. As client-go's event
//! broadcaster, [`Recorder::publish`] only queues the event: a few writers send it,
//! and an event that finds the queue full is dropped, so recording never holds up
//! the work it reports (a ReplicaSet's pod creations, say). The apiserver
//! expires events an hour after their last write (see `api::kinds::events`).
//!
//! kube-runtime's `Recorder` also makes series, but keys them by reason alone, so
//! "Scaled up ... to 2" would be counted as a repeat of "Scaled up ... to 1", and it
//! sweeps its whole cache on every event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use tokio::sync::Semaphore;

/// How long after its last occurrence a repeat still joins a series (client-go's
/// events recorder ends a series after 6 minutes without one).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_secs(6 * 60);
/// Events queued per recorder before new ones are dropped.
const QUEUE: usize = 4096;
/// Events of one recorder written at once.
const WRITERS: usize = 16;
/// Series remembered before ended ones are forgotten.
const SWEEP_AT: usize = 4096;

/// What makes two events the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// Namespace, kind, name, uid and field path of the object.
    regarding: [Option<String>; 5],
    type_: &'static str,
    reason: String,
    note: String,
}

/// The Event last written for a key.
#[derive(Debug, Default)]
struct Series {
    event: Option<Event>,
    last: Option<Timestamp>,
}

/// An events recorder reporting as one component; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    series: Arc<Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Series>>>>>,
    queued: Arc<Semaphore>,
    writers: Arc<Semaphore>,
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Recorder {
    /// A recorder for `controller` (`reportingController`, core `source.component`,
    /// and `reportingInstance` unless [`Recorder::instance`] says otherwise).
    pub fn new(client: kube::Client, controller: &str) -> Recorder {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: controller.to_string(),
            series: Arc::default(),
            queued: Arc::new(Semaphore::new(QUEUE)),
            writers: Arc::new(Semaphore::new(WRITERS)),
        }
    }

    /// The recorder reporting as `instance` of its controller.
    pub fn instance(mut self, instance: String) -> Recorder {
        self.instance = instance;
        self
    }

    /// Queues an event about `regarding` (its `action` is the reason, as
    /// kube-controller-manager's controllers record it) and returns; a failure to
    /// write it is only logged.
    pub async fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
        let Ok(queued) = self.queued.clone().try_acquire_owned() else {
            tracing::debug!(reason, "event queue full, event dropped");
            return;
        };
        let (recorder, regarding, reason) = (self.clone(), regarding.clone(), reason.to_string());
        tokio::spawn(async move {
            let _queued = queued;
            let Ok(_writing) = recorder.writers.acquire().await else {
                return;
            };
            recorder.write(&regarding, type_, &reason, &reason, note).await;
        });
    }

    /// Writes an event with an `action` of its own, and returns once it is written
    /// (or failed, which is only logged).
    pub async fn write(&self, regarding: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        if let Err(err) = self.record(regarding, type_, reason, action, note).await {
            tracing::debug!(error = %err, reason, "recording an event failed");
        }
    }

    async fn record(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = Key {
            regarding: [
                regarding.namespace.clone(),
                regarding.kind.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
                regarding.field_path.clone(),
            ],
            type_: type_name(type_),
            reason: reason.to_string(),
            note: note.clone(),
        };
        let entry = {
            let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
            if series.len() >= SWEEP_AT {
                sweep(&mut series, Timestamp::now());
            }
            series.entry(key).or_default().clone()
        };
        let mut entry = entry.lock().await;
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = entry
            .event
            .take()
            .filter(|_| entry.last.is_some_and(|last| now.duration_since(last) < SERIES_WINDOW));
        let written = match repeat {
            Some(mut event) => {
                let count = event.deprecated_count.unwrap_or(1).saturating_add(1);
                event.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                });
                event.deprecated_count = Some(count);
                event.deprecated_last_timestamp = Some(Time(now));
                let patch = serde_json::json!({
                    "series": event.series,
                    "deprecatedCount": count,
                    "deprecatedLastTimestamp": event.deprecated_last_timestamp,
                });
                let name = event.metadata.name.clone().unwrap_or_default();
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => event,
                    // Expired or deleted: start again.
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let event = self.new_event(regarding, type_, reason, action, note, now);
                        api.create(&PostParams::default(), &event).await?;
                        event
                    }
                    Err(err) => return Err(err),
                }
            }
            None => {
                let event = self.new_event(regarding, type_, reason, action, note, now);
                api.create(&PostParams::default(), &event).await?;
                event
            }
        };
        entry.event = Some(written);
        entry.last = Some(now);
        Ok(())
    }

    fn new_event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        now: Timestamp,
    ) -> Event {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(regarding.namespace.clone().unwrap_or_else(|| "default".into())),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_name(type_).to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            deprecated_source: Some(EventSource {
                component: Some(self.controller.clone()),
                host: None,
            }),
            deprecated_count: Some(1),
            deprecated_first_timestamp: Some(Time(now)),
            deprecated_last_timestamp: Some(Time(now)),
            ..Default::default()
        }
    }
}

/// Forgets the series that ended (not being written).
fn sweep(series: &mut HashMap<Key, Arc<tokio::sync::Mutex<Series>>>, now: Timestamp) {
    series.retain(|_, entry| match entry.try_lock() {
        Ok(entry) => entry.last.is_some_and(|last| now.duration_since(last) < SERIES_WINDOW),
        Err(_) => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(last: Option<Timestamp>) -> Arc<tokio::sync::Mutex<Series>> {
        Arc::new(tokio::sync::Mutex::new(Series { event: None, last }))
    }

    fn key(reason: &str) -> Key {
        Key {
            regarding: [None, Some("Pod".into()), Some(reason.into()), None, None],
            type_: "Normal",
            reason: reason.into(),
            note: String::new(),
        }
    }

    #[test]
    fn sweep_forgets_ended_series_only() {
        let now = Timestamp::now();
        let mut series = HashMap::new();
        series.insert(key("recent"), entry(Some(now - SignedDuration::from_secs(10))));
        series.insert(key("ended"), entry(Some(now - SERIES_WINDOW)));
        let busy = entry(None);
        let _held = busy.try_lock().map_err(|_| "locked");
        series.insert(key("busy"), busy.clone());
        sweep(&mut series, now);
        let mut left: Vec<_> = series.keys().map(|k| k.reason.clone()).collect();
        left.sort();
        assert_eq!(left, ["busy", "recent"]);
    }
}
