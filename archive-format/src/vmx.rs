//! The .vmx file: the VM's configuration, kept byte for byte in metadata.
//! Only a few keys are read, to fill in names the user did not give.

/// `key = "value"` pairs of a .vmx, in file order. Lines that are not such
/// pairs are skipped: the file is kept verbatim elsewhere, this is a view.
pub fn vmx_entries(vmx: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(vmx)
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// What a .vmx says about the VM and one of its disks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmxFacts {
    pub display_name: Option<String>,
    pub uuid_bios: Option<String>,
    /// `0:0` for the entry `scsi0:0.fileName = "<disk>"`.
    pub scsi_id: Option<String>,
}

/// Reads the display name, BIOS UUID, and the SCSI slot whose `fileName`
/// is `disk_name` (compared by file name only).
pub fn vmx_facts(vmx: &[u8], disk_name: Option<&str>) -> VmxFacts {
    let mut facts = VmxFacts::default();
    for (k, v) in vmx_entries(vmx) {
        let key = k.to_ascii_lowercase();
        if key == "displayname" {
            facts.display_name = Some(v);
        } else if key == "uuid.bios" {
            facts.uuid_bios = Some(v);
        } else if let (Some(slot), Some(disk)) = (key.strip_suffix(".filename"), disk_name) {
            let file = v.rsplit('/').next().unwrap_or(&v);
            if let Some(id) = slot.strip_prefix("scsi") {
                if file == disk && id.contains(':') {
                    facts.scsi_id = Some(id.to_string());
                }
            }
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_uuid_and_slot() {
        let vmx = b".encoding = \"UTF-8\"\ndisplayName = \"CRM\"\nuuid.bios = \"56 4d 01\"\nscsi0:1.fileName = \"CRM_1.vmdk\"\nscsi0:0.fileName = \"/vmfs/volumes/ds1/CRM/CRM.vmdk\"\n";
        let f = vmx_facts(vmx, Some("CRM.vmdk"));
        assert_eq!(f.display_name.as_deref(), Some("CRM"));
        assert_eq!(f.uuid_bios.as_deref(), Some("56 4d 01"));
        assert_eq!(f.scsi_id.as_deref(), Some("0:0"));
    }
}
