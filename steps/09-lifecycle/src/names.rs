//! Names: each container has one, unique under the state root (Docker's random
//! `adjective_surname`, or `--name`), and every command takes a full id, a unique prefix of
//! one, or a name.
//!
//! A name is a file, `names/NAME`, holding the container's id, made whole and then linked
//! to its name: of two CLIs racing for one name, the kernel lets exactly one make the link
//! (`link` fails with EEXIST for the other). No lock; `rm` removes the file, and the
//! collector removes a name whose container is gone (a CLI killed while making it).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use step01::{Error, Result};

// Docker's generator pairs an adjective with a notable scientist or hacker (its list has
// about 100 and 240; these are some of them).
const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "charming",
    "clever",
    "cool",
    "compassionate",
    "competent",
    "confident",
    "crazy",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "exciting",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];
const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "burnell",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "colden",
    "cori",
    "cray",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dirac",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hodgkin",
    "hoover",
    "hopper",
    "hypatia",
    "jackson",
    "jang",
    "jennings",
    "johnson",
    "kalam",
    "kapitsa",
    "keller",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "merkle",
    "mirzakhani",
    "morse",
    "napier",
    "nash",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "noyce",
    "pascal",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "rosalind",
    "sammet",
    "shamir",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "villani",
    "volhard",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// `names/` under the state root.
fn names_dir(state_root: &Path) -> PathBuf {
    state_root.join("names")
}

/// Whether `name` is one Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn check(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) || name.len() > 255 {
        return Err(Error::runtime(format!("invalid container name {name:?}: use letters, digits and _ . - (starting with a letter or digit)")));
    }
    Ok(())
}

// ANCHOR: claim
/// Take `name` for container `id`: refused when another container has it.
pub fn claim(state_root: &Path, name: &str, id: &str) -> Result<()> {
    check(name)?;
    let dir = names_dir(state_root);
    fs::create_dir_all(&dir).map_err(|e| Error::runtime(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(name);
    let mut whole = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", dir.display())))?;
    whole.write_all(id.as_bytes()).map_err(|e| Error::runtime(format!("cannot write in {}: {e}", dir.display())))?;
    match fs::hard_link(whole.path(), &path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            Err(Error::runtime(format!("the container name \"/{name}\" is already in use by container {holder}: remove (or rename) that container to be able to reuse that name")))
        }
        Err(e) => Err(Error::runtime(format!("cannot create {}: {e}", path.display()))),
    }
}
// ANCHOR_END: claim

/// A random free name, claimed for `id`.
pub fn claim_random(state_root: &Path, id: &str) -> Result<String> {
    let mut bytes = [0u8; 4];
    for attempt in 0..20 {
        getrandom(&mut bytes);
        let (a, s) = (u16::from_le_bytes([bytes[0], bytes[1]]) as usize, u16::from_le_bytes([bytes[2], bytes[3]]) as usize);
        // Docker never names one boring_wozniak ("Steve Wozniak is not boring"); after a
        // few collisions it adds a digit, as Docker does.
        let mut name = format!("{}_{}", ADJECTIVES[a % ADJECTIVES.len()], SURNAMES[s % SURNAMES.len()]);
        if attempt > 5 {
            name.push_str(&(bytes[0] % 10).to_string());
        }
        if claim(state_root, &name, id).is_ok() {
            return Ok(name);
        }
    }
    Err(Error::runtime("cannot find a free random name; give one with --name"))
}

fn getrandom(bytes: &mut [u8]) {
    // Safety: getrandom writes at most bytes.len() bytes into the buffer.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
}

/// Give up `name` (`rm`), if container `id` holds it.
pub fn release(state_root: &Path, name: &str, id: &str) {
    let path = names_dir(state_root).join(name);
    if fs::read_to_string(&path).is_ok_and(|holder| holder == id) {
        let _ = fs::remove_file(path);
    }
}

/// Give up the names whose containers are gone (a CLI killed between taking the name and
/// writing the container's record).
pub fn release_orphans(state_root: &Path) {
    let Ok(entries) = fs::read_dir(names_dir(state_root)) else { return };
    for entry in entries.flatten() {
        let Ok(id) = fs::read_to_string(entry.path()) else { continue };
        let dir = state_root.join("containers").join(&id);
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|made| made.elapsed().is_ok_and(|age| age.as_secs() > 60));
        // A container being made has its directory, or is younger than a minute.
        if !dir.is_dir() && old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The id holding `name`, if any.
pub fn holder(state_root: &Path, name: &str) -> Option<String> {
    check(name).ok()?;
    fs::read_to_string(names_dir(state_root).join(name)).ok()
}

// ANCHOR: resolve
/// The container a user means: a full id, a name (as Docker, with or without its leading
/// `/`), or a unique prefix of an id. An ambiguous prefix is an error naming the candidates.
pub fn resolve(state_root: &Path, given: &str) -> Result<String> {
    find(state_root, given)?.ok_or_else(|| Error::runtime(format!("no such container: {given}")))
}

/// [`resolve`], with `None` for a name that is no container's.
pub fn find(state_root: &Path, given: &str) -> Result<Option<String>> {
    let name = given.strip_prefix('/').unwrap_or(given);
    let containers = state_root.join("containers");
    if name.is_empty() {
        return Ok(None);
    }
    if step02::ContainerId::is_valid(name) && containers.join(name).is_dir() {
        return Ok(Some(name.to_string()));
    }
    if let Some(id) = holder(state_root, name) {
        return Ok(Some(id));
    }
    if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Not a name, not an id: maybe a container carton-oci made, by its own id.
        let made_by_runtime = step07::check_id(name).is_ok() && containers.join(name).join("state.json").is_file();
        return Ok(made_by_runtime.then(|| name.to_string()));
    }
    let ids = fs::read_dir(&containers).map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect::<Vec<_>>()).unwrap_or_default();
    let matching: Vec<String> = ids.into_iter().filter(|id| id.starts_with(name) && step02::ContainerId::is_valid(id)).collect();
    match &matching[..] {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => Err(Error::runtime(format!(
            "{given} is ambiguous: {} containers' ids start with it ({}); give more of the id",
            matching.len(),
            matching.iter().map(|id| &id[..12]).collect::<Vec<_>>().join(", ")
        ))),
    }
}
// ANCHOR_END: resolve

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_taken_once_and_found_again() {
        let root = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        claim(root.path(), "web", &id).unwrap();
        let error = claim(root.path(), "web", &"b".repeat(64)).unwrap_err().to_string();
        assert!(error.contains("already in use by container aaaa"), "{error}");
        assert_eq!(holder(root.path(), "web"), Some(id.clone()));
        assert_eq!(resolve(root.path(), "/web").unwrap(), id);
        release(root.path(), "web", &"b".repeat(64));
        assert_eq!(holder(root.path(), "web"), Some(id.clone()), "only its holder gives a name up");
        release(root.path(), "web", &id);
        assert_eq!(holder(root.path(), "web"), None);
        for bad in ["", "-x", "a b", "../etc"] {
            assert!(claim(root.path(), bad, &id).is_err(), "{bad:?}");
        }
        let random = claim_random(root.path(), &id).unwrap();
        assert!(random.contains('_'), "{random}");
    }
}
