#![no_main]
// See tessera::fuzzing::snapshot_file for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::snapshot_file(data));
