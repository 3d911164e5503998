//! Results as JUnit XML, the format CI systems (GitLab, Jenkins, GitHub actions' reporters) render: one test suite
//! per run, one test case per scenario, a failure naming the step and what was seen.

use std::fmt::Write as _;

use super::run::{Outcome, Status};
use crate::markup::escape;

pub fn xml(outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| o.status == Status::Failed).count();
    let errors = outcomes.iter().filter(|o| o.status == Status::Error).count();
    let time: f64 = outcomes.iter().map(|o| o.took_s).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"lab test\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">",
        outcomes.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"scenarios\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">",
        outcomes.len()
    );
    for outcome in outcomes {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
            escape(&outcome.scenario),
            escape(
                &outcome
                    .file
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            escape(&outcome.file.display().to_string()),
            outcome.took_s
        );
        let steps: String = outcome
            .steps
            .iter()
            .map(|s| {
                let mark = if s.passed { "ok" } else { "FAILED" };
                format!("{mark} {} {} ({:.3} s): {}\n", s.index + 1, s.label, s.took_s, s.detail)
            })
            .collect();
        let failure = outcome.failure();
        match (outcome.status, failure) {
            (Status::Passed, _) | (_, None) => out.push_str(">\n"),
            (status, Some(failure)) => {
                let element = if status == Status::Error { "error" } else { "failure" };
                let first_line = failure.lines().next().unwrap_or_default();
                let _ = writeln!(
                    out,
                    ">\n      <{element} message=\"{}\">{}</{element}>",
                    escape(first_line),
                    escape(&failure)
                );
            }
        }
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>\n    </testcase>",
            escape(&steps)
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
