//! Fuzzes the token adapter's HTTP Basic mode admit path (input format: the `hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("token_basic"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
