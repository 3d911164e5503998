//! The seed's failover, proven in the lab: the ten scenario files of `scenarios/` (real namespaces, our VRRP
//! agent running the seed's keepalived.conf files, faults as production has them), played by the same engine as
//! `lab test`. Each file's deadlines come from VRRP's formulas and each ends with a timeline snapshot stored
//! beside it (`scenarios/snapshots/`); `lab test scenarios/ --update` accepts new ones.
//!
//! Each scenario builds its own lab under a unique name. They spend their time waiting on protocol timers, so the
//! runner (libtest-mimic) starts all of them at once unless `--test-threads` says otherwise.

use std::path::PathBuf;

use halab_tests::scenarios::{files_in, play};

fn main() {
    let files: Vec<PathBuf> = files_in("scenarios");
    assert!(files.len() >= 10, "the ten failover scenarios: {files:?}");
    let mut arguments = libtest_mimic::Arguments::from_args();
    arguments.test_threads = arguments.test_threads.or(Some(files.len()));
    let trials = files
        .into_iter()
        .map(|file| {
            let name = file.file_stem().unwrap().to_string_lossy().into_owned();
            libtest_mimic::Trial::test(name, move || {
                let outcome = play(&file, "fo");
                match outcome.failure() {
                    None => Ok(()),
                    Some(failure) => Err(failure.into()),
                }
            })
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit()
}
