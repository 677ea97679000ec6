//! `sdar demo`: the whole story runs, and both stock-tool checks really run
//! (the demo skips a check whose tool is missing; this test does not).

mod common;

use common::*;

#[test]
fn demo_runs_every_step_and_both_restores_are_identical() {
    for tool in ["sh", "cmp", "zcat", "zstd"] {
        require_tool(tool);
    }
    let dir = scratch();
    let out = sdar(dir.path(), &["demo", "--size", "8M"]).success();
    let text = out.stdout_text();
    assert_eq!(
        text.lines().filter(|l| l.trim() == "identical").count(),
        2,
        "both the zcat and the zstd check should print `identical`:\n{text}"
    );
    assert!(!text.contains("skipped"), "{text}");
    for step in [
        "$ sdar full",
        "$ sdar verify",
        "$ sdar info",
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
    sdar(&work, &["verify", "demo.full.zst"]).success();
    let flat = std::fs::read(work.join("demo-flat.vmdk")).unwrap();
    assert_eq!(flat.len(), 2 << 20);
    let restored = stock(&work, "zcat", &["demo.full.gz"]).success();
    assert_same_bytes(&restored.stdout, &flat, "zcat demo.full.gz");
}
