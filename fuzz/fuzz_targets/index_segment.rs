//! INDX record bodies, checked against an image shape the first byte picks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archive_format::fuzzing::index_segment(data);
});
