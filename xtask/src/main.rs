//! `cargo xtask dist [DIR]`: writes what the Debian package installs beside
//! the binary, generated from xwan's own clap definitions so they cannot
//! drift from `xwan --help`:
//! - `DIR/man/xwan.8` and one page per subcommand, `xwan-run.8`, `xwan-check.8`, …
//!   (cargo-deb gzips them);
//! - `DIR/man/xwan.toml.5`, the configuration file's page, from
//!   docs/configuration.md (see `man5.rs`), so the reference is written once;
//! - `DIR/completions/xwan.bash`, `_xwan` (zsh), `xwan.fish`.
//!
//! DIR defaults to `target/dist`. A crate of its own so that clap_mangen and
//! clap_complete stay out of the router's build.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

mod man5;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dist"] => done(dist(Path::new("target/dist"))),
        ["dist", dir] => done(dist(Path::new(dir))),
        _ => {
            eprintln!("usage: cargo xtask dist [DIR]   (man pages and shell completions, default DIR target/dist)");
            ExitCode::from(2)
        }
    }
}

fn done(result: io::Result<Vec<PathBuf>>) -> ExitCode {
    match result {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask dist: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the man pages and completions under `dir`; returns the files written.
fn dist(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = man_pages(&dir.join("man"))?;
    written.extend(completions(&dir.join("completions"))?);
    Ok(written)
}

/// Section 8 (system administration: the binary is /usr/sbin/xwan), and
/// section 5 for the configuration file.
fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let markdown = fs::read_to_string(&reference)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", reference.display())))?;
    let file_page = dir.join("xwan.toml.5");
    fs::write(&file_page, man5::render(&markdown, xwan::VERSION))?;
    let xwan = xwan::cli::Cli::command().version(xwan::VERSION);
    let mut written = vec![file_page, page(&xwan, "xwan", dir)?];
    for sub in xwan.get_subcommands() {
        let name = format!("xwan-{}", sub.get_name());
        // The subcommand's page is named and titled as `man xwan-run` finds it.
        let command = sub
            .clone()
            .name(name.clone())
            .version(xwan::VERSION)
            .display_name(name.clone());
        written.push(page(&command, &name, dir)?);
    }
    Ok(written)
}

fn page(command: &clap::Command, name: &str, dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(format!("{name}.8"));
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("8")
        .manual("xwan")
        .render(&mut out)?;
    fs::write(&path, out)?;
    Ok(path)
}

fn completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut command = xwan::cli::Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut command, "xwan", dir))
        .collect()
}
