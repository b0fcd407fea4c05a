//! Resource amounts as the scheduler counts them: CPU in millicores, everything
//! else (memory, ephemeral-storage, pods, extended resources) in whole units rounded
//! up, as apimachinery's `Quantity.MilliValue()`/`Value()`. A pod's request is
//! kube-scheduler's `resourcehelper.PodRequests`: the sum over its containers, at
//! least the largest init container (counting the restartable "sidecar" init
//! containers started before it), plus the pod overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// kube-scheduler's defaults for containers without requests, used only to score
/// (`DefaultMilliCPURequest`, `DefaultMemoryRequest`): so that many request-less
/// pods do not all land on one node.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Parses a Kubernetes quantity (`100m`, `1.5Gi`, `2e3`, `128974848`) into
/// thousandths of its unit, rounded up. `None` when it is not a quantity.
pub fn parse_milli(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || whole.len() + fraction.len() > 30 {
        return None;
    }
    let (pow10, pow2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let value: i32 = digits.parse().ok().filter(|e: &i32| e.abs() <= 30)?;
            (value, 0)
        }
    };
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    let scaled = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    // Milli: three more decimal places.
    let exponent = pow10 + 3 - fraction.len() as i32;
    let value = if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent as u32)?)?
    } else {
        let divisor = 10i128.checked_pow(exponent.unsigned_abs())?;
        (scaled + divisor - 1) / divisor
    };
    Some(if negative { -value } else { value })
}

/// One resource in its counting unit: millicores for CPU, whole units otherwise
/// (rounded up); 0 when unparsable, clamped to i64.
pub fn amount(name: &str, quantity: &Quantity) -> i64 {
    let milli = parse_milli(&quantity.0).unwrap_or(0);
    let value = if name == CPU {
        milli
    } else {
        // Round up, like Quantity.Value().
        (milli + 999).div_euclid(1000)
    };
    value.clamp(0, i64::MAX as i128) as i64
}

/// A vector of resource amounts. The common resources have fields; any other
/// (extended resources, hugepages) is kept by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            out.set(name, amount(name, quantity));
        }
        out
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }

    fn set(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.milli_cpu = value,
            MEMORY => self.memory = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            PODS => self.pods = value,
            other => {
                self.scalar.insert(other.to_string(), value);
            }
        }
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        self.pods = f(self.pods, other.pods);
        for (name, value) in &other.scalar {
            let mine = self.scalar.entry(name.clone()).or_insert(0);
            *mine = f(*mine, *value);
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_add);
    }

    pub fn sub(&mut self, other: &Resources) {
        self.combine(other, i64::saturating_sub);
        self.scalar.retain(|_, v| *v != 0);
    }

    pub fn max(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    /// Whether nothing at all is requested (pods aside).
    #[cfg(test)]
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.values().all(|v| *v == 0)
    }
}

/// What a pod asks of a node: its requests, and the CPU/memory used for scoring
/// with kube-scheduler's defaults for containers that request nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequest {
    pub requests: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_memory: i64,
}

/// A container's requests; a resource with a limit but no request requests its
/// limit (the API's defaulting, repeated in case an object skipped it).
fn container_requests(container: &Container) -> Resources {
    let Some(resources) = &container.resources else {
        return Resources::default();
    };
    let mut out = Resources::from_list(resources.requests.as_ref());
    for (name, quantity) in resources.limits.iter().flatten() {
        if !resources.requests.as_ref().is_some_and(|r| r.contains_key(name)) {
            out.set(name, amount(name, quantity));
        }
    }
    out
}

/// The same with kube-scheduler's scoring defaults for missing CPU and memory.
fn container_nonzero(container: &Container) -> Resources {
    let mut out = container_requests(container);
    let has = |name: &str| {
        container.resources.as_ref().is_some_and(|r| {
            r.requests.as_ref().is_some_and(|q| q.contains_key(name))
                || r.limits.as_ref().is_some_and(|q| q.contains_key(name))
        })
    };
    if !has(CPU) {
        out.milli_cpu = DEFAULT_MILLI_CPU;
    }
    if !has(MEMORY) {
        out.memory = DEFAULT_MEMORY;
    }
    out
}

/// `resourcehelper.PodRequests` over one per-container measure.
fn pod_total(spec: &PodSpec, measure: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&measure(container));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let mut request = measure(container);
        if container.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running next to the app containers.
            total.add(&request);
            sidecars.add(&request);
            request = sidecars.clone();
        } else {
            request.add(&sidecars);
        }
        init_max.max(&request);
    }
    total.max(&init_max);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(Some(overhead)));
    }
    total
}

impl PodRequest {
    pub fn of(spec: &PodSpec) -> PodRequest {
        let mut requests = pod_total(spec, container_requests);
        // Each pod takes one of the node's pod slots.
        requests.pods = 1;
        let nonzero = pod_total(spec, container_nonzero);
        PodRequest {
            requests,
            nonzero_cpu: nonzero.milli_cpu,
            nonzero_memory: nonzero.memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        let q = |s: &str| parse_milli(s);
        assert_eq!(q("1"), Some(1000));
        assert_eq!(q("100m"), Some(100));
        assert_eq!(q("0.5"), Some(500));
        assert_eq!(q(".5"), Some(500));
        assert_eq!(q("1.5Gi"), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(q("128974848"), Some(128_974_848_000));
        assert_eq!(q("129e6"), Some(129_000_000_000));
        assert_eq!(q("123Mi"), Some(123 * 1024 * 1024 * 1000));
        assert_eq!(q("1k"), Some(1_000_000));
        assert_eq!(q("1n"), Some(1), "rounded up");
        assert_eq!(q("-2"), Some(-2000));
        for bad in ["", "m", "1.2.3", "1Qi", "abc", "1e", "--1"] {
            assert_eq!(q(bad), None, "{bad}");
        }
        assert_eq!(amount(CPU, &Quantity("250m".into())), 250);
        assert_eq!(amount(MEMORY, &Quantity("1Ki".into())), 1024);
        assert_eq!(amount(MEMORY, &Quantity("1500m".into())), 2, "values round up");
        assert_eq!(amount(MEMORY, &Quantity("junk".into())), 0);
    }

    #[test]
    fn pod_requests_take_init_containers_sidecars_and_overhead_into_account() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}},
            ],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "3Gi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "4"}}},
            ],
            "overhead": {"cpu": "100m"},
        }))
        .unwrap();
        let r = PodRequest::of(&spec);
        assert_eq!(r.requests.milli_cpu, 4100, "max(3, 4) + overhead");
        assert_eq!(r.requests.memory, 3 << 30, "max(1Gi + 1Gi limit, 3Gi)");
        assert_eq!(r.requests.pods, 1);

        let sidecar: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1200m"}}},
            ],
        }))
        .unwrap();
        let r = PodRequest::of(&sidecar);
        assert_eq!(
            r.requests.milli_cpu, 1700,
            "the init container runs next to the sidecar"
        );

        let empty: PodSpec = serde_json::from_value(json!({"containers": [{"name": "a"}, {"name": "b"}]})).unwrap();
        let r = PodRequest::of(&empty);
        assert!(r.requests.is_zero());
        assert_eq!((r.nonzero_cpu, r.nonzero_memory), (200, 2 * DEFAULT_MEMORY));
    }
}
