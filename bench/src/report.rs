//! The report: a Markdown page (what the book's appendix includes) and two charts.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::chart::{self, Bar, Panel, Unit};
use crate::lab::{run, Lab};
use crate::start::{CARTON_BRIDGE, CARTON_NONE, CARTON_OCI, CRUN, CRUN_WRAPPER, FLOOR, PODMAN};
use crate::timing::{Row, Stats};
use crate::Results;

/// The busybox image's size in the store (its compressed layers and config), bytes.
pub fn image_size(lab: &Lab) -> Option<u64> {
    let out = run(lab.carton().args(["image", "inspect", "busybox"])).ok()?;
    let json: serde_json::Value = serde_json::from_str(&out).ok()?;
    json.get(0)?.get("Size")?.as_u64()
}

/// One line per machine fact a reader needs to compare their numbers with these.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split(':').nth(1)).unwrap_or("unknown CPU").trim().to_string();
    let cores = cpuinfo.lines().filter(|line| line.starts_with("processor")).count();
    let virtualized = if cpuinfo.contains(" hypervisor") { ", in a VM" } else { "" };
    let memory = fs::read_to_string("/proc/meminfo").ok().and_then(|text| text.lines().find_map(|line| line.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())).unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let os = fs::read_to_string("/etc/os-release").ok().and_then(|text| text.lines().find_map(|line| Some(line.strip_prefix("PRETTY_NAME=")?.trim_matches('"').to_string()))).unwrap_or_default();
    let cgroups = match (Path::new("/sys/fs/cgroup/cgroup.controllers").exists(), Path::new("/sys/fs/cgroup/unified").exists()) {
        (true, _) => "cgroup v2",
        (false, true) => "cgroup v1 (hybrid)",
        (false, false) => "cgroup v1",
    };
    format!("{model}, {cores} cores{virtualized}, {} GiB; {os}, Linux {kernel}, {cgroups}", (memory + (1 << 19)) >> 20)
}

fn find<'a>(rows: &'a [(Row, Stats)], name: &str) -> Option<&'a Stats> {
    rows.iter().find(|(row, _)| row.name == name).map(|(_, stats)| stats)
}

fn ms(value: f64) -> String {
    chart::format_value(value, Unit::Milliseconds)
}

fn kib(value: u64) -> String {
    chart::format_value(value as f64 / 1024.0, Unit::Mebibytes)
}

/// The targets of issue 20, each as (what, measured, met).
fn targets(results: &Results) -> Vec<(String, String, Option<bool>)> {
    let mut targets = Vec::new();
    // ours/theirs (or, `inverse`, theirs/ours) against its bound.
    fn ratio_target(targets: &mut Vec<(String, String, Option<bool>)>, what: &str, ours: Option<&Stats>, theirs: Option<f64>, bound: f64, inverse: bool) {
        let (Some(ours), Some(theirs)) = (ours, theirs) else {
            targets.push((what.to_string(), "not measured".into(), None));
            return;
        };
        let ratio = if inverse { theirs / ours.median } else { ours.median / theirs };
        let met = if inverse { ratio >= bound } else { ratio <= bound };
        targets.push((what.to_string(), format!("{ratio:.2}×"), Some(met)));
    }
    let start = &results.start;
    let floor = find(start, FLOOR).map(|s| s.median);
    ratio_target(&mut targets, "`carton run --rm --network none` ≤ 1.5× the floor", find(start, CARTON_NONE), floor, 1.5, false);
    ratio_target(&mut targets, "with the default bridge ≤ 3× the floor", find(start, CARTON_BRIDGE), floor, 3.0, false);
    // On a hybrid host crun needs a wrapper; its own time is measured and taken off.
    let crun = find(start, CRUN).map(|crun| crun.median - find(start, CRUN_WRAPPER).map_or(0.0, |wrapper| wrapper.median));
    ratio_target(&mut targets, "`carton-oci run` ≤ `crun run` (1×)", find(start, CARTON_OCI), crun, 1.0, false);
    ratio_target(&mut targets, "≥ 25× faster than `podman run --rm`", find(start, CARTON_NONE), find(start, PODMAN).map(|s| s.median), 25.0, true);
    match &results.running {
        Ok(levels) if levels.len() > 1 => {
            let (first, last) = (&levels[0], levels.last().unwrap());
            let ratio = last.carton.median / first.carton.median;
            let runc = match (&first.runc, &last.runc) {
                (Some(before), Some(after)) => format!(" (runc: {:.2}×)", after.median / before.median),
                _ => String::new(),
            };
            targets.push((format!("flat (≤ 1.2×) with {} containers running", last.running), format!("{ratio:.2}×{runc}"), Some(ratio <= 1.2)));
        }
        _ => targets.push(("flat (≤ 1.2×) with containers running".into(), "not measured".into(), None)),
    }
    match &results.density {
        Ok(density) => targets.push(("a detached container's own overhead (its monitor) ≤ 1 MiB".into(), kib(density.monitor_uss_kib), Some(density.monitor_uss_kib <= 1024))),
        Err(_) => targets.push(("a detached container's own overhead ≤ 1 MiB".into(), "not measured".into(), None)),
    }
    if let Ok(transfer) = &results.transfer {
        let pair = |ours: &str, theirs: &str| -> (Option<&Stats>, Option<f64>) {
            let find_prefix = |prefix: &str| transfer.iter().find(|(row, _)| row.name.starts_with(prefix)).map(|(_, stats)| stats);
            (find_prefix(ours), find_prefix(theirs).map(|s| s.median))
        };
        let (ours, theirs) = pair("carton push", "skopeo copy oci:");
        ratio_target(&mut targets, "`carton push` no slower than `skopeo copy` (1×)", ours, theirs, 1.0, false);
        let (ours, theirs) = pair("carton pull", "skopeo copy docker://");
        ratio_target(&mut targets, "`carton pull` no slower than `skopeo copy` (1×)", ours, theirs, 1.0, false);
    }
    targets
}

fn table(out: &mut String, rows: &[(Row, Stats)], baseline: Option<(&str, f64)>) {
    match baseline {
        Some((name, _)) => writeln!(out, "| command | median | 25–75 % | runs | × {name} |\n|---|---:|---:|---:|---:|").unwrap(),
        None => writeln!(out, "| command | median | 25–75 % | runs |\n|---|---:|---:|---:|").unwrap(),
    }
    for (row, stats) in rows {
        let name = if row.ours { format!("**{}**", row.name) } else { row.name.clone() };
        write!(out, "| {name} | {} | {}–{} | {} |", ms(stats.median), ms(stats.p25), ms(stats.p75), stats.runs).unwrap();
        if let Some((_, base)) = baseline {
            write!(out, " {:.2} |", stats.median / base).unwrap();
        }
        out.push('\n');
    }
}

/// A section that is one table of timed rows, or why it is missing.
fn rows_section(out: &mut String, title: &str, intro: &str, rows: &Result<Vec<(Row, Stats)>>) {
    writeln!(out, "\n### {title}\n").unwrap();
    match rows {
        Ok(rows) => {
            writeln!(out, "{intro}\n").unwrap();
            table(out, rows, None);
        }
        Err(e) => skipped(out, title, e),
    }
}

fn skipped(out: &mut String, what: &str, error: &anyhow::Error) {
    writeln!(out, "*{what}: not measured here — {error:#}.*\n").unwrap();
}

/// The whole page.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    writeln!(out, "<!-- Written by carton-bench; run it again rather than editing this file. -->").unwrap();
    writeln!(out, "**The machine:** {}.\n", machine()).unwrap();
    writeln!(out, "**The command:** `{}`{}.\n", results.command, if results.quick { " (the quick version: fewer runs and containers)" } else { "" }).unwrap();

    writeln!(out, "### The targets\n\n| target | measured | |\n|---|---:|---|").unwrap();
    for (what, measured, met) in targets(results) {
        let mark = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "—",
        };
        writeln!(out, "| {what} | {measured} | {mark} |").unwrap();
    }

    writeln!(out, "\n### Start → exit of `true`\n").unwrap();
    writeln!(out, "Each row starts a container (or, for the floor, just the namespaces) that runs `/bin/true` from busybox, waits for it and cleans up. The rows run interleaved, so a busy moment of the machine falls on all of them alike. carton's rows are in bold.\n").unwrap();
    let floor = find(&results.start, FLOOR).map(|s| ("the floor", s.median));
    table(&mut out, &results.start, floor);
    writeln!(out, "\n![Start times, log scale](start.svg)\n").unwrap();

    writeln!(out, "### The same start with containers running\n").unwrap();
    match &results.running {
        Ok(levels) => {
            writeln!(out, "`carton run --rm --network none busybox true` while idle containers (`carton run -d busybox sleep 1d`) run beside it; `runc run` on the bundle in the same rounds, for comparison: every container kept adds mounts to the host's mount table (which a new mount namespace copies and pivot_root then detaches) and processes (which pivot_root visits).\n").unwrap();
            writeln!(out, "| running | carton | 25–75 % | × none running | runc | × none running |\n|---:|---:|---:|---:|---:|---:|").unwrap();
            for level in levels {
                let (first, stats) = (&levels[0], &level.carton);
                let runc = match (&level.runc, &first.runc) {
                    (Some(runc), Some(base)) => format!("{} | {:.2}", ms(runc.median), runc.median / base.median),
                    _ => "— | —".into(),
                };
                writeln!(out, "| {} | {} | {}–{} | {:.2} | {runc} |", level.running, ms(stats.median), ms(stats.p25), ms(stats.p75), stats.median / first.carton.median).unwrap();
            }
        }
        Err(e) => skipped(&mut out, "containers running", e),
    }

    writeln!(out, "\n### Density: what an idle container costs\n").unwrap();
    match &results.density {
        Ok(d) => {
            writeln!(out, "{} idle busybox containers (stopped at {}). Private memory (USS: pages no other process shares), medians:\n", d.containers, d.stopped_because).unwrap();
            writeln!(out, "| | its keeper | its process | together |\n|---|---:|---:|---:|").unwrap();
            writeln!(out, "| **carton** (the monitor) | {} | {} | {} |", kib(d.monitor_uss_kib), kib(d.container_uss_kib), kib(d.monitor_uss_kib + d.container_uss_kib)).unwrap();
            if let Some(p) = &d.podman {
                writeln!(out, "| podman ({} containers; conmon) | {} | {} | {} |", p.containers, kib(p.conmon_uss_kib), kib(p.container_uss_kib), kib(p.conmon_uss_kib + p.container_uss_kib)).unwrap();
            }
            if let Ok(vm) = &results.vm {
                writeln!(out, "| a VM (qemu's peak RSS, {} MiB of guest memory) | | | {} |", vm.guest_memory_mib, kib(vm.qemu_max_rss_kib)).unwrap();
            }
            writeln!(
                out,
                "\nThe machine's available memory fell by {} per carton container: the kernel's side too (namespaces, the cgroup, the overlay mount, page tables).",
                kib(d.available_drop_kib)
            )
            .unwrap();
        }
        Err(e) => skipped(&mut out, "density", e),
    }

    writeln!(out, "\n### A VM beside it\n").unwrap();
    let carton_start = find(&results.start, CARTON_NONE);
    match &results.vm {
        Ok(vm) => {
            let boot = boot_times(vm);
            writeln!(
                out,
                "A VM with {} MiB, the kernel `{}` and a busybox initramfs boots, runs one command and powers off. Accelerator: {}. Under software emulation a boot takes seconds; with KVM, a minimal guest like this one boots in well under a second: the table says which this machine used.\n",
                vm.guest_memory_mib,
                vm.kernel.display(),
                vm.accel
            )
            .unwrap();
            writeln!(out, "| | carton container | VM |\n|---|---:|---:|").unwrap();
            if let Some(start) = carton_start {
                writeln!(out, "| start → a command → gone | {} | {} ({} boots) |", ms(start.median), ms(boot.median), boot.runs).unwrap();
            }
            if let Ok(d) = &results.density {
                writeln!(
                    out,
                    "| memory | {} (monitor and process, private pages, idle) | {} (qemu's peak RSS while it boots: guest pages touched, QEMU itself{}) |",
                    kib(d.monitor_uss_kib + d.container_uss_kib),
                    kib(vm.qemu_max_rss_kib),
                    if vm.accel == "KVM" { "" } else { ", its code cache" }
                )
                .unwrap();
            }
            if let Some(image) = results.image_bytes {
                writeln!(
                    out,
                    "| on disk, what it ran from | {} (the busybox image) | {} (kernel {}, initramfs {}) |",
                    kib(image / 1024),
                    kib((vm.kernel_bytes + vm.initramfs_bytes) / 1024),
                    kib(vm.kernel_bytes / 1024),
                    kib(vm.initramfs_bytes / 1024)
                )
                .unwrap();
                writeln!(out, "| on disk, a distribution's kernel | | {} more: the kernel's modules, which a real VM's disk carries |", kib(vm.modules_bytes / 1024)).unwrap();
            }
            writeln!(out, "\nA real VM's disk holds a whole distribution besides (Debian's smallest cloud image is about 300 MiB compressed, 2 GiB as a disk), not measured here.\n\n![A container beside a VM, log scale](container-vs-vm.svg)").unwrap();
        }
        Err(e) => skipped(&mut out, "the VM", e),
    }

    writeln!(out, "\n### CPU-bound work: on the host and in a container\n").unwrap();
    match &results.cpu {
        Ok(cpu) => {
            let ratio = cpu.container_ms / cpu.host_ms;
            let reading = if (0.95..=1.05).contains(&ratio) {
                "the same speed, within the noise: a container's process is a host process, and nothing is emulated"
            } else {
                "a difference beyond the usual noise: run it again on a quiet machine before you read anything into it"
            };
            writeln!(out, "`{}`, each side's start of `true` taken off: {} on the host, {} in carton: a ratio of **{ratio:.3}**, {reading}. Not measured here: system-call-heavy work (each call passes the seccomp filter), file I/O through the overlay, network throughput through the veth and NAT.", cpu.program, ms(cpu.host_ms), ms(cpu.container_ms)).unwrap()
        }
        Err(e) => skipped(&mut out, "CPU-bound work", e),
    }

    rows_section(
        &mut out,
        "Pull and push against the same local registry",
        "Debian's `docker-registry` on 127.0.0.1; an image with a layer of random bytes (gzip cannot shrink it). Each push starts with an empty registry, each pull with an empty store; `carton pull` also unpacks the layers, ready to run, which `skopeo copy` into an OCI layout does not.",
        &results.transfer,
    );
    rows_section(&mut out, "A fully cached build", "bench/build.sh's 10-step Dockerfile, built once, then timed as it is rebuilt entirely from the cache.", &results.build);

    if !results.notes.is_empty() {
        writeln!(out, "\n### Notes\n").unwrap();
        for note in &results.notes {
            writeln!(out, "- {note}").unwrap();
        }
    }
    out
}

/// The VM's boots, in milliseconds like every other time here.
fn boot_times(vm: &crate::vm::VmBoot) -> Stats {
    Stats::of(&vm.runs.iter().map(|boot| boot.as_secs_f64() * 1000.0).collect::<Vec<_>>())
}

fn bar(row: &Row, stats: &Stats) -> Bar {
    Bar { label: row.name.clone(), value: stats.median, low: stats.p25, high: stats.p75, highlight: row.ours }
}

pub fn write(results: &Results, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let caption = format!("{}\n{}", machine(), results.command);
    let start = Panel { title: "Start → exit of true (median, 25–75 %)".into(), unit: Unit::Milliseconds, bars: results.start.iter().map(|(row, stats)| bar(row, stats)).collect() };
    fs::write(dir.join("start.svg"), chart::svg("How long a container takes to start, run true and go", &[start], &caption))?;

    let mut time = Panel { title: "Start → a command → gone".into(), unit: Unit::Milliseconds, bars: Vec::new() };
    let mut memory = Panel { title: "Memory while idle (container: monitor + process USS; VM: qemu's RSS)".into(), unit: Unit::Mebibytes, bars: Vec::new() };
    if let Some((row, stats)) = results.start.iter().find(|(row, _)| row.name == CARTON_NONE) {
        time.bars.push(Bar { label: "carton container".into(), ..bar(row, stats) });
    }
    if let Ok(d) = &results.density {
        let together = (d.monitor_uss_kib + d.container_uss_kib) as f64 / 1024.0;
        memory.bars.push(Bar { label: "carton container".into(), value: together, low: together, high: together, highlight: true });
    }
    if let Ok(vm) = &results.vm {
        let boot = boot_times(vm);
        let accel = if vm.accel == "KVM" { "KVM" } else { "software emulation" };
        time.bars.push(Bar { label: format!("VM ({accel})"), value: boot.median, low: boot.p25, high: boot.p75, highlight: false });
        let rss = vm.qemu_max_rss_kib as f64 / 1024.0;
        memory.bars.push(Bar { label: format!("VM ({} MiB guest)", vm.guest_memory_mib), value: rss, low: rss, high: rss, highlight: false });
    }
    fs::write(dir.join("container-vs-vm.svg"), chart::svg("A container beside a VM", &[time, memory], &caption))?;
    fs::write(dir.join("results.md"), markdown(results))?;
    Ok(())
}

/// What the terminal shows at the end: the targets.
pub fn summary(results: &Results) -> String {
    let mut out = String::from("\n");
    for (what, measured, met) in targets(results) {
        let mark = match met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "  —   ",
        };
        writeln!(out, "{mark}  {measured:>14}  {what}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::start::{CpuBound, Density, Level};

    fn stats(median: f64) -> Stats {
        Stats { median, p25: median * 0.9, p75: median * 1.1, min: median * 0.8, runs: 10 }
    }

    fn row(name: &str, ours: bool) -> Row {
        Row::new(name, vec!["true".into()], ours)
    }

    fn results() -> Results {
        Results {
            quick: true,
            command: "carton-bench --quick".into(),
            start: vec![
                (row(FLOOR, false), stats(4.0)),
                (row(CARTON_NONE, true), stats(5.0)),
                (row(CARTON_BRIDGE, true), stats(20.0)),
                (row(CARTON_OCI, true), stats(6.0)),
                (row(CRUN, false), stats(5.0)),
                (row(PODMAN, false), stats(150.0)),
            ],
            running: Ok(vec![Level { running: 0, carton: stats(5.0), runc: Some(stats(20.0)) }, Level { running: 10, carton: stats(5.5), runc: Some(stats(24.0)) }]),
            density: Ok(Density { containers: 20, stopped_because: "the 20 asked for".into(), monitor_uss_kib: 900, container_uss_kib: 52, available_drop_kib: 1600, podman: None }),
            vm: Err(anyhow::anyhow!("qemu-system-x86_64 is not on PATH")),
            cpu: Ok(CpuBound { program: "busybox awk".into(), host_ms: 300.0, container_ms: 303.0 }),
            transfer: Ok(vec![(row("carton push (8 MiB)", true), stats(100.0)), (row("skopeo copy oci: → docker:// (8 MiB)", false), stats(120.0))]),
            build: Err(anyhow::anyhow!("no podman")),
            image_bytes: Some(1 << 20),
            notes: vec!["docker: no Docker daemon answers here; not timed".into()],
        }
    }

    #[test]
    fn the_targets_are_ratios_of_the_same_run() {
        let targets = targets(&results());
        let find = |start: &str| targets.iter().find(|(what, _, _)| what.starts_with(start)).unwrap_or_else(|| panic!("no target {start}: {targets:?}")).clone();
        assert_eq!(find("`carton run --rm --network none`"), ("`carton run --rm --network none` ≤ 1.5× the floor".into(), "1.25×".into(), Some(true)));
        assert_eq!(find("with the default bridge").2, Some(false), "20 ms is 5× the floor");
        assert_eq!(find("`carton-oci run`").1, "1.20×");
        assert_eq!(find("≥ 25× faster").1, "30.00×");
        assert_eq!(find("flat").1, "1.10× (runc: 1.20×)");
        assert_eq!(find("a detached container's own overhead").2, Some(true));
        assert_eq!(find("`carton push`").1, "0.83×");
        assert_eq!(find("`carton pull`").1, "not measured", "no pull row");
    }

    #[test]
    fn the_page_has_every_part_or_says_why_not() {
        let page = markdown(&results());
        for part in [
            "### The targets",
            "| **carton run --rm --network none** | 5.0 ms |",
            "| 10 | 5.5 ms |",
            "*the VM: not measured here — qemu-system-x86_64 is not on PATH.*",
            "### Density",
            "a ratio of **1.010**",
            "*A fully cached build: not measured here — no podman.*",
            "- docker: no Docker daemon",
        ] {
            assert!(page.contains(part), "{part:?} missing from:\n{page}");
        }
        assert!(page.contains("![Start times, log scale](start.svg)"));
    }
}
