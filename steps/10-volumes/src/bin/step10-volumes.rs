//! step10-volumes — the demo of chapter 10: mounts into a container, and volumes that
//! outlive it.
//!
//! ```text
//! step10-volumes run --rootfs DIR [-v SPEC] [--mount SPEC] [--tmpfs PATH] -- CMD...
//!                                          run CMD once with those mounts, then remove it
//!                                          (its anonymous volumes too)
//! step10-volumes spec [-v SPEC] [--mount SPEC] [--tmpfs PATH]
//!                                          the runtime spec's `mounts` they become
//! step10-volumes volume create NAME | ls | rm NAME
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use step01::{Explain, Process};
use step06::store::Lock;
use step10::{mounts, spec, Request, VolumeStore};

#[derive(Parser)]
#[command(about = "Chapter 10 of carton: bind mounts, volumes, tmpfs")]
struct Cli {
    /// Where the containers' and volumes' state lives
    #[arg(long, global = true, env = "CARTON_ROOT", default_value = "/var/lib/carton", value_name = "DIR")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct MountFlags {
    /// [SOURCE:]TARGET[:OPTIONS]: a host path, a volume's name, or nothing (anonymous)
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long)]
    mount: Vec<String>,
    /// PATH[:OPTIONS]: a tmpfs
    #[arg(long)]
    tmpfs: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a container from DIR with these mounts, then remove the container
    Run {
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        #[command(flatten)]
        mounts: MountFlags,
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Print the runtime spec's mounts these flags become (volumes are made as needed)
    Spec {
        #[command(flatten)]
        mounts: MountFlags,
    },
    /// Manage volumes
    #[command(subcommand)]
    Volume(Volume),
}

#[derive(Subcommand)]
enum Volume {
    /// Make a volume
    Create { name: String },
    /// List the volumes
    Ls,
    /// Remove a volume no container uses
    Rm { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
    let done = match cli.command {
        Command::Run { rootfs, mounts, command } => run(&root, &rootfs, &mounts, command),
        Command::Spec { mounts } => requests(&mounts).and_then(|requests| {
            let _lock = VolumeStore::new(&root).lock(Lock::Shared)?;
            let planned = mounts::plan(&root, requests, Vec::new(), &[])?;
            let entries = mounts::oci_mounts(&planned.mounts)?;
            println!("{}", serde_json::to_string_pretty(&entries).unwrap_or_default());
            Ok(0)
        }),
        Command::Volume(Volume::Create { name }) => {
            let store = VolumeStore::new(&root);
            store.lock(Lock::Shared).and_then(|_lock| store.create(Some(&name), Default::default())).map(|(volume, _)| {
                println!("{}", volume.name);
                0
            })
        }
        Command::Volume(Volume::Ls) => VolumeStore::new(&root).list().map(|volumes| {
            volumes.iter().for_each(|v| println!("{:<8} {}", v.driver, v.name));
            0
        }),
        Command::Volume(Volume::Rm { name }) => remove(&root, &name),
    };
    match done {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("step10-volumes: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The flags, read (relative host paths from this directory).
fn requests(flags: &MountFlags) -> step01::Result<Vec<Request>> {
    let cwd = std::env::current_dir().map_err(|e| step01::Error::runtime(format!("cannot read the current directory: {e}")))?;
    let mut requests = Vec::new();
    for text in &flags.volume {
        requests.push(spec::parse_volume(text, &cwd)?);
    }
    for text in &flags.mount {
        requests.push(spec::parse_mount(text, &cwd)?);
    }
    for text in &flags.tmpfs {
        requests.push(spec::parse_tmpfs(text)?);
    }
    Ok(requests)
}

/// A container with the mounts asked for, run once in the foreground, then removed with
/// its anonymous volumes: its exit code.
fn run(root: &Path, rootfs: &Path, flags: &MountFlags, command: Vec<String>) -> step01::Result<u8> {
    let rootfs = std::path::absolute(rootfs).map_err(|e| step01::Error::runtime(format!("{}: {e}", rootfs.display())))?;
    let requests = requests(flags)?;
    let process = Process::new(command);
    let id = step02::ContainerId::random()?;
    let mut spec = step01::container::base_spec(&process, Path::new("rootfs"))?;
    step02::oci::write(&step02::Options::new(id.clone()), &mut spec)?;
    step03::NetworkOptions { mode: step03::Mode::None, ..step03::NetworkOptions::new() }.write_oci(&mut spec);
    step08::docker::write(&step08::docker::SecurityOptions::default(), &mut spec)?;
    // The volumes are chosen (and made) under their lock, until the container's record says
    // which it uses: a `volume rm` meanwhile waits.
    let lock = VolumeStore::new(root).lock(Lock::Shared)?;
    let planned = mounts::plan(root, requests, Vec::new(), &[])?;
    mounts::add_to_spec(&mut spec, &planned.mounts)?;
    let host_config = step09::HostConfig { network_mode: "none".into(), auto_remove: true, ..Default::default() };
    let record = step09::Container::new(id.as_str(), id.as_str(), &rootfs.display().to_string(), "", &process.args, host_config);
    let made = step07::engine::prepare(root, id.as_str(), step07::engine::Root::Directory(rootfs.clone()), spec, &Explain::off())
        .and_then(|_| record.save(root))
        .and_then(|()| mounts::record(root, id.as_str(), &planned.mounts))
        .and_then(|()| planned.copy_up(&rootfs));
    drop(lock);
    if let Err(error) = made {
        let _ = step07::engine::teardown(root, id.as_str());
        planned.undo(root);
        return Err(error);
    }
    let runtime = step07::Runtime::new(root, Explain::off());
    let stdio = step09::monitor::Stdio::Inherited { tty: false, interactive: false };
    let ended = step09::monitor::run_once(&runtime, id.as_str(), stdio, Some(Vec::new()), |_| {});
    step09::lifecycle::finish(root, id.as_str())?;
    mounts::remove_anonymous(root, &planned.mounts)?;
    Ok(ended?.exit_code as u8)
}

/// `volume rm`: refused while a container uses the volume.
fn remove(root: &Path, name: &str) -> step01::Result<u8> {
    mounts::remove_volume(root, name)?;
    println!("{name}");
    Ok(0)
}
