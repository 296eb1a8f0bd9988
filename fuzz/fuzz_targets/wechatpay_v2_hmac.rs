//! Fuzzes the wechatpay adapter's API v2 path with HMAC-SHA256 signatures (input format: the
//! `hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("wechatpay_v2_hmac"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
