//! The META record: who the disk belongs to (SPEC.md §6 "META record").
//! Informative only: nothing here decides where a file is written.

use crate::error::{Error, Result};
use crate::layout::*;
use crate::limits::Limits;
use crate::record::{le_u16, le_u32, le_u64};
use std::path::Path;

/// Disk geometry from the VMDK descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
}

/// What is known about the VM and disk an image came from. Every field is
/// optional: a raw image without options has none of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub vm_name: Option<String>,
    pub vm_uuid: Option<String>,
    /// The disk's place on its controller, such as `0:0`.
    pub scsi_id: Option<String>,
    /// The original descriptor file name, such as `CRM.vmdk`.
    pub disk_name: Option<String>,
    /// The disk size the descriptor declares, in bytes.
    pub disk_size: Option<u64>,
    /// `ddb.adapterType`, such as `lsilogic` or `pvscsi`.
    pub adapter_type: Option<String>,
    pub geometry: Option<Geometry>,
    /// `ddb.virtualHWVersion`.
    pub hw_version: Option<String>,
    /// `ddb.uuid`.
    pub disk_uuid: Option<String>,
    /// The .vmx file's bytes, exactly as given.
    pub vmx: Option<Vec<u8>>,
    /// When the image was made, in seconds since the Unix epoch.
    pub created_unix: Option<i64>,
    /// The program that made the image, such as `sdar 0.1.0`.
    pub tool: Option<String>,
    /// In a delta: the file name of the full it was made against, a hint
    /// for finding it (the full is accepted by identity, never by name).
    pub base_name: Option<String>,
}

/// SPEC.md §6.1 "Metadata keys".
mod key {
    pub const VM_NAME: u16 = 1;
    pub const VM_UUID: u16 = 2;
    pub const SCSI_ID: u16 = 3;
    pub const DISK_NAME: u16 = 4;
    pub const DISK_SIZE: u16 = 5;
    pub const ADAPTER_TYPE: u16 = 6;
    pub const GEOMETRY: u16 = 7;
    pub const HW_VERSION: u16 = 8;
    pub const DISK_UUID: u16 = 9;
    pub const VMX: u16 = 10;
    pub const CREATED: u16 = 11;
    pub const TOOL: u16 = 12;
    pub const BASE_NAME: u16 = 13;
}

/// SPEC.md §6.1: the longest text value.
pub const MAX_META_TEXT_LEN: usize = 4096;

impl Metadata {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut put = |k: u16, v: &[u8]| {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        };
        let texts = [
            (key::VM_NAME, &self.vm_name, "VM name"),
            (key::VM_UUID, &self.vm_uuid, "VM UUID"),
            (key::SCSI_ID, &self.scsi_id, "SCSI id"),
            (key::DISK_NAME, &self.disk_name, "disk name"),
        ];
        for (k, v, what) in texts {
            if let Some(v) = v {
                check_text_len(what, v)?;
                put(k, v.as_bytes());
            }
        }
        if let Some(size) = self.disk_size {
            put(key::DISK_SIZE, &size.to_le_bytes());
        }
        if let Some(v) = &self.adapter_type {
            check_text_len("adapter type", v)?;
            put(key::ADAPTER_TYPE, v.as_bytes());
        }
        if let Some(g) = self.geometry {
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&g.cylinders.to_le_bytes());
            b[4..8].copy_from_slice(&g.heads.to_le_bytes());
            b[8..].copy_from_slice(&g.sectors.to_le_bytes());
            put(key::GEOMETRY, &b);
        }
        for (k, v, what) in [
            (key::HW_VERSION, &self.hw_version, "hardware version"),
            (key::DISK_UUID, &self.disk_uuid, "disk UUID"),
        ] {
            if let Some(v) = v {
                check_text_len(what, v)?;
                put(k, v.as_bytes());
            }
        }
        if let Some(vmx) = &self.vmx {
            if vmx.len() > Limits::default().max_vmx_len as usize {
                return Err(Error::invalid(format!(
                    "the .vmx is {} bytes; at most {} are kept",
                    vmx.len(),
                    Limits::default().max_vmx_len
                )));
            }
            put(key::VMX, vmx);
        }
        if let Some(t) = self.created_unix {
            put(key::CREATED, &t.to_le_bytes());
        }
        if let Some(v) = &self.tool {
            check_text_len("tool", v)?;
            put(key::TOOL, v.as_bytes());
        }
        if let Some(v) = &self.base_name {
            check_text_len("base name", v)?;
            put(key::BASE_NAME, v.as_bytes());
        }
        Ok(out)
    }

    pub(crate) fn decode(file: &Path, offset: u64, body: &[u8], limits: &Limits) -> Result<Self> {
        let corrupt = |at: usize, what: String| {
            Error::corrupt(file, offset + at as u64, format!("META record: {what}"))
        };
        let mut m = Metadata::default();
        let mut at = 0usize;
        let mut last_key: Option<u16> = None;
        while at < body.len() {
            if body.len() - at < META_ENTRY_HEADER_LEN {
                return Err(corrupt(at, "entry header cut short".into()));
            }
            let k = le_u16(body, at);
            let len = le_u32(body, at + 2) as usize;
            let value_at = at + META_ENTRY_HEADER_LEN;
            if len > body.len() - value_at {
                return Err(corrupt(
                    at,
                    format!(
                        "entry {k} claims {len} bytes, only {} remain",
                        body.len() - value_at
                    ),
                ));
            }
            if last_key.is_some_and(|l| l >= k) {
                return Err(corrupt(at, format!("key {k} out of order or repeated")));
            }
            last_key = Some(k);
            let v = &body[value_at..value_at + len];
            let text = |what: &str| -> Result<String> {
                if len > MAX_META_TEXT_LEN {
                    return Err(corrupt(
                        at,
                        format!("{what} is {len} bytes, more than {MAX_META_TEXT_LEN}"),
                    ));
                }
                String::from_utf8(v.to_vec())
                    .map_err(|_| corrupt(at, format!("{what} is not UTF-8")))
            };
            let fixed = |n: usize, what: &str| -> Result<()> {
                if len != n {
                    return Err(corrupt(at, format!("{what} is {len} bytes, expected {n}")));
                }
                Ok(())
            };
            match k {
                key::VM_NAME => m.vm_name = Some(text("VM name")?),
                key::VM_UUID => m.vm_uuid = Some(text("VM UUID")?),
                key::SCSI_ID => m.scsi_id = Some(text("SCSI id")?),
                key::DISK_NAME => m.disk_name = Some(text("disk name")?),
                key::DISK_SIZE => {
                    fixed(8, "disk size")?;
                    m.disk_size = Some(le_u64(v, 0));
                }
                key::ADAPTER_TYPE => m.adapter_type = Some(text("adapter type")?),
                key::GEOMETRY => {
                    fixed(12, "geometry")?;
                    m.geometry = Some(Geometry {
                        cylinders: le_u32(v, 0),
                        heads: le_u32(v, 4),
                        sectors: le_u32(v, 8),
                    });
                }
                key::HW_VERSION => m.hw_version = Some(text("hardware version")?),
                key::DISK_UUID => m.disk_uuid = Some(text("disk UUID")?),
                key::VMX => {
                    if len > limits.max_vmx_len as usize {
                        return Err(Error::LimitExceeded {
                            file: file.to_path_buf(),
                            what: ".vmx length",
                            value: len as u64,
                            limit: limits.max_vmx_len as u64,
                        });
                    }
                    m.vmx = Some(v.to_vec());
                }
                key::CREATED => {
                    fixed(8, "creation time")?;
                    m.created_unix = Some(le_u64(v, 0) as i64);
                }
                key::TOOL => m.tool = Some(text("tool")?),
                key::BASE_NAME => m.base_name = Some(text("base name")?),
                k if k >= META_KEY_MUST_UNDERSTAND => {
                    return Err(Error::UnsupportedFeature {
                        file: file.to_path_buf(),
                        what: format!("metadata key {k:#06x}"),
                    })
                }
                _ => {} // informative key from a later minor version
            }
            at = value_at + len;
        }
        Ok(m)
    }
}

fn check_text_len(what: &str, v: &str) -> Result<()> {
    if v.len() > MAX_META_TEXT_LEN {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; at most {MAX_META_TEXT_LEN} are allowed",
            v.len()
        )));
    }
    Ok(())
}

/// `20261122T013000Z` for a Unix time, without a date crate.
pub fn utc_stamp(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The (year, month, day) of a day counted from 1970-01-01, by Howard
/// Hinnant's algorithm (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}
