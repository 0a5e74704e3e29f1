#![no_main]
// See tessera::fuzzing::grpc_request for what this target feeds and asserts.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tessera::fuzzing::grpc_request(data));
