//! step08-security — the demo of chapter 8: what a container's root may still do.
//!
//! ```text
//! step08-security caps [PID]                 the five capability sets of a process, by name
//! step08-security run [--bundle DIR] ID      chapter 7's run, with the spec's capabilities,
//!                                            seccomp, masked and read-only paths, sysctls,
//!                                            devices applied
//! step08-security seccomp [PROFILE.json]     the BPF program a profile compiles to (default:
//!                                            Docker's, for Docker's 14 capabilities)
//! step08-security devices                    the eBPF program of Docker's device rules
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01::Explain;
use step07::Runtime;

#[derive(Parser)]
#[command(about = "Chapter 8 of carton: capabilities, seccomp, masked and read-only paths, devices, sysctls")]
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
    /// Show the capability sets of a process (default: this one), as names
    Caps {
        #[arg(default_value = "self")]
        pid: String,
    },
    /// Run the bundle's container with its security settings; wait; delete it
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// Print the BPF program a seccomp profile compiles to (default: Docker's)
    Seccomp {
        /// A profile in Docker's or OCI's JSON format
        profile: Option<PathBuf>,
    },
    /// Print the eBPF program of Docker's device rules (what cgroup v2 runs on each open)
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explain = Explain::when(cli.explain);
    let result = match cli.command {
        Command::Caps { pid } => show_caps(&pid).map(|()| 0),
        Command::Seccomp { profile } => show_seccomp(profile).map(|()| 0),
        Command::Devices => step08::device_rules::ebpf_program(&step08::device_rules::docker_default()).map(|program| {
            print!("{}", step08::device_rules::disassemble(&program));
            0
        }),
        Command::Run { bundle, id } => {
            let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
            let runtime = Runtime::new(&root, explain);
            runtime
                .run_with(
                    &id,
                    &bundle,
                    step07::CreateOptions::new(true, step02::Stdin::Inherit),
                    |spec, hooks| {
                        let reading = step08::from_oci(spec, hooks)?;
                        reading.warnings.iter().for_each(|warning| eprintln!("step08-security: warning: {warning}"));
                        Ok(reading.security)
                    },
                    |_| Ok(()),
                )
                .map(|finished| finished.exit.code() as u8)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("step08-security: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn show_seccomp(profile: Option<PathBuf>) -> step01::Result<()> {
    use step08::seccomp::{bpf, profile::Profile};
    let profile = match profile {
        None => step08::seccomp::profile::docker_default(),
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| step01::Error::runtime(format!("cannot read {}: {e}", path.display())))?;
            Profile::parse(&text, &path.display().to_string())?
        }
    };
    let arch = bpf::native_arch()?;
    let program = bpf::compile(&profile.resolve(step08::capabilities::DOCKER_DEFAULT, arch)?, arch)?;
    print!("{}", bpf::disassemble(&program, arch));
    Ok(())
}

fn show_caps(pid: &str) -> step01::Result<()> {
    let caps = step08::capabilities::of_process(pid)?;
    for (name, set) in [("bounding", caps.bounding), ("permitted", caps.permitted), ("effective", caps.effective), ("inheritable", caps.inheritable), ("ambient", caps.ambient)] {
        let names = set.names();
        let shown = if names.is_empty() { "-".to_string() } else { names.iter().map(|n| n.trim_start_matches("CAP_").to_lowercase()).collect::<Vec<_>>().join(" ") };
        println!("{name:<12} {:016x}  {shown}", set.0);
    }
    Ok(())
}
