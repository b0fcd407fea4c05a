//! Node IPAM: gives every node a pod CIDR carved from `--cluster-cidr`, as
//! kube-controller-manager's `nodeipam` controller does with its range
//! allocator: a /24 per node (the whole range when it is smaller than that),
//! written to `spec.podCIDR` and `spec.podCIDRs`, never handed out twice, and
//! released when the node is deleted. The allocation is rebuilt from the nodes'
//! own `podCIDR`s when the loop starts, so restarts and leader changes never
//! reassign a range. A node that already has a pod CIDR keeps it.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use super::{Context, Error, drain};

/// The prefix length of a node's pod CIDR (`--node-cidr-mask-size`'s default).
const NODE_BITS: u8 = 24;

/// Which node ranges of the cluster CIDR are taken, and by whom.
#[derive(Debug)]
pub struct Allocator {
    network: u32,
    cluster_bits: u8,
    node_bits: u8,
    used: BTreeSet<u32>,
    by_node: HashMap<String, u32>,
    /// Where the next search starts (round robin, as upstream's cidrset).
    next: u32,
}

impl Allocator {
    pub fn new(network: Ipv4Addr, cluster_bits: u8) -> Allocator {
        let node_bits = NODE_BITS.max(cluster_bits);
        if node_bits != NODE_BITS {
            tracing::warn!(
                cluster_bits,
                "the cluster CIDR is smaller than a /24: it is one node's pod CIDR"
            );
        }
        let mask = if cluster_bits == 0 {
            0
        } else {
            u32::MAX << (32 - cluster_bits)
        };
        Allocator {
            network: u32::from(network) & mask,
            cluster_bits,
            node_bits,
            used: BTreeSet::new(),
            by_node: HashMap::new(),
            next: 0,
        }
    }

    /// How many node ranges the cluster CIDR holds.
    fn size(&self) -> u32 {
        1u32 << (self.node_bits - self.cluster_bits).min(31)
    }

    fn cidr(&self, index: u32) -> String {
        let base = self.network + (index << (32 - self.node_bits));
        format!("{}/{}", Ipv4Addr::from(base), self.node_bits)
    }

    /// The index of a node range of ours, `None` for anything else.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if bits.parse::<u8>().ok()? != self.node_bits {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.network)?;
        let index = offset >> (32 - self.node_bits);
        (offset.trailing_zeros() >= u32::from(32 - self.node_bits) && index < self.size()).then_some(index)
    }

    /// Records that `node` has `cidr` (upstream's `occupyCIDRs`).
    pub fn occupy(&mut self, node: &str, cidr: &str) {
        let Some(index) = self.index_of(cidr) else { return };
        if let Some(old) = self.by_node.insert(node.to_string(), index)
            && old != index
            && !self.by_node.values().any(|i| *i == old)
        {
            self.used.remove(&old);
        }
        self.used.insert(index);
    }

    /// The range held for `node`, allocating one if it has none; `None` when
    /// the cluster CIDR is exhausted.
    pub fn allocate(&mut self, node: &str) -> Option<String> {
        if let Some(index) = self.by_node.get(node) {
            return Some(self.cidr(*index));
        }
        let size = self.size();
        let index = (0..size)
            .map(|i| (self.next + i) % size)
            .find(|i| !self.used.contains(i))?;
        self.next = (index + 1) % size;
        self.used.insert(index);
        self.by_node.insert(node.to_string(), index);
        Some(self.cidr(index))
    }

    /// Frees whatever `node` held.
    pub fn release(&mut self, node: &str) {
        if let Some(index) = self.by_node.remove(node)
            && !self.by_node.values().any(|i| *i == index)
        {
            self.used.remove(&index);
        }
    }

    /// Forgets everything but what these nodes hold (after a missed deletion).
    fn rebuild<'a>(&mut self, nodes: impl Iterator<Item = (&'a str, &'a str)>) {
        self.used.clear();
        self.by_node.clear();
        for (node, cidr) in nodes {
            self.occupy(node, cidr);
        }
    }
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref()?.pod_cidr.as_deref().filter(|c| !c.is_empty())
}

pub async fn run(context: Context) {
    let nodes = context.informers.synced::<Node>().await;
    let (network, bits) = context.settings.cluster_cidr;
    let mut allocator = Allocator::new(network, bits);
    for node in nodes.store().state() {
        if let (Some(name), Some(cidr)) = (node.metadata.name.as_deref(), pod_cidr(&node)) {
            allocator.occupy(name, cidr);
        }
    }
    let allocator = Arc::new(Mutex::new(allocator));
    // A deleted node's range is free again (the controller never sees it: it
    // reconciles only objects in the cache), and nodes still waiting for one
    // get another look.
    let (retry, waiting) = tokio::sync::mpsc::unbounded_channel::<ObjectRef<Node>>();
    let released = {
        let (allocator, store) = (allocator.clone(), nodes.store().clone());
        nodes.subscribe().inspect(move |node: &Arc<Node>| {
            if store.get(&ObjectRef::from_obj(&**node)).is_none()
                && let Some(name) = node.metadata.name.as_deref()
            {
                allocator.lock().unwrap_or_else(PoisonError::into_inner).release(name);
                for waiting in store.state().iter().filter(|n| pod_cidr(n).is_none()) {
                    let _ = retry.send(ObjectRef::from_obj(&**waiting));
                }
            }
        })
    };
    let controller = Controller::for_shared_stream(released, nodes.store().clone())
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(waiting))
        .run(
            {
                let store = nodes.store().clone();
                move |node, context| reconcile(node, context, allocator.clone(), store.clone())
            },
            |_, _, _| Action::requeue(Duration::from_secs(2)),
            Arc::new(context),
        );
    drain(controller).await;
}

async fn reconcile(
    node: Arc<Node>,
    context: Arc<Context>,
    allocator: Arc<Mutex<Allocator>>,
    nodes: Store<Node>,
) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let cidr = {
        let mut allocator = allocator.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cidr) = pod_cidr(&node) {
            allocator.occupy(&name, cidr);
            return Ok(Action::await_change());
        }
        let mut cidr = allocator.allocate(&name);
        if cidr.is_none() {
            // Maybe a deletion went unseen: recount from the nodes there are.
            let all = nodes.state();
            allocator.rebuild(
                all.iter()
                    .filter_map(|n| Some((n.metadata.name.as_deref()?, pod_cidr(n)?))),
            );
            cidr = allocator.allocate(&name);
        }
        cidr
    };
    let Some(cidr) = cidr else {
        tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR for the node");
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match Api::<Node>::all(context.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "pod CIDR assigned");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            allocator.lock().unwrap_or_else(PoisonError::into_inner).release(&name);
            Ok(Action::await_change())
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_unique_reused_after_release_and_rebuilt() {
        let mut a = Allocator::new(Ipv4Addr::new(10, 42, 0, 0), 16);
        assert_eq!(a.allocate("n1").as_deref(), Some("10.42.0.0/24"));
        assert_eq!(a.allocate("n1").as_deref(), Some("10.42.0.0/24"), "stable per node");
        a.occupy("n3", "10.42.1.0/24");
        assert_eq!(a.allocate("n2").as_deref(), Some("10.42.2.0/24"));
        a.release("n1");
        // Round robin: freed ranges come back after the untried ones.
        assert_eq!(a.allocate("n4").as_deref(), Some("10.42.3.0/24"));
        // Ranges outside the cluster CIDR or of another size are not ours.
        a.occupy("x", "10.43.0.0/24");
        a.occupy("y", "10.42.9.0/25");
        assert!(!a.used.contains(&9));
        assert_eq!(a.index_of("10.42.255.0/24"), Some(255));
        assert_eq!(a.index_of("10.42.1.5/24"), None);
    }

    #[test]
    fn exhaustion_is_reported_and_small_ranges_hold_one_node() {
        let mut a = Allocator::new(Ipv4Addr::new(10, 0, 0, 0), 23);
        assert!(a.allocate("a").is_some() && a.allocate("b").is_some());
        assert_eq!(a.allocate("c"), None);
        a.release("a");
        assert_eq!(a.allocate("c").as_deref(), Some("10.0.0.0/24"));
        let mut tiny = Allocator::new(Ipv4Addr::new(192, 168, 5, 0), 26);
        assert_eq!(tiny.allocate("only").as_deref(), Some("192.168.5.0/26"));
        assert_eq!(tiny.allocate("second"), None);
    }
}
