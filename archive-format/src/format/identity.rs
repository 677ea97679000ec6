//! Block hashes and the image identity (SPEC.md §10 "Hashes and identity").

use crate::error::Hash;
use crate::layout::IDENTITY_CONTEXT;

/// The blake3-256 hash of one block's uncompressed bytes.
pub fn block_hash(block: &[u8]) -> Hash {
    *blake3::hash(block).as_bytes()
}

/// Builds an image identity from the block hashes, in block order.
/// Two images have the same identity only if they have the same size, block
/// size and content, whatever their files are called.
pub struct IdentityHasher {
    hasher: blake3::Hasher,
    /// Hashes not yet hashed: fed to blake3 many at a time, it hashes whole
    /// chunks in parallel lanes (SIMD) instead of 32 bytes per call. The
    /// result is the same: blake3 does not depend on how input is split.
    pending: Vec<u8>,
    blocks: u64,
}

/// Block hashes gathered before they are hashed: 16 blake3 chunks.
const PENDING: usize = 16 * 1024;

impl IdentityHasher {
    pub fn new(image_size: u64, block_size: u32) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(IDENTITY_CONTEXT);
        hasher.update(&image_size.to_le_bytes());
        hasher.update(&block_size.to_le_bytes());
        IdentityHasher {
            hasher,
            pending: Vec::with_capacity(PENDING),
            blocks: 0,
        }
    }

    pub fn update(&mut self, block_hash: &Hash) {
        self.pending.extend_from_slice(block_hash);
        if self.pending.len() >= PENDING {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        self.blocks += 1;
    }

    /// How many block hashes went in so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn finalize(&self) -> Hash {
        if self.pending.is_empty() {
            return *self.hasher.finalize().as_bytes();
        }
        let mut h = self.hasher.clone();
        h.update(&self.pending);
        *h.finalize().as_bytes()
    }
}

/// The hashes of all-zero blocks of the two lengths an image can have, so a
/// zero block is recognised by its hash alone.
#[derive(Clone, Debug)]
pub struct ZeroHashes {
    block_size: usize,
    full: Hash,
    tail_len: usize,
    tail: Hash,
}

impl ZeroHashes {
    pub fn new(block_size: u32, image_size: u64) -> Self {
        let block_size = block_size as usize;
        let tail_len = (image_size % block_size as u64) as usize;
        let zeros = vec![0u8; block_size];
        ZeroHashes {
            block_size,
            full: block_hash(&zeros),
            tail_len,
            tail: block_hash(&zeros[..tail_len]),
        }
    }

    /// The hash of `len` zero bytes, for the two lengths this image uses.
    pub fn get(&self, len: usize) -> Hash {
        if len == self.block_size {
            self.full
        } else if len == self.tail_len {
            self.tail
        } else {
            block_hash(&vec![0u8; len])
        }
    }
}

/// True when every byte of `data` is zero. Compares word-sized chunks, which
/// the compiler vectorises; it runs at memory speed.
pub fn is_zero(data: &[u8]) -> bool {
    let (chunks, rest) = data.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_ne_bytes(*c) == 0) && rest.iter().all(|&b| b == 0)
}
