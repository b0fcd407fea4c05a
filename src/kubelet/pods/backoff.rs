//! Per-key exponential back-off, as client-go's `flowcontrol.Backoff` that the kubelet
//! uses for container restarts (10 s doubling to 5 min) and image pulls: an entry
//! starts at the initial delay the first time `next` is called, doubles on every later
//! call, and is forgotten (starts over) when it has not been touched for twice the
//! maximum, i.e. after about ten minutes of a container running fine.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// Container restarts: `containerBackOffPeriod` and `MaxContainerBackOff`.
pub const CONTAINER_INITIAL: Duration = Duration::from_secs(10);
pub const CONTAINER_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    pub fn containers() -> Backoff {
        Backoff::new(CONTAINER_INITIAL, CONTAINER_MAX)
    }

    /// The current delay of `key`, if it has one.
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Whether `key` is still backing off from an event at `since` (e.g. the time the
    /// container last exited): `now - since` is shorter than the current delay. The
    /// answer is when the back-off ends.
    pub fn in_backoff_since(&self, key: &str, since: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, now) {
            return None;
        }
        let end = since + entry.delay;
        (now < end).then_some(end)
    }

    /// When the current delay of `key`, counted from its last update, ends.
    pub fn until(&self, key: &str) -> Option<SystemTime> {
        self.entries.get(key).map(|e| e.last_update + e.delay)
    }

    /// Records one more attempt: the initial delay for a new (or expired) key,
    /// otherwise twice the last, at most the maximum.
    pub fn next(&mut self, key: &str, now: SystemTime) {
        let (initial, max) = (self.initial, self.max);
        match self.entries.get_mut(key) {
            Some(entry) if now.duration_since(entry.last_update).unwrap_or_default() <= max * 2 => {
                entry.delay = (entry.delay * 2).min(max);
                entry.last_update = now;
            }
            _ => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        delay: initial,
                        last_update: now,
                    },
                );
            }
        }
    }

    fn expired(&self, entry: &Entry, now: SystemTime) -> bool {
        now.duration_since(entry.last_update).unwrap_or_default() > self.max * 2
    }

    /// Recreates the entry of a key after a restart of the kubelet (which forgot
    /// it): the delay it had reached after `attempts` restarts, counted from `at`.
    pub fn seed(&mut self, key: &str, attempts: u32, at: SystemTime) {
        if self.entries.contains_key(key) || attempts == 0 {
            return;
        }
        let mut delay = self.initial;
        for _ in 1..attempts.min(32) {
            delay = (delay * 2).min(self.max);
        }
        self.entries.insert(key.to_string(), Entry { delay, last_update: at });
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets keys that have expired, so the map does not grow forever.
    pub fn gc(&mut self, now: SystemTime) {
        let max = self.max;
        self.entries
            .retain(|_, e| now.duration_since(e.last_update).unwrap_or_default() <= max * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum_and_expires() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut b = Backoff::containers();
        // First crash: no entry, restart at once.
        assert_eq!(b.in_backoff_since("c", t0, t0), None);
        b.next("c", t0);
        assert_eq!(b.delay("c"), Some(Duration::from_secs(10)));
        // Second crash at t0+1: in back-off until t0+11.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.in_backoff_since("c", t1, t1), Some(t1 + Duration::from_secs(10)));
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(b.in_backoff_since("c", t1, t2), None);
        b.next("c", t2);
        assert_eq!(b.delay("c"), Some(Duration::from_secs(20)));
        let mut now = t2;
        for _ in 0..10 {
            now += Duration::from_secs(1);
            b.next("c", now);
        }
        assert_eq!(b.delay("c"), Some(CONTAINER_MAX));
        // Ten minutes of quiet: starts over.
        let later = now + Duration::from_secs(601);
        assert_eq!(b.in_backoff_since("c", later, later), None);
        b.next("c", later);
        assert_eq!(b.delay("c"), Some(CONTAINER_INITIAL));
        b.gc(later + Duration::from_secs(700));
        assert_eq!(b.delay("c"), None);

        // After a kubelet restart: three restarts so far mean a 40 s delay now.
        b.seed("d", 3, t0);
        assert_eq!(b.delay("d"), Some(Duration::from_secs(40)));
        b.seed("d", 1, t0);
        assert_eq!(b.delay("d"), Some(Duration::from_secs(40)), "an existing entry is kept");
    }
}
