//! `save` and `load`: carton's archives read by skopeo, skopeo's read by carton, and
//! damaged or hostile archives refused with nothing stored. Needs skopeo
//! (apt-get install skopeo); no root.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use sha2::Digest;
use step06::archive::{self, Loaded};
use step06::{Image, ImageStore, Reference};

/// A small image made from a few files, stored and tagged `name`; returns its manifest digest.
fn make_image(store: &ImageStore, dir: &Path, name: &str, cmd: &str, files: &[(&str, &str)]) -> String {
    let rootfs = tempfile::tempdir_in(dir).unwrap();
    // One time for every file: the same files make the same layer, even when the two
    // images are made on either side of a second's turn.
    let time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (path, text) in files {
        std::fs::write(rootfs.path().join(path), text).unwrap();
        std::fs::File::options().write(true).open(rootfs.path().join(path)).unwrap().set_modified(time).unwrap();
    }
    std::fs::File::open(rootfs.path()).unwrap().set_modified(time).unwrap();
    step06::image_from_dir(store, rootfs.path(), &reference(name), &[cmd]).unwrap()
}

fn reference(name: &str) -> Reference {
    Reference::parse(name).unwrap()
}

fn save(store: &ImageStore, names: &[&str]) -> Vec<u8> {
    let references: Vec<Reference> = names.iter().map(|n| reference(n)).collect();
    let mut out = Vec::new();
    archive::save(store, &references, &mut out).unwrap();
    out
}

/// The tags of a store, sorted.
fn tags(store: &ImageStore) -> Vec<(String, String)> {
    let mut tags = store.tags().unwrap();
    tags.sort();
    tags
}

/// The names and bytes of an archive's regular files, in order.
fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.push((name, bytes));
        }
    }
    out
}

/// An entry of an archive a test makes by hand.
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A tar of `entries`, their names written as they are (even `../escape`, which the tar
/// crate's own API refuses to write).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match entry {
            Entry::File(name, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                (name, data)
            }
            Entry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name(target).unwrap();
                (name, &[])
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(bytes)))
}

/// An uncompressed layer holding one file.
fn layer_tar(name: &str, text: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, text.as_bytes()).unwrap();
    tar.into_inner().unwrap()
}

/// A minimal image config whose layers have the diff IDs `diff_ids`.
fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").arg("--insecure-policy").args(args).output().unwrap_or_else(|e| panic!("these tests need skopeo (apt-get install skopeo): cannot run it: {e}"));
    assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn load_error(store: &ImageStore, archive: &[u8]) -> String {
    let error = archive::load(store, archive).expect_err("the archive should be refused").message;
    assert!(tags(store).is_empty(), "nothing is tagged after: {error}");
    assert_eq!(staging_dirs(store), 0, "the staging directory is removed");
    error
}

fn staging_dirs(store: &ImageStore) -> usize {
    std::fs::read_dir(&store.root).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".load-")).count()
}

#[test]
fn save_then_load_gives_the_same_images_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("a")).unwrap();
    // Two images with the same layer (the same files), and a second name for one of them.
    let files = [("hello.txt", "hello"), ("motd", "be nice")];
    let first = make_image(&store, dir.path(), "busybox", "sh", &files);
    let second = make_image(&store, dir.path(), "localhost:5000/team/app:1", "true", &files);
    step06::tag(&store, &reference("busybox"), &reference("mybox:2")).unwrap();

    let names = ["busybox", "localhost:5000/team/app:1", "mybox:2"];
    let saved = save(&store, &names);
    assert_eq!(saved, save(&store, &names), "saving twice gives the same bytes");

    // Both an OCI layout and a Docker archive, each blob once.
    let files = entries(&saved);
    let blobs: Vec<&String> = files.iter().map(|(name, _)| name).filter(|n| n.starts_with("blobs/")).collect();
    assert_eq!(blobs.len(), blobs.iter().collect::<HashSet<_>>().len(), "each blob once: {blobs:?}");
    assert_eq!(blobs.len(), 1 + 2 + 2, "one shared layer, two configs, two manifests: {blobs:?}");
    let file = |name: &str| -> serde_json::Value { serde_json::from_slice(&files.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1).unwrap() };
    assert_eq!(file("oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = file("index.json");
    let annotated: Vec<(&str, &str, &str)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["annotations"]["io.containerd.image.name"].as_str().unwrap(), m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap(), m["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(
        annotated,
        [
            ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", first.as_str()),
            ("docker.io/library/mybox:2", "docker.io/library/mybox:2", first.as_str()),
            ("localhost:5000/team/app:1", "localhost:5000/team/app:1", second.as_str()),
        ]
    );
    let image = Image::from_store(&store, &first).unwrap();
    let blob_name = |digest: &str| format!("blobs/sha256/{}", &digest["sha256:".len()..]);
    let docker = file("manifest.json");
    assert_eq!(docker[0]["RepoTags"], serde_json::json!(["busybox:latest", "mybox:2"]));
    assert_eq!(docker[0]["Config"], blob_name(&image.id()));
    assert_eq!(docker[0]["Layers"], serde_json::json!([blob_name(image.layers()[0].digest().as_ref())]));
    assert_eq!(docker[1]["RepoTags"], serde_json::json!(["localhost:5000/team/app:1"]));
    assert_eq!(file("repositories")["busybox"]["latest"], image.layers()[0].digest().to_string()["sha256:".len()..]);

    // Loaded into a fresh store: the same manifests, configs and names.
    let other = ImageStore::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, saved.as_slice()).unwrap();
    let expect = |name: &str, digest: &str| Loaded { reference: Some(reference(name)), manifest_digest: digest.to_string(), id: Image::from_store(&store, digest).unwrap().id() };
    assert_eq!(loaded, [expect("busybox", &first), expect("mybox:2", &first), expect("localhost:5000/team/app:1", &second)]);
    assert_eq!(tags(&other), tags(&store));
    for digest in [&first, &second] {
        let (before, after) = (Image::from_store(&store, digest).unwrap(), Image::from_store(&other, digest).unwrap());
        assert_eq!(after.config, before.config);
        assert_eq!(other.read_blob(after.layers()[0].digest().as_ref()).unwrap(), store.read_blob(before.layers()[0].digest().as_ref()).unwrap());
    }
    assert_eq!(staging_dirs(&other), 0, "the staging directory is removed");

    // `docker save | gzip` loads too, and loading again changes nothing.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &saved).unwrap();
    assert_eq!(archive::load(&other, gzip.finish().unwrap().as_slice()).unwrap(), loaded);
    assert_eq!(tags(&other), tags(&store));
}

#[test]
fn an_image_saved_by_digest_has_no_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("a")).unwrap();
    let digest = make_image(&store, dir.path(), "busybox", "sh", &[("a", "1")]);
    let saved = save(&store, &[&format!("busybox@{digest}")]);
    let other = ImageStore::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, saved.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!((loaded[0].reference.as_ref(), loaded[0].manifest_digest.as_str()), (None, digest.as_str()));
    assert!(other.tags().unwrap().is_empty() && other.has_blob(&digest));
}

#[test]
fn skopeo_reads_the_archives_carton_saves() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("state")).unwrap();
    let first = make_image(&store, dir.path(), "busybox", "sh", &[("a", "1")]);
    let second = make_image(&store, dir.path(), "team/app:1", "true", &[("b", "2")]);
    let path = dir.path().join("saved.tar");
    std::fs::write(&path, save(&store, &["busybox", "team/app:1"])).unwrap();
    let path = path.display().to_string();

    // As an OCI layout: the manifests, byte for byte, under their names.
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{path}:docker.io/team/app:1")]);
    assert_eq!(raw, store.read_blob(&second).unwrap());
    // As a Docker archive: each image by its RepoTag, its config the same.
    let config = skopeo(&["inspect", "--config", "--raw", &format!("docker-archive:{path}:busybox:latest")]);
    assert_eq!(sha256(&config), Image::from_store(&store, &first).unwrap().id());
    let inspected: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &format!("docker-archive:{path}:team/app:1")])).unwrap();
    let app = Image::from_store(&store, &second).unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(inspected["Env"], serde_json::json!(app.config.config().as_ref().unwrap().env()));
    // And copied out of it, to a layout skopeo writes.
    let layout = dir.path().join("copied");
    skopeo(&["copy", &format!("docker-archive:{path}:busybox:latest"), &format!("oci:{}:copied", layout.display())]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "copied");
}

#[test]
fn a_docker_archive_skopeo_writes_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("a")).unwrap();
    let digest = make_image(&store, dir.path(), "busybox", "sh", &[("a", "1"), ("b", "2")]);
    let original = Image::from_store(&store, &digest).unwrap();
    // carton's store is an OCI layout: skopeo copies from it directly.
    let path = dir.path().join("docker.tar");
    skopeo(&["copy", &format!("oci:{}:docker.io/library/busybox:latest", store.root.display()), &format!("docker-archive:{}:busybox:1.0", path.display())]);

    let other = ImageStore::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference, Some(reference("busybox:1.0")));
    assert_eq!(loaded[0].id, original.id(), "the config is the same bytes");
    let image = Image::load(&other, &reference("busybox:1.0")).unwrap();
    assert_eq!(image.manifest_digest, loaded[0].manifest_digest);
    assert_eq!(image.diff_ids(), original.diff_ids());
    // skopeo wrote the layer as a plain tar: carton's manifest says so.
    assert_eq!(image.layers()[0].media_type().to_string(), "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(sha256(&other.read_blob(image.layers()[0].digest().as_ref()).unwrap()), original.diff_ids()[0]);
    // Loading the same archive again gives the same manifest.
    assert_eq!(archive::load(&other, std::fs::File::open(&path).unwrap()).unwrap(), loaded);
}

#[test]
fn an_oci_archive_skopeo_writes_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("a")).unwrap();
    let digest = make_image(&store, dir.path(), "busybox", "sh", &[("a", "1")]);
    let path = dir.path().join("oci.tar");
    skopeo(&["copy", &format!("oci:{}:docker.io/library/busybox:latest", store.root.display()), &format!("oci-archive:{}:busybox:1.0", path.display())]);

    let other = ImageStore::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reference, Some(reference("busybox:1.0")));
    assert_eq!(loaded[0].manifest_digest, digest, "an OCI layout's manifest is kept as it is");
    let image = Image::load(&other, &reference("busybox:1.0")).unwrap();
    assert_eq!(image.diff_ids(), Image::from_store(&store, &digest).unwrap().diff_ids());
}

#[test]
fn a_multi_platform_image_loads_as_this_machines_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("a")).unwrap();
    let here = make_image(&store, dir.path(), "here", "sh", &[("a", "here")]);
    let elsewhere = make_image(&store, dir.path(), "elsewhere", "sh", &[("a", "elsewhere")]);
    let architecture = step06::image::host_architecture();
    let manifest_size = |digest: &str| store.read_blob(digest).unwrap().len();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": elsewhere, "size": manifest_size(&elsewhere), "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": here, "size": manifest_size(&here), "platform": {"os": "linux", "architecture": architecture}},
        ],
    }))
    .unwrap();
    let index_digest = sha256(&index);
    // The OCI layout of the index and `here`'s blobs: `elsewhere`'s need not be there.
    let mut blobs = vec![(format!("blobs/sha256/{}", &index_digest[7..]), index.clone())];
    let image = Image::from_store(&store, &here).unwrap();
    for digest in [here.clone(), image.id(), image.layers()[0].digest().to_string()] {
        blobs.push((format!("blobs/sha256/{}", &digest[7..]), store.read_blob(&digest).unwrap()));
    }
    let top = |platform: &str| {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": format!("multi:{platform}")},
        }]}))
        .unwrap()
    };
    let layout = |top: &[u8]| {
        let mut entries = vec![Entry::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#), Entry::File("index.json", top)];
        entries.extend(blobs.iter().map(|(name, bytes)| Entry::File(name, bytes)));
        tar_of(&entries)
    };
    let other = ImageStore::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, layout(&top("1")).as_slice()).unwrap();
    assert_eq!((loaded[0].reference.clone(), loaded[0].manifest_digest.as_str()), (Some(reference("multi:1")), here.as_str()));
    assert_eq!(Image::load(&other, &reference("multi:1")).unwrap().manifest_digest, here);

    // An index with no manifest for this machine is refused, saying which it has.
    let only_elsewhere: Vec<u8> = String::from_utf8(index.clone()).unwrap().replace(&format!("\"architecture\":\"{architecture}\""), "\"architecture\":\"riscv64\"").into_bytes();
    let digest = sha256(&only_elsewhere);
    let top =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": digest, "size": only_elsewhere.len(), "mediaType": "application/vnd.oci.image.index.v1+json"}]})).unwrap();
    let name = format!("blobs/sha256/{}", &digest[7..]);
    let fresh = ImageStore::open(&dir.path().join("c")).unwrap();
    let error = load_error(&fresh, &tar_of(&[Entry::File("index.json", &top), Entry::File(&name, &only_elsewhere)]));
    assert!(error.contains(&format!("has no manifest for this machine's platform (linux/{architecture})")) && error.contains("linux/s390x, linux/riscv64"), "{error}");
}

#[test]
fn an_old_docker_archive_with_linked_layers_loads() {
    // As older `docker save` wrote it: config HEX.json, layers ID/layer.tar, one of them a
    // link to another's file.
    let base = layer_tar("base.txt", "base");
    let top = layer_tar("top.txt", "top");
    let config = config_for(&[sha256(&base), sha256(&top), sha256(&base)]);
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": ["old:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]}])).unwrap();
    let archive = tar_of(&[
        Entry::File("aaa/layer.tar", &base),
        Entry::File("./bbb/layer.tar", &top),
        Entry::Symlink("ccc/layer.tar", "../aaa/layer.tar"),
        Entry::File(&config_name, &config),
        Entry::File("manifest.json", &manifest),
        Entry::File("repositories", br#"{"old":{"1":"ccc"}}"#),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let loaded = archive::load(&store, archive.as_slice()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, sha256(&config));
    let image = Image::load(&store, &reference("old:1")).unwrap();
    assert_eq!(image.diff_ids(), [sha256(&base), sha256(&top), sha256(&base)]);
    let layers: Vec<String> = image.layers().iter().map(|l| l.digest().to_string()).collect();
    assert_eq!(layers, [sha256(&base), sha256(&top), sha256(&base)]);
    assert_eq!(image.manifest.media_type().as_ref().unwrap().to_string(), "application/vnd.oci.image.manifest.v1+json");

    // A link that leads out of the archive finds nothing, on this machine or elsewhere.
    let escaping = tar_of(&[
        Entry::Symlink("aaa/layer.tar", "../../../../../../etc/passwd"),
        Entry::File("bbb/layer.tar", &top),
        Entry::File("ccc/layer.tar", &base),
        Entry::File(&config_name, &config),
        Entry::File("manifest.json", &manifest),
    ]);
    let fresh = ImageStore::open(&dir.path().join("fresh")).unwrap();
    let error = load_error(&fresh, &escaping);
    assert!(error.contains("has no file \"aaa/layer.tar\""), "{error}");
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_tagged() {
    let base = layer_tar("base.txt", "base");
    let changed = layer_tar("base.txt", "evil");
    let config = config_for(&[sha256(&base)]);
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let error = load_error(&store, &tar_of(&[Entry::File("l/layer.tar", &changed), Entry::File("c.json", &config), Entry::File("manifest.json", &manifest)]));
    assert!(error.contains("the layer l/layer.tar") && error.contains("changed or damaged") && error.contains(&sha256(&base)), "{error}");

    // A layer with fewer or more layers than its config lists.
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar", "l/layer.tar"]}])).unwrap();
    let error = load_error(&store, &tar_of(&[Entry::File("l/layer.tar", &base), Entry::File("c.json", &config), Entry::File("manifest.json", &manifest)]));
    assert!(error.contains("2 layers but its config lists 1"), "{error}");

    // In carton's own archive: a changed blob no longer has its digest. The second image
    // is fine, but nothing of the archive is loaded.
    let source = ImageStore::open(&dir.path().join("source")).unwrap();
    let first = make_image(&source, dir.path(), "busybox", "sh", &[("a", "1")]);
    make_image(&source, dir.path(), "other", "sh", &[("b", "2")]);
    let layer = Image::from_store(&source, &first).unwrap().layers()[0].digest().to_string();
    let mut entries: Vec<(String, Vec<u8>)> = entries(&save(&source, &["busybox", "other"]));
    let blob = entries.iter_mut().find(|(name, _)| name.ends_with(&layer[7..])).unwrap();
    let last = blob.1.len() - 10;
    blob.1[last] ^= 0xff;
    let tampered = tar_of(&entries.iter().map(|(name, bytes)| Entry::File(name, bytes)).collect::<Vec<_>>());
    let error = load_error(&store, &tampered);
    assert!(error.contains(&format!("blob {layer} has the digest")) && error.contains("nothing was loaded"), "{error}");
}

#[test]
fn hostile_names_write_nothing_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let source = ImageStore::open(&dir.path().join("source")).unwrap();
    let digest = make_image(&source, dir.path(), "busybox", "sh", &[("a", "1")]);
    let inside = dir.path().join("state/images");
    let absolute = dir.path().join("absolute-escape").display().to_string();
    let mut files = entries(&save(&source, &["busybox"]));
    files.push(("../escape".into(), b"x".to_vec()));
    files.push(("../../escape".into(), b"x".to_vec()));
    files.push((absolute.clone(), b"x".to_vec()));
    // A hostile copy of index.json that climbs out first, then back in: it is dropped,
    // not taken as index.json.
    files.push(("../images/index.json".into(), b"not json".to_vec()));
    let hostile = tar_of(&files.iter().map(|(name, bytes)| Entry::File(name, bytes)).collect::<Vec<_>>());

    let store = ImageStore::open(&dir.path().join("state")).unwrap();
    let loaded = archive::load(&store, hostile.as_slice()).unwrap();
    assert_eq!(loaded[0].manifest_digest, digest);
    for escaped in [dir.path().join("state/escape"), dir.path().join("escape"), inside.join("escape"), absolute.into()] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    let mut top: Vec<String> = std::fs::read_dir(&inside).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["blobs", "index.json", "index.lock", "oci-layout", "store.lock"], "nothing but the store");
}

#[test]
fn broken_archives_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let not_tar = load_error(&store, &[b'x'; 2000]);
    assert!(not_tar.contains("cannot read the archive") && not_tar.contains("tar file"), "{not_tar}");
    let short = load_error(&store, b"hello");
    assert!(short.contains("cannot read the archive"), "{short}");
    let damaged_gzip = load_error(&store, &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]);
    assert!(damaged_gzip.contains("cannot read the archive"), "{damaged_gzip}");
    for empty in [Vec::new(), tar_of(&[]), tar_of(&[Entry::File("README", b"hi")])] {
        let error = load_error(&store, &empty);
        assert!(error.contains("not an image archive") && error.contains("manifest.json"), "{error}");
    }
    let bad_json = load_error(&store, &tar_of(&[Entry::File("manifest.json", b"[{")]));
    assert!(bad_json.contains("manifest.json is not valid JSON"), "{bad_json}");
    let not_list = load_error(&store, &tar_of(&[Entry::File("manifest.json", b"{}")]));
    assert!(not_list.contains("not a list of images"), "{not_list}");
    let no_config = load_error(&store, &tar_of(&[Entry::File("manifest.json", br#"[{"Layers": []}]"#)]));
    assert!(no_config.contains("has no \"Config\""), "{no_config}");
    let missing = load_error(&store, &tar_of(&[Entry::File("manifest.json", br#"[{"Config": "abc.json", "Layers": []}]"#)]));
    assert!(missing.contains("has no file \"abc.json\""), "{missing}");
    let bad_config = load_error(&store, &tar_of(&[Entry::File("c.json", b"{\"rootfs\": 3}"), Entry::File("manifest.json", br#"[{"Config": "c.json", "Layers": []}]"#)]));
    assert!(bad_config.contains("not a valid image config"), "{bad_config}");
    let bad_name = load_error(&store, &tar_of(&[Entry::File("c.json", &config_for(&[])), Entry::File("manifest.json", br#"[{"Config": "c.json", "RepoTags": ["Bad:Name"], "Layers": []}]"#)]));
    assert!(bad_name.contains("\"Bad:Name\", which is not a valid name"), "{bad_name}");
    let loop_ = load_error(&store, &tar_of(&[Entry::Symlink("a", "b"), Entry::Symlink("b", "a"), Entry::File("manifest.json", br#"[{"Config": "a", "Layers": []}]"#)]));
    assert!(loop_.contains("loop of links"), "{loop_}");
    let no_blob = load_error(&store, &tar_of(&[Entry::File("index.json", format!(r#"{{"manifests": [{{"digest": "sha256:{}"}}]}}"#, "a".repeat(64)).as_bytes())]));
    assert!(no_blob.contains("has no file \"blobs/sha256/aaaa"), "{no_blob}");
    let bad_digest = load_error(&store, &tar_of(&[Entry::File("index.json", br#"{"manifests": [{"digest": "sha256:../../x"}]}"#)]));
    assert!(bad_digest.contains("invalid digest"), "{bad_digest}");
    let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0];
    let zstd_error =
        load_error(&store, &tar_of(&[Entry::File("l", &zstd), Entry::File("c.json", &config_for(&[sha256(&zstd)])), Entry::File("manifest.json", br#"[{"Config": "c.json", "Layers": ["l"]}]"#)]));
    assert!(zstd_error.contains("cannot check the layer l") && zstd_error.contains("zstd"), "{zstd_error}");
}
