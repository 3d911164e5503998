//! vrrpd's command line: keepalived's options mean here what they mean in keepalived; those vrrpd does not carry
//! out are accepted with a warning where ignoring them is safe, refused otherwise. One definition, read by the
//! binary and by the generator of completions and manual pages.

use std::path::PathBuf;

use clap::Parser;

use crate::daemon::LogTo;

#[derive(Parser, Debug)]
#[command(
    name = "vrrpd",
    disable_version_flag = true,
    version,
    about = "VRRP (RFC 3768/5798/9568) agent reading keepalived.conf"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(short = 'f', long = "use-file", default_value = "/etc/keepalived/keepalived.conf")]
    pub file: PathBuf,
    /// Check the configuration and exit: 0 if it can be used. keepalived's optional log file is not supported.
    #[arg(short = 't', long = "config-test", value_name = "LOG_FILE", num_args = 0..=1, require_equals = true)]
    pub config_test: Option<Option<PathBuf>>,
    /// Unknown keywords and unsupported features in the configuration are errors.
    #[arg(long)]
    pub strict: bool,

    /// Also log to the console (stderr), with keepalived's date prefix.
    #[arg(short = 'l', long = "log-console")]
    pub log_console: bool,
    /// Also log the lines keepalived prints only with -D.
    #[arg(short = 'D', long = "log-detail")]
    pub log_detail: bool,
    /// Syslog facility LOG_LOCAL0..7 instead of LOG_DAEMON.
    #[arg(short = 'S', long = "log-facility", value_name = "0-7", value_parser = clap::value_parser!(u8).range(0..=7))]
    pub log_facility: Option<u8>,
    /// Do not log to syslog.
    #[arg(short = 'G', long = "no-syslog")]
    pub no_syslog: bool,
    /// Write the process id here; a second vrrpd given the same file refuses to start.
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// keepalived's VRRP child pid file: vrrpd is one process, so the same id goes here too.
    #[arg(short = 'r', long = "vrrp_pid", value_name = "FILE")]
    pub vrrp_pid_file: Option<PathBuf>,
    /// File mode creation mask, as an octal number.
    #[arg(short = 'u', long = "umask", value_name = "MASK", value_parser = octal)]
    pub umask: Option<u32>,
    /// Print the number of the signal that asks for STOP, RELOAD, DATA or STATS, and exit.
    #[arg(long = "signum", value_name = "SIGFUNC")]
    pub signum: Option<String>,

    /// Stay in the foreground (vrrpd always does).
    #[arg(short = 'n', long = "dont-fork")]
    pub dont_fork: bool,
    /// Run only VRRP (all vrrpd does).
    #[arg(short = 'P', long = "vrrp")]
    pub vrrp: bool,
    /// Do not run BFD (vrrpd has none).
    #[arg(short = 'B', long = "no_bfd")]
    pub no_bfd: bool,
    /// Do not respawn children (vrrpd has none).
    #[arg(short = 'R', long = "dont-respawn")]
    pub dont_respawn: bool,
    /// Write every log line at once (vrrpd always does).
    #[arg(long = "flush-log-file")]
    pub flush_log_file: bool,

    /// keepalived: run only the health checkers. Refused: vrrpd has no checkers.
    #[arg(short = 'C', long = "check")]
    pub check: bool,
    /// keepalived: keep the VIPs when the daemon stops. Refused: vrrpd always releases them.
    #[arg(short = 'V', long = "dont-release-vrrp")]
    pub dont_release_vrrp: bool,
    /// keepalived: release the VIPs on a reload's transition. Refused.
    #[arg(short = 'X', long = "release-vips")]
    pub release_vips: bool,
    /// keepalived: run in this network namespace. Refused: start vrrpd inside it (`ip netns exec`).
    #[arg(short = 's', long = "namespace", value_name = "NAME")]
    pub namespace: Option<String>,
    /// keepalived: the configuration id that `@id` lines select. Refused: vrrpd does not read `@id` lines.
    #[arg(short = 'i', long = "config-id", value_name = "ID")]
    pub config_id: Option<String>,
    /// keepalived: write a log file. Refused: use -l and redirect stderr.
    #[arg(short = 'g', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// keepalived: keep IPVS rules at exit. Ignored with a warning (vrrpd has no IPVS).
    #[arg(short = 'I', long = "dont-release-ipvs")]
    pub dont_release_ipvs: bool,
    /// keepalived: run every subsystem. Ignored with a warning (vrrpd has only VRRP).
    #[arg(long = "all")]
    pub all: bool,
    /// keepalived: dump the configuration. Ignored with a warning.
    #[arg(short = 'd', long = "dump-conf")]
    pub dump_conf: bool,
    /// keepalived: log address changes. Ignored with a warning.
    #[arg(short = 'a', long = "address-monitoring")]
    pub address_monitoring: bool,
    /// keepalived: the checkers' pid file. Ignored with a warning (no checker process).
    #[arg(short = 'c', long = "checkers_pid", value_name = "FILE")]
    pub checkers_pid: Option<PathBuf>,
    /// keepalived: the BFD pid file. Ignored with a warning (no BFD process).
    #[arg(short = 'b', long = "bfd_pid", value_name = "FILE")]
    pub bfd_pid: Option<PathBuf>,
    /// keepalived: refuse to start when a configuration file is missing. Ignored with a warning: a missing
    /// file is always an error for vrrpd.
    #[arg(short = 'e', long = "all-config")]
    pub all_config: bool,
    /// keepalived: SNMP. Ignored with a warning (use --metrics).
    #[arg(short = 'x', long = "snmp")]
    pub snmp: bool,
    /// keepalived: the SNMP agent socket. Ignored with a warning.
    #[arg(short = 'A', long = "snmp-agent-socket", value_name = "FILE")]
    pub snmp_agent_socket: Option<String>,
    /// keepalived: core dumps. Ignored with a warning.
    #[arg(short = 'm', long = "core-dump")]
    pub core_dump: bool,
    /// keepalived: the core dump pattern. Ignored with a warning.
    #[arg(short = 'M', long = "core-dump-pattern", value_name = "PATTERN", num_args = 0..=1, require_equals = true)]
    pub core_dump_pattern: Option<Option<String>>,
    /// keepalived's debugging aids. Ignored with a warning.
    #[arg(long = "debug", value_name = "WHAT", num_args = 0..=1, require_equals = true)]
    pub debug: Option<Option<String>>,
    /// keepalived: perf profiling. Ignored with a warning.
    #[arg(long = "perf", value_name = "WHAT", num_args = 0..=1, require_equals = true)]
    pub perf: Option<Option<String>>,
    /// keepalived: memory checks. Ignored with a warning.
    #[arg(long = "no-mem-check")]
    pub no_mem_check: bool,

    /// Write one JSON object per line for every state change, advert, discard, address and GARP ("-": stdout).
    #[arg(long)]
    pub events: Option<String>,
    /// Serve Prometheus metrics (state, priority, adverts, discards by reason, transitions) on ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Where SIGUSR1 writes the state dump (default: the log).
    #[arg(long, value_name = "FILE")]
    pub dump_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
}

fn octal(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal mask (000-777)"))
}

impl Cli {
    /// keepalived options vrrpd cannot honour: those that change what the daemon would do are refused.
    pub fn refused(&self) -> Option<&'static str> {
        [
            (
                self.check,
                "-C/--check runs only keepalived's health checkers (virtual_server); vrrpd has none",
            ),
            (
                self.dont_release_vrrp,
                "-V/--dont-release-vrrp would keep the VIPs after exit; vrrpd always releases them",
            ),
            (self.release_vips, "-X/--release-vips is not supported"),
            (
                self.namespace.is_some(),
                "-s/--namespace is not supported: start vrrpd inside the namespace (ip netns exec NAME vrrpd ...)",
            ),
            (
                self.config_id.is_some(),
                "-i/--config-id is not supported: vrrpd does not read keepalived's @id lines",
            ),
            (
                self.log_file.is_some(),
                "-g/--log-file is not supported: use -l and redirect stderr",
            ),
            (
                self.config_test.as_ref().is_some_and(Option::is_some),
                "-t=LOG_FILE is not supported: use -t and redirect stderr",
            ),
        ]
        .into_iter()
        .find_map(|(given, why)| given.then_some(why))
    }

    /// keepalived options whose absence of effect in vrrpd changes nothing VRRP does.
    pub fn ignored(&self) -> Vec<&'static str> {
        [
            (self.dont_release_ipvs, "-I/--dont-release-ipvs"),
            (self.all, "--all"),
            (self.dump_conf, "-d/--dump-conf"),
            (self.address_monitoring, "-a/--address-monitoring"),
            (self.checkers_pid.is_some(), "-c/--checkers_pid"),
            (self.bfd_pid.is_some(), "-b/--bfd_pid"),
            (self.all_config, "-e/--all-config"),
            (self.snmp, "-x/--snmp"),
            (self.snmp_agent_socket.is_some(), "-A/--snmp-agent-socket"),
            (self.core_dump, "-m/--core-dump"),
            (self.core_dump_pattern.is_some(), "-M/--core-dump-pattern"),
            (self.debug.is_some(), "--debug"),
            (self.perf.is_some(), "--perf"),
            (self.no_mem_check, "--no-mem-check"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect()
    }

    pub fn log_to(&self) -> LogTo {
        let facility = match self.log_facility {
            Some(local) => (16 + libc::c_int::from(local)) << 3,
            None => libc::LOG_DAEMON,
        };
        LogTo {
            console: self.log_console,
            syslog: (!self.no_syslog).then_some(facility),
        }
    }
}

/// keepalived's `--signum` names.
pub fn signal_number(function: &str) -> Option<i32> {
    match function {
        "STOP" => Some(libc::SIGTERM),
        "RELOAD" => Some(libc::SIGHUP),
        "DATA" => Some(libc::SIGUSR1),
        "STATS" => Some(libc::SIGUSR2),
        _ => None,
    }
}
