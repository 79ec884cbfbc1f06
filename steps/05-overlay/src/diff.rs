//! `docker container diff`: what a container changed, read from its upper directory.
//!
//! Everything the container wrote is in its upper directory, and nothing else is: a
//! path there is **A**dded if no lower layer had it, **C**hanged if one did (a directory
//! appears in the upper directory when something inside it changed), and a whiteout is
//! a **D**eletion. An opaque directory replaced the lowers' directory whole: it is
//! changed, and each name the lowers had in it and the upper one lacks is deleted.

use std::fmt;
use std::path::{Path, PathBuf};

use step01::{Error, Result};

use crate::archive::{upper_kind, walk_tree, UpperKind, OPAQUE_XATTR};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

/// One line of `docker container diff`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Absolute, as the container sees it.
    pub path: PathBuf,
    pub kind: Kind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.kind {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        };
        write!(f, "{letter} {}", self.path.display())
    }
}

// ANCHOR: changes
/// The changes in `upper` over `lowers` (the highest layer first, as overlay's
/// `lowerdir=` lists them), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let failed = |e: std::io::Error| Error::runtime(format!("cannot read the container's layer {}: {e}", upper.display()));
    let mut out = Vec::new();
    for relative in walk_tree(upper).map_err(failed)? {
        let path = Path::new("/").join(&relative);
        let in_lowers = in_lowers(lowers, &relative);
        match upper_kind(&upper.join(&relative)).map_err(failed)? {
            UpperKind::Whiteout => out.push(Change { path, kind: Kind::Deleted }),
            UpperKind::OpaqueDir => {
                if in_lowers {
                    // What the lowers had here and the container did not write again is gone.
                    for name in lower_names(lowers, &relative) {
                        if std::fs::symlink_metadata(upper.join(&relative).join(&name)).is_err() {
                            out.push(Change { path: path.join(&name), kind: Kind::Deleted });
                        }
                    }
                }
                out.push(Change { path, kind: if in_lowers { Kind::Changed } else { Kind::Added } });
            }
            UpperKind::Dir | UpperKind::Other => out.push(Change { path, kind: if in_lowers { Kind::Changed } else { Kind::Added } }),
        }
    }
    out.sort();
    Ok(out)
}
// ANCHOR_END: changes

/// Whether the merged lower layers show `relative`: the first layer, from the top, that
/// says anything about it or a directory above it decides. A whiteout, a file or a link
/// where a directory above it should be hides it; an opaque directory above it hides the
/// layers below. Nothing here follows a symbolic link.
pub(crate) fn in_lowers(lowers: &[PathBuf], relative: &Path) -> bool {
    let mut above: Vec<&Path> = relative.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).collect();
    above.reverse(); // the shallowest first
    for lower in lowers {
        let mut opaque_above = false;
        for dir in &above {
            match std::fs::symlink_metadata(lower.join(dir)) {
                Err(_) => break,                            // this layer says nothing about dir, so nothing below it
                Ok(meta) if !meta.is_dir() => return false, // a whiteout, a file or a link: hidden
                Ok(_) => opaque_above |= crate::archive::get_xattr(&lower.join(dir), OPAQUE_XATTR).as_deref() == Some(b"y".as_slice()),
            }
        }
        match upper_kind(&lower.join(relative)) {
            Ok(UpperKind::Whiteout) => return false,
            Ok(_) => return true,
            Err(_) if opaque_above => return false,
            Err(_) => {}
        }
    }
    false
}

/// The names the merged lowers show in directory `relative`.
fn lower_names(lowers: &[PathBuf], relative: &Path) -> Vec<std::ffi::OsString> {
    // Only real directories are read: a symbolic link in a layer leads out of it.
    let dirs = lowers.iter().map(|lower| lower.join(relative)).filter(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()));
    let mut names: Vec<std::ffi::OsString> = dirs.filter_map(|dir| std::fs::read_dir(dir).ok()).flatten().flatten().map(|e| e.file_name()).collect();
    names.sort();
    names.dedup();
    names.retain(|name| in_lowers(lowers, &relative.join(name)));
    names
}

// ANCHOR: vfs_changes
/// The changes of a full copy `rootfs` (the vfs driver) over `lowers` (the highest
/// first): with no upper directory to read, both trees are walked and compared. As in
/// an upper directory, a directory counts as changed when something below it changed.
pub fn changes_in_copy(rootfs: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    use std::collections::BTreeSet;
    let failed = |e: std::io::Error| Error::runtime(format!("cannot read {}: {e}", rootfs.display()));
    let now: BTreeSet<PathBuf> = walk_tree(rootfs).map_err(failed)?.into_iter().collect();
    let mut before = BTreeSet::new();
    for lower in lowers {
        for relative in walk_tree(lower).map_err(failed)? {
            if in_lowers(lowers, &relative) {
                before.insert(relative);
            }
        }
    }
    let mut out: Vec<Change> = Vec::new();
    for relative in now.union(&before) {
        let kind = match (before.contains(relative), now.contains(relative)) {
            (false, true) => Kind::Added,
            (true, false) => Kind::Deleted,
            _ if differs(&rootfs.join(relative), &top_copy(lowers, relative)) => Kind::Changed,
            _ => continue,
        };
        out.push(Change { path: Path::new("/").join(relative), kind });
    }
    // What was below a directory that is gone, or is now a file or a link, is not listed:
    // the change of the directory says it all, as overlay's one whiteout or one entry does.
    let real_dir = |path: &Path| std::fs::symlink_metadata(rootfs.join(path.strip_prefix("/").unwrap_or(path))).is_ok_and(|m| m.is_dir());
    out.retain(|change| change.path.ancestors().skip(1).filter(|a| *a != Path::new("/")).all(real_dir));
    let touched: BTreeSet<PathBuf> = out.iter().flat_map(|change| change.path.ancestors().skip(1).map(Path::to_path_buf).collect::<Vec<_>>()).collect();
    for dir in touched.iter().filter(|dir| dir.as_path() != Path::new("/")) {
        if !out.iter().any(|change| &change.path == dir) {
            out.push(Change { path: dir.clone(), kind: Kind::Changed });
        }
    }
    out.sort();
    Ok(out)
}
// ANCHOR_END: vfs_changes

/// The file the merged lowers show at `relative`: the one in the highest layer holding it.
fn top_copy(lowers: &[PathBuf], relative: &Path) -> PathBuf {
    lowers.iter().map(|lower| lower.join(relative)).find(|path| std::fs::symlink_metadata(path).is_ok()).unwrap_or_default()
}

/// Whether two entries differ in what a layer records: type, mode, owner, and for files
/// size and modification time (as Docker's comparison does; to the second, all a tar
/// keeps), for links their target.
fn differs(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(x), Ok(y)) = (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) else { return true };
    if x.file_type() != y.file_type() || x.mode() != y.mode() || x.uid() != y.uid() || x.gid() != y.gid() {
        return true;
    }
    if x.is_dir() {
        return false; // a directory's own entry; what is inside is compared on its own
    }
    if x.file_type().is_symlink() {
        return std::fs::read_link(a).ok() != std::fs::read_link(b).ok();
    }
    x.size() != y.size() || x.mtime() != y.mtime()
}
