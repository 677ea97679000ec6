//! Optional authenticity: a keyed blake3 MAC over what identifies a backup
//! (SPEC.md §9.1 "AUTH record"). Hashes prove a file is intact; a MAC proves
//! it was made by someone holding the key.

use crate::error::{Error, Hash, Result};
use crate::layout::{AUTH_KEY_ID_LEN, AUTH_LEN, AUTH_MAC_OFFSET, MIN_KEY_LEN};
use std::path::Path;

/// The largest key file read: a key is a few dozen random bytes, so a
/// larger file is a mistake (such as `--key /dev/urandom`), not a key.
pub const MAX_KEY_FILE_LEN: u64 = 4096;

const MAC_KEY_CONTEXT: &str = "sdar 2026-11-22 archive MAC key v1";
const KEY_ID_CONTEXT: &str = "sdar 2026-11-22 archive key id v1";

/// A key, derived from the bytes of a key file.
#[derive(Clone)]
pub struct Key {
    mac: [u8; 32],
    id: [u8; AUTH_KEY_ID_LEN],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ id: {} }}", crate::hex(&self.id))
    }
}

impl Key {
    /// Derives a key from a key file's bytes (at least 16 of them).
    pub fn from_secret(secret: &[u8]) -> Result<Key> {
        if secret.len() < MIN_KEY_LEN {
            return Err(Error::invalid(format!(
                "a key file must hold at least {MIN_KEY_LEN} bytes (it holds {}); make one with: head -c 32 /dev/urandom > sdar.key",
                secret.len()
            )));
        }
        let id = blake3::derive_key(KEY_ID_CONTEXT, secret);
        Ok(Key {
            mac: blake3::derive_key(MAC_KEY_CONTEXT, secret),
            id: id[..AUTH_KEY_ID_LEN].try_into().expect("16 bytes"),
        })
    }

    /// Reads a key file (a regular file of at most [`MAX_KEY_FILE_LEN`]
    /// bytes; never a FIFO or a device, which could block or never end) and
    /// derives its key; errors name the file.
    pub fn from_file(path: &Path) -> Result<Key> {
        let secret = match crate::input::read_small(path, MAX_KEY_FILE_LEN, "key file length") {
            Err(Error::LimitExceeded { .. }) => {
                return Err(Error::invalid(format!(
                    "{}: a key file holds at most {MAX_KEY_FILE_LEN} bytes; this is larger, so it is not a key file (make one with: head -c 32 /dev/urandom > sdar.key)",
                    path.display()
                )))
            }
            r => r?,
        };
        Key::from_secret(&secret).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }

    /// Names the key without revealing it: stored in AUTH, so that a wrong
    /// key is told apart from a forged MAC.
    pub fn id(&self) -> [u8; AUTH_KEY_ID_LEN] {
        self.id
    }

    /// The MAC of a full image (`label` "full") or a delta ("delta") over its
    /// parts, each length-prefixed (SPEC.md §9.1).
    pub(crate) fn mac(&self, label: &str, parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new_keyed(&self.mac);
        h.update(format!("sdar {label} MAC v1\0").as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        *h.finalize().as_bytes()
    }
}

/// An AUTH record's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth {
    pub key_id: [u8; AUTH_KEY_ID_LEN],
    pub mac: Hash,
}

impl Auth {
    pub(crate) fn encode(&self) -> [u8; AUTH_LEN] {
        let mut b = [0u8; AUTH_LEN];
        b[..AUTH_KEY_ID_LEN].copy_from_slice(&self.key_id);
        b[AUTH_MAC_OFFSET..].copy_from_slice(&self.mac);
        b
    }

    pub(crate) fn decode(file: &Path, offset: u64, body: &[u8]) -> Result<Auth> {
        if body.len() != AUTH_LEN {
            return Err(Error::corrupt(
                file,
                offset,
                format!(
                    "AUTH record body is {} bytes, expected {AUTH_LEN}",
                    body.len()
                ),
            ));
        }
        Ok(Auth {
            key_id: body[..AUTH_KEY_ID_LEN].try_into().expect("16 bytes"),
            mac: body[AUTH_MAC_OFFSET..].try_into().expect("32 bytes"),
        })
    }

    /// Checks this record against `key` and the MAC the file's parts give.
    pub(crate) fn check(&self, file: &Path, key: &Key, expected: &Hash) -> Result<()> {
        if self.key_id != key.id() {
            return Err(Error::Unauthentic {
                file: file.to_path_buf(),
                what: format!(
                    "it was made with another key (key id {}, this key's is {})",
                    crate::hex(&self.key_id),
                    crate::hex(&key.id())
                ),
            });
        }
        if &self.mac != expected {
            return Err(Error::Unauthentic {
                file: file.to_path_buf(),
                what: "its MAC does not match: the file was changed after it was made".into(),
            });
        }
        Ok(())
    }
}

/// Checks a file's AUTH record, if any, against `key`: a file without one
/// is refused, since the caller asked for proof.
pub(crate) fn require(file: &Path, auth: Option<&Auth>, key: &Key, expected: Hash) -> Result<()> {
    match auth {
        Some(a) => a.check(file, key, &expected),
        None => Err(Error::Unauthentic {
            file: file.to_path_buf(),
            what: "it carries no MAC (it was made without a key)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_every_part_the_label_and_the_key() {
        let k = Key::from_secret(b"0123456789abcdef").unwrap();
        let other = Key::from_secret(b"0123456789abcdeF").unwrap();
        let m = k.mac("full", &[b"head", b"meta"]);
        assert_ne!(m, k.mac("delta", &[b"head", b"meta"]));
        assert_ne!(m, k.mac("full", &[b"head", b"meta!"]));
        // Length prefixes: moving a byte between parts changes the MAC.
        assert_ne!(m, k.mac("full", &[b"headm", b"eta"]));
        assert_ne!(m, other.mac("full", &[b"head", b"meta"]));
        assert_ne!(k.id(), other.id());
        assert!(Key::from_secret(b"short").is_err());
    }

    #[test]
    fn auth_records_round_trip_and_check() {
        let k = Key::from_secret(&[7u8; 32]).unwrap();
        let mac = k.mac("full", &[b"x"]);
        let a = Auth {
            key_id: k.id(),
            mac,
        };
        let back = Auth::decode(Path::new("f"), 0, &a.encode()).unwrap();
        assert_eq!(back, a);
        back.check(Path::new("f"), &k, &mac).unwrap();
        assert!(back.check(Path::new("f"), &k, &[0; 32]).is_err());
        let other = Key::from_secret(&[8u8; 32]).unwrap();
        let e = back.check(Path::new("f"), &other, &mac).unwrap_err();
        assert!(e.to_string().contains("another key"), "{e}");
        assert!(require(Path::new("f"), None, &k, mac).is_err());
    }

    #[test]
    fn key_files_are_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, vec![1u8; MAX_KEY_FILE_LEN as usize]).unwrap();
        Key::from_file(&p).unwrap();
        std::fs::write(&p, vec![1u8; MAX_KEY_FILE_LEN as usize + 1]).unwrap();
        let e = Key::from_file(&p).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput { what } if what.contains("at most 4096")),
            "{e}"
        );
        let e = Key::from_file(Path::new("/dev/urandom")).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    }
}
