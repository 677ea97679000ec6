//! `sdar info`: what a backup knows about its VM and disk, as text for a
//! person and as JSON for a script, matching what `sdar full` wrote.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// The value on the text line labelled `label:`.
#[track_caller]
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{label}:` line in:\n{text}"))
        .trim()
}

fn info_json(dir: &Path, file: &str) -> Value {
    let out = sdar(dir, &["info", "--json", file]).success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON ({e}):\n{}", out.stdout_text()))
}

/// A VM `billing-db` whose SCSI 0:1 disk `billing_1.vmdk` (a vmfs
/// descriptor) is backed up with its .vmx.
struct Backup {
    vmdk: Vmdk,
    sectors: u64,
    vmx_len: u64,
    identity: String,
    /// The Unix time before and after `sdar full` ran.
    window: (i64, i64),
}

fn backup(dir: &Path, codec: &str, out: &str, extra: &[&str]) -> Backup {
    let sectors = 6151;
    let vmdk = sample_vmdk(dir, "billing_1", DescriptorKind::Vmfs, sectors, 2);
    let vmx = vmx_text("billing-db", "0:1", &vmdk.descriptor);
    fs::write(dir.join("billing.vmx"), &vmx).unwrap();
    let mut args = vec![
        "full",
        "billing_1.vmdk",
        "--vmx",
        "billing.vmx",
        "--codec",
        codec,
        "-o",
        out,
        "--force",
    ];
    args.extend_from_slice(extra);
    let start = unix_now();
    let printed = sdar(dir, &args).success();
    Backup {
        vmdk,
        sectors,
        vmx_len: vmx.len() as u64,
        identity: printed_identity(&printed.stdout_text()),
        window: (start, unix_now()),
    }
}

#[test]
fn text_shows_vm_disk_and_layout() {
    let dir = scratch();
    let b = backup(dir.path(), "gzip", "billing.full.gz", &[]);
    let text = sdar(dir.path(), &["info", "billing.full.gz"])
        .success()
        .stdout_text();
    let size = b.vmdk.disk.len() as u64;
    assert_eq!(field(&text, "File"), "billing.full.gz");
    assert!(field(&text, "Kind").contains("gzip"), "{text}");
    assert_eq!(field(&text, "Identity"), b.identity);
    assert!(
        field(&text, "Disk size").contains(&format!("({size} bytes)")),
        "{text}"
    );
    let blocks = size.div_ceil(65_536);
    let zeros = zero_blocks(&b.vmdk.disk, 65_536);
    assert!(
        field(&text, "Blocks").starts_with(&format!("{blocks} of 64.00 KiB ({zeros} zero)")),
        "{text}"
    );
    assert_eq!(field(&text, "VM name"), "billing-db");
    assert_eq!(field(&text, "VM UUID"), VM_UUID);
    assert_eq!(field(&text, "SCSI id"), "0:1");
    assert_eq!(field(&text, "Disk name"), "billing_1.vmdk");
    assert_eq!(field(&text, "Adapter"), ADAPTER);
    let geometry = format!("{}/{HEADS}/{TRACK_SECTORS}", cylinders(b.sectors));
    assert!(
        field(&text, "Geometry").starts_with(&geometry),
        "geometry should be {geometry} (C/H/S):\n{text}"
    );
    assert_eq!(field(&text, "HW version"), HW_VERSION);
    assert_eq!(field(&text, "Disk UUID"), DISK_UUID);
    assert_eq!(field(&text, "VMX"), format!("{} bytes", b.vmx_len));
    let created = stamp_to_unix(field(&text, "Created"))
        .unwrap_or_else(|| panic!("`Created:` is not a UTC stamp:\n{text}"));
    assert!((b.window.0..=b.window.1).contains(&created), "{text}");
    assert!(field(&text, "Made by").starts_with("sdar "), "{text}");
}

#[test]
fn json_matches_what_full_wrote() {
    let dir = scratch();
    let d = dir.path();
    for (codec, out, block_size) in [
        ("gzip", "b.full.gz", 65_536u64),
        ("zstd", "b.full.zst", 65_536),
        ("gzip", "b4k.full.gz", 4096),
        ("zstd", "b4k.full.zst", 4096),
    ] {
        let bs = block_size.to_string();
        let d = &d.join(out.replace('.', "-"));
        fs::create_dir(d).unwrap();
        let b = backup(d, codec, out, &["--block-size", &bs]);
        let doc = info_json(d, out);
        let size = b.vmdk.disk.len() as u64;
        let blocks = size.div_ceil(block_size);
        assert_eq!(doc["kind"], "full");
        assert_eq!(doc["codec"], codec);
        assert_eq!(doc["identity"], b.identity.as_str(), "{out}");
        assert_eq!(doc["image_size"], size);
        assert_eq!(doc["block_size"], block_size);
        assert_eq!(doc["blocks"], blocks);
        assert_eq!(
            doc["zero_blocks"],
            zero_blocks(&b.vmdk.disk, block_size as usize)
        );
        let segment_blocks = doc["segment_blocks"].as_u64().unwrap();
        assert_eq!(doc["segments"], blocks.div_ceil(segment_blocks));
        let file_size = fs::metadata(d.join(out)).unwrap().len();
        assert_eq!(doc["file_size"], file_size);
        let data = doc["data_bytes"].as_u64().unwrap();
        let index = doc["index_bytes"].as_u64().unwrap();
        assert_eq!(data + index, file_size, "data and index make up the file");

        let m = &doc["meta"];
        assert_eq!(m["vm_name"], "billing-db");
        assert_eq!(m["vm_uuid"], VM_UUID);
        assert_eq!(m["scsi_id"], "0:1");
        assert_eq!(m["disk_name"], "billing_1.vmdk");
        assert_eq!(m["disk_size"], size);
        assert_eq!(m["adapter_type"], ADAPTER);
        assert_eq!(m["geometry"]["cylinders"], cylinders(b.sectors));
        assert_eq!(m["geometry"]["heads"], HEADS);
        assert_eq!(m["geometry"]["sectors"], TRACK_SECTORS);
        assert_eq!(m["hw_version"], HW_VERSION);
        assert_eq!(m["disk_uuid"], DISK_UUID);
        assert_eq!(m["vmx_bytes"], b.vmx_len);
        let created = m["created_unix"].as_i64().unwrap();
        assert!((b.window.0..=b.window.1).contains(&created), "{m}");
        assert_eq!(
            stamp_to_unix(m["created"].as_str().unwrap()),
            Some(created),
            "`created` is `created_unix` as a UTC stamp"
        );
        assert!(m["tool"].as_str().unwrap().starts_with("sdar "));
    }
}

/// A raw image with no options knows only its file name and size.
#[test]
fn raw_disk_without_options_has_no_vm_facts() {
    let dir = scratch();
    let disk = sample_disk(dir.path(), "disk.img", (1 << 20) + 7, 1);
    sdar(
        dir.path(),
        &["full", "disk.img", "-o", "disk.full.gz", "-q"],
    )
    .success();
    let m = info_json(dir.path(), "disk.full.gz")["meta"].clone();
    assert_eq!(m["disk_name"], "disk.img");
    assert_eq!(m["disk_size"], disk.len() as u64);
    for key in [
        "vm_name",
        "vm_uuid",
        "scsi_id",
        "adapter_type",
        "geometry",
        "hw_version",
        "disk_uuid",
        "vmx_bytes",
    ] {
        assert!(m[key].is_null(), "{key} should be null: {m}");
    }
    let text = sdar(dir.path(), &["info", "disk.full.gz"])
        .success()
        .stdout_text();
    for label in [
        "VM name", "VM UUID", "SCSI id", "Adapter", "Geometry", "VMX",
    ] {
        assert_eq!(field(&text, label), "-", "{label}:\n{text}");
    }
}

/// Names come from files other people wrote: text output must not let
/// them drive the terminal, and JSON must keep them exactly.
#[test]
fn control_characters_in_names_do_not_reach_the_terminal() {
    let dir = scratch();
    sample_disk(dir.path(), "disk.raw", 4096, 1);
    let evil = "evil\u{1b}[2J\u{7}vm";
    sdar(
        dir.path(),
        &[
            "full",
            "disk.raw",
            "-o",
            "e.full.gz",
            "--vm-name",
            evil,
            "-q",
        ],
    )
    .success();
    let out = sdar(dir.path(), &["info", "e.full.gz"]).success();
    assert!(
        !out.stdout.iter().any(|&b| b == 0x1b || b == 0x07),
        "control bytes reached stdout: {:?}",
        out.stdout_text()
    );
    assert_eq!(
        field(&out.stdout_text(), "VM name"),
        "evil\\e[2J\\u{0007}vm"
    );
    assert_eq!(info_json(dir.path(), "e.full.gz")["meta"]["vm_name"], evil);
}
