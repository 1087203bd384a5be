//! `cargo xtask man`: the man pages and the bash, zsh and fish completions
//! of `lb`, generated from its clap definition (`lb-userspace/src/cli.rs`)
//! into `target/assets/` (`man/lb.1`, `man/lb-<command>.1`,
//! `completions/lb.bash`, `_lb`, `lb.fish`), where packaging picks them up.
//!
//! The definition is compiled here on its own (see cli.rs) so this works
//! before `cargo xtask setup` has installed the eBPF toolchain.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cmd::workspace_root;

#[path = "../../lb-userspace/src/cli.rs"]
#[allow(dead_code)] // xtask reads the definition, never parses with it
mod lb_cli;

#[derive(clap::Args)]
pub struct Options {
    /// Directory to write into (default: target/assets).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What was written.
pub struct Assets {
    pub man_pages: Vec<PathBuf>,
    pub completions: Vec<PathBuf>,
}

pub fn man(o: Options) -> Result<()> {
    let out = o
        .out
        .unwrap_or_else(|| workspace_root().join("target/assets"));
    let assets = generate(&out)?;
    for p in assets.man_pages.iter().chain(&assets.completions) {
        println!("{}", p.display());
    }
    Ok(())
}

/// `lb`'s clap command with the agent's own version (xtask's is not).
fn lb_command() -> Result<clap::Command> {
    let manifest = workspace_root().join("lb-userspace/Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .with_context(|| format!("no version in {}", manifest.display()))?;
    // clap keeps `&'static str`s; this runs once per xtask process.
    let version: &'static str = Box::leak(version.to_owned().into_boxed_str());
    Ok(lb_cli::Cli::command().version(version))
}

/// Writes the man pages and completions under `out`.
pub fn generate(out: &Path) -> Result<Assets> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    for dir in [&man_dir, &comp_dir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cmd = lb_command()?;
    // One page for lb and one per subcommand (lb-import-keepalived.1 ...).
    clap_mangen::generate_to(cmd.clone(), &man_dir)
        .with_context(|| format!("writing man pages to {}", man_dir.display()))?;
    let mut man_pages: Vec<PathBuf> = fs::read_dir(&man_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    man_pages.sort();
    let mut completions = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "lb", &comp_dir)
            .with_context(|| format!("writing {shell} completions"))?;
        completions.push(path);
    }
    for p in man_pages.iter().chain(&completions) {
        if fs::metadata(p)?.len() == 0 {
            bail!("{} is empty", p.display());
        }
    }
    Ok(Assets {
        man_pages,
        completions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_command(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}{}", sub.get_name());
            out.push(name.clone());
            every_command(sub, &format!("{name} "), out);
        }
    }

    #[test]
    fn man_pages_and_completions_name_every_command() {
        let out = std::env::temp_dir().join(format!("lb-xtask-man-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        let assets = generate(&out).unwrap();
        let read = |rel: &str| fs::read_to_string(out.join(rel)).unwrap();
        let page = read("man/lb.1");
        assert!(page.contains(".TH lb 1"), "not a man page:\n{page}");
        let mut commands = Vec::new();
        every_command(&lb_command().unwrap(), "", &mut commands);
        for name in [
            "run",
            "check",
            "status",
            "reload",
            "unload",
            "import",
            "import keepalived",
        ] {
            assert!(
                commands.iter().any(|c| c == name),
                "no `lb {name}` in the definition"
            );
        }
        for name in &commands {
            // lb.1 names every command (nested ones in its examples);
            // every command has its page, and every completion script
            // offers its last word.
            let word = name.rsplit(' ').next().unwrap();
            assert!(
                page.contains(&format!("lb {name}")),
                "lb.1 does not mention `lb {name}`"
            );
            let own = read(&format!("man/lb-{}.1", name.replace(' ', "-")));
            assert!(
                own.contains(word),
                "the page of `lb {name}` does not name it"
            );
            for c in [
                "completions/lb.bash",
                "completions/_lb",
                "completions/lb.fish",
            ] {
                assert!(read(c).contains(word), "{c} does not offer `{name}`");
            }
        }
        assert!(read("man/lb-import-keepalived.1").contains("keepalived.conf"));
        assert_eq!(assets.completions.len(), 3);
        assert!(assets.man_pages.len() > commands.len());
        let _ = fs::remove_dir_all(&out);
    }
}
