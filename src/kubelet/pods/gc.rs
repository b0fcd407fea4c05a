//! Garbage collection (`kuberuntime_gc.go` and the housekeeping of
//! `HandlePodCleanups`), once a minute: containers and sandboxes of pods this node
//! no longer runs are stopped and removed (pods deleted while the agent was down);
//! of each container of a live pod only the newest dead instance is kept (for
//! `lastState` and `kubectl logs --previous`); dead sandboxes older than the pod's
//! newest are removed once empty; pod and log directories of unknown pods go
//! (unmounting first, never deleting across a mount).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use super::volumes;
use super::{Node, Settings};
use crate::kubelet::cri::Runtime;
use crate::kubelet::cri::api;

const PERIOD: Duration = Duration::from_secs(60);
const FIRST: Duration = Duration::from_secs(20);

/// The pods that have a worker, and whether the first full list of the node's
/// pods arrived (before that nothing is an orphan).
#[derive(Debug, Default)]
pub struct Known(Mutex<(bool, HashSet<String>)>);

impl Known {
    pub fn insert(&self, uid: &str) {
        if let Ok(mut k) = self.0.lock() {
            k.1.insert(uid.to_string());
        }
    }

    pub fn remove(&self, uid: &str) {
        if let Ok(mut k) = self.0.lock() {
            k.1.remove(uid);
        }
    }

    /// The first full list is in.
    pub fn synced(&self) {
        if let Ok(mut k) = self.0.lock() {
            k.0 = true;
        }
    }

    fn snapshot(&self) -> Option<HashSet<String>> {
        let k = self.0.lock().ok()?;
        k.0.then(|| k.1.clone())
    }
}

pub async fn run(node: Arc<Node>, known: Arc<Known>, shutdown: CancellationToken) {
    let mut wait = FIRST;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = PERIOD;
        let host = Host {
            runtime: node.runtime.as_ref(),
            mounter: node.mounter.as_ref(),
            settings: &node.settings,
        };
        if let Err(e) = collect(&host, &known).await {
            tracing::debug!(error = %e, "container garbage collection");
        }
    }
}

/// What a collection touches.
pub struct Host<'a> {
    pub runtime: &'a dyn Runtime,
    pub mounter: &'a dyn volumes::Mounter,
    pub settings: &'a Settings,
}

/// One collection pass.
pub async fn collect(node: &Host<'_>, known: &Known) -> Result<(), crate::kubelet::cri::Error> {
    let runtime = node.runtime;
    let containers = runtime.list_containers(None).await?;
    let sandboxes = runtime.list_pod_sandbox(None).await?;
    // Read after listing: a pod whose worker starts now is already known.
    let Some(known) = known.snapshot() else {
        return Ok(());
    };
    let uid_of = |labels: &HashMap<String, String>| labels.get(LABEL_POD_UID).cloned();

    // Orphans: everything of pods without a worker.
    for c in &containers {
        let Some(uid) = uid_of(&c.labels) else { continue };
        if known.contains(&uid) {
            continue;
        }
        if c.state == api::ContainerState::ContainerRunning as i32 {
            tracing::info!(container = %c.id, pod = %uid, "stopping a container of a pod this node no longer runs");
            let _ = runtime.stop_container(&c.id, super::containers::MIN_GRACE).await;
        }
        let _ = runtime.remove_container(&c.id).await;
    }
    for s in &sandboxes {
        let Some(uid) = uid_of(&s.labels) else { continue };
        if known.contains(&uid) {
            continue;
        }
        let _ = runtime.stop_pod_sandbox(&s.id).await;
        let _ = runtime.remove_pod_sandbox(&s.id).await;
    }

    // Dead containers of live pods: keep the newest dead one per container.
    let mut dead: HashMap<(String, String), Vec<&api::Container>> = HashMap::new();
    for c in &containers {
        let (Some(uid), Some(name)) = (uid_of(&c.labels), c.labels.get(LABEL_CONTAINER_NAME)) else {
            continue;
        };
        if known.contains(&uid) && c.state == api::ContainerState::ContainerExited as i32 {
            dead.entry((uid, name.clone())).or_default().push(c);
        }
    }
    for (_, mut list) in dead {
        list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        for c in list.into_iter().skip(1) {
            let _ = runtime.remove_container(&c.id).await;
        }
    }

    // Dead, empty sandboxes that are not their pod's newest.
    let mut by_pod: HashMap<String, Vec<&api::PodSandbox>> = HashMap::new();
    for s in &sandboxes {
        if let Some(uid) = uid_of(&s.labels).filter(|u| known.contains(u)) {
            by_pod.entry(uid).or_default().push(s);
        }
    }
    let remaining = runtime.list_containers(None).await.unwrap_or_default();
    let occupied: HashSet<&str> = remaining.iter().map(|c| c.pod_sandbox_id.as_str()).collect();
    for (_, mut list) in by_pod {
        list.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        for s in list.into_iter().skip(1) {
            if s.state != api::PodSandboxState::SandboxReady as i32 && !occupied.contains(s.id.as_str()) {
                let _ = runtime.remove_pod_sandbox(&s.id).await;
            }
        }
    }

    // Directories of pods this node does not run.
    let live: HashSet<String> = runtime
        .list_pod_sandbox(None)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|s| uid_of(&s.labels))
        .collect();
    if let Ok(entries) = std::fs::read_dir(&node.settings.pods_dir) {
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if known.contains(&uid) || live.contains(&uid) {
                continue;
            }
            tracing::info!(pod = %uid, "removing the directory of a pod this node no longer runs");
            if let Err(err) = volumes::teardown(&e.path(), node.mounter) {
                tracing::warn!(pod = %uid, error = %err, "removing an orphaned pod directory");
            }
            super::resources::remove_pod_cgroups(node.settings.cgroup_driver, &uid);
        }
    }
    if let Ok(entries) = std::fs::read_dir(&node.settings.logs_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(uid) = name.rsplit('_').next() else { continue };
            if !known.contains(uid) && !live.contains(uid) && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::pods::fake::FakeRuntime;
    use api::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    /// A mounter that never sees mounts (plain directories in a temp dir).
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

    #[tokio::test]
    async fn keeps_the_newest_dead_container_and_removes_orphans() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = Settings::new(tmp.path());
        for uid in ["live", "gone", "stray"] {
            std::fs::create_dir_all(settings.pods_dir.join(uid).join("volumes")).unwrap();
        }
        std::fs::create_dir_all(settings.logs_dir.join("ns_p_gone")).unwrap();
        std::fs::create_dir_all(settings.logs_dir.join("ns_p_live")).unwrap();

        let rt = FakeRuntime::default();
        let old_sandbox = rt.add_sandbox("live", false, 1);
        let sandbox = rt.add_sandbox("live", true, 2);
        let oldest = rt.add_container("live", &old_sandbox, "c", Exited, 10);
        let previous = rt.add_container("live", &sandbox, "c", Exited, 20);
        let current = rt.add_container("live", &sandbox, "c", Running, 30);
        let init = rt.add_container("live", &sandbox, "init", Exited, 5);
        let orphan_sandbox = rt.add_sandbox("gone", true, 3);
        let orphan = rt.add_container("gone", &orphan_sandbox, "x", Running, 40);

        let known = Known::default();
        known.insert("live");
        let host = Host {
            runtime: &rt,
            mounter: &NoMounts,
            settings: &settings,
        };

        // Before the first full list of pods nothing is an orphan.
        collect(&host, &known).await.unwrap();
        assert_eq!(rt.container_ids().len(), 5);
        known.synced();

        collect(&host, &known).await.unwrap();
        let left = rt.container_ids();
        assert!(
            left.contains(&current) && left.contains(&previous) && left.contains(&init),
            "{left:?}"
        );
        assert!(!left.contains(&oldest), "the older dead instance goes: {left:?}");
        assert!(!left.contains(&orphan), "containers of unknown pods go: {left:?}");
        assert!(
            rt.calls().contains(&format!("StopContainer {orphan} 2")),
            "{:?}",
            rt.calls()
        );
        let sandboxes = rt.sandbox_ids();
        assert_eq!(sandboxes, vec![sandbox], "the empty old sandbox and the orphan's go");
        assert!(settings.pods_dir.join("live").is_dir());
        assert!(!settings.pods_dir.join("gone").exists());
        assert!(!settings.pods_dir.join("stray").exists());
        assert!(settings.logs_dir.join("ns_p_live").is_dir());
        assert!(!settings.logs_dir.join("ns_p_gone").exists());
    }
}
