//! vrrpd: a VRRP daemon that reads keepalived.conf. Options follow keepalived's where they mean the same thing.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::{self, Options};
use agent::daemon::{Daemon, Exit, Extras, Output};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "vrrpd",
    disable_version_flag = true,
    about = "VRRP (RFC 3768/5798/9568) agent reading keepalived.conf"
)]
struct Cli {
    /// Configuration file.
    #[arg(short = 'f', long = "use-file", default_value = "/etc/keepalived/keepalived.conf")]
    file: PathBuf,
    /// Stay in the foreground (always the case; accepted for keepalived compatibility).
    #[arg(short = 'n', long = "dont-fork")]
    dont_fork: bool,
    /// Log to the console (stderr) with keepalived's date prefix instead of syslog.
    #[arg(short = 'l', long = "log-console")]
    log_console: bool,
    /// Also log the lines keepalived prints only with -D.
    #[arg(short = 'D', long = "log-detail")]
    log_detail: bool,
    /// Accepted for keepalived compatibility (VRRP is all this daemon does).
    #[arg(short = 'P', long = "vrrp")]
    vrrp: bool,
    /// Accepted for keepalived compatibility.
    #[arg(short = 'G', long = "no-syslog")]
    no_syslog: bool,
    /// Write the process id here.
    #[arg(short = 'p', long = "pid")]
    pid_file: Option<PathBuf>,
    /// Unknown keywords and unsupported features in the configuration are errors.
    #[arg(long)]
    strict: bool,
    /// Check the configuration and exit: 0 if it can be used (like keepalived -t).
    #[arg(short = 't', long = "config-test", visible_alias = "check")]
    check: bool,
    /// Write one JSON object per line for every state change, advert, discard, address and GARP ("-": stdout).
    #[arg(long)]
    events: Option<String>,
    /// Serve Prometheus metrics (state, priority, adverts, discards by reason, transitions) on ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Where SIGUSR1 writes the state dump (default: the log).
    #[arg(long, value_name = "FILE")]
    dump_file: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    version: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("vrrpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let loaded = match config::load(&cli.file, Options { strict: cli.strict }) {
        Ok(loaded) => loaded,
        Err(error) => {
            for diagnostic in &error.diagnostics {
                eprintln!("{diagnostic}");
            }
            return ExitCode::from(1);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    if cli.check {
        return ExitCode::SUCCESS;
    }
    let output = match Output::new(cli.log_detail, cli.log_console || cli.no_syslog, cli.events.as_deref()) {
        Ok(output) => output,
        Err(error) => {
            eprintln!("vrrpd: cannot open the events file: {error}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &cli.pid_file {
        if let Err(error) = std::fs::write(path, format!("{}\n", std::process::id())) {
            eprintln!("vrrpd: cannot write {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    let extras = Extras {
        metrics: cli.metrics.clone(),
        dump_file: cli.dump_file.clone(),
        reload_from: Some((cli.file.clone(), Options { strict: cli.strict })),
    };
    let result = Daemon::new(&loaded.config, output, extras).and_then(|mut daemon| daemon.run());
    if let Some(path) = &cli.pid_file {
        let _ = std::fs::remove_file(path);
    }
    match result {
        Ok(Exit::Terminated) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vrrpd: {error:#}");
            ExitCode::from(1)
        }
    }
}
