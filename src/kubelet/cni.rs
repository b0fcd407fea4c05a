//! The node's pod network as containerd's CRI plugin sees it: a CNI conflist in
//! `<data-dir>/agent/etc/cni/net.d/10-kube.conflist` (the `conf_dir` of the
//! generated containerd config), like k3s's flannel-less `--flannel-backend=none`
//! plus a bridge: a Linux bridge (`kube0` by default) that is every pod's gateway,
//! host-local IPAM on the node's `spec.podCIDR`, `portmap` for hostPorts, and
//! `firewall` so forwarded pod traffic is accepted. Traffic from pods to
//! addresses outside the cluster CIDR is masqueraded by one iptables chain of ours
//! (`KUBE-MASQ-<bridge>`), not by the bridge plugin's `ipMasq` (which would also
//! hide pod IPs from pods on other nodes).
//!
//! The bridge and network names are settings so that several nodes (test servers,
//! or nodes in network namespaces) can share one host without colliding; host-local
//! keeps its allocations under the data dir for the same reason.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

/// The conflist's file name; containerd loads the first file in lexical order.
pub const CONFLIST: &str = "10-kube.conflist";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0:?} is not a valid bridge name (1-15 characters: letters, digits, '-', '_', '.')")]
    BridgeName(String),
    #[error("{command} failed: {message}")]
    Firewall { command: String, message: String },
}

/// An IPv4 network: address and prefix length.
pub type Cidr = (Ipv4Addr, u8);

/// Formats `(10.42.0.0, 24)` as `10.42.0.0/24`.
pub fn cidr_string(c: Cidr) -> String {
    format!("{}/{}", c.0, c.1)
}

/// Parses `10.42.0.0/24` (the network address is masked).
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, bits) = s.trim().split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    Some((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// Whether `inner` lies within `outer`.
pub fn contains(outer: Cidr, inner: Cidr) -> bool {
    if inner.1 < outer.1 {
        return false;
    }
    let mask = if outer.1 == 0 { 0 } else { u32::MAX << (32 - outer.1) };
    u32::from(inner.0) & mask == u32::from(outer.0)
}

/// What the conflist says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The CNI network name (also host-local's directory name).
    pub name: String,
    /// The Linux bridge pods attach to (at most 15 characters).
    pub bridge: String,
    /// This node's pod range (`spec.podCIDR`).
    pub pod_cidr: Cidr,
    /// The whole cluster's pod range; traffic to it is never masqueraded.
    pub cluster_cidr: Cidr,
    /// Where host-local records its allocations.
    pub ipam_dir: PathBuf,
}

/// Checks a Linux interface name.
pub fn check_bridge_name(name: &str) -> Result<(), Error> {
    let ok =
        !name.is_empty() && name.len() <= 15 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BridgeName(name.to_string()))
    }
}

/// The conflist JSON for `net`.
pub fn conflist(net: &Network) -> String {
    let value = json!({
        "cniVersion": "1.0.0",
        "name": net.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "forceAddress": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr_string(net.pod_cidr)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": net.ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
        ],
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the conflist into `conf_dir` (atomically, and only when it changed).
/// Returns the file's path.
pub fn write(conf_dir: &Path, net: &Network) -> Result<PathBuf, Error> {
    let path = conf_dir.join(CONFLIST);
    let err = |source| Error::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(conf_dir).map_err(err)?;
    std::fs::create_dir_all(&net.ipam_dir).map_err(err)?;
    let text = conflist(net);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(path);
    }
    let tmp = conf_dir.join(format!(".{CONFLIST}.tmp"));
    std::fs::write(&tmp, &text).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(path)
}

/// The host firewall's part of the pod network.
pub trait Masquerade: Send + Sync {
    /// Makes traffic from `pod_cidr` to anything outside `cluster_cidr` (and not
    /// multicast) leave with the node's address. Idempotent.
    fn ensure(&self, bridge: &str, pod_cidr: Cidr, cluster_cidr: Cidr) -> Result<(), Error>;
    /// Removes what [`Masquerade::ensure`] added.
    fn remove(&self, bridge: &str) -> Result<(), Error>;
}

/// [`Masquerade`] with the `iptables` commands: a chain `KUBE-MASQ-<bridge>` in the
/// nat table, replaced atomically with `iptables-restore --noflush`, and one jump to
/// it from `POSTROUTING`.
pub struct Iptables;

impl Iptables {
    pub fn chain(bridge: &str) -> String {
        format!("KUBE-MASQ-{bridge}")
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, Error> {
    use std::io::Write;
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    child.wait_with_output().map_err(|e| Error::Firewall {
        command,
        message: e.to_string(),
    })
}

impl Masquerade for Iptables {
    fn ensure(&self, bridge: &str, pod_cidr: Cidr, cluster_cidr: Cidr) -> Result<(), Error> {
        let chain = Self::chain(bridge);
        let rules = format!(
            "*nat\n:{chain} - [0:0]\n\
             -A {chain} ! -s {pod} -j RETURN\n\
             -A {chain} -d {cluster} -j RETURN\n\
             -A {chain} -d 224.0.0.0/4 -j RETURN\n\
             -A {chain} -j MASQUERADE\n\
             COMMIT\n",
            pod = cidr_string(pod_cidr),
            cluster = cidr_string(cluster_cidr),
        );
        let out = run("iptables-restore", &["--noflush", "-w"], Some(&rules))?;
        if !out.status.success() {
            return Err(Error::Firewall {
                command: "iptables-restore".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let jump = |op: &'static str| ["-t", "nat", op, "POSTROUTING", "-j", chain.as_str(), "-w"];
        if run("iptables", &jump("-C"), None)?.status.success() {
            return Ok(());
        }
        let out = run("iptables", &jump("-A"), None)?;
        if !out.status.success() {
            return Err(Error::Firewall {
                command: format!("iptables {}", jump("-A").join(" ")),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn remove(&self, bridge: &str) -> Result<(), Error> {
        let chain = Self::chain(bridge);
        while run(
            "iptables",
            &["-t", "nat", "-D", "POSTROUTING", "-j", &chain, "-w"],
            None,
        )?
        .status
        .success()
        {}
        let _ = run("iptables", &["-t", "nat", "-F", &chain, "-w"], None)?;
        let _ = run("iptables", &["-t", "nat", "-X", &chain, "-w"], None)?;
        Ok(())
    }
}

/// The first `/24` of `cluster` (or the cluster range itself when it is smaller)
/// that no range in `taken` overlaps: the pod range a node takes for itself when no
/// IPAM controller assigns one.
pub fn first_free_subnet(cluster: Cidr, taken: &[Cidr]) -> Option<Cidr> {
    let bits = cluster.1.max(24);
    let size = 1u64 << (32 - bits);
    let count = 1u64 << (bits - cluster.1);
    let base = u32::from(cluster.0) as u64;
    (0..count)
        .map(|i| (Ipv4Addr::from((base + i * size) as u32), bits))
        .find(|c| !taken.iter().any(|t| contains(*t, *c) || contains(*c, *t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        Network {
            name: "kube".into(),
            bridge: "kube0".into(),
            pod_cidr: parse_cidr("10.42.3.0/24").unwrap(),
            cluster_cidr: parse_cidr("10.42.0.0/16").unwrap(),
            ipam_dir: "/var/lib/kube/agent/cni/networks".into(),
        }
    }

    #[test]
    fn conflist_has_bridge_ipam_portmap() {
        let v: serde_json::Value = serde_json::from_str(&conflist(&net())).unwrap();
        assert_eq!(v["name"], "kube");
        assert_eq!(v["plugins"][0]["type"], "bridge");
        assert_eq!(v["plugins"][0]["bridge"], "kube0");
        assert_eq!(v["plugins"][0]["isGateway"], true);
        assert_eq!(v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/var/lib/kube/agent/cni/networks");
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn write_is_atomic_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = net();
        n.ipam_dir = dir.path().join("ipam");
        let path = write(&dir.path().join("net.d"), &n).unwrap();
        let first = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&dir.path().join("net.d"), &n).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), first);
        assert!(n.ipam_dir.is_dir());
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.42.1.7/24"), Some((Ipv4Addr::new(10, 42, 1, 0), 24)));
        assert_eq!(parse_cidr("10.42.1.7"), None);
        assert!(contains(
            parse_cidr("10.42.0.0/16").unwrap(),
            parse_cidr("10.42.9.0/24").unwrap()
        ));
        assert!(!contains(
            parse_cidr("10.42.0.0/16").unwrap(),
            parse_cidr("10.43.0.0/24").unwrap()
        ));
        let cluster = parse_cidr("10.42.0.0/16").unwrap();
        assert_eq!(first_free_subnet(cluster, &[]), parse_cidr("10.42.0.0/24"));
        let taken = [parse_cidr("10.42.0.0/24").unwrap(), parse_cidr("10.42.1.0/24").unwrap()];
        assert_eq!(first_free_subnet(cluster, &taken), parse_cidr("10.42.2.0/24"));
        assert_eq!(first_free_subnet(parse_cidr("10.42.0.0/24").unwrap(), &taken), None);
        assert!(check_bridge_name("kube0").is_ok());
        assert!(check_bridge_name("much-too-long-bridge").is_err());
        assert!(check_bridge_name("a b").is_err());
    }
}
