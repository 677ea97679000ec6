//! The command line, as clap types. Parsing errors exit with code 2.

use archive_format::{Codec, SourceFormat};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "sdar", version, about = "Self-restoring delta archives for VM disks", long_about = None)]
#[command(after_help = "Exit codes: 0 ok, 1 integrity failure, 2 usage, 3 other errors.")]
pub struct Cli {
    /// Without a command on a terminal: the console (`sdar menu`)
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a full image of a disk (raw image or VMDK descriptor)
    Full(FullArgs),
    /// Write a delta archive: the blocks that differ from a full, as a
    /// self-restoring executable
    Delta(DeltaArgs),
    /// Restore the disk a delta archive describes (as running the archive
    /// does), or a VM's backup chosen from the catalog (--vm NAME)
    Restore(crate::restore::RestoreCliArgs),
    /// Check every block of a full image, or of a delta archive and its full; writes nothing
    Verify(VerifyArgs),
    /// Show the metadata and layout of a full image or delta archive
    Info(InfoArgs),
    /// Write the delta that restores a full unchanged (the one `sdar full`
    /// writes beside it), from the full's index alone
    Companion(CompanionArgs),
    /// Write the .vmx file a delta archive carries
    ExtractVmx(RuntimeArgs),
    /// Write a full image of the disk a delta archive describes, from the
    /// delta and its full, without the disk (a synthetic full)
    Synth(SynthArgs),
    /// Serve the disk a backup holds over NBD at once, and restore it behind
    /// the running VM (live recovery); or, with --validate, serve it over a
    /// discarded overlay to prove it boots
    Live(LiveArgs),
    /// Record the backups under folders (targets) in the catalog, reading
    /// only their headers, metadata and footers
    Index(crate::index::IndexArgs),
    /// The VMs in the catalog and their backups by date
    List(crate::list::ListArgs),
    /// The console: find a backup by VM or disk name and date, restore it
    /// now or queue it; the queue and its logs
    Menu(crate::console::MenuArgs),
    /// The background restore queue
    Queue(crate::queue::QueueArgs),
    /// Run queued restores (N at a time) and registered replications
    Daemon(crate::daemon::DaemonArgs),
    /// Mass restore and simple replication from an esXpress vmdks.auto config
    Replicate(crate::replicate::ReplicateArgs),
    /// Run the whole story on a built-in sample disk, printing each command
    Demo(DemoArgs),
    /// Write a deterministic sample disk (for tests and benchmarks)
    #[command(hide = true)]
    SampleDisk(SampleArgs),
    /// Change a sample disk in place as a VM would (for tests and benchmarks)
    #[command(hide = true)]
    SampleChange(SampleChangeArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CodecArg {
    Gzip,
    Zstd,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Codec {
        match c {
            CodecArg::Gzip => Codec::Gzip,
            CodecArg::Zstd => Codec::Zstd,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SourceFormatArg {
    Auto,
    Raw,
}

impl From<SourceFormatArg> for SourceFormat {
    fn from(f: SourceFormatArg) -> SourceFormat {
        match f {
            SourceFormatArg::Auto => SourceFormat::Auto,
            SourceFormatArg::Raw => SourceFormat::Raw,
        }
    }
}

#[derive(Args, Debug)]
pub struct FullArgs {
    /// The disk: a raw image or block device, or a VMDK descriptor
    /// (monolithicFlat, twoGbMaxExtentFlat or vmfs)
    pub source: PathBuf,
    /// Where to write the full image [default: a name in the current folder
    /// made of the VM name, SCSI id, disk name and date]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "gzip")]
    pub codec: CodecArg,
    /// Compression level [default: 6 for gzip (1-12), 3 for zstd (1-19)]
    #[arg(long)]
    pub level: Option<i32>,
    /// Block size, a power of two from 4K to 1M
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    pub block_size: u64,
    /// How to read the source: `auto` reads a VMDK descriptor as one and
    /// refuses container formats (qcow2, VHD, ...); `raw` backs up the
    /// file's bytes as they are
    #[arg(long, value_enum, default_value = "auto")]
    pub source_format: SourceFormatArg,
    #[command(flatten)]
    pub meta: MetaArgs,
    /// Replace an existing output file
    #[arg(long)]
    pub force: bool,
    /// Add a MAC made with this key file, so that `verify --key` and
    /// `restore --key` can prove the backup came from a key holder
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DeltaArgs {
    /// The disk now: a raw image, or a VMDK descriptor
    pub source: PathBuf,
    /// The full image the delta is made against
    #[arg(long)]
    pub full: PathBuf,
    /// Where to write the archive [default: a name in the current folder]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Compression of changed blocks
    #[arg(long, value_enum, default_value = "zstd")]
    pub codec: CodecArg,
    #[arg(long)]
    pub level: Option<i32>,
    /// Read only the full's index, never its data: changed blocks are
    /// stored whole (for a full on slow or offline storage)
    #[arg(long)]
    pub index_only: bool,
    /// Add a MAC made with this key file (see `sdar full --key`)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// How to read the source (see `sdar full --source-format`)
    #[arg(long, value_enum, default_value = "auto")]
    pub source_format: SourceFormatArg,
    #[command(flatten)]
    pub meta: MetaArgs,
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// A delta archive and the runtime's own arguments, passed through.
#[derive(Args, Debug)]
pub struct RuntimeArgs {
    /// A delta archive (.sdar)
    pub archive: PathBuf,
    /// Arguments as the archive takes them (see `ARCHIVE --help`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct MetaArgs {
    /// VM name [default: displayName from --vmx]
    #[arg(long)]
    pub vm_name: Option<String>,
    /// VM UUID [default: uuid.bios from --vmx]
    #[arg(long)]
    pub vm_uuid: Option<String>,
    /// The disk's SCSI id, such as 0:0 [default: from --vmx]
    #[arg(long)]
    pub scsi_id: Option<String>,
    /// The VM's .vmx file, kept inside the backup
    #[arg(long)]
    pub vmx: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Worker threads [default: one per core; more than 4 per core, or
    /// than 256, are lowered to that]
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A full image or a delta archive
    pub file: PathBuf,
    /// For a delta archive: its full image [default: found by identity]
    #[arg(long)]
    pub full: Option<PathBuf>,
    /// For a delta archive: fail (exit 1) unless its restore program is
    /// byte-identical to this sdar's
    #[arg(long)]
    pub require_genuine: bool,
    /// Prove with this key file that the backup was made by a key holder;
    /// a backup without a valid MAC fails (exit 1)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A full image or a delta archive
    pub file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompanionArgs {
    /// The full image
    pub full: PathBuf,
    /// Where to write the delta [default: beside the full, NAME.sdar for
    /// NAME.full.gz]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Add a MAC made with this key file; the full must carry a valid MAC
    /// of the same key
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Replace an existing output file
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// A delta archive (.sdar)
    pub archive: PathBuf,
    /// The full image the delta was made against [default: found by
    /// identity beside the archive, then in each folder of SDAR_FULL_PATH]
    #[arg(long)]
    pub full: Option<PathBuf>,
    /// Where to write the full image [default: `sdar full`'s name from the
    /// delta's metadata, marked .synth: VM_scsi0-0_DISK_DATE.synth.full.gz]
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Codec of the new full [default: the old full's, whose members are
    /// then copied without compressing them again]
    #[arg(long, value_enum)]
    pub codec: Option<CodecArg>,
    /// Compression level of the blocks compressed anew (see `sdar full --level`)
    #[arg(long)]
    pub level: Option<i32>,
    /// Prove the delta with this key file first, and add a MAC made with it
    /// to the new full and its companion delta (see `sdar full --key`)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Replace an existing output file
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// A delta archive (.sdar; every full has one beside it)
    pub archive: PathBuf,
    /// Where the disk is restored: DEST.vmdk (descriptor) and
    /// DEST-flat.vmdk, or a raw image with --raw; written when every block
    /// is there. Until then the data is in .DEST-flat.vmdk.sdar-partial and
    /// the state in .DEST.sdar-live, beside it
    #[arg(long, required_unless_present = "validate")]
    pub to: Option<PathBuf>,
    /// The full image the delta was made against [default: found by
    /// identity beside the archive, then in each folder of SDAR_FULL_PATH]
    #[arg(long)]
    pub full: Option<PathBuf>,
    /// Where to serve: unix:PATH or tcp:ADDR:PORT (tcp:PORT listens on
    /// 127.0.0.1) [default: unix:/tmp/sdar-live-ID.sock, ID from the
    /// destination]
    #[arg(long, value_name = "unix:PATH|tcp:ADDR:PORT")]
    pub listen: Option<String>,
    /// Restore a raw image instead of a VMDK
    #[arg(long, conflicts_with = "validate")]
    pub raw: bool,
    /// Exit (0) once every block is restored and no client is connected
    #[arg(long, conflicts_with = "validate")]
    pub exit_when_complete: bool,
    /// Limit the background restore to this many bytes a second (K, M and G
    /// suffixes: 50M)
    #[arg(long, value_parser = parse_size, conflicts_with = "validate")]
    pub rate: Option<u64>,
    /// Replace existing files at the destination (never a backup), and
    /// start over from a live state that is not this backup's
    #[arg(long, conflicts_with = "validate")]
    pub force: bool,
    /// Serve the backup with nothing written to any disk: the guest's
    /// writes go to a temporary overlay, discarded at the end
    #[arg(long)]
    pub validate: bool,
    /// The most the validate overlay holds [default: the larger of 20 GiB
    /// and 15% of the disk; never leaving less than 5% free]
    #[arg(long, value_parser = parse_size, requires = "validate")]
    pub overlay_max: Option<u64>,
    /// Folder for the validate overlay (an unnamed file) [default: TMPDIR or /var/tmp]
    #[arg(long, requires = "validate")]
    pub overlay_dir: Option<PathBuf>,
    /// Prove the archive with this key file first (see `sdar full --key`)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder to work in [default: a new temporary folder, removed at the end]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Size of the sample disk
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub size: u64,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    pub output: PathBuf,
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SampleChangeArgs {
    pub file: PathBuf,
    /// Share of 64 KiB blocks to change
    #[arg(long, default_value_t = 3.0)]
    pub percent: f64,
    #[arg(long, default_value_t = 2)]
    pub seed: u64,
}

/// Parses `65536`, `64K`, `64KiB`, `1M`, `4G`, `2T` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 65536, 64K or 4G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("`{s}`: unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
