//! step09-lifecycle — the demo of chapter 9: a container that outlives the command that
//! started it, watched by a monitor, kept until `rm`.
//!
//! ```text
//! step09-lifecycle run -d --rootfs DIR [--name N] -- CMD...   a detached container; its id
//! step09-lifecycle ps                                       every container, with its state
//! step09-lifecycle logs CONTAINER                           its output, from the log
//! step09-lifecycle stop CONTAINER                           SIGTERM, then SIGKILL after 10 s
//! step09-lifecycle start CONTAINER                          again, on the same files
//! step09-lifecycle rm [-f] CONTAINER                        gone
//! ```
//!
//! The demo is its own monitor program: `run -d` and `start` start `step09-lifecycle
//! monitor ID` (a hidden command), as `carton` starts `carton monitor ID`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use step01::{Explain, Process};
use step09::lifecycle::{self, monitor_args};
use step09::{names, Container, HostConfig};

#[derive(Parser)]
#[command(about = "Chapter 9 of carton: detached containers, the monitor, the container's life")]
struct Cli {
    /// Where the containers' state lives
    #[arg(long, global = true, env = "CARTON_ROOT", default_value = "/var/lib/carton", value_name = "DIR")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a container from a root filesystem and start it in the background
    Run {
        /// Detached (the only way this demo runs one: `carton run` does both)
        #[arg(short = 'd', long = "detach", required = true)]
        detach: bool,
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// List every container and its state
    Ps,
    /// Print a container's output
    Logs { container: String },
    /// Stop a container (its stop signal, then SIGKILL)
    Stop { container: String },
    /// Start a stopped container again
    Start { container: String },
    /// Remove a container
    Rm {
        #[arg(short, long)]
        force: bool,
        container: String,
    },
    /// A detached container's monitor (started by `run -d` and `start`; not for people)
    #[command(hide = true)]
    Monitor(lifecycle::MonitorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
    let done = match cli.command {
        Command::Run { rootfs, name, command, .. } => run_detached(&root, &rootfs, name, command),
        Command::Ps => {
            ps(&root);
            Ok(())
        }
        Command::Logs { container } => names::resolve(&root, &container).map(|id| {
            for entry in step09::logs::read_all(&step09::logs::path(&Container::dir(&root, &id), &id)) {
                print!("{}", entry.log);
            }
        }),
        Command::Stop { container } => names::resolve(&root, &container).and_then(|id| lifecycle::stop(&root, &id, None)),
        Command::Start { container } => names::resolve(&root, &container).and_then(|id| lifecycle::start_detached(&root, &id, &monitor_args(&root, &id, 0))),
        Command::Rm { force, container } => names::resolve(&root, &container).and_then(|id| lifecycle::remove(&root, &id, force)),
        Command::Monitor(args) => lifecycle::run_monitor(&root, &args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("step09-lifecycle: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// A container from `rootfs`, with chapter 2's namespaces, no network and chapter 8's
/// security, kept under a name; then started under its monitor.
fn run_detached(root: &Path, rootfs: &Path, name: Option<String>, command: Vec<String>) -> step01::Result<()> {
    let rootfs = std::path::absolute(rootfs).map_err(|e| step01::Error::runtime(format!("{}: {e}", rootfs.display())))?;
    let process = Process::new(command);
    let id = step02::ContainerId::random()?;
    let mut spec = step01::container::base_spec(&process, Path::new("rootfs"))?;
    step02::oci::write(&step02::Options::new(id.clone()), &mut spec)?;
    step03::NetworkOptions { mode: step03::Mode::None, ..step03::NetworkOptions::new() }.write_oci(&mut spec);
    step08::docker::write(&step08::docker::SecurityOptions::default(), &mut spec)?;
    lifecycle::collect(root);
    let mut record = Container::new(id.as_str(), "", &rootfs.display().to_string(), "", &process.args, HostConfig { network_mode: "none".into(), ..HostConfig::default() });
    record.name = match name {
        Some(name) => names::claim(root, &name, id.as_str()).map(|()| name)?,
        None => names::claim_random(root, id.as_str())?,
    };
    let made = step07::engine::prepare(root, id.as_str(), step07::engine::Root::Directory(rootfs), spec, &Explain::off()).and_then(|_| record.save(root));
    if let Err(error) = made {
        let _ = step07::engine::teardown(root, id.as_str());
        names::release(root, &record.name, id.as_str());
        return Err(error);
    }
    lifecycle::start_detached(root, id.as_str(), &monitor_args(root, id.as_str(), 0))?;
    println!("{id}");
    Ok(())
}

/// Every container: id, name, status, as `carton ps -a` shows them.
fn ps(root: &Path) {
    let now = SystemTime::now();
    let entries = std::fs::read_dir(root.join("containers")).into_iter().flatten().flatten();
    for container in entries.filter_map(|e| Container::load(root, e.file_name().to_str()?).ok().flatten()) {
        println!("{}  {:<24} {}", &container.id[..12], container.name, step09::show::status_text(&container, now));
    }
}
