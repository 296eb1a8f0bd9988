//! Fuzzes the config loader: `Config::parse` over arbitrary text must return a config or a
//! list of errors, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate_fuzz::parse_config(data));
