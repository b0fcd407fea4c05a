//! The scheduling queue, as kube-scheduler's: pods waiting to be scheduled
//! (highest priority first, then first come), pods backing off after a failed
//! attempt (1 s, doubling up to 10 s), and unschedulable pods, which stay put until
//! the cluster changes in a way that may let them fit (a node added or changed, a
//! pod removed...) and then go back through their backoff. No timer runs unless a
//! pod is backing off, so an idle scheduler uses no CPU.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The backoff after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Backoff(Instant),
    Unschedulable,
    /// Popped and being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    state: State,
    attempts: u32,
    /// Identifies the entry's current place in the active heap (stale heap items
    /// are skipped).
    ticket: u64,
    last_try: Option<Instant>,
    /// The queue's move count when the pod was popped: a change of the cluster
    /// during the attempt makes a failure worth retrying.
    moves_at_pop: u64,
}

/// An item of the active heap: higher priority first, then the older ticket.
#[derive(Debug, PartialEq, Eq)]
struct Ready {
    priority: i32,
    ticket: Reverse<u64>,
    key: String,
}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, &self.ticket).cmp(&(other.priority, &other.ticket))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<Ready>,
    backoff: BTreeSet<(Instant, String)>,
    unschedulable: HashSet<String>,
    /// The unschedulable pods that more pods on nodes may help (pod affinity,
    /// topology spreading).
    waiting_for_pods: HashSet<String>,
    tickets: u64,
    moves: u64,
}

/// Whether pods being added to nodes may help this pod fit (pod affinity or
/// topology spreading), so that it is retried when one is.
fn waits_for_pods(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some())
        || spec.is_some_and(|s| s.topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty()))
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether an update may change the scheduling outcome: anything but status and
/// bookkeeping metadata (kube-scheduler's `isPodUpdated`).
fn changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || old.metadata.owner_references != new.metadata.owner_references
}

impl Queue {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    fn activate(&mut self, key: &str) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let State::Backoff(at) = entry.state {
            self.backoff.remove(&(at, key.to_string()));
        }
        self.unschedulable.remove(key);
        self.waiting_for_pods.remove(key);
        self.tickets += 1;
        entry.ticket = self.tickets;
        entry.state = State::Active;
        self.active.push(Ready {
            priority: priority(&entry.pod),
            ticket: Reverse(self.tickets),
            key: key.to_string(),
        });
    }

    /// To the backoff queue, or straight to the active one if its backoff is over.
    fn requeue(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let until = entry.last_try.map(|t| t + backoff(entry.attempts));
        match until {
            Some(until) if until > now => {
                if let State::Backoff(at) = entry.state {
                    self.backoff.remove(&(at, key.to_string()));
                }
                self.unschedulable.remove(key);
                self.waiting_for_pods.remove(key);
                entry.state = State::Backoff(until);
                self.backoff.insert((until, key.to_string()));
            }
            _ => self.activate(key),
        }
    }

    /// A pod to schedule appeared or changed.
    pub fn add(&mut self, key: &str, pod: Arc<Pod>, now: Instant) {
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        ticket: 0,
                        last_try: None,
                        moves_at_pop: 0,
                    },
                );
                self.activate(key);
            }
            Some(entry) => {
                let relevant = changed(&entry.pod, &pod);
                if pod.spec.as_ref().and_then(|s| s.priority) != entry.pod.spec.as_ref().and_then(|s| s.priority)
                    && entry.state == State::Active
                {
                    entry.pod = pod;
                    self.activate(key);
                    return;
                }
                entry.pod = pod;
                if relevant && entry.state == State::Unschedulable {
                    self.requeue(key, now);
                }
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            match entry.state {
                State::Backoff(at) => {
                    self.backoff.remove(&(at, key.to_string()));
                }
                State::Unschedulable => {
                    self.unschedulable.remove(key);
                    self.waiting_for_pods.remove(key);
                }
                State::Active | State::InFlight => {}
            }
        }
    }

    /// The next pod to schedule, now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<(String, Arc<Pod>)> {
        while let Some(ready) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&ready.key) else {
                continue;
            };
            if entry.state != State::Active || entry.ticket != ready.ticket.0 {
                continue;
            }
            entry.state = State::InFlight;
            entry.attempts += 1;
            entry.last_try = Some(now);
            entry.moves_at_pop = self.moves;
            return Some((ready.key, entry.pod.clone()));
        }
        None
    }

    /// The pod is bound: forget it.
    pub fn done(&mut self, key: &str) {
        if self.entries.get(key).is_some_and(|e| e.state == State::InFlight) {
            self.entries.remove(key);
        }
    }

    /// The pod fits no node. It waits for a change of the cluster, unless one
    /// happened while it was being scheduled.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if entry.state != State::InFlight {
            return;
        }
        if entry.moves_at_pop != self.moves {
            self.requeue(key, now);
        } else {
            entry.state = State::Unschedulable;
            if waits_for_pods(&entry.pod) {
                self.waiting_for_pods.insert(key.to_string());
            }
            self.unschedulable.insert(key.to_string());
        }
    }

    /// The attempt failed for another reason (binding failed): retry after backoff.
    pub fn retry(&mut self, key: &str, now: Instant) {
        if self.entries.get(key).is_some_and(|e| e.state == State::InFlight) {
            self.requeue(key, now);
        }
    }

    /// The cluster changed: every unschedulable pod gets another chance, after
    /// its backoff.
    pub fn move_all(&mut self, now: Instant) {
        self.moves += 1;
        let keys: Vec<String> = self.unschedulable.drain().collect();
        self.waiting_for_pods.clear();
        for key in keys {
            self.requeue(&key, now);
        }
    }

    /// A pod was added to a node: the unschedulable pods that may now fit because
    /// of it (pod affinity, topology spreading) get another chance.
    pub fn move_waiting_for_pods(&mut self, now: Instant) {
        let keys: Vec<String> = self.waiting_for_pods.drain().collect();
        for key in keys {
            self.requeue(&key, now);
        }
    }

    /// When the next backing-off pod becomes ready.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.backoff.first().map(|(at, _)| *at)
    }

    /// Moves pods whose backoff is over to the active queue.
    pub fn flush(&mut self, now: Instant) {
        while let Some((at, key)) = self.backoff.first().cloned() {
            if at > now {
                break;
            }
            self.backoff.pop_first();
            self.activate(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name}, "spec": {"containers": [], "priority": priority}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn priority_then_arrival_order() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add("a", pod("a", 0), now);
        q.add("b", pod("b", 10), now);
        q.add("c", pod("c", 0), now);
        q.add("a", pod("a", 0), now); // an update keeps the place
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now).map(|(k, _)| k)).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(q.len(), 3, "in flight");
        q.done("a");
        assert!(!q.contains("a"));
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_back_off() {
        let start = Instant::now();
        let mut q = Queue::default();
        q.add("p", pod("p", 0), start);
        q.pop(start).unwrap();
        q.unschedulable("p", start);
        assert!(!q.has_active() && q.next_deadline().is_none(), "no timer while waiting");
        // A status-only update does not requeue it.
        let mut status_only = (*pod("p", 0)).clone();
        status_only.status = Some(Default::default());
        q.add("p", Arc::new(status_only), start);
        assert!(!q.has_active() && q.next_deadline().is_none());
        // A cluster change within the backoff: it backs off first.
        q.move_all(start + Duration::from_millis(100));
        assert_eq!(q.next_deadline(), Some(start + Duration::from_secs(1)));
        q.flush(start + Duration::from_millis(999));
        assert!(!q.has_active());
        q.flush(start + Duration::from_secs(1));
        let t2 = start + Duration::from_secs(1);
        assert_eq!(q.pop(t2).unwrap().0, "p");
        // A change while in flight: the failure retries after its (2 s) backoff.
        q.move_all(t2);
        q.unschedulable("p", t2);
        assert_eq!(q.next_deadline(), Some(t2 + Duration::from_secs(2)));
        q.remove("p");
        assert_eq!((q.len(), q.next_deadline()), (0, None));
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(1000).as_secs(), 10);
    }
}
