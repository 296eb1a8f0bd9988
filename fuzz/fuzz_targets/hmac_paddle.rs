//! Fuzzes the hmac adapter's paddle preset admit path (input format: the `hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("hmac_paddle"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
