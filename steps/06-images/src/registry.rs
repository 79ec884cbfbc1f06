//! A registry client: the OCI distribution spec, spoken by hand over HTTP.
//!
//! A registry is a web server with a small, fixed API under `/v2/`:
//!
//! ```text
//! GET  /v2/                                  are you a registry? (and does it want a login?)
//! GET  /v2/REPOSITORY/manifests/TAG|DIGEST   the manifest (or an index of manifests)
//! GET  /v2/REPOSITORY/blobs/DIGEST           a config or a layer, by digest
//! HEAD /v2/REPOSITORY/blobs/DIGEST           do you have it? (push skips it then)
//! POST /v2/REPOSITORY/blobs/uploads/         start an upload → a Location to send to
//! PATCH LOCATION                             a chunk of it
//! PUT  LOCATION?digest=DIGEST                the end of it: the registry checks the digest
//! PUT  /v2/REPOSITORY/manifests/TAG          the manifest, last: now the tag exists
//! ```
//!
//! Authentication is a challenge: a request without credentials gets `401` and a
//! `WWW-Authenticate` header. `Basic realm=…` wants a user and password on every
//! request; `Bearer realm=URL,service=…,scope=…` (Docker Hub) sends us to a token server
//! first, which answers with a token for exactly that scope (`repository:library/busybox:pull`).
//!
//! The transport (TCP, TLS, HTTP/1.1 framing) is the `ureq` crate; everything a registry
//! means is written here.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use step01::{Action, Error, Explain, Result};

use crate::reference::DOCKER_HUB;
use crate::CHAPTER;

/// What we accept as a manifest, in the order we prefer.
pub(crate) const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Whether a manifest media type is an index (a list of per-platform manifests).
pub(crate) fn is_index(media_type: &str) -> bool {
    media_type == MANIFEST_TYPES[0] || media_type == MANIFEST_TYPES[2]
}

/// Where a registry's API lives: Docker Hub's name in references is `docker.io`, its API
/// is at `registry-1.docker.io`. Plain HTTP only for this machine (`localhost`,
/// `127.0.0.1`, `[::1]`) and registries named in `CARTON_INSECURE_REGISTRIES`
/// (comma-separated `host:port`), as Docker's `insecure-registries`.
pub(crate) fn base_url(registry: &str) -> String {
    let host = if registry == DOCKER_HUB { "registry-1.docker.io" } else { registry };
    let name = host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name);
    let local = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    let listed = std::env::var("CARTON_INSECURE_REGISTRIES").unwrap_or_default().split(',').any(|entry| entry.trim() == registry);
    format!("{}://{host}", if local || listed { "http" } else { "https" })
}

/// A user name and password, as `carton login` saved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    fn basic(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.password)))
    }
}

/// A conversation with one repository of one registry (`localhost:5000` + `team/app`),
/// allowed `actions` (`pull`, or `pull,push`).
pub struct Client {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    actions: &'static str,
    credentials: Option<Credentials>,
    /// The `Authorization` header that worked last (basic, or a bearer token).
    authorization: Mutex<Option<String>>,
}

/// A response, its body read.
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What a request sends: method, URL, headers, body.
struct Request<'a> {
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: &'a [u8],
}

impl Client {
    pub fn new(registry: &str, repository: &str, actions: &'static str, credentials: Option<Credentials>) -> Client {
        let base = base_url(registry);
        let plain_http = base.starts_with("http:");
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            // Loopback never goes through a proxy; others may (HTTPS_PROXY, NO_PROXY).
            .proxy(if plain_http { None } else { ureq::Proxy::try_from_env() })
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A registry that stops sending in the middle of a layer must not hang carton.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("carton/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client { agent, base, registry: registry.to_string(), repository: repository.to_string(), actions, credentials, authorization: Mutex::new(None) }
    }

    /// `/v2/REPOSITORY/WHAT` as a full URL.
    pub(crate) fn url(&self, what: &str) -> String {
        format!("{}/v2/{}/{what}", self.base, self.repository)
    }

    // ANCHOR: ping
    /// `GET /v2/`: is this a registry, and do our credentials (if any) work here?
    pub fn ping(&self, explain: &Explain) -> Result<()> {
        let reply = self.send(Request { method: "GET", url: format!("{}/v2/", self.base), headers: Vec::new(), body: &[] }, Some(explain))?;
        match reply.status {
            200 => Ok(()),
            status => Err(Error::runtime(format!("{} answered {status} to GET /v2/: is it a registry? ({})", self.base, registry_error(&reply)))),
        }
    }
    // ANCHOR_END: ping

    // ANCHOR: manifest
    /// `GET /v2/REPOSITORY/manifests/REFERENCE`, a tag or a digest. Returns the bytes as
    /// sent (their sha256 is the manifest's digest) and their media type.
    pub fn manifest(&self, reference: &str, explain: &Explain) -> Result<(Vec<u8>, String)> {
        let accept = MANIFEST_TYPES.join(", ");
        let reply = self.send(Request { method: "GET", url: self.url(&format!("manifests/{reference}")), headers: vec![("Accept", accept)], body: &[] }, Some(explain))?;
        match reply.status {
            200 => {}
            404 => return Err(Error::runtime(format!("{}/{}:{reference} was not found in the registry ({}): check the name and tag", self.registry, self.repository, registry_error(&reply)))),
            status => return Err(self.unexpected(status, "fetch the manifest", &reply)),
        }
        // The Content-Type says what it is; older registries leave it out, the JSON says it too.
        let media_type = match reply.header("content-type").map(|t| t.split(';').next().unwrap_or(t).trim().to_string()) {
            Some(t) if MANIFEST_TYPES.contains(&t.as_str()) => t,
            _ => serde_json::from_slice::<serde_json::Value>(&reply.body).ok().and_then(|m| m["mediaType"].as_str().map(String::from)).unwrap_or_default(),
        };
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(Error::runtime(format!(
                "{}/{}:{reference} has a manifest of type {media_type:?}, which carton cannot read (it reads OCI and Docker schema 2 images)",
                self.registry, self.repository
            )));
        }
        Ok((reply.body, media_type))
    }
    // ANCHOR_END: manifest

    /// `GET /v2/REPOSITORY/blobs/DIGEST`, as a stream (layers can be large). No explaining
    /// here: downloads run on several threads, and the caller explains them first.
    pub fn blob(&self, digest: &str) -> Result<impl Read + Send + use<>> {
        let mut attempt = 0;
        loop {
            let url = self.url(&format!("blobs/{digest}"));
            let sent = self.authorization_for(&url);
            let request = match &sent {
                Some(authorization) => self.agent.get(&url).header("Authorization", authorization),
                None => self.agent.get(&url),
            };
            let response = request.call().map_err(|e| self.transport(e))?;
            let status = response.status().as_u16();
            if status == 200 {
                return Ok(response.into_body().into_reader());
            }
            let reply = read_reply(response);
            if status == 401 && attempt == 0 {
                attempt += 1;
                self.authenticate(&reply, sent.as_deref(), None)?;
                continue;
            }
            return Err(match status {
                404 => Error::runtime(format!("the registry {} has no blob {digest} in {} ({})", self.registry, self.repository, registry_error(&reply))),
                _ => self.unexpected(status, &format!("download {digest}"), &reply),
            });
        }
    }

    // ANCHOR: has_blob
    /// `HEAD /v2/REPOSITORY/blobs/DIGEST`: 200 if the registry has it, 404 if not.
    pub fn has_blob(&self, digest: &str, explain: &Explain) -> Result<bool> {
        let reply = self.send(Request { method: "HEAD", url: self.url(&format!("blobs/{digest}")), headers: Vec::new(), body: &[] }, Some(explain))?;
        match reply.status {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(self.unexpected(status, &format!("ask for {digest}"), &reply)),
        }
    }
    // ANCHOR_END: has_blob

    // ANCHOR: upload
    /// Upload the `size` bytes of `content` as the blob `digest`: `POST` opens an upload
    /// session and answers with a `Location`; the bytes go in `PATCH`es of `chunk` bytes,
    /// each with its `Content-Range`, the last piece with the closing `PUT ?digest=`, which
    /// makes the registry check the digest and keep the blob. A blob no bigger than
    /// `chunk` (or any blob, with `chunk` 0) goes in that one `PUT`: a monolithic upload.
    pub fn upload_blob(&self, digest: &str, mut content: impl Read, size: u64, chunk: usize, explain: &Explain) -> Result<()> {
        let reply = self.send(Request { method: "POST", url: self.url("blobs/uploads/"), headers: Vec::new(), body: &[] }, Some(explain))?;
        if reply.status != 202 {
            return Err(self.unexpected(reply.status, "start an upload", &reply));
        }
        let mut location = self.location(&reply, &self.url("blobs/uploads/"))?;
        let piece_size = if chunk == 0 { size } else { chunk as u64 };
        let (mut sent, mut piece) = (0u64, Vec::new());
        loop {
            piece.clear();
            (&mut content).take(piece_size).read_to_end(&mut piece).map_err(|e| Error::runtime(format!("cannot read {digest}: {e}")))?;
            if sent + piece.len() as u64 >= size {
                break;
            }
            if piece.is_empty() {
                return Err(Error::runtime(format!("{digest} ended after {sent} of its {size} bytes")));
            }
            let range = format!("{sent}-{}", sent + piece.len() as u64 - 1);
            let headers = vec![("Content-Type", "application/octet-stream".to_string()), ("Content-Range", range)];
            let reply = self.send(Request { method: "PATCH", url: location.clone(), headers, body: &piece }, Some(explain))?;
            if reply.status != 202 {
                return Err(self.unexpected(reply.status, &format!("send bytes {sent}.. of {digest}"), &reply));
            }
            location = self.location(&reply, &location)?;
            sent += piece.len() as u64;
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let headers = vec![("Content-Type", "application/octet-stream".to_string())];
        let reply = self.send(Request { method: "PUT", url, headers, body: &piece }, Some(explain))?;
        match reply.status {
            201 => Ok(()),
            400 => Err(Error::runtime(format!("the registry refused {digest}: {} (the bytes do not match their digest?)", registry_error(&reply)))),
            status => Err(self.unexpected(status, &format!("finish the upload of {digest}"), &reply)),
        }
    }
    // ANCHOR_END: upload

    /// `PUT /v2/REPOSITORY/manifests/TAG`: the manifest, once every blob it names is there.
    /// Returns the digest the registry gives it.
    pub fn put_manifest(&self, tag: &str, bytes: &[u8], media_type: &str, explain: &Explain) -> Result<String> {
        let headers = vec![("Content-Type", media_type.to_string())];
        let reply = self.send(Request { method: "PUT", url: self.url(&format!("manifests/{tag}")), headers, body: bytes }, Some(explain))?;
        if reply.status != 201 {
            return Err(self.unexpected(reply.status, "store the manifest", &reply));
        }
        Ok(reply.header("docker-content-digest").unwrap_or_default().to_string())
    }

    /// The upload URL a reply to `asked` points to, made absolute (RFC 3986): registries
    /// often give it relative to themselves.
    fn location(&self, reply: &Reply, asked: &str) -> Result<String> {
        let location = reply.header("location").ok_or_else(|| Error::runtime(format!("{} started an upload but gave no Location to send it to", self.registry)))?;
        let scheme = &self.base[..self.base.find("://").unwrap_or(0)];
        Ok(match location {
            l if l.starts_with("http://") || l.starts_with("https://") => l.to_string(),
            l if l.starts_with("//") => format!("{scheme}:{l}"),
            l if l.starts_with('/') => format!("{}{l}", self.base),
            l => format!("{}/{l}", asked.split('?').next().unwrap_or(asked).rsplit_once('/').map_or(asked, |(dir, _)| dir)),
        })
    }

    /// The authorization for a request to `url`: only to the registry itself, never to
    /// another host a `Location` names (which would then hold our password or token).
    fn authorization_for(&self, url: &str) -> Option<String> {
        let ours = url == self.base || url.strip_prefix(&self.base).is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'));
        ours.then(|| self.authorization.lock().unwrap_or_else(|e| e.into_inner()).clone()).flatten()
    }

    // ANCHOR: send
    /// Send a request with the authorization that worked last; on `401`, answer the
    /// challenge once and send it again.
    fn send(&self, request: Request, explain: Option<&Explain>) -> Result<Reply> {
        for attempt in 0..2 {
            let authorization = self.authorization_for(&request.url);
            if let Some(explain) = explain {
                explain.step(|| http_action(&request, authorization.is_some()));
            }
            let mut builder = ureq::http::Request::builder().method(request.method).uri(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(*name, value);
            }
            if let Some(authorization) = &authorization {
                builder = builder.header("Authorization", authorization);
            }
            let http_request = builder.body(request.body).map_err(|e| Error::runtime(format!("cannot make a request for {}: {e}", request.url)))?;
            let reply = read_reply(self.agent.run(http_request).map_err(|e| self.transport(e))?);
            if reply.status != 401 {
                return Ok(reply);
            }
            if attempt == 1 {
                return Err(self.login_needed()); // refused with the answer to its own challenge
            }
            self.authenticate(&reply, authorization.as_deref(), explain)?;
        }
        unreachable!("the loop returns on its second attempt")
    }
    // ANCHOR_END: send

    // ANCHOR: authenticate
    /// Answer a `401`'s `WWW-Authenticate` challenge: `Basic` wants the saved user and
    /// password; `Bearer` wants a token from the realm it names, for the scope we need.
    /// `sent` is the authorization the refused request carried.
    fn authenticate(&self, reply: &Reply, sent: Option<&str>, explain: Option<&Explain>) -> Result<()> {
        let header = reply.header("www-authenticate").unwrap_or_default();
        let (scheme, params) = parse_challenge(header);
        if let Some(explain) = explain {
            explain.step(|| Action::new(CHAPTER, format!("the registry answered 401: it wants {scheme} authentication"), format!("WWW-Authenticate: {header}")).label("answer"));
        }
        let authorization = match scheme.to_ascii_lowercase().as_str() {
            "basic" => match &self.credentials {
                Some(credentials) => credentials.basic(),
                None => return Err(self.login_needed()),
            },
            "bearer" => {
                let realm = params.get("realm").ok_or_else(|| Error::runtime(format!("{} asked for a token but named no realm to get it from", self.registry)))?;
                // Our password goes to the token server: never in the clear when the registry itself is HTTPS.
                if self.base.starts_with("https:") && !realm.starts_with("https://") {
                    return Err(Error::runtime(format!("{} sends carton for a token to {realm}, which is not HTTPS: refusing to send credentials there", self.registry)));
                }
                // A login asks for no repository: a token for nothing in particular proves the password.
                let mut query = Vec::new();
                if let Some(service) = params.get("service") {
                    query.push(format!("service={}", encode(service)));
                }
                if !self.repository.is_empty() {
                    query.push(format!("scope={}", encode(&format!("repository:{}:{}", self.repository, self.actions))));
                }
                let url = format!("{realm}{}{}", if realm.contains('?') { '&' } else { '?' }, query.join("&"));
                if let Some(explain) = explain {
                    explain.step(|| {
                        Action::new(CHAPTER, format!("ask the token server for a token to {} {}", self.actions, self.repository), format!("GET {url}"))
                            .label("request")
                            .shell(format!("curl -s {}'{url}'", if self.credentials.is_some() { "-u USER:PASSWORD " } else { "" }))
                    });
                }
                let mut request = self.agent.get(&url);
                if let Some(credentials) = &self.credentials {
                    request = request.header("Authorization", credentials.basic());
                }
                let token_reply = read_reply(request.call().map_err(|e| self.transport(e))?);
                match token_reply.status {
                    200 => {}
                    401 | 403 => return Err(self.login_needed()),
                    status => return Err(Error::runtime(format!("the token server {realm} answered {status}: {}", registry_error(&token_reply)))),
                }
                let answer: serde_json::Value = serde_json::from_slice(&token_reply.body).map_err(|e| Error::runtime(format!("the token server {realm} did not answer JSON: {e}")))?;
                // Docker Hub answers both; the spec says `token`, OAuth2 says `access_token`.
                let token = answer["token"].as_str().or(answer["access_token"].as_str()).ok_or_else(|| Error::runtime(format!("the token server {realm} gave no token")))?;
                format!("Bearer {token}")
            }
            _ => return Err(Error::runtime(format!("{} wants authentication carton does not speak: {header:?}", self.registry))),
        };
        if sent == Some(authorization.as_str()) {
            return Err(self.login_needed()); // the very answer was just refused
        }
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(authorization);
        Ok(())
    }
    // ANCHOR_END: authenticate

    fn login_needed(&self) -> Error {
        let what = if self.actions.contains("push") { "push to" } else { "pull from" };
        match &self.credentials {
            Some(credentials) if self.repository.is_empty() => Error::runtime(format!("{} refused the user name {:?} or its password", self.registry, credentials.user)),
            Some(credentials) => {
                Error::runtime(format!("{}: access to {} denied for user {:?}: the name or password is wrong, or the user may not {what} it", self.registry, self.repository, credentials.user))
            }
            None => Error::runtime(format!("{} wants a login to {what} {}: run `carton login {}` first", self.registry, self.repository, self.registry)),
        }
    }

    fn transport(&self, error: ureq::Error) -> Error {
        let text = error.to_string();
        // rustls's verdicts arrive wrapped in I/O errors; say what they mean.
        let why = if text.contains("certificate") {
            format!("{text}: this machine does not trust the registry's certificate (add its CA to the system's certificates, or point SSL_CERT_FILE at it)")
        } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
            format!("{text}: it does not speak HTTPS; if it speaks plain HTTP, list it in CARTON_INSECURE_REGISTRIES")
        } else {
            match &error {
                ureq::Error::ConnectionFailed | ureq::Error::Io(_) => format!("{text}: is the registry running, and is the address right?"),
                ureq::Error::HostNotFound => "its host name is unknown (no DNS answer)".to_string(),
                ureq::Error::Timeout(_) => "it did not answer in time".to_string(),
                _ => text,
            }
        };
        Error::runtime(format!("cannot reach the registry {} at {}: {why}", self.registry, self.base))
    }

    fn unexpected(&self, status: u16, doing: &str, reply: &Reply) -> Error {
        Error::runtime(format!("{} answered {status} when asked to {doing} in {}: {}", self.registry, self.repository, registry_error(reply)))
    }
}

/// The explanation of one request, with the `curl` that does the same.
fn http_action(request: &Request, authorized: bool) -> Action {
    let mut curl = String::from("curl -s");
    if request.method == "HEAD" {
        curl.push_str(" -I");
    } else if request.method != "GET" {
        curl.push_str(&format!(" -X {}", request.method));
    }
    for (name, value) in &request.headers {
        curl.push_str(&format!(" -H '{name}: {value}'"));
    }
    if authorized {
        curl.push_str(" -H \"Authorization: $AUTH\"");
    }
    let mut what = String::new();
    if !request.body.is_empty() {
        curl.push_str(" --data-binary @BODY");
        what = format!(" ({} bytes)", request.body.len());
    }
    curl.push_str(&format!(" '{}'", request.url));
    let path = request.url.split_once("/v2/").map_or(request.url.as_str(), |(_, path)| path);
    let what = format!("ask the registry: {} /v2/{}{what}", request.method, path.split('?').next().unwrap_or(path));
    Action::new(CHAPTER, what, format!("{} {}", request.method, request.url)).label("request").shell(curl)
}

fn read_reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().iter().filter_map(|(name, value)| Some((name.as_str().to_ascii_lowercase(), value.to_str().ok()?.to_string()))).collect();
    // Replies read whole are manifests, tokens and errors: small. A 4 MiB cap as the
    // distribution spec's for manifests.
    let body = response.body_mut().with_config().limit(4 << 20).read_to_vec().unwrap_or_default();
    Reply { status, headers, body }
}

/// A registry's error body, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"…"}]}`,
/// as one line.
fn registry_error(reply: &Reply) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
    let errors: Vec<String> = parsed
        .iter()
        .flat_map(|p| p["errors"].as_array().into_iter().flatten())
        .map(|e| format!("{} {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")).trim().to_string())
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    let text = String::from_utf8_lossy(&reply.body).trim().chars().take(200).collect::<String>();
    if text.is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        text
    }
}

// ANCHOR: challenge
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull,push"`
/// → ("Bearer", {realm, service, scope}). Values may be quoted and hold commas.
pub(crate) fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
            }
            None => after.split_once(',').map_or((after, ""), |(value, remaining)| (value, remaining)),
        };
        params.insert(key, value.trim().to_string());
        rest = remaining;
    }
    (scheme.to_string(), params)
}
// ANCHOR_END: challenge

/// Percent-encoding for a query value.
fn encode(value: &str) -> String {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

// ANCHOR: logins
/// Saved logins, in Docker's `config.json` format (`{"auths": {"HOST": {"auth":
/// base64("user:password")}}}`), in `STATE_ROOT/auth.json`, readable by root only.
pub struct Logins {
    path: PathBuf,
}

impl Logins {
    pub fn new(state_root: &Path) -> Logins {
        Logins { path: state_root.join("auth.json") }
    }

    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()?;
        let encoded = file["auths"][registry]["auth"].as_str()?;
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials { user: user.to_string(), password: password.to_string() })
    }

    pub fn save(&self, registry: &str, credentials: &Credentials) -> Result<()> {
        self.change(|auths| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credentials.user, credentials.password));
            auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
        })
    }

    /// Forget the login to `registry`; returns whether there was one.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut removed = false;
        self.change(|auths| removed = auths.remove(registry).is_some())?;
        Ok(removed)
    }

    fn change(&self, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Result<()> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let failed = |e: std::io::Error| Error::runtime(format!("cannot write {}: {e}", self.path.display()));
        std::fs::create_dir_all(dir).map_err(failed)?;
        // Two logins at once: one after the other, each reading what the other wrote.
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("auth.lock")).map_err(failed)?;
        // Safety: flock on a descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        let mut file: serde_json::Value = std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_else(|| serde_json::json!({}));
        if !file["auths"].is_object() {
            file["auths"] = serde_json::json!({});
        }
        edit(file["auths"].as_object_mut().expect("made an object above"));
        // A new file (0600 before anything is in it) renamed over the old: never readable
        // by others, never half-written.
        let mut staging = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        staging.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        staging.write_all(&serde_json::to_vec_pretty(&file).unwrap_or_default()).and_then(|()| staging.as_file().sync_all()).map_err(failed)?;
        staging.persist(&self.path).map_err(|e| failed(e.error))?;
        Ok(())
    }
}
// ANCHOR_END: logins

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_with_quoted_commas() {
        let (scheme, params) = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#);
        assert_eq!(scheme, "Bearer");
        assert_eq!(params["realm"], "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/busybox:pull,push");
        let (scheme, params) = parse_challenge(r#"Basic realm="basic-realm""#);
        assert_eq!((scheme.as_str(), params["realm"].as_str()), ("Basic", "basic-realm"));
        assert_eq!(parse_challenge("").1.len(), 0);
    }

    #[test]
    fn plain_http_only_for_this_machine_or_listed_registries() {
        assert_eq!(base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(base_url("127.0.0.1:41234"), "http://127.0.0.1:41234");
        assert_eq!(base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(base_url("localhost.evil.example:5000"), "https://localhost.evil.example:5000");
    }

    #[test]
    fn logins_are_saved_as_docker_does_and_only_root_reads_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let logins = Logins::new(dir.path());
        let alice = Credentials { user: "alice".into(), password: "s:cret".into() };
        logins.save("localhost:5000", &alice).unwrap();
        assert_eq!(logins.get("localhost:5000"), Some(alice));
        let file: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("auth.json")).unwrap()).unwrap();
        assert_eq!(file["auths"]["localhost:5000"]["auth"], "YWxpY2U6czpjcmV0");
        assert_eq!(std::fs::metadata(dir.path().join("auth.json")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(logins.remove("localhost:5000").unwrap());
        assert!(!logins.remove("localhost:5000").unwrap());
        assert_eq!(logins.get("localhost:5000"), None);
    }

    fn reply_with(header: (&str, &str)) -> Reply {
        Reply { status: 202, headers: [(header.0.to_string(), header.1.to_string())].into(), body: Vec::new() }
    }

    #[test]
    fn credentials_go_only_to_the_registry_itself() {
        let client = Client::new("localhost:5000", "app", "pull,push", None);
        *client.authorization.lock().unwrap() = Some("Basic c2VjcmV0".into());
        assert!(client.authorization_for("http://localhost:5000/v2/app/blobs/uploads/x?_state=1").is_some());
        assert!(client.authorization_for("http://localhost:5000/v2/").is_some());
        for elsewhere in ["http://127.0.0.2:5000/v2/app/blobs/uploads/x", "http://localhost:50000/v2/", "https://localhost:5000/v2/", "http://localhost:5000.evil.example/v2/"] {
            assert_eq!(client.authorization_for(elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn upload_locations_are_made_absolute() {
        let client = Client::new("localhost:5000", "app", "pull,push", None);
        let asked = "http://localhost:5000/v2/app/blobs/uploads/";
        let cases = [
            ("/v2/app/blobs/uploads/u1?_state=s", "http://localhost:5000/v2/app/blobs/uploads/u1?_state=s"),
            ("http://127.0.0.1:9/upload", "http://127.0.0.1:9/upload"),
            ("//cdn.example/upload", "http://cdn.example/upload"),
            ("u2?_state=s", "http://localhost:5000/v2/app/blobs/uploads/u2?_state=s"),
        ];
        for (location, absolute) in cases {
            assert_eq!(client.location(&reply_with(("location", location)), asked).unwrap(), absolute, "{location}");
        }
        assert!(client.location(&reply_with(("x", "y")), asked).unwrap_err().message.contains("gave no Location"));
    }

    #[test]
    fn an_https_registry_may_not_send_the_password_to_a_plain_http_token_server() {
        let client = Client::new("registry.example", "app", "pull", Some(Credentials { user: "u".into(), password: "p".into() }));
        let challenge = reply_with(("www-authenticate", r#"Bearer realm="http://127.0.0.1:9/token",service="s""#));
        let error = client.authenticate(&challenge, None, None).unwrap_err();
        assert!(error.message.contains("not HTTPS: refusing to send credentials"), "{}", error.message);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
