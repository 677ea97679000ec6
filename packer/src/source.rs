//! What `sdar full` and `sdar delta` share about the disk they read: the
//! metadata a backup records about it, and the warning when it changed
//! while it was read.

use crate::cli::MetaArgs;
use anyhow::{bail, Context, Result};
use archive_format::input::read_small;
use archive_format::vmx::vmx_facts_at;
use archive_format::{DiskSource, Limits, Metadata};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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
    meta.created_unix = Some(creation_time()?);
    meta.tool = Some(format!("sdar {}", env!("CARGO_PKG_VERSION")));
    Ok(meta)
}

/// When the backup is made: now, or `SOURCE_DATE_EPOCH` (seconds since
/// 1970, as reproducible builds use it) when set, for tests and for imports
/// that keep a backup's own date. A value that is not such a number is a
/// usage error, not silently now.
fn creation_time() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(std::env::VarError::NotPresent) => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)),
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(t) if t >= 0 => Ok(t),
            _ => Err(anyhow::Error::new(crate::UsageError(format!(
                "SOURCE_DATE_EPOCH={v}: give the backup's time as seconds since 1970-01-01 UTC (such as 1767225600), or unset it"
            )))),
        },
        Err(std::env::VarError::NotUnicode(_)) => Err(anyhow::Error::new(crate::UsageError(
            "SOURCE_DATE_EPOCH is not text: give seconds since 1970-01-01 UTC, or unset it".into(),
        ))),
    }
}

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
