//! Docker's container commands on step 07: `create` writes a container's bundle (nothing
//! runs yet, as with Docker), `start` has the runtime create and start it, `exec`, `kill`,
//! and `rm` deletes it and undoes the bundle. Names, `ps`, `logs`, `stop` and a monitor
//! that waits for detached containers come with the lifecycle chapter (planned).

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use oci_spec::runtime::ContainerState;
use step01::{Error, Explain};
use step07::exec::ExecProcess;
use step07::{CreateOptions, Record, Runtime};

use crate::{print_stdout, ExecArgs, RunArgs};

/// The file a started container's stdout and stderr go to, until `carton logs` (planned).
const OUTPUT: &str = "output.log";

/// `carton create`: the bundle, ready to start; prints the new container's id.
pub fn create(args: Box<RunArgs>, state_root: &Path) -> anyhow::Result<u8> {
    let later = "they come with the lifecycle chapter (planned), whose monitor holds a detached container's terminal and ports; use `carton run` for them today";
    if args.tty || args.interactive {
        return Err(Error::runtime(format!("-i and -t with create: {later}")).into());
    }
    if !args.publish.is_empty() {
        return Err(Error::runtime(format!("-p with create: {later}")).into());
    }
    let runtime = Runtime::new(state_root, Explain::when(args.explain));
    let (id, _connected, _limits) = crate::prepare_container(args, &runtime, "create")?;
    // It lives on after this process: only `rm` removes it now.
    step07::engine::disown(state_root, id.as_str())?;
    print_stdout(&format!("{id}\n"));
    Ok(0)
}

/// `carton start`: the runtime creates each container from its bundle and starts it.
pub fn start(state_root: &Path, containers: &[String]) -> anyhow::Result<u8> {
    let runtime = Runtime::new(state_root, Explain::off());
    for name in containers {
        let id = resolve(state_root, name)?;
        let dir = runtime.container_dir(&id);
        match Record::load(&dir)?.map(|record| record.status(&dir)) {
            Some(ContainerState::Running) => {}
            Some(ContainerState::Stopped) => {
                return Err(Error::runtime(format!("container {name} has exited; starting it again comes with the lifecycle chapter (planned): remove it (carton rm) and run a new one")).into())
            }
            Some(_) => runtime.start(&id)?,
            None => {
                let output = fs::OpenOptions::new().create(true).append(true).open(dir.join(OUTPUT)).map_err(|e| Error::runtime(format!("cannot open {}: {e}", dir.join(OUTPUT).display())))?;
                let created = with_output_to(&output, || runtime.create_with(&id, &dir, CreateOptions::new(false, step02::Stdin::Null), crate::secured))?;
                created.warnings.iter().for_each(|warning| eprintln!("carton: warning: {warning}"));
                created.running.detach(); // no monitor yet: the host's init reaps it
                runtime.start(&id)?;
            }
        }
        print_stdout(&format!("{name}\n"));
    }
    Ok(0)
}

/// Run `work` with this process's stdout and stderr pointing at `file`, which the
/// container's process inherits (as a runtime's caller hands its stdio to runc).
fn with_output_to<T>(file: &fs::File, work: impl FnOnce() -> T) -> T {
    // Safety: dup and dup2 on this process's own descriptors; the saved ones are restored.
    unsafe {
        let saved = [libc::dup(1), libc::dup(2)];
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
        let result = work();
        for (fd, copy) in [(1, saved[0]), (2, saved[1])] {
            if copy >= 0 {
                libc::dup2(copy, fd);
                libc::close(copy);
            }
        }
        result
    }
}

/// `carton exec`: the container's environment, working directory and user (from its
/// bundle), changed by `-e`, `-w` and `-u`; returns the command's exit code.
pub fn exec(state_root: &Path, args: ExecArgs) -> anyhow::Result<u8> {
    if args.tty {
        return Err(Error::runtime("exec -t comes with the lifecycle chapter (planned), whose monitor relays terminals; use -i, or `carton run -it`").into());
    }
    // The new process joins a PID namespace with the container's processes in it: it must
    // not run the host's carton binary where they can reach it (CVE-2019-5736).
    step08::exe::reexec_sealed()?;
    let runtime = Runtime::new(state_root, Explain::when(args.explain));
    let id = resolve(state_root, &args.container)?;
    let dir = runtime.container_dir(&id);
    if Record::load(&dir)?.is_none() {
        return Err(Error::runtime(format!("container {} is not running (created, never started): `carton start` it first", args.container)).into());
    }
    let bundle = step07::Bundle::load(&dir)?;
    let mut process = bundle.spec.process().clone().unwrap_or_default();
    step07::exec::change_process(&mut process, args.command, args.workdir, &[])?;
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
    let exit = runtime.exec(&id, &exec)?;
    Ok(exit.code() as u8)
}

/// `carton kill`: a signal to each container's first process.
pub fn kill(state_root: &Path, signal: &str, containers: &[String]) -> anyhow::Result<u8> {
    let signal = step07::parse_signal(signal)?;
    let runtime = Runtime::new(state_root, Explain::off());
    for name in containers {
        runtime.kill(&resolve(state_root, name)?, signal, false)?;
        print_stdout(&format!("{name}\n"));
    }
    Ok(0)
}

/// `carton rm`: the runtime's delete (with `force`, of a running container too), then
/// everything the bundle had: network, root, writable layer, files.
pub fn remove(state_root: &Path, containers: &[String], force: bool) -> anyhow::Result<u8> {
    let runtime = Runtime::new(state_root, Explain::off());
    for name in containers {
        let id = resolve(state_root, name)?;
        let dir = runtime.container_dir(&id);
        if step07::state::Creating::in_progress(&dir) {
            return Err(Error::runtime(format!("container {name} is being started right now; try again in a moment")).into());
        }
        if let Some(record) = Record::load(&dir)? {
            let status = record.status(&dir);
            if status != ContainerState::Stopped && !force {
                return Err(Error::runtime(format!("container {name} is {status}: stop it first (carton kill), or remove it anyway with rm -f")).into());
            }
            runtime.delete(&id, force)?;
        }
        step07::engine::teardown(state_root, &id)?;
        print_stdout(&format!("{name}\n"));
    }
    Ok(0)
}

/// A container named by its full id or a unique prefix of it, as Docker accepts.
fn resolve(state_root: &Path, name: &str) -> step01::Result<String> {
    step07::check_id(name).map_err(|_| Error::runtime(format!("no such container: {name}")))?;
    let entries = fs::read_dir(state_root.join("containers")).map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect::<Vec<_>>()).unwrap_or_default();
    if entries.iter().any(|id| id == name) {
        return Ok(name.to_string());
    }
    let matching: Vec<&String> = entries.iter().filter(|id| id.starts_with(name) && step02::ContainerId::is_valid(id)).collect();
    match matching[..] {
        [id] => Ok(id.clone()),
        [] => Err(Error::runtime(format!("no such container: {name}"))),
        _ => Err(Error::runtime(format!(
            "{name} is ambiguous: {} containers' ids start with it ({}); give more of the id",
            matching.len(),
            matching.iter().map(|id| &id[..12]).collect::<Vec<_>>().join(", ")
        ))),
    }
}
