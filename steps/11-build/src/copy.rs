//! COPY and ADD: files of the build context (or of an earlier stage, `--from`) as a new
//! layer: a tar of them under their destination, with root (or `--chown`) as owner.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use step01::{Error, Result};

use crate::build::at;
use crate::dockerfile::Instruction;
use crate::ignore::Ignore;

/// One thing to copy: where it is, where it goes in the image; an archive that ADD unpacks
/// there.
struct Entry {
    from: PathBuf,
    to: PathBuf,
    unpack: bool,
}

// ANCHOR: plan
/// What a COPY or ADD copies, and its fingerprint for the cache: each file's path, mode,
/// owner and content digest (not its time).
pub struct CopyPlan {
    entries: Vec<Entry>,
    directories: Vec<PathBuf>,
    /// The image's layer directories, the top one first: the parents' owners and modes.
    layers: Vec<PathBuf>,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    pub fingerprint: String,
    /// An earlier stage's root, mounted while the plan lives.
    _source: Option<MountedImage>,
}
// ANCHOR_END: plan

/// A layer written: the gzip file (removed when dropped) and its uncompressed digest.
pub struct Layer {
    pub path: tempfile::NamedTempFile,
    pub diff_id: String,
}

/// Read a COPY or ADD: its sources (globs allowed, relative to the context or the stage),
/// its destination (relative to WORKDIR), `--chown` (numbers or the image's names),
/// `--chmod` (octal), `--from`.
/// Where COPY reads: the build context and its `.dockerignore`, and the state root (for
/// an earlier stage's image).
pub struct Sources<'a> {
    pub context: &'a Path,
    pub ignore: &'a Ignore,
    pub state_root: &'a Path,
}

pub fn plan(
    sources: &Sources,
    instruction: &Instruction,
    expanded: &dyn Fn(&str) -> Result<Vec<String>>,
    config: &Value,
    stages: &[(Option<String>, Option<String>)],
    layers: Vec<PathBuf>,
) -> Result<CopyPlan> {
    let (context, ignore, state_root) = (sources.context, sources.ignore, sources.state_root);
    let mut parts = match &instruction.json {
        // The JSON form's variables are replaced too, each element one word.
        Some(parts) => parts.iter().map(|part| expanded(part).map(|words| words.join(" "))).collect::<Result<Vec<_>>>()?,
        None => expanded(&instruction.args)?,
    };
    let destination = parts.pop().ok_or_else(|| at(instruction, "no destination".into()))?;
    let workdir = config["WorkingDir"].as_str().filter(|d| !d.is_empty()).unwrap_or("/");
    let named_as_dir = destination.ends_with('/') || destination.ends_with("/.") || destination == "." || destination == ".." || parts.len() > 1;
    let destination = step01::mounts::clean(&Path::new(workdir).join(&destination));
    // Into the destination when it is named as a directory, or is one in the image already.
    let dest_is_dir = named_as_dir || in_image(&layers, &destination).is_some_and(|meta| meta.is_dir());
    let flag = |name: &str| -> Result<Option<String>> { instruction.flags.iter().find(|(k, _)| k == name).map(|(_, v)| expanded(v).map(|words| words.join(" "))).transpose() };
    let owner = flag("chown")?.map(|chown| owner_of(&chown, &layers).map_err(|why| at(instruction, why))).transpose()?;
    let mode = flag("chmod")?.map(|mode| u32::from_str_radix(&mode, 8).map_err(|_| at(instruction, format!("--chmod={mode}: give an octal mode such as 755")))).transpose()?;
    let (root, source) = match flag("from")? {
        Some(from) => {
            let stage = stages.iter().enumerate().find(|(n, (name, _))| name.as_deref() == Some(from.to_ascii_lowercase().as_str()) || n.to_string() == from);
            let image = match stage {
                Some((_, (_, image))) => image.clone().ok_or_else(|| at(instruction, format!("--from={from}: that stage is empty")))?,
                // Not a stage: an image of the store (`COPY --from=busybox /bin/sh /`).
                None => {
                    let reference = step06::Reference::parse(&from).map_err(|e| at(instruction, format!("--from={from}: no stage is called that, and {}", e.message)))?;
                    step06::ImageStore::open(state_root)?
                        .lookup(&reference)?
                        .ok_or_else(|| at(instruction, format!("--from={from}: no stage is called that, and there is no such image here (`carton pull {from}`)")))?
                }
            };
            let mounted = MountedImage::mount(state_root, &image)?;
            (mounted.dir.path().to_path_buf(), Some(mounted))
        }
        None => (context.to_path_buf(), None),
    };
    let from_context = source.is_none();
    let mut entries = Vec::new();
    // Directories the layer must hold even with nothing copied into them.
    let mut directories = Vec::new();
    for pattern in &parts {
        if instruction.keyword == "ADD" && pattern.contains("://") {
            return Err(at(instruction, format!("{pattern}: ADD of a URL is refused: carton builds offline; download it first and COPY it")));
        }

        let matched = glob(&root, pattern, if from_context { Some(ignore) } else { None }).map_err(|why| at(instruction, why))?;
        if matched.is_empty() {
            return Err(at(instruction, format!("{pattern}: no such file in the {} (or .dockerignore leaves it out)", if from_context { "build context" } else { "stage" })));
        }
        for (relative, path) in matched {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| at(instruction, format!("{}: {e}", relative.display())))?;
            if meta.is_dir() {
                // A directory's contents go into the destination (not the directory itself).
                directories.push(destination.clone());
                collect_children(&root, &path, &destination, if from_context { Some(ignore) } else { None }, &mut entries)?;
                continue;
            }
            // ADD unpacks a local tar archive (plain or gzip) into the destination.
            if instruction.keyword == "ADD" && meta.is_file() && is_archive(&path) {
                directories.push(destination.clone());
                entries.push(Entry { from: path, to: destination.clone(), unpack: true });
                continue;
            }
            // A file goes into the destination when it is a directory, else becomes it.
            let to = if dest_is_dir { destination.join(relative.file_name().unwrap_or_default()) } else { destination.clone() };
            entries.push(Entry { from: path, to, unpack: false });
        }
    }
    let mut fingerprint = String::new();
    for entry in &entries {
        let meta = std::fs::symlink_metadata(&entry.from).map_err(|e| at(instruction, format!("{}: {e}", entry.from.display())))?;
        let content = if meta.is_file() {
            file_digest(&entry.from)?
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&entry.from).map(|t| t.display().to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        fingerprint.push_str(&format!("{} {:o} {content}\n", entry.to.display(), meta.mode()));
    }
    fingerprint.push_str(&format!("owner {owner:?} mode {mode:?}\n"));
    Ok(CopyPlan { entries, directories, layers, owner, mode, fingerprint, _source: source })
}

impl CopyPlan {
    // ANCHOR: write_layer
    /// The layer: a gzip-compressed tar of the entries (parents first), written in `dir`.
    pub fn write_layer(&self, dir: &Path) -> Result<Layer> {
        let failed = |e: std::io::Error| Error::runtime(format!("cannot write the layer: {e}"));
        let file = tempfile::Builder::new().prefix(".copy-").tempfile_in(dir).map_err(failed)?;
        let gzip = flate2::write::GzEncoder::new(file.reopen().map_err(failed)?, flate2::Compression::default());
        let mut hashed = step05::Counting::new(gzip);
        {
            let mut tar = tar::Builder::new(&mut hashed);
            tar.follow_symlinks(false);
            // The directories above what is copied: as the image has them (a layer's directory
            // hides the one below, so its owner and mode must stay: /tmp's 1777), or new,
            // root's, 0755.
            let mut parents = std::collections::BTreeSet::new();
            for path in self.entries.iter().map(|e| &e.to).chain(&self.directories) {
                let skip = if self.directories.contains(path) { 0 } else { 1 };
                for parent in path.ancestors().skip(skip).filter(|p| *p != Path::new("/")) {
                    parents.insert(parent.to_path_buf());
                }
            }
            for parent in &parents {
                let mut header = tar::Header::new_gnu();
                match in_image(&self.layers, parent).filter(|meta| meta.is_dir()) {
                    Some(meta) => header.set_metadata(&meta),
                    None => {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        header.set_mtime(0);
                    }
                }
                header.set_size(0);
                tar.append_data(&mut header, parent.strip_prefix("/").unwrap_or(parent), std::io::empty()).map_err(failed)?;
            }
            for entry in &self.entries {
                if entry.unpack {
                    unpack_into(&mut tar, &entry.from, &entry.to).map_err(failed)?;
                    continue;
                }
                let meta = std::fs::symlink_metadata(&entry.from).map_err(failed)?;
                let mut header = tar::Header::new_gnu();
                header.set_metadata(&meta);
                let (uid, gid) = self.owner.unwrap_or((0, 0));
                header.set_uid(uid.into());
                header.set_gid(gid.into());
                if let Some(mode) = self.mode {
                    header.set_mode(mode);
                }
                let name = entry.to.strip_prefix("/").unwrap_or(&entry.to);
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&entry.from).map_err(failed)?;
                    tar.append_link(&mut header, name, target).map_err(failed)?;
                } else if meta.is_dir() {
                    header.set_size(0);
                    tar.append_data(&mut header, name, std::io::empty()).map_err(failed)?;
                } else if meta.is_file() {
                    // Exactly the size the header says, even if the file grows meanwhile.
                    let file = std::fs::File::open(&entry.from).map_err(failed)?;
                    tar.append_data(&mut header, name, std::io::Read::take(file, meta.len())).map_err(failed)?;
                }
            }
            tar.finish().map_err(failed)?;
        }
        let diff_id = hashed.digest();
        hashed.inner.finish().map_err(failed)?;
        Ok(Layer { path: file, diff_id })
    }
    // ANCHOR_END: write_layer
}

/// What is under directory `dir`, to go under `to` (links copied as links, never followed),
/// less what `.dockerignore` leaves out (an excluded directory is still walked when an
/// exception may bring something under it back).
fn collect_children(root: &Path, dir: &Path, to: &Path, ignore: Option<&Ignore>, entries: &mut Vec<Entry>) -> Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir).map_err(|e| Error::runtime(format!("cannot read {}: {e}", dir.display())))?.flatten().collect();
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let excluded = ignore.is_some_and(|ignore| ignore.excludes(&relative));
        let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
        if excluded && !(is_dir && ignore.is_some_and(Ignore::has_exceptions)) {
            continue;
        }
        if !excluded {
            entries.push(Entry { from: path.clone(), to: to.join(child.file_name()), unpack: false });
        }
        if is_dir {
            collect_children(root, &path, &to.join(child.file_name()), ignore, entries)?;
        }
    }
    Ok(())
}

/// `path` in the image whose layers are `layers` (the top one first), if one has it.
fn in_image(layers: &[PathBuf], path: &Path) -> Option<std::fs::Metadata> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    layers.iter().find_map(|layer| std::fs::symlink_metadata(layer.join(relative)).ok())
}

/// The paths under `root` that `pattern` names (`*`, `?` and classes within each name),
/// not those `.dockerignore` leaves out: (relative, full) pairs, sorted.
fn glob(root: &Path, pattern: &str, ignore: Option<&Ignore>) -> std::result::Result<Vec<(PathBuf, PathBuf)>, String> {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let mut found = vec![PathBuf::new()];
    for part in &parts {
        let mut next = Vec::new();
        for base in &found {
            // A link on the way could lead anywhere on the host (`link -> /etc`): refused.
            // (A link named last is copied as a link.)
            if !base.as_os_str().is_empty() && std::fs::symlink_metadata(root.join(base)).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!("{pattern}: {} is a symbolic link; carton copies links as links and never goes through one", base.display()));
            }
            if *part == ".." {
                continue; // never above the context
            }
            if !part.contains(['*', '?', '[']) {
                if root.join(base).join(part).symlink_metadata().is_ok() {
                    next.push(base.join(part));
                }
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(root.join(base)).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            next.extend(names.into_iter().filter(|name| crate::ignore::name_matches(part, name)).map(|name| base.join(name)));
        }
        found = next;
    }
    Ok(found
        .into_iter()
        .filter(|relative| {
            // An excluded directory stays when an exception may bring something under it back.
            ignore.is_none_or(|ignore| {
                relative.as_os_str().is_empty()
                    || !ignore.excludes(&relative.to_string_lossy())
                    || (ignore.has_exceptions() && std::fs::symlink_metadata(root.join(relative)).is_ok_and(|m| m.is_dir()))
            })
        })
        .map(|relative| (relative.clone(), root.join(relative)))
        .collect())
}

/// Whether `path` is a tar archive, plain or gzip-compressed (by its first bytes, as Docker
/// decides).
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// ADD's archive: each of its entries put under `to`, with its own mode, owner and time; a
/// name that climbs out (`../`) is refused.
fn unpack_into<W: Write>(tar: &mut tar::Builder<W>, archive: &Path, to: &Path) -> std::io::Result<()> {
    let file = std::io::BufReader::new(std::fs::File::open(archive)?);
    let reader: Box<dyn std::io::Read> = if is_gzip(archive) { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let mut input = tar::Archive::new(reader);
    for entry in input.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        if name.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(std::io::Error::other(format!("{} holds {}, which climbs out of the destination", archive.display(), name.display())));
        }
        let target = to.join(name.strip_prefix("/").unwrap_or(&name));
        let mut header = entry.header().clone();
        let relative = target.strip_prefix("/").unwrap_or(&target).to_path_buf();
        match header.entry_type() {
            tar::EntryType::Symlink => {
                let link = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                tar.append_link(&mut header, &relative, link)?;
            }
            tar::EntryType::Link => {
                // A hard link names another entry of the archive: it moved under `to` too.
                let link = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let moved = to.join(link.strip_prefix("/").unwrap_or(&link));
                tar.append_link(&mut header, &relative, moved.strip_prefix("/").unwrap_or(&moved))?;
            }
            _ => tar.append_data(&mut header, &relative, &mut entry)?,
        }
    }
    Ok(())
}

fn is_gzip(path: &Path) -> bool {
    let mut head = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && head == [0x1f, 0x8b]
}

/// `--chown=USER[:GROUP]`, names read from the image's `/etc/passwd` and `/etc/group`
/// (`layers`, the top one first). A user alone gives the same number as group (Docker's rule).
fn owner_of(text: &str, layers: &[PathBuf]) -> std::result::Result<(u32, u32), String> {
    let passwd_root = layers.iter().find(|layer| layer.join("etc/passwd").exists()).cloned().unwrap_or_else(|| PathBuf::from("/nonexistent"));
    let user = step02::User::resolve(text, &passwd_root).map_err(|e| format!("--chown={text}: {}", e.message))?;
    Ok(if text.contains(':') { (user.uid, user.gid) } else { (user.uid, user.uid) })
}

fn file_digest(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::runtime(format!("cannot read {}: {e}", path.display())))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(|e| Error::runtime(format!("cannot read {}: {e}", path.display())))?;
    Ok(step05::store::hex(&hash.finalize()))
}

/// An image's files, read-only: its layers as an overlay with no upper directory (or the one
/// layer as it is), unmounted when dropped.
struct MountedImage {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl MountedImage {
    fn mount(state_root: &Path, manifest: &str) -> Result<MountedImage> {
        let prepared = step06::prepare_manifest(state_root, manifest, &step01::Explain::off())?;
        let dir = tempfile::Builder::new().prefix(".stage-").tempdir_in(state_root).map_err(|e| Error::runtime(format!("cannot make a directory in {}: {e}", state_root.display())))?;
        let lowers: Vec<String> = prepared.lowers.iter().rev().map(|l| l.dir.display().to_string()).collect();
        if lowers.len() == 1 {
            // One layer: its directory is the image's whole tree.
            nix::mount::mount(Some(lowers[0].as_str()), dir.path(), None::<&str>, nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_RDONLY, None::<&str>)
                .map_err(|errno| Error::syscall("mount (bind) a stage's layer", errno))?;
        } else {
            let options = format!("lowerdir={}", lowers.join(":"));
            nix::mount::mount(Some("overlay"), dir.path(), Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(options.as_str())).map_err(|errno| Error::syscall("mount a stage's layers", errno))?;
        }
        Ok(MountedImage { dir, mounted: true })
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
