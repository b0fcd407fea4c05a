//! Events have one storage and two APIs, as in kube-apiserver: objects are stored
//! as core/v1 `Event`s under `/registry/events/`, and `events.k8s.io/v1` serves
//! the same objects converted field by field (`involvedObject` ⇄ `regarding`,
//! `message` ⇄ `note`, `source` ⇄ `deprecatedSource`, ...). So an event recorded
//! by kube-runtime's `Recorder` (events.k8s.io/v1) shows in `kubectl describe`
//! and `kubectl get events` (core/v1), and the other way round. Events expire an
//! hour after their last write (kube-apiserver's `--event-ttl`).

use serde_json::{Map, Value};

/// How long an event lives after its last write.
pub const TTL_SECONDS: i64 = 3600;

/// `(core/v1 field, events.k8s.io/v1 field)` pairs that only differ in name.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether objects of this resource are stored as core/v1 events but served otherwise.
pub fn converts(group: &str, resource: &str) -> bool {
    group == "events.k8s.io" && resource == "events"
}

/// Whether objects of this resource are events (in either API) and expire.
pub fn expires(group: &str, resource: &str) -> bool {
    resource == "events" && (group.is_empty() || group == "events.k8s.io")
}

/// An events.k8s.io/v1 Event as stored: a core/v1 Event.
pub fn to_core(event: Value) -> Value {
    rename(event, "v1", |(core, new)| (new, core))
}

/// A stored core/v1 Event as events.k8s.io/v1 serves it.
pub fn from_core(event: Value) -> Value {
    rename(event, "events.k8s.io/v1", |pair| pair)
}

fn rename(
    event: Value,
    api_version: &str,
    direction: fn((&'static str, &'static str)) -> (&'static str, &'static str),
) -> Value {
    let Value::Object(mut fields) = event else {
        return event;
    };
    let mut out = Map::with_capacity(fields.len());
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    for &pair in RENAMED {
        let (from, to) = direction(pair);
        if let Some(value) = fields.remove(from) {
            // Zero values the other API leaves out (core/v1 count 0, null times).
            if !value.is_null() && value != 0 {
                out.insert(to.into(), value);
            }
        }
    }
    fields.remove("apiVersion");
    for (key, value) in fields {
        out.entry(key).or_insert(value);
    }
    out.into_iter().collect::<Map<_, _>>().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_and_events_v1_round_trip() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Scheduled", "message": "Successfully assigned default/web to n1", "type": "Normal",
            "source": {"component": "default-scheduler"}, "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z",
            "reportingComponent": "default-scheduler", "reportingInstance": "kube"
        });
        let v1 = from_core(core.clone());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["note"], "Successfully assigned default/web to n1");
        assert_eq!(v1["reportingController"], "default-scheduler");
        assert_eq!(v1["deprecatedCount"], 2);
        assert!(v1.get("involvedObject").is_none() && v1.get("message").is_none());
        assert_eq!(to_core(v1), core);
    }

    #[test]
    fn zero_values_are_left_out() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "note": "x", "deprecatedCount": 0,
            "deprecatedFirstTimestamp": null, "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_core(v1);
        assert_eq!(
            core,
            json!({"apiVersion": "v1", "kind": "Event", "message": "x",
            "eventTime": "2026-01-01T00:00:00.000000Z"})
        );
    }
}
