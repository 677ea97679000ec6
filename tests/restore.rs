//! Restoring from a delta archive as an operator does it on a bad day: the
//! `.sdar` file run as a program (and the same through `sdar restore`),
//! the result checked byte for byte and with `qemu-img`, and every way a
//! restore must refuse (a wrong, damaged or truncated full or archive, an
//! existing destination) leaving nothing that looks like a disk. No command
//! ever changes a backup.

mod common;

use archive_format::ChangeKind;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BLOCK: usize = 65_536;
const PAGE: usize = 4096;
const SECTOR: u64 = 512;

/// The adapter the source descriptors declare. It is not sdar's default
/// (lsilogic), so a restored descriptor can only have it from the backup;
/// the same holds for the geometry (64 heads, 32 sectors, not 255/63).
const SOURCE_ADAPTER: &str = "buslogic";

// Where a fixture keeps its files, relative to its folder.
const BASE: &str = "vm/base.vmdk";
const NOW: &str = "vm/now.vmdk";
const VMX: &str = "vm/vm.vmx";
const VMX_NOW: &str = "vm/now.vmx";
const FULL: &str = "backup/vm.full.gz";
/// The empty delta `sdar full` writes beside the full.
const EMPTY: &str = "backup/vm.sdar";
const DELTA: &str = "backup/vm-1.sdar";

/// A scratch folder with a VM disk (`vm/base.vmdk`, a monolithicFlat
/// descriptor) and its .vmx, a full of it with its empty delta in
/// `backup/`, an empty `restore/`, and after `add_delta` a changed disk
/// (`vm/now.vmdk`, a vmfs descriptor) and its delta.
struct Fixture {
    dir: tempfile::TempDir,
    /// The disk the full was made of.
    base: Vec<u8>,
    /// The disk the delta was made of.
    now: Vec<u8>,
}

impl Fixture {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// A new empty folder for one restore, such as `restore/a`.
    fn dest_dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Writes `vm/{name}.vmdk` (vmfs) holding `disk`, then runs
    /// `sdar delta vm/{name}.vmdk --full FULL --vmx VMX_NOW -o ARCHIVE EXTRA`.
    fn delta(&self, name: &str, disk: &[u8], archive: &str, extra: &[&str]) {
        write_vmdk(
            &self.path("vm"),
            name,
            disk,
            DescriptorKind::Vmfs,
            SOURCE_ADAPTER,
        );
        let source = format!("vm/{name}.vmdk");
        let mut args = vec![
            "delta", &source, "--full", FULL, "--vmx", VMX_NOW, "-o", archive, "-q",
        ];
        args.extend_from_slice(extra);
        sdar(self.root(), &args).success();
    }

    /// Changes the base disk with `change_disk(seed)` and writes its delta
    /// to DELTA.
    fn add_delta(&mut self, seed: u64) {
        let mut now = self.base.clone();
        change_disk(&mut now, seed);
        self.delta("now", &now, DELTA, &[]);
        self.now = now;
    }
}

/// A VM disk of `sectors` sectors from `sdar sample-disk --seed seed`, and
/// its full (gzip) with its empty delta.
fn with_full(sectors: u64, seed: u64) -> Fixture {
    let dir = scratch();
    let d = dir.path();
    for sub in ["vm", "backup", "restore"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    let base = sample_disk(&d.join("vm"), "base-flat.vmdk", sectors * SECTOR, seed);
    write_vmdk(
        &d.join("vm"),
        "base",
        &base,
        DescriptorKind::MonolithicFlat,
        SOURCE_ADAPTER,
    );
    fs::write(d.join(VMX), vmx_text("crm", "0:1", "base.vmdk")).unwrap();
    fs::write(d.join(VMX_NOW), vmx_text("crm-after", "0:1", "now.vmdk")).unwrap();
    sdar(d, &["full", BASE, "--vmx", VMX, "-o", FULL, "-q"]).success();
    assert_eq!(listing(&d.join("backup")), ["vm.full.gz", "vm.sdar"]);
    Fixture {
        dir,
        base,
        now: Vec::new(),
    }
}

/// Writes `dir/{name}-flat.vmdk` holding `disk` and its descriptor.
fn write_vmdk(dir: &Path, name: &str, disk: &[u8], kind: DescriptorKind, adapter: &str) {
    assert_eq!(disk.len() as u64 % SECTOR, 0, "VMDKs hold whole sectors");
    let flat = format!("{name}-flat.vmdk");
    fs::write(dir.join(&flat), disk).unwrap();
    fs::write(
        dir.join(format!("{name}.vmdk")),
        descriptor_text_with_adapter(kind, disk.len() as u64 / SECTOR, &flat, 0, adapter),
    )
    .unwrap();
}

fn is_zero_block(disk: &[u8], b: usize) -> bool {
    disk[b * BLOCK..(b + 1) * BLOCK].iter().all(|&x| x == 0)
}

/// Changes `disk` as a running VM would, the same way for the same `seed`:
/// 16 scattered 4 KiB writes of random bytes, one rewritten region of
/// 300 KiB that starts and ends inside pages, 3000 bytes written into two
/// blocks of zeros, and two blocks of data zeroed.
fn change_disk(disk: &mut [u8], seed: u64) {
    let mut rng = Rng::new(seed);
    let blocks = disk.len() / BLOCK;
    let zero: Vec<usize> = (0..blocks).filter(|&b| is_zero_block(disk, b)).collect();
    let data: Vec<usize> = (0..blocks).filter(|&b| !is_zero_block(disk, b)).collect();
    assert!(
        zero.len() >= 2 && data.len() >= 2,
        "the sample disk should mix zero and data blocks"
    );
    let pages = disk.len() / PAGE;
    for _ in 0..16 {
        let p = rng.below(pages);
        disk[p * PAGE..(p + 1) * PAGE].copy_from_slice(&rng.bytes(PAGE));
    }
    let start = disk.len() / 3 + 1234;
    let end = (start + 300 * 1024 + 77).min(disk.len());
    for (i, b) in disk[start..end].iter_mut().enumerate() {
        *b = b"the VM rewrote this region\n"[i % 27];
    }
    for b in [zero[zero.len() / 3], zero[zero.len() * 2 / 3]] {
        let at = b * BLOCK + 1000;
        disk[at..at + 3000].copy_from_slice(&rng.bytes(3000));
    }
    for b in [data[data.len() / 4], data[data.len() * 3 / 4]] {
        disk[b * BLOCK..(b + 1) * BLOCK].fill(0);
    }
}

/// Blocks that differ between two disks of the same size.
fn differing_blocks(a: &[u8], b: &[u8]) -> u64 {
    assert_eq!(a.len(), b.len());
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .filter(|(x, y)| x != y)
        .count() as u64
}

/// Runs the archive `archive` as a program, by its absolute path, in `cwd`,
/// without the test's own SDAR_FULL_PATH; `setup` adds to the command.
fn run_archive_with(
    cwd: &Path,
    archive: &Path,
    args: &[&str],
    setup: impl FnOnce(&mut Command),
) -> Outcome {
    let mut cmd = Command::new(archive);
    cmd.args(args).current_dir(cwd).env_remove("SDAR_FULL_PATH");
    setup(&mut cmd);
    run_command(
        format!("{} {}", archive.display(), args.join(" ")),
        &mut cmd,
    )
}

fn run_archive(cwd: &Path, archive: &Path, args: &[&str]) -> Outcome {
    run_archive_with(cwd, archive, args, |_| {})
}

/// `cat FULL | PROGRAM ARGS` (an archive, or `sdar`): the full through a
/// pipe, as from a tape or over ssh, never a file it could seek in.
fn run_piped(cwd: &Path, program: &Path, full: &Path, args: &[&str]) -> Outcome {
    require_tool("cat");
    let mut cat = Command::new("cat")
        .arg(full)
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run cat");
    let pipe = cat.stdout.take().unwrap();
    let mut out = run_archive_with(cwd, program, args, |cmd| {
        cmd.stdin(pipe);
    });
    // cat may die of SIGPIPE when the archive stops reading early: fine.
    let _ = cat.wait();
    out.what = format!("cat {} | {}", full.display(), out.what);
    out
}

/// The two ways to run an archive's commands.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// The archive itself: `./X.sdar COMMAND ARGS`.
    Archive,
    /// `sdar COMMAND X.sdar ARGS`.
    Sdar,
}

const BOTH: [Via; 2] = [Via::Archive, Via::Sdar];

/// Runs runtime `command` of `archive` (relative to the fixture's folder),
/// in that folder.
fn runtime(f: &Fixture, via: Via, archive: &str, command: &str, args: &[&str]) -> Outcome {
    match via {
        Via::Archive => {
            let mut a = vec![command];
            a.extend_from_slice(args);
            run_archive(f.root(), &f.path(archive), &a)
        }
        Via::Sdar => {
            let mut a = vec![command, archive];
            a.extend_from_slice(args);
            sdar(f.root(), &a)
        }
    }
}

/// `restore/a/x.vmdk` → `restore/a/x-flat.vmdk`.
fn flat_of(descriptor: &str) -> String {
    format!("{}-flat.vmdk", descriptor.strip_suffix(".vmdk").unwrap())
}

/// `key = "value"` lines of a descriptor (header and DDB), unquoted, and
/// its extent lines under the key `extent`.
fn descriptor_facts(path: &Path) -> BTreeMap<String, String> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut facts = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("RW ") {
            facts.insert("extent".to_string(), line.to_string());
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            facts.insert(k.trim().to_string(), v.to_string());
        }
    }
    facts
}

/// `qemu-img info --output=json IMAGE`, letting qemu-img find the format.
fn qemu_info(dir: &Path, image: &str) -> serde_json::Value {
    let out = stock(dir, "qemu-img", &["info", "--output=json", image]).success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("qemu-img info is not JSON ({e}):\n{}", out.stdout_text()))
}

/// Checks the VMDK restored at `dest` (relative to `root`): it and its flat
/// extent are all there is in its folder; the extent holds `disk` padded to
/// whole sectors; qemu-img reads it as a vmdk of the right size and
/// createType and finds it identical to `source` (read as `source_format`);
/// and its descriptor carries the adapter, geometry and UUID of
/// `source_descriptor`.
#[track_caller]
fn assert_restored_vmdk(
    root: &Path,
    dest: &str,
    disk: &[u8],
    (source, source_format): (&str, &str),
    source_descriptor: &str,
    vmfs: bool,
) {
    let flat = flat_of(dest);
    let name = |p: &str| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut expected = vec![name(&flat), name(dest)];
    expected.sort();
    assert_eq!(
        listing(root.join(dest).parent().unwrap()),
        expected,
        "a restore leaves its descriptor and flat extent, nothing else"
    );
    let padded_len = (disk.len() as u64).div_ceil(SECTOR) * SECTOR;
    let mut padded = disk.to_vec();
    padded.resize(padded_len as usize, 0);
    assert_same_bytes(&fs::read(root.join(&flat)).unwrap(), &padded, &flat);

    stock(
        root,
        "qemu-img",
        &["compare", "-f", "vmdk", "-F", source_format, dest, source],
    )
    .success();
    let info = qemu_info(root, dest);
    let create_type = if vmfs { "vmfs" } else { "monolithicFlat" };
    assert_eq!(info["format"], "vmdk", "{info:#}");
    assert_eq!(info["virtual-size"], padded_len, "{info:#}");
    assert_eq!(
        info["format-specific"]["data"]["create-type"], create_type,
        "{info:#}"
    );

    let restored = descriptor_facts(&root.join(dest));
    let src = descriptor_facts(&root.join(source_descriptor));
    assert_eq!(src["ddb.adapterType"], SOURCE_ADAPTER);
    assert_eq!(restored["createType"], create_type);
    for key in [
        "ddb.adapterType",
        "ddb.geometry.cylinders",
        "ddb.geometry.heads",
        "ddb.geometry.sectors",
        "ddb.uuid",
        "ddb.virtualHWVersion",
    ] {
        assert_eq!(
            restored.get(key),
            src.get(key),
            "{dest}: {key} is not the source's ({source_descriptor})"
        );
    }
    let extent = &restored["extent"];
    assert!(
        extent.starts_with(&format!("RW {} ", padded_len / SECTOR))
            && extent.contains(&format!("\"{}\"", name(&flat))),
        "{dest}: the extent should declare {} sectors of {} by its bare name: {extent}",
        padded_len / SECTOR,
        name(&flat)
    );
}

/// `info --json` of an archive, parsed.
fn info_json(f: &Fixture, via: Via, archive: &str) -> serde_json::Value {
    let out = runtime(f, via, archive, "info", &["--json"]).success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`{}` is not JSON ({e}):\n{}", out.what, out.stdout_text()))
}

/// `sdar info --json FILE` of a full, parsed.
fn full_info(dir: &Path, full: &str) -> serde_json::Value {
    let out = sdar(dir, &["info", "--json", full]).success();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks a failed restore: exit code `code`, and nothing at all in
/// `dest_dir` (no descriptor, no flat file, no partial file).
#[track_caller]
fn assert_failed_cleanly(out: &Outcome, code: i32, dest_dir: &Path) {
    assert_eq!(
        out.code, code,
        "`{}` exited {} instead of {code}\nstderr: {}",
        out.what, out.code, out.stderr
    );
    assert_eq!(
        listing(dest_dir),
        Vec::<String>::new(),
        "`{}` left files behind; stderr: {}",
        out.what,
        out.stderr
    );
}

/// Checks that `stderr` names `block` and a byte offset inside
/// `offset..offset + len` (where the damaged member lies).
#[track_caller]
fn assert_names_block_and_offset(stderr: &str, block: u64, offset: u64, len: u64) {
    assert!(
        stderr.contains(&format!("block {block}")),
        "the message should name block {block}: {stderr}"
    );
    let at = number_after(stderr, "byte")
        .unwrap_or_else(|| panic!("the message should name a byte offset: {stderr}"));
    assert!(
        (offset..offset + len).contains(&at),
        "byte {at} is not inside the damaged member at {offset}..{}: {stderr}",
        offset + len
    );
}

#[test]
fn empty_delta_restores_the_disk_of_its_full() {
    let f = with_full(16 << 11, 3);
    let source = (BASE, "vmdk");
    for (via, dir) in [(Via::Archive, "restore/a"), (Via::Sdar, "restore/b")] {
        f.dest_dir(dir);
        let dest = format!("{dir}/vm.vmdk");
        let out = runtime(&f, via, EMPTY, "restore", &["--to", &dest]).success();
        assert!(out.stderr.contains("restored"), "{}", out.stderr);
        assert_restored_vmdk(f.root(), &dest, &f.base, source, BASE, false);
    }
    f.dest_dir("restore/v");
    runtime(
        &f,
        Via::Archive,
        EMPTY,
        "restore",
        &["--vmfs", "--to", "restore/v/vm.vmdk"],
    )
    .success();
    assert_restored_vmdk(f.root(), "restore/v/vm.vmdk", &f.base, source, BASE, true);
    for via in BOTH {
        let dest = format!("restore/{via:?}.img");
        runtime(&f, via, EMPTY, "restore", &["--raw", "--to", &dest]).success();
        assert_same_bytes(&fs::read(f.path(&dest)).unwrap(), &f.base, &dest);
    }
}

#[test]
fn delta_restores_the_changed_disk() {
    let mut f = with_full(12 << 11, 5);
    f.add_delta(1);
    let source = (NOW, "vmdk");
    for (via, dir) in [(Via::Archive, "restore/a"), (Via::Sdar, "restore/b")] {
        f.dest_dir(dir);
        let dest = format!("{dir}/crm.vmdk");
        runtime(&f, via, DELTA, "restore", &["--to", &dest]).success();
        assert_restored_vmdk(f.root(), &dest, &f.now, source, NOW, false);
        runtime(&f, via, DELTA, "verify", &[]).success();
    }
    f.dest_dir("restore/v");
    runtime(
        &f,
        Via::Sdar,
        DELTA,
        "restore",
        &["--to", "restore/v/crm.vmdk", "--vmfs"],
    )
    .success();
    assert_restored_vmdk(f.root(), "restore/v/crm.vmdk", &f.now, source, NOW, true);
    for via in BOTH {
        let dest = format!("restore/{via:?}.img");
        runtime(&f, via, DELTA, "restore", &["--to", &dest, "--raw"]).success();
        assert_same_bytes(&fs::read(f.path(&dest)).unwrap(), &f.now, &dest);
    }
    let changed = differing_blocks(&f.base, &f.now);
    assert_eq!(
        info_json(&f, Via::Archive, DELTA)["changed_blocks"],
        changed
    );
}

/// The disk grew or shrank since the full, to sizes that are and are not
/// whole blocks, given as VMDKs and as raw images of any byte length.
#[test]
fn grown_and_shrunk_disks_restore() {
    // A full of whole blocks, and one whose last block is 5 sectors long.
    resize_and_restore(8 << 11, 7);
    resize_and_restore((6 << 11) + 5, 15);
}

/// Makes deltas of the base disk changed and resized, restores each and
/// compares it with the source.
fn resize_and_restore(base_sectors: u64, seed: u64) {
    let f = with_full(base_sectors, seed);
    let tail_dir = f.dest_dir("tails");
    let tail = sample_disk(&tail_dir, "tail.raw", 5 << 20, 11);
    // The disk at `len` bytes: the base (changed), then new data.
    let resized = |len: usize, seed: u64| {
        let mut disk = f.base.clone();
        change_disk(&mut disk, seed);
        disk.truncate(len);
        let missing = len - disk.len();
        disk.extend_from_slice(&tail[..missing]);
        disk
    };
    for (i, sectors) in [
        base_sectors + (4 << 11) + 7, // grown by 4 MiB and 7 sectors
        base_sectors + 128,           // grown by one block's worth
        base_sectors * 5 / 8 + 3,     // shrunk to 5/8 and 3 sectors
        base_sectors - 1,             // shrunk by one sector
    ]
    .into_iter()
    .enumerate()
    {
        let disk = resized((sectors * SECTOR) as usize, i as u64 + 1);
        let name = format!("resized{i}");
        let archive = format!("backup/{name}.sdar");
        f.delta(&name, &disk, &archive, &[]);
        let doc = info_json(&f, Via::Archive, &archive);
        assert_eq!(doc["image_size"], disk.len() as u64);
        assert_eq!(doc["base_image_size"], f.base.len() as u64);
        let dir = format!("restore/{name}");
        f.dest_dir(&dir);
        let dest = format!("{dir}/{name}.vmdk");
        runtime(&f, Via::Archive, &archive, "restore", &["--to", &dest]).success();
        let source = format!("vm/{name}.vmdk");
        assert_restored_vmdk(f.root(), &dest, &disk, (&source, "vmdk"), &source, false);
    }
    // Raw images may end inside a sector: a raw restore gives back every
    // byte, a VMDK restore pads the flat extent with zeros.
    let base_len = f.base.len();
    for (i, len) in [base_len + 1_234_567, base_len / 2 + 1001, 1, 0]
        .into_iter()
        .enumerate()
    {
        let disk = resized(len, 9 + i as u64);
        let raw = format!("vm/raw{i}.img");
        fs::write(f.path(&raw), &disk).unwrap();
        let archive = format!("backup/raw{i}.sdar");
        sdar(
            f.root(),
            &["delta", &raw, "--full", FULL, "-o", &archive, "-q"],
        )
        .success();
        let dest = format!("restore/raw{i}.img");
        runtime(
            &f,
            Via::Archive,
            &archive,
            "restore",
            &["--raw", "--to", &dest],
        )
        .success();
        assert_same_bytes(&fs::read(f.path(&dest)).unwrap(), &disk, &dest);
        let dir = format!("restore/raw{i}");
        f.dest_dir(&dir);
        let dest = format!("{dir}/raw.vmdk");
        runtime(&f, Via::Sdar, &archive, "restore", &["--to", &dest]).success();
        let flat = fs::read(f.path(&flat_of(&dest))).unwrap();
        assert_eq!(flat.len() as u64, (len as u64).div_ceil(SECTOR) * SECTOR);
        assert_same_bytes(&flat[..len], &disk, &dest);
        assert!(flat[len..].iter().all(|&b| b == 0), "{dest}: padding");
        if len > 0 {
            // (qemu-img 10 aborts on an extent of 0 sectors.)
            stock(
                f.root(),
                "qemu-img",
                &["compare", "-f", "vmdk", "-F", "raw", &dest, &raw],
            )
            .success();
        }
    }
}

/// Run from anywhere, the archive looks for its full in its own folder.
#[test]
fn full_beside_the_archive_is_found_from_another_folder() {
    let mut f = with_full(8 << 11, 2);
    f.add_delta(2);
    let elsewhere = f.dest_dir("elsewhere");
    f.dest_dir("restore/a");
    run_archive(
        &elsewhere,
        &f.path(DELTA),
        &["restore", "--to", "../restore/a/crm.vmdk"],
    )
    .success();
    assert_restored_vmdk(
        f.root(),
        "restore/a/crm.vmdk",
        &f.now,
        (NOW, "vmdk"),
        NOW,
        false,
    );
    run_archive(&elsewhere, &f.path(EMPTY), &["verify"]).success();
    assert_eq!(listing(&elsewhere), Vec::<String>::new());
}

/// Elsewhere, the full is found through SDAR_FULL_PATH by its identity,
/// whatever its name, and a file with the expected name but another
/// identity is passed over; `--full PATH` names it directly.
#[test]
fn full_elsewhere_is_found_by_identity_or_given_with_full() {
    let mut f = with_full(8 << 11, 4);
    f.add_delta(3);
    let d = f.root();
    for sub in ["lonely", "store1", "store2"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    fs::rename(f.path(DELTA), d.join("lonely/vm-1.sdar")).unwrap();
    fs::rename(f.path(FULL), d.join("store2/renamed-backup.bin")).unwrap();
    // A decoy with the very name the delta remembers: another disk's full.
    sample_disk(&d.join("vm"), "other.raw", f.base.len() as u64, 99);
    sdar(
        d,
        &["full", "vm/other.raw", "-o", "store1/vm.full.gz", "-q"],
    )
    .success();
    let archive = d.join("lonely/vm-1.sdar");
    let identity = info_json(&f, Via::Archive, "lonely/vm-1.sdar")["base_identity"]
        .as_str()
        .unwrap()
        .to_string();

    let dest_dir = f.dest_dir("restore/none");
    let out = run_archive(d, &archive, &["restore", "--to", "restore/none/crm.vmdk"]);
    assert_failed_cleanly(&out, EXIT_OTHER, &dest_dir);
    assert!(
        out.stderr.contains(&identity) && out.stderr.contains("--full"),
        "the message should name the identity sought and --full: {}",
        out.stderr
    );

    f.dest_dir("restore/a");
    let search = std::env::join_paths([d.join("store1"), d.join("store2")]).unwrap();
    run_archive_with(
        d,
        &archive,
        &["restore", "--to", "restore/a/crm.vmdk"],
        |cmd| {
            cmd.env("SDAR_FULL_PATH", &search);
        },
    )
    .success();
    assert_restored_vmdk(d, "restore/a/crm.vmdk", &f.now, (NOW, "vmdk"), NOW, false);

    for (via, dir) in [(Via::Archive, "restore/b"), (Via::Sdar, "restore/c")] {
        f.dest_dir(dir);
        let dest = format!("{dir}/crm.vmdk");
        let args = ["--full", "store2/renamed-backup.bin", "--to", &dest];
        runtime(&f, via, "lonely/vm-1.sdar", "restore", &args).success();
        assert_restored_vmdk(d, &dest, &f.now, (NOW, "vmdk"), NOW, false);
    }
}

/// `cat FULL | ./X.sdar restore --full - --to D.vmdk` gives the same disk
/// as the full given by its path.
#[test]
fn full_streamed_on_stdin_restores_the_same_disk() {
    let mut f = with_full(8 << 11, 6);
    f.add_delta(4);
    let full = f.path(FULL);
    for (archive, disk) in [(DELTA, &f.now), (EMPTY, &f.base)] {
        let name = Path::new(archive).file_stem().unwrap().to_string_lossy();
        let dir = format!("restore/{name}");
        f.dest_dir(&dir);
        let dest = format!("{dir}/crm.vmdk");
        run_piped(
            f.root(),
            &f.path(archive),
            &full,
            &["restore", "--full", "-", "--to", &dest],
        )
        .success();
        let source = if archive == DELTA { NOW } else { BASE };
        assert_restored_vmdk(f.root(), &dest, disk, (source, "vmdk"), source, false);
        let raw = format!("restore/{name}.img");
        run_piped(
            f.root(),
            &f.path(archive),
            &full,
            &["restore", "--raw", "--full", "-", "--to", &raw],
        )
        .success();
        assert_same_bytes(&fs::read(f.path(&raw)).unwrap(), disk, &raw);
        run_piped(
            f.root(),
            &f.path(archive),
            &full,
            &["verify", "--full", "-"],
        )
        .success();
        let raw = format!("restore/{name}-sdar.img");
        let args = ["restore", archive, "--full", "-", "--raw", "--to", &raw];
        run_piped(f.root(), Path::new(SDAR), &full, &args).success();
        assert_same_bytes(&fs::read(f.path(&raw)).unwrap(), disk, &raw);
    }
}

/// Another disk's full of the same size, streamed on stdin.
fn wrong_full_on_stdin(seed: u64) -> (Fixture, String, String) {
    let mut f = with_full(4 << 11, seed);
    f.add_delta(5);
    sample_disk(&f.path("vm"), "other.raw", f.base.len() as u64, 98);
    sdar(
        f.root(),
        &["full", "vm/other.raw", "-o", "other.full.gz", "-q"],
    )
    .success();
    let id = |full: &str| {
        full_info(f.root(), full)["identity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (expected, found) = (id(FULL), id("other.full.gz"));
    (f, expected, found)
}

/// The wrong full on stdin is refused with exit 1 and leaves nothing: its
/// identity is only known at its end, so blocks may have been written.
#[test]
fn wrong_full_streamed_on_stdin_is_refused_and_leaves_nothing() {
    let (f, _, _) = wrong_full_on_stdin(8);
    for archive in [DELTA, EMPTY] {
        for args in [
            &["restore", "--full", "-", "--to", "restore/crm.vmdk"][..],
            &["restore", "--full", "-", "--raw", "--to", "restore/crm.img"],
        ] {
            let out = run_piped(f.root(), &f.path(archive), &f.path("other.full.gz"), args);
            assert_failed_cleanly(&out, EXIT_INTEGRITY, &f.path("restore"));
        }
        let out = run_piped(
            f.root(),
            &f.path(archive),
            &f.path("other.full.gz"),
            &["verify", "--full", "-"],
        );
        assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
    }
}

/// The message for a wrong full on stdin names the full and both
/// identities, as it does for `--full PATH`, and does not call the delta
/// archive corrupt.
#[test]
fn wrong_full_streamed_on_stdin_is_named_as_the_wrong_full() {
    let (f, expected, found) = wrong_full_on_stdin(8);
    for archive in [DELTA, EMPTY] {
        let out = run_piped(
            f.root(),
            &f.path(archive),
            &f.path("other.full.gz"),
            &["restore", "--full", "-", "--to", "restore/crm.vmdk"],
        );
        assert_failed_cleanly(&out, EXIT_INTEGRITY, &f.path("restore"));
        assert!(
            out.stderr.contains("wrong full")
                && out.stderr.contains(&expected)
                && out.stderr.contains(&found),
            "the message should say the full is the wrong one and name {expected} \
             (expected) and {found} (found): {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(archive),
            "the delta archive is intact; the message should not blame it: {}",
            out.stderr
        );
    }
}

/// Another disk's full given with --full is refused with exit 1 before
/// anything is written, naming the identity expected and the one found.
#[test]
fn wrong_full_is_refused_before_anything_is_written() {
    let mut f = with_full(4 << 11, 10);
    f.add_delta(6);
    sample_disk(&f.path("vm"), "other.raw", f.base.len() as u64, 97);
    sdar(
        f.root(),
        &["full", "vm/other.raw", "-o", "other.full.gz", "-q"],
    )
    .success();
    let expected = full_info(f.root(), FULL)["identity"].clone();
    let found = full_info(f.root(), "other.full.gz")["identity"].clone();
    assert_ne!(expected, found);
    for via in BOTH {
        for archive in [DELTA, EMPTY] {
            for extra in [&[][..], &["--raw"], &["--vmfs"]] {
                let mut args = vec!["--full", "other.full.gz", "--to", "restore/crm.vmdk"];
                args.extend_from_slice(extra);
                let out = runtime(&f, via, archive, "restore", &args);
                assert_failed_cleanly(&out, EXIT_INTEGRITY, &f.path("restore"));
                for id in [&expected, &found] {
                    assert!(
                        out.stderr.contains(id.as_str().unwrap()),
                        "the message should name {id}: {}",
                        out.stderr
                    );
                }
            }
            let out = runtime(&f, via, archive, "verify", &["--full", "other.full.gz"]);
            assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
        }
    }
}

/// A flipped bit in a block the restore takes from the full: exit 1, the
/// message names the block and where it is stored, nothing is left.
#[test]
fn flipped_bit_in_the_full_fails_the_restore_and_leaves_nothing() {
    let mut f = with_full(8 << 11, 12);
    f.add_delta(7);
    let members = layout(&f.path(FULL)).members;
    let unchanged: Vec<&Member> = members
        .iter()
        .filter(|m| {
            let b = m.block as usize;
            !m.zero && f.base[b * BLOCK..(b + 1) * BLOCK] == f.now[b * BLOCK..(b + 1) * BLOCK]
        })
        .collect();
    assert!(
        unchanged.len() > 4,
        "the delta leaves data blocks unchanged"
    );
    let m = *unchanged[unchanged.len() / 2];
    let damaged = "damaged/vm.full.gz";
    fs::create_dir(f.path("damaged")).unwrap();
    fs::copy(f.path(FULL), f.path(damaged)).unwrap();
    flip_bit(&f.path(damaged), m.offset + m.len / 2, 3);
    let dest_dir = f.path("restore");
    for via in BOTH {
        for archive in [DELTA, EMPTY] {
            for extra in [&[][..], &["--raw"]] {
                let mut args = vec!["--full", damaged, "--to", "restore/crm.vmdk"];
                args.extend_from_slice(extra);
                let out = runtime(&f, via, archive, "restore", &args);
                assert_failed_cleanly(&out, EXIT_INTEGRITY, &dest_dir);
                assert!(out.stderr.contains(damaged), "{}", out.stderr);
                assert_names_block_and_offset(&out.stderr, m.block, m.offset, m.len);
            }
            let out = runtime(&f, via, archive, "verify", &["--full", damaged]);
            assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
            assert_names_block_and_offset(&out.stderr, m.block, m.offset, m.len);
        }
    }
}

/// A flipped bit in a changed block's member in the delta (whole block
/// and page patch): exit 1, the block and its offset named, nothing left.
#[test]
fn flipped_bit_in_the_delta_fails_the_restore_and_leaves_nothing() {
    let mut f = with_full(8 << 11, 13);
    f.add_delta(8);
    let members = delta_layout(&f.path(DELTA)).members;
    let dest_dir = f.path("restore");
    let mut kinds_seen = Vec::new();
    for m in members.iter().filter(|m| m.len > 0) {
        let kind = match m.kind {
            ChangeKind::Patch { .. } => "patch",
            ChangeKind::Data => "data",
            ChangeKind::Zero => unreachable!("zero blocks have no member"),
        };
        if kinds_seen.contains(&kind) {
            continue;
        }
        kinds_seen.push(kind);
        let damaged = format!("backup/damaged-{kind}.sdar");
        fs::copy(f.path(DELTA), f.path(&damaged)).unwrap();
        flip_bit(&f.path(&damaged), m.offset + m.len / 2, 6);
        for via in BOTH {
            for extra in [&[][..], &["--raw"]] {
                let mut args = vec!["--to", "restore/crm.vmdk"];
                args.extend_from_slice(extra);
                let out = runtime(&f, via, &damaged, "restore", &args);
                assert_failed_cleanly(&out, EXIT_INTEGRITY, &dest_dir);
                assert_names_block_and_offset(&out.stderr, m.block, m.offset, m.len);
            }
            let out = runtime(&f, via, &damaged, "verify", &[]);
            assert_eq!(out.code, EXIT_INTEGRITY, "{}", out.stderr);
            assert_names_block_and_offset(&out.stderr, m.block, m.offset, m.len);
        }
    }
    kinds_seen.sort();
    assert_eq!(
        kinds_seen,
        ["data", "patch"],
        "the changes give whole blocks and patches"
    );
}

/// An archive or a full cut short: exit 1, nothing left.
#[test]
fn truncated_archive_or_full_fails_and_leaves_nothing() {
    let mut f = with_full(8 << 11, 14);
    f.add_delta(9);
    let delta = delta_layout(&f.path(DELTA));
    let payload = delta.file_len - delta.payload_offset;
    let dest_dir = f.path("restore");
    // Cuts inside the payload only: an archive cut inside its runtime is
    // not a program any more.
    for len in [
        delta.payload_offset,
        delta.payload_offset + payload / 2,
        delta.file_len - 33,
        delta.file_len - 1,
    ] {
        let cut = format!("backup/cut-{len}.sdar");
        fs::copy(f.path(DELTA), f.path(&cut)).unwrap();
        truncate(&f.path(&cut), len);
        for via in BOTH {
            let out = runtime(&f, via, &cut, "restore", &["--to", "restore/crm.vmdk"]);
            assert_failed_cleanly(&out, EXIT_INTEGRITY, &dest_dir);
        }
        fs::remove_file(f.path(&cut)).unwrap();
    }
    let full = layout(&f.path(FULL));
    fs::create_dir(f.path("cut")).unwrap();
    for len in [
        full.data_start + 100,
        full.file_len / 2,
        full.directory,
        full.file_len - 1,
    ] {
        let cut = format!("cut/vm-{len}.full.gz");
        fs::copy(f.path(FULL), f.path(&cut)).unwrap();
        truncate(&f.path(&cut), len);
        for via in BOTH {
            for archive in [DELTA, EMPTY] {
                let args = ["--full", &cut, "--to", "restore/crm.vmdk"];
                let out = runtime(&f, via, archive, "restore", &args);
                assert_failed_cleanly(&out, EXIT_INTEGRITY, &dest_dir);
                assert!(out.stderr.contains(&cut), "{}", out.stderr);
            }
        }
    }
}

/// An existing descriptor, flat extent or raw image is never replaced
/// without --force; with it, the restore replaces them.
#[test]
fn existing_destination_is_refused_and_force_replaces_it() {
    let mut f = with_full(4 << 11, 15);
    f.add_delta(10);
    for (via, existing, args) in [
        (Via::Archive, "crm.vmdk", &["--to", "restore/crm.vmdk"][..]),
        (Via::Sdar, "crm.vmdk", &["--to", "restore/crm.vmdk"]),
        (Via::Archive, "crm-flat.vmdk", &["--to", "restore/crm.vmdk"]),
        (Via::Sdar, "crm-flat.vmdk", &["--to", "restore/crm.vmdk"]),
        (
            Via::Archive,
            "crm.img",
            &["--raw", "--to", "restore/crm.img"],
        ),
        (Via::Sdar, "crm.img", &["--to", "restore/crm.img", "--raw"]),
    ] {
        let path = f.path("restore").join(existing);
        fs::write(&path, b"precious: not to be overwritten").unwrap();
        let before = watch(&path);
        let out = runtime(&f, via, DELTA, "restore", args);
        assert_ne!(out.code, EXIT_OK, "`{}` replaced {existing}", out.what);
        assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
        assert!(
            out.stderr.contains("already exists") && out.stderr.contains("--force"),
            "{}",
            out.stderr
        );
        before.assert_unchanged(&out.what);
        assert_eq!(listing(&f.path("restore")), [existing]);

        let mut forced = args.to_vec();
        forced.push("--force");
        runtime(&f, via, DELTA, "restore", &forced).success();
        if existing.ends_with(".img") {
            assert_same_bytes(&fs::read(&path).unwrap(), &f.now, existing);
            assert_eq!(listing(&f.path("restore")), [existing]);
        } else {
            assert_restored_vmdk(
                f.root(),
                "restore/crm.vmdk",
                &f.now,
                (NOW, "vmdk"),
                NOW,
                false,
            );
        }
        for name in listing(&f.path("restore")) {
            fs::remove_file(f.path("restore").join(name)).unwrap();
        }
    }
}

/// A restore never writes over the full it reads or the archive it runs
/// from, even with --force, as `sdar full` refuses `-o` onto its source.
#[test]
fn restore_onto_a_backup_is_refused_even_with_force() {
    let mut f = with_full(4 << 11, 16);
    f.add_delta(16);
    let watched = [FULL, EMPTY, DELTA].map(|p| watch(&f.path(p)));
    let names = listing(&f.path("backup"));
    for via in BOTH {
        for (archive, args) in [
            (DELTA, &["--raw", "--to", FULL, "--force"][..]),
            (DELTA, &["--to", FULL, "--force"]),
            (DELTA, &["--raw", "--full", FULL, "--to", FULL, "--force"]),
            (DELTA, &["--raw", "--to", DELTA, "--force"]),
            (EMPTY, &["--raw", "--to", DELTA, "--force"]),
            (EMPTY, &["--raw", "--to", EMPTY, "--force"]),
        ] {
            let out = runtime(&f, via, archive, "restore", args);
            assert_eq!(
                out.code, EXIT_USAGE,
                "`{}` should be refused; stderr: {}",
                out.what, out.stderr
            );
            for w in &watched {
                w.assert_unchanged(&out.what);
            }
            assert_eq!(listing(&f.path("backup")), names, "after `{}`", out.what);
        }
    }
}

/// Restore, verify, info and extract-vmx, run both ways, leave the full
/// and the deltas byte-identical with the same modification time, and
/// write nothing into the backup folder.
#[test]
fn no_command_changes_the_backups() {
    let mut f = with_full(4 << 11, 16);
    f.add_delta(11);
    let watched = [FULL, EMPTY, DELTA].map(|p| watch(&f.path(p)));
    let names = listing(&f.path("backup"));
    let mut n = 0;
    for via in BOTH {
        for archive in [DELTA, EMPTY] {
            n += 1;
            let dir = format!("restore/{n}");
            f.dest_dir(&dir);
            let vmdk = format!("{dir}/crm.vmdk");
            let raw = format!("{dir}/crm.img");
            let vmx = format!("{dir}/crm.vmx");
            for args in [
                &["restore", "--to", &vmdk][..],
                &["restore", "--raw", "--to", &raw],
                &["restore", "--full", FULL, "--to", &vmdk, "--force"],
                &["verify"],
                &["verify", "--full", FULL],
                &["info"],
                &["info", "--json"],
                &["extract-vmx"],
                &["extract-vmx", "-o", &vmx],
            ] {
                let out = runtime(&f, via, archive, args[0], &args[1..]).success();
                for w in &watched {
                    w.assert_unchanged(&out.what);
                }
                assert_eq!(listing(&f.path("backup")), names, "after `{}`", out.what);
            }
        }
    }
    for args in [
        &["verify", FULL][..],
        &["info", FULL],
        &["info", "--json", FULL],
    ] {
        let out = sdar(f.root(), args).success();
        for w in &watched {
            w.assert_unchanged(&out.what);
        }
    }
}

/// extract-vmx gives back exactly the .vmx given to `sdar full` or
/// `sdar delta`, to a new file or to stdout, and never replaces a file.
#[test]
fn extract_vmx_gives_back_the_vmx_given_at_backup_time() {
    let mut f = with_full(4 << 11, 23);
    f.add_delta(12);
    for (archive, vmx) in [(EMPTY, VMX), (DELTA, VMX_NOW)] {
        let expected = fs::read(f.path(vmx)).unwrap();
        for via in BOTH {
            let out = runtime(&f, via, archive, "extract-vmx", &[]).success();
            assert_same_bytes(&out.stdout, &expected, &out.what);
            let file = format!("restore/{via:?}-{}.vmx", archive.replace('/', "-"));
            runtime(&f, via, archive, "extract-vmx", &["-o", &file]).success();
            assert_same_bytes(&fs::read(f.path(&file)).unwrap(), &expected, &file);

            fs::write(f.path(&file), b"edited by hand").unwrap();
            let before = watch(&f.path(&file));
            let out = runtime(&f, via, archive, "extract-vmx", &["-o", &file]);
            assert_ne!(out.code, EXIT_OK, "`{}` replaced {file}", out.what);
            assert!(out.stderr.contains(&file), "{}", out.stderr);
            before.assert_unchanged(&out.what);
        }
    }
}

/// README "Exit codes": an output that exists without --force is a usage
/// error (2), as `sdar full` and `restore` report it.
#[test]
fn extract_vmx_onto_an_existing_file_exits_with_the_usage_code() {
    let f = with_full(4 << 11, 15);
    fs::write(f.path("restore/crm.vmx"), b"edited by hand").unwrap();
    for via in BOTH {
        let out = runtime(&f, via, EMPTY, "extract-vmx", &["-o", "restore/crm.vmx"]);
        assert_eq!(out.code, EXIT_USAGE, "{}", out.stderr);
    }
}

/// `info --json` is JSON with the identities, the changed blocks, the
/// size and the VM's name, the same both ways.
#[test]
fn info_json_describes_the_archive() {
    let mut f = with_full(4 << 11, 18);
    f.add_delta(13);
    let full = full_info(f.root(), FULL);
    // A full of the changed disk has the identity the delta restores.
    sdar(f.root(), &["full", NOW, "-o", "now.full.gz", "-q"]).success();
    let now_full = full_info(f.root(), "now.full.gz");
    for (archive, identity, changed, vm_name, disk) in [
        (EMPTY, &full["identity"], 0, "crm", &f.base),
        (
            DELTA,
            &now_full["identity"],
            differing_blocks(&f.base, &f.now),
            "crm-after",
            &f.now,
        ),
    ] {
        let mut docs = BOTH.map(|via| info_json(&f, via, archive));
        assert_eq!(docs[0]["kind"], "delta");
        assert_eq!(&docs[0]["identity"], identity, "{archive}");
        assert_eq!(docs[0]["base_identity"], full["identity"], "{archive}");
        assert_eq!(docs[0]["changed_blocks"], changed, "{archive}");
        assert_eq!(docs[0]["image_size"], disk.len() as u64, "{archive}");
        assert_eq!(docs[0]["meta"]["vm_name"], vm_name, "{archive}");
        assert_eq!(docs[0]["meta"]["vm_uuid"], VM_UUID, "{archive}");
        // Only the file name may differ (as the archive sees itself).
        for doc in &mut docs {
            doc.as_object_mut().unwrap().remove("file");
        }
        assert_eq!(
            docs[0], docs[1],
            "{archive}: info differs between the two ways"
        );
    }
}

/// The archive needs nothing from its environment and no shared library.
#[test]
fn archive_is_static_and_runs_with_an_empty_environment() {
    let mut f = with_full(4 << 11, 19);
    f.add_delta(14);
    let backup = f.path("backup");
    stock(&backup, "env", &["-i", "./vm-1.sdar", "verify"]).success();
    stock(
        &backup,
        "env",
        &[
            "-i",
            "./vm-1.sdar",
            "restore",
            "--to",
            "../restore/crm.vmdk",
        ],
    )
    .success();
    assert_restored_vmdk(
        f.root(),
        "restore/crm.vmdk",
        &f.now,
        (NOW, "vmdk"),
        NOW,
        false,
    );

    let file = stock(&backup, "file", &["vm-1.sdar"])
        .success()
        .stdout_text();
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file says: {file}"
    );
    let ldd = stock(&backup, "ldd", &["vm-1.sdar"]);
    let said = format!("{}{}", ldd.stdout_text(), ldd.stderr);
    assert!(
        (said.contains("not a dynamic executable") || said.contains("statically linked"))
            && !said.contains("=>"),
        "ldd says: {said}"
    );
}

#[test]
fn help_and_usage_errors() {
    let f = with_full(4 << 11, 20);
    let archive = f.path(EMPTY);
    for help in ["--help", "-h"] {
        let out = run_archive(f.root(), &archive, &[help]).success();
        let text = out.stdout_text();
        for word in [
            "restore --to",
            "verify",
            "info",
            "extract-vmx",
            "SDAR_FULL_PATH",
        ] {
            assert!(text.contains(word), "--help should mention {word}: {text}");
        }
    }
    // Not a terminal (stdin is /dev/null): no menu, usage and exit 2.
    let out = run_archive(f.root(), &archive, &[]).expect_code(EXIT_USAGE);
    assert!(out.stderr.contains("Usage:"), "{}", out.stderr);
    for args in [
        &["frobnicate"][..],
        &["restore"],
        &["restore", "--to"],
        &["verify", "--no-such-option"],
        &["info", "extra"],
    ] {
        let out = run_archive(f.root(), &archive, args).expect_code(EXIT_USAGE);
        assert!(out.stderr.contains("Usage:"), "{}", out.stderr);
    }
    assert_eq!(listing(&f.path("restore")), Vec::<String>::new());
}

/// `--index-only` never reads the full's data, so it stores whole blocks
/// where a normal delta stores the changed pages: it restores the same
/// disk and is larger.
#[test]
fn index_only_delta_restores_identically() {
    let mut f = with_full(8 << 11, 21);
    f.add_delta(15);
    let index_only = "backup/index-only.sdar";
    f.delta("now", &f.now, index_only, &["--index-only"]);
    for archive in [index_only, DELTA] {
        let dest = format!("restore/{}.img", archive.replace('/', "-"));
        runtime(
            &f,
            Via::Archive,
            archive,
            "restore",
            &["--raw", "--to", &dest],
        )
        .success();
        assert_same_bytes(&fs::read(f.path(&dest)).unwrap(), &f.now, &dest);
    }
    let normal = info_json(&f, Via::Archive, DELTA);
    let whole = info_json(&f, Via::Archive, index_only);
    assert_eq!(whole["identity"], normal["identity"]);
    assert_eq!(whole["changed_blocks"], normal["changed_blocks"]);
    let patches = delta_layout(&f.path(DELTA))
        .members
        .iter()
        .filter(|m| matches!(m.kind, ChangeKind::Patch { .. }))
        .count();
    assert!(patches > 0, "the normal delta patches partial changes");
    assert!(
        delta_layout(&f.path(index_only))
            .members
            .iter()
            .all(|m| !matches!(m.kind, ChangeKind::Patch { .. })),
        "an index-only delta cannot patch"
    );
    let (normal, whole) = (
        normal["payload_bytes"].as_u64().unwrap(),
        whole["payload_bytes"].as_u64().unwrap(),
    );
    assert!(
        whole > normal,
        "index-only payload {whole} bytes should exceed the patched one's {normal}"
    );
}

/// 20 scattered 4 KiB writes of random data on a 16 MiB disk cost about
/// 20 pages in the delta, not 20 blocks.
#[test]
fn delta_of_scattered_page_writes_is_small() {
    let f = with_full(16 << 11, 22);
    let mut now = f.base.clone();
    let mut rng = Rng::new(22);
    let pages = now.len() / PAGE;
    for _ in 0..20 {
        let p = rng.below(pages);
        now[p * PAGE..(p + 1) * PAGE].copy_from_slice(&rng.bytes(PAGE));
    }
    f.delta("now", &now, DELTA, &[]);
    let doc = info_json(&f, Via::Archive, DELTA);
    let payload = doc["payload_bytes"].as_u64().unwrap();
    let bound = 20 * 4096 * 11 / 10 + 65_536;
    assert!(
        payload < bound,
        "payload {payload} bytes for 20 pages; expected under {bound}"
    );
    let dest = "restore/now.img";
    runtime(&f, Via::Archive, DELTA, "restore", &["--raw", "--to", dest]).success();
    assert_same_bytes(&fs::read(f.path(dest)).unwrap(), &now, dest);
}

/// A restore with --force over a disk that another process holds locked,
/// as a running VM does (QEMU takes record locks on its images; other
/// programs take `flock`), is refused and changes nothing; once the lock is
/// gone the same command replaces the disk.
#[test]
fn restore_over_a_disk_in_use_is_refused() {
    use rustix::fs::{fcntl_lock, flock, FlockOperation};
    let mut f = with_full(4096, 43);
    f.add_delta(44);
    let dir = f.dest_dir("restore/busy");
    let dest = "restore/busy/crm.vmdk";
    runtime(&f, Via::Archive, DELTA, "restore", &["--to", dest, "-q"]).success();
    let flat = f.path(&flat_of(dest));
    // Something to tell a refused restore from a done one.
    fs::write(&flat, b"the running VM's disk").unwrap();
    let watched = [watch(&flat), watch(&f.path(dest))];

    let refused = |what: &str| {
        for via in BOTH {
            let out = runtime(&f, via, DELTA, "restore", &["--to", dest, "--force"]);
            assert_eq!(
                out.code, EXIT_USAGE,
                "{what}, `{}`: {}",
                out.what, out.stderr
            );
            assert!(
                out.stderr
                    .contains("is in use: another process holds a lock on it"),
                "{what}: {}",
                out.stderr
            );
            for w in &watched {
                w.assert_unchanged(what);
            }
            assert_eq!(listing(&dir), ["crm-flat.vmdk", "crm.vmdk"], "{what}");
        }
    };
    // flock, held by this test process.
    let held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&flat)
        .unwrap();
    flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
    refused("flock held on the flat extent");
    drop(held);
    // A POSIX record lock on the descriptor, held by another process (this
    // one would lose its own the moment it closed any handle on the file).
    require_tool("python3");
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'r+b'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
            &f.path(dest).display().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run python3");
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said, "locked\n");
    refused("a record lock held on the descriptor");
    drop(locker.stdin.take());
    locker.wait().unwrap();

    // A real program with the disk open for writing: qemu-io, as QEMU would.
    require_tool("qemu-io");
    let mut qemu = Command::new("qemu-io")
        .args(["-f", "raw", &flat.display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run qemu-io");
    // qemu-io has the image open (and locked) once it reads commands.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let probe = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&flat)
            .unwrap();
        if fcntl_lock(&probe, FlockOperation::NonBlockingLockExclusive).is_err() {
            break;
        }
        drop(probe);
        assert!(
            std::time::Instant::now() < deadline,
            "qemu-io never locked {}",
            flat.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    refused("qemu-io holding the flat extent open");
    drop(qemu.stdin.take());
    qemu.wait().unwrap();

    runtime(
        &f,
        Via::Archive,
        DELTA,
        "restore",
        &["--to", dest, "--force", "-q"],
    )
    .success();
    assert_eq!(fs::read(&flat).unwrap(), f.now);
}

/// While a restore runs, a second one to the same destination is refused
/// and touches nothing; the first then finishes with the right disk.
#[test]
fn second_restore_to_the_same_destination_is_refused() {
    let mut f = with_full(4096, 43);
    f.add_delta(44);
    let dir = f.dest_dir("restore/twice");
    let dest = "restore/twice/crm.vmdk";
    // The first restore reads its full from a pipe that this test fills:
    // half now, so that it is surely running, the rest later.
    let full = fs::read(f.path(FULL)).unwrap();
    let mut first = Command::new(f.path(DELTA))
        .args(["restore", "--to", dest, "--full", "-", "-q"])
        .current_dir(f.root())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(&full[..full.len() / 2]).unwrap();
    let partial = dir.join(".crm-flat.vmdk.sdar-partial");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !partial.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first restore never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for via in BOTH {
        for extra in [&[][..], &["--force"], &["--resume"]] {
            let mut args = vec!["--to", dest];
            args.extend_from_slice(extra);
            let out = runtime(&f, via, DELTA, "restore", &args);
            assert_eq!(out.code, EXIT_USAGE, "`{}`: {}", out.what, out.stderr);
            assert!(
                out.stderr.contains("another restore to") && out.stderr.contains("is running"),
                "`{}`: {}",
                out.what,
                out.stderr
            );
            assert!(
                partial.exists(),
                "the second restore removed the first's data"
            );
        }
    }
    stdin.write_all(&full[full.len() / 2..]).unwrap();
    drop(stdin);
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listing(&dir), ["crm-flat.vmdk", "crm.vmdk"]);
    assert_eq!(fs::read(dir.join("crm-flat.vmdk")).unwrap(), f.now);
}
