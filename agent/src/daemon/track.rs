//! Tracking, as keepalived does it: `vrrp_script` checks run every `interval` (exit 0 = success; `rise` successes
//! or `fall` failures in a row change the verdict; past `timeout` the run is killed and counts as a failure), and
//! interfaces followed through netlink link events. Each instance turns the verdicts into a priority offset
//! (weighted objects) or FAULT (unweighted ones, and its own interface going down).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use crate::config::{Config, Instance, Script};

pub struct ScriptCheck {
    pub script: Script,
    /// The script's `user`, else global_defs' `script_user`, else ours.
    user: Option<crate::config::User>,
    next_run: Duration,
    running: Option<(Child, Duration)>,
    successes: u32,
    failures: u32,
    /// The current verdict: true = succeeding.
    pub ok: bool,
}

/// What a script check reported, for the log.
pub enum Verdict {
    Succeeded,
    Failed(Option<i32>),
    TimedOut,
}

#[derive(Default)]
pub struct Tracker {
    pub scripts: Vec<ScriptCheck>,
    /// Interface name -> up with carrier, as the last netlink event said.
    pub links: BTreeMap<String, bool>,
    /// The credentials scripts run with, looked up before the loop.
    users: super::notify::Users,
}

impl Tracker {
    /// Checks for every script some instance tracks; the first run is due at once.
    pub fn new(config: &Config, now: Duration, users: super::notify::Users) -> Tracker {
        let mut tracker = Tracker {
            users,
            ..Tracker::default()
        };
        for script in &config.scripts {
            let used = config
                .instances
                .iter()
                .any(|instance| instance.track_scripts.iter().any(|t| t.name == script.name));
            if used {
                tracker.scripts.push(ScriptCheck {
                    user: script.user.clone().or_else(|| config.global.script_user.clone()),
                    script: script.clone(),
                    next_run: now,
                    running: None,
                    successes: 0,
                    failures: 0,
                    ok: !script.init_fail,
                });
            }
        }
        tracker
    }

    /// After a reload: scripts that kept their name and command keep their verdict and counts, so a reload
    /// neither clears a fault nor lifts a weight. Runs of the old tracker are stopped.
    pub fn carry_over(&mut self, mut previous: Tracker) {
        previous.kill_all();
        self.links = std::mem::take(&mut previous.links);
        for check in &mut self.scripts {
            let old = previous.scripts.iter().find(|old| {
                old.script.name == check.script.name && old.script.command.line == check.script.command.line
            });
            if let Some(old) = old {
                check.ok = old.ok;
                check.successes = old.successes;
                check.failures = old.failures;
            }
        }
    }

    /// The earliest time a script must start or be given up on.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.scripts
            .iter()
            .map(|check| match &check.running {
                Some((_, started)) => *started + check.script.timeout.unwrap_or(check.script.interval),
                None => check.next_run,
            })
            .min()
    }

    /// Starts due scripts, collects finished ones and kills overdue ones. Returns the verdicts that changed.
    pub fn poll(&mut self, now: Duration) -> Vec<(String, Verdict)> {
        let mut changed = Vec::new();
        for check in &mut self.scripts {
            if let Some((child, started)) = &mut check.running {
                let timeout = check.script.timeout.unwrap_or(check.script.interval);
                let outcome = match child.try_wait() {
                    Ok(Some(status)) => Some(if status.success() {
                        Verdict::Succeeded
                    } else {
                        Verdict::Failed(status.code())
                    }),
                    Ok(None) if now >= *started + timeout => {
                        kill_group(child);
                        let _ = child.wait();
                        Some(Verdict::TimedOut)
                    }
                    Ok(None) => None,
                    Err(_) => Some(Verdict::Failed(None)),
                };
                if let Some(outcome) = outcome {
                    check.running = None;
                    if let Some(verdict) = check.record(outcome) {
                        changed.push((check.script.name.clone(), verdict));
                    }
                }
            }
            if check.running.is_none() && now >= check.next_run {
                check.next_run = now + check.script.interval;
                let mut process = Process::new("/bin/sh");
                // Its own process group, so a timeout kills whatever the script started too.
                process.arg("-c").arg(&check.script.command.line).process_group(0);
                process.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                let child = super::notify::as_user(&mut process, check.user.as_ref(), &self.users)
                    .and_then(|()| process.spawn());
                match child {
                    Ok(child) => check.running = Some((child, now)),
                    Err(_) => {
                        if let Some(verdict) = check.record(Verdict::Failed(None)) {
                            changed.push((check.script.name.clone(), verdict));
                        }
                    }
                }
            }
        }
        changed
    }

    /// Priority offset and fault for an instance, from the current verdicts.
    pub fn effect(&self, instance: &Instance) -> (i32, bool) {
        let mut offset = 0;
        let mut faulty = false;
        let own = instance.interface.as_deref();
        if let Some(own) = own {
            if self.links.get(own) == Some(&false) {
                faulty = true;
            }
        }
        for track in &instance.track_scripts {
            let Some(check) = self.scripts.iter().find(|check| check.script.name == track.name) else {
                continue;
            };
            let weight = track.weight.unwrap_or(check.script.weight);
            let reverse = track.reverse || check.script.reverse;
            apply(weight, reverse, check.ok, &mut offset, &mut faulty);
        }
        for track in &instance.track_interfaces {
            if Some(track.name.as_str()) == own {
                continue;
            }
            let up = self.links.get(&track.name).copied().unwrap_or(false);
            apply(track.weight.unwrap_or(0), track.reverse, up, &mut offset, &mut faulty);
        }
        (offset, faulty)
    }

    pub fn kill_all(&mut self) {
        for check in &mut self.scripts {
            if let Some((mut child, _)) = check.running.take() {
                kill_group(&mut child);
                let _ = child.wait();
            }
        }
    }
}

impl ScriptCheck {
    /// Counts one result; returns the verdict when it flips (after `rise` successes or `fall` failures in a row).
    fn record(&mut self, outcome: Verdict) -> Option<Verdict> {
        if matches!(outcome, Verdict::Succeeded) {
            self.failures = 0;
            self.successes += 1;
            if !self.ok && self.successes >= self.script.rise {
                self.ok = true;
                return Some(outcome);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.ok && self.failures >= self.script.fall {
                self.ok = false;
                return Some(outcome);
            }
        }
        None
    }
}

/// keepalived's rule: weight 0 = FAULT while failing; positive weight added while succeeding; negative weight
/// added while failing; `reverse` swaps succeeding and failing.
fn apply(weight: i32, reverse: bool, ok: bool, offset: &mut i32, faulty: &mut bool) {
    let ok = ok != reverse;
    match weight {
        0 if !ok => *faulty = true,
        weight if weight > 0 && ok => *offset += weight,
        weight if weight < 0 && !ok => *offset += weight,
        _ => {}
    }
}

fn kill_group(child: &mut Child) {
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
}
