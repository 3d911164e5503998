//! Shared helpers for the end-to-end tests in `tests/`: unique lab names, and an inventory of everything a lab
//! can leave behind on the machine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lab::net::{netlink::Netlink, netns};
use lab::Topology;

/// A lab name no other test (in this or another test process) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The seed's topology under a unique lab name.
pub fn seed_topology(prefix: &str) -> Topology {
    Topology::load(workspace_file("topologies/vlan.toml"))
        .unwrap()
        .renamed(&unique_name(prefix))
        .unwrap()
}

/// The links of the namespace this test runs in (the machine's own), as (index, name).
pub fn root_links() -> Vec<(u32, String)> {
    let mut links: Vec<(u32, String)> = Netlink::open()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|m| {
            let name = m.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            (m.header.index, name.unwrap_or_default())
        })
        .collect();
    links.sort();
    links
}

/// Everything of lab `name` still on the machine: namespace files, mounts, run and /etc/netns directories, and
/// processes living in the namespaces whose inodes are given.
pub fn leftovers(name: &str, namespace_inodes: &[u64]) -> Vec<String> {
    let prefix = format!("{name}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(netns::NETNS_DIR).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(format!("namespace file {}", entry.path().display()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts
        .lines()
        .filter(|l| l.contains(&format!("/run/netns/{prefix}")) || l.contains(&format!("/netns/{prefix}")))
    {
        found.push(format!("mount {line}"));
    }
    if lab::state::run_dir(name).exists() {
        found.push(format!("run directory {}", lab::state::run_dir(name).display()));
    }
    for entry in std::fs::read_dir("/etc/netns").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(format!("hosts directory {}", entry.path().display()));
        }
    }
    for pid in lab::state::processes_in(namespace_inodes) {
        found.push(format!("process {pid}"));
    }
    found
}

/// The namespace inodes of a lab that is up, to look for its processes after it is gone.
pub fn namespace_inodes(lab: &lab::Lab) -> Vec<u64> {
    lab.state()
        .namespaces
        .iter()
        .filter_map(|ns| netns::identity(ns))
        .map(|(_, inode)| inode)
        .collect()
}
