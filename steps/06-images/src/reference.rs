//! Image references, with Docker's rules: what `busybox`, `localhost:5000/team/app:1`
//! and `alpine@sha256:…` name.
//!
//! ```text
//! [REGISTRY/]REPOSITORY[:TAG][@DIGEST]
//! busybox                 → docker.io/library/busybox:latest
//! team/app:1              → docker.io/team/app:1
//! localhost:5000/app      → localhost:5000/app:latest
//! ```
//!
//! The first part is a registry when it has a `.` or a `:` or is `localhost`; otherwise the
//! name is on Docker Hub, where one-part names live under `library/`. Repository names are
//! lowercase letters and digits, joined by `.`, `_`, `__` or dashes, in `/`-separated parts.

use std::fmt;

use step01::{Error, Result};

/// Docker Hub, as references spell it.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`...
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    /// `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// `sha256:` and 64 hex digits.
    pub digest: Option<String>,
}

// ANCHOR: parse
impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| Error::runtime(format!("invalid reference format {text:?}: {why}"));
        if text.is_empty() || text.len() > 255 {
            return Err(bad("a reference has 1 to 255 characters"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest).map_err(|_| bad("the digest must be sha256: and 64 hex digits"))?)),
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a registry may have a port).
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if !rest[colon..].contains('/') => (&rest[..colon], Some(&rest[colon + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            let valid = tag.len() <= 128 && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(bad("a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => (first.to_string(), path.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if name.chars().any(|c| c.is_ascii_uppercase()) && registry == DOCKER_HUB || path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository names must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad("a repository name is lowercase letters and digits, joined by '.', '_', '__' or '-', in '/'-separated parts"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = tag.map(String::from).or_else(|| digest.is_none().then(|| "latest".to_string()));
        Ok(Reference { registry, repository, tag, digest })
    }
}
// ANCHOR_END: parse

/// One `/`-separated part of a repository name: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn valid_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let separator_end = match bytes[i] {
            b'.' => i + 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => i + 2,
            b'_' => i + 1,
            b'-' => i + bytes[i..].iter().take_while(|b| **b == b'-').count(),
            _ => return false,
        };
        if !bytes.get(separator_end).is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return false;
        }
        i = separator_end;
    }
    true
}

/// `sha256:` and 64 lowercase hex digits.
pub fn parse_digest(text: &str) -> Result<String> {
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(text.to_string()),
        _ => Err(Error::runtime(format!("invalid digest {text:?}: write sha256: and 64 lowercase hex digits"))),
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// The short form `docker images` shows: `busybox:latest`, `team/app:1`,
    /// `localhost:5000/app:1`.
    pub fn familiar(&self) -> String {
        let name = self.familiar_name();
        match (&self.tag, &self.digest) {
            (Some(tag), _) => format!("{name}:{tag}"),
            (None, Some(digest)) => format!("{name}@{digest}"),
            (None, None) => name,
        }
    }

    /// The short form without tag or digest: `busybox`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        match (self.registry.as_str(), self.repository.strip_prefix("library/")) {
            (DOCKER_HUB, Some(official)) => official.to_string(),
            (DOCKER_HUB, None) => self.repository.clone(),
            (registry, _) => format!("{registry}/{}", self.repository),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn short_names_expand_as_docker_expands_them() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("team/app"), "docker.io/team/app:latest");
        assert_eq!(full("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(full("ghcr.io/org/tool/sub:v2.0-rc_1"), "ghcr.io/org/tool/sub:v2.0-rc_1");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(full(&format!("alpine@{digest}")), format!("docker.io/library/alpine@{digest}"));
        assert_eq!(full(&format!("alpine:3@{digest}")), format!("docker.io/library/alpine:3@{digest}"));
        assert_eq!(full("my_app.v2__x-y--z"), "docker.io/library/my_app.v2__x-y--z:latest");
    }

    #[test]
    fn the_familiar_form_is_what_docker_images_shows() {
        assert_eq!(Reference::parse("busybox").unwrap().familiar(), "busybox:latest");
        assert_eq!(Reference::parse("docker.io/library/busybox:1").unwrap().familiar(), "busybox:1");
        assert_eq!(Reference::parse("team/app:1").unwrap().familiar(), "team/app:1");
        assert_eq!(Reference::parse("localhost:5000/app").unwrap().familiar(), "localhost:5000/app:latest");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (text, why) in [
            ("UPPER:case", "must be lowercase"),
            ("a::b", "a repository name is"),
            ("", "1 to 255"),
            ("-lead", "a repository name is"),
            ("a//b", "a repository name is"),
            ("app:", "a tag is up to 128"),
            ("app:.dot", "a tag is up to 128"),
            ("app@sha256:123", "the digest must be"),
            ("a..b", "a repository name is"),
            ("a___b", "a repository name is"),
        ] {
            let error = Reference::parse(text).unwrap_err();
            assert!(error.message.starts_with(&format!("invalid reference format {text:?}")) && error.message.contains(why), "{text}: {}", error.message);
        }
        assert!(Reference::parse(&"a".repeat(256)).is_err());
    }
}
