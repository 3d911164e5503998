//! Byte-for-byte forwarding between a client and the backend it was routed to: both directions at once, each
//! direction's end (half-close) passed on, TCP_NODELAY on both sockets (Redis replies are small and latency is
//! what a proxy adds), and cut short at once when the master it was routed to stops being the master. No splice:
//! Redis requests and replies are small, and splice through a pipe costs two system calls per transfer where a
//! copy costs one read and one write.

use std::io;
use std::net::SocketAddrV4;

use std::io::Read;

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::tracker::Route;

/// Bytes each way: client to backend, backend to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transferred {
    pub to_backend: u64,
    pub to_client: u64,
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed their direction.
    Closed(Transferred),
    /// The route changed (the backend is no longer the master): both connections were dropped.
    Rerouted,
}

/// Buffer per direction: large enough for a pipeline of commands in one read. Allocated when the first bytes
/// arrive, so that idle connections (a pool's spares) cost no buffer at all.
const BUFFER: usize = 32 * 1024;

/// Forwards until both directions are closed, or until `route` stops naming `master` as the master.
pub async fn relay(
    mut client: TcpStream,
    backend: TcpStream,
    master: SocketAddrV4,
    mut route: watch::Receiver<Route>,
) -> io::Result<Ended> {
    client.set_nodelay(true)?;
    backend.set_nodelay(true)?;
    // A peer that vanishes without FIN or RST (a crashed machine, a NAT that forgot the flow) is found within
    // about two minutes instead of holding its connection slot until the next change of master.
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    SockRef::from(&client).set_tcp_keepalive(&keepalive)?;
    SockRef::from(&backend).set_tcp_keepalive(&keepalive)?;
    let copied = tokio::select! {
        copied = async { tokio::try_join!(pump(&client, &backend), pump(&backend, &client)) } => copied,
        () = rerouted(&mut route, master) => {
            let _ = client.shutdown().await;
            return Ok(Ended::Rerouted);
        }
    };
    let (to_backend, to_client) = copied?;
    Ok(Ended::Closed(Transferred { to_backend, to_client }))
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s direction (half-close); returns the bytes copied.
///
/// A read that fills less than the buffer has emptied the socket, so the socket is marked not readable right away
/// rather than by one more read failing with EAGAIN: per request and direction that is one system call of three
/// saved (the generic copy loops of tokio and others make it), and Redis traffic is many small requests.
async fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    let mut buffer = Vec::new();
    loop {
        from.readable().await?;
        if buffer.is_empty() {
            buffer = vec![0u8; BUFFER];
        }
        let mut got = 0usize;
        let read = from.try_io(Interest::READABLE, || {
            let socket = SockRef::from(from);
            got = (&*socket).read(&mut buffer)?;
            if got > 0 && got < buffer.len() {
                // Tells tokio the socket is drained; `got` carries the data read.
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match read {
            Ok(()) if got == 0 => {
                SockRef::from(to).shutdown(std::net::Shutdown::Write)?;
                return Ok(total);
            }
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        let mut data = &buffer[..got];
        while !data.is_empty() {
            match to.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
        total += got as u64;
    }
}

/// Resolves once `route` no longer names `master` (or the proxy dropped the sender: it is going away).
async fn rerouted(route: &mut watch::Receiver<Route>, master: SocketAddrV4) {
    while *route.borrow_and_update() == Route::Master(master) {
        if route.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A client connected through `relay` to a backend on loopback; returns the client end, the backend's accepted
    /// end, the route sender and the relay task.
    async fn through_relay() -> (
        TcpStream,
        TcpStream,
        watch::Sender<Route>,
        tokio::task::JoinHandle<io::Result<Ended>>,
    ) {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = front.accept().await.unwrap();
        let master = match back.local_addr().unwrap() {
            std::net::SocketAddr::V4(address) => address,
            other => panic!("{other}"),
        };
        let to_backend = TcpStream::connect(master).await.unwrap();
        let (backend, _) = back.accept().await.unwrap();
        let (route, routes) = watch::channel(Route::Master(master));
        let task = tokio::spawn(relay(accepted, to_backend, master, routes));
        (client, backend, route, task)
    }

    #[tokio::test]
    async fn forwards_both_ways_and_passes_half_close_on() {
        let (mut client, mut backend, _route, task) = through_relay().await;
        client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        // The client is done sending; the backend must see the end, and can still answer.
        client.shutdown().await.unwrap();
        let mut request = Vec::new();
        backend.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"*1\r\n$4\r\nPING\r\n");
        backend.write_all(b"+PONG\r\n").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"+PONG\r\n");
        assert_eq!(
            task.await.unwrap().unwrap(),
            Ended::Closed(Transferred {
                to_backend: 14,
                to_client: 7
            })
        );
    }

    #[tokio::test]
    async fn a_new_route_cuts_the_connection() {
        let (mut client, mut backend, route, task) = through_relay().await;
        client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
        let mut first = [0u8; 14];
        backend.read_exact(&mut first).await.unwrap();
        // The same route announced again changes nothing; another master ends the connection.
        route.send_modify(|_| {});
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!task.is_finished());
        route.send(Route::Master("10.0.0.13:6379".parse().unwrap())).unwrap();
        assert_eq!(task.await.unwrap().unwrap(), Ended::Rerouted);
        // Both ends see the connection end: nothing more goes to the old master.
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(backend.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
