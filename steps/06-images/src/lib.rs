//! # Step 06 — images: layers, digests, registries
//!
//! An image is an ordered list of layers plus a configuration, each named by the digest
//! of its bytes, stored once, pulled from and pushed to registries.
//!
//! - [`reference`](mod@reference): Docker's rules for image names (`busybox` is
//!   `docker.io/library/busybox:latest`);
//! - [`store`]: the content-addressed store, an OCI image layout;
//! - [`image`]: an image's manifest and config, the process it runs, its history;
//! - [`registry`]: the OCI distribution API by hand (and logins); [`pull`] and [`push`]
//!   on top of it, with [`progress`] lines or bars;
//! - [`archive`]: `save` and `load`, in Docker's format and as an OCI layout;
//! - here: making an image from a directory or a tarball, unpacking an image's layers
//!   into step 05's store, [`run`] on an overlay of them, `tag` and `remove`.

pub mod archive;
pub mod image;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod store;

pub use image::Image;
pub use reference::Reference;
pub use store::ImageStore;

use std::collections::HashSet;
use std::path::Path;

use step01::{Error, Result};

/// This step's chapter of the book, for `--explain`.
pub const CHAPTER: step01::Chapter = step01::Chapter { number: 6, title: "images: layers, digests, registries" };

/// The media types of an OCI image's parts.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

// ANCHOR: image_from_dir
/// Make a one-layer image from the directory `rootfs` (as `docker import` does with a
/// tarball), store it, and tag it `reference`. `cmd` is what it runs by default.
/// Returns the manifest's digest.
pub fn image_from_dir(store: &ImageStore, rootfs: &Path, reference: &Reference, cmd: &[&str]) -> Result<String> {
    // The layer: the directory as a tar.
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", rootfs).map_err(|e| Error::runtime(format!("cannot read {}: {e}", rootfs.display())))?;
    let tar = tar.into_inner().map_err(|e| Error::runtime(format!("cannot make the layer: {e}")))?;
    let shown = rootfs.file_name().map_or(rootfs.display().to_string(), |name| name.to_string_lossy().into_owned());
    image_from_tar(store, &tar, reference, cmd, &format!("carton: ADD {shown} /"))
}
// ANCHOR_END: image_from_dir

/// `docker import`: a root filesystem tarball (plain or gzip) as a one-layer image with no
/// default command, tagged `reference`. Returns the manifest's digest.
pub fn import(store: &ImageStore, tarball: impl std::io::Read, reference: &Reference) -> Result<String> {
    let mut bytes = Vec::new();
    let mut tarball = std::io::BufReader::new(tarball);
    std::io::Read::read_to_end(&mut tarball, &mut bytes).map_err(|e| Error::runtime(format!("cannot read the tarball: {e}")))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut plain).map_err(|e| Error::runtime(format!("cannot decompress the tarball: {e}")))?;
        bytes = plain;
    }
    // Refuse what is not a tar before it becomes an image.
    let not_tar = |e: std::io::Error| Error::runtime(format!("not a tar archive (plain or gzip), or a damaged one{}", readable_detail(&e.to_string())));
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut count = 0;
    for entry in archive.entries().map_err(not_tar)? {
        entry.map_err(not_tar)?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::runtime("the tarball holds no files: give a root filesystem as a tar archive"));
    }
    // Refuse what `run` would refuse (a name climbing out with `..`, a device node, a link
    // leading out of the layer), now rather than at the first run: unpacked once, aside.
    let scratch = tempfile::Builder::new().prefix(".import-").tempdir_in(&store.root).map_err(|e| Error::runtime(format!("cannot make a scratch directory in {}: {e}", store.root.display())))?;
    step05::archive::apply(bytes.as_slice(), scratch.path(), step05::archive::Target::Merged)?;
    drop(scratch);
    image_from_tar(store, &bytes, reference, &[], "carton import")
}

/// `: DETAIL` when the tar reader's message is plain text; nothing when it quotes the
/// damaged bytes (random input would fill the terminal with them).
fn readable_detail(detail: &str) -> String {
    if detail.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        format!(": {detail}")
    } else {
        String::new()
    }
}

// ANCHOR: image_from_tar
/// Store `tar` as the one layer of an image running `cmd`, tagged `reference`.
fn image_from_tar(store: &ImageStore, tar: &[u8], reference: &Reference, cmd: &[&str], created_by: &str) -> Result<String> {
    use sha2::Digest;
    // The layer's sha256 before compression is its diff ID, the config's name for it.
    let diff_id = format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(tar)));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, tar).and_then(|()| gzip.try_finish()).map_err(|e| Error::runtime(format!("cannot compress the layer: {e}")))?;
    let compressed = gzip.finish().map_err(|e| Error::runtime(format!("cannot compress the layer: {e}")))?;
    let _lock = store.lock(store::Lock::Shared)?; // until tagged: `rmi` must not collect these blobs
    let (layer, layer_size) = store.put_blob(compressed.as_slice(), None)?;
    let created = now_rfc3339();
    let config = serde_json::json!({
        "created": created,
        "architecture": image::host_architecture(),
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    });
    let config = serde_json::to_vec(&config).map_err(|e| Error::runtime(format!("cannot write the config: {e}")))?;
    let (config_digest, config_size) = store.put_blob(config.as_slice(), None)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer, "size": layer_size}],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::runtime(format!("cannot write the manifest: {e}")))?;
    let (manifest_digest, manifest_size) = store.put_blob(manifest.as_slice(), None)?;
    store.tag(&reference.to_string(), &manifest_digest, manifest_size, MANIFEST_TYPE)?;
    Ok(manifest_digest)
}
// ANCHOR_END: image_from_tar

// ANCHOR: add_layer
/// A new image: `base` (a manifest digest in the store; `None`: `FROM scratch`, nothing)
/// with one more layer on top, the gzip-compressed tar at `layer.0` whose uncompressed
/// digest is `layer.1` (`docker commit`, a build step), or with none (a build step that
/// changes only the config: its history entry says `empty_layer`). `edit` changes the new
/// image's config (its `config` object: Cmd, Env...), and `history` is the step's entry.
/// Tagged `reference` when given. Returns the new manifest's digest and the image id (the
/// config's digest).
pub fn add_layer(
    store: &ImageStore,
    base: Option<&str>,
    layer: Option<(&Path, &str)>,
    edit: impl FnOnce(&mut serde_json::Value),
    mut history: serde_json::Value,
    reference: Option<&Reference>,
) -> Result<(String, String)> {
    let _lock = store.lock(store::Lock::Shared)?; // until tagged: `rmi` must not collect these blobs
    let (mut manifest, mut config) = match base {
        Some(base) => {
            let manifest_bytes = store.read_blob(base)?;
            let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).map_err(|e| Error::runtime(format!("the manifest {base} is damaged: {e}")))?;
            let config_digest = manifest["config"]["digest"].as_str().ok_or_else(|| Error::runtime(format!("the manifest {base} names no config")))?.to_string();
            let config = serde_json::from_slice(&store.read_blob(&config_digest)?).map_err(|e| Error::runtime(format!("the image config {config_digest} is damaged: {e}")))?;
            (manifest, config)
        }
        None => (
            serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": {}, "layers": []}),
            serde_json::json!({"architecture": image::host_architecture(), "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}),
        ),
    };
    config["created"] = serde_json::json!(now_rfc3339());
    if let Some((path, diff_id)) = layer {
        let file = std::fs::File::open(path).map_err(|e| Error::runtime(format!("cannot read {}: {e}", path.display())))?;
        let (layer_digest, layer_size) = store.put_blob(std::io::BufReader::new(file), None)?;
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(diff_ids) => diff_ids.push(serde_json::json!(diff_id)),
            None => config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": [diff_id]}),
        }
        let layers = manifest["layers"].as_array_mut().ok_or_else(|| Error::runtime("the base image's manifest lists no layers"))?;
        layers.push(serde_json::json!({"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size}));
    } else {
        history["empty_layer"] = serde_json::json!(true);
    }
    match config["history"].as_array_mut() {
        Some(entries) => entries.push(history),
        None => config["history"] = serde_json::json!([history]),
    }
    if !config["config"].is_object() {
        config["config"] = serde_json::json!({});
    }
    edit(&mut config["config"]);
    let config = serde_json::to_vec(&config).map_err(|e| Error::runtime(format!("cannot write the config: {e}")))?;
    let (new_config, config_size) = store.put_blob(config.as_slice(), None)?;
    manifest["config"] = serde_json::json!({"mediaType": CONFIG_TYPE, "digest": new_config, "size": config_size});
    manifest["mediaType"] = serde_json::json!(MANIFEST_TYPE);
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::runtime(format!("cannot write the manifest: {e}")))?;
    let (manifest_digest, manifest_size) = store.put_blob(manifest.as_slice(), None)?;
    if let Some(reference) = reference {
        store.tag(&reference.to_string(), &manifest_digest, manifest_size, MANIFEST_TYPE)?;
    }
    Ok((manifest_digest, new_config))
}
// ANCHOR_END: add_layer

/// An image made ready to run: its layers unpacked in step 05's store.
pub struct Prepared {
    pub image: Image,
    /// The layers, the bottom one first.
    pub lowers: Vec<step05::Layer>,
    /// The store held (shared) until [`run`] has marked the image in use, so that an
    /// `rmi` cannot take its blobs and layers away in between.
    held: store::StoreLock,
}

impl Prepared {
    /// The highest layer holding `/etc/passwd`: where user names and homes are looked up.
    pub fn passwd_root(&self) -> &Path {
        self.lowers.iter().rev().map(|l| l.dir.as_path()).find(|dir| dir.join("etc/passwd").exists()).unwrap_or(Path::new("/nonexistent"))
    }
}

// ANCHOR: prepare
/// Find the image `reference` and make sure each of its layers is unpacked (once, under
/// its diff ID) in step 05's layer store.
pub fn prepare(state_root: &Path, reference: &Reference, explain: &step01::Explain) -> Result<Prepared> {
    let store = ImageStore::open(state_root)?;
    let held = store.lock(store::Lock::Shared)?;
    let image = Image::load(&store, reference)?;
    let lowers = unpack(state_root, &store, &image, explain)?;
    Ok(Prepared { image, lowers, held })
}

/// The same for an image known by its manifest's digest (a build's step, which has no name).
pub fn prepare_manifest(state_root: &Path, manifest_digest: &str, explain: &step01::Explain) -> Result<Prepared> {
    let store = ImageStore::open(state_root)?;
    let held = store.lock(store::Lock::Shared)?;
    let image = Image::from_store(&store, manifest_digest)?;
    let lowers = unpack(state_root, &store, &image, explain)?;
    Ok(Prepared { image, lowers, held })
}

/// Unpack the image's layers that are not unpacked yet, each checked against the diff ID
/// its config gives.
pub fn unpack(state_root: &Path, store: &ImageStore, image: &Image, explain: &step01::Explain) -> Result<Vec<step05::Layer>> {
    let layers = step05::LayerStore::new(state_root);
    let mut lowers = Vec::new();
    for (blob, diff_id) in image.layers().iter().zip(image.diff_ids()) {
        if let Some(layer) = layers.layer(diff_id) {
            lowers.push(layer);
            continue;
        }
        let (size, blob) = (blob.size(), blob.digest().to_string());
        let layer = layers.add_layer(uncompressed(store.open_blob(&blob, size)?)?, explain)?;
        if &layer.digest != diff_id {
            return Err(Error::runtime(format!("the layer {blob} unpacks to {}, but the image's config says {diff_id}: refusing it", layer.digest)));
        }
        lowers.push(layer);
    }
    Ok(lowers)
}
// ANCHOR_END: prepare

/// A layer blob as a tar stream: gzip is undone (OCI's `tar+gzip`, Docker's `tar.gzip`),
/// a plain tar read as it is. Told apart by their first bytes, not the media type, which
/// Docker archives do not carry.
pub fn uncompressed<'a>(blob: impl std::io::Read + 'a) -> Result<Box<dyn std::io::Read + 'a>> {
    let mut blob = std::io::BufReader::new(blob);
    let start = std::io::BufRead::fill_buf(&mut blob).map_err(|e| Error::runtime(format!("cannot read the layer: {e}")))?;
    match start {
        [0x1f, 0x8b, ..] => Ok(Box::new(flate2::read::GzDecoder::new(blob))),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Err(zstd_refused()),
        _ => Ok(Box::new(blob)),
    }
}

/// zstd layers (`tar+zstd`) are not read yet.
pub fn zstd_refused() -> Error {
    Error::runtime("the layer is compressed with zstd, which carton cannot read yet: convert the image to gzip layers (skopeo copy --dest-compress-format gzip)")
}

// ANCHOR: run
/// `carton run IMAGE`: the container `spec` describes (its process, from the image), on
/// the prepared image's layers under a writable layer of its own, with steps 01–05; wait
/// for it. Its writable layer goes when it ends (kept containers come with chapter 7).
pub fn run(prepared: Prepared, spec: &oci_spec::runtime::Spec, context: &step02::Context) -> Result<step04::Finished> {
    let layers = step05::LayerStore::new(&context.state_root);
    let name = context.id.as_str();
    let root = step05::LayeredRoot { store: &layers, driver: step05::Driver::Overlay, lowers: &prepared.lowers, name };
    // The store stays held (shared) while the container runs, so that an `rmi` waits
    // instead of taking its layers away underneath. (carton's own containers, which
    // outlive any one process, are marked in use instead: see step 07.)
    let finished = step05::run(spec, &root, context);
    drop(prepared.held);
    let removed = layers.remove_container(name);
    let finished = finished?;
    removed?;
    Ok(finished)
}
// ANCHOR_END: run

/// The time now as RFC 3339 (UTC, seconds), for an image config's `created`.
fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now(), false)
}

/// `time` as RFC 3339 in UTC (`2026-12-07T05:24:31Z`), with nanoseconds when `nanos` (as
/// runc's container records have them).
pub fn rfc3339(time: std::time::SystemTime, nanos: bool) -> String {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let fraction = if nanos { format!(".{:09}", since_epoch.subsec_nanos()) } else { String::new() };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Point `target` at the image `source` (`docker tag`).
pub fn tag(store: &ImageStore, source: &Reference, target: &Reference) -> Result<()> {
    let image = Image::load(store, source)?;
    let size = store.read_blob(&image.manifest_digest)?.len() as u64;
    let media_type = image.media_type();
    store.tag(&target.to_string(), &image.manifest_digest, size, &media_type)
}

// ANCHOR: remove
/// `docker rmi`: remove the tag, then every blob no remaining tag and no running container
/// needs, and the unpacked layers that go with them. The last name of an image a running
/// container uses is refused, unless `force`. Returns the deleted blobs.
pub fn remove(state_root: &Path, reference: &Reference, force: bool) -> Result<Vec<String>> {
    let store = ImageStore::open(state_root)?;
    // Alone: no pull or load is half-way through storing blobs it has not tagged yet.
    let _lock = store.lock(store::Lock::Exclusive)?;
    let name = reference.to_string();
    let tags = store.tags()?;
    let Some((_, manifest)) = tags.iter().find(|(tag, _)| *tag == name) else {
        return Err(Error::runtime(format!("no image {} here (`carton images` lists them)", reference.familiar())));
    };
    let in_use = store.in_use()?;
    let last_name = tags.iter().filter(|(_, digest)| digest == manifest).count() == 1;
    if let Some((container, _)) = in_use.iter().find(|(_, digest)| digest == manifest).filter(|_| last_name && !force) {
        return Err(Error::runtime(format!(
            "the image {} is in use by the running container {}; stop it first, or remove the name anyway with -f",
            reference.familiar(),
            &container[..12.min(container.len())]
        )));
    }
    // Only this image's blobs are candidates, as with Docker: dangling ones wait for prune.
    let mut its_blobs = HashSet::from([manifest.clone()]);
    if let Ok(image) = Image::from_store(&store, manifest) {
        its_blobs.insert(image.id());
        its_blobs.extend(image.layers().iter().map(|l| l.digest().to_string()));
    }
    store.untag(&name)?;
    collect(state_root, &store, Some(&its_blobs)).map(|removed| removed.into_iter().map(|(digest, _)| digest).collect())
}

/// `docker image prune`: delete every blob no tag and no running container needs (what a
/// tag that moved to a newer image, or a failed pull, left behind). Returns the deleted
/// blobs and their sizes.
pub fn prune(state_root: &Path) -> Result<Vec<(String, u64)>> {
    let store = ImageStore::open(state_root)?;
    let _lock = store.lock(store::Lock::Exclusive)?;
    collect(state_root, &store, None)
}

/// The garbage collector, under the exclusive lock: blobs nothing needs go (of
/// `candidates` only, when given), and the unpacked layers of the manifests among them
/// that no remaining image shares.
fn collect(state_root: &Path, store: &ImageStore, candidates: Option<&HashSet<String>>) -> Result<Vec<(String, u64)>> {
    let (needed_blobs, needed_layers) = needed(store)?;
    let unneeded: Vec<(String, u64)> = store.blobs()?.into_iter().filter(|(digest, _)| !needed_blobs.contains(digest) && candidates.is_none_or(|c| c.contains(digest))).collect();
    let unpacked = step05::LayerStore::new(state_root);
    // A manifest is small JSON; a layer is never read whole to find out it is not one.
    for (digest, _) in unneeded.iter().filter(|(_, size)| *size <= 4 << 20) {
        let Ok(manifest) = store.read_blob(digest).and_then(|bytes| image::parse_manifest(&bytes)) else { continue };
        let Ok(config) = store.read_blob(manifest.config().digest().as_ref()).and_then(|bytes| image::parse_config(&bytes)) else { continue };
        for diff_id in config.rootfs().diff_ids().iter().filter(|d| !needed_layers.contains(*d)) {
            unpacked.remove_layer(diff_id)?;
        }
    }
    for (digest, _) in &unneeded {
        store.remove_blob(digest);
    }
    Ok(unneeded)
}
// ANCHOR_END: remove

/// What the tagged images and the running containers need: blobs, and unpacked layers
/// (diff IDs). Of a damaged image, what can still be read of it is kept.
fn needed(store: &ImageStore) -> Result<(HashSet<String>, HashSet<String>)> {
    let (mut blobs, mut layers) = (HashSet::new(), HashSet::new());
    let mut manifests: Vec<String> = store.tags()?.into_iter().map(|(_, digest)| digest).collect();
    manifests.extend(store.in_use()?.into_iter().map(|(_, digest)| digest));
    for manifest_digest in manifests {
        let manifest = store.read_blob(&manifest_digest).and_then(|bytes| image::parse_manifest(&bytes));
        blobs.insert(manifest_digest);
        let Ok(manifest) = manifest else { continue };
        let config = manifest.config().digest().to_string();
        blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        if let Ok(config) = store.read_blob(&config).and_then(|bytes| image::parse_config(&bytes)) {
            layers.extend(config.rootfs().diff_ids().iter().cloned());
        }
        blobs.insert(config);
    }
    Ok((blobs, layers))
}

/// Delete those of `blobs` (stored by a pull or load that then failed) that no image
/// needs. Waits until no other carton is storing an image, so none of them is one that
/// another pull is about to tag.
pub(crate) fn take_back(store: &ImageStore, blobs: &[String]) -> Result<()> {
    let _lock = store.lock(store::Lock::Exclusive)?;
    let (needed, _) = needed(store)?;
    for digest in blobs.iter().filter(|d| !needed.contains(*d)) {
        store.remove_blob(digest);
    }
    Ok(())
}
// ANCHOR_END: remove

#[cfg(test)]
mod tests {
    use super::*;

    fn image(store: &ImageStore, dir: &Path, name: &str, file: &str) -> String {
        let rootfs = tempfile::tempdir_in(dir).unwrap();
        std::fs::write(rootfs.path().join("f"), file).unwrap();
        image_from_dir(store, rootfs.path(), &Reference::parse(name).unwrap(), &["sh"]).unwrap()
    }

    #[test]
    fn a_damaged_image_hides_no_other_and_can_still_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        image(&store, dir.path(), "good:1", "good");
        let damaged = image(&store, dir.path(), "damaged:1", "damaged");
        let config = Image::from_store(&store, &damaged).unwrap().id();
        std::fs::remove_file(store.blob_path(&config).unwrap()).unwrap();
        let listed: Vec<String> = image::list(&store).unwrap().iter().map(|l| l.reference.familiar()).collect();
        assert_eq!(listed, ["good:1"]);
        remove(dir.path(), &Reference::parse("damaged:1").unwrap(), false).unwrap();
        assert_eq!(store.tags().unwrap().len(), 1);
        Image::load(&store, &Reference::parse("good:1").unwrap()).unwrap();
    }

    /// Start `rmi a:1` on another thread, check that it waits as long as `holder` lives,
    /// drop `holder`, and return what the rmi deleted.
    fn rmi_of_a_waits_for<T>(root: &Path, holder: T, when: &str) -> Vec<String> {
        let (done, finished) = std::sync::mpsc::channel();
        let root = root.to_path_buf();
        let rmi = std::thread::spawn(move || {
            let removed = remove(&root, &Reference::parse("a:1").unwrap(), false);
            done.send(()).unwrap();
            removed
        });
        assert!(finished.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "rmi went ahead {when}");
        drop(holder);
        rmi.join().unwrap().unwrap()
    }

    #[test]
    fn rmi_waits_while_an_image_is_being_readied_to_run() {
        assert!(nix::unistd::Uid::effective().is_root(), "unpacking a layer sets owners: run as root (CI does)");
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        image(&store, dir.path(), "a:1", "a");
        let prepared = prepare(dir.path(), &Reference::parse("a:1").unwrap(), &step01::Explain::off()).unwrap();
        let diff_id = prepared.image.diff_ids()[0].clone();
        assert!(step05::LayerStore::new(dir.path()).layer(&diff_id).is_some(), "prepare unpacks the layer");
        // Dropped as when the start fails before the mark.
        assert_eq!(rmi_of_a_waits_for(dir.path(), prepared, "before the container marked its image").len(), 3);
        assert!(step05::LayerStore::new(dir.path()).layer(&diff_id).is_none(), "the unpacked layer went with the image");
    }

    #[test]
    fn rmi_waits_while_a_pull_or_load_is_storing_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        image(&store, dir.path(), "a:1", "a");
        let storing = store.lock(store::Lock::Shared).unwrap();
        assert_eq!(rmi_of_a_waits_for(dir.path(), storing, "while blobs were coming in").len(), 3);
    }

    #[test]
    fn created_is_rfc3339() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z') && &now[4..5] == "-" && &now[10..11] == "T", "{now}");
    }
}
