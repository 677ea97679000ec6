//! `sdar demo`: the whole story runs (full, stock tools, change, delta,
//! restore by running the archive, compare), and every check really runs
//! (the demo skips a check whose tool is missing; this test does not).

mod common;

use common::*;

#[test]
fn demo_runs_every_step_and_both_restores_are_identical() {
    for tool in ["sh", "cmp", "zcat", "zstd", "qemu-img"] {
        require_tool(tool);
    }
    let dir = scratch();
    let out = sdar(dir.path(), &["demo", "--size", "8M"]).success();
    let text = out.stdout_text();
    assert_eq!(
        text.lines().filter(|l| l.trim() == "identical").count(),
        3,
        "the zcat, zstd and restored-disk checks should print `identical`:\n{text}"
    );
    assert!(
        text.contains("Images are identical."),
        "qemu-img compare: {text}"
    );
    assert!(!text.contains("skipped"), "{text}");
    for step in [
        "$ sdar full",
        "$ sdar verify",
        "$ sdar delta",
        "$ ./demo-1.sdar info",
        "$ ./demo-1.sdar restore --to restored/demo.vmdk",
        "OK demo.full.gz",
    ] {
        assert!(text.contains(step), "missing `{step}` in:\n{text}");
    }
    assert_eq!(
        listing(dir.path()),
        Vec::<String>::new(),
        "the demo works in its own temporary folder"
    );
}

#[test]
fn demo_in_a_given_folder_leaves_its_files_there() {
    require_tool("zcat");
    require_tool("zstd");
    let dir = scratch();
    sdar(dir.path(), &["demo", "--size", "2M", "--dir", "work"]).success();
    let work = dir.path().join("work");
    sdar(&work, &["verify", "demo.full.gz"]).success();
    sdar(&work, &["verify", "demo-zstd.full.zst"]).success();
    sdar(&work, &["verify", "demo-1.sdar"]).success();
    let flat = std::fs::read(work.join("demo-flat.vmdk")).unwrap();
    assert_eq!(flat.len(), 2 << 20);
    let restored = std::fs::read(work.join("restored/demo-flat.vmdk")).unwrap();
    assert_same_bytes(&restored, &flat, "the disk restored by demo-1.sdar");
}
