//! What the host is called and where it can be reached: its hostname and the
//! addresses of its network interfaces, for the apiserver certificate's SANs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kernel's hostname (lower-cased), if it has one.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// Every address configured on the host's interfaces, IPv4 and IPv6, except IPv6
/// link-local ones: every veth of every pod carries one of those, so including them
/// would change the SAN set (and re-issue the certificate) with every pod, and no
/// client can name one in a URL without a zone anyway.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is ours until
    // `freeifaddrs` below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot list network interfaces");
        return Vec::new();
    }
    let mut addresses = Vec::new();
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getifaddrs returned, alive until freed.
        let ifa = unsafe { &*node };
        node = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr whose family tells
        // which concrete sockaddr type it is; we read only that type.
        let address = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if !is_ipv6_link_local(&address) && !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    addresses
}

fn is_ipv6_link_local(address: &IpAddr) -> bool {
    matches!(address, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_loopback_and_skips_link_local() {
        let addresses = interface_addresses();
        assert!(addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{addresses:?}");
        assert!(!addresses.iter().any(is_ipv6_link_local), "{addresses:?}");
        assert!(is_ipv6_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_ipv6_link_local(&"fd00::1".parse().unwrap()));
    }

    #[test]
    fn hostname_is_lower_case() {
        if let Some(name) = hostname() {
            assert_eq!(name, name.to_ascii_lowercase());
        }
    }
}
