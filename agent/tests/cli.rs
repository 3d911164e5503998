//! vrrpd's command line: keepalived's options mean what they mean in keepalived, and those vrrpd cannot honour are
//! refused or, where ignoring them is safe, accepted with a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn vrrpd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vrrpd")).args(args).output().unwrap()
}

fn seed() -> String {
    fixture("seed/keepalived-haproxy1.conf").display().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn options_that_would_change_what_the_daemon_does_are_refused() {
    for (args, why) in [
        (vec!["-C"], "-C/--check runs only keepalived's health checkers"),
        (vec!["--check"], "-C/--check runs only keepalived's health checkers"),
        (vec!["-V"], "-V/--dont-release-vrrp would keep the VIPs after exit"),
        (
            vec!["-s", "blue"],
            "-s/--namespace is not supported: start vrrpd inside the namespace",
        ),
        (vec!["-i", "edge"], "-i/--config-id is not supported"),
        (vec!["-g", "/tmp/vrrpd.log"], "-g/--log-file is not supported"),
        (vec!["--config-test=/tmp/check.log"], "-t=LOG_FILE is not supported"),
    ] {
        let seed = seed();
        let mut all = vec!["-f", seed.as_str()];
        all.extend(&args);
        if !args[0].starts_with("--config-test") {
            all.push("-t");
        }
        let output = vrrpd(&all);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(stderr(&output).contains(why), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn options_safe_to_ignore_are_accepted_with_a_warning() {
    let seed = seed();
    let output = vrrpd(&[
        "-t",
        "-f",
        &seed,
        "-n",
        "-P",
        "-B",
        "-R",
        "-I",
        "-x",
        "-m",
        "-d",
        "-c",
        "/run/c.pid",
        "-S",
        "3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    for flag in [
        "-I/--dont-release-ipvs",
        "-x/--snmp",
        "-m/--core-dump",
        "-d/--dump-conf",
        "-c/--checkers_pid",
    ] {
        assert!(
            text.contains(&format!("vrrpd: warning: {flag} has no effect in vrrpd; ignored")),
            "{flag}: {text}"
        );
    }
    // What vrrpd does anyway (-n, -P, -B, -R) and what it carries out (-S) say nothing.
    assert_eq!(text.lines().count(), 5, "{text}");
    let output = vrrpd(&["-t", "-f", &seed, "-S", "8"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a facility beyond LOG_LOCAL7: {}",
        stderr(&output)
    );
}

#[test]
fn signum_names_the_signals_vrrpd_answers() {
    for (function, number) in [
        ("STOP", libc::SIGTERM),
        ("RELOAD", libc::SIGHUP),
        ("DATA", libc::SIGUSR1),
        ("STATS", libc::SIGUSR2),
    ] {
        let output = vrrpd(&["--signum", function]);
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{number}\n"));
    }
    assert_eq!(vrrpd(&["--signum", "JSON"]).status.code(), Some(1));
}

#[test]
fn an_events_path_that_is_a_symlink_is_not_followed() {
    let dir = std::env::temp_dir().join(format!("vrrpd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("precious");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.join("events.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let output = vrrpd(&["-f", &seed(), "-l", "--events", &link.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("a symlink: vrrpd does not follow one here"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    std::fs::remove_dir_all(&dir).unwrap();
}
