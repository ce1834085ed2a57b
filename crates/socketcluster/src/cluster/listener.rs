//! Port sharing: every worker binds the same port with `SO_REUSEPORT`, and the kernel spreads
//! new connections across them.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

/// Resolves `host:port` to one address.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("cannot resolve {host}"),
        )
    })
}

/// Connections the kernel may queue for `accept` per listener. A burst of connects beyond the
/// queue has SYNs dropped and retried after a second, so it is generous; Linux caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// A listener on `address` that other processes of this cluster can share.
pub fn shared_listener(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Checks, before anything starts, that nobody listens on `address` (a plain bind, without
/// `SO_REUSEPORT`, so another cluster on the same port is detected too). Port 0 is resolved to
/// a free port, which is returned.
pub fn claim_port(address: SocketAddr) -> io::Result<u16> {
    let probe = StdListener::bind(address)?;
    Ok(probe.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_listeners_share_a_port_and_a_busy_port_is_detected() {
        let port = claim_port("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = resolve("127.0.0.1", port).unwrap();
        let a = shared_listener(address).unwrap();
        let b = shared_listener(address).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
        assert!(
            claim_port(address).is_err(),
            "a port in use must be reported"
        );
    }
}
