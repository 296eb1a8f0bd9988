//! The harness shared by the fuzz targets (issue #7).
//!
//! Every provider target builds the `providers::testkit` source of its name (test keys, the
//! fixtures of `providers/tests/fixtures`) and feeds it requests from the fuzz input; a new
//! test source needs its `fuzz_targets/<name>.rs`, its `[[bin]]` and its seeds
//! (`providers/tests/registry.rs` checks). The first byte picks
//! the mode:
//!
//! - even: a **raw** request. The rest is `query ␟ headers ␟ body`, where `␟` is the two
//!   bytes `FF 00` and headers are `name: value` lines. Exercises everything an attacker
//!   controls before (and, for the committed seeds, after) the signature check.
//! - odd: a **signed** request. The rest is `event ␟ id ␟ payload [␟ headers]`; the harness
//!   signs (and encrypts) it with [`ProviderConfig::sample`], as the provider would, so the
//!   fuzzer reaches decryption and normalization with arbitrary payloads. Such a request must
//!   never be refused as badly signed or stale: that would mean signer and verifier disagree.
//!   The optional `headers` (`name: value` lines) are put in front of the signed request's
//!   headers, as a forger replaying it would (issue 11): then any outcome but a panic is
//!   allowed, and an event's id and type must stay within [`providers::MAX_UNSIGNED_BYTES`].
//!
//! RSA signing (Alipay, WeChat Pay v3) costs ~25 ms in an instrumented build, so those providers
//! have a raw target (`alipay`, `wechatpay_v3`) and a **pre-signed** one (`alipay_signed`,
//! `wechatpay_v3_signed`): a handful of requests are signed once, lazily, and the input is
//! `pick ␟ headers ␟ ops ␟ body`. `pick` chooses the request; `headers` are put in front of
//! its headers; `ops` rewrite an Alipay form body without changing what is signed (order,
//! escaping, empty parameters, one parameter swallowing the next, as in issue 11); a non-empty
//! `body` replaces the whole body. Unless the body is replaced or a signed header is touched,
//! the request must not be refused as badly signed, and an event must keep the pre-signed
//! request's content key (Alipay) or id (WeChat Pay).
//!
//! Every request goes through [`providers::admit`], the gateway's entry point. `now` is fixed,
//! so seeds signed at [`NOW_SECS`] stay inside every timestamp window.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use providers::sign::{SampleOptions, SampleRequest};
use providers::testkit::{self, form};
use providers::{Admission, Provider, ProviderConfig, RawRequest, Rejection};

/// The fixed "now" of every target (and of the committed seeds).
pub const NOW_SECS: u64 = 1_700_000_000;

/// Separates the parts of a fuzz input.
pub const SEP: &[u8] = b"\xff\x00";

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
    /// The `_signed` RSA targets: requests signed once, on first use.
    presigned: Option<LazyLock<Vec<Presigned>, Box<dyn Fn() -> Vec<Presigned> + Send + Sync>>>,
}

/// One request signed once for the pre-signed targets, with what its event must keep.
pub struct Presigned {
    pub request: SampleRequest,
    /// The event's id and content key as first admitted.
    id: String,
    content_key: Option<String>,
}

impl Target {
    /// The source of a fuzz target: a `providers::testkit` source (`github`, `alipay`,
    /// `wechatpay_v3`, …), or one with `_signed` appended for the pre-signed targets.
    pub fn new(target: &str) -> Target {
        let name = target.strip_suffix("_signed").unwrap_or(target);
        let source = testkit::source(name);
        let private_key = source.private_key;
        let config = source.provider_config();
        let provider = source.build();
        let presigned = target.ends_with("_signed").then(|| {
            let name = name.to_owned();
            let init: Box<dyn Fn() -> Vec<Presigned> + Send + Sync> = Box::new(move || {
                presign(
                    &name,
                    &testkit::source(&name).provider_config(),
                    private_key,
                )
            });
            LazyLock::new(init)
        });
        Target {
            config,
            provider,
            private_key,
            header_fields: source.fields_in_headers,
            signed: match (private_key.is_some(), target.ends_with("_signed")) {
                (_, true) => |_| true,
                (true, false) => |_| false,
                (false, false) => |m| m & 1 == 1,
            },
            presigned,
        }
    }

    /// `providers::admit` (the gateway's entry point) and the bounds every event keeps.
    fn run(
        &self,
        headers: &dyn providers::Headers,
        query: &str,
        body: &[u8],
    ) -> Result<Admission, Rejection> {
        let r = providers::admit(
            self.provider.as_ref(),
            &RawRequest {
                headers,
                query,
                body,
            },
            now(),
        );
        if let Ok(Admission::Event { event, .. }) = &r {
            assert!(
                event.id.len() <= providers::MAX_UNSIGNED_BYTES
                    && event.kind.len() <= providers::MAX_UNSIGNED_BYTES,
                "an id or type over the bound: {event:?}"
            );
        }
        r
    }

    /// Runs one fuzz input through the adapter (see the module docs for the format).
    pub fn admit(&self, data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        if let Some(presigned) = &self.presigned {
            return self.admit_presigned(presigned, mode, rest);
        }
        let [a, b, c] = split3(rest);
        if !(self.signed)(mode) {
            let headers = parse_headers(b);
            let query = String::from_utf8_lossy(a);
            let _ = self.run(&headers, &query, c);
            return;
        }
        // The payload may be followed by header lines a forger adds to the signed request.
        let (c, extra) = match c.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => (&c[..i], parse_headers(&c[i + SEP.len()..])),
            None => (c, Vec::new()),
        };
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
        if !extra.is_empty() {
            let headers: Vec<(String, String)> = extra.into_iter().chain(req.headers).collect();
            let _ = self.run(&headers, &req.query, &req.body);
            return;
        }
        let result = self.run(&req.headers, &req.query, &req.body);
        if let Err(e @ (Rejection::BadSignature | Rejection::StaleTimestamp)) = &result {
            panic!("a request signed by sample() was refused ({e}): {req:?}");
        }
    }

    /// The pre-signed targets (see the module docs).
    fn admit_presigned(&self, presigned: &[Presigned], pick: u8, rest: &[u8]) {
        let Some(p) = presigned.get(usize::from(pick) % presigned.len().max(1)) else {
            return;
        };
        let [headers, ops, body] = split3(rest);
        let extra = parse_headers(headers);
        // Every `Wechatpay-*` header takes part in verification; Alipay reads no header.
        let signed_header_touched = extra
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().starts_with("wechatpay-"));
        let form_body = p.request.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v.contains("x-www-form-urlencoded")
        });
        let headers: Vec<(String, String)> = extra
            .into_iter()
            .chain(p.request.headers.iter().cloned())
            .collect();
        let (body, rewritten) = if !body.is_empty() {
            (body.to_vec(), None)
        } else if ops.is_empty() || !form_body {
            (p.request.body.clone(), Some(false))
        } else {
            (rewrite_form(&p.request.body, ops), Some(true))
        };
        let result = self.run(&headers, &p.request.query, &body);
        if rewritten.is_none() || signed_header_touched {
            return;
        }
        match &result {
            Err(e @ (Rejection::BadSignature | Rejection::StaleTimestamp)) => {
                panic!(
                    "a pre-signed request with only unsigned changes was refused ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            }
            Ok(Admission::Event { event, .. }) => match &p.content_key {
                Some(key) => assert_eq!(
                    event.content_key.as_ref(),
                    Some(key),
                    "a second event for the same signed content"
                ),
                None => assert_eq!(event.id, p.id, "another id for the same signed request"),
            },
            _ => {}
        }
    }
}

/// The pre-signed requests of an `_signed` target: typical events and payloads whose values
/// hold `&`, `=`, `%` and `+` (what makes Alipay's signed string ambiguous).
fn presign(name: &str, config: &ProviderConfig, key: Option<&str>) -> Vec<Presigned> {
    let cases: &[(&str, &str)] = match name {
        "alipay" => &[
            ("TRADE_SUCCESS", ""),
            (
                "TRADE_CLOSED",
                r#"{"charset":"gbk","subject":"测试 订单","body":"a&b=c%d+e"}"#,
            ),
            (
                "TRADE_SUCCESS",
                r#"{"sign_type":"RSA","passback_params":"x%3Dy&z","gmt_refund":"2023-11-15 06:13:20"}"#,
            ),
            (
                "",
                r#"{"notify_type":"servicemarket_order_notify","trade_status":null,"msg_method":"alipay.open.servicemarket.order.notify","biz_content":"{\"a\":\"b&c=d\"}"}"#,
            ),
        ],
        "wechatpay_v3" => &[
            ("TRANSACTION.SUCCESS", ""),
            ("REFUND.SUCCESS", ""),
            (
                "MCHTRANSFER.BILL.FINISHED",
                r#"{"mch_id":"1900000001","out_bill_no":"b&1","state":"SUCCESS"}"#,
            ),
        ],
        other => panic!("no pre-signed requests for {other}"),
    };
    let provider = config.build().unwrap_or_else(|e| panic!("{name}: {e:?}"));
    cases
        .iter()
        .enumerate()
        .map(|(i, (event, payload))| {
            let mut o = SampleOptions::new(now());
            o.event = (!event.is_empty()).then(|| event.to_string());
            o.id = Some(format!("presigned{i}"));
            o.payload = (!payload.is_empty()).then(|| payload.as_bytes().to_vec());
            o.private_key = key.map(str::to_string);
            let request = config
                .sample(&o)
                .unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
            let admitted = providers::admit(
                provider.as_ref(),
                &RawRequest {
                    headers: &request.headers,
                    query: &request.query,
                    body: &request.body,
                },
                now(),
            );
            let Ok(Admission::Event { event, .. }) = admitted else {
                panic!("{name} #{i}: the pre-signed request is not an event: {admitted:?}");
            };
            Presigned {
                request,
                id: event.id,
                content_key: event.content_key,
            }
        })
        .collect()
}

/// Rewrites a form body without changing its decoded parameters' signed string, driven by
/// `ops` (one op byte and one argument byte each): reorder, escape differently, add
/// parameters with an empty name or value, and let one parameter swallow the next one of the
/// signed string (`k1=v1&k2=v2` as one value `v1&k2=v2`), issue 11's regrouping.
pub fn rewrite_form(body: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = form::pairs(body).collect();
    let mut escape_all = false;
    for op in ops.chunks(2) {
        let arg = usize::from(*op.get(1).unwrap_or(&0));
        match op[0] % 5 {
            0 if !pairs.is_empty() => {
                let n = arg % pairs.len();
                pairs.rotate_left(n);
            }
            1 => escape_all = !escape_all,
            2 => pairs.push((format!("empty{arg}").into_bytes(), Vec::new())),
            3 => pairs.push((Vec::new(), format!("nameless{arg}").into_bytes())),
            _ => swallow(&mut pairs, arg),
        }
    }
    pairs
        .iter()
        .map(|(k, v)| {
            let enc = |b: &[u8]| match escape_all {
                true => b.iter().map(|c| format!("%{c:02x}")).collect::<String>(),
                false => form::encode(b),
            };
            match v.is_empty() && arg_less(k) {
                true => enc(k),
                false => format!("{}={}", enc(k), enc(v)),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// `empty…` parameters are written without `=` (a bare name), the other empty form.
fn arg_less(k: &[u8]) -> bool {
    k.starts_with(b"empty") && k.len() % 2 == 0
}

/// Parameter `nth` of the signed string (sorted, without `sign`, `sign_type` and empty ones)
/// takes the next one into its value; the next one disappears.
fn swallow(pairs: &mut Vec<(Vec<u8>, Vec<u8>)>, nth: usize) {
    let mut signed: Vec<usize> = (0..pairs.len())
        .filter(|&i| {
            let (k, v) = &pairs[i];
            !k.is_empty() && !v.is_empty() && k != b"sign" && k != b"sign_type"
        })
        .collect();
    signed.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0));
    if signed.len() < 2 {
        return;
    }
    let at = nth % (signed.len() - 1);
    let (first, next) = (signed[at], signed[at + 1]);
    let (k2, v2) = pairs[next].clone();
    let v = &mut pairs[first].1;
    v.push(b'&');
    v.extend_from_slice(&k2);
    v.push(b'=');
    v.extend_from_slice(&v2);
    pairs.remove(next);
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
        "wechatpay_v2" | "wechatpay_v2_hmac" => &[("", "")],
        "dingtalk_event" => &[("user_add_org", ""), ("check_url", "")],
        "dingtalk_robot" => &[("text", "")],
        "feishu" => &[("im.message.receive_v1", ""), ("url_verification", "")],
        "standard" => &[("user.created", "")],
        "hmac" | "hmac_base64" => &[("ping", "")],
        "hmac_paddle" => &[("transaction.completed", "")],
        "token" | "token_query" | "token_basic" => &[("firing", "")],
        "gitlab" => &[("push", ""), ("merge_request", "")],
        "gitee" => &[("push_hooks", ""), ("merge_request_hooks", "")],
        "wecom" => &[("text", ""), ("change_contact", "")],
        _ => &[],
    };
    let mut out = Vec::new();
    if t.presigned.is_some() {
        // `pick ␟ headers ␟ ops ␟ body`: each pre-signed request as signed, one regrouped
        // (op 4 = swallow), one with unsigned headers in front.
        let n = if name == "alipay" { 4 } else { 3 };
        for i in 0..n {
            let mut plain = vec![i as u8];
            plain.extend_from_slice(SEP);
            plain.extend_from_slice(SEP);
            out.push((format!("presigned-{i}"), plain));
        }
        let mut regrouped = vec![0u8];
        regrouped.extend_from_slice(SEP);
        regrouped.extend_from_slice(&[4, 3, 4, 7]);
        regrouped.extend_from_slice(SEP);
        out.push(("regrouped-0".into(), regrouped));
        let mut headers = vec![0u8];
        headers.extend_from_slice(SEP);
        headers.extend_from_slice(b"Request-ID: \x01\nContent-Type: text/plain");
        headers.extend_from_slice(SEP);
        out.push(("unsigned-headers-0".into(), headers));
        return out;
    }
    for (i, (event, payload)) in events.iter().enumerate() {
        let mut signed = vec![1u8];
        signed.extend_from_slice(event.as_bytes());
        signed.extend_from_slice(SEP);
        signed.extend_from_slice(format!("seed-{i}").as_bytes());
        signed.extend_from_slice(SEP);
        signed.extend_from_slice(payload.as_bytes());
        if (t.signed)(1) {
            // The same request replayed with forged unsigned headers in front (issue 11).
            let mut forged = signed.clone();
            forged.extend_from_slice(SEP);
            forged.extend_from_slice(
                format!(
                    "X-GitHub-Delivery: {}\nX-GitHub-Event: Push\nX-Id: a b\nContent-Type: text/plain",
                    "7".repeat(300)
                )
                .as_bytes(),
            );
            out.push((format!("signed-{i}"), signed));
            out.push((format!("signed-{i}-unsigned-headers"), forged));
        }
        if (t.signed)(0) {
            continue;
        }
        let mut o = SampleOptions::new(now());
        o.event = (!event.is_empty()).then(|| event.to_string());
        // `seed0`, not `seed-0`: an Alipay notify_id has no `-` (issue 11), so the alipay raw
        // seed written with `seed-0` was refused by raw_seeds_are_accepted.
        o.id = Some(format!("seed{i}"));
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

/// The RSA providers' pre-signed targets (see the module docs).
pub const PRESIGNED_TARGETS: &[&str] = &["alipay_signed", "wechatpay_v3_signed"];

/// The provider targets: one per `providers::testkit` source, and the pre-signed ones.
pub fn provider_targets() -> Vec<String> {
    testkit::sources()
        .into_iter()
        .map(|s| s.name.to_owned())
        .chain(PRESIGNED_TARGETS.iter().map(|t| t.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_seeds_are_accepted() {
        for name in provider_targets() {
            let name = name.as_str();
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
        for name in provider_targets() {
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            for (seed, data) in seeds(&name) {
                std::fs::write(dir.join(seed), data).unwrap();
            }
        }
        let dir = root.join("config");
        std::fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.toml");
        std::fs::copy(example, dir.join("config.example.toml")).unwrap();
    }
}
