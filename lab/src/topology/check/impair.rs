//! `impair = { ... }` on a segment or an interface, and the lab's `impair_backend`: each value is read by the same
//! function `lab fault` reads it with, so a file and a command line accept the same words.

use toml::Spanned;

use crate::impair::{self, BackendChoice, Direction, Distribution, Impairment};
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
        let mut impairment = Impairment::default();
        let mut read =
            |value: &Option<Spanned<String>>, name: &str, apply: &mut dyn FnMut(&str) -> Result<(), String>| {
                if let Some(value) = value {
                    if let Err(why) = apply(value.get_ref()) {
                        self.report(value.span(), &format!("{field}.{name}"), why);
                    }
                }
            };
        read(&raw.delay, "delay", &mut |t| {
            impairment.delay = impair::parse_duration(t)?;
            Ok(())
        });
        read(&raw.jitter, "jitter", &mut |t| {
            impairment.jitter = impair::parse_duration(t)?;
            Ok(())
        });
        read(&raw.distribution, "distribution", &mut |t| {
            impairment.distribution = one_of::<Distribution>(t, "a distribution")?;
            Ok(())
        });
        read(&raw.loss, "loss", &mut |t| {
            impairment.loss = impair::parse_percent(t)?;
            Ok(())
        });
        read(&raw.burst, "burst", &mut |t| {
            impairment.burst = Some(impair::parse_burst(t)?);
            Ok(())
        });
        read(&raw.duplicate, "duplicate", &mut |t| {
            impairment.duplicate = impair::parse_percent(t)?;
            Ok(())
        });
        read(&raw.reorder, "reorder", &mut |t| {
            impairment.reorder = impair::parse_percent(t)?;
            Ok(())
        });
        read(&raw.corrupt, "corrupt", &mut |t| {
            impairment.corrupt = impair::parse_percent(t)?;
            Ok(())
        });
        read(&raw.rate, "rate", &mut |t| {
            impairment.rate = Some(impair::parse_rate(t)?);
            Ok(())
        });
        let mut directions = vec![Direction::From];
        read(&raw.direction, "direction", &mut |t| {
            directions = match t {
                "from" => vec![Direction::From],
                "to" => vec![Direction::To],
                "both" => vec![Direction::From, Direction::To],
                _ => return Err(format!("`{t}` is not a direction: write \"from\", \"to\" or \"both\"")),
            };
            Ok(())
        });
        if let Err(why) = impairment.check() {
            self.report(span, field, why);
        }
        directions.into_iter().map(|d| (d, impairment)).collect()
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
