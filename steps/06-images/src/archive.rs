//! `save` and `load`: images as one tar file, as `docker save` and `docker load` make and
//! read them.
//!
//! Two formats of image archive are in use, and carton writes a tar that is both at once,
//! as Docker 25 and later do:
//!
//! ```text
//! oci-layout          ┐ an OCI image layout, like carton's store: index.json names each
//! index.json          │ image's manifest, which names its config and layers, all of them
//! blobs/sha256/HEX    ┘ blobs under their digest (what `skopeo copy … oci-archive:` writes)
//! manifest.json       ┐ Docker's format: for each image its config file, its layer files
//! repositories        ┘ and its names, [{"Config": …, "RepoTags": […], "Layers": […]}]
//! ```
//!
//! index.json names each image twice, by annotations: `io.containerd.image.name`, which
//! Docker reads, and `org.opencontainers.image.ref.name`, which skopeo reads. Both hold the
//! full name (`docker.io/library/busybox:latest`), as carton's store does; Docker puts only
//! the tag in the second, and loading prefers the first.
//!
//! Docker's older archives (and `skopeo copy … docker-archive:`) have only the Docker part,
//! with the config at `HEX.json` and the layers at `HEX.tar` or `ID/layer.tar` (sometimes a
//! link to another file of the archive). They carry no manifest: carton writes an OCI
//! manifest for each such image as it loads it.
//!
//! `load` reads its input once, from start to end, as it may be a pipe. Each file goes to
//! a staging directory inside the store, named by a counter (never by its name in the
//! archive, which could be `../../etc/passwd`), and is hashed on its way: as it is (its
//! digest), and with its gzip undone (a layer's diff ID). Then every digest is checked, and
//! only then are the blobs stored and the images tagged.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use step01::{Error, Result};

use crate::image::{self, Image};
use crate::reference::{parse_digest, Reference};
use crate::store::{ImageStore, REF_NAME};
use crate::{CONFIG_TYPE, LAYER_TYPE, MANIFEST_TYPE};

/// The annotation containerd (and so Docker) reads for an image's full name.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The media type of a layer that is a plain tar.
pub(crate) const PLAIN_LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// One image `load` stored: under a name, or, for an image the archive does not name,
/// with `reference` `None` (`docker load` then prints its ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub reference: Option<Reference>,
    pub manifest_digest: String,
    /// The config's digest: what Docker calls the image ID.
    pub id: String,
}

// ANCHOR: save
/// `docker save`: write the images `references` (all in `store`) as one tar to `out`,
/// both an OCI image layout and a Docker archive. Each blob is written once, with fixed
/// owners and times: saving the same images twice gives the same bytes.
pub fn save(store: &ImageStore, references: &[Reference], out: impl Write) -> Result<()> {
    // Each image once, with the names it is saved under (a name by digest names no tag).
    let mut images: Vec<(Image, Vec<Reference>)> = Vec::new();
    for reference in references {
        let image = Image::load(store, reference)?;
        let name = Some(reference.clone()).filter(|r| r.digest.is_none());
        match images.iter_mut().find(|(seen, _)| seen.manifest_digest == image.manifest_digest) {
            Some((_, names)) => names.extend(name.filter(|n| !names.contains(n))),
            None => images.push((image, name.into_iter().collect())),
        }
    }

    let mut tar = tar::Builder::new(out);
    add_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_directory(&mut tar, "blobs/")?;
    add_directory(&mut tar, "blobs/sha256/")?;
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let (mut index, mut docker, mut repositories) = (Vec::new(), Vec::new(), BTreeMap::new());
    for (image, names) in &images {
        let layers: Vec<String> = image.layers().iter().map(|l| l.digest().to_string()).collect();
        for digest in layers.iter().chain([&image.id(), &image.manifest_digest]) {
            if !sizes.contains_key(digest) {
                sizes.insert(digest.clone(), add_blob(&mut tar, store, digest)?);
            }
        }
        // The OCI part: one entry of index.json for each name.
        let media_type = image.media_type();
        let descriptor = json!({"mediaType": media_type, "digest": image.manifest_digest, "size": sizes[&image.manifest_digest]});
        if names.is_empty() {
            index.push(descriptor.clone());
        }
        for name in names {
            let mut named = descriptor.clone();
            named["annotations"] = json!({CONTAINERD_NAME: name.to_string(), REF_NAME: name.to_string()});
            index.push(named);
        }
        // The Docker part: the image's files and names in manifest.json, and the
        // `repositories` file older Dockers read (each tag to the top layer).
        let tags: Vec<String> = names.iter().map(Reference::familiar).collect();
        docker.push(json!({"Config": blob_name(&image.id()), "RepoTags": tags, "Layers": layers.iter().map(|l| blob_name(l)).collect::<Vec<_>>()}));
        if let Some(top) = layers.last() {
            for name in names {
                let repository = Reference { tag: None, ..name.clone() }.familiar();
                let tag = name.tag.clone().unwrap_or_default();
                repositories.entry(repository).or_insert_with(BTreeMap::new).insert(tag, top["sha256:".len()..].to_string());
            }
        }
    }
    add_file(&mut tar, "index.json", &to_json(&json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": index}))?)?;
    add_file(&mut tar, "manifest.json", &to_json(&Value::Array(docker))?)?;
    if !repositories.is_empty() {
        add_file(&mut tar, "repositories", &to_json(&json!(repositories))?)?;
    }
    let failed = |e: std::io::Error| Error::runtime(format!("cannot write the archive: {e}"));
    tar.into_inner().map_err(failed)?.flush().map_err(failed)
}
// ANCHOR_END: save

// ANCHOR: load
/// `docker load`: read an image archive (carton's and Docker's format, Docker's older
/// format, or an OCI layout as a tar; plain or gzip) from `input`, store its images and
/// tag them. Nothing is stored before every digest of every image has been checked.
pub fn load(store: &ImageStore, input: impl Read) -> Result<Vec<Loaded>> {
    store.sweep_leftovers();
    // 1. One pass over the input: every file staged (under a number) and hashed.
    let staging = tempfile::Builder::new().prefix(".load-").tempdir_in(&store.root).map_err(|e| Error::runtime(format!("cannot make a staging directory in {}: {e}", store.root.display())))?;
    let files = Files::stage(input, staging.path())?;

    // 2. Which images the archive holds, each checked: the OCI layout's index if there is
    //    one (its manifests are kept, so their digests stay), else Docker's manifest.json.
    let images = if files.contains("index.json") {
        oci_images(&files)?
    } else if files.contains("manifest.json") {
        docker_images(&files)?
    } else {
        return Err(Error::runtime("not an image archive: it has neither manifest.json (the format of `docker save`) nor index.json (an OCI image layout)"));
    };
    if images.is_empty() {
        return Err(Error::runtime("nothing to load: the archive lists no image (its manifest.json or index.json is empty)"));
    }

    // 3. Store each image's blobs, verified once more on their way in, then name it.
    let _lock = store.lock(crate::store::Lock::Shared)?; // until tagged: `rmi` must not collect these blobs
    let mut loaded = Vec::new();
    for image in &images {
        for blob in &image.blobs {
            if !store.has_blob(&blob.digest) {
                let file = File::open(&blob.file).map_err(|e| Error::runtime(format!("cannot read a staged file: {e}")))?;
                store.put_blob(file, Some(&blob.digest))?;
            }
        }
        let (digest, size) = store.put_blob(image.manifest.as_slice(), Some(&image.manifest_digest))?;
        for name in &image.names {
            store.tag(&name.to_string(), &digest, size, &image.media_type)?;
        }
        let names = if image.names.is_empty() { vec![None] } else { image.names.iter().cloned().map(Some).collect() };
        loaded.extend(names.into_iter().map(|reference| Loaded { reference, manifest_digest: digest.clone(), id: image.id.clone() }));
    }
    Ok(loaded)
}
// ANCHOR_END: load

/// An image found in an archive and checked, ready to be stored.
struct Checked<'a> {
    names: Vec<Reference>,
    /// Its config and layers.
    blobs: Vec<&'a Staged>,
    manifest: Vec<u8>,
    manifest_digest: String,
    media_type: String,
    id: String,
}

/// The images of an OCI layout: those its index.json names (a multi-platform image is
/// this machine's platform of it).
fn oci_images(files: &Files) -> Result<Vec<Checked<'_>>> {
    let index = files.json("index.json")?;
    let descriptors = index["manifests"].as_array().ok_or_else(|| Error::runtime("the archive's index.json has no list of manifests"))?;
    let mut images: Vec<Checked> = Vec::new();
    for descriptor in descriptors {
        let annotations = &descriptor["annotations"];
        let names = match annotations[CONTAINERD_NAME].as_str().or(annotations[REF_NAME].as_str()) {
            Some(name) => vec![parse_name(name, "index.json")?],
            None => Vec::new(),
        };
        let (manifest, media_type) = platform_manifest(files, descriptor, 0)?;
        if let Some(same) = images.iter_mut().find(|image| image.manifest_digest == manifest.digest) {
            for name in names {
                if !same.names.contains(&name) {
                    same.names.push(name);
                }
            }
            continue;
        }
        let bytes = manifest.read()?;
        let parsed = image::parse_manifest(&bytes).map_err(|e| Error::runtime(format!("the archive's manifest {}: {}", manifest.digest, e.message)))?;
        let config = files.blob(parsed.config().digest().as_ref(), Some(parsed.config().size()))?;
        let mut layers = Vec::new();
        for layer in parsed.layers() {
            let digest = layer.digest().to_string();
            layers.push((blob_name(&digest), files.blob(&digest, Some(layer.size()))?));
        }
        images.push(check(names, bytes, media_type, config, layers)?);
    }
    Ok(images)
}

/// The manifest a descriptor of index.json leads to, and its media type: the
/// descriptor's own, or, for an image index (a multi-platform image), the one for this
/// machine's platform.
fn platform_manifest<'a>(files: &'a Files, descriptor: &Value, depth: usize) -> Result<(&'a Staged, String)> {
    let digest = descriptor["digest"].as_str().ok_or_else(|| Error::runtime("the archive's index names a manifest without a digest"))?;
    let staged = files.blob(digest, descriptor["size"].as_u64())?;
    let bytes = staged.read()?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| Error::runtime(format!("the archive's blob {digest} is not valid JSON: {e}")))?;
    let media_type = descriptor["mediaType"].as_str().or(json["mediaType"].as_str()).unwrap_or(MANIFEST_TYPE).to_string();
    let is_index = media_type == INDEX_TYPE || media_type == DOCKER_LIST_TYPE || json["manifests"].is_array();
    if !is_index {
        return Ok((staged, media_type));
    }
    if depth > 4 {
        return Err(Error::runtime(format!("the archive's image index {digest} nests indexes too deep")));
    }
    let chosen = crate::image::choose_platform(&bytes).map_err(|e| Error::runtime(format!("the archive's image {digest}: {}", e.message)))?;
    let chosen = serde_json::to_value(&chosen).map_err(|e| Error::runtime(format!("cannot read the archive's image {digest}: {e}")))?;
    platform_manifest(files, &chosen, depth + 1)
}

/// The images of a Docker archive: those its manifest.json lists, each given the OCI
/// manifest the format lacks.
fn docker_images(files: &Files) -> Result<Vec<Checked<'_>>> {
    let list = files.json("manifest.json")?;
    let entries = list.as_array().ok_or_else(|| Error::runtime("the archive's manifest.json is not a list of images"))?;
    let mut images = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let field = |key: &str| Error::runtime(format!("image {} of the archive's manifest.json has no {key:?}", n + 1));
        let config = files.get(entry["Config"].as_str().ok_or_else(|| field("Config"))?)?;
        let mut layers = Vec::new();
        for layer in entry["Layers"].as_array().ok_or_else(|| field("Layers"))? {
            let name = layer.as_str().ok_or_else(|| field("Layers"))?;
            layers.push((name.to_string(), files.get(name)?));
        }
        let mut names = Vec::new();
        for tag in entry["RepoTags"].as_array().into_iter().flatten() {
            names.push(parse_name(tag.as_str().unwrap_or_default(), "manifest.json")?);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
            "layers": layers.iter().map(|(_, layer)| json!({
                "mediaType": if layer.gzip { LAYER_TYPE } else { PLAIN_LAYER_TYPE },
                "digest": layer.digest,
                "size": layer.size,
            })).collect::<Vec<_>>(),
        });
        images.push(check(names, to_json(&manifest)?, MANIFEST_TYPE.to_string(), config, layers)?);
    }
    Ok(images)
}

/// Check an image found in an archive: its config parses and each layer, unpacked, has
/// the digest the config lists for it (its diff ID), in order.
fn check<'a>(names: Vec<Reference>, manifest: Vec<u8>, media_type: String, config: &'a Staged, layers: Vec<(String, &'a Staged)>) -> Result<Checked<'a>> {
    let parsed = image::parse_config(&config.read()?).map_err(|e| Error::runtime(format!("the archive's config {}: {}", config.digest, e.message)))?;
    let diff_ids = parsed.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(Error::runtime(format!("an image of the archive has {} layers but its config lists {} diff IDs; nothing was loaded", layers.len(), diff_ids.len())));
    }
    for ((name, layer), expected) in layers.iter().zip(diff_ids) {
        match &layer.diff_id {
            Ok(actual) if actual == expected => {}
            Ok(actual) => {
                return Err(Error::runtime(format!("the layer {name} of the archive unpacks to {actual}, but the image's config says {expected}: it was changed or damaged; nothing was loaded")))
            }
            Err(why) => return Err(Error::runtime(format!("cannot check the layer {name} of the archive: {why}; nothing was loaded"))),
        }
    }
    let manifest_digest = sha256(&manifest);
    let mut blobs = vec![config];
    blobs.extend(layers.iter().map(|(_, layer)| *layer));
    Ok(Checked { names, blobs, manifest, manifest_digest, media_type, id: config.digest.clone() })
}

/// An image's name as an archive spells it (`busybox:latest`, or in full).
fn parse_name(name: &str, file: &str) -> Result<Reference> {
    Reference::parse(name).map_err(|e| Error::runtime(format!("the archive's {file} names an image {name:?}, which is not a valid name: {}", e.message)))
}

/// A regular file of the archive, copied into the staging directory.
struct Staged {
    file: PathBuf,
    size: u64,
    /// The sha256 of its bytes.
    digest: String,
    /// The sha256 of its bytes with gzip undone (of a plain file: its digest), or why
    /// that is not known.
    diff_id: std::result::Result<String, String>,
    gzip: bool,
}

impl Staged {
    fn read(&self) -> Result<Vec<u8>> {
        fs::read(&self.file).map_err(|e| Error::runtime(format!("cannot read a staged file {}: {e}", self.file.display())))
    }
}

/// What an entry of the archive is, found by its name inside the archive.
enum Item {
    File(Staged),
    /// A link, to the (normalized) name of another entry.
    Link(String),
}

/// The files of an archive, staged.
struct Files {
    items: HashMap<String, Item>,
}

impl Files {
    /// Read the whole archive once, copying each regular file into `dir` as it comes.
    fn stage(input: impl Read, dir: &Path) -> Result<Files> {
        let mut input = BufReader::new(input);
        let head = input.fill_buf().map_err(|e| Error::runtime(format!("cannot read the archive: {e}")))?;
        let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(input)) } else { Box::new(input) };
        let not_tar = |e: std::io::Error| Error::runtime(format!("cannot read the archive: {e} (an image archive is a tar file, as `docker save` writes)"));
        let mut archive = tar::Archive::new(input);
        let mut items = HashMap::new();
        for (count, entry) in archive.entries().map_err(not_tar)?.enumerate() {
            let mut entry = entry.map_err(not_tar)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            // A name climbing out of the archive names nothing in it: skipped.
            let Some(name) = normalize("", &raw) else { continue };
            let kind = entry.header().entry_type();
            let link = entry.link_name_bytes().map(|target| String::from_utf8_lossy(&target).into_owned());
            let item = match (kind, link) {
                (kind, _) if kind.is_file() || kind == tar::EntryType::Continuous => Item::File(stage_file(&mut entry, &dir.join(count.to_string()))?),
                // A symbolic link is relative to its directory, a hard link to the archive.
                (tar::EntryType::Symlink, Some(target)) => match normalize(name.rsplit_once('/').map_or("", |(parent, _)| parent), &target) {
                    Some(target) => Item::Link(target),
                    None => continue,
                },
                (tar::EntryType::Link, Some(target)) => match normalize("", &target) {
                    Some(target) => Item::Link(target),
                    None => continue,
                },
                _ => continue,
            };
            items.insert(name, item);
        }
        Ok(Files { items })
    }

    fn contains(&self, name: &str) -> bool {
        self.items.contains_key(name)
    }

    /// The file `name` of the archive, its links followed (inside the archive only).
    fn get(&self, name: &str) -> Result<&Staged> {
        let missing = || Error::runtime(format!("the archive has no file {name:?}, which it refers to; it is incomplete or damaged"));
        let mut at = normalize("", name).ok_or_else(missing)?;
        for _ in 0..32 {
            match self.items.get(&at).ok_or_else(missing)? {
                Item::File(staged) => return Ok(staged),
                Item::Link(target) => at = target.clone(),
            }
        }
        Err(Error::runtime(format!("the archive's file {name:?} is a loop of links")))
    }

    /// The blob `digest` of an OCI layout (`blobs/sha256/HEX`), checked against its digest
    /// and the size its descriptor gives.
    fn blob(&self, digest: &str, size: Option<u64>) -> Result<&Staged> {
        let digest = parse_digest(digest).map_err(|e| Error::runtime(format!("the archive refers to a blob by an {}", e.message)))?;
        let staged = self.get(&blob_name(&digest))?;
        if staged.digest != digest {
            return Err(Error::runtime(format!("the archive's blob {digest} has the digest {}: it was changed or damaged; nothing was loaded", staged.digest)));
        }
        if size.is_some_and(|size| size != staged.size) {
            return Err(Error::runtime(format!("the archive's blob {digest} has {} bytes, not the {} its descriptor says; nothing was loaded", staged.size, size.unwrap_or_default())));
        }
        Ok(staged)
    }

    fn json(&self, name: &str) -> Result<Value> {
        serde_json::from_slice(&self.get(name)?.read()?).map_err(|e| Error::runtime(format!("the archive's {name} is not valid JSON: {e}")))
    }
}

/// Copy one file of the archive to `path`, hashing it on its way, as it is and unpacked.
fn stage_file(mut entry: impl Read, path: &Path) -> Result<Staged> {
    let failed = |e: std::io::Error| Error::runtime(format!("cannot stage a file of the archive in {}: {e}", path.display()));
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(failed)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    // The unpacked hash: gzip is recognised by its first bytes, as `uncompressed` does.
    let mut unpacked: Option<Unpacked> = None;
    loop {
        let n = read_full(&mut entry, &mut buffer).map_err(|e| Error::runtime(format!("cannot read the archive: {e}")))?;
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        let unpacked = unpacked.get_or_insert_with(|| match chunk {
            [0x1f, 0x8b, ..] => Unpacked::Gzip(Box::new(flate2::write::GzDecoder::new(Sha256::new()))),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Unpacked::Failed("it is compressed with zstd, which carton cannot read yet".into()),
            _ => Unpacked::Plain,
        });
        unpacked.feed(chunk);
        hash.update(chunk);
        file.write_all(chunk).map_err(failed)?;
        size += n as u64;
    }
    let digest = format!("sha256:{}", step05::store::hex(&hash.finalize()));
    let gzip = matches!(unpacked, Some(Unpacked::Gzip(_)));
    let diff_id = match unpacked.unwrap_or(Unpacked::Plain) {
        Unpacked::Plain => Ok(digest.clone()),
        Unpacked::Gzip(mut decoder) => match decoder.try_finish().and_then(|()| decoder.finish()) {
            Ok(hash) => Ok(format!("sha256:{}", step05::store::hex(&hash.finalize()))),
            Err(e) => Err(format!("its gzip is damaged: {e}")),
        },
        Unpacked::Failed(why) => Err(why),
    };
    Ok(Staged { file: path.to_path_buf(), size, digest, diff_id, gzip })
}

/// The hash of a file's bytes with its compression undone, computed as it streams by.
enum Unpacked {
    Plain,
    Gzip(Box<flate2::write::GzDecoder<Sha256>>),
    Failed(String),
}

impl Unpacked {
    fn feed(&mut self, mut bytes: &[u8]) {
        let Unpacked::Gzip(decoder) = self else { return };
        while !bytes.is_empty() {
            match decoder.write(bytes) {
                // The gzip stream has ended: what follows is ignored, as reading it would.
                Ok(0) => break,
                Ok(n) => bytes = &bytes[n..],
                Err(e) => {
                    *self = Unpacked::Failed(format!("its gzip is damaged: {e}"));
                    return;
                }
            }
        }
    }
}

/// Read until `buffer` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `name` as a plain path inside the archive, from the directory `base`: `a/./b` and
/// `a/c/../b` are `a/b`, a leading `/` is the archive's top. `None` when it climbs out.
fn normalize(base: &str, name: &str) -> Option<String> {
    let mut parts: Vec<&str> = if name.starts_with('/') { Vec::new() } else { base.split('/').filter(|p| !p.is_empty()).collect() };
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Where an OCI layout keeps the blob `digest`: `blobs/sha256/HEX`.
fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", step05::store::hex(&Sha256::digest(bytes)))
}

fn to_json(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::runtime(format!("cannot write JSON: {e}")))
}

/// A tar header with fixed owner and time, so that the same content gives the same bytes.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn add_directory(tar: &mut tar::Builder<impl Write>, name: &str) -> Result<()> {
    tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), name, std::io::empty()).map_err(|e| Error::runtime(format!("cannot write the archive: {e}")))
}

fn add_file(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> Result<()> {
    tar.append_data(&mut header(tar::EntryType::Regular, 0o644, bytes.len() as u64), name, bytes).map_err(|e| Error::runtime(format!("cannot write the archive: {e}")))
}

/// Copy the blob `digest` from the store into the archive, checking its digest on the
/// way (a store on disk can be tampered with). Returns its size.
fn add_blob(tar: &mut tar::Builder<impl Write>, store: &ImageStore, digest: &str) -> Result<u64> {
    let path = store.blob_path(digest)?;
    let file = File::open(&path).map_err(|e| Error::runtime(format!("the store has no blob {digest} ({e})")))?;
    let size = file.metadata().map_err(|e| Error::runtime(format!("cannot read {}: {e}", path.display())))?.len();
    let mut reader = step05::store::Hashing::new(file.take(size));
    tar.append_data(&mut header(tar::EntryType::Regular, 0o644, size), blob_name(digest), &mut reader).map_err(|e| Error::runtime(format!("cannot write the archive: {e}")))?;
    let actual = reader.digest();
    if actual != digest {
        return Err(Error::runtime(format!("the blob {digest} in {} has been changed (its bytes have the digest {actual}); the archive is not usable", path.display())));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_stay_inside_the_archive() {
        assert_eq!(normalize("", "./a/./b").as_deref(), Some("a/b"));
        assert_eq!(normalize("x", "../y/layer.tar").as_deref(), Some("y/layer.tar"));
        assert_eq!(normalize("x", "/y").as_deref(), Some("y"));
        assert_eq!(normalize("", "../escape"), None);
        assert_eq!(normalize("x", "../../etc/passwd"), None);
    }
}
