//! The container's logs, in Docker's `json-file` format: one JSON object a line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-12-07T16:20:00.123456789Z"}`, written by
//! the monitor as the container's output arrives, read by `carton logs`. Rotated as
//! `--log-opt max-size=` and `max-file=` say: `ID-json.log`, then `ID-json.log.1`, ... the
//! highest number the oldest.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use step01::{Error, Result};

/// One line of output, as the log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The bytes of the line, its newline included (a partial line has none).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the monitor read it, RFC 3339 with nanoseconds.
    pub time: String,
}

/// The log file of container `id`, in its directory.
pub fn path(container_dir: &Path, id: &str) -> PathBuf {
    container_dir.join(format!("{id}-json.log"))
}

/// A line longer than this is cut into several entries, as Docker does (16 KiB).
const LONGEST_LINE: usize = 16 * 1024;

// ANCHOR: writer
/// The writing end, shared by the monitor's readers of stdout and stderr.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    /// Rotate once the file reaches this size (0: never).
    max_size: u64,
    /// How many files to keep, the current one included.
    max_file: u32,
}

impl Writer {
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::runtime(format!("cannot open the log {}: {e}", path.display())))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer { path: path.to_path_buf(), file, size, max_size, max_file: max_file.max(1) })
    }

    /// Append one entry for `line` (a whole line, or the last bytes of the stream).
    pub fn write(&mut self, stream: &str, line: &[u8]) {
        let entry = Entry { log: String::from_utf8_lossy(line).into_owned(), stream: stream.into(), time: step07::state::now_rfc3339() };
        let Ok(mut json) = serde_json::to_vec(&entry) else { return };
        json.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + json.len() as u64 > self.max_size {
            self.rotate();
        }
        if self.file.write_all(&json).is_ok() {
            self.size += json.len() as u64;
        }
    }

    /// `ID-json.log` becomes `.1`, `.1` becomes `.2`, ..., the oldest beyond `max_file` goes.
    fn rotate(&mut self) {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_file == 1 {
            let _ = self.file.set_len(0);
            self.size = 0;
            return;
        }
        let _ = fs::remove_file(numbered(self.max_file - 1));
        for n in (1..self.max_file - 1).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = fs::rename(&self.path, numbered(1));
        if let Ok(file) = OpenOptions::new().create(true).append(true).open(&self.path) {
            self.file = file;
            self.size = 0;
        }
    }
}

/// Split a stream's bytes into lines as they come: whole lines are written at once, the
/// rest waits for its newline (or for the line to grow too long, or for the end).
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter { pending: Vec::new() }
    }

    /// The complete lines in `pending` + `bytes`.
    pub fn push(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|b| *b == b'\n').map(|at| start + at + 1) {
            line(&self.pending[start..end]);
            start = end;
        }
        while self.pending.len() - start >= LONGEST_LINE {
            line(&self.pending[start..start + LONGEST_LINE]);
            start += LONGEST_LINE;
        }
        self.pending.drain(..start);
    }

    /// What is left at the end of the stream (a last line without newline).
    pub fn finish(&mut self, line: impl FnOnce(&[u8])) {
        if !self.pending.is_empty() {
            line(&self.pending);
            self.pending.clear();
        }
    }
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new()
    }
}
// ANCHOR_END: writer

/// Every entry of the log at `path`, the rotated files first (oldest to newest).
pub fn read_all(path: &Path) -> Vec<Entry> {
    let mut files: Vec<PathBuf> = (1..100).map(|n| PathBuf::from(format!("{}.{n}", path.display()))).take_while(|p| p.exists()).collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
        .iter()
        .filter_map(|file| File::open(file).ok())
        .flat_map(|file| BufReader::new(file).lines().map_while(|l| l.ok()).filter_map(|line| serde_json::from_str(&line).ok()).collect::<Vec<Entry>>())
        .collect()
}

/// Follows the current log file from an offset: the entries written since the last call.
pub struct Follower {
    path: PathBuf,
    offset: u64,
    inode: u64,
}

impl Follower {
    /// From the end of what is there now.
    pub fn from_end(path: &Path) -> Follower {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).ok();
        Follower { path: path.to_path_buf(), offset: meta.as_ref().map_or(0, |m| m.len()), inode: meta.map_or(0, |m| m.ino()) }
    }

    /// The entries written since the last call (after a rotation, the new file's).
    pub fn next_entries(&mut self) -> Vec<Entry> {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut file) = File::open(&self.path) else { return Vec::new() };
        let meta = file.metadata().ok();
        let (len, inode) = meta.map_or((0, 0), |m| (m.len(), m.ino()));
        if inode != self.inode || len < self.offset {
            (self.offset, self.inode) = (0, inode); // rotated: a new file
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut entries = Vec::new();
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        // Only whole lines: one being written is read next time.
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
            self.offset += line.len() as u64;
            if let Ok(entry) = serde_json::from_str(&line) {
                entries.push(entry);
            }
            line.clear();
        }
        entries
    }
}

/// `--log-opt`'s `max-size=10m` and `max-file=3`, checked.
pub fn parse_log_opts(options: &[String]) -> Result<(u64, u32)> {
    let (mut max_size, mut max_file) = (0, 1);
    for option in options {
        match option.split_once('=') {
            Some(("max-size", size)) => max_size = parse_size(size).ok_or_else(|| Error::runtime(format!("invalid --log-opt {option:?}: give a size such as 10m or 512k")))?,
            Some(("max-file", count)) => max_file = count.parse().ok().filter(|n| *n >= 1).ok_or_else(|| Error::runtime(format!("invalid --log-opt {option:?}: give a number of files, 1 or more")))?,
            _ => return Err(Error::runtime(format!("unknown --log-opt {option:?}: carton's json-file log takes max-size=SIZE and max-file=N"))),
        }
    }
    if max_file > 1 && max_size == 0 {
        return Err(Error::runtime("--log-opt max-file needs max-size too (when to rotate)"));
    }
    Ok((max_size, max_file))
}

/// A size as Docker writes one: a number with an optional unit, b, k, m or g (binary, as
/// Docker's `RAMInBytes`), an optional `b` after it (`10mb`).
fn parse_size(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let unit_at = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_at);
    let factor: u64 = match unit.strip_suffix('b').filter(|u| !u.is_empty()).unwrap_or(unit) {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok().filter(|n| *n > 0)?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_rotated_files_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), "c");
        let mut writer = Writer::open(&path, 300, 3).unwrap();
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        splitter.push(b"one\ntw", |line| lines.push(line.to_vec()));
        splitter.push(b"o\nthree", |line| lines.push(line.to_vec()));
        splitter.finish(|line| lines.push(line.to_vec()));
        assert_eq!(lines, [b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]);
        for n in 0..20 {
            writer.write(if n % 2 == 0 { "stdout" } else { "stderr" }, format!("line {n}\n").as_bytes());
        }
        assert!(PathBuf::from(format!("{}.2", path.display())).exists());
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists(), "max-file=3 keeps three files");
        let entries = read_all(&path);
        let numbers: Vec<usize> = entries.iter().map(|e| e.log.trim().strip_prefix("line ").unwrap().parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "in order, none lost within the kept files: {numbers:?}");
        assert_eq!(*numbers.last().unwrap(), 19);
        assert_eq!(entries.last().unwrap().stream, "stderr");
        assert_eq!(parse_log_opts(&["max-size=1k".into(), "max-file=2".into()]).unwrap(), (1024, 2));
        assert_eq!(parse_size("10mb"), Some(10 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert!(parse_size("10x").is_none() && parse_size("").is_none());
        assert!(parse_log_opts(&["colour=red".into()]).is_err());
    }
}
