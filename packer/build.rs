//! Builds the restore runtime (`stub-runtime`) as a static executable and
//! hands its path to the `sdar` source, which embeds it: `cargo install
//! --path packer` gives one `sdar` that can write archives by itself.
//!
//! The runtime is built by a nested cargo into its own target folder, in the
//! `stub` profile (LTO, stripped, panic=abort, small code but fast codecs),
//! for the host's musl target when its std and a musl C compiler are
//! installed (about 1.0 MB), else for the host target with glibc and
//! `+crt-static` (about 1.9 MB, with a warning). `+crt-static` is given for
//! the runtime's target only, so build scripts and proc macros stay dynamic.
//! `SDAR_STUB_TARGET` picks the runtime's target by hand.

use std::env;
use std::ffi::OsString;
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
    println!("cargo:rerun-if-env-changed=SDAR_STUB_TARGET");

    // A prebuilt runtime may be given, for example by a packager.
    if let Some(prebuilt) = env::var_os("SDAR_STUB") {
        println!(
            "cargo:rustc-env=SDAR_STUB_PATH={}",
            PathBuf::from(prebuilt).display()
        );
        return;
    }

    let (stub_target, c_env) = runtime_target(&target);
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
            &stub_target,
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
    cmd.envs(c_env);
    let status = cmd
        .status()
        .expect("cannot run cargo to build the restore runtime");
    assert!(
        status.success(),
        "building the restore runtime (stub-runtime) failed"
    );
    let stub = target_dir.join(&stub_target).join("stub").join("sdar-stub");
    assert!(
        stub.is_file(),
        "restore runtime not found at {}",
        stub.display()
    );
    println!("cargo:rustc-env=SDAR_STUB_PATH={}", stub.display());
}

/// The target to build the runtime for, and what its C code (libdeflate,
/// zstd) needs in the environment to build for it.
fn runtime_target(target: &str) -> (String, Vec<(String, OsString)>) {
    if let Ok(chosen) = env::var("SDAR_STUB_TARGET") {
        let c_env = musl_c_flags(&chosen).into_iter().collect();
        return (chosen, c_env);
    }
    let Some(arch) = target.strip_suffix("-unknown-linux-gnu") else {
        return (target.to_string(), Vec::new());
    };
    let musl = format!("{arch}-unknown-linux-musl");
    let cc_var = format!("CC_{}", musl.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cc_var}");
    let fallback = |why: &str| {
        println!(
            "cargo:warning=the restore runtime is built with glibc (about 1.9 MB instead of 1.0 MB): {why}"
        );
        (target.to_string(), Vec::new())
    };
    if !musl_std_installed(&musl) {
        return fallback(&format!(
            "the Rust std for {musl} is not installed (rustup target add {musl})"
        ));
    }
    let mut c_env: Vec<_> = musl_c_flags(&musl).into_iter().collect();
    if env::var_os(&cc_var).is_none() {
        // Debian's musl-tools installs both names; musl-gcc only builds for
        // the machine it runs on.
        let native = env::var("HOST").is_ok_and(|host| host == target);
        let names = [format!("{arch}-linux-musl-gcc"), "musl-gcc".to_string()];
        let found = names
            .iter()
            .take(if native { 2 } else { 1 })
            .find_map(|name| find_in_path(name));
        let Some(cc) = found else {
            return fallback(&format!(
                "no C compiler for {musl} ({} not found: apt-get install musl-tools, or set {cc_var})",
                names[0]
            ));
        };
        c_env.push((cc_var, cc.into_os_string()));
    }
    (musl, c_env)
}

/// zstd's decoder is compiled once, without the second copy of its hot
/// loops for CPUs with BMI2: 41 KB less, about 9% more CPU time in a zstd
/// restore (measured on 1 GiB; gzip restores are not affected).
fn musl_c_flags(musl: &str) -> Option<(String, OsString)> {
    if !musl.ends_with("-musl") {
        return None;
    }
    let var = format!("CFLAGS_{}", musl.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={var}");
    println!("cargo:rerun-if-env-changed=CFLAGS");
    // cc reads the first of CFLAGS_<target> and CFLAGS: keep what was set.
    let mut flags = OsString::from("-DDYNAMIC_BMI2=0");
    if let Some(user) = env::var_os(&var).or_else(|| env::var_os("CFLAGS")) {
        flags.push(" ");
        flags.push(user);
    }
    Some((var, flags))
}

fn musl_std_installed(musl: &str) -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success()
        && PathBuf::from(sysroot)
            .join("lib/rustlib")
            .join(musl)
            .join("lib")
            .is_dir()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
