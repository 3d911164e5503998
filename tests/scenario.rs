//! Scenario files and `lab test`: bad files are refused with every problem's place (snapshot), scenarios that must
//! fail do so naming the step and what was seen, JUnit XML reads back, the command's exit codes, and the report of
//! the seed's reboot checked in a real browser (Debian's chromium, headless).
//!
//! The tests that build labs wait on VRRP timers, so all of them run at once.

use std::path::{Path, PathBuf};
use std::process::Command;

use halab_tests::scenarios::play_with;
use halab_tests::workspace_file;
use lab::scenario::run::Status;

fn main() {
    let tests: &[(&str, fn())] = &[
        ("bad_files_name_every_problem", bad_files_name_every_problem),
        ("scenarios_that_must_fail_do", scenarios_that_must_fail_do),
        ("lab_test_exit_codes_and_junit", lab_test_exit_codes_and_junit),
        ("report_of_the_reboot_in_chromium", report_of_the_reboot_in_chromium),
    ];
    halab_tests::run_tests(tests, tests.len());
}

fn scenario(name: &str) -> PathBuf {
    workspace_file(&format!("tests/scenarios/{name}.toml"))
}

/// Messages name the file relative to the workspace, whatever the checkout's path.
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "")
}

fn bad_files_name_every_problem() {
    let mut report = String::new();
    for name in ["bad-everything", "bad-syntax", "bad-topology"] {
        let error = lab::scenario::load(&scenario(name)).expect_err(name);
        report.push_str(&relative(&error.to_string()));
        report.push_str("\n\n");
    }
    // A name that would make its artifacts directory `..`.
    let text = std::fs::read_to_string(scenario("passes")).unwrap();
    let error = lab::scenario::parse(&text, &workspace_file("tests/scenarios/...toml")).expect_err("`..`");
    report.push_str(&relative(&error.to_string()));
    report.push('\n');
    insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("scenario__bad_files", report);
    });
}

fn scenarios_that_must_fail_do() {
    let cases = [
        // (file, the failing step's number, what its message says)
        (
            "impossible-bound",
            2,
            "not seen within master_down_interval(haproxy1) - 1s = 2.609 s",
        ),
        ("wrong-master", 2, "10.0.0.31 is on [haproxy1], expected [haproxy2]"),
        ("edited-snapshot", 3, "differs from"),
    ];
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(name, _, _)| scope.spawn(move || play_with(&scenario(name), "mf", None, None)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((name, step, message), outcome) in cases.iter().zip(&outcomes) {
        assert_eq!(outcome.status, Status::Failed, "{name}: {outcome:#?}");
        let failed = outcome.steps.last().unwrap();
        assert!(!failed.passed);
        assert_eq!(failed.index + 1, *step, "{name}: {failed:#?}");
        assert!(failed.detail.contains(message), "{name}: {}", failed.detail);
        let failure = outcome.failure().unwrap();
        assert!(failure.starts_with(&format!("step {step} (")), "{failure}");
    }
    // The edited line is the one the difference shows.
    let edited = &outcomes[2].steps.last().unwrap().detail;
    assert!(
        edited.contains("- at once                  haproxy1/vrrpd event: BACKUP -> MASTER"),
        "{edited}"
    );
    let _ = std::fs::remove_file(workspace_file(
        "tests/scenarios/snapshots/edited-snapshot.election.snap.new",
    ));
}

fn lab(arguments: &[&str], artifacts: &Path) -> (i32, String) {
    let output = Command::new(halab_tests::workspace_binary("lab"))
        .args(arguments)
        .arg("--artifacts")
        .arg(artifacts)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn lab_test_exit_codes_and_junit() {
    halab_tests::use_workspace_binaries();
    let dir = std::env::temp_dir().join(halab_tests::unique_name("labtest"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| scenario(name).display().to_string();
    // 2: a bad file, and nothing is built (the good one beside it does not run either).
    let (code, text) = lab(&["test", &path("bad-syntax"), &path("passes")], &dir);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("bad-syntax.toml:3:"), "{text}");
    assert!(!dir.join("passes").exists(), "a lab ran despite a bad file");
    // 0 and 1 in one run: one passes, one fails; the JUnit file says which.
    let junit = dir.join("junit.xml");
    let junit_text = junit.display().to_string();
    let (code, text) = lab(
        &["test", &path("passes"), &path("wrong-master"), "--junit", &junit_text],
        &dir,
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("passes ") && l.contains(" ok    2/2 ")),
        "{text}"
    );
    assert!(text.contains("1 of 2 scenarios passed"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let suite = document.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("tests"), Some("2"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    let cases: Vec<_> = document.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases[0].attribute("name"), Some("passes"));
    assert!(!cases[0].children().any(|c| c.has_tag_name("failure")));
    let failure = cases[1].children().find(|c| c.has_tag_name("failure")).unwrap();
    assert!(
        failure
            .attribute("message")
            .unwrap()
            .starts_with("step 2 (holds vlan-haproxy"),
        "{xml}"
    );
    // Artifacts: the timeline, a pcap per segment, the logs, the report.
    for file in [
        "timeline.txt",
        "timeline.jsonl",
        "vlan.pcap",
        "outside.pcap",
        "report.html",
        "logs/haproxy1.vrrpd.log",
    ] {
        assert!(
            dir.join("passes").join(file).is_file(),
            "no {file} in {}",
            dir.display()
        );
    }
    let pcap = std::fs::read(dir.join("passes/vlan.pcap")).unwrap();
    assert!(pcap.len() > 24 + 100, "the pcap holds frames");
    // --json: one object per scenario.
    let (code, text) = lab(&["test", &path("passes"), "--json"], &dir);
    assert_eq!(code, 0, "{text}");
    let outcome: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(outcome["status"], "passed");
    assert_eq!(outcome["steps"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Debian's chromium, if installed (scripts/setup installs it; the test passes without it, saying so).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless chromium on `page` with `mode` (`--dump-dom` or `--screenshot=FILE`); its stdout.
fn headless(browser: &Path, mode: &str, page: &Path) -> String {
    let profile = std::env::temp_dir().join(halab_tests::unique_name("chromium"));
    std::fs::create_dir_all(&profile).unwrap();
    let output = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn report_of_the_reboot_in_chromium() {
    let Some(browser) = chromium() else {
        println!("chromium is not installed: the report and the SVG graph were not checked in a browser");
        return;
    };
    let dir = std::env::temp_dir().join(halab_tests::unique_name("report"));
    let outcome = play_with(
        &workspace_file("scenarios/05-reboot.toml"),
        "rp",
        Some(dir.clone()),
        None,
    );
    assert_eq!(outcome.status, Status::Passed, "{:?}", outcome.failure());
    let report = dir.join("report.html");
    let dom = headless(&browser, "--dump-dom", &report);
    // The page's script wrote what the browser laid out.
    let attribute = dom
        .split("data-rendered=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the script ran and wrote data-rendered");
    let rendered: serde_json::Value =
        serde_json::from_str(&attribute.replace("&quot;", "\"").replace("&amp;", "&")).unwrap();
    let lanes: Vec<&str> = rendered["lanes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["height"].as_f64().unwrap() > 0.0)
        .filter_map(|l| l["host"].as_str())
        .collect();
    for host in ["haproxy1", "haproxy2", "redisclient"] {
        assert!(lanes.contains(&host), "no lane for {host}: {lanes:?}");
    }
    assert_eq!(lanes.iter().filter(|h| **h == "haproxy1").count(), 1, "{lanes:?}");
    // The VIP's bands, in time order: haproxy1, haproxy2 (the reboot), haproxy1 (the preemption).
    let mut bands: Vec<(f64, &str)> = rendered["bands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["address"] == "10.0.0.31" && b["width"].as_f64().unwrap() > 0.0)
        .map(|b| (b["t0"].as_f64().unwrap(), b["host"].as_str().unwrap()))
        .collect();
    bands.sort_by(|a, b| a.0.total_cmp(&b.0));
    let holders: Vec<&str> = bands.iter().map(|b| b.1).collect();
    assert_eq!(holders, ["haproxy1", "haproxy2", "haproxy1"], "{bands:?}");
    // The screenshot, kept with the artifacts.
    let png = dir.join("report.png");
    headless(&browser, &format!("--screenshot={}", png.display()), &report);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    // The topology drawn by `lab graph --format svg` renders too.
    let svg = dir.join("vlan.svg");
    let topology = lab::Topology::load(workspace_file("topologies/vlan.toml")).unwrap();
    std::fs::write(&svg, lab::graph::svg(&topology)).unwrap();
    let dom = headless(&browser, "--dump-dom", &svg);
    for host in ["haproxy1", "haproxy2", "redisclient", "redis-1v"] {
        assert!(
            dom.contains(&format!("data-name=\"{host}\"")),
            "{host} missing from the rendered SVG"
        );
    }
    let shot = dir.join("vlan-svg.png");
    headless(&browser, &format!("--screenshot={}", shot.display()), &svg);
    assert!(std::fs::metadata(&shot).unwrap().len() > 5_000);
    if std::env::var_os(lab::artifacts::VARIABLE).is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
