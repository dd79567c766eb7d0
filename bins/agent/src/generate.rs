//! Man pages and shell completions, generated from the same clap definitions `--help` prints,
//! so they can never disagree with the binary. `cargo xtask dist` runs `steward-agent generate`.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Writes `steward-agent.1`, one page per subcommand (`steward-agent-run.1`, …), and the bash,
/// zsh and fish completions into `dir`; returns the files written.
pub fn all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let cmd = Cli::command();
    written.extend(man_pages(&cmd, dir)?);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "steward-agent",
            dir,
        )?);
    }
    Ok(written)
}

fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let page = |cmd: clap::Command, name: String| -> std::io::Result<PathBuf> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.name(name)).render(&mut out)?;
        std::fs::write(&path, out)?;
        Ok(path)
    };
    written.push(page(cmd.clone(), "steward-agent".into())?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("steward-agent-{}", sub.get_name());
        written.push(page(sub.clone(), name)?);
    }
    Ok(written)
}
