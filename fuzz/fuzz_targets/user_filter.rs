#![no_main]
// See tessera::fuzzing::user_filter for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::user_filter(data));
