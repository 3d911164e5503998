//! Writes the shell completions (bash, zsh, fish) and manual pages of `lab`, `vrrpd` and `sentinel-proxy` from their
//! clap definitions, so they never drift from the programs: `halab-docs DIR` fills `DIR/completions/{bash,zsh,fish}`
//! and `DIR/man/man{1,8}` (scripts/package puts them in the packages).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Each program with its manual section: `lab` is a command, the daemons are system administration.
fn programs() -> Vec<(clap::Command, &'static str)> {
    vec![
        (lab::cli::Cli::command().name("lab"), "1"),
        (agent::cli::Cli::command().name("vrrpd"), "8"),
        (proxy::cli::Flags::command().name("sentinel-proxy"), "8"),
    ]
}

fn write(dir: &Path) -> std::io::Result<()> {
    for (command, section) in programs() {
        let name = command.get_name().to_string();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let out = dir.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&out)?;
            clap_complete::generate_to(shell, &mut command.clone(), &name, &out)?;
        }
        let man = dir.join("man").join(format!("man{section}"));
        std::fs::create_dir_all(&man)?;
        let page = clap_mangen::Man::new(command.clone()).section(section);
        let mut text = Vec::new();
        page.render(&mut text)?;
        std::fs::write(man.join(format!("{name}.{section}")), text)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: halab-docs DIR");
        return ExitCode::from(2);
    };
    match write(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("halab-docs: {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}
