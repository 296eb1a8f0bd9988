use super::config::platform_key;
use super::v2::{v2_content, v2_signature, xml};
use super::v3::{decrypt_resource, v3_message, verify_v3, NONCE, SERIAL, SIGNATURE, TIMESTAMP};
use super::*;
use crate::crypto::{self, Certificate, RsaDigest, RsaSigner};
use crate::sign::SampleOptions;
use crate::Provider;
use serde_json::{Map, Value};
use std::time::Duration;

/// wechatpay-go core/notify/notify_test.go: certificate D7CE59D1F522D701, body, headers.
const WXGO_NOTIFY_CERT: &str = include_str!("../../tests/fixtures/wechatpay/wxgo_notify_cert.pem");
const WXGO_NOTIFY_BODY: &[u8] =
    include_bytes!("../../tests/fixtures/wechatpay/wxgo_notify_body.json");
const WXGO_NOTIFY_TS: &str = "1624523846";
const WXGO_NOTIFY_NONCE: &str = "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz";
const WXGO_NOTIFY_SERIAL: &str = "D7CE59D1F522D701";
const WXGO_NOTIFY_SIG: &str = concat!(
        "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXF",
        "lbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1I",
        "BLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY4",
        "06ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q=="
    );
const WXGO_PLAINTEXT: &str = concat!(
    r#"{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","#,
    r#""create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}"#
);
/// wechatpay-go core/auth/verifiers tests: certificate F5765756002FDD77 and its SPKI.
const WXGO_VERIFIER_CERT: &str =
    include_str!("../../tests/fixtures/wechatpay/wxgo_verifier_cert.pem");
const WXGO_VERIFIER_PUBKEY: &str =
    include_str!("../../tests/fixtures/wechatpay/wxgo_verifier_pubkey.pem");
const WXGO_VERIFIER_SIG: &str = concat!(
    "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9",
    "K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyv",
    "D1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCq",
    "Cv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7D",
    "FD27EpSQEqA8bX9+8m1rLg=="
);
/// wechatpay-java TestConfig: an encrypted platform certificate.
const WXJAVA_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
const WXJAVA_ENC_CERT: &str =
    include_str!("../../tests/fixtures/wechatpay/wxjava_encrypt_certificate.b64");
/// Test-only keys (openssl genpkey, 2048 bits): the platform certificate's key (serial
/// 5157F09E…B8E1, self-signed) and a WeChat Pay public key.
const PLATFORM_KEY: &str = include_str!("../../tests/fixtures/wechatpay/platform_private_key.pem");
const PLATFORM_CERT: &str = include_str!("../../tests/fixtures/wechatpay/platform_cert.pem");
const PLATFORM_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const PUBKEY_KEY: &str = include_str!("../../tests/fixtures/wechatpay/pubkey_private_key.pem");
const PUBKEY: &str = include_str!("../../tests/fixtures/wechatpay/pubkey.pem");
const PUBKEY_ID: &str = "PUB_KEY_ID_0112860886012025062700111588000000";

const APIV3_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";
const APIV3_KEY_2: &str = "Z123456789abcdefghijABCDEFGHIJ02";
const NOW: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn v3_config(apiv3: &[&str]) -> Config {
    Config {
        version: 3,
        mch_id: None,
        apiv3_keys: apiv3.iter().map(|k| Secret::from(*k)).collect(),
        platform_keys: PlatformKeys(vec![
            (PLATFORM_SERIAL.into(), PLATFORM_CERT.into()),
            (PUBKEY_ID.into(), PUBKEY.into()),
        ]),
        api_keys: vec![],
        sign_type: None,
    }
}

fn v2_config(keys: &[&str], sign_type: Option<SignType>) -> Config {
    Config {
        version: 2,
        mch_id: None,
        apiv3_keys: vec![],
        platform_keys: PlatformKeys::default(),
        api_keys: keys.iter().map(|k| Secret::from(*k)).collect(),
        sign_type,
    }
}

fn admit(
    p: &WechatPay,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Admission, Rejection> {
    crate::testing::admit(p, headers, body, now)
}

use crate::testing::event;

fn headers(ts: &str, nonce: &str, sig: &str, serial: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("Wechatpay-Timestamp".into(), ts.into()),
        ("Wechatpay-Nonce".into(), nonce.into()),
        ("Wechatpay-Signature".into(), sig.into()),
        ("Wechatpay-Serial".into(), serial.into()),
    ]
}

/// A v3 notification: `plaintext` encrypted with `apiv3_key`, signed by `pem` at `ts`.
fn notification(
    pem: &str,
    serial: &str,
    ts: u64,
    apiv3_key: &str,
    plaintext: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let ct = crypto::aes_gcm_encrypt(
        apiv3_key.as_bytes(),
        b"0123456789ab",
        b"transaction",
        plaintext.as_bytes(),
    )
    .unwrap();
    let body = format!(
        concat!(
            r#"{{"id":"EV-2018022511223320873","create_time":"2015-05-20T13:29:35+08:00","#,
            r#""resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","#,
            r#""resource":{{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","#,
            r#""ciphertext":"{}","associated_data":"transaction","nonce":"0123456789ab"}}}}"#
        ),
        crypto::b64_encode(&ct)
    );
    signed(pem, serial, ts, body.as_bytes())
}

fn signed(pem: &str, serial: &str, ts: u64, body: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let ts = ts.to_string();
    let sig = RsaSigner::parse_pem(pem)
        .unwrap()
        .sign(RsaDigest::Sha256, &v3_message(&ts, "nonce-1", body));
    (
        headers(&ts, "nonce-1", &crypto::b64_encode(&sig), serial),
        body.to_vec(),
    )
}

const TRANSACTION: &str = r#"{"mchid":"1230000109","out_trade_no":"order-7","transaction_id":"4200000001","trade_state":"SUCCESS","amount":{"total":100}}"#;

// docs/providers/wechatpay.md, vectors: wechatpay-go notify_test, signature, negative variants, decryption.
#[test]
fn official_wxgo_notification() {
    let cert = Certificate::parse_pem(WXGO_NOTIFY_CERT).unwrap();
    assert_eq!(cert.serial_hex, WXGO_NOTIFY_SERIAL);
    let sig = crypto::b64(WXGO_NOTIFY_SIG).unwrap();
    assert!(verify_v3(
        &cert.key,
        WXGO_NOTIFY_TS,
        WXGO_NOTIFY_NONCE,
        WXGO_NOTIFY_BODY,
        &sig
    ));
    // NEGATIVE: one body byte changed; message without its final LF.
    let changed = String::from_utf8(WXGO_NOTIFY_BODY.to_vec())
        .unwrap()
        .replacen("payscore", "paysc0re", 1);
    assert!(!verify_v3(
        &cert.key,
        WXGO_NOTIFY_TS,
        WXGO_NOTIFY_NONCE,
        changed.as_bytes(),
        &sig
    ));
    let mut msg = v3_message(WXGO_NOTIFY_TS, WXGO_NOTIFY_NONCE, WXGO_NOTIFY_BODY);
    msg.pop();
    assert!(!cert.key.verify(RsaDigest::Sha256, &msg, &sig));

    // The whole notification through admit. Its APIv3 key is 16 bytes (AES-128-GCM),
    // which `new` refuses, so the adapter is assembled by hand.
    let p = WechatPay {
        mch_id: Some("1234567890".into()),
        api: Api::V3(V3 {
            apiv3_keys: vec![Secret::from("testMchAPIv3Key0")],
            platform_keys: vec![(WXGO_NOTIFY_SERIAL.into(), cert.key.clone())],
        }),
    };
    let h = headers(
        WXGO_NOTIFY_TS,
        WXGO_NOTIFY_NONCE,
        WXGO_NOTIFY_SIG,
        WXGO_NOTIFY_SERIAL,
    );
    let (e, ack) = event(admit(&p, &h, WXGO_NOTIFY_BODY, at(1_624_523_846 + 60)));
    assert_eq!(e.id, "3119dfba-e649-5eec-ab1e-3412bc4d2e17");
    assert_eq!(e.kind, "wechatpay.payscore.user_open_service");
    assert_eq!(e.provider_event, "PAYSCORE.USER_OPEN_SERVICE");
    assert_eq!(e.time.as_deref(), Some("2021-06-24T16:37:26+08:00"));
    assert_eq!(
        e.subject.as_deref(),
        Some("21640bdbd08e473e828f3206a2741c6e")
    );
    assert_eq!(ack, Reply::empty(204));
    let data = serde_json::to_value(&e.data).unwrap();
    let expected: Value = serde_json::from_str(WXGO_PLAINTEXT).unwrap();
    assert_eq!(data["resource"], expected);
    assert_eq!(data["summary"], "签约成功");
    assert!(!data.to_string().contains("ciphertext"));
    // the same request 300 s later (or earlier) is refused; 299 s is not
    assert!(admit(&p, &h, WXGO_NOTIFY_BODY, at(1_624_523_846 + 299)).is_ok());
    assert_eq!(
        admit(&p, &h, WXGO_NOTIFY_BODY, at(1_624_523_846 + 300)).unwrap_err(),
        Rejection::StaleTimestamp
    );
    assert_eq!(
        admit(&p, &h, WXGO_NOTIFY_BODY, at(1_624_523_846 - 300)).unwrap_err(),
        Rejection::StaleTimestamp
    );

    // the 16-byte-key AEAD vector directly
    let body: Map<String, Value> = serde_json::from_slice(WXGO_NOTIFY_BODY).unwrap();
    let resource = body["resource"].as_object().unwrap();
    let pt = decrypt_resource(&[Secret::from("testMchAPIv3Key0")], resource).unwrap();
    assert_eq!(pt, WXGO_PLAINTEXT.as_bytes());
}

// Vectors: wechatpay-go verifier test, as a certificate and as a public key (PUB_KEY_ID mode).
#[test]
fn official_wxgo_verifier() {
    let cert = Certificate::parse_pem(WXGO_VERIFIER_CERT).unwrap();
    assert_eq!(cert.serial_hex, "F5765756002FDD77");
    let sig = crypto::b64(WXGO_VERIFIER_SIG).unwrap();
    assert!(cert.key.verify(RsaDigest::Sha256, b"source", &sig));
    assert!(!cert.key.verify(RsaDigest::Sha256, b"wrong source", &sig));
    assert!(WXGO_VERIFIER_PUBKEY.starts_with(
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2VCTd91fnUn73Xy9DLvt"
        ));
    let pubkey = platform_key(PUBKEY_ID, WXGO_VERIFIER_PUBKEY).unwrap();
    assert!(pubkey.verify(RsaDigest::Sha256, b"source", &sig));
    assert!(platform_key("F5765756002FDD77", WXGO_VERIFIER_CERT).is_ok());
    assert!(
        platform_key("00f5765756002fdd77", WXGO_VERIFIER_CERT).is_err(),
        "table keys are normalized by the caller"
    );
}

// Vectors: wechatpay-java AEAD vector and encrypted certificate.
#[test]
fn official_wxjava_aead() {
    let key = WXJAVA_KEY.as_bytes();
    let ct = crypto::aes_gcm_encrypt(key, b"uluk4a9R25RW", b"associatedData", b"message").unwrap();
    assert_eq!(crypto::b64_encode(&ct), "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=");
    let resource = |ct: &str, nonce: &str, aad: &str| -> Map<String, Value> {
        serde_json::from_value(serde_json::json!({
                "algorithm": "AEAD_AES_256_GCM", "ciphertext": ct, "nonce": nonce, "associated_data": aad,
            }))
            .unwrap()
    };
    let keys = [Secret::from(WXJAVA_KEY)];
    let r = resource(
        "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=",
        "uluk4a9R25RW",
        "associatedData",
    );
    assert_eq!(decrypt_resource(&keys, &r).unwrap(), b"message");
    let r = resource(
        "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=",
        "uluk4a9R25RW",
        "associateddata",
    );
    assert!(decrypt_resource(&keys, &r).is_err(), "AAD mismatch");

    let r = resource(WXJAVA_ENC_CERT.trim(), "14b16c03dc1b", "certificate");
    let pem = decrypt_resource(&keys, &r).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pem)),
        "8693813ac0735cb54b6e67f25086a5924c103712255b8857049b8e502d564eb4"
    );
    let pem = String::from_utf8(pem).unwrap();
    let cert = Certificate::parse_pem(&pem).unwrap();
    assert_eq!(cert.serial_hex, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
    // as a platform_keys entry: accepted under its serial, refused under another
    let mut c = v3_config(&[APIV3_KEY]);
    c.platform_keys = PlatformKeys(vec![(
        "5dea10ef55877e3cf6c33255c2e7defff7e427ec".into(),
        pem.clone(),
    )]);
    assert!(WechatPay::new(&c).is_ok());
    c.platform_keys = PlatformKeys(vec![(PLATFORM_SERIAL.into(), pem)]);
    let errs = WechatPay::new(&c).err().unwrap();
    assert_eq!(errs[0].key, format!("platform_keys.{PLATFORM_SERIAL}"));
    assert!(errs[0]
        .message
        .contains("5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"));
}

// Vectors: the v2 signature example of the API docs.
#[test]
fn official_v2_signatures() {
    let params: Vec<(String, String)> = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let key = "192006250b4c09247ec02edce69f6a2d";
    assert_eq!(
            v2_content(&params),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        );
    assert_eq!(
        v2_signature(SignType::Md5, &params, key),
        "9A0A8659F005D6984697E2CA0A9CF3B7"
    );
    assert_eq!(
        v2_signature(SignType::HmacSha256, &params, key),
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    );
    // Through admit: verification passes (the example has no transaction id).
    let as_xml = |sign: &str| {
        let mut pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("sign", sign));
        xml(&pairs).into_bytes()
    };
    let p = WechatPay::new(&v2_config(&[key], None)).unwrap();
    for sign in [
        "9A0A8659F005D6984697E2CA0A9CF3B7",
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6",
    ] {
        assert_eq!(
            admit(&p, &[], &as_xml(sign), at(NOW)).unwrap_err(),
            Rejection::Malformed("no transaction_id or out_trade_no")
        );
    }
    let wrong = WechatPay::new(&v2_config(&["192006250b4c09247ec02edce69f6a2e"], None)).unwrap();
    assert_eq!(
        admit(
            &wrong,
            &[],
            &as_xml("9A0A8659F005D6984697E2CA0A9CF3B7"),
            at(NOW)
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn v3_accepts_certificate_and_public_key_entries() {
    let p = WechatPay::new(&v3_config(&[APIV3_KEY])).unwrap();
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, TRANSACTION);
    let (e, ack) = event(admit(&p, &h, &body, at(NOW)));
    assert_eq!(e.id, "EV-2018022511223320873");
    assert_eq!(e.kind, "wechatpay.transaction.success");
    assert_eq!(e.provider_event, "TRANSACTION.SUCCESS");
    assert_eq!(e.subject.as_deref(), Some("order-7"));
    assert_eq!(e.time.as_deref(), Some("2015-05-20T13:29:35+08:00"));
    assert_eq!((ack.status, ack.body.len()), (204, 0));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["resource"]["amount"]["total"], 100);
    assert_eq!(data["resource_type"], "encrypt-resource");
    // the serial is matched case-insensitively and without leading zeros
    let (h, body) = notification(
        PLATFORM_KEY,
        &format!("00{}", PLATFORM_SERIAL.to_lowercase()),
        NOW,
        APIV3_KEY,
        TRANSACTION,
    );
    assert!(admit(&p, &h, &body, at(NOW)).is_ok());
    // the public key entry beside it
    let (h, body) = notification(PUBKEY_KEY, PUBKEY_ID, NOW, APIV3_KEY, TRANSACTION);
    assert!(admit(&p, &h, &body, at(NOW)).is_ok());
    // …but each key only under its own serial
    let (h, body) = notification(PUBKEY_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, TRANSACTION);
    assert_eq!(
        admit(&p, &h, &body, at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
}

/// The decrypted resource is delivered as sent: an integer past 64 bits kept its text (it
/// went through `Value`: 1.8446744073709552e19).
#[test]
fn v3_data_keeps_the_resource_as_decrypted() {
    let p = WechatPay::new(&v3_config(&[APIV3_KEY])).unwrap();
    let plain = r#"{"mchid":"1230000109","out_trade_no":"o1","big":18446744073709551617,"f":0.10000000000000000555}"#;
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, plain);
    let (e, _) = match admit(&p, &h, &body, at(NOW)).unwrap() {
        Admission::Event { event, ack } => (event, ack),
        other => panic!("{other:?}"),
    };
    let data = serde_json::to_string(&e.data).unwrap();
    assert!(data.contains(&format!(r#""resource":{plain}"#)), "{data}");
}

#[test]
fn v3_refusals() {
    let p = WechatPay::new(&v3_config(&[APIV3_KEY])).unwrap();
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, TRANSACTION);
    let go = |h: &[(String, String)], b: &[u8], now: u64| admit(&p, h, b, at(now)).unwrap_err();
    // stale and future
    assert_eq!(go(&h, &body, NOW + 300), Rejection::StaleTimestamp);
    assert_eq!(go(&h, &body, NOW - 300), Rejection::StaleTimestamp);
    assert_eq!(go(&h, &body, u64::MAX / 4), Rejection::StaleTimestamp);
    // A signed timestamp in milliseconds is far in the future, not a malformed header (it
    // was a 400); one before 1970 far in the past.
    let (ms, ms_body) = notification(
        PLATFORM_KEY,
        PLATFORM_SERIAL,
        NOW * 1000,
        APIV3_KEY,
        TRANSACTION,
    );
    assert_eq!(go(&ms, &ms_body, NOW), Rejection::StaleTimestamp);
    assert_eq!(super::v3::parse_timestamp("-5"), Ok(-5));
    assert_eq!(
        super::v3::parse_timestamp("99999999999999999999"),
        Ok(i64::MAX)
    );
    for bad in ["", "-", "1.5", "12a", " 1"] {
        assert!(super::v3::parse_timestamp(bad).is_err(), "{bad:?}");
    }
    // unknown serial
    let mut unknown = h.clone();
    unknown[4].1 = "1DB3F0A2C2DE0E1F".into();
    assert_eq!(go(&unknown, &body, NOW), Rejection::BadSignature);
    // tampered body
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("EV-2018", "EV-2019");
    assert_eq!(go(&h, tampered.as_bytes(), NOW), Rejection::BadSignature);
    // bad base64 signature and the signature probe
    let mut bad = h.clone();
    bad[3].1 = "not base64!".into();
    assert_eq!(go(&bad, &body, NOW), Rejection::BadSignature);
    let mut probe = h.clone();
    probe[3].1 = format!("WECHATPAY/SIGNTEST/{}", h[3].1);
    assert_eq!(go(&probe, &body, NOW), Rejection::Probe);
    assert_eq!(
        Rejection::Probe.status(),
        401,
        "a probe must be answered as a failure"
    );
    // another signature type
    let mut sm2 = h.clone();
    sm2.push((
        "Wechatpay-Signature-Type".into(),
        "WECHATPAY2-SM2-WITH-SM3".into(),
    ));
    assert_eq!(go(&sm2, &body, NOW), Rejection::BadSignature);
    // missing headers, each one
    for (i, name) in [(1, TIMESTAMP), (2, NONCE), (3, SIGNATURE), (4, SERIAL)] {
        let mut missing = h.clone();
        missing.remove(i);
        assert_eq!(go(&missing, &body, NOW), Rejection::missing(name));
    }
    // a timestamp that is not a number; one before 1970 is outside the window
    let mut odd = h.clone();
    odd[1].1 = "1.5".into();
    assert!(matches!(go(&odd, &body, NOW), Rejection::Malformed(_)));
    odd[1].1 = "-1".into();
    assert_eq!(go(&odd, &body, NOW), Rejection::StaleTimestamp);
    // wrong APIv3 key (correctly signed)
    let (h2, b2) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY_2, TRANSACTION);
    assert_eq!(
        go(&h2, &b2, NOW),
        Rejection::Malformed("resource does not decrypt with any configured APIv3 key")
    );
    // truncated ciphertext and bad base64 ciphertext, re-signed
    let text = String::from_utf8(body.clone()).unwrap();
    let ct = text
        .split("\"ciphertext\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    for (replacement, expected) in [
        (
            crypto::b64_encode(&crypto::b64(&ct).unwrap()[..10]),
            "resource ciphertext is truncated",
        ),
        (
            crypto::b64_encode(&crypto::b64(&ct).unwrap()[..20]),
            "resource does not decrypt with any configured APIv3 key",
        ),
        ("@@@".to_owned(), "resource ciphertext is not base64"),
    ] {
        let (h3, b3) = signed(
            PLATFORM_KEY,
            PLATFORM_SERIAL,
            NOW,
            text.replace(&ct, &replacement).as_bytes(),
        );
        assert_eq!(go(&h3, &b3, NOW), Rejection::Malformed(expected));
    }
    // another algorithm; a body that is not JSON
    let (h4, b4) = signed(
        PLATFORM_KEY,
        PLATFORM_SERIAL,
        NOW,
        text.replace("AEAD_AES_256_GCM", "AEAD_SM4_GCM").as_bytes(),
    );
    assert!(matches!(go(&h4, &b4, NOW), Rejection::Malformed(_)));
    let (h5, b5) = signed(PLATFORM_KEY, PLATFORM_SERIAL, NOW, b"not json");
    assert!(matches!(go(&h5, &b5, NOW), Rejection::Malformed(_)));
}

#[test]
fn v3_rotation_and_mch_id() {
    let mut c = v3_config(&[APIV3_KEY, APIV3_KEY_2]);
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY_2, TRANSACTION);
    assert!(admit(&WechatPay::new(&c).unwrap(), &h, &body, at(NOW)).is_ok());
    c.mch_id = Some("1230000109".into());
    assert!(admit(&WechatPay::new(&c).unwrap(), &h, &body, at(NOW)).is_ok());
    c.mch_id = Some("1900000001".into());
    let p = WechatPay::new(&c).unwrap();
    assert_eq!(
        admit(&p, &h, &body, at(NOW)).unwrap_err(),
        Rejection::WrongRecipient("mchid")
    );
    // a partner notification addressed to the sub-merchant
    let partner = r#"{"sp_mchid":"1230000109","sub_mchid":"1900000001","out_trade_no":"o"}"#;
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, partner);
    assert!(admit(&p, &h, &body, at(NOW)).is_ok());
    // A notification whose plaintext names no merchant (complaints) is not another's: it was
    // refused as one.
    let complaint =
        r#"{"complaint_id":"200201820200101080076610000","action_type":"CREATE_COMPLAINT"}"#;
    let (h, body) = notification(PLATFORM_KEY, PLATFORM_SERIAL, NOW, APIV3_KEY, complaint);
    assert!(admit(&p, &h, &body, at(NOW)).is_ok());
}

#[test]
fn v2_accepts_and_refuses() {
    let key = "192006250b4c09247ec02edce69f6a2d";
    let key2 = "0123456789abcdef0123456789abcdef";
    let body = |sign_type: Option<SignType>, k: &str, extra: &[(&str, &str)]| {
        let mut params: Vec<(String, String)> = [
            ("appid", "wx2421b1c4370ec43b"),
            ("mch_id", "10000100"),
            ("out_trade_no", "1409811653"),
            ("result_code", "SUCCESS"),
            ("return_code", "SUCCESS"),
            ("time_end", "20140903131540"),
            ("total_fee", "1"),
            ("transaction_id", "1004400740201409030005092168"),
            ("attach", "a&b <c>"),
        ]
        .iter()
        .filter(|(name, _)| !extra.iter().any(|(e, _)| e == name))
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if sign_type == Some(SignType::HmacSha256) {
            params.push(("sign_type".into(), "HMAC-SHA256".into()));
        }
        let sign = v2_signature(sign_type.unwrap_or(SignType::Md5), &params, k);
        let mut pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("sign", &sign));
        xml(&pairs).into_bytes()
    };
    let p = WechatPay::new(&v2_config(&[key2, key], None)).unwrap();
    let (e, ack) = event(admit(&p, &[], &body(None, key, &[]), at(NOW)));
    assert_eq!(e.id, "1004400740201409030005092168");
    assert_eq!(e.kind, "wechatpay.transaction.success");
    assert_eq!(e.provider_event, "SUCCESS");
    assert_eq!(e.subject.as_deref(), Some("1409811653"));
    assert_eq!(e.time.as_deref(), Some("2014-09-03T13:15:40+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["attach"], "a&b <c>");
    assert!(data.get("sign").is_none());
    assert_eq!(ack.status, 200);
    assert_eq!(ack.content_type, Some(Reply::XML));
    assert_eq!(
            ack.body,
            b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
        );
    // HMAC-SHA256, announced by sign_type; and a failed payment
    let (e, _) = event(admit(
        &p,
        &[],
        &body(Some(SignType::HmacSha256), key, &[("err_code", "X")]),
        at(NOW),
    ));
    assert_eq!(e.kind, "wechatpay.transaction.success");
    let failed = body(None, key, &[("result_code", "FAIL")]);
    let (e, _) = event(admit(&p, &[], &failed, at(NOW)));
    assert_eq!(
        (e.kind.as_str(), e.provider_event.as_str()),
        ("wechatpay.transaction.fail", "FAIL")
    );
    let forged = String::from_utf8(body(None, key, &[]))
        .unwrap()
        .replace("[SUCCESS]]></result", "[FAIL]]></result");
    assert_eq!(
        admit(&p, &[], forged.as_bytes(), at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
    // plain text elements (no CDATA) are read the same way
    let plain = String::from_utf8(body(None, key, &[]))
        .unwrap()
        .replace(
            "<total_fee><![CDATA[1]]></total_fee>",
            "<total_fee>1</total_fee>",
        )
        .replace(
            "<attach><![CDATA[a&b <c>]]></attach>",
            "<attach>a&amp;b &lt;c&gt;</attach>",
        );
    assert!(plain.contains("<total_fee>1</total_fee>") && plain.contains("&amp;"));
    assert!(admit(&p, &[], plain.as_bytes(), at(NOW)).is_ok());
    // wrong key; a pinned sign_type that the message contradicts
    let wrong = WechatPay::new(&v2_config(&[key2], None)).unwrap();
    assert_eq!(
        admit(&wrong, &[], &body(None, key, &[]), at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
    let pinned = WechatPay::new(&v2_config(&[key], Some(SignType::Md5))).unwrap();
    assert_eq!(
        admit(
            &pinned,
            &[],
            &body(Some(SignType::HmacSha256), key, &[]),
            at(NOW)
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    // mch_id check
    let mut c = v2_config(&[key], None);
    c.mch_id = Some("10000999".into());
    let other = WechatPay::new(&c).unwrap();
    assert_eq!(
        admit(&other, &[], &body(None, key, &[]), at(NOW)).unwrap_err(),
        Rejection::WrongRecipient("mchid")
    );
    // missing sign; bad hex; tampered; XML that is not a v2 document
    let unsigned = String::from_utf8(body(None, key, &[])).unwrap();
    let unsigned = unsigned.split("<sign>").next().unwrap().to_owned() + "</xml>";
    assert_eq!(
        admit(&p, &[], unsigned.as_bytes(), at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
    let zz = unsigned.replace("</xml>", "<sign>ZZ</sign></xml>");
    assert_eq!(
        admit(&p, &[], zz.as_bytes(), at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
    let tampered = String::from_utf8(body(None, key, &[]))
        .unwrap()
        .replace("[1]]", "[100]]");
    assert_eq!(
        admit(&p, &[], tampered.as_bytes(), at(NOW)).unwrap_err(),
        Rejection::BadSignature
    );
    for bad in [
        &b"not xml"[..],
        b"<xml><a><b>1</b></a></xml>",
        b"<other><a>1</a></other>",
        b"<xml><a>1</a><a>2</a></xml>",
        b"<!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><a>&e;</a></xml>",
        b"<xml><a>1</a>",
        b"",
    ] {
        assert!(
            matches!(
                admit(&p, &[], bad, at(NOW)).unwrap_err(),
                Rejection::Malformed(_)
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn failures_are_provider_shaped() {
    let v3 = WechatPay::new(&v3_config(&[APIV3_KEY])).unwrap();
    let r = v3.failure(401, "signature does not verify");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        br#"{"code":"FAIL","message":"signature does not verify"}"#
    );
    let long = "x".repeat(100);
    let v: Value = serde_json::from_slice(&v3.failure(400, &long).body).unwrap();
    assert_eq!(v["message"].as_str().unwrap().len(), 64);
    let v2 = WechatPay::new(&v2_config(&["0123456789abcdef0123456789abcdef"], None)).unwrap();
    let r = v2.failure(503, "try later");
    assert_eq!(r.content_type, Some(Reply::XML));
    assert_eq!(
            r.body,
            b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[try later]]></return_msg></xml>"
        );
}

#[test]
fn samples_are_accepted() {
    let c = v3_config(&[APIV3_KEY]);
    let p = WechatPay::new(&c).unwrap();
    let mut o = SampleOptions::new(at(NOW));
    o.private_key = Some(PLATFORM_KEY.into());
    let r = sample(&c, &o).unwrap();
    let (e, _) = event(admit(&p, &r.headers, &r.body, at(NOW)));
    assert_eq!(e.kind, "wechatpay.transaction.success");
    assert_eq!(e.time.as_deref(), Some("2023-11-15T06:13:20+08:00"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["resource"]["trade_state"], "SUCCESS");
    assert_eq!(
        data["resource"]["success_time"],
        "2023-11-15T06:13:18+08:00"
    );
    assert!(e.subject.unwrap().starts_with("hookgate-"));
    // refund, as the public key, with our own id
    o.private_key = Some(PUBKEY_KEY.into());
    o.key_id = Some(PUBKEY_ID.into());
    o.event = Some("REFUND.SUCCESS".into());
    o.id = Some("EV-1".into());
    let r = sample(&c, &o).unwrap();
    let (e, _) = event(admit(&p, &r.headers, &r.body, at(NOW)));
    assert_eq!(
        (e.id.as_str(), e.kind.as_str()),
        ("EV-1", "wechatpay.refund.success")
    );
    assert!(e.subject.unwrap().starts_with("hookgate-"));
    // a payload of our own
    o.payload = Some(br#"{"out_refund_no":"r-1"}"#.to_vec());
    let r = sample(&c, &o).unwrap();
    assert_eq!(
        event(admit(&p, &r.headers, &r.body, at(NOW)))
            .0
            .subject
            .as_deref(),
        Some("r-1")
    );

    for sign_type in [None, Some(SignType::HmacSha256)] {
        let c = v2_config(&["0123456789abcdef0123456789abcdef"], sign_type);
        let mut o = SampleOptions::new(at(NOW));
        o.payload = Some(br#"{"total_fee":1,"is_subscribe":null}"#.to_vec());
        let r = sample(&c, &o).unwrap();
        let (e, _) = event(admit(
            &WechatPay::new(&c).unwrap(),
            &r.headers,
            &r.body,
            at(NOW),
        ));
        assert_eq!(e.kind, "wechatpay.transaction.success");
        assert_eq!(e.time.as_deref(), Some("2023-11-15T06:13:18+08:00"));
        let data = serde_json::to_value(&e.data).unwrap();
        assert_eq!(data["total_fee"], "1");
        assert!(data.get("is_subscribe").is_none());
        assert_eq!(data.get("sign_type").is_some(), sign_type.is_some());
    }
}

#[test]
fn config_errors() {
    let keys = |c: &Config| -> Vec<String> {
        WechatPay::new(c)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.key.into_owned())
            .collect()
    };
    let mut c = v3_config(&[]);
    c.platform_keys = PlatformKeys::default();
    assert_eq!(keys(&c), ["apiv3_keys", "platform_keys"]);
    let mut c = v3_config(&["short", APIV3_KEY]);
    c.platform_keys.0.push(("ABC".into(), "not a key".into()));
    c.platform_keys
        .0
        .push((format!("00{PLATFORM_SERIAL}"), PLATFORM_CERT.into()));
    c.api_keys = vec![Secret::from(APIV3_KEY)];
    c.mch_id = Some(" ".into());
    assert_eq!(
        keys(&c),
        [
            "mch_id",
            "api_keys",
            "apiv3_keys[0]",
            "platform_keys.ABC",
            &format!("platform_keys.00{PLATFORM_SERIAL}")
        ]
    );
    let mut c = v2_config(&[], None);
    c.apiv3_keys = vec![Secret::from(APIV3_KEY)];
    assert_eq!(keys(&c), ["apiv3_keys", "api_keys"]);
    assert_eq!(keys(&v2_config(&["too short"], None)), ["api_keys[0]"]);
    let mut c = v3_config(&[APIV3_KEY]);
    c.version = 4;
    assert_eq!(keys(&c), ["version"]);
    // the error never shows a key
    let errs = WechatPay::new(&v3_config(&["s3cr3t-but-short"]))
        .err()
        .unwrap();
    assert!(!format!("{errs:?}").contains("s3cr3t"));

    // deserialization: defaults, table order, unknown keys, sign_type values
    let c: Config = serde_json::from_str(&format!(
            r#"{{"apiv3_keys":["{APIV3_KEY}"],"platform_keys":{{"{PUBKEY_ID}":{pk:?},"{PLATFORM_SERIAL}":{cert:?}}}}}"#,
            pk = PUBKEY,
            cert = PLATFORM_CERT
        ))
        .unwrap();
    assert_eq!(c.version, 3);
    assert_eq!(c.platform_keys.0[0].0, PUBKEY_ID, "written order is kept");
    assert!(WechatPay::new(&c).is_ok());
    let c: Config =
        serde_json::from_str(r#"{"version":2,"api_keys":["k"],"sign_type":"HMAC-SHA256"}"#)
            .unwrap();
    assert_eq!(c.sign_type, Some(SignType::HmacSha256));
    assert!(serde_json::from_str::<Config>(r#"{"version":2,"sign_type":"SHA1"}"#).is_err());
    assert!(serde_json::from_str::<Config>(r#"{"apiv3_key":"x"}"#).is_err());
}

// Issue 11, class 2: v2 signs `k=v&k=v` with unescaped values, so `total_fee` can swallow
// `transaction_id` under the same signature and the id falls back to `out_trade_no`: a
// new id for the same payment. The content key stays the same, so it is a duplicate; an
// id holding `&` or `=` is refused.
#[test]
fn class2_a_regrouped_request_is_refused() {
    let key = "192006250b4c09247ec02edce69f6a2d";
    let p = WechatPay::new(&v2_config(&[key], None)).unwrap();
    let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let original = params(&[
        ("appid", "wx2421b1c4370ec43b"),
        ("mch_id", "10000100"),
        ("out_trade_no", "1409811653"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("total_fee", "1"),
        ("transaction_id", "1004400740201409030005092168"),
    ]);
    let sign = v2_signature(SignType::Md5, &original, key);
    let xml_of = |ps: &[(String, String)]| {
        let mut pairs: Vec<(&str, &str)> =
            ps.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.push(("sign", &sign));
        xml(&pairs).into_bytes()
    };
    let (e, _) = event(admit(&p, &[], &xml_of(&original), at(NOW)));
    assert_eq!(e.id, "1004400740201409030005092168");
    let content_key = e.content_key.clone().expect("v2 sets a content key");
    assert_eq!(
        content_key,
        crate::shared::sha256_key(v2_content(&original).as_bytes())
    );

    // One element swallowing the next under the same signature is refused: only WeChat
    // Pay's grouping makes the event (`total_fee` taking in `transaction_id` changed the id;
    // `result_code` taking in `return_code` made a success `wechatpay.transaction.fail`).
    for (into, swallowed_name) in [
        ("total_fee", "transaction_id"),
        ("result_code", "return_code"),
    ] {
        let mut swallowed = original.clone();
        let taken = swallowed
            .iter()
            .position(|(k, _)| k == swallowed_name)
            .unwrap();
        let (_, value) = swallowed.remove(taken);
        let at_into = swallowed.iter().position(|(k, _)| k == into).unwrap();
        swallowed[at_into].1 = format!("{}&{swallowed_name}={value}", swallowed[at_into].1);
        assert_eq!(v2_content(&swallowed), v2_content(&original));
        let refused = admit(&p, &[], &xml_of(&swallowed), at(NOW)).unwrap_err();
        assert!(
            matches!(refused, Rejection::Malformed(why) if why.ends_with("(regrouped)")),
            "{into} swallowing {swallowed_name}: {refused:?}"
        );
    }
    // An element named so that it holds the pairs before it: the same signed string.
    let mut by_name = original.clone();
    let (_, result) = by_name.remove(
        by_name
            .iter()
            .position(|(k, _)| k == "result_code")
            .unwrap(),
    );
    let at_return = by_name
        .iter()
        .position(|(k, _)| k == "return_code")
        .unwrap();
    by_name[at_return].0 = format!("result_code={result}&return_code");
    assert_eq!(v2_content(&by_name), v2_content(&original));
    let refused = admit(&p, &[], &xml_of(&by_name), at(NOW)).unwrap_err();
    assert!(
        matches!(refused, Rejection::Malformed(why) if why.ends_with("(regrouped)")),
        "{refused:?}"
    );
    // A merchant's `attach` holding text that reads like an element WeChat Pay sends is the
    // merchant's: the event is the genuine one.
    let mut attached = original.clone();
    attached.push(("attach".into(), "x&result_code=FAIL&mch_id=1".into()));
    let sign3 = v2_signature(SignType::Md5, &attached, key);
    let mut pairs: Vec<(&str, &str)> = attached
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("sign", &sign3));
    let (with_attach, _) = event(admit(&p, &[], xml(&pairs).as_bytes(), at(NOW)));
    assert_eq!((&with_attach.id, &with_attach.kind), (&e.id, &e.kind));

    // An id that swallowed a neighbour is not an id WeChat Pay sends.
    let mut into_id2 = params(&[
        ("appid", "wx2421b1c4370ec43b"),
        ("mch_id", "10000100"),
        ("out_trade_no", "1409811653"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("total_fee", "1"),
        ("transaction_id", "1004400740201409030005092168"),
        ("zeta", "z"),
    ]);
    let sign2 = v2_signature(SignType::Md5, &into_id2, key);
    into_id2.retain(|(k, _)| k != "zeta");
    into_id2[6].1 = "1004400740201409030005092168&zeta=z".into();
    let mut pairs: Vec<(&str, &str)> = into_id2
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("sign", &sign2));
    // (An element of an unknown name swallowed: refused all the same, the id holding `&`.)
    assert_eq!(
        admit(&p, &[], xml(&pairs).as_bytes(), at(NOW)).unwrap_err(),
        Rejection::Malformed("a value the event is made of holds '&' (regrouped)")
    );
}
