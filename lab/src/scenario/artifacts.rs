//! What a scenario's run leaves for whoever reads it: the timeline (text, JSON lines, Perfetto), a pcap per segment
//! (written while the steps run), every service's log, the steps' results and the report.

use std::io;
use std::path::Path;

use crate::lab::Lab;

use super::run::Outcome;
use super::Scenario;

/// Creates a file in an artifacts directory, never through a symlink.
pub(crate) fn create(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

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
    std::fs::create_dir_all(&logs)?;
    for entry in std::fs::read_dir(lab.paths().logs_dir())?.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            crate::artifacts::write_file(&logs.join(entry.file_name()), &std::fs::read(entry.path())?)?;
        }
    }
    Ok(())
}
