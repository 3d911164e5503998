//! Prometheus metrics, served on `GET /metrics` at the configured address as prometheus-client encodes them
//! (OpenMetrics text); any other path is a 404.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Direction {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Node {
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Target {
    pub kind: &'static str,
    pub address: String,
}

#[derive(Default)]
pub struct Metrics {
    /// Clients relayed to a backend.
    pub connections: Counter,
    /// Clients closed at once, by reason (no_master, limit, backend_unreachable).
    pub refused: Family<Reason, Counter>,
    pub active: Gauge,
    /// `max_connections`, as fitted to the open-file limit.
    pub limit: Gauge,
    /// Relays ended because their backend stopped being the master.
    pub cut_on_switch: Counter,
    /// Bytes relayed, counted when a connection ends.
    pub bytes: Family<Direction, Counter>,
    /// 1 for the node routed to, 0 for nodes routed to before.
    pub master: Family<Node, Gauge>,
    pub switches: Counter,
    pub check_failures: Family<Target, Counter>,
    current: Mutex<Option<SocketAddrV4>>,
    registry: Mutex<Option<Registry>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("sentinel_proxy");
        registry.register(
            "connections",
            "Clients relayed to a backend",
            metrics.connections.clone(),
        );
        registry.register("refused", "Clients closed at once, by reason", metrics.refused.clone());
        registry.register(
            "active_connections",
            "Clients being relayed now",
            metrics.active.clone(),
        );
        registry.register(
            "connection_limit",
            "Clients relayed at most at once (max_connections, fitted to the open-file limit)",
            metrics.limit.clone(),
        );
        registry.register(
            "cut_on_switch",
            "Relays ended because their backend stopped being the master",
            metrics.cut_on_switch.clone(),
        );
        registry.register(
            "bytes",
            "Bytes relayed, counted when a connection ends",
            metrics.bytes.clone(),
        );
        registry.register(
            "master",
            "1 for the node routed to now, 0 for earlier ones",
            metrics.master.clone(),
        );
        registry.register(
            "master_switches",
            "Changes of the node routed to",
            metrics.switches.clone(),
        );
        registry.register(
            "check_failures",
            "Failed Sentinel and role checks",
            metrics.check_failures.clone(),
        );
        *metrics.registry.lock().expect("not poisoned") = Some(registry);
        metrics
    }

    pub fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    pub fn routed_to(&self, node: Option<SocketAddrV4>) {
        let mut current = self.current.lock().expect("not poisoned");
        if let Some(previous) = current.take() {
            self.master
                .get_or_create(&Node {
                    address: previous.to_string(),
                })
                .set(0);
        }
        if let Some(node) = node {
            self.master
                .get_or_create(&Node {
                    address: node.to_string(),
                })
                .set(1);
        }
        *current = node;
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Some(registry) = self.registry.lock().expect("not poisoned").as_ref() {
            let _ = encode(&mut text, registry);
        }
        text
    }
}

/// Answers every HTTP request on `listener` with the metrics. Requests are read up to the blank line (8 KiB at
/// most, 2 s at most) so a slow or silent client cannot hold more than its own connection, and 16 at most at once.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    // Scrapers are few; more at once than this are closed, so they cannot take the descriptors checks need.
    let scrapes = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = scrapes.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut request = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    let n = client.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&chunk[..n]);
                }
                Ok::<_, std::io::Error>(())
            });
            if !matches!(read.await, Ok(Ok(()))) {
                return;
            }
            let _ = client.write_all(&answer(&request, &metrics)).await;
        });
    }
}

/// The whole HTTP answer to a request head: the metrics for `GET /metrics` (or HEAD), 404 otherwise.
fn answer(request: &[u8], metrics: &Metrics) -> Vec<u8> {
    let request = String::from_utf8_lossy(request);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = if matches!(method, "GET" | "HEAD") && path == "/metrics" {
        ("200 OK", OPENMETRICS, metrics.render())
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
        )
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// What prometheus-client's text encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The address the metrics are served on, for messages.
pub fn describe(address: SocketAddr) -> String {
    format!("http://{address}/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn metrics_at_their_path_as_openmetrics_and_404_elsewhere() {
        let metrics = Metrics::new();
        metrics.connections.inc();
        let found = text(answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &metrics));
        assert!(found.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0"));
        assert!(found.contains("sentinel_proxy_connections_total 1\n"), "{found}");
        assert!(found.ends_with("# EOF\n"), "{found}");
        for request in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET /metricsx HTTP/1.1\r\n\r\n",
            "POST /metrics HTTP/1.1\r\n\r\n",
        ] {
            let missing = text(answer(request.as_bytes(), &metrics));
            assert!(
                missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
                "{request}: {missing}"
            );
        }
    }
}
