//! One rule per test, named after the RFC 3768 / RFC 9568 / keepalived rule it checks. Each drives a single
//! machine with hand-made adverts and a hand-moved clock.

use std::net::Ipv4Addr;
use std::time::Duration;

use agent::log::Message;
use agent::machine::{
    skew_time, Action, Authentication, Discard, InitialState, Machine, Notify, Reason, Received, Settings, State,
};
use agent::wire::vrrp::{password_bytes, MULTICAST_GROUP};
use agent::wire::{AuthType, Body, ChecksumForm, Envelope, Repr, Version};

const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 23);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 31);

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

/// A unicast v2 instance like the seed's, with our priority.
fn unicast(priority: u8) -> Settings {
    let mut settings = Settings::new("VI_1", 10, priority, ME);
    settings.peers = vec![PEER];
    settings.addresses = vec![VIP];
    settings
}

fn multicast(priority: u8) -> Settings {
    Settings {
        peers: vec![],
        ..unicast(priority)
    }
}

fn v3(priority: u8, interval: Duration) -> Settings {
    Settings {
        version: Version::V3,
        advert_interval: interval,
        ..multicast(priority)
    }
}

fn with_password(settings: Settings) -> Settings {
    Settings {
        authentication: Authentication::Password(password_bytes("passWord")),
        ..settings
    }
}

fn advert_from(settings: &Settings, priority: u8) -> Repr {
    let body = match settings.version {
        Version::V2 => {
            let (auth_type, auth_data) = match settings.authentication {
                Authentication::None => (AuthType::None, [0; 8]),
                Authentication::Password(password) => (AuthType::Password, password),
            };
            Body::V2 {
                interval_secs: settings.advert_interval.as_secs() as u8,
                auth_type,
                auth_data,
            }
        }
        Version::V3 => Body::V3 {
            interval_centis: (settings.advert_interval.as_millis() / 10) as u16,
        },
    };
    Repr {
        vrid: settings.vrid,
        priority,
        addresses: settings.addresses.clone(),
        body,
    }
}

struct Harness {
    machine: Machine,
    now: Duration,
}

impl Harness {
    fn started(settings: Settings) -> Harness {
        let mut machine = Machine::new(settings);
        machine.startup(Duration::ZERO);
        machine.drain_actions();
        Harness {
            machine,
            now: Duration::ZERO,
        }
    }

    /// Runs the timers up to `until`, returning what they did.
    fn advance_to(&mut self, until: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(at) = self.machine.poll_timeout().filter(|at| *at <= until) {
            self.now = at;
            self.machine.handle_timeout(at);
            actions.extend(self.machine.drain_actions());
        }
        self.now = until;
        actions
    }

    fn become_master(&mut self) {
        let at = self.machine.poll_timeout().unwrap();
        self.advance_to(at);
        assert_eq!(self.machine.state(), State::Master);
    }

    fn receive_bytes(&mut self, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<Action> {
        self.machine.receive(self.now, Received { src, dst, ttl, payload });
        self.machine.drain_actions()
    }

    /// An advert from the peer as the peer's own settings would build it.
    fn receive(&mut self, priority: u8) -> Vec<Action> {
        let settings = self.machine.settings().clone();
        self.receive_repr(&advert_from(&settings, priority))
    }

    fn receive_repr(&mut self, advert: &Repr) -> Vec<Action> {
        let dst = if self.machine.settings().peers.is_empty() {
            MULTICAST_GROUP
        } else {
            ME
        };
        let envelope = Envelope { src: PEER, dst };
        let bytes = advert.to_bytes(ChecksumForm::PseudoHeader, envelope);
        self.receive_bytes(PEER, dst, 255, &bytes)
    }
}

fn sent_priorities(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Send(out) = a {
                Some(out.priority)
            } else {
                None
            }
        })
        .collect()
}

fn discards(actions: &[Action]) -> Vec<Discard> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Discarded { reason, .. } = a {
                Some(reason.clone())
            } else {
                None
            }
        })
        .collect()
}

fn messages(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Log(line) = a {
                Some(line.message.clone())
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn rfc3768_6_1_skew_time_is_256_minus_priority_over_256_seconds() {
    assert_eq!(skew_time(99, secs(1.0)), Duration::from_nanos(613_281_250));
    assert_eq!(skew_time(100, secs(1.0)), Duration::from_nanos(609_375_000));
    assert_eq!(skew_time(255, secs(1.0)), Duration::from_nanos(3_906_250));
    assert_eq!(skew_time(1, secs(1.0)), Duration::from_nanos(996_093_750));
}

#[test]
fn rfc3768_6_1_master_down_interval_is_three_intervals_plus_skew() {
    let machine = Machine::new(unicast(99));
    assert_eq!(machine.master_down_interval(), secs(3.61328125));
    let machine = Machine::new(unicast(100));
    assert_eq!(machine.master_down_interval(), secs(3.609375));
}

#[test]
fn rfc9568_6_1_v3_skew_scales_with_the_master_advert_interval() {
    let machine = Machine::new(v3(99, ms(100)));
    assert_eq!(machine.skew_time(), Duration::from_nanos(61_328_125));
    assert_eq!(machine.master_down_interval(), Duration::from_nanos(361_328_125));
}

#[test]
fn rfc3768_6_4_1_non_owner_starts_as_backup_with_master_down_timer() {
    let mut machine = Machine::new(Settings {
        initial_state: InitialState::Master,
        ..unicast(100)
    });
    machine.startup(secs(10.0));
    assert_eq!(machine.state(), State::Backup);
    assert_eq!(machine.poll_timeout(), Some(secs(13.609375)));
    let actions = machine.drain_actions();
    assert_eq!(messages(&actions), vec![Message::EnteringBackupStateInit]);
    assert!(
        actions.contains(&Action::RemoveAddresses),
        "stale addresses are cleared at startup"
    );
    assert!(actions.contains(&Action::Notify {
        kind: Notify::Backup,
        priority: 100
    }));
}

#[test]
fn rfc3768_6_4_1_owner_255_starts_as_master_and_advertises_at_once() {
    let mut machine = Machine::new(Settings {
        initial_state: InitialState::Master,
        ..unicast(255)
    });
    machine.startup(Duration::ZERO);
    let actions = machine.drain_actions();
    assert_eq!(machine.state(), State::Master);
    assert_eq!(sent_priorities(&actions), vec![255]);
    assert!(actions.contains(&Action::AddAddresses));
    assert!(actions.contains(&Action::StateChanged {
        from: State::Initialize,
        to: State::Master,
        reason: Reason::Owner
    }));
}

#[test]
fn rfc3768_6_4_2_master_down_timer_expiry_sends_advert_then_takes_addresses_then_garps() {
    let mut h = Harness::started(unicast(100));
    let actions = h.advance_to(secs(3.609375));
    let order: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(_) => Some("advert"),
            Action::AddAddresses => Some("addresses"),
            Action::GratuitousArp { .. } => Some("garp"),
            Action::Notify { .. } => Some("notify"),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["advert", "addresses", "garp", "notify"]);
    assert_eq!(
        h.machine.poll_timeout(),
        Some(secs(4.609375)),
        "next advert one interval later"
    );
}

#[test]
fn rfc3768_6_4_2_backup_resets_its_timer_on_an_equal_or_higher_advert() {
    let mut h = Harness::started(unicast(99));
    h.advance_to(secs(2.0));
    h.receive(100);
    assert_eq!(h.machine.poll_timeout(), Some(secs(2.0 + 3.61328125)));
    h.advance_to(secs(4.0));
    h.receive(99);
    assert_eq!(h.machine.poll_timeout(), Some(secs(4.0 + 3.61328125)));
}

#[test]
fn rfc3768_6_4_2_preempting_backup_discards_a_lower_advert_and_keeps_its_timer() {
    let mut h = Harness::started(unicast(100));
    h.advance_to(secs(1.0));
    let actions = h.receive(99);
    assert_eq!(
        messages(&actions),
        vec![Message::BackupDiscardingLowerPriority {
            from: PEER,
            priority: 99
        }]
    );
    assert_eq!(h.machine.poll_timeout(), Some(secs(3.609375)), "timer not reset");
    assert_eq!(h.machine.state(), State::Backup, "no instant takeover");
}

#[test]
fn rfc3768_6_4_2_backup_receiving_priority_zero_waits_only_skew_time() {
    let mut h = Harness::started(unicast(99));
    h.advance_to(secs(1.0));
    h.receive(100);
    h.advance_to(secs(2.0));
    let actions = h.receive(0);
    assert_eq!(messages(&actions), vec![Message::BackupReceivedPriorityZero]);
    assert_eq!(h.machine.poll_timeout(), Some(secs(2.0 + 0.61328125)));
}

#[test]
fn rfc3768_6_4_3_master_steps_down_on_a_higher_priority() {
    let mut h = Harness::started(unicast(99));
    h.become_master();
    let actions = h.receive(100);
    assert_eq!(h.machine.state(), State::Backup);
    assert!(actions.contains(&Action::RemoveAddresses));
    assert_eq!(
        sent_priorities(&actions),
        Vec::<u8>::new(),
        "a stepping-down master sends nothing"
    );
    assert_eq!(
        messages(&actions)[0],
        Message::MasterReceivedHigherPriority {
            from: PEER,
            theirs: 100,
            ours: 99
        }
    );
    assert_eq!(h.machine.poll_timeout(), Some(h.now + secs(3.61328125)));
}

#[test]
fn rfc3768_6_4_3_equal_priority_the_higher_primary_address_wins() {
    // The peer (10.0.0.23) is higher than us (10.0.0.21): we step down.
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.receive(100);
    assert_eq!(h.machine.state(), State::Backup);

    // We are higher than the peer: we stay and force an election.
    let mut settings = unicast(100);
    settings.source = Ipv4Addr::new(10, 0, 0, 200);
    let mut h = Harness::started(settings);
    h.become_master();
    let actions = h.receive(100);
    assert_eq!(h.machine.state(), State::Master);
    assert_eq!(sent_priorities(&actions), vec![100]);
}

#[test]
fn rfc9568_6_4_3_master_hearing_a_lower_priority_advertises_at_once() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.advance_to(h.now + ms(400));
    let actions = h.receive(99);
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert_eq!(
        h.machine.poll_timeout(),
        Some(h.now + secs(1.0)),
        "advert timer restarts"
    );
    let line = Message::ReceivedLowerPriority {
        from: PEER,
        theirs: 99,
        ours: 100,
        forcing: true,
    };
    assert_eq!(messages(&actions), vec![line]);
    assert!(
        actions.contains(&Action::GratuitousArp { repeat: 5 }),
        "keepalived re-announces the addresses"
    );
}

#[test]
fn keepalived_lower_prio_no_advert_stays_silent() {
    let mut h = Harness::started(Settings {
        lower_prio_no_advert: true,
        ..unicast(100)
    });
    h.become_master();
    let actions = h.receive(99);
    assert_eq!(sent_priorities(&actions), Vec::<u8>::new());
    let line = Message::ReceivedLowerPriority {
        from: PEER,
        theirs: 99,
        ours: 100,
        forcing: false,
    };
    assert_eq!(messages(&actions), vec![line]);
}

#[test]
fn rfc3768_6_4_3_master_hearing_priority_zero_advertises_at_once() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    let actions = h.receive(0);
    assert_eq!(sent_priorities(&actions), vec![100]);
    assert_eq!(h.machine.state(), State::Master);
}

#[test]
fn rfc3768_6_4_3_shutdown_as_master_sends_priority_zero_and_releases() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.machine.shutdown(h.now);
    let actions = h.machine.drain_actions();
    assert_eq!(sent_priorities(&actions), vec![0]);
    assert!(actions.contains(&Action::RemoveAddresses));
    assert!(actions.contains(&Action::Notify {
        kind: Notify::Stop,
        priority: 100
    }));
    assert_eq!(h.machine.poll_timeout(), None);
    assert_eq!(h.machine.state(), State::Initialize);
}

#[test]
fn rfc3768_6_4_2_shutdown_as_backup_sends_nothing() {
    let mut h = Harness::started(unicast(100));
    h.machine.shutdown(h.now);
    let actions = h.machine.drain_actions();
    assert_eq!(sent_priorities(&actions), Vec::<u8>::new());
    assert!(actions.contains(&Action::Notify {
        kind: Notify::Stop,
        priority: 100
    }));
}

#[test]
fn keepalived_nopreempt_backup_accepts_a_lower_master() {
    let mut h = Harness::started(Settings {
        preempt: false,
        ..unicast(100)
    });
    h.advance_to(secs(1.0));
    let actions = h.receive(99);
    assert!(messages(&actions).is_empty());
    assert_eq!(
        h.machine.poll_timeout(),
        Some(secs(1.0 + 3.609375)),
        "timer reset as for a better master"
    );
}

#[test]
fn keepalived_owner_always_preempts_even_with_nopreempt() {
    let machine = Machine::new(Settings {
        preempt: false,
        ..unicast(255)
    });
    assert!(machine.settings().preempt);
}

#[test]
fn keepalived_preempt_delay_accepts_lower_adverts_until_it_expires() {
    let mut h = Harness::started(Settings {
        preempt_delay: secs(5.0),
        ..unicast(100)
    });
    h.advance_to(secs(1.0));
    let actions = h.receive(99);
    assert_eq!(
        messages(&actions),
        vec![Message::StartPreemptDelay { delay: secs(5.0) }]
    );
    assert_eq!(h.machine.poll_timeout(), Some(secs(1.0 + 3.609375)));
    for second in 2..=5 {
        h.advance_to(secs(second as f64));
        assert!(messages(&h.receive(99)).is_empty(), "still within the delay: accepted");
    }
    h.advance_to(secs(6.5));
    let actions = h.receive(99);
    assert_eq!(
        messages(&actions),
        vec![Message::BackupDiscardingLowerPriority {
            from: PEER,
            priority: 99
        }]
    );
    h.advance_to(secs(5.0 + 3.609375) - Duration::from_nanos(1));
    assert_eq!(h.machine.state(), State::Backup);
    h.advance_to(secs(5.0 + 3.609375));
    assert_eq!(
        h.machine.state(),
        State::Master,
        "takes over one MDI after the last accepted advert"
    );
}

#[test]
fn keepalived_preempt_delay_stops_when_a_better_master_speaks() {
    let mut h = Harness::started(Settings {
        preempt_delay: secs(5.0),
        ..unicast(100)
    });
    h.advance_to(secs(1.0));
    h.receive(99);
    h.advance_to(secs(2.0));
    assert_eq!(messages(&h.receive(120)), vec![Message::StopPreemptDelay]);
}

#[test]
fn rfc3768_7_1_v2_interval_mismatch_is_discarded() {
    let mut h = Harness::started(unicast(100));
    let mut advert = advert_from(h.machine.settings(), 120);
    if let Body::V2 { interval_secs, .. } = &mut advert.body {
        *interval_secs = 2;
    }
    let actions = h.receive_repr(&advert);
    assert_eq!(discards(&actions), vec![Discard::IntervalMismatch]);
    assert_eq!(
        messages(&actions),
        vec![Message::IntervalMismatch {
            from: PEER,
            mine_secs: 1,
            got_secs: 2
        }]
    );
    assert_eq!(
        h.machine.poll_timeout(),
        Some(secs(3.609375)),
        "a discarded advert changes nothing"
    );
}

#[test]
fn rfc9568_7_1_v3_interval_difference_is_learned_not_discarded() {
    let mut h = Harness::started(v3(99, ms(1000)));
    let mut advert = advert_from(h.machine.settings(), 100);
    advert.body = Body::V3 { interval_centis: 50 };
    let actions = h.receive_repr(&advert);
    assert!(discards(&actions).is_empty());
    assert_eq!(
        messages(&actions),
        vec![Message::AdvertIntervalUpdated {
            from_ms: 1000,
            to_ms: 500
        }]
    );
    assert_eq!(h.machine.master_down_interval(), ms(1500) + skew_time(99, ms(500)));
}

#[test]
fn rfc3768_5_3_6_auth_type_mismatch_is_discarded() {
    let mut h = Harness::started(with_password(unicast(100)));
    let mut advert = advert_from(h.machine.settings(), 120);
    advert.body = Body::V2 {
        interval_secs: 1,
        auth_type: AuthType::None,
        auth_data: [0; 8],
    };
    let actions = h.receive_repr(&advert);
    assert_eq!(discards(&actions), vec![Discard::AuthType(0)]);
    assert_eq!(
        messages(&actions),
        vec![Message::WrongAuthType {
            got: 0,
            from: PEER,
            expected: 1
        }]
    );
}

#[test]
fn keepalived_wrong_password_is_discarded() {
    let mut h = Harness::started(with_password(unicast(100)));
    let mut advert = advert_from(h.machine.settings(), 120);
    advert.body = Body::V2 {
        interval_secs: 1,
        auth_type: AuthType::Password,
        auth_data: password_bytes("guess"),
    };
    assert_eq!(discards(&h.receive_repr(&advert)), vec![Discard::Password]);
    assert_eq!(h.machine.state(), State::Backup);
}

#[test]
fn rfc3768_7_1_multicast_ttl_other_than_255_is_discarded() {
    let mut h = Harness::started(multicast(100));
    let bytes = advert_from(h.machine.settings(), 120).to_bytes(
        ChecksumForm::PseudoHeader,
        Envelope {
            src: PEER,
            dst: MULTICAST_GROUP,
        },
    );
    let actions = h.receive_bytes(PEER, MULTICAST_GROUP, 64, &bytes);
    assert_eq!(discards(&actions), vec![Discard::Ttl(64)]);
}

#[test]
fn keepalived_unicast_adverts_are_not_held_to_ttl_255() {
    let mut h = Harness::started(unicast(100));
    let bytes =
        advert_from(h.machine.settings(), 120).to_bytes(ChecksumForm::PseudoHeader, Envelope { src: PEER, dst: ME });
    let actions = h.receive_bytes(PEER, ME, 62, &bytes);
    assert!(discards(&actions).is_empty(), "routed unicast adverts are accepted");
}

#[test]
fn rfc3768_7_1_wrong_version_is_discarded() {
    let mut h = Harness::started(unicast(100));
    let advert = Repr {
        body: Body::V3 { interval_centis: 100 },
        ..advert_from(h.machine.settings(), 120)
    };
    assert_eq!(discards(&h.receive_repr(&advert)), vec![Discard::Version(3)]);
}

#[test]
fn rfc3768_7_1_bad_checksum_is_discarded() {
    let mut h = Harness::started(unicast(100));
    let mut bytes =
        advert_from(h.machine.settings(), 120).to_bytes(ChecksumForm::VrrpOnly, Envelope { src: PEER, dst: ME });
    bytes[7] ^= 0xff;
    let actions = h.receive_bytes(PEER, ME, 255, &bytes);
    assert_eq!(discards(&actions), vec![Discard::Checksum]);
    assert_eq!(
        messages(&actions),
        vec![Message::InvalidChecksum { version: 2, from: PEER }]
    );
}

#[test]
fn rfc3768_7_1_truncated_packet_is_discarded_not_a_panic() {
    let mut h = Harness::started(unicast(100));
    let actions = h.receive_bytes(PEER, ME, 255, &[0x21, 0x0a]);
    assert!(matches!(discards(&actions)[..], [Discard::Malformed(_)]));
}

#[test]
fn rfc3768_7_1_another_vrid_is_ignored_silently() {
    let mut h = Harness::started(unicast(100));
    let advert = Repr {
        vrid: 11,
        ..advert_from(h.machine.settings(), 120)
    };
    let actions = h.receive_repr(&advert);
    assert_eq!(discards(&actions), vec![Discard::OtherVrid(11)]);
    assert!(messages(&actions).is_empty());
}

#[test]
fn keepalived_2_2_7_accepts_a_multicast_advert_on_a_unicast_instance() {
    let mut h = Harness::started(unicast(100));
    let envelope = Envelope {
        src: PEER,
        dst: MULTICAST_GROUP,
    };
    let bytes = advert_from(h.machine.settings(), 120).to_bytes(ChecksumForm::PseudoHeader, envelope);
    let actions = h.receive_bytes(PEER, MULTICAST_GROUP, 255, &bytes);
    assert!(discards(&actions).is_empty());
}

#[test]
fn keepalived_2_2_7_drops_adverts_whose_address_list_differs() {
    let mut h = Harness::started(unicast(100));
    let mut advert = advert_from(h.machine.settings(), 120);
    advert.addresses.push(Ipv4Addr::new(10, 0, 0, 32));
    let actions = h.receive_repr(&advert);
    assert_eq!(discards(&actions), vec![Discard::AddressCount]);
    assert_eq!(
        messages(&actions),
        vec![Message::AddressCountMismatch { expected: 1, got: 2 }]
    );
    advert.addresses = vec![Ipv4Addr::new(10, 0, 0, 32)];
    let actions = h.receive_repr(&advert);
    assert_eq!(discards(&actions), vec![Discard::AddressMissing]);
    assert_eq!(
        messages(&actions),
        vec![Message::AddressMissing { vrid: 10, address: VIP }]
    );
}

#[test]
fn keepalived_skip_check_adv_addr_trusts_the_known_master_only() {
    let mut h = Harness::started(Settings {
        skip_check_adv_addr: true,
        ..unicast(99)
    });
    let mut advert = advert_from(h.machine.settings(), 120);
    advert.addresses = vec![Ipv4Addr::new(10, 0, 0, 32)];
    assert_eq!(
        discards(&h.receive_repr(&advert)),
        vec![Discard::AddressMissing],
        "not yet the known master"
    );
    h.receive(120);
    assert!(discards(&h.receive_repr(&advert)).is_empty());
}

#[test]
fn keepalived_check_unicast_src_drops_strangers() {
    let mut h = Harness::started(Settings {
        check_unicast_src: true,
        ..unicast(100)
    });
    let stranger = Ipv4Addr::new(10, 0, 0, 99);
    let bytes = advert_from(h.machine.settings(), 120)
        .to_bytes(ChecksumForm::PseudoHeader, Envelope { src: stranger, dst: ME });
    let actions = h.receive_bytes(stranger, ME, 255, &bytes);
    assert_eq!(discards(&actions), vec![Discard::NotAPeer]);
}

#[test]
fn rfc9568_v3_accepts_adverts_without_the_pseudo_header() {
    let mut h = Harness::started(v3(99, ms(1000)));
    let advert = advert_from(h.machine.settings(), 100);
    let bytes = advert.to_bytes(
        ChecksumForm::VrrpOnly,
        Envelope {
            src: PEER,
            dst: MULTICAST_GROUP,
        },
    );
    let actions = h.receive_bytes(PEER, MULTICAST_GROUP, 255, &bytes);
    assert!(discards(&actions).is_empty());
}

#[test]
fn garp_master_repeat_delay_and_refresh_are_scheduled() {
    let mut settings = unicast(100);
    settings.garp.master_repeat = 3;
    settings.garp.master_delay = Some(secs(5.0));
    settings.garp.master_refresh = Some(secs(60.0));
    settings.garp.master_refresh_repeat = 2;
    let mut h = Harness::started(settings);
    let start = h.machine.poll_timeout().unwrap();
    let mut garps = Vec::new();
    for action in h.advance_to(start + secs(125.0)) {
        if let Action::GratuitousArp { repeat } = action {
            garps.push((h.now, repeat));
        }
    }
    // advance_to leaves `now` at the end; recompute the times from the schedule instead.
    assert_eq!(
        garps.iter().map(|(_, repeat)| *repeat).collect::<Vec<_>>(),
        vec![3, 3, 2, 2]
    );
}

#[test]
fn garp_second_burst_comes_garp_master_delay_after_becoming_master() {
    let mut h = Harness::started(unicast(100));
    let start = h.machine.poll_timeout().unwrap();
    h.advance_to(start);
    let before = h.advance_to(start + secs(4.99));
    assert!(!before.iter().any(|a| matches!(a, Action::GratuitousArp { .. })));
    let at = h.advance_to(start + secs(5.0));
    assert!(at.contains(&Action::GratuitousArp { repeat: 5 }));
}

#[test]
fn keepalived_master_entering_fault_sends_priority_zero_and_recovers_as_backup() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.machine.set_fault(h.now, true);
    let actions = h.machine.drain_actions();
    assert_eq!(h.machine.state(), State::Fault);
    assert_eq!(sent_priorities(&actions), vec![0, 0], "two, as keepalived 2.2.7 sends");
    assert!(actions.contains(&Action::RemoveAddresses));
    assert_eq!(h.machine.poll_timeout(), None);
    assert_eq!(discards(&h.receive(120)), vec![Discard::NotListening]);
    h.machine.set_fault(h.now, false);
    assert_eq!(h.machine.state(), State::Backup);
    assert_eq!(h.machine.poll_timeout(), Some(h.now + secs(3.609375)));
}

#[test]
fn keepalived_fault_at_startup_enters_fault_init() {
    let mut machine = Machine::new(unicast(100));
    machine.set_fault(Duration::ZERO, true);
    machine.startup(Duration::ZERO);
    assert_eq!(machine.state(), State::Fault);
    assert_eq!(
        messages(&machine.drain_actions()),
        vec![Message::EnteringFaultStateInit]
    );
}

#[test]
fn keepalived_weights_clamp_to_1_254_and_move_the_backup_timer() {
    let mut h = Harness::started(unicast(100));
    h.machine.set_priority_offset(h.now, -200);
    assert_eq!(h.machine.effective_priority(), 1);
    assert_eq!(
        h.machine.poll_timeout(),
        Some(Duration::ZERO + secs(3.0) + skew_time(1, secs(1.0)))
    );
    h.machine.set_priority_offset(h.now, 200);
    assert_eq!(h.machine.effective_priority(), 254);
    let owner = Machine::new(unicast(255));
    let mut owner = owner;
    owner.set_priority_offset(Duration::ZERO, -10);
    assert_eq!(owner.effective_priority(), 255, "the owner is never adjusted");
}

#[test]
fn keepalived_a_master_announces_a_new_priority_with_its_next_advert() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.machine.set_priority_offset(h.now, -4);
    assert!(sent_priorities(&h.machine.drain_actions()).is_empty());
    let next = h.advance_to(h.now + secs(1.0));
    assert_eq!(sent_priorities(&next), vec![96]);
}

#[test]
fn unicast_adverts_go_to_every_peer_with_their_own_checksum() {
    let mut settings = v3(100, ms(1000));
    settings.peers = vec![PEER, Ipv4Addr::new(10, 0, 0, 24)];
    let mut h = Harness::started(settings);
    let actions = h.advance_to(secs(4.0));
    let sends: Vec<_> = actions
        .iter()
        .filter_map(|a| {
            if let Action::Send(out) = a {
                Some(out.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(sends.len(), 2);
    assert_eq!((sends[0].dst, sends[1].dst), (PEER, Ipv4Addr::new(10, 0, 0, 24)));
    assert_ne!(sends[0].payload, sends[1].payload, "the pseudo-header names each peer");
}

#[test]
fn keepalived_higher_prio_send_advert_answers_before_stepping_down() {
    let mut h = Harness::started(Settings {
        higher_prio_send_advert: true,
        ..unicast(99)
    });
    h.become_master();
    let actions = h.receive(100);
    assert_eq!(sent_priorities(&actions), vec![99]);
    assert_eq!(h.machine.state(), State::Backup);
}

#[test]
fn keepalived_unicast_peer_ttl_limits_are_enforced() {
    let mut h = Harness::started(Settings {
        peer_ttl_limits: vec![(PEER, 250, 255)],
        ..unicast(100)
    });
    let advert = advert_from(h.machine.settings(), 120);
    let bytes = advert.to_bytes(ChecksumForm::PseudoHeader, Envelope { src: PEER, dst: ME });
    assert_eq!(
        discards(&h.receive_bytes(PEER, ME, 249, &bytes)),
        vec![Discard::Ttl(249)]
    );
    assert!(discards(&h.receive_bytes(PEER, ME, 250, &bytes)).is_empty());
}

#[test]
fn keepalived_sync_group_backup_follows_a_member_to_master_at_once() {
    let mut h = Harness::started(unicast(99));
    h.advance_to(secs(1.0));
    h.receive(100);
    h.machine.sync_to(h.now, State::Master);
    let actions = h.machine.drain_actions();
    assert_eq!(h.machine.state(), State::Master);
    assert_eq!(sent_priorities(&actions), vec![99]);
    assert!(actions.contains(&Action::StateChanged {
        from: State::Backup,
        to: State::Master,
        reason: Reason::Sync
    }));
    assert!(actions.contains(&Action::AddAddresses));
}

#[test]
fn keepalived_sync_group_master_follows_a_member_to_backup() {
    let mut h = Harness::started(unicast(100));
    h.become_master();
    h.machine.sync_to(h.now, State::Backup);
    let actions = h.machine.drain_actions();
    assert_eq!(h.machine.state(), State::Backup);
    assert!(actions.contains(&Action::RemoveAddresses));
    assert_eq!(h.machine.poll_timeout(), Some(h.now + secs(3.609375)));
    h.machine.sync_to(h.now, State::Fault);
    assert_eq!(
        h.machine.state(),
        State::Backup,
        "FAULT spreads through set_fault, not sync_to"
    );
}

#[test]
fn keepalived_startup_delay_counts_the_down_timer_from_its_end() {
    let delay = secs(2.0);
    let mut h = Harness::started(Settings {
        startup_delay: delay,
        ..unicast(100)
    });
    // Backup at once, as keepalived: only the timer waits.
    assert_eq!(h.machine.state(), State::Backup);
    assert_eq!(h.machine.poll_timeout(), Some(delay + secs(3.609375)));
    // An advert during the delay is heard, and the timer still runs from the delay's end.
    h.advance_to(secs(1.0));
    h.receive(150);
    assert_eq!(h.machine.poll_timeout(), Some(delay + secs(3.609375)));
    // After the delay, adverts restart the timer from their own arrival.
    h.advance_to(secs(3.0));
    h.receive(150);
    assert_eq!(h.machine.poll_timeout(), Some(secs(3.0) + secs(3.609375)));
}

#[test]
fn keepalived_startup_delay_holds_an_owner_back_until_it_ends() {
    let mut owner = Machine::new(Settings {
        startup_delay: secs(1.5),
        initial_state: InitialState::Master,
        ..unicast(255)
    });
    owner.startup(Duration::ZERO);
    assert_eq!(owner.state(), State::Initialize);
    assert!(
        sent_priorities(&owner.drain_actions()).is_empty(),
        "an advert during the delay"
    );
    assert_eq!(owner.poll_timeout(), Some(secs(1.5)));
    owner.handle_timeout(secs(1.5));
    assert_eq!(owner.state(), State::Master);
    assert_eq!(sent_priorities(&owner.drain_actions()), vec![255]);
}
