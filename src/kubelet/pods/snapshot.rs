//! What the runtime has for one pod (`GetPodStatus`): its sandboxes (newest first,
//! with the IPs of the newest ready one) and its containers (newest first) with
//! their CRI status, restart count and spec hash from the annotations the kubelet put
//! on them, and the termination message read from the container's message file.
//! Exited containers never change, so their status is cached between syncs.

use std::collections::HashMap;
use std::path::Path;

use super::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::kubelet::cri::{self, Runtime, api};

pub const ANNOTATION_HASH: &str = "io.kubernetes.container.hash";
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const ANNOTATION_TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const ANNOTATION_TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const ANNOTATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const ANNOTATION_PRE_STOP: &str = "io.kubernetes.container.preStopHandler";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

impl State {
    pub fn from_cri(state: i32) -> State {
        match api::ContainerState::try_from(state) {
            Ok(api::ContainerState::ContainerCreated) => State::Created,
            Ok(api::ContainerState::ContainerRunning) => State::Running,
            Ok(api::ContainerState::ContainerExited) => State::Exited,
            _ => State::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub state: State,
    /// Nanoseconds since the epoch; 0 when not (yet) known.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub restart_count: i32,
    pub hash: String,
    pub annotations: HashMap<String, String>,
    pub log_path: String,
}

#[derive(Debug, Clone, Default)]
pub struct PodRuntime {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    /// IPs of the newest sandbox if it is ready.
    pub ips: Vec<String>,
    /// Newest first.
    pub containers: Vec<ContainerInfo>,
}

impl PodRuntime {
    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instances of `name`, newest first.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerInfo> + 'a {
        self.containers.iter().filter(move |c| c.name == name)
    }

    pub fn newest_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// `PodSandboxChanged`: a new sandbox is needed when there is none, the newest is
    /// not ready, or more than one is ready.
    pub fn sandbox_changed(&self) -> bool {
        match self.sandboxes.first() {
            None => true,
            Some(newest) => !newest.ready || self.sandboxes.iter().filter(|s| s.ready).count() > 1,
        }
    }

    pub fn running(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.containers.iter().filter(|c| c.state == State::Running)
    }
}

/// Cache of the statuses of exited containers, which never change.
#[derive(Debug, Default)]
pub struct Cache {
    exited: HashMap<String, ContainerInfo>,
}

impl Cache {
    /// Drops entries of containers that no longer exist.
    fn retain(&mut self, ids: &std::collections::HashSet<&str>) {
        self.exited.retain(|id, _| ids.contains(id.as_str()));
    }
}

fn label_filter(uid: &str) -> HashMap<String, String> {
    [(LABEL_POD_UID.to_string(), uid.to_string())].into()
}

/// Lists and inspects everything the runtime has for pod `uid`.
pub async fn fetch(runtime: &dyn Runtime, uid: &str, cache: &mut Cache) -> cri::Result<PodRuntime> {
    let sandboxes = runtime
        .list_pod_sandbox(Some(api::PodSandboxFilter {
            label_selector: label_filter(uid),
            ..Default::default()
        }))
        .await?;
    let mut sandboxes: Vec<Sandbox> = sandboxes
        .into_iter()
        .map(|s| Sandbox {
            attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            ready: s.state == api::PodSandboxState::SandboxReady as i32,
            created_at: s.created_at,
            id: s.id,
        })
        .collect();
    sandboxes.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let mut ips = Vec::new();
    if let Some(newest) = sandboxes.first().filter(|s| s.ready) {
        match runtime.pod_sandbox_status(&newest.id).await {
            Ok(status) => {
                if let Some(net) = status.network {
                    ips.extend(Some(net.ip).filter(|ip| !ip.is_empty()));
                    ips.extend(net.additional_ips.into_iter().map(|i| i.ip));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }

    let listed = runtime
        .list_containers(Some(api::ContainerFilter {
            label_selector: label_filter(uid),
            ..Default::default()
        }))
        .await?;
    let ids: std::collections::HashSet<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    cache.retain(&ids);
    let mut containers = Vec::with_capacity(listed.len());
    for c in &listed {
        if let Some(info) = cache.exited.get(&c.id) {
            containers.push(info.clone());
            continue;
        }
        let status = match runtime.container_status(&c.id).await {
            Ok(s) => s,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let info = container_info(c, status);
        if info.state == State::Exited {
            cache.exited.insert(info.id.clone(), info.clone());
        }
        containers.push(info);
    }
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(PodRuntime {
        sandboxes,
        ips,
        containers,
    })
}

fn container_info(c: &api::Container, status: api::ContainerStatus) -> ContainerInfo {
    let name = c
        .labels
        .get(LABEL_CONTAINER_NAME)
        .cloned()
        .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
        .unwrap_or_default();
    let annotations = if status.annotations.is_empty() {
        c.annotations.clone()
    } else {
        status.annotations.clone()
    };
    let restart_count = annotations
        .get(ANNOTATION_RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| c.metadata.as_ref().map(|m| m.attempt as i32).unwrap_or(0));
    let state = State::from_cri(status.state);
    let mut message = status.message.clone();
    if state == State::Exited
        && let Some(path) = annotations.get(ANNOTATION_TERMINATION_MESSAGE_PATH)
        && let Some(text) = termination_message(&status, path, &annotations)
    {
        message = if message.is_empty() {
            text
        } else {
            format!("{message}: {text}")
        };
    }
    ContainerInfo {
        id: c.id.clone(),
        name,
        sandbox_id: c.pod_sandbox_id.clone(),
        state,
        created_at: if status.created_at != 0 {
            status.created_at
        } else {
            c.created_at
        },
        started_at: status.started_at,
        finished_at: status.finished_at,
        exit_code: status.exit_code,
        reason: status.reason,
        message,
        image: status
            .image
            .map(|i| i.image)
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default()),
        image_ref: status.image_ref,
        restart_count,
        hash: annotations.get(ANNOTATION_HASH).cloned().unwrap_or_default(),
        annotations,
        log_path: status.log_path,
    }
}

/// The termination message: at most 4 KiB of the file mounted at the container's
/// `terminationMessagePath`, or with `FallbackToLogsOnError` after a failure and an
/// empty file, the tail of the log (80 lines, 2 KiB).
fn termination_message(
    status: &api::ContainerStatus,
    container_path: &str,
    annotations: &HashMap<String, String>,
) -> Option<String> {
    let mount = status.mounts.iter().find(|m| m.container_path == container_path)?;
    let mut text = read_prefix(Path::new(&mount.host_path), 4096).unwrap_or_default();
    let fallback = annotations
        .get(ANNOTATION_TERMINATION_MESSAGE_POLICY)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if text.is_empty() && fallback && status.exit_code != 0 {
        text = log_tail(Path::new(&status.log_path), 80, 2048).unwrap_or_default();
    }
    (!text.is_empty()).then_some(text)
}

fn read_prefix(path: &Path, max: usize) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max as u64)
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The last lines of a CRI log file, content only.
fn log_tail(path: &Path, lines: usize, max: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        // <time> <stream> <P|F> <content>; P records continue in the next one.
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(""));
        current.push_str(content);
        if tag != Some("P") {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    let start = out.len().saturating_sub(lines);
    let mut tail = out[start..].join("\n");
    if tail.len() > max {
        let mut cut = tail.len() - max;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    Some(tail)
}
