//! An image in the store: its manifest, its config, and the process it says to run.

use serde_json::Value;
use step01::{Error, Process, Result};

use crate::reference::Reference;
use crate::store::Store;

/// What an image is made of, read from the store and checked against its digests.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: String,
    /// The layer blobs (compressed tars), the bottom one first.
    pub layers: Vec<String>,
    /// The same layers' uncompressed digests, from the config.
    pub diff_ids: Vec<String>,
    pub config: Value,
}

impl Image {
    /// The image tagged `reference` in the store.
    pub fn load(store: &Store, reference: &Reference) -> Result<Image> {
        let name = reference.to_string();
        let manifest_digest = match &reference.digest {
            Some(digest) => digest.clone(),
            None => store.tags()?.into_iter().find(|(tag, _)| *tag == name).map(|(_, digest)| digest).ok_or_else(|| {
                Error::runtime(format!(
                    "no image {} here; make the offline busybox image with `carton bootstrap busybox` (pulling from a registry is planned)",
                    reference.familiar()
                ))
            })?,
        };
        let manifest: Value = json(&store.read_blob(&manifest_digest)?, "manifest")?;
        let config_digest = manifest["config"]["digest"].as_str().ok_or_else(|| Error::runtime("the manifest names no config"))?;
        let config: Value = json(&store.read_blob(config_digest)?, "config")?;
        let layers: Vec<String> = manifest["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str().map(String::from)).collect();
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(String::from)).collect();
        if layers.len() != diff_ids.len() {
            return Err(Error::runtime(format!("the image {name} is inconsistent: {} layers but {} diff IDs", layers.len(), diff_ids.len())));
        }
        Ok(Image { manifest_digest, layers, diff_ids, config })
    }

    // ANCHOR: process
    /// The process the image runs, as the OCI image spec's conversion says: Entrypoint
    /// then Cmd (`command`, if given, replaces Cmd; `entrypoint` replaces Entrypoint),
    /// the image's Env, and WorkingDir.
    pub fn process(&self, command: &[String], entrypoint: Option<&str>) -> Result<Process> {
        let strings = |value: &Value| value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect::<Vec<_>>();
        let config = &self.config["config"];
        let mut args = match entrypoint {
            Some("") => Vec::new(),
            Some(entrypoint) => vec![entrypoint.to_string()],
            None => strings(&config["Entrypoint"]),
        };
        // An explicit --entrypoint drops the image's Cmd too, as Docker does.
        args.extend(if !command.is_empty() { command.to_vec() } else if entrypoint.is_some() { Vec::new() } else { strings(&config["Cmd"]) });
        if args.is_empty() {
            return Err(Error::runtime("the image names no command and none was given: give one after the image name"));
        }
        let mut process = Process::new(args);
        for assignment in strings(&config["Env"]) {
            process.set_env(&assignment)?;
        }
        if let Some(dir) = config["WorkingDir"].as_str().filter(|d| !d.is_empty()) {
            process.cwd = dir.into();
        }
        Ok(process)
    }
    // ANCHOR_END: process

    /// The image's `User`, if it names one.
    pub fn user(&self) -> Option<String> {
        self.config["config"]["User"].as_str().filter(|u| !u.is_empty()).map(String::from)
    }
}

fn json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::runtime(format!("the image's {what} is not valid JSON: {e}")))
}

/// One line of `docker images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub reference: Reference,
    /// The config's digest: what Docker calls the image ID.
    pub id: String,
    pub created: String,
    /// The layers' bytes as stored (compressed).
    pub size: u64,
}

/// Every tagged image, in the order of `docker images` (newest tag last as stored).
pub fn list(store: &Store) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (name, digest) in store.tags()? {
        let reference = Reference::parse(&name)?;
        let manifest: Value = json(&store.read_blob(&digest)?, "manifest")?;
        let id = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
        let config: Value = json(&store.read_blob(&id)?, "config")?;
        let size = manifest["layers"].as_array().into_iter().flatten().filter_map(|l| l["size"].as_u64()).sum();
        out.push(Listed { reference, id, created: config["created"].as_str().unwrap_or("").to_string(), size });
    }
    Ok(out)
}

// ANCHOR: inspect
/// `docker image inspect`'s JSON for the image tagged `reference`.
pub fn inspect(store: &Store, reference: &Reference) -> Result<Value> {
    let image = Image::load(store, reference)?;
    let listed = list(store)?;
    let config = &image.config;
    let id = listed.iter().find(|l| l.reference == *reference).map(|l| l.id.clone()).unwrap_or_default();
    let tags: Vec<String> = listed.iter().filter(|l| l.id == id).map(|l| l.reference.familiar()).collect();
    let size: u64 = listed.iter().find(|l| l.id == id).map_or(0, |l| l.size);
    let c = &config["config"];
    Ok(serde_json::json!([{
        "Id": id,
        "RepoTags": tags,
        "RepoDigests": [],
        "Created": config["created"],
        "Architecture": config["architecture"],
        "Os": config["os"],
        "Size": size,
        "Config": {
            "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"], "Env": c["Env"], "WorkingDir": c["WorkingDir"].as_str().unwrap_or(""),
            "User": c["User"].as_str().unwrap_or(""), "ExposedPorts": c["ExposedPorts"], "Volumes": c["Volumes"],
        },
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }]))
}
// ANCHOR_END: inspect
