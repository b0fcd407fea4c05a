//! The Watch service. One gRPC stream carries many watches: each runs as its own
//! task that follows a store `Watcher` and writes into the stream's response
//! channel. Progress requests are answered with the lowest revision every watch on
//! the stream has fully delivered, so a client may treat it as a bookmark.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::Endpoint;
use super::convert;
use super::proto::etcdserverpb::{self as pb, watch_request::RequestUnion, watch_server::Watch};
use super::proto::mvccpb;
use crate::store::{EventKind, KeyRange, StoreError, Watcher};

/// How often an idle watch that asked for it gets a progress notification (etcd's default).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);
/// A response is cut at the next revision boundary once its events pass this size.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// `watch_id` of a progress response that covers the whole stream.
const ALL_WATCHES: i64 = -1;

type Responses = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for Endpoint {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(256);
        let session = Session {
            endpoint: self.clone(),
            tx,
            watches: HashMap::new(),
            next_id: 0,
        };
        // The session ends with the client's stream, or at shutdown.
        tokio::spawn(session.run(req.into_inner(), self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Session {
    endpoint: Endpoint,
    tx: Responses,
    watches: HashMap<i64, ActiveWatch>,
    next_id: i64,
}

/// A running watch: its task and the last revision it has fully delivered.
struct ActiveWatch {
    task: JoinHandle<()>,
    delivered: Arc<AtomicI64>,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<pb::WatchRequest>, shutdown: CancellationToken) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.tx.closed() => break,
                msg = inbound.message() => msg,
            };
            let ok = match msg {
                Ok(Some(req)) => self.handle(req).await,
                Ok(None) | Err(_) => false,
            };
            if !ok {
                break;
            }
        }
        for (_, watch) in self.watches.drain() {
            watch.task.abort();
        }
    }

    /// Handles one request; false once the client is gone.
    async fn handle(&mut self, req: pb::WatchRequest) -> bool {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if let Some(watch) = self.watches.remove(&cancel.watch_id) {
                    watch.task.abort();
                }
                self.send(pb::WatchResponse {
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..self.response()
                })
                .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                let revision = self
                    .watches
                    .values()
                    .filter(|w| !w.task.is_finished())
                    .map(|w| w.delivered.load(Ordering::Acquire))
                    .min()
                    .unwrap_or_else(|| self.endpoint.store.revision());
                self.send(pb::WatchResponse {
                    header: Some(self.endpoint.header(revision)),
                    watch_id: ALL_WATCHES,
                    ..Default::default()
                })
                .await
            }
            None => true,
        }
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> bool {
        self.watches.retain(|_, w| !w.task.is_finished());
        let id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watches.contains_key(&id) {
            return self
                .send(pb::WatchResponse {
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: "etcdserver: mvcc: duplicate watch ID provided on the WatchStream".into(),
                    ..self.response()
                })
                .await;
        }
        let range = KeyRange::new(create.key.clone(), create.range_end.clone());
        let watcher = self.endpoint.store.watch(range, create.start_revision);
        let created = pb::WatchResponse {
            watch_id: id,
            created: true,
            ..self.response()
        };
        if !self.send(created).await {
            return false;
        }
        match watcher {
            Ok(watcher) => {
                let delivered = Arc::new(AtomicI64::new(watcher.next_revision() - 1));
                let forward = Forward {
                    endpoint: self.endpoint.clone(),
                    tx: self.tx.clone(),
                    id,
                    prev_kv: create.prev_kv,
                    no_put: create
                        .filters
                        .contains(&(pb::watch_create_request::FilterType::Noput as i32)),
                    no_delete: create
                        .filters
                        .contains(&(pb::watch_create_request::FilterType::Nodelete as i32)),
                    progress_notify: create.progress_notify,
                    delivered: delivered.clone(),
                };
                let task = tokio::spawn(forward.run(watcher));
                self.watches.insert(id, ActiveWatch { task, delivered });
                true
            }
            Err(err) => self.send(canceled(&self.endpoint, id, err)).await,
        }
    }

    fn response(&self) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(self.endpoint.current_header()),
            ..Default::default()
        }
    }

    async fn send(&self, response: pb::WatchResponse) -> bool {
        self.tx.send(Ok(response)).await.is_ok()
    }
}

fn canceled(endpoint: &Endpoint, id: i64, err: StoreError) -> pb::WatchResponse {
    let compact_revision = match err {
        StoreError::Compacted { compact_revision } => compact_revision,
        _ => 0,
    };
    pb::WatchResponse {
        header: Some(endpoint.current_header()),
        watch_id: id,
        canceled: true,
        compact_revision,
        cancel_reason: err.to_string(),
        ..Default::default()
    }
}

/// Moves one watch's events from the store to the stream.
struct Forward {
    endpoint: Endpoint,
    tx: Responses,
    id: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    delivered: Arc<AtomicI64>,
}

impl Forward {
    async fn run(self, mut watcher: Watcher) {
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        let mut active = false;
        loop {
            let tick = async {
                if self.progress_notify {
                    progress.tick().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                events = watcher.next() => {
                    let events = match events {
                        Ok(events) => events,
                        Err(err) => {
                            let _ = self.tx.send(Ok(canceled(&self.endpoint, self.id, err))).await;
                            return;
                        }
                    };
                    let events = events
                        .into_iter()
                        .filter(|e| match e.kind {
                            EventKind::Put => !self.no_put,
                            EventKind::Delete => !self.no_delete,
                        })
                        .map(|e| convert::event(e, self.prev_kv));
                    if !self.send_events(events).await {
                        return;
                    }
                    self.delivered.store(watcher.next_revision() - 1, Ordering::Release);
                    active = true;
                }
                _ = tick => {
                    if !active {
                        let response = pb::WatchResponse {
                            header: Some(self.endpoint.header(watcher.next_revision() - 1)),
                            watch_id: self.id,
                            ..Default::default()
                        };
                        if self.tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    active = false;
                }
            }
        }
    }

    /// Sends events in responses of bounded size, never splitting a revision.
    async fn send_events(&self, events: impl Iterator<Item = mvccpb::Event>) -> bool {
        let mut batch: Vec<mvccpb::Event> = Vec::new();
        let mut bytes = 0;
        let revision_of = |e: &mvccpb::Event| e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        for event in events {
            if bytes > MAX_RESPONSE_BYTES && batch.last().map(revision_of) != Some(revision_of(&event)) {
                if !self.send_batch(std::mem::take(&mut batch)).await {
                    return false;
                }
                bytes = 0;
            }
            bytes += event_size(&event);
            batch.push(event);
        }
        batch.is_empty() || self.send_batch(batch).await
    }

    async fn send_batch(&self, events: Vec<mvccpb::Event>) -> bool {
        let revision = events
            .last()
            .and_then(|e| e.kv.as_ref())
            .map_or(0, |kv| kv.mod_revision);
        let response = pb::WatchResponse {
            header: Some(self.endpoint.header(revision)),
            watch_id: self.id,
            events,
            ..Default::default()
        };
        self.tx.send(Ok(response)).await.is_ok()
    }
}

fn event_size(e: &mvccpb::Event) -> usize {
    let kv = |kv: &Option<mvccpb::KeyValue>| kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len());
    kv(&e.kv) + kv(&e.prev_kv)
}
