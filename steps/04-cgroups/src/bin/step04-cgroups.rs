//! step04-cgroups — the demo of chapter 4, "limits: cgroups".
//!
//! ```text
//! step04-cgroups [--memory 32m] [--cpus 0.5] [--pids-limit 20] [--explain] DIR CMD...
//! ```
//! runs CMD like step03-network (with `--network none`), in a cgroup with those limits,
//! and prints what the cgroup measured when the command has ended.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use step01::{Explain, Process};
use step02::Context;
use step04::{limits, Limits};

#[derive(Parser)]
#[command(about = "Chapter 4 of carton: limits and measurements with cgroups")]
struct Cli {
    /// Print each kernel-level action as it happens.
    #[arg(long)]
    explain: bool,
    /// Memory limit (b, k, m, g).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU time, in CPUs (0.5 = half of one CPU).
    #[arg(long)]
    cpus: Option<String>,
    /// The most processes at once.
    #[arg(long = "pids-limit")]
    pids_limit: Option<String>,
    dir: PathBuf,
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| {
        let memory = cli.memory.as_deref().map(limits::parse_memory).transpose()?;
        let limits = Limits {
            memory,
            cpus: cli.cpus.as_deref().map(|c| limits::parse_cpus(c, limits::online_cpus().len())).transpose()?,
            pids_limit: cli.pids_limit.as_deref().map(limits::parse_pids_limit).transpose()?.flatten(),
            ..Limits::default()
        };
        let rootfs = std::path::absolute(&cli.dir).map_err(|e| step01::Error::runtime(format!("{}: {e}", cli.dir.display())))?;
        let context = Context::new(Explain::when(cli.explain))?;
        // The container as an OCI runtime spec: chapters 1 to 3's parts, then the limits.
        let mut spec = step03::oci::isolated_spec(&Process::new(cli.command.clone()), &rootfs, &context)?;
        step04::oci::write(&mut spec, context.id.as_str(), &limits)?;
        step04::run(&spec, &context)
    })();
    match result {
        Ok(finished) => {
            let s = &finished.stats;
            eprintln!(
                "step04-cgroups: cpu time {} ms; periods {}, throttled {} ({} ms); oom kills {}",
                s.cpu_nanoseconds / 1_000_000,
                s.cpu_periods,
                s.cpu_throttled_periods,
                s.cpu_throttled_nanoseconds / 1_000_000,
                s.oom_kills
            );
            ExitCode::from(finished.exit.code() as u8)
        }
        Err(error) => {
            eprintln!("step04-cgroups: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
