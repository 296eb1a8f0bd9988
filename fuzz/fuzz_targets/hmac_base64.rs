//! Fuzzes the hmac adapter configured Shopify-style (base64 MAC, id and type in unsigned
//! headers; input format: the `hookgate_fuzz` docs).
#![no_main]

use std::sync::LazyLock;

static TARGET: LazyLock<hookgate_fuzz::Target> =
    LazyLock::new(|| hookgate_fuzz::Target::new("hmac_base64"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| TARGET.admit(data));
