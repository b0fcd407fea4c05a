//! The pod's API status as `generateAPIPodStatus` computes it from what the runtime
//! has: container and init-container statuses (newest instance → `state`, the one
//! before → `lastState`, waiting reasons from the last sync's failures, `started`
//! and `ready` from the probes), the phase (`getPhase`), the kubelet-owned conditions
//! (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled)
//! with `lastTransitionTime` kept while a condition does not change, pod and host
//! IPs, `startTime` and `qosClass`. Pure: the worker decides when to write it.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::containers::StartError;
use super::probes::{self, Kind, Results};
use super::resources;
use super::snapshot::{ContainerInfo, PodRuntime, State};

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntime,
    /// The last sync's failures by container name (the upstream `reasonCache`).
    pub reasons: &'a HashMap<String, StartError>,
    pub probes: &'a Results,
    pub host_ips: &'a [String],
    /// `containerd`, for `containerID: containerd://…`.
    pub runtime_name: &'a str,
    /// The pod is done: no container will run again (`podIsTerminal`).
    pub terminal: bool,
    pub now: Timestamp,
}

fn time_ns(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    Timestamp::from_second(ns / 1_000_000_000).ok().map(Time)
}

fn now_seconds(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn terminated(info: &ContainerInfo, id: String) -> ContainerStateTerminated {
    let reason = match info.reason.as_str() {
        "" if info.exit_code == 0 => "Completed".to_string(),
        "" => "Error".to_string(),
        r => r.to_string(),
    };
    ContainerStateTerminated {
        exit_code: info.exit_code,
        reason: Some(reason),
        message: Some(info.message.clone()).filter(|m| !m.is_empty()),
        started_at: time_ns(info.started_at),
        finished_at: time_ns(info.finished_at),
        container_id: Some(id),
        signal: None,
    }
}

fn state_of(info: &ContainerInfo, id: &str) -> ContainerState {
    match info.state {
        State::Running => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_ns(info.started_at),
            }),
            ..Default::default()
        },
        State::Exited => ContainerState {
            terminated: Some(terminated(info, id.to_string())),
            ..Default::default()
        },
        State::Created | State::Unknown => ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        },
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// Whether a container in this state would be started again (`ShouldContainerBeRestarted`).
pub fn should_restart(pod: &Pod, container: &Container, latest: Option<&ContainerInfo>) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(info) = latest else { return true };
    match info.state {
        State::Created | State::Unknown => true,
        State::Running => false,
        State::Exited => {
            let policy = if is_sidecar(container) {
                "Always"
            } else {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref())
                    .unwrap_or("Always")
            };
            match policy {
                "Never" => false,
                "OnFailure" => info.exit_code != 0,
                _ => true,
            }
        }
    }
}

fn container_status(
    inputs: &Inputs<'_>,
    container: &Container,
    old: Option<&ContainerStatus>,
    default_reason: &str,
    init: bool,
) -> ContainerStatus {
    let rt = inputs.runtime;
    let mut instances = rt.instances(&container.name);
    let newest = instances.next();
    let previous = instances.find(|i| i.state == State::Exited);
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count: old.map(|o| o.restart_count).unwrap_or(0),
        state: Some(waiting(default_reason, None)),
        last_state: old.and_then(|o| o.last_state.clone()),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    match newest {
        None => {
            if let Some(old_state) = old.and_then(|o| o.state.clone())
                && old_state.terminated.is_some()
            {
                status.state = Some(old_state);
                status.container_id = old.and_then(|o| o.container_id.clone());
                status.image_id = old.map(|o| o.image_id.clone()).unwrap_or_default();
            }
        }
        Some(info) => {
            let id = format!("{}://{}", inputs.runtime_name, info.id);
            status.state = Some(state_of(info, &id));
            status.container_id = Some(id);
            if !info.image.is_empty() {
                status.image = info.image.clone();
            }
            status.image_id = info.image_ref.clone();
            status.restart_count = info.restart_count;
            match previous {
                Some(prev) => {
                    let prev_id = format!("{}://{}", inputs.runtime_name, prev.id);
                    status.last_state = Some(ContainerState {
                        terminated: Some(terminated(prev, prev_id)),
                        ..Default::default()
                    });
                }
                None if info.restart_count == 0 => status.last_state = None,
                None => {}
            }
        }
    }
    let restartable = should_restart(inputs.pod, container, newest)
        && !(init && !is_sidecar(container) && newest.is_some_and(|n| n.state == State::Exited && n.exit_code == 0));
    if let Some(failure) = inputs.reasons.get(&container.name).filter(|_| restartable) {
        if let Some(t) = status.state.as_ref().and_then(|s| s.terminated.clone()) {
            status.last_state = Some(ContainerState {
                terminated: Some(t),
                ..Default::default()
            });
        }
        status.state = Some(waiting(failure.reason, Some(failure.message.clone())));
    }
    // A CREATED container shows the default waiting reason.
    if let Some(w) = status.state.as_mut().and_then(|s| s.waiting.as_mut())
        && w.reason.is_none()
    {
        w.reason = Some(default_reason.to_string());
    }

    let running = newest.filter(|n| n.state == State::Running);
    match running {
        Some(info) => {
            let started = container.startup_probe.is_none()
                || inputs.probes.get(&info.id, Kind::Startup) == Some(probes::Result::Success);
            status.started = Some(started);
            let ready = if init && !is_sidecar(container) {
                false
            } else {
                started
                    && (container.readiness_probe.is_none()
                        || inputs.probes.get(&info.id, Kind::Readiness) == Some(probes::Result::Success))
            };
            status.ready = ready;
        }
        None => {
            if init && !is_sidecar(container) {
                status.ready = newest.is_some_and(|n| n.state == State::Exited && n.exit_code == 0);
            }
        }
    }
    status
}

fn old_status<'a>(list: Option<&'a Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    list.and_then(|l| l.iter().find(|s| s.name == name))
}

/// `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerStatus], regular: &[ContainerStatus], terminal: bool) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let init_specs: Vec<&Container> = spec.iter().flat_map(|s| s.init_containers.iter().flatten()).collect();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in init_specs.iter().filter(|c| !is_sidecar(c)) {
        let Some(s) = init.iter().find(|s| s.name == c.name) else {
            pending_init += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        let last_exit = s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| t.exit_code);
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last_exit {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let specs: Vec<&Container> = spec.iter().flat_map(|s| s.containers.iter()).collect();
    for c in &specs {
        let Some(s) = regular.iter().find(|s| s.name == c.name) else {
            unknown += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(_) => stopped += 1,
                None => waiting += 1,
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    let ever_started = running + stopped > 0;
    if (pending_init > 0 && !ever_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

/// The whole kubelet-computed status.
pub fn generate(inputs: &Inputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let has_init = !init_specs.is_empty();

    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| {
            container_status(
                inputs,
                c,
                old_status(old.init_container_statuses.as_ref(), &c.name),
                "PodInitializing",
                true,
            )
        })
        .collect();
    let default_reason = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let mut regular: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                inputs,
                c,
                old_status(old.container_statuses.as_ref(), &c.name),
                default_reason,
                false,
            )
        })
        .collect();
    regular.sort_by(|a, b| a.name.cmp(&b.name));

    let mut phase = phase(pod, &init, &regular, inputs.terminal).to_string();
    // Pods never leave Succeeded or Failed.
    if let Some(old_phase) = old.phase.as_deref().filter(|p| matches!(*p, "Succeeded" | "Failed")) {
        phase = old_phase.to_string();
    }

    // Conditions.
    let host_net = spec.host_network.unwrap_or(false);
    let sandbox_ok = !inputs.runtime.sandbox_changed() && (host_net || !inputs.runtime.ips.is_empty());
    let any_started = regular
        .iter()
        .any(|s| s.state.as_ref().is_some_and(|st| st.waiting.is_none()) || s.last_state.is_some());
    let incomplete: Vec<String> = init_specs
        .iter()
        .zip(&init)
        .filter(|(c, s)| {
            if is_sidecar(c) {
                s.started != Some(true)
            } else {
                !s.ready
            }
        })
        .map(|(c, _)| c.name.clone())
        .collect();
    let initialized = incomplete.is_empty() || any_started;
    let initialized_cond = PodCondition {
        reason: if initialized && phase == "Succeeded" && has_init {
            Some("PodCompleted".into())
        } else {
            None
        },
        ..condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
        )
    };
    let mut unready: Vec<String> = spec
        .containers
        .iter()
        .filter(|c| !regular.iter().any(|s| s.name == c.name && s.ready))
        .map(|c| c.name.clone())
        .collect();
    unready.extend(
        init_specs
            .iter()
            .zip(&init)
            .filter(|(c, s)| is_sidecar(c) && !s.ready)
            .map(|(c, _)| c.name.clone()),
    );
    let containers_ready = match phase.as_str() {
        "Succeeded" => condition("ContainersReady", false, Some("PodCompleted"), None),
        "Failed" => condition("ContainersReady", false, Some("PodFailed"), None),
        _ => condition(
            "ContainersReady",
            unready.is_empty(),
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        ),
    };
    let mut ready = PodCondition {
        type_: "Ready".into(),
        ..containers_ready.clone()
    };
    if ready.status == "True" {
        for gate in spec.readiness_gates.iter().flatten() {
            let found = old.conditions.iter().flatten().find(|c| c.type_ == gate.condition_type);
            match found {
                None => {
                    ready = condition(
                        "Ready",
                        false,
                        Some("ReadinessGatesNotReady"),
                        Some(format!(
                            "corresponding condition of pod readiness gate {:?} does not exist.",
                            gate.condition_type
                        )),
                    );
                    break;
                }
                Some(c) if c.status != "True" => {
                    ready = condition(
                        "Ready",
                        false,
                        Some("ReadinessGatesNotReady"),
                        Some(format!(
                            "the status of pod readiness gate {:?} is not \"True\", but {}",
                            gate.condition_type, c.status
                        )),
                    );
                    break;
                }
                _ => {}
            }
        }
    }
    let owned = [
        condition(
            "PodReadyToStartContainers",
            sandbox_ok,
            Some("PodSandboxNotReady"),
            None,
        ),
        initialized_cond,
        ready,
        containers_ready,
        condition("PodScheduled", true, None, None),
    ];
    let now = now_seconds(inputs.now);
    let mut conditions: Vec<PodCondition> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| !owned.iter().any(|o| o.type_ == c.type_))
        .cloned()
        .collect();
    for mut c in owned {
        let previous = old.conditions.iter().flatten().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status && p.last_transition_time.is_some() => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        if c.type_ == "PodScheduled"
            && let Some(p) = previous
        {
            // The scheduler's condition: keep its times, insist on True.
            c = PodCondition {
                status: "True".into(),
                reason: None,
                message: None,
                last_transition_time: p.last_transition_time.clone().or(c.last_transition_time),
                last_probe_time: p.last_probe_time.clone(),
                type_: c.type_,
                observed_generation: p.observed_generation,
            };
        }
        conditions.push(c);
    }

    let mut pod_ips: Vec<String> = if host_net {
        inputs.host_ips.to_vec()
    } else {
        inputs.runtime.ips.clone()
    };
    // A stopped sandbox has no IP any more; the pod keeps reporting the one it had.
    if pod_ips.is_empty() {
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: Some(inputs.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect())
            .filter(|v: &Vec<_>| !v.is_empty()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: Some(pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()).filter(|v: &Vec<_>| !v.is_empty()),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: Some(resources::qos_class(pod).as_str().to_string()),
        init_container_statuses: Some(init).filter(|v| !v.is_empty()),
        container_statuses: Some(regular),
        // Fields the kubelet does not own survive.
        message: old.message.clone(),
        reason: old.reason.clone(),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// An RFC 7386 merge patch turning `old` into `new` (null for removed keys).
pub fn merge_diff(old: &serde_json::Value, new: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::{Map, Value};
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(name: &str, id: &str, state: State, exit: i32, created: i64, restarts: i32) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            name: name.into(),
            sandbox_id: "s".into(),
            state,
            created_at: created,
            started_at: created + 1_000_000_000,
            finished_at: if state == State::Exited {
                created + 2_000_000_000
            } else {
                0
            },
            exit_code: exit,
            reason: match (state, exit) {
                (State::Exited, 0) => "Completed".into(),
                (State::Exited, 137) => "OOMKilled".into(),
                (State::Exited, _) => "Error".into(),
                _ => String::new(),
            },
            message: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_ref: "sha256:abc".into(),
            restart_count: restarts,
            hash: String::new(),
            annotations: HashMap::new(),
            log_path: String::new(),
        }
    }

    fn runtime(containers: Vec<ContainerInfo>) -> PodRuntime {
        let mut containers = containers;
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        PodRuntime {
            sandboxes: vec![super::super::snapshot::Sandbox {
                id: "s".into(),
                attempt: 0,
                ready: true,
                created_at: 1,
            }],
            ips: vec!["10.42.0.9".into()],
            containers,
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec})).unwrap()
    }

    fn gen_with(pod: &Pod, rt: &PodRuntime, reasons: &HashMap<String, StartError>, terminal: bool) -> PodStatus {
        let probes = Results::default();
        generate(&Inputs {
            pod,
            runtime: rt,
            reasons,
            probes: &probes,
            host_ips: &["192.168.0.2".to_string()],
            runtime_name: "containerd",
            terminal,
            now: Timestamp::from_second(1_700_000_000).unwrap(),
        })
    }

    fn status_of(pod: &Pod, rt: &PodRuntime) -> PodStatus {
        gen_with(pod, rt, &HashMap::new(), false)
    }

    fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn pending_then_running() {
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
        let s = status_of(&p, &PodRuntime::default());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));

        let rt = runtime(vec![info("a", "c1", State::Running, 0, 10, 0)]);
        let s = status_of(&p, &rt);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.9"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.0.2"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("containerd://c1"));
        assert!(cs.ready && cs.started == Some(true));
        assert_eq!(cs.image_id, "sha256:abc");
        for kind in [
            "Ready",
            "ContainersReady",
            "Initialized",
            "PodScheduled",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&s, kind).status, "True", "{kind}");
        }
    }

    #[test]
    fn readiness_probe_gates_ready() {
        let p = pod(json!({"containers": [{"name": "a", "readinessProbe": {"tcpSocket": {"port": 80}}}]}));
        let rt = runtime(vec![info("a", "c1", State::Running, 0, 10, 0)]);
        let s = status_of(&p, &rt);
        assert!(!s.container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn crash_loop_shows_back_off_and_last_state() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        let rt = runtime(vec![
            info("a", "c2", State::Exited, 3, 20, 1),
            info("a", "c1", State::Exited, 3, 10, 0),
        ]);
        let reasons: HashMap<String, StartError> = [(
            "a".to_string(),
            StartError {
                reason: "CrashLoopBackOff",
                message: "back-off 10s restarting failed container=a pod=p_ns(u)".into(),
            },
        )]
        .into();
        let s = gen_with(&p, &rt, &reasons, false);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (last.exit_code, last.container_id.as_deref()),
            (3, Some("containerd://c2"))
        );
        assert_eq!(cs.restart_count, 1);
        // Waiting with a last termination counts as stopped: Running under Always.
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn terminal_phases() {
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}, {"name": "b"}]}));
        let rt = runtime(vec![
            info("a", "c1", State::Exited, 0, 10, 0),
            info("b", "c2", State::Exited, 1, 11, 0),
        ]);
        assert_eq!(status_of(&never, &rt).phase.as_deref(), Some("Failed"));
        let rt = runtime(vec![
            info("a", "c1", State::Exited, 0, 10, 0),
            info("b", "c2", State::Exited, 0, 11, 0),
        ]);
        let s = status_of(&never, &rt);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "ContainersReady").reason.as_deref(), Some("PodCompleted"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        let always = pod(json!({"containers": [{"name": "a"}]}));
        let rt = runtime(vec![info("a", "c1", State::Exited, 137, 10, 0)]);
        assert_eq!(status_of(&always, &rt).phase.as_deref(), Some("Running"));
        assert_eq!(
            gen_with(&always, &rt, &HashMap::new(), true).phase.as_deref(),
            Some("Failed")
        );
    }

    #[test]
    fn init_containers() {
        let p = pod(json!({"restartPolicy": "Never",
            "initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}));
        let rt = runtime(vec![info("i1", "c1", State::Running, 0, 10, 0)]);
        let s = status_of(&p, &rt);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [i1 i2]")
        );
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("PodInitializing")
        );
        let rt = runtime(vec![info("i1", "c1", State::Exited, 2, 10, 0)]);
        assert_eq!(status_of(&p, &rt).phase.as_deref(), Some("Failed"));
        let rt = runtime(vec![
            info("i1", "c1", State::Exited, 0, 10, 0),
            info("i2", "c2", State::Exited, 0, 11, 0),
            info("a", "c3", State::Running, 0, 12, 0),
        ]);
        let s = status_of(&p, &rt);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert!(s.init_container_statuses.as_ref().unwrap().iter().all(|s| s.ready));
    }

    #[test]
    fn transition_times_are_kept() {
        let mut p = pod(json!({"containers": [{"name": "a"}]}));
        let rt = runtime(vec![info("a", "c1", State::Running, 0, 10, 0)]);
        let s = status_of(&p, &rt);
        p.status = Some(s.clone());
        let later = generate(&Inputs {
            pod: &p,
            runtime: &rt,
            reasons: &HashMap::new(),
            probes: &Results::default(),
            host_ips: &["192.168.0.2".to_string()],
            runtime_name: "containerd",
            terminal: false,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        });
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(&later).unwrap(),
            "an unchanged pod has an unchanged status"
        );
    }

    #[test]
    fn merge_diffs() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        let new = json!({"a": 1, "b": {"c": 5}, "e": [1, 2], "f": true});
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({"b": {"c": 5, "d": null}, "e": [1, 2], "f": true}))
        );
        assert_eq!(merge_diff(&old, &old), None);
    }
}
