//! `carton pull`: a name becomes a manifest, the manifest names a config and layers, and
//! every one of them is fetched by its digest and checked against it. A layer already
//! in the store is not fetched again: its digest says it is the same bytes.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use oci_spec::image::Descriptor;
use sha2::Digest;
use step01::{Action, Error, Explain, Result};

use crate::image::{choose_platform, host_platform, parse_config, parse_manifest, Image};
use crate::progress::{short_id, Counting, Progress};
use crate::reference::Reference;
use crate::registry::{is_index, Client, Credentials};
use crate::store::ImageStore;
use crate::CHAPTER;

/// How many layers download at once (Docker's default, `max-concurrent-downloads`).
pub(crate) const PARALLEL_DOWNLOADS: usize = 3;

/// The largest image config carton reads (Docker's own limit is 8 MiB).
const MAX_CONFIG: u64 = 8 << 20;

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub manifest_digest: String,
    /// The layers fetched; the others were in the store already.
    pub downloaded: Vec<String>,
    /// Whether the tag already pointed at this manifest with every blob present.
    pub up_to_date: bool,
}

// ANCHOR: pull
/// Fetch the image `reference` from its registry into the store and tag it.
pub fn pull(state_root: &Path, reference: &Reference, credentials: Option<Credentials>, progress: &Progress, explain: &Explain) -> Result<Pulled> {
    let store = ImageStore::open(state_root)?;
    store.sweep_leftovers(); // of pulls that were killed: a blob is stored whole or not at all
    let held = store.lock(crate::store::Lock::Shared)?; // until tagged: `rmi` must not collect what comes in
    let client = Client::new(&reference.registry, &reference.repository, "pull", credentials);
    let wanted = reference.digest.clone().or(reference.tag.clone()).unwrap_or_else(|| "latest".into());
    explain.step(|| {
        Action::new(CHAPTER, format!("resolve the name {}: registry {}, repository {}, {wanted}", reference.familiar(), reference.registry, reference.repository), format!("{reference}")).label("name")
    });
    progress.line(&format!("{}: Pulling from {}", wanted.trim_start_matches("sha256:"), reference.repository));

    // The manifest, or an index of manifests (one per platform) to choose from.
    let (mut bytes, mut media_type) = client.manifest(&wanted, explain)?;
    if let Some(digest) = &reference.digest {
        check_digest(&bytes, digest, "manifest")?;
    }
    // What the registry knows the name by: the index's digest for a multi-platform image,
    // as Docker records it (the one to pin: it is the same on every platform).
    let served_digest = format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(&bytes)));
    if is_index(&media_type) {
        let chosen = choose_platform(&bytes)?;
        let digest = chosen.digest().to_string();
        explain.step(|| Action::new(CHAPTER, format!("the name is an index: take the manifest for {}", host_platform()), format!("manifest {digest}")).label("choice"));
        (bytes, media_type) = client.manifest(&digest, explain)?;
        check_digest(&bytes, &digest, "manifest")?;
        if is_index(&media_type) {
            return Err(Error::runtime(format!("{reference}: an index inside an index; carton reads one level")));
        }
    }
    let manifest_digest = format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(&bytes)));
    let manifest = parse_manifest(&bytes)?;
    // What a manifest says is checked before anything is fetched: a config is small JSON,
    // read whole later; a zstd layer would be downloaded only to be refused.
    if manifest.config().size() > MAX_CONFIG {
        return Err(Error::runtime(format!("{reference}: its config is {} bytes, more than an image config can sensibly be ({MAX_CONFIG}): refusing it", manifest.config().size())));
    }
    if manifest.layers().iter().any(|l| l.media_type().to_string().contains("zstd")) {
        return Err(crate::zstd_refused());
    }
    let name = reference.to_string();
    let tagged = store.tags()?.iter().any(|(tag, digest)| *tag == name && *digest == manifest_digest);
    let missing = |blobs: &[Descriptor]| blobs.iter().filter(|b| !store.has_blob(b.digest().as_ref())).cloned().collect::<Vec<_>>();
    let missing_config = missing(std::slice::from_ref(manifest.config()));
    let missing_layers = missing(manifest.layers());
    for layer in manifest.layers().iter().filter(|l| !missing_layers.contains(l)) {
        progress.line(&format!("{}: Already exists", short_id(layer.digest().as_ref())));
    }

    // The config first (it is small, and says how many layers to expect), then the layers.
    let mut stored = Vec::new();
    let fetched = fetch(&store, &client, &missing_config, &mut stored, &Progress::quiet(), explain)
        .and_then(|()| {
            let config = parse_config(&store.read_blob(manifest.config().digest().as_ref())?)?;
            if config.rootfs().diff_ids().len() != manifest.layers().len() {
                return Err(Error::runtime(format!("{reference}: the manifest has {} layers but the config {} diff IDs", manifest.layers().len(), config.rootfs().diff_ids().len())));
            }
            fetch(&store, &client, &missing_layers, &mut stored, progress, explain)
        })
        .and_then(|()| {
            if !store.has_blob(&manifest_digest) {
                stored.push(manifest_digest.clone());
            }
            let (digest, size) = store.put_blob(bytes.as_slice(), Some(&manifest_digest))?;
            // Unpacked before it is tagged, as Docker's pull does: a layer that cannot be
            // unpacked (damaged, hostile) leaves no image behind, and the first run starts at once.
            crate::unpack(state_root, &store, &Image::from_store(&store, &digest)?, explain)?;
            store.tag(&name, &digest, size, &media_type)?;
            store.set_repo_digest(&name, &format!("{}@{served_digest}", reference.familiar_name()))
        });
    drop(held);
    if let Err(error) = fetched {
        // A failed pull leaves the store as it found it: blobs it brought are taken back.
        crate::take_back(&store, &stored)?;
        return Err(error);
    }
    for layer in &missing_layers {
        progress.status(layer.digest().as_ref(), "Pull complete");
    }
    progress.line(&format!("Digest: {served_digest}"));
    let up_to_date = tagged && missing_config.is_empty() && missing_layers.is_empty();
    let status = if up_to_date { "Image is up to date for" } else { "Downloaded newer image for" };
    progress.line(&format!("Status: {status} {}", reference.familiar()));
    Ok(Pulled { manifest_digest, downloaded: missing_layers.iter().map(|d| d.digest().to_string()).collect(), up_to_date })
}
// ANCHOR_END: pull

// ANCHOR: fetch
/// Download `blobs` into the store, [`PARALLEL_DOWNLOADS`] at a time. Each goes through
/// `put_blob`, which keeps it only if its bytes hash to its digest; `stored` collects
/// the ones kept.
fn fetch(store: &ImageStore, client: &Client, blobs: &[Descriptor], stored: &mut Vec<String>, progress: &Progress, explain: &Explain) -> Result<()> {
    for blob in blobs {
        explain.step(|| {
            let url = client.url(&format!("blobs/{}", blob.digest()));
            let path = url.split_once("/v2/").map_or(url.as_str(), |(_, path)| path);
            Action::new(CHAPTER, format!("ask the registry: GET /v2/{path} ({} bytes), and check its sha256", blob.size()), format!("GET {url}"))
                .label("request")
                .shell(format!("curl -sL '{url}' | sha256sum"))
        });
    }
    let queue = Mutex::new(blobs.iter().collect::<VecDeque<_>>());
    let done = Mutex::new(Vec::new());
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(blobs.len()) {
            scope.spawn(|| loop {
                let Some(blob) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { return };
                let digest = blob.digest().to_string();
                let line = progress.blob(&digest, blob.size(), "Pulling fs layer");
                // `take` bounds a registry that sends more than the manifest says.
                let result = client.blob(&digest).and_then(|body| {
                    let counted = Counting { inner: body.take(blob.size().saturating_add(1)), progress: &line, status: "Downloading" };
                    store.put_blob(counted, Some(&digest))
                });
                match result {
                    Ok(_) => {
                        line.finish("Download complete");
                        done.lock().unwrap_or_else(|e| e.into_inner()).push(digest);
                    }
                    Err(error) => {
                        line.finish("Failed");
                        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
                        queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
                        // no point starting more
                    }
                }
            });
        }
    });
    stored.extend(done.into_inner().unwrap_or_else(|e| e.into_inner()));
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
// ANCHOR_END: fetch

fn check_digest(bytes: &[u8], expected: &str, what: &str) -> Result<()> {
    let actual = format!("sha256:{}", step05::store::hex(&sha2::Sha256::digest(bytes)));
    if actual != expected {
        return Err(Error::runtime(format!("the registry's {what} has the digest {actual}, not {expected}: refusing it")));
    }
    Ok(())
}
