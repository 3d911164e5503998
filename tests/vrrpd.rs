//! vrrpd as a production daemon in the seed's lab: a reader that stops reading its output never stalls the
//! protocol, and the keepalived features it now carries out show on the wire, on the hosts and in the FIFO.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use halab_tests::failover::Vrrp;
use halab_tests::vrrp::{bare_lab, capture_adverts, holds_address as holds, holds_vip, wait_vip, Agent, Daemon};

const MARGIN: Duration = Duration::from_secs(2);

/// A pipe of one page that is already full and that nobody will ever read: every write to it would block.
fn stalled_pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).unwrap();
    // SAFETY: F_SETPIPE_SZ on a pipe this test owns.
    let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert_eq!(size, 4096, "F_SETPIPE_SZ");
    let mut file = File::from(write.try_clone().unwrap());
    let page = [b'#'; 4096];
    assert_eq!(file.write(&page).unwrap(), 4096);
    assert!(file.write(b"#").is_err(), "the pipe is not full");
    // The daemon gets a blocking descriptor, as a shell pipeline would give it.
    let flags = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    (read, write)
}

#[derive(Clone, Copy, Debug)]
enum Stalled {
    /// `--events -` into the pipe.
    Events,
    /// `-l` console lines into the pipe.
    Console,
}

/// The master's output goes into a pipe nobody reads, from its first line: it still becomes master, keeps the VIP
/// for 30 s with the backup never taking it, and SIGTERM still releases it at once.
fn a_stalled_reader_never_stalls_the_master(stalled: Stalled, prefix: &str) {
    let (lab, dir) = bare_lab(prefix);
    let _h2 = Daemon::start(
        &lab,
        "haproxy2",
        Agent::Ours,
        "topologies/keepalived-haproxy2.conf",
        &dir,
    );
    let (unread, pipe) = stalled_pipe();
    let log = File::create(dir.join("haproxy1.log")).unwrap();
    let (extra, stdout, stderr): (&[&str], Stdio, Stdio) = match stalled {
        Stalled::Events => (
            &["-l", "-G", "-D", "--events", "-"],
            Stdio::from(pipe),
            Stdio::from(log),
        ),
        Stalled::Console => (&["-l", "-G", "-D"], Stdio::null(), Stdio::from(pipe)),
    };
    let mut h1 = Daemon::start_ours_with_output(
        &lab,
        "haproxy1",
        "topologies/keepalived-haproxy1.conf",
        extra,
        stdout,
        stderr,
    );
    wait_vip(&lab, "haproxy1", Vrrp::SEED.master_down(100) + MARGIN);
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(30) {
        assert!(
            !holds_vip(&lab, "haproxy2"),
            "{stalled:?}: haproxy2 took the VIP {:?} after haproxy1 did: the master stalled",
            held.elapsed()
        );
        assert!(holds_vip(&lab, "haproxy1"), "{stalled:?}: haproxy1 lost the VIP");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nobody read a byte: the pipe is as full as it was.
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    assert_eq!(
        unsafe { libc::ioctl(unread.as_raw_fd(), libc::FIONREAD, &mut queued) },
        0
    );
    assert_eq!(queued, 4096);

    h1.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    while holds_vip(&lab, "haproxy1") {
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "{stalled:?}: SIGTERM did not release the VIP"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // haproxy2 (priority 99) takes over Skew_Time after haproxy1's priority-0 advert.
    wait_vip(&lab, "haproxy2", Vrrp::SEED.skew(99) + MARGIN);
    // It gives its stuck output a second to drain, then exits all the same.
    let status = h1.wait_exit(Duration::from_secs(1) + MARGIN);
    assert!(status.is_some_and(|status| status.success()), "{stalled:?}: {status:?}");
    drop(unread);
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stalled_event_reader_never_stalls_the_master() {
    a_stalled_reader_never_stalls_the_master(Stalled::Events, "vsev");
}

#[test]
fn a_stalled_console_never_stalls_the_master() {
    a_stalled_reader_never_stalls_the_master(Stalled::Console, "vscn");
}

/// A multicast pair on group 224.0.0.19 with an excluded address, a sync group, and a notify FIFO on haproxy1.
fn multicast_config(dir: &std::path::Path, host: &str, priority: u8) -> String {
    let fifo = dir.join(format!("{host}.fifo"));
    let text = format!(
        "global_defs {{\n    vrrp_mcast_group4 224.0.0.19\n    vrrp_notify_fifo {fifo}\n}}\n\
         vrrp_sync_group G {{\n    group {{\n        Instance1\n    }}\n    notify_master \"/usr/bin/touch {flag}\"\n}}\n\
         vrrp_instance Instance1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 10\n    \
         priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        10.0.0.31\n    }}\n    \
         virtual_ipaddress_excluded {{\n        10.0.0.32\n    }}\n}}\n",
        fifo = fifo.display(),
        flag = dir.join(format!("{host}.group-master")).display(),
    );
    let path = dir.join(format!("{host}.conf"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn excluded_addresses_the_multicast_group_and_the_notify_fifo() {
    let (lab, dir) = bare_lab("vmcg");
    let _h2 = Daemon::start(
        &lab,
        "haproxy2",
        Agent::Ours,
        &multicast_config(&dir, "haproxy2", 99),
        &dir,
    );
    let h1 = Daemon::start(
        &lab,
        "haproxy1",
        Agent::Ours,
        &multicast_config(&dir, "haproxy1", 100),
        &dir,
    );
    wait_vip(&lab, "haproxy1", Vrrp::SEED.master_down(100) + MARGIN);
    // The excluded address goes on with the VIP, and nowhere else.
    assert!(holds(&lab, "haproxy1", "10.0.0.32"), "{}", h1.log());
    assert!(!holds(&lab, "haproxy2", "10.0.0.32"));

    // On the wire, from the client's side: to 224.0.0.19, announcing the VIP alone.
    let group = "224.0.0.19".parse().unwrap();
    let adverts = capture_adverts(&lab, "redisclient", group, Duration::from_millis(2500));
    let master: std::net::Ipv4Addr = "10.0.0.21".parse().unwrap();
    let from_master: Vec<_> = adverts.iter().filter(|a| a.from == master).collect();
    assert!(from_master.len() >= 2, "{adverts:?}");
    for advert in from_master {
        assert_eq!(advert.to, group, "{advert:?}");
        assert_eq!(
            advert.addresses,
            vec!["10.0.0.31".parse::<std::net::Ipv4Addr>().unwrap()]
        );
    }
    assert!(
        dir.join("haproxy1.group-master").exists(),
        "the group's notify_master did not run"
    );

    // The FIFO holds keepalived's lines, in order; the daemon opened it itself, so nothing was lost waiting.
    let fifo = dir.join("haproxy1.fifo");
    let mut reader = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    h1.stop();
    std::thread::sleep(Duration::from_millis(200));
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    assert_eq!(
        text,
        "INSTANCE \"Instance1\" BACKUP 100\nGROUP \"G\" BACKUP 0\nINSTANCE \"Instance1\" MASTER 100\n\
         GROUP \"G\" MASTER 0\nINSTANCE \"Instance1\" STOP 100\nGROUP \"G\" STOP 0\n"
    );
    assert!(!fifo.exists(), "the FIFO vrrpd made is still there");
    assert!(
        !holds(&lab, "haproxy1", "10.0.0.32"),
        "the excluded address outlived the daemon"
    );
    lab.down().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
