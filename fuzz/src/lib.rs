//! The harness shared by the fuzz targets (issue #7).
//!
//! Every provider target builds one source with test keys (the fixtures of
//! `providers/tests/fixtures`) and feeds it requests from the fuzz input. The first byte picks
//! the mode:
//!
//! - even: a **raw** request. The rest is `query ␟ headers ␟ body`, where `␟` is the two
//!   bytes `FF 00` and headers are `name: value` lines. Exercises everything an attacker
//!   controls before (and, for the committed seeds, after) the signature check.
//! - odd: a **signed** request. The rest is `event ␟ id ␟ payload`; the harness signs (and
//!   encrypts) it with [`ProviderConfig::sample`], as the provider would, so the fuzzer reaches
//!   decryption and normalization with arbitrary payloads. Such a request must never be
//!   refused as badly signed or stale: that would mean signer and verifier disagree.
//!   RSA signing (Alipay, WeChat Pay v3) costs ~40 ms in an instrumented build, so those
//!   providers have two targets: `alipay` (raw only, fast) and `alipay_signed` (signed only).
//!
//! `now` is fixed, so seeds signed at [`NOW_SECS`] stay inside every timestamp window.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use providers::sign::{SampleOptions, SampleRequest};
use providers::{Provider, ProviderConfig, RawRequest, Rejection};
use serde_json::json;

/// The fixed "now" of every target (and of the committed seeds).
pub const NOW_SECS: u64 = 1_700_000_000;

/// Separates the parts of a fuzz input.
pub const SEP: &[u8] = b"\xff\x00";

const ALIPAY_KEY: &str =
    include_str!("../../providers/tests/fixtures/alipay/alipay_private_key.pem");
const ALIPAY_CERT: &str = include_str!("../../providers/tests/fixtures/alipay/alipay_cert.pem");
const WX_KEY: &str =
    include_str!("../../providers/tests/fixtures/wechatpay/platform_private_key.pem");
const WX_CERT: &str = include_str!("../../providers/tests/fixtures/wechatpay/platform_cert.pem");
const WX_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// One configured source and what its samples are signed with.
pub struct Target {
    pub config: ProviderConfig,
    provider: Box<dyn Provider>,
    private_key: Option<&'static str>,
    /// The sample puts the event name or id into a header.
    header_fields: bool,
    /// Which mode bytes mean "signed" (see the module docs).
    signed: fn(u8) -> bool,
}

impl Target {
    /// The source of a fuzz target (`github`, `alipay`, `wechatpay_v3`, …).
    pub fn new(target: &str) -> Target {
        let name = target.strip_suffix("_signed").unwrap_or(target);
        let (config, private_key) = match name {
            "github" => (
                json!({"provider": "github", "secrets": ["fuzz-secret"]}),
                None,
            ),
            "alipay" => (
                json!({"provider": "alipay", "app_id": "2021000000000001",
                       "alipay_public_keys": [ALIPAY_CERT]}),
                Some(ALIPAY_KEY),
            ),
            "wechatpay_v3" => (
                json!({"provider": "wechatpay", "apiv3_keys": ["0123456789abcdefghijABCDEFGHIJ01"],
                       "platform_keys": {WX_SERIAL: WX_CERT}}),
                Some(WX_KEY),
            ),
            "wechatpay_v2" => (
                json!({"provider": "wechatpay", "version": 2,
                       "api_keys": ["192006250b4c09247ec02edce69f6a2d"]}),
                None,
            ),
            "dingtalk_event" => (
                json!({"provider": "dingtalk", "mode": "event", "token": "mryue",
                       "aes_key": "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
                       "owner_key": "ding6ccabc44d2c8d38b"}),
                None,
            ),
            "dingtalk_robot" => (
                json!({"provider": "dingtalk", "mode": "robot", "app_secrets": ["testAppSecret"]}),
                None,
            ),
            "feishu" => (
                json!({"provider": "feishu", "verification_token": "xxxxxx",
                       "encrypt_key": "test key"}),
                None,
            ),
            "standard" => (
                json!({"provider": "standard",
                       "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
                None,
            ),
            "hmac" => (
                json!({"provider": "hmac", "secrets": ["fuzz-secret"],
                       "signature_header": "X-Signature", "prefix": "sha256=",
                       "signed_payload": "{timestamp}.{body}", "timestamp_header": "X-Timestamp",
                       "id_pointer": "/id", "type_pointer": "/type"}),
                None,
            ),
            other => panic!("no fuzz target {other}"),
        };
        let config: ProviderConfig =
            serde_json::from_value(config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let provider = config.build().unwrap_or_else(|e| panic!("{name}: {e:?}"));
        Target {
            config,
            provider,
            private_key,
            header_fields: matches!(name, "github" | "standard"),
            signed: match (private_key.is_some(), target.ends_with("_signed")) {
                (_, true) => |_| true,
                (true, false) => |_| false,
                (false, false) => |m| m & 1 == 1,
            },
        }
    }

    /// Runs one fuzz input through the adapter (see the module docs for the format).
    pub fn admit(&self, data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let [a, b, c] = split3(rest);
        if !(self.signed)(mode) {
            let headers = parse_headers(b);
            let query = String::from_utf8_lossy(a);
            let _ = self.provider.admit(
                &RawRequest {
                    headers: &headers,
                    query: &query,
                    body: c,
                },
                now(),
            );
            return;
        }
        // A header carries visible ASCII only, without surrounding whitespace (HTTP strips
        // it, and actix hands hookgate nothing else); an id that cannot travel is no test.
        let header_safe = |b: &[u8]| b.iter().all(|c| (0x21..=0x7e).contains(c));
        if self.header_fields && !(header_safe(a) && header_safe(b)) {
            return;
        }
        let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
        let mut o = SampleOptions::new(now());
        o.event = text(a);
        o.id = text(b);
        o.payload = (!c.is_empty()).then(|| c.to_vec());
        o.private_key = self.private_key.map(str::to_string);
        let Ok(req) = self.config.sample(&o) else {
            return; // the payload is not something this provider can carry
        };
        let result = self.provider.admit(
            &RawRequest {
                headers: &req.headers,
                query: &req.query,
                body: &req.body,
            },
            now(),
        );
        if let Err(e @ (Rejection::BadSignature | Rejection::StaleTimestamp)) = &result {
            panic!("a request signed by sample() was refused ({e}): {req:?}");
        }
    }
}

/// `query ␟ headers ␟ body` of a raw-mode seed for `req` (mode byte included).
pub fn raw_input(req: &SampleRequest) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(req.query.as_bytes());
    out.extend_from_slice(SEP);
    let headers: Vec<String> = req
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    out.extend_from_slice(headers.join("\n").as_bytes());
    out.extend_from_slice(SEP);
    out.extend_from_slice(&req.body);
    out
}

fn split3(data: &[u8]) -> [&[u8]; 3] {
    let mut parts = [&data[..0]; 3];
    let mut rest = data;
    for slot in parts.iter_mut().take(2) {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                *slot = &rest[..i];
                rest = &rest[i + SEP.len()..];
            }
            None => {
                *slot = rest;
                return parts;
            }
        }
    }
    parts[2] = rest;
    parts
}

fn parse_headers(block: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(block)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The config target: arbitrary text through `Config::parse`.
pub fn parse_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = config(text);
}

fn config(text: &str) -> Result<hookgate::config::Config, hookgate::config::ConfigError> {
    let vars = HashMap::from([
        ("GH_SECRET".to_string(), "s3cret".to_string()),
        ("GH_WEBHOOK_SECRET".to_string(), "s3cret".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]);
    hookgate::config::Config::parse(text, &vars, Path::new("/nonexistent-fuzz-base"))
}

/// Seeds for `fuzz/seeds/<target>/`: one raw and one signed input per typical event.
/// Regenerate with `cargo test --manifest-path fuzz/Cargo.toml -- --ignored write_seeds`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let t = Target::new(target);
    let name = target.strip_suffix("_signed").unwrap_or(target);
    let events: &[(&str, &str)] = match name {
        "github" => &[
            ("push", ""),
            ("ping", ""),
            (
                "pull_request",
                r#"{"action":"opened","repository":{"full_name":"o/r"}}"#,
            ),
        ],
        "alipay" => &[("TRADE_SUCCESS", "")],
        "wechatpay_v3" => &[("TRANSACTION.SUCCESS", ""), ("REFUND.SUCCESS", "")],
        "wechatpay_v2" => &[("", "")],
        "dingtalk_event" => &[("user_add_org", ""), ("check_url", "")],
        "dingtalk_robot" => &[("text", "")],
        "feishu" => &[("im.message.receive_v1", ""), ("url_verification", "")],
        "standard" => &[("user.created", "")],
        "hmac" => &[("ping", "")],
        _ => &[],
    };
    let mut out = Vec::new();
    for (i, (event, payload)) in events.iter().enumerate() {
        let mut signed = vec![1u8];
        signed.extend_from_slice(event.as_bytes());
        signed.extend_from_slice(SEP);
        signed.extend_from_slice(format!("seed-{i}").as_bytes());
        signed.extend_from_slice(SEP);
        signed.extend_from_slice(payload.as_bytes());
        if (t.signed)(1) {
            out.push((format!("signed-{i}"), signed));
        }
        if (t.signed)(0) {
            continue;
        }
        let mut o = SampleOptions::new(now());
        o.event = (!event.is_empty()).then(|| event.to_string());
        o.id = Some(format!("seed-{i}"));
        o.payload = (!payload.is_empty()).then(|| payload.as_bytes().to_vec());
        o.private_key = t.private_key.map(str::to_string);
        let req = t
            .config
            .sample(&o)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((format!("raw-{i}"), raw_input(&req)));
    }
    out
}

/// The provider targets.
pub const PROVIDER_TARGETS: &[&str] = &[
    "github",
    "alipay",
    "alipay_signed",
    "wechatpay_v3",
    "wechatpay_v3_signed",
    "wechatpay_v2",
    "dingtalk_event",
    "dingtalk_robot",
    "feishu",
    "standard",
    "hmac",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_seeds_are_accepted() {
        for name in PROVIDER_TARGETS {
            let t = Target::new(name);
            for (seed, data) in seeds(name) {
                if seed.starts_with("raw") {
                    let [a, b, c] = split3(&data[1..]);
                    let headers = parse_headers(b);
                    let r = t.provider.admit(
                        &RawRequest {
                            headers: &headers,
                            query: &String::from_utf8_lossy(a),
                            body: c,
                        },
                        now(),
                    );
                    assert!(r.is_ok(), "{name}/{seed}: {r:?}");
                } else {
                    t.admit(&data);
                }
            }
        }
    }

    /// Found by the standard target: an id with a leading tab was signed as given, but HTTP
    /// strips the whitespace around header values (and hookgate trims them), so the request
    /// could never have arrived as signed. The harness now only signs what HTTP can carry.
    #[test]
    fn issue_7_fuzz_sample_ids_are_what_http_can_carry() {
        let crash = include_bytes!("../seeds/standard/issue-7-id-with-leading-tab");
        Target::new("standard").admit(crash);
        let mut ok = vec![1u8];
        ok.extend_from_slice(b"user.created\xff\x00msg_2KWPBgLlAfxdpx2AI54pPJ85f4W\xff\x00{}");
        Target::new("standard").admit(&ok);
    }

    #[test]
    fn config_seeds_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/config");
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = config(&text) {
                panic!("{}: {e}", path.display());
            }
        }
    }

    #[test]
    #[ignore = "writes fuzz/seeds"]
    fn write_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for name in PROVIDER_TARGETS {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (seed, data) in seeds(name) {
                std::fs::write(dir.join(seed), data).unwrap();
            }
        }
        let dir = root.join("config");
        std::fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        std::fs::copy(example, dir.join("config.example.toml")).unwrap();
    }
}
