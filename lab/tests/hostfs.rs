//! Hosts as machines (run as root): each host's own /run, /tmp, /etc and /var, the files a topology places, what a
//! reboot keeps, and services that exit while the lab starts or restart on failure.

mod common;
use common::unique;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab::{EventKind, Fault, Lab, Topology};

/// A lab from topology text (its `name` given by the test) in a directory of its own, with `extra` files beside it.
fn lab_topology(name: &str, hosts: &str, extra: &[(&str, &str)]) -> (Topology, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{name}.d"));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in extra {
        std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }
    let text = format!(
        "name = \"{name}\"\n[[segments]]\nname = \"lan\"\nsubnet = \"10.9.0.0/24\"\n[names]\nvip = \"10.9.0.100\"\n{hosts}"
    );
    let path = dir.join("lab.toml");
    std::fs::write(&path, text).unwrap();
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (topology, dir)
}

/// Host `a` at 10.9.0.1 with `more` (its services) after it.
fn host_a_with(more: &str) -> String {
    format!("[[hosts]]\nname = \"a\"\ninterfaces = [{{ segment = \"lan\", address = \"10.9.0.1\" }}]\n{more}")
}

const TWO_HOSTS: &str = r#"
[[hosts]]
name = "a"
interfaces = [{ segment = "lan", address = "10.9.0.1" }]
[[hosts]]
name = "b"
interfaces = [{ segment = "lan", address = "10.9.0.2" }]
"#;

fn sh(lab: &Lab, host: &str, script: &str) -> String {
    let out = lab.exec(host, &["sh", "-c", script]).unwrap();
    assert!(
        out.status.success(),
        "{host}: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_host_writes_only_its_own_directories_and_nothing_remains() {
    let name = unique("fsown");
    let (topology, dir) = lab_topology(&name, TWO_HOSTS, &[]);
    let lab = Lab::up(&topology).unwrap();
    let marker = format!("marker-{name}");
    let places = [
        "/run",
        "/tmp",
        "/var/tmp",
        "/var/lib",
        "/var/log",
        "/var/cache",
        "/var/spool",
        "/etc",
    ];
    let write: Vec<String> = places.iter().map(|p| format!("echo a > {p}/{marker}")).collect();
    sh(&lab, "a", &write.join("; "));
    for place in places {
        let path = format!("{place}/{marker}");
        assert_eq!(sh(&lab, "a", &format!("cat {path}")), "a\n");
        assert_eq!(
            sh(&lab, "b", &format!("test -e {path} && echo seen || echo unseen")),
            "unseen\n",
            "b sees a's {path}"
        );
        assert!(!Path::new(&path).exists(), "the machine has a's {path}");
    }
    // b has its own files at the same paths.
    sh(&lab, "b", &format!("echo b > /run/{marker}"));
    assert_eq!(sh(&lab, "a", &format!("cat /run/{marker}")), "a\n");
    // Neither sees the other's files through the lab's run directory, which both see (for {run} and {tls}).
    let run_dir = lab.paths().run_dir();
    assert_eq!(
        sh(&lab, "a", &format!("ls -A {}/hosts", run_dir.display())),
        "",
        "a sees the hosts' files"
    );
    // The machine's own programs and home directories stay shared.
    assert!(sh(&lab, "a", "test -x /usr/bin/env && echo ok").contains("ok"));
    lab.down().unwrap();
    for place in places {
        assert!(!Path::new(&format!("{place}/{marker}")).exists());
    }
    assert!(!run_dir.exists(), "{} is left", run_dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&name), "mounts left:\n{mounts}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_from_the_topology_have_their_content_placeholders_mode_and_owner() {
    let name = unique("fsfile");
    let hosts = r#"
[[hosts]]
name = "a"
hostname = "alpha"
interfaces = [{ segment = "lan", address = "10.9.0.1" }, { name = "eth1", segment = "lan", address = "10.9.0.11/24" }]
[[hosts.files]]
path = "/etc/demo/app.conf"
source = "app.conf"
mode = 0o640
owner = "nobody:nogroup"
[[hosts.files]]
path = "/var/lib/demo/raw"
text = "{host} stays as written\n"
template = false
mode = "0600"
[[hosts.files]]
path = "/etc/hosts"
text = "127.0.0.1 localhost\n{ip:b} the-b\n"
[[hosts]]
name = "b"
interfaces = [{ segment = "lan", address = "10.9.0.2" }]
"#;
    let conf = "host {host} ({hostname}) at {address}, eth1 {address:eth1}/{prefix:eth1}\npeer {ip:b} vip {ip:vip}\n\
                server { listen 80; } ${KEEP}\n";
    let (topology, dir) = lab_topology(&name, hosts, &[("app.conf", conf)]);
    let lab = Lab::up(&topology).unwrap();
    assert_eq!(
        sh(&lab, "a", "cat /etc/demo/app.conf"),
        "host a (alpha) at 10.9.0.1, eth1 10.9.0.11/24\npeer 10.9.0.2 vip 10.9.0.100\nserver { listen 80; } ${KEEP}\n"
    );
    assert_eq!(
        sh(&lab, "a", "stat -c '%a %U %G' /etc/demo/app.conf"),
        "640 nobody nogroup\n"
    );
    assert_eq!(
        sh(&lab, "a", "cat /var/lib/demo/raw; stat -c %a /var/lib/demo/raw"),
        "{host} stays as written\n600\n"
    );
    // The host's own /etc/hosts and /etc/hostname; b keeps the lab's /etc/hosts.
    assert_eq!(sh(&lab, "a", "getent hosts the-b"), "10.9.0.2        the-b\n");
    assert_eq!(sh(&lab, "a", "cat /etc/hostname; hostname"), "alpha\nalpha\n");
    assert!(sh(&lab, "b", "cat /etc/hosts").contains("10.9.0.1\talpha a"));
    assert_eq!(
        sh(&lab, "b", "test -e /etc/demo && echo seen || echo unseen"),
        "unseen\n"
    );
    lab.down().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reboot_empties_run_and_tmp_and_keeps_etc_and_var() {
    let name = unique("fsboot");
    let (topology, dir) = lab_topology(&name, TWO_HOSTS, &[]);
    let mut lab = Lab::up(&topology).unwrap();
    sh(
        &lab,
        "a",
        "for d in /run /tmp /etc /var/lib /var/tmp; do echo before > $d/marker; done",
    );
    lab.fault("a", &Fault::Reboot { pause: Duration::ZERO }).unwrap();
    let check = "for d in /run /tmp /etc /var/lib /var/tmp; do if [ -e $d/marker ]; then echo $d kept; \
                 else echo $d gone; fi; done; stat -c %a /tmp";
    assert_eq!(
        sh(&lab, "a", check),
        "/run gone\n/tmp gone\n/etc kept\n/var/lib kept\n/var/tmp kept\n1777\n"
    );
    lab.down().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_service_that_exits_while_the_lab_starts_fails_it_with_its_log() {
    for (ready, why) in [
        ("", "exited while the lab was starting (exit code 3"),
        ("ready = { tcp = 9999 }\n", "exited before it was ready: exit code 3"),
    ] {
        let name = unique("fsexit");
        let hosts = format!(
            r#"
[[hosts]]
name = "a"
interfaces = [{{ segment = "lan", address = "10.9.0.1" }}]
[[hosts.services]]
name = "daemon"
argv = ["sh", "-c", "echo starting; echo 'daemon is already running' >&2; exit 3"]
{ready}"#
        );
        let (topology, dir) = lab_topology(&name, &hosts, &[]);
        let error = Lab::up(&topology).err().expect("the lab came up").to_string();
        assert!(error.contains(&format!("service a/daemon {why}")), "{error}");
        // Its output and its errors, in whichever order their pipes delivered them.
        assert!(error.contains("the last 2 lines of its log:\n    "), "{error}");
        assert!(
            error.contains("\n    starting") && error.contains("\n    daemon is already running"),
            "{error}"
        );
        assert!(!Path::new(&format!("/run/lab/{name}")).exists(), "{name} was left up");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn restart_on_failure_starts_a_service_again_up_to_its_limit() {
    let name = unique("fsrest");
    // Fails twice (counting its runs in its host's /var/lib), then stays up.
    let hosts = host_a_with(
        r#"[[hosts.services]]
name = "flaky"
argv = ["sh", "-c", "n=$(cat /var/lib/runs 2>/dev/null || echo 0); echo $((n+1)) > /var/lib/runs; [ $n -ge 2 ] || exit 1; exec sleep 1000"]
restart = "on-failure"
restart_limit = 3
"#,
    );
    let (topology, dir) = lab_topology(&name, &hosts, &[]);
    let mut lab = Lab::up(&topology).unwrap();
    let restarts = |lab: &Lab| -> Vec<u32> {
        lab.timeline()
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ServiceRestarted { restart, limit: 3, .. } => Some(*restart),
                _ => None,
            })
            .collect()
    };
    assert_eq!(restarts(&lab), [1, 2]);
    assert_eq!(sh(&lab, "a", "cat /var/lib/runs"), "3\n");
    let service = lab.service("a", "flaky").unwrap();
    assert_eq!(service.exit_status(), None);
    // A crash is a failure too; a stop is not.
    lab.fault("a", &Fault::Crash { service: None }).unwrap();
    let restarted = lab.events().wait_for(Duration::from_secs(2), |e| {
        matches!(&e.kind, EventKind::ServiceRestarted { restart: 3, .. })
    });
    assert!(restarted.is_some(), "{}", lab.timeline().text());
    lab.fault("a", &Fault::Stop { service: None }).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.service("a", "flaky").unwrap().exit_status().is_some());
    assert_eq!(restarts(&lab), [1, 2, 3]);
    lab.down().unwrap();
    std::fs::remove_dir_all(dir).unwrap();

    // Past its limit, a service that keeps failing fails the lab's start.
    let name = unique("fsrest");
    let hosts = host_a_with(
        r#"[[hosts.services]]
name = "broken"
argv = ["sh", "-c", "echo broken; exit 1"]
restart = "on-failure"
restart_limit = 2
"#,
    );
    let (topology, dir) = lab_topology(&name, &hosts, &[]);
    let error = Lab::up(&topology).err().expect("the lab came up").to_string();
    assert!(
        error.contains("service a/broken exited while the lab was starting (exit code 1"),
        "{error}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_readiness_check_looks_in_the_hosts_own_run() {
    let name = unique("fsready");
    let hosts = host_a_with(
        r#"[[hosts.services]]
name = "daemon"
argv = ["sh", "-c", "sleep 0.2; echo $$ > /run/daemon.pid; exec sleep 1000"]
ready = { file = "/run/daemon.pid" }
"#,
    );
    let (topology, dir) = lab_topology(&name, &hosts, &[]);
    let lab = Lab::up(&topology).unwrap();
    let pid = lab.service("a", "daemon").unwrap().pid();
    assert_eq!(sh(&lab, "a", "cat /run/daemon.pid"), format!("{pid}\n"));
    assert!(!Path::new("/run/daemon.pid").exists());
    lab.down().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn private_directories_and_binds_are_the_topologys() {
    let name = unique("fsbind");
    let hosts = host_a_with(
        r#"filesystem = { private = ["/srv", "/etc/app"], binds = [{ source = "www", target = "/var/www/html", read_only = true }, { source = "data", target = "/opt" }] }
[[hosts]]
name = "b"
interfaces = [{ segment = "lan", address = "10.9.0.2" }]
"#,
    );
    let extra = [("www/index.html", "from the machine\n"), ("data/.keep", "")];
    let (topology, dir) = lab_topology(&name, &hosts, &extra);
    let lab = Lab::up(&topology).unwrap();
    // A read-only bind: readable, not writable, even by root.
    assert_eq!(sh(&lab, "a", "cat /var/www/html/index.html"), "from the machine\n");
    assert_eq!(
        sh(
            &lab,
            "a",
            "echo x > /var/www/html/new 2>/dev/null && echo wrote || echo refused"
        ),
        "refused\n"
    );
    // A writable bind writes the machine's directory.
    sh(&lab, "a", "echo a > /opt/out");
    assert_eq!(std::fs::read_to_string(dir.join("data/out")).unwrap(), "a\n");
    // Private directories start empty, are a's own, and /srv hides the machine's.
    sh(&lab, "a", "echo a > /srv/mine; echo a > /etc/app/mine");
    assert_eq!(
        sh(
            &lab,
            "b",
            "ls -A /etc/app 2>/dev/null; test -e /srv/mine && echo seen || echo unseen"
        ),
        "unseen\n"
    );
    assert!(!Path::new("/srv/mine").exists());
    lab.down().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
