//! Root safety of the `lab` binary (run as root): it refuses names that are not plain identifiers before touching
//! anything, never removes, enters or signals what it did not create, trusts a state file only when it is the
//! lab's own, keeps its control socket to root and serves silent clients without stalling, and still takes a lab
//! down when its supervisor is frozen.

mod common;
use common::{alive, assert_gone, flat_file, lab, lab_command, seed_file, supervisor_pid, text, unique, DownOnDrop};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::control::{Action, Client, Reply};
use lab::names::LabPaths;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn down_refuses_names_that_are_not_lab_names_and_touches_nothing() {
    // A directory with contents that `lab down` once deleted when named by its absolute path.
    let victim = std::env::temp_dir().join(unique("victim"));
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let victim = victim.display().to_string();
    // A topology file whose name would climb out of /run/lab.
    let climbing = std::env::temp_dir().join(format!("{}.toml", unique("climb")));
    std::fs::write(&climbing, "name = \"../../tmp\"\n").unwrap();
    let climbing = climbing.display().to_string();
    let too_long = "a".repeat(lab::names::LAB_NAME_MAX + 1);
    // What `lab down .` and `lab down ""` once wiped with the rest of /run/lab: another lab's run directory.
    let decoy = format!("/run/lab/{}", unique("decoy"));
    std::fs::create_dir_all(&decoy).unwrap();
    std::fs::write(format!("{decoy}/state.json"), "{}").unwrap();

    let mut messages = Vec::new();
    for argument in [
        victim.as_str(),
        "..",
        ".",
        "",
        "a/b",
        too_long.as_str(),
        climbing.as_str(),
    ] {
        let down = lab(&["down", argument]);
        assert_eq!(down.status.code(), Some(2), "lab down {argument:?}: {}", text(&down));
        let message = text(&down);
        assert_eq!(message.lines().count(), 1, "one sentence: {message}");
        messages.push(message.replace(&victim, "<tmpdir>").replace(&climbing, "<file>"));
    }
    insta::assert_snapshot!(messages.concat());
    assert_eq!(
        std::fs::read_to_string(format!("{victim}/precious")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_to_string(format!("{decoy}/state.json")).unwrap(), "{}");
    std::fs::remove_dir_all(&decoy).unwrap();
    for args in [
        vec!["status", ".."],
        vec!["exec", "..", "h", "--", "true"],
        vec!["fault", "/tmp", "h", "heal"],
    ] {
        let output = lab(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
    }
    std::fs::remove_dir_all(&victim).unwrap();
    std::fs::remove_file(&climbing).unwrap();
}

#[test]
fn a_run_directory_without_a_record_is_removed_only_when_empty() {
    let name = unique("norec");
    let dir = format!("/run/lab/{name}");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/something"), "not the lab's").unwrap();
    let down = lab(&["down", &name]);
    assert!(!down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("left alone"), "{}", text(&down));
    assert!(std::path::Path::new(&format!("{dir}/something")).exists());
    std::fs::remove_file(format!("{dir}/something")).unwrap();
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
}

/// A process living in a namespace made by `ip netns add`, for as long as the guard lives.
struct ForeignNamespace {
    name: String,
    sleeper: std::process::Child,
}

impl ForeignNamespace {
    fn new(name: &str) -> ForeignNamespace {
        let added = Command::new("ip").args(["netns", "add", name]).status().unwrap();
        assert!(added.success());
        let sleeper = Command::new("ip")
            .args(["netns", "exec", name, "sleep", "1000"])
            .spawn()
            .unwrap();
        let foreign = ForeignNamespace {
            name: name.to_string(),
            sleeper,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while foreign.sleeper_namespace() != foreign.namespace() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(foreign.sleeper_namespace(), foreign.namespace());
        foreign
    }

    fn namespace(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .ok()
            .map(|m| m.ino())
    }

    fn sleeper_namespace(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{}/ns/net", self.sleeper.id()))
            .ok()
            .map(|m| m.ino())
    }
}

impl Drop for ForeignNamespace {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[test]
fn a_namespace_the_lab_did_not_create_is_never_touched() {
    let name = unique("coll");
    let foreign = ForeignNamespace::new(&format!("{name}-haproxy1"));
    let before = foreign.namespace();
    let up = lab(&["up", "-d", "--name", &name, &seed_file()]);
    assert!(!up.status.success(), "{}", text(&up));
    let message = text(&up);
    assert!(
        message.contains(&format!(
            "namespace {name}-haproxy1 (/run/netns/{name}-haproxy1) already exists and was not made by this lab"
        )),
        "{message}"
    );
    assert_eq!(
        foreign.namespace(),
        before,
        "the foreign namespace is still there, the same one"
    );
    assert!(
        foreign.sleeper.id() > 0 && alive(foreign.sleeper.id() as i32),
        "its process was not signalled"
    );
    assert_eq!(foreign.sleeper_namespace(), before);
    // Nothing of the lab is left (the foreign namespace aside).
    assert!(std::fs::symlink_metadata(format!("/run/lab/{name}")).is_err());
    let others: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}-")) && *n != foreign.name)
        .collect();
    assert!(others.is_empty(), "{others:?}");
    // `lab down` of that name has nothing to do and leaves the foreign namespace alone too.
    let down = lab(&["down", &name]);
    assert!(
        !down.status.success() && text(&down).contains("no such lab"),
        "{}",
        text(&down)
    );
    assert_eq!(foreign.namespace(), before);
    drop(foreign);
    assert_gone(&name);
}

#[test]
fn an_etc_netns_directory_the_lab_did_not_create_is_never_touched() {
    let name = unique("etc");
    let foreign = format!("/etc/netns/{name}-h1");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(format!("{foreign}/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let file = flat_file(&name, 2);
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(!up.status.success(), "{}", text(&up));
    assert!(
        text(&up).contains(&format!("{foreign} already exists and was not made by this lab")),
        "{}",
        text(&up)
    );
    assert_eq!(
        std::fs::read_to_string(format!("{foreign}/resolv.conf")).unwrap(),
        "nameserver 192.0.2.1\n"
    );
    std::fs::remove_dir_all(&foreign).unwrap();
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

type Edit = fn(&mut serde_json::Value);

/// Rewrites one field of a lab's state file.
fn edit_state(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let path = format!("/run/lab/{name}/state.json");
    let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut edited = original.clone();
    edit(&mut edited);
    std::fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    original
}

fn restore_state(name: &str, original: &serde_json::Value) {
    std::fs::write(
        format!("/run/lab/{name}/state.json"),
        serde_json::to_vec_pretty(original).unwrap(),
    )
    .unwrap();
}

#[test]
fn down_refuses_a_state_file_that_names_what_is_not_the_labs() {
    let name = unique("edit");
    let file = flat_file(&name, 2);
    let mut with_service = std::fs::read_to_string(&file).unwrap();
    with_service.push_str("\n[[hosts.services]]\nname = \"sleeper\"\nargv = [\"sleep\", \"1000\"]\n");
    std::fs::write(&file, with_service).unwrap();
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    let edits: [(&str, Edit); 4] = [
        ("a namespace of another lab", |s| {
            s["namespaces"]["h1"]["netns"] = "other-h1".into();
        }),
        ("a foreign path", |s| {
            s["hosts"]["h2"]["services"][0]["log"] = "/etc/passwd".into();
        }),
        ("another lab's name", |s| {
            s["name"] = "other".into();
        }),
        ("another run directory", |s| {
            s["run_dir"]["ino"] = 1.into();
        }),
    ];
    for (what, edit) in edits {
        let original = edit_state(&name, edit);
        let down = lab(&["down", &name]);
        assert!(!down.status.success(), "{what}: {}", text(&down));
        assert!(
            text(&down).contains("does not act on a record it cannot trust"),
            "{what}: {}",
            text(&down)
        );
        // The lab is untouched: still up and answering.
        let exec = lab(&["exec", &name, "h1", "--", "true"]);
        assert!(!exec.status.success(), "{what}: exec does not trust it either");
        restore_state(&name, &original);
        let exec = lab(&["exec", &name, "h1", "--", "ping", "-c1", "-W2", "h2"]);
        assert!(exec.status.success(), "{what}: {}", text(&exec));
    }
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn the_control_socket_is_roots_and_silent_clients_block_nobody() {
    let name = unique("sock");
    let file = flat_file(&name, 2);
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    let socket = format!("/run/lab/{name}/control.sock");

    // An unprivileged user cannot even reach the socket.
    let nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "socat",
            "-u",
            "OPEN:/dev/null",
        ])
        .arg(format!("UNIX-CONNECT:{socket}"))
        .output()
        .unwrap();
    assert!(!nobody.status.success(), "{}", text(&nobody));
    assert!(text(&nobody).contains("Permission denied"), "{}", text(&nobody));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&format!("/run/lab/{name}")), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&format!("/run/lab/{name}/state.json")), 0o600);

    // Given a way in (the socket bound, world-writable, where anyone can reach it: /run/lab itself is left
    // alone, other tests use it), the server still refuses anyone but root (SO_PEERCRED).
    let reachable = std::env::temp_dir().join(format!("{name}.sock"));
    std::fs::write(&reachable, "").unwrap();
    let bound = Command::new("mount")
        .args(["--bind", &socket])
        .arg(&reachable)
        .status()
        .unwrap();
    assert!(bound.success());
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let request = format!("{{\"lab\":\"{name}\",\"instance\":\"00\",\"action\":{{\"request\":\"down\"}}}}");
    let mut nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "socat",
            "-t",
            "5",
            "-",
        ])
        .arg(format!("UNIX-CONNECT:{}", reachable.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(nobody.stdin.take().unwrap(), "{request}").unwrap();
    let answer = nobody.wait_with_output().unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Command::new("umount").arg(&reachable).status().unwrap().success());
    std::fs::remove_file(&reachable).unwrap();
    assert!(
        String::from_utf8_lossy(&answer.stdout).contains("uid 65534 may not control this lab"),
        "{}",
        text(&answer)
    );

    // Clients that connect and say nothing (a few of them) do not hold up anyone else.
    let silent: Vec<UnixStream> = (0..3).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    let timeline = lab(&["timeline", &name]);
    assert!(timeline.status.success(), "{}", text(&timeline));
    assert!(text(&timeline).contains("is up"), "{}", text(&timeline));
    let status = lab(&["status", &name]);
    assert!(status.status.success(), "{}", text(&status));
    // A request for another instance of the lab is refused, and changes nothing.
    let paths = LabPaths::new(&name).unwrap();
    let reply = Client::connect(&paths, "0123456789abcdef")
        .unwrap()
        .request(Action::Down, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        matches!(&reply, Reply::Error { message } if message.contains("instance")),
        "{reply:?}"
    );
    // Garbage is answered with an error, not a crash.
    let mut garbage = UnixStream::connect(&socket).unwrap();
    garbage.write_all(b"down\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&garbage).read_line(&mut answer).unwrap();
    assert!(answer.contains("malformed request"), "{answer}");
    // All of that was answered while the silent clients were still waiting (they get 5 s before they are told
    // off): nobody waited for them.
    for client in &silent {
        client.set_nonblocking(true).unwrap();
        let waiting = (&*client).read(&mut [0u8; 64]);
        assert!(
            matches!(&waiting, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{waiting:?}"
        );
    }
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("stopped by its supervisor"), "{}", text(&down));
    drop(silent);
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_frozen_supervisor_is_killed_by_down_and_never_touches_a_new_lab() {
    let name = unique("frz");
    let file = flat_file(&name, 2);
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    let old = supervisor_pid(&name);
    kill(Pid::from_raw(old), Signal::SIGSTOP).unwrap();
    let down = lab(&["down", "--timeout", "1", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        text(&down).contains("did not answer in time and was killed"),
        "{}",
        text(&down)
    );
    assert_gone(&name);
    assert!(!alive(old), "the old supervisor is gone for good");

    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    // (A live stale runner's own teardown leaving a new lab of the same name alone: tests/lab.rs.)
    let ping = lab(&["exec", &name, "h1", "--", "ping", "-c1", "-W2", "h2"]);
    assert!(ping.status.success(), "{}", text(&ping));
    let down = lab(&["down", &name]);
    assert!(text(&down).contains("stopped by its supervisor"), "{}", text(&down));
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn services_inherit_only_standard_descriptors() {
    let name = unique("fds");
    let file = flat_file(&name, 1);
    let mut topology = std::fs::read_to_string(&file).unwrap();
    // The shell lists its own descriptors (those of `$$`), then says so.
    topology.push_str(
        "\n[[hosts.services]]\nname = \"fds\"\nargv = [\"sh\", \"-c\", \"ls -l /proc/$$/fd; echo listed; exec sleep 1000\"]\nready = { log = \"listed\" }\n",
    );
    std::fs::write(&file, topology).unwrap();
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    let log = std::fs::read_to_string(format!("/run/lab/{name}/logs/h1.fds.log")).unwrap();
    let fds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    // The supervisor holds capture sockets (pnet opens them without O_CLOEXEC), netlink sockets, the control
    // socket: none of them may reach a service.
    assert_eq!(fds, ["0", "1", "2"], "{log}");
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn ctrl_c_during_bring_up_removes_what_was_built() {
    let name = unique("int");
    let file = flat_file(&name, 3);
    let mut topology = std::fs::read_to_string(&file).unwrap();
    topology.push_str(
        "\n[[hosts.services]]\nname = \"never\"\nargv = [\"sh\", \"-c\", \"echo waiting; exec sleep 1000\"]\nready = { log = \"ready at last\" }\nready_timeout = 600\n",
    );
    std::fs::write(&file, topology).unwrap();
    let mut runner = lab_command()
        .args(["up", &file.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the service has started (the build is done, the lab waits for readiness).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(format!("/run/lab/{name}/logs/h3.never.log")).is_ok_and(|l| l.contains("waiting")) {
        assert!(Instant::now() < deadline, "the service never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let interrupted = Instant::now();
    kill(Pid::from_raw(runner.id() as i32), Signal::SIGINT).unwrap();
    let status = runner.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut runner.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // It stopped waiting at once rather than at the readiness timeout.
    assert!(
        interrupted.elapsed() < Duration::from_secs(30),
        "{:?}",
        interrupted.elapsed()
    );
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn down_leaves_alone_what_appeared_under_the_labs_names_after_up() {
    let name = unique("late");
    let file = flat_file(&name, 2);
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let _guard = DownOnDrop(name.clone());
    // Someone replaces h1's /run/netns name with a namespace of their own, with a process in it...
    std::fs::remove_file(format!("/run/netns/{name}-h1")).unwrap();
    let foreign = ForeignNamespace::new(&format!("{name}-h1"));
    let before = foreign.namespace();
    // ...and plants, among the lab's namespace files, a link to it (a link to /proc/1/ns/net would be worse).
    std::os::unix::fs::symlink(format!("/run/netns/{name}-h1"), format!("/run/lab/{name}/netns/h2x")).unwrap();
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert_eq!(foreign.namespace(), before);
    assert!(
        alive(foreign.sleeper.id() as i32),
        "a process of a namespace the lab did not create was killed"
    );
    assert_eq!(foreign.sleeper_namespace(), before);
    assert!(std::fs::symlink_metadata(format!("/run/lab/{name}")).is_err());
    drop(foreign);
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}
