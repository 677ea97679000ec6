//! VMDK descriptor text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    archive_format::fuzzing::descriptor(data);
});
