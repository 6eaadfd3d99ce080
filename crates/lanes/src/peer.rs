//! A connection's peer address, packed for its slot in the worker's table.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// A peer's socket address in 24 bytes rather than the 32 of a [`SocketAddr`]: every
/// connection's slot holds one. IPv4 addresses are kept in the first 4 bytes of `ip`. An IPv6
/// address keeps its scope id but not its flow label, which Linux reports as 0 for accepted
/// and connected TCP sockets (unless `IPV6_FLOWINFO` is set on them, which lanes does not
/// do).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr {
    ip: [u8; 16],
    scope_id: u32,
    port: u16,
    v6: bool,
}

impl PeerAddr {
    /// The address as a [`SocketAddr`].
    pub(crate) fn get(&self) -> SocketAddr {
        if self.v6 {
            let ip = Ipv6Addr::from(self.ip);
            SocketAddr::V6(SocketAddrV6::new(ip, self.port, 0, self.scope_id))
        } else {
            let ip = Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]);
            SocketAddr::V4(SocketAddrV4::new(ip, self.port))
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        let mut ip = [0; 16];
        match addr {
            SocketAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.ip().octets());
                PeerAddr {
                    ip,
                    scope_id: 0,
                    port: v4.port(),
                    v6: false,
                }
            }
            SocketAddr::V6(v6) => PeerAddr {
                ip: v6.ip().octets(),
                scope_id: v6.scope_id(),
                port: v6.port(),
                v6: true,
            },
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_address_is_24_bytes_and_gives_back_what_it_was_made_from() {
        assert_eq!(std::mem::size_of::<PeerAddr>(), 24);
        let addrs = [
            "127.0.0.1:0",
            "255.255.255.255:65535",
            "10.1.2.3:443",
            "[::1]:9000",
            "[::ffff:127.0.0.1]:80",
            "[2001:db8::ff00:42:8329]:65535",
        ];
        for text in addrs {
            let addr: SocketAddr = text.parse().unwrap();
            let peer = PeerAddr::from(addr);
            assert_eq!(peer.get(), addr, "{text}");
            assert_eq!(peer.to_string(), addr.to_string());
            assert_eq!(format!("{peer:?}"), format!("{addr:?}"));
        }
        let scoped = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 7));
        assert_eq!(PeerAddr::from(scoped).get(), scoped);
        assert_eq!(scoped.to_string(), "[fe80::1%7]:80");
        assert_eq!(PeerAddr::from(scoped).to_string(), "[fe80::1%7]:80");
    }
}
