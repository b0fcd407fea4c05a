//! Image garbage collection at disk pressure (`image_gc_manager.go`): every five
//! minutes the image filesystem (the one containerd's snapshots live on, from CRI
//! `ImageFsInfo`, else the data dir's) is measured; at or above
//! `imageGCHighThresholdPercent` (85) used, images no container uses (running or
//! dead) are removed, the least recently used first, until usage is below
//! `imageGCLowThresholdPercent` (80). Images first seen less than
//! `imageMinimumGCAge` (2 min) ago, pinned images and the sandbox (pause) image are
//! never removed.
//!
//! DiskPressure (see `node.rs`) is raised when under 5% (at most 2 GiB) of the same
//! filesystem is free, i.e. always above the high threshold: the collector has
//! started freeing space well before the node reports pressure.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Node;
use crate::kubelet::cri::{self, Runtime, api};

/// `imageGCHighThresholdPercent`.
pub const HIGH_THRESHOLD_PERCENT: u64 = 85;
/// `imageGCLowThresholdPercent`.
pub const LOW_THRESHOLD_PERCENT: u64 = 80;
/// `imageMinimumGCAge`.
pub const MIN_AGE: Duration = Duration::from_secs(120);
/// `ImageGCPeriod`.
const PERIOD: Duration = Duration::from_secs(300);

/// Size and free space of the image filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub available: u64,
}

impl FsUsage {
    /// Used space in whole percent (0 for an unknown filesystem).
    pub fn used_percent(&self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let used = self.capacity.saturating_sub(self.available) as u128;
        (used * 100 / self.capacity as u128) as u64
    }

    /// Bytes to free to get below the low threshold (0 below the high threshold).
    pub fn to_free(&self) -> u64 {
        if self.used_percent() < HIGH_THRESHOLD_PERCENT {
            return 0;
        }
        let target_available = (self.capacity as u128 * (100 - LOW_THRESHOLD_PERCENT) as u128 / 100) as u64;
        target_available.saturating_sub(self.available)
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    first_detected: Instant,
    last_used: Instant,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Image IDs removed, in order.
    pub removed: Vec<String>,
    pub freed: u64,
    /// Bytes the pass wanted to free.
    pub wanted: u64,
}

/// The collector's memory of when each image was first seen and last used.
#[derive(Debug)]
pub struct ImageGc {
    records: HashMap<String, Record>,
    /// References never removed (the sandbox image).
    keep: Vec<String>,
}

impl ImageGc {
    pub fn new(keep: Vec<String>) -> ImageGc {
        ImageGc {
            records: HashMap::new(),
            keep,
        }
    }

    /// Updates first-seen and last-used times from the runtime's images and
    /// containers; returns the images and the IDs in use.
    async fn detect(&mut self, runtime: &dyn Runtime, now: Instant) -> cri::Result<(Vec<api::Image>, HashSet<String>)> {
        let images = runtime.list_images().await?;
        let containers = runtime.list_containers(None).await?;
        let mut in_use = HashSet::new();
        for c in &containers {
            let by_ref = [c.image_ref.as_str(), c.image.as_ref().map_or("", |s| s.image.as_str())];
            for image in &images {
                let named = |r: &str| {
                    !r.is_empty()
                        && (image.id == r
                            || image.repo_tags.iter().any(|t| t == r)
                            || image.repo_digests.iter().any(|d| d == r))
                };
                if by_ref.iter().any(|r| named(r)) {
                    in_use.insert(image.id.clone());
                }
            }
        }
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        for image in &images {
            let record = self.records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: now,
            });
            if in_use.contains(&image.id) {
                record.last_used = now;
            }
        }
        Ok((images, in_use))
    }

    /// One pass: records usage, and removes images when `fs` is at or above the
    /// high threshold.
    pub async fn collect(&mut self, runtime: &dyn Runtime, fs: FsUsage, now: Instant) -> cri::Result<Outcome> {
        let (images, in_use) = self.detect(runtime, now).await?;
        let wanted = fs.to_free();
        let mut outcome = Outcome {
            wanted,
            ..Default::default()
        };
        if wanted == 0 {
            return Ok(outcome);
        }
        let mut candidates: Vec<(&api::Image, Record)> = images
            .iter()
            .filter(|i| !in_use.contains(&i.id) && !i.pinned)
            .filter(|i| !i.repo_tags.iter().any(|t| self.keep.contains(t)))
            .filter_map(|i| Some((i, *self.records.get(&i.id)?)))
            .filter(|(_, r)| now.saturating_duration_since(r.first_detected) >= MIN_AGE)
            .collect();
        candidates.sort_by_key(|(i, r)| (r.last_used, r.first_detected, i.id.clone()));
        for (image, _) in candidates {
            if outcome.freed >= wanted {
                break;
            }
            match runtime.remove_image(&image.id).await {
                Ok(()) => {
                    tracing::info!(image = %image.id, tags = ?image.repo_tags, size = image.size, "removed an unused image at disk pressure");
                    outcome.freed += image.size;
                    outcome.removed.push(image.id.clone());
                    self.records.remove(&image.id);
                }
                Err(e) => tracing::warn!(image = %image.id, error = %e, "cannot remove an unused image"),
            }
        }
        if outcome.freed < wanted {
            tracing::warn!(
                wanted = outcome.wanted,
                freed = outcome.freed,
                used_percent = fs.used_percent(),
                "image garbage collection could not free enough space"
            );
        }
        Ok(outcome)
    }
}

/// The image filesystem's mount point: the runtime's (`ImageFsInfo`), else `fallback`.
async fn image_fs(runtime: &dyn Runtime, fallback: &Path) -> PathBuf {
    match runtime.image_fs_info().await {
        Ok(list) => list
            .into_iter()
            .find_map(|u| u.fs_id.map(|f| PathBuf::from(f.mountpoint)).filter(|p| p.exists()))
            .unwrap_or_else(|| fallback.to_path_buf()),
        Err(_) => fallback.to_path_buf(),
    }
}

pub async fn run(node: Arc<Node>, keep: Vec<String>, data_dir: PathBuf, shutdown: CancellationToken) {
    let mut gc = ImageGc::new(keep);
    let mut interval = tokio::time::interval(PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let path = image_fs(node.runtime.as_ref(), &data_dir).await;
        let Some((capacity, available, _, _)) = crate::kubelet::node::statvfs(&path) else {
            continue;
        };
        let fs = FsUsage { capacity, available };
        if let Err(e) = gc.collect(node.runtime.as_ref(), fs, Instant::now()).await {
            tracing::debug!(error = %e, "image garbage collection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::node::{DISK_EVICTION_BYTES, DISK_EVICTION_PERCENT};
    use crate::kubelet::pods::fake::FakeRuntime;
    use api::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    const MB: u64 = 1 << 20;

    fn image(id: &str, tag: &str, size: u64) -> api::Image {
        api::Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            size,
            ..Default::default()
        }
    }

    #[test]
    fn thresholds() {
        let fs = |available| FsUsage {
            capacity: 1000 * MB,
            available,
        };
        assert_eq!(fs(160 * MB).to_free(), 0, "84% used");
        assert_eq!(fs(150 * MB).used_percent(), 85);
        assert_eq!(fs(150 * MB).to_free(), 50 * MB, "down to 80% used");
        assert_eq!(fs(0).to_free(), 200 * MB);
        assert_eq!(
            FsUsage {
                capacity: 0,
                available: 0
            }
            .to_free(),
            0
        );
        // Any disk the node calls under pressure is past the high threshold.
        for capacity in [10 * MB, 1000 * MB, 100 << 30, 4 << 40] {
            let floor = (capacity * DISK_EVICTION_PERCENT / 100).min(DISK_EVICTION_BYTES);
            let pressured = FsUsage {
                capacity,
                available: floor.saturating_sub(1),
            };
            assert!(pressured.to_free() > 0, "{pressured:?}");
        }
    }

    #[tokio::test]
    async fn removes_unused_images_least_recently_used_first() {
        let rt = FakeRuntime::default();
        let sandbox = rt.add_sandbox("pod", true, 1);
        rt.add_image(image("sha256:pause", "kube.local/pause:1", 100 * MB));
        rt.add_image(image("sha256:running", "app:running", 100 * MB));
        rt.add_image(image("sha256:dead", "app:dead", 100 * MB));
        rt.add_image(image("sha256:old", "app:old", 30 * MB));
        rt.add_image(image("sha256:older", "app:older", 30 * MB));
        rt.add_image(image("sha256:newer", "app:newer", 30 * MB));
        let mut pinned = image("sha256:pinned", "app:pinned", 100 * MB);
        pinned.pinned = true;
        rt.add_image(pinned);
        let running = rt.add_container("pod", &sandbox, "a", Running, 1);
        rt.set_image(&running, "sha256:running");
        let dead = rt.add_container("pod", &sandbox, "b", Exited, 1);
        rt.set_image(&dead, "app:dead");
        let older = rt.add_container("pod", &sandbox, "c", Exited, 1);
        rt.set_image(&older, "sha256:older");
        let newer = rt.add_container("pod", &sandbox, "d", Exited, 1);
        rt.set_image(&newer, "sha256:newer");

        let mut gc = ImageGc::new(vec!["kube.local/pause:1".into()]);
        let calm = FsUsage {
            capacity: 1000 * MB,
            available: 500 * MB,
        };
        let t0 = Instant::now();
        // Seen at t0; the two exited containers go away at different times, so
        // `older` was last used before `newer`.
        assert_eq!(gc.collect(&rt, calm, t0).await.unwrap().removed, Vec::<String>::new());
        rt.remove_container_now(&older);
        gc.collect(&rt, calm, t0 + Duration::from_secs(60)).await.unwrap();
        rt.remove_container_now(&newer);
        gc.collect(&rt, calm, t0 + Duration::from_secs(90)).await.unwrap();

        // 86% used: 60 MB to free. Too young images are spared at first.
        let full = FsUsage {
            capacity: 1000 * MB,
            available: 140 * MB,
        };
        let young = gc.collect(&rt, full, t0 + Duration::from_secs(100)).await.unwrap();
        assert!(young.removed.is_empty(), "{young:?}");
        let out = gc.collect(&rt, full, t0 + Duration::from_secs(200)).await.unwrap();
        assert_eq!(out.wanted, 60 * MB);
        // `old` (never used) and `older` first; 60 MB freed, so `newer` stays.
        assert_eq!(out.removed, ["sha256:old", "sha256:older"]);
        assert_eq!(out.freed, 60 * MB);
        let left: Vec<String> = rt.list_images().await.unwrap().into_iter().map(|i| i.id).collect();
        for kept in [
            "sha256:pause",
            "sha256:running",
            "sha256:dead",
            "sha256:newer",
            "sha256:pinned",
        ] {
            assert!(left.iter().any(|i| i == kept), "{kept} kept: {left:?}");
        }

        // Nearly full: everything removable goes, and nothing in use or protected.
        let out = gc
            .collect(
                &rt,
                FsUsage {
                    capacity: 1000 * MB,
                    available: 0,
                },
                t0 + Duration::from_secs(300),
            )
            .await
            .unwrap();
        assert_eq!(out.removed, ["sha256:newer"]);
        assert!(out.freed < out.wanted);
    }
}
