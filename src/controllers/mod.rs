//! The controller manager: the reconcile loops of kube-controller-manager as tokio
//! tasks in the server. Each controller is a kube-runtime `Controller` (its own
//! work queue, deduplicated keys, retries with back-off) fed by the process's
//! shared informers, and reads and writes only through the in-process API client.

use std::sync::Arc;
use std::time::Duration;

use std::net::Ipv4Addr;
use tokio_util::sync::CancellationToken;

use crate::informer::Informers;

pub mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod garbage_collector;
pub mod history;
mod job;
mod namespace;
mod node_ipam;
mod node_lifecycle;
pub mod pods;
mod replicaset;
mod serviceaccount;
mod statefulset;

/// What the controllers need from the server's flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--cluster-cidr`: node pod CIDRs are carved from it.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// `holderIdentity` in the `kube-controller-manager` Lease (`<hostname>_<uuid>`).
    pub leader_identity: String,
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`: heartbeat silence after which a node is Unknown.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted status.
    pub node_startup_grace_period: Duration,
}

/// What every controller gets.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub informers: Arc<Informers>,
    pub settings: Arc<Settings>,
}

/// Why a reconcile failed; the controller retries it with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// How long until a failed reconcile is retried.
pub fn retry_after(_: &Error) -> Duration {
    Duration::from_secs(5)
}

/// Runs every controller while this server holds the `kube-controller-manager`
/// Lease, until shutdown.
pub async fn run(client: kube::Client, informers: Arc<Informers>, settings: Settings, shutdown: CancellationToken) {
    let election = crate::leader::Config::new("kube-controller-manager", &settings.leader_identity);
    let context = Context {
        client: client.clone(),
        informers,
        settings: Arc::new(settings),
    };
    crate::leader::run(client, election, shutdown, |leading| {
        let context = context.clone();
        async move {
            // Every loop runs until leadership ends; add new controllers to this join.
            let controllers = async {
                tokio::join!(
                    serviceaccount::run(context.clone()),
                    namespace::run(context.clone()),
                    replicaset::run(context.clone()),
                    deployment::run(context.clone()),
                    garbage_collector::run(context.clone()),
                    endpoints::run(context.clone()),
                    endpointslice::run(context.clone()),
                    node_ipam::run(context.clone()),
                    node_lifecycle::run(context.clone()),
                    job::run(context.clone()),
                    cronjob::run(context.clone()),
                    daemonset::run(context.clone()),
                    statefulset::run(context.clone()),
                    disruption::run(context.clone()),
                );
            };
            tokio::select! {
                _ = leading.cancelled() => {}
                _ = controllers => {}
            }
        }
    })
    .await;
}

/// A `Controller` stream's end: logs failed reconciles (they are retried).
pub async fn drain<T, E: std::fmt::Display>(results: impl futures_util::Stream<Item = Result<T, E>>) {
    use futures_util::StreamExt;
    results
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "reconcile failed");
            }
        })
        .await;
}
