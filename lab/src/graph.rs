//! Pictures of a topology: its segments, hosts (with their addresses and services) and extra names such as a VIP,
//! as Mermaid or Graphviz DOT text, or as SVG laid out here (no Graphviz needed): every segment a horizontal bus,
//! every host a box above them with a drop to each segment it is on, the names dashed.

use std::fmt::Write as _;

use crate::markup::escape;
use crate::topology::{Host, Topology};

/// Mermaid flowchart text (GitHub and many wikis render it).
pub fn mermaid(topology: &Topology) -> String {
    let mut out = String::from("flowchart LR\n");
    for (s, segment) in topology.segments.iter().enumerate() {
        let _ = writeln!(
            out,
            "  s{s}{{{{\"{}<br/>{}\"}}}}",
            mermaid_text(&segment.name),
            segment.subnet
        );
    }
    for (h, host) in topology.hosts.iter().enumerate() {
        let _ = writeln!(out, "  h{h}[\"{}\"]", host_lines(host).join("<br/>"));
        for interface in &host.interfaces {
            let s = segment_index(topology, &interface.segment);
            let label = format!("{} {}/{}", interface.name, interface.address, interface.prefix);
            let _ = writeln!(out, "  h{h} ---|\"{}\"| s{s}", mermaid_text(&label));
        }
    }
    for (n, (name, address)) in topology.names.iter().enumerate() {
        let _ = writeln!(out, "  n{n}([\"{}<br/>{address}\"])", mermaid_text(name));
        if let Some(s) = segment_of(topology, *address) {
            let _ = writeln!(out, "  n{n} -.- s{s}");
        }
    }
    out
}

/// Graphviz DOT text (`dot -Tsvg`, `dot -Tpng`).
pub fn dot(topology: &Topology) -> String {
    let mut out = format!("graph {} {{\n", dot_string(&topology.name));
    out.push_str("  rankdir=LR;\n  node [fontname=\"sans-serif\", fontsize=11];\n  edge [fontname=\"sans-serif\", fontsize=9];\n");
    for (s, segment) in topology.segments.iter().enumerate() {
        let label = format!("{}\n{}", segment.name, segment.subnet);
        let _ = writeln!(out, "  s{s} [shape=hexagon, label={}];", dot_string(&label));
    }
    for (h, host) in topology.hosts.iter().enumerate() {
        let _ = writeln!(
            out,
            "  h{h} [shape=box, label={}];",
            dot_string(&host_lines(host).join("\n"))
        );
        for interface in &host.interfaces {
            let s = segment_index(topology, &interface.segment);
            let label = format!("{} {}/{}", interface.name, interface.address, interface.prefix);
            let _ = writeln!(out, "  h{h} -- s{s} [label={}];", dot_string(&label));
        }
    }
    for (n, (name, address)) in topology.names.iter().enumerate() {
        let label = format!("{name}\n{address}");
        let _ = writeln!(
            out,
            "  n{n} [shape=ellipse, style=dashed, label={}];",
            dot_string(&label)
        );
        if let Some(s) = segment_of(topology, *address) {
            let _ = writeln!(out, "  n{n} -- s{s} [style=dashed];");
        }
    }
    out.push_str("}\n");
    out
}

const COLUMN: f64 = 180.0;
const BOX_WIDTH: f64 = 160.0;
const LINE: f64 = 14.0;
const MARGIN: f64 = 20.0;
const BUS_GAP: f64 = 56.0;

/// A self-contained SVG picture.
pub fn svg(topology: &Topology) -> String {
    let columns = topology.hosts.len() + topology.names.len();
    let box_height = topology
        .hosts
        .iter()
        .map(|h| host_lines(h).len())
        .max()
        .unwrap_or(1)
        .max(2) as f64
        * LINE
        + 10.0;
    let first_bus = MARGIN + 24.0 + box_height + 40.0;
    let width = MARGIN * 2.0 + 120.0 + columns.max(1) as f64 * COLUMN;
    let height = first_bus + topology.segments.len().max(1) as f64 * BUS_GAP + MARGIN;
    let bus_y = |s: usize| first_bus + s as f64 * BUS_GAP;
    let column_x = |c: usize| MARGIN + 120.0 + c as f64 * COLUMN;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<title>{}</title>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">lab {}</text>\n",
        escape(&topology.name),
        MARGIN + 12.0,
        escape(&topology.name)
    );
    for (s, segment) in topology.segments.iter().enumerate() {
        let y = bus_y(s);
        let _ = writeln!(
            out,
            "<g class=\"segment\" data-name=\"{name}\"><line x1=\"{MARGIN}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" \
             stroke=\"#2b5797\" stroke-width=\"4\"/><text x=\"{MARGIN}\" y=\"{ty}\" fill=\"#2b5797\">{name} \
             {subnet}</text></g>",
            name = escape(&segment.name),
            x2 = width - MARGIN,
            ty = y - 8.0,
            subnet = segment.subnet
        );
    }
    let box_y = MARGIN + 24.0;
    for (h, host) in topology.hosts.iter().enumerate() {
        let x = column_x(h);
        let _ = write!(out, "<g class=\"host\" data-name=\"{}\">", escape(&host.name));
        for interface in &host.interfaces {
            let s = segment_index(topology, &interface.segment);
            let (x1, y2) = (x + BOX_WIDTH / 2.0, bus_y(s));
            let _ = write!(
                out,
                "<line x1=\"{x1}\" y1=\"{}\" x2=\"{x1}\" y2=\"{y2}\" stroke=\"#555\"/>\
                 <circle cx=\"{x1}\" cy=\"{y2}\" r=\"4\" fill=\"#555\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"10\">{} {}</text>",
                box_y + box_height,
                x1 + 6.0,
                y2 - 6.0,
                escape(&interface.name),
                interface.address
            );
        }
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{box_y}\" width=\"{BOX_WIDTH}\" height=\"{box_height}\" rx=\"6\" fill=\"#eef3fb\" \
             stroke=\"#2b5797\"/>"
        );
        for (l, text) in host_lines(host).iter().enumerate() {
            let weight = if l == 0 { " font-weight=\"bold\"" } else { "" };
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\"{weight}{}>{}</text>",
                x + 8.0,
                box_y + 15.0 + l as f64 * LINE,
                fit(text),
                escape(text)
            );
        }
        out.push_str("</g>\n");
    }
    for (n, (name, address)) in topology.names.iter().enumerate() {
        let x = column_x(topology.hosts.len() + n);
        let _ = write!(out, "<g class=\"name\" data-name=\"{}\">", escape(name));
        if let Some(s) = segment_of(topology, *address) {
            let x1 = x + BOX_WIDTH / 2.0;
            let _ = write!(
                out,
                "<line x1=\"{x1}\" y1=\"{}\" x2=\"{x1}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>",
                box_y + 2.0 * LINE + 10.0,
                bus_y(s)
            );
        }
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{box_y}\" width=\"{BOX_WIDTH}\" height=\"{}\" rx=\"14\" fill=\"white\" stroke=\"#999\" \
             stroke-dasharray=\"4 3\"/><text x=\"{tx}\" y=\"{}\" font-weight=\"bold\"{}>{}</text>\
             <text x=\"{tx}\" y=\"{}\">{address}</text></g>",
            2.0 * LINE + 10.0,
            box_y + 15.0,
            fit(name),
            escape(name),
            box_y + 15.0 + LINE,
            tx = x + 8.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A host's box: its name, its hostname when different, its services.
fn host_lines(host: &Host) -> Vec<String> {
    let mut lines = vec![host.name.clone()];
    if host.hostname != host.name {
        lines.push(format!("hostname {}", host.hostname));
    }
    lines.extend(host.services.iter().map(|s| format!("▸ {}", s.name)));
    lines
}

fn segment_index(topology: &Topology, segment: &str) -> usize {
    topology.segments.iter().position(|s| s.name == segment).unwrap_or(0)
}

fn segment_of(topology: &Topology, address: std::net::Ipv4Addr) -> Option<usize> {
    topology.segments.iter().position(|s| s.subnet.contains(address))
}

/// Text longer than a box is squeezed into it rather than spilling over.
fn fit(text: &str) -> String {
    let room = BOX_WIDTH - 16.0;
    if text.chars().count() as f64 * 6.6 > room {
        format!(" textLength=\"{room}\" lengthAdjust=\"spacingAndGlyphs\"")
    } else {
        String::new()
    }
}

fn dot_string(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    )
}

/// Mermaid labels are quoted: a quote inside becomes its HTML entity.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
}
