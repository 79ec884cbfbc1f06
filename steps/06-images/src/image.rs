//! An image in the store: its manifest, its config, and the process it says to run.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::Value;
use step01::{Error, Process, Result};

use crate::reference::Reference;
use crate::store::ImageStore;

/// What an image is made of, read from the store and checked against its digests.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The config's `Healthcheck` (Docker's, which the OCI config has no field for), as
    /// written: step 09 reads it.
    pub healthcheck: Option<Value>,
}

/// The part of Docker's image config the OCI type leaves out.
#[derive(serde::Deserialize)]
struct DockerExtras {
    #[serde(default)]
    config: Option<DockerConfigExtras>,
}

#[derive(serde::Deserialize)]
struct DockerConfigExtras {
    #[serde(rename = "Healthcheck", default)]
    healthcheck: Option<Value>,
}

impl Image {
    /// The image tagged `reference` in the store.
    pub fn load(store: &ImageStore, reference: &Reference) -> Result<Image> {
        let manifest_digest = store.lookup(reference)?.ok_or_else(|| {
            Error::runtime(format!("no image {} here; `carton pull {}` fetches it (or `carton bootstrap busybox` makes the offline busybox image)", reference.familiar(), reference.familiar()))
        })?;
        Image::from_store(store, &manifest_digest)
    }

    /// The image whose manifest is the blob `manifest_digest`.
    pub fn from_store(store: &ImageStore, manifest_digest: &str) -> Result<Image> {
        let manifest = parse_manifest(&store.read_blob(manifest_digest)?)?;
        let config_bytes = store.read_blob(manifest.config().digest().as_ref())?;
        let config = parse_config(&config_bytes)?;
        let healthcheck = serde_json::from_slice::<DockerExtras>(&config_bytes).ok().and_then(|extras| extras.config?.healthcheck);
        let image = Image { manifest_digest: manifest_digest.to_string(), manifest, config, healthcheck };
        if image.layers().len() != image.diff_ids().len() {
            return Err(Error::runtime(format!("the image {manifest_digest} is inconsistent: {} layers but {} diff IDs in its config", image.layers().len(), image.diff_ids().len())));
        }
        Ok(image)
    }

    /// The layers' descriptors (compressed blobs), the bottom one first.
    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers()
    }

    /// The same layers' uncompressed digests, from the config.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// The manifest's media type (OCI's or Docker's schema 2); OCI's when it names none.
    pub fn media_type(&self) -> String {
        self.manifest.media_type().as_ref().map_or(crate::MANIFEST_TYPE.to_string(), |t| t.to_string())
    }

    /// The config's digest: what Docker calls the image ID.
    pub fn id(&self) -> String {
        self.manifest.config().digest().to_string()
    }

    // ANCHOR: process
    /// The process the image runs, as the OCI image spec's conversion says: Entrypoint
    /// then Cmd (`command`, if given, replaces Cmd; `entrypoint` replaces Entrypoint),
    /// the image's Env, and WorkingDir.
    pub fn process(&self, command: &[String], entrypoint: Option<&str>) -> Result<Process> {
        let config = self.config.config().clone().unwrap_or_default();
        let mut args = match entrypoint {
            Some("") => Vec::new(),
            Some(entrypoint) => vec![entrypoint.to_string()],
            None => config.entrypoint().clone().unwrap_or_default(),
        };
        // An explicit --entrypoint drops the image's Cmd too, as Docker does.
        args.extend(if !command.is_empty() {
            command.to_vec()
        } else if entrypoint.is_some() {
            Vec::new()
        } else {
            config.cmd().clone().unwrap_or_default()
        });
        if args.is_empty() {
            return Err(Error::runtime("the image names no command and none was given: give one after the image name"));
        }
        let mut process = Process::new(args);
        for assignment in config.env().iter().flatten() {
            process.set_env(assignment)?;
        }
        if let Some(dir) = config.working_dir().as_deref().filter(|d| !d.is_empty()) {
            process.cwd = dir.into();
        }
        Ok(process)
    }
    // ANCHOR_END: process

    /// What the runtime spec keeps of the image's config as annotations, as the OCI image
    /// spec's conversion document names them: `StopSignal`, `ExposedPorts` (comma-separated),
    /// and carton's own for `Volumes`.
    pub fn annotations(&self) -> Vec<(String, String)> {
        let Some(config) = self.config.config().as_ref() else { return Vec::new() };
        let mut annotations = Vec::new();
        if let Some(signal) = config.stop_signal().as_ref().filter(|s| !s.is_empty()) {
            annotations.push(("org.opencontainers.image.stopSignal".to_string(), signal.clone()));
        }
        if let Some(ports) = config.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
            annotations.push(("org.opencontainers.image.exposedPorts".to_string(), ports.join(",")));
        }
        if let Some(volumes) = config.volumes().as_ref().filter(|v| !v.is_empty()) {
            annotations.push(("org.carton.image.volumes".to_string(), volumes.join(",")));
        }
        annotations
    }

    /// The image's `User`, if it names one.
    pub fn user(&self) -> Option<String> {
        self.config.config().as_ref()?.user().clone().filter(|u| !u.is_empty())
    }
}

/// An image manifest (OCI, or Docker's schema 2, which has the same shape).
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest> {
    ImageManifest::from_reader(bytes).map_err(|e| Error::runtime(format!("not a valid image manifest: {e}")))
}

/// An image config (OCI, or Docker's, which is a superset).
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(bytes).map_err(|e| Error::runtime(format!("not a valid image config: {e}")))
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
pub fn list(store: &ImageStore) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (name, digest) in store.tags()? {
        let reference = Reference::parse(&name)?;
        // A damaged image (a blob gone from the disk) is left out rather than hiding the
        // others; `rmi` still removes its name.
        let Ok(image) = Image::from_store(store, &digest) else { continue };
        let size = image.layers().iter().map(|l| l.size()).sum();
        out.push(Listed { reference, id: image.id(), created: image.config.created().clone().unwrap_or_default(), size });
    }
    Ok(out)
}

// ANCHOR: inspect
/// `docker image inspect`'s JSON for the image tagged `reference`.
pub fn inspect(store: &ImageStore, reference: &Reference) -> Result<Value> {
    let image = Image::load(store, reference)?;
    let id = image.id();
    let tags: Vec<String> = list(store)?.iter().filter(|l| l.id == id).map(|l| l.reference.familiar()).collect();
    let size: u64 = image.layers().iter().map(|l| l.size()).sum();
    let c = image.config.config().clone().unwrap_or_default();
    // Go's map[string]struct{} in JSON: {"80/tcp": {}}.
    let set = |items: &Option<Vec<String>>| items.as_ref().map(|items| items.iter().map(|i| (i.clone(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>());
    Ok(serde_json::json!([{
        "Id": id,
        "RepoTags": tags,
        "RepoDigests": store.repo_digests(&image.manifest_digest)?,
        "Created": image.config.created(),
        "Architecture": image.config.architecture().to_string(),
        "Os": image.config.os().to_string(),
        "Size": size,
        "Config": {
            "Cmd": c.cmd(), "Entrypoint": c.entrypoint(), "Env": c.env(), "WorkingDir": c.working_dir().clone().unwrap_or_default(),
            "User": c.user().clone().unwrap_or_default(), "ExposedPorts": set(c.exposed_ports()), "Volumes": set(c.volumes()),
            "Labels": c.labels(),
        },
        "RootFS": {"Type": "layers", "Layers": image.diff_ids()},
    }]))
}
// ANCHOR_END: inspect

/// One line of `docker history`: a step of the image's making, the newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The image's ID on the newest step; older steps have no image of their own (Docker
    /// shows `<missing>`: only a locally built image has one per step).
    pub id: Option<String>,
    pub created: String,
    pub created_by: String,
    /// The bytes of the layer the step made, as stored (compressed); 0 for a step that
    /// changed only the config (`CMD`, `ENV`...).
    pub size: u64,
    pub comment: String,
}

// ANCHOR: history
/// `docker history`: the config's history, each step that made a layer matched with
/// that layer, in order.
pub fn history(store: &ImageStore, reference: &Reference) -> Result<Vec<Step>> {
    let image = Image::load(store, reference)?;
    let mut layers = image.layers().iter();
    let mut steps: Vec<Step> = image
        .config
        .history()
        .iter()
        .flatten()
        .map(|step| Step {
            id: None,
            created: step.created().clone().unwrap_or_default(),
            created_by: step.created_by().clone().unwrap_or_default(),
            size: if step.empty_layer().unwrap_or(false) { 0 } else { layers.next().map_or(0, |l| l.size()) },
            comment: step.comment().clone().unwrap_or_default(),
        })
        .collect();
    // Layers the history does not tell of (an image made without one) still appear.
    steps.extend(layers.map(|l| Step { id: None, created: String::new(), created_by: String::new(), size: l.size(), comment: String::new() }));
    steps.reverse();
    if let Some(newest) = steps.first_mut() {
        newest.id = Some(image.id());
    }
    Ok(steps)
}
// ANCHOR_END: history

/// This machine's architecture as Go (and so image indexes) spells it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The platform this machine runs, as image indexes name it: `linux/amd64`.
pub fn host_platform() -> String {
    format!("linux/{}", host_architecture())
}

// ANCHOR: choose_platform
/// From an index (a "manifest list"), the manifest for this machine's platform. Among
/// several for the same OS and architecture, one without a CPU variant is preferred
/// (`amd64` `v3` builds need newer CPUs than every `amd64`).
pub fn choose_platform(index: &[u8]) -> Result<Descriptor> {
    let index = ImageIndex::from_reader(index).map_err(|e| Error::runtime(format!("not a valid image index: {e}")))?;
    let host = host_platform();
    let platform_of = |d: &Descriptor| d.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture()));
    let matching: Vec<&Descriptor> = index.manifests().iter().filter(|d| platform_of(d).as_deref() == Some(host.as_str())).collect();
    let plain = matching.iter().find(|d| d.platform().as_ref().is_some_and(|p| p.variant().is_none()));
    plain.or(matching.first()).map(|d| (*d).clone()).ok_or_else(|| {
        let offered: Vec<String> = index.manifests().iter().filter_map(platform_of).collect();
        Error::runtime(format!("the image has no manifest for this machine's platform ({host}); it has: {}", if offered.is_empty() { "none named".to_string() } else { offered.join(", ") }))
    })
}
// ANCHOR_END: choose_platform

#[cfg(test)]
mod tests {
    #[test]
    fn an_index_gives_the_plain_manifest_for_this_machine_before_a_cpu_variant() {
        let arch = super::host_architecture();
        let entry = |digest: char, os: &str, arch: &str, variant: Option<&str>| {
            let mut platform = serde_json::json!({"os": os, "architecture": arch});
            if let Some(variant) = variant {
                platform["variant"] = variant.into();
            }
            serde_json::json!({"mediaType": crate::MANIFEST_TYPE, "digest": format!("sha256:{}", digest.to_string().repeat(64)), "size": 1, "platform": platform})
        };
        let index = |entries: Vec<serde_json::Value>| serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": entries})).unwrap();
        let both = index(vec![entry('1', "windows", arch, None), entry('2', "linux", arch, Some("v3")), entry('3', "linux", arch, None)]);
        assert_eq!(super::choose_platform(&both).unwrap().digest().to_string(), format!("sha256:{}", "3".repeat(64)));
        let only_variant = index(vec![entry('2', "linux", arch, Some("v3"))]);
        assert_eq!(super::choose_platform(&only_variant).unwrap().digest().to_string(), format!("sha256:{}", "2".repeat(64)));
        let error = super::choose_platform(&index(vec![entry('1', "windows", arch, None)])).unwrap_err();
        assert!(error.message.contains(&format!("no manifest for this machine's platform (linux/{arch}); it has: windows/{arch}")), "{}", error.message);
    }
}
