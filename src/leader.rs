//! Leader election through `coordination.k8s.io` Leases, as client-go's
//! `leaderelection` package does it for kube-controller-manager and
//! kube-scheduler: a candidate takes the Lease when it is free or its holder has
//! not renewed it for `leaseDurationSeconds` (measured on the candidate's own
//! clock from when it last saw the record change, so clock skew between servers
//! does not matter), renews it every retry period, and stops leading when it
//! could not renew for the renew deadline. Work runs only while leading: it gets
//! a token that is cancelled when leadership is lost (or on shutdown), after
//! which the candidate tries to acquire the Lease again. Leaving on shutdown
//! releases the Lease so another server takes over at once.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Namespace of the control plane's Leases.
pub const NAMESPACE: &str = "kube-system";

/// How a candidate competes for one Lease (kube-controller-manager's defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// The Lease's name, e.g. `kube-controller-manager` or `kube-scheduler`.
    pub name: String,
    pub namespace: String,
    /// `holderIdentity` while leading: `<hostname>_<uuid>`.
    pub identity: String,
    /// How long others wait after the last renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often to try acquiring or renewing.
    pub retry_period: Duration,
}

impl Config {
    /// A candidate for Lease `kube-system/<name>` with leaseDuration 15 s, renew
    /// deadline 10 s and retry period 2 s.
    pub fn new(name: &str, identity: &str) -> Config {
        Config {
            name: name.to_string(),
            namespace: NAMESPACE.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why one attempt to acquire or renew failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease {0} is held by {1}")]
    Held(String, String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// This server's identity in Leases: `<hostname>_<uuid>`. The uuid is kept in
/// `dir` so that a restarted server (one per data dir, enforced by its lock)
/// recognises the Leases it held and resumes at once instead of waiting for them
/// to expire; a new data dir gets a new identity.
pub fn identity(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("leader-id");
    let uuid = match std::fs::read_to_string(&path) {
        Ok(text) if is_uuid(text.trim()) => text.trim().to_string(),
        _ => {
            let uuid = new_uuid();
            std::fs::write(&path, format!("{uuid}\n"))?;
            uuid
        }
    };
    let host = crate::pki::hostname().unwrap_or_else(|| "localhost".to_string());
    Ok(format!("{host}_{uuid}"))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A random (version 4) UUID.
fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Runs `lead` each time this candidate becomes leader, until `shutdown`. The
/// token `lead` gets is cancelled when leadership is lost; `lead` must then
/// return. On shutdown the Lease is released.
pub async fn run<F, Fut>(client: kube::Client, config: Config, shutdown: CancellationToken, mut lead: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut elector = Elector::new(client, config);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = elector.acquire() => {}
        }
        tracing::info!(lease = %elector.config.name, identity = %elector.config.identity, "became leader");
        let leading = shutdown.child_token();
        let work = lead(leading.clone());
        let lost = tokio::select! {
            _ = work => false,
            _ = elector.keep() => true,
        };
        if !lost || shutdown.is_cancelled() {
            leading.cancel();
            elector.release().await;
            return;
        }
        tracing::warn!(lease = %elector.config.name, "leadership lost; stopping until it is regained");
        leading.cancel();
        // `work` was dropped by the select: every task it ran stopped with it.
    }
}

/// One candidate's view of its Lease.
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    /// The last record seen and when (our clock) it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    pub fn new(client: kube::Client, config: Config) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(()) => return,
                Err(Error::Held(..)) => {}
                Err(err) => tracing::debug!(lease = %self.config.name, error = %err, "acquiring the lease failed"),
            }
            // client-go jitters the acquire period by up to 1.2 times.
            let jitter = self.config.retry_period.mul_f64(rand::random_range(0.0..1.2));
            tokio::time::sleep(self.config.retry_period + jitter).await;
        }
    }

    /// Renews the Lease every retry period; returns when no renewal succeeded
    /// for the renew deadline (leadership is lost).
    pub async fn keep(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(()) => renewed = Instant::now(),
                Err(err) => {
                    tracing::debug!(lease = %self.config.name, error = %err, "renewing the lease failed");
                    if let Error::Held(..) = err {
                        return;
                    }
                }
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }

    /// Gives the Lease up (if still ours) so another candidate need not wait for
    /// it to expire. Best effort, bounded by one retry period.
    pub async fn release(&mut self) {
        let release = async {
            let mut lease = self.api.get(&self.config.name).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(&self.config.identity) {
                return Ok(());
            }
            let now = MicroTime(Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        };
        match tokio::time::timeout(self.config.retry_period, release).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(lease = %self.config.name, error = %err, "releasing the lease failed"),
            Err(_) => tracing::debug!(lease = %self.config.name, "releasing the lease timed out"),
        }
    }

    /// One attempt (client-go's `tryAcquireOrRenew`): create the Lease, renew
    /// it, or take it over when its holder let it expire.
    pub async fn try_acquire_or_renew(&mut self) -> Result<(), Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec.clone()),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            self.observed = Some((spec, Instant::now()));
            return Ok(());
        };
        let old = lease.spec.clone().unwrap_or_default();
        let observed_at = match &self.observed {
            Some((record, at)) if *record == old => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((old.clone(), at));
                at
            }
        };
        let holder = old.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.config.identity;
        let duration = Duration::from_secs(u64::try_from(old.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
        if !holder.is_empty() && !mine && observed_at.elapsed() < duration {
            return Err(Error::Held(self.config.name.clone(), holder));
        }
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine {
                old.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(match mine {
                true => old.lease_transitions.unwrap_or(0),
                false => old.lease_transitions.unwrap_or(0) + 1,
            }),
            ..old
        };
        lease.spec = Some(spec.clone());
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        self.observed = Some((spec, Instant::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_kept_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = identity(dir.path()).unwrap();
        assert_eq!(identity(dir.path()).unwrap(), first);
        let (host, uuid) = first.rsplit_once('_').unwrap();
        assert!(!host.is_empty() && is_uuid(uuid), "{first}");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(identity(other.path()).unwrap(), first);
    }
}
