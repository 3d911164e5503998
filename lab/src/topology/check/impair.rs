//! `impair = { ... }` on a segment or an interface, and the lab's `impair_backend`: each value is read by the same
//! function `lab fault` reads it with, so a file and a command line accept the same words.

use toml::Spanned;

use crate::impair::{self, BackendChoice, Direction, Impairment};
use crate::topology::diagnostics::Checker;
use crate::topology::raw::RawImpair;
use crate::topology::LinkImpairments;

impl Checker<'_> {
    pub(super) fn check_impair_backend(&mut self, raw: Option<&Spanned<String>>) -> BackendChoice {
        let Some(raw) = raw else {
            return BackendChoice::Auto;
        };
        one_of(raw.get_ref(), "a backend").unwrap_or_else(|why| {
            self.report(raw.span(), "impair_backend", why);
            BackendChoice::Auto
        })
    }

    /// The impairment by direction; nothing for a link without `impair`.
    pub(super) fn check_impair(&mut self, raw: Option<&Spanned<RawImpair>>, field: &str) -> LinkImpairments {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let span = raw.span();
        let raw = raw.get_ref();
        // A value that does not read is reported and left at its default, so checking goes on.
        let impairment = Impairment {
            delay: self
                .impair_value(&raw.delay, field, "delay", impair::parse_duration)
                .unwrap_or_default(),
            jitter: self
                .impair_value(&raw.jitter, field, "jitter", impair::parse_duration)
                .unwrap_or_default(),
            distribution: (self.impair_value(&raw.distribution, field, "distribution", |t| {
                one_of(t, "a distribution")
            }))
            .unwrap_or_default(),
            loss: self
                .impair_value(&raw.loss, field, "loss", impair::parse_percent)
                .unwrap_or_default(),
            burst: self.impair_value(&raw.burst, field, "burst", impair::parse_burst),
            duplicate: self
                .impair_value(&raw.duplicate, field, "duplicate", impair::parse_percent)
                .unwrap_or_default(),
            reorder: self
                .impair_value(&raw.reorder, field, "reorder", impair::parse_percent)
                .unwrap_or_default(),
            corrupt: self
                .impair_value(&raw.corrupt, field, "corrupt", impair::parse_percent)
                .unwrap_or_default(),
            rate: self.impair_value(&raw.rate, field, "rate", impair::parse_rate),
        };
        let directions = (self.impair_value(&raw.direction, field, "direction", parse_directions))
            .unwrap_or_else(|| vec![Direction::From]);
        if let Err(why) = impairment.check() {
            self.report(span, field, why);
        }
        directions.into_iter().map(|d| (d, impairment)).collect()
    }
}

impl Checker<'_> {
    /// One `impair` value read by `parse`; one that does not read is reported and counts as absent.
    fn impair_value<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value.as_ref()?;
        (parse(value.get_ref()).map_err(|why| self.report(value.span(), &format!("{field}.{name}"), why))).ok()
    }
}

/// `direction`: from the host, to it, or both.
fn parse_directions(text: &str) -> Result<Vec<Direction>, String> {
    match text {
        "from" => Ok(vec![Direction::From]),
        "to" => Ok(vec![Direction::To]),
        "both" => Ok(vec![Direction::From, Direction::To]),
        _ => Err(format!(
            "`{text}` is not a direction: write \"from\", \"to\" or \"both\""
        )),
    }
}

/// A value of a clap `ValueEnum` (the words `lab fault` and `lab up` take), or the sentence listing them.
fn one_of<T: clap::ValueEnum>(text: &str, what: &str) -> Result<T, String> {
    T::from_str(text, false).map_err(|_| {
        let names: Vec<String> = (T::value_variants().iter())
            .filter_map(|v| v.to_possible_value())
            .map(|v| format!("\"{}\"", v.get_name()))
            .collect();
        let (last, rest) = names.split_last().expect("an enum with values");
        format!("`{text}` is not {what}: write {} or {last}", rest.join(", "))
    })
}
