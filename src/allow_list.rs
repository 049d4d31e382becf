//! Who may read the operator's endpoints (`GET /metrics`, and the message
//! preview) from another machine: loopback always, plus the networks listed
//! in `METRICS_ALLOW` (comma-separated CIDRs, IPv4 and IPv6, e.g.
//! `192.168.1.0/24,fd00::/8`), so that a Prometheus on the LAN can scrape a
//! Pi without opening those endpoints to everyone who can reach the
//! webhook port.
//!
//! [`AllowList::permits`] is the one check every such endpoint makes. A
//! peer is compared in its canonical form (the HTTP server already names an
//! IPv4 peer of a dual-stack socket as IPv4), so `::ffff:192.168.1.7`
//! matches `192.168.1.0/24`; an IPv4 network never matches an IPv6 peer
//! and the other way round.
use std::fmt;
use std::net::IpAddr;

/// Loopback plus a list of networks.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<Net>,
}

/// One network: an address with its host bits clear, and a prefix length.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl AllowList {
    /// Loopback only: the default when `METRICS_ALLOW` is not set.
    pub fn loopback_only() -> AllowList {
        AllowList::default()
    }

    /// Parse a comma-separated list of CIDRs (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses (`192.168.1.20`, a /32 or /128). Blanks around items
    /// and empty items are ignored. A network with host bits set
    /// (`192.168.1.7/24`) is refused: it is most likely a typo for either
    /// the address or the network, and guessing would open the wrong one.
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let nets = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Net::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowList { nets })
    }

    /// Whether `peer` may read the operator's endpoints: a loopback address,
    /// or one inside a listed network.
    pub fn permits(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        peer.is_loopback() || self.nets.iter().any(|n| n.contains(peer))
    }
}

impl Net {
    fn parse(item: &str) -> Result<Net, String> {
        let (addr, prefix) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{item:?} is not an IPv4 or IPv6 network like 192.168.1.0/24"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{item:?}: the prefix length must be 0 to {max}")),
            },
        };
        let net = Net { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!(
                "{item:?} has host bits set; the network is {}/{prefix}",
                net.masked(addr)
            ));
        }
        Ok(net)
    }

    /// `ip` with the bits past this network's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AllowList(loopback")?;
        for n in &self.nets {
            write!(f, ", {}/{}", n.addr, n.prefix)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_always_allowed_and_nothing_else_by_default() {
        let none = AllowList::loopback_only();
        for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(none.permits(ip(peer)), "{peer}");
        }
        for peer in ["192.168.1.7", "10.0.0.1", "fd00::1", "0.0.0.0", "::"] {
            assert!(!none.permits(ip(peer)), "{peer}");
        }
        assert_eq!(AllowList::parse("").unwrap(), none);
        assert_eq!(AllowList::parse(" , ,").unwrap(), none);
    }

    #[test]
    fn networks_of_both_families_match_their_own_addresses() {
        let list = AllowList::parse("192.168.1.0/24, fd00::/8,10.1.2.3").unwrap();
        assert_eq!(
            format!("{list:?}"),
            "AllowList(loopback, 192.168.1.0/24, fd00::/8, 10.1.2.3/32)"
        );
        for peer in [
            "192.168.1.0",
            "192.168.1.7",
            "192.168.1.255",
            "::ffff:192.168.1.7",
            "fd00::1",
            "fdff:ffff::1",
            "10.1.2.3",
        ] {
            assert!(list.permits(ip(peer)), "{peer}");
        }
        for peer in [
            "192.168.2.7",
            "192.168.0.255",
            "fe80::1",
            "fc00::1",
            "10.1.2.4",
            // An IPv6 address whose low bits spell 192.168.1.7 is not that IPv4 host.
            "::c0a8:107",
        ] {
            assert!(!list.permits(ip(peer)), "{peer}");
        }
    }

    #[test]
    fn the_widest_and_narrowest_prefixes_work() {
        let all = AllowList::parse("0.0.0.0/0,::/0").unwrap();
        assert!(all.permits(ip("8.8.8.8")) && all.permits(ip("2001:db8::1")));
        let v4_only = AllowList::parse("0.0.0.0/0").unwrap();
        assert!(!v4_only.permits(ip("2001:db8::1")));
        let one = AllowList::parse("2001:db8::5/128").unwrap();
        assert!(one.permits(ip("2001:db8::5")) && !one.permits(ip("2001:db8::4")));
    }

    #[test]
    fn bad_items_are_refused_with_a_reason() {
        for (text, needle) in [
            (
                "192.168.1.7/24",
                "host bits set; the network is 192.168.1.0/24",
            ),
            ("fd00::1/8", "the network is fd00::/8"),
            ("192.168.1.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/+8", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("lan", "not an IPv4 or IPv6 network"),
            ("192.168.1.0/24;10.0.0.0/8", "prefix length"),
            ("192.168.1.0;10.0.0.0/8", "not an IPv4 or IPv6 network"),
            ("[fd00::]/8", "not an IPv4 or IPv6 network"),
        ] {
            let e = AllowList::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
