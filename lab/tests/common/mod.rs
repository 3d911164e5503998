//! Helpers shared by the lab crate's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A lab name no other test (in this or another test process) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The lab binary, with the workspace's programs (vrrpd, which vlan.toml runs) first in its PATH.
pub fn lab_command() -> Command {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_lab"));
    let bin_dir = binary.parent().unwrap().to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let joined = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path))).unwrap();
    let mut command = Command::new(binary);
    command.env("PATH", joined);
    command
}

pub fn lab(args: &[&str]) -> Output {
    lab_command().args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn seed_file() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies/vlan.toml")
        .display()
        .to_string()
}

/// A flat topology of `hosts` hosts named `name`, written to a temporary file.
pub fn flat_file(name: &str, hosts: usize) -> PathBuf {
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, lab::topology::flat_topology_toml(name, hosts)).unwrap();
    file
}

/// Nothing of the lab remains: no namespace name or mount, no run directory, no /etc/netns entry.
pub fn assert_gone(name: &str) {
    let prefix = format!("{name}-");
    let namespaces: Vec<_> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("/run/netns/{prefix}")), "mounts left");
    assert!(
        !mounts.contains(&format!("/run/lab/{name}/")),
        "mounts left in the run directory"
    );
    assert!(
        std::fs::symlink_metadata(format!("/run/lab/{name}")).is_err(),
        "run directory left"
    );
    assert!(!std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&prefix)));
}

pub fn supervisor_pid(name: &str) -> i32 {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("/run/lab/{name}/state.json")).unwrap()).unwrap();
    state["runner_pid"].as_i64().unwrap() as i32
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

/// Takes the lab down when dropped, so a failing test leaves no lab behind (the test asserts its own `down`).
pub struct DownOnDrop(pub String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if std::path::Path::new(&format!("/run/lab/{}", self.0)).exists() {
            let _ = lab(&["down", "--timeout", "5", &self.0]);
        }
    }
}
