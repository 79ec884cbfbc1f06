//! runc's `--log` and `--log-format`: where an engine reads why a command failed. conmon
//! and containerd's shim pass a file and read its last error line, so every error and
//! warning goes there (and to stderr, for a person at a terminal).

use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Log {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

impl Log {
    pub fn new(file: Option<PathBuf>, format: Format, debug: bool) -> Log {
        Log { file, format, debug }
    }

    pub fn error(&self, message: &str) {
        eprintln!("carton-oci: {message}");
        self.write("error", message);
    }

    /// A warning goes to the log when there is one, else to stderr: an engine hands
    /// `create` the container's own stdio, and a warning there would end up in the
    /// container's logs (as runc, which does the same).
    pub fn warn(&self, message: &str) {
        if self.file.is_none() {
            eprintln!("carton-oci: warning: {message}");
        }
        self.write("warning", message);
    }

    /// Only with `--debug`: what each command does, for whoever reads the log.
    pub fn debug(&self, message: &str) {
        if self.debug {
            self.write("debug", message);
        }
    }

    fn write(&self, level: &str, message: &str) {
        let Some(path) = &self.file else { return };
        let time = step07::state::now_rfc3339();
        let line = match self.format {
            Format::Json => serde_json::json!({ "level": level, "msg": message, "time": time }).to_string(),
            Format::Text => format!("time=\"{time}\" level={level} msg={}", serde_json::Value::String(message.to_string())),
        };
        // A log that cannot be written must not hide the error itself: that went to stderr.
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}
