//! `sdar info`: metadata and layout, as text or JSON.

use crate::cli::InfoArgs;
use crate::output::print;
use crate::progress::human;
use anyhow::Result;
use archive_format::container::{open_classified, FileKind};
use archive_format::display::is_unsafe_char;
use archive_format::{hex, FullImage, Limits};
use serde_json::json;

pub fn run(args: InfoArgs) -> Result<()> {
    // Refuses a FIFO or a device at once, and reads what it checked.
    let (file, kind) = open_classified(&args.file)?;
    if kind == FileKind::Delta {
        let rest: Vec<std::ffi::OsString> = if args.json {
            vec!["--json".into()]
        } else {
            vec![]
        };
        return crate::delta::run_runtime(&args.file, "info", &rest);
    }
    let image = FullImage::open(file, &args.file, &Limits::default())?;
    let h = image.header().clone();
    let mut zero_blocks = 0u64;
    let mut data_bytes = 0u64;
    for s in 0..image.segment_count() {
        let seg = image.index_segment(s)?;
        zero_blocks += seg.entries.iter().filter(|e| e.zero).count() as u64;
        data_bytes += seg.data_end() - seg.data_offset;
    }
    let index_bytes = image.file_len() - data_bytes;
    let m = image.meta();
    if args.json {
        let doc = json!({
            "file": args.file.display().to_string(),
            "kind": "full",
            "format_version": format!("{}.{}", h.version_major, h.version_minor),
            "codec": h.codec.name(),
            "identity": hex(&image.identity()),
            "auth_key_id": image.auth().map(|a| hex(&a.key_id)),
            "image_size": h.image_size,
            "block_size": h.block_size,
            "blocks": h.block_count(),
            "zero_blocks": zero_blocks,
            "segment_blocks": h.segment_blocks,
            "segments": image.segment_count(),
            "file_size": image.file_len(),
            "data_bytes": data_bytes,
            "index_bytes": index_bytes,
            "meta": {
                "vm_name": m.vm_name,
                "vm_uuid": m.vm_uuid,
                "scsi_id": m.scsi_id,
                "disk_name": m.disk_name,
                "disk_size": m.disk_size,
                "adapter_type": m.adapter_type,
                "geometry": m.geometry.map(|g| json!({"cylinders": g.cylinders, "heads": g.heads, "sectors": g.sectors})),
                "hw_version": m.hw_version,
                "disk_uuid": m.disk_uuid,
                "vmx_bytes": m.vmx.as_ref().map(|v| v.len()),
                "created_unix": m.created_unix,
                "created": m.created_unix.map(archive_format::utc_stamp),
                "tool": m.tool,
            },
        });
        let text = serde_json::to_string_pretty(&doc)?;
        return print(&format!("{}\n", terminal_safe_json(&text)));
    }
    let mut t = String::new();
    t += &format!(
        "File:         {}\n",
        sdar_stub::report::shown(&args.file.display().to_string())
    );
    t += &format!(
        "Kind:         full image, {}, format {}.{}\n",
        h.codec.name(),
        h.version_major,
        h.version_minor
    );
    t += &format!("Identity:     {}\n", hex(&image.identity()));
    t += &format!(
        "Authenticity: {}\n",
        sdar_stub::report::auth_text(image.auth())
    );
    t += &format!(
        "Disk size:    {} ({} bytes)\n",
        human(h.image_size),
        h.image_size
    );
    t += &format!(
        "Blocks:       {} of {} ({} zero), {} segment(s) of {}\n",
        h.block_count(),
        human(h.block_size as u64),
        zero_blocks,
        image.segment_count(),
        h.segment_blocks
    );
    t += &format!(
        "Stored:       {} ({:.1}% of the disk); index and metadata {} ({:.3}%)\n",
        human(image.file_len()),
        image.file_len() as f64 * 100.0 / h.image_size.max(1) as f64,
        human(index_bytes),
        index_bytes as f64 * 100.0 / h.image_size.max(1) as f64
    );
    t += &sdar_stub::report::meta_text(m);
    print(&t)
}

/// `json` with every character a terminal could obey or that reorders text
/// (DEL, the C1 controls, the bidirectional overrides and isolates) written
/// as a `\uXXXX` escape: serde_json escapes only what RFC 8259 requires
/// (quotes, backslashes, C0 controls). Outside strings the text holds only
/// ASCII punctuation, digits and the newlines and spaces of pretty printing,
/// so every character changed is inside a string, and all of them are in the
/// Basic Multilingual Plane: one escape each.
pub(crate) fn terminal_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c != '\n' && is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_what_serde_json_leaves_raw() {
        let doc = serde_json::json!({"vm_name": "a\u{1b}]0;x\u{7}\u{7f}\u{9b}\u{202e}\u{2066}b\n"});
        let text = terminal_safe_json(&serde_json::to_string_pretty(&doc).unwrap());
        assert!(
            !text.chars().any(|c| c != '\n' && is_unsafe_char(c)),
            "{text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }
}
