//! # Step 02 — a world of its own: namespaces and the container's PID 1
//!
//! Step 01 gave the container its own file system. Here it gets its own view of the
//! rest of the machine, through three more namespaces created in the same clone:
//!
//! - PID: the command is process 1 and sees only its own processes (`ps`).
//! - UTS: its own hostname, by default the short container id.
//! - IPC: its own System V IPC objects and POSIX message queues.
//!
//! and with PID 1 come its duties: signals and orphans ([`init`], `--init`). The rest of
//! the process spec lives here too: the user ([`user`]) and terminals ([`tty`]).

pub mod identity;
pub mod init;
pub mod isolation;
pub mod oci;
pub mod tty;
pub mod user;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use step01::container::{self, ContainerSpec};
use step01::{Action, Chapter, ContainerExit, Explain, Hooks, Result};

pub use identity::{validate_hostname, ContainerId};
pub use isolation::{Isolation, Stdin};
pub use user::User;

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 2, title: "a world of its own — namespaces" };

// ANCHOR: namespaces
/// The namespaces this step adds to step 01's mount namespace, made in the same clone
/// (`CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC`).
pub const NAMESPACES: [LinuxNamespaceType; 3] = [LinuxNamespaceType::Pid, LinuxNamespaceType::Uts, LinuxNamespaceType::Ipc];
// ANCHOR_END: namespaces

/// The `docker run` options this step implements.
#[derive(Debug, Clone)]
pub struct Options {
    pub id: ContainerId,
    /// `--hostname`; `None` means the short id.
    pub hostname: Option<String>,
    /// `--init`: a small init as PID 1, the command as its child.
    pub init: bool,
    /// `-u`: who the command runs as (the caller also sets `HOME` to [`User::home`]).
    pub user: Option<User>,
    /// `-i`: keep stdin attached.
    pub interactive: bool,
    /// `-t`: a terminal.
    pub tty: bool,
}

impl Options {
    pub fn new(id: ContainerId) -> Options {
        Options { id, hostname: None, init: false, user: None, interactive: false, tty: false }
    }

    /// The hostname the container gets: `--hostname`, or the short id.
    pub fn effective_hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| self.id.short().to_string())
    }
}

/// What every step's `run` takes besides the spec, which says everything about the
/// container itself: which container it is, where its state lives, how it is wired to
/// this process, whether to explain.
pub struct Context {
    /// The container's id: it names its state directory, its cgroup, its veth.
    pub id: ContainerId,
    /// Where containers keep their state while they exist (chapter 3 on).
    pub state_root: PathBuf,
    /// `-i`: the container reads this process's stdin (otherwise /dev/null, as with Docker).
    pub interactive: bool,
    pub explain: Explain,
}

impl Context {
    /// A new container with a random id, its state under `$CARTON_ROOT` (default
    /// `/var/lib/carton`), stdin not attached.
    pub fn new(explain: Explain) -> Result<Context> {
        let state_root = std::env::var_os("CARTON_ROOT").map_or_else(|| PathBuf::from("/var/lib/carton"), PathBuf::from);
        // Absolute: the paths made under it are mounted from inside the container's root.
        let state_root = std::path::absolute(&state_root).map_err(|e| step01::Error::runtime(format!("CARTON_ROOT {}: {e}", state_root.display())))?;
        Ok(Context { id: ContainerId::random()?, state_root, interactive: false, explain })
    }
}

/// Run the container `spec` describes, with step 01's root and this step's namespaces;
/// wait for it.
pub fn run(spec: &Spec, context: &Context) -> Result<ContainerExit> {
    run_with(spec, context, |isolation| isolation)
}

// ANCHOR: run
/// [`run`], with this step's hooks wrapped by a later step's (`wrap` receives them).
pub fn run_with<H: Hooks>(spec: &Spec, context: &Context, wrap: impl FnOnce(Isolation) -> H) -> Result<ContainerExit> {
    // Each step reads its own part of the spec. (A relative root is the current
    // directory's, as with runc run in its default bundle, `.`.)
    let mut container = ContainerSpec::from_oci(spec, Path::new("."))?;
    oci::read_namespaces(spec, &mut container)?;
    let tty = spec.process().as_ref().and_then(|process| process.terminal()).unwrap_or(false);
    let (console, stdin) = attach_stdio(tty, context.interactive)?;
    let mut hooks = wrap(oci::isolation_from_oci(spec, stdin)?);

    let running = container::start(&container, &mut hooks, &context.explain)?;
    explain_running(running.pid, &context.explain);
    let relay = attach_terminal(console, context.interactive, &running);
    let exit = match relay {
        Ok(_) => running.wait(),
        Err(error) => {
            let _ = nix::sys::signal::kill(running.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = running.wait();
            return Err(error);
        }
    };
    drop(relay); // the last output, then the user's terminal as it was
    exit
}
// ANCHOR_END: run

/// Say, with `--explain`, where the running container is to be found (step 07's `run` too).
pub fn explain_running(pid: nix::unistd::Pid, explain: &Explain) {
    explain.step(|| {
        Action::new(CHAPTER, format!("the container runs; its PID 1 is host process {pid}, its namespaces are /proc/{pid}/ns/*"), format!("setns(open(\"/proc/{pid}/ns/...\"), 0)"))
            .shell(format!("nsenter --target {pid} --all sh"))
    });
}

/// How a container run from a terminal gets its input: a console socket for `-t` (carton
/// keeps one end, the child makes its terminal and sends the master back on the other),
/// carton's own stdin for `-i`, `/dev/null` otherwise.
pub fn attach_stdio(tty: bool, interactive: bool) -> Result<(Option<std::os::unix::net::UnixStream>, Stdin)> {
    if !tty {
        return Ok((None, if interactive { Stdin::Inherit } else { Stdin::Null }));
    }
    tty::block_window_changes();
    let (carton_end, console) = std::os::unix::net::UnixStream::pair().map_err(|e| step01::Error::runtime(format!("console socket: {e}")))?;
    Ok((Some(carton_end), Stdin::Terminal { console, size: tty::window_size() }))
}

/// With a console: receive the container's terminal and relay it to the user's.
pub fn attach_terminal(console: Option<std::os::unix::net::UnixStream>, interactive: bool, running: &step01::Running) -> Result<Option<tty::Relay>> {
    let Some(socket) = console else { return Ok(None) };
    let master = tty::receive_master(&socket)?;
    tty::Relay::start(master, interactive, running.pid).map(Some)
}
