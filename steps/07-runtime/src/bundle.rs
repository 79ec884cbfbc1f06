//! A bundle: a directory holding `config.json` (the OCI runtime spec) and, usually, the
//! root filesystem it names. Everything a runtime needs to start a container, and nothing
//! about images, registries or Docker's flags: an engine wrote it, a runtime reads it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use step01::{Error, Result};

/// A bundle, read and checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute: `root.path` and the state's `bundle` are relative to it.
    pub dir: PathBuf,
    pub spec: Spec,
}

// ANCHOR: load
impl Bundle {
    /// Read `dir/config.json`. A file that is not JSON, names no root or no process, or
    /// speaks a version of the spec this runtime does not, is refused with what to fix.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::path::absolute(dir).map_err(|e| Error::runtime(format!("cannot resolve the bundle path {}: {e}", dir.display())))?;
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::runtime(format!("{} does not exist: a bundle is a directory with a config.json (`step07-runtime spec` writes one)", path.display())),
            _ => Error::runtime(format!("cannot read {}: {e}", path.display())),
        })?;
        let invalid = |e: serde_json::Error| Error::runtime(format!("{} is not a valid runtime spec: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
        // Read as JSON first: the spec's types fill a missing part with a default.
        let given = |key: &str| json.get(key).is_some_and(|value| !value.is_null());
        let (has_root, has_process) = (given("root"), given("process"));
        let spec: Spec = serde_json::from_value(json).map_err(invalid)?;
        check_version(spec.version())?;
        if !has_root {
            return Err(Error::runtime(format!("{} has no \"root\": say which directory becomes the container's / (\"root\": {{\"path\": \"rootfs\"}})", path.display())));
        }
        if !has_process {
            return Err(Error::runtime(format!("{} has no \"process\": say what to run (\"process\": {{\"args\": [\"sh\"], \"cwd\": \"/\"}})", path.display())));
        }
        Ok(Bundle { dir, spec })
    }

    /// Write `spec` as `dir/config.json`, in a bundle directory being made (nobody reads it
    /// before it is complete: a killed writer's directory is collected whole).
    pub fn write(dir: &Path, spec: &Spec) -> Result<()> {
        write_spec(&dir.join("config.json"), spec)
    }

    /// Keep `spec` as created in the container's state directory `state_dir`.
    pub fn write_as_created(state_dir: &Path, spec: &Spec) -> Result<()> {
        write_spec(&state_dir.join(AS_CREATED), spec)
    }

    /// The bundle at `dir` with the spec its container was created with: the copy in
    /// `state_dir` when the bundle is elsewhere, else the bundle's own config.json.
    pub fn as_created(state_dir: &Path, dir: &Path) -> Result<Bundle> {
        let copy = state_dir.join(AS_CREATED);
        match std::fs::read_to_string(&copy) {
            Ok(text) => {
                let spec = serde_json::from_str(&text).map_err(|e| Error::runtime(format!("{} is damaged ({e}); `delete --force` removes the container", copy.display())))?;
                Ok(Bundle { dir: dir.to_path_buf(), spec })
            }
            Err(_) => Bundle::load(dir),
        }
    }
}
// ANCHOR_END: load

fn write_spec(path: &Path, spec: &Spec) -> Result<()> {
    let json = serde_json::to_vec(spec).map_err(|e| Error::runtime(format!("cannot write the runtime spec: {e}")))?;
    std::fs::write(path, json).map_err(|e| Error::runtime(format!("cannot write {}: {e}", path.display())))
}

/// The copy of an engine's config.json kept beside the container's state.
pub const AS_CREATED: &str = "spec-as-created.json";

/// The spec's versions this runtime reads: 1.x, as runc and crun (the format has only
/// grown compatibly since 1.0.0).
fn check_version(version: &str) -> Result<()> {
    let major = version.split('.').next().unwrap_or_default();
    if major == "1" && version.split('.').count() >= 2 {
        Ok(())
    } else {
        Err(Error::runtime(format!("config.json has ociVersion {version:?}; carton reads version 1 of the runtime spec (such as \"1.0.2\")")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> (tempfile::TempDir, Result<Bundle>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let loaded = Bundle::load(dir.path());
        (dir, loaded)
    }

    #[test]
    fn bad_bundles_say_what_is_wrong() {
        let message = |config: &str| bundle_with(config).1.unwrap_err().message;
        assert!(message("{not json").contains("not a valid runtime spec"));
        assert!(message(r#"{"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}"#).contains("no \"root\""));
        assert!(message(r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#).contains("no \"process\""));
        assert!(message(r#"{"ociVersion": "2.0.0", "root": {"path": "r"}, "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}"#).contains("ociVersion \"2.0.0\""));
        let empty = tempfile::tempdir().unwrap();
        assert!(Bundle::load(empty.path()).unwrap_err().message.contains("does not exist"));
        let (_dir, good) = bundle_with(r#"{"ociVersion": "1.2.0", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}}"#);
        assert_eq!(good.unwrap().spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    }
}
