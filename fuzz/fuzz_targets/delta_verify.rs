//! A full and a delta (u32 length of the full, the full, the delta), the
//! delta restored from the full read as a file and as a stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archive_format::fuzzing::delta_verify(data);
});
