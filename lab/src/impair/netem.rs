//! The kernel backend: netem qdiscs in the switch namespace. Frames to a host leave the switch through its switch
//! port, so that port's root qdisc delays them. Frames from a host arrive on that port, where a qdisc cannot hold
//! them: its ingress hook redirects them to an ifb device of their own, whose root qdisc is the netem, and the ifb
//! hands them back to the bridge.

use std::io;

use super::{format_duration, Direction, Distribution, Impairment, QUEUE_LIMIT};
use crate::plan::InterfacePlan;
use crate::process::{run_tool, HostCommand};

/// The qdisc's words after `tc qdisc replace dev DEV root`.
pub fn qdisc(impairment: &Impairment) -> Vec<String> {
    let mut words = vec!["netem".to_string(), "limit".into(), QUEUE_LIMIT.to_string()];
    if !impairment.delay.is_zero() {
        words.extend(["delay".into(), format_duration(impairment.delay)]);
        if !impairment.jitter.is_zero() {
            words.push(format_duration(impairment.jitter));
            if impairment.distribution == Distribution::Normal {
                words.extend(["distribution".into(), "normal".into()]);
            }
        }
    }
    if let Some((good_to_bad, bad_to_good)) = impairment.gilbert_elliott() {
        // In full: tc reads a double, and a long burst at a low rate makes the chance to enter it tiny.
        let percent = |chance: f64| format!("{}%", chance * 100.0);
        words.extend([
            "loss".into(),
            "gemodel".into(),
            percent(good_to_bad),
            percent(bad_to_good),
            "100%".into(),
            "0%".into(),
        ]);
    } else if !impairment.loss.is_zero() {
        words.extend(["loss".into(), "random".into(), impairment.loss.to_string()]);
    }
    for (word, percent) in [
        ("duplicate", impairment.duplicate),
        ("reorder", impairment.reorder),
        ("corrupt", impairment.corrupt),
    ] {
        if !percent.is_zero() {
            words.extend([word.to_string(), percent.to_string()]);
        }
    }
    if let Some(rate) = impairment.rate {
        words.extend(["rate".into(), format!("{}bit", rate.bits_per_second())]);
    }
    words
}

/// Whether this kernel has netem: a netem qdisc on the switch's loopback, added and removed (the kernel loads the
/// module on the way if it can). The error is the reason, in tc's words.
pub fn available(switch: &HostCommand) -> Result<(), String> {
    run_tool(
        switch,
        "tc",
        &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
        None,
    )
    .map_err(|e| e.to_string())?;
    run_tool(switch, "tc", &["qdisc", "del", "dev", "lo", "root"], None).map_err(|e| e.to_string())
}

/// Puts `impairment` on one direction of a host's link; a perfect link removes the qdisc. Frames from the host
/// need the port's ifb first ([`redirect_to_ifb`]).
pub fn apply(
    switch: &HostCommand,
    port: &InterfacePlan,
    direction: Direction,
    impairment: &Impairment,
) -> io::Result<()> {
    let device = match direction {
        Direction::To => port.switch_port.as_str(),
        Direction::From => port.ifb.as_str(),
    };
    if impairment.is_perfect() {
        // Deleting a root qdisc that is not there fails; a link cleared twice is still clear.
        let _ = run_tool(switch, "tc", &["qdisc", "del", "dev", device, "root"], None);
        return Ok(());
    }
    let mut args: Vec<String> = ["qdisc", "replace", "dev", device, "root"].map(String::from).to_vec();
    args.extend(qdisc(impairment));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_tool(switch, "tc", &args, None)
}

/// Sends every frame arriving on the host's switch port through its own ifb (whose root qdisc the netem for frames
/// from the host goes on) before the bridge sees it. Safe to run again after a failure half-way.
pub fn redirect_to_ifb(switch: &HostCommand, port: &InterfacePlan) -> io::Result<()> {
    load_ifb_without_devices()?;
    let (ifb, index, device) = (port.ifb.as_str(), port.ifb_index.to_string(), port.switch_port.as_str());
    if run_tool(switch, "ip", &["link", "show", "dev", ifb], None).is_err() {
        run_tool(
            switch,
            "ip",
            &["link", "add", ifb, "index", &index, "type", "ifb"],
            None,
        )?;
    }
    run_tool(switch, "ip", &["link", "set", ifb, "up"], None)?;
    run_tool(
        switch,
        "tc",
        &["qdisc", "replace", "dev", device, "handle", "ffff:", "ingress"],
        None,
    )?;
    run_tool(
        switch,
        "tc",
        &[
            "filter", "replace", "dev", device, "parent", "ffff:", "pref", "1", "handle", "1", "matchall", "action",
            "mirred", "egress", "redirect", "dev", ifb,
        ],
        None,
    )
}

/// The ifb module, loaded on demand, would make `ifb0` and `ifb1` in the machine's own namespace: it is loaded here
/// first, asking for none.
fn load_ifb_without_devices() -> io::Result<()> {
    let loaded = || std::path::Path::new("/sys/module/ifb").exists();
    if loaded() {
        return Ok(());
    }
    let modprobe =
        crate::process::find_program("modprobe").map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
    let status = std::process::Command::new(modprobe)
        .args(["ifb", "numifbs=0"])
        .status()?;
    if status.success() && loaded() {
        return Ok(());
    }
    Err(io::Error::other(
        "the ifb module (netem's path for frames from a host) is not loaded and `modprobe ifb numifbs=0` failed; \
         loading it any other way would add ifb0 and ifb1 to the machine's own namespace",
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::impair::{parse_percent, parse_rate};

    #[test]
    fn every_setting_has_its_netem_words() {
        let impairment = Impairment {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            distribution: Distribution::Normal,
            loss: parse_percent("10").unwrap(),
            burst: Some(crate::impair::parse_burst("4").unwrap()),
            duplicate: parse_percent("1").unwrap(),
            reorder: parse_percent("25").unwrap(),
            corrupt: parse_percent("0.1").unwrap(),
            rate: Some(parse_rate("1mbit").unwrap()),
        };
        assert_eq!(
            qdisc(&impairment).join(" "),
            "netem limit 1000 delay 100ms 10ms distribution normal loss gemodel 2.777777777777778% 25% 100% 0% \
             duplicate 1% reorder 25% corrupt 0.1% rate 1000000bit"
        );
        let plain = Impairment {
            delay: Duration::from_micros(1500),
            ..Default::default()
        };
        assert_eq!(qdisc(&plain).join(" "), "netem limit 1000 delay 1500us");
    }
}
