//! `sentinel-proxy`: routes Redis clients to the master a quorum of Sentinels names and the node confirms.
//!
//! `sentinel-proxy -f proxy.toml [--events] [--check]`, or the same settings as flags without a file:
//! `sentinel-proxy --bind 0.0.0.0:6379 --sentinel 10.0.0.11:26379 ... --master-name mymaster`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;
use tokio::net::TcpListener;

use tokio::sync::{mpsc, watch, Semaphore};

use proxy::checks::{self, Dialer};
use proxy::cli::Flags;
use proxy::config::Config;
use proxy::descriptors;
use proxy::events::Events;
use proxy::listener::{self, Limits};
use proxy::metrics::{self, Metrics};
use proxy::router::Router;
use proxy::tls;
use proxy::tracker::Tracker;

fn load(flags: &Flags) -> Result<Config, String> {
    match &flags.config {
        Some(path) => {
            if flags.describes_backend() {
                return Err("give either a configuration file (-f) or --bind/--server/--sentinel, not both".into());
            }
            let mut config = Config::load(path).map_err(|e| e.to_string())?;
            if flags.metrics.is_some() {
                config.metrics = flags
                    .metrics
                    .as_ref()
                    .map(|m| {
                        m.parse::<SocketAddr>()
                            .map_err(|_| format!("--metrics: `{m}` is not an address:port"))
                    })
                    .transpose()?;
            }
            Ok(config)
        }
        None => Config::parse(&flags.as_toml(), "command line").map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match load(&flags) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("sentinel-proxy: {message}");
            return ExitCode::from(2);
        }
    };
    if flags.check {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let threads = flags
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut config = config;
    if let Err(message) = fit_connections(&mut config, threads) {
        eprintln!("sentinel-proxy: {message}");
        return ExitCode::from(2);
    }
    // The checks, the router and the metrics run on this thread's runtime; the copy path on `--threads` threads
    // of their own (see `relay_threads`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let events = if flags.events {
        Events::to_stdout()
    } else {
        Events::to_stderr()
    };
    match runtime.block_on(run(config, threads, events)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sentinel-proxy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the open-file limit and lowers `max_connections` to what fits under it beside the proxy's own needs,
/// saying so when it does.
fn fit_connections(config: &mut Config, threads: usize) -> Result<(), String> {
    let (limit, hard, not_raised) = descriptors::raise_open_files().map_err(|e| format!("the open-file limit: {e}"))?;
    if let Some(error) = not_raised {
        eprintln!("sentinel-proxy: warning: the open-file limit stays at {limit} (hard limit {hard}): {error}");
    }
    let needs = descriptors::Needs {
        relay_threads: threads,
        frontends: config.frontends.len(),
        sentinels: config.sentinels.len(),
        servers: config.servers.len(),
    };
    let reserved = needs.reserved();
    let capacity = descriptors::client_capacity(limit, reserved);
    if capacity == 0 {
        return Err(format!(
            "the open-file limit ({limit}, hard limit {hard}) leaves no room for clients: the proxy keeps {reserved} \
             descriptors for its checks, listeners and metrics"
        ));
    }
    if config.max_connections > capacity {
        eprintln!(
            "sentinel-proxy: warning: max_connections {} lowered to {capacity}: the open-file limit is {limit} (hard \
             limit {hard}), each client takes two descriptors and {reserved} are kept for checks, listeners and \
             metrics",
            config.max_connections
        );
        config.max_connections = capacity;
    }
    Ok(())
}

/// Binds `address` once per relay thread with SO_REUSEPORT, so the kernel spreads clients over the threads and
/// each connection stays on one thread from accept to close (no hand-off between threads on the copy path).
fn bind_shards(address: SocketAddr, threads: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    // A port some other process holds with SO_REUSEPORT would let us in silently; an exclusive probe first.
    drop(std::net::TcpListener::bind(address).map_err(|e| format!("bind {address}: {e}"))?);
    (0..threads)
        .map(|_| bind().map_err(|e| format!("bind {address}: {e}")))
        .collect()
}

/// One thread per shard set, each with its own single-threaded runtime serving its listeners.
fn relay_threads(
    shards: Vec<Vec<std::net::TcpListener>>,
    route: watch::Receiver<proxy::tracker::Route>,
    limits: Limits,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    for (n, listeners) in shards.into_iter().enumerate() {
        let (route, slots, metrics) = (route.clone(), slots.clone(), metrics.clone());
        std::thread::Builder::new()
            .name(format!("relay-{n}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(async move {
                    let mut serving = tokio::task::JoinSet::new();
                    for listener in listeners {
                        let listener = TcpListener::from_std(listener).expect("a listening socket");
                        serving.spawn(listener::serve(
                            listener,
                            route.clone(),
                            limits,
                            slots.clone(),
                            metrics.clone(),
                        ));
                    }
                    while serving.join_next().await.is_some() {}
                });
            })
            .map_err(|e| format!("relay thread: {e}"))?;
    }
    Ok(())
}

async fn run(config: Config, threads: usize, events: Events) -> Result<(), String> {
    let tls = match &config.tls {
        Some(settings) => Some(tls::connector(settings).map_err(|e| e.to_string())?),
        None => None,
    };
    let dialer = Dialer {
        tls,
        timeout: config.connect_timeout,
        interval: config.check_interval,
    };
    let metrics = Metrics::new();
    let master_name = config.master_name.clone().unwrap_or_default();
    let tracker = Tracker::new(config.sentinels.len(), config.quorum, &master_name);
    let (route_sender, route) = watch::channel(tracker.route());
    let (candidate_sender, candidate) = watch::channel(None);
    let (wake_sender, wake) = watch::channel(0u64);
    let (evidence_sender, evidence) = mpsc::channel(256);

    // Bind everything before any check runs, so a port in use is reported at once.
    let mut shards: Vec<Vec<std::net::TcpListener>> = (0..threads).map(|_| Vec::new()).collect();
    for address in &config.frontends {
        for (thread, listener) in bind_shards(*address, threads)?.into_iter().enumerate() {
            shards[thread].push(listener);
        }
    }
    if let Some(address) = config.metrics {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("bind {address}: {e}"))?;
        eprintln!("sentinel-proxy: metrics on {}", metrics::describe(address));
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }

    for (index, sentinel) in config.sentinels.iter().enumerate() {
        tokio::spawn(checks::poll_sentinel(
            index,
            *sentinel,
            master_name.clone(),
            dialer.clone(),
            evidence_sender.clone(),
            wake.clone(),
        ));
        tokio::spawn(checks::follow_switches(
            index,
            *sentinel,
            dialer.clone(),
            evidence_sender.clone(),
            wake_sender.clone(),
        ));
    }
    for server in &config.servers {
        tokio::spawn(checks::check_role(
            *server,
            dialer.clone(),
            evidence_sender.clone(),
            candidate.clone(),
        ));
    }
    if !config.sentinels.is_empty() {
        tokio::spawn(checks::check_unlisted_candidate(
            config.servers.clone(),
            dialer.clone(),
            evidence_sender.clone(),
            candidate.clone(),
        ));
    }
    drop(evidence_sender);
    let router = Router {
        tracker,
        sentinels: config.sentinels.clone(),
        route: route_sender,
        candidate: candidate_sender,
        events: events.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(router.run(evidence));

    let limits = Limits {
        connect_timeout: config.connect_timeout,
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    metrics.limit.set(config.max_connections as i64);
    relay_threads(shards, route, limits, slots, metrics.clone())?;
    events.emit(
        "ready",
        serde_json::json!({"frontends": config.frontends.iter().map(ToString::to_string).collect::<Vec<_>>()}),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
