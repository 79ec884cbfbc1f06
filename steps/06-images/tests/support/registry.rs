//! A real registry for one test: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1,
//! without auth, with htpasswd (Basic) auth, or with token (Bearer) auth backed by a small
//! token server that runs in the test process.
//!
//! Use it from a test file in steps/06-images/tests with
//! `#[path = "support/registry.rs"] mod registry;`, or from the workspace root's tests with
//! `#[path = "../steps/06-images/tests/support/registry.rs"] mod registry;`.
//! Needs only std, `tempfile` and the dev-dependencies `rcgen`, `ring`, `bcrypt`, `base64`.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

const REGISTRY: &str = "/usr/bin/docker-registry";
/// The `service` the registry names in its challenge and the `aud` of our tokens.
pub const SERVICE: &str = "carton-test";
/// The `iss` of our tokens.
pub const ISSUER: &str = "carton-test-issuer";
/// The realm of the Basic challenge.
pub const REALM: &str = "carton-test";

/// A running registry. Dropping it kills the server and removes its storage.
pub struct TestRegistry {
    /// "127.0.0.1:PORT", what goes before the repository in a reference.
    pub addr: String,
    /// The registry's filesystem storage root.
    pub storage: PathBuf,
    child: Child,
    token: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry that lets anyone pull and push.
    pub fn start() -> TestRegistry {
        Self::launch(Auth::None, false)
    }

    /// A registry that speaks HTTPS, on 127.0.0.2 (which carton does not count as this
    /// machine, so it insists on HTTPS there), with a certificate from a CA of its own:
    /// trusted only by a client that is given [`TestRegistry::ca_certificate`].
    pub fn with_tls() -> TestRegistry {
        Self::launch(Auth::None, true)
    }

    /// The PEM certificate of the CA that signed the TLS registry's certificate.
    pub fn ca_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A registry that wants `Authorization: Basic` for `user`/`password` (htpasswd, bcrypt).
    pub fn with_basic_auth(user: &str, password: &str) -> TestRegistry {
        Self::launch(Auth::Basic { user, password }, false)
    }

    /// A registry that wants a Bearer token, which a token server on another loopback port
    /// issues to `user`/`password` (Basic credentials) for whatever scope was asked.
    pub fn with_token_auth(user: &str, password: &str) -> TestRegistry {
        Self::launch(Auth::Token { user, password }, false)
    }

    /// How many tokens the token server issued (always 0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.token.as_ref().map_or(0, |t| t.issued.load(Ordering::SeqCst))
    }

    /// The token server's realm URL (None without token auth).
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("http://{}/token", t.addr))
    }

    /// Where the registry keeps the bytes of blob `digest` ("sha256:HEX" or "HEX").
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The registry process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the registry wrote to stderr so far (for assertion messages).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.stderr")).unwrap_or_default()
    }

    fn launch(auth: Auth, tls: bool) -> TestRegistry {
        assert!(Path::new(REGISTRY).exists(), "{REGISTRY} not found: install docker-registry (apt-get install docker-registry)");
        let dir = tempfile::Builder::new().prefix("carton-registry-").tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).unwrap();

        let (auth_yaml, token) = match auth {
            Auth::None => (String::new(), None),
            Auth::Basic { user, password } => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                let file = dir.path().join("htpasswd");
                fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                (format!("auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n", file.display()), None)
            }
            Auth::Token { user, password } => {
                let server = TokenServer::start(user, password);
                let bundle = dir.path().join("token-cert.pem");
                fs::write(&bundle, &server.cert_pem).unwrap();
                let yaml = format!("auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n", server.addr, bundle.display());
                (yaml, Some(server))
            }
        };

        let host = if tls { "127.0.0.2" } else { "127.0.0.1" };
        let tls_yaml = if tls { tls_files(dir.path()) } else { String::new() };

        // The port is free when we pick it, but another process may take it before the
        // registry binds: then the registry exits at once, and we try another port.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
            let addr = format!("{host}:{port}");
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
                    storage.display()
                ),
            )
            .unwrap();
            let out = fs::File::create(dir.path().join("registry.stdout")).unwrap();
            let err = fs::File::create(dir.path().join("registry.stderr")).unwrap();
            let mut child = Command::new(REGISTRY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("{REGISTRY}: {e}: install docker-registry (apt-get install docker-registry)"));

            let deadline = Instant::now() + Duration::from_secs(10);
            let started = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(format!("exited with {status}"));
                }
                if let Some(code) = v2_status(&addr) {
                    // Over TLS, Go answers a plain HTTP request with 400: it is up.
                    if code == 200 || code == 401 || (tls && code == 400) {
                        break Ok(());
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err("did not answer GET /v2/ within 10 s".to_string());
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let stderr = fs::read_to_string(dir.path().join("registry.stderr")).unwrap_or_default();
            match started {
                Ok(()) => return TestRegistry { addr, storage, child, token, dir },
                Err(why) => last_err = format!("docker-registry on {addr} {why}; stderr:\n{stderr}"),
            }
            if !stderr.contains("address already in use") {
                break;
            }
        }
        panic!("{last_err}");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's pid only; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(token) = self.token.take() {
            token.stop();
        }
        // self.dir (the tempdir) is removed when its field drops, after this.
    }
}

/// A CA and a certificate it signs for 127.0.0.2, written into `dir` (ca.pem, cert.pem,
/// key.pem); returns the registry's `tls:` configuration (under `http:`).
fn tls_files(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "carton test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA certificate");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("server key");
    let mut server = rcgen::CertificateParams::new(vec!["127.0.0.2".to_string()]).unwrap();
    server.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.2");
    let cert = server.signed_by(&key, &ca).expect("server certificate");
    fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    format!("  tls:\n    certificate: {}\n    key: {}\n", dir.join("cert.pem").display(), dir.join("key.pem").display())
}

/// skopeo, kept away from the user's auth files and signature policy.
pub fn skopeo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("REGISTRY_AUTH_FILE", dir.join("no-auth.json"))
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .output()
        .expect("skopeo (apt-get install skopeo)")
}

enum Auth<'a> {
    None,
    Basic { user: &'a str, password: &'a str },
    Token { user: &'a str, password: &'a str },
}

/// The status code of a plain HTTP/1.0 `GET /v2/`, or None if nothing answers.
fn v2_status(addr: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The token server: answers `GET /token?service=..&scope=..` with an ES256 JWT whose x5c
/// header carries a self-signed certificate that the registry trusts (its rootcertbundle).
struct TokenServer {
    addr: String,
    cert_pem: String,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Signer {
    user: String,
    password: String,
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    cert_der_b64: String,
    issued: Arc<AtomicUsize>,
}

impl TokenServer {
    fn start(user: &str, password: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, ISSUER);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed certificate");

        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng).expect("PKCS#8 key");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let signer = Signer { user: user.to_string(), password: password.to_string(), key, rng, cert_der_b64: STANDARD.encode(cert.der()), issued: issued.clone() };
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let _ = signer.serve(conn);
                    }
                }
            })
        };
        TokenServer { addr, cert_pem: cert.pem(), issued, stop, thread: Some(thread) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Signer {
    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut authorization = None;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_string();
                match name.trim().to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value),
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        // Drain a body, if any, so closing the socket doesn't reset the response.
        let mut body = vec![0; content_length.min(1 << 16)];
        reader.read_exact(&mut body)?;

        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (status, body) = if method != "GET" || path != "/token" {
            ("404 Not Found", r#"{"errors":[{"code":"NOT_FOUND","message":"GET /token only"}]}"#.to_string())
        } else if !self.authorized(authorization.as_deref()) {
            ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad or missing credentials"}]}"#.to_string())
        } else {
            let token = self.token(query);
            self.issued.fetch_add(1, Ordering::SeqCst);
            ("200 OK", format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#))
        };
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
        if status.starts_with("401") {
            head.push_str(&format!("WWW-Authenticate: Basic realm=\"{REALM}\"\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())?;
        conn.write_all(body.as_bytes())?;
        conn.flush()
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(header) = header else { return false };
        let Some((scheme, creds)) = header.split_once(' ') else { return false };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(creds.trim()) else { return false };
        decoded == format!("{}:{}", self.user, self.password).as_bytes()
    }

    /// A JWT granting exactly the scopes the query asked for.
    fn token(&self, query: &str) -> String {
        let mut access = Vec::new();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(name) != "scope" {
                continue;
            }
            // A query may carry several scopes, separated by spaces.
            for scope in percent_decode(value).split(' ').filter(|s| !s.is_empty()) {
                // type:name:actions; the name may itself hold a ':' (host:port/repo).
                let Some((kind, rest)) = scope.split_once(':') else { continue };
                let Some((name, actions)) = rest.rsplit_once(':') else { continue };
                let actions: Vec<String> = actions.split(',').filter(|a| !a.is_empty()).map(|a| format!("\"{}\"", json_escape(a))).collect();
                access.push(format!(r#"{{"type":"{}","name":"{}","actions":[{}]}}"#, json_escape(kind), json_escape(name), actions.join(",")));
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let jti = format!("{:x}-{:x}", now.as_nanos(), self.issued.load(Ordering::SeqCst));
        let now = now.as_secs();
        let header = format!(r#"{{"typ":"JWT","alg":"ES256","x5c":["{}"]}}"#, self.cert_der_b64);
        let claims =
            format!(r#"{{"iss":"{ISSUER}","sub":"{}","aud":"{SERVICE}","exp":{},"nbf":{},"iat":{now},"jti":"{jti}","access":[{}]}}"#, json_escape(&self.user), now + 300, now - 10, access.join(","));
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = self.key.sign(&self.rng, signing_input.as_bytes()).expect("ES256 signature");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
