//! Fuzzes the wechatpay_v3 adapter's admit path with requests it signs (`hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("wechatpay_v3_signed"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
