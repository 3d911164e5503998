//! The seed's whole stack (topologies/vlan.toml with sentinel-proxy, vlan-haproxy.toml with HAProxy) as the stack
//! tests and the proxy benchmark use it: bring-up that waits until replication, the Sentinels and the proxies are
//! settled, Redis commands from inside a host over TLS, and a writer on the client that counts acknowledged SETs.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab::events::monotonic_ns;
use lab::net::netns;
use lab::{EventKind, Lab, Topology};
use proxy::checks::{Dialer, Session};
use proxy::config::Tls;
use proxy::resp::Value;

use crate::{unique_name, workspace_file};

/// Which proxy runs on haproxy1 and haproxy2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Ours,
    HAProxy,
}

impl Proxy {
    pub fn topology_file(self) -> &'static str {
        match self {
            Proxy::Ours => "topologies/vlan.toml",
            Proxy::HAProxy => "topologies/vlan-haproxy.toml",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Proxy::Ours => "sentinel-proxy",
            Proxy::HAProxy => "HAProxy 2.6",
        }
    }
}

pub const MASTER_NAME: &str = "mymaster";
pub const INITIAL_MASTER: &str = "10.0.0.12:6379";
pub const VIP: &str = "10.0.0.31:6379";

pub fn redis_hosts() -> [(&'static str, SocketAddrV4); 3] {
    [
        ("redis-1v", "10.0.0.11:6379".parse().unwrap()),
        ("redis-2v", "10.0.0.12:6379".parse().unwrap()),
        ("redis-3v", "10.0.0.13:6379".parse().unwrap()),
    ]
}

pub fn sentinels() -> [SocketAddrV4; 3] {
    ["10.0.0.11:26379", "10.0.0.12:26379", "10.0.0.13:26379"].map(|s| s.parse().unwrap())
}

pub fn host_of(node: SocketAddrV4) -> &'static str {
    redis_hosts()
        .into_iter()
        .find(|(_, address)| address.ip() == node.ip())
        .map(|(host, _)| host)
        .unwrap_or_else(|| panic!("{node} is no Redis host"))
}

pub struct Stack {
    pub lab: Lab,
    pub proxy: Proxy,
}

/// Runs `work` on a thread inside `host`'s namespace with a current-thread tokio runtime (never a worker thread
/// of a shared runtime: setns is per thread).
pub fn in_host<T: Send + 'static>(
    lab: &Lab,
    host: &str,
    work: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    in_namespace(lab.netns_path(host).unwrap(), work)
}

fn in_namespace<T: Send + 'static>(
    namespace: &std::path::Path,
    work: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    netns::run_in(namespace, move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(work()))
    })
    .unwrap()
}

impl Stack {
    /// The stack under a unique lab name, once the master has both replicas, every Sentinel knows the master, its
    /// replicas and the other Sentinels, and a client reaches the master through the VIP.
    pub fn up(prefix: &str, proxy: Proxy) -> Stack {
        Stack::up_with(prefix, proxy, |_| {})
    }

    /// The stack with its topology changed by `edit` first.
    pub fn up_with(prefix: &str, proxy: Proxy, edit: impl FnOnce(&mut Topology)) -> Stack {
        let mut topology = Topology::load(workspace_file(proxy.topology_file()))
            .unwrap()
            .renamed(&unique_name(prefix))
            .unwrap();
        edit(&mut topology);
        let stack = Stack {
            lab: Lab::up(&topology).unwrap(),
            proxy,
        };
        stack.settle(Duration::from_secs(30));
        stack
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.lab.paths().tls_dir()
    }

    /// A dialer as a host with its own client certificate (as the proxies and Sentinels connect), or as a client
    /// without one (as redis-cli through the VIP does) when `host` is redisclient.
    pub fn dialer(&self, host: &str) -> Dialer {
        let dir = self.tls_dir();
        let with_certificate = host != "redisclient";
        let tls = Tls {
            ca: dir.join("ca.crt"),
            cert: with_certificate.then(|| dir.join(format!("{host}.crt"))),
            key: with_certificate.then(|| dir.join(format!("{host}.key"))),
        };
        Dialer {
            tls: Some(proxy::tls::connector(&tls).unwrap()),
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(100),
        }
    }

    /// One command from `host` to `to` over TLS, on a fresh connection.
    pub fn command(&self, host: &str, to: SocketAddrV4, arguments: &[&str]) -> Result<Value, String> {
        let dialer = self.dialer(host);
        let arguments: Vec<String> = arguments.iter().map(|a| a.to_string()).collect();
        in_host(&self.lab, host, move || {
            Box::pin(async move {
                let mut session = dialer.open(to).await.map_err(|e| e.to_string())?;
                let arguments: Vec<&[u8]> = arguments.iter().map(|a| a.as_bytes()).collect();
                session.request(&arguments).await.map_err(|e| e.to_string())
            })
        })
    }

    /// What each Sentinel names as master (asked from haproxy1, which may reach them).
    pub fn sentinels_name(&self) -> Vec<Option<SocketAddrV4>> {
        sentinels()
            .iter()
            .map(|sentinel| {
                self.command(
                    "haproxy1",
                    *sentinel,
                    &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
                )
                .ok()
                .and_then(|v| proxy::sentinel::master_address(&v).ok().flatten())
            })
            .collect()
    }

    /// The master all three Sentinels name, once they agree and that node says master with both replicas
    /// connected and every Sentinel sees two replicas and two other Sentinels.
    pub fn settle(&self, limit: Duration) -> SocketAddrV4 {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < limit {
            match self.settled() {
                Ok(master) => return master,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the stack did not settle within {limit:?}: {last}\n{}",
            self.lab.timeline().text()
        );
    }

    fn settled(&self) -> Result<SocketAddrV4, String> {
        let named = self.sentinels_name();
        let Some(master) = named[0].filter(|m| named.iter().all(|n| *n == Some(*m))) else {
            return Err(format!("Sentinels name {named:?}"));
        };
        let info = self.command("haproxy1", master, &["INFO", "replication"])?;
        let info = info.as_text().unwrap_or_default().to_string();
        if !info.contains("role:master") || !info.contains("connected_slaves:2") {
            return Err(format!("{master}: {info}"));
        }
        for offset in ["slave0:", "slave1:"] {
            if !info
                .lines()
                .any(|l| l.starts_with(offset) && l.contains("state=online"))
            {
                return Err(format!("{master}: replica not online: {info}"));
            }
        }
        for sentinel in sentinels() {
            let answer = self.command("haproxy1", sentinel, &["SENTINEL", "master", MASTER_NAME])?;
            let fields = flat_fields(&answer);
            let field = |name: &str| {
                fields
                    .iter()
                    .position(|f| f == name)
                    .and_then(|i| fields.get(i + 1))
                    .cloned()
            };
            if field("num-slaves").as_deref() != Some("2") || field("num-other-sentinels").as_deref() != Some("2") {
                return Err(format!("Sentinel {sentinel} sees {fields:?}"));
            }
            if field("flags").as_deref() != Some("master") {
                return Err(format!("Sentinel {sentinel}: master flags {:?}", field("flags")));
            }
        }
        // Through the VIP, as the client: the proxy routes to the master.
        let through = self.command("redisclient", VIP.parse().unwrap(), &["ROLE"])?;
        if proxy::sentinel::role(&through) != Ok(proxy::sentinel::Role::Master) {
            return Err(format!("through the VIP: {through}"));
        }
        Ok(master)
    }

    /// Starts a writer on redisclient: `SET w:N N` through the VIP every `pace`, each on a new connection (as
    /// the research's writer did, and as clients behind a pool that reconnects do), so every write is routed anew:
    /// a proxy that sends new connections to the wrong node loses writes here.
    pub fn writer(&self, pace: Duration) -> Client {
        self.client(
            pace,
            Connections::FreshPerRequest,
            |n| vec!["SET".into(), format!("w:{n}"), n.to_string()],
            |v| *v == Value::Simple("OK".into()),
        )
    }

    /// Starts a reader on redisclient: `GET scott` through the VIP every `pace`, acknowledged when it is "tiger".
    /// One connection kept open, and opened again after a failure, as an application's connection would.
    pub fn reader(&self, pace: Duration) -> Client {
        self.client(
            pace,
            Connections::Kept,
            |_| vec!["GET".into(), "scott".into()],
            |v| *v == Value::Bulk(b"tiger".to_vec()),
        )
    }

    fn client(
        &self,
        pace: Duration,
        connections: Connections,
        command: fn(u64) -> Vec<String>,
        good: fn(&Value) -> bool,
    ) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let dialer = self.dialer("redisclient");
        let namespace = self.lab.netns_path("redisclient").unwrap().to_path_buf();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            in_namespace(&namespace, move || {
                Box::pin(run_client(dialer, pace, connections, flag, command, good))
            })
        });
        Client { stop, handle }
    }

    /// Keys among `keys` that `node` does not hold (asked from haproxy1, in batches).
    pub fn missing(&self, node: SocketAddrV4, keys: &[String]) -> Vec<String> {
        let mut missing = Vec::new();
        for batch in keys.chunks(500) {
            let mut arguments = vec!["MGET"];
            arguments.extend(batch.iter().map(String::as_str));
            let answer = self.command("haproxy1", node, &arguments).unwrap();
            let Value::Array(values) = answer else {
                panic!("MGET answered {answer}");
            };
            for (key, value) in batch.iter().zip(values) {
                if value == Value::Null {
                    missing.push(key.clone());
                }
            }
        }
        missing
    }

    /// When each Sentinel logged `+switch-master` (CLOCK_MONOTONIC ns), in order, after `after_ns`.
    pub fn switch_announcements(&self, after_ns: u64) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = self
            .lab
            .events()
            .all()
            .into_iter()
            .filter(|e| e.at_ns >= after_ns)
            .filter_map(|e| match &e.kind {
                EventKind::ServiceOutput { service, line, .. }
                    if service == "sentinel" && line.contains("+switch-master") =>
                {
                    Some((e.host.clone().unwrap_or_default(), e.at_ns))
                }
                _ => None,
            })
            .collect();
        found.sort_by_key(|(_, at)| *at);
        found
    }
}

fn flat_fields(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(|v| v.as_text().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// One SET the writer sent and how it ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: String,
    pub sent_ns: u64,
    pub done_ns: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acknowledged,
    /// Redis refused it (`-READONLY` from a replica, ...).
    Refused(String),
    /// No connection, or it broke before the answer.
    Failed(String),
}

pub struct Client {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Attempt>>,
}

impl Client {
    pub fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    Kept,
    FreshPerRequest,
}

async fn run_client(
    dialer: Dialer,
    pace: Duration,
    connections: Connections,
    stop: Arc<AtomicBool>,
    command: fn(u64) -> Vec<String>,
    good: fn(&Value) -> bool,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut session: Option<Session> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let arguments = command(n);
        let key = arguments.get(1).cloned().unwrap_or_default();
        let sent_ns = monotonic_ns();
        if session.is_none() {
            session = dialer.open(VIP.parse().unwrap()).await.ok();
        }
        let outcome = match session.as_mut() {
            None => Outcome::Failed("no connection".into()),
            Some(open) => match open
                .request(&arguments.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
                .await
            {
                Ok(answer) if good(&answer) => Outcome::Acknowledged,
                Ok(other) => Outcome::Refused(other.to_string()),
                Err(e) => {
                    session = None;
                    Outcome::Failed(e.to_string())
                }
            },
        };
        if connections == Connections::FreshPerRequest {
            session = None;
        }
        attempts.push(Attempt {
            key,
            sent_ns,
            done_ns: monotonic_ns(),
            outcome,
        });
        tokio::time::sleep(pace).await;
    }
    attempts
}

/// Acknowledged keys of `attempts`.
pub fn acknowledged(attempts: &[Attempt]) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Acknowledged)
        .map(|a| a.key.clone())
        .collect()
}

impl Stack {
    /// Takes the lab down and checks nothing of it is left.
    pub fn finish(self) {
        crate::down_and_check(self.lab);
    }

    /// Whether `host` holds the VIP now, by its kernel's latest address event.
    pub fn holds_vip(&self, host: &str) -> bool {
        let mut held = false;
        for event in self.lab.events().all() {
            if event.host.as_deref() != Some(host) {
                continue;
            }
            match &event.kind {
                EventKind::AddressAdded { address, .. } if address.starts_with("10.0.0.31/") => held = true,
                EventKind::AddressRemoved { address, .. } if address.starts_with("10.0.0.31/") => held = false,
                _ => {}
            }
        }
        held
    }

    /// `redis-cli` itself on `host`, as the seed's client runs it (TLS, the lab's CA, no client certificate).
    pub fn redis_cli(&self, host: &str, target: &str, arguments: &[&str]) -> std::process::Output {
        let ca = self.tls_dir().join("ca.crt").display().to_string();
        let mut argv = vec![
            "timeout",
            "2",
            "redis-cli",
            "-h",
            target,
            "--tls",
            "--cacert",
            ca.as_str(),
        ];
        argv.extend_from_slice(arguments);
        self.lab.exec(host, &argv).unwrap()
    }
}

/// Write and read statistics of a client run, for messages and the benchmark's failover figures.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub acknowledged: usize,
    pub refused: usize,
    pub failed: usize,
    /// The longest stretch without an acknowledged request.
    pub longest_gap: Duration,
}

pub fn tally(attempts: &[Attempt]) -> Tally {
    let mut tally = Tally::default();
    let mut last_ack: Option<u64> = None;
    for attempt in attempts {
        match &attempt.outcome {
            Outcome::Acknowledged => {
                tally.acknowledged += 1;
                if let Some(last) = last_ack {
                    tally.longest_gap = tally.longest_gap.max(Duration::from_nanos(attempt.done_ns - last));
                }
                last_ack = Some(attempt.done_ns);
            }
            Outcome::Refused(_) => tally.refused += 1,
            Outcome::Failed(_) => tally.failed += 1,
        }
    }
    tally
}
