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
/// says anything about it decides (a whiteout or an opaque parent hides what is below).
pub fn in_lowers(lowers: &[PathBuf], relative: &Path) -> bool {
    for lower in lowers {
        match upper_kind(&lower.join(relative)) {
            Ok(UpperKind::Whiteout) => return false,
            Ok(_) => return true,
            Err(_) if has_opaque_ancestor(lower, relative) => return false,
            Err(_) => {}
        }
    }
    false
}

fn has_opaque_ancestor(layer: &Path, relative: &Path) -> bool {
    relative.ancestors().skip(1).any(|dir| crate::archive::get_xattr(&layer.join(dir), OPAQUE_XATTR).as_deref() == Some(b"y".as_slice()))
}

/// The names the merged lowers show in directory `relative`.
fn lower_names(lowers: &[PathBuf], relative: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<std::ffi::OsString> = lowers.iter().filter_map(|lower| std::fs::read_dir(lower.join(relative)).ok()).flatten().flatten().map(|e| e.file_name()).collect();
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
    // A deleted directory is one deletion, as overlay's whiteout for it is.
    let deleted: BTreeSet<PathBuf> = out.iter().filter(|c| c.kind == Kind::Deleted).map(|c| c.path.clone()).collect();
    out.retain(|change| !(change.kind == Kind::Deleted && change.path.parent().is_some_and(|parent| deleted.contains(parent))));
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
