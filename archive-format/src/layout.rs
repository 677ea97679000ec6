//! Every magic, offset, size and flag of the on-disk format, by name.
//!
//! The byte tables live in SPEC.md; each constant here names the section it
//! comes from. Code never writes a bare offset into a structure: it uses these.

/// SPEC.md §2 "File magic": the first 8 bytes of a HEAD record body.
/// The 0x89 catches 7-bit transports, `\r\n` catches newline conversion,
/// 0x1a stops `type` on DOS, as in PNG.
pub const FILE_MAGIC: [u8; 8] = *b"\x89SDAR\r\n\x1a";

/// SPEC.md §2: the major version this library writes and reads.
/// A reader refuses any other major version.
pub const VERSION_MAJOR: u16 = 1;
/// SPEC.md §2: the minor version this library writes. Readers accept any minor.
pub const VERSION_MINOR: u16 = 0;

/// SPEC.md §4 "Record": the fixed record header in front of every record body.
pub const RECORD_HEADER_LEN: usize = 16;
pub const RECORD_TAG_OFFSET: usize = 0;
pub const RECORD_BODY_LEN_OFFSET: usize = 4;
pub const RECORD_CRC_OFFSET: usize = 8;
pub const RECORD_RESERVED_OFFSET: usize = 12;

/// SPEC.md §4.1 "Record tags".
pub const TAG_HEAD: [u8; 4] = *b"HEAD";
pub const TAG_META: [u8; 4] = *b"META";
pub const TAG_INDEX: [u8; 4] = *b"INDX";
pub const TAG_DIRECTORY: [u8; 4] = *b"DIRS";
pub const TAG_FOOT: [u8; 4] = *b"FOOT";
pub const TAG_AUTH: [u8; 4] = *b"AUTH";

/// SPEC.md §9.1 "AUTH record": key id, then MAC.
pub const AUTH_LEN: usize = 48;
pub const AUTH_KEY_ID_LEN: usize = 16;
pub const AUTH_MAC_OFFSET: usize = 16;
const _: () = assert!(AUTH_MAC_OFFSET + 32 == AUTH_LEN);
/// SPEC.md §9.1: the shortest key file accepted.
pub const MIN_KEY_LEN: usize = 16;

/// SPEC.md §5 "HEAD record".
pub const HEAD_LEN: usize = 64;
pub const HEAD_MAGIC_OFFSET: usize = 0;
pub const HEAD_VERSION_MAJOR_OFFSET: usize = 8;
pub const HEAD_VERSION_MINOR_OFFSET: usize = 10;
pub const HEAD_INCOMPAT_FLAGS_OFFSET: usize = 12;
pub const HEAD_COMPAT_FLAGS_OFFSET: usize = 16;
pub const HEAD_KIND_OFFSET: usize = 20;
pub const HEAD_CODEC_OFFSET: usize = 21;
pub const HEAD_RESERVED1_OFFSET: usize = 22;
pub const HEAD_BLOCK_SIZE_OFFSET: usize = 24;
pub const HEAD_SEGMENT_BLOCKS_OFFSET: usize = 28;
pub const HEAD_IMAGE_SIZE_OFFSET: usize = 32;
pub const HEAD_RESERVED2_OFFSET: usize = 40;
const _: () = assert!(HEAD_RESERVED2_OFFSET + 24 == HEAD_LEN);

/// SPEC.md §5: `kind` values.
pub const KIND_FULL_IMAGE: u8 = 1;

/// SPEC.md §5: `codec` values.
pub const CODEC_GZIP: u8 = 1;
pub const CODEC_ZSTD: u8 = 2;

/// SPEC.md §5: no incompatible flags are defined in version 1.0; any set bit
/// means a feature this reader does not know, so it refuses the file.
pub const INCOMPAT_FLAGS_KNOWN: u32 = INCOMPAT_AUTH;
/// SPEC.md §5, §15: the file carries an AUTH record (§9.1).
pub const INCOMPAT_AUTH: u32 = 1;
/// SPEC.md §2: the minor version of files that use a 1.1 feature (AUTH).
pub const VERSION_MINOR_AUTH: u16 = 1;
/// SPEC.md §5: no compatible flags are defined; unknown ones are ignored.
pub const COMPAT_FLAGS_KNOWN: u32 = 0;

/// SPEC.md §5: bounds on `block_size` (a power of two between these).
pub const MIN_BLOCK_SIZE: u32 = 4096;
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;
/// SPEC.md §3 "Block size": the measured default.
pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
/// SPEC.md §5: bounds on `segment_blocks`.
pub const MAX_SEGMENT_BLOCKS: u32 = 65536;
/// SPEC.md §7: the default number of blocks one INDX record describes.
pub const DEFAULT_SEGMENT_BLOCKS: u32 = 1024;

/// SPEC.md §6 "META record": one entry header is key (u16) then length (u32).
pub const META_ENTRY_HEADER_LEN: usize = 6;
/// SPEC.md §6: keys at or above this must be understood; a reader refuses
/// an unknown one. Keys below it are informative and skipped when unknown.
pub const META_KEY_MUST_UNDERSTAND: u16 = 0x8000;

/// SPEC.md §7 "INDX record".
pub const INDEX_HEADER_LEN: usize = 24;
pub const INDEX_SEGMENT_OFFSET: usize = 0;
pub const INDEX_DATA_OFFSET_OFFSET: usize = 8;
pub const INDEX_COUNT_OFFSET: usize = 16;
pub const INDEX_RESERVED_OFFSET: usize = 20;
/// SPEC.md §7.1 "Block entry".
pub const INDEX_ENTRY_LEN: usize = 40;
pub const ENTRY_HASH_OFFSET: usize = 0;
pub const ENTRY_LEN_FLAGS_OFFSET: usize = 32;
pub const ENTRY_MEMBER_CRC_OFFSET: usize = 36;
/// SPEC.md §7.1: the low 28 bits of `len_flags` are the member length.
pub const ENTRY_LEN_MASK: u32 = (1 << 28) - 1;
/// SPEC.md §7.1: the block is all zeros.
pub const ENTRY_FLAG_ZERO: u32 = 1 << 31;
/// SPEC.md §7.1: bits 28–30 are reserved and must be zero.
pub const ENTRY_FLAGS_RESERVED: u32 = 0x7 << 28;

/// SPEC.md §8 "DIRS record": segment count, then one u64 per segment.
pub const DIRECTORY_HEADER_LEN: usize = 8;
pub const DIRECTORY_ENTRY_LEN: usize = 8;

/// SPEC.md §9 "FOOT record".
pub const FOOT_LEN: usize = 64;
pub const FOOT_IDENTITY_OFFSET: usize = 0;
pub const FOOT_DIRECTORY_OFFSET_OFFSET: usize = 32;
pub const FOOT_SEGMENT_COUNT_OFFSET: usize = 40;
pub const FOOT_FILE_LEN_OFFSET: usize = 48;
pub const FOOT_RESERVED_OFFSET: usize = 56;
const _: () = assert!(FOOT_RESERVED_OFFSET + 8 == FOOT_LEN);

/// SPEC.md §10 "Hashes and identity": blake3 derive-key context of the identity.
pub const IDENTITY_CONTEXT: &str = "sdar 2026-11-22 image identity v1";

/// SPEC.md §4.2 "gzip container": the fixed bytes of a record member before
/// XLEN: magic, CM=8 (deflate), FLG=FEXTRA, MTIME=0, XFL=0, OS=255.
pub const GZIP_RECORD_PREFIX: [u8; 10] = [0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff];
/// SPEC.md §4.2: the extra subfield id that carries record bytes.
pub const GZIP_SUBFIELD_ID: [u8; 2] = *b"SD";
/// SPEC.md §4.2: an empty final deflate block, then CRC32 = 0 and ISIZE = 0.
pub const GZIP_RECORD_SUFFIX: [u8; 10] = [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
/// SPEC.md §4.2: prefix, XLEN, subfield id and subfield length.
pub const GZIP_RECORD_HEAD_LEN: usize = 16;
/// SPEC.md §4.2: the most record bytes one member carries (XLEN ≤ 65535).
pub const GZIP_MAX_FRAGMENT: usize = 65535 - 4;
/// SPEC.md §3.1 "gzip data member": the fixed member header, no flags.
pub const GZIP_MEMBER_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// SPEC.md §3.1: CRC32 and ISIZE after the deflate stream.
pub const GZIP_MEMBER_TRAILER_LEN: usize = 8;

/// SPEC.md §4.3 "zstd container": the skippable-frame magic that carries records.
pub const ZSTD_RECORD_MAGIC: u32 = 0x184D_2A5D;
/// SPEC.md §4.3: skippable magic then frame size.
pub const ZSTD_RECORD_HEAD_LEN: usize = 8;
/// SPEC.md §3.2: every zstd frame starts with this magic.
pub const ZSTD_FRAME_MAGIC: u32 = 0xFD2F_B528;

/// SPEC.md §5: `kind` of a delta payload's DHED record.
pub const KIND_DELTA: u8 = 2;

/// SPEC.md §13 "Archive trailer": the last bytes of every delta archive.
pub const TRAILER_LEN: usize = 32;
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89SDDLT\r\n";
pub const TRAILER_PAYLOAD_OFFSET_OFFSET: usize = 8;
pub const TRAILER_PAYLOAD_LEN_OFFSET: usize = 16;
pub const TRAILER_VERSION_MAJOR_OFFSET: usize = 24;
pub const TRAILER_VERSION_MINOR_OFFSET: usize = 26;
pub const TRAILER_CRC_OFFSET: usize = 28;
const _: () = assert!(TRAILER_CRC_OFFSET + 4 == TRAILER_LEN);

/// SPEC.md §14.1 "Delta record tags".
pub const TAG_DELTA_HEAD: [u8; 4] = *b"DHED";
pub const TAG_DELTA_MAP: [u8; 4] = *b"DMAP";
pub const TAG_DELTA_DIRECTORY: [u8; 4] = *b"DDIR";
pub const TAG_DELTA_FOOT: [u8; 4] = *b"DFOT";

/// SPEC.md §15 "DHED record".
pub const DHED_LEN: usize = 96;
pub const DHED_BLOCK_SIZE_OFFSET: usize = 24;
pub const DHED_MAP_ENTRIES_OFFSET: usize = 28;
pub const DHED_IMAGE_SIZE_OFFSET: usize = 32;
pub const DHED_BASE_IMAGE_SIZE_OFFSET: usize = 40;
pub const DHED_BASE_IDENTITY_OFFSET: usize = 48;
pub const DHED_RESERVED2_OFFSET: usize = 80;
const _: () = assert!(DHED_RESERVED2_OFFSET + 16 == DHED_LEN);
/// SPEC.md §15: changed-block entries per DMAP record written by sdar.
pub const DEFAULT_MAP_ENTRIES: u32 = 4096;
pub const MAX_MAP_ENTRIES: u32 = 65536;

/// SPEC.md §16 "DMAP record".
pub const DMAP_HEADER_LEN: usize = 24;
pub const DMAP_ENTRY_LEN: usize = 64;
pub const DMAP_ENTRY_BLOCK_OFFSET: usize = 0;
pub const DMAP_ENTRY_KIND_OFFSET: usize = 8;
pub const DMAP_ENTRY_PAGES_OFFSET: usize = 12;
pub const DMAP_ENTRY_DATA_OFFSET_OFFSET: usize = 16;
pub const DMAP_ENTRY_MEMBER_LEN_OFFSET: usize = 24;
pub const DMAP_ENTRY_MEMBER_CRC_OFFSET: usize = 28;
pub const DMAP_ENTRY_HASH_OFFSET: usize = 32;
/// SPEC.md §16.1: how a changed block is stored.
pub const ENTRY_KIND_DATA: u8 = 1;
pub const ENTRY_KIND_ZERO: u8 = 2;
pub const ENTRY_KIND_PATCH: u8 = 3;
/// SPEC.md §16.1: a PATCH replaces whole pages of this size.
pub const PATCH_PAGE: usize = 4096;
/// SPEC.md §16.1: pages per block a PATCH can name (one bit each in a u32).
pub const PATCH_MAX_PAGES: usize = 32;

/// SPEC.md §17 "DDIR record": group count, then per group its DMAP offset
/// and first block.
pub const DDIR_HEADER_LEN: usize = 8;
pub const DDIR_ENTRY_LEN: usize = 16;

/// SPEC.md §18 "DFOT record".
pub const DFOT_LEN: usize = 64;
pub const DFOT_IDENTITY_OFFSET: usize = 0;
pub const DFOT_DIRECTORY_OFFSET_OFFSET: usize = 32;
pub const DFOT_GROUP_COUNT_OFFSET: usize = 40;
pub const DFOT_ENTRY_COUNT_OFFSET: usize = 48;
pub const DFOT_RESERVED_OFFSET: usize = 56;
