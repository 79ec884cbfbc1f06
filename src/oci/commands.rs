//! runc's commands, each one call of step 07's runtime (and step 08's security around it).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use oci_spec::runtime::{ContainerState, Spec};
use step01::{Error, Result};
use step07::exec::ExecProcess;
use step07::{Bundle, CreateOptions, Runtime};

use crate::hooks::{self, Kind};
use crate::log::Log;

#[derive(Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits until `start`
    Create {
        #[command(flatten)]
        create: CreateArgs,
        id: String,
    },
    /// Let a created container run its command
    Start { id: String },
    /// The container's state as JSON, as the runtime spec defines it
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's first process
    Kill {
        /// Signal every process of the container
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a container (with --force, a running one too: it is killed)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it and delete it, unless --detach
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs (it lives on)
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it ends (do not delete it)
        #[arg(long)]
        keep: bool,
        id: String,
    },
    /// Run one more process in a running container
    Exec(ExecArgs),
    /// The processes of a container (host PIDs)
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        /// Options for ps(1), with --format table (default: -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of the container (the cgroup freezer)
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// The containers under --root
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json (runc's defaults) into the bundle directory
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for a rootless container (not supported yet)
        #[arg(long)]
        rootless: bool,
    },
    /// What this runtime supports, as the runtime spec's features document (JSON)
    Features,
    /// Change a running container's resources (not supported yet)
    #[command(disable_help_flag = true)]
    Update {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Stream a container's events and statistics (not supported yet)
    #[command(disable_help_flag = true)]
    Events {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Save a running container to disk with CRIU (not supported)
    #[command(disable_help_flag = true)]
    Checkpoint {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Restore a checkpointed container (not supported)
    #[command(disable_help_flag = true)]
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The bundle directory (config.json and, usually, the root filesystem)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// A unix socket to send the terminal's master end to (process.terminal)
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Write the container's first process's PID here
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Move the root over / and chroot instead of pivot_root (for an initramfs host)
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc's sake: carton never makes a session keyring
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass descriptors 3 to 3+N-1 on to the container
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The process to run, as the runtime spec's `process` JSON (as engines pass it)
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Allocate a terminal
    #[arg(short, long)]
    tty: bool,
    /// A unix socket to send the terminal's master end to
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Return once the process runs (it lives on)
    #[arg(short, long)]
    detach: bool,
    /// Write the process's PID here
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long)]
    env: Vec<String>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    user: Option<String>,
    /// Extra groups, by number
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Set no_new_privs for the process
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability to the process's bounding, effective and permitted sets
    #[arg(short, long = "cap")]
    cap: Vec<String>,
    /// Pass descriptors 3 to 3+N-1 on to the process
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc's sake (no SELinux/AppArmor here)
    #[arg(long, value_name = "LABEL")]
    process_label: Option<String>,
    #[arg(long, value_name = "PROFILE")]
    apparmor: Option<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(command: Command, runtime: &Runtime, log: &Log) -> Result<u8> {
    match command {
        Command::Create { create, id } => {
            log.debug(&format!("create {id} from {}", create.bundle.display()));
            let (created, _) = create_container(runtime, log, &id, &create, false)?;
            created.running.detach(); // it lives on; the engine's monitor (a subreaper) takes it
            Ok(0)
        }
        Command::Start { id } => start(runtime, log, &id).map(|()| 0),
        Command::State { id } => {
            print(&serde_json::to_string_pretty(&runtime.state(&id)?).unwrap_or_default());
            Ok(0)
        }
        Command::Kill { all, id, signal } => runtime.kill(&id, step07::parse_signal(&signal)?, all).map(|()| 0),
        Command::Delete { force, id } => delete(runtime, log, &id, force).map(|()| 0),
        Command::Run { create, detach, keep, id } => run_container(runtime, log, &id, &create, detach, keep),
        Command::Exec(args) => exec(runtime, log, args),
        Command::Ps { format, id, ps_args } => ps(runtime, &id, format, ps_args),
        Command::Pause { id } => runtime.set_paused(&id, true).map(|()| 0),
        Command::Resume { id } => runtime.set_paused(&id, false).map(|()| 0),
        Command::List { format, quiet } => list(runtime, format, quiet),
        Command::Spec { bundle, rootless } => write_default_spec(&bundle, rootless).map(|()| 0),
        Command::Features => {
            print(&serde_json::to_string_pretty(&features()).unwrap_or_default());
            Ok(0)
        }
        Command::Update { .. } => Err(not_supported("update", "change the limits by deleting and creating the container again")),
        Command::Events { .. } => Err(not_supported("events", "read the numbers from the container's cgroup, or use `carton stats`")),
        Command::Checkpoint { .. } | Command::Restore { .. } => Err(not_supported("checkpoint/restore", "carton has no CRIU support")),
    }
}

/// One line on stdout; a reader that went away (`state ID | head -1`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn not_supported(command: &str, instead: &str) -> Error {
    Error::runtime(format!("carton-oci does not support `{command}` (yet); {instead}"))
}

// ANCHOR: create
/// `create`: the container made by step 07, with step 08's security settings around the
/// steps' hooks; then the hooks of the spec that run during create; then the PID file.
/// `attached` (a foreground `run`) with a terminal and no console socket of the engine's:
/// the socket pair is this process's, and the end to relay the terminal from comes back.
fn create_container(runtime: &Runtime, log: &Log, id: &str, args: &CreateArgs, attached: bool) -> Result<(step07::Created, Option<UnixStream>)> {
    let bundle = Bundle::load(&args.bundle)?;
    if joins_a_pid_namespace(&bundle.spec) {
        step08::exe::reexec_sealed()?; // others live there already (a pod's): as for exec
    }
    let terminal = bundle.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let (relay_end, stdin) = match (&args.console_socket, terminal) {
        (Some(socket), true) => (None, step02::Stdin::Terminal { console: connect(socket)?, size: None }),
        (Some(_), false) => return Err(Error::runtime("--console-socket was given, and the spec's process.terminal is false: give the socket only with a terminal")),
        (None, true) if attached => step02::attach_stdio(true, true)?,
        (None, true) => {
            return Err(Error::runtime("the spec's process.terminal is true and no --console-socket was given: the terminal's master end would have nowhere to go"));
        }
        (None, false) => (None, step02::Stdin::Inherit),
    };
    let options = CreateOptions { attached, stdin, no_pivot: args.no_pivot, preserve_fds: args.preserve_fds };
    let created = runtime.create_with(id, &bundle.dir, options, |spec, hooks| secured(spec, hooks, log))?;
    created.warnings.iter().for_each(|warning| log.warn(warning));
    let mut state = runtime.state(id)?;
    state["status"] = "creating".into();
    let made = [Kind::Prestart, Kind::CreateRuntime, Kind::CreateContainer].into_iter().try_for_each(|kind| hooks::run(kind, &bundle.spec, &state, None));
    let made = made.and_then(|()| args.pid_file.as_deref().map_or(Ok(()), |file| write_pid_file(file, created.running.pid.as_raw())));
    if let Err(error) = made {
        let _ = runtime.delete(id, true);
        return Err(error);
    }
    Ok((created, relay_end))
}
// ANCHOR_END: create

fn joins_a_pid_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces.into_iter().flatten().any(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && ns.path().is_some())
}

/// Step 08 around the steps' hooks; what it cannot apply yet is said, not skipped silently.
fn secured(spec: &Spec, hooks: step07::StepHooks, log: &Log) -> Result<step08::Security> {
    let reading = step08::from_oci(spec, hooks)?;
    reading.warnings.iter().for_each(|warning| log.warn(warning));
    Ok(reading.security)
}

/// `start`: the startContainer hooks in the container's namespaces, the gate opened, the
/// poststart hooks (a failing one is a warning: the command runs already).
fn start(runtime: &Runtime, log: &Log, id: &str) -> Result<()> {
    let state = runtime.state(id)?;
    if state["status"] != "created" {
        return runtime.start(id); // says why not
    }
    let bundle = runtime.bundle_of(id)?;
    let pid = state["pid"].as_i64().map(|pid| pid as i32);
    if let Err(error) = hooks::run(Kind::StartContainer, &bundle.spec, &state, pid) {
        let _ = runtime.delete(id, true);
        return Err(error);
    }
    runtime.start(id)?;
    if let Err(error) = hooks::run(Kind::Poststart, &bundle.spec, &runtime.state(id)?, None) {
        log.warn(&error.message);
    }
    Ok(())
}

/// `delete`, then the poststop hooks (their failure is a warning: the container is gone).
/// With `force`, a container that is gone already is no error: engines delete twice
/// (containerd's shim after containerd), and runc answers that with success.
fn delete(runtime: &Runtime, log: &Log, id: &str, force: bool) -> Result<()> {
    let state = match runtime.state(id) {
        Err(_) if force && !runtime.container_dir(id).join("state.json").exists() => return Ok(()),
        state => state?,
    };
    let bundle = runtime.bundle_of(id).ok();
    runtime.delete(id, force)?;
    if let Some(bundle) = bundle {
        let mut state = state;
        state["status"] = "stopped".into();
        if let Err(error) = hooks::run(Kind::Poststop, &bundle.spec, &state, None) {
            log.warn(&error.message);
        }
    }
    Ok(())
}

/// `run`: create and start; with --detach return, otherwise wait (relaying a terminal if
/// the spec asks for one), delete, and exit with the container's code.
fn run_container(runtime: &Runtime, log: &Log, id: &str, args: &CreateArgs, detach: bool, keep: bool) -> Result<u8> {
    let (created, relay_end) = create_container(runtime, log, id, args, !detach)?;
    if detach {
        let pid = created.running.detach();
        start(runtime, log, id)?;
        log.debug(&format!("container {id} runs as PID {pid}"));
        return Ok(0);
    }
    let step07::Created { running, .. } = created;
    let relay = match step02::attach_terminal(relay_end, true, &running) {
        Ok(relay) => relay,
        Err(error) => {
            let _ = runtime.delete(id, true);
            return Err(error);
        }
    };
    start(runtime, log, id)?;
    let exit = running.confirm_exec().and_then(|running| running.wait());
    drop(relay);
    if !keep {
        delete(runtime, log, id, true)?;
    }
    Ok(exit?.code() as u8)
}

// ANCHOR: exec
/// `exec`: the process from `--process` (an engine's) or the container's own changed by
/// the flags; its capabilities by step 08; detached or waited for.
fn exec(runtime: &Runtime, log: &Log, args: ExecArgs) -> Result<u8> {
    // The new process joins a PID namespace with the container's processes in it: it must
    // not run the host's carton binary where they can reach it (CVE-2019-5736).
    step08::exe::reexec_sealed()?;
    let (bundle, mut process) = runtime.container_process(&args.id)?;
    if let Some(file) = &args.process {
        let text = std::fs::read_to_string(file).map_err(|e| Error::runtime(format!("cannot read the process file {}: {e}", file.display())))?;
        process = serde_json::from_str(&text).map_err(|e| Error::runtime(format!("{} is not a runtime spec process: {e}", file.display())))?;
    } else {
        if args.command.is_empty() {
            return Err(Error::runtime("exec needs a command (after the id), or --process FILE"));
        }
        step07::exec::change_process(&mut process, args.command.clone(), args.cwd.clone(), &args.env)?;
        if let Some(user) = &args.user {
            step07::exec::set_user(&mut process, &step07::exec::numeric_user(user)?)?;
        }
        if !args.additional_gids.is_empty() {
            let mut user = process.user().clone();
            user.set_additional_gids(Some(args.additional_gids.clone()));
            process.set_user(user);
        }
        process.set_terminal(Some(args.tty));
        if args.no_new_privs {
            process.set_no_new_privileges(Some(true));
        }
    }
    let mut exec = ExecProcess::from_oci(&bundle.spec, &bundle.dir, &process)?;
    exec.process.preserve_fds = args.preserve_fds;
    exec.detached = args.detach;
    let capabilities = exec_capabilities(&process, &args.cap, log)?;
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    exec.security = Some(Box::new(step08::ExecPolicy::new(&bundle.spec, capabilities, no_new_privileges)?));
    let terminal = process.terminal().unwrap_or(false);
    let mut relay_end = None;
    match (&args.console_socket, terminal) {
        (Some(socket), true) => exec.console = Some(connect(socket)?),
        (Some(_), false) => return Err(Error::runtime("--console-socket was given without a terminal (-t, or process.terminal)")),
        (None, true) if args.detach => return Err(Error::runtime("a detached exec with a terminal needs --console-socket: the terminal's master end would have nowhere to go")),
        (None, true) => {
            let (ours, theirs) = UnixStream::pair().map_err(|e| Error::runtime(format!("console socket: {e}")))?;
            exec.console = Some(theirs);
            relay_end = Some(ours);
        }
        (None, false) => {}
    }
    log.debug(&format!("exec in {}: {:?}", args.id, exec.process.args));
    let running = runtime.exec_spawn(&args.id, &exec)?;
    drop(exec); // our copy of the console socket: the process has its own
    if let Some(file) = &args.pid_file {
        write_pid_file(file, running.pid.as_raw())?;
    }
    if args.detach {
        running.detach();
        return Ok(0);
    }
    let relay = step02::attach_terminal(relay_end, true, &running)?;
    let exit = running.wait();
    drop(relay);
    Ok(exit?.code() as u8)
}
// ANCHOR_END: exec

/// The capabilities of an exec'd process: its `process.capabilities`, plus `--cap`.
fn exec_capabilities(process: &oci_spec::runtime::Process, added: &[String], log: &Log) -> Result<Option<step08::Capabilities>> {
    let Some(caps) = process.capabilities() else {
        return if added.is_empty() { Ok(None) } else { Err(Error::runtime("--cap needs the container's process to have capability sets to add to")) };
    };
    let mut caps = step08::Capabilities::from_oci(caps)?;
    let extra = step08::CapSet::parse(added)?;
    for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted] {
        set.0 |= extra.0;
    }
    let (caps, warnings) = caps.within_reach();
    warnings.iter().for_each(|warning| log.warn(warning));
    Ok(Some(caps))
}

fn connect(socket: &Path) -> Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| Error::runtime(format!("cannot connect to the console socket {}: {e}", socket.display())))
}

/// The PID file, written whole (an engine may be polling for it).
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).map_err(|e| Error::runtime(format!("cannot resolve the pid file {}: {e}", path.display())))?;
    step06::store::write_atomically(&path, pid.to_string().as_bytes(), step06::store::Durable::No)
}

/// `ps`: the container's processes, from its cgroup: their PIDs as JSON, or the lines of
/// ps(1) for them.
fn ps(runtime: &Runtime, id: &str, format: Format, ps_args: Vec<String>) -> Result<u8> {
    let state = runtime.state(id)?;
    if state["status"] == ContainerState::Stopped.to_string() {
        return Err(Error::runtime(format!("container {id} is stopped: it has no processes")));
    }
    let pids = runtime.processes(id)?;
    if format == Format::Json {
        print(&serde_json::to_string(&pids).unwrap_or_default());
        return Ok(0);
    }
    let args = if ps_args.is_empty() { vec!["-ef".to_string()] } else { ps_args };
    let output = std::process::Command::new("ps").args(&args).output().map_err(|e| Error::runtime(format!("cannot run ps: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header.split_whitespace().position(|name| name == "PID").ok_or_else(|| Error::runtime("ps printed no PID column: give ps options that show it"))?;
    print(header);
    for line in lines.filter(|line| line.split_whitespace().nth(column).and_then(|pid| pid.parse::<i32>().ok()).is_some_and(|pid| pids.contains(&pid))) {
        print(line);
    }
    Ok(0)
}

/// `list`: each container's id, PID, status, bundle and creation time.
fn list(runtime: &Runtime, format: Format, quiet: bool) -> Result<u8> {
    let states: Vec<serde_json::Value> = runtime.list().iter().filter_map(|id| runtime.state(id).ok()).collect();
    if quiet {
        states.iter().for_each(|state| print(state["id"].as_str().unwrap_or_default()));
    } else if format == Format::Json {
        print(&serde_json::to_string(&states).unwrap_or_default());
    } else {
        print(&format!("{:<24} {:<8} {:<10} {:<40} CREATED", "ID", "PID", "STATUS", "BUNDLE"));
        for state in &states {
            let field = |key: &str| state[key].as_str().unwrap_or_default().to_string();
            print(&format!("{:<24} {:<8} {:<10} {:<40} {}", field("id"), state["pid"].as_i64().unwrap_or(0), field("status"), field("bundle"), field("created")));
        }
    }
    Ok(0)
}

/// `spec`: a default config.json like runc's (a shell in `rootfs`, the default mounts,
/// masked and read-only paths, the capabilities runc keeps), named for carton; unlike
/// runc's, without a terminal (an engine that wants one says so).
fn write_default_spec(bundle: &Path, rootless: bool) -> Result<()> {
    if rootless {
        return Err(Error::runtime("rootless specs are not supported yet (planned: the rootless chapter)"));
    }
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::runtime(format!("{} exists already; remove it first", path.display())));
    }
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_hostname(Some("carton".to_string()));
    Bundle::write(bundle, &spec)
}

/// The runtime spec's features document: what this runtime can do.
fn features() -> serde_json::Value {
    let namespaces = ["cgroup", "ipc", "mount", "network", "pid", "uts"];
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "nodiratime", "relatime", "strictatime", "sync", "defaults",
            "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"],
        "linux": {
            "namespaces": namespaces,
            "capabilities": step08::capabilities::NAMES.to_vec(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            // carton's own compiler (chapter 8): these actions, operators and architectures;
            // no seccomp agent (SCMP_ACT_NOTIFY), no libseccomp behind it.
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": { "org.carton.runtime": "carton-oci" }
    })
}
