//! `lab test`: scenario files run in labs of their own, in parallel, one line per step as it completes, then a
//! summary; JUnit XML and JSON for machines. Exit 0 when every scenario passed, 1 when one failed, 2 when a file is
//! bad (every problem of every file is printed before any lab is built).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::lab::{self, Lab};
use crate::scenario::run::{self, Outcome, Status, StepOutcome};
use crate::scenario::{self, Scenario};
use crate::supervisor::{self, EventSink, StopSignals};

/// `lab test`'s arguments: the command line's one definition.
#[derive(clap::Args)]
pub struct TestArguments {
    /// Scenario files, or directories whose `*.toml` files are scenarios.
    #[arg(required = true)]
    pub scenarios: Vec<PathBuf>,
    /// How many scenarios run at once (they mostly wait on protocol timers); all of them by default.
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Accept snapshots that are new or differ: write them instead of failing.
    #[arg(long)]
    pub update: bool,
    /// Write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print each scenario's result as a JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Leave the first failed scenario's lab up (until Ctrl-C or `lab down`) and say how to enter it.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Where each scenario's timeline, pcaps, logs and report.html go (a directory per scenario).
    #[arg(long, value_name = "DIR", default_value = "lab-test-results")]
    pub artifacts: PathBuf,
    /// Carry out link impairments with this backend, whatever the topologies say.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub impair_backend: Option<crate::impair::BackendChoice>,
}

pub fn test(arguments: TestArguments) -> anyhow::Result<ExitCode> {
    let files = scenario_files(&arguments.scenarios)?;
    let mut scenarios = Vec::new();
    let mut bad = false;
    for file in &files {
        match scenario::load(file) {
            Ok(scenario) => scenarios.push(scenario),
            Err(problems) => {
                eprintln!("{problems}");
                bad = true;
            }
        }
    }
    if bad {
        return Ok(ExitCode::from(2));
    }
    duplicate_names(&scenarios)?;
    lab::check_privileges()?;
    // Before any thread exists: every thread inherits the blocked mask, and Ctrl-C cancels bring-ups and ends a
    // kept lab.
    let signals = StopSignals::block()?;
    let jobs = arguments
        .jobs
        .unwrap_or(scenarios.len())
        .clamp(1, scenarios.len().max(1));
    let outcomes = run_all(&scenarios, jobs, &arguments, &signals.cancel);
    let mut kept: Option<Lab> = None;
    let mut results = Vec::new();
    for (outcome, lab) in outcomes {
        match (lab, &kept) {
            (Some(lab), None) => kept = Some(lab),
            (Some(lab), Some(_)) => {
                let _ = lab.down();
            }
            (None, _) => {}
        }
        results.push(outcome);
    }
    summary(&results, arguments.json);
    if let Some(path) = &arguments.junit {
        std::fs::write(path, scenario::junit::xml(&results)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(lab) = kept {
        keep(lab, signals)?;
    }
    let passed = results.iter().all(|o| o.status == Status::Passed);
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The files named, directories read for their `*.toml` files (sorted).
fn scenario_files(arguments: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for argument in arguments {
        if argument.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(argument)
                .map_err(|e| anyhow::anyhow!("{}: {e}", argument.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            if found.is_empty() {
                anyhow::bail!("{}: no scenario files (*.toml)", argument.display());
            }
            files.extend(found);
        } else {
            files.push(argument.clone());
        }
    }
    Ok(files)
}

/// Scenarios' names key their artifacts: two files with one stem would overwrite each other's.
fn duplicate_names(scenarios: &[Scenario]) -> anyhow::Result<()> {
    for (i, a) in scenarios.iter().enumerate() {
        if let Some(b) = scenarios[i + 1..].iter().find(|b| b.name == a.name) {
            anyhow::bail!(
                "{} and {} are both scenario `{}`: give one another file name",
                a.path.display(),
                b.path.display(),
                a.name
            );
        }
    }
    Ok(())
}

/// A scenario's outcome, and its lab when a failure keeps it up.
type Played = (Outcome, Option<Lab>);

fn run_all(
    scenarios: &[Scenario],
    jobs: usize,
    arguments: &TestArguments,
    cancel: &lab::Cancel,
) -> Vec<(Outcome, Option<Lab>)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Played>>> = Mutex::new((0..scenarios.len()).map(|_| None).collect());
    let print = Mutex::new(());
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(scenario) = scenarios.get(index) else { break };
                let progress = |step: &StepOutcome| {
                    if arguments.json {
                        return;
                    }
                    let _guard = print.lock();
                    let mark = if step.passed { "ok  " } else { "FAIL" };
                    let total = scenario.steps.len();
                    println!(
                        "{:width$}  {mark} {:>2}/{total} {:>7.3}s {:>6.3}s  {}",
                        scenario.name,
                        step.index + 1,
                        step.at_s,
                        step.took_s,
                        step.label
                    );
                    if !step.passed {
                        for line in step.detail.lines() {
                            println!("{:width$}         {line}", "");
                        }
                    }
                };
                let artifacts = arguments.artifacts.join(&scenario.name);
                let options = run::Options {
                    lab_name: lab_name(index),
                    update_snapshots: arguments.update,
                    artifacts: Some(artifacts),
                    keep_on_failure: arguments.keep_on_failure,
                    progress: &progress,
                    cancel: cancel.clone(),
                    impair_backend: arguments.impair_backend,
                };
                let result = run::run(scenario, &options);
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// A lab name no other run on this machine uses at the same time: `t<pid>x<index>`.
fn lab_name(index: usize) -> String {
    format!("t{}x{index}", std::process::id())
}

fn summary(results: &[Outcome], json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        for outcome in results {
            let _ = writeln!(out, "{}", serde_json::to_string(outcome).unwrap_or_default());
        }
        return;
    }
    let _ = writeln!(out);
    for outcome in results {
        let word = match outcome.status {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::Error => "ERROR ",
        };
        let _ = writeln!(
            out,
            "{word}  {}  ({} steps, {:.1} s; lab up in {:.1} s){}",
            outcome.file.display(),
            outcome.steps.len(),
            outcome.took_s,
            outcome.up_s,
            outcome
                .artifacts
                .as_ref()
                .map(|a| format!("  {}", a.join("report.html").display()))
                .unwrap_or_default()
        );
        if let Some(failure) = outcome.failure() {
            let _ = writeln!(out, "        {}", failure.lines().next().unwrap_or_default());
        }
    }
    let passed = results.iter().filter(|o| o.status == Status::Passed).count();
    let _ = writeln!(out, "\n{passed} of {} scenarios passed", results.len());
}

/// Keeps a failed scenario's lab up for whoever wants to look inside, until Ctrl-C or `lab down`.
fn keep(lab: Lab, signals: StopSignals) -> anyhow::Result<()> {
    let name = lab.name().to_string();
    let hosts: Vec<String> = lab.topology().hosts.iter().map(|h| h.name.clone()).collect();
    eprintln!(
        "lab {name} is kept up as the failed scenario left it. Enter a host with `lab exec {name} {} -- bash` \
         (hosts: {}); `lab timeline {name}` shows what happened. Ctrl-C or `lab down {name}` ends it.",
        hosts.first().map(String::as_str).unwrap_or("HOST"),
        hosts.join(", ")
    );
    supervisor::supervise(lab, signals, EventSink::new(Box::new(std::io::sink()), false))?;
    Ok(())
}
