//! step07-runtime — the demo of chapter 7: an OCI runtime with runc's commands.
//!
//! ```text
//! step07-runtime [--root DIR] [--explain] create [--bundle DIR] ID
//! step07-runtime start ID | state ID | kill ID [SIGNAL] [--all] | delete [--force] ID
//! step07-runtime exec [--cwd DIR] [--env K=V]... [--user UID[:GID]] [-i] ID CMD...
//! step07-runtime run [--bundle DIR] ID        (create, start, wait, delete)
//! step07-runtime list
//! ```
//! Each command is a process of its own; they meet through the state under `--root`
//! (carton's own, by default: its containers are bundles this runtime can drive too).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01::{Explain, Process};
use step07::exec::ExecProcess;
use step07::{CreateOptions, Runtime};

#[derive(Parser)]
#[command(about = "Chapter 7 of carton: an OCI runtime (runc's create, start, state, kill, delete, exec)")]
struct Cli {
    /// Where the containers' state lives
    #[arg(long, global = true, env = "CARTON_ROOT", default_value = "/var/lib/carton", value_name = "DIR")]
    root: PathBuf,
    /// Print each kernel-level action as it happens
    #[arg(long, global = true)]
    explain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits until `start`
    Create {
        /// The bundle directory (config.json and the root filesystem)
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// Let a created container run its command
    Start { id: String },
    /// The container's state as JSON, as the runtime spec defines it
    State { id: String },
    /// Send a signal (default SIGTERM) to the container
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process of the container, not only the first
        #[arg(short, long)]
        all: bool,
    },
    /// Remove a stopped container (with --force, a running one too)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a command in a running container
    Exec {
        /// Working directory inside the container (default: the container's)
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Set an environment variable (KEY=VALUE), added to the container's
        #[arg(short, long)]
        env: Vec<String>,
        /// UID[:GID] to run as (default: the container's)
        #[arg(short, long)]
        user: Option<String>,
        /// Keep stdin attached
        #[arg(short, long)]
        interactive: bool,
        id: String,
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Create, start, wait and delete: the container attached to this process
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// The containers under --root
    List,
    /// Write a config.json for ROOTFS and COMMAND in the current directory (a bundle to edit)
    Spec {
        /// The root filesystem, relative to the bundle or absolute
        #[arg(long, default_value = "rootfs")]
        rootfs: PathBuf,
        /// What the container runs (default: sh)
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
    let runtime = Runtime::new(&root, Explain::when(cli.explain));
    match command(&runtime, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("step07-runtime: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn command(runtime: &Runtime, command: Command) -> step01::Result<u8> {
    match command {
        Command::Create { bundle, id } => {
            let created = runtime.create(&id, &bundle, CreateOptions::new(false, step02::Stdin::Inherit))?;
            created.warnings.iter().for_each(|warning| eprintln!("step07-runtime: warning: {warning}"));
            created.running.detach(); // the container lives on; whoever outlives us reaps it
            Ok(0)
        }
        Command::Start { id } => runtime.start(&id).map(|()| 0),
        Command::State { id } => {
            println!("{}", serde_json::to_string_pretty(&runtime.state(&id)?).unwrap_or_default());
            Ok(0)
        }
        Command::Kill { id, signal, all } => runtime.kill(&id, step07::parse_signal(&signal)?, all).map(|()| 0),
        Command::Delete { force, id } => runtime.delete(&id, force).map(|()| 0),
        Command::Exec { cwd, env, user, interactive, id, command } => {
            let (bundle, mut process) = runtime.container_process(&id)?;
            step07::exec::change_process(&mut process, command, cwd, &env)?;
            if let Some(user) = user {
                step07::exec::set_user(&mut process, &step07::exec::numeric_user(&user)?)?;
            }
            let mut exec = ExecProcess::from_oci(&bundle.spec, &bundle.dir, &process)?;
            exec.interactive = interactive;
            runtime.exec(&id, &exec).map(|exit| exit.code() as u8)
        }
        Command::Run { bundle, id } => runtime.run(&id, &bundle, step02::Stdin::Inherit, |_| Ok(())).map(|finished| finished.exit.code() as u8),
        Command::Spec { rootfs, command } => {
            let command = if command.is_empty() { vec!["sh".to_string()] } else { command };
            let mut spec = step01::container::base_spec(&Process::new(command), &rootfs)?;
            let mut options = step02::Options::new(step02::ContainerId::random()?);
            options.hostname = Some("carton".to_string());
            step02::oci::write(&options, &mut spec)?;
            // A network namespace of its own, with only lo, and a cgroup namespace (as `runc spec` makes).
            let mut linux = spec.linux().clone().unwrap_or_default();
            let mut namespaces = linux.namespaces().clone().unwrap_or_default();
            step02::oci::add_namespace(&mut namespaces, oci_spec::runtime::LinuxNamespaceType::Network, None);
            step02::oci::add_namespace(&mut namespaces, oci_spec::runtime::LinuxNamespaceType::Cgroup, None);
            linux.set_namespaces(Some(namespaces));
            spec.set_linux(Some(linux));
            if Path::new("config.json").exists() {
                return Err(step01::Error::runtime("config.json exists here already; remove it first, or run this in another directory"));
            }
            step07::Bundle::write(Path::new("."), &spec)?;
            Ok(0)
        }
        Command::List => {
            for id in runtime.list() {
                println!("{id}");
            }
            Ok(0)
        }
    }
}
