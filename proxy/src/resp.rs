//! RESP2, the protocol Redis and Sentinel speak: `+simple`, `-error`, `:integer`, `$bulk` (or `$-1` null) and
//! `*array` (or `*-1` null), each line ending in CRLF.
//!
//! A [`Decoder`] reads values incrementally: each call consumes the complete elements at the front of the buffer
//! (the caller drops those bytes) and keeps what it learnt (arrays being filled, the length of a bulk string still
//! arriving), so a large answer that arrives in many reads is scanned once, not again after every read. [`parse`]
//! is the one-shot form. Limits keep a peer that answers garbage from making us allocate without bound.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Null,
    Array(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string accepted.
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_elements: usize,
    /// Deepest nesting of arrays.
    pub max_depth: usize,
}

impl Default for Limits {
    /// Enough for every answer a proxy asks for (an `INFO replication` is a few hundred bytes; `ROLE` of a master
    /// lists its replicas), far below what would hurt.
    fn default() -> Limits {
        Limits {
            max_bulk: 1 << 20,
            max_elements: 1024,
            max_depth: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unknown RESP type byte 0x{0:02x}")]
    Type(u8),
    #[error("a line that is not valid: {0}")]
    Line(String),
    #[error("bulk string of {0} bytes is over the limit of {1}")]
    BulkTooLong(usize, usize),
    #[error("array of {0} elements is over the limit of {1}")]
    ArrayTooLong(usize, usize),
    #[error("arrays nested deeper than {0}")]
    TooDeep(usize),
    #[error("bulk string not followed by CRLF")]
    MissingCrlf,
}

/// Reads one value from the front of `buffer`: `Ok(Some((value, used)))`, `Ok(None)` if more bytes are needed.
pub fn parse(buffer: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, Error> {
    let mut decoder = Decoder::new(*limits);
    match decoder.decode(buffer)? {
        (used, Some(value)) => Ok(Some((value, used))),
        (_, None) => Ok(None),
    }
}

/// Reads values from a stream of bytes, remembering across reads what it has already taken in.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    /// Arrays being filled, innermost last: the elements so far and how many there will be.
    arrays: Vec<(Vec<Value>, usize)>,
    /// The length of a bulk string whose header has been consumed and whose bytes have not all arrived.
    bulk: Option<usize>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            arrays: Vec::new(),
            bulk: None,
        }
    }

    /// Consumes what it can from the front of `buffer`: the number of bytes taken (the caller drops them before
    /// the next call) and the value, once one is complete. Bytes of an element not yet complete are left in the
    /// buffer; after an error the decoder is in no state to go on.
    pub fn decode(&mut self, buffer: &[u8]) -> Result<(usize, Option<Value>), Error> {
        let mut used = 0;
        loop {
            let Some((element, length)) = self.element(&buffer[used..])? else {
                return Ok((used, None));
            };
            used += length;
            let Some(mut value_done) = element else {
                continue;
            };
            // A complete element fills the innermost array; a full array is an element of the one around it.
            loop {
                let Some((items, count)) = self.arrays.last_mut() else {
                    return Ok((used, Some(value_done)));
                };
                items.push(value_done);
                if items.len() < *count {
                    break;
                }
                let (items, _) = self.arrays.pop().expect("an array being filled");
                value_done = Value::Array(items);
            }
        }
    }

    /// The next element, or the header of one (an array or a bulk string) with `None` as its value, and the
    /// bytes it took; `None` when the buffer ends first.
    fn element(&mut self, buffer: &[u8]) -> Result<Option<(Option<Value>, usize)>, Error> {
        if let Some(length) = self.bulk {
            if buffer.len() < length + 2 {
                return Ok(None);
            }
            if &buffer[length..length + 2] != b"\r\n" {
                return Err(Error::MissingCrlf);
            }
            self.bulk = None;
            return Ok(Some((Some(Value::Bulk(buffer[..length].to_vec())), length + 2)));
        }
        let Some(&kind) = buffer.first() else {
            return Ok(None);
        };
        let Some((line, after_line)) = line(&buffer[1..])? else {
            return Ok(None);
        };
        let used = 1 + after_line;
        let text = || String::from_utf8_lossy(line).into_owned();
        let value = match kind {
            b'+' => Value::Simple(text()),
            b'-' => Value::Error(text()),
            b':' => Value::Integer(number(line)?),
            b'$' => match number(line)? {
                -1 => Value::Null,
                length => {
                    let length = usize::try_from(length).map_err(|_| Error::Line(text()))?;
                    if length > self.limits.max_bulk {
                        return Err(Error::BulkTooLong(length, self.limits.max_bulk));
                    }
                    self.bulk = Some(length);
                    return Ok(Some((None, used)));
                }
            },
            b'*' => match number(line)? {
                -1 => Value::Null,
                count => {
                    let count = usize::try_from(count).map_err(|_| Error::Line(text()))?;
                    if count > self.limits.max_elements {
                        return Err(Error::ArrayTooLong(count, self.limits.max_elements));
                    }
                    if count == 0 {
                        Value::Array(Vec::new())
                    } else {
                        if self.arrays.len() + 1 > self.limits.max_depth {
                            return Err(Error::TooDeep(self.limits.max_depth));
                        }
                        self.arrays.push((Vec::with_capacity(count.min(64)), count));
                        return Ok(Some((None, used)));
                    }
                }
            },
            other => return Err(Error::Type(other)),
        };
        Ok(Some((Some(value), used)))
    }
}

/// The line up to CRLF and its length including CRLF; 64 KiB without a CRLF is garbage, not a line.
fn line(buffer: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    const LONGEST_HEADER: usize = 64 * 1024;
    match buffer.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&buffer[..end], end + 2))),
        None if buffer.len() > LONGEST_HEADER => Err(Error::Line("no CRLF in 64 KiB".into())),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Line(format!("`{}` is not an integer", String::from_utf8_lossy(line))))
}

/// A command as an array of bulk strings, the form every Redis server accepts.
pub fn command(arguments: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", arguments.len()).into_bytes();
    for argument in arguments {
        out.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
        out.extend_from_slice(argument);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Value {
    /// The value as its wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(text) => out.extend_from_slice(format!("+{text}\r\n").as_bytes()),
            Value::Error(text) => out.extend_from_slice(format!("-{text}\r\n").as_bytes()),
            Value::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Value::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Value::Null => out.extend_from_slice(b"$-1\r\n"),
            Value::Array(elements) => {
                out.extend_from_slice(format!("*{}\r\n", elements.len()).as_bytes());
                for element in elements {
                    element.encode_into(out);
                }
            }
        }
    }

    /// A bulk or simple string as text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Bulk(bytes) => std::str::from_utf8(bytes).ok(),
            Value::Simple(text) => Some(text),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(text) => write!(f, "{text}"),
            Value::Error(text) => write!(f, "(error) {text}"),
            Value::Integer(n) => write!(f, "(integer) {n}"),
            Value::Bulk(bytes) => write!(f, "\"{}\"", String::from_utf8_lossy(bytes)),
            Value::Null => write!(f, "(nil)"),
            Value::Array(elements) => {
                let parts: Vec<String> = elements.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(bytes: &[u8]) -> Result<Option<(Value, usize)>, Error> {
        parse(bytes, &Limits::default())
    }

    #[test]
    fn every_type() {
        assert_eq!(parsed(b"+PONG\r\n"), Ok(Some((Value::Simple("PONG".into()), 7))));
        assert_eq!(parsed(b"-ERR no\r\n"), Ok(Some((Value::Error("ERR no".into()), 9))));
        assert_eq!(parsed(b":-42\r\n"), Ok(Some((Value::Integer(-42), 6))));
        assert_eq!(
            parsed(b"$5\r\ntiger\r\n"),
            Ok(Some((Value::Bulk(b"tiger".to_vec()), 11)))
        );
        assert_eq!(parsed(b"$-1\r\n"), Ok(Some((Value::Null, 5))));
        assert_eq!(parsed(b"*-1\r\n"), Ok(Some((Value::Null, 5))));
        let reply = b"*2\r\n$9\r\n10.0.0.12\r\n$4\r\n6379\r\n";
        assert_eq!(
            parsed(reply),
            Ok(Some((
                Value::Array(vec![Value::Bulk(b"10.0.0.12".to_vec()), Value::Bulk(b"6379".to_vec())]),
                reply.len()
            )))
        );
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let reply = b"*2\r\n$9\r\n10.0.0.12\r\n$4\r\n6379\r\n";
        for end in 0..reply.len() {
            assert_eq!(parsed(&reply[..end]), Ok(None), "cut at {end}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parsed(b"HTTP/1.1 200 OK\r\n"), Err(Error::Type(b'H')));
        assert!(matches!(parsed(b":twelve\r\n"), Err(Error::Line(_))));
        assert_eq!(parsed(b"$3\r\nabcd\r\n"), Err(Error::MissingCrlf));
        assert!(matches!(parsed(b"$-7\r\n"), Err(Error::Line(_))));
        assert_eq!(parsed(b"$2000000\r\n"), Err(Error::BulkTooLong(2_000_000, 1 << 20)));
        assert_eq!(parsed(b"*100000\r\n"), Err(Error::ArrayTooLong(100_000, 1024)));
        assert_eq!(parsed(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"), Err(Error::TooDeep(4)));
        assert!(matches!(
            parse(&[b'+'; 70_000], &Limits::default()),
            Err(Error::Line(_))
        ));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"SENTINEL", b"get-master-addr-by-name", b"mymaster"]),
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n".to_vec()
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 :._-]{0,20}".prop_map(Value::Simple),
            "[a-zA-Z0-9 :._-]{0,20}".prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bulk),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
        })
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(v in value()) {
            let bytes = v.encode();
            prop_assert_eq!(parsed(&bytes), Ok(Some((v, bytes.len()))));
        }

        /// Fed in pieces of any size, the decoder gives the value once, having consumed exactly its bytes, and
        /// never takes back bytes it has consumed.
        #[test]
        fn decoding_in_pieces_is_decoding_at_once(v in value(), cuts in proptest::collection::vec(1usize..16, 1..64)) {
            let bytes = v.encode();
            let mut decoder = Decoder::new(Limits::default());
            let (mut buffer, mut fed, mut consumed) = (Vec::new(), 0, 0);
            let mut cuts = cuts.into_iter().cycle();
            let decoded = loop {
                let step = cuts.next().unwrap().min(bytes.len() - fed);
                buffer.extend_from_slice(&bytes[fed..fed + step]);
                fed += step;
                let (used, value) = decoder.decode(&buffer).unwrap();
                buffer.drain(..used);
                consumed += used;
                if let Some(value) = value {
                    break value;
                }
                prop_assert!(fed < bytes.len(), "all bytes fed and no value");
            };
            prop_assert_eq!(decoded, v);
            prop_assert_eq!(consumed, bytes.len());
            prop_assert!(buffer.is_empty());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parsed(&bytes);
        }
    }
}
