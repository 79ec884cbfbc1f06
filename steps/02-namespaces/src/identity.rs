//! Who a container is: a random id, and a hostname that defaults to its short form.

use std::fmt;

use step01::{Error, Result};

/// 64 hexadecimal digits, as Docker's container ids; the first 12 are the short id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerId(String);

impl ContainerId {
    /// 32 random bytes from the kernel, written in hex.
    pub fn random() -> Result<ContainerId> {
        loop {
            let mut bytes = [0u8; 32];
            // Safety: the buffer is valid for 32 bytes.
            let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
            if got != bytes.len() as isize {
                return Err(Error::runtime("cannot read random bytes for the container id (getrandom failed)"));
            }
            let id = ContainerId(bytes.iter().map(|b| format!("{b:02x}")).collect());
            // A short id of digits only (one in 280) is the hostname: a resolver reads
            // "132804202521" as an IPv4 address, and `hostname -i` fails. Docker draws again
            // too.
            if !id.short().bytes().all(|b| b.is_ascii_digit()) {
                return Ok(id);
            }
        }
    }

    /// The first 12 digits: what `docker ps` shows, and the default hostname.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` is a full id: 64 lowercase hexadecimal digits.
    pub fn is_valid(text: &str) -> bool {
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kernel takes at most 64 bytes (HOST_NAME_MAX); names are letters, digits, `-` and
/// `.`, starting with a letter or digit (RFC 1123), which is what Docker accepts too.
pub fn validate_hostname(name: &str) -> Result<()> {
    let well_formed = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 64 || !well_formed {
        return Err(Error::runtime(format!("invalid hostname {name:?}: use 1 to 64 letters, digits, '-' and '.', starting with a letter or digit")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_id_is_valid_and_other_names_are_not() {
        let id = super::ContainerId::random().unwrap();
        assert!(super::ContainerId::is_valid(id.as_str()));
        for other in ["", "abc", &"A".repeat(64), &"g".repeat(64), &format!("{}/", &id.as_str()[..63])] {
            assert!(!super::ContainerId::is_valid(other), "{other}");
        }
    }

    #[test]
    fn a_short_id_is_never_all_digits() {
        // Without the second draw, about 7 of 2000 would be (one in 280).
        for _ in 0..2000 {
            let id = ContainerId::random().unwrap();
            assert!(!id.short().bytes().all(|b| b.is_ascii_digit()), "{}", id.short());
        }
    }

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let (a, b) = (ContainerId::random().unwrap(), ContainerId::random().unwrap());
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(a.short(), &a.as_str()[..12]);
    }

    #[test]
    fn hostnames_follow_the_kernels_and_dockers_rules() {
        assert!(validate_hostname("web-1.example").is_ok());
        assert!(validate_hostname(&"a".repeat(64)).is_ok());
        for bad in ["", "-x", "has space", "under_score", &"a".repeat(65)] {
            assert!(validate_hostname(bad).unwrap_err().message.contains("invalid hostname"), "{bad:?}");
        }
    }
}
