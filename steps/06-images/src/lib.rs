//! # Step 06 — images (begun)
//!
//! An image is an ordered list of layers plus a configuration, named by digests, stored
//! once, pulled from and pushed to registries. This step so far has:
//!
//! - [`reference`]: Docker's rules for image names (`busybox` is
//!   `docker.io/library/busybox:latest`);
//! - [`store`]: the content-addressed store, an OCI image layout.
//!
//! The registry client, the image commands and `carton run IMAGE` are still to come.

pub mod reference;
pub mod store;

pub use reference::Reference;
pub use store::Store;

use std::path::Path;

use step01::{Error, Result};

/// The media types of an OCI image's parts.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

// ANCHOR: image_from_dir
/// Make a one-layer image from the directory `rootfs` (as `docker import` does with a
/// tarball), store it, and tag it `reference`. `cmd` is what it runs by default.
/// Returns the manifest's digest.
pub fn image_from_dir(store: &Store, rootfs: &Path, reference: &Reference, cmd: &[&str]) -> Result<String> {
    use sha2::Digest;
    // The layer: the directory as a tar; its sha256 is the diff ID, the config's name for it.
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", rootfs).map_err(|e| Error::runtime(format!("cannot read {}: {e}", rootfs.display())))?;
    let tar = tar.into_inner().map_err(|e| Error::runtime(format!("cannot make the layer: {e}")))?;
    let diff_id = format!("sha256:{}", hex(&sha2::Sha256::digest(&tar)));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, &tar).and_then(|()| gzip.try_finish()).map_err(|e| Error::runtime(format!("cannot compress the layer: {e}")))?;
    let compressed = gzip.finish().map_err(|e| Error::runtime(format!("cannot compress the layer: {e}")))?;
    let (layer, layer_size) = store.put_blob(compressed.as_slice(), None)?;
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": format!("carton: image made from {}", rootfs.display())}],
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
// ANCHOR_END: image_from_dir

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
