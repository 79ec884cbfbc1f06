//! carton-oci — carton's runtime with runc's command line, for engines.
//!
//! podman (through conmon) and containerd (through its shim, and so Kubernetes) do not
//! call a runtime's library: they run a binary with runc's commands and flags, and read
//! its `--log` when something fails. This is that binary, composed from the steps as
//! `carton` is: step 07's runtime (create/start/state/kill/delete/exec by id, on a bundle)
//! and step 08's security settings (capabilities, masked and read-only paths, sysctls).
//!
//! ```text
//! carton-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND
//!   create [-b BUNDLE] [--console-socket SOCK] [--pid-file F] [--no-pivot] [--preserve-fds N] ID
//!   start ID | state ID | kill [-a] ID [SIGNAL] | delete [-f] ID | pause ID | resume ID
//!   run [-b BUNDLE] [-d] [--console-socket SOCK] [--pid-file F] ID
//!   exec [-p process.json | ARGS...] [-t] [-d] [--console-socket SOCK] [--pid-file F] ID
//!   ps [--format table|json] ID | list [--format table|json] [-q] | spec [-b DIR] | features
//! ```

mod commands;
mod hooks;
mod log;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "carton-oci", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.1.0"), about = "carton's OCI runtime, with runc's command line (for podman, containerd and the OCI validation suite)")]
pub struct Cli {
    /// Where the containers' state lives (a tmpfs, as /run is on most hosts)
    #[arg(long, global = true, default_value = "/run/carton-oci", value_name = "DIR")]
    root: PathBuf,
    /// Append errors and warnings to this file (engines read the last error there)
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// How --log lines are written
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: log::Format,
    /// Also log what each command does
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported: carton uses the cgroup file system)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// runc's rootless mode ("auto", "true", "false"); only "false" and "auto" as root work
    #[arg(long, value_name = "VALUE")]
    rootless: Option<String>,
    /// Print each kernel-level action as it happens (carton's teaching mode)
    #[arg(long, global = true)]
    explain: bool,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = log::Log::new(cli.log.clone(), cli.log_format, cli.debug);
    if cli.systemd_cgroup {
        log.error("--systemd-cgroup is not supported: carton-oci manages cgroups through the cgroup file system; configure the engine for cgroupfs (podman: cgroup_manager = \"cgroupfs\"; containerd: SystemdCgroup = false)");
        return ExitCode::from(1);
    }
    if cli.rootless.as_deref().is_some_and(|value| value == "true") || (cli.rootless.is_some() && !nix::unistd::geteuid().is_root()) {
        log.error("rootless containers are not supported yet (planned: the rootless chapter); run carton-oci as root");
        return ExitCode::from(1);
    }
    let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
    // Moving the container's process into its cgroup waits for the kernel's cgroup lock:
    // start that wait now, in the background (chapter 4).
    if matches!(cli.command, commands::Command::Create { .. } | commands::Command::Run { .. } | commands::Command::Exec(_)) {
        step04::warm_up();
    }
    let runtime = step07::Runtime::new(&root, step01::Explain::when(cli.explain));
    match commands::run(cli.command, &runtime, &log) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            log.error(&error.message);
            ExitCode::from(1) // as runc: the engines look at the log, not at the number
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
