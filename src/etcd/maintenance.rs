//! Maintenance (status, alarms, defragment, snapshot) and the one-member Cluster
//! service that `etcdctl member list` and `endpoint status --cluster` read.

use std::pin::Pin;
use tokio::io::AsyncReadExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::status;
use super::proto::etcdserverpb::{self as pb, cluster_server::Cluster, maintenance_server::Maintenance};
use super::{ETCD_VERSION, Endpoint};

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

const SNAPSHOT_CHUNK: usize = 64 * 1024;

#[tonic::async_trait]
impl Maintenance for Endpoint {
    async fn alarm(&self, _req: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        // No alarms are ever raised: a full disk is reported per request instead.
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.current_header()),
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let (db_size, in_use) = self.store.db_size().await.map_err(status)?;
        let revision = self.store.revision();
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.header(revision)),
            version: ETCD_VERSION.to_string(),
            db_size,
            leader: self.store.member_id(),
            raft_index: revision as u64,
            raft_term: 1,
            raft_applied_index: revision as u64,
            errors: Vec::new(),
            db_size_in_use: in_use,
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        _req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.store.defragment().await.map_err(status)?;
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.current_header()),
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let dir = self.store.path().parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let path = dir.join(format!("grpc-snapshot-{}.db", std::process::id()));
        let revision = self.store.snapshot(path.clone()).await.map_err(status)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // The open file stays readable; nothing is left behind if the client goes.
        let _ = tokio::fs::remove_file(&path).await;
        let size = file
            .metadata()
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .len();
        let header = self.header(revision);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(send_chunks(file, size, header, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// Streams the file in chunks, each with the number of bytes still to come; stops
/// early if the client goes away.
async fn send_chunks(
    mut file: tokio::fs::File,
    mut remaining: u64,
    header: pb::ResponseHeader,
    tx: tokio::sync::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) {
    let mut header = Some(header);
    while remaining > 0 {
        let mut blob = vec![0u8; SNAPSHOT_CHUNK.min(remaining as usize)];
        let chunk = match file.read_exact(&mut blob).await {
            Ok(_) => {
                remaining -= blob.len() as u64;
                Ok(pb::SnapshotResponse {
                    header: header.take(),
                    remaining_bytes: remaining,
                    blob,
                    version: String::new(),
                })
            }
            Err(e) => {
                remaining = 0;
                Err(Status::internal(format!("reading snapshot: {e}")))
            }
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

#[tonic::async_trait]
impl Cluster for Endpoint {
    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "kube".into());
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.current_header()),
            members: vec![pb::Member {
                id: self.store.member_id(),
                name,
                peer_ur_ls: Vec::new(),
                client_ur_ls: vec![self.client_url.clone()],
                is_learner: false,
            }],
        }))
    }
}
