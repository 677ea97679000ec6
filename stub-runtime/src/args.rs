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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Restore {
        to: PathBuf,
        full: FullSource,
        force: bool,
        raw: bool,
        vmfs: bool,
    },
    Verify {
        full: FullSource,
    },
    Info {
        json: bool,
    },
    ExtractVmx {
        output: Option<PathBuf>,
    },
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The archive: `--archive PATH`, else this program's own file.
    pub archive: Option<PathBuf>,
    pub program: PathBuf,
    pub command: Command,
    pub threads: usize,
    pub quiet: bool,
}

pub fn usage(program: &OsStr) -> String {
    let p = PathBuf::from(program);
    let p = p.display();
    format!(
        "A self-restoring sdar delta archive.\n\n\
Usage:\n  {p} restore --to DEST.vmdk [--full FULL|-] [--force] [--raw] [--vmfs]\n  {p} verify [--full FULL|-]\n  {p} info [--json]\n  {p} extract-vmx [-o FILE]\n\n\
The full image is found by its identity: --full PATH (or - for standard\n\
input), else in the archive's folder, else in each folder of SDAR_FULL_PATH.\n\n\
Options:\n  --archive PATH  the archive to read (default: this program's own file)\n  --threads N     worker threads (default: one per core)\n  -q, --quiet     print nothing but errors\n  -h, --help      this text\n\n\
Exit codes: 0 ok, 1 integrity failure, 2 usage, 3 other errors.\n"
    )
}

pub fn parse(argv: &[OsString]) -> Result<Invocation, String> {
    let mut it = argv.iter().skip(1);
    let mut archive = None;
    let mut threads = 0usize;
    let mut quiet = false;
    let mut words: Vec<&OsString> = Vec::new();
    let mut to = None;
    let mut full = FullSource::Search;
    let (mut force, mut raw, mut vmfs, mut json) = (false, false, false, false);
    let mut output = None;
    let value = |it: &mut dyn Iterator<Item = &OsString>, flag: &str| -> Result<OsString, String> {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-h" | "--help" | "help") => {
                return Ok(Invocation {
                    archive,
                    program: argv.first().map(PathBuf::from).unwrap_or_default(),
                    command: Command::Help,
                    threads,
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
            Some("--json") => json = true,
            Some("-o" | "--output") => output = Some(PathBuf::from(value(&mut it, "-o")?)),
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => words.push(arg),
        }
    }
    let command = match words.as_slice() {
        [] => return Err("no command given".into()),
        [w] => match w.to_str() {
            Some("restore") => Command::Restore {
                to: to.ok_or("restore needs --to DEST")?,
                full,
                force,
                raw,
                vmfs,
            },
            Some("verify") => Command::Verify { full },
            Some("info") => Command::Info { json },
            Some("extract-vmx") => Command::ExtractVmx { output },
            _ => return Err(format!("unknown command {}", w.to_string_lossy())),
        },
        [_, extra, ..] => return Err(format!("unexpected argument {}", extra.to_string_lossy())),
    };
    Ok(Invocation {
        archive,
        program: argv.first().map(PathBuf::from).unwrap_or_default(),
        command,
        threads,
        quiet,
    })
}
