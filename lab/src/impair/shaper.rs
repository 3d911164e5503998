//! The decisions of one impaired direction, sans IO: given a frame's arrival time and length, how many copies
//! leave, when, and which bit of each is flipped. Time is passed in (nanoseconds of CLOCK_MONOTONIC) and the
//! randomness is seeded, so the statistics are tested without a network. The order of decisions is netem's:
//! duplicate, then loss, then corruption, then the delay (or, for a reordered frame, none), then the rate.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::{Distribution, Impairment};

/// The length of an Ethernet header: corruption flips a bit past it, so the frame still reaches its host and the
/// damage is the receiver's to find.
const ETHERNET_HEADER: usize = 14;

/// One copy of a frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// When it leaves, in nanoseconds of the same clock as the arrival.
    pub at: u64,
    /// The byte and the bit mask to flip in it, counted from the start of the Ethernet frame.
    pub corrupt: Option<(usize, u8)>,
}

pub struct Shaper {
    impairment: Impairment,
    rng: SmallRng,
    /// The Gilbert-Elliott chain's state: in a burst of loss.
    in_burst: bool,
    /// When the last rate-limited frame finishes leaving.
    link_free_at: u64,
}

impl Shaper {
    pub fn new(impairment: Impairment, seed: u64) -> Shaper {
        Shaper {
            impairment,
            rng: SmallRng::seed_from_u64(seed),
            in_burst: false,
            link_free_at: 0,
        }
    }

    pub fn set(&mut self, impairment: Impairment) {
        self.impairment = impairment;
    }

    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// The fate of a frame of `len` bytes arriving at `now`: no departure (lost), one, or two (duplicated).
    pub fn admit(&mut self, now: u64, len: usize) -> Vec<Departure> {
        if self.impairment.is_perfect() {
            return vec![Departure { at: now, corrupt: None }];
        }
        let mut copies = 1;
        if self.happens(self.impairment.duplicate.chance()) {
            copies += 1;
        }
        if self.lost() {
            copies -= 1;
        }
        // netem sends a duplicate through its queue again, where it meets a loss of its own.
        if copies == 2 && self.lost() {
            copies = 1;
        }
        (0..copies)
            .map(|_| {
                let corrupt = self.corruption(len);
                Departure {
                    at: self.departure(now, len),
                    corrupt,
                }
            })
            .collect()
    }

    fn happens(&mut self, chance: f64) -> bool {
        chance > 0.0 && self.rng.random::<f64>() < chance
    }

    /// netem's order within the chain: move between states first, then lose with the chance of the state left.
    fn lost(&mut self) -> bool {
        match self.impairment.gilbert_elliott() {
            Some((good_to_bad, bad_to_good)) => {
                if self.in_burst {
                    if self.happens(bad_to_good) {
                        self.in_burst = false;
                    }
                    true
                } else {
                    if self.happens(good_to_bad) {
                        self.in_burst = true;
                    }
                    false
                }
            }
            None => self.happens(self.impairment.loss.chance()),
        }
    }

    fn corruption(&mut self, len: usize) -> Option<(usize, u8)> {
        if len <= ETHERNET_HEADER || !self.happens(self.impairment.corrupt.chance()) {
            return None;
        }
        let byte = self.rng.random_range(ETHERNET_HEADER..len);
        Some((byte, 1 << self.rng.random_range(0..8u8)))
    }

    fn departure(&mut self, now: u64, len: usize) -> u64 {
        let delay = self.impairment.delay;
        if !delay.is_zero() && self.happens(self.impairment.reorder.chance()) {
            return now;
        }
        let at = now + self.sample_delay();
        match self.impairment.rate {
            Some(rate) => {
                self.link_free_at = at.max(self.link_free_at) + rate.transmit_ns(len);
                self.link_free_at
            }
            None => at,
        }
    }

    /// The delay in nanoseconds, with jitter drawn from its distribution and never below zero.
    fn sample_delay(&mut self) -> u64 {
        let mean = self.impairment.delay.as_nanos() as f64;
        let jitter = self.impairment.jitter.as_nanos() as f64;
        if jitter == 0.0 {
            return mean as u64;
        }
        let offset = match self.impairment.distribution {
            Distribution::Uniform => (self.rng.random::<f64>() * 2.0 - 1.0) * jitter,
            Distribution::Normal => {
                // Box-Muller: two uniform draws make one standard normal one.
                let (u, v): (f64, f64) = (1.0 - self.rng.random::<f64>(), self.rng.random::<f64>());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * jitter
            }
        };
        (mean + offset).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::impair::{parse_percent, parse_rate};

    const MS: u64 = 1_000_000;

    fn shaper(impairment: Impairment) -> Shaper {
        Shaper::new(impairment, 7)
    }

    #[test]
    fn a_perfect_link_sends_every_frame_at_once() {
        let mut link = shaper(Impairment::default());
        assert_eq!(link.admit(5, 60), vec![Departure { at: 5, corrupt: None }]);
    }

    #[test]
    fn delay_with_uniform_jitter_stays_in_its_band_around_the_mean() {
        let mut link = shaper(Impairment {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            ..Default::default()
        });
        let delays: Vec<u64> = (0..10_000).map(|_| link.admit(0, 60)[0].at).collect();
        assert!(delays.iter().all(|d| (90 * MS..=110 * MS).contains(d)));
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((mean - 100.0 * MS as f64).abs() < 0.5 * MS as f64, "mean {mean}");
    }

    #[test]
    fn normal_jitter_has_the_jitter_as_its_deviation() {
        let mut link = shaper(Impairment {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            distribution: Distribution::Normal,
            ..Default::default()
        });
        let delays: Vec<f64> = (0..20_000)
            .map(|_| link.admit(0, 60)[0].at as f64 / MS as f64)
            .collect();
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let deviation = (delays.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / delays.len() as f64).sqrt();
        assert!((mean - 100.0).abs() < 0.5, "mean {mean}");
        assert!((deviation - 10.0).abs() < 0.5, "deviation {deviation}");
    }

    /// The number of events in `n` trials of chance `p` lies within 5 standard deviations of its mean.
    fn binomial(count: usize, n: usize, p: f64) -> bool {
        let (mean, deviation) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
        (count as f64 - mean).abs() <= 5.0 * deviation
    }

    #[test]
    fn loss_duplication_and_corruption_happen_at_their_rates() {
        let n = 20_000;
        let mut link = shaper(Impairment {
            loss: parse_percent("10").unwrap(),
            ..Default::default()
        });
        let lost = (0..n).filter(|_| link.admit(0, 60).is_empty()).count();
        assert!(binomial(lost, n, 0.10), "{lost} lost");
        let mut link = shaper(Impairment {
            duplicate: parse_percent("5").unwrap(),
            ..Default::default()
        });
        let doubled = (0..n).filter(|_| link.admit(0, 60).len() == 2).count();
        assert!(binomial(doubled, n, 0.05), "{doubled} duplicated");
        let mut link = shaper(Impairment {
            corrupt: parse_percent("2").unwrap(),
            ..Default::default()
        });
        let corrupt: Vec<(usize, u8)> = (0..n).filter_map(|_| link.admit(0, 60)[0].corrupt).collect();
        assert!(binomial(corrupt.len(), n, 0.02), "{} corrupted", corrupt.len());
        assert!(corrupt
            .iter()
            .all(|(byte, mask)| (14..60).contains(byte) && mask.count_ones() == 1));
    }

    #[test]
    fn bursty_loss_keeps_its_rate_and_its_mean_burst_length() {
        let mut link = shaper(Impairment {
            loss: parse_percent("10").unwrap(),
            burst: Some(crate::impair::parse_burst("4").unwrap()),
            ..Default::default()
        });
        let lost: Vec<bool> = (0..200_000).map(|_| link.admit(0, 60).is_empty()).collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts as f64;
        assert!((rate - 0.10).abs() < 0.01, "rate {rate}");
        assert!((mean_burst - 4.0).abs() < 0.3, "mean burst {mean_burst}");
    }

    #[test]
    fn reordered_frames_skip_the_delay() {
        let mut link = shaper(Impairment {
            delay: Duration::from_millis(50),
            reorder: parse_percent("25").unwrap(),
            ..Default::default()
        });
        let at_once = (0..10_000).filter(|_| link.admit(0, 60)[0].at == 0).count();
        assert!(binomial(at_once, 10_000, 0.25), "{at_once} sent at once");
    }

    #[test]
    fn a_rate_spaces_frames_by_their_transmission_time() {
        let mut link = shaper(Impairment {
            rate: Some(parse_rate("1mbit").unwrap()),
            ..Default::default()
        });
        // 1250 bytes at 1 Mbit/s take 10 ms: back-to-back frames leave 10 ms apart.
        let departures: Vec<u64> = (0..5).map(|_| link.admit(0, 1250)[0].at).collect();
        assert_eq!(departures, [10 * MS, 20 * MS, 30 * MS, 40 * MS, 50 * MS]);
        // A frame after the link went idle waits only for itself.
        assert_eq!(link.admit(100 * MS, 1250)[0].at, 110 * MS);
    }
}
