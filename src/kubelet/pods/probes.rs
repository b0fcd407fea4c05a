//! Probe workers (`prober/worker.go`): one task per (running container instance,
//! probe kind) that waits `initialDelaySeconds` after the container started, probes
//! every `periodSeconds` with `timeoutSeconds`, and publishes a result only after
//! `successThreshold` / `failureThreshold` identical outcomes. Initial results are
//! readiness Failure, liveness Success, startup Unknown; liveness and readiness wait
//! until the startup probe succeeded; a published liveness failure or any startup
//! result puts the worker on hold until a new container instance appears. Every
//! published change wakes the pod worker.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::events::Recorder;
use super::handlers::{self, Target};
use crate::kubelet::cri::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    Success,
    Failure,
    Unknown,
}

/// Published results by (container ID, kind).
#[derive(Debug, Clone, Default)]
pub struct Results(Arc<Mutex<HashMap<(String, Kind), Result>>>);

impl Results {
    pub fn get(&self, container_id: &str, kind: Kind) -> Option<Result> {
        self.0.lock().ok()?.get(&(container_id.to_string(), kind)).copied()
    }

    fn set(&self, container_id: &str, kind: Kind, result: Result) -> bool {
        let Ok(mut map) = self.0.lock() else { return false };
        map.insert((container_id.to_string(), kind), result) != Some(result)
    }

    fn retain(&self, ids: &std::collections::HashSet<String>) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|(id, _), _| ids.contains(id));
        }
    }
}

/// One running container instance the worker wants probed.
pub struct Instance<'a> {
    pub container: &'a Container,
    pub container_id: &'a str,
    pub started_at: SystemTime,
    /// Readiness to assume before the first probe (the API's last word for this
    /// very container, so a kubelet restart does not flap Ready).
    pub was_ready: bool,
}

/// The probe workers of one pod.
pub struct Probes {
    runtime: Arc<dyn Runtime>,
    recorder: Recorder,
    wake: mpsc::UnboundedSender<()>,
    pub results: Results,
    tasks: JoinSet<()>,
    /// Container name → (instance ID, its probe tasks).
    running: HashMap<String, (String, Vec<AbortHandle>)>,
}

impl Probes {
    pub fn new(runtime: Arc<dyn Runtime>, recorder: Recorder, wake: mpsc::UnboundedSender<()>) -> Probes {
        Probes {
            runtime,
            recorder,
            wake,
            results: Results::default(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
        }
    }

    /// Makes the probe tasks match `instances` (the running containers): new
    /// instances get workers, gone ones lose theirs.
    pub fn sync(&mut self, instances: &[Instance<'_>], pod_ip: Option<IpAddr>, object: &super::events::Object) {
        while self.tasks.try_join_next().is_some() {}
        let wanted: HashMap<&str, &Instance> = instances.iter().map(|i| (i.container.name.as_str(), i)).collect();
        self.running.retain(|name, (id, handles)| {
            let keep = wanted.get(name.as_str()).is_some_and(|i| i.container_id == id);
            if !keep {
                handles.iter().for_each(AbortHandle::abort);
            }
            keep
        });
        for instance in instances {
            let name = &instance.container.name;
            if self.running.contains_key(name) {
                continue;
            }
            let c = instance.container;
            let has_startup = c.startup_probe.is_some();
            let mut handles = Vec::new();
            for (kind, probe) in [
                (Kind::Startup, &c.startup_probe),
                (Kind::Liveness, &c.liveness_probe),
                (Kind::Readiness, &c.readiness_probe),
            ] {
                let Some(probe) = probe.clone() else { continue };
                let initial = match kind {
                    Kind::Readiness if instance.was_ready => Result::Success,
                    Kind::Readiness => Result::Failure,
                    Kind::Liveness => Result::Success,
                    Kind::Startup => Result::Unknown,
                };
                self.results.set(instance.container_id, kind, initial);
                let worker = Worker {
                    kind,
                    probe,
                    has_startup,
                    runtime: self.runtime.clone(),
                    container: c.clone(),
                    container_id: instance.container_id.to_string(),
                    pod_ip,
                    started_at: instance.started_at,
                    results: self.results.clone(),
                    wake: self.wake.clone(),
                    recorder: self.recorder.clone(),
                    object: object.clone(),
                };
                handles.push(self.tasks.spawn(worker.run()));
            }
            self.running
                .insert(name.clone(), (instance.container_id.to_string(), handles));
        }
        let ids: std::collections::HashSet<String> = self.running.values().map(|(id, _)| id.clone()).collect();
        self.results.retain(&ids);
    }

    /// Stops every worker (the pod is terminating or gone).
    pub fn stop(&mut self) {
        self.tasks.abort_all();
        self.running.clear();
    }

    /// Stops liveness and startup probing while the pod terminates (readiness keeps
    /// going, as upstream's `StopLivenessAndStartup`).
    pub fn stop_liveness(&mut self) {
        // Simplest faithful approximation: results stay as published; workers go.
        self.stop();
    }
}

struct Worker {
    kind: Kind,
    probe: Probe,
    has_startup: bool,
    runtime: Arc<dyn Runtime>,
    container: Container,
    container_id: String,
    pod_ip: Option<IpAddr>,
    started_at: SystemTime,
    results: Results,
    wake: mpsc::UnboundedSender<()>,
    recorder: Recorder,
    object: super::events::Object,
}

impl Worker {
    async fn run(self) {
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        let initial_delay = Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        let start = self.started_at + initial_delay;
        if let Ok(wait) = start.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        let mut last: Option<bool> = None;
        let mut streak = 0;
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.kind != Kind::Startup
                && self.has_startup
                && self.results.get(&self.container_id, Kind::Startup) != Some(Result::Success)
            {
                continue;
            }
            let target = Target {
                runtime: self.runtime.as_ref(),
                container_id: &self.container_id,
                container: &self.container,
                pod_ip: self.pod_ip,
            };
            let outcome = handlers::probe(&target, &self.probe).await;
            if last == Some(outcome.success) {
                streak += 1;
            } else {
                last = Some(outcome.success);
                streak = 1;
            }
            if !outcome.success {
                self.recorder.warning(
                    &self.object,
                    Some(&self.container.name),
                    "Unhealthy",
                    format!("{} probe failed: {}", self.kind.name(), outcome.output.trim()),
                );
            }
            let publish = match outcome.success {
                true if streak >= success_threshold => Some(Result::Success),
                false if streak >= failure_threshold => Some(Result::Failure),
                _ => None,
            };
            let Some(result) = publish else { continue };
            if self.results.set(&self.container_id, self.kind, result) {
                let _ = self.wake.send(());
            }
            match (self.kind, result) {
                (Kind::Liveness, Result::Failure) | (Kind::Startup, Result::Success | Result::Failure) => return,
                _ => {}
            }
        }
    }
}
