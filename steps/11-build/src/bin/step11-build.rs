//! step11-build — the demo of chapter 11: how a Dockerfile and a build context are read.
//!
//! ```text
//! step11-build parse [FILE]        each instruction: its line, keyword, flags, arguments
//! step11-build context [DIR]       the files a build sees (what .dockerignore leaves in)
//! ```
//!
//! `carton build` runs what this reads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Chapter 11 of carton: reading a Dockerfile and a build context")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a Dockerfile's instructions as the builder reads them
    Parse {
        #[arg(default_value = "Dockerfile")]
        file: PathBuf,
    },
    /// List the files of a build context that .dockerignore leaves in
    Context {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let done = match Cli::parse().command {
        Command::Parse { file } => parse(&file),
        Command::Context { dir } => {
            let ignore = std::fs::read_to_string(dir.join(".dockerignore")).map(|text| step11::ignore::Ignore::parse(&text)).unwrap_or_default();
            list(&dir, &dir, &ignore);
            Ok(())
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("step11-build: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let dockerfile = step11::dockerfile::parse(&file.display().to_string(), &text).map_err(|e| e.to_string())?;
    for instruction in &dockerfile.instructions {
        let flags: String = instruction.flags.iter().map(|(k, v)| format!(" --{k}={v}")).collect();
        let form = match &instruction.json {
            Some(args) => format!("exec form {args:?}"),
            None => format!("{:?}", instruction.args),
        };
        println!("line {:>3}: {}{flags} {form}", instruction.line, instruction.keyword);
    }
    Ok(())
}

/// Every file under `dir` that the build sees, relative to `root`, sorted.
fn list(root: &Path, dir: &Path, ignore: &step11::ignore::Ignore) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let excluded = ignore.excludes(&relative);
        // Links are listed, never followed (a link to `.` would go round forever).
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if !excluded || ignore.has_exceptions() {
                list(root, &path, ignore);
            }
        } else if !excluded {
            println!("{relative}");
        }
    }
}
