//! One pod's worker (`pod_workers.go` + `SyncPod` / `SyncTerminatingPod` /
//! `SyncTerminatedPod`): a task that owns everything the node does for that pod and
//! moves through [`Stage`]s. While `Running` it converges the runtime on the spec
//! (volumes, sandbox, init containers one at a time, regular containers in order,
//! restarts with CrashLoopBackOff, liveness/startup kills) and writes the status
//! when it changed. `Terminating` kills the containers within the grace period and
//! stops the sandbox; `Terminated` holds a finished pod (its containers stay for
//! their logs) and, for a deleted pod, deletes the object with grace 0; `Cleanup`
//! removes the sandboxes, volumes, pod directory and logs once the object is gone.
//!
//! It wakes on pod updates, runtime changes (from the PLEG), probe results, its own
//! timers (back-off ends, the 1–1.5 min resync) and never restarts a healthy
//! container it finds already running (restart safety).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Node;
use super::backoff::Backoff;
use super::containers::{self, StartContext, StartError};
use super::env::{PodFacts, Sources};
use super::events::Object;
use super::probes::{self, Instance, Kind, Probes};
use super::sandbox;
use super::snapshot::{self, ContainerInfo, PodRuntime, State};
use super::status::{self, is_sidecar, should_restart};
use super::volumes::{self, VolumeMap};
use crate::kubelet::cri::{self, api};

/// What wakes a worker besides its timer.
#[derive(Debug, Clone)]
pub enum Update {
    /// The pod object changed.
    Pod(Arc<Pod>),
    /// The pod object is gone from the API.
    Removed,
    /// The runtime state of the pod changed.
    Runtime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Running,
    Terminating,
    Terminated,
    Cleanup,
    Done,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Runtime(#[from] cri::Error),
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Volume(#[from] volumes::VolumeError),
}

/// How often a quiet pod is looked at anyway (1 min + up to 50% jitter).
fn resync() -> Duration {
    Duration::from_millis(60_000 + rand::random_range(0..30_000))
}

const RETRY: Duration = Duration::from_secs(10);
const REFRESH_VOLUMES: Duration = Duration::from_secs(60);

pub struct Worker {
    node: Arc<Node>,
    uid: String,
    pod: Arc<Pod>,
    /// The status as last written or seen in the API.
    status: Option<PodStatus>,
    removed: bool,
    pub stage: Stage,
    cache: snapshot::Cache,
    restarts: Backoff,
    reasons: HashMap<String, StartError>,
    probes: Probes,
    probe_wake: mpsc::UnboundedReceiver<()>,
    volumes: Option<VolumeMap>,
    volumes_at: Option<Instant>,
    hosts: Option<Vec<String>>,
    pod_dir: PathBuf,
}

fn policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn is_terminal_phase(status: Option<&PodStatus>) -> bool {
    matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Only these changes of the pod object need a sync; status echoes of our own
/// writes do not.
fn needs_sync(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl Worker {
    pub fn new(node: Arc<Node>, pod: Arc<Pod>) -> Worker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let probes = Probes::new(node.runtime.clone(), node.recorder.clone(), wake_tx);
        let stage = if is_terminal_phase(pod.status.as_ref()) {
            Stage::Terminated
        } else {
            Stage::Running
        };
        Worker {
            pod_dir: volumes::pod_dir(&node.settings.pods_dir, &uid),
            status: pod.status.clone(),
            node,
            uid,
            pod,
            removed: false,
            stage,
            cache: snapshot::Cache::default(),
            restarts: Backoff::containers(),
            reasons: HashMap::new(),
            probes,
            probe_wake: wake_rx,
            volumes: None,
            volumes_at: None,
            hosts: None,
        }
    }

    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Pod(pod) => {
                let sync = needs_sync(&self.pod, &pod);
                if self.pod.metadata.labels != pod.metadata.labels
                    || self.pod.metadata.annotations != pod.metadata.annotations
                {
                    // Downward API files show labels and annotations: rewrite now.
                    self.volumes_at = None;
                }
                self.status = pod.status.clone();
                self.pod = pod;
                sync
            }
            Update::Removed => {
                self.removed = true;
                true
            }
            Update::Runtime => true,
        }
    }

    /// Runs until the pod is cleaned up (returns its UID) or shutdown (leaving
    /// every container as it is).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Update>, shutdown: CancellationToken) -> String {
        let mut next = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                update = rx.recv() => {
                    let Some(update) = update else { break };
                    let mut sync = self.apply(update);
                    while let Ok(update) = rx.try_recv() {
                        sync |= self.apply(update);
                    }
                    if !sync {
                        continue;
                    }
                }
                Some(()) = self.probe_wake.recv() => {
                    while self.probe_wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            // A step may wait out a grace period; shutdown does not wait for it
            // (whatever it left half done, the next start finds in the runtime).
            let wait = tokio::select! {
                _ = shutdown.cancelled() => break,
                wait = self.step() => wait,
            };
            if self.stage == Stage::Done {
                break;
            }
            next = Instant::now() + wait;
        }
        self.probes.stop();
        self.uid
    }

    /// One sync in the current stage; returns when to look again.
    async fn step(&mut self) -> Duration {
        if self.removed && matches!(self.stage, Stage::Running) {
            self.stage = Stage::Terminating;
        }
        if self.pod.metadata.deletion_timestamp.is_some() && self.stage == Stage::Running {
            self.stage = Stage::Terminating;
        }
        let result = match self.stage {
            Stage::Running => self.sync_running().await,
            Stage::Terminating => self.sync_terminating().await,
            Stage::Terminated => self.sync_terminated().await,
            Stage::Cleanup => self.sync_cleanup().await,
            Stage::Done => return Duration::ZERO,
        };
        match result {
            Ok(wait) => wait,
            Err(SyncError::Runtime(e)) if e.is_unavailable() => {
                tracing::debug!(pod = %self.name(), error = %e, "container runtime unavailable");
                Duration::from_secs(2)
            }
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "pod sync failed");
                RETRY
            }
        }
    }

    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn object(&self) -> Object {
        Object::of(&self.pod)
    }

    fn host_ips(&self) -> Vec<String> {
        self.node.settings.node_ips.iter().map(IpAddr::to_string).collect()
    }

    fn host_network(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
    }

    fn facts(&self, rt: &PodRuntime) -> PodFacts {
        PodFacts {
            node_name: self.node.name.clone(),
            pod_ips: if self.host_network() {
                self.host_ips()
            } else {
                rt.ips.clone()
            },
            host_ips: self.host_ips(),
            node_cpu_milli: self.node.cpu_milli,
            node_memory: self.node.memory_capacity,
        }
    }

    fn pod_ip(&self, rt: &PodRuntime) -> Option<IpAddr> {
        if self.host_network() {
            return self.node.settings.node_ips.first().copied();
        }
        rt.ips.first().and_then(|ip| ip.parse().ok())
    }

    async fn fetch(&mut self) -> Result<PodRuntime, cri::Error> {
        snapshot::fetch(self.node.runtime.as_ref(), &self.uid, &mut self.cache).await
    }

    fn grace_period(&self) -> i64 {
        let meta = &self.pod.metadata;
        let spec_grace = self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
        meta.deletion_grace_period_seconds.or(spec_grace).unwrap_or(30)
    }

    // ----- Running -----

    async fn sync_running(&mut self) -> Result<Duration, SyncError> {
        let mut rt = self.fetch().await?;
        let pod = self.pod.clone();
        let object = self.object();

        if self
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_none()
        {
            // A new pod shows Pending/ContainerCreating before anything is created.
            self.write_status(&rt, false).await;
        }

        // Volumes first: no container starts without them.
        let refresh = self.volumes.is_none()
            || (volumes::has_api_volumes(&pod) && self.volumes_at.is_none_or(|at| at.elapsed() >= REFRESH_VOLUMES));
        if refresh {
            let facts = self.facts(&rt);
            let setup = volumes::setup(
                &pod,
                &self.pod_dir,
                self.node.objects.as_ref(),
                self.node.mounter.as_ref(),
                &facts,
            )
            .await;
            match setup {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_at = Some(Instant::now());
                }
                Err(e) => {
                    self.node.recorder.warning(
                        &object,
                        None,
                        "FailedMount",
                        format!("Unable to attach or mount volumes: {e}"),
                    );
                    if self.volumes.is_none() {
                        self.write_status(&rt, false).await;
                        return Ok(RETRY);
                    }
                }
            }
        }

        // The sandbox.
        if rt.sandbox_changed() {
            let done = policy(&pod) == "Never" && rt.newest_sandbox().is_some() && !rt.containers.is_empty();
            if done {
                return self.finish(rt).await;
            }
            if let Some(wait) = self.new_sandbox(&rt).await? {
                self.write_status(&rt, false).await;
                return Ok(wait);
            }
            rt = self.fetch().await?;
        }
        let Some(sandbox) = rt.newest_sandbox().cloned() else {
            return Ok(RETRY);
        };
        let sandbox_config = sandbox::config(&pod, sandbox.attempt, &self.node.settings, &self.node.host_resolv);
        self.write_hosts(&rt)?;

        let mut acted = false;
        let mut wake: Option<Duration> = None;
        let mut min_wake = |w: Option<Duration>| {
            if let Some(w) = w {
                wake = Some(wake.map_or(w, |x: Duration| x.min(w)));
            }
        };

        // Running containers that must go: changed spec, failed liveness/startup.
        let spec = pod.spec.clone().unwrap_or_default();
        let all: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .cloned()
            .collect();
        for c in &all {
            let Some(info) = rt.latest(&c.name).filter(|i| i.state == State::Running).cloned() else {
                continue;
            };
            let why = if !info.hash.is_empty() && info.hash != containers::hash(c) {
                Some(format!("Container {} definition changed, will be restarted", c.name))
            } else if self.probes.results.get(&info.id, Kind::Liveness) == Some(probes::Result::Failure) {
                Some(format!("Container {} failed liveness probe, will be restarted", c.name))
            } else if self.probes.results.get(&info.id, Kind::Startup) == Some(probes::Result::Failure) {
                Some(format!("Container {} failed startup probe, will be restarted", c.name))
            } else {
                None
            };
            if let Some(why) = why {
                self.node.busy.touch();
                containers::kill(
                    &self.node,
                    &object,
                    Some(c),
                    &info,
                    self.grace_period_for_probe(c),
                    self.pod_ip(&rt),
                    Some(why),
                )
                .await?;
                acted = true;
            }
        }
        if acted {
            rt = self.fetch().await?;
        }

        // Init containers, one per sync.
        let init_done = match self.sync_init(&rt, &sandbox.id, &sandbox_config).await? {
            InitProgress::Done => true,
            InitProgress::Waiting(w, started) => {
                min_wake(w);
                acted |= started;
                false
            }
            InitProgress::Failed => return self.finish(rt).await,
        };

        if init_done {
            // Sidecars stay up for the pod's whole life.
            for c in spec.init_containers.iter().flatten().filter(|c| is_sidecar(c)) {
                let (w, started) = self.ensure(c, &rt, &sandbox.id, &sandbox_config).await?;
                min_wake(w);
                acted |= started;
            }
            for c in &spec.containers {
                let (w, started) = self.ensure(c, &rt, &sandbox.id, &sandbox_config).await?;
                min_wake(w);
                acted |= started;
            }
        }
        if acted {
            rt = self.fetch().await?;
        }

        // A pod whose containers are all done for good is finished.
        let all_done = init_done
            && spec.containers.iter().all(|c| {
                rt.latest(&c.name)
                    .is_some_and(|i| i.state == State::Exited && !should_restart(&pod, c, Some(i)))
            });
        if all_done {
            return self.finish(rt).await;
        }

        self.sync_probes(&rt);
        self.write_status(&rt, false).await;
        self.restarts.gc(SystemTime::now());
        let mut wait = wake.unwrap_or_else(resync);
        if volumes::has_api_volumes(&pod) {
            let due = REFRESH_VOLUMES.saturating_sub(self.volumes_at.map(|a| a.elapsed()).unwrap_or_default());
            wait = wait.min(due.max(Duration::from_secs(1)));
        }
        Ok(wait)
    }

    fn grace_period_for_probe(&self, c: &Container) -> i64 {
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.termination_grace_period_seconds)
            .unwrap_or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30)
            })
    }

    /// Kills what runs, stops old sandboxes and starts sandbox number `attempt`.
    /// `Some(wait)` when it could not.
    async fn new_sandbox(&mut self, rt: &PodRuntime) -> Result<Option<Duration>, SyncError> {
        let object = self.object();
        self.node.busy.touch();
        if !rt.sandboxes.is_empty() {
            self.node.recorder.normal(
                &object,
                None,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.",
            );
        }
        self.kill_all(rt, self.grace_period()).await?;
        for s in rt.sandboxes.iter().filter(|s| s.ready) {
            match self.node.runtime.stop_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        let attempt = rt.newest_sandbox().map(|s| s.attempt + 1).unwrap_or(0);
        let config = sandbox::config(&self.pod, attempt, &self.node.settings, &self.node.host_resolv);
        if let Err(e) = std::fs::create_dir_all(&config.log_directory) {
            tracing::warn!(pod = %self.name(), error = %e, "creating the pod log directory");
        }
        match self.node.runtime.run_pod_sandbox(config, String::new()).await {
            Ok(_) => Ok(None),
            Err(e) => {
                self.node.recorder.warning(
                    &object,
                    None,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {}", e.message()),
                );
                Ok(Some(if e.is_unavailable() {
                    Duration::from_secs(2)
                } else {
                    RETRY
                }))
            }
        }
    }

    /// The kubelet-managed `/etc/hosts`, rewritten when the pod IPs change.
    fn write_hosts(&mut self, rt: &PodRuntime) -> Result<(), SyncError> {
        let ips = if self.host_network() {
            Vec::new()
        } else {
            rt.ips.clone()
        };
        if self.hosts.as_ref() == Some(&ips) {
            return Ok(());
        }
        let node_hosts = match self.host_network() {
            true => Some(std::fs::read_to_string("/etc/hosts").unwrap_or_default()),
            false => None,
        };
        let text = sandbox::etc_hosts(
            &self.pod,
            &ips,
            &self.node.settings.cluster_domain,
            node_hosts.as_deref(),
        );
        let path = self.pod_dir.join("etc-hosts");
        let tmp = self.pod_dir.join(".etc-hosts.tmp");
        let io = |e| volumes::VolumeError::Io {
            what: "writing",
            path: path.display().to_string(),
            source: e,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        self.hosts = Some(ips);
        Ok(())
    }

    async fn sync_init(
        &mut self,
        rt: &PodRuntime,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<InitProgress, SyncError> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        // Once a regular container has run, initialization is over.
        if spec.containers.iter().any(|c| rt.latest(&c.name).is_some()) {
            return Ok(InitProgress::Done);
        }
        for c in spec.init_containers.iter().flatten() {
            let latest = rt.latest(&c.name);
            if is_sidecar(c) {
                match latest {
                    Some(i) if i.state == State::Running => {
                        let started = c.startup_probe.is_none()
                            || self.probes.results.get(&i.id, Kind::Startup) == Some(probes::Result::Success);
                        if started {
                            continue;
                        }
                        return Ok(InitProgress::Waiting(None, false));
                    }
                    _ => {
                        let (w, started) = self.ensure(c, rt, sandbox_id, sandbox_config).await?;
                        return Ok(InitProgress::Waiting(w, started));
                    }
                }
            }
            match latest.map(|i| (i.state, i.exit_code)) {
                Some((State::Exited, 0)) => continue,
                Some((State::Running, _)) => return Ok(InitProgress::Waiting(None, false)),
                Some((State::Exited, _)) if policy(&self.pod) == "Never" => return Ok(InitProgress::Failed),
                _ => {
                    let (w, started) = self.ensure(c, rt, sandbox_id, sandbox_config).await?;
                    return Ok(InitProgress::Waiting(w, started));
                }
            }
        }
        Ok(InitProgress::Done)
    }

    /// Starts container `c` if it should run and does not: the heart of
    /// `computePodActions` + `startContainer` for one container. Returns when to
    /// look again (a back-off's end) and whether something was started.
    async fn ensure(
        &mut self,
        c: &Container,
        rt: &PodRuntime,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<(Option<Duration>, bool), SyncError> {
        let pod = self.pod.clone();
        let latest = rt.latest(&c.name).cloned();
        if latest.as_ref().is_some_and(|i| i.state == State::Running) {
            self.reasons.remove(&c.name);
            return Ok((None, false));
        }
        if !should_restart(&pod, c, latest.as_ref()) {
            self.reasons.remove(&c.name);
            return Ok((None, false));
        }
        let object = self.object();
        let now = SystemTime::now();
        if let Some(info) = latest.as_ref().filter(|i| i.state == State::Exited) {
            let key = format!("{}/{}", c.name, containers::hash(c));
            let finished = SystemTime::UNIX_EPOCH + Duration::from_nanos(info.finished_at.max(0) as u64);
            // A restarted kubelet does not remember the back-off; the restart count
            // says how far it had gone.
            let started = SystemTime::UNIX_EPOCH + Duration::from_nanos(info.started_at.max(0) as u64);
            self.restarts.seed(&key, info.restart_count.max(0) as u32, started);
            if let Some(until) = self.restarts.in_backoff_since(&key, finished, now) {
                let delay = self.restarts.delay(&key).unwrap_or_default();
                let meta = &pod.metadata;
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    format_duration(delay),
                    c.name,
                    meta.name.as_deref().unwrap_or_default(),
                    meta.namespace.as_deref().unwrap_or_default(),
                    self.uid
                );
                if self.reasons.get(&c.name).is_none_or(|r| r.reason != "CrashLoopBackOff") {
                    self.node.recorder.warning(
                        &object,
                        Some(&c.name),
                        "BackOff",
                        format!("Back-off restarting failed container {} in pod {}", c.name, self.name()),
                    );
                }
                self.reasons.insert(
                    c.name.clone(),
                    StartError {
                        reason: "CrashLoopBackOff",
                        message,
                    },
                );
                let wait = until.duration_since(now).unwrap_or_default();
                return Ok((Some(wait + Duration::from_millis(50)), false));
            }
            self.restarts.next(&key, now);
        }
        if let Some(info) = latest.as_ref().filter(|i| i.state == State::Unknown) {
            let _ = self.node.runtime.stop_container(&info.id, containers::MIN_GRACE).await;
        }
        self.node.busy.touch();
        let restart_count = latest.as_ref().map(|i| i.restart_count + 1).unwrap_or(0);
        let image = match containers::ensure_image(&self.node, &pod, c, sandbox_config).await {
            Ok(image) => image,
            Err(e) => {
                let wait = match e.reason {
                    "ErrImagePull" => Duration::from_secs(2),
                    "ImagePullBackOff" => {
                        let key = containers::image_backoff_key(&pod, c.image.as_deref().unwrap_or_default());
                        let until = self.node.image_backoff.lock().ok().and_then(|b| b.until(&key));
                        until
                            .and_then(|u| u.duration_since(SystemTime::now()).ok())
                            .unwrap_or(RETRY)
                    }
                    _ => RETRY,
                };
                self.reasons.insert(c.name.clone(), e);
                return Ok((Some(wait), false));
            }
        };
        let sources = match self.sources(c).await {
            Ok(s) => s,
            Err(e) => {
                self.reasons.insert(
                    c.name.clone(),
                    StartError {
                        reason: "CreateContainerConfigError",
                        message: e.to_string(),
                    },
                );
                return Ok((Some(RETRY), false));
            }
        };
        let empty = VolumeMap::new();
        let facts = self.facts(rt);
        let ctx = StartContext {
            pod: &pod,
            container: c,
            sandbox_id,
            sandbox_config,
            volumes: self.volumes.as_ref().unwrap_or(&empty),
            facts: &facts,
            sources: &sources,
            restart_count,
            pod_dir: &self.pod_dir,
            pod_ip: self.pod_ip(rt),
            memory_capacity: self.node.memory_capacity,
        };
        match containers::start(&self.node, &ctx, &image).await {
            Ok(_) => {
                self.reasons.remove(&c.name);
                Ok((None, true))
            }
            Err(e) => {
                if e.reason == "CreateContainerConfigError" {
                    self.node
                        .recorder
                        .warning(&object, Some(&c.name), "Failed", format!("Error: {}", e.message));
                }
                let started = matches!(e.reason, "RunContainerError" | "PostStartHookError");
                self.reasons.insert(c.name.clone(), e);
                Ok((Some(RETRY), started))
            }
        }
    }

    /// The ConfigMaps, Secrets and Services a container's environment refers to.
    async fn sources(&self, c: &Container) -> Result<Sources, kube::Error> {
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let (config_maps, secrets) = super::env::references(c);
        let mut sources = Sources::default();
        for name in config_maps {
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.config_maps.entry(name) {
                let cm = self.node.objects.config_map(namespace, slot.key()).await?;
                slot.insert(cm);
            }
        }
        for name in secrets {
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.secrets.entry(name) {
                let s = self.node.objects.secret(namespace, slot.key()).await?;
                slot.insert(s);
            }
        }
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        sources.services = self.node.objects.services(namespace, links).await.unwrap_or_default();
        Ok(sources)
    }

    fn sync_probes(&mut self, rt: &PodRuntime) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let old = self.status.clone().unwrap_or_default();
        let was_ready = |id: &str| {
            let full = format!("{}://{id}", self.node.runtime_name);
            old.container_statuses
                .iter()
                .flatten()
                .chain(old.init_container_statuses.iter().flatten())
                .any(|s| s.ready && s.container_id.as_deref() == Some(full.as_str()))
        };
        let candidates: Vec<&Container> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten().filter(|c| is_sidecar(c)))
            .collect();
        let mut instances = Vec::new();
        for c in candidates {
            if let Some(info) = rt.latest(&c.name).filter(|i| i.state == State::Running) {
                instances.push(Instance {
                    container: c,
                    container_id: &info.id,
                    started_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(info.started_at.max(0) as u64),
                    was_ready: was_ready(&info.id),
                });
            }
        }
        let pod_ip = self.pod_ip(rt);
        let object = self.object();
        self.probes.sync(&instances, pod_ip, &object);
    }

    /// Computes the status and PATCHes `pods/status` if it differs from the last.
    async fn write_status(&mut self, rt: &PodRuntime, terminal: bool) {
        let mut pod = (*self.pod).clone();
        pod.status = self.status.clone();
        let host_ips = self.host_ips();
        let new = status::generate(&status::Inputs {
            pod: &pod,
            runtime: rt,
            reasons: &self.reasons,
            probes: &self.probes.results,
            host_ips: &host_ips,
            runtime_name: &self.node.runtime_name,
            terminal,
            now: Timestamp::now(),
        });
        let old_json = serde_json::to_value(self.status.clone().unwrap_or_default()).unwrap_or_default();
        let new_json = serde_json::to_value(&new).unwrap_or_default();
        let Some(diff) = status::merge_diff(&old_json, &new_json) else {
            return;
        };
        let patch = serde_json::json!({"metadata": {"uid": self.uid}, "status": diff});
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = self.pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), namespace);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                self.status = updated.status.or(Some(new));
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "writing pod status"),
        }
    }

    /// Stops every container of the pod in parallel, each within `grace`.
    async fn kill_all(&self, rt: &PodRuntime, grace: i64) -> Result<(), SyncError> {
        let object = self.object();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let pod_ip = self.pod_ip(rt);
        let live: Vec<&ContainerInfo> = rt
            .containers
            .iter()
            .filter(|c| matches!(c.state, State::Running | State::Created | State::Unknown))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        self.node.busy.touch();
        // Regular containers first, sidecars after them (`terminationOrdering`).
        let (sidecars, regular): (Vec<&ContainerInfo>, Vec<&ContainerInfo>) = live.into_iter().partition(|i| {
            spec.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == i.name && is_sidecar(c))
        });
        for group in [regular, sidecars] {
            let kills = group.into_iter().map(|info| {
                let c = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == info.name);
                let why = (info.state == State::Running).then(|| format!("Stopping container {}", info.name));
                containers::kill(&self.node, &object, c, info, grace, pod_ip, why)
            });
            for result in futures_util::future::join_all(kills).await {
                result?;
            }
        }
        Ok(())
    }

    /// The pod finished on its own (restartPolicy says no container runs again):
    /// stop what is left and the sandbox, write the final status.
    async fn finish(&mut self, rt: PodRuntime) -> Result<Duration, SyncError> {
        self.probes.stop();
        self.kill_all(&rt, self.grace_period()).await?;
        for s in rt.sandboxes.iter().filter(|s| s.ready) {
            match self.node.runtime.stop_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        let rt = self.fetch().await?;
        self.write_status(&rt, true).await;
        if let Err(e) = volumes::unmount_all(&self.pod_dir, self.node.mounter.as_ref()) {
            tracing::warn!(pod = %self.name(), error = %e, "unmounting volumes");
        }
        self.stage = Stage::Terminated;
        Ok(Duration::ZERO)
    }

    // ----- Terminating -----

    async fn sync_terminating(&mut self) -> Result<Duration, SyncError> {
        self.probes.stop_liveness();
        let rt = self.fetch().await?;
        let grace = if self.removed && self.pod.metadata.deletion_timestamp.is_none() {
            containers::MIN_GRACE
        } else {
            self.grace_period()
        };
        self.kill_all(&rt, grace).await?;
        for s in rt.sandboxes.iter().filter(|s| s.ready) {
            match self.node.runtime.stop_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        let rt = self.fetch().await?;
        if !self.removed {
            self.write_status(&rt, true).await;
        }
        if let Err(e) = volumes::unmount_all(&self.pod_dir, self.node.mounter.as_ref()) {
            tracing::warn!(pod = %self.name(), error = %e, "unmounting volumes");
        }
        self.stage = if self.removed {
            Stage::Cleanup
        } else {
            Stage::Terminated
        };
        Ok(Duration::ZERO)
    }

    // ----- Terminated -----

    async fn sync_terminated(&mut self) -> Result<Duration, SyncError> {
        if self.removed {
            self.stage = Stage::Cleanup;
            return Ok(Duration::ZERO);
        }
        if self.pod.metadata.deletion_timestamp.is_none() {
            // A finished pod keeps its (stopped) containers for their logs.
            let rt = self.fetch().await?;
            if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
                // Adopted after a restart with something still running: stop it.
                self.kill_all(&rt, self.grace_period()).await?;
                for s in rt.sandboxes.iter().filter(|s| s.ready) {
                    let _ = self.node.runtime.stop_pod_sandbox(&s.id).await;
                }
            }
            return Ok(Duration::from_secs(600));
        }
        // Deleted and stopped: let the API drop the object (`canBeDeleted`).
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = self.pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(Duration::from_secs(5)),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                self.removed = true;
                self.stage = Stage::Cleanup;
                Ok(Duration::ZERO)
            }
            Err(e) => Err(e.into()),
        }
    }

    // ----- Cleanup -----

    async fn sync_cleanup(&mut self) -> Result<Duration, SyncError> {
        self.probes.stop();
        let rt = self.fetch().await?;
        if rt.running().next().is_some() {
            self.kill_all(&rt, containers::MIN_GRACE).await?;
        }
        for s in &rt.sandboxes {
            let _ = self.node.runtime.stop_pod_sandbox(&s.id).await;
            match self.node.runtime.remove_pod_sandbox(&s.id).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        for c in &rt.containers {
            match self.node.runtime.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        volumes::teardown(&self.pod_dir, self.node.mounter.as_ref())?;
        let logs = sandbox::log_directory(&self.node.settings.logs_dir, &self.pod);
        if logs.starts_with(&self.node.settings.logs_dir) && logs != self.node.settings.logs_dir {
            let _ = std::fs::remove_dir_all(&logs);
        }
        super::resources::remove_pod_cgroups(self.node.settings.cgroup_driver, &self.uid);
        self.stage = Stage::Done;
        Ok(Duration::ZERO)
    }
}

enum InitProgress {
    Done,
    /// Not done; when to look again and whether something was started.
    Waiting(Option<Duration>, bool),
    /// An init container failed and the pod never restarts.
    Failed,
}

/// Go's `time.Duration` text for whole seconds and minutes (`10s`, `2m40s`, `5m0s`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m0s");
    }
}

#[cfg(test)]
mod worker_tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;
    use crate::kubelet::cri::api::ContainerState::{ContainerExited, ContainerRunning};
    use crate::kubelet::pods::fake::FakeRuntime;
    use crate::kubelet::pods::{Settings, events, objects, pleg, sandbox, snapshot};

    /// Just enough of the API for one worker: status patches (recorded and merged
    /// into the returned pod), service lists, events, deletes.
    fn fake_api(pod: Value, patches: Arc<Mutex<Vec<Value>>>) -> kube::Client {
        let pod = Arc::new(Mutex::new(pod));
        let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
            let (pod, patches) = (pod.clone(), patches.clone());
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
                    .await
                    .unwrap_or_default();
                let path = parts.uri.path().to_string();
                let reply = if parts.method == "PATCH" && path.ends_with("/status") {
                    let patch: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    patches.lock().unwrap().push(patch.clone());
                    let mut current = pod.lock().unwrap();
                    json_patch::merge(&mut current, &patch);
                    current.clone()
                } else if path.contains("/services") {
                    json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": []})
                } else {
                    pod.lock().unwrap().clone()
                };
                let body = kube::client::Body::from(serde_json::to_vec(&reply).unwrap_or_default());
                Ok::<_, std::convert::Infallible>(
                    axum::http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(body)
                        .unwrap(),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    struct NoMounts;

    impl volumes::Mounter for NoMounts {
        fn mount_tmpfs(&self, _: &std::path::Path, _: Option<u64>, _: u32) -> std::io::Result<()> {
            Ok(())
        }
        fn unmount(&self, _: &std::path::Path) -> std::io::Result<()> {
            Ok(())
        }
        fn is_mount_point(&self, _: &std::path::Path) -> std::io::Result<bool> {
            Ok(false)
        }
    }

    struct Setup {
        worker: Worker,
        runtime: Arc<FakeRuntime>,
        patches: Arc<Mutex<Vec<Value>>>,
        _dir: tempfile::TempDir,
    }

    fn setup(pod: Value, runtime: FakeRuntime) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let patches = Arc::new(Mutex::new(Vec::new()));
        let client = fake_api(pod.clone(), patches.clone());
        let runtime = Arc::new(runtime);
        let node = Arc::new(Node {
            objects: Arc::new(objects::ApiObjects::new(client.clone())),
            client,
            name: "n1".into(),
            runtime: runtime.clone(),
            mounter: Arc::new(NoMounts),
            settings: Settings {
                node_ips: vec!["192.168.0.2".parse().unwrap()],
                ..Settings::new(dir.path())
            },
            recorder: events::Recorder::disabled(),
            host_resolv: sandbox::ResolvConf::default(),
            pull_lock: tokio::sync::Mutex::new(()),
            busy: Arc::new(pleg::Busy::default()),
            image_backoff: std::sync::Mutex::new(Backoff::containers()),
            runtime_name: "fake".into(),
            memory_capacity: 1 << 30,
            cpu_milli: 2000,
        });
        let pod: Pod = serde_json::from_value(pod).unwrap();
        Setup {
            worker: Worker::new(node, Arc::new(pod)),
            runtime,
            patches,
            _dir: dir,
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent"}]},
            "status": {"phase": "Running", "containerStatuses": []}
        })
    }

    fn annotations(container: &Container, restarts: i32) -> HashMap<String, String> {
        [
            (snapshot::ANNOTATION_HASH.to_string(), containers::hash(container)),
            (snapshot::ANNOTATION_RESTART_COUNT.to_string(), restarts.to_string()),
        ]
        .into()
    }

    fn now_ns() -> i64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    }

    #[tokio::test]
    async fn adopts_a_running_container_without_touching_it() {
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("u1", true, 1);
        let id = rt.add_container("u1", &sandbox, "c", ContainerRunning, 2);
        let spec: Pod = serde_json::from_value(pod()).unwrap();
        let c = spec.spec.as_ref().unwrap().containers[0].clone();
        rt.set_status(&id, 0, now_ns() - 60_000_000_000, 0, annotations(&c, 0));
        let mut s = setup(pod(), rt);
        s.worker.step().await;
        assert_eq!(s.worker.stage, Stage::Running);
        let mutating: Vec<String> = s
            .runtime
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("List"))
            .collect();
        assert!(
            mutating.is_empty(),
            "a healthy adopted container is left alone: {mutating:?}"
        );
        let patches = s.patches.lock().unwrap();
        let last = patches.last().expect("the status is written");
        let cs = &last["status"]["containerStatuses"][0];
        assert_eq!(cs["containerID"], format!("fake://{id}"));
        assert_eq!(cs["restartCount"], 0);
        assert!(cs["state"]["running"].is_object(), "{cs}");
        assert_eq!(cs["ready"], true);
    }

    #[tokio::test]
    async fn a_restarted_kubelet_keeps_backing_off() {
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("u1", true, 1);
        let id = rt.add_container("u1", &sandbox, "c", ContainerExited, 2);
        let spec: Pod = serde_json::from_value(pod()).unwrap();
        let c = spec.spec.as_ref().unwrap().containers[0].clone();
        let now = now_ns();
        // The third instance (two restarts) just crashed: back-off is 20 s now.
        rt.set_status(&id, 2, now - 1_000_000_000, now, annotations(&c, 2));
        let mut s = setup(pod(), rt);
        let wait = s.worker.step().await;
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(21),
            "woken when the back-off ends: {wait:?}"
        );
        assert!(
            !s.runtime.calls().iter().any(|c| c.starts_with("CreateContainer")),
            "{:?}",
            s.runtime.calls()
        );
        let patches = s.patches.lock().unwrap();
        let cs = &patches.last().unwrap()["status"]["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff", "{cs}");
        assert!(
            cs["state"]["waiting"]["message"]
                .as_str()
                .unwrap()
                .starts_with("back-off 20s restarting failed container=c pod=p_ns(u1)"),
            "{cs}"
        );
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 2, "{cs}");
        assert_eq!(cs["restartCount"], 2);
    }

    #[tokio::test]
    async fn a_changed_spec_restarts_the_container() {
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("u1", true, 1);
        let id = rt.add_container("u1", &sandbox, "c", ContainerRunning, 2);
        let old = Container {
            name: "c".into(),
            image: Some("busybox:old".into()),
            ..Default::default()
        };
        rt.set_status(&id, 0, now_ns(), 0, annotations(&old, 0));
        let mut s = setup(pod(), rt);
        s.worker.step().await;
        let calls = s.runtime.calls();
        assert!(calls.contains(&format!("StopContainer {id} 30")), "{calls:?}");
        assert!(calls.contains(&"CreateContainer c".to_string()), "{calls:?}");
    }

    #[tokio::test]
    async fn a_deleted_pod_is_stopped_and_removed_from_the_api() {
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("u1", true, 1);
        let id = rt.add_container("u1", &sandbox, "c", ContainerRunning, 2);
        let mut p = pod();
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(7);
        let spec: Pod = serde_json::from_value(p.clone()).unwrap();
        rt.set_status(
            &id,
            0,
            now_ns(),
            0,
            annotations(&spec.spec.as_ref().unwrap().containers[0], 0),
        );
        let mut s = setup(p, rt);
        s.worker.step().await;
        assert_eq!(s.worker.stage, Stage::Terminated);
        let calls = s.runtime.calls();
        assert!(calls.contains(&format!("StopContainer {id} 7")), "{calls:?}");
        assert!(calls.contains(&format!("StopPodSandbox {sandbox}")), "{calls:?}");
        s.worker.step().await; // DELETE with grace 0
        s.worker.apply(Update::Removed);
        s.worker.step().await; // Terminated → Cleanup
        assert_eq!(s.worker.stage, Stage::Cleanup);
        s.worker.step().await;
        assert_eq!(s.worker.stage, Stage::Done);
        assert!(s.runtime.sandbox_ids().is_empty() && s.runtime.container_ids().is_empty());
    }
}
