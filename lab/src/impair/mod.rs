//! Link impairments: what a slow, lossy, unreliable network does to the frames of one host interface in one
//! direction. One model, read from the topology (`impair = { ... }`) and from `lab fault` words, carried out by one
//! of two backends with the same semantics: the kernel's netem ([`netem`]) or the lab's own relay in the switch
//! namespace ([`relay`], driven by the sans-IO [`shaper`]). Random loss is neither: the switch's nftables table drops
//! it, on every kernel and with either backend.

pub mod links;
pub mod netem;
pub mod relay;
pub mod shaper;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which way a frame crosses the link between a host and its switch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Frames the host sends.
    #[default]
    From,
    /// Frames the switch delivers to the host.
    To,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::From => "from",
            Direction::To => "to",
        })
    }
}

/// How a jittered delay is spread around its mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Evenly over delay ± jitter (netem's default).
    #[default]
    Uniform,
    /// A normal distribution with the jitter as its standard deviation (netem's `distribution normal`).
    Normal,
}

/// Which backend carries out a lab's impairments (random loss aside, which is always the switch's nftables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// netem if the kernel has it, the relay otherwise.
    #[default]
    Auto,
    /// The kernel's netem; a lab that needs it fails on a kernel without it.
    Netem,
    /// The lab's own relay in the switch namespace, on any kernel.
    Relay,
}

/// The backend a lab uses, chosen the first time one of its links is impaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Netem,
    Relay,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Netem => "netem",
            Backend::Relay => "relay",
        })
    }
}

/// netem's default queue: frames beyond it are dropped, as on a real link with a full buffer. The relay keeps the
/// same limit.
pub const QUEUE_LIMIT: usize = 1000;

/// A share of frames, 0-100 %, kept to hundredths of a percent (what the switch's random drop resolves).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
pub struct Percent(f64);

/// Always finite, so equal to itself.
impl Eq for Percent {}

/// The mean length, in frames, of a run of lost frames.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Burst(f64);

/// Always finite, so equal to itself.
impl Eq for Burst {}

impl fmt::Display for Burst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Percent {
    pub const ZERO: Percent = Percent(0.0);

    /// A share in 0-100; one that is not zero but rounds to zero is refused (it would silently mean none).
    pub fn new(value: f64) -> Option<Percent> {
        let rounded = (value * 100.0).round() / 100.0;
        let valid = value.is_finite() && (0.0..=100.0).contains(&value) && (value == 0.0 || rounded > 0.0);
        valid.then_some(Percent(rounded))
    }

    /// As a probability, 0-1.
    pub fn chance(self) -> f64 {
        self.0 / 100.0
    }

    pub fn value(self) -> f64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A link rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate(u64);

impl Rate {
    pub fn bits_per_second(self) -> u64 {
        self.0
    }

    /// How long `bytes` take on the wire at this rate, in nanoseconds.
    pub fn transmit_ns(self, bytes: usize) -> u64 {
        ((bytes as u128 * 8 * 1_000_000_000) / self.0 as u128) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)] {
            if self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}bit", self.0)
    }
}

/// Everything a link can do to frames in one direction. The default is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Impairment {
    pub delay: Duration,
    pub jitter: Duration,
    pub distribution: Distribution,
    pub loss: Percent,
    /// The mean length of a run of lost frames: loss in bursts, as a two-state Gilbert-Elliott chain. Without it,
    /// each frame is lost on its own.
    pub burst: Option<Burst>,
    pub duplicate: Percent,
    /// The share of frames sent at once, overtaking the delayed ones (netem's `reorder`); needs a delay.
    pub reorder: Percent,
    /// The share of frames with one bit flipped past their Ethernet header.
    pub corrupt: Percent,
    pub rate: Option<Rate>,
}

impl Impairment {
    pub fn is_perfect(&self) -> bool {
        *self == Impairment::default()
    }

    /// The loss the switch's nftables table carries out: independent loss, on every kernel.
    pub fn random_loss(&self) -> Percent {
        if self.burst.is_none() {
            self.loss
        } else {
            Percent::ZERO
        }
    }

    /// What is left for the backend once random loss is the switch's.
    pub fn for_backend(&self) -> Impairment {
        let mut rest = *self;
        if self.burst.is_none() {
            rest.loss = Percent::ZERO;
        }
        rest
    }

    /// Refuses what no backend can carry out as asked.
    pub fn check(&self) -> Result<(), String> {
        if !self.reorder.is_zero() && self.delay.is_zero() {
            return Err("reorder needs a delay on the same link: reordered frames are the ones sent without it".into());
        }
        if !self.jitter.is_zero() && self.delay.is_zero() {
            return Err("jitter needs a delay on the same link".into());
        }
        if self.burst.is_some() && self.loss.value() >= 100.0 {
            return Err("loss in bursts needs a loss under 100%".into());
        }
        // The chain cannot leave its good state more often than on every frame: a loss rate L with bursts of B
        // frames needs B >= L / (1 - L).
        if let (Some((good_to_bad, _)), Some(burst)) = (self.gilbert_elliott(), self.burst) {
            if good_to_bad > 1.0 {
                let loss = self.loss.chance();
                return Err(format!(
                    "loss {} in bursts of {burst} frames is impossible: at that rate a burst lasts at least {:.2} frames",
                    self.loss,
                    loss / (1.0 - loss)
                ));
            }
        }
        Ok(())
    }

    /// The Gilbert-Elliott chain's transition chances (good to bad, bad to good) for a loss rate and a mean burst
    /// length: the bad state loses every frame and the good state none, so the bad state's share of time is the
    /// loss rate and a burst lasts 1/r frames on average.
    pub fn gilbert_elliott(&self) -> Option<(f64, f64)> {
        let loss = self.loss.chance();
        let r = 1.0 / self.burst?.0;
        Some((loss * r / (1.0 - loss), r))
    }
}

/// The settings in force, as words: `delay 50ms jitter 5ms loss 1%`; a perfect link is `none`.
impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if !self.delay.is_zero() {
            words.push(format!("delay {}", format_duration(self.delay)));
        }
        if !self.jitter.is_zero() {
            words.push(format!("jitter {}", format_duration(self.jitter)));
            if self.distribution == Distribution::Normal {
                words.push("normal".into());
            }
        }
        if !self.loss.is_zero() {
            words.push(format!("loss {}", self.loss));
            if let Some(burst) = self.burst {
                words.push(format!("burst {burst}"));
            }
        }
        for (word, percent) in [
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ] {
            if !percent.is_zero() {
                words.push(format!("{word} {percent}"));
            }
        }
        if let Some(rate) = self.rate {
            words.push(format!("rate {rate}"));
        }
        if words.is_empty() {
            words.push("none".into());
        }
        f.write_str(&words.join(" "))
    }
}

/// A duration as people write it: `200ms`, `1.5s`, `250us`, `0`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        "0".into()
    } else if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", duration.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// A delay: a number with `s`, `ms` or `us`, at most an hour; `0` alone needs no unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let error = || format!("`{text}` is not a duration such as 200ms, 1.5s or 250us (at most 3600s)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(error());
    };
    let seconds = number.parse::<f64>().map_err(|_| error())? * scale;
    if !seconds.is_finite() || !(0.0..=3600.0).contains(&seconds) {
        return Err(error());
    }
    Ok(Duration::from_nanos((seconds * 1e9).round() as u64))
}

/// A share of frames: 0-100, with or without `%`, e.g. `10`, `0.5%`.
pub fn parse_percent(text: &str) -> Result<Percent, String> {
    text.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .and_then(Percent::new)
        .ok_or_else(|| format!("`{text}` is not a percentage in 0-100 (to hundredths)"))
}

/// A mean burst length of lost frames: a number of frames, at least 1.
pub fn parse_burst(text: &str) -> Result<Burst, String> {
    text.parse::<f64>()
        .ok()
        .filter(|b| b.is_finite() && (1.0..=1_000_000.0).contains(b))
        .map(Burst)
        .ok_or_else(|| format!("`{text}` is not a mean burst length in frames (1 or more)"))
}

/// `off`, or a rate as [`parse_rate`] reads it.
pub fn parse_rate_or_off(text: &str) -> Result<Option<Rate>, String> {
    match text {
        "off" => Ok(None),
        _ => parse_rate(text).map(Some),
    }
}

/// A rate as `tc` writes one: a number and `bit`, `kbit`, `mbit`, `gbit` (bits per second) or `bps`, `kbps`,
/// `mbps`, `gbps` (bytes per second); at least 8 kbit/s.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let error = || format!("`{text}` is not a rate such as 1mbit, 500kbit or 10mbps (at least 8kbit)");
    let units: [(&str, f64); 8] = [
        ("kbit", 1e3),
        ("mbit", 1e6),
        ("gbit", 1e9),
        ("kbps", 8e3),
        ("mbps", 8e6),
        ("gbps", 8e9),
        ("bit", 1.0),
        ("bps", 8.0),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))
        .ok_or_else(error)?;
    let bits = number.parse::<f64>().map_err(|_| error())? * scale;
    if !bits.is_finite() || !(8_000.0..=1e12).contains(&bits) {
        return Err(error());
    }
    Ok(Rate(bits.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        for text in ["200ms", "1s", "250us", "0", "1500ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed), "{text}");
        }
        assert_eq!(format_duration(parse_duration("1.5s").unwrap()), "1500ms");
        assert_eq!(parse_percent("0.5%").unwrap().value(), 0.5);
        assert_eq!(parse_percent("10").unwrap().to_string(), "10%");
        assert_eq!(parse_rate("1mbit").unwrap().bits_per_second(), 1_000_000);
        assert_eq!(parse_rate("10mbps").unwrap().to_string(), "80mbit");
        assert_eq!(parse_rate("1500kbit").unwrap().to_string(), "1500kbit");
        assert!(parse_duration("200").unwrap_err().contains("200ms"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_percent("101").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("1bit").is_err());
        assert!(parse_burst("0.5").is_err());
    }

    #[test]
    fn random_loss_goes_to_the_switch_and_bursts_to_the_backend() {
        let random = Impairment {
            loss: Percent::new(10.0).unwrap(),
            ..Default::default()
        };
        assert_eq!(random.random_loss().value(), 10.0);
        assert!(random.for_backend().is_perfect());
        let bursty = Impairment {
            burst: Some(Burst(4.0)),
            ..random
        };
        assert!(bursty.random_loss().is_zero());
        assert_eq!(bursty.for_backend(), bursty);
        let (p, r) = bursty.gilbert_elliott().unwrap();
        assert!(
            (p / (p + r) - 0.10).abs() < 1e-9,
            "the bad state's share is the loss rate"
        );
        assert_eq!(r, 0.25);
    }

    #[test]
    fn settings_print_as_words() {
        let impairment = Impairment {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(5),
            distribution: Distribution::Normal,
            loss: Percent::new(1.0).unwrap(),
            rate: Some(parse_rate("1mbit").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            impairment.to_string(),
            "delay 50ms jitter 5ms normal loss 1% rate 1mbit"
        );
        assert_eq!(Impairment::default().to_string(), "none");
    }

    #[test]
    fn what_no_backend_can_do_is_refused() {
        let reorder = Impairment {
            reorder: Percent::new(25.0).unwrap(),
            ..Default::default()
        };
        assert!(reorder.check().unwrap_err().contains("needs a delay"));
        let impossible = Impairment {
            loss: Percent::new(60.0).unwrap(),
            burst: Some(parse_burst("1").unwrap()),
            ..Default::default()
        };
        let error = impossible.check().unwrap_err();
        assert!(error.contains("at least 1.50 frames"), "{error}");
        assert!(
            parse_percent("0.004").is_err(),
            "a share that rounds to nothing is refused"
        );
        let with_delay = Impairment {
            delay: Duration::from_millis(10),
            ..reorder
        };
        assert_eq!(with_delay.check(), Ok(()));
    }
}
