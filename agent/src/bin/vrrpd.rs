//! vrrpd: a VRRP daemon that reads keepalived.conf (its command line is `agent::cli`).

use std::process::ExitCode;
use std::time::Duration;

use agent::cli::{signal_number, Cli};
use agent::config::{self, Options};
use agent::daemon::{block_signals, Daemon, Destinations, Exit, Extras, Output, PidFile};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("vrrpd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(function) = &cli.signum {
        return match signal_number(function) {
            Some(number) => {
                println!("{number}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("vrrpd: --signum {function}: vrrpd answers STOP, RELOAD, DATA and STATS");
                ExitCode::from(1)
            }
        };
    }
    if let Some(why) = cli.refused() {
        eprintln!("vrrpd: {why}");
        return ExitCode::from(1);
    }
    for flag in cli.ignored() {
        eprintln!("vrrpd: warning: {flag} has no effect in vrrpd; ignored");
    }
    if let Some(mask) = cli.umask {
        // SAFETY: umask only sets the process's mask.
        unsafe { libc::umask(mask as libc::mode_t) };
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
    if cli.config_test.is_some() {
        return ExitCode::SUCCESS;
    }
    let mut pid_files = Vec::new();
    for path in [&cli.pid_file, &cli.vrrp_pid_file].into_iter().flatten() {
        match PidFile::claim(path) {
            Ok(pid_file) => pid_files.push(pid_file),
            Err(error) => {
                eprintln!("vrrpd: {error}");
                return ExitCode::from(1);
            }
        }
    }
    let destinations = Destinations {
        events: cli.events.as_deref(),
        notify_fifos: &loaded.config.global.notify_fifos,
    };
    if let Err(error) = block_signals() {
        eprintln!("vrrpd: blocking signals: {error}");
        return ExitCode::from(1);
    }
    let output = match Output::new(cli.log_detail, cli.log_to(), destinations) {
        Ok(output) => output,
        Err(error) => {
            eprintln!("vrrpd: {error}");
            return ExitCode::from(1);
        }
    };
    let extras = Extras {
        metrics: cli.metrics.clone(),
        dump_file: cli.dump_file.clone(),
        reload_from: Some((cli.file.clone(), Options { strict: cli.strict })),
    };
    let mut daemon = match Daemon::new(&loaded.config, output, extras) {
        Ok(daemon) => daemon,
        Err(error) => {
            eprintln!("vrrpd: {error:#}");
            return ExitCode::from(1);
        }
    };
    // From here on, every line goes through the daemon's output queues: a stalled reader must not keep a daemon
    // that has released its addresses from exiting.
    let result = daemon.run();
    daemon.finish(Duration::from_secs(1));
    drop(pid_files);
    match result {
        Ok(Exit::Terminated) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
