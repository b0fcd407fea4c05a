//! The endpoints controller: the `Endpoints` of every Service with a selector,
//! as kube-controller-manager's `endpoint` controller writes them. Each selected
//! pod with an IP of the Service's family becomes an address (ready ones in
//! `addresses`, others in `notReadyAddresses`, all in `addresses` with
//! `publishNotReadyAddresses`; terminating and finished pods left out), with its
//! node, a `targetRef` and, for pods naming the Service as their `subdomain`,
//! its `hostname`. Ports are the Service's, with named `targetPort`s resolved
//! per pod; addresses sharing a port set form one subset. Nothing is written
//! when nothing changed. Endpoints whose Service is gone are deleted (on the
//! Service's deletion, and once at start for leftovers); Services without a
//! selector keep whatever Endpoints their owners write.
//!
//! The pod and Service helpers here are shared with the EndpointSlice controller.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use super::{Context, Error, drain, pods};

/// Label marking a headless Service's Endpoints and EndpointSlices.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints carrying this annotation are leader-election records, not a Service's.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

pub async fn run(context: Context) {
    let services = context.informers.synced::<Service>().await;
    let pods = context.informers.synced::<Pod>().await;
    let endpoints = context.informers.synced::<Endpoints>().await;
    let membership = Arc::new(Membership::new(services.store().clone(), pods.store().clone()));
    let controller = Controller::for_shared_stream(services.subscribe(), services.store().clone())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| membership.services_of(&pod))
        // Recreate deleted Endpoints, undo others' edits.
        .watches_shared_stream(endpoints.subscribe(), |endpoints: Arc<Endpoints>| {
            Some(
                ObjectRef::<Service>::new(endpoints.metadata.name.as_deref()?)
                    .within(endpoints.metadata.namespace.as_deref()?),
            )
        })
        .run(
            {
                let (pods, endpoints) = (pods.store().clone(), endpoints.store().clone());
                move |service, context| reconcile(service, context, pods.clone(), endpoints.clone())
            },
            |_, err, _| Action::requeue(retry_after(err)),
            Arc::new(context.clone()),
        );
    tokio::join!(drain(controller), orphans(context, services.store().clone()));
}

/// A failed reconcile is retried soon after a conflict (the cache lagged our own
/// write), later otherwise.
pub fn retry_after(err: &Error) -> Duration {
    match err {
        Error::Api(kube::Error::Api(status)) if status.code == 409 => Duration::from_millis(200),
        _ => Duration::from_secs(2),
    }
}

async fn reconcile(
    service: Arc<Service>,
    context: Arc<Context>,
    pods: Store<Pod>,
    cache: Store<Endpoints>,
) -> Result<Action, Error> {
    let Some(selector) = selector_of(&service) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = service.metadata.name.clone().unwrap_or_default();
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let selected = selected_pods(&pods, &namespace, &selector);
    let subsets = subsets(&service, &selected);
    let current = cache.get(&ObjectRef::new(&name).within(&namespace));
    let labels = endpoint_labels(&service);
    if let Some(current) = &current
        && current.subsets.clone().unwrap_or_default() == subsets
        && current.metadata.labels.clone().unwrap_or_default() == labels
    {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(context.client.clone(), &namespace);
    let mut desired = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    match current {
        None => match api.create(&PostParams::default(), &desired).await {
            Ok(_) => {}
            // The cache has not caught up; the Endpoints' own event brings us back.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            // The namespace is terminating: nothing to keep.
            Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => {}
            Err(err) => return Err(err.into()),
        },
        Some(current) => {
            desired.metadata.annotations = current.metadata.annotations.clone();
            desired.metadata.resource_version = current.metadata.resource_version.clone();
            api.replace(&name, &PostParams::default(), &desired).await?;
        }
    }
    Ok(Action::await_change())
}

/// Deletes Endpoints whose Service is gone: those left over when this loop
/// starts, then those of each Service deleted while it runs.
async fn orphans(context: Context, services: Store<Service>) {
    let endpoints = context.informers.synced::<Endpoints>().await;
    let leftovers: Vec<ObjectRef<Endpoints>> = endpoints
        .store()
        .state()
        .iter()
        .filter(|e| orphaned(e, &services))
        .map(|e| ObjectRef::from_obj(&**e))
        .collect();
    let deleted_services = {
        let services = services.clone();
        let services_feed = context.informers.get::<Service>().subscribe();
        futures_util::StreamExt::filter_map(services_feed, move |service: Arc<Service>| {
            let gone = services.get(&ObjectRef::from_obj(&*service)).is_none();
            let name = service.metadata.name.clone();
            let namespace = service.metadata.namespace.clone();
            let orphan = match (gone, name, namespace) {
                (true, Some(name), Some(namespace)) => Some(ObjectRef::<Endpoints>::new(&name).within(&namespace)),
                _ => None,
            };
            async move { orphan }
        })
    };
    let controller = Controller::for_shared_stream(
        futures_util::stream::empty::<Arc<Endpoints>>(),
        endpoints.store().clone(),
    )
    .reconcile_on(futures_util::StreamExt::chain(
        futures_util::stream::iter(leftovers),
        deleted_services,
    ))
    .run(
        move |endpoints, context| delete_orphan(endpoints, context, services.clone()),
        |_, err, _| Action::requeue(retry_after(err)),
        Arc::new(context),
    );
    drain(controller).await;
}

fn orphaned(endpoints: &Endpoints, services: &Store<Service>) -> bool {
    let leader = endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    let service = ObjectRef::<Service>::new(endpoints.metadata.name.as_deref().unwrap_or_default())
        .within(endpoints.metadata.namespace.as_deref().unwrap_or_default());
    !leader && services.get(&service).is_none()
}

async fn delete_orphan(
    endpoints: Arc<Endpoints>,
    context: Arc<Context>,
    services: Store<Service>,
) -> Result<Action, Error> {
    if !orphaned(&endpoints, &services) {
        return Ok(Action::await_change());
    }
    let namespace = endpoints.metadata.namespace.clone().unwrap_or_default();
    let name = endpoints.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: endpoints.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<Endpoints>::namespaced(context.client.clone(), &namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}

/// The Endpoints' labels: the Service's, plus the headless marker when it has
/// no cluster IP.
fn endpoint_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.to_string(), String::new());
    }
    labels
}

/// The subsets for these pods: addresses grouped by the ports they serve.
pub fn subsets(service: &Service, selected: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let family = service_family(service);
    let service_ports = spec.ports.unwrap_or_default();
    // (address, ready) → the ports it serves.
    let mut served: Vec<(EndpointAddress, bool, Vec<EndpointPort>)> = Vec::new();
    for pod in selected {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ips(pod).into_iter().find(|ip| family_of(ip) == family) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(pod, service),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(target_ref(pod)),
        };
        let ready = tolerate_unready || pods::is_ready(pod);
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: find_port(pod, port)?,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".to_string())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        // A headless Service without ports still lists its pods.
        if ports.is_empty() && !(service_ports.is_empty() && is_headless(service)) {
            continue;
        }
        served.push((address, ready, ports));
    }
    repack(served)
}

/// Groups addresses with identical port sets into subsets, sorted so that equal
/// contents compare equal.
fn repack(served: Vec<(EndpointAddress, bool, Vec<EndpointPort>)>) -> Vec<EndpointSubset> {
    let key = |ports: &[EndpointPort]| serde_json::to_string(ports).unwrap_or_default();
    /// The ports, then the ready and the not-ready addresses serving them.
    type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (address, ready, mut ports) in served {
        ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let group = groups
            .entry(key(&ports))
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if ready {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        let name = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|t| t.name.clone());
        (&a.ip, name(a)).cmp(&(&b.ip, name(b)))
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Which Services' Endpoints a pod is (or was) part of: the pod-side index the
/// endpoint controllers keep to requeue Services when a pod changes, including
/// those whose selector the pod just stopped matching.
pub struct Membership {
    services: Store<Service>,
    pods: Store<Pod>,
    last: Mutex<HashMap<ObjectRef<Pod>, Vec<ObjectRef<Service>>>>,
}

impl Membership {
    pub fn new(services: Store<Service>, pods: Store<Pod>) -> Membership {
        Membership {
            services,
            pods,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The Services that select the pod now, and those that did before.
    pub fn services_of(&self, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let key = ObjectRef::from_obj(pod);
        let namespace = pod.metadata.namespace.as_deref();
        let mut now: Vec<ObjectRef<Service>> = self
            .services
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == namespace)
            .filter(|s| selector_of(s).is_some_and(|sel| pods::selects(Some(&sel), &pod.metadata)))
            .map(|s| ObjectRef::from_obj(&**s))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let before = if self.pods.get(&key).is_some() {
            last.insert(key, now.clone()).unwrap_or_default()
        } else {
            last.remove(&key).unwrap_or_default()
        };
        for service in before {
            if !now.contains(&service) {
                now.push(service);
            }
        }
        now
    }
}

/// The Service's pod selector; `None` for Services without one (their
/// endpoints are someone else's).
pub fn selector_of(service: &Service) -> Option<Selector> {
    let selector = service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())?;
    Some(selector.clone().into_iter().collect())
}

/// Pods in `namespace` matching `selector`, by name.
pub fn selected_pods(store: &Store<Pod>, namespace: &str, selector: &Selector) -> Vec<Arc<Pod>> {
    let mut selected: Vec<Arc<Pod>> = store
        .state()
        .into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| pods::selects(Some(selector), &pod.metadata))
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    selected
}

/// `clusterIP: None`.
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The Service's primary IP family: `IPv4` or `IPv6`.
pub fn service_family(service: &Service) -> &'static str {
    let spec = service.spec.as_ref();
    if let Some(ip) = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
    {
        return family_of(ip);
    }
    match spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) if family == "IPv6" => "IPv6",
        _ => "IPv4",
    }
}

/// `IPv6` for IPv6 addresses, `IPv4` otherwise.
pub fn family_of(ip: &str) -> &'static str {
    if ip.parse::<Ipv6Addr>().is_ok() { "IPv6" } else { "IPv4" }
}

/// The pod's IPs, primary first.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = status.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    if let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty())
        && !ips.contains(&ip)
    {
        ips.insert(0, ip);
    }
    ips.retain(|ip| !ip.is_empty());
    ips
}

/// Whether the pod belongs in a Service's endpoints at all
/// (`endpointutil.ShouldPodBeInEndpoints`): not finished, with an IP, and not
/// terminating unless `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !pods::is_terminal(pod) && !pod_ips(pod).is_empty() && (include_terminating || !pods::is_deleting(pod))
}

/// The pod's `hostname` when it names this Service as its subdomain.
pub fn hostname_for(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_string())
}

pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The container port a Service port reaches on this pod (`podutil.FindPort`):
/// a numeric `targetPort` as is (the Service's port when unset), a named one
/// looked up among the pod's container ports with the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        Some(IntOrString::Int(n)) if *n > 0 => Some(*n),
        None | Some(IntOrString::Int(_)) => Some(port.port),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            // Containers, then restartable init containers (sidecars).
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                .map(|p| p.container_port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        json_patch::merge(&mut value, &extra);
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn service(extra: serde_json::Value) -> Service {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.5",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
        });
        json_patch::merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_ports() {
        let pods = [
            pod("b", "10.42.0.3", true, json!({})),
            pod("a", "10.42.0.2", false, json!({})),
            pod(
                "gone",
                "10.42.0.4",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
            pod("done", "10.42.0.5", true, json!({"status": {"phase": "Succeeded"}})),
            pod("noip", "", true, json!({"status": {"podIPs": null}})),
        ];
        let subsets = subsets(&service(json!({})), &pods);
        assert_eq!(subsets.len(), 1);
        let subset = &subsets[0];
        let ips = |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&subset.addresses), ["10.42.0.3"]);
        assert_eq!(ips(&subset.not_ready_addresses), ["10.42.0.2"]);
        let port = &subset.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
        let address = &subset.addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().unwrap().uid.as_deref(), Some("uid-b"));

        // publishNotReadyAddresses: all of them ready, terminating ones too.
        let subsets = super::subsets(&service(json!({"spec": {"publishNotReadyAddresses": true}})), &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2", "10.42.0.3", "10.42.0.4"]);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_without_the_named_port_are_left_out_and_port_sets_split() {
        let other = pod(
            "other",
            "10.42.0.9",
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": 9090}]}]}}),
        );
        let svc = service(json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9000, "targetPort": 9100, "protocol": "TCP"}]}}));
        let subsets = subsets(&svc, &[pod("a", "10.42.0.2", true, json!({})), other]);
        assert_eq!(subsets.len(), 2, "{subsets:#?}");
        let ports: Vec<Vec<i32>> = subsets
            .iter()
            .map(|s| s.ports.iter().flatten().map(|p| p.port).collect())
            .collect();
        assert!(
            ports.contains(&vec![8080, 9100]) && ports.contains(&vec![9100]),
            "{ports:?}"
        );
    }

    #[test]
    fn hostnames_for_pods_in_the_subdomain_and_headless_labels() {
        let svc = service(json!({"spec": {"clusterIP": "None"}}));
        let p = pod(
            "a",
            "10.42.0.2",
            true,
            json!({"spec": {"hostname": "web-0", "subdomain": "web"}}),
        );
        let subsets = subsets(&svc, &[p]);
        assert_eq!(
            subsets[0].addresses.as_ref().unwrap()[0].hostname.as_deref(),
            Some("web-0")
        );
        assert_eq!(endpoint_labels(&svc).get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert!(!endpoint_labels(&service(json!({}))).contains_key(HEADLESS_LABEL));
        assert_eq!(endpoint_labels(&svc)["team"], "a");
    }
}
