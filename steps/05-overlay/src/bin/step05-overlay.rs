//! step05-overlay — the demo of chapter 5, "layers: overlayfs".
//!
//! ```text
//! step05-overlay import DIR                       store DIR as a layer; print its digest
//! step05-overlay run NAME LAYER... -- CMD [ARG...]   run CMD on the layers (bottom first),
//!                                                 writing to the container layer NAME
//! step05-overlay diff NAME LAYER...               what NAME changed (A/C/D)
//! step05-overlay commit NAME FILE LAYER... [--gzip]  NAME's changes as a layer tar
//! step05-overlay rm NAME                          delete NAME's writable layer
//! ```
//! Containers run with `--network none`. State lives under $CARTON_ROOT/overlay.
//! `--storage-driver vfs` copies the layers instead of mounting them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01::{Error, Explain, Process};
use step02::Context;
use step05::LayerStore;

#[derive(Parser)]
#[command(about = "Chapter 5 of carton: layers with overlayfs")]
struct Cli {
    /// Print each kernel-level action as it happens.
    #[arg(long, global = true)]
    explain: bool,
    /// overlay (the layers mounted, shared) or vfs (a full copy per container)
    #[arg(long = "storage-driver", global = true, default_value = "overlay")]
    storage_driver: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a directory as a layer and print its digest
    Import { dir: PathBuf },
    /// Run a command on layers (the bottom one first), writing to the container layer NAME
    Run {
        name: String,
        #[arg(required = true)]
        layers: Vec<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// What the container layer NAME changed over the layers
    Diff { name: String, layers: Vec<String> },
    /// Write NAME's changes as a layer tar and print its digests
    Commit {
        name: String,
        file: PathBuf,
        layers: Vec<String>,
        #[arg(long)]
        gzip: bool,
    },
    /// Delete the container layer NAME
    Rm { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = match Context::new(Explain::when(cli.explain)) {
        Ok(context) => context,
        Err(error) => {
            eprintln!("step05-overlay: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let (store, explain) = (LayerStore::new(&context.state_root), &context.explain);
    let layers = |digests: &[String]| -> step01::Result<Vec<step05::Layer>> {
        digests.iter().map(|d| store.layer(d).ok_or_else(|| Error::runtime(format!("no layer {d} in {}; store one with `step05-overlay import DIR`", store.root.display())))).collect()
    };
    let result = (|| -> step01::Result<u8> {
        let driver: step05::Driver = cli.storage_driver.parse()?;
        match &cli.command {
            Command::Import { dir } => {
                let mut tar = tar::Builder::new(Vec::new());
                tar.follow_symlinks(false);
                tar.append_dir_all(".", dir).map_err(|e| Error::runtime(format!("cannot read {}: {e}", dir.display())))?;
                let bytes = tar.into_inner().map_err(|e| Error::runtime(format!("cannot make the layer: {e}")))?;
                println!("{}", store.add_layer(bytes.as_slice(), explain)?.digest);
                Ok(0)
            }
            Command::Run { name, layers: digests, command } => {
                let lowers = layers(digests)?;
                // The root is the layers' (step05::run sets root.path).
                let spec = step03::oci::isolated_spec(&Process::new(command.clone()), Path::new("/"), &context)?;
                let root = step05::LayeredRoot { store: &store, driver, lowers: &lowers, name };
                let finished = step05::run(&spec, &root, &context)?;
                Ok(finished.exit.code() as u8)
            }
            Command::Diff { name, layers: digests } => {
                for change in step05::changes(&store, driver, name, &layers(digests)?)? {
                    println!("{change}");
                }
                Ok(0)
            }
            Command::Commit { name, file, layers: digests, gzip } => {
                let committed = step05::commit_container(&store, driver, name, &layers(digests)?, file, *gzip)?;
                println!("digest {}\ndiff_id {}\nsize {}", committed.digest, committed.diff_id, committed.size);
                Ok(0)
            }
            Command::Rm { name } => store.remove_container(name).map(|()| 0),
        }
    })();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("step05-overlay: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
