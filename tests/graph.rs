//! `lab graph`: the seed's topology drawn as Mermaid, DOT and SVG. No privileges needed: a topology file is read,
//! nothing is built.

use halab_tests::workspace_file;
use lab::Topology;

fn seed() -> Topology {
    // Parsed from text under a relative name, so nothing in the output depends on the checkout's location.
    let text = std::fs::read_to_string(workspace_file("topologies/vlan.toml")).unwrap();
    Topology::parse(&text, "topologies/vlan.toml").unwrap()
}

#[test]
fn mermaid_of_the_seed() {
    insta::assert_snapshot!(lab::graph::mermaid(&seed()));
}

#[test]
fn dot_of_the_seed() {
    insta::assert_snapshot!(lab::graph::dot(&seed()));
}

/// The SVG is well-formed XML with one group per segment, host and extra name, each host dropping to each of its
/// segments.
#[test]
fn svg_of_the_seed_has_a_bus_per_segment_and_a_box_per_host() {
    let topology = seed();
    let svg = lab::graph::svg(&topology);
    let document = roxmltree::Document::parse(&svg).unwrap();
    let groups = |class: &str| -> Vec<String> {
        document
            .descendants()
            .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some(class))
            .map(|n| n.attribute("data-name").unwrap().to_string())
            .collect()
    };
    assert_eq!(groups("segment"), ["vlan", "outside"]);
    let hosts: Vec<String> = topology.hosts.iter().map(|h| h.name.clone()).collect();
    assert_eq!(groups("host"), hosts);
    assert_eq!(groups("name"), ["vlan-haproxy"]);
    let router = document
        .descendants()
        .find(|n| n.attribute("data-name") == Some("router") && n.attribute("class") == Some("host"))
        .unwrap();
    assert_eq!(router.children().filter(|n| n.has_tag_name("circle")).count(), 2);
    assert!(svg.contains("eth1 192.168.100.2"));
}
