//! A host's `services`: the programs the lab runs in it, with how to tell they are ready and how to stop them.

use std::collections::HashSet;
use std::path::PathBuf;
use toml::Spanned;

use nix::sys::signal::Signal;

use super::naming::check_identifier;
use crate::process::find_program;
use crate::topology::diagnostics::Checker;
use crate::topology::raw::{RawReady, RawService};
use crate::topology::{parse_signal, Readiness, Restart, Service};

impl Checker<'_> {
    pub(super) fn check_services(&mut self, h: usize, raw: &[RawService]) -> Vec<Service> {
        let mut services = Vec::new();
        let mut names = HashSet::new();
        for (s, raw_service) in raw.iter().enumerate() {
            let field = |f: &str| format!("hosts[{h}].services[{s}].{f}");
            let service = self.check_service(raw_service, &field);
            if !names.insert(service.name.clone()) {
                self.report(
                    raw_service.name.span(),
                    &field("name"),
                    format!("duplicate service name `{}`", service.name),
                );
            }
            services.push(service);
        }
        services
    }

    fn check_service(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) -> Service {
        let name = raw.name.get_ref().clone();
        if let Err(why) = check_identifier(&name) {
            self.report(raw.name.span(), &field("name"), format!("service name `{name}` {why}"));
        }
        self.check_argv(raw, field);
        let ready = raw.ready.as_ref().and_then(|ready| self.check_readiness(ready, field));
        let ready_timeout = self.check_seconds(0.0, &raw.ready_timeout, 10.0, &field("ready_timeout"));
        let grace = self.check_seconds(0.0, &raw.grace, 5.0, &field("grace"));
        let stop_signal = self.check_stop_signal(raw, field);
        let events_on_stdout = self.check_events(raw, field);
        let restart = self.check_restart(raw, field);
        let settle = self.check_seconds(0.0, &raw.settle, 0.5, &field("settle"));
        Service {
            name,
            argv: raw.argv.get_ref().clone(),
            env: raw.env.clone(),
            cwd: raw.cwd.as_ref().map(PathBuf::from),
            ready,
            ready_timeout,
            stop_signal,
            grace,
            events_on_stdout,
            restart,
            settle,
        }
    }

    fn check_restart(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) -> Restart {
        let limit = raw.restart_limit.as_ref().map_or(5, |l| *l.get_ref());
        match raw.restart.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
            None | Some(("no", _)) => {
                if let Some(l) = &raw.restart_limit {
                    self.report(
                        l.span(),
                        &field("restart_limit"),
                        "restart_limit needs restart = \"on-failure\"",
                    );
                }
                Restart::No
            }
            Some(("on-failure", _)) => Restart::OnFailure { limit },
            Some((other, span)) => {
                self.report(
                    span,
                    &field("restart"),
                    format!("restart = `{other}`: use \"no\" or \"on-failure\""),
                );
                Restart::No
            }
        }
    }

    /// The program must exist now, rather than fail when the lab is half up.
    fn check_argv(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) {
        let Some(program) = raw.argv.get_ref().first() else {
            self.report(
                raw.argv.span(),
                &field("argv"),
                "argv is empty: give at least the program",
            );
            return;
        };
        // A program next to the topology (`{dir}/...`) is looked for there; `{run}` and `{tls}` paths only
        // exist once the lab is up, so they are not checked here.
        let program = &program.replace("{dir}", &self.directory().display().to_string());
        if program.contains("{run}") || program.contains("{tls}") {
            return;
        }
        if let Err(why) = find_program(program) {
            self.report(raw.argv.span(), &field("argv"), why);
        }
    }

    fn check_readiness(&mut self, raw: &Spanned<RawReady>, field: &dyn Fn(&str) -> String) -> Option<Readiness> {
        let RawReady { tcp, file, log } = raw.get_ref();
        let given = [tcp.is_some(), file.is_some(), log.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            self.report(
                raw.span(),
                &field("ready"),
                "give exactly one of `tcp`, `file` or `log`",
            );
            return None;
        }
        if *tcp == Some(0) {
            self.report(raw.span(), &field("ready.tcp"), "port 0 cannot be checked");
        }
        tcp.map(Readiness::Tcp)
            .or_else(|| file.clone().map(|f| Readiness::File(f.into())))
            .or_else(|| log.clone().map(Readiness::Log))
    }

    fn check_stop_signal(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) -> Signal {
        let Some(sig) = &raw.stop_signal else {
            return Signal::SIGTERM;
        };
        parse_signal(sig.get_ref()).unwrap_or_else(|| {
            self.report(
                sig.span(),
                &field("stop_signal"),
                format!("unknown signal `{}`", sig.get_ref()),
            );
            Signal::SIGTERM
        })
    }

    /// Whether the service writes its events on stdout.
    fn check_events(&mut self, raw: &RawService, field: &dyn Fn(&str) -> String) -> bool {
        match &raw.events {
            None => false,
            Some(events) if events.get_ref() == "stdout" => true,
            Some(events) => {
                self.report(
                    events.span(),
                    &field("events"),
                    format!(
                        "events = `{}`: the only source supported is \"stdout\"",
                        events.get_ref()
                    ),
                );
                false
            }
        }
    }
}
