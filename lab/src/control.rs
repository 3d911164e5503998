//! The control socket of a running lab's supervisor, /run/lab/<lab>/control.sock: one request line, one reply.
//!
//! `status` returns the state as JSON; `down` tears the lab down and replies once everything is removed.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::state;

pub fn socket_path(lab: &str) -> PathBuf {
    state::run_dir(lab).join("control.sock")
}

/// A request from a client; `down` carries the connection to answer once the lab is gone.
pub enum Request {
    Down(UnixStream),
}

/// Listens for clients on a thread of its own. `status` is answered there from the state file; `down` is handed
/// to the supervisor through `requests`.
pub fn serve(lab: &str, requests: mpsc::Sender<Request>) -> io::Result<()> {
    let path = socket_path(lab);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let lab = lab.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            match line.trim() {
                "status" => {
                    let reply = state::LabState::load(&lab)
                        .map(|s| serde_json::to_string(&s).expect("serializable state"))
                        .unwrap_or_else(|e| format!("error: {e}"));
                    let _ = writeln!(stream, "{reply}");
                }
                "down" => {
                    if requests.send(Request::Down(stream)).is_err() {
                        return;
                    }
                }
                other => {
                    let _ = writeln!(stream, "error: unknown request `{other}` (expected status or down)");
                }
            }
        }
    });
    Ok(())
}

/// Asks the supervisor of `lab` to tear it down and waits for it to finish. `Ok(false)`: no supervisor answered.
pub fn request_down(lab: &str, timeout: Duration) -> io::Result<bool> {
    let Ok(mut stream) = UnixStream::connect(socket_path(lab)) else {
        return Ok(false);
    };
    stream.set_read_timeout(Some(timeout))?;
    writeln!(stream, "down")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    match reply.trim() {
        "ok" => Ok(true),
        "" => Ok(false),
        other => Err(io::Error::other(other.to_string())),
    }
}
