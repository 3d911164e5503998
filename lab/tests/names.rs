//! Names from anywhere (command line, topology, state file, control request) go through one check before any path
//! is built from them: the refusals read as one sentence each, and whatever passes yields only the lab's own paths.

use std::path::Path;

use lab::names::{self, LabPaths, HOST_NAME_MAX, IFNAME_MAX, LAB_NAME_MAX, SWITCH_HOST};
use proptest::prelude::*;

#[test]
fn refused_lab_names_are_explained() {
    let long = "a".repeat(LAB_NAME_MAX + 1);
    let refusals: Vec<String> = ["/tmp/x", "..", ".", "", "a/b", "Vlan", "-x", "a b", long.as_str()]
        .iter()
        .map(|name| names::check_lab(name).unwrap_err().to_string())
        .collect();
    insta::assert_snapshot!(refusals.join("\n"));
}

#[test]
fn refused_host_names_are_explained() {
    let refusals: Vec<String> = ["switch", "averylonghostname", "h.1", "../x"]
        .iter()
        .map(|name| names::check_host(name).unwrap_err().to_string())
        .collect();
    insta::assert_snapshot!(refusals.join("\n"));
}

/// Every path derived from `lab` and `host`, and the names that must fit kernel limits.
fn derived(lab: &str, host: &str) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let paths = LabPaths::new(lab).unwrap();
    let namespace = paths.namespace(host);
    let etc = paths.etc(host);
    let files = vec![
        paths.run_dir(),
        paths.state_file(),
        paths.control_socket(),
        paths.events_log(),
        paths.logs_dir(),
        paths.tls_dir(),
        namespace.mount.clone(),
        namespace.link.clone(),
        etc.dir,
        paths.service_log(host, "svc"),
    ];
    (files, vec![namespace.name, names::switch_port_name(host, 0)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_is_refused_or_yields_only_the_labs_own_paths(lab in ".{0,100}|[a-z0-9_-]{1,90}", host in ".{0,20}|[a-z0-9_-]{1,14}") {
        let lab_ok = names::check_lab(&lab).is_ok();
        prop_assert_eq!(lab_ok, LabPaths::new(&lab).is_ok());
        let host_ok = names::check_host(&host).is_ok();
        if lab_ok && host_ok {
            let paths = LabPaths::new(&lab).unwrap();
            let (files, kernel_names) = derived(&lab, &host);
            for file in &files {
                prop_assert!(paths.owns(file), "{} is not the lab's own", file.display());
                prop_assert!(!file.to_string_lossy().contains(".."));
            }
            prop_assert!(paths.control_socket().as_os_str().len() < 108);
            prop_assert!(kernel_names[0].len() <= 255 && !kernel_names[0].contains('/'));
            prop_assert!(kernel_names[1].len() <= IFNAME_MAX);
            // A path of another lab is never this lab's.
            let other = format!("{lab}x");
            if names::check_lab(&other).is_ok() {
                prop_assert!(!paths.owns(&LabPaths::new(&other).unwrap().run_dir()));
            }
        } else {
            prop_assert!(!lab_ok || !host_ok);
            if !host_ok {
                prop_assert!(host.is_empty() || host.len() > HOST_NAME_MAX || host == SWITCH_HOST
                    || !host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                    || !host.as_bytes()[0].is_ascii_alphanumeric());
            }
        }
    }

    #[test]
    fn owns_never_accepts_a_path_outside_the_lab(path in "/[a-z./_-]{0,40}") {
        let paths = LabPaths::new("vlan").unwrap();
        let path = Path::new(&path);
        if paths.owns(path) {
            let in_run_dir = path.starts_with("/run/lab/vlan");
            let named = [Path::new("/run/netns"), Path::new("/etc/netns")].contains(&path.parent().unwrap_or(path))
                && path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vlan-"));
            prop_assert!(in_run_dir || named, "{}", path.display());
            prop_assert!(path.components().all(|c| c != std::path::Component::ParentDir));
        }
    }
}
