//! Hand-written argument parsing for the runtime.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Where the full image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullSource {
    /// Beside the archive, then `SDAR_FULL_PATH`.
    Search,
    Path(PathBuf),
    /// Streamed on standard input.
    Stdin,
}

/// How a running command reports progress on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live line on a terminal, nothing otherwise.
    Auto,
    /// One JSON object per line, for scripts and queues.
    Json,
    None,
}

/// What `restore` writes, beyond the disk itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreArgs {
    pub to: PathBuf,
    pub full: FullSource,
    pub force: bool,
    pub raw: bool,
    pub vmfs: bool,
    pub thin: bool,
    pub resume: bool,
    pub space_check: bool,
    /// Write the VM's .vmx into this folder.
    pub vmx_dir: Option<PathBuf>,
    /// Point the .vmx's disk entry at the restored descriptor.
    pub rename_disk: bool,
    /// Print a JSON summary on standard output at the end.
    pub json: bool,
    /// Prove the archive's MAC with this key file first.
    pub key: Option<PathBuf>,
}

impl RestoreArgs {
    /// The arguments [`parse`] reads back as these (after `restore`): for
    /// a restore run later from its words (the restore queue).
    pub fn to_args(&self) -> Vec<OsString> {
        let RestoreArgs {
            to,
            full,
            force,
            raw,
            vmfs,
            thin,
            resume,
            space_check,
            vmx_dir,
            rename_disk,
            json,
            key,
        } = self;
        let mut out: Vec<OsString> = vec!["--to".into(), to.into()];
        match full {
            FullSource::Search => {}
            FullSource::Path(p) => out.extend(["--full".into(), p.into()]),
            FullSource::Stdin => out.extend(["--full".into(), "-".into()]),
        }
        for (flag, path) in [("--vmx", vmx_dir), ("--key", key)] {
            if let Some(p) = path {
                out.extend([flag.into(), p.into()]);
            }
        }
        for (on, flag) in [
            (*force, "--force"),
            (*raw, "--raw"),
            (*vmfs, "--vmfs"),
            (*thin, "--thin"),
            (*resume, "--resume"),
            (!*space_check, "--no-space-check"),
            (*rename_disk, "--rename-disk"),
            (*json, "--json"),
        ] {
            if on {
                out.push(flag.into());
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    /// No arguments on a terminal.
    Menu,
    Restore(RestoreArgs),
    Verify {
        full: FullSource,
        json: bool,
        key: Option<PathBuf>,
    },
    Info {
        json: bool,
    },
    ExtractVmx {
        output: Option<PathBuf>,
    },
}

impl Invocation {
    /// Human-readable lines on standard error: not with -q, and not when
    /// standard error carries JSON progress.
    pub fn chatty(&self) -> bool {
        !self.quiet && self.progress != ProgressMode::Json
    }
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The archive: `--archive PATH`, else this program's own file.
    pub archive: Option<PathBuf>,
    pub program: PathBuf,
    pub command: Command,
    pub threads: usize,
    pub progress: ProgressMode,
    /// Print nothing but errors (and what --json asks for).
    pub quiet: bool,
}

pub fn usage(program: &OsStr) -> String {
    let p = PathBuf::from(program);
    let p = p.display();
    format!(
        "A self-restoring sdar delta archive. Run it with no arguments on a terminal\n\
for a menu.\n\n\
Usage:\n  {p} restore --to DEST.vmdk [--full FULL|-] [options]\n  {p} verify [--full FULL|-] [--key FILE] [--json]\n  {p} info [--json]\n  {p} extract-vmx [-o FILE]\n\n\
The full image is found by its identity: --full PATH (or - for standard\n\
input), else in the archive's folder, else in each folder of SDAR_FULL_PATH.\n\
DEST may be a file, a folder (the disk keeps its own name in it), a link\n\
(followed), or with --raw a block device (written in place; needs --force).\n\n\
Restore options:\n  --resume          continue an interrupted restore to DEST: blocks already\n                    written are read back and checked, the rest restored\n  --force           replace existing files at DEST (never a backup), or start\n                    an interrupted restore over\n  --thin            sparse data file: zero blocks are holes, nothing preallocated\n                    (on a device: it reads zeros already, zero blocks are skipped)\n  --raw             write a raw image at DEST instead of a VMDK\n  --vmfs            write a VMFS descriptor (createType \"vmfs\")\n  --vmx DIR         also write the VM's .vmx file into DIR\n  --rename-disk     point the .vmx's disk entry at DEST\n  --no-space-check  do not check free space first\n  --key FILE        first prove the archive's MAC with this key file\n  --json            print a JSON summary on standard output at the end\n\n\
Options:\n  --archive PATH    the archive to read (default: this program's own file)\n  --threads N       worker threads (default: one per core)\n  --progress MODE   auto (a live line on a terminal), json (one object per\n                    line on standard error) or none\n  -q, --quiet       print nothing but errors\n  -h, --help        this text\n\n\
Exit codes: 0 ok, 1 integrity failure, 2 usage, 3 other errors.\n"
    )
}

pub fn parse(argv: &[OsString]) -> Result<Invocation, String> {
    let program = argv.first().map(PathBuf::from).unwrap_or_default();
    let mut it = argv.iter().skip(1);
    let mut archive = None;
    let mut threads = 0usize;
    let mut progress = ProgressMode::Auto;
    let mut quiet = false;
    let mut words: Vec<&OsString> = Vec::new();
    let mut to = None;
    let mut full = FullSource::Search;
    let (mut force, mut raw, mut vmfs, mut json) = (false, false, false, false);
    let (mut thin, mut resume, mut space_check, mut rename_disk) = (false, false, true, false);
    let mut vmx_dir = None;
    let mut key = None;
    let mut output = None;
    let value = |it: &mut dyn Iterator<Item = &OsString>, flag: &str| -> Result<OsString, String> {
        match it.next() {
            None => Err(format!("{flag} needs a value")),
            // An empty name is no file: refused here, not found missing later.
            Some(v) if v.is_empty() => Err(format!("{flag} needs a value, not an empty string")),
            Some(v) => Ok(v.clone()),
        }
    };
    let progress_mode = |v: &str| match v {
        "auto" | "line" => Ok(ProgressMode::Auto),
        "json" => Ok(ProgressMode::Json),
        "none" => Ok(ProgressMode::None),
        _ => Err(format!("--progress takes auto, json or none, not {v}")),
    };
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-h" | "--help" | "help") => {
                return Ok(Invocation {
                    archive,
                    program,
                    command: Command::Help,
                    threads,
                    progress,
                    quiet,
                })
            }
            Some("--archive") => archive = Some(PathBuf::from(value(&mut it, "--archive")?)),
            Some("--threads") => {
                threads = value(&mut it, "--threads")?
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--threads needs a number")?
            }
            Some("-q" | "--quiet") => quiet = true,
            Some("--progress") => {
                progress = progress_mode(&value(&mut it, "--progress")?.to_string_lossy())?
            }
            Some(s) if s.starts_with("--progress=") => progress = progress_mode(&s[11..])?,
            Some("--to") => to = Some(PathBuf::from(value(&mut it, "--to")?)),
            Some("--full") => {
                let v = value(&mut it, "--full")?;
                full = if v == "-" {
                    FullSource::Stdin
                } else {
                    FullSource::Path(v.into())
                };
            }
            Some("--force") => force = true,
            Some("--raw") => raw = true,
            Some("--vmfs") => vmfs = true,
            Some("--thin") => thin = true,
            Some("--resume") => resume = true,
            Some("--no-space-check") => space_check = false,
            Some("--vmx") => vmx_dir = Some(PathBuf::from(value(&mut it, "--vmx")?)),
            Some("--rename-disk") => rename_disk = true,
            Some("--key") => key = Some(PathBuf::from(value(&mut it, "--key")?)),
            Some("--json") => json = true,
            Some("-o" | "--output") => output = Some(PathBuf::from(value(&mut it, "-o")?)),
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => words.push(arg),
        }
    }
    let command = match words.as_slice() {
        [] => Command::Menu,
        [w] => match w.to_str() {
            Some("restore") => {
                if rename_disk && vmx_dir.is_none() {
                    return Err("--rename-disk needs --vmx DIR".into());
                }
                if rename_disk && raw {
                    return Err("--rename-disk needs a VMDK destination, not --raw".into());
                }
                Command::Restore(RestoreArgs {
                    to: to.ok_or("restore needs --to DEST")?,
                    full,
                    force,
                    raw,
                    vmfs,
                    thin,
                    resume,
                    space_check,
                    vmx_dir,
                    rename_disk,
                    json,
                    key,
                })
            }
            Some("verify") => Command::Verify { full, json, key },
            Some("info") => Command::Info { json },
            Some("extract-vmx") => Command::ExtractVmx { output },
            _ => return Err(format!("unknown command {}", w.to_string_lossy())),
        },
        [_, extra, ..] => return Err(format!("unexpected argument {}", extra.to_string_lossy())),
    };
    Ok(Invocation {
        archive,
        program,
        command,
        threads,
        progress: if quiet { ProgressMode::None } else { progress },
        quiet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `to_args` is the inverse of `parse`: every field survives the trip.
    #[test]
    fn restore_args_read_back_as_they_were() {
        let plain = RestoreArgs {
            to: "/r/d.vmdk".into(),
            full: FullSource::Search,
            force: false,
            raw: false,
            vmfs: false,
            thin: false,
            resume: false,
            space_check: true,
            vmx_dir: None,
            rename_disk: false,
            json: false,
            key: None,
        };
        let all = RestoreArgs {
            to: "/r/d.img".into(),
            full: FullSource::Path("/b/x.full.gz".into()),
            force: true,
            raw: false,
            vmfs: true,
            thin: true,
            resume: true,
            space_check: false,
            vmx_dir: Some("/r".into()),
            rename_disk: true,
            json: true,
            key: Some("/k".into()),
        };
        let raw = RestoreArgs {
            raw: true,
            full: FullSource::Stdin,
            ..plain.clone()
        };
        for args in [plain, all, raw] {
            let mut argv: Vec<OsString> = vec!["x".into(), "restore".into()];
            argv.extend(args.to_args());
            let inv = parse(&argv).unwrap();
            assert_eq!(inv.command, Command::Restore(args));
        }
    }
}
