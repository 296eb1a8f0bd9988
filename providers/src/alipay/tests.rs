use super::keys::{cert_sn, root_cert_sn};
use super::params::sign_content;
use super::*;
use crate::crypto::RsaSigner;
use crate::sign::SampleOptions;
use crate::{form, Provider};
use std::collections::BTreeMap;

const KEY_V1_B64: &str = include_str!("../../tests/fixtures/alipay/notify_public_key_v1.b64");
const KEY_V2_PEM: &str =
    include_str!("../../tests/fixtures/alipay/alipay-notify-sign-public-key-v2.pem");
const ALIPAY_PUBLIC_CERT: &str =
    include_str!("../../tests/fixtures/alipay/alipayCertPublicKey_RSA2.crt");
const APP_CERT: &str =
    include_str!("../../tests/fixtures/alipay/appCertPublicKey_2021001161683774.crt");
const ROOT_CERT: &str = include_str!("../../tests/fixtures/alipay/alipayRootCert.crt");
/// alipay-sdk-nodejs-all test/alipay.test.ts notifications, form-encoded as sent.
const TRADE_NOTIFY: &[u8] = include_bytes!("../../tests/fixtures/alipay/trade_status_sync.form");
const SERVICEMARKET: &[u8] =
    include_bytes!("../../tests/fixtures/alipay/servicemarket_order_notify.form");
const VERIFY_FAIL: &[u8] = include_bytes!("../../tests/fixtures/alipay/verify_fail.form");
/// Test-only keys (openssl genpkey, 2048 bits) and a self-signed certificate of the first.
const PRIVATE_KEY: &str = include_str!("../../tests/fixtures/alipay/alipay_private_key.pem");
const PRIVATE_KEY_2: &str = include_str!("../../tests/fixtures/alipay/alipay_private_key_2.pem");
const TEST_CERT: &str = include_str!("../../tests/fixtures/alipay/alipay_cert.pem");

const APP_ID: &str = "2021000000000001";

fn config(app_id: &str, keys: &[&str]) -> Config {
    Config {
        app_id: app_id.into(),
        alipay_public_keys: keys.iter().map(|k| k.to_string()).collect(),
        alipay_cert: None,
    }
}

fn alipay(app_id: &str, keys: &[&str]) -> Alipay {
    Alipay::new(&config(app_id, keys)).unwrap()
}

fn public_of(pem: &str) -> String {
    RsaSigner::parse_pem(pem).unwrap().public_spki_b64()
}

fn admit(p: &Alipay, body: &[u8]) -> Result<Admission, Rejection> {
    let headers: Vec<(String, String)> = vec![(
        "Content-Type".into(),
        "application/x-www-form-urlencoded; charset=utf-8".into(),
    )];
    crate::testing::admit(p, &headers, body, SystemTime::UNIX_EPOCH)
}

use crate::testing::event;

/// A form body of `params` (in order) signed V1 with `pem`, values encoded with `enc`.
fn signed_body(
    pem: &str,
    digest: RsaDigest,
    enc: &'static encoding_rs::Encoding,
    params: &[(&str, &str)],
) -> Vec<u8> {
    let encoded: Params = params
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), enc.encode(v).0.into_owned()))
        .collect();
    let sig = RsaSigner::parse_pem(pem)
        .unwrap()
        .sign(digest, &sign_content(&encoded, false));
    let mut body: Vec<String> = encoded
        .iter()
        .map(|(k, v)| format!("{}={}", form::encode(k), form::encode(v)))
        .collect();
    body.push(format!(
        "sign={}",
        form::encode(crypto::b64_encode(&sig).as_bytes())
    ));
    body.join("&").into_bytes()
}

fn trade(app_id: &str, amount: &str) -> Vec<(&'static str, String)> {
    vec![
        ("notify_time", "2024-03-01 10:00:05".into()),
        ("notify_type", "trade_status_sync".into()),
        ("notify_id", "2024030100222100005012345678901234".into()),
        ("app_id", app_id.into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("sign_type", "RSA2".into()),
        ("trade_no", "2024030122001400000000000001".into()),
        ("out_trade_no", "order-1".into()),
        ("trade_status", "TRADE_SUCCESS".into()),
        ("total_amount", amount.into()),
        ("gmt_payment", "2024-03-01 10:00:03".into()),
        ("passback_params", "a%20b+c".into()),
        ("body", "".into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// docs/providers/alipay.md, vectors: the trade_status_sync notification, V1 content.
#[test]
fn official_trade_notify_verifies_v1() {
    let params = parse_params(TRADE_NOTIFY).unwrap();
    let v1 = sign_content(&params, false);
    let text = String::from_utf8(v1.clone()).unwrap();
    assert!(text.starts_with("app_id=2019073166072302&auth_app_id=2019073166072302&buyer_id="));
    assert!(!text.contains("sign_type"));
    assert!(text.contains(r#"&fund_bill_list=[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]&"#));
    let key = public_key(KEY_V1_B64).unwrap();
    let sig = crypto::b64(std::str::from_utf8(param(&params, "sign").unwrap()).unwrap()).unwrap();
    assert!(key.verify(RsaDigest::Sha256, &v1, &sig));
    // NEGATIVE: the same notification with sign_type kept (V2 content) fails.
    assert!(!key.verify(RsaDigest::Sha256, &sign_content(&params, true), &sig));

    let (e, ack) = event(admit(
        &alipay("2019073166072302", &[KEY_V1_B64]),
        TRADE_NOTIFY,
    ));
    assert_eq!(e.id, "2019081500222155624068450559358070");
    assert_eq!(e.kind, "alipay.trade.success");
    assert_eq!(e.provider_event, "TRADE_SUCCESS");
    assert_eq!(e.subject.as_deref(), Some("20190815155618536-564-57"));
    assert_eq!(e.time.as_deref(), Some("2019-08-15T15:56:24+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["subject"], "语雀空间 500人规模");
    assert_eq!(data["gmt_create"], "2019-08-15 15:56:22");
    assert_eq!(data["sign_type"], "RSA2");
    assert_eq!(
        data["fund_bill_list"],
        r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#
    );
    assert!(data.get("sign").is_none());
    assert_eq!(
        data.as_object().unwrap().len(),
        24,
        "all 25 parameters but sign"
    );
    assert_eq!(ack, Reply::text(200, "success"));
    assert_eq!(ack.body, b"success");
}

// Vectors: servicemarket_order_notify, V2 content (sign_type included).
#[test]
fn official_servicemarket_verifies_v2_only() {
    let params = parse_params(SERVICEMARKET).unwrap();
    let key = public_key(KEY_V2_PEM).unwrap();
    let sig = crypto::b64(std::str::from_utf8(param(&params, "sign").unwrap()).unwrap()).unwrap();
    assert!(key.verify(RsaDigest::Sha256, &sign_content(&params, true), &sig));
    assert!(!key.verify(RsaDigest::Sha256, &sign_content(&params, false), &sig));

    let (e, _) = event(admit(
        &alipay("2017122801303261", &[KEY_V2_PEM]),
        SERVICEMARKET,
    ));
    assert_eq!(e.id, "2019030800222102023008121054923345");
    assert_eq!(e.kind, "alipay.open.servicemarket.order.notify");
    assert_eq!(e.provider_event, "alipay.open.servicemarket.order.notify");
    assert_eq!(e.subject, None);
    assert_eq!(e.time.as_deref(), Some("2019-03-08T10:20:23+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["title"], "麦禾商城模版");
    assert_eq!(data["charset"], "UTF-8");
}

// Vectors, negative: "verify fail" fails with both rules; and each official notification
// under the other official key fails.
#[test]
fn official_negative_vectors() {
    let both = alipay("2018121762595097", &[KEY_V1_B64, KEY_V2_PEM]);
    assert_eq!(
        admit(&both, VERIFY_FAIL).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&alipay("2019073166072302", &[KEY_V2_PEM]), TRADE_NOTIFY).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&alipay("2017122801303261", &[KEY_V1_B64]), SERVICEMARKET).unwrap_err(),
        Rejection::BadSignature
    );
}

// Vectors: certificate SNs (informational: not used by notify verification).
#[test]
fn official_cert_sns_and_cert_key() {
    assert_eq!(
        cert_sn(APP_CERT).unwrap(),
        "866efef280dec9137a87d047ac446315"
    );
    assert_eq!(
        cert_sn(ALIPAY_PUBLIC_CERT).unwrap(),
        "7513daaaa48aa3ba2e4018d84402479c"
    );
    assert_eq!(
        root_cert_sn(ROOT_CERT).unwrap(),
        "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    );
    let (_, der) = crypto::pem_decode(ALIPAY_PUBLIC_CERT).unwrap();
    let spki = crypto::b64_encode(&spki_of_certificate(&der).unwrap());
    assert!(spki.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAhoVesfcG"));
    assert!(spki.ends_with("IDAQAB"));
    assert!(Alipay::new(&Config {
        app_id: APP_ID.into(),
        alipay_public_keys: vec![],
        alipay_cert: Some(ALIPAY_PUBLIC_CERT.into()),
    })
    .is_ok());
}

#[test]
fn accepts_signed_trade_and_keeps_values_verbatim() {
    let t = trade(APP_ID, "88.88");
    let body = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&t),
    );
    let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let (e, ack) = event(admit(&p, &body));
    assert_eq!(e.kind, "alipay.trade.success");
    assert_eq!(e.id, "2024030100222100005012345678901234");
    assert_eq!(e.subject.as_deref(), Some("order-1"));
    assert_eq!(e.time.as_deref(), Some("2024-03-01T10:00:03+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["passback_params"], "a%20b+c", "decoded exactly once");
    assert_eq!(
        data.get("body"),
        None,
        "empty values are outside the signature: not delivered"
    );
    assert_eq!(ack.status, 200);
}

#[test]
fn refusals() {
    let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let good = trade(APP_ID, "88.88");
    let body = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&good),
    );
    let text = String::from_utf8(body.clone()).unwrap();

    // tampered amount
    let tampered = text.replace("total_amount=88.88", "total_amount=0.01");
    assert_ne!(tampered, text);
    assert_eq!(
        admit(&p, tampered.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    // an added parameter is signed too
    let added = format!("{text}&extra=1");
    assert_eq!(
        admit(&p, added.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    // wrong key
    let other = alipay(APP_ID, &[&public_of(PRIVATE_KEY_2)]);
    assert_eq!(admit(&other, &body).unwrap_err(), Rejection::BadSignature);
    // wrong app_id, correctly signed
    let foreign = trade("2021000000000002", "88.88");
    let foreign = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&foreign),
    );
    assert_eq!(
        admit(&p, &foreign).unwrap_err(),
        Rejection::WrongRecipient("app_id")
    );
    // missing sign, empty sign, bad base64 sign
    let (unsigned, _) = text.split_once("&sign=").unwrap();
    assert_eq!(
        admit(&p, unsigned.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    let empty = format!("{unsigned}&sign=");
    assert_eq!(
        admit(&p, empty.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    let bad = format!("{unsigned}&sign=%%%not*base64");
    assert_eq!(
        admit(&p, bad.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    // truncated body (the signature loses its tail)
    assert_eq!(
        admit(&p, &body[..body.len() - 10]).unwrap_err(),
        Rejection::BadSignature
    );
    // unsupported sign_type
    let sm2 = text.replace("sign_type=RSA2", "sign_type=SM2");
    assert_eq!(
        admit(&p, sm2.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    // repeated parameter, empty body, JSON body
    let repeated = format!("{text}&total_amount=0.01");
    assert!(matches!(
        admit(&p, repeated.as_bytes()).unwrap_err(),
        Rejection::Malformed(_)
    ));
    assert!(matches!(
        admit(&p, b"").unwrap_err(),
        Rejection::Malformed(_)
    ));
    assert_eq!(
        admit(&p, br#"{"sign":"x"}"#).unwrap_err(),
        Rejection::BadSignature
    );
    // signed, but without notify_id
    let no_id: Vec<_> = good
        .iter()
        .filter(|(k, _)| *k != "notify_id")
        .cloned()
        .collect();
    let no_id = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&no_id),
    );
    assert_eq!(
        admit(&p, &no_id).unwrap_err(),
        Rejection::Malformed("no notify_id")
    );
}

#[test]
fn gbk_body_is_verified_over_gbk_bytes() {
    let mut t = trade(APP_ID, "1.00");
    t.retain(|(k, _)| *k != "charset");
    t.push(("charset", "gbk".into()));
    t.push(("subject", "语雀空间 500人规模".into()));
    let body = signed_body(PRIVATE_KEY, RsaDigest::Sha256, encoding_rs::GBK, &pairs(&t));
    // 语雀 is D3EF C8B8 in GBK: the body carries GBK bytes, percent-encoded.
    assert!(String::from_utf8(body.clone())
        .unwrap()
        .contains("subject=%D3%EF%C8%B8"));
    let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let (e, _) = event(admit(&p, &body));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["subject"], "语雀空间 500人规模");
    assert_eq!(data["charset"], "gbk");
    // The same GBK body read as UTF-8 is not text: verified, then refused as malformed.
    let as_utf8 = String::from_utf8(body)
        .unwrap()
        .replace("charset=gbk", "charset=utf-8");
    let mut t2 = t.clone();
    t2.retain(|(k, _)| *k != "charset");
    t2.push(("charset", "utf-8".into()));
    let mislabelled = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::GBK,
        &pairs(&t2),
    );
    assert_eq!(
        admit(&p, as_utf8.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &mislabelled).unwrap_err(),
        Rejection::Malformed("parameter is not valid in its charset")
    );
}

#[test]
fn legacy_rsa_sha1_and_rotation() {
    let mut t = trade(APP_ID, "5.00");
    t.retain(|(k, _)| *k != "sign_type");
    t.push(("sign_type", "RSA".into()));
    let body = signed_body(
        PRIVATE_KEY_2,
        RsaDigest::Sha1,
        encoding_rs::UTF_8,
        &pairs(&t),
    );
    // the second configured key verifies
    let p = alipay(
        APP_ID,
        &[&public_of(PRIVATE_KEY), &public_of(PRIVATE_KEY_2)],
    );
    assert_eq!(event(admit(&p, &body)).0.kind, "alipay.trade.success");
    // SHA-1 content claimed as RSA2 does not verify
    let as_rsa2 = String::from_utf8(body)
        .unwrap()
        .replace("sign_type=RSA&", "sign_type=RSA2&");
    assert_eq!(
        admit(&p, as_rsa2.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn certificate_mode_accepts() {
    let c = Config {
        app_id: APP_ID.into(),
        alipay_public_keys: vec![],
        alipay_cert: Some(format!("{ALIPAY_PUBLIC_CERT}\n{TEST_CERT}")),
    };
    let p = Alipay::new(&c).unwrap();
    let body = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&trade(APP_ID, "1.00")),
    );
    assert!(admit(&p, &body).is_ok());
    // a certificate also works as an alipay_public_keys entry
    assert!(admit(&alipay(APP_ID, &[TEST_CERT]), &body).is_ok());
}

#[test]
fn event_types() {
    let t = |pairs: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |n: &str| m.get(n).map(String::as_str).filter(|v| !v.is_empty());
        event_type(&get)
    };
    let sync = "trade_status_sync";
    for (status, kind) in [
        ("TRADE_SUCCESS", "alipay.trade.success"),
        ("TRADE_FINISHED", "alipay.trade.finished"),
        ("TRADE_CLOSED", "alipay.trade.closed"),
        ("WAIT_BUYER_PAY", "alipay.trade.wait_buyer_pay"),
    ] {
        let (k, p) = t(&[("notify_type", sync), ("trade_status", status)]).unwrap();
        assert_eq!((k.as_str(), p.as_str()), (kind, status));
    }
    assert_eq!(
        t(&[
            ("msg_method", "alipay.fund.trans.order.changed"),
            ("notify_type", "x")
        ])
        .unwrap(),
        (
            "alipay.fund.trans.order.changed".into(),
            "alipay.fund.trans.order.changed".into()
        )
    );
    assert_eq!(
        t(&[("method", "Open.Mini/Version Audit")]).unwrap().0,
        "alipay.open.mini_version_audit"
    );
    assert_eq!(
        t(&[("notify_type", "Batch Trans..Notify")]).unwrap(),
        (
            "alipay.batch_trans.notify".into(),
            "Batch Trans..Notify".into()
        )
    );
    assert_eq!(
        t(&[("notify_type", sync)]).unwrap().0,
        "alipay.trade_status_sync"
    );
    assert_eq!(t(&[]).unwrap_err(), Rejection::Malformed("no notify_type"));
}

#[test]
fn beijing_times() {
    assert_eq!(
        beijing_rfc3339("2019-08-15 15:56:22", TIME_FORMAT).as_deref(),
        Some("2019-08-15T15:56:22+08:00")
    );
    assert_eq!(beijing_rfc3339("2019-08-15T15:56:22", TIME_FORMAT), None);
    assert_eq!(beijing_rfc3339("", TIME_FORMAT), None);
    // Refund notifications send gmt_refund with milliseconds (it fell back to gmt_payment).
    assert_eq!(
        beijing_rfc3339("2021-07-14 09:51:36.631", TIME_FORMAT).as_deref(),
        Some("2021-07-14T09:51:36.631+08:00")
    );
    assert_eq!(beijing_rfc3339("2021-07-14 09:51:36.", TIME_FORMAT), None);
    // No year RFC 3339 cannot write.
    assert_eq!(beijing_rfc3339("+12345-01-01 00:00:00", TIME_FORMAT), None);
}

#[test]
fn sample_is_accepted() {
    let c = config(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let mut o =
        SampleOptions::new(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    o.private_key = Some(PRIVATE_KEY.into());
    let r = sample(&c, &o).unwrap();
    let p = Alipay::new(&c).unwrap();
    let (e, _) = event(admit(&p, &r.body));
    assert_eq!(e.kind, "alipay.trade.success");
    assert_eq!(e.time.as_deref(), Some("2023-11-15T06:13:18+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["app_id"], APP_ID);
    assert_eq!(data["notify_time"], "2023-11-15 06:13:20");
    assert_eq!(data["subject"], "hookgate 测试订单");

    // overrides, GBK and an id/event of our choosing
    o.id = Some("notify1".into());
    o.event = Some("TRADE_CLOSED".into());
    o.payload =
        Some(br#"{"charset":"gbk","total_amount":"1.00","gmt_payment":null,"n":1}"#.to_vec());
    let r = sample(&c, &o).unwrap();
    assert!(r.headers[0].1.ends_with("charset=gbk"));
    let (e, _) = event(admit(&p, &r.body));
    assert_eq!(
        (e.id.as_str(), e.kind.as_str()),
        ("notify1", "alipay.trade.closed")
    );
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["subject"], "hookgate 测试订单");
    assert_eq!(data["n"], "1");
    assert!(data.get("gmt_payment").is_none());

    o.private_key = None;
    assert!(sample(&c, &o).is_err());
}

#[test]
fn config_errors_name_the_key() {
    let keys = |c: &Config| -> Vec<String> {
        Alipay::new(c)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.key.into_owned())
            .collect()
    };
    assert_eq!(keys(&config("", &[])), ["app_id", "alipay_public_keys"]);
    assert_eq!(
        keys(&config(APP_ID, &[KEY_V1_B64, "not a key", ""])),
        ["alipay_public_keys[1]", "alipay_public_keys[2]"]
    );
    let c = Config {
        app_id: APP_ID.into(),
        alipay_public_keys: vec![],
        alipay_cert: Some(KEY_V2_PEM.into()),
    };
    assert_eq!(keys(&c), ["alipay_cert"]);
    // a 1024-bit key could never verify with ring: refused at start-up
    let short = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDQVoVS9z6QpcV2kYcIyR2AlX+1Wm+DvPyrUSnTqqIihbOzLz+67dFeQSelaraHJYU2wnL1hXtOJUOQe2XPjLpMKdMiggC/zc36+a7HxiVLHi5OAHI12Zo4YaVFW3EXtmkR5zQWGl2Et15gjzTbi44dHnwbXOUA3ThsPxKIBiOUzQIDAQAB";
    let errs = Alipay::new(&config(APP_ID, &[short])).err().unwrap();
    assert!(errs[0].message.contains("1024 bits"), "{}", errs[0].message);
    // unknown keys are refused by serde
    assert!(serde_json::from_str::<Config>(r#"{"app_id":"1","alipay_public_key":"x"}"#).is_err());
    let c: Config = serde_json::from_str(r#"{"app_id":"1","alipay_public_keys":["k"]}"#).unwrap();
    assert_eq!(c.alipay_public_keys, ["k"]);
}

#[test]
fn failure_body_is_fail() {
    let p = alipay(APP_ID, &[KEY_V1_B64]);
    assert_eq!(
        p.failure(401, "signature does not verify"),
        Reply::text(401, "fail")
    );
}

/// `swallower`'s value takes `&swallowed=value` of the next parameter (in sorted order),
/// which disappears: the signed string is the same, so the signature still verifies.
fn regroup(
    params: &[(&'static str, String)],
    swallower: &str,
    swallowed: &str,
) -> Vec<(&'static str, String)> {
    let taken = params
        .iter()
        .find(|(k, _)| *k == swallowed)
        .unwrap()
        .1
        .clone();
    params
        .iter()
        .filter(|(k, _)| *k != swallowed)
        .map(|(k, v)| match *k == swallower {
            true => (*k, format!("{v}&{swallowed}={taken}")),
            false => (*k, v.clone()),
        })
        .collect()
}

// Issue 11, class 2: `k=v&k=v` with unescaped values is ambiguous; a regrouped request
// must not become a second event.
#[test]
fn class2_a_regrouped_request_is_refused() {
    let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let t = trade(APP_ID, "88.88");
    let key = |params: &[(&'static str, String)]| {
        let encoded: Params = pairs(params)
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        crate::shared::sha256_key(&sign_content(&encoded, false))
    };
    let original = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&t),
    );
    let (e, _) = event(admit(&p, &original));
    assert_eq!(e.content_key.as_deref(), Some(key(&t).as_str()));
    assert!(e.content_key.as_deref().unwrap().starts_with("sha256:"));
    assert_eq!(e.content_key.as_ref().unwrap().len(), 7 + 64);

    // Regrouped under the same signature, one value swallowing the parameter after it: the
    // request is refused, so only Alipay's own grouping makes the event (a copy that came
    // first was published as another type, `alipay.trade.success_version_1.0`, with another
    // id or without `out_trade_no`, and the genuine notification was its duplicate; found by
    // a review).
    let regrouped =
        |r: Rejection| matches!(r, Rejection::Malformed(why) if why.ends_with("(regrouped)"));
    for (into, swallowed) in [
        ("notify_id", "notify_time"),
        ("gmt_payment", "notify_id"),
        ("trade_no", "trade_status"),
        ("notify_type", "out_trade_no"),
        ("trade_status", "version"),
    ] {
        let r = regroup(&t, into, swallowed);
        assert_eq!(key(&r), key(&t), "the signed string is unchanged");
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&r),
        );
        let refused = admit(&p, &body).unwrap_err();
        assert!(
            regrouped(refused.clone()),
            "{into} swallowing {swallowed}: {refused:?}"
        );
    }
    // A name sent percent-encoded can hold the pairs before it (`trade_no=T&trade_status`
    // with the value TRADE_SUCCESS): the same signed string, and no value holds `&`.
    let mut by_name: Vec<(String, String)> =
        t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let at_no = by_name.iter().position(|(k, _)| k == "trade_no").unwrap();
    let (_, trade_no) = by_name.remove(at_no);
    let at_status = by_name
        .iter()
        .position(|(k, _)| k == "trade_status")
        .unwrap();
    by_name[at_status].0 = format!("trade_no={trade_no}&trade_status");
    let encoded: Params = by_name
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(
        crate::shared::sha256_key(&sign_content(&encoded, false)),
        key(&t),
        "the signed string is unchanged"
    );
    let named: Vec<(&str, &str)> = by_name
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = signed_body(PRIVATE_KEY, RsaDigest::Sha256, encoding_rs::UTF_8, &named);
    let refused = admit(&p, &body).unwrap_err();
    assert!(regrouped(refused.clone()), "{refused:?}");
    // A merchant's free text holding `&` is the merchant's: text that reads like another
    // parameter (one the notification sends, or an unknown name) is left as it is.
    for subject in [
        "Tom&Jerry=1 & more&x",
        "Gift&out_trade_no=VICTIM&trade_status=TRADE_CLOSED",
    ] {
        let mut with_amp = t.clone();
        with_amp.push(("subject", subject.into()));
        let body = signed_body(
            PRIVATE_KEY,
            RsaDigest::Sha256,
            encoding_rs::UTF_8,
            &pairs(&with_amp),
        );
        let (e2, _) = event(admit(&p, &body));
        let v: serde_json::Value = serde_json::to_value(&e2.data).unwrap();
        assert_eq!(v["subject"], subject);
        assert_eq!((&e2.kind, &e2.subject), (&e.kind, &e.subject));
    }
}

// Issue 11, class 2: parameters with an empty name or value are not in the signed
// string, so they are not Alipay's and stay out of `data`.
#[test]
fn class2_params_outside_the_signature_stay_out_of_data() {
    let p = alipay(APP_ID, &[&public_of(PRIVATE_KEY)]);
    let t = trade(APP_ID, "88.88");
    let mut body = signed_body(
        PRIVATE_KEY,
        RsaDigest::Sha256,
        encoding_rs::UTF_8,
        &pairs(&t),
    );
    body.extend_from_slice(b"&=injected&injected=&flag");
    let (e, _) = event(admit(&p, &body));
    let data = serde_json::to_value(&e.data).unwrap();
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert!(
        !keys
            .iter()
            .any(|k| k.is_empty() || *k == "injected" || *k == "flag" || *k == "body"),
        "{keys:?}"
    );
    assert!(!serde_json::to_string(&data).unwrap().contains("injected"));
}
