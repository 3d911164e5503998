//! The stable rendering of a scenario's timeline (see [`crate::timeline`]), labelled with the VRRP figures, and
//! the stored copy it is compared with: `snapshots/<scenario>.<name>.snap` beside the scenario file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventKind};
use crate::lab::Lab;
use crate::timeline::{self, DaemonEvent, SnapshotStyle};

use super::SnapshotSettings;

/// The output lines a snapshot shows: all of vrrpd's (it logs as keepalived does, without a banner), and of
/// keepalived's those about its state, its adverts and its scripts, not its start-up banner (version, pids).
pub fn protocol_line(service: &str, line: &str) -> bool {
    service != "keepalived"
        || ["Entering", "advert", "VRRP_Script(", "priority 0"]
            .iter()
            .any(|w| line.contains(w))
}

/// vrrpd's state changes in a snapshot (`from`, `to`, `reason`); its other events (advert counters and the like)
/// are left out, the wire shows the packets themselves.
pub fn vrrpd_state_change(event: &DaemonEvent) -> Option<String> {
    if event.kind != "state" {
        return None;
    }
    let field = |name: &str| {
        event
            .detail
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    Some(format!(
        "{}/{} event: {} -> {} ({})",
        event.host,
        event.service,
        field("from"),
        field("to"),
        field("reason")
    ))
}

/// What a snapshot leaves out: daemons' banners, the services not shown, and gratuitous ARPs for other addresses
/// than `arps_for` (keepalived announces its host's own address as it starts, at a moment no figure fixes).
pub fn hidden(settings: &SnapshotSettings) -> Arc<dyn Fn(&Event) -> bool + Send + Sync> {
    let (arps_for, shown) = (settings.arps_for, settings.services.clone());
    let hidden_service = move |service: &str| shown.as_ref().is_some_and(|shown| !shown.iter().any(|s| s == service));
    Arc::new(move |event: &Event| match &event.kind {
        EventKind::ServiceOutput { service, line, .. } => {
            hidden_service(service) || !protocol_line(service, timeline::without_console_date(line))
        }
        EventKind::Daemon { service, .. } => hidden_service(service),
        EventKind::Arp {
            gratuitous: true,
            sender_ip,
            ..
        } => arps_for.is_some_and(|address| *sender_ip != address),
        _ => false,
    })
}

/// The style of a scenario's snapshots, from `since_ns` (the first fault, if any) to now.
pub fn style(settings: &SnapshotSettings, lab: &Lab, since_ns: Option<u64>, until_ns: u64) -> SnapshotStyle {
    SnapshotStyle {
        figures: settings.figures.clone(),
        margin: settings.margin,
        together: settings.margin / 2,
        period: settings.period,
        replacements: lab.volatile_names().unwrap_or_default(),
        // A probe attempt lost while two hosts swap an address costs one timeout plus one interval (~150 ms in the
        // seed); a failover without the address anywhere costs at least Skew_Time.
        min_outage: Duration::from_millis(300),
        since_ns,
        until_ns: Some(until_ns),
        daemon_text: vrrpd_state_change,
        hides: hidden(settings),
    }
}

/// Where a scenario's snapshot `name` is stored.
pub fn stored_path(scenario: &Path, name: &str) -> PathBuf {
    let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
    let dir = scenario
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join("snapshots").join(format!("{stem}.{name}.snap"))
}

/// Compares `seen` with the stored snapshot. With `update`, a new or different snapshot is written and passes;
/// without, a missing or different one fails, and what was seen is written beside it as `.snap.new`.
pub fn compare(path: &Path, seen: &str, update: bool) -> Result<String, String> {
    let stored = std::fs::read_to_string(path).ok();
    if stored.as_deref() == Some(seen) {
        let _ = std::fs::remove_file(path.with_extension("snap.new"));
        return Ok(format!("matches {}", path.display()));
    }
    let write = |target: &Path| -> Result<(), String> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        crate::artifacts::write_file(target, seen.as_bytes()).map_err(|e| format!("{}: {e}", target.display()))
    };
    if update {
        write(path)?;
        let _ = std::fs::remove_file(path.with_extension("snap.new"));
        return Ok(format!("written to {}", path.display()));
    }
    let new = path.with_extension("snap.new");
    write(&new)?;
    Err(match stored {
        None => format!(
            "no stored snapshot {}; what was seen is in {} (run with --update to accept it)",
            path.display(),
            new.display()
        ),
        Some(stored) => format!(
            "differs from {} (seen: {}; --update accepts it):\n{}",
            path.display(),
            new.display(),
            difference(&stored, seen)
        ),
    })
}

/// The lines that differ, `-` stored and `+` seen, with the line numbers.
fn difference(stored: &str, seen: &str) -> String {
    let (stored, seen): (Vec<&str>, Vec<&str>) = (stored.lines().collect(), seen.lines().collect());
    let mut out = String::new();
    for i in 0..stored.len().max(seen.len()) {
        let (a, b) = (stored.get(i), seen.get(i));
        if a != b {
            if let Some(a) = a {
                out.push_str(&format!("  {:>3} - {a}\n", i + 1));
            }
            if let Some(b) = b {
                out.push_str(&format!("  {:>3} + {b}\n", i + 1));
            }
        }
    }
    out
}
