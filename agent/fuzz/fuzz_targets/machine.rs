//! A machine fed arbitrary packets, timer expiries, faults and weights at arbitrary times: no panic, and handling
//! a due timer always moves it forward (no timer storm).
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use agent::machine::{Machine, Received, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut settings = Settings::new("fuzz", 10, 100, Ipv4Addr::new(10, 0, 0, 21));
    settings.addresses = vec![Ipv4Addr::new(10, 0, 0, 31)];
    if data.first().is_some_and(|b| b & 1 == 1) {
        settings.peers = vec![Ipv4Addr::new(10, 0, 0, 23)];
    }
    let mut machine = Machine::new(settings);
    let mut now = Duration::ZERO;
    machine.startup(now);
    for chunk in data.chunks(24) {
        let (&op, rest) = chunk.split_first().unwrap();
        now += Duration::from_micros(u64::from(op) * 20_000);
        match op % 5 {
            0 => {
                let mut handled = 0;
                while let Some(at) = machine.poll_timeout().filter(|at| *at <= now) {
                    machine.handle_timeout(at);
                    machine.drain_actions();
                    handled += 1;
                    assert!(handled < 10_000, "timer does not move forward");
                }
            }
            1 => machine.set_fault(now, op & 0x80 != 0),
            2 => machine.set_priority_offset(now, i32::from(op as i8)),
            _ => {
                let dst = if op & 0x40 != 0 { Ipv4Addr::new(224, 0, 0, 18) } else { Ipv4Addr::new(10, 0, 0, 21) };
                machine.receive(now, Received { src: Ipv4Addr::new(10, 0, 0, 23), dst, ttl: 255, payload: rest });
            }
        }
        machine.drain_actions();
    }
    machine.shutdown(now);
});
