//! keepalived's script security, with its rules and its words: who runs a script that names no user
//! (`script_user`, else `keepalived_script` when that user exists, else root), and which scripts are unsafe (one
//! that would run with root rights while a component of its path is not root's, or is writable by a group other
//! than root's or by anyone, a sticky directory aside). With `enable_script_security` unsafe scripts, and scripts
//! with no user to run as, are disabled; without it they run, and the configuration gets keepalived's warning.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Command, Config, Diagnostic, Severity, User};

/// The user keepalived runs scripts as when none is configured, if it exists.
const DEFAULT_SCRIPT_USER: &str = "keepalived_script";

pub(super) fn apply(config: &mut Config, diagnostics: &mut Vec<Diagnostic>) {
    if config.global.script_user.is_none()
        && nix::unistd::User::from_name(DEFAULT_SCRIPT_USER)
            .ok()
            .flatten()
            .is_some()
    {
        config.global.script_user = Some(User {
            user: DEFAULT_SCRIPT_USER.to_string(),
            group: None,
        });
    }
    let mut checker = Checker {
        enforce: config.global.enable_script_security,
        default_user: config.global.script_user.clone(),
        diagnostics,
        scripts: 0,
        insecure: 0,
    };
    let mut disabled_scripts = Vec::new();
    for script in &config.scripts {
        let user = script.user.clone().or_else(|| checker.default_user.clone());
        if !checker.allows(&script.command, user.as_ref()) {
            disabled_scripts.push(script.name.clone());
        }
    }
    config.scripts.retain(|script| !disabled_scripts.contains(&script.name));
    for instance in &mut config.instances {
        instance.track_scripts.retain(|track| {
            let disabled = disabled_scripts.contains(&track.name);
            if disabled {
                let message = format!("Disabling track script {} due to insecure", track.name);
                checker
                    .diagnostics
                    .push(Diagnostic::new(track.at.clone(), Severity::Warning, message));
            }
            !disabled
        });
    }
    let notifies = config
        .instances
        .iter_mut()
        .map(|instance| &mut instance.notify)
        .chain(config.sync_groups.iter_mut().map(|group| &mut group.notify));
    for notify in notifies {
        for slot in [
            &mut notify.master,
            &mut notify.backup,
            &mut notify.fault,
            &mut notify.stop,
            &mut notify.master_rx_lower_pri,
            &mut notify.any,
        ] {
            checker.filter(slot);
        }
    }
    for fifo in &mut config.global.notify_fifos {
        checker.filter(&mut fifo.script);
    }
    if !checker.enforce && checker.scripts > 0 {
        let mut message = "SECURITY VIOLATION - scripts are being executed but script_security not enabled".to_string();
        if checker.insecure > 0 {
            message.push_str(". There are insecure scripts");
        }
        checker
            .diagnostics
            .push(Diagnostic::without_location(Severity::Warning, message));
    }
}

struct Checker<'a> {
    enforce: bool,
    default_user: Option<User>,
    diagnostics: &'a mut Vec<Diagnostic>,
    scripts: usize,
    insecure: usize,
}

impl Checker<'_> {
    /// Clears a command that may not run.
    fn filter(&mut self, slot: &mut Option<Command>) {
        if let Some(command) = slot {
            let user = command.user.clone().or_else(|| self.default_user.clone());
            if !self.allows(command, user.as_ref()) {
                *slot = None;
            }
        }
    }

    fn allows(&mut self, command: &Command, user: Option<&User>) -> bool {
        // keepalived runs nothing for `<FILE` (a test that FILE can be read), so there is nothing to secure.
        if command.line.trim_start().starts_with('<') {
            return true;
        }
        self.scripts += 1;
        let warn = |diagnostics: &mut Vec<Diagnostic>, message: String| {
            diagnostics.push(Diagnostic::new(command.at.clone(), Severity::Warning, message));
        };
        if self.enforce && user.is_none() {
            let message = format!(
                "Unable to set default user {DEFAULT_SCRIPT_USER} for script '{}' - disabling (give script_user or the \
                 script's own user)",
                command.line
            );
            warn(self.diagnostics, message);
            return false;
        }
        let Some(program) = program(&command.line).filter(|program| program.exists()) else {
            let suffix = if self.enforce { " - disabling" } else { "" };
            warn(self.diagnostics, format!("script '{}' not found{suffix}", command.line));
            return !self.enforce;
        };
        let as_root = match user {
            // Without a user, a script runs as the daemon does.
            None => nix::unistd::geteuid().is_root(),
            Some(user) => match user.ids() {
                Ok((uid, gid)) => uid.is_root() || gid.as_raw() == 0,
                Err(error) => {
                    warn(self.diagnostics, format!("script '{}': {error}", command.line));
                    return !self.enforce;
                }
            },
        };
        if !as_root {
            return true;
        }
        if secure(&program) {
            return true;
        }
        self.insecure += 1;
        let suffix = if self.enforce { " - disabling" } else { "" };
        warn(
            self.diagnostics,
            format!("Unsafe permissions found for script '{}'{suffix}", command.line),
        );
        !self.enforce
    }
}

/// The executable a command line starts, found in PATH when it has no `/`.
fn program(line: &str) -> Option<PathBuf> {
    let first = line.split_whitespace().next()?.trim_matches(|c| c == '"' || c == '\'');
    if first.contains('/') {
        return Some(PathBuf::from(first));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(first))
        .find(|candidate| candidate.is_file())
}

/// Every component of the path as written and of the file it leads to is root's and writable only by root (or by
/// root's group), a sticky directory aside.
fn secure(program: &Path) -> bool {
    let Ok(resolved) = std::fs::canonicalize(program) else {
        return false;
    };
    [program, resolved.as_path()].iter().all(|path| {
        path.ancestors().all(|component| {
            let component = if component.as_os_str().is_empty() {
                Path::new(".")
            } else {
                component
            };
            let Ok(metadata) = std::fs::symlink_metadata(component) else {
                return false;
            };
            // A symlink's own mode means nothing; who owns it does (its owner can point it elsewhere).
            if metadata.is_symlink() {
                return metadata.uid() == 0;
            }
            let mode = metadata.mode();
            let sticky_dir = metadata.is_dir() && mode & libc::S_ISVTX != 0;
            let group_writable = mode & libc::S_IWGRP != 0 && metadata.gid() != 0;
            let world_writable = mode & libc::S_IWOTH != 0;
            metadata.uid() == 0 && (sticky_dir || !(group_writable || world_writable))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_owned_system_programs_are_secure_and_a_world_writable_directory_is_not() {
        assert!(secure(Path::new("/bin/sh")));
        let dir = std::env::temp_dir().join(format!("script-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("check.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
        };
        mode(&script, 0o755);
        mode(&dir, 0o755);
        let root = nix::unistd::geteuid().is_root();
        assert_eq!(secure(&script), root, "root's own directory and script");
        mode(&dir, 0o777);
        assert!(!secure(&script), "anyone could replace the script");
        mode(&dir, 0o755);
        mode(&script, 0o757);
        assert!(!secure(&script), "anyone could change the script");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
