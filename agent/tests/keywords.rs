//! keepalived.conf(5) keyword by keyword: configurations written for these tests use every block and keyword of
//! keepalived's manual. What vrrpd carries out loads without a word; everything else is named at its line, with
//! what is lost, and `--strict` refuses it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agent::config::{self, Diagnostic, Options, Severity};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config/keywords")
        .join(name)
}

/// The diagnostics with file names relative to the fixtures, one per line.
fn render(diagnostics: &[Diagnostic]) -> String {
    let base = fixture("x");
    let base = format!("{}/", base.parent().unwrap().display());
    diagnostics
        .iter()
        .map(|d| d.to_string().replace(&base, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

const NOT_CARRIED_OUT: [&str; 3] = [
    "global-not-carried-out.conf",
    "instance-not-carried-out.conf",
    "blocks-not-carried-out.conf",
];

#[test]
fn what_vrrpd_carries_out_loads_without_a_word_even_strictly() {
    for strict in [false, true] {
        let loaded = config::load(&fixture("carried-out.conf"), Options { strict })
            .unwrap_or_else(|error| panic!("strict {strict}: {}", render(&error.diagnostics)));
        assert_eq!(render(&loaded.warnings), "", "strict {strict}");
        assert_eq!(loaded.config.instances.len(), 2);
    }
}

#[test]
fn everything_else_warns_at_its_line_and_strict_refuses_it() {
    for name in NOT_CARRIED_OUT {
        let loaded = config::load(&fixture(name), Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!loaded.warnings.is_empty(), "{name}");
        insta::assert_snapshot!(name, render(&loaded.warnings));
        // Every warning line of the file is a keyword it uses; with --strict each is an error instead.
        let refused = config::load(&fixture(name), Options { strict: true }).unwrap_err();
        let errors: Vec<&Diagnostic> = refused
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(
            errors.len(),
            loaded.warnings.len(),
            "{name}: {}",
            render(&refused.diagnostics)
        );
    }
}

#[test]
fn every_keyword_vrrpd_leaves_undone_is_exercised_and_named() {
    // Each section's keywords are in the file written for it.
    let file = |section: &str| match section {
        "global_defs" => "global-not-carried-out.conf",
        "vrrp_instance" => "instance-not-carried-out.conf",
        _ => "blocks-not-carried-out.conf",
    };
    let named = |name: &str| -> BTreeSet<(usize, String)> {
        let loaded = config::load(&fixture(name), Options::default()).unwrap();
        loaded
            .warnings
            .iter()
            .map(|w| {
                let keyword = w.message.split('\'').nth(1).unwrap_or_default().to_string();
                (w.at.as_ref().map_or(0, |at| at.column), keyword)
            })
            .collect()
    };
    let missing: Vec<String> = config::not_carried_out()
        .into_iter()
        .filter(|(section, keyword)| {
            // Top-level blocks start in column 1; everything else is inside a block.
            let top = *section == "top level";
            !named(file(section))
                .iter()
                .any(|(column, named)| named == keyword && (*column == 1) == top)
        })
        .map(|(section, keyword)| format!("{section}: {keyword}"))
        .collect();
    assert!(missing.is_empty(), "no fixture uses: {missing:?}");
}
