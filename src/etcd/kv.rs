//! The KV service: Range, Put, DeleteRange, Txn and Compact, each a store call.

use tonic::{Request, Response, Status};

use super::Endpoint;
use super::convert::{self, status};
use super::proto::etcdserverpb::{self as pb, kv_server::Kv};
use crate::store::{Op, OpResult, Txn};

impl Endpoint {
    /// Runs a single write op as a transaction and returns its result and revision.
    async fn single(&self, op: Op) -> Result<(OpResult, i64), Status> {
        let result = self.store.txn(Txn::single(op)).await.map_err(status)?;
        let revision = result.revision;
        let op = result
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("transaction returned no result"))?;
        Ok((op, revision))
    }
}

#[tonic::async_trait]
impl Kv for Endpoint {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let result = self
            .store
            .range(convert::range(req.into_inner()))
            .await
            .map_err(status)?;
        let header = self.header(result.revision);
        Ok(Response::new(convert::range_response(result, header)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let (result, revision) = self.single(Op::Put(convert::put(req.into_inner()))).await?;
        let prev = match result {
            OpResult::Put { prev } => prev,
            _ => None,
        };
        Ok(Response::new(pb::PutResponse {
            header: Some(self.header(revision)),
            prev_kv: prev.map(convert::kv),
        }))
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let (result, revision) = self.single(Op::Delete(convert::delete(req.into_inner()))).await?;
        let (deleted, prev) = match result {
            OpResult::Delete { deleted, prev } => (deleted, prev),
            _ => (0, Vec::new()),
        };
        Ok(Response::new(pb::DeleteRangeResponse {
            header: Some(self.header(revision)),
            deleted,
            prev_kvs: prev.into_iter().map(convert::kv).collect(),
        }))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let txn = convert::txn(req.into_inner())?;
        let result = self.store.txn(txn).await.map_err(status)?;
        let header = self.header(result.revision);
        Ok(Response::new(convert::txn_response(result, header)))
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        let req = req.into_inner();
        let revision = self.store.compact(req.revision, req.physical).await.map_err(status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(self.header(revision)),
        }))
    }
}
