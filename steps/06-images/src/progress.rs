//! What `pull` and `push` say while they work: a bar per layer on a terminal, as Docker
//! draws them, and plain lines otherwise (a log, a test, a pipe).

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    mode: Mode,
    /// Each blob's bar by its short ID, so that a later word (`Pull complete`) lands on it.
    bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>,
}

enum Mode {
    Quiet,
    Lines { stderr: bool },
    Bars(MultiProgress),
}

impl Progress {
    /// Bars when standard output is a terminal, lines when it is not (`carton pull`).
    pub fn to_stdout() -> Progress {
        let mode = if std::io::stdout().is_terminal() { Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stdout())) } else { Mode::Lines { stderr: false } };
        Progress::with(mode)
    }

    /// The same on standard error, which `carton run` keeps free of its own output when
    /// it pulls an image first (stdout is the container's).
    pub fn to_stderr() -> Progress {
        let mode = if std::io::stderr().is_terminal() { Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) } else { Mode::Lines { stderr: true } };
        Progress::with(mode)
    }

    /// Nothing at all (`-q`, and library callers that only want the result).
    pub fn quiet() -> Progress {
        Progress::with(Mode::Quiet)
    }

    fn with(mode: Mode) -> Progress {
        Progress { mode, bars: Default::default() }
    }

    /// A new word for the blob `digest` after its transfer: on its bar if it has one
    /// (Docker's `Pull complete` replaces `Download complete`), else on a line.
    pub fn status(&self, digest: &str, status: &str) {
        let id = short_id(digest);
        match self.bars.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            Some(bar) => bar.finish_with_message(status.to_string()),
            None => self.line(&format!("{id}: {status}")),
        }
    }

    /// A line of its own (`Digest: sha256:…`).
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Lines { stderr: false } => println!("{text}"),
            Mode::Lines { stderr: true } => eprintln!("{text}"),
            Mode::Bars(bars) => {
                let _ = bars.println(text);
            }
        }
    }

    /// A line that tracks one blob, named by the first 12 hex digits of its digest as
    /// Docker does, `total` bytes long.
    pub fn blob(&self, digest: &str, total: u64, status: &str) -> BlobProgress<'_> {
        let id = short_id(digest);
        let bar = match &self.mode {
            Mode::Quiet => None,
            Mode::Lines { .. } => {
                self.line(&format!("{id}: {status}"));
                None
            }
            Mode::Bars(bars) => {
                let bar = bars.add(ProgressBar::new(total).with_prefix(id.clone()));
                bar.set_style(ProgressStyle::with_template("{prefix}: {msg:12} [{bar:40}] {bytes}/{total_bytes}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
                bar.set_message(status.to_string());
                self.bars.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), bar.clone());
                Some(bar)
            }
        };
        BlobProgress { id, bar, progress: self }
    }
}

/// One blob's line.
pub struct BlobProgress<'a> {
    id: String,
    bar: Option<ProgressBar>,
    progress: &'a Progress,
}

impl BlobProgress<'_> {
    /// `n` more bytes went through.
    pub(crate) fn advance(&self, n: u64, status: &'static str) {
        if let Some(bar) = &self.bar {
            bar.set_message(status);
            bar.inc(n);
        }
    }

    /// The blob is done: `status` is the last word (`Pull complete`, `Pushed`).
    pub fn finish(&self, status: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(status.to_string()),
            None => self.progress.line(&format!("{}: {status}", self.id)),
        }
    }
}

/// `sha256:ec562eabd705…` → `ec562eabd705`.
pub fn short_id(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

/// A reader that reports what passes through it.
pub struct Counting<'a, R> {
    pub inner: R,
    pub progress: &'a BlobProgress<'a>,
    pub status: &'static str,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.progress.advance(n as u64, self.status);
        Ok(n)
    }
}
