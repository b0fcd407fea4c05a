//! The pod lifecycle event generator: notices container and sandbox state changes in
//! the runtime and tells the pods' workers. containerd reports container exits as
//! events (`/tasks/exit`, `/tasks/oom`), each of which triggers an immediate relist;
//! the relist itself (ListPodSandbox + ListContainers, compared with the previous)
//! runs every second only while some worker is starting or stopping something, and
//! otherwise every 30 s (2 s when the runtime gives no events), so an idle node does
//! next to nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sandbox::LABEL_POD_UID;
use crate::kubelet::cri::Runtime;

/// The upstream generic PLEG period, used while pods are changing.
const FAST: Duration = Duration::from_secs(1);
/// Relist period of an idle node whose runtime sends exit events.
const IDLE_WITH_EVENTS: Duration = Duration::from_secs(30);
/// Relist period of an idle node without runtime events.
const IDLE_WITHOUT_EVENTS: Duration = Duration::from_secs(2);
/// How long one worker action keeps the fast relist on.
const BUSY_FOR: Duration = Duration::from_secs(10);
const RESUBSCRIBE: Duration = Duration::from_secs(30);

/// "Something is changing": workers touch it when they start or kill something.
#[derive(Debug)]
pub struct Busy(Mutex<Instant>);

impl Default for Busy {
    fn default() -> Self {
        Busy(Mutex::new(Instant::now()))
    }
}

impl Busy {
    pub fn touch(&self) {
        if let Ok(mut until) = self.0.lock() {
            *until = Instant::now() + BUSY_FOR;
        }
    }

    pub fn active(&self) -> bool {
        self.0.lock().map(|until| Instant::now() < *until).unwrap_or(true)
    }
}

/// Relists until shutdown, sending the UIDs of pods whose runtime state changed.
pub async fn run(
    runtime: Arc<dyn Runtime>,
    busy: Arc<Busy>,
    changed: mpsc::UnboundedSender<String>,
    shutdown: CancellationToken,
) {
    let mut last: HashMap<String, (String, i32)> = HashMap::new();
    let mut exits: Option<BoxStream<'static, String>> = None;
    let mut subscribed_at: Option<Instant> = None;
    loop {
        if exits.is_none() && subscribed_at.is_none_or(|at| at.elapsed() >= RESUBSCRIBE) {
            subscribed_at = Some(Instant::now());
            match runtime.container_exits().await {
                Ok(stream) => exits = Some(stream),
                Err(e) => tracing::debug!(error = %e, "no container events from the runtime; relisting"),
            }
        }
        match relist(runtime.as_ref(), &mut last).await {
            Ok(uids) => {
                for uid in uids {
                    let _ = changed.send(uid);
                }
            }
            Err(e) => tracing::debug!(error = %e, "relisting the runtime"),
        }
        let period = match (busy.active(), exits.is_some()) {
            (true, _) => FAST,
            (false, true) => IDLE_WITH_EVENTS,
            (false, false) => IDLE_WITHOUT_EVENTS,
        };
        let next_exit = async {
            match exits.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            exit = next_exit => {
                if exit.is_none() {
                    exits = None;
                }
            }
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// One relist: the pods whose containers or sandboxes appeared, changed state or
/// went away since the last one.
async fn relist(
    runtime: &dyn Runtime,
    last: &mut HashMap<String, (String, i32)>,
) -> crate::kubelet::cri::Result<HashSet<String>> {
    let sandboxes = runtime.list_pod_sandbox(None).await?;
    let containers = runtime.list_containers(None).await?;
    let mut now: HashMap<String, (String, i32)> = HashMap::with_capacity(sandboxes.len() + containers.len());
    for s in sandboxes {
        if let Some(uid) = s.labels.get(LABEL_POD_UID) {
            // Sandbox states are offset so they never equal a container state.
            now.insert(s.id, (uid.clone(), 100 + s.state));
        }
    }
    for c in containers {
        if let Some(uid) = c.labels.get(LABEL_POD_UID) {
            now.insert(c.id, (uid.clone(), c.state));
        }
    }
    let mut changed = HashSet::new();
    for (id, (uid, state)) in &now {
        if last.get(id).is_none_or(|(_, old)| old != state) {
            changed.insert(uid.clone());
        }
    }
    for (id, (uid, _)) in last.iter() {
        if !now.contains_key(id) {
            changed.insert(uid.clone());
        }
    }
    *last = now;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::cri::api::ContainerState;
    use crate::kubelet::pods::fake::FakeRuntime;

    #[tokio::test]
    async fn relist_reports_changed_pods_only() {
        let rt = FakeRuntime::default();
        let a = rt.add_sandbox("a", true, 1);
        let b = rt.add_sandbox("b", true, 1);
        let ca = rt.add_container("a", &a, "c", ContainerState::ContainerRunning, 2);
        rt.add_container("b", &b, "c", ContainerState::ContainerRunning, 2);
        let mut last = HashMap::new();
        let first = relist(&rt, &mut last).await.unwrap();
        assert_eq!(first, HashSet::from(["a".to_string(), "b".to_string()]));
        assert!(relist(&rt, &mut last).await.unwrap().is_empty());
        rt.set_state(&ca, ContainerState::ContainerExited);
        assert_eq!(relist(&rt, &mut last).await.unwrap(), HashSet::from(["a".to_string()]));
        rt.remove_pod_sandbox(&b).await.unwrap();
        assert_eq!(relist(&rt, &mut last).await.unwrap(), HashSet::from(["b".to_string()]));
    }

    #[test]
    fn busy_expires() {
        let busy = Busy::default();
        assert!(!busy.active());
        busy.touch();
        assert!(busy.active());
    }
}
