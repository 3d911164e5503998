//! What Sentinels and Redis nodes answer, read into decisions, without I/O.
//!
//! The proxy asks every Sentinel `SENTINEL get-master-addr-by-name <name>`, listens to their `+switch-master`
//! messages, and routes only to an address a quorum of them names, once that node itself says `ROLE` master
//! (redis-doc, sentinel-clients: "call ROLE on the returned address").

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::resp::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the server answered an error: {0}")]
    Refused(String),
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

/// The reply to `SENTINEL get-master-addr-by-name`: the master's address, or `None` when the Sentinel does not know
/// the name (a null reply).
pub fn master_address(reply: &Value) -> Result<Option<SocketAddrV4>, AnswerError> {
    match reply {
        Value::Null => Ok(None),
        Value::Error(text) => Err(AnswerError::Refused(text.clone())),
        Value::Array(parts) if parts.len() == 2 => {
            let address = parts[0].as_text().and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let port = parts[1].as_text().and_then(|port| port.parse::<u16>().ok());
            match (address, port) {
                (Some(address), Some(port)) => Ok(Some(SocketAddrV4::new(address, port))),
                _ => Err(AnswerError::Unexpected(reply.to_string())),
            }
        }
        other => Err(AnswerError::Unexpected(other.to_string())),
    }
}

/// The role a node reports in the first element of its `ROLE` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    Sentinel,
}

pub fn role(reply: &Value) -> Result<Role, AnswerError> {
    match reply {
        Value::Error(text) => Err(AnswerError::Refused(text.clone())),
        Value::Array(parts) => match parts.first().and_then(Value::as_text) {
            Some("master") => Ok(Role::Master),
            Some("slave") | Some("replica") => Ok(Role::Replica),
            Some("sentinel") => Ok(Role::Sentinel),
            _ => Err(AnswerError::Unexpected(reply.to_string())),
        },
        other => Err(AnswerError::Unexpected(other.to_string())),
    }
}

/// A `+switch-master` announcement: `<name> <old ip> <old port> <new ip> <new port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub name: String,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
}

/// Reads a pub/sub push (`message`, channel, payload); `None` for anything that is not a well-formed
/// `+switch-master` (subscription confirmations, other channels).
pub fn switch_master(push: &Value) -> Option<Switch> {
    let Value::Array(parts) = push else { return None };
    let [kind, channel, payload] = parts.as_slice() else {
        return None;
    };
    if kind.as_text()? != "message" || channel.as_text()? != "+switch-master" {
        return None;
    }
    let words: Vec<&str> = payload.as_text()?.split_whitespace().collect();
    let [name, old_ip, old_port, new_ip, new_port] = words.as_slice() else {
        return None;
    };
    let address = |ip: &str, port: &str| Some(SocketAddrV4::new(ip.parse().ok()?, port.parse().ok()?));
    Some(Switch {
        name: name.to_string(),
        from: address(old_ip, old_port)?,
        to: address(new_ip, new_port)?,
    })
}

/// The Sentinel channels that say a failover starts or stops, besides `+switch-master`.
pub const FAILOVER_CHANNELS: [&str; 5] = [
    "+try-failover",
    "+failover-end",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];

/// A Sentinel starting or ending a failover of master `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub name: String,
    /// The master being failed over, as the announcement gives it.
    pub master: Option<SocketAddrV4>,
    /// True for `+try-failover`; false when the failover ended or was abandoned.
    pub started: bool,
    pub channel: String,
}

/// Reads a pub/sub push on one of [`FAILOVER_CHANNELS`]. The payload names the master as
/// `master <name> <ip> <port>`, or after an `@` when the event is about a replica.
pub fn failover_progress(push: &Value) -> Option<Progress> {
    let Value::Array(parts) = push else { return None };
    let [kind, channel, payload] = parts.as_slice() else {
        return None;
    };
    let channel = channel.as_text()?;
    if kind.as_text()? != "message" || !FAILOVER_CHANNELS.contains(&channel) {
        return None;
    }
    let words: Vec<&str> = payload.as_text()?.split_whitespace().collect();
    let master_at = match words.iter().position(|w| *w == "@") {
        Some(at) => at + 1,
        None if words.first() == Some(&"master") => 1,
        None => return None,
    };
    let name = words.get(master_at)?;
    let master = match (words.get(master_at + 1), words.get(master_at + 2)) {
        (Some(ip), Some(port)) => ip
            .parse()
            .ok()
            .zip(port.parse().ok())
            .map(|(ip, port)| SocketAddrV4::new(ip, port)),
        _ => None,
    };
    Some(Progress {
        name: name.to_string(),
        master,
        started: channel == "+try-failover",
        channel: channel.to_string(),
    })
}

/// What the Sentinels' answers add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// The one address with the most votes, and at least `quorum` of them.
    Agreed(SocketAddrV4),
    /// No address reaches the quorum.
    NoQuorum,
    /// Several addresses share the most votes, at or above the quorum: a split, never settled by a guess.
    Tie(Vec<SocketAddrV4>),
}

/// Counts the Sentinels' answers. The winner has strictly more votes than any other address and at least
/// `quorum` (at least 1); Sentinels that did not answer, or answered nothing, count against it: silence is not
/// agreement. With a quorum below a majority two addresses can both reach it: the larger count wins, a tie is
/// refused.
pub fn count_votes(answers: &[Option<SocketAddrV4>], quorum: usize) -> Vote {
    let mut votes: HashMap<SocketAddrV4, usize> = HashMap::new();
    for address in answers.iter().flatten() {
        *votes.entry(*address).or_default() += 1;
    }
    let Some(most) = votes.values().copied().max().filter(|most| *most >= quorum.max(1)) else {
        return Vote::NoQuorum;
    };
    let mut leaders: Vec<SocketAddrV4> = votes
        .into_iter()
        .filter(|(_, count)| *count == most)
        .map(|(address, _)| address)
        .collect();
    leaders.sort();
    match leaders.as_slice() {
        [winner] => Vote::Agreed(*winner),
        _ => Vote::Tie(leaders),
    }
}

/// The agreed address, if any (see [`count_votes`]).
pub fn agreed_master(answers: &[Option<SocketAddrV4>], quorum: usize) -> Option<SocketAddrV4> {
    match count_votes(answers, quorum) {
        Vote::Agreed(address) => Some(address),
        Vote::NoQuorum | Vote::Tie(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(channel: &str, payload: &str) -> Value {
        Value::Array(vec![
            Value::Bulk(b"message".to_vec()),
            Value::Bulk(channel.as_bytes().to_vec()),
            Value::Bulk(payload.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn failover_progress_names_the_master() {
        let started = failover_progress(&push("+try-failover", "master mymaster 10.0.0.12 6379")).unwrap();
        assert_eq!((started.name.as_str(), started.started), ("mymaster", true));
        assert_eq!(started.master, Some("10.0.0.12:6379".parse().unwrap()));
        let ended = failover_progress(&push("-failover-abort-no-good-slave", "master cache 10.0.0.12 6379")).unwrap();
        assert_eq!((ended.name.as_str(), ended.started), ("cache", false));
        let end = failover_progress(&push("+failover-end", "master mymaster 10.0.0.12 6379")).unwrap();
        assert!(!end.started);
        assert_eq!(
            failover_progress(&push("+sdown", "master mymaster 10.0.0.12 6379")),
            None
        );
        assert_eq!(failover_progress(&push("+try-failover", "")), None);
    }

    fn bulk(text: &str) -> Value {
        Value::Bulk(text.as_bytes().to_vec())
    }

    fn at(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn master_address_replies() {
        let reply = Value::Array(vec![bulk("10.0.0.12"), bulk("6379")]);
        assert_eq!(master_address(&reply), Ok(Some(at("10.0.0.12:6379"))));
        assert_eq!(master_address(&Value::Null), Ok(None));
        assert!(matches!(
            master_address(&Value::Error("ERR".into())),
            Err(AnswerError::Refused(_))
        ));
        let garbage = Value::Array(vec![bulk("not-an-ip"), bulk("6379")]);
        assert!(matches!(master_address(&garbage), Err(AnswerError::Unexpected(_))));
        assert!(matches!(
            master_address(&Value::Integer(3)),
            Err(AnswerError::Unexpected(_))
        ));
    }

    #[test]
    fn roles() {
        let master = Value::Array(vec![bulk("master"), Value::Integer(3129659), Value::Array(vec![])]);
        assert_eq!(role(&master), Ok(Role::Master));
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("10.0.0.12"),
            Value::Integer(6379),
            bulk("connected"),
        ]);
        assert_eq!(role(&replica), Ok(Role::Replica));
        assert!(matches!(
            role(&Value::Error("LOADING".into())),
            Err(AnswerError::Refused(_))
        ));
        assert!(role(&Value::Array(vec![])).is_err());
    }

    #[test]
    fn switch_master_messages() {
        let push = Value::Array(vec![
            bulk("message"),
            bulk("+switch-master"),
            bulk("mymaster 10.0.0.12 6379 10.0.0.13 6379"),
        ]);
        assert_eq!(
            switch_master(&push),
            Some(Switch {
                name: "mymaster".into(),
                from: at("10.0.0.12:6379"),
                to: at("10.0.0.13:6379"),
            })
        );
        let confirmation = Value::Array(vec![bulk("subscribe"), bulk("+switch-master"), Value::Integer(1)]);
        assert_eq!(switch_master(&confirmation), None);
        let short = Value::Array(vec![
            bulk("message"),
            bulk("+switch-master"),
            bulk("mymaster 10.0.0.12"),
        ]);
        assert_eq!(switch_master(&short), None);
    }

    #[test]
    fn quorum() {
        let (a, b) = (Some(at("10.0.0.12:6379")), Some(at("10.0.0.13:6379")));
        assert_eq!(agreed_master(&[a, a, b], 2), a);
        assert_eq!(agreed_master(&[a, b, None], 2), None, "no two agree");
        assert_eq!(agreed_master(&[a, None, None], 2), None, "silence is not agreement");
        assert_eq!(agreed_master(&[], 2), None);
        // Quorum 1 of 3: one Sentinel naming a lower address does not outvote two naming the master.
        let low = Some(at("10.0.0.2:6379"));
        assert_eq!(agreed_master(&[low, a, a], 1), a);
        assert_eq!(
            count_votes(&[b, a], 1),
            Vote::Tie(vec![a.unwrap(), b.unwrap()]),
            "a tie is refused, whatever the order"
        );
        assert_eq!(count_votes(&[a, b, None], 2), Vote::NoQuorum);
    }

    proptest::proptest! {
        /// Never an address with fewer votes than another, never one below the quorum, never a tie.
        #[test]
        fn the_agreed_master_has_the_most_votes_alone(
            answers in proptest::collection::vec(proptest::option::of(0u8..4), 0..9),
            quorum in 1usize..6,
        ) {
            let answers: Vec<Option<SocketAddrV4>> = answers
                .into_iter()
                .map(|node| node.map(|n| SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 6379)))
                .collect();
            let count = |address: SocketAddrV4| answers.iter().filter(|a| **a == Some(address)).count();
            let shuffled: Vec<Option<SocketAddrV4>> = answers.iter().rev().copied().collect();
            let vote = count_votes(&answers, quorum);
            proptest::prop_assert_eq!(&vote, &count_votes(&shuffled, quorum), "order matters");
            match vote {
                Vote::Agreed(winner) => {
                    proptest::prop_assert!(count(winner) >= quorum);
                    for other in answers.iter().flatten().filter(|a| **a != winner) {
                        proptest::prop_assert!(count(*other) < count(winner));
                    }
                }
                Vote::Tie(leaders) => {
                    proptest::prop_assert!(leaders.len() >= 2);
                    let votes = count(leaders[0]);
                    proptest::prop_assert!(votes >= quorum);
                    proptest::prop_assert!(leaders.iter().all(|l| count(*l) == votes));
                    proptest::prop_assert!(answers.iter().flatten().all(|a| count(*a) <= votes));
                }
                Vote::NoQuorum => {
                    proptest::prop_assert!(answers.iter().flatten().all(|a| count(*a) < quorum));
                }
            }
        }
    }
}
