#![no_main]
// See tessera::fuzzing::pagination_token for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::pagination_token(data));
