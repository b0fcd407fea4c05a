//! The etcd v3 gRPC endpoint over the store, so `etcdctl`, backup tools and any etcd
//! client work against a `kube` server: KV, Watch, Lease, Cluster.MemberList and
//! Maintenance (status, alarms, defragment, snapshot). Auth is not served, so the
//! endpoint only ever listens on loopback (see `serve`).

mod convert;
mod kv;
mod lease;
mod maintenance;
mod watch;

pub mod proto {
    //! Generated from `proto/etcd`: etcd's packages and field numbers.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::{MAX_REQUEST_BYTES, Store};
use proto::etcdserverpb as pb;

/// The etcd version reported by `Status`. The apiserver enables watch progress
/// requests only for etcd >= 3.5.13 and checks this string to decide.
pub const ETCD_VERSION: &str = "3.5.16";
/// Room for gRPC framing and the rest of a request around the largest value.
const GRPC_OVERHEAD: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve the etcd endpoint on {0}: it has no TLS or client authentication yet, so it listens on loopback only"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("etcd endpoint: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What every service needs: the store and how to fill a response header.
#[derive(Clone)]
struct Endpoint {
    store: Store,
    client_url: String,
    /// Ends the long-lived streams (watch, keep-alive) so shutdown does not wait
    /// for clients to hang up.
    shutdown: CancellationToken,
}

impl Endpoint {
    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.store.cluster_id(),
            member_id: self.store.member_id(),
            revision,
            raft_term: 1,
        }
    }

    fn current_header(&self) -> pb::ResponseHeader {
        self.header(self.store.revision())
    }
}

/// Binds the endpoint's address; refuses anything but loopback.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map_err(|e| ServeError::Bind(addr, e))
}

/// Serves the etcd API on `listener` until `shutdown`.
pub async fn serve(store: Store, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(([127, 0, 0, 1], 0).into(), e))?;
    let endpoint = Endpoint {
        store,
        client_url: format!("http://{local}"),
        shutdown: shutdown.clone(),
    };
    let max = MAX_REQUEST_BYTES + GRPC_OVERHEAD;
    tracing::info!(address = %local, "etcd endpoint listening");
    tonic::transport::Server::builder()
        .add_service(pb::kv_server::KvServer::new(endpoint.clone()).max_decoding_message_size(max))
        .add_service(pb::watch_server::WatchServer::new(endpoint.clone()).max_decoding_message_size(max))
        .add_service(pb::lease_server::LeaseServer::new(endpoint.clone()).max_decoding_message_size(max))
        .add_service(pb::cluster_server::ClusterServer::new(endpoint.clone()))
        .add_service(pb::maintenance_server::MaintenanceServer::new(endpoint))
        .serve_with_incoming_shutdown(
            // Responses are small and latency-bound: never wait for Nagle.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
