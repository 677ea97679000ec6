//! The live engine (archive-format/src/live.rs) against a model: guest
//! reads, writes, trims and zeroes from several threads while the background
//! fill runs, the durability order (what a flush made durable is what the
//! state file says after a crash), a block whose backup data is damaged,
//! and the validate overlay's bound.

mod fixture;

use archive_format::image::ProvenImage;
use archive_format::live::state::{Found, StateFile, StateImage, ABSENT, PRESENT, WRITTEN};
use archive_format::live::{LiveDisk, Store};
use archive_format::{Codec, Error, FullImage, Limits};
use fixture::{assert_same_bytes, disk, options, sample_meta, write_pushed, Rng};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const BLOCK: usize = 65536;
/// 96 blocks and a short tail.
const LEN: usize = 96 * BLOCK + 3000;

struct Setup {
    dir: tempfile::TempDir,
    full: PathBuf,
    content: Vec<u8>,
}

fn setup(codec: Codec, seed: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let content = disk(LEN, BLOCK, seed);
    let (bytes, _) = write_pushed(
        &content,
        &options(codec, BLOCK as u32, 8, 1),
        &sample_meta(),
    );
    let full = dir.path().join("base.full");
    std::fs::write(&full, bytes).unwrap();
    Setup { dir, full, content }
}

fn image(full: &Path) -> ProvenImage<File> {
    let f = FullImage::open(File::open(full).unwrap(), full, &Limits::default()).unwrap();
    ProvenImage::of_full(f).unwrap()
}

fn state_image(img: &ProvenImage<File>) -> StateImage {
    StateImage {
        identity: img.identity(),
        image_size: img.image_size(),
        block_size: img.block_size(),
    }
}

fn data_file(dir: &Path) -> (File, PathBuf) {
    let p = dir.join("data");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .unwrap();
    f.set_len(LEN as u64).unwrap();
    (f, p)
}

type Logged = Arc<Mutex<Vec<String>>>;

fn live(s: &Setup, states: Option<Vec<u8>>, fresh: bool) -> (LiveDisk<File>, Logged) {
    let img = image(&s.full);
    let st_path = s.dir.path().join(".d.sdar-live");
    let state = match StateFile::open(&st_path, state_image(&img)).unwrap() {
        Found::Ours(st, _) => st,
        Found::Missing => {
            StateFile::create(&st_path, &s.dir.path().join(".d.new"), state_image(&img)).unwrap()
        }
        Found::Other(why) => panic!("{why}"),
    };
    let (file, path) = data_file(s.dir.path());
    let logged: Logged = Arc::default();
    let l = logged.clone();
    let store = Store::Dest {
        state: Mutex::new(Some(state)),
        fresh,
    };
    let disk = LiveDisk::new(
        img,
        file,
        path,
        store,
        states,
        Box::new(move |m| l.lock().unwrap().push(m)),
    )
    .unwrap();
    (disk, logged)
}

/// Four guest threads, each owning the blocks `b % 4 == t`, write (parts of
/// blocks, whole blocks, block edges), trim, zero and read back their own
/// blocks, against their share of the model, while the fill runs. At the end
/// every block is present or written, and the file is the model.
#[test]
fn guests_and_the_fill_at_once_end_with_the_model() {
    for codec in [Codec::Gzip, Codec::Zstd] {
        let s = setup(codec, 3);
        let (disk, logged) = live(&s, None, true);
        let model = Mutex::new(s.content.clone());
        let stop = AtomicBool::new(false);
        let blocks = LEN.div_ceil(BLOCK);
        std::thread::scope(|scope| {
            let fill = scope.spawn(|| disk.fill(2, Some(40 << 20), &stop));
            for t in 0..4usize {
                let (disk, model) = (&disk, &model);
                scope.spawn(move || {
                    let mut rng = Rng::new(100 + t as u64);
                    let own: Vec<usize> = (0..blocks).filter(|b| b % 4 == t).collect();
                    for _ in 0..150 {
                        let b = own[rng.below(own.len() as u64) as usize];
                        let start = b * BLOCK;
                        let blen = BLOCK.min(LEN - start);
                        let at = start + rng.between(0, blen - 1);
                        let len = rng.between(1, blen - (at - start));
                        match rng.below(6) {
                            0 | 1 => {
                                let mut data = vec![0u8; len];
                                rng.fill(&mut data);
                                disk.write(at as u64, &data, rng.below(4) == 0).unwrap();
                                model.lock().unwrap()[at..at + len].copy_from_slice(&data);
                            }
                            2 => {
                                disk.write_zeroes(at as u64, len as u64, rng.below(2) == 0, false)
                                    .unwrap();
                                model.lock().unwrap()[at..at + len].fill(0);
                            }
                            3 => {
                                // Whole blocks only: a partial TRIM changes nothing.
                                disk.trim(start as u64, blen as u64).unwrap();
                                model.lock().unwrap()[start..start + blen].fill(0);
                            }
                            _ => {
                                let mut got = vec![0u8; len];
                                disk.read(at as u64, &mut got).unwrap();
                                let want = model.lock().unwrap()[at..at + len].to_vec();
                                assert_same_bytes(&got, &want, &format!("read of block {b}"));
                            }
                        }
                        if rng.below(10) == 0 {
                            disk.flush().unwrap();
                        }
                        // Quiet moments, in which the fill (which yields to a
                        // busy guest) takes its turn.
                        if rng.below(8) == 0 {
                            std::thread::sleep(std::time::Duration::from_millis(3));
                        }
                    }
                });
            }
            let report = fill.join().unwrap().unwrap();
            assert!(report.fetched > 0);
        });
        assert_eq!(disk.absent(), 0, "every block is in ({codec:?})");
        assert!(
            logged.lock().unwrap().is_empty(),
            "{:?}",
            logged.lock().unwrap()
        );
        let mut whole = vec![0u8; LEN];
        disk.read(0, &mut whole).unwrap();
        let model = model.into_inner().unwrap();
        assert_same_bytes(&whole, &model, "the disk served");
        let on_disk = std::fs::read(s.dir.path().join("data")).unwrap();
        assert_same_bytes(&on_disk, &model, "the data file");
        let c = disk.counts();
        assert_eq!((c.absent, c.present + c.written), (0, blocks as u64));
        assert!(c.written > 0 && c.present > 0, "{c:?}");
    }
}

/// A crash (the disk dropped without a flush) keeps exactly what the last
/// flush made durable: the state file read back says written for every
/// block written before it, and the data file holds those writes; blocks
/// only read before the crash are present or absent, never wrong.
#[test]
fn after_a_crash_the_states_are_what_the_last_flush_made_durable() {
    let s = setup(Codec::Gzip, 5);
    let (disk, _) = live(&s, None, true);
    let mut model = s.content.clone();
    let mut rng = Rng::new(9);
    let mut flushed_blocks = Vec::new();
    for i in 0..20 {
        let at = rng.between(0, LEN - 9000);
        let data: Vec<u8> = (0..8000).map(|_| rng.below(256) as u8).collect();
        disk.write(at as u64, &data, false).unwrap();
        model[at..at + data.len()].copy_from_slice(&data);
        if i < 15 {
            flushed_blocks.extend((at / BLOCK)..=((at + data.len() - 1) / BLOCK));
        }
        if i == 14 {
            disk.flush().unwrap();
        }
    }
    let mut scratch = vec![0u8; 4096];
    disk.read(90 * BLOCK as u64, &mut scratch).unwrap();
    // The crash: no flush after the 15th write.
    drop(disk);
    let img = image(&s.full);
    let Found::Ours(_, states) =
        StateFile::open(&s.dir.path().join(".d.sdar-live"), state_image(&img)).unwrap()
    else {
        panic!("the state file is not ours")
    };
    for &b in &flushed_blocks {
        assert_eq!(states[b], WRITTEN, "block {b} was written and flushed");
    }
    // Continue: the blocks the state file calls absent come from the
    // backup again, the rest stay; the flushed writes are all there.
    let (disk, _) = live(&s, Some(states.clone()), false);
    let stop = AtomicBool::new(false);
    disk.fill(2, None, &stop).unwrap();
    let mut whole = vec![0u8; LEN];
    disk.read(0, &mut whole).unwrap();
    for (b, &st) in states.iter().enumerate() {
        let r = b * BLOCK..(b * BLOCK + BLOCK).min(LEN);
        match st {
            WRITTEN => assert_same_bytes(&whole[r.clone()], &model[r], "a durable write"),
            ABSENT | PRESENT if !flushed_blocks.contains(&b) => {
                // Not written, or written after the last flush: either the
                // backup's block or the unflushed write, never a mix of
                // anything else.
                let ok = whole[r.clone()] == s.content[r.clone()] || whole[r.clone()] == model[r];
                assert!(ok, "block {b} is neither the backup's nor the guest's");
            }
            st => panic!("block {b}: state {st}"),
        }
    }
}

/// A damaged member fails the requests that touch its block, the log
/// names it once, the fill makes every other block present, and a guest
/// write covering the block whole makes it whole again.
#[test]
fn a_damaged_block_fails_alone() {
    let s = setup(Codec::Gzip, 11);
    let bad = (0..LEN / BLOCK)
        .find(|&b| {
            s.content[b * BLOCK..(b + 1) * BLOCK]
                .iter()
                .any(|&x| x != 0)
        })
        .unwrap() as u64
        + 10;
    let member = {
        let f = FullImage::open(File::open(&s.full).unwrap(), &s.full, &Limits::default()).unwrap();
        let (seg, i) = f.locate(bad).unwrap();
        seg.member_offset(i)
    };
    let f = OpenOptions::new().write(true).open(&s.full).unwrap();
    let mut byte = [0u8; 1];
    File::open(&s.full)
        .unwrap()
        .read_exact_at(&mut byte, member + 20)
        .unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], member + 20).unwrap();
    let (disk, logged) = live(&s, None, true);
    let mut buf = vec![0u8; 512];
    let e = disk.read(bad * BLOCK as u64 + 100, &mut buf).unwrap_err();
    assert!(e.is_integrity(), "{e}");
    disk.read((bad + 1) * BLOCK as u64, &mut buf).unwrap();
    assert_eq!(buf[..], s.content[(bad as usize + 1) * BLOCK..][..512]);
    let stop = AtomicBool::new(false);
    disk.fill(2, None, &stop).unwrap();
    assert_eq!(disk.absent(), 1);
    assert_eq!(
        disk.bad_blocks().keys().copied().collect::<Vec<_>>(),
        vec![bad]
    );
    let log = logged.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].contains(&format!("block {bad}")), "{log:?}");
    // A partial write needs the block: refused.
    assert!(disk.write(bad * BLOCK as u64, &[1, 2, 3], false).is_err());
    let whole = vec![0x42u8; BLOCK];
    disk.write(bad * BLOCK as u64, &whole, true).unwrap();
    assert_eq!(disk.absent(), 0);
    disk.read(bad * BLOCK as u64, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0x42));
}

/// Validate mode: guest writes go to the overlay until its budget, then
/// fail with NoSpace while reads go on; nothing reaches the backup.
#[test]
fn the_overlay_holds_its_budget_and_reads_go_on() {
    let s = setup(Codec::Zstd, 13);
    let before = std::fs::read(&s.full).unwrap();
    let overlay = tempfile::tempfile_in(s.dir.path()).unwrap();
    overlay.set_len(LEN as u64).unwrap();
    let store = Store::Overlay {
        budget: 2 * BLOCK as u64,
        keep_free: 0,
        used: Default::default(),
    };
    let disk = LiveDisk::new(
        image(&s.full),
        overlay,
        "overlay",
        store,
        None,
        Box::new(|_| {}),
    )
    .unwrap();
    disk.write(10, &[7; 100], false).unwrap();
    disk.write(BLOCK as u64 + 5, &[8; 100], false).unwrap();
    // Same blocks again: no new room needed.
    disk.write(20, &[9; 10], false).unwrap();
    let e = disk.write(5 * BLOCK as u64, &[1; 10], false).unwrap_err();
    assert!(matches!(e, Error::NoSpace { .. }), "{e}");
    let mut whole = vec![0u8; LEN];
    disk.read(0, &mut whole).unwrap();
    let mut model = s.content.clone();
    model[10..110].fill(7);
    model[BLOCK + 5..BLOCK + 105].fill(8);
    model[20..30].fill(9);
    assert_same_bytes(&whole, &model, "the validated disk");
    let stop = AtomicBool::new(false);
    assert_eq!(disk.fill(2, None, &stop).unwrap().fetched, 0);
    assert_eq!(
        std::fs::read(&s.full).unwrap(),
        before,
        "the backup is untouched"
    );
}
