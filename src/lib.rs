//! Shared helpers for the end-to-end tests in `tests/`: unique lab names, and an inventory of everything a lab
//! can leave behind on the machine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lab::net::netlink::Netlink;
use lab::state::Identity;
use lab::Topology;

pub mod failover;
pub mod impair;
pub mod machines;
pub mod scenarios;
pub mod stack;
pub mod vrrp;

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
    use_workspace_binaries();
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Shows the machine's directory `dir` at its own path in every host (hosts have their own /tmp, so a test's
/// scratch directory there is the machine's alone otherwise): for files a test and its daemons both use.
pub fn show_in_hosts(topology: &mut Topology, dir: &Path) {
    for host in topology.hosts.iter_mut().filter(|h| !h.filesystem.shared) {
        host.filesystem.binds.push(lab::topology::Bind {
            source: dir.to_path_buf(),
            target: dir.to_path_buf(),
            read_only: false,
        });
    }
}

/// Puts the workspace's own programs (vrrpd, which topologies run as a service) first in PATH, from the target
/// directory this test was built in. `cargo test --workspace` builds them; a lone `cargo test --test X` may not.
pub fn use_workspace_binaries() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let bin_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>")
            .to_path_buf();
        assert!(
            bin_dir.join("vrrpd").exists(),
            "{} has no vrrpd: run `cargo build --workspace --bins` (scripts/test does)",
            bin_dir.display()
        );
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path))).unwrap();
        // Set once, before any lab of this process starts a program.
        std::env::set_var("PATH", joined);
    });
}

/// A program the workspace builds (`lab`, `vrrpd`), from the target directory this test was built in.
pub fn workspace_binary(name: &str) -> PathBuf {
    use_workspace_binaries();
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .join(name)
}

/// The seed's topology under a unique lab name.
pub fn seed_topology(prefix: &str) -> Topology {
    Topology::load(workspace_file("topologies/vlan.toml"))
        .unwrap()
        .renamed(&unique_name(prefix))
        .unwrap()
}

/// The seed's network with its VIP layer only (topologies/vlan-vrrp.toml: VRRP agents and a TCP listener on the
/// proxy hosts, no Redis), under a unique name.
pub fn vrrp_topology(prefix: &str) -> Topology {
    Topology::load(workspace_file("topologies/vlan-vrrp.toml"))
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

/// Everything of lab `name` still on the machine: namespace names, mounts, run and /etc/netns entries, and
/// processes living in the namespaces given.
pub fn leftovers(name: &str, namespaces: &[Identity]) -> Vec<String> {
    let prefix = format!("{name}-");
    let paths = lab::names::LabPaths::new(name).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(lab::names::NETNS_DIR).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(format!("namespace name {}", entry.path().display()));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let run_dir = format!("{}/", paths.run_dir().display());
    for line in mounts
        .lines()
        .filter(|l| l.contains(&format!("/run/netns/{prefix}")) || l.contains(&run_dir))
    {
        found.push(format!("mount {line}"));
    }
    if std::fs::symlink_metadata(paths.run_dir()).is_ok() {
        found.push(format!("run directory {}", paths.run_dir().display()));
    }
    for entry in std::fs::read_dir(lab::names::ETC_NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(format!("/etc/netns entry {}", entry.path().display()));
        }
    }
    for pid in lab::teardown::processes_in(namespaces) {
        found.push(format!("process {pid}"));
    }
    found
}

/// The namespaces of a lab that is up, to look for its processes after it is gone.
pub fn namespace_inodes(lab: &lab::Lab) -> Vec<Identity> {
    lab.namespace_identities()
}

/// Takes `lab` down and panics naming whatever of it is left on the machine.
pub fn down_and_check(lab: lab::Lab) {
    let name = lab.name().to_string();
    let inodes = namespace_inodes(&lab);
    lab.down().unwrap();
    let left = leftovers(&name, &inodes);
    assert!(left.is_empty(), "lab {name} left {left:?}");
}

/// Runs `tests` with libtest-mimic (libtest's command line: filters, `--list`, `--test-threads`), `threads` at once
/// unless `--test-threads` says otherwise. A panic fails its test with the panic's message.
pub fn run_tests(tests: &[(&'static str, fn())], threads: usize) -> ! {
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = arguments.test_threads.or(Some(threads));
    let trials = tests
        .iter()
        .map(|&(name, test)| libtest_mimic::Trial::test(name, move || as_trial(test)))
        .collect();
    libtest_mimic::run(&arguments, trials).exit()
}

/// Runs `test` as a libtest-mimic trial: a panic fails it with the panic's message.
pub fn as_trial(test: fn()) -> Result<(), libtest_mimic::Failed> {
    std::panic::catch_unwind(test).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        libtest_mimic::Failed::from(text)
    })
}
