//! Whole files opened as full images, every index loaded, every block verified.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archive_format::fuzzing::open_and_verify(data);
});
