//! step01-chroot — the demo of chapter 1, "a filesystem of its own".
//!
//! ```text
//! step01-chroot rootfs DIR               make a busybox root filesystem in DIR
//! step01-chroot add-breakout DIR         put the breakout program at DIR/bin/breakout
//! step01-chroot chroot DIR CMD...        run CMD with plain chroot (escapable)
//! step01-chroot contain DIR CMD...       run CMD in a mount namespace after pivot_root
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01::{busybox, chroot, container, Explain, NoHooks, Process};

#[derive(Parser)]
#[command(about = "Chapter 1 of carton: a filesystem of its own")]
struct Cli {
    #[command(subcommand)]
    demo: Demo,
}

#[derive(Subcommand)]
enum Demo {
    /// Make a busybox root filesystem in DIR, from the host's static busybox.
    Rootfs { dir: PathBuf },
    /// Put the breakout program (static, needs root) at DIR/bin/breakout.
    AddBreakout { dir: PathBuf },
    /// Run CMD with DIR as its root, using plain chroot(2).
    Chroot {
        dir: PathBuf,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run CMD in a new mount namespace with DIR as its root, after pivot_root(2).
    Contain {
        /// Print each kernel-level action as it happens.
        #[arg(long)]
        explain: bool,
        dir: PathBuf,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().demo {
        Demo::Rootfs { dir } => make_rootfs(&dir).map(|()| 0),
        Demo::AddBreakout { dir } => step01::breakout::install(&dir).map(|path| {
            println!("installed {}", path.display());
            0
        }),
        Demo::Chroot { dir, command } => absolute(&dir).and_then(|dir| chroot::run_in_plain_chroot(&dir, &Process::new(command))).map(|exit| exit.code()),
        Demo::Contain { explain, dir, command } => absolute(&dir).and_then(|dir| {
            let explain = Explain::when(explain);
            let spec = container::ContainerSpec::new(dir, Process::new(command));
            container::start(&spec, &mut NoHooks, &explain)?.wait().map(|exit| exit.code())
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            eprintln!("step01-chroot: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn make_rootfs(dir: &Path) -> step01::Result<()> {
    let base = busybox::bootstrap(dir)?;
    println!("made {} ({}, {} applets)", dir.display(), base.busybox_version, base.applets);
    Ok(())
}

fn absolute(dir: &Path) -> step01::Result<PathBuf> {
    std::path::absolute(dir).map_err(|e| step01::Error::runtime(format!("{}: {e}", dir.display())))
}
