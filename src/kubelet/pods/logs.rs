//! Container log rotation (the kubelet's container log manager): every 10 s the log
//! file of each running container is checked, and one larger than
//! `containerLogMaxSize` (10 MiB) is renamed to `<n>.log.<timestamp>` and the
//! runtime told to reopen it (CRI `ReopenContainerLog`); at most
//! `containerLogMaxFiles` (5) files per container are kept, the oldest rotated ones
//! going first. Without it a chatty container fills the node's disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Node;
use super::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use super::snapshot::ANNOTATION_RESTART_COUNT;
use crate::kubelet::cri::{self, Runtime, api};

const PERIOD: Duration = Duration::from_secs(10);
/// `containerLogMaxSize`.
pub const MAX_SIZE: u64 = 10 << 20;
/// `containerLogMaxFiles`, the current file included.
pub const MAX_FILES: usize = 5;

pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
        if let Err(e) = rotate_all(node.runtime.as_ref(), &node.settings.logs_dir, MAX_SIZE, MAX_FILES).await {
            tracing::debug!(error = %e, "container log rotation");
        }
    }
}

/// Where the kubelet told the runtime to write a container's log (from the labels
/// and annotations it put on the container).
pub fn log_path(logs_dir: &Path, container: &api::Container) -> Option<PathBuf> {
    let l = &container.labels;
    let pod_dir = format!(
        "{}_{}_{}",
        l.get(LABEL_POD_NAMESPACE)?,
        l.get(LABEL_POD_NAME)?,
        l.get(LABEL_POD_UID)?
    );
    let restarts = container.annotations.get(ANNOTATION_RESTART_COUNT)?;
    Some(
        logs_dir
            .join(pod_dir)
            .join(l.get(LABEL_CONTAINER_NAME)?)
            .join(format!("{restarts}.log")),
    )
}

/// One pass over the running containers.
pub async fn rotate_all(runtime: &dyn Runtime, logs_dir: &Path, max_size: u64, max_files: usize) -> cri::Result<()> {
    let running = runtime
        .list_containers(Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue {
                state: api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }))
        .await?;
    for c in &running {
        let Some(path) = log_path(logs_dir, c) else { continue };
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() <= max_size {
            continue;
        }
        let stamp = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S")
            .to_string();
        let rotated = PathBuf::from(format!("{}.{stamp}", path.display()));
        if std::fs::rename(&path, &rotated).is_err() {
            continue;
        }
        if let Err(e) = runtime.reopen_container_log(&c.id).await {
            // Keep writing to the old file rather than losing the log.
            let _ = std::fs::rename(&rotated, &path);
            tracing::debug!(container = %c.id, error = %e, "reopening a rotated log");
            continue;
        }
        prune(&path, max_files);
    }
    Ok(())
}

/// Removes the oldest rotated files of `current` beyond `max_files` in all.
fn prune(current: &Path, max_files: usize) {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    // Timestamps sort as text.
    rotated.sort();
    let keep = max_files.saturating_sub(1);
    let excess = rotated.len().saturating_sub(keep);
    for old in rotated.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::pods::fake::FakeRuntime;
    use api::ContainerState::ContainerRunning;

    #[tokio::test]
    async fn rotates_big_logs_and_keeps_a_few() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("u1", true, 1);
        let id = rt.add_container("u1", &sandbox, "c", ContainerRunning, 2);
        {
            let mut state = rt.0.lock().unwrap();
            let c = state.containers.iter_mut().find(|c| c.id == id).unwrap();
            c.labels.insert(LABEL_POD_NAMESPACE.into(), "ns".into());
            c.labels.insert(LABEL_POD_NAME.into(), "p".into());
            c.annotations.insert(ANNOTATION_RESTART_COUNT.into(), "0".into());
        }
        let path = tmp.path().join("ns_p_u1/c/0.log");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for old in [
            "20200101-000000",
            "20200102-000000",
            "20200103-000000",
            "20200104-000000",
        ] {
            std::fs::write(path.with_file_name(format!("0.log.{old}")), "old").unwrap();
        }
        std::fs::write(&path, "small").unwrap();
        rotate_all(&rt, tmp.path(), 10, 3).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "small", "small logs stay");

        std::fs::write(&path, "x".repeat(100)).unwrap();
        rotate_all(&rt, tmp.path(), 10, 3).await.unwrap();
        assert!(
            rt.calls().contains(&format!("ReopenContainerLog {id}")),
            "{:?}",
            rt.calls()
        );
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // The fake does not recreate 0.log; the two newest rotated files remain.
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[0], "0.log.20200104-000000");
        assert!(names[1].starts_with("0.log.2"), "{names:?}");
    }
}
