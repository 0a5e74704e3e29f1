#![no_main]
// See tessera::fuzzing::jwt for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::jwt(data));
