//! keepalived keywords vrrpd reads but does not carry out, each with what a keepalived user loses and, where there
//! is one, what to use instead. Every one is a warning at its position (an error with `--strict`): a configuration
//! never loses a section in silence. Keywords in none of these tables and not handled by the builder are unknown.

/// One keyword vrrpd does not act on.
pub(super) struct Gap {
    pub keyword: &'static str,
    /// What does not happen, in a phrase that follows "vrrpd ".
    pub lost: &'static str,
    pub instead: Option<&'static str>,
}

const fn gap(keyword: &'static str, lost: &'static str, instead: Option<&'static str>) -> Gap {
    Gap { keyword, lost, instead }
}

const CHECKERS: &str = "run keepalived -C (its health checkers only) next to vrrpd";
const NETWORK_CONFIG: &str = "configure it in the machine's own network configuration";
const TRACK_WITH_SCRIPT: &str = "a vrrp_script that tests it, in track_script";
const NOTIFY_FOR_MAIL: &str = "a notify script, or a notify_fifo reader, that sends the mail";
const SERVICE_MANAGER: &str = "set it in the service manager (systemd: Nice=, CPUSchedulingPolicy=, CPUAffinity=)";
const METRICS: &str = "vrrpd --metrics (Prometheus) and --events";

/// Top-level blocks and keywords.
pub(super) const TOP_LEVEL: &[Gap] = &[
    gap(
        "virtual_server",
        "does no IPVS load balancing or real-server health checks",
        Some(CHECKERS),
    ),
    gap("virtual_server_group", "does no IPVS load balancing", Some(CHECKERS)),
    gap("SSL", "has no SSL_GET checker", Some(CHECKERS)),
    gap(
        "static_ipaddress",
        "does not install static addresses",
        Some(NETWORK_CONFIG),
    ),
    gap("static_routes", "does not install static routes", Some(NETWORK_CONFIG)),
    gap(
        "static_rules",
        "does not install static policy rules",
        Some(NETWORK_CONFIG),
    ),
    gap("track_group", "does not track static addresses, routes or rules", None),
    gap("track_file", "does not track files", Some(TRACK_WITH_SCRIPT)),
    gap("vrrp_track_file", "does not track files", Some(TRACK_WITH_SCRIPT)),
    gap(
        "vrrp_track_process",
        "does not watch processes",
        Some("a vrrp_script running `pgrep -x NAME`, in track_script"),
    ),
    gap(
        "bfd_instance",
        "has no BFD",
        Some("a vrrp_script that checks the peer, in track_script"),
    ),
    gap(
        "garp_group",
        "sends gratuitous ARPs without per-interface rate limits",
        None,
    ),
    gap(
        "linkbeat_interfaces",
        "does not poll links (it follows them through netlink)",
        None,
    ),
    gap(
        "linkbeat_use_polling",
        "does not poll links (it follows them through netlink)",
        None,
    ),
    gap(
        "interface_up_down_delays",
        "acts on link changes at once, without delays",
        None,
    ),
    gap(
        "net_namespace",
        "does not change network namespace",
        Some("start vrrpd inside it (ip netns exec NAME vrrpd ...)"),
    ),
    gap("net_namespace_ipvs", "has no IPVS", Some(CHECKERS)),
    gap("namespace_with_ipsets", "uses no ipsets", None),
    gap(
        "instance",
        "does not name its files after an instance",
        Some("give -p and --dump-file"),
    ),
    gap(
        "use_pid_dir",
        "does not put pid files under /run/keepalived",
        Some("give -p"),
    ),
    gap("child_wait_time", "has no child processes", None),
    gap(
        "includer",
        "does not read this form of include: the files are left out",
        Some("include"),
    ),
    gap(
        "includem",
        "does not read this form of include: the files are left out",
        Some("include"),
    ),
    gap(
        "includew",
        "does not read this form of include: the files are left out",
        Some("include"),
    ),
    gap(
        "includeb",
        "does not read this form of include: the files are left out",
        Some("include"),
    ),
    gap(
        "includea",
        "does not read this form of include: the files are left out",
        Some("include"),
    ),
];

/// `global_defs` keywords.
pub(super) const GLOBAL: &[Gap] = &[
    gap("vrrp_mcast_group6", "has no IPv6 VRRP", None),
    gap("vrrp_gna_interval", "has no IPv6 VRRP", None),
    gap(
        "vrrp_garp_interval",
        "sends each burst of gratuitous ARPs back to back, without this gap",
        None,
    ),
    gap(
        "vrrp_garp_extra_if",
        "sends no periodic gratuitous ARPs on other interfaces",
        None,
    ),
    gap(
        "vrrp_vmac_garp_intvl",
        "sends no periodic gratuitous ARPs on other interfaces",
        None,
    ),
    gap(
        "vrrp_iptables",
        "installs no firewall rules (no_accept is not enforced)",
        None,
    ),
    gap(
        "vrrp_ipsets",
        "installs no firewall rules (no_accept is not enforced)",
        None,
    ),
    gap(
        "nftables",
        "installs no firewall rules (no_accept is not enforced)",
        None,
    ),
    gap("nftables_priority", "installs no firewall rules", None),
    gap("nftables_ifindex", "installs no firewall rules", None),
    gap("nftables_counters", "installs no firewall rules", None),
    gap(
        "disable_local_igmp",
        "leaves the kernel's IGMP reports as they are",
        Some("sysctl net.ipv4.igmp_link_local_mcast_reports=0"),
    ),
    gap("vmac_prefix", "creates no VMAC interfaces", None),
    gap("vmac_addr_prefix", "creates no VMAC interfaces", None),
    gap(
        "vrrp_rx_bufs_policy",
        "leaves socket receive buffers at the kernel's size",
        None,
    ),
    gap(
        "vrrp_rx_bufs_multiplier",
        "leaves socket receive buffers at the kernel's size",
        None,
    ),
    gap(
        "vrrp_netlink_cmd_rcv_bufs",
        "leaves netlink buffers at the kernel's size",
        None,
    ),
    gap(
        "vrrp_netlink_cmd_rcv_bufs_force",
        "leaves netlink buffers at the kernel's size",
        None,
    ),
    gap(
        "vrrp_netlink_monitor_rcv_bufs",
        "leaves netlink buffers at the kernel's size",
        None,
    ),
    gap(
        "vrrp_netlink_monitor_rcv_bufs_force",
        "leaves netlink buffers at the kernel's size",
        None,
    ),
    gap("process_monitor_rcv_bufs", "does not watch processes", None),
    gap("process_monitor_rcv_bufs_force", "does not watch processes", None),
    gap(
        "log_unknown_vrids",
        "does not log adverts for unknown VRIDs",
        Some("--events (discards are events)"),
    ),
    gap(
        "vrrp_notify_priority_changes",
        "writes no *_PRIORITY lines to the notify FIFO",
        None,
    ),
    gap(
        "fifo_write_vrrp_states_on_reload",
        "does not write states again to the notify FIFO on reload",
        None,
    ),
    gap("lvs_sync_daemon", "runs no IPVS connection sync daemon", None),
    gap(
        "default_interface",
        "puts addresses without `dev` on the instance's interface",
        None,
    ),
    gap(
        "dynamic_interfaces",
        "needs every interface to exist when it starts",
        None,
    ),
    gap("notification_email", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("notification_email_from", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_server", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_helo_name", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_connect_timeout", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_alert", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_alert_vrrp", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("smtp_alert_checker", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap("no_email_faults", "sends no e-mail", None),
    gap("enable_snmp_vrrp", "has no SNMP", Some(METRICS)),
    gap("enable_snmp_keepalived", "has no SNMP", Some(METRICS)),
    gap("enable_snmp_checker", "has no SNMP", Some(METRICS)),
    gap("enable_snmp_rfc", "has no SNMP", Some(METRICS)),
    gap("enable_snmp_rfcv2", "has no SNMP", Some(METRICS)),
    gap("enable_snmp_rfcv3", "has no SNMP", Some(METRICS)),
    gap("enable_traps", "has no SNMP", Some(METRICS)),
    gap("snmp_socket", "has no SNMP", Some(METRICS)),
    gap("enable_dbus", "has no D-Bus interface", Some(METRICS)),
    gap("dbus_service_name", "has no D-Bus interface", Some(METRICS)),
    gap("checker_log_all_failures", "has no health checkers", Some(CHECKERS)),
    gap("no_checker_emails", "has no health checkers", Some(CHECKERS)),
    gap("rs_init_notifies", "has no health checkers", Some(CHECKERS)),
    gap("lvs_timeouts", "has no IPVS", Some(CHECKERS)),
    gap("lvs_flush", "has no IPVS", Some(CHECKERS)),
    gap("lvs_flush_on_stop", "has no IPVS", Some(CHECKERS)),
    gap("lvs_flush_onstop", "has no IPVS", Some(CHECKERS)),
    gap("lvs_notify_fifo", "has no IPVS", Some(CHECKERS)),
    gap("lvs_notify_fifo_script", "has no IPVS", Some(CHECKERS)),
    gap("lvs_netlink_cmd_rcv_bufs", "has no IPVS", None),
    gap("lvs_netlink_cmd_rcv_bufs_force", "has no IPVS", None),
    gap("lvs_netlink_monitor_rcv_bufs", "has no IPVS", None),
    gap("lvs_netlink_monitor_rcv_bufs_force", "has no IPVS", None),
    gap("nftables_ipvs", "has no IPVS", None),
    gap("nftables_ipvs_priority", "has no IPVS", None),
    gap("nftables_ipvs_start_fwmark", "has no IPVS", None),
    gap("process_names", "does not rename its process", None),
    gap("process_name", "does not rename its process", None),
    gap("vrrp_process_name", "does not rename its process", None),
    gap("checker_process_name", "has no checker process", None),
    gap("lvs_process_name", "has no checker process", None),
    gap("bfd_process_name", "has no BFD process", None),
    gap(
        "max_auto_priority",
        "does not raise its scheduling priority",
        Some(SERVICE_MANAGER),
    ),
    gap(
        "min_auto_priority_delay",
        "does not raise its scheduling priority",
        Some(SERVICE_MANAGER),
    ),
    gap("vrrp_priority", "does not change its nice value", Some(SERVICE_MANAGER)),
    gap(
        "vrrp_rt_priority",
        "does not use real-time scheduling",
        Some(SERVICE_MANAGER),
    ),
    gap(
        "vrrp_cpu_affinity",
        "does not set its CPU affinity",
        Some(SERVICE_MANAGER),
    ),
    gap(
        "vrrp_no_swap",
        "does not lock its memory",
        Some("systemd: LimitMEMLOCK= with a wrapper, or enough memory"),
    ),
    gap(
        "vrrp_rlimit_rttime",
        "does not use real-time scheduling",
        Some(SERVICE_MANAGER),
    ),
    gap(
        "vrrp_rlimit_rtime",
        "does not use real-time scheduling",
        Some(SERVICE_MANAGER),
    ),
    gap("checker_priority", "has no checker process", None),
    gap("checker_rt_priority", "has no checker process", None),
    gap("checker_cpu_affinity", "has no checker process", None),
    gap("checker_no_swap", "has no checker process", None),
    gap("checker_rlimit_rttime", "has no checker process", None),
    gap("checker_rlimit_rtime", "has no checker process", None),
    gap("bfd_priority", "has no BFD process", None),
    gap("bfd_rt_priority", "has no BFD process", None),
    gap("bfd_cpu_affinity", "has no BFD process", None),
    gap("bfd_no_swap", "has no BFD process", None),
    gap("bfd_rlimit_rttime", "has no BFD process", None),
    gap("bfd_rlimit_rtime", "has no BFD process", None),
    gap(
        "startup_script",
        "runs no startup script",
        Some("ExecStartPre= in the service unit"),
    ),
    gap("startup_script_timeout", "runs no startup script", None),
    gap(
        "shutdown_script",
        "runs no shutdown script",
        Some("ExecStopPost= in the service unit"),
    ),
    gap("shutdown_script_timeout", "runs no shutdown script", None),
    gap(
        "umask",
        "does not take its umask from the configuration",
        Some("-u/--umask"),
    ),
    gap("random_seed", "has no configuration variables", None),
    gap(
        "reload_time_file",
        "schedules no reloads",
        Some("send SIGHUP, from a timer if need be"),
    ),
    gap(
        "reload_repeat",
        "schedules no reloads",
        Some("send SIGHUP, from a timer if need be"),
    ),
    gap("reload_file", "writes no reload marker file", None),
    gap(
        "include_check",
        "warns about an include that matches nothing and refuses one it cannot read, whatever this says",
        None,
    ),
    gap("config_save_dir", "saves no configuration copies", None),
    gap("tmp_config_directory", "keeps no merged configuration copy", None),
    gap(
        "data_use_instance",
        "does not name its files after an instance",
        Some("--dump-file"),
    ),
];

/// `vrrp_instance` keywords.
pub(super) const INSTANCE: &[Gap] = &[
    gap(
        "use_vmac",
        "creates no VMAC interface: adverts and gratuitous ARPs use the interface's own MAC",
        None,
    ),
    gap(
        "use_vmac_addr",
        "creates no VMAC interfaces: adverts and gratuitous ARPs use the interface's own MAC",
        None,
    ),
    gap(
        "vmac_xmit_base",
        "creates no VMAC interface: adverts and gratuitous ARPs use the interface's own MAC",
        None,
    ),
    gap(
        "use_ipvlan",
        "creates no ipvlan interface: adverts and gratuitous ARPs use the interface's own MAC",
        None,
    ),
    gap("vrf", "does not bind to a VRF", None),
    gap("native_ipv6", "has no IPv6 VRRP", None),
    gap(
        "dont_track_primary",
        "still puts the instance in FAULT when its own interface goes down",
        None,
    ),
    gap("track_file", "does not track files", Some(TRACK_WITH_SCRIPT)),
    gap(
        "track_process",
        "does not watch processes",
        Some("a vrrp_script running `pgrep -x NAME`, in track_script"),
    ),
    gap(
        "track_bfd",
        "has no BFD",
        Some("a vrrp_script that checks the peer, in track_script"),
    ),
    gap(
        "track_src_ip",
        "does not put the instance in FAULT when its source address goes",
        None,
    ),
    gap(
        "unicast_fault_no_peer",
        "does not put a unicast instance without peers in FAULT",
        None,
    ),
    gap("unicast_ttl", "sends unicast adverts with TTL 255", None),
    gap("old_unicast_checksum", "sends only the RFC's unicast checksum", None),
    gap(
        "promote_secondaries",
        "leaves promote_secondaries as it is",
        Some("sysctl net.ipv4.conf.IFACE.promote_secondaries=1"),
    ),
    gap(
        "virtual_routes",
        "adds no routes while master",
        Some("notify_master and notify_backup scripts that add and remove them"),
    ),
    gap(
        "virtual_rules",
        "adds no policy rules while master",
        Some("notify_master and notify_backup scripts that add and remove them"),
    ),
    gap(
        "no_accept",
        "installs no firewall rule: the VIPs accept traffic in every state",
        None,
    ),
    gap(
        "strict_mode",
        "applies RFC strict mode only from global_defs",
        Some("vrrp_strict in global_defs"),
    ),
    gap("debug", "has no per-instance debug output", Some("-D")),
    gap(
        "notify_deleted",
        "reports an instance removed by a reload as STOP",
        None,
    ),
    gap(
        "notify_priority_changes",
        "writes no *_PRIORITY lines to the notify FIFO",
        None,
    ),
    gap("smtp_alert", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap(
        "garp_extra_if",
        "sends no periodic gratuitous ARPs on other interfaces",
        None,
    ),
    gap(
        "vmac_garp_intvl",
        "sends no periodic gratuitous ARPs on other interfaces",
        None,
    ),
    gap(
        "kernel_rx_buf_size",
        "leaves the socket's receive buffer at the kernel's size",
        None,
    ),
    gap(
        "linkbeat_use_polling",
        "does not poll links (it follows them through netlink)",
        None,
    ),
    gap("lvs_sync_daemon_interface", "runs no IPVS connection sync daemon", None),
];

/// `vrrp_sync_group` keywords.
pub(super) const SYNC_GROUP: &[Gap] = &[
    gap(
        "track_interface",
        "does not track interfaces for a whole group",
        Some("track_interface in each member"),
    ),
    gap(
        "track_script",
        "does not track scripts for a whole group",
        Some("track_script in each member"),
    ),
    gap("track_file", "does not track files", Some(TRACK_WITH_SCRIPT)),
    gap(
        "track_process",
        "does not watch processes",
        Some("a vrrp_script running `pgrep -x NAME`, in track_script"),
    ),
    gap(
        "track_bfd",
        "has no BFD",
        Some("a vrrp_script that checks the peer, in track_script"),
    ),
    gap("smtp_alert", "sends no e-mail", Some(NOTIFY_FOR_MAIL)),
    gap(
        "notify_priority_changes",
        "writes no *_PRIORITY lines to the notify FIFO",
        None,
    ),
];

pub(super) fn find(table: &'static [Gap], keyword: &str) -> Option<&'static Gap> {
    table.iter().find(|gap| gap.keyword == keyword)
}

impl Gap {
    pub fn message(&self) -> String {
        let mut message = format!("'{}' is not carried out: vrrpd {}", self.keyword, self.lost);
        if let Some(instead) = self.instead {
            message.push_str(&format!("; instead: {instead}"));
        }
        message
    }
}
