//! Topologies by name: `lab up vlan.toml` from anywhere. A path that exists is used as it is; a bare name is looked
//! for in the current directory, then `./topologies/`, then the installed topologies (next to an installed `lab`:
//! `<prefix>/share/halab/topologies`, and `/usr/share/halab/topologies`). Shipped topologies name their helper files
//! with `{dir}`, so they run from wherever they are found.

use std::path::{Path, PathBuf};

/// Where Debian's package puts the shipped topologies.
pub const INSTALLED: &str = "/usr/share/halab/topologies";

/// The directories searched, in order, without duplicates.
pub fn directories() -> Vec<PathBuf> {
    let beside_lab = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .map(|prefix| prefix.join("share/halab/topologies"));
    let mut found: Vec<PathBuf> = Vec::new();
    let candidates = [PathBuf::from("."), PathBuf::from("topologies")]
        .into_iter()
        .chain(beside_lab)
        .chain([PathBuf::from(INSTALLED)]);
    for dir in candidates {
        let same = |known: &PathBuf| match (known.canonicalize(), dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => *known == dir,
        };
        if !found.iter().any(same) {
            found.push(dir);
        }
    }
    found
}

/// The topology file `argument` stands for: itself when it exists, else the first `NAME` (or `NAME.toml`) in
/// [`directories`] that is safe to take (see [`trusted`]). The error lists where it looked.
pub fn find(argument: &Path) -> Result<PathBuf, String> {
    find_in(argument, &directories())
}

/// [`find`] in the directories given.
pub fn find_in(argument: &Path, directories: &[PathBuf]) -> Result<PathBuf, String> {
    if argument.is_file() {
        return Ok(argument.to_path_buf());
    }
    let bare = argument.components().count() == 1;
    if bare {
        let with_extension = argument.with_extension("toml");
        for dir in directories {
            for name in [argument, with_extension.as_path()] {
                let candidate = dir.join(name);
                if !candidate.is_file() {
                    continue;
                }
                return match trusted(&candidate) {
                    Ok(()) => Ok(candidate),
                    Err(why) => Err(format!(
                        "{} was found for {} but is not taken: {why}; give its path to use it",
                        candidate.display(),
                        argument.display()
                    )),
                };
            }
        }
    }
    let looked: Vec<String> = if bare {
        directories.iter().map(|dir| dir.display().to_string()).collect()
    } else {
        vec![argument.display().to_string()]
    };
    Err(format!(
        "no topology file {} (looked in {}; `lab topologies` lists what there is)",
        argument.display(),
        looked.join(", ")
    ))
}

/// A file found by searching (rather than named by its path) runs its services as root, so it must be the
/// caller's own or root's and writable by nobody else: a name typed in /tmp must not pick up a file someone else
/// left there.
pub fn trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    // The user behind sudo counts as the caller.
    let caller = std::env::var("SUDO_UID")
        .ok()
        .and_then(|uid| uid.parse().ok())
        .unwrap_or_else(|| nix::unistd::getuid().as_raw());
    if metadata.uid() != 0 && metadata.uid() != caller {
        return Err(format!("it belongs to uid {}", metadata.uid()));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err("others may write to it".to_string());
    }
    Ok(())
}

/// One topology that `lab up NAME` would find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file name, what `lab up` takes.
    pub name: String,
    pub path: PathBuf,
    /// The file's first comment line, if it starts with one.
    pub summary: String,
}

/// Every `*.toml` in [`directories`] that holds a topology (a `name` and `hosts`), the first of each name only.
pub fn list() -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for dir in directories() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml") && path.is_file())
            .collect();
        files.sort();
        for path in files {
            if trusted(&path).is_err() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(summary) = summary(&path) else { continue };
            if !found.iter().any(|known| known.name == name) {
                found.push(Found { name, path, summary });
            }
        }
    }
    found
}

/// The first sentence of a topology file's leading comment (at most 100 characters), or `None` when the file is
/// not a topology at all.
fn summary(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    if !(table.contains_key("name") && table.contains_key("hosts")) {
        return None;
    }
    let comment: Vec<&str> = text
        .lines()
        .map_while(|line| line.strip_prefix('#'))
        .map(str::trim)
        .collect();
    let comment = comment.join(" ");
    let sentence = comment.split(". ").next().unwrap_or_default().trim_end_matches('.');
    Some(match sentence.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &sentence[..cut]),
        None => sentence.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_in_the_first_directory_that_has_it_with_or_without_its_extension() {
        let root = std::env::temp_dir().join(format!("topology-search-{}", std::process::id()));
        let (first, second) = (root.join("first"), root.join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(second.join("vlan.toml"), "").unwrap();
        std::fs::write(second.join("other.toml"), "").unwrap();
        std::fs::write(first.join("other.toml"), "").unwrap();
        let dirs = [first.clone(), second.clone()];
        for file in [
            second.join("vlan.toml"),
            second.join("other.toml"),
            first.join("other.toml"),
        ] {
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        }
        assert_eq!(
            find_in(Path::new("vlan.toml"), &dirs).unwrap(),
            second.join("vlan.toml")
        );
        assert_eq!(find_in(Path::new("vlan"), &dirs).unwrap(), second.join("vlan.toml"));
        assert_eq!(
            find_in(Path::new("other.toml"), &dirs).unwrap(),
            first.join("other.toml")
        );
        let missing = find_in(Path::new("nothing.toml"), &dirs).unwrap_err();
        assert!(
            missing.contains("no topology file nothing.toml (looked in"),
            "{missing}"
        );
        // A path with a directory in it is taken as it is, never searched for.
        assert!(find_in(Path::new("sub/vlan.toml"), &dirs).is_err());
        // A file others may write is found but not taken.
        std::fs::set_permissions(
            second.join("vlan.toml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        let refused = find_in(Path::new("vlan"), &dirs).unwrap_err();
        assert!(
            refused.contains("is not taken: others may write to it; give its path"),
            "{refused}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
