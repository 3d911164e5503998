//! One VRRP instance as a pure state machine (RFC 3768 §6, RFC 9568 §6), with keepalived's choices where the RFCs
//! leave room. No sockets and no clock: every call takes the current time, and the caller asks
//! [`Machine::poll_timeout`] when to call [`Machine::handle_timeout`] next. Effects come out of
//! [`Machine::poll_action`] in the order they must happen.

mod actions;
mod settings;

pub use actions::{Action, Discard, Notify, Outgoing, Reason, Received};
pub use settings::{Authentication, GarpSettings, InitialState, Settings};

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::log::{LogLine, Message};
use crate::wire::vrrp::{Packet, AUTH_DATA_LEN, TTL};
use crate::wire::{AuthType, Body, Envelope, Repr, Version};

/// A point in time, measured from any fixed origin the caller chooses (CLOCK_MONOTONIC, a virtual clock...).
pub type Time = Duration;

/// The priority of the router that owns the virtual addresses.
pub const OWNER_PRIORITY: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// A tracked interface or script says this router must not serve (keepalived's extension).
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    state: State,
    effective_priority: u8,
    /// v3 learns this from the master's adverts; v2 keeps the configured interval.
    master_adver_interval: Duration,
    master_address: Option<Ipv4Addr>,
    /// Master_Down_Timer in Backup, Adver_Timer in Master.
    protocol_timer: Option<Time>,
    second_garp: Option<(Time, u32)>,
    garp_refresh: Option<Time>,
    /// When a pending preempt delay ends (keepalived's `preempt_time`).
    preempt_until: Option<Time>,
    /// When the startup delay ends, while it runs.
    startup_until: Option<Time>,
    faulty: bool,
    actions: VecDeque<Action>,
}

impl Machine {
    pub fn new(settings: Settings) -> Machine {
        let mut settings = settings;
        if settings.priority == OWNER_PRIORITY {
            // keepalived clears nopreempt for the owner: it always takes the addresses back.
            settings.preempt = true;
        }
        Machine {
            effective_priority: settings.priority,
            master_adver_interval: settings.advert_interval,
            settings,
            state: State::Initialize,
            master_address: None,
            protocol_timer: None,
            second_garp: None,
            garp_refresh: None,
            preempt_until: None,
            startup_until: None,
            faulty: false,
            actions: VecDeque::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    pub fn master_address(&self) -> Option<Ipv4Addr> {
        match self.state {
            State::Master => Some(self.settings.source),
            _ => self.master_address,
        }
    }

    /// Skew_Time from the local effective priority: (256 - priority) / 256 of the master's interval
    /// (RFC 9568 §6.1; v2 intervals are whole seconds so this is RFC 3768's formula too). Exact to the nanosecond.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.effective_priority, self.master_adver_interval)
    }

    /// Master_Down_Interval: `down_timer_adverts` (3) intervals plus Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * self.settings.down_timer_adverts + self.skew_time()
    }

    /// The interval the current master advertises (v3 learns it; v2 requires it to equal ours).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// When [`Machine::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.protocol_timer,
            self.second_garp.map(|(at, _)| at),
            self.garp_refresh,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Every pending action, in order.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.actions.drain(..).collect()
    }

    /// RFC 3768 §6.4.1 Startup event. An owner configured as master becomes master at once; otherwise the
    /// instance waits one Master_Down_Interval as backup (even with `state MASTER`, as keepalived does), or
    /// starts in FAULT when tracking already says so.
    pub fn startup(&mut self, now: Time) {
        if self.state != State::Initialize {
            return;
        }
        self.master_adver_interval = self.settings.advert_interval;
        self.startup_until = Some(now + self.settings.startup_delay).filter(|_| !self.settings.startup_delay.is_zero());
        match self.startup_until {
            // An owner waits out the delay before it takes over (in INIT: it has no master to listen for).
            Some(until) if self.is_owner_starting_as_master() && !self.faulty => self.protocol_timer = Some(until),
            _ => self.leave_initialize(now),
        }
    }

    fn leave_initialize(&mut self, now: Time) {
        if self.faulty {
            self.set_state(State::Fault, Reason::Startup);
            self.log(Message::EnteringFaultStateInit);
            self.notify(Notify::Fault);
            return;
        }
        if self.is_owner_starting_as_master() {
            // keepalived arms a 1 µs down timer, so the owner logs the timeout like any backup taking over.
            self.log(Message::ReceiveAdvertisementTimeout);
            self.become_master(now, Reason::Owner);
            return;
        }
        // Addresses left by an earlier run that crashed go first (keepalived removes them at startup too, silently).
        self.actions.push_back(Action::RemoveAddresses);
        self.set_state(State::Backup, Reason::Startup);
        self.log(Message::EnteringBackupStateInit);
        self.notify(Notify::Backup);
        self.protocol_timer = Some(self.down_timer(now));
    }

    /// RFC 3768 §6.4.2/§6.4.3 Shutdown event: a master sends priority 0 so a backup takes over after Skew_Time,
    /// then releases the addresses; keepalived then runs notify_stop.
    pub fn shutdown(&mut self, _now: Time) {
        if self.state == State::Master {
            self.send_advert(0);
            self.log(Message::SentPriorityZero);
            self.release_addresses();
        }
        if self.state != State::Initialize {
            self.set_state(State::Initialize, Reason::Shutdown);
            self.notify(Notify::Stop);
        }
        self.clear_timers();
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if let Some((at, repeat)) = self.second_garp {
            if at <= now {
                self.second_garp = None;
                self.gratuitous_arps(repeat);
            }
        }
        if let Some(at) = self.garp_refresh {
            if at <= now {
                self.gratuitous_arps(self.settings.garp.master_refresh_repeat);
                // From now, not from when it was due: after a stall, one burst rather than one per missed period.
                self.garp_refresh = self.settings.garp.master_refresh.map(|period| now + period);
            }
        }
        let Some(at) = self.protocol_timer else { return };
        if at > now {
            return;
        }
        match self.state {
            State::Backup => {
                self.log(Message::ReceiveAdvertisementTimeout);
                self.become_master(now, Reason::MasterDown);
            }
            State::Master => {
                self.send_advert(self.effective_priority);
                self.protocol_timer = Some(now + self.settings.advert_interval);
            }
            // Only an owner waiting out the startup delay has a timer in INIT.
            State::Initialize => {
                self.protocol_timer = None;
                self.leave_initialize(now);
            }
            State::Fault => self.protocol_timer = None,
        }
    }

    fn is_owner_starting_as_master(&self) -> bool {
        self.effective_priority == OWNER_PRIORITY && self.settings.initial_state == InitialState::Master
    }

    /// When Master_Down_Timer set now expires: one Master_Down_Interval from now, or from the end of the
    /// startup delay while it runs.
    fn down_timer(&self, now: Time) -> Time {
        let from = self.startup_until.filter(|until| *until > now).unwrap_or(now);
        from + self.master_down_interval()
    }

    /// A tracked interface or script with no weight went down (`true`) or came back (`false`).
    pub fn set_fault(&mut self, now: Time, faulty: bool) {
        if self.faulty == faulty {
            return;
        }
        self.faulty = faulty;
        match (self.state, faulty) {
            (State::Initialize, _) => {}
            (State::Master, true) => {
                // keepalived: a master going to FAULT gives up with priority 0, like a shutdown.
                self.set_state(State::Fault, Reason::Fault);
                self.log(Message::EnteringFaultState);
                // keepalived 2.2.7 sends two priority-0 adverts here (one on leaving master, one while releasing
                // the addresses) and logs the second; the wire looks the same with ours.
                self.send_advert(0);
                self.send_advert(0);
                self.log(Message::SentPriorityZero);
                self.release_addresses();
                self.notify(Notify::Fault);
                self.clear_timers();
            }
            (State::Backup, true) => {
                self.set_state(State::Fault, Reason::Fault);
                self.log(Message::EnteringFaultState);
                self.notify(Notify::Fault);
                self.clear_timers();
            }
            (State::Fault, false) => {
                self.master_adver_interval = self.settings.advert_interval;
                self.preempt_until = None;
                self.set_state(State::Backup, Reason::FaultCleared);
                self.log(Message::EnteringBackupState);
                self.notify(Notify::Backup);
                self.protocol_timer = Some(self.down_timer(now));
            }
            _ => {}
        }
    }

    /// keepalived's `vrrp_sync_group`: another member became MASTER or BACKUP, so this one follows (a backup
    /// takes over at once, a master steps down). Other states, and a machine already there, are left alone;
    /// FAULT spreads through [`Machine::set_fault`].
    pub fn sync_to(&mut self, now: Time, wanted: State) {
        match (self.state, wanted) {
            (State::Backup, State::Master) => self.become_master(now, Reason::Sync),
            (State::Master, State::Backup) => self.step_down(now, Reason::Sync),
            _ => {}
        }
    }

    /// The sum of the weights of failed (negative) or succeeding (positive) tracked objects changed. The effective
    /// priority stays within 1-254; an owner is not adjusted. As in keepalived, a master announces its new priority
    /// with its next periodic advert, and a backup's running timer moves by the change in Master_Down_Interval.
    pub fn set_priority_offset(&mut self, _now: Time, offset: i32) {
        if self.settings.priority == OWNER_PRIORITY {
            return;
        }
        let wanted = (i32::from(self.settings.priority) + offset).clamp(1, 254) as u8;
        if wanted == self.effective_priority {
            return;
        }
        let from = self.effective_priority;
        self.log(Message::ChangingEffectivePriority { from, to: wanted });
        let before = self.master_down_interval();
        self.effective_priority = wanted;
        if self.state == State::Backup {
            let after = self.master_down_interval();
            self.protocol_timer = self.protocol_timer.map(|at| at + after - before);
        }
    }

    /// An IP packet with protocol 112 arrived on the instance's interface.
    pub fn receive(&mut self, now: Time, packet: Received<'_>) {
        let Some(repr) = self.validate(packet) else { return };
        if repr.vrid != self.settings.vrid {
            return;
        }
        match self.state {
            State::Backup => self.backup_received(now, packet.src, &repr),
            State::Master => self.master_received(now, packet.src, &repr),
            State::Initialize | State::Fault => {
                self.discard(packet.src, Discard::NotListening, None);
            }
        }
    }

    /// RFC 3768 §7.1 receive checks, in keepalived's order (`vrrp_check_packet`). Failures are discarded with a
    /// log line and a counted reason.
    fn validate(&mut self, packet: Received<'_>) -> Option<Repr> {
        let from = packet.src;
        let unicast = self.settings.is_unicast();
        // keepalived checks the TTL only for multicast: unicast adverts may be routed.
        if !unicast && packet.ttl != TTL {
            let message = Message::InvalidTtl {
                from,
                got: packet.ttl,
                expected: TTL,
            };
            self.discard(from, Discard::Ttl(packet.ttl), Some(message));
            return None;
        }
        let view = match Packet::new_checked(packet.payload) {
            Ok(view) => view,
            Err(error) => {
                self.discard_malformed(from, error);
                return None;
            }
        };
        let expected = self.settings.version.number();
        if view.version_number() != expected {
            let got = view.version_number();
            self.discard(
                from,
                Discard::Version(got),
                Some(Message::WrongVersion { from, got, expected }),
            );
            return None;
        }
        if view.vrid() != self.settings.vrid {
            self.discard(from, Discard::OtherVrid(view.vrid()), None);
            return None;
        }
        if self.settings.version == Version::V2 {
            let wanted = match self.settings.authentication {
                Authentication::None => AuthType::None,
                Authentication::Password(_) => AuthType::Password,
            };
            let got = view.auth_type();
            if got != wanted {
                let message = Message::WrongAuthType {
                    got: got.to_byte(),
                    from,
                    expected: wanted.to_byte(),
                };
                self.discard(from, Discard::AuthType(got.to_byte()), Some(message));
                return None;
            }
            if let Authentication::Password(password) = self.settings.authentication {
                if !constant_time_eq(&view.auth_data(), &password) {
                    self.discard(from, Discard::Password, Some(Message::InvalidPassword { from }));
                    return None;
                }
            }
            let mine_secs = self.settings.advert_interval.as_secs();
            let got_secs = u64::from(view.interval_secs());
            if got_secs != mine_secs {
                let message = Message::IntervalMismatch {
                    from,
                    mine_secs,
                    got_secs,
                };
                self.discard(from, Discard::IntervalMismatch, Some(message));
                return None;
            }
        }
        let envelope = Envelope {
            src: packet.src,
            dst: packet.dst,
        };
        let repr = match Repr::parse(&view, envelope) {
            Ok((repr, _form)) => repr,
            Err(crate::wire::Error::Checksum { version, .. }) => {
                let message = Message::InvalidChecksum {
                    version: version.number(),
                    from,
                };
                self.discard(from, Discard::Checksum, Some(message));
                return None;
            }
            Err(error) => {
                self.discard_malformed(from, error);
                return None;
            }
        };
        // keepalived 2.2.7 does not hold a multicast advert against a unicast instance or the reverse (its
        // sockets are bound to one kind); neither do we.
        if unicast && self.settings.check_unicast_src && !self.settings.peers.contains(&from) {
            self.discard(from, Discard::NotAPeer, Some(Message::NotAUnicastPeer { from }));
            return None;
        }
        let limits = self.settings.peer_ttl_limits.iter().find(|(peer, _, _)| *peer == from);
        if let Some(&(_, min, max)) = limits.filter(|(_, min, max)| !(*min..=*max).contains(&packet.ttl)) {
            let message = Message::TtlOutOfRange {
                ttl: packet.ttl,
                min,
                max,
            };
            self.discard(from, Discard::Ttl(packet.ttl), Some(message));
            return None;
        }
        // RFC 3768 §7.1 makes this check optional (MAY); keepalived 2.2.7 makes it and drops, unless
        // skip_check_adv_addr is set and the advert comes from the master we already know.
        let skip = self.settings.skip_check_adv_addr && self.master_address == Some(from);
        if !skip && repr.addresses.len() != self.settings.addresses.len() {
            let (expected, got) = (self.settings.addresses.len(), repr.addresses.len());
            self.discard(
                from,
                Discard::AddressCount,
                Some(Message::AddressCountMismatch { expected, got }),
            );
            return None;
        }
        if let Some(&address) = self
            .settings
            .addresses
            .iter()
            .find(|a| !skip && !repr.addresses.contains(a))
        {
            let message = Message::AddressMissing {
                vrid: repr.vrid,
                address,
            };
            self.discard(from, Discard::AddressMissing, Some(message));
            return None;
        }
        Some(repr)
    }

    /// RFC 3768 §6.4.2 Backup, with keepalived's `nopreempt` / `preempt_delay`.
    fn backup_received(&mut self, now: Time, from: Ipv4Addr, advert: &Repr) {
        self.accepted(from, advert.priority);
        if advert.priority == 0 {
            // The master is leaving: take over after Skew_Time unless a better backup speaks first.
            self.log(Message::BackupReceivedPriorityZero);
            self.protocol_timer = Some(now + self.skew_time());
            return;
        }
        let preempt_pending =
            self.settings.preempt_delay > Duration::ZERO && self.preempt_until.is_none_or(|until| until > now);
        if !self.settings.preempt || advert.priority >= self.effective_priority || preempt_pending {
            self.learn_interval(advert);
            if self.settings.preempt_delay > Duration::ZERO {
                if advert.priority >= self.effective_priority {
                    if self.preempt_until.take().is_some() {
                        self.log(Message::StopPreemptDelay);
                    }
                } else if self.preempt_until.is_none() {
                    self.log(Message::StartPreemptDelay {
                        delay: self.settings.preempt_delay,
                    });
                    self.preempt_until = Some(now + self.settings.preempt_delay);
                }
            }
            self.learn_master(from);
            self.protocol_timer = Some(self.down_timer(now));
        } else {
            // RFC 3768 §6.4.2: discard. Master_Down_Timer keeps running, so we take over when it expires.
            self.log(Message::BackupDiscardingLowerPriority {
                from,
                priority: advert.priority,
            });
        }
    }

    /// RFC 3768 §6.4.3 Master.
    fn master_received(&mut self, now: Time, from: Ipv4Addr, advert: &Repr) {
        self.accepted(from, advert.priority);
        let ours = self.effective_priority;
        if advert.priority == 0 {
            self.log(Message::MasterReceivedPriorityZero);
            self.send_advert(ours);
            self.protocol_timer = Some(now + self.settings.advert_interval);
            return;
        }
        if advert.priority == ours && from == self.settings.source {
            // Our own address with our priority: a misconfiguration (or a loop), not a reason to change state.
            self.log(Message::EqualPriorityOurAddress);
            return;
        }
        let higher = advert.priority > ours;
        let wins_tie = advert.priority == ours && u32::from(from) > u32::from(self.settings.source);
        if higher || wins_tie {
            let reason = if higher {
                self.log(Message::MasterReceivedHigherPriority {
                    from,
                    theirs: advert.priority,
                    ours,
                });
                Reason::HigherPriority {
                    from,
                    priority: advert.priority,
                }
            } else {
                self.log(Message::MasterReceivedSamePriorityHigherAddress { from, priority: ours });
                Reason::SamePriorityHigherAddress { from }
            };
            if self.settings.higher_prio_send_advert {
                self.send_advert(ours);
            }
            self.learn_interval(advert);
            self.master_address = Some(from);
            self.step_down(now, reason);
            return;
        }
        // A weaker master exists (split brain healing): RFC 9568 §6.4.3 and keepalived answer with an advert at
        // once so it steps down, and re-announce the addresses.
        let forcing = !self.settings.lower_prio_no_advert;
        self.log(Message::ReceivedLowerPriority {
            from,
            theirs: advert.priority,
            ours,
            forcing,
        });
        if forcing {
            self.send_advert(ours);
            self.protocol_timer = Some(now + self.settings.advert_interval);
        }
        if let Some(repeat) = self.settings.garp.lower_prio_repeat {
            self.gratuitous_arps(repeat);
            if let Some(delay) = self.settings.garp.lower_prio_delay {
                self.second_garp = Some((now + delay, repeat));
            }
        }
        self.notify(Notify::MasterRxLowerPriority);
    }

    fn become_master(&mut self, now: Time, reason: Reason) {
        // Advert first so the old master (if any) hears us before our gratuitous ARPs move the traffic.
        self.send_advert(self.effective_priority);
        self.set_state(State::Master, reason);
        self.log(Message::EnteringMasterState);
        // v3: a backup followed the old master's interval; as master we advertise our own.
        self.master_adver_interval = self.settings.advert_interval;
        self.log(Message::SettingVips);
        self.actions.push_back(Action::AddAddresses);
        for address in self.settings.addresses.clone() {
            let interface = self.settings.interface.clone();
            self.log(Message::SendingGratuitousArps { interface, address });
        }
        self.gratuitous_arps(self.settings.garp.master_repeat);
        self.second_garp = self
            .settings
            .garp
            .master_delay
            .map(|delay| (now + delay, self.settings.garp.master_repeat));
        self.garp_refresh = self.settings.garp.master_refresh.map(|period| now + period);
        self.notify(Notify::Master);
        self.master_address = None;
        self.preempt_until = None;
        self.protocol_timer = Some(now + self.settings.advert_interval);
    }

    fn step_down(&mut self, now: Time, reason: Reason) {
        self.set_state(State::Backup, reason);
        self.log(Message::EnteringBackupState);
        self.release_addresses();
        self.notify(Notify::Backup);
        self.second_garp = None;
        self.garp_refresh = None;
        self.protocol_timer = Some(self.down_timer(now));
    }

    fn release_addresses(&mut self) {
        self.log(Message::RemovingVips);
        self.actions.push_back(Action::RemoveAddresses);
    }

    /// v3: the backup follows the master's interval (RFC 9568 §6.4.2), which changes its Skew_Time and MDI.
    fn learn_interval(&mut self, advert: &Repr) {
        if let Body::V3 { interval_centis } = advert.body {
            let learned = Duration::from_millis(u64::from(interval_centis) * 10);
            if learned != self.master_adver_interval {
                let from_ms = self.master_adver_interval.as_millis() as u64;
                self.log(Message::AdvertIntervalUpdated {
                    from_ms,
                    to_ms: learned.as_millis() as u64,
                });
                self.master_adver_interval = learned;
            }
        }
    }

    fn learn_master(&mut self, from: Ipv4Addr) {
        // keepalived 2.2.7 records the master silently (later versions log "master set to", with -D).
        self.master_address = Some(from);
    }

    fn send_advert(&mut self, priority: u8) {
        let settings = &self.settings;
        let body = match (settings.version, &settings.authentication) {
            (Version::V2, authentication) => {
                let (auth_type, auth_data) = match authentication {
                    Authentication::None => (AuthType::None, [0; AUTH_DATA_LEN]),
                    Authentication::Password(password) => (AuthType::Password, *password),
                };
                let interval_secs = settings.advert_interval.as_secs().clamp(1, 255) as u8;
                Body::V2 {
                    interval_secs,
                    auth_type,
                    auth_data,
                }
            }
            (Version::V3, _) => {
                let interval_centis = (settings.advert_interval.as_millis() / 10).clamp(1, 4095) as u16;
                Body::V3 { interval_centis }
            }
        };
        let repr = Repr {
            vrid: settings.vrid,
            priority,
            addresses: settings.addresses.clone(),
            body,
        };
        for dst in settings.destinations() {
            let envelope = Envelope {
                src: settings.source,
                dst,
            };
            let payload = repr.to_bytes(settings.checksum_form, envelope);
            self.actions.push_back(Action::Send(Outgoing {
                src: settings.source,
                dst,
                priority,
                payload,
            }));
        }
    }

    fn gratuitous_arps(&mut self, repeat: u32) {
        if repeat > 0 && !self.settings.addresses.is_empty() {
            self.actions.push_back(Action::GratuitousArp { repeat });
        }
    }

    fn set_state(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.actions.push_back(Action::StateChanged { from, to, reason });
    }

    fn notify(&mut self, kind: Notify) {
        self.actions.push_back(Action::Notify {
            kind,
            priority: self.effective_priority,
        });
    }

    fn accepted(&mut self, from: Ipv4Addr, priority: u8) {
        self.actions.push_back(Action::Accepted { from, priority });
    }

    fn discard(&mut self, from: Ipv4Addr, reason: Discard, message: Option<Message>) {
        if let Some(message) = message {
            self.log(message);
        }
        self.actions.push_back(Action::Discarded { from, reason });
    }

    fn discard_malformed(&mut self, from: Ipv4Addr, error: crate::wire::Error) {
        let message = Message::Malformed {
            from,
            error: error.to_string(),
        };
        self.discard(from, Discard::Malformed(error), Some(message));
    }

    fn log(&mut self, message: Message) {
        self.actions.push_back(Action::Log(LogLine {
            instance: self.settings.name.clone(),
            message,
        }));
    }

    fn clear_timers(&mut self) {
        self.protocol_timer = None;
        self.second_garp = None;
        self.garp_refresh = None;
        self.preempt_until = None;
    }
}

/// (256 - priority) / 256 of `interval`, to the nanosecond.
pub fn skew_time(priority: u8, interval: Duration) -> Duration {
    let nanos = (256 - u128::from(priority)) * interval.as_nanos() / 256;
    Duration::from_nanos(nanos as u64)
}

/// Compares passwords without leaking where they differ through timing.
fn constant_time_eq(a: &[u8; AUTH_DATA_LEN], b: &[u8; AUTH_DATA_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
