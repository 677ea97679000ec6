//! Builds the restore runtime (`stub-runtime`) as a static executable and
//! hands its path to the `sdar` source, which embeds it: `cargo install
//! --path packer` gives one `sdar` that can write archives by itself.
//!
//! The runtime is built by a nested cargo into its own target folder, with
//! `+crt-static` for the host target only (so build scripts and proc macros
//! stay dynamic), in the `stub` profile (LTO, stripped, panic=abort).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("packer sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target = env::var("TARGET").expect("set by cargo");
    let target_dir = out_dir.join("stub-target");
    for dir in ["stub-runtime/src", "archive-format/src"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("stub-runtime/Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("archive-format/Cargo.toml").display()
    );
    println!("cargo:rerun-if-env-changed=SDAR_STUB");

    // A prebuilt runtime may be given, for example by a packager.
    if let Some(prebuilt) = env::var_os("SDAR_STUB") {
        println!(
            "cargo:rustc-env=SDAR_STUB_PATH={}",
            PathBuf::from(prebuilt).display()
        );
        return;
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--profile",
            "stub",
            "-p",
            "sdar-stub",
            "--bin",
            "sdar-stub",
            "--target",
            &target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    // What the outer build set for itself must not leak into the nested one.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the restore runtime");
    assert!(
        status.success(),
        "building the restore runtime (stub-runtime) failed"
    );
    let stub = target_dir.join(&target).join("stub").join("sdar-stub");
    assert!(
        stub.is_file(),
        "restore runtime not found at {}",
        stub.display()
    );
    println!("cargo:rustc-env=SDAR_STUB_PATH={}", stub.display());
}
