//! What a scenario's run leaves for whoever reads it: the timeline (text, JSON lines, Perfetto), a pcap per segment
//! (written while the steps run), every service's log, the steps' results and the report.

use std::io;
use std::path::Path;

use crate::lab::Lab;

use super::run::Outcome;
use super::Scenario;

pub(crate) fn write(dir: &Path, lab: &Lab, scenario: &Scenario, outcome: &Outcome) -> io::Result<()> {
    let timeline = lab.timeline();
    let write = |name: &str, bytes: &[u8]| crate::artifacts::write_file(&dir.join(name), bytes);
    write("timeline.txt", timeline.text().as_bytes())?;
    write("timeline.jsonl", timeline.json_lines().as_bytes())?;
    write("timeline.perfetto.json", timeline.perfetto().as_bytes())?;
    write(
        "outcome.json",
        serde_json::to_string_pretty(outcome).unwrap_or_default().as_bytes(),
    )?;
    let report = crate::report::Report {
        title: format!("{} ({})", scenario.name, outcome.status_word()),
        timeline: &timeline,
        topology: lab.topology(),
        steps: Some(&outcome.steps),
    };
    write("report.html", report.html().as_bytes())?;
    let logs = dir.join("logs");
    crate::artifacts::prepare_dir(&logs)?;
    crate::artifacts::copy_logs(lab.paths(), &logs)
}
