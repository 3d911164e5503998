//! Another machine's CLOCK_MONOTONIC on the coordinator's axis, by the NTP method, sans-IO: the coordinator stamps
//! a request when it leaves (t0) and its answer when it arrives (t3); the machine stamps the answer (t). If the
//! machine read its clock somewhere in between, its offset is t - (t0 + t3) / 2 give or take half the round trip.
//! Of several exchanges the one with the shortest round trip is the tightest bound.

use serde::{Deserialize, Serialize};

/// One round trip; every stamp in nanoseconds of the named machine's CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// The coordinator's clock when the request left.
    pub sent_ns: u64,
    /// The machine's clock when it answered.
    pub remote_ns: u64,
    /// The coordinator's clock when the answer arrived.
    pub received_ns: u64,
}

/// How far a machine's clock is ahead of the coordinator's, and how sure that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offset {
    /// The machine's clock minus the coordinator's.
    pub offset_ns: i64,
    /// The true offset is within this of `offset_ns`: half the round trip it was measured with.
    pub uncertainty_ns: u64,
    pub round_trip_ns: u64,
    /// When it was measured, on the coordinator's clock.
    pub measured_at_ns: u64,
}

impl Offset {
    /// The estimate from the tightest of `exchanges`; `None` if there is none (or only ones whose answer came
    /// before the request left, which a monotonic clock cannot give).
    pub fn best(exchanges: &[Exchange]) -> Option<Offset> {
        exchanges
            .iter()
            .filter(|e| e.received_ns >= e.sent_ns)
            .min_by_key(|e| e.received_ns - e.sent_ns)
            .map(|e| {
                let round_trip_ns = e.received_ns - e.sent_ns;
                let midpoint = e.sent_ns as i128 + (round_trip_ns / 2) as i128;
                Offset {
                    offset_ns: (e.remote_ns as i128 - midpoint) as i64,
                    uncertainty_ns: round_trip_ns.div_ceil(2),
                    round_trip_ns,
                    measured_at_ns: e.received_ns,
                }
            })
    }

    /// A stamp of the machine's clock on the coordinator's.
    pub fn to_local(&self, remote_ns: u64) -> u64 {
        (remote_ns as i128 - self.offset_ns as i128).max(0) as u64
    }
}

/// How many exchanges one estimate takes, and how often a running lab estimates again (clocks drift apart).
pub const EXCHANGES: usize = 16;
pub const REESTIMATE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(sent_ns: u64, remote_ns: u64, received_ns: u64) -> Exchange {
        Exchange {
            sent_ns,
            remote_ns,
            received_ns,
        }
    }

    #[test]
    fn the_tightest_exchange_wins() {
        // The machine is 1 s ahead; a symmetric 100 us round trip and a lopsided 10 ms one.
        let tight = exchange(1_000_000, 1_001_050_000, 1_100_000);
        let loose = exchange(2_000_000, 1_002_009_000, 12_000_000);
        let offset = Offset::best(&[loose, tight]).unwrap();
        assert_eq!(offset.offset_ns, 1_000_000_000);
        assert_eq!(offset.uncertainty_ns, 50_000);
        assert_eq!(offset.to_local(1_001_050_000), 1_050_000);
    }

    #[test]
    fn the_truth_is_within_the_uncertainty() {
        // Whatever split of the round trip between the two directions, the true offset is within the bound.
        let truth: i64 = -7_000_000;
        for outbound in [0u64, 10_000, 50_000, 90_000, 100_000] {
            let sent = 50_000_000u64;
            let remote = (sent + outbound) as i64 + truth;
            let e = exchange(sent, remote as u64, sent + 100_000);
            let offset = Offset::best(&[e]).unwrap();
            assert!((offset.offset_ns - truth).unsigned_abs() <= offset.uncertainty_ns);
        }
    }

    #[test]
    fn no_exchange_no_estimate() {
        assert_eq!(Offset::best(&[]), None);
        assert_eq!(Offset::best(&[exchange(10, 5, 9)]), None);
    }
}
