#![no_main]
// See tessera::fuzzing::config for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::config(data));
