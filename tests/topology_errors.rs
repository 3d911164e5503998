//! Invalid topologies: every problem is reported with file, line, column and field, and nothing is built.
//! No privileges needed: validation happens before anything touches the kernel.

use halab_tests::workspace_file;
use lab::Topology;

fn errors(case: &str) -> String {
    let path = format!("tests/topologies/invalid/{case}.toml");
    let text = std::fs::read_to_string(workspace_file(&path)).unwrap();
    // Parse from text with the relative path, so the snapshot does not depend on the checkout's location.
    Topology::parse(&text, &path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "no error".into())
}

macro_rules! invalid {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            insta::assert_snapshot!(errors(stringify!($case)));
        }
    )*};
}

invalid!(
    unknown_segment,
    duplicates,
    address_outside_subnet,
    names_too_long,
    missing_program,
    syntax_error,
    unknown_field,
    bad_values,
    host_files,
    impairments,
    machines,
    coordinator_underlay,
);

#[test]
fn the_seed_topology_is_valid() {
    let topology = Topology::load(workspace_file("topologies/vlan.toml")).unwrap();
    assert_eq!(topology.hosts.len(), 7);
    insta::assert_snapshot!(topology.etc_hosts());
}
