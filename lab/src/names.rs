//! The one definition of what a lab name and a host name may be, and of every name and path derived from them.
//!
//! Lab and host names end up in file names (/run/lab/<lab>, /run/netns/<lab>-<host>, /etc/netns/<lab>-<host>),
//! interface names and a socket path, and they arrive from the command line, topology files, state files and
//! control requests. Whatever the source, they pass [`check_lab`] / [`check_host`] before any path is built from
//! them, so a name can never climb out of the lab's own directories (`..`, `/tmp/x`, an empty string).
//!
//! The length limits are derived from what the names must fit: the control socket's path under the kernel's
//! 108-byte `sun_path` (NUL included), and a host's switch-side interface name `<host>-<n>` under IFNAMSIZ.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where every lab keeps its run directory.
pub const RUN_ROOT: &str = "/run/lab";
/// Where iproute2 looks for named network namespaces; a lab's names there are symbolic links into its run directory.
pub const NETNS_DIR: &str = "/run/netns";
/// Where `ip netns exec` looks for a namespace's own /etc files.
pub const ETC_NETNS_DIR: &str = "/etc/netns";
/// The supervisor's socket, inside the run directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// The per-lab namespace that holds every bridge; a host may not take this name.
pub const SWITCH_HOST: &str = "switch";

/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;
/// `/run/lab/<lab>/control.sock` must fit a socket address.
pub const LAB_NAME_MAX: usize = SOCKET_PATH_MAX - RUN_ROOT.len() - 2 - CONTROL_SOCKET.len();
/// `<host>-<n>`, the switch-side end of a host's first ten interfaces, must fit an interface name.
pub const HOST_NAME_MAX: usize = IFNAME_MAX - 2;

/// A name that is not a plain identifier, or too long for what it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid {what} name: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub reason: String,
}

/// A lab name: `[a-z0-9][a-z0-9_-]*`, at most [`LAB_NAME_MAX`] bytes.
pub fn check_lab(name: &str) -> Result<(), NameError> {
    check_identifier(
        name,
        LAB_NAME_MAX,
        "the control socket's path would not fit a socket address",
    )
    .map_err(|reason| NameError {
        what: "lab",
        name: name.to_string(),
        reason,
    })
}

/// A host name: `[a-z0-9][a-z0-9_-]*`, at most [`HOST_NAME_MAX`] bytes, and not the switch's name.
pub fn check_host(name: &str) -> Result<(), NameError> {
    let error = |reason: String| NameError {
        what: "host",
        name: name.to_string(),
        reason,
    };
    check_identifier(
        name,
        HOST_NAME_MAX,
        "its switch-side interface name `<host>-<n>` would be over the kernel's limit of 15 bytes",
    )
    .map_err(error)?;
    if name == SWITCH_HOST {
        return Err(error(format!(
            "`{SWITCH_HOST}` is reserved for the lab's bridge namespace"
        )));
    }
    Ok(())
}

fn check_identifier(name: &str, max: usize, why_max: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if !name.as_bytes()[0].is_ascii_lowercase() && !name.as_bytes()[0].is_ascii_digit() {
        return Err("it must start with a lowercase letter or a digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "it contains {}: use lowercase letters, digits, `-` and `_`",
            describe(bad)
        ));
    }
    if name.len() > max {
        return Err(format!(
            "it is {} bytes, over the limit of {max} ({why_max})",
            name.len()
        ));
    }
    Ok(())
}

fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("{:?}", c)
    } else {
        format!("`{c}`")
    }
}

/// The namespace of `host` in `lab`, as `ip netns` names it.
pub fn namespace_name(lab: &str, host: &str) -> String {
    format!("{lab}-{host}")
}

/// The switch-side end of a host's n-th interface, inside the lab's switch namespace.
pub fn switch_port_name(host: &str, index: usize) -> String {
    format!("{host}-{index}")
}

/// The names the impairment backends give a host's n-th interface in the switch namespace: the relay's veth pair
/// (the end that joins the bridge in the port's place, and the relay's own end) and netem's ifb for frames from the
/// host. Same length as the switch port's name, in characters an identifier never has.
pub fn impairment_names(host: &str, index: usize) -> [String; 3] {
    [
        format!("{host}+{index}"),
        format!("{host}~{index}"),
        format!("{host}^{index}"),
    ]
}

/// The VXLAN port of the n-th segment's bridge, when the segment is stretched over machines: in the switch
/// namespace, in a character no segment or host name has.
pub fn vxlan_port_name(segment_index: usize) -> String {
    format!("vx={segment_index}")
}

/// Every path of one lab, derived from its validated name. The only way to get one is [`LabPaths::new`], so every
/// path below is under /run/lab/<lab>, /run/netns/<lab>-* or /etc/netns/<lab>-*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPaths {
    lab: String,
}

impl LabPaths {
    pub fn new(lab: &str) -> Result<LabPaths, NameError> {
        check_lab(lab)?;
        Ok(LabPaths { lab: lab.to_string() })
    }

    pub fn lab(&self) -> &str {
        &self.lab
    }

    /// The lab's run directory: its lock, its record and everything it writes.
    pub fn run_dir(&self) -> PathBuf {
        Path::new(RUN_ROOT).join(&self.lab)
    }

    pub fn state_file(&self) -> PathBuf {
        self.run_dir().join("state.json")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join(CONTROL_SOCKET)
    }

    /// Events of a detached lab, as its supervisor writes them.
    pub fn events_log(&self) -> PathBuf {
        self.run_dir().join("events.log")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.run_dir().join("logs")
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.run_dir().join("tls")
    }

    /// Where the lab's namespaces are mounted: being inside the run directory is what proves them the lab's own.
    pub fn namespaces_dir(&self) -> PathBuf {
        self.run_dir().join("netns")
    }

    /// The namespace of `host` (or of the switch, [`SWITCH_HOST`]); `host` must have passed [`check_host`] or be
    /// the switch.
    pub fn namespace(&self, host: &str) -> NamespacePaths {
        debug_assert!(
            host == SWITCH_HOST || check_host(host).is_ok(),
            "unchecked host name {host:?}"
        );
        let name = namespace_name(&self.lab, host);
        NamespacePaths {
            host: host.to_string(),
            link: Path::new(NETNS_DIR).join(&name),
            mount: self.namespaces_dir().join(host),
            name,
        }
    }

    /// The /etc files `ip netns exec` binds over the machine's for `host` (and the lab's processes too).
    pub fn etc(&self, host: &str) -> EtcPaths {
        debug_assert!(check_host(host).is_ok(), "unchecked host name {host:?}");
        let dir = Path::new(ETC_NETNS_DIR).join(namespace_name(&self.lab, host));
        EtcPaths {
            hosts_file: dir.join("hosts"),
            dir,
        }
    }

    /// Every host's own filesystem (see `crate::hostfs`).
    pub fn hosts_dir(&self) -> PathBuf {
        self.run_dir().join("hosts")
    }

    /// The directories of `host`'s own filesystem; `host` must have passed [`check_host`].
    pub fn host_fs(&self, host: &str) -> HostFsPaths {
        debug_assert!(check_host(host).is_ok(), "unchecked host name {host:?}");
        let root = self.hosts_dir().join(host);
        HostFsPaths {
            run: root.join("run"),
            tmp: root.join("tmp"),
            etc: root.join("etc"),
            etc_upper: root.join("layers/etc"),
            etc_work: root.join("layers/etc.work"),
            var: root.join("var"),
            var_upper: root.join("layers/var"),
            var_work: root.join("layers/var.work"),
            private: root.join("private"),
            root,
        }
    }

    /// The machine's directories under /var, none of their files: the lower layer of the hosts' /var.
    pub fn var_skeleton(&self) -> PathBuf {
        // Inside the hosts' directory, which no host sees: a host could not write into another's lower layer.
        self.hosts_dir().join(".var-skeleton")
    }

    /// An empty directory, shown read-only over [`LabPaths::hosts_dir`] inside hosts so that none sees another's
    /// files.
    pub fn empty_dir(&self) -> PathBuf {
        self.hosts_dir().join(".empty")
    }

    /// Where the hosts file every host's /etc/netns directory links is written first, on file systems that cannot
    /// make anonymous files; it is removed once linked.
    pub fn staged_etc_hosts(&self) -> PathBuf {
        Path::new(ETC_NETNS_DIR).join(format!(".{}.hosts", self.lab))
    }

    pub fn service_log(&self, host: &str, service: &str) -> PathBuf {
        self.logs_dir().join(format!("{host}.{service}.log"))
    }

    /// Whether `path` is one the lab may own: inside its run directory, or one of its /run/netns or /etc/netns names.
    pub fn owns(&self, path: &Path) -> bool {
        use std::path::Component;
        if path
            .components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return false;
        }
        if path.starts_with(self.run_dir()) {
            return true;
        }
        let prefix = format!("{}-", self.lab);
        [NETNS_DIR, ETC_NETNS_DIR].iter().any(|dir| {
            path.parent() == Some(Path::new(dir))
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(&prefix))
                    .is_some_and(|host| host == SWITCH_HOST || check_host(host).is_ok())
        })
    }
}

/// Where one namespace of a lab lives: mounted inside the run directory, named in /run/netns by a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePaths {
    pub host: String,
    /// `<lab>-<host>`, for `ip netns exec`.
    pub name: String,
    /// The namespace file (an nsfs bind mount) inside the run directory.
    pub mount: PathBuf,
    /// /run/netns/<lab>-<host>, a symbolic link to `mount`.
    pub link: PathBuf,
}

/// A host's own filesystem, inside the lab's run directory: what its processes see as /run, /tmp, /etc and /var.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFsPaths {
    pub root: PathBuf,
    pub run: PathBuf,
    pub tmp: PathBuf,
    /// The merged /etc (an overlay of the machine's /etc and `etc_upper`).
    pub etc: PathBuf,
    pub etc_upper: PathBuf,
    pub etc_work: PathBuf,
    /// The merged /var.
    pub var: PathBuf,
    pub var_upper: PathBuf,
    pub var_work: PathBuf,
    /// The topology's extra private directories, numbered in topology order.
    pub private: PathBuf,
}

impl HostFsPaths {
    pub fn private_dir(&self, n: usize) -> PathBuf {
        self.private.join(n.to_string())
    }
}

/// /etc/netns/<lab>-<host> and the hosts file in it: a hard link of one file, the same for every host of the lab
/// (one directory and one link per host: creating files costs ten times as much on some disks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcPaths {
    pub dir: PathBuf,
    pub hosts_file: PathBuf,
}

impl fmt::Display for NamespacePaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "namespace {} ({})", self.name, self.link.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_what_the_names_must_fit() {
        let longest = "a".repeat(LAB_NAME_MAX);
        let socket = LabPaths::new(&longest).unwrap().control_socket();
        assert_eq!(socket.as_os_str().len(), SOCKET_PATH_MAX);
        assert!(check_lab(&"a".repeat(LAB_NAME_MAX + 1)).is_err());
        let host = "h".repeat(HOST_NAME_MAX);
        assert_eq!(switch_port_name(&host, 9).len(), IFNAME_MAX);
        assert!(check_host(&format!("{host}x")).is_err());
    }

    #[test]
    fn path_like_names_are_refused() {
        for name in [
            "", ".", "..", "/tmp/x", "a/b", "-a", "_a", "A", "a.b", "a b", "a\n", "é",
        ] {
            assert!(check_lab(name).is_err(), "{name:?}");
            assert!(check_host(name).is_err(), "{name:?}");
        }
        assert!(check_host(SWITCH_HOST).is_err());
        assert!(check_lab("vlan").is_ok() && check_host("redis-1v").is_ok() && check_host("h_2").is_ok());
    }

    #[test]
    fn owned_paths() {
        let paths = LabPaths::new("vlan").unwrap();
        assert!(paths.owns(Path::new("/run/lab/vlan/logs/a.b.log")));
        assert!(paths.owns(Path::new("/run/netns/vlan-haproxy1")));
        assert!(paths.owns(Path::new("/etc/netns/vlan-switch")));
        assert!(!paths.owns(Path::new("/run/lab/vlan/../other")));
        assert!(!paths.owns(Path::new("/run/lab/vlanx/state.json")));
        assert!(!paths.owns(Path::new("/run/netns/other-h1")));
        assert!(!paths.owns(Path::new("/etc/netns/vlan-a/hosts")));
        assert!(!paths.owns(Path::new("/tmp/x")));
    }
}
