//! `sdar full`: a disk in, a full image out.

use crate::cli::{FullArgs, MetaArgs};
use crate::output::{print, refuse_inputs, same_file, PendingOutput};
use crate::progress;
use anyhow::{bail, Context, Result};
use archive_format::input::read_small;
use archive_format::vmx::vmx_facts_at;
use archive_format::{
    hex, write_full, Codec, DiskSource, FullOptions, FullWriter, Limits, Metadata,
};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn run(args: FullArgs) -> Result<()> {
    let mut source = DiskSource::open_as(&args.source, args.source_format.into())?;
    let meta = metadata(&args.meta, &args.source, &source)?;
    let codec = Codec::from(args.codec);
    let options = FullOptions {
        codec,
        level: args.level,
        block_size: u32::try_from(args.block_size).map_err(|_| {
            crate::UsageError(format!("block size {} is too large", args.block_size))
        })?,
        threads: args.run.threads,
        key: crate::key::read(args.key.as_deref())?,
        ..FullOptions::default()
    };
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(default_name(&meta, codec.full_suffix())),
    };
    if same_file(&dest, &args.source) || source.data_paths().any(|p| same_file(&dest, p)) {
        bail!(crate::UsageError(format!(
            "{} is the source disk itself",
            dest.display()
        )));
    }
    let delta_dest = crate::delta::beside_full(&dest);
    let mut inputs = vec![args.source.as_path()];
    inputs.extend(source.data_paths());
    inputs.extend(args.meta.vmx.as_deref());
    inputs.extend(args.key.as_deref());
    refuse_inputs(&[&dest, &delta_dest], &inputs)?;
    let pending = PendingOutput::create(&dest, args.force, FULL_MODE)?;
    let pending_delta = PendingOutput::create(&delta_dest, args.force, crate::delta::DELTA_MODE)?;
    let writer = FullWriter::new(pending.writer()?, &dest, &options, source.size, &meta).map_err(
        |e| match e {
            archive_format::Error::InvalidInput { what } => {
                anyhow::Error::new(crate::UsageError(what))
            }
            e => e.into(),
        },
    )?;
    let started = Instant::now();
    let pb = progress::bar(source.size, "full", args.run.quiet);
    let data_path = source.name().to_path_buf();
    let (out, summary) = write_full(source.reader(), &data_path, writer, &mut |done| {
        pb.set_position(done)
    })
    .with_context(|| format!("writing {}", dest.display()))?;
    pb.finish_and_clear();
    pending.commit(out)?;
    warn_if_torn(&source);
    crate::delta::write_empty(
        pending_delta,
        &delta_dest,
        &dest,
        (summary.image_size, summary.identity),
        options.block_size,
        &meta,
        options.key.clone(),
    )
    .map_err(|e| crate::companion::failed_beside(e, &dest, &delta_dest, args.key.as_deref()))?;
    let secs = started.elapsed().as_secs_f64();
    if !args.run.quiet {
        let percent = |part: u64, digits: usize| match summary.image_size {
            0 => "-".to_string(),
            size => format!("{:.*}%", digits, part as f64 / size as f64 * 100.0),
        };
        print(&format!(
            "wrote {}\n  and {}, the delta that restores it\n  disk {} in {} blocks ({} zero), {:.1} MiB/s\n  file {} ({} of the disk), index {} ({} of the disk)\n  identity {}\n",
            dest.display(),
            delta_dest.display(),
            progress::human(summary.image_size),
            summary.blocks,
            summary.zero_blocks,
            summary.image_size as f64 / secs.max(1e-9) / (1 << 20) as f64,
            progress::human(summary.file_len),
            percent(summary.file_len, 1),
            progress::human(summary.index_bytes),
            percent(summary.index_bytes, 3),
            hex(&summary.identity),
        ))?;
    }
    Ok(())
}

/// Permission bits of a full image: it holds disk blocks, so only its
/// owner reads it.
pub const FULL_MODE: u32 = 0o600;

/// Warns (on stderr; the exit status is unchanged) when the source changed
/// while it was read: the image may mix blocks from before and after.
pub fn warn_if_torn(source: &DiskSource) {
    if let Some(what) = source.changed_since_open() {
        eprintln!(
            "sdar: warning: the source changed while it was read: {what}. The image may be torn \
             (blocks from before and after the change). Back up from a snapshot instead: a VMware \
             snapshot, an LVM snapshot (lvcreate -s), `qemu-img snapshot` on a stopped guest, or \
             with the guest's file systems frozen (fsfreeze)."
        );
    }
}

/// Metadata from the options, then the .vmx, then the descriptor.
pub fn metadata(m: &MetaArgs, source_path: &Path, source: &DiskSource) -> Result<Metadata> {
    let mut meta = Metadata {
        vm_name: m.vm_name.clone(),
        vm_uuid: m.vm_uuid.clone(),
        scsi_id: m.scsi_id.clone(),
        ..Metadata::default()
    };
    source.describe(source_path, &mut meta);
    if let Some(path) = &m.vmx {
        let limit = Limits::default().max_vmx_len as u64;
        let vmx = match read_small(path, limit, ".vmx length") {
            Err(archive_format::Error::LimitExceeded { value: len, .. }) => bail!(
                "{}: the .vmx is {len} bytes; at most {limit} are kept",
                path.display()
            ),
            r => r.with_context(|| format!("cannot read {}", path.display()))?,
        };
        let facts = vmx_facts_at(
            &vmx,
            meta.disk_name.as_deref(),
            Some(source_path),
            path.parent(),
        );
        if let (Some(why), None) = (&facts.warning, &meta.scsi_id) {
            eprintln!("sdar: warning: {why}");
        }
        meta.vm_name = meta.vm_name.or(facts.display_name);
        meta.vm_uuid = meta.vm_uuid.or(facts.uuid_bios);
        meta.scsi_id = meta.scsi_id.or(facts.scsi_id);
        meta.vmx = Some(vmx);
    }
    meta.created_unix = Some(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    );
    meta.tool = Some(format!("sdar {}", env!("CARGO_PKG_VERSION")));
    Ok(meta)
}

/// `VM_scsi0-0_DISK_20261122T013000Z.full.gz`, from what is known, with
/// anything but letters, digits, `.`, `-` and `_` replaced, short enough
/// for the current folder's filesystem.
pub fn default_name(meta: &Metadata, suffix: &str) -> String {
    default_name_within(meta, suffix, crate::output::name_max(Path::new(".")))
}

/// `default_name` of at most `max` bytes: the VM, slot and disk part is
/// cut short, the date stamp and the suffix are always kept.
fn default_name_within(meta: &Metadata, suffix: &str, max: usize) -> String {
    let mut parts = Vec::new();
    if let Some(vm) = &meta.vm_name {
        parts.push(vm.clone());
    }
    if let Some(id) = &meta.scsi_id {
        // `0:1` is a SCSI slot; other buses carry their name (`sata0:1`).
        let bus = if id.starts_with(|c: char| c.is_ascii_digit()) {
            "scsi"
        } else {
            ""
        };
        parts.push(format!("{bus}{}", id.replace(':', "-")));
    }
    if let Some(disk) = &meta.disk_name {
        let stem = Path::new(disk)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem.strip_suffix("-flat").unwrap_or(&stem).to_string();
        if meta.vm_name.as_deref() != Some(stem.as_str()) {
            parts.push(stem);
        }
    }
    let stamp = archive_format::utc_stamp(meta.created_unix.unwrap_or(0));
    let head: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let room = max.saturating_sub(stamp.len() + suffix.len() + 1);
    let head = archive_format::display::cut_to(&head, room);
    let name = if head.is_empty() && parts.is_empty() {
        stamp
    } else {
        format!("{head}_{stamp}")
    };
    let name = name.trim_start_matches('.').to_string();
    format!("{name}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        use archive_format::utc_stamp;
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_795_000_000), "20261118T110640Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn names_carry_vm_scsi_disk_and_date() {
        let meta = Metadata {
            vm_name: Some("CRM web/01".into()),
            scsi_id: Some("0:1".into()),
            disk_name: Some("CRM_1.vmdk".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&meta, Codec::Gzip.full_suffix()),
            "CRM_web_01_scsi0-1_CRM_1_19700101T000000Z.full.gz"
        );
        let bare = Metadata {
            disk_name: Some("..".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&bare, Codec::Zstd.full_suffix()),
            "_19700101T000000Z.full.zst"
        );
    }

    #[test]
    fn long_names_are_cut_keeping_stamp_and_suffix() {
        let meta = Metadata {
            vm_name: Some("v".repeat(300)),
            scsi_id: Some("0:1".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        let name = default_name_within(&meta, ".full.gz", 255);
        assert_eq!(name.len(), 255);
        assert!(name.ends_with("v_19700101T000000Z.full.gz"), "{name}");
        let name = default_name_within(&meta, ".full.gz", 40);
        assert_eq!(name, format!("{}_19700101T000000Z.full.gz", "v".repeat(15)));
    }

    #[test]
    fn names_carry_other_buses_by_name() {
        let meta = Metadata {
            vm_name: Some("CRM".into()),
            scsi_id: Some("sata0:1".into()),
            disk_name: Some("CRM.vmdk".into()),
            created_unix: Some(0),
            ..Metadata::default()
        };
        assert_eq!(
            default_name(&meta, Codec::Gzip.full_suffix()),
            "CRM_sata0-1_19700101T000000Z.full.gz"
        );
    }
}
