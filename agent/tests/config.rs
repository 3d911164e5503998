//! keepalived.conf: the seed's files unchanged, the rest of the grammar, keepalived's warnings, and errors that
//! point at the file, line and column.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::config::{self, Diagnostic, Options};
use agent::machine::{Authentication, InitialState};
use agent::wire::vrrp::password_bytes;
use agent::wire::Version;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Every diagnostic, one per line, with paths relative to the fixtures directory.
fn render(diagnostics: &[Diagnostic]) -> String {
    let root = format!("{}/", fixture("config").parent().unwrap().display());
    diagnostics
        .iter()
        .map(|d| d.to_string().replace(&root, "") + "\n")
        .collect()
}

/// The diagnostics for a configuration given as text (named keepalived.conf), whether it loads or not.
fn diagnostics(text: &str, strict: bool) -> String {
    match config::parse(text, Path::new("keepalived.conf"), Options { strict }) {
        Ok(loaded) => format!("loads, with:\n{}", render(&loaded.warnings)),
        Err(error) => format!("refused:\n{}", render(&error.diagnostics)),
    }
}

#[test]
fn the_seeds_haproxy1_file_parses_unchanged() {
    let loaded = config::load(&fixture("seed/keepalived-haproxy1.conf"), Options { strict: true }).unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let instance = &loaded.config.instances[0];
    assert_eq!(instance.name, "Instance1");
    assert_eq!(instance.initial_state, InitialState::Master);
    assert_eq!(instance.interface.as_deref(), Some("eth0"));
    assert_eq!((instance.vrid, instance.priority), (10, 100));
    assert_eq!(instance.advert_interval, Duration::from_secs(1));
    assert_eq!(instance.version, Version::V2);
    assert_eq!(
        instance.authentication,
        Authentication::Password(password_bytes("passWord"))
    );
    assert_eq!(instance.unicast_src_ip, Some(Ipv4Addr::new(10, 0, 0, 21)));
    assert_eq!(instance.unicast_peers.len(), 1);
    assert_eq!(instance.unicast_peers[0].address, Ipv4Addr::new(10, 0, 0, 23));
    assert_eq!(instance.virtual_addresses.len(), 1);
    assert_eq!(instance.virtual_addresses[0].address, Ipv4Addr::new(10, 0, 0, 31));
    assert_eq!(instance.virtual_addresses[0].prefix_len, 32);
    assert!(!instance.nopreempt);
    let settings = instance.settings(None).unwrap();
    assert_eq!(settings.source, Ipv4Addr::new(10, 0, 0, 21));
    assert_eq!(settings.peers, vec![Ipv4Addr::new(10, 0, 0, 23)]);
    assert_eq!(settings.addresses, vec![Ipv4Addr::new(10, 0, 0, 31)]);
    assert!(settings.preempt);
}

#[test]
fn the_seeds_haproxy2_file_parses_unchanged() {
    let loaded = config::load(&fixture("seed/keepalived-haproxy2.conf"), Options { strict: true }).unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let instance = &loaded.config.instances[0];
    assert_eq!(instance.initial_state, InitialState::Backup);
    assert_eq!((instance.vrid, instance.priority), (10, 99));
    assert_eq!(instance.unicast_src_ip, Some(Ipv4Addr::new(10, 0, 0, 23)));
}

#[test]
fn the_captured_keepalived_configurations_parse() {
    for name in [
        "v2-pass-unicast-haproxy1",
        "v3-multicast-haproxy1",
        "v3-unicast-haproxy2",
    ] {
        let path = fixture(&format!("keepalived/{name}.conf"));
        let loaded = config::load(&path, Options { strict: true }).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.config.instances.len(), 1, "{name}");
    }
}

#[test]
fn a_full_configuration_with_include_scripts_tracking_and_sync_group() {
    let loaded = config::load(&fixture("config/full.conf"), Options::default()).unwrap();
    // Everything in it is carried out (a sync group's own scripts included) except mail.
    assert_eq!(
        render(&loaded.warnings),
        "config/full.conf:4:5: warning: 'notification_email' is not carried out: vrrpd sends no e-mail; instead: a \
         notify script, or a notify_fifo reader, that sends the mail\n\
         config/full.conf:51:5: warning: 'smtp_alert' is not carried out: vrrpd sends no e-mail; instead: a notify \
         script, or a notify_fifo reader, that sends the mail\n"
    );
    let config = loaded.config;
    assert_eq!(config.global.router_id.as_deref(), Some("lab1"));
    assert_eq!(config.global.garp_master_repeat, 2);
    let script = config.script("chk_haproxy").unwrap();
    assert_eq!(script.command.line, "/bin/sh -c true");
    assert_eq!(
        (script.interval, script.timeout),
        (Duration::from_secs(2), Some(Duration::from_millis(1500)))
    );
    assert_eq!((script.weight, script.rise, script.fall), (-4, 2, 3));

    let vi1 = config.instance("VI_1").unwrap();
    assert_eq!(vi1.version, Version::V3);
    assert_eq!(vi1.advert_interval, Duration::from_millis(100));
    assert!(vi1.nopreempt && vi1.check_unicast_src);
    assert_eq!(vi1.virtual_addresses.len(), 3);
    let first = &vi1.virtual_addresses[0];
    assert_eq!(
        (first.prefix_len, first.dev.as_deref(), first.label.as_deref()),
        (24, Some("eth0"), Some("eth0:vip"))
    );
    assert!(vi1.virtual_addresses[2].no_track);
    assert_eq!(
        vi1.virtual_addresses[2].broadcast,
        Some(Ipv4Addr::new(192, 168, 1, 255))
    );
    assert_eq!(vi1.virtual_addresses_excluded.len(), 1);
    assert_eq!(
        vi1.track_interfaces
            .iter()
            .map(|t| (t.name.as_str(), t.weight))
            .collect::<Vec<_>>(),
        vec![("eth0", None), ("eth1", Some(-10))]
    );
    assert_eq!(vi1.track_scripts[0].name, "chk_haproxy");
    let master = vi1.notify.master.as_ref().unwrap();
    assert_eq!(master.line, "/bin/true VI_1");
    assert_eq!(master.user.as_ref().unwrap().user, "root");
    assert_eq!(vi1.notify.any.as_ref().unwrap().line, "/bin/true notify");
    assert_eq!(vi1.garp.master_repeat, 2);
    assert_eq!(vi1.garp.master_delay, Some(Duration::from_secs(10)));
    assert_eq!(vi1.garp.master_refresh, Some(Duration::from_secs(60)));

    let vi2 = config.instance("VI_2").unwrap();
    assert_eq!(vi2.priority, 90);
    assert_eq!(vi2.preempt_delay, Duration::from_secs(30));
    assert_eq!(vi2.garp.master_delay, None);
    assert_eq!(vi2.unicast_src_ip, Some(Ipv4Addr::new(10, 1, 1, 2)));
    assert_eq!(vi2.unicast_peers.len(), 2);
    assert_eq!(
        (vi2.unicast_peers[0].min_ttl, vi2.unicast_peers[0].max_ttl),
        (Some(250), Some(255))
    );

    assert_eq!(config.sync_groups[0].members, vec!["VI_1", "VI_2"]);
    assert!(config.sync_groups[0].notify.fault.is_some());
}

#[test]
fn include_loops_are_stopped_with_the_location() {
    let error = config::load(&fixture("config/loop.conf"), Options::default()).unwrap_err();
    insta::assert_snapshot!(render(&error.diagnostics));
}

#[test]
fn a_missing_file_is_named() {
    let error = config::load(Path::new("/nonexistent/keepalived.conf"), Options::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("error: cannot read /nonexistent/keepalived.conf"),
        "{error}"
    );
}

const SEED_LIKE: &str = "vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 10
    priority 99
    virtual_ipaddress {
        10.0.0.31
    }
";

fn with(extra: &str) -> String {
    format!("{SEED_LIKE}{extra}}}\n")
}

#[test]
fn comments_quotes_and_braces_on_the_next_line() {
    let text = "global_defs   # trailing comment\n{\n  router_id \"a b\" ! another\n}\n".to_string() + &with("");
    let loaded = config::parse(&text, Path::new("k.conf"), Options { strict: true }).unwrap();
    assert_eq!(loaded.config.global.router_id.as_deref(), Some("a b"));
}

#[test]
fn unknown_keywords_warn_with_their_line_and_strict_refuses_them() {
    let text = with("    foo_bar 1\n") + "bar_baz {\n  x\n}\n";
    insta::assert_snapshot!(diagnostics(&text, false) + &diagnostics(&text, true));
}

#[test]
fn keepalived_configuration_warnings_are_kept() {
    let text = "vrrp_instance A {
    state MASTER
    interface eth0
    virtual_router_id 1
    priority 100
    nopreempt
    preempt_delay 10
    advert_int 1.5
    authentication {
        auth_type PASS
        auth_pass longer_than_eight
    }
    virtual_ipaddress {
        10.0.0.1
    }
}
vrrp_instance B {
    state FOO
    interface eth0
    version 3
    virtual_router_id 2
    advert_int 0.015
    authentication {
        auth_type PASS
        auth_pass x
    }
    virtual_ipaddress {
        10.0.0.2
    }
}
";
    insta::assert_snapshot!(diagnostics(text, false));
}

#[test]
fn bad_values_are_errors_pointing_at_the_value() {
    let text = "vrrp_instance A {
    interface eth0
    virtual_router_id 0
    priority 300
    advert_int fast
    unicast_src_ip 10.0.0.300
    unicast_peer {
        fe80::1
    }
    virtual_ipaddress {
        10.0.0.1/33
        10.0.0.2 dev
        10.0.0.3 colour blue
    }
    track_script {
        chk weight 500
    }
}
vrrp_instance B {
    interface eth0
    priority 50
    virtual_ipaddress {
        10.0.0.4
    }
}
vrrp_script chk {
    interval 2
}
";
    insta::assert_snapshot!(diagnostics(text, false));
}

#[test]
fn structural_errors() {
    let text =
        "vrrp_instance A {\n  virtual_router_id 1\n  interface eth0\n  virtual_ipaddress {\n  10.0.0.1\n}\n}\n}\n\
                vrrp_instance {\n}\nvrrp_script s {\n  script \"unterminated\n}\n{\nvrrp_instance C {\n";
    insta::assert_snapshot!(diagnostics(text, false));
}

#[test]
fn duplicate_instances_and_router_ids_are_refused() {
    let text = with("")
        + &with("").replace("VI_1", "VI_2")
        + &with("").replace("virtual_router_id 10", "virtual_router_id 11");
    insta::assert_snapshot!(diagnostics(&text, false));
}

#[test]
fn missing_priority_follows_the_state_and_v3_uses_the_global_version() {
    let text = "global_defs {\n vrrp_version 3\n}\n".to_string()
        + &with("")
            .replace("    priority 99\n", "")
            .replace("state BACKUP", "state MASTER");
    let loaded = config::parse(&text, Path::new("k.conf"), Options::default()).unwrap();
    let instance = &loaded.config.instances[0];
    assert_eq!(instance.priority, 255);
    assert_eq!(instance.version, Version::V3);
}

#[test]
fn settings_need_a_source_address() {
    let loaded = config::parse(&with(""), Path::new("k.conf"), Options::default()).unwrap();
    let instance = &loaded.config.instances[0];
    assert!(instance.settings(None).unwrap_err().contains("no source address"));
    let source = Ipv4Addr::new(10, 0, 0, 5);
    assert_eq!(instance.settings(Some(source)).unwrap().source, source);
}

/// A script in a directory anyone may write: whoever can write there can replace what root runs.
#[test]
fn script_security_disables_scripts_others_could_replace_and_says_so_otherwise() {
    let dir = std::env::temp_dir().join(format!("script-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = dir.join("check.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = |security: &str| {
        format!(
            "global_defs {{\n{security}    script_user root\n}}\nvrrp_script chk {{\n    script \"{script} now\"\n}}\n\
             vrrp_instance A {{\n    interface eth0\n    virtual_router_id 1\n    virtual_ipaddress {{\n        10.0.0.1\n    }}\n    \
             track_script {{\n        chk\n    }}\n    notify_master {script}\n    notify_backup /bin/true\n}}\n",
            script = script.display()
        )
    };
    let rendered = |loaded: &config::Loaded| render(&loaded.warnings).replace(&dir.display().to_string(), "DIR");

    let enforced = config::parse(
        &text("    enable_script_security\n"),
        Path::new("keepalived.conf"),
        Options::default(),
    )
    .unwrap();
    assert_eq!(
        rendered(&enforced),
        "keepalived.conf:6:12: warning: Unsafe permissions found for script 'DIR/check.sh now' - disabling\n\
         keepalived.conf:15:9: warning: Disabling track script chk due to insecure\n\
         keepalived.conf:17:19: warning: Unsafe permissions found for script 'DIR/check.sh' - disabling\n"
    );
    let instance = &enforced.config.instances[0];
    assert!(enforced.config.scripts.is_empty() && instance.track_scripts.is_empty());
    assert!(
        instance.notify.master.is_none(),
        "the unsafe notify script is still there"
    );
    assert!(instance.notify.backup.is_some(), "a safe one went too");

    let allowed = config::parse(&text(""), Path::new("keepalived.conf"), Options::default()).unwrap();
    assert_eq!(
        rendered(&allowed),
        "warning: SECURITY VIOLATION - scripts are being executed but script_security not enabled. There are insecure scripts\n\
         keepalived.conf:5:12: warning: Unsafe permissions found for script 'DIR/check.sh now'\n\
         keepalived.conf:16:19: warning: Unsafe permissions found for script 'DIR/check.sh'\n"
    );
    assert!(allowed.config.instances[0].notify.master.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
