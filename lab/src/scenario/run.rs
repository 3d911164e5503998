//! The engine: plays a scenario's steps against a lab of its own, one at a time, and records what each saw.
//! [`Session`] runs steps on a lab someone else brought up (a Rust test); [`run`] brings the lab up, runs every
//! step, keeps the artifacts and takes the lab down.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::{monotonic_ns, Event, EventKind};
use crate::lab::{Cancel, Lab};
use crate::timeline::without_console_date;

use super::{snapshot, Action, Bound, LinePattern, Scenario, Step};

/// What one step saw.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub index: usize,
    pub label: String,
    /// When the step began, in seconds since the lab was up.
    pub at_s: f64,
    pub took_s: f64,
    pub passed: bool,
    /// What was seen (passed) or why the step failed.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// The lab could not be brought up.
    Error,
}

/// What a scenario's run saw.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub file: PathBuf,
    pub lab: String,
    pub status: Status,
    /// Seconds to bring the lab up.
    pub up_s: f64,
    /// Seconds for the whole run, teardown included.
    pub took_s: f64,
    pub steps: Vec<StepOutcome>,
    pub error: Option<String>,
    pub artifacts: Option<PathBuf>,
}

impl Outcome {
    pub fn status_word(&self) -> &'static str {
        match self.status {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
        }
    }

    /// The first failed step, or the bring-up's error.
    pub fn failure(&self) -> Option<String> {
        self.error.clone().or_else(|| {
            self.steps
                .iter()
                .find(|s| !s.passed)
                .map(|s| format!("step {} ({}): {}", s.index + 1, s.label, s.detail))
        })
    }
}

pub struct Options<'a> {
    /// The lab's name (unique on the machine).
    pub lab_name: String,
    /// Snapshots that differ or are missing are written instead of failing.
    pub update_snapshots: bool,
    /// This scenario's artifacts directory (made if need be): timeline, pcaps, logs, report.
    pub artifacts: Option<PathBuf>,
    /// A failed scenario's lab is returned up instead of being taken down.
    pub keep_on_failure: bool,
    /// Called after each step (to print progress).
    pub progress: &'a (dyn Fn(&StepOutcome) + Sync),
    pub cancel: Cancel,
    /// Overrides the topology's impairment backend: the same scenario, run on the other one.
    pub impair_backend: Option<crate::impair::BackendChoice>,
}

/// Brings the scenario's lab up, runs its steps until one fails, keeps the artifacts, and takes the lab down
/// (or returns it, failed and `keep_on_failure`).
pub fn run(scenario: &Scenario, options: &Options) -> (Outcome, Option<Lab>) {
    let began = Instant::now();
    let mut outcome = Outcome {
        scenario: scenario.name.clone(),
        file: scenario.path.clone(),
        lab: options.lab_name.clone(),
        status: Status::Error,
        up_s: 0.0,
        took_s: 0.0,
        steps: Vec::new(),
        error: None,
        artifacts: options.artifacts.clone(),
    };
    if let Some(Err(e)) = options.artifacts.as_deref().map(crate::artifacts::prepare_dir) {
        outcome.error = Some(format!("artifacts: {e}"));
        outcome.artifacts = None;
        return (outcome, None);
    }
    let lab = scenario
        .topology
        .clone()
        .renamed(&options.lab_name)
        .map(|mut topology| {
            topology.impair_backend = options.impair_backend.unwrap_or(topology.impair_backend);
            topology
        })
        .map_err(|e| e.to_string())
        .and_then(|topology| Lab::up_with(&topology, &options.cancel).map_err(|e| e.to_string()));
    let mut lab = match lab {
        Ok(lab) => lab,
        Err(why) => {
            outcome.error = Some(format!("lab up: {why}"));
            outcome.took_s = began.elapsed().as_secs_f64();
            return (outcome, None);
        }
    };
    outcome.up_s = began.elapsed().as_secs_f64();
    let captures = options.artifacts.as_deref().map(|dir| Captures::start(&lab, dir));
    let steps_began = Instant::now();
    {
        let mut session = Session::new(&mut lab, scenario, options.update_snapshots);
        for (index, step) in scenario.steps.iter().enumerate() {
            if options.cancel.is_cancelled() {
                outcome.error = Some("interrupted".into());
                break;
            }
            let at = steps_began.elapsed();
            let result = session.step(step);
            let (passed, detail) = match result {
                Ok(detail) => (true, detail),
                Err(why) => (false, why),
            };
            let step_outcome = StepOutcome {
                index,
                label: step.label.clone(),
                at_s: at.as_secs_f64(),
                took_s: (steps_began.elapsed() - at).as_secs_f64(),
                passed,
                detail,
            };
            (options.progress)(&step_outcome);
            outcome.steps.push(step_outcome);
            if !passed {
                break;
            }
        }
    }
    let passed = outcome.error.is_none() && outcome.steps.iter().all(|s| s.passed);
    outcome.status = if passed { Status::Passed } else { Status::Failed };
    if let (Some(dir), Some(captures)) = (&options.artifacts, captures) {
        captures.stop();
        if let Err(e) = super::artifacts::write(dir, &lab, scenario, &outcome) {
            outcome.error.get_or_insert(format!("artifacts: {e}"));
        }
    }
    if !passed && options.keep_on_failure {
        outcome.took_s = began.elapsed().as_secs_f64();
        return (outcome, Some(lab));
    }
    if let Err(e) = lab.down() {
        outcome.status = Status::Failed;
        outcome.error.get_or_insert(format!("lab down: {e}"));
    }
    outcome.took_s = began.elapsed().as_secs_f64();
    (outcome, None)
}

/// A pcap writer per segment, running while the steps do.
struct Captures {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Captures {
    fn start(lab: &Lab, dir: &Path) -> Captures {
        let stop = Arc::new(AtomicBool::new(false));
        let switch = lab.paths().namespace(crate::names::SWITCH_HOST).mount;
        let mut threads = Vec::new();
        for segment in &lab.topology().segments {
            let path = dir.join(format!("{}.pcap", segment.name));
            let (stop, switch, segment) = (stop.clone(), switch.clone(), segment.name.clone());
            let file = match crate::artifacts::create(&path) {
                Ok(file) => file,
                Err(_) => continue,
            };
            threads.push(std::thread::spawn(move || {
                let _ = crate::observe::wire::write_pcap(&switch, &segment, file, None, &stop);
            }));
        }
        Captures { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Steps played against a lab that is up: the moments named so far and where the next step measures from.
pub struct Session<'a> {
    pub lab: &'a mut Lab,
    scenario: &'a Scenario,
    marks: HashMap<String, u64>,
    /// The last fault's or wait's moment: where a step without `after` measures from.
    anchor: u64,
    first_fault: Option<u64>,
    update_snapshots: bool,
}

/// Events are stamped where they happen and reach the log a little later (a daemon's line is read, a probe's
/// answer is written): a deadline waits this much longer for events stamped within it.
const DELIVERY: Duration = Duration::from_millis(250);

/// How long events of one moment take to arrive from the observers' threads.
const SAME_MOMENT: Duration = Duration::from_millis(30);

impl<'a> Session<'a> {
    pub fn new(lab: &'a mut Lab, scenario: &'a Scenario, update_snapshots: bool) -> Session<'a> {
        let timeline = lab.timeline();
        let start = timeline.events().first().map_or_else(monotonic_ns, |e| e.at_ns);
        let up = timeline
            .events()
            .iter()
            .find(|e| matches!(e.kind, EventKind::LabUp { .. }))
            .map_or(start, |e| e.at_ns);
        Session {
            lab,
            scenario,
            marks: HashMap::from([("start".to_string(), start), ("up".to_string(), up)]),
            anchor: start,
            first_fault: None,
            update_snapshots,
        }
    }

    /// The moment a named step happened.
    pub fn mark(&self, name: &str) -> Option<u64> {
        self.marks.get(name).copied()
    }

    /// Runs one step: what it saw, or why it failed.
    pub fn step(&mut self, step: &Step) -> Result<String, String> {
        let from = match &step.after {
            Some((mark, delay)) => self.marks.get(mark).copied().unwrap_or(self.anchor) + delay.as_nanos() as u64,
            None => self.anchor,
        };
        let (moment, detail) = self.act(&step.action, from)?;
        if let Some(name) = &step.name {
            self.marks.insert(name.clone(), moment.unwrap_or_else(monotonic_ns));
        }
        if let Some(moment) = moment {
            self.anchor = moment;
        }
        Ok(detail)
    }

    /// Runs an action; the moment it sets (faults and found events), and what it saw.
    fn act(&mut self, action: &Action, from: u64) -> Result<(Option<u64>, String), String> {
        let slack = self.scenario.slack;
        match action {
            Action::Fault { hosts, fault } => {
                let before = monotonic_ns();
                let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                self.lab.inject(&hosts, fault).map_err(|e| format!("{fault}: {e}"))?;
                let event = self
                    .lab
                    .events()
                    .wait_for(Duration::from_secs(1), |e| {
                        e.at_ns >= before && matches!(e.kind, EventKind::Fault { .. })
                    })
                    .ok_or("the fault's event did not appear")?;
                self.first_fault.get_or_insert(event.at_ns);
                Ok((Some(event.at_ns), format!("at {}", self.clock(event.at_ns))))
            }
            Action::Wait { matcher, within } => {
                let matcher = &self.bound(matcher)?;
                let deadline = from + within.value.as_nanos() as u64;
                let timeout = Duration::from_nanos(deadline.saturating_sub(monotonic_ns())) + DELIVERY;
                let found = self
                    .lab
                    .events()
                    .wait_for(timeout, |e| e.at_ns >= from && matcher.matches(e))
                    .map(|first| self.earliest(matcher, from).unwrap_or(first));
                match found {
                    Some(event) if event.at_ns <= deadline => Ok((
                        Some(event.at_ns),
                        format!("{} after {}: {event}", seconds(event.at_ns - from), self.name_of(from)),
                    )),
                    Some(event) => Err(format!(
                        "seen {} after {}, later than {} = {}: {event}",
                        seconds(event.at_ns - from),
                        self.name_of(from),
                        within.text,
                        seconds(within.value.as_nanos() as u64)
                    )),
                    None => Err(format!(
                        "{} not seen within {} = {} of {}{}",
                        matcher.text,
                        within.text,
                        seconds(within.value.as_nanos() as u64),
                        self.name_of(from),
                        self.nearby(from)
                    )),
                }
            }
            Action::Last { matcher, before } => {
                let matcher = &self.bound(matcher)?;
                let before = before.as_ref().and_then(|m| self.mark(m)).unwrap_or_else(monotonic_ns);
                let timeline = self.lab.timeline();
                let event = timeline
                    .events()
                    .iter()
                    .rev()
                    .find(|e| e.at_ns <= before && matcher.matches(e))
                    .ok_or_else(|| format!("no {} before {}", matcher.text, self.name_of(before)))?;
                Ok((Some(event.at_ns), format!("at {}: {event}", self.clock(event.at_ns))))
            }
            Action::Absent { matcher, window } => {
                let matcher = &self.bound(matcher)?;
                let until = match window {
                    Some(window) => {
                        let until = from + window.value.as_nanos() as u64;
                        std::thread::sleep(Duration::from_nanos(until.saturating_sub(monotonic_ns())) + DELIVERY);
                        until
                    }
                    None => monotonic_ns(),
                };
                let timeline = self.lab.timeline();
                let seen = timeline
                    .find(|e| e.at_ns >= from && e.at_ns <= until && matcher.matches(e))
                    .next()
                    .cloned();
                match seen {
                    Some(event) => Err(format!(
                        "happened {} after {}: {event}",
                        seconds(event.at_ns - from),
                        self.name_of(from)
                    )),
                    None => Ok((
                        None,
                        format!("not seen in the {} after {}", seconds(until - from), self.name_of(from)),
                    )),
                }
            }
            Action::Count {
                matcher,
                before,
                at_least,
                at_most,
            } => {
                let matcher = &self.bound(matcher)?;
                let until = before.as_ref().and_then(|m| self.mark(m)).unwrap_or_else(monotonic_ns);
                let timeline = self.lab.timeline();
                let count = timeline
                    .find(|e| e.at_ns >= from && e.at_ns <= until && matcher.matches(e))
                    .count() as u32;
                let fits = at_least.is_none_or(|n| count >= n) && at_most.is_none_or(|n| count <= n);
                let text = format!("{count} since {}", self.name_of(from));
                if fits {
                    Ok((None, text))
                } else {
                    Err(format!("{text}, expected {}", range_text(*at_least, *at_most)))
                }
            }
            Action::Holds { address, hosts, within } => {
                let limit = within.as_ref().map_or(Duration::ZERO, |w| w.value);
                let began = Instant::now();
                loop {
                    let holders = self.holders(*address)?;
                    if &holders == hosts {
                        return Ok((None, format!("{address} on [{}]", holders.join(", "))));
                    }
                    if began.elapsed() >= limit {
                        return Err(format!(
                            "{address} is on [{}], expected [{}]",
                            holders.join(", "),
                            hosts.join(", ")
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Action::Outage {
                probe,
                at_least,
                at_most,
                ends_within,
                outages,
            } => self.outage(
                probe,
                from,
                at_least.as_ref(),
                at_most.as_ref(),
                ends_within.as_ref(),
                *outages,
            ),
            Action::Run {
                host,
                argv,
                stdout,
                exit,
                within,
            } => self.run_command(host, argv, stdout.as_ref(), *exit, within.as_ref().map(|w| w.value)),
            Action::Elapsed { from, to, bound } => {
                let (start, end) = (self.mark(from).unwrap_or(0), self.mark(to).unwrap_or(0));
                let elapsed = Duration::from_nanos(end.saturating_sub(start));
                let text = format!("{} from {from} to {to}", seconds(elapsed.as_nanos() as u64));
                let fits = match bound {
                    // No sooner than the figure (2 ms for two threads reading the clock), at most `slack` later.
                    Bound::Is(figure) => {
                        elapsed + Duration::from_millis(2) >= figure.value && elapsed <= figure.value + slack
                    }
                    Bound::Range { at_least, at_most } => {
                        at_least.as_ref().is_none_or(|b| elapsed >= b.value)
                            && at_most.as_ref().is_none_or(|b| elapsed <= b.value)
                    }
                };
                if fits {
                    return Ok((None, text));
                }
                Err(match bound {
                    Bound::Is(figure) => format!(
                        "{text}; the protocol's figure {} is {} (slack {})",
                        figure.text,
                        seconds(figure.value.as_nanos() as u64),
                        seconds(slack.as_nanos() as u64)
                    ),
                    Bound::Range { at_least, at_most } => format!(
                        "{text}; expected at least {} and at most {}",
                        at_least.as_ref().map_or("0 s".into(), |b| format!(
                            "{} = {}",
                            b.text,
                            seconds(b.value.as_nanos() as u64)
                        )),
                        at_most.as_ref().map_or("any".into(), |b| format!(
                            "{} = {}",
                            b.text,
                            seconds(b.value.as_nanos() as u64)
                        ))
                    ),
                })
            }
            Action::Overlap { address, at_most } => {
                let overlap = overlap(self.lab.timeline().events(), *address, from)?;
                let text = format!(
                    "{address} on two hosts at once for {}",
                    seconds(overlap.as_nanos() as u64)
                );
                if overlap <= at_most.value {
                    Ok((None, text))
                } else {
                    Err(format!(
                        "{text}, more than {} = {}",
                        at_most.text,
                        seconds(at_most.value.as_nanos() as u64)
                    ))
                }
            }
            Action::Sequence { host, service, lines } => {
                let timeline = self.lab.timeline();
                let seen: Vec<&str> = timeline
                    .events()
                    .iter()
                    .filter(|e| e.at_ns >= from && e.host.as_deref() == Some(host))
                    .filter_map(|e| match &e.kind {
                        EventKind::ServiceOutput { service: s, line, .. } if s == service => {
                            Some(without_console_date(line))
                        }
                        _ => None,
                    })
                    .filter(|line| lines.iter().any(|p| p.regex.is_match(line)))
                    .collect();
                match follows(&seen, lines) {
                    Ok(()) => Ok((None, format!("{} lines in order", seen.len()))),
                    Err(why) => Err(format!(
                        "{why}; the matching lines of {host}/{service} were:\n  {}",
                        seen.join("\n  ")
                    )),
                }
            }
            Action::Sleep(duration) => {
                std::thread::sleep(duration.value);
                Ok((None, String::new()))
            }
            Action::Settle(probes) => settle(self.lab, probes).map(|text| (None, text)),
            Action::Align(host) => self.align(host).map(|text| (None, text)),
            Action::Snapshot(name) => {
                let style = snapshot::style(&self.scenario.snapshot, self.lab, self.first_fault, monotonic_ns());
                let text = self.lab.timeline().snapshot(&style);
                let path = snapshot::stored_path(&self.scenario.path, name);
                snapshot::compare(&path, &text, self.update_snapshots).map(|t| (None, t))
            }
        }
    }

    /// The earliest matching event at or after `from`. Observers deliver on their own threads (a daemon's stdout
    /// events and its log lines are two pipes), so the first match to arrive need not be the first that happened:
    /// once one has, the others of that moment get a little time to arrive too.
    fn earliest(&self, matcher: &super::Matcher, from: u64) -> Option<Event> {
        std::thread::sleep(SAME_MOMENT);
        let timeline = self.lab.timeline();
        let found = timeline.find(|e| e.at_ns >= from && matcher.matches(e)).next().cloned();
        found
    }

    /// `matcher` with the MACs of the hosts it names.
    fn bound(&self, matcher: &super::Matcher) -> Result<super::Matcher, String> {
        matcher.with_macs(|host| {
            let interface = self.scenario.topology.host(host)?.interfaces.first()?.name.clone();
            self.lab
                .mac(host, &interface)
                .ok()
                .map(|mac| crate::net::format_mac(&mac))
        })
    }

    /// Seconds since the lab was up, for messages.
    fn clock(&self, at_ns: u64) -> String {
        format!("+{}", seconds(at_ns.saturating_sub(self.marks["start"])))
    }

    /// The name of a moment, for messages: a named step, or its clock.
    fn name_of(&self, at_ns: u64) -> String {
        let named = self
            .marks
            .iter()
            .filter(|(_, t)| **t == at_ns)
            .map(|(n, _)| n.as_str())
            .min();
        match named {
            Some(name) => format!("`{name}` ({})", self.clock(at_ns)),
            None => self.clock(at_ns),
        }
    }

    /// The last events after `from`, to show beside a wait that saw nothing.
    fn nearby(&self, from: u64) -> String {
        let timeline = self.lab.timeline();
        let after: Vec<&Event> = timeline.find(|e| e.at_ns >= from).collect();
        let shown: Vec<String> = after
            .iter()
            .rev()
            .filter(|e| !matches!(e.kind, EventKind::Vrrp { .. }))
            .take(8)
            .map(|e| format!("  {} {e}", self.clock(e.at_ns)))
            .collect();
        if shown.is_empty() {
            return "; nothing happened since".into();
        }
        format!(
            "; the last events since:\n{}",
            shown.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The hosts whose kernel has `address` now, in topology order.
    fn holders(&self, address: Ipv4Addr) -> Result<Vec<String>, String> {
        let mut holders = Vec::new();
        for host in &self.scenario.topology.hosts {
            let addresses = self
                .lab
                .kernel_addresses(&host.name)
                .map_err(|e| format!("{}: {e}", host.name))?;
            if addresses.contains(&address) {
                holders.push(host.name.clone());
            }
        }
        Ok(holders)
    }

    fn outage(
        &self,
        probe: &str,
        from: u64,
        at_least: Option<&super::Expression>,
        at_most: Option<&super::Expression>,
        ends_within: Option<&super::Expression>,
        expected: Option<u32>,
    ) -> Result<(Option<u64>, String), String> {
        let timeline = self.lab.timeline();
        let mut outages: Vec<(u64, Duration)> = timeline.outages(probe).filter(|(start, _)| *start >= from).collect();
        outages.sort();
        let ongoing = timeline.events().iter().rev().find_map(|e| match &e.kind {
            EventKind::ProbeDown { probe: p, .. } if p == probe => Some(e.at_ns),
            EventKind::ProbeUp { probe: p, .. } if p == probe => Some(0),
            _ => None,
        });
        if let Some(down) = ongoing.filter(|t| *t > 0) {
            return Err(format!("{probe} has had no answer since {}", self.clock(down)));
        }
        let lengths: Vec<String> = outages.iter().map(|(_, l)| seconds(l.as_nanos() as u64)).collect();
        let text = format!(
            "{} outage(s) since {}: [{}]",
            outages.len(),
            self.name_of(from),
            lengths.join(", ")
        );
        if expected.is_some_and(|n| n as usize != outages.len()) {
            return Err(format!("{text}, expected {}", expected.unwrap_or_default()));
        }
        let longest = outages.iter().map(|(_, l)| *l).max().unwrap_or_default();
        if let Some(bound) = at_least.filter(|b| longest < b.value) {
            return Err(format!(
                "{text}; none lasted {} = {}",
                bound.text,
                seconds(bound.value.as_nanos() as u64)
            ));
        }
        if let Some(bound) = at_most.filter(|b| longest > b.value) {
            return Err(format!(
                "{text}; longer than {} = {}",
                bound.text,
                seconds(bound.value.as_nanos() as u64)
            ));
        }
        if let Some(bound) = ends_within {
            let limit = from + bound.value.as_nanos() as u64;
            if let Some((start, length)) = outages.iter().find(|(s, l)| s + l.as_nanos() as u64 > limit) {
                return Err(format!(
                    "{text}; the one at {} ended {} after {}, later than {} = {}",
                    self.clock(*start),
                    seconds(start + length.as_nanos() as u64 - from),
                    self.name_of(from),
                    bound.text,
                    seconds(bound.value.as_nanos() as u64)
                ));
            }
        }
        Ok((None, text))
    }

    fn run_command(
        &self,
        host: &str,
        argv: &[String],
        stdout: Option<&regex::Regex>,
        exit: Option<i32>,
        within: Option<Duration>,
    ) -> Result<(Option<u64>, String), String> {
        let facts = self.lab.placeholder_facts(host).map_err(|e| e.to_string())?;
        let argv: Vec<String> = argv
            .iter()
            .map(|a| facts.expand(a).map_err(|(_, why)| why))
            .collect::<Result<_, _>>()?;
        let words: Vec<&str> = argv.iter().map(String::as_str).collect();
        let expected_exit = exit.unwrap_or(0);
        let began = Instant::now();
        loop {
            let output = self.lab.exec(host, &words).map_err(|e| format!("{}: {e}", argv[0]))?;
            let text = String::from_utf8_lossy(&output.stdout).trim_end().to_string();
            let code = output.status.code().unwrap_or(-1);
            let problem = if code != expected_exit {
                Some(format!(
                    "exited {code} (expected {expected_exit}): {}{}",
                    text,
                    String::from_utf8_lossy(&output.stderr).trim_end()
                ))
            } else if stdout.is_some_and(|r| !r.is_match(&text)) {
                Some(format!(
                    "printed `{text}`, which does not match `{}`",
                    stdout.map(|r| r.as_str()).unwrap_or("")
                ))
            } else {
                None
            };
            match problem {
                None => return Ok((None, format!("printed `{}`", text.lines().next().unwrap_or("")))),
                Some(problem) if began.elapsed() >= within.unwrap_or_default() => return Err(problem),
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// [`align_to_adverts`] on `host`'s adverts, with the snapshot's margin and the backup's Skew_Time.
    fn align(&self, host: &str) -> Result<String, String> {
        let instance = self.scenario.figures.instance(host, None)?;
        let sources: Vec<Ipv4Addr> = self
            .scenario
            .topology
            .host(host)
            .map(|h| h.interfaces.iter().map(|i| i.address).collect())
            .unwrap_or_default();
        let skew = self.scenario.figures.backup().map_or(Duration::ZERO, |b| b.skew_time());
        let lead = align_to_adverts(
            self.lab,
            &sources,
            instance.advert_int,
            self.scenario.snapshot.margin,
            skew,
        )
        .map_err(|why| format!("{host} {why}"))?;
        Ok(format!("{host}'s next advert in {}", seconds(lead.as_nanos() as u64)))
    }
}

/// Sleeps until the moment of the advert period (adverts from `sources`, every `interval`) that puts the next
/// advert half-way between a snapshot's "at once" (`margin`) and "≤ Skew_Time" (`skew` + `margin`) labels: a fault
/// injected then meets the protocol's period at the same phase in every run, so no label depends on luck. Returns
/// how long before the next advert it woke.
pub fn align_to_adverts(
    lab: &Lab,
    sources: &[Ipv4Addr],
    interval: Duration,
    margin: Duration,
    skew: Duration,
) -> Result<Duration, String> {
    let now = monotonic_ns();
    let last = lab
        .timeline()
        .events()
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::Vrrp { from, .. } if sources.contains(from) => Some(e.at_ns),
            _ => None,
        })
        .ok_or("has sent no advert")?;
    let interval = interval.as_nanos() as u64;
    let lead = ((margin * 2 + skew) / 2).as_nanos() as u64;
    let mut target = last + interval - lead.min(interval);
    while target <= now {
        target += interval;
    }
    std::thread::sleep(Duration::from_nanos(target - now));
    Ok(Duration::from_nanos(lead))
}

/// Lets the probes finish what is in flight (an attempt waits up to its timeout), then waits until each probe
/// that stopped answering answers again.
pub fn settle(lab: &Lab, probes: &[String]) -> Result<String, String> {
    let longest_timeout = lab
        .topology()
        .hosts
        .iter()
        .flat_map(|h| &h.probes)
        .filter(|p| probes.contains(&p.name))
        .map(|p| p.timeout + p.interval)
        .max()
        .unwrap_or_default();
    std::thread::sleep(longest_timeout + Duration::from_millis(100));
    for probe in probes {
        let last = lab.timeline().events().iter().rev().find_map(|e| match &e.kind {
            EventKind::ProbeDown { probe: p, .. } if p == probe => Some((e.at_ns, false)),
            EventKind::ProbeUp { probe: p, .. } if p == probe => Some((e.at_ns, true)),
            _ => None,
        });
        if let Some((at_ns, false)) = last {
            lab.events()
                .wait_for(Duration::from_secs(3), |e| {
                    e.at_ns >= at_ns && matches!(&e.kind, EventKind::ProbeUp { probe: p, .. } if p == probe.as_str())
                })
                .ok_or_else(|| format!("probe {probe} did not answer again within 3 s"))?;
        }
    }
    Ok(format!("{} answering", probes.join(", ")))
}

/// How long two or more hosts' kernels had `address` at once, from the kernel monitors' events after `from`.
fn overlap(events: &[Event], address: Ipv4Addr, from: u64) -> Result<Duration, String> {
    let prefix = format!("{address}/");
    let mut holding: Vec<String> = Vec::new();
    let mut both_since = None;
    let mut total = Duration::ZERO;
    for event in events.iter().filter(|e| e.at_ns >= from) {
        let Some(host) = event.host.clone() else { continue };
        match &event.kind {
            EventKind::AddressAdded { address, .. } if address.starts_with(&prefix) => holding.push(host),
            EventKind::AddressRemoved { address, .. } if address.starts_with(&prefix) => holding.retain(|h| *h != host),
            _ => continue,
        }
        match (holding.len() > 1, both_since) {
            (true, None) => both_since = Some(event.at_ns),
            (false, Some(start)) => {
                total += Duration::from_nanos(event.at_ns - start);
                both_since = None;
            }
            _ => {}
        }
    }
    match both_since {
        Some(_) => Err(format!("{address} is still on [{}]", holding.join(", "))),
        None => Ok(total),
    }
}

/// `seen` is the patterns in order, each repeated within its bounds.
fn follows(seen: &[&str], patterns: &[LinePattern]) -> Result<(), String> {
    let mut at = 0;
    for pattern in patterns {
        let mut times = 0;
        while at < seen.len() && times < pattern.at_most && pattern.regex.is_match(seen[at]) {
            at += 1;
            times += 1;
        }
        if times < pattern.at_least {
            let found = seen.get(at).map_or("the end".to_string(), |l| format!("`{l}`"));
            return Err(format!(
                "expected `{}` {}, found it {times} time(s), then {found}",
                pattern.regex,
                range_text(Some(pattern.at_least), Some(pattern.at_most).filter(|n| *n != u32::MAX))
            ));
        }
    }
    match seen.get(at) {
        Some(extra) => Err(format!("`{extra}` after the expected lines")),
        None => Ok(()),
    }
}

fn range_text(at_least: Option<u32>, at_most: Option<u32>) -> String {
    match (at_least, at_most) {
        (Some(a), Some(b)) if a == b => format!("exactly {a}"),
        (Some(a), Some(b)) => format!("{a} to {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => "any number".into(),
    }
}

/// Nanoseconds as seconds with milliseconds.
pub fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str, at_least: u32, at_most: u32) -> LinePattern {
        LinePattern {
            regex: regex::Regex::new(text).unwrap(),
            at_least,
            at_most,
        }
    }

    #[test]
    fn a_sequence_allows_repeats_within_bounds() {
        let patterns = [pattern("init", 1, 1), pattern("discard", 3, 4), pattern("MASTER", 1, 1)];
        let lines = |n| {
            let mut v = vec!["init"];
            v.extend(std::iter::repeat_n("discard", n));
            v.push("MASTER");
            v
        };
        assert!(follows(&lines(3), &patterns).is_ok());
        assert!(follows(&lines(4), &patterns).is_ok());
        assert!(follows(&lines(2), &patterns)
            .unwrap_err()
            .contains("found it 2 time(s)"));
        assert!(follows(&lines(5), &patterns).is_err());
        assert!(follows(&["MASTER", "init"], &[pattern("init", 1, 1), pattern("MASTER", 1, 1)]).is_err());
    }

    #[test]
    fn overlap_sums_the_time_on_two_hosts() {
        let event = |ms: u64, host: &str, added: bool| {
            let (interface, address) = ("eth0".to_string(), "10.0.0.31/24".to_string());
            let kind = if added {
                EventKind::AddressAdded { interface, address }
            } else {
                EventKind::AddressRemoved { interface, address }
            };
            crate::events::samples::event(ms, host, kind)
        };
        let vip = "10.0.0.31".parse().unwrap();
        let events = [
            event(0, "a", true),
            event(10, "b", true),
            event(15, "a", false),
            event(40, "a", true),
        ];
        assert!(overlap(&events, vip, 0).is_err());
        let mut healed = events.to_vec();
        healed.push(event(47, "b", false));
        assert_eq!(overlap(&healed, vip, 0), Ok(Duration::from_millis(12)));
    }
}
