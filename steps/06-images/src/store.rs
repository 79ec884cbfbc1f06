//! The content-addressed store: every blob (layer, config, manifest) kept once under its
//! sha256, checked as it comes in, and tags that point at manifests. It is laid out as an
//! OCI image layout, so that `skopeo` and `umoci` can read it:
//!
//! ```text
//! STATE_ROOT/images/
//!   oci-layout            {"imageLayoutVersion": "1.0.0"}
//!   index.json            the tags: manifest descriptors with a ref.name annotation
//!   blobs/sha256/HEX      every blob, named by the sha256 of its bytes
//! ```
//!
//! A blob is written to a temporary file beside its final place and renamed only once
//! its digest is checked: a half-written or forged blob is never found under a digest.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use step01::{Error, Result};

use crate::reference::parse_digest;

pub struct ImageStore {
    pub root: PathBuf,
}

/// The annotation an OCI image layout's index uses for a tag.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// carton's annotation on a tag that came from (or went to) a registry: the name by
/// digest there, `REGISTRY/REPOSITORY@sha256:…`, which `docker inspect` calls a RepoDigest.
pub(crate) const REPO_DIGEST: &str = "io.carton.repo-digest";

impl ImageStore {
    /// The store under `state_root`, made (empty) if it is not there.
    pub fn open(state_root: &Path) -> Result<ImageStore> {
        let root = state_root.join("images");
        let failed = |e: std::io::Error| Error::runtime(format!("cannot create the image store {}: {e}", root.display()));
        fs::create_dir_all(root.join("blobs").join("sha256")).map_err(failed)?;
        // Made once, under the index lock: two cartons starting on an empty store must not
        // replace an index the other has just tagged an image in.
        if !root.join("index.json").exists() {
            let _lock = flock(&root.join("index.lock"), Lock::Exclusive)?;
            if !root.join("oci-layout").exists() {
                write_atomically(&root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#, Durable::Yes)?;
            }
            if !root.join("index.json").exists() {
                write_atomically(&root.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#, Durable::Yes)?;
            }
        }
        Ok(ImageStore { root })
    }

    /// Remove what a carton killed in the middle of a write left behind: temporary blob
    /// files (`blobs/sha256/.tmp*`) and `load`'s staging directories (`.load-*`). Only
    /// those older than an hour: a younger one may belong to a carton still at work.
    pub(crate) fn sweep_leftovers(&self) {
        let old = |entry: &fs::DirEntry| entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
        let places = [(self.root.join("blobs").join("sha256"), ".tmp"), (self.root.clone(), ".load-")];
        for (dir, prefix) in places {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) && old(&entry) {
                    let path = entry.path();
                    let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                }
            }
        }
    }

    /// Where the blob `digest` lives (whether it is there or not).
    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let digest = parse_digest(digest)?;
        Ok(self.root.join("blobs").join("sha256").join(&digest["sha256:".len()..]))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|path| path.exists())
    }

    // ANCHOR: put_blob
    /// Store the bytes of `content` as the blob `expected` (or, with `None`, under
    /// whatever digest they have). Returns the digest and the size. Bytes that do not
    /// match the expected digest are refused, and nothing is stored.
    pub(crate) fn put_blob(&self, mut content: impl Read, expected: Option<&str>) -> Result<(String, u64)> {
        let dir = self.root.join("blobs").join("sha256");
        let mut staging = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", dir.display())))?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = content.read(&mut buffer).map_err(|e| Error::runtime(format!("cannot read the blob: {e}")))?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
            staging.write_all(&buffer[..n]).map_err(|e| Error::runtime(format!("cannot write the blob: {e}")))?;
            size += n as u64;
        }
        let digest = format!("sha256:{}", step05::store::hex(&hash.finalize()));
        if let Some(expected) = expected {
            if digest != expected {
                return Err(Error::runtime(format!("the blob's bytes have the digest {digest}, not {expected}: it was changed or damaged on its way; nothing was stored")));
            }
        }
        staging.as_file().sync_all().map_err(|e| Error::runtime(format!("cannot write the blob: {e}")))?;
        let path = self.blob_path(&digest)?;
        staging.persist(&path).map_err(|e| Error::runtime(format!("cannot store the blob {digest}: {e}")))?;
        Ok((digest, size))
    }
    // ANCHOR_END: put_blob

    /// The blob, `size` bytes, as a stream (a layer can be larger than memory), checked as
    /// it is read: the read that completes it fails if its bytes do not match its digest,
    /// so whoever consumes it (an unpacker, an upload) stops before using a changed blob.
    pub(crate) fn open_blob(&self, digest: &str, size: u64) -> Result<Verified> {
        let path = self.blob_path(digest)?;
        let file = fs::File::open(&path).map_err(|e| Error::runtime(format!("the store has no blob {digest} ({e})")))?;
        Ok(Verified { file, path, digest: digest.to_string(), size, read: 0, hash: Sha256::new() })
    }

    /// The blob's bytes, checked against its digest (a store on disk can be tampered with).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).map_err(|e| Error::runtime(format!("the store has no blob {digest} ({e})")))?;
        let actual = format!("sha256:{}", step05::store::hex(&Sha256::digest(&bytes)));
        if actual != digest {
            return Err(Error::runtime(format!("the blob {digest} in {} has been changed (its bytes have the digest {actual})", path.display())));
        }
        Ok(bytes)
    }

    /// The manifest `reference` names here: the one a pull of that very name stored (for
    /// `NAME@DIGEST` of a multi-platform image: this platform's manifest), else, for a
    /// digest, that blob if it is here; `None` when the store does not have it.
    pub fn lookup(&self, reference: &crate::Reference) -> Result<Option<String>> {
        let name = reference.to_string();
        if let Some((_, digest)) = self.tags()?.into_iter().find(|(tag, _)| *tag == name) {
            return Ok(Some(digest));
        }
        Ok(reference.digest.as_ref().filter(|digest| self.has_blob(digest)).cloned())
    }

    /// The tags: (full reference, manifest digest), from index.json.
    pub fn tags(&self) -> Result<Vec<(String, String)>> {
        let index = self.read_index()?;
        Ok(index["manifests"].as_array().into_iter().flatten().filter_map(|m| Some((m["annotations"][REF_NAME].as_str()?.to_string(), m["digest"].as_str()?.to_string()))).collect())
    }

    // ANCHOR: tag
    /// Point the tag `name` (a full reference) at the manifest `digest` (`size` bytes, of
    /// `media_type`), replacing what it pointed at. Under a lock: two carton commands at
    /// once never lose each other's tags.
    pub fn tag(&self, name: &str, digest: &str, size: u64, media_type: &str) -> Result<()> {
        self.with_index(|index| {
            let manifests = index["manifests"].as_array_mut().ok_or_else(|| Error::runtime("index.json has no manifests list"))?;
            manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(name));
            manifests.push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size, "annotations": {REF_NAME: name}}));
            Ok(())
        })
    }
    // ANCHOR_END: tag

    /// Note that the tag `name` is known to a registry as `repo_digest`.
    pub(crate) fn set_repo_digest(&self, name: &str, repo_digest: &str) -> Result<()> {
        self.with_index(|index| {
            for entry in index["manifests"].as_array_mut().into_iter().flatten() {
                if entry["annotations"][REF_NAME].as_str() == Some(name) {
                    entry["annotations"][REPO_DIGEST] = repo_digest.into();
                }
            }
            Ok(())
        })
    }

    /// The RepoDigests of the manifest `digest`: where registries know it by digest.
    pub fn repo_digests(&self, digest: &str) -> Result<Vec<String>> {
        let index = self.read_index()?;
        let mut out: Vec<String> =
            index["manifests"].as_array().into_iter().flatten().filter(|m| m["digest"].as_str() == Some(digest)).filter_map(|m| m["annotations"][REPO_DIGEST].as_str().map(String::from)).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Remove the tag `name`; returns whether there was one.
    pub(crate) fn untag(&self, name: &str) -> Result<bool> {
        let mut removed = false;
        self.with_index(|index| {
            if let Some(manifests) = index["manifests"].as_array_mut() {
                let before = manifests.len();
                manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(name));
                removed = manifests.len() != before;
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Record that container `id`, whose state directory is `holder`, uses the image
    /// `manifest` (until the returned file is removed, or `holder` is gone).
    pub fn mark_in_use(&self, id: &str, manifest: &str, holder: &Path) -> Result<PathBuf> {
        let dir = self.root.join("in-use");
        fs::create_dir_all(&dir).map_err(|e| Error::runtime(format!("cannot create {}: {e}", dir.display())))?;
        let mark = dir.join(id);
        // Not synced: a crash leaves a container for the collector, which removes both.
        write_atomically(&mark, format!("{manifest} {}", holder.display()).as_bytes(), Durable::No)?;
        Ok(mark)
    }

    /// The images containers use: (container id, manifest digest). Marks of containers
    /// that are gone (collected after a crash) are removed.
    pub fn in_use(&self) -> Result<Vec<(String, String)>> {
        let Ok(entries) = fs::read_dir(self.root.join("in-use")) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let (manifest, holder) = text.split_once(' ').unwrap_or_default();
            if !holder.is_empty() && Path::new(holder).is_dir() {
                out.push((entry.file_name().to_string_lossy().into_owned(), manifest.to_string()));
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(out)
    }

    /// Delete the blob `digest`, if it is there.
    pub(crate) fn remove_blob(&self, digest: &str) {
        if let Ok(path) = self.blob_path(digest) {
            let _ = fs::remove_file(path);
        }
    }

    /// Every blob in the store: (digest, size).
    pub fn blobs(&self) -> Result<Vec<(String, u64)>> {
        let dir = self.root.join("blobs").join("sha256");
        let entries = fs::read_dir(&dir).map_err(|e| Error::runtime(format!("cannot read {}: {e}", dir.display())))?;
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
                parse_digest(&digest).ok()?;
                Some((digest, entry.metadata().ok()?.len()))
            })
            .collect())
    }

    fn read_index(&self) -> Result<serde_json::Value> {
        let path = self.root.join("index.json");
        let text = fs::read(&path).map_err(|e| Error::runtime(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_slice(&text).map_err(|e| Error::runtime(format!("{} is not valid JSON: {e}", path.display())))
    }

    // ANCHOR: lock
    /// Hold the store: `Shared` while blobs go in that are not tagged yet (a pull, a
    /// load), `Exclusive` to delete blobs (`rmi`). Deleting every blob no tag needs is
    /// right only when nobody is half-way through storing an image.
    pub fn lock(&self, kind: Lock) -> Result<StoreLock> {
        flock(&self.root.join("store.lock"), kind).map(StoreLock)
    }
    // ANCHOR_END: lock

    fn with_index(&self, change: impl FnOnce(&mut serde_json::Value) -> Result<()>) -> Result<()> {
        let _lock = flock(&self.root.join("index.lock"), Lock::Exclusive)?;
        let mut index = self.read_index()?;
        change(&mut index)?;
        let text = serde_json::to_vec_pretty(&index).map_err(|e| Error::runtime(format!("cannot write the index: {e}")))?;
        write_atomically(&self.root.join("index.json"), &text, Durable::Yes)
    }
}

/// How [`ImageStore::lock`] holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Shared,
    Exclusive,
}

/// The store held, until this is dropped.
pub struct StoreLock(#[allow(dead_code)] fs::File); // the open descriptor is the lock

/// Take `kind` of lock on the file `path` (made if missing), waiting for it; held while
/// the returned file is open. (Step 07's container locks are these too.)
pub fn flock(path: &Path, kind: Lock) -> Result<fs::File> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::runtime(format!("cannot open the lock {}: {e}", path.display())))?;
    let operation = if kind == Lock::Exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // Safety: flock on a descriptor we own; released when `file` is closed.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        return Err(Error::runtime(format!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error())));
    }
    Ok(file)
}

/// A blob being read from the store, checked against its digest and size as it goes.
pub(crate) struct Verified {
    file: fs::File,
    path: PathBuf,
    digest: String,
    size: u64,
    read: u64,
    hash: Sha256,
}

impl Read for Verified {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buffer)?;
        self.hash.update(&buffer[..n]);
        self.read += n as u64;
        let changed = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the blob {} in {} has been changed ({what})", self.digest, self.path.display()));
        if self.read > self.size || (n == 0 && self.read < self.size) {
            return Err(changed(format!("it is not {} bytes long", self.size)));
        }
        if n > 0 && self.read == self.size {
            let actual = format!("sha256:{}", step05::store::hex(&self.hash.clone().finalize()));
            if actual != self.digest {
                return Err(changed(format!("its bytes have the digest {actual}")));
            }
        }
        Ok(n)
    }
}

/// Whether a write must reach the disk before it counts (an fsync costs about a
/// millisecond here; `carton run` should not pay it for a mark that dies with the process).
#[derive(PartialEq)]
pub enum Durable {
    Yes,
    No,
}

/// Write `bytes` to a new file beside `path` and rename it over `path`: readers see the
/// old file or the new one, never half of one. (Step 07's `state.json` is written so too.)
pub fn write_atomically(path: &Path, bytes: &[u8], durable: Durable) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", dir.display())))?;
    file.write_all(bytes).and_then(|()| if durable == Durable::Yes { file.as_file().sync_all() } else { Ok(()) }).map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))?;
    file.persist(path).map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Forget that container `id` uses an image (it is gone). Cheap when it used none: no
/// store is opened.
pub fn unmark_in_use(state_root: &Path, id: &str) {
    if !id.is_empty() && !id.contains('/') {
        let _ = fs::remove_file(state_root.join("images").join("in-use").join(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_kept_under_their_digest_and_forged_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let (digest, size) = store.put_blob(&b"hello"[..], None).unwrap();
        assert_eq!((digest.as_str(), size), ("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", 5));
        assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
        let error = store.put_blob(&b"HELLO"[..], Some(&digest)).unwrap_err();
        assert!(error.message.contains("was changed or damaged"), "{}", error.message);
        assert_eq!(fs::read_dir(dir.path().join("images/blobs/sha256")).unwrap().count(), 1, "nothing half-stored");
        // Tampering on disk is noticed when the blob is read.
        fs::write(store.blob_path(&digest).unwrap(), "bye").unwrap();
        assert!(store.read_blob(&digest).unwrap_err().message.contains("has been changed"));
    }

    #[test]
    fn leftovers_of_a_killed_write_are_swept_once_they_are_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let blobs = dir.path().join("images/blobs/sha256");
        let (old_blob, new_blob, old_load) = (blobs.join(".tmpOLD"), blobs.join(".tmpNEW"), dir.path().join("images/.load-OLD"));
        fs::write(&old_blob, "half").unwrap();
        fs::write(&new_blob, "half").unwrap();
        fs::create_dir_all(old_load.join("0")).unwrap();
        let (digest, _) = store.put_blob(&b"kept"[..], None).unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for path in [&old_blob, &old_load] {
            fs::File::open(path).unwrap().set_modified(two_hours_ago).unwrap();
        }
        fs::File::open(store.blob_path(&digest).unwrap()).unwrap().set_modified(two_hours_ago).unwrap();
        store.sweep_leftovers();
        assert!(!old_blob.exists() && !old_load.exists(), "old leftovers go");
        assert!(new_blob.exists(), "a young temporary file may be a carton at work");
        assert_eq!(store.read_blob(&digest).unwrap(), b"kept", "blobs stay, however old");
    }

    #[test]
    fn tags_live_in_an_oci_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let manifest = format!("sha256:{}", "1".repeat(64));
        store.tag("docker.io/library/busybox:latest", &manifest, 42, "application/vnd.oci.image.manifest.v1+json").unwrap();
        store.tag("docker.io/library/busybox:latest", &manifest, 42, "application/vnd.oci.image.manifest.v1+json").unwrap();
        assert_eq!(store.tags().unwrap(), [("docker.io/library/busybox:latest".to_string(), manifest.clone())]);
        assert_eq!(fs::read_to_string(dir.path().join("images/oci-layout")).unwrap(), r#"{"imageLayoutVersion":"1.0.0"}"#);
        assert!(store.untag("docker.io/library/busybox:latest").unwrap());
        assert!(store.tags().unwrap().is_empty());
    }
}
