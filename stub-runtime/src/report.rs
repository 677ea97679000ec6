//! What the runtime prints: info as text or JSON, progress and summaries.

use crate::args::ProgressMode;
use archive_format::display::{escape, is_unsafe_char};
use archive_format::restore::RestoreProgress;
use archive_format::{hex, DeltaArchive, Metadata};
use std::fs::File;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const MIB: f64 = (1u64 << 20) as f64;

pub fn info_text(d: &DeltaArchive<File>) -> String {
    let h = d.header();
    let m = d.meta();
    let f = d.footer();
    let opt = |v: &Option<String>| v.as_deref().map(shown).unwrap_or_else(|| "-".into());
    let mut t = String::new();
    t += &format!("Archive:      {}\n", shown(&d.name().display().to_string()));
    t += &format!(
        "Kind:         delta archive, format {}.{}, runtime {} bytes\n",
        h.version_major,
        h.version_minor,
        d.runtime_len()
    );
    t += &format!("Identity:     {}\n", hex(&f.identity));
    t += &format!("Authenticity: {}\n", auth_text(d.auth()));
    t += &format!("Disk size:    {} bytes\n", h.image_size);
    t += &format!(
        "Needs full:   {} ({} bytes)\n",
        hex(&h.base_identity),
        h.base_image_size
    );
    t += &format!("Full name:    {}\n", opt(&m.base_name));
    t += &format!(
        "Changed:      {} of {} blocks of {} bytes\n",
        f.entry_count,
        h.block_count(),
        h.block_size
    );
    t += &format!(
        "Payload:      {} bytes ({})\n",
        d.trailer().payload_len,
        h.codec.name()
    );
    t += &meta_text(m);
    t
}

/// What `info` says of a MAC (SPEC.md §9.1).
pub fn auth_text(auth: Option<&archive_format::auth::Auth>) -> String {
    match auth {
        Some(a) => format!(
            "a MAC with key id {} (prove it with --key FILE)",
            hex(&a.key_id)
        ),
        None => "none (made without a key)".into(),
    }
}

pub fn meta_text(m: &Metadata) -> String {
    let opt = |v: &Option<String>| v.as_deref().map(shown).unwrap_or_else(|| "-".into());
    let mut t = String::new();
    t += &format!("VM name:      {}\n", opt(&m.vm_name));
    t += &format!("VM UUID:      {}\n", opt(&m.vm_uuid));
    t += &format!("SCSI id:      {}\n", opt(&m.scsi_id));
    t += &format!("Disk name:    {}\n", opt(&m.disk_name));
    t += &format!("Adapter:      {}\n", opt(&m.adapter_type));
    let g = m
        .geometry
        .map(|g| format!("{}/{}/{} (C/H/S)", g.cylinders, g.heads, g.sectors));
    t += &format!("Geometry:     {}\n", g.as_deref().unwrap_or("-"));
    t += &format!("HW version:   {}\n", opt(&m.hw_version));
    t += &format!("Disk UUID:    {}\n", opt(&m.disk_uuid));
    t += &format!(
        "VMX:          {}\n",
        m.vmx
            .as_ref()
            .map_or("-".into(), |v| format!("{} bytes", v.len()))
    );
    t += &format!(
        "Created:      {}\n",
        m.created_unix.map_or("-".into(), archive_format::utc_stamp)
    );
    t += &format!("Made by:      {}\n", opt(&m.tool));
    t
}

pub fn info_json(d: &DeltaArchive<File>) -> String {
    let h = d.header();
    let m = d.meta();
    let f = d.footer();
    let s = |v: &Option<String>| v.as_deref().map_or("null".to_string(), json_string);
    let n = |v: Option<u64>| v.map_or("null".to_string(), |x| x.to_string());
    let mut fields = vec![
        ("file", json_string(&d.name().display().to_string())),
        ("kind", json_string("delta")),
        (
            "format_version",
            json_string(&format!("{}.{}", h.version_major, h.version_minor)),
        ),
        ("codec", json_string(h.codec.name())),
        ("identity", json_string(&hex(&f.identity))),
        (
            "auth_key_id",
            d.auth()
                .map_or("null".into(), |a| json_string(&hex(&a.key_id))),
        ),
        ("image_size", h.image_size.to_string()),
        ("block_size", h.block_size.to_string()),
        ("blocks", h.block_count().to_string()),
        ("changed_blocks", f.entry_count.to_string()),
        ("base_identity", json_string(&hex(&h.base_identity))),
        ("base_image_size", h.base_image_size.to_string()),
        ("runtime_bytes", d.runtime_len().to_string()),
        ("payload_bytes", d.trailer().payload_len.to_string()),
        ("file_size", d.file_len().to_string()),
    ];
    let g = m.geometry.map_or("null".to_string(), |g| {
        format!(
            "{{\"cylinders\":{},\"heads\":{},\"sectors\":{}}}",
            g.cylinders, g.heads, g.sectors
        )
    });
    let meta = [
        ("vm_name", s(&m.vm_name)),
        ("vm_uuid", s(&m.vm_uuid)),
        ("scsi_id", s(&m.scsi_id)),
        ("disk_name", s(&m.disk_name)),
        ("disk_size", n(m.disk_size)),
        ("adapter_type", s(&m.adapter_type)),
        ("geometry", g),
        ("hw_version", s(&m.hw_version)),
        ("disk_uuid", s(&m.disk_uuid)),
        ("vmx_bytes", n(m.vmx.as_ref().map(|v| v.len() as u64))),
        (
            "created_unix",
            m.created_unix.map_or("null".to_string(), |c| c.to_string()),
        ),
        ("tool", s(&m.tool)),
        ("base_name", s(&m.base_name)),
    ];
    fields.push(("meta", object(&meta)));
    object(&fields) + "\n"
}

pub fn object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON string literal, escaping quotes, backslashes, control characters
/// and bidirectional overrides (a terminal showing the JSON must neither
/// obey the first nor reorder text for the second).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // All unsafe characters are in the Basic Multilingual Plane, so
            // one \uXXXX escape holds each.
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Metadata comes from the file: never let it drive the terminal
/// (control characters, escape sequences and bidirectional overrides are
/// shown escaped, as `archive_format::display::escape` shows them).
pub fn shown(s: &str) -> String {
    escape(s).into_owned()
}

/// Reports a running restore or verify on standard error: a live line on a
/// terminal, or one JSON object per line, a few times a second at most.
pub struct Reporter {
    mode: ProgressMode,
    phase: &'static str,
    started: Instant,
    last: Option<Instant>,
    shown: bool,
}

impl Reporter {
    /// `phase` names the work in JSON lines: "restore" or "verify".
    pub fn new(mode: ProgressMode, phase: &'static str) -> Self {
        let mode = match mode {
            ProgressMode::Auto if !std::io::stderr().is_terminal() => ProgressMode::None,
            m => m,
        };
        Reporter {
            mode,
            phase,
            started: Instant::now(),
            last: None,
            shown: false,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Called after every batch; prints at most every 250 ms.
    pub fn update(&mut self, p: &RestoreProgress) {
        if self.mode == ProgressMode::None
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(Instant::now());
        let secs = self.elapsed();
        match self.mode {
            ProgressMode::Auto => {
                eprint!("\r{}\x1b[K", progress_line(p, secs));
                self.shown = true;
            }
            ProgressMode::Json => eprintln!("{}", progress_json(self.phase, "progress", p, secs)),
            ProgressMode::None => {}
        }
    }

    /// Ends the live line; a JSON reporter writes a last object with the
    /// final counts.
    pub fn finish(&mut self, p: &RestoreProgress) {
        match self.mode {
            ProgressMode::Auto if self.shown => eprint!("\r\x1b[K"),
            ProgressMode::Json => {
                eprintln!("{}", progress_json(self.phase, "done", p, self.elapsed()))
            }
            _ => {}
        }
        self.shown = false;
    }
}

/// `Delta: 67% Full: 32%, 1300 MiB of 4096 MiB, 211 MiB/s, elapsed 00:06, remain 00:13`
pub fn progress_line(p: &RestoreProgress, secs: f64) -> String {
    if p.done == 0 && p.checked > 0 {
        return format!(
            "Checking what the interrupted restore wrote: {}%, {} MiB of {} MiB, {:.0} MiB/s, elapsed {}",
            p.checked as u128 * 100 / p.image_size.max(1) as u128,
            p.checked >> 20,
            p.image_size >> 20,
            p.checked as f64 / MIB / secs.max(1e-3),
            clock(secs)
        );
    }
    let (delta_pct, full_pct) = p.percents();
    let (rate, remain) = rate_and_remain(p, secs);
    let kept = if p.kept > 0 {
        format!(", {} MiB already in place", p.kept >> 20)
    } else {
        String::new()
    };
    format!(
        "Delta: {delta_pct}% Full: {full_pct}%, {} MiB of {} MiB, {:.0} MiB/s, elapsed {}, remain {}{kept}",
        p.done >> 20,
        p.image_size >> 20,
        rate / MIB,
        clock(secs),
        clock(remain)
    )
}

/// Bytes per second so far, and the seconds left at that rate.
fn rate_and_remain(p: &RestoreProgress, secs: f64) -> (f64, f64) {
    let rate = p.done as f64 / secs.max(1e-3);
    let remain = p.image_size.saturating_sub(p.done) as f64 / rate.max(1.0);
    (rate, remain)
}

pub fn progress_json(phase: &str, event: &str, p: &RestoreProgress, secs: f64) -> String {
    let (delta_pct, full_pct) = p.percents();
    let (rate, remain) = rate_and_remain(p, secs);
    let percent = if p.image_size == 0 {
        100
    } else {
        (p.done as u128 * 100 / p.image_size as u128) as u64
    };
    object(&[
        ("event", json_string(event)),
        ("phase", json_string(phase)),
        ("done_bytes", p.done.to_string()),
        ("total_bytes", p.image_size.to_string()),
        ("percent", percent.to_string()),
        ("delta_percent", delta_pct.to_string()),
        ("full_percent", full_pct.to_string()),
        ("from_full_bytes", p.from_full.to_string()),
        ("from_delta_bytes", p.from_delta.to_string()),
        ("zero_blocks", p.zero_blocks.to_string()),
        ("kept_bytes", p.kept.to_string()),
        ("checked_bytes", p.checked.to_string()),
        ("rate_bytes_per_sec", format!("{rate:.0}")),
        ("elapsed_seconds", format!("{secs:.3}")),
        ("remain_seconds", format!("{remain:.0}")),
    ])
}

pub fn summary(p: &RestoreProgress, secs: f64) -> String {
    let kept = if p.kept > 0 {
        format!(
            "{:.1} MiB already in place (read back and proven), ",
            p.kept as f64 / MIB
        )
    } else {
        String::new()
    };
    format!(
        "  {kept}{:.1} MiB from the full, {:.1} MiB from the delta, {} zero blocks ({:.1} MiB) skipped; average {:.0} MiB/s, time {}",
        p.from_full as f64 / MIB,
        p.from_delta as f64 / MIB,
        p.zero_blocks,
        p.zero_bytes as f64 / MIB,
        p.image_size as f64 / MIB / secs.max(1e-3),
        clock(secs)
    )
}

pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_every_control_character() {
        assert_eq!(
            json_string("a\"b\\c\n\u{1b}[2J\u{7f}\u{9b}31m é"),
            "\"a\\\"b\\\\c\\n\\u001b[2J\\u007f\\u009b31m é\""
        );
    }

    #[test]
    fn json_strings_escape_bidirectional_overrides() {
        assert_eq!(
            json_string("a\u{202e}b\u{2066}c\u{2069}"),
            "\"a\\u202eb\\u2066c\\u2069\""
        );
    }

    #[test]
    fn shown_escapes_controls_and_overrides() {
        assert_eq!(
            shown("vm\u{1b}]0;x\u{7}\u{9b}\u{202e}"),
            "vm\\e]0;x\\u{0007}\\u{009B}\\u{202E}"
        );
    }
}
