//! Hostile layers for tests: tar entries the tar crate refuses to write (`../`, absolute
//! names, links that climb out), written byte by byte. Used by step 05's tests and, by
//! `#[path]`, by step 06's.
#![allow(dead_code)] // each test file uses what it needs

/// Append one entry to `tar`.
pub fn raw_entry(tar: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// The end-of-archive marker: two empty blocks.
pub fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.extend_from_slice(&[0; 1024]);
    tar
}
