//! `/stats/summary`: the kubelet's Summary API (`stats/v1alpha1.Summary`), the
//! document metrics-server and `kubectl get --raw .../proxy/stats/summary` read.
//! Node CPU, memory and filesystem come from `/proc` and `statvfs` of the
//! kubelet's root directory (the CPU rate from the difference to the previous
//! request); per-pod and per-container usage from CRI `ListPodSandboxStats` when
//! the runtime has it, else summed from `ListContainerStats`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::api::time::format_rfc3339;
use crate::kubelet::cri::{Runtime, api as cri};
use crate::kubelet::pods::sandbox::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// The previous node CPU sample, for `usageNanoCores`.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Mutex<Option<(Instant, u64)>>,
}

impl CpuSampler {
    /// Cumulative CPU time and, from the second call on, the rate since the last.
    fn sample(&self, total_nanos: u64) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = last.and_then(|(at, before)| {
            let elapsed = now.duration_since(at).as_nanos();
            (elapsed > 0).then(|| (u128::from(total_nanos.saturating_sub(before)) * 1_000_000_000 / elapsed) as u64)
        });
        *last = Some((now, total_nanos));
        rate
    }
}

fn now_rfc3339() -> String {
    crate::api::time::now_rfc3339()
}

fn nanos_to_rfc3339(nanos: i64) -> String {
    format_rfc3339(nanos / 1_000_000_000)
}

/// Fields of a `/proc` key-value file (`meminfo`, `vmstat`), in bytes where the
/// file says kB.
fn proc_values(path: &str) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?.trim_end_matches(':').to_string();
            let value: u64 = parts.next()?.parse().ok()?;
            let factor = if parts.next() == Some("kB") { 1024 } else { 1 };
            Some((key, value * factor))
        })
        .collect()
}

/// Cumulative busy CPU time of the node in nanoseconds, and its boot time.
fn node_cpu() -> (Option<u64>, Option<i64>) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    let busy = text.lines().find(|l| l.starts_with("cpu ")).map(|line| {
        let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is in user).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        (total - idle) * (1_000_000_000 / hz)
    });
    let boot = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok());
    (busy, boot)
}

/// `statvfs` of `path` as a Summary `FsStats`.
fn fs_stats(path: &Path, time: &str) -> Value {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return json!({"time": time});
    };
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return json!({"time": time});
    }
    let block = stat.f_frsize;
    json!({
        "time": time,
        "availableBytes": stat.f_bavail * block,
        "capacityBytes": stat.f_blocks * block,
        "usedBytes": (stat.f_blocks - stat.f_bfree) * block,
        "inodesFree": stat.f_ffree,
        "inodes": stat.f_files,
        "inodesUsed": stat.f_files - stat.f_ffree,
    })
}

fn node_memory(time: &str) -> Value {
    let mem = proc_values("/proc/meminfo");
    let vm = proc_values("/proc/vmstat");
    let total = mem.get("MemTotal").copied().unwrap_or(0);
    let usage = total.saturating_sub(mem.get("MemFree").copied().unwrap_or(0));
    let working_set = usage.saturating_sub(mem.get("Inactive(file)").copied().unwrap_or(0));
    json!({
        "time": time,
        "availableBytes": total.saturating_sub(working_set),
        "usageBytes": usage,
        "workingSetBytes": working_set,
        "rssBytes": mem.get("AnonPages").copied().unwrap_or(0),
        "pageFaults": vm.get("pgfault").copied().unwrap_or(0),
        "majorPageFaults": vm.get("pgmajfault").copied().unwrap_or(0),
    })
}

fn value(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// Inserts `key: value` for the values that are present.
fn fields(pairs: &[(&str, Option<u64>)], time: i64) -> Value {
    let mut map = Map::new();
    map.insert("time".into(), json!(nanos_to_rfc3339(time)));
    for (key, value) in pairs {
        if let Some(v) = value {
            map.insert((*key).into(), json!(v));
        }
    }
    Value::Object(map)
}

fn cpu(usage: &Option<cri::CpuUsage>) -> Option<Value> {
    let c = usage.as_ref()?;
    Some(fields(
        &[
            ("usageNanoCores", value(&c.usage_nano_cores)),
            ("usageCoreNanoSeconds", value(&c.usage_core_nano_seconds)),
        ],
        c.timestamp,
    ))
}

fn memory(usage: &Option<cri::MemoryUsage>) -> Option<Value> {
    let m = usage.as_ref()?;
    Some(fields(
        &[
            ("availableBytes", value(&m.available_bytes)),
            ("usageBytes", value(&m.usage_bytes)),
            ("workingSetBytes", value(&m.working_set_bytes)),
            ("rssBytes", value(&m.rss_bytes)),
            ("pageFaults", value(&m.page_faults)),
            ("majorPageFaults", value(&m.major_page_faults)),
        ],
        m.timestamp,
    ))
}

fn container_entry(stats: &cri::ContainerStats, started: Option<i64>) -> Value {
    let labels = stats.attributes.as_ref().map(|a| &a.labels);
    let name = labels
        .and_then(|l| l.get(LABEL_CONTAINER_NAME))
        .cloned()
        .or_else(|| {
            stats
                .attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
        })
        .unwrap_or_default();
    let mut entry = json!({"name": name});
    if let Some(started) = started {
        entry["startTime"] = json!(nanos_to_rfc3339(started));
    }
    if let Some(cpu) = cpu(&stats.cpu) {
        entry["cpu"] = cpu;
    }
    if let Some(memory) = memory(&stats.memory) {
        entry["memory"] = memory;
    }
    if let Some(fs) = &stats.writable_layer {
        entry["rootfs"] = fields(
            &[
                ("usedBytes", value(&fs.used_bytes)),
                ("inodesUsed", value(&fs.inodes_used)),
            ],
            fs.timestamp,
        );
    }
    entry
}

/// Sums the containers' CPU and memory for a pod without sandbox stats.
fn summed(containers: &[&cri::ContainerStats]) -> (Value, Value) {
    let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> Option<u64> {
        containers.iter().map(|c| f(c)).reduce(|a, b| Some(a? + b?)).flatten()
    };
    let time = containers
        .iter()
        .filter_map(|c| c.cpu.as_ref().map(|c| c.timestamp))
        .max()
        .unwrap_or(0);
    let cpu = fields(
        &[
            (
                "usageNanoCores",
                sum(&|c| c.cpu.as_ref().and_then(|u| value(&u.usage_nano_cores))),
            ),
            (
                "usageCoreNanoSeconds",
                sum(&|c| c.cpu.as_ref().and_then(|u| value(&u.usage_core_nano_seconds))),
            ),
        ],
        time,
    );
    let memory = fields(
        &[
            (
                "usageBytes",
                sum(&|c| c.memory.as_ref().and_then(|m| value(&m.usage_bytes))),
            ),
            (
                "workingSetBytes",
                sum(&|c| c.memory.as_ref().and_then(|m| value(&m.working_set_bytes))),
            ),
            (
                "rssBytes",
                sum(&|c| c.memory.as_ref().and_then(|m| value(&m.rss_bytes))),
            ),
        ],
        time,
    );
    (cpu, memory)
}

/// The Summary document.
pub async fn summary(node_name: &str, root_dir: &Path, runtime: &dyn Runtime, sampler: &CpuSampler) -> Value {
    let time = now_rfc3339();
    let (busy, boot) = node_cpu();
    let mut node_cpu = json!({"time": time});
    if let Some(busy) = busy {
        node_cpu["usageCoreNanoSeconds"] = json!(busy);
        if let Some(rate) = sampler.sample(busy) {
            node_cpu["usageNanoCores"] = json!(rate);
        }
    }
    let fs = fs_stats(root_dir, &time);
    let mut node = json!({
        "nodeName": node_name,
        "cpu": node_cpu,
        "memory": node_memory(&time),
        "fs": fs,
        "runtime": {"imageFs": fs},
    });
    if let Some(boot) = boot {
        node["startTime"] = json!(format_rfc3339(boot));
    }
    let sandboxes = runtime.list_pod_sandbox(None).await.unwrap_or_else(|err| {
        tracing::debug!(%err, "no sandboxes for the stats summary");
        Vec::new()
    });
    let containers = runtime.list_container_stats().await.unwrap_or_else(|err| {
        tracing::debug!(%err, "no container stats for the stats summary");
        Vec::new()
    });
    let started: BTreeMap<String, i64> = match runtime.list_containers(None).await {
        Ok(list) => list.into_iter().map(|c| (c.id, c.created_at)).collect(),
        Err(_) => BTreeMap::new(),
    };
    let pod_stats: BTreeMap<String, cri::PodSandboxStats> = match runtime.list_pod_sandbox_stats().await {
        Ok(list) => list
            .into_iter()
            .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
            .collect(),
        Err(err) => {
            tracing::debug!(%err, "runtime has no sandbox stats; summing container stats");
            BTreeMap::new()
        }
    };

    let mut pods = Vec::new();
    for sandbox in sandboxes
        .iter()
        .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
    {
        let label = |key: &str| sandbox.labels.get(key).cloned().unwrap_or_default();
        let (name, namespace, uid) = (label(LABEL_POD_NAME), label(LABEL_POD_NAMESPACE), label(LABEL_POD_UID));
        let (name, namespace, uid) = match &sandbox.metadata {
            Some(m) if name.is_empty() => (m.name.clone(), m.namespace.clone(), m.uid.clone()),
            _ => (name, namespace, uid),
        };
        let mine: Vec<&cri::ContainerStats> = containers
            .iter()
            .filter(|c| {
                c.attributes.as_ref().is_some_and(|a| {
                    a.labels.get(LABEL_POD_UID) == Some(&uid)
                        || (a.labels.get(LABEL_POD_NAME) == Some(&name)
                            && a.labels.get(LABEL_POD_NAMESPACE) == Some(&namespace))
                })
            })
            .collect();
        let entries: Vec<Value> = mine
            .iter()
            .map(|c| {
                let id = c.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or_default();
                container_entry(c, started.get(id).copied())
            })
            .collect();
        let mut pod = json!({
            "podRef": {"name": name, "namespace": namespace, "uid": uid},
            "startTime": nanos_to_rfc3339(sandbox.created_at),
            "containers": entries,
        });
        match pod_stats.get(&sandbox.id).and_then(|s| s.linux.as_ref()) {
            Some(linux) => {
                if let Some(cpu) = cpu(&linux.cpu) {
                    pod["cpu"] = cpu;
                }
                if let Some(memory) = memory(&linux.memory) {
                    pod["memory"] = memory;
                }
                if let Some(network) = &linux.network
                    && let Some(interface) = &network.default_interface
                {
                    pod["network"] = json!({
                        "time": nanos_to_rfc3339(network.timestamp),
                        "name": interface.name,
                        "rxBytes": value(&interface.rx_bytes),
                        "rxErrors": value(&interface.rx_errors),
                        "txBytes": value(&interface.tx_bytes),
                        "txErrors": value(&interface.tx_errors),
                    });
                }
            }
            None => {
                let (cpu, memory) = summed(&mine);
                pod["cpu"] = cpu;
                pod["memory"] = memory;
            }
        }
        pods.push(pod);
    }
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_readings_are_plausible() {
        let (busy, boot) = node_cpu();
        assert!(busy.unwrap() > 0);
        assert!(boot.unwrap() > 1_000_000_000);
        let memory = node_memory("t");
        assert!(memory["usageBytes"].as_u64().unwrap() > 0);
        assert!(memory["workingSetBytes"].as_u64().unwrap() <= memory["usageBytes"].as_u64().unwrap());
        let fs = fs_stats(Path::new("/"), "t");
        assert!(fs["capacityBytes"].as_u64().unwrap() >= fs["availableBytes"].as_u64().unwrap());
        let sampler = CpuSampler::default();
        assert_eq!(sampler.sample(1_000), None);
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert!(sampler.sample(2_000).is_some());
    }
}
