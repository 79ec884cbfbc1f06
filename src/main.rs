//! carton — a container runtime written from scratch, built only from the step crates.

mod containers;
mod doctor;
mod images;
mod system;
mod volumes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use step01::{busybox, Explain, Process};

/// Exit code for the runtime's own errors, as Docker uses it.
const RUNTIME_ERROR: u8 = 125;

#[derive(Parser)]
#[command(name = "carton", version, about = "A container runtime you can read: every step is a chapter of its book")]
struct Cli {
    /// Where carton keeps its state
    #[arg(long, global = true, env = "CARTON_ROOT", default_value = "/var/lib/carton", value_name = "DIR")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Lifecycle(containers::Lifecycle),
    /// Manage containers
    #[command(subcommand)]
    Container(containers::ContainerCommand),
    /// A detached container's monitor (started by `run -d` and `start`; not for people)
    #[command(hide = true)]
    Monitor(step09::lifecycle::MonitorArgs),
    /// Make base material offline, from the host's own files
    #[command(subcommand)]
    Bootstrap(Bootstrap),
    /// Check that this machine can run containers (a preflight for lab machines)
    Doctor,
    /// Show what this machine and carton have: containers, images, cgroups, storage, kernel
    Info,
    /// Show carton's version
    Version,
    /// Manage carton itself: what it holds, and clearing what is not used
    #[command(subcommand)]
    System(System),
    /// Manage carton's network
    #[command(subcommand)]
    Network(Network),
    /// Manage volumes: directories carton keeps for containers' data
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
    /// List images
    Images,
    #[command(flatten)]
    ImageCommand(images::ImageCommand),
    /// Remove images (and the layers no other image uses)
    Rmi {
        /// Remove the name even while a running container uses the image
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Save a user name and password for a registry (checked with it first)
    Login(images::LoginArgs),
    /// Forget the login to a registry
    Logout {
        /// The registry (default: Docker Hub)
        #[arg(value_name = "SERVER")]
        server: Option<String>,
    },
}

#[derive(Args)]
struct ExecArgs {
    /// Set an environment variable (KEY=VALUE), added to the container's
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container (default: the container's)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Run as this user (a name or number, from the container's /etc/passwd and /etc/group)
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Keep stdin attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// Run the command in the background (its output goes nowhere)
    #[arg(short = 'd', long)]
    detach: bool,
    /// Print each kernel-level action as it happens
    #[arg(long)]
    explain: bool,
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images
    Ls,
    /// Remove images
    Rm {
        /// Remove the name even while a running container uses the image
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Show an image's details as JSON, as `docker image inspect` does
    Inspect {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Delete what no image needs any more (left by a tag that moved, or a failed pull)
    Prune {
        /// Do not ask first
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Shared(images::ImageCommand),
}

#[derive(Subcommand)]
enum System {
    /// Remove stopped containers, and images nothing uses (dangling ones; every unused one with -a)
    Prune {
        /// Remove every image no container uses, not only dangling ones
        #[arg(short, long)]
        all: bool,
        /// Remove the anonymous volumes no container uses too
        #[arg(long)]
        volumes: bool,
        /// Do not ask first
        #[arg(short, long)]
        force: bool,
    },
    /// The same as `carton info`
    Info,
}

#[derive(Subcommand)]
enum Network {
    /// Remove the bridge carton0 and carton's NAT rules (when no container uses them)
    Prune,
}

#[derive(Args)]
// A flag given twice takes the last value, as with Docker (lists such as -e add up).
#[command(args_override_self = true)]
#[command(
    after_help = "Examples:\n  carton bootstrap busybox ./rootfs\n  carton run --rootfs ./rootfs -- echo hello\n  carton run -it --rootfs ./rootfs sh\n  carton run --explain --rootfs ./rootfs sh -c 'ls /'"
)]
struct RunArgs {
    /// Directory that becomes the container's / (instead of an image)
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Pull the image first: missing (when it is not here), always, or never
    #[arg(long, value_name = "WHEN", default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// Run this instead of the image's Entrypoint (and drop its Cmd)
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// Set an environment variable (KEY=VALUE), or pass the host's value of KEY
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines), before -e
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container (absolute)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Run the command as this user (a name or number; names from the image's /etc/passwd and /etc/group)
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Container hostname (default: the short container id)
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Run a small init as PID 1 that passes on signals and reaps zombies
    #[arg(long)]
    init: bool,
    /// Keep stdin attached (without it, stdin is /dev/null)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// bridge (the default: its own address on the bridge carton0, with NAT), none (only lo) or host (the host's network)
    #[arg(long, value_name = "MODE")]
    network: Option<String>,
    /// Publish a container's port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    /// Publish every port the image exposes, each on a free port the kernel chooses
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// A resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048 (within this machine's hard limits)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// A kernel setting of the container's own namespaces, e.g. net.ipv4.ip_unprivileged_port_start=0
    #[arg(long, value_name = "KEY=VALUE")]
    sysctl: Vec<String>,
    /// Add NAME:IP to the container's /etc/hosts
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_hosts: Vec<String>,
    /// A nameserver for the container's /etc/resolv.conf
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    #[command(flatten)]
    limits: LimitFlags,
    #[command(flatten)]
    security: SecurityFlags,
    /// Print each kernel-level action as it happens, with its shell equivalent
    #[arg(long)]
    explain: bool,
    /// Remove the container when it exits (without it, it is kept: `carton ps -a`)
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container's id (a monitor process watches it)
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// A name for the container (default: a random adjective_surname)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Start it again when it ends: no, on-failure[:MAX], always, unless-stopped
    #[arg(long, value_name = "POLICY", default_value = "no")]
    restart: String,
    /// The signal `carton stop` sends first (default: the image's STOPSIGNAL, or SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds `carton stop` waits before SIGKILL (default 10)
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    stop_timeout: Option<u32>,
    /// The log's rotation: max-size=SIZE, max-file=N
    #[arg(long = "log-opt", value_name = "OPTION")]
    log_opt: Vec<String>,
    #[command(flatten)]
    health: HealthFlags,
    #[command(flatten)]
    mounts: volumes::MountFlags,
    /// The image, then the command and its arguments (or, with --rootfs, the command)
    #[arg(trailing_var_arg = true, value_name = "IMAGE [COMMAND]")]
    command: Vec<String>,
}

/// Docker's health-check flags (chapter 9): a command the monitor runs in the container.
#[derive(Args)]
struct HealthFlags {
    /// A shell command that checks the container's health (exit 0: healthy)
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    cmd: Option<String>,
    /// Time between checks, e.g. 30s (default 30s)
    #[arg(long = "health-interval", value_name = "DURATION")]
    interval: Option<String>,
    /// Time a check may take, e.g. 5s (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    timeout: Option<String>,
    /// Time to start in, when failures do not count yet, e.g. 1m (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    start_period: Option<String>,
    /// Failures in a row that make it unhealthy (default 3)
    #[arg(long = "health-retries", value_name = "N")]
    retries: Option<u32>,
    /// No health check, not even the image's HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    none: bool,
}

impl HealthFlags {
    /// The check asked for, over the image's (`image`, its config's `Healthcheck`).
    fn over(&self, image: Option<&serde_json::Value>) -> step01::Result<Option<step09::health::HealthConfig>> {
        let asked = step09::health::from_flags(self.cmd.as_deref(), self.interval.as_deref(), self.timeout.as_deref(), self.start_period.as_deref(), self.retries, self.none)?;
        let image = image
            .map(|value| serde_json::from_value(value.clone()).map_err(|e| step01::Error::runtime(format!("the image's HEALTHCHECK cannot be read ({e}); --no-healthcheck runs without it"))))
            .transpose()?;
        Ok(match (asked, image) {
            (Some(asked), image) => Some(asked.over(image)),
            (None, image) => image,
        })
    }
}

/// Docker's resource limits (chapter 4), parsed and checked by step 04.
#[derive(Args)]
struct LimitFlags {
    /// Memory limit (b, k, m, g), e.g. 512m
    #[arg(short = 'm', long = "memory", value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap (-1: unlimited swap; default: twice --memory)
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU time, in CPUs (0.5 = half of one CPU's time)
    #[arg(long, value_name = "CPUS", allow_hyphen_values = true)]
    cpus: Option<String>,
    /// Relative CPU weight when CPUs are busy (default 1024)
    #[arg(short = 'c', long = "cpu-shares", value_name = "SHARES")]
    cpu_shares: Option<String>,
    /// The CPUs the container may run on, e.g. 0-1 or 0,2
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// The most processes (and threads) at once (-1: unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Relative block I/O weight, 10 to 1000
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    blkio_weight: Option<String>,
    /// Limit reads from a device, e.g. /dev/sda:1mb (bytes per second)
    #[arg(long = "device-read-bps", value_name = "DEVICE:RATE")]
    device_read_bps: Vec<String>,
    /// Limit writes to a device, e.g. /dev/sda:1mb (bytes per second)
    #[arg(long = "device-write-bps", value_name = "DEVICE:RATE")]
    device_write_bps: Vec<String>,
    /// A soft memory limit, reclaimed down to under memory pressure, e.g. 256m
    #[arg(long = "memory-reservation", value_name = "BYTES")]
    memory_reservation: Option<String>,
    /// How eagerly the container's memory is swapped out, 0 to 100 (cgroup v1 only)
    #[arg(long = "memory-swappiness", value_name = "0-100")]
    memory_swappiness: Option<String>,
    /// At the memory limit, let processes wait instead of being killed (cgroup v1 only)
    #[arg(long = "oom-kill-disable")]
    oom_kill_disable: bool,
}

impl LimitFlags {
    /// The limits, checked: a bad value is an error before anything exists.
    fn parse(&self) -> step01::Result<step04::Limits> {
        use step04::limits::*;
        let online = online_cpus();
        let memory = self.memory.as_deref().map(parse_memory).transpose()?;
        Ok(step04::Limits {
            memory,
            memory_swap: self.memory_swap.as_deref().map(|swap| parse_memory_swap(swap, memory)).transpose()?,
            cpus: self.cpus.as_deref().map(|cpus| parse_cpus(cpus, online.len())).transpose()?,
            cpu_shares: self.cpu_shares.as_deref().map(parse_cpu_shares).transpose()?,
            cpuset_cpus: self.cpuset_cpus.as_deref().map(|cpus| parse_cpuset(cpus, &online)).transpose()?,
            pids_limit: self.pids_limit.as_deref().map(parse_pids_limit).transpose()?.flatten(),
            blkio_weight: self.blkio_weight.as_deref().map(parse_blkio_weight).transpose()?,
            device_read_bps: self.device_read_bps.iter().map(|rate| parse_device_rate("--device-read-bps", rate)).collect::<step01::Result<_>>()?,
            device_write_bps: self.device_write_bps.iter().map(|rate| parse_device_rate("--device-write-bps", rate)).collect::<step01::Result<_>>()?,
            memory_reservation: self.memory_reservation.as_deref().map(parse_memory).transpose()?,
            memory_swappiness: self.memory_swappiness.as_deref().map(parse_memory_swappiness).transpose()?,
            oom_kill_disable: self.oom_kill_disable,
            ..step04::Limits::default()
        })
    }
}

/// Docker's security flags (chapter 8): by default a container gets Docker's capabilities,
/// seccomp profile, masked paths and device rules.
#[derive(Args)]
struct SecurityFlags {
    /// Every capability, no seccomp filter, no masked paths, every device: the container can take over the host
    #[arg(long)]
    privileged: bool,
    /// Add a capability (NET_ADMIN, CAP_SYS_PTRACE, ... or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges
    #[arg(long = "security-opt", value_name = "OPTION")]
    security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm]
    #[arg(long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
}

impl SecurityFlags {
    fn options(&self) -> step08::docker::SecurityOptions {
        step08::docker::SecurityOptions {
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security_opt: self.security_opt.clone(),
            devices: self.devices.clone(),
            read_only: self.read_only,
        }
    }
}

#[derive(Subcommand)]
enum Bootstrap {
    /// Make a busybox root filesystem in DIR from the host's static busybox (busybox-static)
    Busybox {
        /// A new (or empty) directory for a root filesystem; without it, the image busybox:latest
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => return usage_error(error),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    // Absolute once and for all: records shared between state roots (address leases) name
    // a container by its state directory's path.
    if let Ok(root) = std::path::absolute(&cli.root) {
        cli.root = root;
    }
    // Errors of the commands that run a container exit 125; of the others, 1 (as Docker's).
    let error_code = match &cli.command {
        Command::Lifecycle(command) | Command::Container(containers::ContainerCommand::Shared(command)) if !command.runs_a_container() => Some(1),
        Command::Container(containers::ContainerCommand::Ls(_) | containers::ContainerCommand::Prune { .. }) | Command::System(_) | Command::Volume(_) => Some(1),
        // A failed build exits 1, as `docker build` does.
        Command::ImageCommand(images::ImageCommand::Build(_)) | Command::Image(ImageCommand::Shared(images::ImageCommand::Build(_))) => Some(1),
        _ => None,
    };
    // The kernel's cgroup lock is slow to take the first time: start that wait now, in the
    // background (chapter 4).
    if let Command::Lifecycle(command) | Command::Container(containers::ContainerCommand::Shared(command)) = &cli.command {
        if command.starts_a_process() {
            step04::warm_up();
        }
    }
    let outcome = match cli.command {
        Command::Lifecycle(command) | Command::Container(containers::ContainerCommand::Shared(command)) => containers::run_command(&cli.root, command),
        Command::Container(containers::ContainerCommand::Ls(args)) => containers::list(&cli.root, &args),
        Command::Container(containers::ContainerCommand::Prune { force }) => containers::prune(&cli.root, force),
        Command::Monitor(args) => {
            // With --rm, the container goes at the end of its last run, and its anonymous
            // volumes with it.
            let auto_removed = volumes::AutoRemoved::of(&cli.root, &args.id);
            let watched = step09::lifecycle::run_monitor(&cli.root, &args);
            auto_removed.release(&cli.root, &args.id);
            watched.map(|()| 0).map_err(Into::into)
        }
        Command::Bootstrap(Bootstrap::Busybox { dir: Some(dir) }) => bootstrap_busybox(dir),
        Command::Bootstrap(Bootstrap::Busybox { dir: None }) => bootstrap_busybox_image(&cli.root),
        Command::Doctor => doctor::run(),
        Command::Info | Command::System(System::Info) => system::info(&cli.root),
        Command::System(System::Prune { all, volumes, force }) => system::prune(&cli.root, all, volumes, force),
        Command::Version => system::version(),
        Command::Network(Network::Prune) => network_prune(&cli.root),
        Command::Volume(command) => volumes::run(&cli.root, command),
        Command::Images | Command::Image(ImageCommand::Ls) => images::list(&cli.root),
        Command::ImageCommand(command) | Command::Image(ImageCommand::Shared(command)) => images::run(&cli.root, command),
        Command::Rmi { force, images } | Command::Image(ImageCommand::Rm { force, images }) => images::remove(&cli.root, &images, force),
        Command::Image(ImageCommand::Inspect { images }) => images::inspect(&cli.root, &images),
        Command::Image(ImageCommand::Prune { force }) => images::prune(&cli.root, force),
        Command::Login(args) => images::login(&cli.root, args),
        Command::Logout { server } => images::logout(&cli.root, server.as_deref()),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("carton: {error:#}");
            ExitCode::from(error_code.unwrap_or_else(|| error.downcast_ref::<step01::Error>().map_or(RUNTIME_ERROR, step01::Error::exit_code)))
        }
    }
}

/// --help and --version are not errors; a usage error is a runtime error (125), as with Docker.
fn usage_error(error: clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(RUNTIME_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// Write to stdout, ignoring a reader that went away (`carton doctor | head -1`).
fn print_stdout(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `carton run`: the container's exit status, or the error that kept it from starting.
/// The flags become a bundle and a record (step 07's engine, step 09's record), kept
/// until `rm` (or removed at the end with `--rm`); then it runs, detached under a monitor
/// of its own (`-d`), or with this process as its monitor: the same run either way.
fn run(args: Box<RunArgs>, state_root: &Path) -> anyhow::Result<u8> {
    let runtime = step07::Runtime::new(state_root, Explain::when(args.explain));
    let (tty, interactive, detach) = (args.tty, args.interactive, args.detach);
    // The published ports first: one in use stops the run before anything is made.
    let mappings = args.publish.iter().map(|p| step03::ports::PortMapping::parse(p)).collect::<step01::Result<Vec<_>>>()?;
    let published = if detach || args.publish_all {
        // Only checked: the monitor binds them again (a port the kernel chooses, too;
        // and with -P, the image's, known once it is found).
        let chosen_later = |m: &step03::ports::PortMapping| m.host_port == 0;
        drop(step03::ports::bind(&mappings.iter().copied().filter(|m| !chosen_later(m)).collect::<Vec<_>>())?);
        None
    } else if args.network.as_deref().is_none_or(|mode| mode == "bridge") {
        Some(step03::publish(&mappings)?)
    } else {
        None
    };
    let (id, limits) = prepare_container(args, &runtime)?;
    if detach {
        return containers::run_detached(state_root, id.as_str());
    }
    containers::run_attached(&runtime, id.as_str(), tty, interactive, published, limits.memory)
}

/// What `run` and `create` share: the flags become a bundle under `containers/ID/` (the
/// image's root mounted, the network made, config.json written) and step 09's record, with
/// the container's name. Returns the new id and the limits asked for.
fn prepare_container(args: Box<RunArgs>, runtime: &step07::Runtime) -> anyhow::Result<(step02::ContainerId, step04::Limits)> {
    // The mounts first: a bad -v stops the run before anything is made.
    let mount_requests = args.mounts.requests()?;
    let volumes_from = args.mounts.volumes_from(&runtime.state_root)?;
    let limits = args.limits.parse()?;
    let mut host_config = step09::HostConfig {
        auto_remove: args.rm,
        restart_policy: step09::RestartPolicy::parse(&args.restart)?,
        network_mode: args.network.clone().unwrap_or_else(|| "bridge".into()),
        port_bindings: args.publish.clone(),
        ..Default::default()
    };
    if host_config.auto_remove && host_config.restart_policy.name != "no" {
        return Err(step01::Error::runtime("--rm and --restart do not go together: a container removed when it ends cannot start again").into());
    }
    (host_config.log_max_size, host_config.log_max_file) = step09::logs::parse_log_opts(&args.log_opt)?;
    if let Some(signal) = &args.stop_signal {
        step07::parse_signal(signal)?;
    }
    let state_root = runtime.state_root.as_path();
    let explain = &runtime.explain;
    let (root, process, passwd_root) = match args.rootfs.clone() {
        Some(rootfs) => {
            let rootfs = std::path::absolute(&rootfs).map_err(|e| step01::Error::runtime(format!("cannot resolve the root filesystem path {}: {e}", rootfs.display())))?;
            if args.entrypoint.is_some() {
                return Err(step01::Error::runtime("--entrypoint replaces an image's entrypoint; with --rootfs, give the command itself").into());
            }
            (step07::engine::Root::Directory(rootfs.clone()), Process::new(args.command.clone()), rootfs)
        }
        None => {
            let Some(image) = args.command.first() else {
                return Err(step01::Error::runtime("give an image to run (e.g. `carton run busybox echo hello`), or --rootfs DIR and a command").into());
            };
            let reference = step06::Reference::parse(image)?;
            images::pull_as_asked(state_root, &reference, &args.pull, explain)?;
            let prepared = step06::prepare(state_root, &reference, explain)?;
            let process = prepared.image.process(&args.command[1..], args.entrypoint.as_deref())?;
            let passwd_root = prepared.passwd_root().to_path_buf();
            (step07::engine::Root::Image(Box::new(prepared)), process, passwd_root)
        }
    };
    let image_user = match &root {
        step07::engine::Root::Image(prepared) => prepared.image.user(),
        step07::engine::Root::Directory(_) => None,
    };
    let mut args = args;
    if args.user.is_none() {
        args.user = image_user;
    }
    let image_annotations = match &root {
        step07::engine::Root::Image(prepared) => prepared.image.annotations(),
        step07::engine::Root::Directory(_) => Vec::new(),
    };
    if args.publish_all {
        let exposed = image_annotations.iter().find(|(key, _)| key == "org.opencontainers.image.exposedPorts").map(|(_, ports)| ports.clone()).unwrap_or_default();
        args.publish.extend(exposed.split(',').filter(|port| !port.is_empty()).map(str::to_string));
        // no host port: the kernel chooses
    }
    let image_healthcheck = match &root {
        step07::engine::Root::Image(prepared) => prepared.image.healthcheck.as_ref(),
        step07::engine::Root::Directory(_) => None,
    };
    let healthcheck = args.health.over(image_healthcheck)?;
    let (image_name, image_id) = match &root {
        step07::engine::Root::Image(prepared) => (args.command[0].clone(), prepared.image.manifest.config().digest().to_string()),
        step07::engine::Root::Directory(dir) => (dir.display().to_string(), String::new()),
    };
    let id = step02::ContainerId::random()?;
    let mut record = step09::Container::new(id.as_str(), "", &image_name, &image_id, &process.args, host_config);
    record.stop_signal =
        args.stop_signal.clone().or_else(|| image_annotations.iter().find(|(k, _)| k == "org.opencontainers.image.stopSignal").map(|(_, v)| v.clone())).unwrap_or_else(|| "SIGTERM".into());
    record.stop_timeout = args.stop_timeout.unwrap_or(10);
    (record.tty, record.interactive) = (args.tty, args.interactive);
    record.healthcheck = healthcheck;
    let name = args.name.clone();
    let mut spec = container_spec(*args, process, &passwd_root, &id, &limits)?;
    let image_volumes = volumes::image_volumes(&image_annotations);
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.extend(image_annotations);
    spec.set_annotations(Some(annotations));
    if let step07::engine::Root::Directory(dir) = &root {
        // Refused before anything (the bridge, a cgroup) is made for it.
        step01::container::check_root(dir)?;
    }
    step09::lifecycle::collect(state_root);
    // The name first: one in use stops everything before anything is made.
    record.name = match &name {
        Some(name) => {
            step09::names::claim(state_root, name, id.as_str())?;
            name.clone()
        }
        None => step09::names::claim_random(state_root, id.as_str())?,
    };
    // The volumes are chosen (and made) under their lock, held until the container's
    // record says which it uses: a `volume rm` meanwhile waits for it.
    // (Most containers have no mounts: no lock to take, nothing to plan.)
    let has_mounts = !(mount_requests.is_empty() && volumes_from.is_empty() && image_volumes.is_empty());
    let planned = (|| -> step01::Result<_> {
        let lock = if has_mounts { Some(step10::VolumeStore::new(state_root).lock(step06::store::Lock::Shared)?) } else { None };
        let inherited = volumes::inherited(state_root, &volumes_from)?;
        Ok((lock, step10::mounts::plan(state_root, mount_requests, inherited, &image_volumes)?))
    })();
    let (_volumes_lock, planned) = match planned {
        Ok(planned) => planned,
        Err(error) => {
            step09::names::release(state_root, &record.name, id.as_str());
            return Err(error.into());
        }
    };
    let prepared = step10::mounts::add_to_spec(&mut spec, &planned.mounts)
        .and_then(|()| step07::engine::prepare(state_root, id.as_str(), root, spec, explain))
        .and_then(|_| record.save(state_root))
        .and_then(|()| step10::mounts::record(state_root, id.as_str(), &planned.mounts))
        .and_then(|()| planned.copy_up(&step07::engine::root_path(state_root, id.as_str())?));
    if let Err(error) = prepared {
        let _ = step07::engine::teardown(state_root, id.as_str());
        step09::names::release(state_root, &record.name, id.as_str());
        planned.undo(state_root);
        return Err(error.into());
    }
    Ok((id, limits))
}

/// The container `carton run` asked for, as an OCI runtime spec: `process` with `-e`, `-w`
/// and `-u` applied (users are looked up in `passwd_root`'s /etc/passwd), then each step's
/// part written by that step.
fn container_spec(args: RunArgs, mut process: Process, passwd_root: &Path, id: &step02::ContainerId, limits: &step04::Limits) -> step01::Result<oci_spec::runtime::Spec> {
    let user = args.user.as_deref().map(|spec| step02::User::resolve(spec, passwd_root)).transpose()?;
    if let Some(user) = &user {
        process.set_env(&format!("HOME={}", user.home))?; // before -e, which may set another
    }
    let mut assignments = Vec::new();
    for file in &args.env_file {
        assignments.extend(step09::flags::read_env_file(file)?);
    }
    assignments.extend(args.env.iter().cloned());
    for assignment in &assignments {
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
    process.validate()?;
    let options = step02::Options { hostname: args.hostname, init: args.init, user, interactive: args.interactive, tty: args.tty, ..step02::Options::new(id.clone()) };
    let network = step03::NetworkOptions {
        mode: args.network.as_deref().map_or(Ok(step03::Mode::Bridge), str::parse)?,
        ports: args.publish.iter().map(|p| step03::ports::PortMapping::parse(p)).collect::<step01::Result<_>>()?,
        add_hosts: args.add_hosts.iter().map(|h| step03::HostEntry::parse(h)).collect::<step01::Result<_>>()?,
        dns: args.dns.iter().map(|d| step03::parse_dns(d)).collect::<step01::Result<_>>()?,
        subnet: step03::subnet_from_env()?,
    };
    if !network.ports.is_empty() && network.mode != step03::Mode::Bridge {
        return Err(step01::Error::runtime("-p publishes a port of the container's own address: it needs --network bridge"));
    }
    let mut spec = step01::container::base_spec(&process, Path::new("rootfs"))?;
    step02::oci::write(&options, &mut spec)?;
    network.write_oci(&mut spec);
    step04::oci::write(&mut spec, id.as_str(), limits)?;
    if !args.ulimit.is_empty() {
        let mut oci_process = spec.process().clone().unwrap_or_default();
        let mut rlimits = oci_process.rlimits().clone().unwrap_or_default();
        for ulimit in &args.ulimit {
            let rlimit = step09::flags::parse_ulimit(ulimit)?;
            rlimits.retain(|existing| existing.typ() != rlimit.typ());
            rlimits.push(rlimit);
        }
        oci_process.set_rlimits(Some(rlimits));
        spec.set_process(Some(oci_process));
    }
    if !args.sysctl.is_empty() {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut sysctl = linux.sysctl().clone().unwrap_or_default();
        for setting in &args.sysctl {
            let (key, value) = step09::flags::parse_sysctl(setting)?;
            sysctl.insert(key, value);
        }
        linux.set_sysctl(Some(sysctl));
        spec.set_linux(Some(linux));
    }
    step08::docker::write(&args.security.options(), &mut spec)?;
    Ok(spec)
}

fn network_prune(state_root: &Path) -> anyhow::Result<u8> {
    step07::engine::collect(state_root);
    for removed in step03::prune(step03::subnet_from_env()?)? {
        print_stdout(&format!("removed {removed}\n"));
    }
    Ok(0)
}

/// `carton bootstrap busybox`: the host's static busybox as the one-layer image
/// busybox:latest, offline.
fn bootstrap_busybox_image(state_root: &std::path::Path) -> anyhow::Result<u8> {
    let scratch = tempfile::tempdir()?;
    let rootfs = scratch.path().join("rootfs");
    let base = busybox::bootstrap(&rootfs)?;
    let store = step06::ImageStore::open(state_root)?;
    let reference = step06::Reference::parse("busybox:latest")?;
    let digest = step06::image_from_dir(&store, &rootfs, &reference, &["sh"])?;
    print_stdout(&format!("made the image busybox:latest ({}, {} applets), manifest {digest}\n", base.busybox_version, base.applets));
    Ok(0)
}

fn bootstrap_busybox(dir: PathBuf) -> anyhow::Result<u8> {
    let base = busybox::bootstrap(&dir)?;
    print_stdout(&format!("made a busybox root filesystem in {} ({}, {} applets)\n", dir.display(), base.busybox_version, base.applets));
    Ok(0)
}
