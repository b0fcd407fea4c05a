//! Lease deadlines. Leases themselves (id, TTL) and which keys hang on them live in
//! the database; their deadlines live only here, like etcd: after a restart every
//! lease gets its full TTL again. Keep-alives therefore never touch the disk.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// Shortest TTL granted; shorter requests are raised to it (etcd's minimum with
/// default election settings).
pub const MIN_TTL: i64 = 2;
/// Longest TTL accepted (etcd's `MaxLeaseTTL`).
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Default)]
pub struct Lessor {
    leases: Mutex<HashMap<i64, Deadline>>,
    /// Woken when a deadline may have moved earlier.
    pub changed: Notify,
}

#[derive(Clone, Copy)]
struct Deadline {
    ttl: i64,
    at: Instant,
}

impl Lessor {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Deadline>> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, id: i64, ttl: i64) {
        let at = Instant::now() + Duration::from_secs(ttl as u64);
        self.leases().insert(id, Deadline { ttl, at });
        self.changed.notify_one();
    }

    pub fn remove(&self, id: i64) {
        self.leases().remove(&id);
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases().contains_key(&id)
    }

    /// Restarts the lease's clock; returns its TTL, or `None` if it is gone.
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let mut leases = self.leases();
        let lease = leases.get_mut(&id)?;
        lease.at = Instant::now() + Duration::from_secs(lease.ttl as u64);
        Some(lease.ttl)
    }

    /// Seconds left (rounded up) and the granted TTL.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let lease = *self.leases().get(&id)?;
        let left = lease.at.saturating_duration_since(Instant::now());
        Some((left.as_secs_f64().ceil() as i64, lease.ttl))
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.leases().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.leases().values().map(|l| l.at).min()
    }

    /// Leases past their deadline. Their deadline is pushed back a little so a
    /// revoke that fails is retried rather than spun on.
    pub fn take_expired(&self, now: Instant) -> Vec<i64> {
        let mut leases = self.leases();
        let mut expired = Vec::new();
        for (id, lease) in leases.iter_mut() {
            if lease.at <= now {
                expired.push(*id);
                lease.at = now + Duration::from_secs(1);
            }
        }
        expired
    }
}
