//! A host's `filesystem` (how its own directories are laid out) and `files` (what the topology places into them),
//! and the placeholders of its services. Files and services may name any host or extra name in placeholders, so
//! they are checked last, against the otherwise complete topology.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::topology::diagnostics::Checker;
use crate::topology::placeholders::Facts;
use crate::topology::raw::{RawFile, RawFilesystem, RawHost};
use crate::topology::{Bind, FileContent, Filesystem, PlacedFile, Topology, VarSeed};

/// Where a private directory or a bind may not go: the kernel's own file systems, and the root.
const NEVER_MOUNTED_OVER: [&str; 4] = ["/proc", "/sys", "/dev", "/usr"];

impl Checker<'_> {
    pub(super) fn check_filesystem(&mut self, h: usize, raw: Option<&Spanned<RawFilesystem>>) -> Filesystem {
        let Some(raw) = raw else {
            return Filesystem::default();
        };
        let field = |f: &str| format!("hosts[{h}].filesystem.{f}");
        let raw = raw.get_ref();
        let shared = raw.shared.as_ref().is_some_and(|s| *s.get_ref());
        let var = match raw.var.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("empty", _)) => VarSeed::Empty,
            Some(("machine", _)) => VarSeed::Machine,
            Some((other, span)) => {
                self.report(
                    span,
                    &field("var"),
                    format!("var = `{other}`: use \"empty\" (the machine's directories, none of its files) or \"machine\" (its files, copy-on-write)"),
                );
                VarSeed::Empty
            }
        };
        let mut filesystem = Filesystem {
            shared,
            var,
            private: Vec::new(),
            binds: Vec::new(),
        };
        if shared && (!raw.private.is_empty() || !raw.binds.is_empty() || raw.var.is_some()) {
            let span = raw.shared.as_ref().map(|s| s.span()).unwrap_or_default();
            self.report(
                span,
                &field("shared"),
                "a host that shares the machine's filesystem has no `var`, `private` or `binds`",
            );
        }
        for (p, dir) in raw.private.iter().enumerate() {
            if let Some(path) = self.check_mount_target(dir, &field(&format!("private[{p}]"))) {
                filesystem.private.push(path);
            }
        }
        for (b, bind) in raw.binds.iter().enumerate() {
            let field = |f: &str| field(&format!("binds[{b}].{f}"));
            let target = self.check_mount_target(&bind.target, &field("target"));
            let source = self.directory().join(bind.source.get_ref());
            let source = match source.canonicalize() {
                Ok(source) => Some(source),
                Err(e) => {
                    self.report(
                        bind.source.span(),
                        &field("source"),
                        format!("{}: {e}", source.display()),
                    );
                    None
                }
            };
            if let (Some(source), Some(target)) = (source, target) {
                filesystem.binds.push(Bind {
                    source,
                    target,
                    read_only: bind.read_only,
                });
            }
        }
        filesystem
    }

    /// Where a private directory or a bind goes in a host: inside its own directories (made there), or an existing
    /// directory of the machine to mount over.
    fn check_mount_target(&mut self, raw: &Spanned<String>, field: &str) -> Option<PathBuf> {
        let path = match host_path(raw.get_ref()) {
            Ok(path) => path,
            Err(why) => {
                self.report(raw.span(), field, why);
                return None;
            }
        };
        let why = if Filesystem::AREAS.iter().any(|area| path == Path::new(area)) {
            Some(format!("{} is already the host's own", path.display()))
        } else if let Some(kernel) = NEVER_MOUNTED_OVER.iter().find(|dir| path.starts_with(dir)) {
            Some(format!(
                "{} is under {kernel}, which stays the machine's",
                path.display()
            ))
        } else if !Filesystem::AREAS.iter().any(|area| path.starts_with(area)) && !path.is_dir() {
            Some(format!(
                "{} is not a directory on this machine: outside /etc, /var, /run and /tmp, a host's directory is \
                 mounted over an existing one",
                path.display()
            ))
        } else {
            None
        };
        match why {
            Some(why) => {
                self.report(raw.span(), field, why);
                None
            }
            None => Some(path),
        }
    }

    /// The files of every host, and the placeholders in files and services.
    pub(super) fn check_files_and_placeholders(&mut self, raw: &[RawHost], topology: &mut Topology) {
        let dir = self.directory();
        for (h, raw_host) in raw.iter().enumerate() {
            let Some(host) = topology.hosts.get(h) else { continue };
            let facts = Facts {
                topology,
                host,
                dir: &dir,
                paths: None,
            };
            let mut seen = HashSet::new();
            let mut files = Vec::new();
            for (f, raw_file) in raw_host.files.iter().enumerate() {
                let field = format!("hosts[{h}].files[{f}]");
                if let Some(file) = self.check_file(raw_file, &facts, &field) {
                    if !seen.insert(file.path.clone()) {
                        self.report(
                            raw_file.path.span(),
                            &format!("{field}.path"),
                            format!("{} is placed twice", file.path.display()),
                        );
                    }
                    files.push(file);
                }
            }
            for (s, raw_service) in raw_host.services.iter().enumerate() {
                let field = format!("hosts[{h}].services[{s}].argv");
                let problems: Vec<String> = (raw_service.argv.get_ref().iter())
                    .chain(raw_service.env.values())
                    .chain(raw_service.cwd.iter())
                    .flat_map(|text| facts.problems(text))
                    .map(|(_, why)| why)
                    .collect();
                for why in problems {
                    self.report(raw_service.argv.span(), &field, why);
                }
            }
            topology.hosts[h].files = files;
        }
    }

    fn check_file(&mut self, raw: &RawFile, facts: &Facts, field: &str) -> Option<PlacedFile> {
        let field = |f: &str| format!("{field}.{f}");
        let path = match host_path(raw.path.get_ref()) {
            Ok(path) if facts.host.filesystem.is_private(&path) => Some(path),
            Ok(path) if facts.host.filesystem.shared => {
                self.report(
                    raw.path.span(),
                    &field("path"),
                    format!(
                        "{}: this host shares the machine's filesystem, so a file placed there would be the machine's",
                        path.display()
                    ),
                );
                None
            }
            Ok(path) => {
                self.report(
                    raw.path.span(),
                    &field("path"),
                    format!(
                        "{} is not in the host's own directories (/etc, /var, /run, /tmp, or one of its `private` \
                         directories): placing it would change the machine",
                        path.display()
                    ),
                );
                None
            }
            Err(why) => {
                self.report(raw.path.span(), &field("path"), why);
                None
            }
        };
        let template = raw.template.unwrap_or(true);
        let content = self.check_content(raw, facts, template, &field);
        let mode = self.check_mode(raw, &field("mode"));
        let owner = self.check_owner(raw, &field("owner"));
        Some(PlacedFile {
            path: path?,
            content: content?,
            mode: mode?,
            owner: owner?,
            template,
        })
    }

    fn check_content(
        &mut self,
        raw: &RawFile,
        facts: &Facts,
        template: bool,
        field: &dyn Fn(&str) -> String,
    ) -> Option<FileContent> {
        match (&raw.source, &raw.text) {
            (Some(source), None) => {
                let path = self.directory().join(source.get_ref());
                let text = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        self.report(source.span(), &field("source"), format!("{}: {e}", path.display()));
                        return None;
                    }
                };
                if template {
                    let Ok(text) = String::from_utf8(text) else {
                        self.report(
                            source.span(),
                            &field("source"),
                            format!(
                                "{} is not UTF-8 text: give `template = false` to place it as it is",
                                path.display()
                            ),
                        );
                        return None;
                    };
                    for (offset, why) in facts.problems(&text) {
                        self.report_in(&path, &text, offset, &field("source"), why);
                    }
                }
                Some(FileContent::Source(path.canonicalize().unwrap_or(path)))
            }
            (None, Some(text)) => {
                if template {
                    for (offset, why) in facts.problems(text.get_ref()) {
                        let line = text.get_ref()[..offset].matches('\n').count() + 1;
                        self.report(text.span(), &field("text"), format!("line {line} of the text: {why}"));
                    }
                }
                Some(FileContent::Text(text.get_ref().clone()))
            }
            _ => {
                self.report(
                    raw.path.span(),
                    &field("path"),
                    "give exactly one of `source` (a file next to the topology) or `text`",
                );
                None
            }
        }
    }

    fn check_mode(&mut self, raw: &RawFile, field: &str) -> Option<u32> {
        let Some(mode) = &raw.mode else {
            return Some(0o644);
        };
        let parsed = match mode.get_ref() {
            toml::Value::Integer(n) => u32::try_from(*n).ok(),
            toml::Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
            _ => None,
        };
        match parsed.filter(|m| *m <= 0o7777) {
            Some(mode) => Some(mode),
            None => {
                let written = match mode.get_ref() {
                    toml::Value::Integer(n) => format!("0o{n:o}"),
                    other => other.to_string(),
                };
                self.report(
                    mode.span(),
                    field,
                    format!("mode {written} is not a file mode: write it in octal, as 0o640 or \"0640\""),
                );
                None
            }
        }
    }

    fn check_owner(&mut self, raw: &RawFile, field: &str) -> Option<(u32, u32)> {
        let Some(owner) = &raw.owner else {
            return Some((0, 0));
        };
        let (user, group) = match owner.get_ref().split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (owner.get_ref().as_str(), None),
        };
        let found = nix::unistd::User::from_name(user).ok().flatten();
        let Some(found) = found else {
            self.report(owner.span(), field, format!("no user `{user}` on this machine"));
            return None;
        };
        let gid = match group {
            None => found.gid.as_raw(),
            Some(group) => match nix::unistd::Group::from_name(group).ok().flatten() {
                Some(g) => g.gid.as_raw(),
                None => {
                    self.report(owner.span(), field, format!("no group `{group}` on this machine"));
                    return None;
                }
            },
        };
        Some((found.uid.as_raw(), gid))
    }
}

/// A path in a host: absolute, with no `.` or `..`, not the root.
fn host_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("`{text}` is not an absolute path"));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(format!("`{text}` has `.` or `..` in it: write the path plainly"));
    }
    if path.parent().is_none() {
        return Err("`/` is not a file".into());
    }
    Ok(path.components().collect())
}
