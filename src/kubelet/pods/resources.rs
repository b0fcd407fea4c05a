//! Pod resources as the kubelet maps them to the runtime: the QoS class
//! (`GetPodQOS`), CRI `LinuxContainerResources` (CPU shares from requests, CFS quota
//! from limits, memory limit, `oom_score_adj` by QoS as in `qos/policy.go`), and the
//! pod's cgroup parent under `kubepods[/burstable|/besteffort]` for the cgroupfs and
//! systemd drivers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;
use crate::kubelet::cri::api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// How the runtime names cgroups; must match the runtime's own setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
}

/// A container's requests, with a missing request defaulting to its limit (what the
/// API's defaulting does).
pub fn requests(resources: Option<&ResourceRequirements>) -> BTreeMap<String, Quantity> {
    let mut out = resources.and_then(|r| r.limits.clone()).unwrap_or_default();
    out.extend(resources.and_then(|r| r.requests.clone()).unwrap_or_default());
    out
}

pub fn limits(resources: Option<&ResourceRequirements>) -> BTreeMap<String, Quantity> {
    resources.and_then(|r| r.limits.clone()).unwrap_or_default()
}

/// The pod's QoS class, as `GetPodQOS` computes it from CPU and memory only.
pub fn qos_class(pod: &Pod) -> Qos {
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    for container in all_containers(pod) {
        let r = container.resources.as_ref();
        let mut limits_found = 0;
        for (name, map, sums) in [
            ("req", requests_of(r), &mut requests),
            ("lim", limits_of(r), &mut limits),
        ] {
            for (resource, value) in map {
                if value > 0 {
                    *sums.entry(resource).or_default() += value;
                    if name == "lim" {
                        limits_found += 1;
                    }
                }
            }
        }
        if limits_found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return Qos::BestEffort;
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        return Qos::Guaranteed;
    }
    Qos::Burstable
}

/// CPU (millicores) and memory (bytes) of a map.
fn cpu_memory(map: &BTreeMap<String, Quantity>) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    if let Some(cpu) = map.get("cpu").and_then(quantity::milli) {
        out.push(("cpu", cpu));
    }
    if let Some(memory) = map.get("memory").and_then(quantity::value) {
        out.push(("memory", memory));
    }
    out
}

fn requests_of(r: Option<&ResourceRequirements>) -> Vec<(&'static str, i64)> {
    cpu_memory(&requests(r))
}

fn limits_of(r: Option<&ResourceRequirements>) -> Vec<(&'static str, i64)> {
    cpu_memory(&limits(r))
}

const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262144;
const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA: i64 = 1000;

/// `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// `MilliCPUToQuota`: 0 (unlimited) without a limit.
pub fn milli_cpu_to_quota(milli: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * QUOTA_PERIOD / 1000).max(MIN_QUOTA)
}

/// `GetContainerOOMScoreAdjust`.
pub fn oom_score_adj(qos: Qos, container: &Container, memory_capacity: i64) -> i64 {
    match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let request = requests(container.resources.as_ref())
                .get("memory")
                .and_then(quantity::value)
                .unwrap_or(0);
            let adj = if memory_capacity > 0 {
                1000 - (1000 * request as i128 / memory_capacity as i128) as i64
            } else {
                1000
            };
            if adj < 3 {
                3
            } else if adj >= 1000 {
                999
            } else {
                adj
            }
        }
    }
}

/// The CRI resources of one container.
pub fn container_resources(pod: &Pod, container: &Container, memory_capacity: i64) -> api::LinuxContainerResources {
    let r = container.resources.as_ref();
    let requests = requests(r);
    let limits = limits(r);
    let cpu_request = requests.get("cpu").and_then(quantity::milli).unwrap_or(0);
    let cpu_limit = limits.get("cpu").and_then(quantity::milli).unwrap_or(0);
    let memory_limit = limits.get("memory").and_then(quantity::value).unwrap_or(0);
    api::LinuxContainerResources {
        cpu_shares: milli_cpu_to_shares(cpu_request),
        cpu_quota: milli_cpu_to_quota(cpu_limit),
        cpu_period: if cpu_limit > 0 { QUOTA_PERIOD } else { 0 },
        memory_limit_in_bytes: memory_limit.max(0),
        oom_score_adj: oom_score_adj(qos_class(pod), container, memory_capacity),
        ..Default::default()
    }
}

/// The pod-level sums the sandbox gets (`applySandboxResources`).
pub fn sandbox_resources(pod: &Pod) -> api::LinuxContainerResources {
    let mut cpu_request = 0;
    let mut cpu_limit = 0;
    let mut memory_limit = 0;
    let mut all_cpu_limited = true;
    let mut all_memory_limited = true;
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let r = c.resources.as_ref();
        cpu_request += requests(r).get("cpu").and_then(quantity::milli).unwrap_or(0);
        match limits(r).get("cpu").and_then(quantity::milli) {
            Some(l) => cpu_limit += l,
            None => all_cpu_limited = false,
        }
        match limits(r).get("memory").and_then(quantity::value) {
            Some(l) => memory_limit += l,
            None => all_memory_limited = false,
        }
    }
    api::LinuxContainerResources {
        cpu_shares: milli_cpu_to_shares(cpu_request),
        cpu_quota: if all_cpu_limited {
            milli_cpu_to_quota(cpu_limit)
        } else {
            0
        },
        cpu_period: if all_cpu_limited && cpu_limit > 0 {
            QUOTA_PERIOD
        } else {
            0
        },
        memory_limit_in_bytes: if all_memory_limited { memory_limit } else { 0 },
        ..Default::default()
    }
}

/// The pod's cgroup as the runtime is told it (`GetPodCgroupParent`).
pub fn cgroup_parent(driver: CgroupDriver, qos: Qos, uid: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => match qos {
            Qos::Guaranteed => format!("/kubepods/pod{uid}"),
            Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
            Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
        },
        CgroupDriver::Systemd => {
            let uid = uid.replace('-', "_");
            match qos {
                Qos::Guaranteed => format!("kubepods-pod{uid}.slice"),
                Qos::Burstable => format!("kubepods-burstable-pod{uid}.slice"),
                Qos::BestEffort => format!("kubepods-besteffort-pod{uid}.slice"),
            }
        }
    }
}

/// Removes a gone pod's (empty) cgroupfs directories in every hierarchy; the
/// runtime creates them but never removes the parents. Best effort.
pub fn remove_pod_cgroups(driver: CgroupDriver, uid: &str) {
    if driver != CgroupDriver::Cgroupfs {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        for qos in ["", "burstable/", "besteffort/"] {
            let dir = h.path().join(format!("kubepods/{qos}pod{uid}"));
            if dir.is_dir() {
                // Only empty cgroups can go; rmdir refuses the others.
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": containers}}))
            .unwrap()
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(json!([{"name": "a"}]))), Qos::BestEffort);
        let g = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        assert_eq!(qos_class(&g), Qos::Guaranteed);
        let g2 = pod(json!([{"name": "a", "resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}]));
        assert_eq!(qos_class(&g2), Qos::Guaranteed);
        let b = pod(json!([{"name": "a", "resources": {"limits": {"memory": "20Mi"}}}]));
        assert_eq!(qos_class(&b), Qos::Burstable);
        let b2 = pod(json!([
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b"}
        ]));
        assert_eq!(qos_class(&b2), Qos::Burstable);
        let b3 = pod(json!([{"name": "a", "resources": {
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]));
        assert_eq!(qos_class(&b3), Qos::Burstable);
    }

    #[test]
    fn container_resources_map_to_cri() {
        let p = pod(json!([{"name": "a", "resources": {
            "limits": {"cpu": "500m", "memory": "20Mi"}, "requests": {"cpu": "250m", "memory": "10Mi"}}}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = container_resources(&p, c, 1 << 30);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 20 << 20);
        // Burstable: 1000 - 1000 * 10Mi / 1Gi.
        assert_eq!(r.oom_score_adj, 1000 - 1000 * 10 / 1024);

        let best = pod(json!([{"name": "a"}]));
        let r = container_resources(&best, &best.spec.as_ref().unwrap().containers[0], 1 << 30);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj),
            (2, 0, 0, 1000)
        );

        assert_eq!(milli_cpu_to_quota(5), 1000);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(1_000_000), 262144);
    }

    #[test]
    fn cgroup_parents() {
        assert_eq!(
            cgroup_parent(CgroupDriver::Cgroupfs, Qos::Burstable, "a-b"),
            "/kubepods/burstable/poda-b"
        );
        assert_eq!(
            cgroup_parent(CgroupDriver::Cgroupfs, Qos::Guaranteed, "a"),
            "/kubepods/poda"
        );
        assert_eq!(
            cgroup_parent(CgroupDriver::Systemd, Qos::BestEffort, "a-b"),
            "kubepods-besteffort-poda_b.slice"
        );
    }
}
