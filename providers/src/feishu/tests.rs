use super::sample::encrypt;
use super::*;
use crate::shared::encrypt_field;
use crate::sign::SampleOptions;
use sha1::{Digest, Sha1};
use std::time::{Duration, UNIX_EPOCH};

const KEY: &str = "test key";
const HELLO: &str = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=";
const URL_CHECK_ENC: &str = "AAECAwQFBgcICQoLDA0ODw9mLTIAZS9jAmGTQ1wAhHpnBHVL2wRjH9rPunQdQC1vLjsckayA10kZ8cPwtb62F8rC7JprUPR/4S2aZihfR+p8npX7UzWPithZmfKIPZgE";
const URL_CHECK_PLAIN: &str =
    r#"{"challenge":"ajls384kdjx98XX","token":"xxxxxx","type":"url_verification"}"#;
const TOKEN: &str = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV";
const IV: &[u8; 16] = b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f";

const EVENT_V2: &str = r#"{"schema":"2.0","header":{"event_id":"5e3702a84e847582be8db7fb73283c02","event_type":"im.message.receive_v1","create_time":"1608725989000","token":"rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV","app_id":"cli_9e28cb7ba56a100e","tenant_key":"2ca1d211f64f6438"},"event":{"message":{"chat_id":"oc_5ad11d72b830411d72b836c20","message_id":"om_1"}}}"#;

fn feishu(token: &str, key: Option<&str>) -> Feishu {
    feishu_cards(token, key, false)
}

fn feishu_cards(token: &str, key: Option<&str>, legacy_card_callbacks: bool) -> Feishu {
    Feishu::new(&Config {
        verification_token: Secret::from(token),
        encrypt_key: key.map(Secret::from),
        legacy_card_callbacks,
    })
    .unwrap()
}

fn admit(p: &Feishu, headers: &[(String, String)], body: &[u8]) -> Result<Admission, Rejection> {
    crate::testing::admit(
        p,
        headers,
        body,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
}

fn signed(key: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-Lark-Request-Timestamp".into(), "1700000000".into()),
        ("X-Lark-Request-Nonce".into(), "nonce-abc".into()),
        (
            "X-Lark-Signature".into(),
            signature("1700000000", "nonce-abc", key, body),
        ),
    ]
}

fn enc_body(key: &str, plain: &[u8]) -> Vec<u8> {
    format!(r#"{{"encrypt":"{}"}}"#, encrypt(key, IV, plain)).into_bytes()
}

fn event(a: Admission) -> (Event, Reply) {
    match a {
        Admission::Event { event, ack } => (event, ack),
        Admission::Control(r) => panic!("expected an event, got control {r:?}"),
    }
}

fn control(a: Admission) -> Reply {
    match a {
        Admission::Control(r) => r,
        Admission::Event { event, .. } => panic!("expected control, got {event:?}"),
    }
}

// OFFICIAL: Encrypt Key "test key" → "hello world" (pad 5).
#[test]
fn official_decrypt_vector() {
    assert_eq!(decrypt(KEY, HELLO).unwrap(), b"hello world");
    let buf = crypto::b64(HELLO).unwrap();
    let raw = crypto::aes_cbc_decrypt(&aes_key(KEY), &buf[..16], &buf[16..]).unwrap();
    assert_eq!(&raw[11..], &[5u8; 5]);
}

// NEGATIVE: another key does not give "hello world".
#[test]
fn negative_vector_other_key() {
    assert_ne!(
        decrypt("other key", HELLO).as_deref(),
        Some(&b"hello world"[..])
    );
}

// SELF: X-Lark-Signature.
#[test]
fn self_vector_signature() {
    let body = format!(r#"{{"encrypt":"{HELLO}"}}"#);
    assert_eq!(
        signature("1700000000", "nonce-abc", KEY, body.as_bytes()),
        "651c41e37268e4e00e77ccde1b4b9d16e624029b82bafa51660c3a382d4f0588"
    );
}

// SELF: legacy card signature.
#[test]
fn self_vector_legacy_card_signature() {
    assert_eq!(
        legacy_card_signature(
            "1700000000",
            "nonce-abc",
            "verification-token-xyz",
            br#"{"open_id":"ou_x","action":{"tag":"button","value":{"k":"v"}}}"#
        ),
        "6eea715e0225c13a9ca60a3090c30d39ea2052d5"
    );
}

// SELF: encrypted url_verification with IV 00..0f, decrypted, encrypted back, answered.
#[test]
fn self_vector_encrypted_url_verification() {
    assert_eq!(
        decrypt(KEY, URL_CHECK_ENC).unwrap(),
        URL_CHECK_PLAIN.as_bytes()
    );
    assert_eq!(encrypt(KEY, IV, URL_CHECK_PLAIN.as_bytes()), URL_CHECK_ENC);
    let body = format!(r#"{{"encrypt":"{URL_CHECK_ENC}"}}"#);
    let expected = Reply {
        status: 200,
        content_type: Some("application/json"),
        body: br#"{"challenge":"ajls384kdjx98XX"}"#.to_vec(),
    };
    let p = feishu("xxxxxx", Some(KEY));
    // without signature headers: the token authenticates it
    let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    assert_eq!(
        control(admit(&p, &headers, body.as_bytes()).unwrap()),
        expected
    );
    // signed
    let headers = signed(KEY, body.as_bytes());
    assert_eq!(
        control(admit(&p, &headers, body.as_bytes()).unwrap()),
        expected
    );
    // wrong token, signed or not
    let p = feishu("yyyyyy", Some(KEY));
    assert_eq!(
        admit(&p, &headers, body.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(
        admit(&p, &[], body.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    // wrong Encrypt Key: not a url_verification we can read, and unsigned
    let p = feishu("xxxxxx", Some("other key"));
    assert_eq!(
        admit(&p, &[], body.as_bytes()).unwrap_err(),
        Rejection::missing(SIGNATURE)
    );
}

#[test]
fn plain_url_verification() {
    let p = feishu("xxxxxx", None);
    let reply = control(admit(&p, &[], URL_CHECK_PLAIN.as_bytes()).unwrap());
    assert_eq!(reply.body, br#"{"challenge":"ajls384kdjx98XX"}"#);
    assert_eq!(reply.status, 200);
    assert_eq!(
        admit(&feishu("other", None), &[], URL_CHECK_PLAIN.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    // a plain one on an encrypted source (card request URL) still needs the token
    assert!(admit(
        &feishu("xxxxxx", Some(KEY)),
        &[],
        URL_CHECK_PLAIN.as_bytes()
    )
    .is_ok());
    assert_eq!(
        admit(&feishu("other", Some(KEY)), &[], URL_CHECK_PLAIN.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    let no_token = br#"{"challenge":"c","type":"url_verification"}"#;
    assert_eq!(
        admit(&feishu("xxxxxx", None), &[], no_token).unwrap_err(),
        Rejection::BadToken
    );
}

fn check_v2(event: &Event) {
    assert_eq!(event.id, "5e3702a84e847582be8db7fb73283c02");
    assert_eq!(event.kind, "feishu.im.message.receive_v1");
    assert_eq!(event.provider_event, "im.message.receive_v1");
    assert_eq!(event.time.as_deref(), Some("2020-12-23T12:19:49.000Z"));
    assert_eq!(
        event.subject.as_deref(),
        Some("oc_5ad11d72b830411d72b836c20")
    );
    let data = serde_json::to_string(&event.data).unwrap();
    assert!(!data.contains(TOKEN), "the token is a secret");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["header"]["app_id"], "cli_9e28cb7ba56a100e");
    assert!(v["header"].get("token").is_none());
    assert_eq!(v["event"]["message"]["message_id"], "om_1");
}

#[test]
fn schema_2_plain_and_encrypted() {
    let (e, ack) = event(admit(&feishu(TOKEN, None), &[], EVENT_V2.as_bytes()).unwrap());
    check_v2(&e);
    assert_eq!(ack, Reply::json(200, &serde_json::json!({})));
    assert_eq!(ack.body, b"{}");

    // plays Feishu: encrypt, sign, send
    let body = enc_body("my encrypt key", EVENT_V2.as_bytes());
    let p = feishu(TOKEN, Some("my encrypt key"));
    let (e, ack) = event(admit(&p, &signed("my encrypt key", &body), &body).unwrap());
    check_v2(&e);
    assert_eq!(ack.body, b"{}");
}

/// The payload is delivered as sent but for the token: an integer past 64 bits and a long
/// fraction kept their text (they went through `Value`: 1.8446744073709552e19).
#[test]
fn data_keeps_every_value_as_sent_but_the_token() {
    let big = r#""n":18446744073709551617,"f":0.10000000000000000555,"m":-9223372036854775809"#;
    let v2 = EVENT_V2.replacen(r#""event":{"#, &format!(r#""event":{{{big},"#), 1);
    let body = enc_body("my encrypt key", v2.as_bytes());
    let p = feishu(TOKEN, Some("my encrypt key"));
    let (e, _) = event(admit(&p, &signed("my encrypt key", &body), &body).unwrap());
    let data = serde_json::to_string(&e.data).unwrap();
    assert!(data.contains(big), "{data}");
    assert!(!data.contains(TOKEN), "{data}");
    let v1 = format!(
        r#"{{"uuid":"u1","token":"{TOKEN}","ts":"1502199207","type":"event_callback","event":{{"type":"message",{big}}}}}"#
    );
    let (e, _) = event(admit(&feishu(TOKEN, None), &[], v1.as_bytes()).unwrap());
    let data = serde_json::to_string(&e.data).unwrap();
    assert!(data.contains(big) && !data.contains(TOKEN), "{data}");
}

#[test]
fn schema_1_event() {
    let body = format!(
        r#"{{"uuid":"41b5f371157e3d5341b38b20396e77a3","token":"{TOKEN}","ts":"1502199207.7171419","type":"event_callback","event":{{"type":"message","app_id":"cli_x","tenant_key":"t","open_chat_id":"oc_abc","text":"hi"}}}}"#
    );
    let (e, _) = event(admit(&feishu(TOKEN, None), &[], body.as_bytes()).unwrap());
    assert_eq!(e.id, "41b5f371157e3d5341b38b20396e77a3");
    assert_eq!(e.kind, "feishu.message");
    assert_eq!(e.provider_event, "message");
    assert_eq!(e.time.as_deref(), Some("2017-08-08T13:33:27.717Z"));
    assert_eq!(e.subject.as_deref(), Some("oc_abc"));
    let v: Value = serde_json::to_value(&e.data).unwrap();
    assert!(v.get("token").is_none());
    assert_eq!(v["event"]["text"], "hi");
    // wrong token
    let bad = body.replace(TOKEN, "nope");
    assert_eq!(
        admit(&feishu(TOKEN, None), &[], bad.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
}

#[test]
fn card_action_trigger_is_published() {
    let plain = format!(
        r#"{{"schema":"2.0","header":{{"event_id":"f7984f25108f8137722bb63cee927e66","token":"{TOKEN}","create_time":"1700000000123","event_type":"card.action.trigger","tenant_key":"t","app_id":"cli_x"}},"event":{{"operator":{{"open_id":"ou_x"}},"token":"c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2","action":{{"value":{{"k":"v"}},"tag":"button"}},"context":{{"open_message_id":"om_x","open_chat_id":"oc_card"}}}}}}"#
    );
    let body = enc_body(KEY, plain.as_bytes());
    let p = feishu(TOKEN, Some(KEY));
    let (e, ack) = event(admit(&p, &signed(KEY, &body), &body).unwrap());
    assert_eq!(e.kind, "feishu.card.action.trigger");
    assert_eq!(e.id, "f7984f25108f8137722bb63cee927e66");
    assert_eq!(e.subject.as_deref(), Some("oc_card"));
    assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.123Z"));
    assert_eq!(ack.body, b"{}");
    let v: Value = serde_json::to_value(&e.data).unwrap();
    assert_eq!(
        v["event"]["token"], "c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2",
        "the card update token is the consumer's"
    );
}

#[test]
fn legacy_card_callback() {
    let body = br#"{"open_id":"ou_x","open_message_id":"om_y","token":"c-upd","action":{"tag":"button","value":{"k":"v"}}}"#;
    let headers = vec![
        (
            "X-Lark-Request-Timestamp".to_string(),
            "1700000000".to_string(),
        ),
        ("X-Lark-Request-Nonce".to_string(), "nonce-abc".to_string()),
        (
            "X-Lark-Signature".to_string(),
            legacy_card_signature("1700000000", "nonce-abc", "verification-token-xyz", body),
        ),
    ];
    for (key, opt_in) in [(None, false), (Some(KEY), true)] {
        let p = feishu_cards("verification-token-xyz", key, opt_in);
        let (e, ack) = event(admit(&p, &headers, body).unwrap());
        assert_eq!(e.kind, "feishu.card.action.trigger_v1");
        assert_eq!(e.subject.as_deref(), Some("om_y"));
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert!(e.id.starts_with("sha256:") && e.id.len() == 71);
        assert_eq!(ack.body, b"{}");
        let v: Value = serde_json::to_value(&e.data).unwrap();
        assert_eq!(v["token"], "c-upd");
    }
    // another token, or a changed body
    let p = feishu("other", None);
    assert_eq!(
        admit(&p, &headers, body).unwrap_err(),
        Rejection::BadSignature
    );
    let p = feishu("verification-token-xyz", None);
    assert_eq!(
        admit(&p, &headers, br#"{"open_id":"ou_z","action":{}}"#).unwrap_err(),
        Rejection::BadSignature
    );
    let mut h = headers.clone();
    h.remove(1);
    assert_eq!(admit(&p, &h, body).unwrap_err(), Rejection::missing(NONCE));
    // Nothing separates timestamp and nonce in the signature: characters moved from one
    // header to the other still verify, and are the same event, not a new one.
    let p = feishu_cards("verification-token-xyz", None, false);
    let (original, _) = event(admit(&p, &headers, body).unwrap());
    let mut split = headers.clone();
    split[0].1 = "170000000".into();
    split[1].1 = "0nonce-abc".into();
    let (moved, _) = event(admit(&p, &split, body).unwrap());
    assert_eq!(moved.id, original.id);
}

#[test]
fn encrypted_refusals() {
    let p = feishu(TOKEN, Some(KEY));
    let body = enc_body(KEY, EVENT_V2.as_bytes());
    let good = signed(KEY, &body);
    assert!(admit(&p, &good, &body).is_ok());
    // no signature: an event needs one
    let unsigned = vec![good[0].clone()];
    assert_eq!(
        admit(&p, &unsigned, &body).unwrap_err(),
        Rejection::missing(SIGNATURE)
    );
    // missing timestamp or nonce next to a signature
    for (i, name) in [(1, TIMESTAMP), (2, NONCE)] {
        let mut h = good.clone();
        h.remove(i);
        assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::missing(name));
    }
    // bad signature, signature under another key, tampered body, other timestamp
    let mut h = good.clone();
    h[3].1 = "00".repeat(32);
    assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
    let h = signed("other key", &body);
    assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
    let mut tampered = body.clone();
    let n = tampered.len();
    tampered[n - 5] ^= 1;
    assert_eq!(
        admit(&p, &good, &tampered).unwrap_err(),
        Rejection::BadSignature
    );
    let mut h = good.clone();
    h[1].1 = "1700000001".into();
    assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
    let mut h = good.clone();
    h[3].1 = "not hex".into();
    assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
    // signed, wrong Verification Token inside
    let other = EVENT_V2.replace(TOKEN, "another-token");
    let b = enc_body(KEY, other.as_bytes());
    assert_eq!(
        admit(&p, &signed(KEY, &b), &b).unwrap_err(),
        Rejection::BadToken
    );
    // signed with the Encrypt Key, but encrypted under another key (bad padding)
    let b = enc_body("other key", EVENT_V2.as_bytes());
    assert_eq!(
        admit(&p, &signed(KEY, &b), &b).unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // signed, corrupted ciphertext: last block flipped, padding breaks
    let mut raw = crypto::b64(&encrypt_field(&body).unwrap()).unwrap();
    let n = raw.len();
    raw[n - 1] ^= 0xff;
    let b = format!(r#"{{"encrypt":"{}"}}"#, crypto::b64_encode(&raw)).into_bytes();
    assert_eq!(
        admit(&p, &signed(KEY, &b), &b).unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // signed, bad padding made on purpose (pad byte 0, pad byte 17, mixed)
    for pad in [
        [0u8; 16],
        [17u8; 16],
        *b"\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x02\x03\x03",
    ] {
        let mut plain = b"{\"a\":1234567890}".to_vec();
        plain.extend_from_slice(&pad);
        let ct = crypto::aes_cbc_encrypt(&aes_key(KEY), IV, &plain).unwrap();
        let mut buf = IV.to_vec();
        buf.extend_from_slice(&ct);
        let b = format!(r#"{{"encrypt":"{}"}}"#, crypto::b64_encode(&buf)).into_bytes();
        assert_eq!(
            admit(&p, &signed(KEY, &b), &b).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
    }
    // signed, truncated base64 and truncated ciphertext
    let enc = encrypt_field(&body).unwrap();
    for bad in [&enc[..enc.len() - 2], &enc[..20], ""] {
        let b = format!(r#"{{"encrypt":"{bad}"}}"#).into_bytes();
        assert_eq!(
            admit(&p, &signed(KEY, &b), &b).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt"),
            "{bad}"
        );
    }
    // signed, but a plain body
    assert_eq!(
        admit(&p, &signed(KEY, EVENT_V2.as_bytes()), EVENT_V2.as_bytes()).unwrap_err(),
        Rejection::Malformed("body is not {\"encrypt\":…}")
    );
    // unsigned: the same refusal whatever the ciphertext holds (no padding oracle)
    for b in [
        enc_body(KEY, EVENT_V2.as_bytes()),
        enc_body("other key", EVENT_V2.as_bytes()),
        b"{\"encrypt\":\"AAAA\"}".to_vec(),
        EVENT_V2.as_bytes().to_vec(),
        b"garbage".to_vec(),
    ] {
        assert_eq!(
            admit(&p, &unsigned, &b).unwrap_err(),
            Rejection::missing(SIGNATURE)
        );
    }
    // a wrong signature does not open the url_verification path to events either
    let mut h = good.clone();
    h[3].1 = "11".repeat(32);
    assert_eq!(admit(&p, &h, &body).unwrap_err(), Rejection::BadSignature);
}

#[test]
fn plain_refusals() {
    let p = feishu(TOKEN, None);
    // an encrypted body needs an encrypt_key
    let body = enc_body(KEY, EVENT_V2.as_bytes());
    assert!(matches!(
        admit(&p, &signed(KEY, &body), &body).unwrap_err(),
        Rejection::Malformed(_)
    ));
    // wrong or missing token
    let other = EVENT_V2.replace(TOKEN, "another-token");
    assert_eq!(
        admit(&p, &[], other.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    let no_token = EVENT_V2.replace(&format!(r#""token":"{TOKEN}","#), "");
    assert_eq!(
        admit(&p, &[], no_token.as_bytes()).unwrap_err(),
        Rejection::BadToken
    );
    // not an event
    for bad in [
        "nope",
        "[]",
        r#"{"foo":1}"#,
        r#"{"schema":"3.0","header":{}}"#,
        r#"{"schema":"2.0"}"#,
    ] {
        assert!(
            matches!(
                admit(&p, &[], bad.as_bytes()).unwrap_err(),
                Rejection::Malformed(_)
            ),
            "{bad}"
        );
    }
    // token fine, id missing
    let no_id = EVENT_V2.replace(r#""event_id":"5e3702a84e847582be8db7fb73283c02","#, "");
    assert!(matches!(
        admit(&p, &[], no_id.as_bytes()).unwrap_err(),
        Rejection::Malformed(_)
    ));
}

#[test]
fn samples_are_accepted() {
    let now = SystemTime::now();
    for key in [None, Some("sample encrypt key")] {
        let c = Config {
            verification_token: Secret::from(TOKEN),
            encrypt_key: key.map(Secret::from),
            legacy_card_callbacks: false,
        };
        let p = Feishu::new(&c).unwrap();
        let mut o = SampleOptions::new(now);
        o.id = Some("evt-1".into());
        let r = sample(&c, &o).unwrap();
        assert_eq!(r.headers.len(), if key.is_some() { 4 } else { 1 });
        let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
        assert_eq!(e.id, "evt-1");
        assert_eq!(e.kind, "feishu.im.message.receive_v1");
        assert_eq!(e.subject.as_deref(), Some("oc_5ad11d72b830411d72b836c20"));
        assert!(!serde_json::to_string(&e.data).unwrap().contains(TOKEN));

        o.event = Some("card.action.trigger".into());
        let r = sample(&c, &o).unwrap();
        let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
        assert_eq!(e.kind, "feishu.card.action.trigger");

        o.event = Some("contact.user.created_v3".into());
        o.payload = Some(br#"{"object":{"open_id":"ou_new"}}"#.to_vec());
        let r = sample(&c, &o).unwrap();
        let (e, _) = event(admit(&p, &r.headers, &r.body).unwrap());
        assert_eq!(e.kind, "feishu.contact.user.created_v3");
        assert_eq!(e.subject, None);

        o.event = Some("url_verification".into());
        let r = sample(&c, &o).unwrap();
        let reply = control(admit(&p, &r.headers, &r.body).unwrap());
        assert!(reply.body.starts_with(br#"{"challenge":""#));
    }
}

#[test]
fn config_errors() {
    let errs = Feishu::new(&Config {
        verification_token: Secret::from(" "),
        encrypt_key: Some(Secret::from("")),
        legacy_card_callbacks: false,
    })
    .err()
    .unwrap();
    let keys: Vec<_> = errs.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, ["verification_token", "encrypt_key"]);
    assert!(serde_json::from_str::<Config>(r#"{"encrypt_key":"k"}"#).is_err());
    assert!(
        serde_json::from_str::<Config>(r#"{"verification_token":"t","encryptKey":"k"}"#).is_err()
    );
    let c: Config =
        serde_json::from_str(r#"{"verification_token":"tok-9f8e","encrypt_key":"key-7d6c"}"#)
            .unwrap();
    assert!(Feishu::new(&c).is_ok());
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("tok-9f8e") && !debug.contains("key-7d6c"),
        "{debug}"
    );
    assert!(sample(
        &Config {
            verification_token: Secret::from(""),
            encrypt_key: None,
            legacy_card_callbacks: false,
        },
        &SampleOptions::new(SystemTime::now())
    )
    .is_err());
}

// Issue 11, class 3: with an Encrypt Key, a 40-digit signature is not a way around the
// Encrypt Key signature: the SHA-1 card check over the Verification Token (which every
// plain event carries) is taken only when asked for.
#[test]
fn class3_encrypt_key_does_not_fall_back_to_legacy_cards() {
    let body = br#"{"open_id":"ou_x","open_message_id":"om_y","action":{"tag":"button","value":{"k":"v"}}}"#;
    let headers = vec![
        (TIMESTAMP.to_string(), "1700000000".to_string()),
        (NONCE.to_string(), "nonce-abc".to_string()),
        (
            SIGNATURE.to_string(),
            legacy_card_signature("1700000000", "nonce-abc", "verification-token-xyz", body),
        ),
    ];
    let strict = feishu("verification-token-xyz", Some(KEY));
    assert_eq!(
        admit(&strict, &headers, body).unwrap_err(),
        Rejection::BadSignature
    );
    let opted_in = feishu_cards("verification-token-xyz", Some(KEY), true);
    assert!(admit(&opted_in, &headers, body).is_ok());
    let plain = feishu("verification-token-xyz", None);
    assert!(admit(&plain, &headers, body).is_ok());
    let c: Config = serde_json::from_str(
        r#"{"verification_token":"t","encrypt_key":"k","legacy_card_callbacks":true}"#,
    )
    .unwrap();
    assert!(c.legacy_card_callbacks);
}

/// `hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ body))`: legacy message-card callbacks.
fn legacy_card_signature(
    timestamp: &str,
    nonce: &str,
    verification_token: &str,
    body: &[u8],
) -> String {
    let mut h = Sha1::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(verification_token.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}
