//! RESP2, the protocol Redis and Sentinel speak: `+simple`, `-error`, `:integer`, `$bulk` (or `$-1` null) and
//! `*array` (or `*-1` null), each line ending in CRLF.
//!
//! [`parse`] reads one value from the front of a buffer and returns how many bytes it used, or `Ok(None)` when the
//! buffer ends before the value does, so the caller reads more and tries again. Limits keep a peer that answers
//! garbage from making us allocate without bound.

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
    parse_at(buffer, limits, 0)
}

fn parse_at(buffer: &[u8], limits: &Limits, depth: usize) -> Result<Option<(Value, usize)>, Error> {
    let Some(&kind) = buffer.first() else {
        return Ok(None);
    };
    let Some((line, after_line)) = line(&buffer[1..])? else {
        return Ok(None);
    };
    let used = 1 + after_line;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), used))),
        b'-' => Ok(Some((Value::Error(text()), used))),
        b':' => Ok(Some((Value::Integer(number(line)?), used))),
        b'$' => {
            let length = number(line)?;
            if length == -1 {
                return Ok(Some((Value::Null, used)));
            }
            let length = usize::try_from(length).map_err(|_| Error::Line(text()))?;
            if length > limits.max_bulk {
                return Err(Error::BulkTooLong(length, limits.max_bulk));
            }
            let rest = &buffer[used..];
            if rest.len() < length + 2 {
                return Ok(None);
            }
            if &rest[length..length + 2] != b"\r\n" {
                return Err(Error::MissingCrlf);
            }
            Ok(Some((Value::Bulk(rest[..length].to_vec()), used + length + 2)))
        }
        b'*' => {
            let count = number(line)?;
            if count == -1 {
                return Ok(Some((Value::Null, used)));
            }
            let count = usize::try_from(count).map_err(|_| Error::Line(text()))?;
            if count > limits.max_elements {
                return Err(Error::ArrayTooLong(count, limits.max_elements));
            }
            if count > 0 && depth + 1 > limits.max_depth {
                return Err(Error::TooDeep(limits.max_depth));
            }
            let mut elements = Vec::with_capacity(count);
            let mut offset = used;
            for _ in 0..count {
                match parse_at(&buffer[offset..], limits, depth + 1)? {
                    Some((value, length)) => {
                        elements.push(value);
                        offset += length;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(elements), offset)))
        }
        other => Err(Error::Type(other)),
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

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parsed(&bytes);
        }
    }
}
