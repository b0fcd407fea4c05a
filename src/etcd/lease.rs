//! The Lease service: grant, revoke, keep-alive stream, time-to-live and list.

use futures_util::StreamExt;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Endpoint;
use super::convert::status;
use super::proto::etcdserverpb::{self as pb, lease_server::Lease};
use crate::store::StoreError;

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for Endpoint {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        let (id, ttl) = self.store.lease_grant(req.id, req.ttl).await.map_err(status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(self.current_header()),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let revision = self.store.lease_revoke(req.into_inner().id).await.map_err(status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(self.header(revision)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let endpoint = self.clone();
        let shutdown = self.shutdown.clone().cancelled_owned();
        let responses = req.into_inner().take_until(shutdown).map(move |msg| {
            let id = msg?.id;
            // etcd answers a lease that is gone with TTL 0 rather than an error.
            let ttl = endpoint.store.lease_keep_alive(id).unwrap_or(0);
            Ok(pb::LeaseKeepAliveResponse {
                header: Some(endpoint.current_header()),
                id,
                ttl,
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let response = match self.store.lease_time_to_live(req.id, req.keys).await {
            Ok(info) => pb::LeaseTimeToLiveResponse {
                header: Some(self.current_header()),
                id: info.id,
                ttl: info.remaining,
                granted_ttl: info.granted_ttl,
                keys: info.keys,
            },
            // etcd reports an expired or unknown lease as TTL -1.
            Err(StoreError::LeaseNotFound) => pb::LeaseTimeToLiveResponse {
                header: Some(self.current_header()),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Err(err) => return Err(status(err)),
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.current_header()),
            leases: self
                .store
                .leases()
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}
