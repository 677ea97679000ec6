//! The live state file (SPEC.md §20.2): which blocks of a live recovery's
//! destination are absent, present (proven from the backup) or written by
//! the guest, kept beside the destination so that a killed `sdar live`, or a
//! host that lost power, continues where it was.
//!
//! Torn writes: every page of states has two copies, each with a generation
//! number and a blake3 checksum bound to the image. A page is rewritten into
//! the copy that does not hold its newest version, so a write torn by a crash
//! damages only the copy being written: the other still holds the version
//! made durable by the previous flush, and the reader takes the newest copy
//! whose checksum holds.

use crate::error::{hex, Error, Hash, Result};
use crate::target::files::{create_exclusive, open_nofollow, owned_single_regular};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// SPEC.md §20.2: `magic`.
pub const STATE_MAGIC: [u8; 8] = *b"SDARLIVE";
/// SPEC.md §20.2: `version`.
pub const STATE_VERSION: u32 = 1;
/// SPEC.md §20.2: the header's and every page copy's length.
pub const STATE_PAGE: usize = 4096;
/// SPEC.md §20.2: the bytes of states in a page copy, after its 48-byte head.
pub const PAYLOAD_LEN: usize = STATE_PAGE - SLOT_HEAD;
const SLOT_HEAD: usize = 48;
/// Blocks described by one page: two bits each.
pub const BLOCKS_PER_PAGE: u64 = (PAYLOAD_LEN * 4) as u64;
/// The header's checksummed bytes.
const HEADER_BODY: usize = 80;

/// A block not yet in the destination.
pub const ABSENT: u8 = 0;
/// A block proven from the backup and written into the destination.
pub const PRESENT: u8 = 1;
/// A block the guest wrote (or trimmed, or zeroed): never fetched again.
pub const WRITTEN: u8 = 2;

/// The image a state file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateImage {
    pub identity: Hash,
    pub image_size: u64,
    pub block_size: u32,
}

impl StateImage {
    pub fn block_count(&self) -> u64 {
        self.image_size.div_ceil(self.block_size.max(1) as u64)
    }

    fn page_count(&self) -> u64 {
        self.block_count().div_ceil(BLOCKS_PER_PAGE).max(1)
    }
}

/// What is at a state file's name.
pub enum Found {
    Missing,
    /// A state file of this image, with every block's state.
    Ours(StateFile, Vec<u8>),
    /// A state file of another image (or of another version), or one that
    /// cannot be read: why.
    Other(String),
}

/// An open state file.
#[derive(Debug)]
pub struct StateFile {
    file: File,
    path: PathBuf,
    image: StateImage,
    /// The generation of each page's newest durable copy.
    generations: Vec<u64>,
}

impl StateFile {
    /// Creates the state file of `image` at `path`, every block absent, and
    /// makes it durable: written under a temporary name beside it, synced
    /// and renamed into place, so that a crash never leaves a half-written
    /// state file at `path`. Nothing at `path` is replaced.
    pub fn create(path: &Path, tmp: &Path, image: StateImage) -> Result<StateFile> {
        let tmp = tmp.to_path_buf();
        // The caller holds the destination's restore mark: a file at the
        // temporary name was left by a dead run (or planted); unlinking a
        // name never writes into the file it named.
        if tmp.symlink_metadata().is_ok() {
            std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, None, e))?;
        }
        let file = create_exclusive(&tmp, crate::target::RESTORED_MODE)
            .map_err(|e| Error::io(&tmp, None, e))?;
        let pages = image.page_count();
        let mut state = StateFile {
            file,
            path: tmp.clone(),
            image,
            generations: vec![0; pages as usize],
        };
        let written = (|| {
            state
                .file
                .write_all_at(&encode_header(&image), 0)
                .map_err(|e| Error::io(&tmp, Some(0), e))?;
            let zeros = vec![0u8; PAYLOAD_LEN];
            for p in 0..pages {
                state.write_page(p, &zeros)?;
            }
            state
                .file
                .sync_all()
                .map_err(|e| Error::io(&tmp, None, e))?;
            crate::target::files::rename_if_unchanged(&tmp, path, None)
                .map_err(|e| Error::io(path, None, e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        state.path = path.to_path_buf();
        sync_folder(path);
        Ok(state)
    }

    /// Opens the state file at `path`: missing, this image's (with every
    /// block's state), or another's. A file that is not a regular file of
    /// this user with one name, or a link, is refused.
    pub fn open(path: &Path, image: StateImage) -> Result<Found> {
        let file = match open_nofollow(path, true) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Ok(Found::Other("it is a symbolic link".into()))
            }
            Err(e) => return Err(Error::io(path, None, e)),
        };
        if let Err(why) = owned_single_regular(&file) {
            return Ok(Found::Other(why));
        }
        let mut header = [0u8; STATE_PAGE];
        if let Err(e) = file.read_exact_at(&mut header, 0) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Ok(Found::Other("it is shorter than its header".into()));
            }
            return Err(Error::io(path, Some(0), e));
        }
        if let Err(why) = check_header(&header, &image) {
            return Ok(Found::Other(why));
        }
        let pages = image.page_count();
        let blocks = image.block_count();
        let mut states = vec![ABSENT; blocks as usize];
        let mut generations = vec![0u64; pages as usize];
        let mut copy = [0u8; STATE_PAGE];
        for p in 0..pages {
            let mut best: Option<(u64, [u8; STATE_PAGE])> = None;
            for s in 0..2 {
                let offset = slot_offset(p, s);
                match file.read_exact_at(&mut copy, offset) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => continue,
                    Err(e) => return Err(Error::io(path, Some(offset), e)),
                }
                if let Some(g) = check_slot(&copy, p, &image) {
                    if best.as_ref().is_none_or(|(bg, _)| g > *bg) {
                        best = Some((g, copy));
                    }
                }
            }
            let Some((generation, copy)) = best else {
                return Err(Error::corrupt(
                    path,
                    slot_offset(p, 0),
                    format!(
                        "both copies of state page {p} (blocks {} to {}) are damaged: which of them the guest wrote is unknown",
                        p * BLOCKS_PER_PAGE,
                        ((p + 1) * BLOCKS_PER_PAGE).min(blocks) - 1
                    ),
                ));
            };
            generations[p as usize] = generation;
            let first = p * BLOCKS_PER_PAGE;
            let last = ((p + 1) * BLOCKS_PER_PAGE).min(blocks);
            for b in first..last {
                let i = (b - first) as usize;
                states[b as usize] = (copy[SLOT_HEAD + i / 4] >> (2 * (i % 4))) & 3;
            }
        }
        Ok(Found::Ours(
            StateFile {
                file,
                path: path.to_path_buf(),
                image,
                generations,
            },
            states,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes page `p`'s new states (`PAYLOAD_LEN` bytes, as [`encode_page`]
    /// makes them) into the copy not holding its newest version. Not durable
    /// until [`StateFile::sync`].
    pub fn write_page(&mut self, p: u64, payload: &[u8]) -> Result<()> {
        let generation = self.generations[p as usize] + 1;
        let mut copy = vec![0u8; STATE_PAGE];
        copy[0..8].copy_from_slice(&generation.to_le_bytes());
        copy[8..16].copy_from_slice(&p.to_le_bytes());
        copy[SLOT_HEAD..].copy_from_slice(payload);
        let sum = slot_checksum(&copy, &self.image.identity);
        copy[16..48].copy_from_slice(&sum);
        let offset = slot_offset(p, generation % 2);
        self.file
            .write_all_at(&copy, offset)
            .map_err(|e| Error::io(&self.path, Some(offset), e))?;
        self.generations[p as usize] = generation;
        Ok(())
    }

    /// Makes the pages written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, None, e))
    }

    /// Removes the state file (a finished recovery), if it still is this one.
    pub fn remove(self) -> Result<()> {
        let id = crate::target::files::identity(&self.file)
            .map_err(|e| Error::io(&self.path, None, e))?;
        match crate::target::files::remove_if_unchanged(&self.path, id) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.path, None, e)),
        }
        sync_folder(&self.path);
        Ok(())
    }
}

/// Page `p`'s payload from `states` (the states of every block).
pub fn encode_page(p: u64, states: impl Fn(u64) -> u8, blocks: u64, out: &mut [u8]) {
    out.fill(0);
    let first = p * BLOCKS_PER_PAGE;
    let last = ((p + 1) * BLOCKS_PER_PAGE).min(blocks);
    for b in first..last {
        let i = (b - first) as usize;
        out[i / 4] |= (states(b) & 3) << (2 * (i % 4));
    }
}

/// The page holding block `b`'s state.
pub fn page_of(b: u64) -> u64 {
    b / BLOCKS_PER_PAGE
}

/// Page `p`'s copy `s` (0 or 1): after the header, copies in page order.
fn slot_offset(p: u64, s: u64) -> u64 {
    STATE_PAGE as u64 * (1 + 2 * p + s)
}

fn encode_header(image: &StateImage) -> Vec<u8> {
    let mut h = vec![0u8; STATE_PAGE];
    h[0..8].copy_from_slice(&STATE_MAGIC);
    h[8..12].copy_from_slice(&STATE_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(STATE_PAGE as u32).to_le_bytes());
    h[16..48].copy_from_slice(&image.identity);
    h[48..56].copy_from_slice(&image.image_size.to_le_bytes());
    h[56..60].copy_from_slice(&image.block_size.to_le_bytes());
    h[64..72].copy_from_slice(&image.block_count().to_le_bytes());
    h[72..80].copy_from_slice(&image.page_count().to_le_bytes());
    let sum = blake3::hash(&h[..HEADER_BODY]);
    h[HEADER_BODY..HEADER_BODY + 32].copy_from_slice(sum.as_bytes());
    h
}

/// Why `h` is not the header of `image`'s state file.
fn check_header(h: &[u8], image: &StateImage) -> std::result::Result<(), String> {
    if h[0..8] != STATE_MAGIC {
        return Err("it is not an sdar live state file".into());
    }
    if blake3::hash(&h[..HEADER_BODY]).as_bytes()[..] != h[HEADER_BODY..HEADER_BODY + 32] {
        return Err("its header is damaged".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != STATE_VERSION {
        return Err(format!(
            "it is of unsupported version {version} (this sdar reads version {STATE_VERSION})"
        ));
    }
    let page = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
    if page as usize != STATE_PAGE {
        return Err(format!("its page size is {page}, not {STATE_PAGE}"));
    }
    if h[16..48] != image.identity {
        return Err(format!(
            "it belongs to the image with identity {}, not {}",
            hex(&h[16..48]),
            hex(&image.identity)
        ));
    }
    let size = u64::from_le_bytes(h[48..56].try_into().expect("8 bytes"));
    let block = u32::from_le_bytes(h[56..60].try_into().expect("4 bytes"));
    let blocks = u64::from_le_bytes(h[64..72].try_into().expect("8 bytes"));
    let pages = u64::from_le_bytes(h[72..80].try_into().expect("8 bytes"));
    if size != image.image_size
        || block != image.block_size
        || blocks != image.block_count()
        || pages != image.page_count()
    {
        return Err("its image size or block size differs from the backup's".into());
    }
    Ok(())
}

/// The generation of a page copy that holds, or `None` when it is damaged,
/// torn, or not page `p` of this image.
fn check_slot(copy: &[u8], p: u64, image: &StateImage) -> Option<u64> {
    let generation = u64::from_le_bytes(copy[0..8].try_into().ok()?);
    let page = u64::from_le_bytes(copy[8..16].try_into().ok()?);
    if generation == 0 || page != p {
        return None;
    }
    if slot_checksum(copy, &image.identity)[..] != copy[16..48] {
        return None;
    }
    // States are 0 to 2, and blocks past the image's end have none.
    let held = (image.block_count() - p * BLOCKS_PER_PAGE).min(BLOCKS_PER_PAGE) as usize;
    let states = &copy[SLOT_HEAD..];
    for (i, byte) in states.iter().enumerate() {
        for k in 0..4 {
            let v = (byte >> (2 * k)) & 3;
            if v > WRITTEN || (v != ABSENT && i * 4 + k >= held) {
                return None;
            }
        }
    }
    Some(generation)
}

/// blake3 of the image identity, the copy's first 16 bytes and its states:
/// a copy from another image's state file never passes.
fn slot_checksum(copy: &[u8], identity: &Hash) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(identity);
    h.update(&copy[0..16]);
    h.update(&copy[SLOT_HEAD..]);
    *h.finalize().as_bytes()
}

/// Makes a created, renamed or removed name durable (best effort: a folder
/// that cannot be synced loses nothing but the name's durability).
fn sync_folder(path: &Path) {
    let dir = crate::target::folder_of(path);
    let _ = File::open(dir).and_then(|d| d.sync_all());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(blocks: u64) -> StateImage {
        StateImage {
            identity: [7; 32],
            image_size: blocks * 65536 - 100,
            block_size: 65536,
        }
    }

    #[test]
    fn a_torn_page_copy_falls_back_to_the_previous_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".d.sdar-live");
        let img = image(BLOCKS_PER_PAGE + 10);
        let mut st = StateFile::create(&path, &dir.path().join(".d.new"), img).unwrap();
        let states = |b: u64| if b.is_multiple_of(3) { PRESENT } else { ABSENT };
        let mut page = vec![0u8; PAYLOAD_LEN];
        encode_page(1, states, img.block_count(), &mut page);
        st.write_page(1, &page).unwrap();
        st.sync().unwrap();
        // The next version of page 1, torn: its copy's tail never arrived.
        let written = |b: u64| {
            if b.is_multiple_of(3) {
                WRITTEN
            } else {
                PRESENT
            }
        };
        encode_page(1, written, img.block_count(), &mut page);
        st.write_page(1, &page).unwrap();
        let torn = slot_offset(1, st.generations[1] % 2) + 2000;
        st.file.write_all_at(&[0xEE; 100], torn).unwrap();
        drop(st);
        let Found::Ours(_, got) = StateFile::open(&path, img).unwrap() else {
            panic!("not ours")
        };
        for b in BLOCKS_PER_PAGE..img.block_count() {
            assert_eq!(got[b as usize], states(b), "block {b}");
        }
        assert!(got[..BLOCKS_PER_PAGE as usize].iter().all(|&s| s == ABSENT));
    }

    #[test]
    fn both_copies_damaged_is_an_error_naming_the_page_and_another_image_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".d.sdar-live");
        let img = image(5);
        let st = StateFile::create(&path, &dir.path().join(".d.new"), img).unwrap();
        st.file
            .write_all_at(&[1; 8], slot_offset(0, 1) + 100)
            .unwrap();
        st.file
            .write_all_at(&[1; 8], slot_offset(0, 0) + 100)
            .unwrap();
        let Err(e) = StateFile::open(&path, img) else {
            panic!("damage not seen")
        };
        assert!(e.to_string().contains("state page 0"), "{e}");
        let other = StateImage {
            identity: [8; 32],
            ..img
        };
        assert!(
            matches!(StateFile::open(&path, other).unwrap(), Found::Other(w) if w.contains("identity"))
        );
    }
}
