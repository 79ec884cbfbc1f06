//! `carton-bench`: carton side by side with the unshare floor, runc, crun, podman (and Docker
//! where a daemon runs) and a small VM, in one run on this machine. It writes a Markdown
//! report and two SVG charts, the book's appendix "How fast is it?".
//!
//!   sudo target/release/carton-bench --quick          (under a minute)
//!   sudo target/release/carton-bench --out book/src/how-fast     (the book's numbers)
//!
//! Not a test: nothing here passes or fails, it measures; the targets are reported as met or
//! missed. Everything runs in a network and mount namespace of its own and a throwaway
//! directory; the containers it starts are removed at the end.
mod chart;
mod lab;
mod report;
mod start;
mod timing;
mod transfer;
mod vm;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measure carton beside runc, crun, podman, the unshare floor and a VM; write a Markdown report and SVG charts")]
struct Args {
    /// A smaller run a learner can wait for (under a minute): fewer runs, fewer containers, one VM boot
    #[arg(long)]
    quick: bool,
    /// Where the report (results.md) and the charts (*.svg) go
    #[arg(long, default_value = "carton-bench-results")]
    out: PathBuf,
    /// The directory with `carton` and `carton-oci` (default: this program's own)
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Runs per start-time row (default 30; 10 with --quick)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Idle containers for the density part, at most (default 500; 20 with --quick); it also stops at half the free memory
    #[arg(long)]
    density: Option<usize>,
}

/// Everything one run measured; a part that could not run holds why.
pub struct Results {
    pub quick: bool,
    pub command: String,
    pub start: Vec<(timing::Row, timing::Stats)>,
    pub running: Result<Vec<start::Level>>,
    pub density: Result<start::Density>,
    pub vm: Result<vm::VmBoot>,
    pub cpu: Result<start::CpuBound>,
    pub transfer: Result<Vec<(timing::Row, timing::Stats)>>,
    pub build: Result<Vec<(timing::Row, timing::Stats)>>,
    pub image_bytes: Option<u64>,
    pub notes: Vec<String>,
}

fn progress(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "  … {message}");
}

fn main() {
    let args = Args::parse();
    if let Err(e) = bench(args) {
        eprintln!("carton-bench: {e:#}");
        std::process::exit(1);
    }
}

fn bench(args: Args) -> Result<()> {
    let quick = args.quick;
    let runs = args.runs.map_or(if quick { 10 } else { 30 }, |runs| runs as usize);
    let density_max = args.density.unwrap_or(if quick { 20 } else { 500 });
    let levels: &[usize] = if quick { &[1, 10] } else { &[1, 10, 50, 200] };
    let bin = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?.parent().context("this program's directory")?.to_path_buf(),
    };
    let command = std::env::args().map(|arg| if arg.contains(' ') { format!("'{arg}'") } else { arg }).collect::<Vec<_>>().join(" ");
    lab::enter_namespaces()?;
    lab::catch_interrupts();
    let free_before = lab::mem_available_kib();
    eprintln!("carton-bench: setting up (busybox image and root filesystem, peers)");
    let lab = lab::Lab::new(bin)?;
    eprintln!("carton-bench: working in {} (removed at the end, Ctrl-C included)", lab.work.path().display());
    let mut notes = Vec::new();
    let podman = lab::Podman::new(&lab).map_err(|e| notes.push(format!("podman: skipped, {e:#}"))).ok();

    eprintln!("carton-bench: start → exit of `true`, {runs} runs of each, interleaved");
    let (start, mut start_notes) = start::peers(&lab, podman.as_ref(), runs, &progress)?;
    notes.append(&mut start_notes);

    lab::check_interrupted()?;
    eprintln!("carton-bench: the same start with containers running ({levels:?})");
    let running = start::with_running(&lab, levels, runs.min(20), &progress);
    lab::check_interrupted()?;
    eprintln!("carton-bench: density, up to {density_max} idle containers");
    let density = start::density(&lab, podman.as_ref(), density_max, if quick { 3 } else { 10 }, free_before, &progress);
    lab.remove_containers();

    lab::check_interrupted()?;
    eprintln!("carton-bench: a VM beside it");
    let vm = vm::measure(&lab.path("vm"), if quick { 1 } else { 3 }, &progress);
    lab::check_interrupted()?;
    eprintln!("carton-bench: CPU-bound work on the host and in a container");
    let cpu = start::cpu_bound(&lab, if quick { 1_000_000 } else { 3_000_000 }, if quick { 3 } else { 5 }, &progress);
    lab::check_interrupted()?;
    eprintln!("carton-bench: push and pull against a local registry");
    let transfer = transfer::push_and_pull(&lab, if quick { 8 } else { 64 }, if quick { 2 } else { 5 }, &progress).map(|(rows, mut skipped)| {
        notes.append(&mut skipped);
        rows
    });
    lab::check_interrupted()?;
    eprintln!("carton-bench: a fully cached build");
    let build = transfer::cached_build(&lab, podman.as_ref(), if quick { 3 } else { 10 }, &progress).map(|(rows, mut skipped)| {
        notes.append(&mut skipped);
        rows
    });
    lab::check_interrupted()?;
    let image_bytes = report::image_size(&lab);
    drop(podman);

    let results = Results { quick, command, start, running, density, vm, cpu, transfer, build, image_bytes, notes };
    report::write(&results, &args.out)?;
    eprintln!("carton-bench: wrote {}/results.md, start.svg, container-vs-vm.svg", args.out.display());
    print!("{}", report::summary(&results));
    Ok(())
}
