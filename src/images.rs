//! The image commands (chapter 6): `images`, `pull`, `push`, `tag`, `rmi`, `history`,
//! `save`, `load`, `import`, `login`, `logout`, and their `carton image …` forms.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use step06::progress::{short_id, Progress};
use step06::registry::{Credentials, Logins};
use step06::{ImageStore, Reference};

use crate::print_stdout;

/// The commands Docker spells the same at the top level and under `image`.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry
    Pull(TransferArgs),
    /// Upload an image to a registry
    Push(TransferArgs),
    /// Show how an image was made, a line per step
    History {
        /// Do not shorten the commands
        #[arg(long)]
        no_trunc: bool,
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Write images to a tar archive (Docker's format, which is also an OCI layout)
    Save {
        /// Write to this file instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Load images from a tar archive (Docker's format or an OCI layout)
    Load {
        /// Read from this file instead of standard input
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Say nothing
        #[arg(short, long)]
        quiet: bool,
    },
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Give an image another name: carton tag SOURCE TARGET
    Tag { source: String, target: String },
    /// Make a one-layer image from a root filesystem tarball (plain or gzip; - for stdin)
    Import {
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
        #[arg(value_name = "NAME[:TAG]")]
        name: String,
    },
}

/// `carton build`'s flags, Docker's.
#[derive(Args)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG] (more than once for more names)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// A build argument KEY=VALUE (KEY alone: its value here)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Stop at this stage (FROM ... AS NAME)
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Run every step again, none from the cache
    #[arg(long)]
    no_cache: bool,
    /// Pull FROM's images again, even when they are here
    #[arg(long)]
    pull: bool,
    /// Print only the image id
    #[arg(short, long)]
    quiet: bool,
    /// The network RUN's containers get: bridge (the default), none or host
    #[arg(long, value_name = "MODE", default_value = "bridge")]
    network: String,
    /// The directory COPY reads from (- : no context, the Dockerfile on standard input)
    #[arg(value_name = "CONTEXT|-")]
    context: String,
}

#[derive(Args)]
pub struct TransferArgs {
    /// Print only the image's name at the end
    #[arg(short, long)]
    quiet: bool,
    /// Print each request to the registry, with the curl that does the same
    #[arg(long)]
    explain: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    image: String,
}

/// `carton login` / `carton logout`'s registry: Docker Hub when none is named.
#[derive(Args)]
pub struct LoginArgs {
    /// User name
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users in `ps`; prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// The registry, e.g. localhost:5000 (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub fn run(state_root: &Path, command: ImageCommand) -> anyhow::Result<u8> {
    match command {
        ImageCommand::Pull(args) => pull(state_root, &args),
        ImageCommand::Push(args) => push(state_root, &args),
        ImageCommand::History { no_trunc, image } => history(state_root, &image, no_trunc),
        ImageCommand::Save { output, images } => save(state_root, output.as_deref(), &images),
        ImageCommand::Load { input, quiet } => load(state_root, input.as_deref(), quiet),
        ImageCommand::Tag { source, target } => {
            step06::tag(&ImageStore::open(state_root)?, &Reference::parse(&source)?, &Reference::parse(&target)?)?;
            Ok(0)
        }
        ImageCommand::Import { file, name } => import(state_root, &file, &name),
        ImageCommand::Build(args) => build(state_root, &args),
    }
}

/// `carton build`: a Dockerfile run step by step into an image (chapter 11).
fn build(state_root: &Path, args: &BuildArgs) -> anyhow::Result<u8> {
    use std::io::Read;
    let scratch_context = tempfile::tempdir()?;
    let (context, text, file_name) = if args.context == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        (scratch_context.path().to_path_buf(), text, "Dockerfile (standard input)".to_string())
    } else {
        let context = PathBuf::from(&args.context);
        if !context.is_dir() {
            return Err(step01::Error::runtime(format!("the build context {} is not a directory: give the directory the Dockerfile's COPY reads from (often .)", context.display())).into());
        }
        let file = args.file.clone().unwrap_or_else(|| context.join("Dockerfile"));
        let text = std::fs::read_to_string(&file).map_err(|e| step01::Error::runtime(format!("cannot read the Dockerfile {}: {e}", file.display())))?;
        (context, text, file.display().to_string())
    };
    let dockerfile = step11::dockerfile::parse(&file_name, &text).map_err(|e| step01::Error::runtime(e.to_string()))?;
    let mut build_args = std::collections::BTreeMap::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((key, value)) => build_args.insert(key.to_string(), value.to_string()),
            // KEY alone: its value here, if it has one (else the Dockerfile's default stays).
            None => match std::env::var(arg) {
                Ok(value) => build_args.insert(arg.clone(), value),
                Err(_) => None,
            },
        };
    }
    let options = step11::build::Options {
        context,
        dockerfile,
        tags: args.tags.iter().map(|t| Reference::parse(t)).collect::<step01::Result<_>>()?,
        build_args,
        target: args.target.as_ref().map(|t| t.to_ascii_lowercase()),
        no_cache: args.no_cache,
        network: args.network.parse()?,
        quiet: args.quiet,
        pull: args.pull,
        progress: !args.quiet && std::io::stdout().is_terminal(),
    };
    let mut progress: Box<dyn std::io::Write> = if args.quiet { Box::new(std::io::sink()) } else { Box::new(std::io::stdout()) };
    let (image_id, _) = step11::build::build(state_root, &options, &mut progress)?;
    if args.quiet {
        print_stdout(&format!("{image_id}\n"));
    }
    Ok(0)
}

fn pull(state_root: &Path, args: &TransferArgs) -> anyhow::Result<u8> {
    let reference = Reference::parse(&args.image)?;
    let progress = if args.quiet { Progress::quiet() } else { Progress::to_stdout() };
    let credentials = Logins::new(state_root).get(&reference.registry);
    step06::pull::pull(state_root, &reference, credentials, &progress, &step01::Explain::when(args.explain))?;
    print_stdout(&format!("{reference}\n"));
    Ok(0)
}

fn push(state_root: &Path, args: &TransferArgs) -> anyhow::Result<u8> {
    let reference = Reference::parse(&args.image)?;
    let progress = if args.quiet { Progress::quiet() } else { Progress::to_stdout() };
    let credentials = Logins::new(state_root).get(&reference.registry);
    step06::push::push(state_root, &reference, credentials, step06::push::CHUNK, &progress, &step01::Explain::when(args.explain))?;
    if args.quiet {
        print_stdout(&format!("{}\n", reference.familiar()));
    }
    Ok(0)
}

/// `carton run --pull WHEN IMAGE`: with `missing` (the default) an image not in the store
/// is pulled first, as Docker does, saying so on standard error; `always` pulls anyway,
/// `never` never does.
pub fn pull_as_asked(state_root: &Path, reference: &Reference, when: &str, explain: &step01::Explain) -> anyhow::Result<()> {
    let here = ImageStore::open(state_root)?.lookup(reference)?.is_some();
    match when {
        "never" => return Ok(()),
        "missing" if here => return Ok(()),
        "missing" => eprintln!("Unable to find image '{}' locally", reference.familiar()),
        _ => {}
    }
    let credentials = Logins::new(state_root).get(&reference.registry);
    step06::pull::pull(state_root, reference, credentials, &Progress::to_stderr(), explain)?;
    Ok(())
}

pub fn login(state_root: &Path, args: LoginArgs) -> anyhow::Result<u8> {
    let registry = registry_name(args.server.as_deref())?;
    let user = match args.username {
        Some(user) => user,
        // Asked on the terminal, as Docker does; a script gives -u.
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_string()
        }
        None => return Err(step01::Error::runtime("give a user name with -u (and the password with --password-stdin, -p, or at the prompt)").into()),
    };
    if user.is_empty() {
        return Err(step01::Error::runtime("the user name is empty").into());
    }
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => return Err(step01::Error::runtime("give the password with -p or --password-stdin, not both").into()),
        (Some(password), false) => password,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt_password()?,
    };
    if password.is_empty() {
        return Err(step01::Error::runtime("the password is empty").into());
    }
    let credentials = Credentials { user, password };
    // The credentials are tried before they are saved: a typo is caught now, not at the next push.
    step06::registry::Client::new(&registry, "", "pull", Some(credentials.clone())).ping(&step01::Explain::off())?;
    Logins::new(state_root).save(&registry, &credentials)?;
    print_stdout("Login Succeeded\n");
    Ok(0)
}

pub fn logout(state_root: &Path, server: Option<&str>) -> anyhow::Result<u8> {
    let registry = registry_name(server)?;
    if Logins::new(state_root).remove(&registry)? {
        print_stdout(&format!("Removing login credentials for {registry}\n"));
    } else {
        print_stdout(&format!("Not logged in to {registry}\n"));
    }
    Ok(0)
}

/// A registry as `login` names it: a host[:port], or Docker Hub.
fn registry_name(server: Option<&str>) -> step01::Result<String> {
    let Some(server) = server else { return Ok(step06::reference::DOCKER_HUB.to_string()) };
    let host = server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    // A registry name is what a reference starts with: check it as one.
    let reference = Reference::parse(&format!("{host}/probe")).map_err(|_| step01::Error::runtime(format!("{server:?} is not a registry name: give host[:port], e.g. localhost:5000")))?;
    Ok(if ["index.docker.io", "registry-1.docker.io"].contains(&reference.registry.as_str()) { step06::reference::DOCKER_HUB.to_string() } else { reference.registry })
}

/// Ask for the password on the terminal without echoing it.
fn prompt_password() -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(step01::Error::runtime("no password given: use --password-stdin (or -p) when standard input is not a terminal").into());
    }
    eprint!("Password: ");
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn list(state_root: &Path) -> anyhow::Result<u8> {
    let store = ImageStore::open(state_root)?;
    let mut table = format!("{:<40} {:<12} {:<14} {:<24} {}\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
    for image in step06::image::list(&store)? {
        // An image pulled by digest has no tag: Docker shows <none>.
        let tag = image.reference.tag.clone().unwrap_or_else(|| "<none>".to_string());
        table += &format!("{:<40} {tag:<12} {:<14} {:<24} {}\n", image.reference.familiar_name(), short_id(&image.id), ago(&image.created), human_size(image.size));
    }
    print_stdout(&table);
    Ok(0)
}

fn history(state_root: &Path, image: &str, no_trunc: bool) -> anyhow::Result<u8> {
    let steps = step06::image::history(&ImageStore::open(state_root)?, &Reference::parse(image)?)?;
    let mut table = format!("{:<14} {:<24} {:<46} {:<10} {}\n", "IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT");
    for step in steps {
        let id = step.id.as_deref().map_or("<missing>".to_string(), short_id);
        let created_by = if no_trunc || step.created_by.chars().count() <= 45 { step.created_by } else { step.created_by.chars().take(44).collect::<String>() + "…" };
        table += &format!("{id:<14} {:<24} {created_by:<46} {:<10} {}\n", ago(&step.created), human_size(step.size), step.comment);
    }
    print_stdout(&table);
    Ok(0)
}

fn save(state_root: &Path, output: Option<&Path>, images: &[String]) -> anyhow::Result<u8> {
    let references = images.iter().map(|i| Reference::parse(i)).collect::<step01::Result<Vec<_>>>()?;
    let store = ImageStore::open(state_root)?;
    match output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no half archive.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| step01::Error::runtime(format!("cannot write in {}: {e}", dir.display())))?;
            step06::archive::save(&store, &references, std::io::BufWriter::new(file.as_file_mut()))?;
            file.persist(path).map_err(|e| step01::Error::runtime(format!("cannot write {}: {e}", path.display())))?;
        }
        None if std::io::stdout().is_terminal() => {
            return Err(step01::Error::runtime("refusing to write an archive to a terminal: give -o FILE, or redirect the output").into());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            step06::archive::save(&store, &references, std::io::BufWriter::new(&mut stdout))?;
            stdout.flush()?;
        }
    }
    Ok(0)
}

fn load(state_root: &Path, input: Option<&Path>, quiet: bool) -> anyhow::Result<u8> {
    let store = ImageStore::open(state_root)?;
    let loaded = match input {
        Some(path) => step06::archive::load(&store, std::fs::File::open(path).map_err(|e| step01::Error::runtime(format!("cannot open {}: {e}", path.display())))?)?,
        None if std::io::stdin().is_terminal() => {
            return Err(step01::Error::runtime("the archive is read from standard input, which is a terminal: give -i FILE, or redirect the input").into());
        }
        None => step06::archive::load(&store, std::io::stdin().lock())?,
    };
    if !quiet {
        for image in loaded {
            match image.reference {
                Some(reference) => print_stdout(&format!("Loaded image: {}\n", reference.familiar())),
                None => print_stdout(&format!("Loaded image ID: {}\n", image.id)),
            }
        }
    }
    Ok(0)
}

fn import(state_root: &Path, file: &Path, name: &str) -> anyhow::Result<u8> {
    let reference = Reference::parse(name)?;
    let store = ImageStore::open(state_root)?;
    let digest = if file == Path::new("-") {
        step06::import(&store, std::io::stdin().lock(), &reference)?
    } else {
        let tarball = std::fs::File::open(file).map_err(|e| step01::Error::runtime(format!("cannot open {}: {e}", file.display())))?;
        step06::import(&store, tarball, &reference)?
    };
    // What `docker import` prints: the image ID (its config's digest).
    print_stdout(&format!("{}\n", step06::Image::from_store(&store, &digest)?.id()));
    Ok(0)
}

pub fn remove(state_root: &Path, images: &[String], force: bool) -> anyhow::Result<u8> {
    for name in images {
        let reference = Reference::parse(name)?;
        let deleted = step06::remove(state_root, &reference, force)?;
        let mut text = format!("Untagged: {}\n", reference.familiar());
        for digest in deleted {
            text += &format!("Deleted: {digest}\n");
        }
        print_stdout(&text);
    }
    Ok(0)
}

/// Ask before a prune (Docker's question); without a terminal to ask on, `-f` is needed.
pub fn confirm(command: &str, warning: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(step01::Error::runtime(format!("{command} deletes for good: give -f to do it without being asked")).into());
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

pub fn prune(state_root: &Path, force: bool) -> anyhow::Result<u8> {
    if !force && !confirm("carton image prune", "WARNING! This will remove all dangling images.")? {
        return Ok(0);
    }
    let (deleted, freed) = remove_unneeded(state_root)?;
    let mut text = String::new();
    for digest in &deleted {
        text += &format!("Deleted: {digest}\n");
    }
    text += &format!("Total reclaimed space: {}\n", human_size(freed));
    print_stdout(&text);
    Ok(0)
}

/// The blobs no image and no container needs deleted, and what killed pulls and unpacks
/// left half made (only chapter 7's collector knows all of it): the deleted blobs, and
/// the bytes freed.
pub fn remove_unneeded(state_root: &Path) -> anyhow::Result<(Vec<String>, u64)> {
    let deleted = step06::prune(state_root)?;
    let swept = step05::LayerStore::new(state_root).sweep_abandoned();
    let freed = deleted.iter().map(|(_, size)| size).sum::<u64>() + swept;
    Ok((deleted.into_iter().map(|(digest, _)| digest).collect(), freed))
}

/// `system prune -a`: every image no container uses removed, with the blobs only it
/// needed. Returns Docker's lines (`untagged: NAME`, `deleted: DIGEST`) and the bytes freed.
pub fn remove_unused(state_root: &Path) -> anyhow::Result<(Vec<String>, u64)> {
    let store = ImageStore::open(state_root)?;
    let sizes: std::collections::HashMap<String, u64> = store.blobs()?.into_iter().collect();
    let in_use: Vec<String> = store.in_use()?.into_iter().map(|(_, manifest)| manifest).collect();
    let (mut lines, mut freed) = (Vec::new(), 0);
    for (name, manifest) in store.tags()? {
        if !in_use.contains(&manifest) {
            let reference = Reference::parse(&name)?;
            let deleted = step06::remove(state_root, &reference, false)?;
            lines.push(format!("untagged: {}", reference.familiar()));
            freed += deleted.iter().filter_map(|digest| sizes.get(digest)).sum::<u64>();
            lines.extend(deleted.into_iter().map(|digest| format!("deleted: {digest}")));
        }
    }
    Ok((lines, freed))
}

pub fn inspect(state_root: &Path, images: &[String]) -> anyhow::Result<u8> {
    let store = ImageStore::open(state_root)?;
    let mut all = Vec::new();
    for name in images {
        let inspected = step06::image::inspect(&store, &Reference::parse(name)?)?;
        all.extend(inspected.as_array().cloned().unwrap_or_default());
    }
    print_stdout(&(serde_json::to_string_pretty(&all)? + "\n"));
    Ok(0)
}

/// Sizes as Docker prints them: three significant digits, powers of 1000 (4.26MB, 12.3kB, 0B).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", units[unit])
}

/// An RFC 3339 time as Docker shows it: "5 minutes ago". Empty or unreadable: "N/A".
fn ago(created: &str) -> String {
    let Some(then) = unix_time(created) else { return "N/A".to_string() };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    human_duration(now - then) + " ago"
}

/// Docker's `units.HumanDuration`.
fn human_duration(seconds: i64) -> String {
    let (minutes, hours) = (seconds / 60, (seconds as f64 / 3600.0).round() as i64);
    match () {
        _ if seconds < 1 => "Less than a second".to_string(),
        _ if seconds == 1 => "1 second".to_string(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// `2026-11-23T00:07:15.321Z` (or with a `+01:00` offset) → seconds since 1970.
fn unix_time(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let zone = text.get(19..)?.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone.as_bytes() {
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if zone.len() == 6 => {
            let minutes = zone.get(1..3)?.parse::<i64>().ok()? * 60 + zone.get(4..6)?.parse::<i64>().ok()?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_like_dockers() {
        assert_eq!(super::unix_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(super::unix_time("2026-11-23T00:07:15.321717524Z"), Some(1_795_392_435));
        assert_eq!(super::unix_time("2026-11-23T01:07:15+01:00"), Some(1_795_392_435));
        assert_eq!(super::unix_time(""), None);
        assert_eq!(super::unix_time("yesterday"), None);
        assert_eq!(super::unix_time("2026-11-23T00:07:15+0é00"), None, "bytes from an image are not trusted to be ASCII");
        let cases = [
            (0, "Less than a second"),
            (45, "45 seconds"),
            (61, "About a minute"),
            (300, "5 minutes"),
            (3600, "About an hour"),
            (7200, "2 hours"),
            (3 * 86_400, "3 days"),
            (20 * 86_400, "2 weeks"),
            (90 * 86_400, "3 months"),
            (800 * 86_400, "2 years"),
        ];
        for (seconds, text) in cases {
            assert_eq!(super::human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn sizes_read_like_dockers() {
        let cases = [(0, "0B"), (999, "999B"), (1000, "1kB"), (12_345, "12.3kB"), (4_263_000, "4.26MB"), (1_500_000_000, "1.5GB"), (999_999, "1MB")];
        for (bytes, text) in cases {
            assert_eq!(super::human_size(bytes), text, "{bytes}");
        }
    }
}
