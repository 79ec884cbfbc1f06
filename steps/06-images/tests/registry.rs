//! The registry client against a real registry: Debian's docker-registry, started by each
//! test on 127.0.0.1 (see support/registry.rs). Pulls unpack layers (owners, device
//! whiteouts), so these tests need root. Needs docker-registry, skopeo and umoci.

#[path = "../../05-overlay/tests/support/raw_tar.rs"]
mod raw_tar;
#[path = "support/registry.rs"]
mod registry;

use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Output};
use std::rc::Rc;

use registry::TestRegistry;
use sha2::Digest;
use step01::Explain;
use step06::progress::Progress;
use step06::pull::{pull, Pulled};
use step06::push::push;
use step06::registry::{Client, Credentials};
use step06::{Image, ImageStore, Reference};

fn require_root() {
    assert!(nix::unistd::Uid::effective().is_root(), "these tests unpack layers: run them as root (CI does)");
}

fn reference(name: &str) -> Reference {
    Reference::parse(name).unwrap()
}

/// A state root with one image made from `files`, tagged `name`; returns its manifest digest.
fn image_with(state: &Path, name: &str, files: &[(&str, &[u8])]) -> String {
    let rootfs = tempfile::tempdir().unwrap();
    for (path, bytes) in files {
        let path = rootfs.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    step06::image_from_dir(&ImageStore::open(state).unwrap(), rootfs.path(), &reference(name), &["cat", "/hello"]).unwrap()
}

fn quiet_pull(state: &Path, name: &str, credentials: Option<Credentials>) -> step01::Result<Pulled> {
    pull(state, &reference(name), credentials, &Progress::quiet(), &Explain::off())
}

fn quiet_push(state: &Path, name: &str, credentials: Option<Credentials>, chunk: usize) -> step01::Result<step06::push::Pushed> {
    push(state, &reference(name), credentials, chunk, &Progress::quiet(), &Explain::off())
}

/// skopeo (see the fixture), which must succeed.
fn skopeo(dir: &Path, args: &[&str]) -> Output {
    let out = registry::skopeo(dir, args);
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Every blob file in the store and every unpacked layer: what a failed pull must not leave.
fn stored(state: &Path) -> (Vec<String>, Vec<String>) {
    let list = |dir: &Path| -> Vec<String> { std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default() };
    (list(&state.join("images/blobs/sha256")), list(&state.join("overlay/layers")))
}

#[test]
fn a_pushed_image_reads_the_same_in_skopeo_and_a_second_push_sends_nothing() {
    require_root();
    let registry = TestRegistry::start();
    let state = tempfile::tempdir().unwrap();
    let name = format!("{}/team/hello:1", registry.addr);
    let digest = image_with(state.path(), &name, &[("hello", b"hello from a registry\n")]);

    let pushed = quiet_push(state.path(), &name, None, step06::push::CHUNK).unwrap();
    assert_eq!(pushed.manifest_digest, digest);
    assert_eq!(pushed.uploaded.len(), 2, "the layer and the config go up: {:?}", pushed.uploaded);
    // The registry keeps exactly carton's bytes: skopeo reads the same manifest.
    let raw = skopeo(state.path(), &["inspect", "--raw", "--tls-verify=false", &format!("docker://{name}")]).stdout;
    let store = ImageStore::open(state.path()).unwrap();
    assert_eq!(raw, store.read_blob(&digest).unwrap(), "the registry's manifest is carton's, byte for byte");
    let copy = state.path().join("copy");
    skopeo(state.path(), &["copy", "--src-tls-verify=false", &format!("docker://{name}"), &format!("oci:{}:copy", copy.display())]);
    let image = Image::from_store(&store, &digest).unwrap();
    for blob in image.layers().iter().map(|l| l.digest().to_string()).chain([image.id()]) {
        assert!(copy.join("blobs/sha256").join(&blob["sha256:".len()..]).exists(), "skopeo's copy has {blob}");
    }
    assert_eq!(store.repo_digests(&digest).unwrap(), [format!("{}/team/hello@{digest}", registry.addr)]);

    // Every blob is there now: HEAD says so, and nothing is uploaded again.
    let again = quiet_push(state.path(), &name, None, step06::push::CHUNK).unwrap();
    assert!(again.uploaded.is_empty(), "a second push skips every existing blob: {:?}", again.uploaded);
}

#[test]
fn chunked_uploads_and_pulls_round_trip_and_existing_layers_are_not_fetched_again() {
    require_root();
    let registry = TestRegistry::start();
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = format!("{}/big:1", registry.addr);
    // Bytes that do not compress, so the layer is many chunks long.
    let noise: Vec<u8> = (0..200_000u32).flat_map(|i| sha2::Sha256::digest(i.to_le_bytes()).to_vec()).take(300_000).collect();
    let digest = image_with(source.path(), &name, &[("hello", b"big\n"), ("noise", &noise)]);
    let pushed = quiet_push(source.path(), &name, None, 64 * 1024).unwrap();
    assert_eq!(pushed.uploaded.len(), 2);

    let pulled = quiet_pull(target.path(), &name, None).unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.downloaded.len(), 1);
    assert!(!pulled.up_to_date);
    let image = Image::load(&ImageStore::open(target.path()).unwrap(), &reference(&name)).unwrap();
    let original = Image::load(&ImageStore::open(source.path()).unwrap(), &reference(&name)).unwrap();
    assert_eq!(image.diff_ids(), original.diff_ids());
    // Pulled is unpacked: the layer's files are in step 05's store.
    let layer = step05::LayerStore::new(target.path()).layer(&image.diff_ids()[0]).expect("the layer is unpacked");
    assert_eq!(std::fs::read(layer.dir.join("noise")).unwrap(), noise);

    let again = quiet_pull(target.path(), &name, None).unwrap();
    assert!(again.downloaded.is_empty() && again.up_to_date, "{again:?}");
}

#[test]
fn an_image_made_by_umoci_and_pushed_by_skopeo_in_docker_format_is_pulled() {
    require_root();
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci (apt-get install umoci)");
        assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &format!("{}:app", layout.display())]);
    let bundle = work.path().join("bundle");
    umoci(&["unpack", "--image", &format!("{}:app", layout.display()), bundle.to_str().unwrap()]);
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/motd"), "made by umoci\n").unwrap();
    umoci(&["repack", "--image", &format!("{}:app", layout.display()), bundle.to_str().unwrap()]);
    umoci(&["config", "--image", &format!("{}:app", layout.display()), "--config.cmd", "cat", "--config.cmd", "/etc/motd", "--config.user", "nobody"]);
    // Docker's schema 2 on the wire (skopeo converts), not OCI.
    let name = format!("{}/umoci/app:v2s2", registry.addr);
    skopeo(work.path(), &["copy", "--format", "v2s2", "--dest-tls-verify=false", &format!("oci:{}:app", layout.display()), &format!("docker://{name}")]);

    let state = tempfile::tempdir().unwrap();
    quiet_pull(state.path(), &name, None).unwrap();
    let store = ImageStore::open(state.path()).unwrap();
    let image = Image::load(&store, &reference(&name)).unwrap();
    assert_eq!(image.manifest.media_type().as_ref().map(|t| t.to_string()).as_deref(), Some("application/vnd.docker.distribution.manifest.v2+json"));
    assert_eq!(image.process(&[], None).unwrap().args, ["cat", "/etc/motd"]);
    assert_eq!(image.user().as_deref(), Some("nobody"));
    let top = step05::LayerStore::new(state.path()).layer(image.diff_ids().last().unwrap()).unwrap();
    assert_eq!(std::fs::read_to_string(top.dir.join("etc/motd")).unwrap(), "made by umoci\n");
}

#[test]
fn an_index_gives_this_machines_manifest_and_no_variant_is_a_clear_error() {
    require_root();
    let registry = TestRegistry::start();
    let state = tempfile::tempdir().unwrap();
    let name = format!("{}/multi:1", registry.addr);
    let digest = image_with(state.path(), &name, &[("hello", b"multi\n")]);
    quiet_push(state.path(), &name, None, step06::push::CHUNK).unwrap();
    let size = ImageStore::open(state.path()).unwrap().read_blob(&digest).unwrap().len();
    let arch = step06::image::host_architecture();
    let client = Client::new(&registry.addr, "multi", "pull,push", None);
    let index = |platforms: &[(&str, &str)]| {
        let manifests: Vec<serde_json::Value> =
            platforms.iter().map(|(os, arch)| serde_json::json!({"mediaType": step06::MANIFEST_TYPE, "digest": digest, "size": size, "platform": {"os": os, "architecture": arch}})).collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})).unwrap()
    };
    client.put_manifest("all", &index(&[("linux", "s390x"), ("linux", arch), ("windows", arch)]), "application/vnd.oci.image.index.v1+json", &Explain::off()).unwrap();
    client.put_manifest("other", &index(&[("linux", "s390x"), ("windows", arch)]), "application/vnd.oci.image.index.v1+json", &Explain::off()).unwrap();

    let all = index(&[("linux", "s390x"), ("linux", arch), ("windows", arch)]);
    let index_digest = format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(&all)));
    let fresh = tempfile::tempdir().unwrap();
    let pulled = quiet_pull(fresh.path(), &format!("{}/multi:all", registry.addr), None).unwrap();
    assert_eq!(pulled.manifest_digest, digest, "the index's entry for linux/{arch}");
    let store = ImageStore::open(fresh.path()).unwrap();
    assert_eq!(store.repo_digests(&digest).unwrap(), [format!("{}/multi@{index_digest}", registry.addr)], "the name the registry knows: the index's digest");
    // Pinned by the index's digest, it is this platform's manifest that runs.
    let pinned = reference(&format!("{}/multi@{index_digest}", registry.addr));
    pull(fresh.path(), &pinned, None, &Progress::quiet(), &Explain::off()).unwrap();
    assert_eq!(Image::load(&store, &pinned).unwrap().manifest_digest, digest);
    let error = quiet_pull(fresh.path(), &format!("{}/multi:other", registry.addr), None).unwrap_err();
    assert!(error.message.contains("no manifest for this machine's platform") && error.message.contains("linux/s390x, windows/"), "{}", error.message);
}

#[test]
fn a_blob_tampered_with_on_the_registry_is_refused_and_nothing_is_stored() {
    require_root();
    let registry = TestRegistry::start();
    let source = tempfile::tempdir().unwrap();
    let name = format!("{}/tampered:1", registry.addr);
    let digest = image_with(source.path(), &name, &[("hello", b"the real bytes\n")]);
    quiet_push(source.path(), &name, None, step06::push::CHUNK).unwrap();
    let image = Image::from_store(&ImageStore::open(source.path()).unwrap(), &digest).unwrap();
    let layer = image.layers()[0].digest().to_string();
    // Same length, other bytes: only the digest can tell.
    let data = registry.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let target = tempfile::tempdir().unwrap();
    let error = quiet_pull(target.path(), &name, None).unwrap_err();
    assert!(error.message.contains(&layer) && error.message.contains("nothing was stored"), "{}", error.message);
    assert_eq!(error.exit_code(), 125);
    let (blobs, layers) = stored(target.path());
    assert!(blobs.is_empty() && layers.is_empty(), "a refused pull stores nothing: {blobs:?} {layers:?}");
    assert!(ImageStore::open(target.path()).unwrap().tags().unwrap().is_empty());
}

#[test]
fn unknown_images_and_unreachable_registries_are_clear_errors() {
    let registry = TestRegistry::start();
    let state = tempfile::tempdir().unwrap();
    let error = quiet_pull(state.path(), &format!("{}/nobody/here:1", registry.addr), None).unwrap_err();
    assert!(error.message.contains("was not found in the registry") && error.message.contains("MANIFEST_UNKNOWN"), "{}", error.message);
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = quiet_pull(state.path(), &format!("127.0.0.1:{port}/app:1"), None).unwrap_err();
    assert!(error.message.contains("cannot reach the registry") && error.message.contains("is the registry running"), "{}", error.message);
    let error = quiet_push(state.path(), &format!("{}/absent:1", registry.addr), None, 0).unwrap_err();
    assert!(error.message.contains("no image"), "pushing what is not here: {}", error.message);
    for bad in ["UPPER:case", "a::b", "app:-bad", "app@sha256:123"] {
        let error = Reference::parse(bad).unwrap_err();
        assert!(error.message.contains("invalid reference format"), "{bad}: {}", error.message);
    }
    let (blobs, layers) = stored(state.path());
    assert!(blobs.is_empty() && layers.is_empty());
}

#[test]
fn token_auth_takes_a_login_and_asks_the_token_server_for_each_scope() {
    require_root();
    let registry = TestRegistry::with_token_auth("alice", "wonderland");
    let state = tempfile::tempdir().unwrap();
    let name = format!("{}/private/app:1", registry.addr);
    image_with(state.path(), &name, &[("hello", b"secret\n")]);
    let alice = Credentials { user: "alice".into(), password: "wonderland".into() };

    let error = quiet_push(state.path(), &name, None, 0).unwrap_err();
    assert!(error.message.contains("wants a login") && error.message.contains(&format!("carton login {}", registry.addr)), "{}", error.message);
    let wrong = Credentials { user: "alice".into(), password: "guess".into() };
    let error = quiet_push(state.path(), &name, Some(wrong), 0).unwrap_err();
    assert!(error.message.contains("access to private/app denied for user \"alice\""), "{}", error.message);
    assert_eq!(registry.token_requests(), 0, "no token for wrong credentials");

    // The requests the dance makes, as --explain shows them.
    let seen = Rc::new(RefCell::new(Vec::new()));
    let into = seen.clone();
    let explain = Explain::to_sink(move |action| into.borrow_mut().push(action.syscall.clone()));
    push(state.path(), &reference(&name), Some(alice.clone()), 0, &Progress::quiet(), &explain).unwrap();
    assert!(registry.token_requests() >= 1);
    let seen = seen.borrow();
    let token_request = seen.iter().find(|s| s.contains("/token?")).expect("a token request");
    assert!(token_request.contains("scope=repository%3Aprivate%2Fapp%3Apull%2Cpush") && token_request.contains("service=carton-test"), "{token_request}");
    assert!(seen.iter().any(|s| s.starts_with("PUT ") && s.contains("/v2/private/app/manifests/1")), "{seen:?}");

    let fresh = tempfile::tempdir().unwrap();
    assert!(quiet_pull(fresh.path(), &name, None).unwrap_err().message.contains("wants a login"));
    let before = registry.token_requests();
    quiet_pull(fresh.path(), &name, Some(alice.clone())).unwrap();
    assert!(registry.token_requests() > before, "a pull asks for its own (pull) token");
    // A login (no repository) proves the password with a token for nothing in particular.
    Client::new(&registry.addr, "", "pull", Some(alice)).ping(&Explain::off()).unwrap();
}

#[test]
fn basic_auth_sends_the_saved_password_and_refuses_a_wrong_one() {
    require_root();
    let registry = TestRegistry::with_basic_auth("bob", "builder");
    let state = tempfile::tempdir().unwrap();
    let name = format!("{}/basic/app:1", registry.addr);
    image_with(state.path(), &name, &[("hello", b"basic\n")]);
    let bob = Credentials { user: "bob".into(), password: "builder".into() };
    let wrong = Credentials { user: "bob".into(), password: "nope".into() };
    assert!(Client::new(&registry.addr, "", "pull", Some(wrong.clone())).ping(&Explain::off()).unwrap_err().message.contains("refused"));
    Client::new(&registry.addr, "", "pull", Some(bob.clone())).ping(&Explain::off()).unwrap();
    assert!(quiet_push(state.path(), &name, None, 0).unwrap_err().message.contains("wants a login"));
    let error = quiet_push(state.path(), &name, Some(wrong), 0).unwrap_err();
    assert!(error.message.contains("denied for user \"bob\""), "{}", error.message);
    quiet_push(state.path(), &name, Some(bob.clone()), 0).unwrap();
    quiet_pull(tempfile::tempdir().unwrap().path(), &name, Some(bob)).unwrap();
}

#[test]
fn a_hostile_layer_from_a_registry_writes_nothing_outside_and_leaves_no_image() {
    require_root();
    let registry = TestRegistry::start();
    let state = tempfile::tempdir().unwrap();
    let mut layer = Vec::new();
    // A link that climbs out, then a file written through it (step 05 refuses each kind alone).
    raw_tar::raw_entry(&mut layer, "up", tar::EntryType::Symlink, "../../../../../../tmp", b"");
    raw_tar::raw_entry(&mut layer, "up/escaped-through-a-link", tar::EntryType::Regular, "", b"x");
    raw_tar::raw_entry(&mut layer, "../../../../escaped-by-carton-test", tar::EntryType::Regular, "", b"x");
    let layer = raw_tar::finish(layer);
    // Pushed by hand, as an attacker would: correct digests, hostile contents.
    let client = Client::new(&registry.addr, "evil", "pull,push", None);
    let sha = |bytes: &[u8]| format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(bytes)));
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}})).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": step06::MANIFEST_TYPE,
        "config": {"mediaType": step06::CONFIG_TYPE, "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    }))
    .unwrap();
    client.upload_blob(&sha(&layer), layer.as_slice(), layer.len() as u64, 0, &Explain::off()).unwrap();
    client.upload_blob(&sha(&config), config.as_slice(), config.len() as u64, 0, &Explain::off()).unwrap();
    client.put_manifest("1", &manifest, step06::MANIFEST_TYPE, &Explain::off()).unwrap();

    let error = quiet_pull(state.path(), &format!("{}/evil:1", registry.addr), None).unwrap_err();
    assert_eq!(error.exit_code(), 125, "{}", error.message);
    assert!(error.message.contains("refusing the layer: up goes through a symbolic link"), "{}", error.message);
    for place in [Path::new("/escaped-by-carton-test").to_path_buf(), state.path().join("escaped-by-carton-test"), Path::new("/tmp/escaped-through-a-link").to_path_buf()] {
        assert!(!place.exists(), "{} was written", place.display());
    }
    assert!(ImageStore::open(state.path()).unwrap().tags().unwrap().is_empty(), "no image is left from a refused layer");
    let (blobs, layers) = stored(state.path());
    assert!(blobs.is_empty() && layers.is_empty(), "{blobs:?} {layers:?}");
}
