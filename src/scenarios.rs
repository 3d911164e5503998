//! Scenario files played from Rust tests, through the engine `lab test` uses (`lab::scenario`).

use std::path::{Path, PathBuf};

use lab::impair::BackendChoice;
use lab::scenario::run::{self, Outcome};

/// The scenario files (`*.toml`) of a workspace directory, sorted.
pub fn files_in(directory: &str) -> Vec<PathBuf> {
    let directory = crate::workspace_file(directory);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|e| panic!("{}: {e}", directory.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Loads and runs one scenario in a lab of its own (named after `prefix`), printing each step as it completes;
/// with `LAB_ARTIFACTS=DIR`, its artifacts go to `DIR/<scenario>/`.
pub fn play(file: &Path, prefix: &str) -> Outcome {
    play_with(file, prefix, None, None)
}

/// [`play`], its artifacts in `artifacts`, its links impaired by `backend` instead of the topology's choice.
pub fn play_with(file: &Path, prefix: &str, artifacts: Option<PathBuf>, backend: Option<BackendChoice>) -> Outcome {
    crate::use_workspace_binaries();
    let scenario = lab::scenario::load(file).unwrap_or_else(|e| panic!("{e}"));
    let artifacts = artifacts.or_else(|| {
        std::env::var_os(lab::artifacts::VARIABLE)
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join(&scenario.name))
    });
    let name = scenario.name.clone();
    let progress = move |step: &run::StepOutcome| {
        let mark = if step.passed { "ok  " } else { "FAIL" };
        println!(
            "{name} {mark} {:>2} {:>7.3}s  {}: {}",
            step.index + 1,
            step.at_s,
            step.label,
            step.detail
        );
    };
    let options = run::Options {
        lab_name: crate::unique_name(prefix),
        update_snapshots: false,
        artifacts,
        keep_on_failure: false,
        progress: &progress,
        cancel: lab::lab::Cancel::default(),
        impair_backend: backend,
    };
    let (outcome, kept) = run::run(&scenario, &options);
    assert!(kept.is_none());
    let left = crate::leftovers(&outcome.lab, &[]);
    assert!(left.is_empty(), "lab {} left {left:?}", outcome.lab);
    outcome
}
