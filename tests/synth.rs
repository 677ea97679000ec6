//! `sdar synth`: the full image of the disk a delta describes, written
//! from the delta and its full. It must decompress with the stock tools to
//! exactly that disk, carry the delta's identity, serve as the full of a
//! later delta, get its companion delta, and stop on a damaged old full
//! leaving nothing behind.

mod common;

use common::*;
use std::fs;
use std::path::Path;

const BLOCK: usize = 65536;

/// A disk of `blocks` 64 KiB blocks and `tail` bytes more: random blocks,
/// text-like blocks and zero blocks, seeded.
fn disk(blocks: usize, tail: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut disk = vec![0u8; blocks * BLOCK + tail];
    for chunk in disk.chunks_mut(BLOCK) {
        match rng.below(3) {
            0 => rng.fill(chunk),
            1 => {
                let words = rng.bytes(64);
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = b'a' + words[(i / 7 + i % 5) % 64] % 16;
                }
            }
            _ => {}
        }
    }
    disk
}

/// `old` changed as a VM would: a page of some blocks (stored as PATCH),
/// whole blocks (DATA), blocks zeroed (ZERO), and `grow` bytes more.
fn changed(old: &[u8], grow: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut new = old.to_vec();
    new.extend(rng.bytes(grow));
    let blocks = new.len().div_ceil(BLOCK);
    for _ in 0..blocks / 4 {
        let b = rng.below(blocks);
        let block = &mut new[b * BLOCK..((b + 1) * BLOCK).min(old.len() + grow)];
        match rng.below(3) {
            0 => {
                let page = rng.below(block.len().div_ceil(4096)) * 4096;
                let end = (page + 4096).min(block.len());
                rng.fill(&mut block[page..end]);
            }
            1 => rng.fill(block),
            _ => block.fill(0),
        }
    }
    new
}

/// `old.raw` and its full `old.FULL` in `codec`, `new.raw` and its delta
/// `d.sdar`; returns the new disk.
fn backups(d: &Path, codec: &str, extra: &[&str]) -> Vec<u8> {
    let old = disk(40, 1000, 1);
    let new = changed(&old, 3 * BLOCK + 517, 2);
    fs::write(d.join("old.raw"), &old).unwrap();
    fs::write(d.join("new.raw"), &new).unwrap();
    let full = full_name("old", codec);
    let mut args = vec!["full", "old.raw", "-o", &full, "--codec", codec, "-q"];
    args.extend_from_slice(extra);
    sdar(d, &args).success();
    let mut args = vec!["delta", "new.raw", "--full", &full, "-o", "d.sdar"];
    args.extend_from_slice(extra);
    let said = sdar(d, &args).success().stdout_text();
    for none in ["(0 whole", " 0 patched", " 0 zero)"] {
        assert!(
            !said.contains(none),
            "the delta lacks a kind of change: {said}"
        );
    }
    new
}

fn full_name(stem: &str, codec: &str) -> String {
    match codec {
        "gzip" => format!("{stem}.full.gz"),
        _ => format!("{stem}.full.zst"),
    }
}

/// The disk in a full image, as the stock tool for its codec reads it.
fn decompressed(d: &Path, full: &str) -> Vec<u8> {
    let out = if full.ends_with(".gz") {
        stock(d, "zcat", &[full])
    } else {
        stock(d, "zstd", &["-dc", full])
    };
    out.success().stdout
}

fn info(d: &Path, file: &str) -> serde_json::Value {
    let out = sdar(d, &["info", "--json", file]).success();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Restores `archive` to a raw image in `d` and returns its bytes.
fn restored(d: &Path, archive: &str, extra: &[&str]) -> Vec<u8> {
    let dest = format!("{archive}.img");
    let mut args = vec!["restore", archive, "--raw", "--to", &dest, "-q"];
    args.extend_from_slice(extra);
    sdar(d, &args).success();
    let bytes = fs::read(d.join(&dest)).unwrap();
    fs::remove_file(d.join(&dest)).unwrap();
    bytes
}

/// With the old full's codec and across codecs, the synthetic full
/// decompresses with the stock tools to the disk the delta restores to,
/// has the delta's identity, and verifies; same codec copies members.
#[test]
fn synthetic_fulls_are_the_deltas_disk() {
    for (from, to) in [
        ("gzip", None),
        ("zstd", None),
        ("gzip", Some("zstd")),
        ("zstd", Some("gzip")),
    ] {
        let dir = scratch();
        let d = dir.path();
        let new = backups(d, from, &[]);
        let codec = to.unwrap_or(from);
        let out = full_name("synth", codec);
        let mut args = vec!["synth", "d.sdar", "-o", &out];
        if let Some(to) = to {
            args.extend(["--codec", to]);
        }
        let printed = sdar(d, &args).success().stdout_text();
        let what = format!("{from} -> {codec}");
        assert_same_bytes(&decompressed(d, &out), &new, &what);
        assert_same_bytes(
            &restored(d, "d.sdar", &["--full", &full_name("old", from)]),
            &new,
            &format!("{what}: the delta's own restore"),
        );
        let delta_id = info(d, "d.sdar")["identity"].clone();
        let synth = info(d, &out);
        assert_eq!(synth["identity"], delta_id, "{what}");
        assert_eq!(printed_identity(&printed), delta_id.as_str().unwrap());
        assert_eq!(synth["codec"], codec, "{what}");
        assert_eq!(
            synth["meta"]["disk_name"], "new.raw",
            "{what}: the delta's metadata"
        );
        assert!(synth["meta"]["base_name"].is_null(), "{what}");
        sdar(d, &["verify", &out, "-q"]).success();
        let copied: u64 = printed
            .split(" copied from")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no count of copied blocks in {printed}"));
        match to {
            None => assert!(copied > 0, "{what}: {printed}"),
            Some(_) => assert_eq!(copied, 0, "{what}: {printed}"),
        }
    }
}

/// A disk that shrank to a short last block: the delta stores that block,
/// the rest are the old full's.
#[test]
fn shrunk_disks_synthesize() {
    let dir = scratch();
    let d = dir.path();
    let old = disk(40, 1000, 4);
    let new = old[..20 * BLOCK + 333].to_vec();
    fs::write(d.join("old.raw"), &old).unwrap();
    fs::write(d.join("new.raw"), &new).unwrap();
    sdar(d, &["full", "old.raw", "-o", "old.full.gz", "-q"]).success();
    sdar(
        d,
        &[
            "delta",
            "new.raw",
            "--full",
            "old.full.gz",
            "-o",
            "d.sdar",
            "-q",
        ],
    )
    .success();
    sdar(d, &["synth", "d.sdar", "-o", "s.full.gz", "-q"]).success();
    assert_same_bytes(&decompressed(d, "s.full.gz"), &new, "shrunk");
    assert_eq!(
        info(d, "s.full.gz")["identity"],
        info(d, "d.sdar")["identity"]
    );
}

/// With the same codec and level, a synthetic full is the full `sdar full`
/// makes of the same disk but for its metadata: every member and index
/// entry alike.
#[test]
fn same_codec_gives_the_members_sdar_full_writes() {
    let dir = scratch();
    let d = dir.path();
    backups(d, "gzip", &[]);
    sdar(d, &["synth", "d.sdar", "-o", "synth.full.gz", "-q"]).success();
    sdar(d, &["full", "new.raw", "-o", "direct.full.gz", "-q"]).success();
    let (a, b) = (
        layout(&d.join("synth.full.gz")),
        layout(&d.join("direct.full.gz")),
    );
    // Their META records differ only in the time stamp, not in length.
    assert_eq!(a.data_start, b.data_start);
    let data = |p: &str, l: &Layout| {
        let bytes = fs::read(d.join(p)).unwrap();
        bytes[l.data_start as usize..].to_vec()
    };
    assert_same_bytes(
        &data("synth.full.gz", &a),
        &data("direct.full.gz", &b),
        "members, index, directory and footer",
    );
}

/// A delta made against a synthetic full restores byte for byte, and so
/// does the companion delta written beside it.
#[test]
fn synthetic_full_serves_later_deltas_and_has_its_companion() {
    let dir = scratch();
    let d = dir.path();
    let new = backups(d, "gzip", &[]);
    sdar(d, &["synth", "d.sdar", "-o", "synth.full.gz", "-q"]).success();
    assert!(d.join("synth.sdar").is_file(), "{:?}", listing(d));
    assert_same_bytes(&restored(d, "synth.sdar", &[]), &new, "the companion delta");
    let newer = changed(&new, 0, 3);
    fs::write(d.join("newer.raw"), &newer).unwrap();
    sdar(
        d,
        &[
            "delta",
            "newer.raw",
            "--full",
            "synth.full.gz",
            "-o",
            "d2.sdar",
            "-q",
        ],
    )
    .success();
    assert_same_bytes(
        &restored(d, "d2.sdar", &[]),
        &newer,
        "a delta against the synthetic full",
    );
}

/// Without --full and -o: the full is found by identity beside the
/// archive, and the output is `sdar full`'s name marked `.synth`, with its
/// companion beside it, away from the delta's own name.
#[test]
fn full_is_found_and_the_name_is_made_from_the_metadata() {
    let dir = scratch();
    let d = dir.path();
    let new = backups(d, "zstd", &[]);
    fs::create_dir(d.join("out")).unwrap();
    let out = sdar(&d.join("out"), &["synth", "../d.sdar"]).success();
    let names = listing(&d.join("out"));
    assert_eq!(names.len(), 2, "{names:?}");
    let full = names
        .iter()
        .find(|n| n.ends_with(".synth.full.zst"))
        .unwrap();
    assert!(full.starts_with("new_"), "{full}");
    let stem = full.strip_suffix(".full.zst").unwrap();
    assert!(names.contains(&format!("{stem}.sdar")), "{names:?}");
    assert!(
        out.stdout_text().contains(full.as_str()),
        "{}",
        out.stdout_text()
    );
    assert_same_bytes(&decompressed(&d.join("out"), full), &new, "found full");
    // No full anywhere: said, exit 3, nothing written.
    fs::rename(d.join("old.full.zst"), d.join("out/../moved.bin")).unwrap();
    fs::create_dir(d.join("empty")).unwrap();
    fs::rename(d.join("d.sdar"), d.join("empty/d.sdar")).unwrap();
    let out = sdar(&d.join("empty"), &["synth", "d.sdar"]).expect_code(EXIT_OTHER);
    assert!(out.stderr.contains("was not found"), "{}", out.stderr);
    assert_eq!(listing(&d.join("empty")), ["d.sdar"]);
}

/// A flipped byte inside an unchanged block's member of the old full stops
/// the synthesis with exit 1, naming the file and the block, and leaves
/// neither output nor temporary file.
#[test]
fn damaged_old_full_stops_it_and_leaves_nothing() {
    for codec in ["gzip", "zstd"] {
        let dir = scratch();
        let d = dir.path();
        let new = backups(d, codec, &[]);
        let old = fs::read(d.join("old.raw")).unwrap();
        let full = full_name("old", codec);
        // An unchanged block that holds data: its member is copied.
        let member = layout(&d.join(&full))
            .members
            .into_iter()
            .find(|m| {
                let b = m.block as usize;
                let r = b * BLOCK..((b + 1) * BLOCK).min(old.len());
                !m.zero && b > 3 && old[r.clone()] == new[r]
            })
            .expect("an unchanged data block");
        flip_byte(&d.join(&full), member.offset + member.len / 2);
        let before = listing(d);
        let out = sdar(d, &["synth", "d.sdar", "-o", "s.full"]).expect_code(EXIT_INTEGRITY);
        assert!(out.stderr.contains(&full), "{codec}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("block {}", member.block)),
            "{codec}: {}",
            out.stderr
        );
        assert_eq!(listing(d), before, "{codec}: nothing left behind");
    }
}

/// With --key: the delta is proven with the key first, and the new full
/// and its companion carry a MAC of that key.
#[test]
fn keyed_synthetic_fulls_carry_a_mac() {
    let dir = scratch();
    let d = dir.path();
    fs::write(d.join("k.key"), [0x5a; 32]).unwrap();
    fs::write(d.join("other.key"), [0xa5; 32]).unwrap();
    let new = backups(d, "gzip", &["--key", "k.key"]);
    let before = listing(d);
    let out = sdar(
        d,
        &["synth", "d.sdar", "-o", "s.full.gz", "--key", "other.key"],
    )
    .expect_code(EXIT_INTEGRITY);
    assert!(out.stderr.contains("d.sdar"), "{}", out.stderr);
    assert_eq!(listing(d), before, "a wrong key writes nothing");
    sdar(
        d,
        &["synth", "d.sdar", "-o", "s.full.gz", "--key", "k.key", "-q"],
    )
    .success();
    for file in ["s.full.gz", "s.sdar"] {
        sdar(d, &["verify", file, "--key", "k.key", "-q"]).success();
        sdar(d, &["verify", file, "--key", "other.key", "-q"]).expect_code(EXIT_INTEGRITY);
        assert!(info(d, file)["auth_key_id"].is_string(), "{file}");
    }
    assert_same_bytes(
        &restored(d, "s.sdar", &["--key", "k.key"]),
        &new,
        "the keyed companion",
    );
}
