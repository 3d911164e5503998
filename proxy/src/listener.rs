//! A frontend: accepts clients and relays each to the master of the moment. A client arriving while the route is a
//! refusal, or beyond the connection limit, is closed at once: no silent fallback to another node, and no queue of
//! clients waiting on a proxy that cannot serve them.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::metrics::{Direction, Metrics};
use crate::relay::{relay, Ended};
use crate::tracker::Route;

const EMFILE: i32 = nix::errno::Errno::EMFILE as i32;
const ENFILE: i32 = nix::errno::Errno::ENFILE as i32;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
}

/// Serves `listener` until the task is dropped.
/// `slots` holds one permit per connection allowed, shared by every frontend and thread of the proxy.
pub async fn serve(
    listener: TcpListener,
    route: watch::Receiver<Route>,
    limits: Limits,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
) {
    // Held so that, should descriptors run out all the same, one is free to accept the waiting client and close it
    // at once rather than leave it in the backlog.
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) if matches!(error.raw_os_error(), Some(code) if code == EMFILE || code == ENFILE) => {
                // With the spare given back, the waiting client can be accepted and closed. Without one (another
                // thread took the descriptor, or the whole system is out), wait a moment rather than spin.
                let closed = match spare.take() {
                    Some(file) => {
                        drop(file);
                        listener.accept().await.is_ok()
                    }
                    None => false,
                };
                if closed {
                    metrics.refuse("descriptors");
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                spare = std::fs::File::open("/dev/null").ok();
                continue;
            }
            // Out of memory for a moment, and the like: back off briefly rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refuse("limit");
            continue;
        };
        let Route::Master(master) = *route.borrow() else {
            metrics.refuse("no_master");
            continue;
        };
        let route = route.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(backend)) = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(master)).await else {
                metrics.refuse("backend_unreachable");
                return;
            };
            metrics.connections.inc();
            metrics.active.inc();
            match relay(client, backend, master, route).await {
                Ok(Ended::Closed(moved)) => {
                    metrics
                        .bytes
                        .get_or_create(&Direction {
                            direction: "to_backend",
                        })
                        .inc_by(moved.to_backend);
                    metrics
                        .bytes
                        .get_or_create(&Direction { direction: "to_client" })
                        .inc_by(moved.to_client);
                }
                Ok(Ended::Rerouted) => {
                    metrics.cut_on_switch.inc();
                }
                Err(_) => {}
            }
            metrics.active.dec();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::tracker::Refusal;

    /// A backend that answers every connection with its own name, then echoes.
    async fn backend(name: &'static [u8]) -> SocketAddrV4 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = match listener.local_addr().unwrap() {
            std::net::SocketAddr::V4(address) => address,
            other => panic!("{other}"),
        };
        tokio::spawn(async move {
            loop {
                let (mut connection, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    connection.write_all(name).await.unwrap();
                    let mut buffer = [0u8; 64];
                    while let Ok(n) = connection.read(&mut buffer).await {
                        if n == 0 || connection.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn frontend(route: watch::Receiver<Route>, max_connections: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = Limits {
            connect_timeout: Duration::from_secs(1),
        };
        tokio::spawn(serve(
            listener,
            route,
            limits,
            Arc::new(Semaphore::new(max_connections)),
            Metrics::new(),
        ));
        address
    }

    async fn greeting(client: &mut TcpStream) -> Vec<u8> {
        let mut buffer = [0u8; 2];
        match client.read_exact(&mut buffer).await {
            Ok(_) => buffer.to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn clients_follow_the_route_and_are_refused_without_one() {
        let (a, b) = (backend(b"A!").await, backend(b"B!").await);
        let (route, routes) = watch::channel(Route::Master(a));
        let front = frontend(routes, 100).await;

        let mut first = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut first).await, b"A!");
        first.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        first.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");

        // The master changes: the connection to A ends, a new client reaches B.
        route.send(Route::Master(b)).unwrap();
        let mut rest = Vec::new();
        assert_eq!(first.read_to_end(&mut rest).await.unwrap(), 0);
        let mut second = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut second).await, b"B!");

        // No master: connections end at once, and the one to B too.
        route.send(Route::Refuse(Refusal::NoQuorum)).unwrap();
        assert_eq!(second.read_to_end(&mut rest).await.unwrap(), 0);
        let mut refused = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut refused).await, b"");
    }

    #[tokio::test]
    async fn beyond_the_limit_clients_are_closed_and_the_others_keep_working() {
        let a = backend(b"A!").await;
        let (_route, routes) = watch::channel(Route::Master(a));
        let front = frontend(routes, 1).await;
        let mut kept = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut kept).await, b"A!");
        let mut extra = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut extra).await, b"", "over the limit");
        kept.write_all(b"ok").await.unwrap();
        let mut echo = [0u8; 2];
        kept.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ok");
        // Once the first leaves, its slot is free again.
        drop(kept);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut next = TcpStream::connect(front).await.unwrap();
        assert_eq!(greeting(&mut next).await, b"A!");
    }
}
