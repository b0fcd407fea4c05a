//! Shared informers: one watch per kind for every loop in the process that needs
//! it, as client-go's `SharedInformerFactory` does for kube-controller-manager.
//! Each informer keeps a kube-runtime reflector [`Store`] (the cache loops read)
//! and broadcasts every changed object, deletions included, to its subscribers.
//! A subscriber's stream starts with the cache's current contents and, when it
//! falls behind the broadcast buffer, replays the whole cache instead of missing
//! events, so a loop that reconciles each object it sees converges.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{Stream, StreamExt};
use kube::api::{Api, Resource};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many changes a slow subscriber may fall behind before it replays the cache.
const BUFFER: usize = 1024;

/// Kinds an informer can watch: k8s-openapi's typed objects.
pub trait Kind: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<K> Kind for K where K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

/// The cache and change feed of one kind, cluster-wide.
pub struct Informer<K: Kind> {
    store: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
    ready: watch::Receiver<bool>,
}

impl<K: Kind> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            changes: self.changes.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Kind> Informer<K> {
    /// The cache of every object of the kind.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Resolves once the cache holds the first full list. (kube-runtime's
    /// `Store::wait_until_ready` wakes only one of several concurrent waiters.)
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ready = self.ready.clone();
        async move {
            // An informer stopped before its first list never gets ready: wait forever
            // (shutdown cancels the waiter's task).
            if ready.wait_for(|ready| *ready).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Every object once (after the first list), then each object that changes or
    /// is deleted. Suitable for kube-runtime's `Controller::for_shared_stream` and
    /// `watches_shared_stream`.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let receiver = self.changes.subscribe();
        let store = self.store.clone();
        let ready = self.ready();
        futures_util::stream::once(async move {
            // Ignore an informer that stopped before its first list: nothing to replay.
            ready.await;
            let snapshot = futures_util::stream::iter(store.state());
            snapshot.chain(follow(receiver, store))
        })
        .flatten()
    }
}

/// The broadcast as a stream; on lag, the whole cache again.
fn follow<K: Kind>(receiver: broadcast::Receiver<Arc<K>>, store: Store<K>) -> impl Stream<Item = Arc<K>> + Send {
    futures_util::stream::unfold((receiver, store), |(mut receiver, store)| async move {
        let objects = match receiver.recv().await {
            Ok(object) => vec![object],
            Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((objects, (receiver, store)))
    })
    .flat_map(futures_util::stream::iter)
}

/// The informers of one process, created on first use and stopped on shutdown.
pub struct Informers {
    client: kube::Client,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    started: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Informers {
    pub fn new(client: kube::Client, tasks: TaskTracker, shutdown: CancellationToken) -> Arc<Informers> {
        Arc::new(Informers {
            client,
            tasks,
            shutdown,
            started: Mutex::new(HashMap::new()),
        })
    }

    /// The informer of kind `K` once its cache holds the first list. Build
    /// kube-runtime `Controller`s only from synced informers: their store's
    /// `wait_until_ready` hangs one of several concurrent waiters.
    pub async fn synced<K: Kind>(&self) -> Informer<K> {
        let informer = self.get::<K>();
        informer.ready().await;
        informer
    }

    /// The informer of kind `K`, starting its watch if this is the first use.
    pub fn get<K: Kind>(&self) -> Informer<K> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(informer) = started.get(&TypeId::of::<K>()) {
            return informer
                .downcast_ref::<Informer<K>>()
                .expect("informer of its own type")
                .clone();
        }
        let writer = reflector::store::Writer::<K>::default();
        let (ready, ready_rx) = watch::channel(false);
        let informer = Informer {
            store: writer.as_reader(),
            changes: broadcast::channel(BUFFER).0,
            ready: ready_rx,
        };
        let api: Api<K> = Api::all(self.client.clone());
        let feed = Feed {
            writer,
            changes: informer.changes.clone(),
            ready,
        };
        self.tasks.spawn(feed.run(api, self.shutdown.clone()));
        started.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        informer
    }
}

/// The writing side of an informer.
struct Feed<K: Kind> {
    writer: reflector::store::Writer<K>,
    changes: broadcast::Sender<Arc<K>>,
    ready: watch::Sender<bool>,
}

impl<K: Kind> Feed<K> {
    /// Keeps the cache in step with the API and broadcasts each change until
    /// shutdown. After a (re)list, objects that vanished meanwhile are broadcast as
    /// deletions.
    async fn run(mut self, api: Api<K>, shutdown: CancellationToken) {
        // No loop reads managedFields, and they are most of a small object's size
        // in memory (kube-controller-manager's informers drop them too).
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|object| object.meta_mut().managed_fields = None);
        let mut events = std::pin::pin!(events);
        let mut listed: HashMap<ObjectRef<K>, Arc<K>> = HashMap::new();
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(err)) => {
                    tracing::debug!(kind = K::kind(&()).as_ref(), error = %err, "watch failed, retrying");
                    continue;
                }
                None => return,
            };
            let before = matches!(event, watcher::Event::InitDone).then(|| self.writer.as_reader().state());
            self.writer.apply_watcher_event(&event);
            match event {
                watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                    let _ = self.changes.send(Arc::new(object));
                }
                watcher::Event::InitApply(object) => {
                    listed.insert(ObjectRef::from_obj(&object), Arc::new(object));
                }
                watcher::Event::Init => listed.clear(),
                watcher::Event::InitDone => {
                    for old in before.unwrap_or_default() {
                        if !listed.contains_key(&ObjectRef::from_obj(&*old)) {
                            let _ = self.changes.send(old);
                        }
                    }
                    for (_, object) in listed.drain() {
                        let _ = self.changes.send(object);
                    }
                    self.ready.send_replace(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, auth, kinds};
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::time::Duration;

    async fn wait_for(stream: &mut (impl Stream<Item = Arc<ConfigMap>> + Unpin), name: &str) {
        let found = async {
            while let Some(object) = stream.next().await {
                if object.metadata.name.as_deref() == Some(name) {
                    return;
                }
            }
            panic!("stream ended");
        };
        tokio::time::timeout(Duration::from_secs(10), found)
            .await
            .expect("change seen");
    }

    #[tokio::test]
    async fn subscribers_see_the_cache_then_changes_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("state.db"), Default::default()).unwrap();
        let api = api::Api::new(store, "127.0.0.1:6443".into(), kinds::default_ranges());
        api::bootstrap(&api).await.unwrap();
        let router = api::router(api, Arc::new(auth::Authenticator::new()));
        let client = crate::client::in_process(router, crate::client::identity::controller_manager());
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let first: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "first"}})).unwrap();
        configmaps.create(&Default::default(), &first).await.unwrap();

        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let informers = Informers::new(client, tasks.clone(), shutdown.clone());
        let informer = informers.get::<ConfigMap>();
        let mut seen = Box::pin(informer.subscribe());
        wait_for(&mut seen, "first").await;
        let second: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "second"}, "data": {"k": "v"}})).unwrap();
        let by_test = kube::api::PostParams {
            field_manager: Some("test".into()),
            ..Default::default()
        };
        configmaps.create(&by_test, &second).await.unwrap();
        wait_for(&mut seen, "second").await;
        let cached = informer.store().get(&ObjectRef::new("second").within("default"));
        let stored = configmaps.get("second").await.unwrap();
        assert!(stored.metadata.managed_fields.is_some(), "the API tracks managers");
        assert_eq!(
            cached.expect("cached").metadata.managed_fields,
            None,
            "not kept in the cache"
        );
        configmaps.delete("first", &Default::default()).await.unwrap();
        wait_for(&mut seen, "first").await;
        assert!(
            informer
                .store()
                .get(&ObjectRef::new("first").within("default"))
                .is_none()
        );
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .unwrap();
    }
}
