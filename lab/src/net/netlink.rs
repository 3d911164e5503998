//! A small synchronous rtnetlink client.
//!
//! Messages come from rtnetlink's builders; this module only sends them and matches the kernel's acks. It is
//! synchronous on purpose: the kernel handles a route-netlink request inside the sending syscall, and a socket
//! belongs to the namespace of the thread that opened it, so the build runs on plain threads that enter each
//! namespace (see `netns`) with no async runtime whose workers could end up in the wrong namespace.

use std::collections::HashMap;
use std::io;

use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// How many requests go out before their acks are read; bounds what the kernel queues for us.
const WINDOW: usize = 128;

pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// One request and what it is for, so a failure can say what went wrong.
pub struct Request {
    pub what: String,
    pub message: RouteNetlinkMessage,
}

impl Request {
    pub fn new(what: impl Into<String>, message: RouteNetlinkMessage) -> Request {
        Request {
            what: what.into(),
            message,
        }
    }
}

impl Netlink {
    /// Opens a socket in the current thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Acks then carry only the request's header, not a copy of the whole request.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        socket.set_rx_buf_sz(1 << 20)?;
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: vec![0; 1 << 16],
        })
    }

    /// Sends every request (creating objects exclusively) and waits for all acks; the first failure is returned,
    /// naming its request.
    pub fn apply(&mut self, requests: Vec<Request>) -> io::Result<()> {
        self.apply_with(requests, NLM_F_EXCL)
    }

    /// Like [`apply`](Self::apply), but objects that exist already are replaced (restoring routes after a fault).
    pub fn apply_replacing(&mut self, requests: Vec<Request>) -> io::Result<()> {
        self.apply_with(requests, NLM_F_REPLACE)
    }

    fn apply_with(&mut self, requests: Vec<Request>, create_mode: u16) -> io::Result<()> {
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let mut pending: HashMap<u32, String> = HashMap::new();
            let mut batch = Vec::new();
            for request in requests.by_ref().take(WINDOW) {
                let flags = match request.message {
                    RouteNetlinkMessage::NewLink(_)
                    | RouteNetlinkMessage::NewAddress(_)
                    | RouteNetlinkMessage::NewRoute(_) => NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | create_mode,
                    _ => NLM_F_REQUEST | NLM_F_ACK,
                };
                let sequence = self.next_sequence();
                serialize_into(&mut batch, request.message, flags, sequence);
                pending.insert(sequence, request.what);
            }
            // One datagram for the whole window: the kernel walks the messages in order and acks each.
            self.socket.send(&batch, 0)?;
            let mut first_error: Option<io::Error> = None;
            while !pending.is_empty() {
                for message in self.receive()? {
                    if let NetlinkPayload::Error(error) = message.payload {
                        if let Some(what) = pending.remove(&message.header.sequence_number) {
                            if error.code.is_some() && first_error.is_none() {
                                let io = error.to_io();
                                first_error = Some(io::Error::new(io.kind(), format!("{what}: {io}")));
                            }
                        }
                    }
                }
            }
            if let Some(error) = first_error {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Dumps every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    /// Dumps every address of the namespace.
    pub fn addresses(&mut self) -> io::Result<Vec<AddressMessage>> {
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(address) => Some(address),
                _ => None,
            })
            .collect())
    }

    fn dump(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let sequence = self.next_sequence();
        let mut out = Vec::new();
        serialize_into(&mut out, request, NLM_F_REQUEST | NLM_F_DUMP, sequence);
        self.socket.send(&out, 0)?;
        let mut replies = Vec::new();
        loop {
            for message in self.receive()? {
                if message.header.sequence_number != sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(reply) => replies.push(reply),
                    _ => {}
                }
            }
        }
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn receive(&mut self) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let size = loop {
            match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let mut messages = Vec::new();
        let mut offset = 0;
        while offset + 16 <= size {
            let length = u32::from_ne_bytes(self.buffer[offset..offset + 4].try_into().unwrap()) as usize;
            if length < 16 || offset + length > size {
                break;
            }
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..offset + length])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("undecodable netlink reply: {e}")))?;
            messages.push(message);
            offset += (length + 3) & !3;
        }
        Ok(messages)
    }
}

fn serialize_into(out: &mut Vec<u8>, message: RouteNetlinkMessage, flags: u16, sequence: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let start = out.len();
    out.resize(start + packet.buffer_len(), 0);
    packet.serialize(&mut out[start..]);
}
