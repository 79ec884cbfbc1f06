//! `carton push`: the other direction. Every blob the registry lacks is uploaded (a
//! `HEAD` first: a layer it has is skipped), and the manifest goes last, because a
//! registry refuses a manifest that names blobs it does not have.

use std::path::Path;

use step01::{Error, Explain, Result};

use crate::image::Image;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{Client, Credentials};
use crate::store::ImageStore;

/// Blobs above this size go up in chunks of it (`PATCH` with a `Content-Range`); smaller
/// ones in a single `PUT`.
pub const CHUNK: usize = 16 << 20;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub manifest_digest: String,
    /// Blobs uploaded; the others the registry had already.
    pub uploaded: Vec<String>,
}

// ANCHOR: push
/// Send the image tagged `reference` to the registry its name says, `chunk` bytes per
/// upload request at most.
pub fn push(state_root: &Path, reference: &Reference, credentials: Option<Credentials>, chunk: usize, progress: &Progress, explain: &Explain) -> Result<Pushed> {
    let store = ImageStore::open(state_root)?;
    let image = Image::load(&store, reference)?;
    let Some(tag) = reference.tag.clone() else {
        return Err(Error::runtime("push a tag (name:tag), not a digest: the registry files the manifest under the tag"));
    };
    let client = Client::new(&reference.registry, &reference.repository, "pull,push", credentials);
    progress.line(&format!("The push refers to repository [{}/{}]", reference.registry, reference.repository));
    let mut uploaded = Vec::new();
    // Layers from the top down, as Docker lists them, then the config (quietly: Docker
    // shows layers only).
    let quiet = Progress::quiet();
    let blobs = image.layers().iter().rev().map(|layer| (layer, progress)).chain([(image.manifest.config(), &quiet)]);
    for (blob, progress) in blobs {
        let digest = blob.digest().to_string();
        if client.has_blob(&digest, explain)? {
            progress.line(&format!("{}: Layer already exists", crate::progress::short_id(&digest)));
            continue;
        }
        let line = progress.blob(&digest, blob.size(), "Preparing");
        let content = crate::progress::Counting { inner: store.open_blob(&digest, blob.size())?, progress: &line, status: "Pushing" };
        client.upload_blob(&digest, content, blob.size(), chunk, explain)?;
        line.finish("Pushed");
        uploaded.push(digest);
    }
    let manifest = store.read_blob(&image.manifest_digest)?;
    let media_type = image.media_type();
    let answered = client.put_manifest(&tag, &manifest, &media_type, explain)?;
    if !answered.is_empty() && answered != image.manifest_digest {
        return Err(Error::runtime(format!("the registry filed the manifest as {answered}, but its digest is {}", image.manifest_digest)));
    }
    progress.line(&format!("{tag}: digest: {} size: {}", image.manifest_digest, manifest.len()));
    store.set_repo_digest(&reference.to_string(), &format!("{}@{}", reference.familiar_name(), image.manifest_digest))?;
    Ok(Pushed { manifest_digest: image.manifest_digest, uploaded })
}
// ANCHOR_END: push
