//! The store is an OCI image layout that the real tools read. Needs skopeo and umoci
//! (apt-get install skopeo umoci) and root (umoci unpacks with owners).

use std::process::Command;

use step06::{ImageStore, Reference};

#[test]
fn skopeo_and_umoci_read_an_image_carton_made() {
    assert!(nix_is_root(), "this test needs root: run it as root");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    step01::busybox::bootstrap(&rootfs).unwrap();
    let store = ImageStore::open(&dir.path().join("state")).unwrap();
    let reference = Reference::parse("busybox").unwrap();
    let digest = step06::image_from_dir(&store, &rootfs, &reference, &["sh"]).unwrap();

    let layout = store.root.display().to_string();
    let raw = Command::new("skopeo").args(["inspect", "--raw"]).arg(format!("oci:{layout}:{reference}")).output().expect("skopeo (apt-get install skopeo)");
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(raw.stdout, store.read_blob(&digest).unwrap(), "skopeo found carton's manifest, byte for byte");
    let config = Command::new("skopeo").args(["inspect", "--config"]).arg(format!("oci:{layout}:{reference}")).output().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));

    let unpacked = dir.path().join("bundle");
    let out = Command::new("umoci").args(["unpack", "--image"]).arg(format!("{layout}:{reference}")).arg(&unpacked).output().expect("umoci (apt-get install umoci)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(unpacked.join("rootfs/bin/busybox").is_file(), "umoci unpacked the layer");
}

fn nix_is_root() -> bool {
    // Safety: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
