//! # Step 05 — layers: overlayfs
//!
//! An image is a stack of read-only layers; each container adds a thin writable layer
//! on top. overlayfs shows the stack as one directory tree: reads come from the highest
//! layer that has the file, writes go to the container's own layer (a file of a lower
//! layer is first *copied up*), and a deletion leaves a *whiteout*.
//!
//! - [`archive`]: layer tarballs in and out (whiteouts, opaque directories, hostile input).
//! - [`store`]: layers unpacked once under their digest; each container's writable layer.
//! - [`diff`]: what a container changed, in `docker container diff`'s A/C/D form.
//! - [`commit`]: a container's changes as a new layer, with its digest.
//! - [`Layered`]: the hooks that mount a container's root as an overlay of its layers,
//!   inside the container's own mount namespace.

pub mod archive;
pub mod diff;
pub mod store;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;
use sha2::{Digest, Sha256};
use step01::container::set_root_path;
use step01::{Action, Chapter, ContainerSpec, Error, Explain, Hooks, Result};
use step02::Context;

pub use store::{ContainerLayer, Layer, LayerStore};

/// The chapter this step belongs to.
pub const CHAPTER: Chapter = Chapter { number: 5, title: "layers: overlayfs" };

/// Step 05's addition to the start sequence: the root is an overlay of layers.
pub struct Layered<H: Hooks> {
    pub inner: H,
    /// Where the mount options' relative paths start (the store's root).
    pub store_root: PathBuf,
    pub options: String,
}

impl<H: Hooks> Hooks for Layered<H> {
    fn inner(&self) -> Option<&dyn Hooks> {
        Some(&self.inner)
    }

    fn inner_mut(&mut self) -> Option<&mut dyn Hooks> {
        Some(&mut self.inner)
    }

    fn child_mount_root(&self, spec: &ContainerSpec, rootfs: &Path, explain: &Explain) -> Result<()> {
        mount_overlay(&self.store_root, &self.options, rootfs, explain)?;
        self.inner.child_mount_root(spec, rootfs, explain)
    }
}

// ANCHOR: mount_root
/// Mount an overlay at `target`: `options` name the layers relative to the store's root
/// (short names, to fit many in the one page mount options may take), so the mount is made
/// standing there.
pub fn mount_overlay(store_root: &Path, options: &str, target: &Path, explain: &Explain) -> Result<()> {
    let store = store_root.display();
    explain.step(|| {
        Action::new(
            CHAPTER,
            "mount the root as an overlay: the image's layers read-only below, the container's own layer on top",
            format!("chdir(\"{store}\"); mount(\"overlay\", \"{}\", \"overlay\", 0, \"{options}\")", target.display()),
        )
        .shell(format!("cd {store} && mount -t overlay overlay -o {options} {}", target.display()))
    });
    let back = std::env::current_dir().ok();
    std::env::set_current_dir(store_root).map_err(|e| Error::runtime(format!("cannot enter {store}: {e}")))?;
    let mounted = mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options));
    if let Some(back) = back {
        let _ = std::env::set_current_dir(back);
    }
    mounted.map_err(|errno| Error::syscall(format!("cannot mount the layers at {}", target.display()), errno))
}
// ANCHOR_END: mount_root

// ANCHOR: mount_container_root
/// The root of container `name` for a runtime: `lowers` (the bottom one first) under its
/// writable layer, mounted at `target` on the host, before any runtime is called (as
/// containerd's snapshotter does). The bundle's `root.path` points there.
pub fn mount_container_root(store: &LayerStore, lowers: &[Layer], name: &str, target: &Path, explain: &Explain) -> Result<()> {
    refuse_overlay_on_overlay(&store.root)?;
    let container = store.container(name)?;
    same_driver(&container, Driver::Overlay)?;
    let top_first: Vec<Layer> = lowers.iter().rev().cloned().collect();
    let options = store.mount_options(&top_first, &container)?;
    std::fs::create_dir_all(target).map_err(|e| Error::runtime(format!("cannot create {}: {e}", target.display())))?;
    mount_overlay(&store.root, &options, target, explain)
}
// ANCHOR_END: mount_container_root

/// Unmount a container's root (a no-op when it is not mounted). Detached: a process of
/// the host standing in it (a shell's cwd) does not keep the container from going.
pub fn unmount_container_root(target: &Path) {
    let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW);
}

/// A container's changes, written as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// `sha256:` of the file as written (compressed or not): how a manifest names it.
    pub digest: String,
    /// `sha256:` of the uncompressed tar: how an image config's `rootfs.diff_ids` names it.
    pub diff_id: String,
    pub size: u64,
}

// ANCHOR: commit
/// `docker commit`'s layer: the container's upper directory as a tar (gzip-compressed
/// if asked), written to `out`, with both digests.
pub fn commit(upper: &Path, out: &Path, gzip: bool) -> Result<Committed> {
    let file = File::create(out).map_err(|e| Error::runtime(format!("cannot create {}: {e}", out.display())))?;
    let mut written = Counting::new(BufWriter::new(file));
    let diff_id = if gzip {
        let mut compressed = flate2::write::GzEncoder::new(&mut written, flate2::Compression::default());
        let diff_id = tar_with_digest(upper, &mut compressed)?;
        compressed.finish().map_err(|e| Error::runtime(format!("cannot compress the layer: {e}")))?;
        diff_id
    } else {
        tar_with_digest(upper, &mut written)?
    };
    written.inner.flush().map_err(|e| Error::runtime(format!("cannot write {}: {e}", out.display())))?;
    Ok(Committed { digest: written.digest(), diff_id, size: written.size })
}
// ANCHOR_END: commit

fn tar_with_digest(upper: &Path, out: impl Write) -> Result<String> {
    let mut plain = Counting::new(out);
    archive::export(upper, &mut plain)?;
    Ok(plain.digest())
}

/// A writer that hashes and counts what passes through it (a layer's digest and size as it
/// is written; step 11's COPY layers use it too).
pub struct Counting<W> {
    pub inner: W,
    pub hash: Sha256,
    pub size: u64,
}

impl<W> Counting<W> {
    pub fn new(inner: W) -> Counting<W> {
        Counting { inner, hash: Sha256::new(), size: 0 }
    }

    /// `sha256:` of what went through so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", store::hex(&self.hash.clone().finalize()))
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How a container's root is made from its layers (`--storage-driver`, as podman's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// An overlay mount: layers shared, the container's writes in its upper directory.
    Overlay,
    /// A full copy per container: for file systems overlayfs cannot use.
    Vfs,
}

impl std::str::FromStr for Driver {
    type Err = Error;
    fn from_str(text: &str) -> Result<Driver> {
        match text {
            "overlay" | "overlay2" => Ok(Driver::Overlay),
            "vfs" => Ok(Driver::Vfs),
            other => Err(Error::runtime(format!("unknown storage driver {other:?}: choose overlay or vfs"))),
        }
    }
}

/// A container's root made of layers: the image's `lowers` (the bottom one first) under
/// the writable layer `name`, kept in `store` by `driver`.
pub struct LayeredRoot<'a> {
    pub store: &'a LayerStore,
    pub driver: Driver,
    pub lowers: &'a [Layer],
    pub name: &'a str,
}

// ANCHOR: run
/// Run the container `spec` describes on `root` with steps 01–04 (this step's part of
/// the spec is `root.path`: it is set to the merged layers); wait for it. The writable
/// layer stays afterwards, for a diff, a commit or another run.
pub fn run(spec: &Spec, root: &LayeredRoot, context: &Context) -> Result<step04::Finished> {
    let LayeredRoot { store, driver, lowers, name } = *root;
    let mut spec = spec.clone();
    if driver == Driver::Vfs {
        same_driver(&store.container(name)?, driver)?;
        set_root_path(&mut spec, store.copy_root(name, lowers, &context.explain)?);
        return step04::run(&spec, context);
    }
    refuse_overlay_on_overlay(&store.root)?;
    let container = store.container(name)?;
    same_driver(&container, driver)?;
    let top_first: Vec<Layer> = lowers.iter().rev().cloned().collect();
    let mount_options = store.mount_options(&top_first, &container)?;
    set_root_path(&mut spec, container.merged.clone());
    step04::run_with(&spec, context, |inner| Layered { inner, store_root: store.root.clone(), options: mount_options })
}
// ANCHOR_END: run

fn existing(store: &LayerStore, name: &str) -> Result<()> {
    if store.has_container(name) {
        Ok(())
    } else {
        Err(Error::runtime(format!("there is no container layer {name}; a `run` makes it")))
    }
}

/// A container layer is kept in one driver's way (an upper directory, or a full copy):
/// the first use records which, and a later one with the other driver is refused.
fn same_driver(layer: &ContainerLayer, driver: Driver) -> Result<()> {
    let (name, record) = (&layer.name, layer.upper.with_file_name("driver"));
    let wanted = match driver {
        Driver::Overlay => "overlay",
        Driver::Vfs => "vfs",
    };
    match std::fs::read_to_string(&record) {
        Ok(made_by) if made_by != wanted => Err(Error::runtime(format!("the container layer {name} was made by the {made_by} driver; give --storage-driver {made_by}"))),
        Ok(_) => Ok(()),
        Err(_) => std::fs::write(&record, wanted).map_err(|e| Error::runtime(format!("cannot write {}: {e}", record.display()))),
    }
}

/// overlayfs cannot take its upper directory from another overlayfs (a container's own
/// root, a live system): say so before trying, with the two ways out.
fn refuse_overlay_on_overlay(store_root: &Path) -> Result<()> {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    std::fs::create_dir_all(store_root).map_err(|e| Error::runtime(format!("cannot create {}: {e}", store_root.display())))?;
    match nix::sys::statfs::statfs(store_root) {
        Ok(fs) if fs.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC => Err(Error::runtime(format!(
            "{} is itself on overlayfs, which overlayfs cannot use for a container's writable layer; \
             put carton's state on a disk file system (CARTON_ROOT, or carton --root), or use the copy-based --storage-driver vfs",
            store_root.display()
        ))),
        _ => Ok(()),
    }
}

/// What container `name` changed over `lowers` (the bottom one first).
pub fn changes(store: &LayerStore, driver: Driver, name: &str, lowers: &[Layer]) -> Result<Vec<diff::Change>> {
    existing(store, name)?;
    let layer = store.container(name)?;
    same_driver(&layer, driver)?;
    let top_first: Vec<PathBuf> = lowers.iter().rev().map(|l| l.dir.clone()).collect();
    match driver {
        Driver::Overlay => diff::changes(&layer.upper, &top_first),
        // The init layer is a lower too: its mount points are not the container's changes.
        Driver::Vfs => diff::changes_in_copy(&layer.upper.with_file_name("rootfs"), &[vec![layer.init.clone()], top_first].concat()),
    }
}

/// `docker commit`'s layer for container `name`, whichever driver made it.
pub fn commit_container(store: &LayerStore, driver: Driver, name: &str, lowers: &[Layer], out: &Path, gzip: bool) -> Result<Committed> {
    existing(store, name)?;
    let layer = store.container(name)?;
    same_driver(&layer, driver)?;
    match driver {
        Driver::Overlay => commit(&layer.upper, out, gzip),
        Driver::Vfs => {
            // The copy's changes, laid out as an upper directory would hold them.
            let upper = tempfile::tempdir_in(&store.root).map_err(|e| Error::runtime(format!("cannot make a scratch directory: {e}")))?;
            let rootfs = layer.upper.with_file_name("rootfs");
            for change in changes(store, driver, name, lowers)? {
                let relative = change.path.strip_prefix("/").unwrap_or(&change.path);
                lay_out(&rootfs.join(relative), &upper.path().join(relative), change.kind)?;
            }
            commit(upper.path(), out, gzip)
        }
    }
}

/// Put one change into a scratch upper directory: a link to the file (same inode, so
/// owner, mode and time come along), a directory like the original, or a whiteout.
/// `changes_in_copy` lists nothing below a path that is not a real directory, and the
/// scratch directory holds only what this function made, so no step here follows a link
/// the container planted; each parent is checked again all the same.
fn lay_out(from: &Path, to: &Path, kind: diff::Kind) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let failed = |e: std::io::Error| Error::runtime(format!("cannot lay out {}: {e}", to.display()));
    if !to.parent().is_some_and(|parent| std::fs::symlink_metadata(parent).is_ok_and(|m| m.is_dir())) {
        return Err(Error::runtime(format!("cannot lay out {}: its directory is not a plain directory", to.display())));
    }
    if kind == diff::Kind::Deleted {
        return nix::sys::stat::mknod(to, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).map_err(|errno| Error::syscall("make a whiteout", errno));
    }
    let meta = std::fs::symlink_metadata(from).map_err(failed)?;
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(failed)?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(failed)?;
        std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777)).map_err(failed)
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from).map_err(failed)?, to).map_err(failed)?;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(failed)
    } else {
        std::fs::hard_link(from, to).map_err(failed)
    }
}
