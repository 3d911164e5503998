//! The `lab` binary (run as root): detached labs, recovery after the runner is SIGKILLed, exec, status, and the
//! refusal to run without privileges.

mod common;
use common::{assert_gone, flat_file, lab, lab_command, seed_file, supervisor_pid, text, unique};

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn detached_lab_exec_status_and_down() {
    let name = unique("det");
    let up = lab(&["up", "-d", "--name", &name, &seed_file()]);
    assert!(up.status.success(), "{}", text(&up));

    let exec = lab(&["exec", &name, "redisclient", "--", "sh", "-c", "hostname; exit 7"]);
    assert_eq!(exec.status.code(), Some(7), "exec passes the exit code through");
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "redisclient");

    let status = lab(&["status", &name, "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let hosts = json[0]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 7);
    let haproxy1 = hosts.iter().find(|h| h["host"] == "haproxy1").unwrap();
    assert_eq!(haproxy1["interfaces"][0]["address"], "10.0.0.21/24");
    assert_eq!(haproxy1["interfaces"][0]["up"], true);
    assert_eq!(json[0]["runner_alive"], true);

    let listed = lab(&["ls"]);
    assert!(text(&listed).contains(&name));

    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("stopped by its supervisor"), "{}", text(&down));
    assert_gone(&name);
}

#[test]
fn down_recovers_a_lab_whose_supervisor_was_killed() {
    let name = unique("kil");
    let up = lab(&["up", "-d", "--name", &name, &seed_file()]);
    assert!(up.status.success(), "{}", text(&up));
    // Something running in a host, which must not survive `lab down`.
    let sleeper = lab(&[
        "exec",
        &name,
        "haproxy1",
        "--",
        "sh",
        "-c",
        "sleep 1000 >/dev/null 2>&1 & echo $!",
    ]);
    let sleeper_pid: i32 = String::from_utf8_lossy(&sleeper.stdout).trim().parse().unwrap();
    let supervisor = supervisor_pid(&name);
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    while std::path::Path::new(&format!("/proc/{supervisor}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{supervisor}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        std::thread::sleep(Duration::from_millis(5));
    }

    let status = lab(&["status", &name]);
    assert!(text(&status).contains("runner gone"), "{}", text(&status));
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(text(&down).contains("recovered"), "{}", text(&down));
    assert_gone(&name);
    assert!(
        !std::fs::read_to_string(format!("/proc/{sleeper_pid}/stat")).is_ok_and(|s| !s.contains(") Z")),
        "a process of the lab survived"
    );
}

#[test]
fn down_recovers_a_lab_whose_runner_was_killed_while_building() {
    // Big enough that the kill lands in the middle of the build.
    let name = unique("mid");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, lab::topology::flat_topology_toml(&name, 300)).unwrap();
    let namespaces_made = |name: &str| std::fs::read_dir(format!("/run/lab/{name}/netns")).map_or(0, |d| d.count());
    // Killed just after its run directory exists, with some namespaces made, with all of them made.
    for wanted in [0, 1, 301] {
        let mut runner = lab_command()
            .args(["up", &file.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while namespaces_made(&name) < wanted && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            namespaces_made(&name) >= wanted,
            "the build never made {wanted} namespaces"
        );
        runner.kill().unwrap();
        runner.wait().unwrap();
        let down = lab(&["down", &name]);
        // Killed before it recorded anything, there is no lab to take down; otherwise, down must succeed.
        assert!(
            down.status.success() || text(&down).contains("no such lab"),
            "{}",
            text(&down)
        );
        assert_gone(&name);
    }
    std::fs::remove_file(file).unwrap();
}

#[test]
fn down_accepts_the_topology_file() {
    let name = unique("file");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, lab::topology::flat_topology_toml(&name, 3)).unwrap();
    let up = lab(&["up", "-d", &file.display().to_string()]);
    assert!(up.status.success(), "{}", text(&up));
    let down = lab(&["down", &file.display().to_string()]);
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn without_root_lab_says_so_and_exits_2() {
    for args in [
        vec!["up", "-d", &seed_file()[..]],
        vec!["down", "vlan"],
        vec!["exec", "vlan", "redisclient", "--", "true"],
    ] {
        let output = lab_command().args(&args).uid(65534).gid(65534).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        let message = text(&output);
        assert_eq!(message.lines().count(), 1, "one sentence: {message}");
        assert!(message.contains("must run as root"), "{message}");
    }
}

#[test]
fn invalid_topology_is_refused_before_anything_exists() {
    let name = unique("inv");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&file, format!("name = \"{name}\"\n[[hosts]]\nname = \"a\"\ninterfaces = [{{ segment = \"nope\", address = \"10.0.0.1\" }}]\n")).unwrap();
    let up = lab(&["up", &file.display().to_string()]);
    assert_eq!(up.status.code(), Some(1));
    assert!(
        text(&up).contains(":4:27: hosts[0].interfaces[0].segment: unknown segment `nope`"),
        "{}",
        text(&up)
    );
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn foreground_lab_prints_events_and_ctrl_c_tears_it_down() {
    use std::io::{BufRead, BufReader};
    let name = unique("fg");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "{}\n[[hosts.services]]\nname = \"hello\"\nargv = [\"sh\", \"-c\", \"echo hello from $(hostname); exec sleep 1000\"]\nready = {{ log = \"hello from\" }}\n",
            lab::topology::flat_topology_toml(&name, 2)
        ),
    )
    .unwrap();
    let mut runner = lab_command()
        .args(["up", &file.display().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let up = line.contains(&format!("lab {name} is up"));
        seen.push(line);
        if up {
            break;
        }
    }
    assert!(seen.iter().any(|l| l == "h2/hello | hello from h2"), "{seen:?}");
    kill(Pid::from_raw(runner.id() as i32), Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(runner.wait().unwrap().success());
    assert!(rest.iter().any(|l| l == "h2/hello: killed by SIGTERM"), "{rest:?}");
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn vlan_tagged_segment_works_or_is_refused_plainly() {
    let name = unique("tag");
    let file = std::env::temp_dir().join(format!("{name}.toml"));
    let topology = lab::topology::flat_topology_toml(&name, 2)
        .replace("subnet = \"10.0.0.0/16\"", "subnet = \"10.0.0.0/16\"\nvlan = 10");
    std::fs::write(&file, topology).unwrap();
    let up = lab(&["up", "-d", &file.display().to_string()]);
    if up.status.success() {
        // The kernel has bridge vlan filtering: the tagged segment must carry traffic like any other.
        let ping = lab(&["exec", &name, "h1", "--", "ping", "-c", "1", "-W", "2", "10.0.0.2"]);
        assert!(ping.status.success(), "{}", text(&ping));
        assert!(lab(&["down", &name]).status.success());
    } else {
        let message = text(&up);
        assert!(
            message.contains("asks for 802.1Q tagging, but this kernel has no bridge vlan filtering"),
            "{message}"
        );
    }
    assert_gone(&name);
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_topology_by_name_from_its_directory_and_the_artifacts_it_leaves() {
    let name = unique("art");
    let file = flat_file(&name, 2);
    let dir = file.parent().unwrap().to_path_buf();
    let artifacts = dir.join(format!("artifacts-{name}"));
    let by_name = format!("{name}.toml");
    let listed = lab_command().arg("topologies").current_dir(&dir).output().unwrap();
    assert!(text(&listed).contains(&by_name), "{}", text(&listed));
    let up = lab_command()
        .args(["up", "-d", &name])
        .current_dir(&dir)
        .env("LAB_ARTIFACTS", &artifacts)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up));
    // `lab down` takes the file's name too, found the same way.
    let down = lab_command()
        .args(["down", &by_name])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
    let timeline = std::fs::read_to_string(artifacts.join(&name).join("timeline.txt")).unwrap();
    assert!(timeline.contains(&format!("lab {name} is up")), "{timeline}");
    assert!(artifacts.join(&name).join("timeline.jsonl").is_file());
    std::fs::remove_dir_all(&artifacts).unwrap();
    std::fs::remove_file(&file).unwrap();
}

/// A built `lab` (not installed, not in PATH, PATH holding only the system's directories) runs vlan.toml: vrrpd
/// and sentinel-proxy are found next to it.
#[test]
fn a_built_lab_finds_vrrpd_and_sentinel_proxy_beside_itself() {
    let name = unique("bes");
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["up", "-d", "--name", &name, &seed_file()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let status = lab(&["status", &name, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let haproxy1 = json[0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "haproxy1")
        .cloned()
        .unwrap();
    let services = haproxy1["services"].to_string();
    assert!(services.contains("vrrpd") && services.contains("proxy"), "{services}");
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", text(&down));
    assert_gone(&name);
}
