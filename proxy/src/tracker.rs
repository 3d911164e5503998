//! Which node the proxy routes to, decided from what the Sentinels and the nodes said, without I/O: the caller
//! feeds answers in and reads [`Tracker::route`].
//!
//! With Sentinels: the candidate is the address a quorum of them names (their latest answer or `+switch-master`
//! each), and it is routed to only once the node itself has answered `ROLE` master since it became the candidate.
//! A replica seen turning master while another node is the candidate is a failover under way (a promotion, or a
//! `SENTINEL FAILOVER` by hand, which leaves the old master accepting writes it will throw away): the proxy refuses
//! from that moment until the Sentinels name the promoted node or it says replica again. A node that comes back
//! saying master without having been seen as a replica (a restarted old master) is not a promotion.
//! Without Sentinels (role checks only, as HAProxy does): the one server that says master; two servers saying
//! master is a split brain, and the proxy refuses rather than guess (HAProxy round-robins writes between them).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;

use std::time::Duration;

use crate::sentinel::{agreed_master, count_votes, Progress, Role, Switch, Vote};

/// How long an announced failover holds routing back when nothing else ends it: Sentinel's own default
/// failover-timeout is 180 s, but a failover that produced nothing in a minute has failed.
pub const FAILOVER_HOLD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Master(SocketAddrV4),
    Refuse(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No address is named by a quorum of Sentinels.
    NoQuorum,
    /// Several addresses are named by the same number of Sentinels, at or above the quorum.
    Tie(Vec<SocketAddrV4>),
    /// The Sentinels agree on this node, but it has not said it is master since.
    Unconfirmed(SocketAddrV4),
    /// A replica was promoted while the Sentinels still name another node.
    FailoverUnderway(SocketAddrV4),
    /// Sentinel number N announced `+try-failover`; its result is not known yet.
    FailoverStarted(usize),
    /// Role checks only: no server says master.
    NoMaster,
    /// Role checks only: more than one server says master.
    SplitBrain(Vec<SocketAddrV4>),
}

#[derive(Debug, Clone)]
pub struct Tracker {
    quorum: usize,
    /// The latest address each Sentinel named (`None`: unknown, unreachable, or it knows no master).
    named: Vec<Option<SocketAddrV4>>,
    /// What each node said the last time it answered (kept while it cannot be asked: a failed check must not make
    /// a promoted replica look new, or a master look like a replica).
    roles: HashMap<SocketAddrV4, Role>,
    /// Nodes whose latest check failed.
    unreachable: HashSet<SocketAddrV4>,
    candidate: Option<SocketAddrV4>,
    confirmed: bool,
    /// Nodes seen going from replica to master that the Sentinels do not name yet.
    promoted: Vec<SocketAddrV4>,
    /// Sentinels that announced `+try-failover` and have not abandoned it: when (the caller's clock, ns), and the
    /// master being failed over.
    trying: Vec<Option<(u64, Option<SocketAddrV4>)>>,
    master_name: String,
}

impl Tracker {
    /// A tracker for `sentinels` Sentinels (0: role checks only) watching `master_name`.
    pub fn new(sentinels: usize, quorum: usize, master_name: &str) -> Tracker {
        Tracker {
            quorum,
            named: vec![None; sentinels],
            roles: HashMap::new(),
            unreachable: HashSet::new(),
            candidate: None,
            confirmed: false,
            promoted: Vec::new(),
            trying: vec![None; sentinels],
            master_name: master_name.to_string(),
        }
    }

    /// Sentinel `index` answered `get-master-addr-by-name` (or could not be asked: `None`).
    pub fn sentinel_named(&mut self, index: usize, address: Option<SocketAddrV4>) {
        if let Some(slot) = self.named.get_mut(index) {
            *slot = address;
        }
        self.recount();
    }

    /// Sentinel `index` published `+switch-master`; announcements for other masters are ignored.
    pub fn switch_announced(&mut self, index: usize, switch: &Switch) {
        if switch.name == self.master_name {
            self.sentinel_named(index, Some(switch.to));
        }
    }

    /// Sentinel `index` announced that it starts (`+try-failover`) or abandons (`-failover-abort-*`) a failover, at
    /// `now_ns`. From the first start, nothing is routed until a quorum names another node, the attempt is
    /// abandoned, or [`FAILOVER_HOLD`] passes. (`+failover-end` does not lift it: the leader says it before the other
    /// Sentinels have learnt the new master, and the quorum still names the old one for a moment.) Sentinel announces the attempt at least one of its 100 ms ticks before it promotes a replica, so the
    /// old master stops receiving writes before the replica stops following it (`SENTINEL FAILOVER` by hand leaves
    /// the old master accepting writes it will throw away).
    pub fn failover_announced(&mut self, index: usize, progress: &Progress, now_ns: u64) {
        if progress.name != self.master_name {
            return;
        }
        // A late attempt against a master the Sentinels have already replaced says nothing about the current one.
        if progress.started && progress.master.is_some() && progress.master != self.candidate {
            return;
        }
        if let Some(slot) = self.trying.get_mut(index) {
            if progress.started {
                *slot = Some((now_ns, progress.master));
            } else if progress.channel.starts_with("-failover-abort") {
                *slot = None;
            }
        }
    }

    /// Forgets failover attempts older than [`FAILOVER_HOLD`] (a Sentinel that died mid-failover).
    pub fn expire(&mut self, now_ns: u64) {
        for slot in &mut self.trying {
            if slot.is_some_and(|(at, _)| now_ns.saturating_sub(at) > FAILOVER_HOLD.as_nanos() as u64) {
                *slot = None;
            }
        }
    }

    /// A node answered `ROLE` (or could not be asked: `None`).
    pub fn role_answered(&mut self, node: SocketAddrV4, role: Option<Role>) {
        if Some(node) == self.candidate {
            self.confirmed = role == Some(Role::Master);
        }
        let Some(role) = role else {
            self.unreachable.insert(node);
            return;
        };
        self.unreachable.remove(&node);
        let before = self.roles.insert(node, role);
        if role == Role::Master && before == Some(Role::Replica) && Some(node) != self.candidate {
            if !self.promoted.contains(&node) {
                self.promoted.push(node);
            }
        } else if role != Role::Master {
            self.promoted.retain(|n| *n != node);
        }
    }

    fn recount(&mut self) {
        let candidate = agreed_master(&self.named, self.quorum);
        if candidate != self.candidate {
            self.candidate = candidate;
            // A new candidate must confirm itself from now on: an earlier "master" may predate its demotion.
            self.confirmed = false;
            self.promoted.retain(|n| Some(*n) != candidate);
            // A quorum naming another node is the announced failover's result. Losing the quorum, or the failing
            // master named again, is not: the hold stays until abandoned or expired.
            if let Some(new) = candidate {
                for slot in &mut self.trying {
                    if slot.is_some_and(|(_, failing)| failing != Some(new)) {
                        *slot = None;
                    }
                }
            }
        }
    }

    pub fn route(&self) -> Route {
        if self.named.is_empty() {
            let mut masters: Vec<SocketAddrV4> = self
                .roles
                .iter()
                .filter(|(node, role)| **role == Role::Master && !self.unreachable.contains(node))
                .map(|(node, _)| *node)
                .collect();
            masters.sort();
            return match masters.as_slice() {
                [] => Route::Refuse(Refusal::NoMaster),
                [one] => Route::Master(*one),
                _ => Route::Refuse(Refusal::SplitBrain(masters)),
            };
        }
        if let Some(promoted) = self.promoted.first() {
            return Route::Refuse(Refusal::FailoverUnderway(*promoted));
        }
        if let Some(index) = self.trying.iter().position(Option::is_some) {
            return Route::Refuse(Refusal::FailoverStarted(index));
        }
        match (self.candidate, self.confirmed) {
            (None, _) => match count_votes(&self.named, self.quorum) {
                Vote::Tie(leaders) => Route::Refuse(Refusal::Tie(leaders)),
                Vote::NoQuorum | Vote::Agreed(_) => Route::Refuse(Refusal::NoQuorum),
            },
            (Some(node), true) => Route::Master(node),
            (Some(node), false) => Route::Refuse(Refusal::Unconfirmed(node)),
        }
    }

    /// The latest address each Sentinel named.
    pub fn named(&self) -> &[Option<SocketAddrV4>] {
        &self.named
    }

    /// The node the Sentinels agree on, confirmed or not: the one to ask `ROLE`.
    pub fn candidate(&self) -> Option<SocketAddrV4> {
        self.candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    /// A tracker of three Sentinels (quorum 2) that all name `master`.
    fn all_three_name(master: SocketAddrV4) -> Tracker {
        let mut tracker = Tracker::new(3, 2, "mymaster");
        for index in 0..3 {
            tracker.sentinel_named(index, Some(master));
        }
        tracker
    }

    #[test]
    fn routes_only_to_a_quorum_choice_the_node_confirms() {
        let (old, new) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = Tracker::new(3, 2, "mymaster");
        assert_eq!(tracker.route(), Route::Refuse(Refusal::NoQuorum));
        tracker.sentinel_named(0, Some(old));
        assert_eq!(
            tracker.route(),
            Route::Refuse(Refusal::NoQuorum),
            "one Sentinel is not a quorum"
        );
        tracker.sentinel_named(1, Some(old));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::Unconfirmed(old)));
        tracker.role_answered(old, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Master(old));

        // A failover: one Sentinel announces it, then a second; the promoted replica must confirm first.
        let switch = Switch {
            name: "mymaster".into(),
            from: old,
            to: new,
        };
        tracker.switch_announced(0, &switch);
        assert_eq!(
            tracker.route(),
            Route::Refuse(Refusal::NoQuorum),
            "the Sentinels disagree"
        );
        tracker.switch_announced(2, &switch);
        assert_eq!(tracker.route(), Route::Refuse(Refusal::Unconfirmed(new)));
        tracker.role_answered(new, Some(Role::Replica));
        assert_eq!(
            tracker.route(),
            Route::Refuse(Refusal::Unconfirmed(new)),
            "not promoted yet"
        );
        tracker.role_answered(new, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Master(new));
    }

    #[test]
    fn a_restarted_old_master_is_never_routed_to() {
        // The seed's pitfall: after a failover the old master restarts and says master for ~10 s.
        let (old, new) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = all_three_name(new);
        tracker.role_answered(new, Some(Role::Master));
        tracker.role_answered(old, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Master(new));
    }

    #[test]
    fn a_promotion_stops_routing_to_the_old_master_before_the_sentinels_agree() {
        // `SENTINEL FAILOVER`: the replica is promoted while the old master still says master and accepts writes.
        let (old, new) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = all_three_name(old);
        tracker.role_answered(old, Some(Role::Master));
        tracker.role_answered(new, Some(Role::Replica));
        assert_eq!(tracker.route(), Route::Master(old));
        tracker.role_answered(new, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverUnderway(new)));
        tracker.sentinel_named(0, Some(new));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverUnderway(new)));
        tracker.sentinel_named(1, Some(new));
        assert_eq!(
            tracker.route(),
            Route::Refuse(Refusal::Unconfirmed(new)),
            "its earlier answer predates the quorum"
        );
        tracker.role_answered(new, Some(Role::Master));
        assert_eq!(
            tracker.route(),
            Route::Master(new),
            "the old master still saying master is ignored"
        );

        // A promotion undone (the replica told to follow again) lifts the refusal.
        let mut tracker = all_three_name(old);
        tracker.role_answered(old, Some(Role::Master));
        tracker.role_answered(new, Some(Role::Replica));
        tracker.role_answered(new, Some(Role::Master));
        tracker.role_answered(new, Some(Role::Replica));
        assert_eq!(tracker.route(), Route::Master(old));
    }

    #[test]
    fn an_announced_failover_holds_routing_until_its_result() {
        let (old, new) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let progress = |channel: &str| Progress {
            name: "mymaster".into(),
            master: Some(at("10.0.0.12:6379")),
            started: channel == "+try-failover",
            channel: channel.into(),
        };
        let mut tracker = all_three_name(old);
        tracker.role_answered(old, Some(Role::Master));
        tracker.failover_announced(2, &progress("+try-failover"), 1_000);
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverStarted(2)));
        // Abandoned: routing resumes to the same master.
        tracker.failover_announced(2, &progress("-failover-abort-no-good-slave"), 2_000);
        assert_eq!(tracker.route(), Route::Master(old));
        // Completed: the leader's +failover-end and a moment without a quorum do not lift the hold; the quorum's new
        // candidate does, and a late attempt against the old master is ignored.
        tracker.failover_announced(0, &progress("+try-failover"), 3_000);
        tracker.failover_announced(0, &progress("+failover-end"), 3_100);
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverStarted(0)));
        tracker.sentinel_named(1, None);
        tracker.sentinel_named(2, None);
        tracker.sentinel_named(1, Some(old));
        tracker.sentinel_named(2, Some(old));
        tracker.role_answered(old, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverStarted(0)));
        tracker.sentinel_named(0, Some(new));
        tracker.sentinel_named(1, Some(new));
        tracker.role_answered(new, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Master(new));
        tracker.failover_announced(2, &progress("+try-failover"), 3_500);
        assert_eq!(tracker.route(), Route::Master(new));
        // Forgotten after the hold.
        let against_new = Progress {
            master: Some(new),
            ..progress("+try-failover")
        };
        tracker.failover_announced(1, &against_new, 4_000);
        tracker.expire(4_000 + FAILOVER_HOLD.as_nanos() as u64);
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverStarted(1)));
        tracker.expire(4_001 + FAILOVER_HOLD.as_nanos() as u64);
        assert_eq!(tracker.route(), Route::Master(new));
        // Other masters' failovers are not ours.
        let other = Progress {
            name: "cache".into(),
            ..progress("+try-failover")
        };
        tracker.failover_announced(1, &other, 5_000);
        assert_eq!(tracker.route(), Route::Master(new));
    }

    #[test]
    fn a_failed_check_does_not_erase_a_promotion() {
        let (old, new) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = all_three_name(old);
        tracker.role_answered(old, Some(Role::Master));
        tracker.role_answered(new, Some(Role::Replica));
        tracker.role_answered(new, Some(Role::Master));
        tracker.role_answered(new, None);
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverUnderway(new)));
        tracker.role_answered(new, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::FailoverUnderway(new)));
        // And a restarted master that was master when last seen is no promotion.
        let mut tracker = all_three_name(new);
        tracker.role_answered(new, Some(Role::Master));
        tracker.role_answered(old, Some(Role::Master));
        tracker.role_answered(old, None);
        tracker.role_answered(old, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Master(new));
    }

    #[test]
    fn a_confirmation_does_not_outlive_a_change_of_candidate() {
        let (a, b) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = Tracker::new(3, 2, "mymaster");
        tracker.sentinel_named(0, Some(a));
        tracker.sentinel_named(1, Some(a));
        tracker.role_answered(a, Some(Role::Master));
        // The quorum moves to b and back to a: a's old "master" no longer counts.
        tracker.sentinel_named(0, Some(b));
        tracker.sentinel_named(1, Some(b));
        tracker.sentinel_named(0, Some(a));
        tracker.sentinel_named(1, Some(a));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::Unconfirmed(a)));
        tracker.role_answered(a, None);
        assert_eq!(
            tracker.route(),
            Route::Refuse(Refusal::Unconfirmed(a)),
            "unreachable is not master"
        );
    }

    #[test]
    fn other_masters_and_unknown_sentinels_are_ignored() {
        let mut tracker = Tracker::new(1, 1, "mymaster");
        let other = Switch {
            name: "cache".into(),
            from: at("10.0.0.12:6379"),
            to: at("10.0.0.13:6379"),
        };
        tracker.switch_announced(0, &other);
        tracker.sentinel_named(7, Some(at("10.0.0.13:6379")));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::NoQuorum));
    }

    #[test]
    fn role_checks_only_refuse_a_split_brain() {
        let (a, b) = (at("10.0.0.12:6379"), at("10.0.0.13:6379"));
        let mut tracker = Tracker::new(0, 0, "");
        assert_eq!(tracker.route(), Route::Refuse(Refusal::NoMaster));
        tracker.role_answered(a, Some(Role::Master));
        tracker.role_answered(b, Some(Role::Replica));
        assert_eq!(tracker.route(), Route::Master(a));
        tracker.role_answered(b, Some(Role::Master));
        assert_eq!(tracker.route(), Route::Refuse(Refusal::SplitBrain(vec![a, b])));
        tracker.role_answered(a, None);
        assert_eq!(tracker.route(), Route::Master(b));
    }
}
