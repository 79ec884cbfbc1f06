//! Timing commands the way hyperfine does, but interleaved: run 1 of every row, then run 2 of
//! every row (in a rotated order), and so on. A busy moment of the machine then lands on all rows alike, so the
//! ratios between rows (what the targets are about) hold even on a noisy laptop.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// A command to time, and how the report names it.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub argv: Vec<String>,
    /// carton's own rows are drawn in carton's colour.
    pub ours: bool,
    /// Run, untimed, before each timed run: what makes every run start from the same place
    /// (an empty registry before a push, no image before a pull).
    pub before: Option<Vec<String>>,
}

impl Row {
    pub fn new(name: impl Into<String>, argv: Vec<String>, ours: bool) -> Row {
        Row { name: name.into(), argv, ours, before: None }
    }

    pub fn before_each(mut self, argv: Vec<String>) -> Row {
        self.before = Some(argv);
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.argv[0]);
        command.args(&self.argv[1..]);
        command
    }

    /// Run once with its output kept: does it work here at all? The error says why not.
    pub fn check(&self) -> Result<()> {
        self.prepare()?;
        crate::lab::run(&mut self.command()).map(drop)
    }

    fn prepare(&self) -> Result<()> {
        let Some(before) = &self.before else { return Ok(()) };
        crate::lab::run(Command::new(&before[0]).args(&before[1..])).map(drop).context("before each run")
    }

    /// One run's wall time in milliseconds: from fork to the collected exit status.
    pub fn time_once(&self) -> Result<f64> {
        crate::lab::check_interrupted()?;
        self.prepare()?;
        let started = Instant::now();
        let status = self.command().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if !status.success() {
            bail!("`{}` failed during the timing ({status})", self.argv.join(" "));
        }
        Ok(elapsed)
    }
}

/// What a timing gives: each row that ran with its numbers, and a note for each row that
/// could not (why it was skipped or left out).
pub type Timed = (Vec<(Row, Stats)>, Vec<String>);

/// The summary of repeated runs, in milliseconds (or whatever unit the samples had).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    /// The 25th and 75th percentile: the spread the report prints and the charts draw.
    pub p25: f64,
    pub p75: f64,
    pub min: f64,
    pub runs: usize,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty(), "statistics of no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Stats { median: quantile(&sorted, 0.5), p25: quantile(&sorted, 0.25), p75: quantile(&sorted, 0.75), min: sorted[0], runs: sorted.len() }
    }
}

/// Linear interpolation between the closest ranks (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

/// Time every row `runs` times, interleaved, after `warmup` untimed rounds. A row that fails
/// its check is left out with the reason (a peer that is not installed or cannot run here);
/// `progress` hears about each round.
pub fn interleaved(rows: Vec<Row>, runs: usize, warmup: usize, progress: &dyn Fn(&str)) -> Timed {
    let mut skipped = Vec::new();
    let mut working = Vec::new();
    for row in rows {
        match row.check() {
            Ok(()) => working.push(row),
            Err(e) => skipped.push(format!("{}: skipped, {e:#}", row.name)),
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); working.len()];
    let mut failed = vec![None; working.len()];
    for round in 0..warmup + runs {
        if round % 5 == 0 {
            progress(&format!("round {}/{} of {} commands", round + 1, warmup + runs, working.len()));
        }
        // Each round starts one row further on: no row always runs right after the same
        // one (podman leaves cleanup work behind it that would slow its successor).
        for i in (0..working.len()).map(|k| (k + round) % working.len()) {
            let row = &working[i];
            if failed[i].is_some() {
                continue;
            }
            match row.time_once() {
                Ok(ms) if round >= warmup => samples[i].push(ms),
                Ok(_) => {}
                Err(e) => failed[i] = Some(format!("{}: left out, {e:#}", row.name)),
            }
        }
    }
    let mut measured = Vec::new();
    for ((row, samples), failure) in working.into_iter().zip(samples).zip(failed) {
        match failure {
            Some(reason) => skipped.push(reason),
            None => measured.push((row, Stats::of(&samples))),
        }
    }
    (measured, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_quartiles_interpolate_between_ranks() {
        let stats = Stats::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((stats.median, stats.p25, stats.p75, stats.min, stats.runs), (2.5, 1.75, 3.25, 1.0, 4));
        assert_eq!(Stats::of(&[7.0]).median, 7.0);
    }

    #[test]
    fn a_row_that_cannot_run_is_skipped_with_its_reason() {
        let rows = vec![Row::new("works", vec!["true".into()], true), Row::new("fails", vec!["sh".into(), "-c".into(), "echo broken >&2; exit 3".into()], false)];
        let (measured, skipped) = interleaved(rows, 3, 1, &|_| {});
        assert_eq!(measured.len(), 1);
        assert_eq!(measured[0].0.name, "works");
        assert_eq!(measured[0].1.runs, 3);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].starts_with("fails: skipped") && skipped[0].contains("broken"), "{skipped:?}");
    }
}
