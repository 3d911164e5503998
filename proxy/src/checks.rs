//! The proxy's own conversations with Sentinels and Redis nodes, feeding [`Evidence`] to the router: one task asks
//! each Sentinel `SENTINEL get-master-addr-by-name` every check interval, one listens to each Sentinel's
//! `+switch-master`, and one asks each node `ROLE`. All keep their connection open between checks (a TLS handshake
//! per check would cost more than the check) and watch it while idle: Sentinel drops a node's clients when it
//! promotes or reconfigures it, and a check connection closing is the earliest sign of a failover the proxy gets.

use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;

use crate::resp::{self, Value};
use crate::sentinel::{self, Progress, Role, Switch};

/// What a check found, for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Sentinel `sentinel` named `address` as master (or could not be asked: `error`).
    Named {
        sentinel: usize,
        address: Option<SocketAddrV4>,
        error: Option<String>,
    },
    /// Sentinel `sentinel` published `+switch-master`.
    Switched { sentinel: usize, switch: Switch },
    /// Sentinel `sentinel` started (`+try-failover`) or ended a failover.
    Failover { sentinel: usize, progress: Progress },
    /// `node` answered `ROLE` (or could not be asked: `error`).
    Role {
        node: SocketAddrV4,
        role: Option<Role>,
        error: Option<String>,
    },
}

#[derive(Debug, Error)]
pub enum CheckError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection closed")]
    Closed,
    #[error("not RESP: {0}")]
    Protocol(#[from] resp::Error),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// How checks connect: timeouts, TLS, interval.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Option<TlsConnector>,
    pub timeout: Duration,
    pub interval: Duration,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One open check connection, plain or TLS, with what has been read but not decoded yet.
pub struct Session {
    stream: Box<dyn Stream>,
    buffer: Vec<u8>,
    decoder: resp::Decoder,
    timeout: Duration,
}

impl Dialer {
    pub async fn open(&self, address: SocketAddrV4) -> Result<Session, CheckError> {
        let connect = async {
            let tcp = TcpStream::connect(address).await?;
            tcp.set_nodelay(true)?;
            let stream: Box<dyn Stream> = match &self.tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::IpAddress((*address.ip()).into());
                    Box::new(tls.connect(name, tcp).await?)
                }
            };
            Ok::<_, CheckError>(stream)
        };
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| CheckError::Timeout(self.timeout))??;
        Ok(Session {
            stream,
            buffer: Vec::with_capacity(4096),
            decoder: resp::Decoder::new(resp::Limits::default()),
            timeout: self.timeout,
        })
    }
}

impl Session {
    /// Sends one command and reads its answer, within the timeout.
    pub async fn request(&mut self, arguments: &[&[u8]]) -> Result<Value, CheckError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.send(arguments).await?;
            self.next_value().await
        })
        .await
        .map_err(|_| CheckError::Timeout(timeout))?
    }

    /// Sends one command without waiting for its answer (a TLS stream holds bytes until flushed).
    pub async fn send(&mut self, arguments: &[&[u8]]) -> Result<(), CheckError> {
        self.stream.write_all(&resp::command(arguments)).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next value the peer sends (a pushed message when subscribed), waiting as long as it takes.
    pub async fn next_value(&mut self) -> Result<Value, CheckError> {
        loop {
            let (used, value) = self.decoder.decode(&self.buffer)?;
            self.buffer.drain(..used);
            if let Some(value) = value {
                return Ok(value);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(CheckError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Resolves when the peer closes the idle connection or sends something unasked (both end the session).
    async fn closed(&mut self) {
        let mut chunk = [0u8; 64];
        let _ = self.stream.read(&mut chunk).await;
    }
}

/// An answer read with `read`; Redis's own error text when it answered one, rather than "unexpected answer".
fn read_answer<T, E: ToString>(
    answer: Result<Value, CheckError>,
    read: impl FnOnce(&Value) -> Result<T, E>,
) -> Result<T, CheckError> {
    let value = answer?;
    read(&value).map_err(|e| error_answer(&value).unwrap_or(CheckError::Answer(e.to_string())))
}

fn error_answer(value: &Value) -> Option<CheckError> {
    match value {
        Value::Error(text) => Some(CheckError::Answer(text.clone())),
        _ => None,
    }
}

/// Asks Sentinel `index` for the master's address every interval, and at once whenever `wake` changes (another
/// Sentinel announced a switch).
pub async fn poll_sentinel(
    index: usize,
    address: SocketAddrV4,
    master_name: String,
    dialer: Dialer,
    evidence: mpsc::Sender<Evidence>,
    mut wake: watch::Receiver<u64>,
) {
    let mut session: Option<Session> = None;
    loop {
        let answer = ask(
            &mut session,
            &dialer,
            address,
            &[b"SENTINEL", b"get-master-addr-by-name", master_name.as_bytes()],
        )
        .await;
        let found = read_answer(answer, sentinel::master_address);
        let (address, error) = match found {
            Ok(address) => (address, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let answered = error.is_none();
        if evidence
            .send(Evidence::Named {
                sentinel: index,
                address,
                error,
            })
            .await
            .is_err()
        {
            return;
        }
        idle(&mut session, answered, dialer.interval, &mut wake).await;
    }
}

/// Asks `node` its role every interval, at once when `candidate` names it, and at once after its connection
/// closes (Sentinel killing clients of a node it reconfigures). A failure is reported only when a fresh connection
/// fails too, so one dropped connection does not erase what the node was.
pub async fn check_role(
    node: SocketAddrV4,
    dialer: Dialer,
    evidence: mpsc::Sender<Evidence>,
    mut candidate: watch::Receiver<Option<SocketAddrV4>>,
) {
    let mut session: Option<Session> = None;
    loop {
        let mut answer = ask(&mut session, &dialer, node, &[b"ROLE"]).await;
        if answer.is_err() {
            answer = ask(&mut session, &dialer, node, &[b"ROLE"]).await;
        }
        let found = read_answer(answer, sentinel::role);
        let (role, error) = match found {
            Ok(role) => (Some(role), None),
            Err(e) => (None, Some(e.to_string())),
        };
        // A node that answered and then closed the connection is re-asked at once (a reconfiguration); one that
        // refuses us (an error answer, then a close: protected mode, maxclients) waits its interval.
        let answered = role.is_some();
        if evidence.send(Evidence::Role { node, role, error }).await.is_err() {
            return;
        }
        let sleep = tokio::time::sleep(dialer.interval);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = closed(&mut session), if answered => break,
                changed = candidate.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *candidate.borrow_and_update() == Some(node) {
                        break;
                    }
                }
            }
        }
    }
}

/// Role checks for the candidate when the configuration does not list it (Sentinels only, or a node the
/// Sentinels know and the configuration does not): one [`check_role`] task for the current candidate, replaced
/// when the candidate changes.
pub async fn check_unlisted_candidate(
    listed: Vec<SocketAddrV4>,
    dialer: Dialer,
    evidence: mpsc::Sender<Evidence>,
    mut candidate: watch::Receiver<Option<SocketAddrV4>>,
) {
    let mut running: Option<(SocketAddrV4, tokio::task::JoinHandle<()>)> = None;
    loop {
        let wanted = (*candidate.borrow_and_update()).filter(|node| !listed.contains(node));
        if running.as_ref().map(|(node, _)| *node) != wanted {
            if let Some((_, task)) = running.take() {
                task.abort();
            }
            if let Some(node) = wanted {
                let task = tokio::spawn(check_role(node, dialer.clone(), evidence.clone(), candidate.clone()));
                running = Some((node, task));
            }
        }
        if candidate.changed().await.is_err() {
            break;
        }
    }
    if let Some((_, task)) = running {
        task.abort();
    }
}

/// Subscribes to Sentinel `index`'s `+switch-master` and failover start/end channels and passes each announcement
/// on (a switch also bumps `wake`, so every Sentinel is asked again at once). Reconnects after a check interval
/// when the connection fails.
pub async fn follow_switches(
    index: usize,
    address: SocketAddrV4,
    dialer: Dialer,
    evidence: mpsc::Sender<Evidence>,
    wake: watch::Sender<u64>,
) {
    loop {
        if let Ok(mut session) = dialer.open(address).await {
            let mut subscribe: Vec<&[u8]> = vec![b"SUBSCRIBE", b"+switch-master"];
            subscribe.extend(sentinel::FAILOVER_CHANNELS.iter().map(|c| c.as_bytes()));
            // One confirmation per channel: the first is the request's answer, the others arrive as values.
            if session.request(&subscribe).await.is_ok() {
                while let Some(message) = next_push(&mut session, &dialer).await {
                    let found = if let Some(switch) = sentinel::switch_master(&message) {
                        wake.send_modify(|n| *n += 1);
                        Evidence::Switched {
                            sentinel: index,
                            switch,
                        }
                    } else if let Some(progress) = sentinel::failover_progress(&message) {
                        Evidence::Failover {
                            sentinel: index,
                            progress,
                        }
                    } else {
                        continue;
                    };
                    if evidence.send(found).await.is_err() {
                        return;
                    }
                }
            }
        }
        if evidence.is_closed() {
            return;
        }
        tokio::time::sleep(dialer.interval).await;
    }
}

/// How long a subscription may stay silent before it is probed with PING (a half-open connection to a Sentinel
/// would otherwise hide its announcements for good).
const QUIET: Duration = Duration::from_secs(2);

/// The next message on a subscription; `None` when the connection failed or a PING went unanswered.
async fn next_push(session: &mut Session, dialer: &Dialer) -> Option<Value> {
    match tokio::time::timeout(QUIET, session.next_value()).await {
        Ok(message) => message.ok(),
        Err(_) => {
            session.send(&[b"PING"]).await.ok()?;
            // The answer (`pong`) or any message shows the connection is alive.
            tokio::time::timeout(dialer.timeout, session.next_value())
                .await
                .ok()?
                .ok()
        }
    }
}

/// One request on the kept session, opening it first if needed; any failure drops it.
async fn ask(
    session: &mut Option<Session>,
    dialer: &Dialer,
    address: SocketAddrV4,
    arguments: &[&[u8]],
) -> Result<Value, CheckError> {
    if session.is_none() {
        *session = Some(dialer.open(address).await?);
    }
    let open = session.as_mut().expect("opened above");
    let answer = open.request(arguments).await;
    if !matches!(answer, Ok(ref value) if error_answer(value).is_none()) {
        *session = None;
    }
    answer
}

/// Resolves when the kept session closes (and drops it); never, when there is none.
async fn closed(session: &mut Option<Session>) {
    match session {
        Some(open) => {
            open.closed().await;
            *session = None;
        }
        None => std::future::pending().await,
    }
}

/// Waits for the interval, a wake-up, or (after a good answer only, so a peer that refuses and hangs up is not
/// asked again at once) the kept session closing.
async fn idle(session: &mut Option<Session>, answered: bool, interval: Duration, wake: &mut watch::Receiver<u64>) {
    let woken = async {
        if wake.changed().await.is_err() {
            // Nobody left to wake us: only the interval counts.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = tokio::time::sleep(interval) => {}
        () = closed(session), if answered => {}
        () = woken => {}
    }
}
