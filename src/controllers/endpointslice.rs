//! The EndpointSlice controller: the `discovery.k8s.io/v1` EndpointSlices of
//! every Service with a selector, as kube-controller-manager's
//! `endpointslice` controller keeps them. Per address family of the Service,
//! each selected pod with an IP of that family (finished pods left out,
//! terminating ones kept) is an endpoint with `ready`, `serving` and
//! `terminating` conditions, its node, zone, `targetRef` and (for pods in the
//! Service's subdomain) hostname. Endpoints are grouped by the ports they serve
//! (named `targetPort`s resolved per pod), at most 100 to a slice. Slices carry
//! the Service's labels plus `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! and the Service as their controller owner (the garbage collector removes them
//! with it). Updates are minimal: endpoints stay in the slice they are in, new
//! ones fill slices that are written anyway before others, slices no longer
//! needed are reused before new ones are created, and nothing is written when
//! nothing changed. A Service without endpoints keeps one empty placeholder
//! slice per family. Like upstream's slice tracker, the loop remembers its own
//! writes and waits for the cache to show them before planning again, so a
//! lagging cache never makes it create duplicates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use super::endpoints::{HEADLESS_LABEL, family_of, retry_after};
use super::endpoints::{
    Membership, find_port, hostname_for, is_headless, pod_ips, selected_pods, selector_of, should_be_in_endpoints,
    target_ref,
};
use super::{Context, Error, drain, pods};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// `--max-endpoints-per-slice`'s default.
const MAX_ENDPOINTS: usize = 100;
/// How long an expectation about our own write is kept before it is trusted away.
const EXPECTATION_TTL: Duration = Duration::from_secs(10);
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The loop's caches and what it expects them to show.
struct State {
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// Per Service, the writes the cache should show.
    expected: Mutex<HashMap<ObjectRef<Service>, Expectations>>,
}

/// Slice name → the resourceVersion this loop wrote (None: it deleted the slice), and when.
type Expectations = HashMap<String, (Option<u64>, Instant)>;

pub async fn run(context: Context) {
    let services = context.informers.synced::<Service>().await;
    let pods = context.informers.synced::<Pod>().await;
    let slices = context.informers.synced::<EndpointSlice>().await;
    let nodes = context.informers.synced::<Node>().await;
    let membership = Arc::new(Membership::new(services.store().clone(), pods.store().clone()));
    let state = Arc::new(State {
        pods: pods.store().clone(),
        slices: slices.store().clone(),
        nodes: nodes.store().clone(),
        expected: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_shared_stream(services.subscribe(), services.store().clone())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| membership.services_of(&pod))
        .watches_shared_stream(slices.subscribe(), |slice: Arc<EndpointSlice>| {
            let labels = slice.metadata.labels.as_ref()?;
            if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
                return None;
            }
            let service = labels.get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::<Service>::new(service).within(slice.metadata.namespace.as_deref()?))
        })
        .run(
            move |service, context| reconcile(service, context, state.clone()),
            |_, err, _| Action::requeue(retry_after(err)),
            Arc::new(context),
        );
    drain(controller).await;
}

impl State {
    /// Whether the cache shows every write this loop made for the Service
    /// (expectations older than [`EXPECTATION_TTL`] are dropped).
    fn caught_up(&self, service: &ObjectRef<Service>) -> bool {
        let mut expected = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        expected.retain(|_, slices| {
            slices.retain(|_, (_, at)| at.elapsed() < EXPECTATION_TTL);
            !slices.is_empty()
        });
        let Some(slices) = expected.get_mut(service) else {
            return true;
        };
        let namespace = service.namespace.clone().unwrap_or_default();
        slices.retain(|name, (version, _)| {
            let cached = self.slices.get(&ObjectRef::new(name).within(&namespace));
            let seen = match (version, cached) {
                (None, cached) => cached.is_none(),
                (Some(version), Some(slice)) => resource_version(&slice) >= *version,
                (Some(_), None) => false,
            };
            !seen
        });
        slices.is_empty()
    }

    fn expect(&self, service: &ObjectRef<Service>, name: &str, version: Option<u64>) {
        let mut expected = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        expected
            .entry(service.clone())
            .or_default()
            .insert(name.to_string(), (version, Instant::now()));
    }
}

fn resource_version(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>, state: Arc<State>) -> Result<Action, Error> {
    let spec = service.spec.clone().unwrap_or_default();
    let Some(selector) = selector_of(&service) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() || spec.type_.as_deref() == Some("ExternalName") {
        return Ok(Action::await_change());
    }
    let key = ObjectRef::from_obj(&*service);
    if !state.caught_up(&key) {
        // Our own writes' events bring us back; this is only a backstop.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let name = service.metadata.name.clone().unwrap_or_default();
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let existing: Vec<Arc<EndpointSlice>> = state
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| {
            let labels = s.metadata.labels.clone().unwrap_or_default();
            labels.get(SERVICE_NAME_LABEL) == Some(&name)
                && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(CONTROLLER_NAME)
        })
        .collect();
    let selected = selected_pods(&state.pods, &namespace, &selector);
    let desired = Desired {
        labels: slice_labels(&service),
        owner: owner_reference(&service),
    };
    let mut plan = Plan::default();
    let families = address_families(&service);
    for family in &families {
        let endpoints = desired_endpoints(&service, family, &selected, &state.nodes);
        let mine: Vec<Arc<EndpointSlice>> = existing.iter().filter(|s| s.address_type == *family).cloned().collect();
        plan_family(family, endpoints, mine, &desired, &mut plan);
    }
    plan.deletes
        .extend(existing.iter().filter(|s| !families.contains(&s.address_type)).cloned());
    apply(&context.client, &namespace, &name, &key, &desired, plan, &state).await?;
    Ok(Action::await_change())
}

/// The Service's address families as slice address types (`IPv4`, `IPv6`).
fn address_families(service: &Service) -> Vec<String> {
    let spec = service.spec.as_ref();
    let mut families: Vec<String> = spec
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f == "IPv4" || f == "IPv6")
        .collect();
    families.dedup();
    if families.is_empty() {
        families.push(super::endpoints::service_family(service).to_string());
    }
    families
}

/// Labels every slice of the Service carries: the Service's own (but the
/// reserved ones), the headless marker, the service name and our name.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.to_string(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string());
    labels
}

fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_string(),
        kind: "Service".to_string(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A port set (as a map key) → its ports and endpoints by identity.
type Groups = BTreeMap<String, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>;

fn port_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// An endpoint's identity across updates: its address and pod.
fn endpoint_key(endpoint: &Endpoint) -> String {
    let address = endpoint.addresses.first().cloned().unwrap_or_default();
    let pod = endpoint
        .target_ref
        .as_ref()
        .and_then(|t| t.uid.clone())
        .unwrap_or_default();
    format!("{address}/{pod}")
}

/// The endpoints of one family, grouped by the ports they serve.
fn desired_endpoints(service: &Service, family: &str, selected: &[Arc<Pod>], nodes: &Store<Node>) -> Groups {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.unwrap_or_default();
    let mut groups = Groups::new();
    for pod in selected {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ips(pod).into_iter().find(|ip| family_of(ip) == family) else {
            continue;
        };
        let serving = pods::is_ready(pod);
        let terminating = pods::is_deleting(pod);
        // "ready" is never true for a terminating pod unless not-ready
        // addresses are published.
        let ready = publish_not_ready || (serving && !terminating);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let zone = node_name
            .as_ref()
            .and_then(|n| nodes.get(&ObjectRef::new(n)))
            .and_then(|node| node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(pod, service),
            node_name,
            zone,
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(find_port(pod, port)?),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let group = groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()));
        group.1.insert(endpoint_key(&endpoint), endpoint);
    }
    groups
}

/// What the Service's slices should all carry.
struct Desired {
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
}

/// One slice to keep: an existing one (maybe rewritten) or a new one.
#[derive(Debug)]
struct Work {
    base: Option<Arc<EndpointSlice>>,
    family: String,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
    dirty: bool,
}

#[derive(Debug, Default)]
struct Plan {
    writes: Vec<Work>,
    deletes: Vec<Arc<EndpointSlice>>,
}

fn ports_of(slice: &EndpointSlice) -> Vec<EndpointPort> {
    slice.ports.clone().unwrap_or_default()
}

/// Plans one family's slices from the desired endpoint groups and the family's
/// existing slices.
fn plan_family(family: &str, groups: Groups, existing: Vec<Arc<EndpointSlice>>, desired: &Desired, plan: &mut Plan) {
    let mut existing = existing;
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_ports: HashMap<String, Vec<Arc<EndpointSlice>>> = HashMap::new();
    for slice in existing {
        by_ports.entry(port_key(&ports_of(&slice))).or_default().push(slice);
    }
    let stale_meta = |slice: &EndpointSlice| {
        slice.metadata.labels.as_ref() != Some(&desired.labels)
            || slice.metadata.owner_references.as_deref() != Some(std::slice::from_ref(&desired.owner))
    };
    let mut works: Vec<Work> = Vec::new();
    let no_endpoints = groups.is_empty();
    for (key, (ports, mut wanted)) in groups {
        let mut group: Vec<Work> = Vec::new();
        for slice in by_ports.remove(&key).unwrap_or_default() {
            let mut endpoints = Vec::new();
            let mut dirty = stale_meta(&slice);
            for endpoint in &slice.endpoints {
                match wanted.remove(&endpoint_key(endpoint)) {
                    Some(want) => {
                        dirty |= want != *endpoint;
                        endpoints.push(want);
                    }
                    None => dirty = true,
                }
            }
            if endpoints.is_empty() {
                plan.deletes.push(slice);
                continue;
            }
            group.push(Work {
                base: Some(slice),
                family: family.to_string(),
                ports: ports.clone(),
                endpoints,
                dirty,
            });
        }
        let mut rest: VecDeque<Endpoint> = wanted.into_values().collect();
        // Fill slices written anyway first, then the others, then new ones.
        for dirty_first in [true, false] {
            for work in group.iter_mut().filter(|w| w.dirty == dirty_first) {
                while work.endpoints.len() < MAX_ENDPOINTS {
                    let Some(endpoint) = rest.pop_front() else { break };
                    work.endpoints.push(endpoint);
                    work.dirty = true;
                }
            }
        }
        while !rest.is_empty() {
            let take = rest.len().min(MAX_ENDPOINTS);
            group.push(Work {
                base: None,
                family: family.to_string(),
                ports: ports.clone(),
                endpoints: rest.drain(..take).collect(),
                dirty: true,
            });
        }
        works.extend(group);
    }
    // Slices whose port set is no longer wanted.
    let mut unused: Vec<Arc<EndpointSlice>> = by_ports.into_values().flatten().collect();
    unused.append(&mut plan.deletes);
    unused.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if no_endpoints {
        // One empty placeholder per family: keep a fitting one as it is.
        let placeholder = unused
            .iter()
            .position(|s| s.endpoints.is_empty() && ports_of(s).is_empty() && !stale_meta(s));
        match placeholder {
            Some(at) => {
                unused.remove(at);
            }
            None => works.push(Work {
                base: None,
                family: family.to_string(),
                ports: Vec::new(),
                endpoints: Vec::new(),
                dirty: true,
            }),
        }
    }
    // Reuse unneeded slices for new ones: an update instead of a create and a delete.
    for work in works.iter_mut().filter(|w| w.base.is_none()) {
        if let Some(slice) = unused.pop() {
            work.base = Some(slice);
        }
    }
    plan.deletes.extend(unused);
    plan.writes.extend(works.into_iter().filter(|w| w.dirty));
}

/// Carries the plan out: creates, then updates, then deletes (so endpoints
/// never vanish in between), remembering each write for [`State::caught_up`].
async fn apply(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    key: &ObjectRef<Service>,
    desired: &Desired,
    plan: Plan,
    state: &State,
) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let (creates, updates): (Vec<Work>, Vec<Work>) = plan.writes.into_iter().partition(|w| w.base.is_none());
    for work in creates.into_iter().chain(updates) {
        let mut slice = EndpointSlice {
            metadata: match &work.base {
                Some(base) => ObjectMeta {
                    name: base.metadata.name.clone(),
                    namespace: base.metadata.namespace.clone(),
                    resource_version: base.metadata.resource_version.clone(),
                    annotations: base.metadata.annotations.clone(),
                    ..Default::default()
                },
                None => ObjectMeta {
                    generate_name: Some(format!("{service}-")),
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                },
            },
            address_type: work.family.clone(),
            endpoints: work.endpoints,
            ports: (!work.ports.is_empty()).then_some(work.ports),
        };
        slice.metadata.labels = Some(desired.labels.clone());
        slice.metadata.owner_references = Some(vec![desired.owner.clone()]);
        let written = match &work.base {
            Some(base) => {
                api.replace(
                    base.metadata.name.as_deref().unwrap_or_default(),
                    &PostParams::default(),
                    &slice,
                )
                .await
            }
            None => api.create(&PostParams::default(), &slice).await,
        };
        let written = match written {
            Ok(written) => written,
            // The namespace is terminating: nothing to keep.
            Err(kube::Error::Api(status)) if status.code == 403 && work.base.is_none() => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        if let Some(name) = written.metadata.name.as_deref() {
            state.expect(key, name, Some(resource_version(&written)));
        }
    }
    for slice in plan.deletes {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => state.expect(key, &name, None),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Desired {
        Desired {
            labels: BTreeMap::from([
                (SERVICE_NAME_LABEL.to_string(), "web".to_string()),
                (MANAGED_BY_LABEL.to_string(), CONTROLLER_NAME.to_string()),
            ]),
            owner: OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: "web".into(),
                uid: "svc-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        }
    }

    fn endpoint(i: usize) -> Endpoint {
        serde_json::from_value(json!({
            "addresses": [format!("10.42.{}.{}", i / 250, i % 250 + 1)],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}")},
        }))
        .unwrap()
    }

    fn ports(port: i32) -> Vec<EndpointPort> {
        vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]
    }

    fn groups(port: i32, range: std::ops::Range<usize>) -> Groups {
        let endpoints = range.map(endpoint).map(|e| (endpoint_key(&e), e)).collect();
        Groups::from([(port_key(&ports(port)), (ports(port), endpoints))])
    }

    fn slice(name: &str, port: Option<i32>, range: std::ops::Range<usize>) -> Arc<EndpointSlice> {
        let d = desired();
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(d.labels),
                owner_references: Some(vec![d.owner]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: range.map(endpoint).collect(),
            ports: port.map(ports),
        })
    }

    fn plan(groups: Groups, existing: Vec<Arc<EndpointSlice>>) -> Plan {
        let mut plan = Plan::default();
        plan_family("IPv4", groups, existing, &desired(), &mut plan);
        plan
    }

    fn name(work: &Work) -> Option<&str> {
        work.base.as_ref().and_then(|b| b.metadata.name.as_deref())
    }

    #[test]
    fn new_endpoints_fill_slices_of_a_hundred() {
        let plan = plan(groups(8080, 0..150), vec![]);
        let sizes: Vec<usize> = plan.writes.iter().map(|w| w.endpoints.len()).collect();
        assert_eq!(sizes, [100, 50]);
        assert!(plan.writes.iter().all(|w| w.base.is_none()) && plan.deletes.is_empty());
    }

    #[test]
    fn nothing_changed_means_nothing_written() {
        let plan = plan(groups(8080, 0..3), vec![slice("web-a", Some(8080), 0..3)]);
        assert!(plan.writes.is_empty() && plan.deletes.is_empty(), "{plan:?}");
    }

    #[test]
    fn changes_stay_in_place_and_new_endpoints_join_a_rewritten_slice() {
        // web-a loses endpoint 0 (rewritten anyway), web-b is untouched; 5 is new.
        let existing = vec![slice("web-a", Some(8080), 0..2), slice("web-b", Some(8080), 2..4)];
        let mut wanted = groups(8080, 1..6);
        let (_, endpoints) = wanted.values_mut().next().unwrap();
        endpoints.remove(&endpoint_key(&endpoint(4)));
        let plan = plan(wanted, existing);
        assert_eq!(plan.writes.len(), 1, "{plan:?}");
        assert_eq!(name(&plan.writes[0]), Some("web-a"));
        let keys: Vec<String> = plan.writes[0].endpoints.iter().map(endpoint_key).collect();
        assert_eq!(keys, [endpoint_key(&endpoint(1)), endpoint_key(&endpoint(5))]);
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn an_empty_service_keeps_one_placeholder_reusing_a_slice() {
        let plan = plan(
            Groups::new(),
            vec![slice("web-a", Some(8080), 0..2), slice("web-b", Some(8080), 2..4)],
        );
        assert_eq!(plan.writes.len(), 1);
        assert!(plan.writes[0].endpoints.is_empty() && plan.writes[0].ports.is_empty());
        assert!(plan.writes[0].base.is_some(), "an update, not a create");
        assert_eq!(plan.deletes.len(), 1);
        // An existing placeholder stays as it is.
        let again = super::tests::plan(Groups::new(), vec![slice("web-p", None, 0..0)]);
        assert!(again.writes.is_empty() && again.deletes.is_empty(), "{again:?}");
    }

    #[test]
    fn a_new_port_set_reuses_the_old_slice() {
        let plan = plan(groups(9090, 0..2), vec![slice("web-a", Some(8080), 0..2)]);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(name(&plan.writes[0]), Some("web-a"));
        assert_eq!(plan.writes[0].ports, ports(9090));
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn foreign_labels_or_owners_are_corrected() {
        let mut stale = (*slice("web-a", Some(8080), 0..2)).clone();
        stale
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let plan = plan(groups(8080, 0..2), vec![Arc::new(stale)]);
        assert_eq!(plan.writes.len(), 1);
    }
}
