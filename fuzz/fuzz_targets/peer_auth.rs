#![no_main]
// See tessera::fuzzing::peer_auth for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::peer_auth(data));
