//! step02-namespaces — the demo of chapter 2, "a world of its own".
//!
//! ```text
//! step02-namespaces [--explain] [--init] [--hostname NAME] [-i] [-t] DIR CMD...
//! ```
//! runs CMD with DIR as its root (chapter 1) in new PID, UTS and IPC namespaces.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use step01::container::base_spec;
use step01::{Explain, Process};
use step02::{Context, Options};

#[derive(Parser)]
#[command(about = "Chapter 2 of carton: a world of its own (PID, UTS and IPC namespaces)")]
struct Cli {
    /// Print each kernel-level action as it happens.
    #[arg(long)]
    explain: bool,
    /// Run a small init as PID 1, with the command as its child.
    #[arg(long)]
    init: bool,
    /// The container's hostname (default: its short id).
    #[arg(long)]
    hostname: Option<String>,
    /// Keep stdin attached.
    #[arg(short, long)]
    interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    tty: bool,
    dir: PathBuf,
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Context::new(Explain::when(cli.explain)).and_then(|context| {
        let context = Context { interactive: cli.interactive, ..context };
        let rootfs = std::path::absolute(&cli.dir).map_err(|e| step01::Error::runtime(format!("{}: {e}", cli.dir.display())))?;
        // The container, as an OCI runtime spec: chapter 1's part, then this chapter's.
        let mut spec = base_spec(&Process::new(cli.command), &rootfs)?;
        let options = Options { hostname: cli.hostname, init: cli.init, tty: cli.tty, ..Options::new(context.id.clone()) };
        step02::oci::write(&options, &mut spec)?;
        step02::run(&spec, &context)
    });
    match result {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(error) => {
            eprintln!("step02-namespaces: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
