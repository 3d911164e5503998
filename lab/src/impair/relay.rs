//! The userspace backend, for kernels without netem. A host's switch port leaves its bridge; a veth pair takes its
//! place (one end a bridge port, the other the relay's), and a thread moves frames between the host's port and the
//! relay's end over AF_PACKET sockets, holding each in a queue ordered by departure time for as long as the
//! [`Shaper`] decides. The sockets carry a virtio-net header with every frame, so a frame whose checksum the
//! sender left to the hardware, or a TCP super-frame, crosses unchanged, as it does through the bridge itself.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::shaper::Shaper;
use super::{Direction, Impairment, QUEUE_LIMIT};
use crate::net::build::set_up;
use crate::net::netlink::{Netlink, Request};
use crate::net::netns;
use crate::plan::InterfacePlan;

/// `struct virtio_net_hdr`, in front of every frame on the relay's sockets.
const VNET_HEADER: usize = 10;
const NEEDS_CHECKSUM: u8 = 1;
const GSO_NONE: u8 = 0;
/// The largest frame a socket hands over: a TCP super-frame of 64 KiB and its headers.
const FRAME_MAX: usize = 65_536 + 256;
/// How long the relay keeps polling without sleeping after it moved a frame. Waking a sleeping thread costs tens of
/// microseconds on an idle machine, and an answer (a reply, an ACK) usually follows a frame within that: it finds
/// the relay awake. The price is at most this much CPU after each burst.
const STAY_AWAKE_NS: u64 = 100_000;
/// Frames read from one socket in one call, before the other gets its turn.
const BATCH: usize = 32;

/// A running relay; dropping it stops its thread (the sockets close with it).
pub struct Relay {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    settings: Mutex<[Impairment; 2]>,
    generation: AtomicU64,
    stop: AtomicBool,
    /// Drop what the lane to the host holds (its link went down).
    flush_to_host: AtomicBool,
    /// An eventfd the thread polls, so a change or a stop is seen at once.
    wake: OwnedFd,
}

impl Relay {
    /// Puts a relay, passing every frame untouched, between the host's switch port and its bridge. `mtu` is the
    /// segment's, if it sets one. On failure the host's port is back in its bridge and the pair is gone.
    pub fn insert(switch: &Path, port: &InterfacePlan, mtu: Option<u32>) -> io::Result<Relay> {
        // SAFETY: eventfd with valid flags; the descriptor it returns is ours alone.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        let shared = Arc::new(Shared {
            settings: Mutex::new([Impairment::default(); 2]),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            flush_to_host: AtomicBool::new(false),
            // SAFETY: just created above and owned by nothing else.
            wake: unsafe { OwnedFd::from_raw_fd(wake) },
        });
        let plan = port.clone();
        let (host_side, relay_side) = netns::run_in(switch, move || {
            create_pair(&plan, mtu)?;
            splice_in(&plan).inspect_err(|_| splice_out(&plan))
        })?;
        let thread = std::thread::Builder::new().name("lab-relay".into()).spawn({
            let shared = shared.clone();
            move || run(&shared, host_side, relay_side)
        });
        match thread {
            Ok(thread) => Ok(Relay {
                shared,
                thread: Some(thread),
            }),
            Err(e) => {
                let plan = port.clone();
                let _ = netns::run_in(switch, move || {
                    splice_out(&plan);
                    Ok(())
                });
                Err(e)
            }
        }
    }

    pub fn set(&self, direction: Direction, impairment: Impairment) {
        self.shared.settings.lock().unwrap_or_else(|e| e.into_inner())[lane_index(direction)] = impairment;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.wake();
    }

    /// The host's link went down: what the relay held for the host is lost, as a qdisc is reset when its device
    /// loses its carrier.
    pub fn forget_frames_to_host(&self) {
        self.shared.flush_to_host.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// With the pair made: sockets on the host's port and the relay's end (deaf until the swap is done, so no frame
/// is relayed that the bridge also forwarded), the host's port out of the bridge and the relay's port in, in one
/// request, then the sockets listening.
fn splice_in(port: &InterfacePlan) -> io::Result<(OwnedFd, OwnedFd)> {
    let sockets = (
        packet_socket(port.switch_port_index)?,
        packet_socket(port.relay_end_index)?,
    );
    let release = LinkUnspec::new_with_index(port.switch_port_index)
        .nocontroller()
        .build();
    let join = LinkUnspec::new_with_index(port.relay_port_index)
        .controller(port.bridge_index)
        .build();
    Netlink::open()?.apply(vec![
        Request::new(
            format!("take {} out of its bridge", port.switch_port),
            RouteNetlinkMessage::SetLink(release),
        ),
        Request::new(
            format!("put {} in its place", port.relay_port),
            RouteNetlinkMessage::SetLink(join),
        ),
    ])?;
    listen(&sockets.0, port.switch_port_index)?;
    listen(&sockets.1, port.relay_end_index)?;
    Ok(sockets)
}

/// Undoes [`splice_in`] and the pair, as far as they got: the host's port back in its bridge, the pair deleted.
fn splice_out(port: &InterfacePlan) {
    let back = LinkUnspec::new_with_index(port.switch_port_index)
        .controller(port.bridge_index)
        .build();
    let delete = LinkUnspec::new_with_index(port.relay_port_index).build();
    if let Ok(mut netlink) = Netlink::open() {
        let _ = netlink.apply(vec![Request::new(
            format!("put {} back in its bridge", port.switch_port),
            RouteNetlinkMessage::SetLink(back),
        )]);
        let _ = netlink.apply(vec![Request::new(
            format!("delete {}", port.relay_port),
            RouteNetlinkMessage::DelLink(delete),
        )]);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a live buffer to our eventfd; a full counter only means a wake is pending.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

fn lane_index(direction: Direction) -> usize {
    match direction {
        Direction::From => 0,
        Direction::To => 1,
    }
}

/// The veth pair that stands in for the host's port: one end in the bridge, the other the relay's, both up.
fn create_pair(port: &InterfacePlan, mtu: Option<u32>) -> io::Result<()> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(port.relay_end.clone())
        .index(port.relay_end_index);
    // Not in the bridge yet: it takes the host's port's place in one request (see `splice_in`).
    let mut pair = LinkVeth::new(&port.relay_port, &port.relay_end).index(port.relay_port_index);
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        pair = pair.mtu(mtu);
    }
    let pair = pair.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
    Netlink::open()?.apply(vec![
        Request::new(
            format!("create veth {} <-> {}", port.relay_port, port.relay_end),
            RouteNetlinkMessage::NewLink(pair.build()),
        ),
        Request::new(format!("{} up", port.relay_port), set_up(port.relay_port_index)),
        Request::new(format!("{} up", port.relay_end), set_up(port.relay_end_index)),
    ])
}

/// A raw socket on one interface, deaf until [`listen`]: then every frame it receives, none it sends, each with its
/// virtio-net header.
fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives nothing until it is bound with a protocol.
    // SAFETY: plain socket creation; the descriptor is wrapped at once.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: fd was just created and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
    set_option(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)?;
    set_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20)?;
    bind(fd, ifindex, 0)?;
    Ok(socket)
}

/// Makes a socket from [`packet_socket`] receive every frame of its interface.
fn listen(socket: &OwnedFd, ifindex: u32) -> io::Result<()> {
    bind(socket.as_raw_fd(), ifindex, (libc::ETH_P_ALL as u16).to_be())
}

fn bind(fd: RawFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid start.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = ifindex as i32;
    // SAFETY: bind with a live, correctly sized sockaddr_ll.
    check(unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn set_option(fd: RawFd, level: libc::c_int, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: an int option from a live local.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A frame waiting for its departure, ordered by it (then by arrival, so equal times keep their order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    at: u64,
    sequence: u64,
    frame: Vec<u8>,
}

/// One direction: frames read from `input`, shaped, written to `output`.
struct Lane {
    input: RawFd,
    output: RawFd,
    shaper: Shaper,
    queue: BinaryHeap<Reverse<Held>>,
    sequence: u64,
}

impl Lane {
    fn next_departure(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse(held)| held.at)
    }

    fn release(&mut self, now: u64) {
        let mut due = Vec::new();
        while self.next_departure().is_some_and(|at| at <= now) {
            due.push(self.queue.pop().expect("peeked").0.frame);
        }
        let frames: Vec<&[u8]> = due.iter().map(Vec::as_slice).collect();
        send_all(self.output, &frames);
    }

    /// Reads what is waiting (a batch at most) and sends or holds each frame as the shaper decides; what leaves at
    /// once leaves in one batch, in order.
    fn receive(&mut self, batch: &mut Batch) {
        let count = batch.read(self.input);
        let now = monotonic_ns();
        let mut corrupted = Vec::new();
        // (frame in the batch, its corrupted copy if any)
        let mut leaving: Vec<(usize, Option<usize>)> = Vec::new();
        for index in 0..count {
            let received = batch.frame(index);
            if received.len() <= VNET_HEADER {
                continue;
            }
            for departure in self.shaper.admit(now, received.len() - VNET_HEADER) {
                let copy = departure.corrupt.map(|(byte, mask)| corrupt(received, byte, mask));
                if departure.at <= now {
                    let copy = copy.map(|copy| {
                        corrupted.push(copy);
                        corrupted.len() - 1
                    });
                    leaving.push((index, copy));
                } else if self.queue.len() < QUEUE_LIMIT {
                    self.sequence += 1;
                    self.queue.push(Reverse(Held {
                        at: departure.at,
                        sequence: self.sequence,
                        frame: copy.unwrap_or_else(|| received.to_vec()),
                    }));
                }
            }
        }
        let frames: Vec<&[u8]> = leaving
            .iter()
            .map(|(index, copy)| match copy {
                Some(copy) => corrupted[*copy].as_slice(),
                None => batch.frame(*index),
            })
            .collect();
        send_all(self.output, &frames);
    }
}

/// Buffers for one `recvmmsg`: each holds a super-frame, so the batch is kept small.
struct Batch {
    buffers: Vec<Vec<u8>>,
    lengths: Vec<usize>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buffers: (0..BATCH).map(|_| vec![0u8; VNET_HEADER + FRAME_MAX]).collect(),
            lengths: Vec::new(),
        }
    }

    /// Reads what is waiting, up to a batch, without blocking; returns how many frames came.
    fn read(&mut self, input: RawFd) -> usize {
        let mut iovecs: Vec<libc::iovec> = (self.buffers.iter_mut())
            .map(|buffer| libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            })
            .collect();
        let mut headers = message_headers(&mut iovecs);
        // SAFETY: every header points at one live iovec, and each iovec at a live buffer of its length.
        let count = unsafe {
            libc::recvmmsg(
                input,
                headers.as_mut_ptr(),
                headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let count = usize::try_from(count).unwrap_or(0);
        self.lengths = headers[..count].iter().map(|h| h.msg_len as usize).collect();
        count
    }

    fn frame(&self, index: usize) -> &[u8] {
        &self.buffers[index][..self.lengths[index]]
    }
}

/// One `mmsghdr` per iovec, each naming its own.
fn message_headers(iovecs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovecs
        .iter_mut()
        .map(|iovec| {
            // SAFETY: mmsghdr is plain old data; zeroed is a valid start.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect()
}

/// Sends frames (each with its header) in as few calls as the socket allows; a frame the link cannot take now (a
/// full buffer, a link that is down) is lost, as on a wire.
fn send_all(output: RawFd, frames: &[&[u8]]) {
    let mut iovecs: Vec<libc::iovec> = frames
        .iter()
        .map(|frame| libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        })
        .collect();
    let mut headers = message_headers(&mut iovecs);
    let mut sent = 0;
    while sent < headers.len() {
        let rest = &mut headers[sent..];
        // SAFETY: the headers point at live iovecs over frames that outlive the call; the kernel only reads them.
        let count = unsafe {
            libc::sendmmsg(
                output,
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        // The first frame left failed: it is lost, the others still go.
        sent += usize::try_from(count).unwrap_or(0).max(1);
    }
}

fn run(shared: &Shared, host_side: OwnedFd, relay_side: OwnedFd) {
    // The kernel may round a thread's timer up by its slack (50 us by default): a delay of microseconds would
    // become one of tens. One nanosecond asks for the timer as set.
    // SAFETY: prctl with an integer argument; it changes only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let lane = |input: &OwnedFd, output: &OwnedFd, seed| Lane {
        input: input.as_raw_fd(),
        output: output.as_raw_fd(),
        shaper: Shaper::new(Impairment::default(), seed),
        queue: BinaryHeap::new(),
        sequence: 0,
    };
    let seed = monotonic_ns();
    let mut lanes = [
        lane(&host_side, &relay_side, seed),
        lane(&relay_side, &host_side, seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    let mut batch = Batch::new();
    let mut generation = 0;
    let mut awake_until = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let current = shared.generation.load(Ordering::SeqCst);
        if current != generation {
            generation = current;
            let settings = *shared.settings.lock().unwrap_or_else(|e| e.into_inner());
            for (lane, impairment) in lanes.iter_mut().zip(settings) {
                // As netem does when its qdisc is removed: a link made perfect forgets the frames it was holding.
                if impairment.is_perfect() {
                    lane.queue.clear();
                }
                lane.shaper.set(impairment);
            }
        }
        if shared.flush_to_host.swap(false, Ordering::SeqCst) {
            lanes[lane_index(Direction::To)].queue.clear();
        }
        let now = monotonic_ns();
        for lane in &mut lanes {
            lane.release(now);
        }
        let next = lanes.iter().filter_map(Lane::next_departure).min();
        let wake_at = if now < awake_until { Some(now) } else { next };
        let timeout = wake_at
            .map(|at| nix::sys::time::TimeSpec::from_duration(std::time::Duration::from_nanos(at.saturating_sub(now))));
        let mut fds = [
            PollFd::new(host_side.as_fd(), PollFlags::POLLIN),
            PollFd::new(relay_side.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.wake.as_fd(), PollFlags::POLLIN),
        ];
        if nix::poll::ppoll(&mut fds, timeout, None).is_err() {
            continue;
        }
        let events: Vec<PollFlags> = fds
            .iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect();
        if events.iter().any(|e| e.contains(PollFlags::POLLNVAL)) {
            return;
        }
        // A socket whose interface went down reports the error until it is read; unread, ppoll would never sleep.
        for (fd, event) in [host_side.as_raw_fd(), relay_side.as_raw_fd()].into_iter().zip(&events) {
            if event.contains(PollFlags::POLLERR) {
                clear_error(fd);
            }
        }
        let ready: Vec<bool> = events.iter().map(|e| e.contains(PollFlags::POLLIN)).collect();
        for (lane, ready) in lanes.iter_mut().zip(&ready) {
            if *ready {
                lane.receive(&mut batch);
                awake_until = monotonic_ns() + STAY_AWAKE_NS;
            }
        }
        if ready[2] {
            let mut count = [0u8; 8];
            // SAFETY: an 8-byte read into a live buffer from our eventfd.
            unsafe { libc::read(shared.wake.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
    }
}

/// Reads (and so clears) a socket's pending error.
fn clear_error(fd: RawFd) {
    let mut error: libc::c_int = 0;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live int of the given length.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut length,
        )
    };
}

/// A copy of the frame (after its header) with one bit flipped. A checksum left to the hardware is computed first,
/// so the flip is damage the receiver can detect, as on a wire; a super-frame is left whole (its segments get their
/// checksums later, over the flipped bit, which would hide it).
fn corrupt(received: &[u8], byte: usize, mask: u8) -> Vec<u8> {
    let mut copy = received.to_vec();
    if copy[1] != GSO_NONE {
        return copy;
    }
    if copy[0] & NEEDS_CHECKSUM != 0 {
        let start = u16::from_le_bytes([copy[6], copy[7]]) as usize;
        let offset = u16::from_le_bytes([copy[8], copy[9]]) as usize;
        let frame = &mut copy[VNET_HEADER..];
        if start + offset + 2 <= frame.len() {
            let sum = internet_checksum(&frame[start..]);
            frame[start + offset..start + offset + 2].copy_from_slice(&sum.to_be_bytes());
        }
        copy[0] &= !NEEDS_CHECKSUM;
    }
    copy[VNET_HEADER + byte] ^= mask;
    copy
}

/// RFC 1071's sum over `data` (whose checksum field holds the pseudo-header's partial sum, as the sender left it).
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_known_header_is_rfc_1071s() {
        // An IPv4 header with its checksum field zeroed; the right checksum is 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header), 0xb861);
    }

    #[test]
    fn corruption_completes_a_pending_checksum_then_flips_one_bit() {
        let mut frame = vec![0u8; VNET_HEADER + 40];
        frame[0] = NEEDS_CHECKSUM;
        frame[6..8].copy_from_slice(&20u16.to_le_bytes());
        frame[8..10].copy_from_slice(&6u16.to_le_bytes());
        frame[VNET_HEADER + 30] = 0xab;
        let corrupted = corrupt(&frame, 35, 0x10);
        assert_eq!(corrupted[0] & NEEDS_CHECKSUM, 0);
        assert_eq!(corrupted[VNET_HEADER + 35], 0x10);
        // The stored checksum makes the sum over the (uncorrupted) region come out right.
        let mut check = corrupted[VNET_HEADER + 20..].to_vec();
        check[15] ^= 0x10;
        assert_eq!(internet_checksum(&check), 0);
    }
}
