//! Docker's container commands, in both spellings (`carton ps` and `carton container ls`),
//! on steps 07 (the runtime), 08 (security) and 09 (the container's life: the monitor,
//! names, logs). Each command is a process of its own that meets the others, and the
//! containers' monitors, in the state root.

use std::path::Path;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use step01::{Error, Explain};
use step07::exec::ExecProcess;
use step07::{Record, Runtime};
use step09::lifecycle::{self, monitor_args};
use step09::monitor::Stdio;
use step09::names;
use step09::{Container, Status};

use crate::{print_stdout, ExecArgs, RunArgs};

/// The container commands, as top-level commands and under `carton container`.
#[derive(Subcommand)]
pub enum Lifecycle {
    /// Run a command in a new container
    Run(Box<RunArgs>),
    /// Create a container (its bundle: root, network, config.json) without starting it
    Create(Box<RunArgs>),
    /// Start stopped or created containers (in the background, unless -a)
    Start {
        /// Attach: wait for the container, its output on this terminal, its exit status this command's
        #[arg(short, long)]
        attach: bool,
        /// With -a: keep stdin attached
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Stop running containers: their stop signal, then SIGKILL after the timeout
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's, 10)
        #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
        time: Option<u32>,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Stop and start containers again
    Restart {
        /// Seconds to wait before SIGKILL (default: the container's, 10)
        #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
        time: Option<u32>,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Send a signal to running containers (default SIGKILL, as Docker)
    Kill {
        /// The signal: a name (TERM, SIGHUP) or a number
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Remove containers: their writable layer, bundle, logs and name
    Rm {
        /// Kill a running container first
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes too (named ones stay)
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Run a command in a running container
    Exec(ExecArgs),
    /// List containers
    Ps(PsArgs),
    /// Show a container's output (stdout and stderr, as it wrote them)
    Logs(LogsArgs),
    /// Show containers' details as JSON (images' too, with `carton image inspect`)
    Inspect {
        /// A Go-style template: {{.State.Pid}}, {{.NetworkSettings.IPAddress}}, {{json .Config}}
        #[arg(short, long, value_name = "TEMPLATE")]
        format: Option<String>,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Wait until containers stop; print their exit codes
    Wait {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Freeze every process of containers (the cgroup freezer)
    Pause {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Thaw paused containers
    Unpause {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Give a container a new name
    Rename {
        #[arg(value_name = "CONTAINER")]
        container: String,
        #[arg(value_name = "NEW_NAME")]
        new_name: String,
    },
    /// List a container's published ports
    Port {
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// Only this one: PORT[/PROTOCOL]
        #[arg(value_name = "PORT")]
        port: Option<String>,
    },
    /// Attach this terminal to a detached container's input and output (detach: Ctrl-P Ctrl-Q)
    Attach {
        /// The keys that detach, leaving the container running
        #[arg(long = "detach-keys", value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
        detach_keys: String,
        /// Do not pass this terminal's input on
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        /// Pass the signals this command gets (Ctrl-C, kill) on to the container (without -t); --sig-proxy=false to leave them
        #[arg(long = "sig-proxy", value_name = "BOOL", num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
        sig_proxy: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Copy files between a container and the host: CONTAINER:PATH HOSTPATH, or HOSTPATH CONTAINER:PATH
    Cp {
        /// Keep the files' owners (by default, what goes in belongs to root)
        #[arg(short, long)]
        archive: bool,
        #[arg(value_name = "SOURCE")]
        source: String,
        #[arg(value_name = "DESTINATION")]
        destination: String,
    },
    /// Show what a container changed in its files: A added, C changed, D deleted
    Diff {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Make a new image from a container's changes
    Commit {
        /// The new layer's author
        #[arg(short, long)]
        author: Option<String>,
        /// A message for the new layer's history
        #[arg(short, long)]
        message: Option<String>,
        /// A Dockerfile instruction for the new image: CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, LABEL, STOPSIGNAL
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        change: Vec<String>,
        /// Freeze a running container while its files are read
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        pause: bool,
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// The new image's name (REPOSITORY[:TAG])
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// Show running containers' use of CPU, memory, network and disk, redrawn each second
    Stats {
        /// Also the stopped containers
        #[arg(short, long)]
        all: bool,
        /// Show the numbers once, and end
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// A template ({{.Name}} {{.CPUPerc}} {{.MemUsage}} ..., `table ...`) or json
        #[arg(long, value_name = "TEMPLATE")]
        format: Option<String>,
        #[arg(value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Show a container's processes (host PIDs), as `ps` shows them
    Top {
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// Options for ps (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PS OPTIONS")]
        options: Vec<String>,
    },
}

impl Lifecycle {
    /// Whether the command makes and runs a container (its own errors exit 125, as
    /// `docker run`'s; the others' exit 1).
    pub fn runs_a_container(&self) -> bool {
        matches!(self, Lifecycle::Run(_) | Lifecycle::Create(_) | Lifecycle::Exec(_))
    }

    /// Whether the command puts a process into a container's cgroup (and so gains from
    /// warming the kernel's cgroup lock first: step 04's `warm_up`).
    pub fn starts_a_process(&self) -> bool {
        self.runs_a_container() || matches!(self, Lifecycle::Start { .. } | Lifecycle::Restart { .. })
    }
}

/// `carton container ...`: the same commands, plus `ls` and `prune`.
#[derive(Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Remove every stopped container
    Prune {
        /// Do not ask first
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Shared(Lifecycle),
}

#[derive(Args)]
pub struct PsArgs {
    /// All containers (by default, only running ones)
    #[arg(short, long)]
    all: bool,
    /// Only the ids
    #[arg(short, long)]
    quiet: bool,
    /// The last N created containers (of any state)
    #[arg(short = 'n', long = "last", value_name = "N")]
    last: Option<usize>,
    /// The last created container (of any state)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Do not cut ids and commands short
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show each container's writable layer's size
    #[arg(short, long)]
    size: bool,
    /// status=running|exited|..., name=PART, ancestor=IMAGE, id=PREFIX
    #[arg(short, long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// A template ({{.ID}} {{.Names}}, `table ...`) or json
    #[arg(long, value_name = "TEMPLATE")]
    format: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep following the output
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (or all)
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<String>,
    /// Show each line's time
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since a time: RFC 3339, a Unix time, or a duration ago (10m, 1h30m)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// Run one of the container commands.
pub fn run_command(state_root: &Path, command: Lifecycle) -> anyhow::Result<u8> {
    let each = |containers: &[String], act: &dyn Fn(&str) -> step01::Result<()>| for_each_container(state_root, containers, act);
    match command {
        Lifecycle::Run(args) => crate::run(args, state_root),
        Lifecycle::Create(args) => create(args, state_root),
        Lifecycle::Start { attach: true, interactive, containers } => {
            let [given] = &containers[..] else { return Err(Error::runtime("start -a takes one container").into()) };
            let id = names::resolve(state_root, given)?;
            start_attached(state_root, &id, interactive)
        }
        Lifecycle::Start { containers, .. } => each(&containers, &|id| lifecycle::start_detached(state_root, id, &monitor_args(state_root, id, 0))),
        Lifecycle::Stop { time, containers } => each(&containers, &move |id| lifecycle::stop(state_root, id, time)),
        Lifecycle::Restart { time, containers } => each(&containers, &move |id| {
            lifecycle::stop(state_root, id, time)?;
            lifecycle::start_detached(state_root, id, &monitor_args(state_root, id, 0))
        }),
        Lifecycle::Kill { signal, containers } => {
            let signal = step07::parse_signal(&signal)?;
            each(&containers, &move |id| lifecycle::kill(state_root, id, signal))
        }
        Lifecycle::Rm { force, volumes, containers } => each(&containers, &move |id| {
            let mounts = step10::mounts::of_container(state_root, id);
            lifecycle::remove(state_root, id, force)?;
            if volumes {
                step10::mounts::remove_anonymous(state_root, &mounts)?;
            }
            Ok(())
        }),
        Lifecycle::Exec(args) => exec(state_root, args),
        Lifecycle::Ps(args) => list(state_root, &args),
        Lifecycle::Logs(args) => logs(state_root, &args),
        Lifecycle::Inspect { format, containers } => inspect(state_root, &containers, format.as_deref()),
        Lifecycle::Wait { containers } => {
            for given in &containers {
                let id = names::resolve(state_root, given)?;
                print_stdout(&format!("{}\n", lifecycle::wait(state_root, &id)?));
            }
            Ok(0)
        }
        Lifecycle::Pause { containers } => each(&containers, &|id| lifecycle::set_paused(state_root, id, true)),
        Lifecycle::Unpause { containers } => each(&containers, &|id| lifecycle::set_paused(state_root, id, false)),
        Lifecycle::Rename { container, new_name } => {
            lifecycle::rename(state_root, &names::resolve(state_root, &container)?, &new_name)?;
            Ok(0)
        }
        Lifecycle::Port { container, port } => self::port(state_root, &container, port.as_deref()),
        Lifecycle::Top { container, options } => top(state_root, &container, &options),
        Lifecycle::Attach { detach_keys, no_stdin, sig_proxy, container } => {
            let keys = step09::attach::parse_detach_keys(&detach_keys)?;
            let id = names::resolve(state_root, &container)?;
            match step09::attach::attach(state_root, &id, &keys, !no_stdin, sig_proxy)? {
                step09::attach::Detached::Ended(code) => Ok(code as u8),
                step09::attach::Detached::ByKeys => {
                    eprintln!("\r\nread escape sequence");
                    Ok(0)
                }
            }
        }
        Lifecycle::Stats { all, no_stream, format, containers } => stats(state_root, all, no_stream, format.as_deref(), &containers),
        Lifecycle::Cp { archive, source, destination } => cp(state_root, &source, &destination, archive),
        Lifecycle::Diff { container } => {
            let id = names::resolve(state_root, &container)?;
            print_stdout(&step09::layer::diff(state_root, &id)?.iter().map(|change| format!("{change}\n")).collect::<String>());
            Ok(0)
        }
        Lifecycle::Commit { author, message, change, pause, container, name } => {
            let id = names::resolve(state_root, &container)?;
            let name = name.ok_or_else(|| Error::runtime("give the new image a name: carton commit CONTAINER NAME[:TAG] (carton keeps named images only)"))?;
            let reference = step06::Reference::parse(&name)?;
            let options = step09::layer::CommitOptions { author: author.as_deref(), message: message.as_deref(), changes: &change, pause };
            print_stdout(&format!("{}\n", step09::layer::commit(state_root, &id, &reference, &options)?));
            Ok(0)
        }
    }
}

/// Act on each container named (Docker goes on with the others when one fails, says each
/// error, and exits 1); the names of those done are printed, as Docker does.
fn for_each_container(state_root: &Path, containers: &[String], act: &dyn Fn(&str) -> step01::Result<()>) -> anyhow::Result<u8> {
    let mut failed = false;
    for given in containers {
        match names::resolve(state_root, given).and_then(|id| act(&id)) {
            Ok(()) => print_stdout(&format!("{given}\n")),
            Err(error) => {
                eprintln!("carton: {error}");
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

/// `carton create`: the bundle and the record, ready to start; prints the new id.
pub fn create(args: Box<RunArgs>, state_root: &Path) -> anyhow::Result<u8> {
    let runtime = Runtime::new(state_root, Explain::when(args.explain));
    let (id, _limits) = crate::prepare_container(args, &runtime)?;
    // It lives on after this process: a monitor (`start`) or `rm` takes it from here.
    step07::engine::disown(state_root, id.as_str())?;
    print_stdout(&format!("{id}\n"));
    Ok(0)
}

/// `carton run -d`: the container, started under a monitor of its own; prints its id.
pub fn run_detached(state_root: &Path, id: &str) -> anyhow::Result<u8> {
    match lifecycle::start_detached(state_root, id, &monitor_args(state_root, id, 0)) {
        Ok(()) => {
            print_stdout(&format!("{id}\n"));
            Ok(0)
        }
        Err(error) => {
            // As Docker: the container stays, created, with the error in its record.
            let _ = step07::engine::disown(state_root, id);
            if Container::load(state_root, id)?.is_some_and(|c| c.host_config.auto_remove) {
                let _ = lifecycle::remove(state_root, id, true);
            }
            Err(error.into())
        }
    }
}

/// An attached run: this process is the container's monitor, with the user's terminal as
/// the container's. Returns the container's exit code.
pub fn run_attached(runtime: &Runtime, id: &str, tty: bool, interactive: bool, published: Option<Vec<step03::ports::Published>>, memory_limit: Option<u64>) -> anyhow::Result<u8> {
    let state_root = runtime.state_root.as_path();
    let auto_removed = crate::volumes::AutoRemoved::of(state_root, id);
    let ended = step09::monitor::run_once(runtime, id, Stdio::Inherited { tty, interactive }, published, |_| ());
    let ended = match ended {
        Ok(ended) => ended,
        Err(error) => {
            lifecycle::record_failed_start(state_root, id, &error);
            lifecycle::finish(state_root, id)?;
            auto_removed.release(state_root, id);
            return Err(error.into());
        }
    };
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("container {id} was removed while it ran")))?;
    if container.host_config.restart_policy.should_restart(ended.exit_code, container.restart_count, container.state.stopped_by_user) {
        // Its next runs are a monitor's: this command ends with the first.
        Container::update(state_root, id, |c| c.restart_count += 1)?;
        lifecycle::start_detached(state_root, id, &monitor_args(state_root, id, 100))?;
    } else {
        lifecycle::finish(state_root, id)?;
        auto_removed.release(state_root, id);
    }
    if ended.oom_killed {
        // Docker shows this as `"OOMKilled": true` in `docker inspect`.
        let whom = if ended.exit_code == 128 + libc::SIGKILL { "the container" } else { "a process of the container" };
        let limit = memory_limit.map_or(String::new(), |bytes| format!(" (its --memory limit is {} MiB)", bytes >> 20));
        eprintln!("carton: OOM killed: the kernel's out-of-memory killer ended {whom}{limit}");
    }
    Ok(ended.exit_code as u8)
}

/// `carton start -a`: an attached run of a kept container.
fn start_attached(state_root: &Path, id: &str, interactive: bool) -> anyhow::Result<u8> {
    let container = Container::load(state_root, id)?.ok_or_else(|| Error::runtime(format!("no such container: {id}")))?;
    if container.is_running() {
        return Err(Error::runtime(format!("container {} is running already: `carton logs -f {}` follows its output", container.name, container.name)).into());
    }
    step07::engine::adopt(state_root, id)?;
    run_attached(&Runtime::new(state_root, Explain::off()), id, container.tty, interactive, None, None)
}

/// `carton exec`: the container's environment, working directory and user (from its
/// bundle), changed by `-e`, `-w` and `-u`; returns the command's exit code.
pub fn exec(state_root: &Path, args: ExecArgs) -> anyhow::Result<u8> {
    if args.tty && args.detach {
        return Err(Error::runtime("exec -d with -t: a detached command's terminal would have nobody at it; leave out -t").into());
    }
    // The new process joins a PID namespace with the container's processes in it: it must
    // not run the host's carton binary where they can reach it (CVE-2019-5736).
    step08::exe::reexec_sealed()?;
    let runtime = Runtime::new(state_root, Explain::when(args.explain));
    let id = names::resolve(state_root, &args.container)?;
    let dir = runtime.container_dir(&id);
    let running = Record::load(&dir)?.is_some_and(|record| record.status(&dir) == oci_spec::runtime::ContainerState::Running);
    if !running {
        return Err(Error::runtime(format!("container {} is not running: `carton start` it first", args.container)).into());
    }
    let bundle = step07::Bundle::load(&dir)?;
    let mut process = bundle.spec.process().clone().unwrap_or_default();
    step07::exec::change_process(&mut process, args.command, args.workdir, &[])?;
    process.set_terminal(Some(args.tty));
    if let Some(spec) = &args.user {
        let root = bundle.dir.join(bundle.spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default());
        step07::exec::set_user(&mut process, &step02::User::resolve(spec, &root)?)?;
    }
    // -e last: it wins over the user's HOME, as with Docker.
    step07::exec::add_env(&mut process, &args.env)?;
    let mut exec = ExecProcess::from_oci(&bundle.spec, &bundle.dir, &process)?;
    exec.interactive = args.interactive;
    // The container's capabilities and seccomp filter. With -u, the user's: root gets the
    // container's bounding set, anyone else no capability in use (as `docker exec -u`).
    let capabilities = process.capabilities().as_ref().map(step08::Capabilities::from_oci).transpose()?.map(|caps| caps.within_reach().0);
    let capabilities = match (capabilities, &args.user) {
        (Some(caps), Some(_)) => {
            let in_use = if process.user().uid() == 0 { caps.bounding } else { step08::CapSet(0) };
            Some(step08::Capabilities { effective: in_use, permitted: in_use, ..caps })
        }
        (caps, _) => caps,
    };
    exec.security = Some(Box::new(step08::ExecPolicy::new(&bundle.spec, capabilities, process.no_new_privileges().unwrap_or(false))?));
    exec.detached = args.detach;
    // -t: a terminal made in the container, its master end sent back here and relayed to
    // the user's terminal, as `run -t` does (chapter 2).
    let relay_end = if args.tty {
        step02::tty::block_window_changes();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| Error::runtime(format!("console socket: {e}")))?;
        exec.console = Some(theirs);
        Some(ours)
    } else {
        None
    };
    let running = if args.detach { with_output_discarded(|| runtime.exec_spawn(&id, &exec))? } else { runtime.exec_spawn(&id, &exec)? };
    drop(exec); // our copy of the console socket: the process has its own
    if args.detach {
        running.detach(); // the host's init collects it
        return Ok(0);
    }
    let relay = step02::attach_terminal(relay_end, args.interactive, &running)?;
    let exit = running.wait();
    drop(relay); // the last output, then the user's terminal as it was
    Ok(exit?.code() as u8)
}

/// Run `work` with this process's stdout and stderr on /dev/null, which a process it starts
/// inherits (`exec -d`: its output goes nowhere, as with Docker), then put them back.
fn with_output_discarded<T>(work: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return work() };
    step09::monitor::with_stdio([None, Some(null.as_raw_fd()), Some(null.as_raw_fd())], work)
}

/// Every container with a record, the newest first.
fn all_containers(state_root: &Path) -> Vec<Container> {
    let mut containers: Vec<Container> =
        std::fs::read_dir(state_root.join("containers")).into_iter().flatten().flatten().filter_map(|entry| Container::load(state_root, entry.file_name().to_str()?).ok().flatten()).collect();
    containers.sort_by(|a, b| b.created.cmp(&a.created));
    containers
}

/// Whether `container` passes `ps --filter KEY=VALUE`.
fn passes(container: &Container, filter: &str) -> step01::Result<bool> {
    let (key, value) =
        filter.split_once('=').ok_or_else(|| Error::runtime(format!("invalid filter {filter:?}: give KEY=VALUE (status=exited, name=web, ancestor=busybox, id=PREFIX, health=healthy)")))?;
    Ok(match key {
        "status" => {
            const STATUSES: &[&str] = &["created", "restarting", "running", "removing", "paused", "exited", "dead"];
            if !STATUSES.contains(&value) {
                return Err(Error::runtime(format!("invalid filter status={value}: give one of {}", STATUSES.join(", "))));
            }
            container.observed_status().to_string() == value
        }
        "name" => container.name.contains(value.trim_start_matches('/')),
        "id" => container.id.starts_with(value),
        "ancestor" => {
            let image = |text: &str| text.strip_suffix(":latest").unwrap_or(text).to_string();
            image(&container.image) == image(value) || container.image_id.starts_with(value) || container.image_id.trim_start_matches("sha256:").starts_with(value)
        }
        "health" => {
            const HEALTH: &[&str] = &["starting", "healthy", "unhealthy", "none"];
            if !HEALTH.contains(&value) {
                return Err(Error::runtime(format!("invalid filter health={value}: give one of {}", HEALTH.join(", "))));
            }
            container.state.health.as_ref().map_or("none", |health| health.status.as_str()) == value
        }
        _ => return Err(Error::runtime(format!("invalid filter {key:?}: carton's ps filters by status, name, id, ancestor and health"))),
    })
}

/// `carton ps` / `carton container ls`.
pub fn list(state_root: &Path, args: &PsArgs) -> anyhow::Result<u8> {
    let mut containers = all_containers(state_root);
    let last = if args.latest { Some(1) } else { args.last };
    if let Some(n) = last {
        containers.truncate(n); // the newest, whatever their state (as Docker's -n and -l)
    } else if !args.all {
        containers.retain(Container::is_running);
    }
    for filter in &args.filter {
        let mut kept = Vec::new();
        for container in containers {
            if passes(&container, filter)? {
                kept.push(container);
            }
        }
        containers = kept;
    }
    if args.quiet {
        let ids: String = containers.iter().map(|c| format!("{}\n", if args.no_trunc { &c.id[..] } else { &c.id[..12] })).collect();
        print_stdout(&ids);
        return Ok(0);
    }
    let now = SystemTime::now();
    let mut rows: Vec<step09::show::Row> = containers.iter().map(|c| step09::show::Row::of(c, args.no_trunc, now)).collect();
    if args.size {
        for (row, container) in rows.iter_mut().zip(&containers) {
            let upper = state_root.join("overlay/containers").join(&container.id).join("upper");
            row.size = step09::stats::decimal_size(step05::store::disk_usage(&upper));
        }
    }
    let cells: Vec<Vec<String>> = rows.iter().map(step09::show::Row::cells).collect();
    let text = match args.format.as_deref() {
        Some("json") => cells.iter().map(|row| format!("{}\n", row_json(step09::show::PS_COLUMNS, row))).collect(),
        Some(template) => step09::show::render(template, step09::show::PS_COLUMNS, &cells).map_err(Error::runtime)?,
        None if args.size => step09::show::render(&format!("{}\t{{{{.Size}}}}", step09::show::PS_DEFAULT), step09::show::PS_COLUMNS, &cells).map_err(Error::runtime)?,
        None => step09::show::render(step09::show::PS_DEFAULT, step09::show::PS_COLUMNS, &cells).map_err(Error::runtime)?,
    };
    print_stdout(&text);
    Ok(0)
}

/// `--format json`: one object a line, Docker's field names.
fn row_json(columns: &[(&str, &str)], row: &[String]) -> serde_json::Value {
    serde_json::Value::Object(columns.iter().zip(row).map(|((field, _), value)| (field.to_string(), serde_json::Value::String(value.clone()))).collect())
}

/// `container prune`: every stopped container removed.
pub fn prune(state_root: &Path, force: bool) -> anyhow::Result<u8> {
    if !force && !crate::images::confirm("carton container prune", "WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let (removed, freed) = remove_stopped(state_root);
    print_stdout(&format!("{}Total reclaimed space: {}\n", deleted_list("Deleted Containers", &removed), step09::stats::decimal_size(freed)));
    Ok(0)
}

/// Every stopped (created, exited, dead) container removed: their ids, and the bytes
/// their writable layers held.
pub fn remove_stopped(state_root: &Path) -> (Vec<String>, u64) {
    let mut removed = Vec::new();
    let mut freed = 0;
    for container in all_containers(state_root) {
        if matches!(container.observed_status(), Status::Created | Status::Exited | Status::Dead) {
            let layer = step05::store::disk_usage(&state_root.join("overlay/containers").join(&container.id));
            if lifecycle::remove(state_root, &container.id, false).is_ok() {
                removed.push(container.id);
                freed += layer;
            }
        }
    }
    (removed, freed)
}

/// A prune's list as Docker prints it: a heading, one line each, a blank line; nothing
/// when nothing went.
pub fn deleted_list(heading: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("{heading}:\n{}\n", lines.iter().map(|line| format!("{line}\n")).collect::<String>())
}

/// `carton logs`.
fn logs(state_root: &Path, args: &LogsArgs) -> anyhow::Result<u8> {
    use std::io::Write;
    let id = names::resolve(state_root, &args.container)?;
    let container = Container::load(state_root, &id)?.ok_or_else(|| Error::runtime(format!("{} has no logs: carton keeps logs of the containers it runs", args.container)))?;
    let path = step09::logs::path(&Container::dir(state_root, &id), &id);
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| Error::runtime(format!("invalid --tail {n:?}: give a number of lines, or all")))?),
    };
    let follower = args.follow.then(|| step09::logs::Follower::from_end(&path));
    let mut entries = step09::logs::read_all(&path);
    if let Some(since) = since {
        entries.retain(|entry| step09::record::parse_rfc3339(&entry.time).is_some_and(|time| time >= since));
    }
    if let Some(n) = tail {
        entries.drain(..entries.len().saturating_sub(n));
    }
    let print = |entries: &[step09::logs::Entry]| {
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for entry in entries {
            let line = if args.timestamps { format!("{} {}", entry.time, entry.log) } else { entry.log.clone() };
            let _ = if entry.stream == "stderr" { err.write_all(line.as_bytes()) } else { out.write_all(line.as_bytes()).and_then(|()| out.flush()) };
        }
    };
    print(&entries);
    if let Some(mut follower) = follower {
        let mut still_running = container.is_running() || container.observed_status() == Status::Restarting;
        while still_running {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let current = Container::load(state_root, &id)?;
            still_running = current.as_ref().is_some_and(|c| c.is_running() || c.observed_status() == Status::Restarting);
            print(&follower.next_entries());
        }
    }
    Ok(0)
}

/// `--since`: RFC 3339, a Unix time, or a duration ago (`10m`, `1h30m`, `45s`).
fn parse_since(text: &str) -> step01::Result<SystemTime> {
    let bad = || Error::runtime(format!("invalid --since {text:?}: give a time (2026-12-07T10:00:00Z), a Unix time, or a duration ago (10m, 1h30m)"));
    if let Some(time) = step09::record::parse_rfc3339(text) {
        return Ok(time);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(seconds));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let n: u64 = number.parse().map_err(|_| bad())?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(SystemTime::now() - std::time::Duration::from_secs(total))
}

/// `carton port`.
fn port(state_root: &Path, given: &str, only: Option<&str>) -> anyhow::Result<u8> {
    let id = names::resolve(state_root, given)?;
    let container = Container::load(state_root, &id)?.ok_or_else(|| Error::runtime(format!("no such container: {given}")))?;
    let mut text = String::new();
    for mapping in &container.ports {
        // step 03's words: `0.0.0.0:8080 -> 80/tcp`
        let Some((host, inside)) = mapping.split_once(" -> ") else { continue };
        let wanted = only.is_none_or(|only| inside == only || format!("{only}/tcp") == inside);
        if wanted {
            text.push_str(&if only.is_some() { format!("{host}\n") } else { format!("{inside} -> {host}\n") });
        }
    }
    if only.is_some() && text.is_empty() {
        return Err(Error::runtime(format!("no public port {} published for {given}", only.unwrap_or_default())).into());
    }
    print_stdout(&text);
    Ok(0)
}

/// `carton top`: the host's `ps`, limited to the container's processes (as Docker does).
fn top(state_root: &Path, given: &str, options: &[String]) -> anyhow::Result<u8> {
    let id = names::resolve(state_root, given)?;
    let container = Container::load(state_root, &id)?;
    if !container.as_ref().is_some_and(Container::is_running) {
        return Err(Error::runtime(format!("container {given} is not running")).into());
    }
    let pids: Vec<i32> = Runtime::new(state_root, Explain::off()).processes(&id)?;
    let options: Vec<String> = if options.is_empty() { vec!["-ef".into()] } else { options.to_vec() };
    let out = std::process::Command::new("ps").args(&options).output().map_err(|e| Error::runtime(format!("cannot run ps: {e}")))?;
    if !out.status.success() {
        return Err(Error::runtime(format!("ps {}: {}", options.join(" "), String::from_utf8_lossy(&out.stderr).trim())).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_column = header.split_whitespace().position(|h| h == "PID").ok_or_else(|| Error::runtime("ps's output has no PID column: give options that show one"))?;
    let mut shown = format!("{header}\n");
    for line in lines {
        if line.split_whitespace().nth(pid_column).and_then(|p| p.parse::<i32>().ok()).is_some_and(|pid| pids.contains(&pid)) {
            shown.push_str(line);
            shown.push('\n');
        }
    }
    print_stdout(&shown);
    Ok(0)
}

/// `carton inspect`: Docker's shape, for containers; a name that is no container but an
/// image gets the image's.
fn inspect(state_root: &Path, given: &[String], format: Option<&str>) -> anyhow::Result<u8> {
    let mut values = Vec::new();
    for name in given {
        match names::find(state_root, name)?.and_then(|id| Container::load(state_root, &id).ok().flatten()) {
            Some(container) => {
                let mut details = step09::inspect::container_json(state_root, &container);
                details["Mounts"] = step10::mounts::inspect_json(state_root, &container.id);
                values.push(details);
            }
            None => {
                return crate::images::inspect(state_root, given).map_err(|_| Error::runtime(format!("no such object: {name} (neither a container nor an image)")).into());
            }
        }
    }
    match format {
        None => print_stdout(&format!("{}\n", serde_json::to_string_pretty(&values)?)),
        Some(template) => {
            for value in &values {
                print_stdout(&format!("{}\n", step09::inspect::render(template, value).map_err(Error::runtime)?));
            }
        }
    }
    Ok(0)
}

/// `carton cp`: one side is CONTAINER:PATH (a relative PATH is from the container's
/// working directory). A stopped container's root is mounted for the copy.
fn cp(state_root: &Path, source: &str, destination: &str, archive: bool) -> anyhow::Result<u8> {
    let owner = if archive { step09::cp::Owner::Keep } else { step09::cp::Owner::Root };
    let split = |text: &str| -> Option<(String, String)> {
        let (container, path) = text.split_once(':')?;
        (!container.is_empty() && !container.contains('/')).then(|| (container.to_string(), path.to_string()))
    };
    let (container, inside, host, into) = match (split(source), split(destination)) {
        (Some((container, inside)), None) => (container, inside, destination.to_string(), false),
        (None, Some((container, inside))) => (container, inside, source.to_string(), true),
        (Some(_), Some(_)) => return Err(Error::runtime("copying between two containers is not supported: copy to the host first").into()),
        (None, None) => return Err(Error::runtime("one side of cp is a container's path: CONTAINER:PATH").into()),
    };
    let id = names::resolve(state_root, &container)?;
    let bundle = step07::Bundle::load(&Container::dir(state_root, &id))?;
    let workdir = bundle.spec.process().as_ref().map(|p| p.cwd().clone()).unwrap_or_else(|| "/".into());
    let keep_trailing = |path: std::path::PathBuf, text: &str| {
        if text.ends_with("/.") {
            path.join(".")
        } else if text.ends_with('/') {
            std::path::PathBuf::from(format!("{}/", path.display()))
        } else {
            path
        }
    };
    let inside_path = keep_trailing(if inside.starts_with('/') { std::path::PathBuf::from(&inside) } else { workdir.join(&inside) }, &inside);
    // A path under a volume or a bind mount is in that directory on the host, not in the
    // container's layer (the host's view of its root does not have the container's mounts).
    let mounts = step10::mounts::of_container(state_root, &id);
    if let Some(mount) = step10::mounts::covering(&mounts, &step01::mounts::clean(&inside_path)) {
        let shown = format!("{container}:{}", mount.destination.display());
        if mount.kind == "tmpfs" {
            return Err(Error::runtime(format!("{shown} is a tmpfs, in the container's memory: copy through `carton exec` (e.g. `carton exec -i {container} tar x`)")).into());
        }
        if into && !mount.rw {
            return Err(Error::runtime(format!("{shown} is mounted read-only in the container: nothing can be copied into it")).into());
        }
        // The same path inside the mount's directory (`..` resolved by name first, as Docker
        // cleans it; `/.` and a trailing `/` kept: they mean something to cp).
        let cleaned = step01::mounts::clean(&inside_path);
        let within = keep_trailing(Path::new("/").join(cleaned.strip_prefix(&mount.destination).unwrap_or(Path::new(""))), &inside);
        let copied = if into { step09::cp::into_container(Path::new(&host), &mount.source, &within, owner) } else { step09::cp::out_of_container(&mount.source, &within, Path::new(&host), owner) };
        copied?;
        return Ok(0);
    }
    let root = step07::engine::root_path(state_root, &id)?;
    let mounted_now = step07::engine::mount_root(state_root, &id, &Explain::off())?;
    let copied = if into { step09::cp::into_container(Path::new(&host), &root, &inside_path, owner) } else { step09::cp::out_of_container(&root, &inside_path, Path::new(&host), owner) };
    if mounted_now {
        step05::unmount_container_root(&root);
    }
    copied?;
    Ok(0)
}

/// `stats`' fields, in `step09::stats::row`'s order, with their headers.
const STATS_COLUMNS: &[(&str, &str)] =
    &[("ID", "CONTAINER ID"), ("Name", "NAME"), ("CPUPerc", "CPU %"), ("MemUsage", "MEM USAGE / LIMIT"), ("MemPerc", "MEM %"), ("NetIO", "NET I/O"), ("BlockIO", "BLOCK I/O"), ("PIDs", "PIDS")];

/// `carton stats`: two readings a second apart (half a second for `--no-stream`), then a
/// table; redrawn each second on a terminal (and printed again each second elsewhere).
fn stats(state_root: &Path, all: bool, no_stream: bool, format: Option<&str>, given: &[String]) -> anyhow::Result<u8> {
    use std::io::IsTerminal;
    let chosen = || -> anyhow::Result<Vec<Container>> {
        if given.is_empty() {
            return Ok(all_containers(state_root).into_iter().filter(|c| all || c.is_running()).collect());
        }
        given.iter().map(|name| Ok(Container::load(state_root, &names::resolve(state_root, name)?)?.ok_or_else(|| Error::runtime(format!("no such container: {name}")))?)).collect()
    };
    let host_memory = step09::stats::host_memory();
    let template = format.unwrap_or("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}");
    step09::show::render(template, STATS_COLUMNS, &[]).map_err(Error::runtime)?; // a bad template, before waiting
    let terminal = std::io::stdout().is_terminal();
    let readings = |containers: &[Container]| -> std::collections::HashMap<String, step09::stats::Sample> {
        containers.iter().filter_map(|c| Some((c.id.clone(), step09::stats::sample(state_root, c).ok()?))).collect()
    };
    let mut before = readings(&chosen()?);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(if no_stream { 500 } else { 1000 }));
        let containers = chosen()?;
        let now = readings(&containers);
        let rows: Vec<Vec<String>> = containers
            .iter()
            .map(|container| match (before.get(&container.id), now.get(&container.id)) {
                (Some(first), Some(second)) => step09::stats::row(container, first, second, host_memory),
                _ => vec![container.id[..12].to_string(), container.name.clone(), "--".into(), "-- / --".into(), "--".into(), "--".into(), "--".into(), "--".into()],
            })
            .collect();
        let text = match format {
            Some("json") => rows.iter().map(|row| format!("{}\n", row_json(STATS_COLUMNS, row))).collect(),
            _ => step09::show::render(template, STATS_COLUMNS, &rows).map_err(Error::runtime)?,
        };
        // A terminal is cleared and redrawn from its top left corner, as `docker stats` does.
        print_stdout(&if terminal && !no_stream { format!("\x1b[2J\x1b[H{text}") } else { text });
        if no_stream {
            return Ok(0);
        }
        before = now;
    }
}
