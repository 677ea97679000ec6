//! Whole files opened as delta archives: trailer, DHED, META, DFOT and DDIR,
//! then every DMAP record and every member.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = archive_format::fuzzing::delta_open(data);
});
