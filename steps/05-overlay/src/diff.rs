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
