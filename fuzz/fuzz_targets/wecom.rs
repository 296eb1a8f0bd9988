//! Fuzzes the wecom adapter's admit path (input format: the `hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("wecom"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
