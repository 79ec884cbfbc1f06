//! Where layers live: each one unpacked once, under its digest, shared read-only by every
//! container that uses it; and each container's own writable layer beside them.
//!
//! ```text
//! STATE_ROOT/overlay/
//!   layers/HEX/diff/        one layer, unpacked (whiteouts in overlay's form)
//!   layers/HEX/link         its short name
//!   l/SHORT -> ../layers/HEX/diff
//!   containers/NAME/init/   the mount points carton needs (Docker's "init layer")
//!   containers/NAME/upper/  what the container wrote
//!   containers/NAME/work/   overlayfs's scratch space
//!   containers/NAME/merged/ where its root is mounted
//! ```
//!
//! The short names exist for the mount options: they must fit in one page (4096 bytes),
//! and a full path per layer would allow only a few dozen layers. Docker's overlay2
//! driver uses the same trick.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use step01::{Action, Error, Explain, Result};

use crate::archive::{self, Target};
use crate::CHAPTER;

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:` and the digest of the uncompressed tar (the OCI "diff ID").
    pub digest: String,
    /// Its files.
    pub dir: PathBuf,
    /// Its short name under `l/`.
    pub link: String,
}

/// One container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLayer {
    pub name: String,
    /// A read-only layer just below `upper` with the mount points the start sequence
    /// mounts over (`/proc`, `/etc/hosts`...), so that making them is not a change of the
    /// container's: `docker container diff` does not list them either.
    pub init: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

pub struct LayerStore {
    pub root: PathBuf,
}

fn io_error<'a>(what: &'a str, path: &'a Path) -> impl Fn(std::io::Error) -> Error + 'a {
    move |e| Error::runtime(format!("cannot {what} {}: {e}", path.display()))
}

impl LayerStore {
    pub fn new(state_root: &Path) -> LayerStore {
        LayerStore { root: state_root.join("overlay") }
    }

    // ANCHOR: add_layer
    /// Unpack a layer tar into the store, once: a layer whose digest is there already is
    /// not unpacked again. It is unpacked into a staging directory and renamed into place,
    /// so a crash or a bad layer never leaves half a layer under a digest.
    pub fn add_layer(&self, archive: impl Read, explain: &Explain) -> Result<Layer> {
        let layers = self.root.join("layers");
        self.make_private_root()?;
        fs::create_dir_all(self.root.join("l")).map_err(io_error("create", &self.root))?;
        let staging = tempfile::Builder::new().prefix(STAGING).tempdir_in(ensure(&layers)?).map_err(io_error("create a staging directory in", &layers))?;
        // Locked while this process works in it: a staging directory nobody holds was left by
        // a carton that was killed, and [`LayerStore::sweep_abandoned`] removes it.
        let _working = lock_dir(staging.path(), libc::LOCK_EX)?;
        let diff = staging.path().join("diff");
        fs::create_dir(&diff).map_err(io_error("create", &diff))?;
        let mut hashing = Hashing { inner: archive, hash: Sha256::new() };
        archive::apply(&mut hashing, &diff, Target::OverlayLower)?;
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| Error::runtime(format!("cannot read the layer: {e}")))?; // the tar's padding counts too
        let hex = hex(&hashing.hash.finalize());
        let digest = format!("sha256:{hex}");
        if let Some(layer) = self.layer(&digest) {
            return Ok(layer); // already there; the staging copy goes
        }
        let link = random_name()?;
        fs::write(staging.path().join("link"), &link).map_err(io_error("write", staging.path()))?;
        let home = layers.join(&hex);
        explain.step(|| {
            Action::new(CHAPTER, format!("store layer {digest}, unpacked once, shared by every container"), format!("rename(\"{}\", \"{}\")", staging.path().display(), home.display()))
                .shell(format!("mkdir -p {0}/diff && tar -xf LAYER.tar -C {0}/diff", home.display()))
        });
        // The short link first (pointing at nothing yet), then the layer appears whole
        // under its digest: a reader never finds a layer without its link.
        let short = self.root.join("l").join(&link);
        std::os::unix::fs::symlink(Path::new("..").join("layers").join(&hex).join("diff"), &short).map_err(io_error("link", &home))?;
        match fs::rename(staging.path(), &home) {
            Ok(()) => Ok(Layer { digest, dir: home.join("diff"), link }),
            Err(e) => {
                let _ = fs::remove_file(&short); // the staging copy goes with `staging`
                match self.layer(&digest) {
                    Some(stored) => Ok(stored), // another carton stored it meanwhile
                    None => Err(Error::runtime(format!("cannot store the layer {digest}: {e}"))),
                }
            }
        }
    }
    // ANCHOR_END: add_layer

    /// The stored layer with this digest, if there is one.
    pub fn layer(&self, digest: &str) -> Option<Layer> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let home = self.root.join("layers").join(hex);
        let link = fs::read_to_string(home.join("link")).ok()?;
        Some(Layer { digest: digest.to_string(), dir: home.join("diff"), link })
    }

    /// Remove the layer `digest` (when no image needs it any more). It is first renamed
    /// out of its place, so nobody finds half a layer; then its short link and its files go.
    pub fn remove_layer(&self, digest: &str) -> Result<()> {
        let Some(layer) = self.layer(digest) else { return Ok(()) };
        let home = layer.dir.parent().unwrap_or(&layer.dir).to_path_buf();
        let doomed = self.root.join("layers").join(format!("{REMOVING}{}", random_name()?));
        fs::rename(&home, &doomed).map_err(io_error("remove", &home))?;
        let _working = lock_dir(&doomed, libc::LOCK_EX)?;
        let _ = fs::remove_file(self.root.join("l").join(&layer.link));
        fs::remove_dir_all(&doomed).map_err(io_error("remove", &doomed))
    }

    /// The writable layer of the container `name`, made if it is not there: it outlives
    /// the container's process, and goes only with [`LayerStore::remove_container`].
    pub fn container(&self, name: &str) -> Result<ContainerLayer> {
        let dir = self.container_dir(name)?;
        self.make_private_root()?;
        let layer = ContainerLayer { name: name.to_string(), init: dir.join("init"), upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("merged") };
        for d in [&layer.upper, &layer.work, &layer.merged] {
            fs::create_dir_all(d).map_err(io_error("create", d))?;
        }
        for mount_point in INIT_DIRECTORIES {
            fs::create_dir_all(layer.init.join(mount_point)).map_err(io_error("create", &layer.init))?;
        }
        for mount_point in INIT_FILES {
            // Made once: the init layer, like any layer, does not change under its container.
            match fs::File::create_new(layer.init.join(mount_point)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_error("create", &layer.init)(e)),
                _ => {}
            }
        }
        Ok(layer)
    }

    // ANCHOR: vfs
    /// The vfs driver's root for container `name`: a full copy of `lowers` (the bottom
    /// one first), made on first use by applying each layer in turn, deletions included.
    /// Slow and big, but it works on any file system, where overlayfs cannot.
    pub fn copy_root(&self, name: &str, lowers: &[Layer], explain: &Explain) -> Result<PathBuf> {
        let layer = self.container(name)?;
        let rootfs = layer.upper.with_file_name("rootfs");
        if rootfs.exists() {
            return Ok(rootfs);
        }
        let staging = layer.upper.with_file_name(".rootfs-staging");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(io_error("create", &staging))?;
        // The init layer last, as it sits above the image's layers in an overlay.
        for (name, dir) in lowers.iter().map(|l| (l.digest.as_str(), &l.dir)).chain([("init", &layer.init)]) {
            explain.step(|| {
                Action::new(CHAPTER, format!("copy layer {name} into the container's own root (vfs driver)"), "read, write, mknod... for every file").shell(format!(
                    "tar -C {} -c . | tar -C {} -x   # then delete what each whiteout names",
                    dir.display(),
                    staging.display()
                ))
            });
            // The layer as a tar (overlay's whiteouts become .wh. entries), applied as
            // deletions. Through a file, not a thread: containers are cloned from a
            // single-threaded carton.
            let mut tar = tempfile::tempfile_in(&self.root).map_err(io_error("create a file in", &self.root))?;
            archive::export(dir, &mut tar)?;
            std::io::Seek::rewind(&mut tar).map_err(io_error("read", &self.root))?;
            archive::apply(std::io::BufReader::new(tar), &staging, Target::Merged)?;
        }
        fs::rename(&staging, &rootfs).map_err(io_error("finish", &rootfs))?;
        Ok(rootfs)
    }
    // ANCHOR_END: vfs

    /// Whether container `name` has a writable layer here.
    pub fn has_container(&self, name: &str) -> bool {
        self.container_dir(name).is_ok_and(|dir| dir.is_dir())
    }

    /// `containers/NAME`, for a name that is one directory name and nothing else.
    fn container_dir(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') || name.starts_with('.') {
            return Err(Error::runtime(format!("invalid container layer name {name:?}: use letters, digits, '-', '_' and '.'")));
        }
        Ok(self.root.join("containers").join(name))
    }

    /// The store readable by root only: layers and writable layers hold set-uid programs
    /// that no other user of the host may reach (Docker's CVE-2021-41091).
    fn make_private_root(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(&self.root).map_err(io_error("create", &self.root))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(io_error("protect", &self.root))
    }

    /// Remove what a killed carton left half-done: staging directories of layers being
    /// unpacked (a whole image's worth, after a `kill -9` during a pull) and layers being
    /// removed. Only those no running carton holds (each holds a lock on its own).
    /// Returns the bytes freed.
    pub fn sweep_abandoned(&self) -> u64 {
        let layers = self.root.join("layers");
        let Ok(entries) = fs::read_dir(&layers) else { return 0 };
        let mut freed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(STAGING) || name.starts_with(REMOVING)) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(_abandoned) = lock_dir(&entry.path(), libc::LOCK_EX | libc::LOCK_NB) else { continue };
            let size = disk_usage(&entry.path());
            if fs::remove_dir_all(entry.path()).is_ok() {
                freed += size;
            }
        }
        freed
    }

    /// Delete a container's writable layer: what it wrote is gone (`docker rm`).
    pub fn remove_container(&self, name: &str) -> Result<()> {
        let dir = self.container_dir(name)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::runtime(format!("cannot remove {}: {e}", dir.display()))),
            _ => Ok(()),
        }
    }

    // ANCHOR: mount_options
    /// overlayfs's options for `lowers` (the highest first) under `container`'s layer,
    /// relative to the store's root: the mounting process stands there.
    pub(crate) fn mount_options(&self, lowers: &[Layer], container: &ContainerLayer) -> Result<String> {
        let relative = |path: &Path| path.strip_prefix(&self.root).unwrap_or(path).display().to_string();
        let lowerdir = std::iter::once(relative(&container.init)).chain(lowers.iter().map(|layer| format!("l/{}", layer.link))).collect::<Vec<_>>().join(":");
        // The features that would keep a change outside the upper directory's plain files
        // (a renamed directory as a redirect, a chmod as metadata only) stay off: a layer
        // exported from the upper directory must hold every change.
        let options = format!("lowerdir={lowerdir},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off", relative(&container.upper), relative(&container.work));
        if options.len() >= 4096 {
            return Err(Error::runtime(format!("{} layers are more than one overlay mount can take (its options must fit in 4096 bytes)", lowers.len())));
        }
        Ok(options)
    }
    // ANCHOR_END: mount_options
}

/// The init layer's contents: what chapters 1 to 4 mount over.
const INIT_DIRECTORIES: [&str; 4] = ["proc", "dev", "sys", "etc"];
const INIT_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The names of a layer's directory while it is unpacked, and while it is removed.
const STAGING: &str = ".staging-";
const REMOVING: &str = ".removing-";

/// An flock on directory `dir`, held until the returned file is dropped.
fn lock_dir(dir: &Path, operation: libc::c_int) -> Result<fs::File> {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(dir).map_err(io_error("open", dir))?;
    // Safety: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        return Err(Error::syscall(format!("lock {}", dir.display()), nix::errno::Errno::last()));
    }
    Ok(file)
}

/// The bytes of the files below `dir` (links not followed).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn ensure(dir: &Path) -> Result<&Path> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    Ok(dir)
}

/// A reader that hashes (sha256) what passes through it: a layer as it is unpacked, a
/// blob as it is copied (step 06).
pub struct Hashing<R> {
    pub inner: R,
    pub hash: Sha256,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hash: Sha256::new() }
    }

    /// `sha256:` and the digest of everything read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hash.clone().finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Bytes as lowercase hex digits, as digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random hex digits: a layer's short name.
fn random_name() -> Result<String> {
    let mut bytes = [0u8; 8];
    // Safety: the buffer is valid for 8 bytes.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        return Err(Error::runtime("cannot read random bytes for a layer's short name"));
    }
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_name_layers_briefly_and_refuse_more_than_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayerStore::new(dir.path());
        let container = store.container("web").unwrap();
        let layer = |i: usize| Layer { digest: format!("sha256:{i:064x}"), dir: PathBuf::new(), link: format!("{i:016x}") };
        let two: Vec<Layer> = (0..2).map(layer).collect();
        assert_eq!(
            store.mount_options(&two, &container).unwrap(),
            "lowerdir=containers/web/init:l/0000000000000000:l/0000000000000001,upperdir=containers/web/upper,workdir=containers/web/work,redirect_dir=off,metacopy=off,index=off"
        );
        assert!(store.mount_options(&(0..150).map(layer).collect::<Vec<_>>(), &container).is_ok(), "150 layers fit in a page");
        let error = store.mount_options(&(0..250).map(layer).collect::<Vec<_>>(), &container).unwrap_err();
        assert!(error.message.contains("250 layers are more than one overlay mount can take"), "{}", error.message);
        assert!(store.container("../escape").is_err() && store.container(".hidden").is_err());
    }
}
