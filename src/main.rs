//! carton — a container runtime written from scratch, built only from the step crates.

mod doctor;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use step01::{busybox, container, Explain, NoHooks, Process};

/// Exit code for the runtime's own errors, as Docker uses it.
const RUNTIME_ERROR: u8 = 125;

#[derive(Parser)]
#[command(name = "carton", version, about = "A container runtime you can read: every step is a chapter of its book")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container
    Run(RunArgs),
    /// Make base material offline, from the host's own files
    #[command(subcommand)]
    Bootstrap(Bootstrap),
    /// Check that this machine can run containers (a preflight for lab machines)
    Doctor,
}

#[derive(Args)]
#[command(after_help = "Examples:\n  carton bootstrap busybox ./rootfs\n  carton run --rootfs ./rootfs -- echo hello\n  carton run --explain --rootfs ./rootfs sh -c 'ls /'")]
struct RunArgs {
    /// Directory that becomes the container's / (images come in chapter 6)
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE), or pass the host's value of KEY
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Working directory inside the container (absolute)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Print each kernel-level action as it happens, with its shell equivalent
    #[arg(long)]
    explain: bool,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Bootstrap {
    /// Make a busybox root filesystem in DIR from the host's static busybox (busybox-static)
    Busybox {
        /// A new (or empty) directory
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => return run(args),
        Command::Bootstrap(Bootstrap::Busybox { dir }) => bootstrap_busybox(dir),
        Command::Doctor => return doctor::run(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("carton: {error:#}");
            ExitCode::from(RUNTIME_ERROR)
        }
    }
}

/// `carton run`: exits with the container's status, or 125/126/127 when it cannot start.
fn run(args: RunArgs) -> ExitCode {
    let result = container_spec(args).and_then(|(spec, explain)| container::start(&spec, &mut NoHooks, &explain)?.wait());
    match result {
        Ok(exit) => ExitCode::from(exit.code() as u8),
        Err(error) => {
            eprintln!("carton: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn container_spec(args: RunArgs) -> step01::Result<(container::ContainerSpec, Explain)> {
    let Some(rootfs) = args.rootfs else {
        let what = args.command.first().map_or("an image".to_string(), |image| format!("the image {image:?}"));
        return Err(step01::Error::runtime(format!(
            "running {what} needs images, which come with chapter 6 (planned); for now give a root filesystem: \
             `carton bootstrap busybox ./rootfs` then `carton run --rootfs ./rootfs -- CMD`"
        )));
    };
    let rootfs = std::path::absolute(&rootfs)
        .map_err(|e| step01::Error::runtime(format!("cannot resolve the root filesystem path {}: {e}", rootfs.display())))?;
    let mut process = Process::new(args.command);
    for assignment in &args.env {
        if assignment.contains('=') || assignment.is_empty() {
            process.set_env(assignment)?; // rejects an empty KEY
        } else if let Ok(value) = std::env::var(assignment) {
            // `-e KEY` passes the host's value, and nothing when the host has none (as Docker).
            process.set_env(&format!("{assignment}={value}"))?;
        }
    }
    if let Some(workdir) = args.workdir {
        process.cwd = workdir;
    }
    let explain = if args.explain { Explain::to_stderr() } else { Explain::off() };
    Ok((container::ContainerSpec::new(rootfs, process), explain))
}

fn bootstrap_busybox(dir: PathBuf) -> anyhow::Result<()> {
    let busybox = busybox::find_static_busybox()?;
    let base = busybox::busybox_rootfs(&busybox)?;
    busybox::write_rootfs(&base.entries, &dir).with_context(|| format!("cannot make a busybox root filesystem in {}", dir.display()))?;
    println!("made a busybox root filesystem in {} ({}, {} applets)", dir.display(), base.busybox_version, base.applets);
    Ok(())
}
