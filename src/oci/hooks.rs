//! The OCI hooks: programs an engine asks the runtime to run at fixed points of a
//! container's life, each given the container's state as JSON on its stdin.
//!
//! | hook | when | where |
//! |------|------|-------|
//! | `prestart` (deprecated), `createRuntime` | during `create`, the container made | the runtime's namespaces |
//! | `createContainer` | right after them | the runtime's namespaces (see below) |
//! | `startContainer` | during `start`, before the command runs | the container's namespaces |
//! | `poststart` | once the command runs, before `start` returns | the runtime's namespaces |
//! | `poststop` | after `delete` | the runtime's namespaces |
//!
//! A failing hook of the first three kinds fails the command (the container is removed); a
//! failing `poststart` or `poststop` is a warning, as the spec says. `createContainer`
//! should run in the container's mount namespace before pivot_root; carton runs it once
//! the container waits at its start gate, in the runtime's namespaces (where its path
//! resolves), which is where runc's own implementation runs most of them.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;
use step01::{Error, Result};

/// Which hooks, by the spec's name.
#[derive(Clone, Copy)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind that `spec` lists.
    pub fn of(self, spec: &oci_spec::runtime::Spec) -> Vec<Hook> {
        let Some(hooks) = spec.hooks() else { return Vec::new() };
        #[allow(deprecated)]
        let listed = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        listed.clone().unwrap_or_default()
    }
}

// ANCHOR: run
/// Run each hook of `kind` in `spec`, in order, with `state` on its stdin; stop at the
/// first that fails or outlives its timeout. With `inside`, each runs in the namespaces
/// of that process (the container's first).
pub fn run(kind: Kind, spec: &oci_spec::runtime::Spec, state: &serde_json::Value, inside: Option<i32>) -> Result<()> {
    for hook in kind.of(spec) {
        run_one(kind, &hook, state, inside)?;
    }
    Ok(())
}

fn run_one(kind: Kind, hook: &Hook, state: &serde_json::Value, inside: Option<i32>) -> Result<()> {
    let path = hook.path();
    let shown = format!("{} hook {}", kind.name(), path.display());
    let args = hook.args().clone().unwrap_or_default();
    let mut command = Command::new(path);
    if let Some((first, rest)) = args.split_first() {
        command.arg0(first).args(rest);
    }
    // The hook's environment is exactly what the spec gives it.
    command.env_clear().envs(hook.env().iter().flatten().filter_map(|entry| entry.split_once('=')));
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(pid) = inside {
        let namespaces = step07::exec::namespaces_of(pid)?;
        // Safety: between fork and exec only setns, which is async-signal-safe, on
        // descriptors opened before the fork.
        unsafe {
            command.pre_exec(move || {
                for (_, kind, file) in &namespaces {
                    if libc::setns(file.as_raw_fd(), kind.bits()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().map_err(|e| Error::runtime(format!("cannot run the {shown}: {e}")))?;
    // Its output is read while it runs (a hook that writes more than a pipe holds would
    // otherwise wait forever); the start of it is kept for an error message.
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut stream) = stream {
                let mut buffer = [0u8; 8192];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buffer[..n.min(4096usize.saturating_sub(kept.len()))]);
                }
            }
            String::from_utf8_lossy(&kept).trim().to_string()
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    // The state, then end-of-file: a hook may read its stdin to the end.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state.to_string().as_bytes());
    }
    let timeout = hook.timeout().map(|seconds| Duration::from_secs(seconds.max(1) as u64));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if timeout.is_some_and(|limit| started.elapsed() > limit) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::runtime(format!("the {shown} did not finish within its timeout of {} s; it was killed", timeout.unwrap_or_default().as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(Error::runtime(format!("cannot wait for the {shown}: {e}"))),
        }
    };
    let said: Vec<String> = [stdout, stderr].into_iter().filter_map(|reader| reader.join().ok()).filter(|text| !text.is_empty()).collect();
    if status.success() {
        return Ok(());
    }
    let said = if said.is_empty() { String::new() } else { format!(": {}", said.join(" ")) };
    Err(Error::runtime(format!("the {shown} failed ({status}){said}")))
}
// ANCHOR_END: run
