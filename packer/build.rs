//! Builds the restore runtime (`stub-runtime`) as a static executable and
//! hands its path to the `sdar` source, which embeds it: `cargo install
//! --path packer` gives one `sdar` that can write archives by itself.
//!
//! The runtime is built by a nested cargo into its own target folder, in the
//! `stub` profile (LTO, stripped, panic=abort, small code but fast codecs).
//! The first of these that the machine can build is taken:
//!
//! 1. musl, with std rebuilt from source by the nightly toolchain without its
//!    panic backtrace printer (`-Zbuild-std`): about 0.72 MB. Needs `rustup
//!    toolchain install nightly --component rust-src --target
//!    x86_64-unknown-linux-musl` and a musl C compiler (musl-tools).
//! 2. musl, with the stable toolchain's std: about 1.0 MB.
//! 3. the host target with glibc and `+crt-static`: about 1.8 MB.
//!
//! Each step down prints a warning naming what is missing; a nightly build
//! that fails falls back to the stable one. `+crt-static` is given for the
//! runtime's target only, so build scripts and proc macros stay dynamic.
//! `SDAR_STUB` embeds a prebuilt runtime, `SDAR_STUB_TARGET` picks the
//! target by hand (stable toolchain), and `SDAR_STUB_BUILD_STD=0` skips the
//! nightly build.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// For the runtime's target only: a static executable, and no unwind tables
/// (with `panic = "abort"` nothing unwinds; 62 KB of `.eh_frame`).
const RUSTFLAGS: [&str; 2] = ["-Ctarget-feature=+crt-static", "-Cforce-unwind-tables=no"];

/// The nightly build's extra arguments: std and panic_abort from source,
/// with none of std's default features (the backtrace printer is one).
const BUILD_STD: [&str; 2] = ["-Zbuild-std=std,panic_abort", "-Zbuild-std-features="];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("packer sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target = env::var("TARGET").expect("set by cargo");
    for dir in ["stub-runtime/src", "archive-format/src"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for file in [
        "stub-runtime/Cargo.toml",
        "archive-format/Cargo.toml",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    for var in ["SDAR_STUB", "SDAR_STUB_TARGET", "SDAR_STUB_BUILD_STD"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    // A prebuilt runtime may be given, for example by a packager.
    if let Some(prebuilt) = env::var_os("SDAR_STUB") {
        println!(
            "cargo:rustc-env=SDAR_STUB_PATH={}",
            PathBuf::from(prebuilt).display()
        );
        return;
    }

    let builds = candidates(&target);
    let last = builds.len() - 1;
    for (i, build) in builds.iter().enumerate() {
        match build.run(&workspace, &out_dir.join("stub-target")) {
            Ok(stub) => {
                println!("cargo:rustc-env=SDAR_STUB_PATH={}", stub.display());
                return;
            }
            Err(why) if i < last => {
                println!("cargo:warning=the restore runtime: {why}; trying the next way")
            }
            Err(why) => panic!("building the restore runtime (stub-runtime) failed: {why}"),
        }
    }
}

/// One way to build the runtime.
struct Build {
    /// `Some(rustup)`: run the nightly toolchain's cargo through this
    /// rustup and rebuild std from source; `None`: the cargo that runs this
    /// script, with its toolchain's prebuilt std.
    nightly: Option<PathBuf>,
    target: String,
    /// What the C code (libdeflate, zstd) needs to build for `target`.
    c_env: Vec<(String, OsString)>,
}

impl Build {
    fn run(&self, workspace: &Path, target_root: &Path) -> Result<PathBuf, String> {
        let mut cmd = match &self.nightly {
            Some(rustup) => {
                let mut cmd = Command::new(rustup);
                cmd.args(["run", "nightly", "cargo"]);
                // The outer build's compiler and toolchain choice must not
                // reach the nightly cargo.
                for var in ["RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN"] {
                    cmd.env_remove(var);
                }
                cmd
            }
            None => {
                let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                Command::new(cargo)
            }
        };
        let target_dir = target_root.join(self.toolchain());
        cmd.current_dir(workspace)
            .args(["build", "--profile", "stub"])
            .args(self.std_args())
            .args(["-p", "sdar-stub", "--bin", "sdar-stub", "--target"])
            .arg(&self.target)
            .arg("--target-dir")
            .arg(&target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"));
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
        cmd.envs(self.c_env.iter().map(|(k, v)| (k, v)));
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
        if !status.success() {
            return Err(format!(
                "{} build for {} failed ({status})",
                if self.nightly.is_some() {
                    "the nightly"
                } else {
                    "the"
                },
                self.target
            ));
        }
        let stub = target_dir.join(&self.target).join("stub").join("sdar-stub");
        if !stub.is_file() {
            return Err(format!("not found at {}", stub.display()));
        }
        let recipe = target_dir.join("sdar-stub.env");
        std::fs::write(&recipe, self.recipe())
            .map_err(|e| format!("cannot write {}: {e}", recipe.display()))?;
        Ok(stub)
    }

    /// Names the build's own target folder, and the toolchain in its recipe.
    fn toolchain(&self) -> &'static str {
        if self.nightly.is_some() {
            "nightly"
        } else {
            "stable"
        }
    }

    /// The nightly build's arguments that rebuild std; none for stable.
    fn std_args(&self) -> &'static [&'static str] {
        if self.nightly.is_some() {
            &BUILD_STD
        } else {
            &[]
        }
    }

    /// How this build ran, as shell lines: `bench/runtime-size.sh` sources
    /// them to rebuild the same runtime with symbols for cargo-bloat.
    fn recipe(&self) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut lines = vec![
            "# Written by packer/build.rs: how the runtime beside it was built.".to_string(),
            format!("stub_toolchain={}", self.toolchain()),
            format!("stub_target={}", quote(&self.target)),
        ];
        let args: Vec<String> = self.std_args().iter().map(|a| quote(a)).collect();
        lines.push(format!("stub_cargo_args=({})", args.join(" ")));
        lines.push(format!(
            "export CARGO_ENCODED_RUSTFLAGS={}",
            quote(&RUSTFLAGS.join("\x1f"))
        ));
        for (key, value) in &self.c_env {
            lines.push(format!("export {key}={}", quote(&value.to_string_lossy())));
        }
        lines.join("\n") + "\n"
    }
}

/// The ways to build the runtime on this machine, best first; the last one
/// is always the host target. Warns when the best way is not available, and
/// why.
fn candidates(target: &str) -> Vec<Build> {
    let host = Build {
        nightly: None,
        target: target.to_string(),
        c_env: Vec::new(),
    };
    if let Ok(chosen) = env::var("SDAR_STUB_TARGET") {
        let c_env = musl_c_flags(&chosen).into_iter().collect();
        return vec![Build {
            nightly: None,
            target: chosen,
            c_env,
        }];
    }
    let Some(arch) = target.strip_suffix("-unknown-linux-gnu") else {
        return vec![host];
    };
    let musl = format!("{arch}-unknown-linux-musl");
    let warn = |size: &str, why: &str| {
        println!("cargo:warning=the restore runtime is {size} instead of about 0.72 MB: {why}")
    };
    let Some(c_env) = musl_c_env(arch, target, &musl) else {
        warn(
            "built with glibc (about 1.8 MB)",
            &format!("no C compiler for {musl} (apt-get install musl-tools)"),
        );
        return vec![host];
    };
    let stable_rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let stable = target_std_installed(Command::new(stable_rustc), &musl).then(|| Build {
        nightly: None,
        target: musl.clone(),
        c_env: c_env.clone(),
    });
    let mut builds = Vec::new();
    match (nightly_build_std(&musl), stable) {
        (Ok(rustup), stable) => {
            builds.push(Build {
                nightly: Some(rustup),
                target: musl,
                c_env,
            });
            builds.extend(stable);
        }
        (Err(why), Some(stable)) => {
            warn("built with the stable std (about 1.0 MB)", &why);
            builds.push(stable);
        }
        (Err(why), None) => warn(
            "built with glibc (about 1.8 MB)",
            &format!("{why}, and the stable Rust std for {musl} is not installed (rustup target add {musl})"),
        ),
    }
    builds.push(host);
    builds
}

/// rustup, when the nightly toolchain can rebuild std for `musl`.
fn nightly_build_std(musl: &str) -> Result<PathBuf, String> {
    if env::var_os("SDAR_STUB_BUILD_STD").is_some_and(|v| v == "0") {
        return Err("SDAR_STUB_BUILD_STD=0".to_string());
    }
    let hint = format!("rustup toolchain install nightly --component rust-src --target {musl}");
    let rustup = find_in_path("rustup")
        .or_else(|| {
            let home = env::var_os("CARGO_HOME")?;
            let path = PathBuf::from(home).join("bin/rustup");
            path.is_file().then_some(path)
        })
        .ok_or_else(|| format!("rustup not found ({hint})"))?;
    let mut rustc = Command::new(&rustup);
    rustc
        .args(["run", "nightly", "rustc"])
        .env_remove("RUSTUP_TOOLCHAIN");
    let sysroot = sysroot(rustc).ok_or_else(|| format!("no nightly toolchain ({hint})"))?;
    let lib = sysroot.join("lib/rustlib");
    if !lib.join("src/rust/library/std").is_dir() {
        return Err(format!("the nightly toolchain has no rust-src ({hint})"));
    }
    // std is built from source, but musl's C runtime objects come with the
    // target's prebuilt std.
    if !lib.join(musl).join("lib").is_dir() {
        return Err(format!(
            "the nightly toolchain has no {musl} target ({hint})"
        ));
    }
    Ok(rustup)
}

/// The C compiler and flags for `musl`, or `None` if there is no compiler.
fn musl_c_env(arch: &str, target: &str, musl: &str) -> Option<Vec<(String, OsString)>> {
    let cc_var = format!("CC_{}", musl.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cc_var}");
    let mut c_env: Vec<_> = musl_c_flags(musl).into_iter().collect();
    if env::var_os(&cc_var).is_none() {
        // Debian's musl-tools installs both names; musl-gcc only builds for
        // the machine it runs on.
        let native = env::var("HOST").is_ok_and(|host| host == target);
        let names = [format!("{arch}-linux-musl-gcc"), "musl-gcc".to_string()];
        let cc = names
            .iter()
            .take(if native { 2 } else { 1 })
            .find_map(|name| find_in_path(name))?;
        c_env.push((cc_var, cc.into_os_string()));
    }
    Some(c_env)
}

/// zstd's decoder is compiled once, without the second copy of its hot
/// loops for CPUs with BMI2: 41 KB less, about 9% more CPU time in a zstd
/// restore (measured on 1 GiB; gzip restores are not affected). The C code
/// has no unwind tables either, as the Rust code (`RUSTFLAGS`).
fn musl_c_flags(musl: &str) -> Option<(String, OsString)> {
    if !musl.ends_with("-musl") {
        return None;
    }
    let var = format!("CFLAGS_{}", musl.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={var}");
    println!("cargo:rerun-if-env-changed=CFLAGS");
    // cc reads the first of CFLAGS_<target> and CFLAGS: keep what was set.
    let mut flags =
        OsString::from("-DDYNAMIC_BMI2=0 -fno-asynchronous-unwind-tables -fno-unwind-tables");
    if let Some(user) = env::var_os(&var).or_else(|| env::var_os("CFLAGS")) {
        flags.push(" ");
        flags.push(user);
    }
    Some((var, flags))
}

fn sysroot(mut rustc: Command) -> Option<PathBuf> {
    let out = rustc.args(["--print", "sysroot"]).output().ok()?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !sysroot.is_empty()).then(|| PathBuf::from(sysroot))
}

fn target_std_installed(rustc: Command, target: &str) -> bool {
    sysroot(rustc).is_some_and(|root| root.join("lib/rustlib").join(target).join("lib").is_dir())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
