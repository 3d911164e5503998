//! `report.html`: one self-contained file (no network, opens from disk) that shows a run as a swimlane chart in
//! SVG: a lane per host with its VRRP instances' states, the addresses that move (who holds a VIP, as its kernel
//! says), its services' lifetimes and its probes' outages; a lane per segment with adverts and gratuitous ARPs as
//! ticks; faults as vertical markers. Every mark has its event's text as a tooltip; dragging across the chart
//! zooms to that time range (double-click zooms out); a scenario's steps are listed beside it.
//!
//! The chart is drawn here, so it reads without script too; the script only re-positions marks when zooming.
//! Instants are binned (a tick per 1/2000 of the run) and spans closer than that merged, so a run of a hundred
//! thousand events stays a few megabytes.

use std::fmt::Write as _;

use crate::lanes::{GroupKind, Lanes, Mark, Span, Track, TrackKind};
use crate::markup::escape;
use crate::scenario::run::StepOutcome;
use crate::timeline::Timeline;
use crate::topology::Topology;

/// The chart's geometry, in SVG user units.
const GUTTER: f64 = 210.0;
const PLOT: f64 = 1000.0;
const ROW: f64 = 16.0;
const HEADER: f64 = 20.0;
const AXIS: f64 = 28.0;
/// Instants are gathered into this many bins over the run.
const BINS: u64 = 2000;

pub struct Report<'a> {
    pub title: String,
    pub timeline: &'a Timeline,
    /// Hosts' own addresses are not drawn (only those that move).
    pub topology: &'a Topology,
    /// A scenario's steps, listed under the chart.
    pub steps: Option<&'a [StepOutcome]>,
}

impl Report<'_> {
    pub fn html(&self) -> String {
        let lanes = self.timeline.lanes();
        let chart = Chart::new(&lanes, self.topology).svg();
        let mut out = String::with_capacity(chart.len() + 16 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>{}</h1>\n<p class=\"help\">Hover a mark for its event; drag across the chart to zoom, double-click to zoom out. Times are seconds since the first event.</p>\n{chart}\n",
            escape(&self.title),
            escape(&self.title)
        );
        if let Some(steps) = self.steps {
            out.push_str(&steps_table(steps));
        }
        let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
        out
    }
}

/// One row of the chart: its label and what it draws.
struct Row<'a> {
    label: String,
    track: &'a Track,
}

struct Chart<'a> {
    lanes: &'a Lanes,
    topology: &'a Topology,
    duration_ns: u64,
}

impl<'a> Chart<'a> {
    fn new(lanes: &'a Lanes, topology: &'a Topology) -> Chart<'a> {
        Chart {
            lanes,
            topology,
            duration_ns: (lanes.end_ns - lanes.start_ns).max(1),
        }
    }

    fn seconds(&self, at_ns: u64) -> f64 {
        at_ns.saturating_sub(self.lanes.start_ns) as f64 / 1e9
    }

    fn x(&self, at_ns: u64) -> f64 {
        GUTTER + at_ns.saturating_sub(self.lanes.start_ns) as f64 / self.duration_ns as f64 * PLOT
    }

    /// The rows of a lane group, in the order a reader wants them: VRRP states, moving addresses, probes, services,
    /// wire.
    fn rows(&self, tracks: &'a [Track], host: &str) -> Vec<Row<'a>> {
        let own: Vec<String> = self
            .topology
            .host(host)
            .map(|h| h.interfaces.iter().map(|i| i.address.to_string()).collect())
            .unwrap_or_default();
        let order = [
            TrackKind::Vrrp,
            TrackKind::Address,
            TrackKind::Probe,
            TrackKind::Link,
            TrackKind::Service,
            TrackKind::Wire,
        ];
        let mut rows = Vec::new();
        for kind in order {
            for track in tracks.iter().filter(|t| t.kind == kind) {
                let address = track
                    .name
                    .strip_prefix("address ")
                    .map(|a| a.split('/').next().unwrap_or(a));
                if address.is_some_and(|a| own.iter().any(|o| o == a)) {
                    continue;
                }
                let label = match kind {
                    TrackKind::Vrrp => track.name.replacen("vrrp ", "VRRP ", 1),
                    TrackKind::Address => format!("holds {}", address.unwrap_or_default()),
                    _ => track.name.clone(),
                };
                rows.push(Row { label, track });
            }
        }
        rows
    }

    fn svg(&self) -> String {
        let mut body = String::new();
        let mut y = AXIS;
        let mut faults: Vec<(&Mark, &str)> = Vec::new();
        for group in &self.lanes.groups {
            faults.extend(group.faults.iter().map(|f| (f, group.name.as_str())));
            let rows = self.rows(&group.tracks, &group.name);
            if rows.is_empty() {
                continue;
            }
            let (class, data) = match group.kind {
                GroupKind::Segment => (
                    "lane segment",
                    format!("data-segment=\"{}\"", escape(group.name.trim_start_matches("wire "))),
                ),
                GroupKind::Host => ("lane host", format!("data-host=\"{}\"", escape(&group.name))),
                GroupKind::Lab => ("lane lab", String::new()),
            };
            let height = HEADER + ROW * rows.len() as f64;
            let _ = write!(
                body,
                "<g class=\"{class}\" {data}><rect class=\"lane-bg\" x=\"0\" y=\"{y}\" width=\"{}\" height=\"{height}\"/><text class=\"lane-name\" x=\"6\" y=\"{}\">{}</text>",
                GUTTER + PLOT,
                y + 14.0,
                escape(&group.name)
            );
            y += HEADER;
            let mut marks = String::new();
            for row in rows {
                let _ = write!(
                    body,
                    "<text class=\"row-name\" x=\"14\" y=\"{}\">{}</text>",
                    y + 12.0,
                    escape(&row.label)
                );
                self.row(&mut marks, &group.name, row.track, y);
                y += ROW;
            }
            // Marks are clipped to the plot when zoomed; the names in the gutter are not.
            let _ = writeln!(body, "<g clip-path=\"url(#plot)\">{marks}</g></g>");
        }
        let height = y + 8.0;
        let mut markers = String::new();
        for (fault, group) in faults {
            let x = self.x(fault.at_ns);
            let t = self.seconds(fault.at_ns);
            let _ = write!(
                markers,
                "<g class=\"fault\" data-t0=\"{t:.6}\" data-host=\"{}\"><line x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{}\" y2=\"{height}\"/><text x=\"{:.2}\" y=\"{}\">{}</text><title>{}</title></g>",
                escape(group),
                AXIS - 4.0,
                x + 2.0,
                AXIS - 6.0,
                escape(&fault.name),
                escape(&format!("{t:.3} s  {}", fault.text))
            );
        }
        format!(
            "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {height}\" width=\"{}\" height=\"{height}\" data-duration=\"{:.6}\">\n<defs><clipPath id=\"plot\"><rect x=\"{GUTTER}\" y=\"0\" width=\"{PLOT}\" height=\"{height}\"/></clipPath></defs>\n<g id=\"axis\">{}</g>\n<g id=\"marks\">\n{body}<g clip-path=\"url(#plot)\">{markers}</g></g>\n<rect id=\"selection\" x=\"0\" y=\"0\" width=\"0\" height=\"{height}\"/>\n</svg>\n",
            GUTTER + PLOT + 10.0,
            GUTTER + PLOT + 10.0,
            self.duration_ns as f64 / 1e9,
            self.axis(height)
        )
    }

    /// Tick marks at a round step, about ten across.
    fn axis(&self, height: f64) -> String {
        let seconds = self.duration_ns as f64 / 1e9;
        let step = nice_step(seconds / 10.0);
        let mut out = String::new();
        let mut t = 0.0;
        while t <= seconds + 1e-9 {
            let x = GUTTER + t / seconds * PLOT;
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{}\" y2=\"{height}\"/><text class=\"tick-label\" x=\"{x:.2}\" y=\"12\">{}</text>",
                AXIS - 12.0,
                trim_float(t)
            );
            t += step;
        }
        out
    }

    fn row(&self, out: &mut String, host: &str, track: &Track, y: f64) {
        let class = match track.kind {
            TrackKind::Vrrp => "vrrp",
            TrackKind::Address => "address",
            TrackKind::Probe => "outage",
            TrackKind::Service => "service",
            TrackKind::Link => "link",
            _ => "wire",
        };
        let address = track
            .name
            .strip_prefix("address ")
            .map(|a| a.split('/').next().unwrap_or(a));
        let extra = match address {
            Some(address) => format!(" data-address=\"{}\"", escape(address)),
            None => String::new(),
        };
        for (span, merged) in self.merged(&track.spans) {
            let (x0, x1) = (self.x(span.from_ns), self.x(span.to_ns));
            let (t0, t1) = (self.seconds(span.from_ns), self.seconds(span.to_ns));
            let state = if track.kind == TrackKind::Vrrp {
                format!(" {}", span.name)
            } else {
                String::new()
            };
            let note = if merged > 1 {
                format!(" ({merged} spans merged)")
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<rect class=\"band {class}{state}\" data-host=\"{}\"{extra} data-t0=\"{t0:.6}\" data-t1=\"{t1:.6}\" x=\"{x0:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\"><title>{}</title></rect>",
                escape(host),
                y + 2.0,
                (x1 - x0).max(1.0),
                ROW - 4.0,
                escape(&format!("{}: {} from {t0:.3} s to {t1:.3} s ({:.3} s){note}", track.name, span.name, t1 - t0))
            );
        }
        self.ticks(out, track, y);
    }

    /// Spans of one track, with those closer than a bin to the previous one of the same name merged into it.
    fn merged(&self, spans: &[Span]) -> Vec<(Span, usize)> {
        let bin = self.duration_ns / BINS;
        let mut merged: Vec<(Span, usize)> = Vec::new();
        for span in spans {
            match merged.last_mut() {
                Some((last, count))
                    if last.name == span.name
                        && span.from_ns.saturating_sub(last.to_ns) < bin
                        && span.to_ns - span.from_ns < bin =>
                {
                    last.to_ns = span.to_ns;
                    *count += 1;
                }
                _ => merged.push((span.clone(), 1)),
            }
        }
        merged
    }

    /// Instants as ticks, one per bin and kind: the first event's text and how many fell there.
    fn ticks(&self, out: &mut String, track: &Track, y: f64) {
        let bin_ns = (self.duration_ns / BINS).max(1);
        let mut bins: Vec<(u64, &str, &Mark, usize)> = Vec::new();
        for mark in &track.instants {
            let bin = (mark.at_ns - self.lanes.start_ns.min(mark.at_ns)) / bin_ns;
            match bins
                .iter_mut()
                .rev()
                .find(|(b, name, _, _)| *b == bin && *name == mark.name)
            {
                Some((_, _, _, count)) => *count += 1,
                None => bins.push((bin, &mark.name, mark, 1)),
            }
        }
        for (_, name, mark, count) in bins {
            let x = self.x(mark.at_ns);
            let t = self.seconds(mark.at_ns);
            let kind = name.replace(' ', "-");
            let more = if count > 1 {
                format!(" (and {} more here)", count - 1)
            } else {
                String::new()
            };
            let (top, height) = if kind == "gratuitous-arp" {
                (y + 1.0, ROW - 2.0)
            } else {
                (y + 5.0, ROW - 10.0)
            };
            let _ = write!(
                out,
                "<rect class=\"tick {kind}\" data-t0=\"{t:.6}\" x=\"{x:.2}\" y=\"{top:.1}\" width=\"1.5\" height=\"{height:.1}\"><title>{}</title></rect>",
                escape(&format!("{t:.3} s  {}{more}", mark.text))
            );
        }
    }
}

fn steps_table(steps: &[StepOutcome]) -> String {
    let mut out = String::from(
        "<h2>Steps</h2>\n<table class=\"steps\"><tr><th>#</th><th>step</th><th>at</th><th>took</th><th>result</th><th>seen</th></tr>\n",
    );
    for step in steps {
        let (class, word) = if step.passed {
            ("passed", "pass")
        } else {
            ("failed", "FAIL")
        };
        let _ = writeln!(
            out,
            "<tr class=\"step {class}\"><td>{}</td><td>{}</td><td>{:.3} s</td><td>{:.3} s</td><td class=\"result\">{word}</td><td><pre>{}</pre></td></tr>",
            step.index + 1,
            escape(&step.label),
            step.at_s,
            step.took_s,
            escape(&step.detail)
        );
    }
    out.push_str("</table>\n");
    out
}

/// A round step (1, 2 or 5 times a power of ten) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    let scaled = raw / power;
    let nice = if scaled < 1.5 {
        1.0
    } else if scaled < 3.5 {
        2.0
    } else if scaled < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * power
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

const STYLE: &str = r#"
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; } h2 { font-size: 15px; }
.help { color: #666; }
svg { background: #fff; border: 1px solid #ddd; user-select: none; }
.lane-bg { fill: #fafafa; stroke: #e4e4e4; }
.lane.segment .lane-bg { fill: #f3f6fa; }
.lane-name { font-weight: 600; font-size: 12px; }
.row-name { font-size: 11px; fill: #555; }
.grid { stroke: #eee; } .tick-label { font-size: 10px; fill: #777; text-anchor: middle; }
.band.vrrp.INIT { fill: #bbb; } .band.vrrp.BACKUP { fill: #6fa8dc; } .band.vrrp.MASTER { fill: #38a169; }
.band.vrrp.FAULT { fill: #ed8936; } .band.vrrp.STOP { fill: #999; }
.band.address { fill: #805ad5; } .band.outage { fill: #e53e3e; } .band.service { fill: #cbd5e0; }
.band.link { fill: #d69e2e; }
.tick.advert { fill: #4a5568; } .tick.gratuitous-arp { fill: #d69e2e; } .tick.arp { fill: #a0aec0; }
.tick.output, .tick.exited { fill: #2d3748; }
.fault line { stroke: #c53030; stroke-width: 1.5; stroke-dasharray: 4 3; } .fault text { font-size: 10px; fill: #c53030; }
#selection { fill: rgba(66, 153, 225, 0.2); pointer-events: none; }
table.steps { border-collapse: collapse; margin-top: 8px; }
.steps td, .steps th { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
.steps pre { margin: 0; white-space: pre-wrap; font-size: 11px; max-width: 720px; }
.step.passed .result { color: #2f855a; font-weight: 600; } .step.failed .result { color: #c53030; font-weight: 700; }
.step.failed { background: #fff5f5; }
"#;

/// Zoom: drag across the chart to show that range, double-click to show everything; every mark carries its times
/// (`data-t0`, `data-t1`, seconds) and is placed again. After drawing, the body's `data-rendered` says what the
/// browser laid out (lanes and address bands with their widths), for tests that read the page.
const SCRIPT: &str = r#"
(function () {
  const svg = document.getElementById('chart');
  const GUTTER = 210, PLOT = 1000, duration = parseFloat(svg.dataset.duration) || 1;
  let from = 0, to = duration;
  const x = t => GUTTER + (t - from) / (to - from) * PLOT;
  function draw() {
    for (const el of svg.querySelectorAll('[data-t0]')) {
      const t0 = parseFloat(el.dataset.t0);
      if (el.tagName === 'g') {
        const line = el.querySelector('line'), text = el.querySelector('text'), px = x(t0);
        line.setAttribute('x1', px); line.setAttribute('x2', px); text.setAttribute('x', px + 2);
      } else if (el.dataset.t1 !== undefined) {
        const a = x(t0), b = x(parseFloat(el.dataset.t1));
        el.setAttribute('x', a); el.setAttribute('width', Math.max(1, b - a));
      } else {
        el.setAttribute('x', x(t0));
      }
    }
    const axis = document.getElementById('axis'), height = svg.viewBox.baseVal.height;
    const raw = (to - from) / 10, power = Math.pow(10, Math.floor(Math.log10(raw))), s = raw / power;
    const step = (s < 1.5 ? 1 : s < 3.5 ? 2 : s < 7.5 ? 5 : 10) * power;
    let html = '';
    for (let t = Math.ceil(from / step) * step; t <= to + 1e-9; t += step) {
      const px = x(t);
      html += `<line class="grid" x1="${px}" x2="${px}" y1="16" y2="${height}"/>` +
              `<text class="tick-label" x="${px}" y="12">${+t.toFixed(3)}</text>`;
    }
    axis.innerHTML = html;
  }
  const selection = document.getElementById('selection');
  const toTime = ev => {
    const point = svg.createSVGPoint(); point.x = ev.clientX; point.y = ev.clientY;
    const p = point.matrixTransform(svg.getScreenCTM().inverse());
    return from + (Math.min(Math.max(p.x, GUTTER), GUTTER + PLOT) - GUTTER) / PLOT * (to - from);
  };
  let start = null;
  svg.addEventListener('mousedown', ev => { start = toTime(ev); });
  svg.addEventListener('mousemove', ev => {
    if (start === null) return;
    const a = x(Math.min(start, toTime(ev))), b = x(Math.max(start, toTime(ev)));
    selection.setAttribute('x', a); selection.setAttribute('width', b - a);
  });
  svg.addEventListener('mouseup', ev => {
    const end = toTime(ev);
    if (start !== null && Math.abs(end - start) > (to - from) / 500) {
      from = Math.min(start, end); to = Math.max(start, end); draw();
    }
    start = null; selection.setAttribute('width', 0);
  });
  svg.addEventListener('dblclick', () => { from = 0; to = duration; draw(); });
  window.halabZoom = (a, b) => { from = a; to = b; draw(); };
  const lanes = [...svg.querySelectorAll('g.lane')].map(g => ({
    host: g.dataset.host || null, segment: g.dataset.segment || null, height: g.getBBox().height }));
  const bands = [...svg.querySelectorAll('rect.band.address')].map(r => ({
    host: r.dataset.host, address: r.dataset.address, t0: parseFloat(r.dataset.t0),
    width: r.getBoundingClientRect().width }));
  document.body.dataset.rendered = JSON.stringify({ lanes, bands });
})();
"#;
