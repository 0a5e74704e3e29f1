#![no_main]
// See tessera::fuzzing::trigger_answer for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::trigger_answer(data));
