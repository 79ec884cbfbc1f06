//! The registry fixture works: skopeo pushes to and reads from a real docker-registry, in each
//! auth flavour. Needs docker-registry, skopeo and umoci (apt-get install docker-registry skopeo
//! umoci); no root.

#[path = "support/registry.rs"]
mod registry;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use registry::{skopeo, TestRegistry};

/// A tiny OCI layout (an empty image, tag "t") made by umoci.
fn tiny_image(dir: &Path) -> String {
    let layout = dir.join("layout");
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci (apt-get install umoci)");
        assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["init", "--layout", layout.to_str().unwrap()]);
    run(&["new", "--image", &format!("{}:t", layout.display())]);
    format!("oci:{}:t", layout.display())
}

fn push(dir: &Path, src: &str, reg: &TestRegistry, creds: Option<&str>) -> Output {
    let dest = format!("docker://{}/fixture/test:1", reg.addr);
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--dest-creds", creds]);
    }
    args.extend([src, &dest]);
    skopeo(dir, &args)
}

fn inspect_raw(dir: &Path, reg: &TestRegistry, creds: Option<&str>) -> Output {
    let image = format!("docker://{}/fixture/test:1", reg.addr);
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    args.push(&image);
    skopeo(dir, &args)
}

fn ok(out: &Output, what: &str, reg: &TestRegistry) {
    assert!(out.status.success(), "{what} failed: {}\nregistry stderr:\n{}", String::from_utf8_lossy(&out.stderr), reg.stderr());
}

/// The pushed manifest came back, and its config blob lies where `blob_data` says.
fn check_pulled(dir: &Path, reg: &TestRegistry, raw: &Output) {
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("manifest JSON");
    let config = manifest["config"]["digest"].as_str().expect("config digest").to_string();
    let hex = config.strip_prefix("sha256:").unwrap();
    let local = std::fs::read(dir.join("layout/blobs/sha256").join(hex)).unwrap();
    assert_eq!(std::fs::read(reg.blob_data(&config)).unwrap(), local, "the registry stores the config blob at blob_data()");
}

/// The first response line and the headers of a plain GET /v2/.
fn get_v2(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn no_auth_push_and_pull() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_image(dir.path());
    let reg = TestRegistry::start();
    assert!(get_v2(&reg.addr).starts_with("HTTP/1.0 200"));
    ok(&push(dir.path(), &src, &reg, None), "push", &reg);
    let raw = inspect_raw(dir.path(), &reg, None);
    ok(&raw, "inspect", &reg);
    check_pulled(dir.path(), &reg, &raw);
    assert_eq!(reg.token_requests(), 0);
}

#[test]
fn basic_auth_wants_the_right_password() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_image(dir.path());
    let reg = TestRegistry::with_basic_auth("alice", "s3cret");
    let challenge = get_v2(&reg.addr);
    assert!(challenge.starts_with("HTTP/1.0 401"), "{challenge}");
    assert!(challenge.contains("Basic realm=\"carton-test\""), "{challenge}");

    assert!(!push(dir.path(), &src, &reg, None).status.success(), "anonymous push refused");
    assert!(!push(dir.path(), &src, &reg, Some("alice:wrong")).status.success(), "wrong password refused");
    ok(&push(dir.path(), &src, &reg, Some("alice:s3cret")), "push", &reg);

    assert!(!inspect_raw(dir.path(), &reg, None).status.success(), "anonymous pull refused");
    assert!(!inspect_raw(dir.path(), &reg, Some("alice:wrong")).status.success(), "wrong password refused");
    let raw = inspect_raw(dir.path(), &reg, Some("alice:s3cret"));
    ok(&raw, "inspect", &reg);
    check_pulled(dir.path(), &reg, &raw);
    assert_eq!(reg.token_requests(), 0);
}

#[test]
fn token_auth_does_the_bearer_dance() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_image(dir.path());
    let reg = TestRegistry::with_token_auth("bob", "hunter2");
    let challenge = get_v2(&reg.addr);
    assert!(challenge.starts_with("HTTP/1.0 401"), "{challenge}");
    let realm = reg.token_realm().unwrap();
    assert!(challenge.contains(&format!("Bearer realm=\"{realm}\"")), "{challenge}");

    assert!(!push(dir.path(), &src, &reg, None).status.success(), "anonymous push refused");
    assert!(!push(dir.path(), &src, &reg, Some("bob:wrong")).status.success(), "wrong password refused");
    assert_eq!(reg.token_requests(), 0, "no token for bad credentials");
    ok(&push(dir.path(), &src, &reg, Some("bob:hunter2")), "push", &reg);
    let after_push = reg.token_requests();
    assert!(after_push > 0, "skopeo fetched a token to push");

    assert!(!inspect_raw(dir.path(), &reg, None).status.success(), "anonymous pull refused");
    let raw = inspect_raw(dir.path(), &reg, Some("bob:hunter2"));
    ok(&raw, "inspect", &reg);
    check_pulled(dir.path(), &reg, &raw);
    assert!(reg.token_requests() > after_push, "skopeo fetched a token to pull");
}

#[test]
fn drop_stops_everything() {
    let reg = TestRegistry::with_token_auth("u", "p");
    let (addr, pid, storage) = (reg.addr.clone(), reg.pid(), reg.storage.clone());
    let token = reg.token_realm().unwrap();
    let token_addr = token.trim_start_matches("http://").trim_end_matches("/token").to_string();
    assert!(storage.is_dir());
    drop(reg);

    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    assert_eq!(rc, -1, "registry pid {pid} is gone");
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ESRCH));
    assert!(TcpStream::connect(&addr).is_err(), "nothing answers on {addr}");
    assert!(TcpStream::connect(&token_addr).is_err(), "the token server stopped");
    assert!(!storage.exists(), "storage removed");
}

/// One HTTP/1.0 GET, returning the whole response.
fn get(addr: &str, path: &str, authorization: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_registry_checks_the_token_signature() {
    use base64::Engine;
    let reg = TestRegistry::with_token_auth("carol", "pw");
    let realm = reg.token_realm().unwrap();
    let token_addr = realm.trim_start_matches("http://").trim_end_matches("/token");
    let query = "/token?service=carton-test&scope=repository%3Afixture%2Ftest%3Apull";

    let anonymous = get(token_addr, query, None);
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("carol:pw"));
    let response = get(token_addr, query, Some(&basic));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"].as_str(), Some(token));
    assert_eq!(reg.token_requests(), 1);

    let claims = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["access"], serde_json::json!([{"type": "repository", "name": "fixture/test", "actions": ["pull"]}]));

    let accepted = get(&reg.addr, "/v2/", Some(&format!("Bearer {token}")));
    assert!(accepted.starts_with("HTTP/1.0 200"), "{accepted}\n{}", reg.stderr());
    // Change one character inside the signature (not the last one, whose low bits are
    // padding that base64 decoders ignore): the registry must refuse it.
    let mut forged = token.as_bytes().to_vec();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let refused = get(&reg.addr, "/v2/", Some(&format!("Bearer {forged}")));
    assert!(refused.starts_with("HTTP/1.0 401"), "{refused}");
}
