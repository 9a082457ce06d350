//! Listening sockets for the target server: one per worker thread and port, all bound to the
//! same address with `SO_REUSEPORT` so the kernel spreads incoming connections over the
//! threads. With a port range every worker listens on every port of it.
//!
//! Plain libc socket calls (no io_uring here); errors say what is wrong with the address and
//! what to do about it. Accepted sockets inherit `TCP_NODELAY` from the listener, which is why
//! it is set here: the workers accept into direct descriptors and never call setsockopt.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use thiserror::Error;

/// Pending-connection queue of each listening socket (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Why the server could not listen, with what to do about it.
#[derive(Debug, Error)]
pub enum ListenError {
    #[error("{addr} is already in use: stop the other server or pick another --listen port")]
    InUse { addr: SocketAddr },
    #[error(
        "not allowed to listen on {addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port from 1024 up"
    )]
    Permission { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: the address does not belong to this machine; use 127.0.0.1, 0.0.0.0 or an address from `ip addr`"
    )]
    NotLocal { addr: SocketAddr },
    #[error(
        "cannot listen on {ports} ports from {addr}: a port range needs a first port other than 0 and must end at 65535 at the latest"
    )]
    Range { addr: SocketAddr, ports: u16 },
    #[error("cannot listen on {addr}: {op} failed: {source}")]
    Other {
        addr: SocketAddr,
        op: &'static str,
        source: io::Error,
    },
}

/// Binds `count` listening sockets to each of `ports` consecutive ports from `addr`'s port.
/// Returns each worker's sockets (one per port, in port order) and the bound addresses.
pub fn bind_ports(
    addr: SocketAddr,
    ports: u16,
    count: usize,
) -> Result<(Vec<Vec<OwnedFd>>, Vec<SocketAddr>), ListenError> {
    let last = u32::from(addr.port()) + u32::from(ports.max(1)) - 1;
    if ports == 0 || (ports > 1 && (addr.port() == 0 || last > u32::from(u16::MAX))) {
        return Err(ListenError::Range { addr, ports });
    }
    let mut workers: Vec<Vec<OwnedFd>> = (0..count)
        .map(|_| Vec::with_capacity(ports.into()))
        .collect();
    let mut bound = Vec::with_capacity(ports.into());
    for port in u32::from(addr.port())..=last {
        let mut at = addr;
        at.set_port(port as u16);
        let (sockets, addr) = bind_all(at, count)?;
        for (worker, socket) in workers.iter_mut().zip(sockets) {
            worker.push(socket);
        }
        bound.push(addr);
    }
    Ok((workers, bound))
}

/// Binds `count` listening sockets to `addr` (port 0: the first picks a free port and the
/// others bind it too). Returns the sockets and the bound address.
pub fn bind_all(addr: SocketAddr, count: usize) -> Result<(Vec<OwnedFd>, SocketAddr), ListenError> {
    if addr.port() != 0 {
        probe_free(addr)?;
    }
    let first = bind_one(addr)?;
    let bound = local_addr(&first).map_err(|source| ListenError::Other {
        addr,
        op: "getsockname",
        source,
    })?;
    let mut sockets = Vec::with_capacity(count);
    sockets.push(first);
    for _ in 1..count {
        sockets.push(bind_one(bound)?);
    }
    Ok((sockets, bound))
}

/// With `SO_REUSEPORT` a second server of the same user would silently share the port, so
/// first try the address without it: a listener already there makes this fail.
fn probe_free(addr: SocketAddr) -> Result<(), ListenError> {
    let probe = new_socket(addr)?;
    set_opt(&probe, libc::SOL_SOCKET, libc::SO_REUSEADDR, addr)?;
    bind(&probe, addr)
}

fn bind_one(addr: SocketAddr) -> Result<OwnedFd, ListenError> {
    let fd = new_socket(addr)?;
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, addr)?;
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, addr)?;
    set_opt(&fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, addr)?;
    bind(&fd, addr)?;
    // SAFETY: listen only reads its integer arguments; `fd` is an open socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } != 0 {
        return Err(classify(addr, "listen", io::Error::last_os_error()));
    }
    Ok(fd)
}

fn new_socket(addr: SocketAddr) -> Result<OwnedFd, ListenError> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket takes integer arguments only and returns a new descriptor or -1.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(ListenError::Other {
            addr,
            op: "socket",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` is a descriptor socket() just returned; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn set_opt(fd: &OwnedFd, level: i32, name: i32, addr: SocketAddr) -> Result<(), ListenError> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&one`, which lives across
    // the call; `fd` is an open socket we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(ListenError::Other {
            addr,
            op: "setsockopt",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> Result<(), ListenError> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for the socket's family and
    // lives across the call; bind only reads it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(classify(addr, "bind", io::Error::last_os_error()));
    }
    Ok(())
}

fn classify(addr: SocketAddr, op: &'static str, source: io::Error) -> ListenError {
    match source.raw_os_error() {
        Some(libc::EADDRINUSE) => ListenError::InUse { addr },
        Some(libc::EACCES) | Some(libc::EPERM) => ListenError::Permission { addr },
        Some(libc::EADDRNOTAVAIL) => ListenError::NotLocal { addr },
        _ => ListenError::Other { addr, op, source },
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero bytes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `storage`, which we own.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, and storage is aligned for it.
            let sin = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6, and storage is aligned for it.
            let sin6 = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        family => Err(io::Error::other(format!(
            "unexpected address family {family}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_binds_all_threads_to_one_port() {
        let (sockets, addr) = bind_all("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        assert_eq!(sockets.len(), 3);
        assert_ne!(addr.port(), 0);
        for s in &sockets {
            assert_eq!(local_addr(s).expect("name"), addr);
        }
    }

    #[test]
    fn busy_port_says_what_to_do() {
        let (_sockets, addr) = bind_all("127.0.0.1:0".parse().expect("addr"), 1).expect("bind");
        let err = bind_all(addr, 1).expect_err("port is taken");
        assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("already in use"),
            "{msg}"
        );
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("std bind");
        let err = bind_all(std_listener.local_addr().expect("addr"), 2).expect_err("port is taken");
        assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
    }

    #[test]
    fn a_port_range_gives_every_worker_every_port() {
        // Find a free run of ports below the ephemeral range (32768-60999 here), where the
        // client sockets and TIME_WAIT leftovers of other tests never are; start from a
        // per-process offset so parallel test processes do not race for the same run.
        let base = 20_000 + (std::process::id() % 1_000) as u16 * 10;
        for attempt in 0..200u16 {
            let first = std::net::SocketAddr::from(([127, 0, 0, 1], base + attempt * 5));
            let Ok((workers, addrs)) = bind_ports(first, 4, 2) else {
                continue; // some port of the run was taken meanwhile: try another run
            };
            assert_eq!(workers.len(), 2);
            assert_eq!(addrs.len(), 4);
            for (i, addr) in addrs.iter().enumerate() {
                assert_eq!(addr.port(), first.port() + i as u16);
            }
            for sockets in &workers {
                assert_eq!(sockets.len(), 4);
                for (socket, addr) in sockets.iter().zip(&addrs) {
                    assert_eq!(local_addr(socket).expect("name"), *addr);
                }
            }
            return;
        }
        panic!("found no run of 4 free ports");
    }

    #[test]
    fn bad_port_ranges_are_refused() {
        for (addr, ports) in [
            ("127.0.0.1:0", 2),
            ("127.0.0.1:65535", 2),
            ("127.0.0.1:9000", 0),
        ] {
            let err = bind_ports(addr.parse().expect("addr"), ports, 1).expect_err("bad range");
            assert!(matches!(err, ListenError::Range { .. }), "{err:?}");
        }
    }

    #[test]
    fn foreign_address_says_what_to_do() {
        let err = bind_all("192.0.2.1:0".parse().expect("addr"), 1).expect_err("not ours");
        assert!(matches!(err, ListenError::NotLocal { .. }), "{err:?}");
    }

    #[test]
    fn ipv6_loopback_when_available() {
        match bind_all("[::1]:0".parse().expect("addr"), 2) {
            Ok((sockets, addr)) => {
                assert_eq!(sockets.len(), 2);
                assert!(addr.is_ipv6() && addr.port() != 0);
            }
            Err(ListenError::NotLocal { .. }) | Err(ListenError::Other { .. }) => {
                eprintln!("skipped: no IPv6 loopback here");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
