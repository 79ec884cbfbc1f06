//! step06-images — the demo of chapter 6, "images: layers, digests, registries".
//!
//! ```text
//! step06-images make DIR NAME [-- CMD...]   store DIR as a one-layer image NAME (default command: sh)
//! step06-images ls                          the tags in the store, with their manifest digests
//! step06-images manifest IMAGE              the manifest as stored: the bytes its digest is of
//! step06-images config IMAGE                the config the manifest names
//! step06-images pull NAME                   fetch an image from its registry
//! step06-images push NAME                   send an image to its registry
//! step06-images run IMAGE [CMD...]          run it on an overlay of its layers (--network none)
//! ```
//! State lives under $CARTON_ROOT (default /var/lib/carton): the store is `images/`, an
//! OCI image layout; unpacked layers are step 05's, under `overlay/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use step01::{Explain, Result};
use step02::Context;
use step06::progress::Progress;
use step06::registry::Logins;
use step06::{Image, ImageStore, Reference};

#[derive(Parser)]
#[command(about = "Chapter 6 of carton: images, their digests, and registries")]
struct Cli {
    /// Print each action (HTTP requests included) as it happens.
    #[arg(long, global = true)]
    explain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a directory as a one-layer image
    Make {
        dir: PathBuf,
        name: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The tags in the store and the manifests they point to
    Ls,
    /// Print an image's manifest exactly as stored
    Manifest { image: String },
    /// Print an image's config exactly as stored
    Config { image: String },
    /// Fetch an image from its registry
    Pull { name: String },
    /// Send an image to its registry
    Push { name: String },
    /// Run an image on an overlay of its layers, without a network
    Run {
        image: String,
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> Result<u8> {
        let context = Context::new(Explain::when(cli.explain))?;
        let (state_root, explain) = (&context.state_root, &context.explain);
        let store = ImageStore::open(state_root)?;
        let stdout = |bytes: &[u8]| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes).and_then(|()| out.write_all(b"\n"));
        };
        match cli.command {
            Command::Make { dir, name, command } => {
                let command: Vec<&str> = if command.is_empty() { vec!["sh"] } else { command.iter().map(String::as_str).collect() };
                println!("{}", step06::image_from_dir(&store, &dir, &Reference::parse(&name)?, &command)?);
            }
            Command::Ls => {
                for (name, digest) in store.tags()? {
                    println!("{name} {digest}");
                }
            }
            Command::Manifest { image } => {
                let image = Image::load(&store, &Reference::parse(&image)?)?;
                stdout(&store.read_blob(&image.manifest_digest)?);
            }
            Command::Config { image } => {
                let image = Image::load(&store, &Reference::parse(&image)?)?;
                stdout(&store.read_blob(&image.id())?);
            }
            Command::Pull { name } => {
                let reference = Reference::parse(&name)?;
                let credentials = Logins::new(state_root).get(&reference.registry);
                step06::pull::pull(state_root, &reference, credentials, &Progress::to_stdout(), explain)?;
            }
            Command::Push { name } => {
                let reference = Reference::parse(&name)?;
                let credentials = Logins::new(state_root).get(&reference.registry);
                step06::push::push(state_root, &reference, credentials, step06::push::CHUNK, &Progress::to_stdout(), explain)?;
            }
            Command::Run { image, command } => {
                let prepared = step06::prepare(state_root, &Reference::parse(&image)?, explain)?;
                let process = prepared.image.process(&command, None)?;
                // The root is the layers' (step 05 sets root.path).
                let spec = step03::oci::isolated_spec(&process, Path::new("/"), &context)?;
                let finished = step06::run(prepared, &spec, &context)?;
                return Ok(finished.exit.code() as u8);
            }
        }
        Ok(0)
    })();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("step06-images: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
