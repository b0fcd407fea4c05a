//! The pod sandbox as `generatePodSandboxConfig` describes it to the runtime:
//! metadata (name, namespace, uid, attempt), the `io.kubernetes.pod.*` labels the
//! kubelet finds its pods by, hostname and domain (`spec.hostname`/`subdomain`), DNS
//! per `dnsPolicy` (`network/dns`), host port mappings, the log directory, the
//! cgroup parent by QoS class and the sandbox security context; also the
//! kubelet-managed `/etc/hosts` of the pod.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::Settings;
use super::resources;
use crate::kubelet::cri::api;

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What a host's resolv.conf says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_string)),
                // The last search line wins, as in the resolver.
                Some("search" | "domain") => conf.searches = words.map(str::to_string).collect(),
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The host's resolver config: `path`, except that a systemd-resolved stub
    /// (only loopback servers) is replaced by the upstream servers it forwards to, as
    /// k3s does, since a loopback server is useless inside a pod.
    pub fn load(path: &Path) -> ResolvConf {
        let conf = ResolvConf::parse(&std::fs::read_to_string(path).unwrap_or_default());
        let loopback_only = !conf.nameservers.is_empty()
            && conf
                .nameservers
                .iter()
                .all(|s| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
        if loopback_only && let Ok(text) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return ResolvConf::parse(&text);
        }
        conf
    }
}

/// `GeneratePodHostNameAndDomain`: the hostname (at most 63 characters) and the
/// domain `<subdomain>.<ns>.svc.<cluster domain>` if the pod has a subdomain.
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if hostname.len() > 63 {
        hostname.truncate(63);
        while hostname.ends_with(['-', '.']) {
            hostname.pop();
        }
    }
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            format!("{sub}.{ns}.svc.{cluster_domain}")
        });
    (hostname, domain)
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The sandbox DNS config per `dnsPolicy` (`GetPodDNS`).
pub fn dns_config(pod: &Pod, settings: &Settings, host: &ResolvConf) -> api::DnsConfig {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" => Some(!host_network(pod)),
        _ => Some(false), // Default
    };
    let mut config = api::DnsConfig::default();
    match cluster {
        None => {}
        Some(true) if !settings.cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = &settings.cluster_domain;
            config.servers = settings.cluster_dns.iter().map(IpAddr::to_string).collect();
            push_unique(
                &mut config.searches,
                [format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.clone()],
            );
            push_unique(&mut config.searches, host.searches.iter().cloned());
            config.options = vec!["ndots:5".to_string()];
        }
        Some(_) => {
            config.servers = host.nameservers.clone();
            config.searches = host.searches.clone();
            config.options = host.options.clone();
        }
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut config.servers, extra.nameservers.iter().flatten().cloned());
        push_unique(&mut config.searches, extra.searches.iter().flatten().cloned());
        for option in extra.options.iter().flatten() {
            let name = &option.name;
            let Some(name) = name.as_deref() else { continue };
            config
                .options
                .retain(|o| o.split(':').next() != Some(name) && o.as_str() != name);
            config.options.push(match &option.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    config.servers.truncate(3);
    config.searches.retain(|s| s.len() <= 253);
    config.searches.truncate(32);
    config
}

/// The `io.kubernetes.pod.*` labels (plus, on sandboxes, the pod's own).
pub fn pod_labels(pod: &Pod, with_pod_labels: bool) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = match with_pod_labels {
        true => pod.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
        false => HashMap::new(),
    };
    let meta = &pod.metadata;
    labels.insert(LABEL_POD_NAME.into(), meta.name.clone().unwrap_or_default());
    labels.insert(LABEL_POD_NAMESPACE.into(), meta.namespace.clone().unwrap_or_default());
    labels.insert(LABEL_POD_UID.into(), meta.uid.clone().unwrap_or_default());
    labels
}

/// `<logs dir>/<ns>_<name>_<uid>`, where containerd writes the pod's logs.
pub fn log_directory(logs_dir: &Path, pod: &Pod) -> PathBuf {
    let meta = &pod.metadata;
    logs_dir.join(format!(
        "{}_{}_{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    ))
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => api::Protocol::Udp as i32,
        Some("SCTP") => api::Protocol::Sctp as i32,
        _ => api::Protocol::Tcp as i32,
    }
}

/// The whole sandbox config of `pod`'s sandbox number `attempt`.
pub fn config(pod: &Pod, attempt: u32, settings: &Settings, host_resolv: &ResolvConf) -> api::PodSandboxConfig {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let host_net = host_network(pod);
    let (hostname, _) = hostname_and_domain(pod, &settings.cluster_domain);
    let mut port_mappings = Vec::new();
    for c in spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            port_mappings.push(api::PortMapping {
                protocol: protocol(p.protocol.as_deref()),
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or(if host_net { p.container_port } else { 0 }),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let pod_sc = spec.and_then(|s| s.security_context.as_ref());
    let privileged = spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|sc| sc.privileged)
                .unwrap_or(false)
        });
    let namespace_mode = |node: bool| {
        if node {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        }
    };
    let pid = if spec.and_then(|s| s.host_pid).unwrap_or(false) {
        api::NamespaceMode::Node as i32
    } else if spec.and_then(|s| s.share_process_namespace).unwrap_or(false) {
        api::NamespaceMode::Pod as i32
    } else {
        api::NamespaceMode::Container as i32
    };
    let mut supplemental_groups: Vec<i64> = pod_sc.and_then(|sc| sc.fs_group).into_iter().collect();
    supplemental_groups.extend(pod_sc.and_then(|sc| sc.supplemental_groups.clone()).unwrap_or_default());
    let security_context = api::LinuxSandboxSecurityContext {
        namespace_options: Some(api::NamespaceOption {
            network: namespace_mode(host_net),
            pid,
            ipc: namespace_mode(spec.and_then(|s| s.host_ipc).unwrap_or(false)),
            ..Default::default()
        }),
        run_as_user: pod_sc
            .and_then(|sc| sc.run_as_user)
            .map(|value| api::Int64Value { value }),
        run_as_group: pod_sc
            .and_then(|sc| sc.run_as_group)
            .map(|value| api::Int64Value { value }),
        supplemental_groups,
        privileged,
        seccomp: Some(api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    let sysctls = pod_sc
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.replace('/', "."), s.value.clone()))
        .collect();
    let uid = meta.uid.clone().unwrap_or_default();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: meta.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_net { String::new() } else { hostname },
        log_directory: log_directory(&settings.logs_dir, pod).to_string_lossy().into_owned(),
        dns_config: Some(dns_config(pod, settings, host_resolv)),
        port_mappings,
        labels: pod_labels(pod, true),
        annotations: meta.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: resources::cgroup_parent(settings.cgroup_driver, resources::qos_class(pod), &uid),
            security_context: Some(security_context),
            sysctls,
            overhead: None,
            resources: Some(resources::sandbox_resources(pod)),
        }),
        windows: None,
    }
}

/// The pod's `/etc/hosts` (`managedHostsFileContent`): localhost entries, the pod's
/// own IPs with hostname (and FQDN), then `hostAliases`. A hostNetwork pod gets
/// the node's file instead of the local entries.
pub fn etc_hosts(pod: &Pod, ips: &[String], cluster_domain: &str, node_hosts: Option<&str>) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    match node_hosts {
        Some(node) => {
            out = String::from("# Kubernetes-managed hosts file (host network).\n");
            out.push_str(node);
            if !node.ends_with('\n') {
                out.push('\n');
            }
        }
        None => {
            out.push_str("127.0.0.1\tlocalhost\n");
            out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
            out.push_str("fe00::0\tip6-localnet\n");
            out.push_str("fe00::0\tip6-mcastprefix\n");
            out.push_str("fe00::1\tip6-allnodes\n");
            out.push_str("fe00::2\tip6-allrouters\n");
            let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
            for ip in ips {
                match &domain {
                    Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
                    None => out.push_str(&format!("{ip}\t{hostname}\n")),
                }
            }
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            cluster_dns: vec!["10.43.0.10".parse().unwrap()],
            ..Settings::for_tests("/tmp/x")
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]);
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u1",
            "labels": {"app": "web"}}, "spec": spec}))
        .unwrap()
    }

    fn host() -> ResolvConf {
        ResolvConf::parse("# hi\nnameserver 1.1.1.1\nnameserver 8.8.8.8 # two\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn resolv_conf() {
        let h = host();
        assert_eq!(h.nameservers, vec!["1.1.1.1", "8.8.8.8"]);
        assert_eq!(h.searches, vec!["corp.example"]);
        assert_eq!(h.options, vec!["edns0"]);
    }

    #[test]
    fn dns_policies() {
        let s = settings();
        let d = dns_config(&pod(json!({})), &s, &host());
        assert_eq!(d.servers, vec!["10.43.0.10"]);
        assert_eq!(
            d.searches,
            vec![
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(d.options, vec!["ndots:5"]);

        let d = dns_config(&pod(json!({"dnsPolicy": "Default"})), &s, &host());
        assert_eq!(d.servers, vec!["1.1.1.1", "8.8.8.8"]);
        // ClusterFirst on the host network falls back to Default.
        let d = dns_config(&pod(json!({"hostNetwork": true})), &s, &host());
        assert_eq!(d.servers, vec!["1.1.1.1", "8.8.8.8"]);
        let d = dns_config(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &s,
            &host(),
        );
        assert_eq!(d.servers, vec!["10.43.0.10"]);

        let d = dns_config(
            &pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"], "searches": ["a.b"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}),
            ),
            &s,
            &host(),
        );
        assert_eq!(d.servers, vec!["9.9.9.9"]);
        assert_eq!(d.searches, vec!["a.b"]);
        assert_eq!(d.options, vec!["ndots:2", "rotate"]);

        let d = dns_config(
            &pod(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}})),
            &s,
            &host(),
        );
        assert_eq!(d.options, vec!["ndots:1"]);
    }

    #[test]
    fn hostnames() {
        let p = pod(json!({"hostname": "h", "subdomain": "sub"}));
        assert_eq!(
            hostname_and_domain(&p, "cluster.local"),
            ("h".to_string(), Some("sub.ns.svc.cluster.local".to_string()))
        );
        let long = format!("{}-.x", "a".repeat(62));
        let p = pod(json!({"hostname": long}));
        assert_eq!(hostname_and_domain(&p, "cluster.local").0, "a".repeat(62));
        let hosts = etc_hosts(
            &pod(json!({"subdomain": "sub", "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}]})),
            &["10.42.0.7".to_string()],
            "cluster.local",
            None,
        );
        assert!(
            hosts.contains("10.42.0.7\tweb.sub.ns.svc.cluster.local\tweb\n"),
            "{hosts}"
        );
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("# Entries added by HostAliases.\n1.2.3.4\ta\tb\n"));
    }

    #[test]
    fn sandbox_config() {
        let s = settings();
        let c = config(&pod(json!({})), 2, &s, &host());
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt),
            ("web", "ns", "u1", 2)
        );
        assert_eq!(c.hostname, "web");
        assert_eq!(c.labels[LABEL_POD_UID], "u1");
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.port_mappings[0].host_port, 8080);
        assert!(c.log_directory.ends_with("/ns_web_u1"), "{}", c.log_directory);
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/podu1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, api::NamespaceMode::Container as i32);

        let host_net = config(&pod(json!({"hostNetwork": true})), 0, &s, &host());
        assert_eq!(host_net.hostname, "");
        let ns = host_net
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
    }
}
