//! The garbage collector (kube-controller-manager's `garbagecollector`): deletes
//! objects whose owners are gone, for every kind the API serves.
//!
//! As upstream, a *graph builder* keeps a graph of every object's
//! ownerReferences, fed for every resource that supports list, watch and delete
//! (found through API discovery, again whenever a CustomResourceDefinition
//! changes; events are left out) by the process's shared informer of the kind
//! when other loops watch it too (pods, replica sets, ...), else by a
//! metadata-only watch of its own, as upstream's object-or-metadata informer
//! factory does: no kind is watched twice. Owners referenced but
//! not (yet) seen are *virtual* nodes, checked against the API. Two queues of
//! work follow from changes in the graph:
//!
//! - *attempt to delete* an object: its owners are looked up live; with no owner
//!   left (Background propagation, or an owner found missing) it is deleted, with
//!   the propagation its own finalizers ask for; when an owner awaits its
//!   dependents (`foregroundDeletion`), a dependent with dependents of its own is
//!   deleted in the foreground too, so chains such as Deployment → ReplicaSet →
//!   Pod cascade; references to missing owners are removed from objects that
//!   still have a live owner. An owner deleted in the foreground loses its
//!   `foregroundDeletion` finalizer once no dependent with `blockOwnerDeletion`
//!   remains, and the API server then removes it.
//! - *attempt to orphan*: an owner deleted with propagation `Orphan` (finalizer
//!   `orphan`) has its reference removed from every dependent, then the finalizer.
//!
//! The API server sets those finalizers from the delete's `propagationPolicy`
//! (see `api::handlers`). Work starts once every watch has listed, failed items
//! are retried with exponential back-off (5 ms to 1000 s), and an idle cluster
//! costs nothing: there is no periodic relist.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, future::BoxFuture};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Context;
use crate::informer::{Informer, Informers, Kind};

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// Owners confirmed missing, remembered to spare lookups (upstream: an LRU of 500).
const ABSENT_CACHE: usize = 500;
/// Workers per queue.
const DELETE_WORKERS: usize = 20;
const ORPHAN_WORKERS: usize = 5;
/// How long the first lists may take before work starts anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no resource serves {0}")]
    UnknownKind(String),
}

/// Where an object is: its coordinates and uid (`objectReference`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    uid: String,
}

impl Identity {
    /// An owner as a dependent in `namespace` refers to it.
    fn of_owner(owner: &OwnerReference, namespace: Option<&str>) -> Identity {
        Identity {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            namespace: namespace.map(str::to_string),
            uid: owner.uid.clone(),
        }
    }

    fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    /// Same object by group, kind, name and uid (versions may differ).
    fn same_coordinates(&self, owner: &OwnerReference) -> bool {
        self.uid == owner.uid
            && self.kind == owner.kind
            && self.name == owner.name
            && self.group() == group_of(&owner.api_version)
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == finalizer)
}

/// One object in the graph.
#[derive(Debug, Clone)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerReference>,
    dependents: HashSet<String>,
    being_deleted: bool,
    /// Deleted in the foreground: waits for its blocking dependents.
    deleting_dependents: bool,
    /// Seen through a watch (not only referenced as an owner).
    observed: bool,
}

/// A change for the graph builder.
#[derive(Debug)]
enum Change {
    /// An object as a watch shows it.
    Upsert { identity: Identity, meta: Box<ObjectMeta> },
    /// An object a watch saw go, or (virtual) one the API says does not exist.
    Delete { identity: Identity, virtual_: bool },
    /// A watch (re)listed its resource: objects of it missing from `uids` are gone.
    Listed {
        resource: (String, String),
        uids: HashSet<String>,
    },
}

/// A resource the collector watches and can look objects up in.
#[derive(Debug, Clone, PartialEq)]
struct Resource {
    api: ApiResource,
    namespaced: bool,
}

/// What workers and the graph builder share.
struct Collector {
    client: kube::Client,
    informers: Arc<Informers>,
    graph: Mutex<HashMap<String, Node>>,
    /// (group, kind) to resource, from discovery.
    resources: RwLock<HashMap<(String, String), Resource>>,
    absent: Mutex<(HashSet<Identity>, VecDeque<Identity>)>,
    changes: mpsc::UnboundedSender<Change>,
    to_delete: Queue<String>,
    to_orphan: Queue<String>,
}

/// Runs the collector until shutdown.
pub async fn run(context: Context) {
    let crds = context.informers.synced::<CustomResourceDefinition>().await;
    let (changes, change_rx) = mpsc::unbounded_channel();
    let (delete_queue, delete_rx) = Queue::new();
    let (orphan_queue, orphan_rx) = Queue::new();
    let collector = Arc::new(Collector {
        client: context.client.clone(),
        informers: context.informers.clone(),
        graph: Mutex::new(HashMap::new()),
        resources: RwLock::new(HashMap::new()),
        absent: Mutex::new((HashSet::new(), VecDeque::new())),
        changes,
        to_delete: delete_queue,
        to_orphan: orphan_queue,
    });
    let (synced_tx, synced) = watch::channel(false);
    let deleter = collector.clone();
    let orphaner = collector.clone();
    tokio::join!(
        collector.clone().monitor(crds.subscribe(), synced_tx),
        collector.clone().build_graph(change_rx),
        delete_rx.run(DELETE_WORKERS, synced.clone(), move |uid| {
            let collector = deleter.clone();
            Box::pin(async move { collector.attempt_to_delete(&uid).await })
        }),
        orphan_rx.run(ORPHAN_WORKERS, synced, move |uid| {
            let collector = orphaner.clone();
            Box::pin(async move { collector.attempt_to_orphan(&uid).await })
        }),
    );
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, HashMap<String, Node>> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resource(&self, api_version: &str, kind: &str) -> Option<Resource> {
        let resources = self.resources.read().unwrap_or_else(PoisonError::into_inner);
        resources
            .get(&(group_of(api_version).to_string(), kind.to_string()))
            .cloned()
    }

    /// Keeps one metadata watch per deletable resource, rediscovering the
    /// resources whenever a CustomResourceDefinition changes; reports `synced`
    /// once the first set of watches has listed.
    async fn monitor(
        self: Arc<Self>,
        crds: impl futures_util::Stream<Item = Arc<CustomResourceDefinition>> + Send,
        synced: watch::Sender<bool>,
    ) {
        let mut crds = std::pin::pin!(crds);
        let mut monitors: HashMap<(String, String), (Resource, tokio::task::AbortHandle)> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut first = true;
        loop {
            match discover(&self.client).await {
                Ok(found) => {
                    let (listed_tx, mut listed_rx) = mpsc::unbounded_channel();
                    let mut started = 0;
                    monitors.retain(|key, (resource, task)| {
                        let keep = found.get(key) == Some(resource);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for (key, resource) in &found {
                        if monitors.contains_key(key) {
                            continue;
                        }
                        let (changes, listed) = (self.changes.clone(), listed_tx.clone());
                        let task = match shared_informer(resource) {
                            Some(feed) => tasks.spawn(feed(&self.informers, resource.api.clone(), changes, listed)),
                            None => tasks.spawn(watch_resource(self.client.clone(), resource.clone(), changes, listed)),
                        };
                        monitors.insert(key.clone(), (resource.clone(), task));
                        started += 1;
                    }
                    *self.resources.write().unwrap_or_else(PoisonError::into_inner) = found;
                    if first {
                        drop(listed_tx);
                        // Every watch lists once before any work starts (or a while passes).
                        let all_listed = async {
                            while started > 0 && listed_rx.recv().await.is_some() {
                                started -= 1;
                            }
                        };
                        if tokio::time::timeout(SYNC_TIMEOUT, all_listed).await.is_err() {
                            tracing::warn!("garbage collector: not every resource listed in time; starting anyway");
                        }
                        synced.send_replace(true);
                        first = false;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "garbage collector: discovery failed");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            }
            // Wait for a CustomResourceDefinition to change; let a burst settle.
            if crds.next().await.is_none() {
                std::future::pending::<()>().await;
            }
            let settle = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    _ = &mut settle => break,
                    more = crds.next() => if more.is_none() { break },
                }
            }
            while tasks.try_join_next().is_some() {}
        }
    }

    /// Applies changes to the graph, one at a time (`processGraphChanges`).
    async fn build_graph(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<Change>) {
        while let Some(change) = changes.recv().await {
            match change {
                Change::Upsert { identity, meta } => self.upsert(identity, &meta),
                Change::Delete { identity, virtual_ } => self.delete(&identity, virtual_),
                Change::Listed { resource, uids } => {
                    let gone: Vec<Identity> = self
                        .graph()
                        .values()
                        .filter(|n| n.observed && !uids.contains(&n.identity.uid))
                        .filter(|n| n.identity.group() == resource.0 && n.identity.kind == resource.1)
                        .map(|n| n.identity.clone())
                        .collect();
                    for identity in gone {
                        self.delete(&identity, false);
                    }
                }
            }
        }
    }

    fn upsert(&self, identity: Identity, meta: &ObjectMeta) {
        let uid = identity.uid.clone();
        let owners = meta.owner_references.clone().unwrap_or_default();
        let being_deleted = meta.deletion_timestamp.is_some();
        let mut graph = self.graph();
        if let Some(node) = graph.get_mut(&uid)
            && !node.observed
        {
            // A virtual node turns real; dependents that named it otherwise are checked.
            if node.identity != identity {
                let dependents: Vec<String> = node.dependents.iter().cloned().collect();
                node.identity = identity.clone();
                for dependent in dependents {
                    let invalid = graph.get(&dependent).is_none_or(|d| {
                        d.owners.iter().any(|o| o.uid == uid && !identity.same_coordinates(o))
                            || (identity.namespace.is_some() && d.identity.namespace != identity.namespace)
                    });
                    if invalid {
                        self.to_delete.add(dependent);
                    }
                }
            }
            if let Some(node) = graph.get_mut(&uid) {
                node.observed = true;
            }
        }
        match graph.get_mut(&uid) {
            None => {
                graph.insert(
                    uid.clone(),
                    Node {
                        identity,
                        owners: owners.clone(),
                        dependents: HashSet::new(),
                        being_deleted,
                        deleting_dependents: false,
                        observed: true,
                    },
                );
                self.add_dependent_to_owners(&mut graph, &uid, &owners);
            }
            Some(node) => {
                let old = std::mem::replace(&mut node.owners, owners.clone());
                node.identity = identity;
                if being_deleted {
                    node.being_deleted = true;
                }
                let added: Vec<OwnerReference> = owners
                    .iter()
                    .filter(|o| !old.iter().any(|x| x.uid == o.uid))
                    .cloned()
                    .collect();
                let removed: Vec<OwnerReference> = old
                    .iter()
                    .filter(|o| !owners.iter().any(|x| x.uid == o.uid))
                    .cloned()
                    .collect();
                // A dependent that stops blocking its owner may let a foreground deletion finish.
                let blocking = |o: &OwnerReference| o.block_owner_deletion == Some(true);
                let unblocked = removed.iter().filter(|o| blocking(o)).map(|o| o.uid.clone()).chain(
                    old.iter()
                        .filter(|o| blocking(o))
                        .filter(|o| owners.iter().any(|x| x.uid == o.uid && !blocking(x)))
                        .map(|o| o.uid.clone()),
                );
                for owner in unblocked.collect::<Vec<_>>() {
                    if graph.contains_key(&owner) {
                        self.to_delete.add(owner);
                    }
                }
                self.add_dependent_to_owners(&mut graph, &uid, &added);
                for owner in &removed {
                    if let Some(owner) = graph.get_mut(&owner.uid) {
                        owner.dependents.remove(&uid);
                    }
                }
            }
        }
        // Transitions into a deletion the collector finishes.
        if being_deleted && has_finalizer(meta, ORPHAN) {
            self.to_orphan.add(uid);
        } else if being_deleted && has_finalizer(meta, FOREGROUND) {
            if let Some(node) = graph.get_mut(&uid)
                && !node.deleting_dependents
            {
                node.deleting_dependents = true;
                for dependent in &node.dependents {
                    self.to_delete.add(dependent.clone());
                }
            }
            self.to_delete.add(uid);
        }
    }

    /// Links a dependent into its owners' dependents; an owner not in the graph
    /// becomes a virtual node, checked against the API (`addDependentToOwners`).
    fn add_dependent_to_owners(&self, graph: &mut HashMap<String, Node>, dependent: &str, owners: &[OwnerReference]) {
        let Some(namespace) = graph.get(dependent).map(|d| d.identity.namespace.clone()) else {
            return;
        };
        for owner in owners {
            match graph.get_mut(&owner.uid) {
                Some(node) => {
                    node.dependents.insert(dependent.to_string());
                    let mismatch = node.observed
                        && (!node.identity.same_coordinates(owner)
                            || (node.identity.namespace.is_some() && node.identity.namespace != namespace));
                    if mismatch {
                        self.to_delete.add(dependent.to_string());
                    }
                }
                None => {
                    graph.insert(
                        owner.uid.clone(),
                        Node {
                            identity: Identity::of_owner(owner, namespace.as_deref()),
                            owners: Vec::new(),
                            dependents: HashSet::from([dependent.to_string()]),
                            being_deleted: false,
                            deleting_dependents: false,
                            observed: false,
                        },
                    );
                    self.to_delete.add(owner.uid.clone());
                }
            }
        }
    }

    fn delete(&self, identity: &Identity, virtual_: bool) {
        let mut graph = self.graph();
        let Some(existing) = graph.get(&identity.uid) else {
            return;
        };
        let refers_as_deleted = |dependent: &str| {
            graph
                .get(dependent)
                .is_some_and(|d| d.owners.iter().any(|o| identity.same_coordinates(o)))
        };
        if virtual_ && (!existing.observed || existing.identity != *identity) {
            // Only dependents that named the owner as the API found it missing lose it.
            let (matching, other): (Vec<String>, Vec<String>) =
                existing.dependents.iter().cloned().partition(|d| refers_as_deleted(d));
            let keep = existing.observed || !other.is_empty();
            if keep {
                if !matching.is_empty() {
                    self.remember_absent(identity.clone());
                    for dependent in matching {
                        self.to_delete.add(dependent);
                    }
                }
                if !existing.observed && existing.identity == *identity {
                    // Try the coordinates another dependent uses.
                    let alternative = other.iter().find_map(|d| {
                        let d = graph.get(d)?;
                        let owner = d.owners.iter().find(|o| o.uid == identity.uid)?;
                        Some(Identity::of_owner(owner, d.identity.namespace.as_deref()))
                    });
                    if let Some(alternative) = alternative
                        && let Some(node) = graph.get_mut(&identity.uid)
                    {
                        node.identity = alternative;
                        self.to_delete.add_rate_limited(identity.uid.clone());
                    }
                }
                return;
            }
        }
        let Some(node) = graph.remove(&identity.uid) else {
            return;
        };
        for owner in &node.owners {
            if let Some(owner) = graph.get_mut(&owner.uid) {
                owner.dependents.remove(&identity.uid);
                // Its deletion may have been what a foreground deletion waited for.
                if owner.deleting_dependents {
                    self.to_delete.add(owner.identity.uid.clone());
                }
            }
        }
        if !node.dependents.is_empty() {
            self.remember_absent(node.identity.clone());
        }
        for dependent in node.dependents {
            self.to_delete.add(dependent);
        }
    }

    fn remember_absent(&self, identity: Identity) {
        let mut absent = self.absent.lock().unwrap_or_else(PoisonError::into_inner);
        if absent.0.insert(identity.clone()) {
            absent.1.push_back(identity);
            if absent.1.len() > ABSENT_CACHE
                && let Some(oldest) = absent.1.pop_front()
            {
                absent.0.remove(&oldest);
            }
        }
    }

    fn is_absent(&self, identity: &Identity) -> bool {
        self.absent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .contains(identity)
    }

    /// The API of one object's resource.
    fn api(&self, identity: &Identity) -> Result<(Api<DynamicObject>, Resource), Error> {
        let resource = self
            .resource(&identity.api_version, &identity.kind)
            .ok_or_else(|| Error::UnknownKind(format!("{}/{}", identity.api_version, identity.kind)))?;
        let api = match (&identity.namespace, resource.namespaced) {
            (Some(namespace), true) => Api::namespaced_with(self.client.clone(), namespace, &resource.api),
            _ => Api::all_with(self.client.clone(), &resource.api),
        };
        Ok((api, resource))
    }

    /// The object as the API has it now; `None` when it is gone (or another
    /// object of the same name replaced it).
    async fn latest(&self, identity: &Identity) -> Result<Option<PartialObjectMeta<DynamicObject>>, Error> {
        let (api, _) = self.api(identity)?;
        match api.get_metadata_opt(&identity.name).await? {
            Some(object) if object.metadata.uid.as_deref() == Some(identity.uid.as_str()) => Ok(Some(object)),
            _ => Ok(None),
        }
    }

    /// `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str) -> Outcome {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Outcome::Done;
        };
        if node.being_deleted && !node.deleting_dependents {
            return Outcome::Done;
        }
        let result = self.try_delete(&node).await;
        match result {
            Ok(Outcome::Done) if !node.observed => Outcome::Retry,
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::debug!(error = %err, object = ?node.identity, "garbage collector: will retry");
                Outcome::Retry
            }
        }
    }

    async fn try_delete(&self, node: &Node) -> Result<Outcome, Error> {
        let Some(latest) = self.latest(&node.identity).await? else {
            // Gone: a virtual delete lets the graph (and the dependents) know.
            let _ = self.changes.send(Change::Delete {
                identity: node.identity.clone(),
                virtual_: true,
            });
            return Ok(Outcome::Forget);
        };
        if node.deleting_dependents {
            return self.finish_foreground(node).await;
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Outcome::Done);
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &owners {
            match self.classify(&node.identity, owner).await? {
                Some(Class::Solid) => solid.push(owner.uid.clone()),
                Some(Class::Dangling) => dangling.push(owner.uid.clone()),
                Some(Class::Waiting) => waiting.push(owner.uid.clone()),
                // A cluster-scoped object cannot have a namespaced owner: nothing to do.
                None => return Ok(Outcome::Forget),
            }
        }
        let (api, _) = self.api(&node.identity)?;
        let name = &node.identity.name;
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Outcome::Done);
            }
            // Keep the live owners; drop the missing ones and those waiting for us.
            let kept: Vec<&OwnerReference> = owners
                .iter()
                .filter(|o| !dangling.contains(&o.uid) && !waiting.contains(&o.uid))
                .collect();
            let patch =
                json!({"metadata": {"ownerReferences": kept, "resourceVersion": latest.metadata.resource_version}});
            ignore_gone(
                api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await,
            )?;
            return Ok(Outcome::Done);
        }
        let has_dependents = self
            .graph()
            .get(&node.identity.uid)
            .is_some_and(|n| !n.dependents.is_empty());
        let policy = if !waiting.is_empty() && has_dependents {
            // Deleted in the foreground as well, so the chain waits for its end. A
            // dependent already waiting for its own dependents could close a cycle:
            // stop blocking the owners then.
            let cycle = {
                let graph = self.graph();
                graph.get(&node.identity.uid).is_some_and(|n| {
                    n.dependents
                        .iter()
                        .any(|d| graph.get(d).is_some_and(|d| d.deleting_dependents))
                })
            };
            if cycle {
                let unblocked: Vec<OwnerReference> = owners
                    .iter()
                    .map(|o| {
                        let mut o = o.clone();
                        if waiting.contains(&o.uid) {
                            o.block_owner_deletion = Some(false);
                        }
                        o
                    })
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": unblocked, "resourceVersion": latest.metadata.resource_version}});
                ignore_gone(
                    api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await,
                )?;
            }
            PropagationPolicy::Foreground
        } else if has_finalizer(&latest.metadata, ORPHAN) {
            PropagationPolicy::Orphan
        } else if has_finalizer(&latest.metadata, FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(node.identity.uid.clone()),
                resource_version: latest.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        tracing::debug!(object = ?node.identity, "garbage collector: deleting");
        ignore_gone(api.delete(name, &params).await.map(|_| ()))?;
        Ok(Outcome::Done)
    }

    /// Whether an owner exists (`solid`), is gone (`dangling`) or is waiting for
    /// its dependents; `None` for a reference that can never be valid.
    async fn classify(&self, item: &Identity, owner: &OwnerReference) -> Result<Option<Class>, Error> {
        let cluster = Identity::of_owner(owner, None);
        let local = Identity::of_owner(owner, item.namespace.as_deref());
        if self.is_absent(&cluster) || self.is_absent(&local) {
            return Ok(Some(Class::Dangling));
        }
        let resource = self
            .resource(&owner.api_version, &owner.kind)
            .ok_or_else(|| Error::UnknownKind(format!("{}/{}", owner.api_version, owner.kind)))?;
        if item.namespace.is_none() && resource.namespaced {
            return Ok(None);
        }
        let identity = if resource.namespaced { local } else { cluster };
        match self.latest(&identity).await? {
            None => {
                self.remember_absent(identity);
                Ok(Some(Class::Dangling))
            }
            Some(found)
                if found.metadata.deletion_timestamp.is_some() && has_finalizer(&found.metadata, FOREGROUND) =>
            {
                Ok(Some(Class::Waiting))
            }
            Some(_) => Ok(Some(Class::Solid)),
        }
    }

    /// A foreground deletion: done (finalizer removed) when no dependent blocks
    /// it, else its blocking dependents are deleted (`processDeletingDependentsItem`).
    async fn finish_foreground(&self, node: &Node) -> Result<Outcome, Error> {
        let blocking: Vec<(String, bool)> = {
            let graph = self.graph();
            let Some(current) = graph.get(&node.identity.uid) else {
                return Ok(Outcome::Done);
            };
            current
                .dependents
                .iter()
                .filter_map(|d| graph.get(d))
                .filter(|d| {
                    d.owners
                        .iter()
                        .any(|o| o.uid == node.identity.uid && o.block_owner_deletion == Some(true))
                })
                .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
                .collect()
        };
        if blocking.is_empty() {
            self.remove_finalizer(&node.identity, FOREGROUND).await?;
            return Ok(Outcome::Done);
        }
        for (dependent, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.to_delete.add(dependent);
            }
        }
        Ok(Outcome::Done)
    }

    /// `attemptToOrphanWorker`: every dependent loses its reference to the
    /// owner, then the owner its `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Outcome {
        let snapshot = {
            let graph = self.graph();
            graph.get(uid).map(|n| {
                let dependents: Vec<Identity> = n
                    .dependents
                    .iter()
                    .filter_map(|d| graph.get(d))
                    .map(|d| d.identity.clone())
                    .collect();
                (n.identity.clone(), dependents)
            })
        };
        let Some((owner, dependents)) = snapshot else {
            return Outcome::Done;
        };
        let results = futures_util::stream::iter(dependents)
            .map(|dependent| {
                let owner_uid = owner.uid.clone();
                async move { self.release(&dependent, &owner_uid).await }
            })
            .buffer_unordered(ORPHAN_WORKERS * 4)
            .collect::<Vec<_>>()
            .await;
        let outcome = match results.into_iter().find_map(Result::err) {
            Some(err) => Err(err),
            None => self.remove_finalizer(&owner, ORPHAN).await,
        };
        match outcome {
            Ok(()) => Outcome::Done,
            Err(err) => {
                tracing::debug!(error = %err, object = ?owner, "garbage collector: orphaning will retry");
                Outcome::Retry
            }
        }
    }

    /// Removes the reference to `owner_uid` from a dependent.
    async fn release(&self, dependent: &Identity, owner_uid: &str) -> Result<(), Error> {
        for _ in 0..5 {
            let Some(latest) = self.latest(dependent).await? else {
                return Ok(());
            };
            let owners = latest.metadata.owner_references.clone().unwrap_or_default();
            if !owners.iter().any(|o| o.uid == owner_uid) {
                return Ok(());
            }
            let kept: Vec<&OwnerReference> = owners.iter().filter(|o| o.uid != owner_uid).collect();
            let patch = json!({"metadata": {
                "ownerReferences": if kept.is_empty() { json!(null) } else { json!(kept) },
                "resourceVersion": latest.metadata.resource_version,
            }});
            let (api, _) = self.api(dependent)?;
            match api
                .patch_metadata(&dependent.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return ignore_gone::<()>(Err(err)),
            }
        }
        Err(Error::Api(kube::Error::Api(Box::new(conflict()))))
    }

    /// Removes one finalizer from an object, retrying on conflicts.
    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), Error> {
        for _ in 0..5 {
            let Some(latest) = self.latest(identity).await? else {
                return Ok(());
            };
            if !has_finalizer(&latest.metadata, finalizer) {
                return Ok(());
            }
            let rest: Vec<&String> = latest
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != finalizer)
                .collect();
            let patch = json!({"metadata": {
                "finalizers": if rest.is_empty() { json!(null) } else { json!(rest) },
                "resourceVersion": latest.metadata.resource_version,
            }});
            let (api, _) = self.api(identity)?;
            match api
                .patch_metadata(&identity.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(err) => return ignore_gone::<()>(Err(err)),
            }
        }
        Err(Error::Api(kube::Error::Api(Box::new(conflict()))))
    }
}

fn conflict() -> kube::core::Status {
    kube::core::Status::failure("the object keeps changing", "Conflict").with_code(409)
}

/// A 404 means the work is done.
fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

enum Class {
    Solid,
    Dangling,
    Waiting,
}

/// The deletable resources the API serves, by (group, kind): the preferred
/// version of each, events left out (`GetDeletableResources`).
async fn discover(client: &kube::Client) -> Result<HashMap<(String, String), Resource>, kube::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => discovery,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    let mut found = HashMap::new();
    for group in discovery.groups() {
        for (api, capabilities) in group.recommended_resources() {
            let can = |verb: &str| capabilities.supports_operation(verb);
            if !(can(verbs::LIST) && can(verbs::WATCH) && can(verbs::DELETE)) || api.plural == "events" {
                continue;
            }
            let namespaced = capabilities.scope == Scope::Namespaced;
            found.insert((api.group.clone(), api.kind.clone()), Resource { api, namespaced });
        }
    }
    Ok(found)
}

/// How the graph builder hears of one resource from a shared informer: it feeds
/// `Change`s and says once on `listed` when it has seen the first complete list.
type Feed =
    fn(&Informers, ApiResource, mpsc::UnboundedSender<Change>, mpsc::UnboundedSender<()>) -> BoxFuture<'static, ()>;

/// The shared informer's feed for a kind other loops of the process watch too;
/// `None` for the kinds only the collector watches.
fn shared_informer(resource: &Resource) -> Option<Feed> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    use k8s_openapi::api::{coordination::v1 as coordination, discovery::v1 as discovery, policy::v1 as policy};

    fn feed<K: Kind>(
        informers: &Informers,
        api: ApiResource,
        changes: mpsc::UnboundedSender<Change>,
        listed: mpsc::UnboundedSender<()>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(follow_informer(informers.get::<K>(), api, changes, listed))
    }
    let api = &resource.api;
    Some(match (api.group.as_str(), api.kind.as_str()) {
        ("", "Pod") => feed::<core::Pod>,
        ("", "Node") => feed::<core::Node>,
        ("", "Namespace") => feed::<core::Namespace>,
        ("", "Service") => feed::<core::Service>,
        ("", "Endpoints") => feed::<core::Endpoints>,
        ("", "ServiceAccount") => feed::<core::ServiceAccount>,
        ("", "PersistentVolumeClaim") => feed::<core::PersistentVolumeClaim>,
        ("", "ReplicationController") => feed::<core::ReplicationController>,
        ("apps", "Deployment") => feed::<apps::Deployment>,
        ("apps", "ReplicaSet") => feed::<apps::ReplicaSet>,
        ("apps", "StatefulSet") => feed::<apps::StatefulSet>,
        ("apps", "DaemonSet") => feed::<apps::DaemonSet>,
        ("apps", "ControllerRevision") => feed::<apps::ControllerRevision>,
        ("batch", "Job") => feed::<batch::Job>,
        ("batch", "CronJob") => feed::<batch::CronJob>,
        ("discovery.k8s.io", "EndpointSlice") => feed::<discovery::EndpointSlice>,
        ("coordination.k8s.io", "Lease") => feed::<coordination::Lease>,
        ("policy", "PodDisruptionBudget") => feed::<policy::PodDisruptionBudget>,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => feed::<CustomResourceDefinition>,
        _ => return None,
    })
}

/// Feeds the graph builder from a shared informer: its cache as the first list,
/// then every change. The informer streams deleted objects too: one its cache no
/// longer holds (under that uid) is gone.
async fn follow_informer<K: Kind>(
    informer: Informer<K>,
    api: ApiResource,
    changes: mpsc::UnboundedSender<Change>,
    listed: mpsc::UnboundedSender<()>,
) {
    let identity = |meta: &ObjectMeta| Identity {
        api_version: api.api_version.clone(),
        kind: api.kind.clone(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
    };
    let upsert = |object: &K| Change::Upsert {
        identity: identity(object.meta()),
        meta: Box::new(object.meta().clone()),
    };
    // Subscribed before the cache is read, so no change falls in between.
    let mut objects = std::pin::pin!(informer.subscribe());
    informer.ready().await;
    let store = informer.store().clone();
    for object in store.state() {
        if changes.send(upsert(&object)).is_err() {
            return;
        }
    }
    let _ = listed.send(());
    while let Some(object) = objects.next().await {
        let held = store.get(&ObjectRef::from_obj(&*object));
        let change = match held {
            Some(held) if held.meta().uid == object.meta().uid => upsert(&object),
            _ => Change::Delete {
                identity: identity(object.meta()),
                virtual_: false,
            },
        };
        if changes.send(change).is_err() {
            return;
        }
    }
}

/// One resource's metadata watch, feeding the graph builder; `listed` hears of
/// the first complete list.
async fn watch_resource(
    client: kube::Client,
    resource: Resource,
    changes: mpsc::UnboundedSender<Change>,
    listed: mpsc::UnboundedSender<()>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource.api);
    let key = (resource.api.group.clone(), resource.api.kind.clone());
    let identity = |object: &PartialObjectMeta<DynamicObject>| Identity {
        api_version: resource.api.api_version.clone(),
        kind: resource.api.kind.clone(),
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: object.metadata.namespace.clone(),
        uid: object.metadata.uid.clone().unwrap_or_default(),
    };
    let mut events = std::pin::pin!(metadata_watch(api, watcher::Config::default()).default_backoff());
    let mut uids = HashSet::new();
    let mut first = true;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::debug!(resource = %resource.api.plural, error = %err, "garbage collector: watch failed, retrying");
                continue;
            }
        };
        let sent = match event {
            Event::Init => {
                uids.clear();
                Ok(())
            }
            Event::InitApply(object) => {
                uids.insert(object.metadata.uid.clone().unwrap_or_default());
                changes.send(Change::Upsert {
                    identity: identity(&object),
                    meta: Box::new(object.metadata),
                })
            }
            Event::Apply(object) => changes.send(Change::Upsert {
                identity: identity(&object),
                meta: Box::new(object.metadata),
            }),
            Event::Delete(object) => changes.send(Change::Delete {
                identity: identity(&object),
                virtual_: false,
            }),
            Event::InitDone => {
                let sent = changes.send(Change::Listed {
                    resource: key.clone(),
                    uids: std::mem::take(&mut uids),
                });
                if first {
                    let _ = listed.send(());
                    first = false;
                }
                sent
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

fn metadata_watch(
    api: Api<PartialObjectMeta<DynamicObject>>,
    config: watcher::Config,
) -> impl futures_util::Stream<Item = Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>> + Send {
    watcher::watcher(api, config)
}

/// What became of a work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Finished: its failure count is forgotten.
    Done,
    /// Finished for good; same as `Done`.
    Forget,
    /// Failed or not yet decidable: again after a back-off.
    Retry,
}

/// A deduplicating work queue with per-item exponential back-off, as client-go's
/// rate-limited workqueue: an item added while queued is queued once; added
/// while being processed, it is processed again afterwards, never concurrently.
struct Queue<T> {
    tx: mpsc::UnboundedSender<(T, bool)>,
}

struct QueueRunner<T> {
    rx: mpsc::UnboundedReceiver<(T, bool)>,
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> Queue<T> {
    fn new() -> (Queue<T>, QueueRunner<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue { tx }, QueueRunner { rx })
    }

    fn add(&self, item: T) {
        let _ = self.tx.send((item, false));
    }

    /// Adds after the item's back-off.
    fn add_rate_limited(&self, item: T) {
        let _ = self.tx.send((item, true));
    }
}

/// Back-off after `failures` failures: 5 ms doubling up to 1000 s.
fn backoff(failures: u32) -> Duration {
    let millis = 5u64.saturating_mul(1u64 << failures.min(30));
    Duration::from_millis(millis).min(Duration::from_secs(1000))
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> QueueRunner<T> {
    /// Processes items with up to `workers` at once, once `ready` is true.
    async fn run(
        mut self,
        workers: usize,
        mut ready: watch::Receiver<bool>,
        handler: impl Fn(T) -> BoxFuture<'static, Outcome>,
    ) {
        if ready.wait_for(|r| *r).await.is_err() {
            return;
        }
        let mut queued: VecDeque<T> = VecDeque::new();
        let mut dirty: HashSet<T> = HashSet::new();
        let mut processing: HashSet<T> = HashSet::new();
        let mut failures: HashMap<T, u32> = HashMap::new();
        let mut delayed: BTreeMap<(Instant, u64), T> = BTreeMap::new();
        let mut sequence = 0u64;
        let mut running = FuturesUnordered::new();
        let enqueue = |item: T, queued: &mut VecDeque<T>, dirty: &mut HashSet<T>, processing: &HashSet<T>| {
            if dirty.insert(item.clone()) && !processing.contains(&item) {
                queued.push_back(item);
            }
        };
        loop {
            while running.len() < workers
                && let Some(item) = queued.pop_front()
            {
                dirty.remove(&item);
                processing.insert(item.clone());
                let work = handler(item.clone());
                running.push(async move { (item, work.await) });
            }
            let next_delay = delayed.keys().next().map(|(at, _)| *at);
            tokio::select! {
                message = self.rx.recv() => match message {
                    Some((item, false)) => enqueue(item, &mut queued, &mut dirty, &processing),
                    Some((item, true)) => {
                        let count = failures.entry(item.clone()).or_insert(0);
                        let at = Instant::now() + backoff(*count);
                        *count += 1;
                        sequence += 1;
                        delayed.insert((at, sequence), item);
                    }
                    None => return,
                },
                Some((item, outcome)) = running.next(), if !running.is_empty() => {
                    processing.remove(&item);
                    match outcome {
                        Outcome::Done | Outcome::Forget => {
                            failures.remove(&item);
                        }
                        Outcome::Retry => {
                            let count = failures.entry(item.clone()).or_insert(0);
                            let at = Instant::now() + backoff(*count);
                            *count += 1;
                            sequence += 1;
                            delayed.insert((at, sequence), item.clone());
                        }
                    }
                    if dirty.contains(&item) {
                        queued.push_back(item);
                    }
                }
                _ = sleep_until(next_delay), if next_delay.is_some() => {
                    let now = Instant::now();
                    while let Some(entry) = delayed.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let item = entry.remove();
                        enqueue(item, &mut queued, &mut dirty, &processing);
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
