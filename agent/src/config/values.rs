//! Single values of keepalived.conf: numbers, decimal seconds, addresses, flags, each checked where it is
//! written so errors point at it.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::build::Builder;
use super::syntax::{Statement, Word};

impl Builder {
    /// The block of a block keyword; an error if it has none.
    pub(super) fn block<'a>(&mut self, statement: &'a Statement) -> &'a [Statement] {
        match &statement.block {
            Some(block) => block,
            None => {
                self.error(
                    &statement.keyword.at,
                    format!("{}: missing '{{' block", statement.keyword.text),
                );
                &[]
            }
        }
    }

    /// The single argument of a keyword; extra arguments are an error too.
    pub(super) fn one<'a>(&mut self, statement: &'a Statement) -> Option<&'a Word> {
        let keyword = &statement.keyword;
        match statement.args.as_slice() {
            [word] => Some(word),
            [] => {
                self.error(&keyword.at, format!("{}: missing value", keyword.text));
                None
            }
            [_, extra, ..] => {
                self.error(&extra.at, format!("{}: unexpected '{}'", keyword.text, extra.text));
                None
            }
        }
    }

    pub(super) fn number<T>(&mut self, keyword: &str, word: &Word, min: T, max: T) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + std::fmt::Display + Copy,
    {
        match word.text.parse::<i64>() {
            Ok(value) if value >= min.into() && value <= max.into() => T::try_from(value).ok(),
            Ok(_) => {
                self.error(
                    &word.at,
                    format!("{keyword}: number '{}' outside range [{min}, {max}]", word.text),
                );
                None
            }
            Err(_) => {
                self.error(&word.at, format!("{keyword}: invalid number '{}'", word.text));
                None
            }
        }
    }

    pub(super) fn one_number<T>(&mut self, statement: &Statement, min: T, max: T) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + std::fmt::Display + Copy,
    {
        let word = self.one(statement)?;
        self.number(&statement.keyword.text, word, min, max)
    }

    /// Decimal seconds with up to microsecond precision, within `[min, max]` seconds.
    pub(super) fn seconds(&mut self, statement: &Statement, min: f64, max: f64) -> Option<Duration> {
        let word = self.one(statement)?;
        let keyword = &statement.keyword.text;
        let Some(micros) = parse_micros(&word.text) else {
            self.error(&word.at, format!("{keyword}: invalid number '{}'", word.text));
            return None;
        };
        let value = micros as f64 / 1e6;
        if value < min || value > max {
            self.error(
                &word.at,
                format!("{keyword}: number '{}' outside range [{min}, {max}]", word.text),
            );
            return None;
        }
        Some(Duration::from_micros(micros))
    }

    pub(super) fn address(&mut self, keyword: &str, word: &Word) -> Option<Ipv4Addr> {
        match word.text.parse::<Ipv4Addr>() {
            Ok(address) => Some(address),
            Err(_) if word.text.contains(':') => {
                self.error(
                    &word.at,
                    format!("{keyword}: '{}': IPv6 is not supported yet", word.text),
                );
                None
            }
            Err(_) => {
                self.error(&word.at, format!("{keyword}: invalid IPv4 address '{}'", word.text));
                None
            }
        }
    }

    /// Flags like `vrrp_strict` take an optional true/false (keepalived's `get_value_str` booleans).
    pub(super) fn flag(&mut self, statement: &Statement) -> bool {
        match statement.args.as_slice() {
            [] => true,
            [word] => match word.text.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => true,
                "false" | "off" | "no" => false,
                _ => {
                    self.error(
                        &word.at,
                        format!(
                            "{}: expected true or false, not '{}'",
                            statement.keyword.text, word.text
                        ),
                    );
                    false
                }
            },
            [_, extra, ..] => {
                self.error(
                    &extra.at,
                    format!("{}: unexpected '{}'", statement.keyword.text, extra.text),
                );
                false
            }
        }
    }
}

/// Decimal seconds ("1", "0.1", "1.000001") to microseconds, without going through floating point.
fn parse_micros(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !fraction.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 6
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut micros = 0;
    for digit in fraction.chars().chain(std::iter::repeat('0')).take(6) {
        micros = micros * 10 + u64::from(digit.to_digit(10)?);
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

pub(super) fn whole_seconds(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::parse_micros;

    #[test]
    fn decimal_seconds_are_exact_to_the_microsecond() {
        assert_eq!(parse_micros("1"), Some(1_000_000));
        assert_eq!(parse_micros("0.1"), Some(100_000));
        assert_eq!(parse_micros(".5"), Some(500_000));
        assert_eq!(parse_micros("1.000001"), Some(1_000_001));
        assert_eq!(parse_micros("1.0000001"), None);
        assert_eq!(parse_micros("-1"), None);
        assert_eq!(parse_micros("1e3"), None);
        assert_eq!(parse_micros("."), None);
    }
}
