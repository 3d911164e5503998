//! Scenarios: a failover written as a file instead of Rust. A scenario names a topology and a list of steps
//! (inject a fault, wait for an event with a deadline, assert, snapshot the timeline); deadlines are written with
//! the protocol's own figures. [`load`] checks a file completely before any lab exists (every problem, with its
//! line and column); [`run::run`] plays it against a lab of its own. `lab test` and the Rust tests share this
//! engine.
//!
//! - `file`: the file as written; `figures`: VRRP's durations and the expression language;
//!   `matcher`: which events a step means; `run`: the engine; `snapshot`: the stable rendering;
//!   `junit`: results for CI systems.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use crate::fault::Fault;
use crate::topology::diagnostics::Checker;
use crate::topology::{search, Topology, TopologyError};

mod artifacts;
pub mod figures;
mod file;
pub mod junit;
pub mod matcher;
pub mod run;
pub mod snapshot;

use figures::{Expression, Figures, Scope};
use file::{RawLine, RawScenario, RawStep};
pub use matcher::Matcher;

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    /// The file's stem: the scenario's name in results, snapshots and artifacts.
    pub name: String,
    pub description: Option<String>,
    pub topology: Topology,
    pub figures: Figures,
    pub slack: Duration,
    pub snapshot: SnapshotSettings,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// Named durations, shortest first, that delays are labelled with.
    pub figures: Vec<(String, Duration)>,
    pub margin: Duration,
    /// The period of repeating lines.
    pub period: Duration,
    pub arps_for: Option<Ipv4Addr>,
    pub services: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// One line saying what the step does, as the file says it.
    pub label: String,
    pub name: Option<String>,
    /// The moment the step measures from: a named step (or `start`, `up`) and a delay after it (`elected + 5s`);
    /// when `None`, the last fault's or found event's moment.
    pub after: Option<(String, Duration)>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    Fault {
        hosts: Vec<String>,
        fault: Fault,
    },
    Wait {
        matcher: Matcher,
        within: Expression,
    },
    /// The last matching event before a moment (`before`, default now): e.g. the last advert before a crash.
    Last {
        matcher: Matcher,
        before: Option<String>,
    },
    Absent {
        matcher: Matcher,
        window: Option<Expression>,
    },
    Count {
        matcher: Matcher,
        before: Option<String>,
        at_least: Option<u32>,
        at_most: Option<u32>,
    },
    Holds {
        address: Ipv4Addr,
        hosts: Vec<String>,
        within: Option<Expression>,
    },
    Outage {
        probe: String,
        at_least: Option<Expression>,
        at_most: Option<Expression>,
        ends_within: Option<Expression>,
        outages: Option<u32>,
    },
    Run {
        host: String,
        argv: Vec<String>,
        stdout: Option<Regex>,
        exit: Option<i32>,
        within: Option<Expression>,
    },
    Elapsed {
        from: String,
        to: String,
        bound: Bound,
    },
    Overlap {
        address: Ipv4Addr,
        at_most: Expression,
    },
    Sequence {
        host: String,
        service: String,
        lines: Vec<LinePattern>,
    },
    Sleep(Expression),
    Settle(Vec<String>),
    Align(String),
    Snapshot(String),
}

/// How long something may take: the protocol's figure (no sooner, at most `slack` later), or plain bounds.
#[derive(Debug, Clone)]
pub enum Bound {
    Is(Expression),
    Range {
        at_least: Option<Expression>,
        at_most: Option<Expression>,
    },
}

#[derive(Debug, Clone)]
pub struct LinePattern {
    pub regex: Regex,
    pub at_least: u32,
    pub at_most: u32,
}

/// Every problem of a scenario file, each with file, line, column and field.
pub type ScenarioError = TopologyError;

/// The action keys, in the order messages list them.
const ACTIONS: &[&str] = &[
    "fault", "wait", "last", "absent", "count", "holds", "outage", "run", "elapsed", "overlap", "sequence", "sleep",
    "settle", "align", "snapshot",
];

/// Reads and checks a scenario file and the topology it names.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| TopologyError::unreadable(path, "the scenario", &e))?;
    parse(&text, path)
}

/// Checks scenario text; `path` names it in messages and anchors the topology's relative path.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let mut checker = Checker::new(text, path.display().to_string());
    let raw: RawScenario = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            checker.report(e.span().unwrap_or(0..0), "", e.message().to_string());
            return Err(checker.finish());
        }
    };
    let topology_path = topology_file(&checker.directory(), raw.topology.get_ref());
    let mut topology = match topology_path.and_then(|p| Topology::load(&p).map_err(|e| e.to_string())) {
        Ok(topology) => topology,
        Err(why) => {
            checker.report(raw.topology.span(), "topology", why);
            return Err(checker.finish());
        }
    };
    let directory = checker.directory();
    let directory = directory.canonicalize().unwrap_or(directory);
    for (i, replacement) in raw.overrides.iter().enumerate() {
        if let Err((span, why)) = apply_override(&mut topology, replacement.get_ref(), &directory) {
            checker.report(span, &format!("override[{i}]"), why);
        }
    }
    let (figures, figure_problems) = Figures::of(&topology);
    let mut check = Check {
        checker,
        topology: &topology,
        figures: &figures,
        figure_problems,
        slack: None,
        marks: vec!["start".to_string(), "up".to_string()],
    };
    let slack = match &raw.slack {
        Some(text) => check.expression(text, "slack").map(|e| e.value).unwrap_or_default(),
        None => figures::default_slack(&figures),
    };
    check.slack = Some(slack);
    let snapshot = check.snapshot_settings(raw.snapshot.as_ref());
    let steps: Vec<Step> = raw
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, step)| check.step(i, step))
        .collect();
    if raw.steps.is_empty() {
        check.checker.report(0..0, "steps", "the scenario has no steps");
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The name becomes a directory of artifacts: one path component, nothing hidden or relative.
    let valid_name = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid_name {
        check.checker.report(0..0, "", format!("the scenario's name `{name}` (its file name without .toml) must start with a letter or digit and hold only letters, digits, `.`, `_` and `-`"));
    }
    if !check.checker.problems.is_empty() {
        return Err(check.checker.finish());
    }
    Ok(Scenario {
        path: path.to_path_buf(),
        name,
        description: raw.description,
        topology,
        figures,
        slack,
        snapshot,
        steps,
    })
}

/// Runs a service of the topology with other arguments; `{dir}` in them is the scenario's directory, which every
/// host is shown at its own path.
fn apply_override(
    topology: &mut Topology,
    replacement: &file::RawOverride,
    directory: &Path,
) -> Result<(), (Range<usize>, String)> {
    let host_name = replacement.host.get_ref();
    let Some(host) = topology.hosts.iter_mut().find(|h| &h.name == host_name) else {
        return Err((
            replacement.host.span(),
            format!("no host `{host_name}` in the topology"),
        ));
    };
    let service_name = replacement.service.get_ref();
    let Some(service) = host.services.iter_mut().find(|s| &s.name == service_name) else {
        return Err((
            replacement.service.span(),
            format!("host `{host_name}` runs no service `{service_name}`"),
        ));
    };
    if replacement.argv.is_empty() {
        return Err((replacement.service.span(), "argv is empty".into()));
    }
    let here = directory.display().to_string();
    service.argv = replacement.argv.iter().map(|a| a.replace("{dir}", &here)).collect();
    for host in topology.hosts.iter_mut() {
        let shown = host.filesystem.binds.iter().any(|b| b.target == directory);
        if host.filesystem.is_private(directory) && !shown {
            host.filesystem.binds.push(crate::topology::Bind {
                source: directory.to_path_buf(),
                target: directory.to_path_buf(),
                read_only: true,
            });
        }
    }
    Ok(())
}

/// The topology a scenario names: relative to the scenario's directory, else a name `lab up` would find.
fn topology_file(directory: &Path, named: &str) -> Result<PathBuf, String> {
    let beside = directory.join(named);
    if beside.is_file() {
        return Ok(beside);
    }
    search::find(Path::new(named))
}

/// The checks of one file: problems are collected, never returned early, so one run names them all.
struct Check<'a> {
    checker: Checker<'a>,
    topology: &'a Topology,
    figures: &'a Figures,
    /// VRRP configurations that could not be read, by host: a problem only when a step needs that host's figures.
    figure_problems: Vec<(String, String)>,
    slack: Option<Duration>,
    /// The moments named so far (a step may only refer to earlier ones).
    marks: Vec<String>,
}

impl Check<'_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.checker.report(span, field, message);
    }

    fn expression(&mut self, text: &Spanned<String>, field: &str) -> Option<Expression> {
        let scope = Scope {
            figures: self.figures,
            slack: self.slack,
        };
        match Expression::parse(text.get_ref(), &scope) {
            Ok(expression) => Some(expression),
            Err(why) => {
                // A host whose configuration could not be read explains a missing figure better than "no VRRP".
                let detail = self
                    .figure_problems
                    .iter()
                    .find(|(host, _)| why.contains(&format!("`{host}`")))
                    .map(|(_, problem)| format!(" ({problem})"))
                    .unwrap_or_default();
                self.report(text.span(), field, format!("{why}{detail}"));
                None
            }
        }
    }

    fn host(&mut self, name: &Spanned<String>, field: &str) -> Option<String> {
        if self.topology.host(name.get_ref()).is_some() {
            return Some(name.get_ref().clone());
        }
        let known: Vec<&str> = self.topology.hosts.iter().map(|h| h.name.as_str()).collect();
        self.report(
            name.span(),
            field,
            format!(
                "no host `{}` in topology `{}` (hosts: {})",
                name.get_ref(),
                self.topology.name,
                known.join(", ")
            ),
        );
        None
    }

    fn address(&mut self, name: &Spanned<String>, field: &str) -> Option<Ipv4Addr> {
        matcher::resolve_address(name.get_ref(), self.topology)
            .map_err(|why| self.report(name.span(), field, why))
            .ok()
    }

    fn mark(&mut self, name: &Spanned<String>, field: &str) -> Option<String> {
        if self.marks.contains(name.get_ref()) {
            return Some(name.get_ref().clone());
        }
        let mut known = self.marks.clone();
        known.dedup();
        let known = known.join(", ");
        self.report(
            name.span(),
            field,
            format!("`{}` names no earlier step (known: {known})", name.get_ref()),
        );
        None
    }

    /// `NAME` or `NAME + DURATION`.
    fn mark_and_delay(&mut self, text: &Spanned<String>, field: &str) -> Option<(String, Duration)> {
        let (name, delay) = match text.get_ref().split_once('+') {
            Some((name, delay)) => (name.trim(), Some(delay.trim())),
            None => (text.get_ref().trim(), None),
        };
        let mark = self.mark(&Spanned::new(text.span(), name.to_string()), field)?;
        let delay = match delay {
            Some(delay) => {
                self.expression(&Spanned::new(text.span(), delay.to_string()), field)?
                    .value
            }
            None => Duration::ZERO,
        };
        Some((mark, delay))
    }

    fn matcher(&mut self, table: &Spanned<toml::Table>, field: &str) -> Option<Matcher> {
        match Matcher::new(table.get_ref(), self.topology) {
            Ok(matcher) => Some(matcher),
            Err(problems) => {
                for (key, message) in problems {
                    let field = if key.is_empty() {
                        field.to_string()
                    } else {
                        format!("{field}.{key}")
                    };
                    self.report(table.span(), &field, message);
                }
                None
            }
        }
    }

    fn snapshot_settings(&mut self, raw: Option<&file::RawSnapshotSettings>) -> SnapshotSettings {
        let backup = match raw.and_then(|r| r.figures_of.as_ref()) {
            Some(host) => match self.figures.instance(host.get_ref(), None) {
                Ok(instance) => Some(instance.clone()),
                Err(why) => {
                    self.report(host.span(), "snapshot.figures_of", why);
                    None
                }
            },
            None => self.figures.backup().cloned(),
        };
        let interval = backup.as_ref().map_or(Duration::from_secs(1), |b| b.advert_int);
        let mut figures = match &backup {
            Some(b) => vec![
                ("Skew_Time".to_string(), b.skew_time()),
                ("advert_int".to_string(), b.advert_int),
                ("Master_Down_Interval".to_string(), b.master_down_interval()),
            ],
            None => Vec::new(),
        };
        figures.sort_by_key(|(_, d)| *d);
        let floor = raw
            .and_then(|r| r.margin.as_ref())
            .and_then(|m| self.expression(m, "snapshot.margin"))
            .map_or(Duration::from_millis(50), |e| e.value);
        let arps_for = raw
            .and_then(|r| r.arps_for.as_ref())
            .and_then(|a| self.address(a, "snapshot.arps_for"));
        let services = raw.and_then(|r| r.services.as_ref()).map(|services| {
            services
                .iter()
                .filter(|s| {
                    let known = self
                        .topology
                        .hosts
                        .iter()
                        .any(|h| h.services.iter().any(|x| &x.name == s.get_ref()));
                    if !known {
                        self.report(
                            s.span(),
                            "snapshot.services",
                            format!("no host runs a service `{}`", s.get_ref()),
                        );
                    }
                    known
                })
                .map(|s| s.get_ref().clone())
                .collect()
        });
        SnapshotSettings {
            figures,
            margin: (interval / 10).max(floor),
            period: interval,
            arps_for,
            services,
        }
    }

    fn step(&mut self, index: usize, step: &Spanned<RawStep>) -> Option<Step> {
        let field = format!("steps[{index}]");
        let raw = step.get_ref();
        let present: Vec<&str> = ACTIONS.iter().copied().filter(|action| raw.has(action)).collect();
        let action_name = match present.as_slice() {
            [one] => *one,
            [] => {
                self.report(
                    step.span(),
                    &field,
                    format!("a step needs one action: {}", ACTIONS.join(", ")),
                );
                return None;
            }
            several => {
                self.report(
                    step.span(),
                    &field,
                    format!("a step has one action, this one has {}", several.join(" and ")),
                );
                return None;
            }
        };
        let field = format!("{field}.{action_name}");
        let after = raw
            .after
            .as_ref()
            .and_then(|m| self.mark_and_delay(m, &format!("{field}.after")));
        let action = self.action(raw, &field);
        self.check_unused(raw, action_name, &field);
        let name = raw.name.as_ref().map(|n| n.get_ref().clone());
        if let Some(name) = &raw.name {
            if self.marks.contains(name.get_ref()) {
                self.report(
                    name.span(),
                    &format!("steps[{index}].name"),
                    format!("`{}` names an earlier step too", name.get_ref()),
                );
            }
            self.marks.push(name.get_ref().clone());
        }
        let action = action?;
        Some(Step {
            label: label(raw, action_name),
            name,
            after,
            action,
        })
    }

    /// Settings the step's action does not take are mistakes, not silently ignored.
    fn check_unused(&mut self, raw: &RawStep, action: &str, field: &str) {
        let takes: &[&str] = match action {
            "wait" => &["within", "after"],
            "last" => &["before"],
            "absent" => &["for", "after"],
            "count" => &["before", "at_least", "at_most", "after"],
            "holds" | "run" => &["within"],
            "outage" => &["at_least", "at_most", "ends_within", "outages", "after"],
            "elapsed" => &["is", "at_least", "at_most"],
            "overlap" => &["at_most", "after"],
            "sequence" => &["after"],
            _ => &[],
        };
        let settings: [(&str, Option<Range<usize>>); 9] = [
            ("after", raw.after.as_ref().map(Spanned::span)),
            ("within", raw.within.as_ref().map(Spanned::span)),
            ("before", raw.before.as_ref().map(Spanned::span)),
            ("for", raw.window.as_ref().map(Spanned::span)),
            ("at_least", raw.at_least.as_ref().map(Spanned::span)),
            ("at_most", raw.at_most.as_ref().map(Spanned::span)),
            ("ends_within", raw.ends_within.as_ref().map(Spanned::span)),
            ("outages", raw.outages.as_ref().map(Spanned::span)),
            ("is", raw.is.as_ref().map(Spanned::span)),
        ];
        for (setting, span) in settings {
            if let Some(span) = span {
                if !takes.contains(&setting) {
                    self.report(span, field, format!("`{action}` does not take `{setting}`"));
                }
            }
        }
    }

    fn action(&mut self, raw: &RawStep, field: &str) -> Option<Action> {
        let within = |check: &mut Self| {
            raw.within
                .as_ref()
                .and_then(|w| check.expression(w, &format!("{field}.within")))
        };
        let duration = |check: &mut Self, value: &Option<Spanned<toml::Value>>, name: &str| {
            let value = value.as_ref()?;
            match value.get_ref().as_str() {
                Some(text) => check.expression(
                    &Spanned::new(value.span(), text.to_string()),
                    &format!("{field}.{name}"),
                ),
                None => {
                    check.report(
                        value.span(),
                        &format!("{field}.{name}"),
                        "a duration such as \"3s\" or \"skew_time(HOST)\"",
                    );
                    None
                }
            }
        };
        let count = |check: &mut Self, value: &Option<Spanned<toml::Value>>, name: &str| {
            let value = value.as_ref()?;
            match value.get_ref().as_integer().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    check.report(value.span(), &format!("{field}.{name}"), "a number of events");
                    None
                }
            }
        };
        let before = |check: &mut Self| {
            raw.before
                .as_ref()
                .and_then(|m| check.mark(m, &format!("{field}.before")))
        };
        if let Some(words) = &raw.fault {
            return self.fault(words, field);
        }
        if let Some(table) = &raw.wait {
            let Some(within_text) = &raw.within else {
                self.report(table.span(), field, "a wait needs a deadline: `within = \"...\"`");
                return None;
            };
            let matcher = self.matcher(table, field);
            let within = self.expression(within_text, &format!("{field}.within"));
            return Some(Action::Wait {
                matcher: matcher?,
                within: within?,
            });
        }
        if let Some(table) = &raw.last {
            let matcher = self.matcher(table, field);
            let before = before(self);
            return Some(Action::Last {
                matcher: matcher?,
                before,
            });
        }
        if let Some(table) = &raw.absent {
            let matcher = self.matcher(table, field);
            let window = raw
                .window
                .as_ref()
                .and_then(|w| self.expression(w, &format!("{field}.for")));
            return Some(Action::Absent {
                matcher: matcher?,
                window,
            });
        }
        if let Some(table) = &raw.count {
            let matcher = self.matcher(table, field);
            let before = before(self);
            let (at_least, at_most) = (
                count(self, &raw.at_least, "at_least"),
                count(self, &raw.at_most, "at_most"),
            );
            if raw.at_least.is_none() && raw.at_most.is_none() {
                self.report(table.span(), field, "a count needs `at_least`, `at_most` or both");
            }
            return Some(Action::Count {
                matcher: matcher?,
                before,
                at_least,
                at_most,
            });
        }
        if let Some(holds) = &raw.holds {
            let holds = holds.get_ref();
            let address = self.address(&holds.address, &format!("{field}.address"));
            let hosts: Vec<Option<String>> = holds
                .hosts
                .iter()
                .map(|h| self.host(h, &format!("{field}.hosts")))
                .collect();
            let within = within(self);
            return Some(Action::Holds {
                address: address?,
                hosts: hosts.into_iter().collect::<Option<_>>()?,
                within,
            });
        }
        if let Some(probe) = &raw.outage {
            let known = self
                .topology
                .hosts
                .iter()
                .any(|h| h.probes.iter().any(|p| &p.name == probe.get_ref()));
            if !known {
                self.report(
                    probe.span(),
                    field,
                    format!("no host has a probe `{}`", probe.get_ref()),
                );
            }
            let at_least = duration(self, &raw.at_least, "at_least");
            let at_most = duration(self, &raw.at_most, "at_most");
            let ends_within = raw
                .ends_within
                .as_ref()
                .and_then(|e| self.expression(e, &format!("{field}.ends_within")));
            return known.then(|| Action::Outage {
                probe: probe.get_ref().clone(),
                at_least,
                at_most,
                ends_within,
                outages: raw.outages.as_ref().map(|o| *o.get_ref()),
            });
        }
        if let Some(run) = &raw.run {
            let run = run.get_ref();
            let host = self.host(&run.host, &format!("{field}.host"));
            if run.argv.get_ref().is_empty() {
                self.report(run.argv.span(), &format!("{field}.argv"), "the command is empty");
            }
            let stdout = run.stdout.as_ref().and_then(|s| {
                Regex::new(s.get_ref())
                    .map_err(|e| self.report(s.span(), &format!("{field}.stdout"), regex_problem(&e)))
                    .ok()
            });
            let within = within(self);
            return Some(Action::Run {
                host: host?,
                argv: run.argv.get_ref().clone(),
                stdout,
                exit: run.exit,
                within,
            });
        }
        if let Some(elapsed) = &raw.elapsed {
            let elapsed = elapsed.get_ref();
            let from = self.mark(&elapsed.from, &format!("{field}.from"));
            let to = self.mark(&elapsed.to, &format!("{field}.to"));
            let bound = match &raw.is {
                Some(is) => self.expression(is, &format!("{field}.is")).map(Bound::Is),
                None => Some(Bound::Range {
                    at_least: duration(self, &raw.at_least, "at_least"),
                    at_most: duration(self, &raw.at_most, "at_most"),
                }),
            };
            return Some(Action::Elapsed {
                from: from?,
                to: to?,
                bound: bound?,
            });
        }
        if let Some(address) = &raw.overlap {
            let address = self.address(address, field);
            let Some(at_most) = duration(self, &raw.at_most, "at_most") else {
                self.report(
                    raw.overlap.as_ref().map_or(0..0, Spanned::span),
                    field,
                    "an overlap needs `at_most`",
                );
                return None;
            };
            return Some(Action::Overlap {
                address: address?,
                at_most,
            });
        }
        if let Some(sequence) = &raw.sequence {
            return self.sequence(sequence.get_ref(), field);
        }
        if let Some(sleep) = &raw.sleep {
            return self.expression(sleep, field).map(Action::Sleep);
        }
        if let Some(probes) = &raw.settle {
            for probe in probes.get_ref() {
                if !self
                    .topology
                    .hosts
                    .iter()
                    .any(|h| h.probes.iter().any(|p| &p.name == probe))
                {
                    self.report(probes.span(), field, format!("no host has a probe `{probe}`"));
                }
            }
            return Some(Action::Settle(probes.get_ref().clone()));
        }
        if let Some(host) = &raw.align {
            let host = self.host(host, field)?;
            if let Err(why) = self.figures.instance(&host, None) {
                self.report(raw.align.as_ref().map_or(0..0, Spanned::span), field, why);
                return None;
            }
            return Some(Action::Align(host));
        }
        if let Some(name) = &raw.snapshot {
            let valid = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                self.report(name.span(), field, "a snapshot's name is letters, digits, `_` and `-`");
                return None;
            }
            return Some(Action::Snapshot(name.get_ref().clone()));
        }
        None
    }

    fn fault(&mut self, words: &Spanned<String>, field: &str) -> Option<Action> {
        let mut parts = words.get_ref().split_whitespace();
        let hosts_word = parts.next().unwrap_or_default();
        let rest: Vec<String> = parts.map(str::to_string).collect();
        let mut hosts = Vec::new();
        for host in hosts_word.split(',') {
            if self.topology.host(host).is_some() {
                hosts.push(host.to_string());
            } else {
                self.report(
                    words.span(),
                    field,
                    format!(
                        "no host `{host}` in topology `{}`: write `HOSTS FAULT...`, as `lab fault` takes them",
                        self.topology.name
                    ),
                );
                return None;
            }
        }
        match Fault::parse(&rest) {
            Ok(fault) => {
                if let Fault::Partition { from, .. } = &fault {
                    for host in from.iter().filter(|h| self.topology.host(h).is_none()) {
                        self.report(words.span(), field, format!("no host `{host}` to partition from"));
                    }
                }
                Some(Action::Fault { hosts, fault })
            }
            Err(why) => {
                // clap's message: its first line, without its `error: ` and usage.
                let first = why.lines().next().unwrap_or_default().trim_start_matches("error: ");
                self.report(words.span(), field, format!("{first} (the faults are `lab fault`'s)"));
                None
            }
        }
    }

    fn sequence(&mut self, sequence: &file::RawSequence, field: &str) -> Option<Action> {
        let host = self.host(&sequence.host, &format!("{field}.host"));
        let runs = host
            .as_ref()
            .and_then(|h| self.topology.host(h))
            .is_some_and(|h| h.services.iter().any(|s| &s.name == sequence.service.get_ref()));
        if host.is_some() && !runs {
            self.report(
                sequence.service.span(),
                &format!("{field}.service"),
                format!(
                    "`{}` runs no service `{}`",
                    sequence.host.get_ref(),
                    sequence.service.get_ref()
                ),
            );
        }
        let mut lines = Vec::new();
        for line in &sequence.lines {
            let (text, at_least, at_most) = match line.get_ref() {
                RawLine::Once(text) => (text, 1, 1),
                RawLine::Repeated(r) => (&r.line, r.at_least.unwrap_or(1), r.at_most.unwrap_or(u32::MAX)),
            };
            match Regex::new(text) {
                Ok(regex) if at_least <= at_most => lines.push(LinePattern {
                    regex,
                    at_least,
                    at_most,
                }),
                Ok(_) => self.report(line.span(), &format!("{field}.lines"), "at_least is more than at_most"),
                Err(e) => self.report(line.span(), &format!("{field}.lines"), regex_problem(&e)),
            }
        }
        (runs && lines.len() == sequence.lines.len()).then(|| Action::Sequence {
            host: host.unwrap_or_default(),
            service: sequence.service.get_ref().clone(),
            lines,
        })
    }
}

impl RawStep {
    fn has(&self, action: &str) -> bool {
        match action {
            "fault" => self.fault.is_some(),
            "wait" => self.wait.is_some(),
            "last" => self.last.is_some(),
            "absent" => self.absent.is_some(),
            "count" => self.count.is_some(),
            "holds" => self.holds.is_some(),
            "outage" => self.outage.is_some(),
            "run" => self.run.is_some(),
            "elapsed" => self.elapsed.is_some(),
            "overlap" => self.overlap.is_some(),
            "sequence" => self.sequence.is_some(),
            "sleep" => self.sleep.is_some(),
            "settle" => self.settle.is_some(),
            "align" => self.align.is_some(),
            "snapshot" => self.snapshot.is_some(),
            _ => false,
        }
    }
}

/// The step as one line, in the file's own words.
fn label(raw: &RawStep, action: &str) -> String {
    let table = |t: &Spanned<toml::Table>| {
        t.get_ref()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let text = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default();
    let mut label = match action {
        "fault" => format!("fault {}", text(&raw.fault)),
        "wait" => format!(
            "wait {} within {}",
            raw.wait.as_ref().map(table).unwrap_or_default(),
            text(&raw.within)
        ),
        "last" => format!("last {}", raw.last.as_ref().map(table).unwrap_or_default()),
        "absent" => format!("absent {}", raw.absent.as_ref().map(table).unwrap_or_default()),
        "count" => format!("count {}", raw.count.as_ref().map(table).unwrap_or_default()),
        "holds" => raw.holds.as_ref().map_or_else(String::new, |h| {
            let hosts: Vec<&str> = h.get_ref().hosts.iter().map(|h| h.get_ref().as_str()).collect();
            format!("holds {} on [{}]", h.get_ref().address.get_ref(), hosts.join(", "))
        }),
        "outage" => format!("outage {}", text(&raw.outage)),
        "run" => raw.run.as_ref().map_or_else(String::new, |r| {
            format!(
                "run on {}: {}",
                r.get_ref().host.get_ref(),
                r.get_ref().argv.get_ref().join(" ")
            )
        }),
        "elapsed" => raw.elapsed.as_ref().map_or_else(String::new, |e| {
            format!("elapsed {} -> {}", e.get_ref().from.get_ref(), e.get_ref().to.get_ref())
        }),
        "overlap" => format!("overlap {}", text(&raw.overlap)),
        "sequence" => raw.sequence.as_ref().map_or_else(String::new, |s| {
            format!(
                "sequence {}/{}",
                s.get_ref().host.get_ref(),
                s.get_ref().service.get_ref()
            )
        }),
        "sleep" => format!("sleep {}", text(&raw.sleep)),
        "settle" => format!(
            "settle {}",
            raw.settle.as_ref().map(|s| s.get_ref().join(", ")).unwrap_or_default()
        ),
        "align" => format!("align to {}'s adverts", text(&raw.align)),
        _ => format!("snapshot {}", text(&raw.snapshot)),
    };
    if let Some(is) = &raw.is {
        label.push_str(&format!(" is {}", is.get_ref()));
    }
    for (name, value) in [("at_least", &raw.at_least), ("at_most", &raw.at_most)] {
        if let Some(value) = value {
            let shown = value
                .get_ref()
                .as_str()
                .map_or_else(|| value.get_ref().to_string(), str::to_string);
            label.push_str(&format!(" {name} {shown}"));
        }
    }
    label
}

/// A regular expression's error on one line: the regex crate's last line says what is wrong.
pub(crate) fn regex_problem(error: &regex::Error) -> String {
    let text = error.to_string();
    format!(
        "not a regular expression: {}",
        text.lines().last().unwrap_or_default().trim_start_matches("error: ")
    )
}
