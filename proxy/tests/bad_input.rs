//! Test 5 of the issue: the sentinel-proxy binary against bad input on loopback (no root, no lab): configuration
//! errors, a Sentinel that answers garbage, a backend that accepts and never answers, clients that connect and send
//! nothing. Each time the error is clear, resources stay bounded, and the proxy keeps serving the others.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proxy::resp::{self, Value};

const PROXY: &str = env!("CARGO_BIN_EXE_sentinel-proxy");

/// A running sentinel-proxy whose JSON events are collected; killed when dropped.
struct Running {
    child: Child,
    events: Arc<Mutex<Vec<String>>>,
    front: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn start(arguments: &[String]) -> Running {
    start_limited(arguments, None)
}

/// The proxy with its open-file limit (soft and hard) set to `open_files`, as `ulimit -n` would.
fn start_limited(arguments: &[String], open_files: Option<u64>) -> Running {
    let front = free_port();
    let mut command = Command::new(PROXY);
    if let Some(limit) = open_files {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing is allocated between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, limit, limit)
                    .map_err(std::io::Error::from)
            });
        }
    }
    let mut child = command
        .args([
            "--events",
            "--bind",
            &front.to_string(),
            "--check-interval",
            "0.1",
            "--connect-timeout",
            "0.2",
        ])
        .args(arguments)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Running { child, events, front }
}

impl Running {
    /// Waits for an event line holding every one of `texts`.
    fn wait_event(&self, texts: &[&str], limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self
                .events
                .lock()
                .unwrap()
                .iter()
                .any(|e| texts.iter().all(|t| e.contains(t)))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// PING through the proxy on a new connection: the backend's answer, or None if the proxy closed it.
    fn ping(&self) -> Option<String> {
        let mut client = TcpStream::connect(self.front).ok()?;
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        client.write_all(&resp::command(&[b"PING"])).ok()?;
        let mut answer = [0u8; 64];
        let n = client.read(&mut answer).ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&answer[..n]).trim().to_string())
    }
}

/// Serves each accepted connection on its own thread with `answer`, which gets each parsed command.
fn fake_server(answer: fn(&[Vec<u8>], SocketAddr) -> Vec<u8>, node: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Ok(Some((value, used))) = resp::parse(&buffer, &resp::Limits::default()) {
                        buffer.drain(..used);
                        let Value::Array(parts) = value else { return };
                        let words: Vec<Vec<u8>> = parts
                            .iter()
                            .map(|p| p.as_text().unwrap_or_default().as_bytes().to_vec())
                            .collect();
                        if stream.write_all(&answer(&words, node)).is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (address, accepted)
}

/// A Redis node that says master, answers PING, and OK to anything else.
fn redis_answer(command: &[Vec<u8>], _: SocketAddr) -> Vec<u8> {
    match command.first().map(|c| c.to_ascii_uppercase()).as_deref() {
        Some(b"ROLE") => b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n".to_vec(),
        Some(b"PING") => b"+PONG\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    }
}

/// A Sentinel naming `node` as master, accepting subscriptions.
fn sentinel_answer(command: &[Vec<u8>], node: SocketAddr) -> Vec<u8> {
    match command.first().map(|c| c.to_ascii_uppercase()).as_deref() {
        Some(b"SENTINEL") => {
            let (ip, port) = (node.ip().to_string(), node.port().to_string());
            resp::Value::Array(vec![Value::Bulk(ip.into_bytes()), Value::Bulk(port.into_bytes())]).encode()
        }
        Some(b"SUBSCRIBE") => {
            let mut out = Vec::new();
            for (n, channel) in command[1..].iter().enumerate() {
                out.extend(
                    Value::Array(vec![
                        Value::Bulk(b"subscribe".to_vec()),
                        Value::Bulk(channel.clone()),
                        Value::Integer(n as i64 + 1),
                    ])
                    .encode(),
                );
            }
            out
        }
        _ => b"-ERR unknown\r\n".to_vec(),
    }
}

/// GET path from a plain HTTP server: the status line and the body.
fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_low_open_file_limit_fits_the_connection_limit_and_clients_beyond_it_are_closed_at_once() {
    let (node, _) = fake_server(redis_answer, free_port());
    let sentinels: Vec<SocketAddr> = (0..3).map(|_| fake_server(sentinel_answer, node).0).collect();
    let metrics = free_port();
    let mut arguments = vec![
        "--threads".to_string(),
        "2".into(),
        "--metrics".into(),
        metrics.to_string(),
    ];
    for sentinel in &sentinels {
        arguments.extend(["--sentinel".to_string(), sentinel.to_string()]);
    }
    arguments.extend(["--master-name", "mymaster", "--server"].map(String::from));
    arguments.push(node.to_string());
    let proxy = start_limited(&arguments, Some(256));
    assert!(
        proxy.wait_event(&["\"route\":\"master\""], Duration::from_secs(5)),
        "never routed"
    );
    let page = http_get(metrics, "/metrics");
    let limit: usize = page
        .lines()
        .find_map(|l| l.strip_prefix("sentinel_proxy_connection_limit "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{page}"));
    // Two relay threads, one frontend, three Sentinels and a server leave (256 - 81) / 2 clients.
    assert_eq!(limit, 87, "{page}");
    assert!(http_get(metrics, "/").starts_with("HTTP/1.1 404"));

    // 200 idle clients: as many as fit are relayed and stay open, the others are closed at once.
    let started = Instant::now();
    let clients: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(proxy.front).unwrap()).collect();
    let mut open = Vec::new();
    let mut closed = 0;
    for mut client in clients {
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match client.read(&mut [0u8; 16]) {
            Ok(0) => closed += 1,
            Ok(_) => panic!("an idle client was sent something"),
            Err(_) => open.push(client),
        }
    }
    assert_eq!((open.len(), closed), (limit, 200 - limit));
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    // The checks kept their descriptors: no check failed, and a freed slot serves the next client.
    assert!(
        !proxy.wait_event(&["check_failed"], Duration::from_millis(500)),
        "{:?}",
        proxy.events.lock().unwrap()
    );
    drop(open.pop());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"));
}

#[test]
fn a_quorum_below_a_majority_is_refused_unless_allowed() {
    let sentinels = [
        "--sentinel",
        "10.0.0.11:26379",
        "--sentinel",
        "10.0.0.12:26379",
        "--sentinel",
        "10.0.0.13:26379",
    ];
    let common = [
        "--check",
        "--bind",
        "127.0.0.1:6379",
        "--master-name",
        "mymaster",
        "--quorum",
        "1",
    ];
    let output = Command::new(PROXY).args(common).args(sentinels).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backend.quorum: quorum 1 is below a majority of the 3 Sentinels given"),
        "{stderr}"
    );
    let output = Command::new(PROXY)
        .args(common)
        .args(sentinels)
        .arg("--allow-minority-quorum")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn unused(_: &[Vec<u8>], _: SocketAddr) -> Vec<u8> {
    Vec::new()
}

#[test]
fn configuration_errors_name_file_line_column_and_field() {
    let dir = std::env::temp_dir().join(format!("proxy-bad-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "[[frontends]]\nbind = \"everywhere\"\n\n[backend]\nsentinels = [\"10.0.0.11:26379\"]\nmaster_name = \"mymaster\"\nquorum = 3\n",
    )
    .unwrap();
    let output = Command::new(PROXY)
        .args(["-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let name = file.display().to_string();
    assert!(stderr.contains(&format!("{name}:2:8: frontends[0].bind")), "{stderr}");
    assert!(stderr.contains(&format!("{name}:7:10: backend.quorum")), "{stderr}");

    let output = Command::new(PROXY)
        .args(["--bind", "0.0.0.0:6379", "--server", "redis:6379"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("command line") && stderr.contains("backend.servers[0]"),
        "{stderr}"
    );

    let output = Command::new(PROXY)
        .args(["-f", "/nonexistent/proxy.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/proxy.toml"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_sentinel_answering_garbage_is_outvoted_and_costs_nothing() {
    let (node, _) = fake_server(redis_answer, free_port());
    let (good1, _) = fake_server(sentinel_answer, node);
    let (good2, _) = fake_server(sentinel_answer, node);
    // Endless bytes without a line end, as a misdirected port or a broken peer might send.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_address = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in garbage.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let junk = vec![b'x'; 64 * 1024];
                while stream.write_all(&junk).is_ok() {}
            });
        }
    });
    let proxy = start(&[
        "--sentinel".into(),
        garbage_address.to_string(),
        "--sentinel".into(),
        good1.to_string(),
        "--sentinel".into(),
        good2.to_string(),
        "--master-name".into(),
        "mymaster".into(),
        "--quorum".into(),
        "2".into(),
        "--server".into(),
        node.to_string(),
    ]);
    assert!(
        proxy.wait_event(&["\"route\":\"master\""], Duration::from_secs(5)),
        "never routed"
    );
    let garbage_name = garbage_address.to_string();
    assert!(
        proxy.wait_event(&["check_failed", &garbage_name, "not RESP"], Duration::from_secs(5)),
        "the garbage Sentinel was not reported: {:?}",
        proxy.events.lock().unwrap()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"));
    let rss = proxy.rss_kib();
    assert!(rss < 64 * 1024, "the proxy grew to {rss} KiB reading garbage");
}

#[test]
fn a_silent_backend_and_silent_clients_do_not_stop_the_proxy() {
    let (good, _) = fake_server(redis_answer, free_port());
    let (silent, silent_accepted) = fake_server(unused, free_port());
    let proxy = start(&[
        "--server".into(),
        silent.to_string(),
        "--server".into(),
        good.to_string(),
        "--max-connections".into(),
        "101".into(),
    ]);
    assert!(
        proxy.wait_event(&[&format!("\"master\":\"{good}\"")], Duration::from_secs(5)),
        "never routed"
    );
    let silent_name = silent.to_string();
    assert!(
        proxy.wait_event(
            &["check_failed", &silent_name, "no answer within"],
            Duration::from_secs(5)
        ),
        "silence not reported: {:?}",
        proxy.events.lock().unwrap()
    );

    // A hundred clients that connect and send nothing hold their slots, and nothing else.
    let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(proxy.front).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"), "the 101st client is served");
    // While those hundred stay (and the PING's slot has been given back), the 102nd is over the limit and closed
    // at once.
    std::thread::sleep(Duration::from_millis(300));
    let hold = TcpStream::connect(proxy.front).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(proxy.ping(), None, "over the limit: closed");
    drop(hold);
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"), "slots come back");

    // The silent node costs one check connection at a time: each check waits its timeout (0.2 s), then
    // reconnects, so 2 s cannot take more than about 2 / 0.2 + 2 connections.
    let before = silent_accepted.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let opened = silent_accepted.load(Ordering::Relaxed) - before;
    assert!(opened <= 12, "{opened} check connections to the silent node in 2 s");
    let rss = proxy.rss_kib();
    assert!(rss < 64 * 1024, "the proxy grew to {rss} KiB");
}

/// A server that answers every connection with an error and hangs up, as Redis does at maxclients.
fn refusing_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n");
        }
    });
    (address, accepted)
}

#[test]
fn a_node_that_refuses_and_hangs_up_is_not_hammered() {
    let (good, _) = fake_server(redis_answer, free_port());
    let (refusing, accepted) = refusing_server();
    let proxy = start(&[
        "--server".into(),
        refusing.to_string(),
        "--server".into(),
        good.to_string(),
    ]);
    assert!(
        proxy.wait_event(&[&format!("\"master\":\"{good}\"")], Duration::from_secs(5)),
        "never routed"
    );
    let before = accepted.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let opened = accepted.load(Ordering::Relaxed) - before;
    // Two attempts per check interval (0.1 s) at most, about 40 in 2 s (with slack), not one per round trip.
    assert!(opened <= 60, "{opened} connections to the refusing node in 2 s");
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"));
}

#[test]
fn sentinels_alone_are_enough() {
    // No `--server`: the proxy asks ROLE of whatever node the Sentinels name.
    let (node, _) = fake_server(redis_answer, free_port());
    let (sentinel1, _) = fake_server(sentinel_answer, node);
    let (sentinel2, _) = fake_server(sentinel_answer, node);
    let proxy = start(&[
        "--sentinel".into(),
        sentinel1.to_string(),
        "--sentinel".into(),
        sentinel2.to_string(),
        "--master-name".into(),
        "mymaster".into(),
    ]);
    assert!(
        proxy.wait_event(&[&format!("\"master\":\"{node}\"")], Duration::from_secs(5)),
        "never routed: {:?}",
        proxy.events.lock().unwrap()
    );
    assert_eq!(proxy.ping().as_deref(), Some("+PONG"));
}
