use super::event::{aes_key_bytes, decrypt, event_signature, success_reply_body};
use super::robot::robot_sign;
use super::sample::event_push;
use super::*;
use crate::sign::{SampleOptions, SampleRequest};
use crate::{crypto, Provider, Reply};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, UNIX_EPOCH};

// docs/providers/dingtalk.md, vectors (open-dingtalk/DingTalk-Callback-Crypto DingCallbackCrypto3.py).
const TOKEN: &str = "mryue";
const AES_KEY: &str = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7";
const OWNER: &str = "ding6ccabc44d2c8d38b";
const TS: &str = "1608001896814";
const NONCE_V: &str = "WL4PK6yA";
const ENCRYPT: &str = "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3";
const SIG: &str = "03044561471240d4a14bb09372dfcfd4fd0e40cb";

fn event_config(token: &str, aes_key: &str, owner: &str) -> Config {
    Config {
        mode: Mode::Event,
        token: Some(Secret::from(token)),
        aes_key: Some(Secret::from(aes_key)),
        owner_key: Some(owner.into()),
        app_secrets: None,
    }
}

fn official() -> DingTalk {
    DingTalk::new(&event_config(TOKEN, AES_KEY, OWNER)).unwrap()
}

fn robot(secrets: &[&str]) -> DingTalk {
    DingTalk::new(&robot_config(secrets)).unwrap()
}

fn robot_config(secrets: &[&str]) -> Config {
    Config {
        mode: Mode::Robot,
        token: None,
        aes_key: None,
        owner_key: None,
        app_secrets: Some(secrets.iter().map(|s| Secret::from(*s)).collect()),
    }
}

fn key() -> [u8; 32] {
    aes_key_bytes(AES_KEY).unwrap()
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn admit_q(p: &DingTalk, query: &str, body: &[u8]) -> Result<Admission, Rejection> {
    let headers: Vec<(String, String)> = vec![];
    p.admit(
        &RawRequest {
            headers: &headers,
            query,
            body,
        },
        at_ms(1_608_001_896_814),
    )
}

fn admit_sample(p: &DingTalk, r: &SampleRequest, now: SystemTime) -> Result<Admission, Rejection> {
    p.admit(
        &RawRequest {
            headers: &r.headers,
            query: &r.query,
            body: &r.body,
        },
        now,
    )
}

fn body_of(encrypt: &str) -> Vec<u8> {
    format!(r#"{{"encrypt":"{encrypt}"}}"#).into_bytes()
}

fn signed_query(token: &str, encrypt: &str) -> String {
    format!(
        "msg_signature={}&timeStamp={TS}&nonce={NONCE_V}",
        event_signature(token, TS, NONCE_V, encrypt)
    )
}

/// Raw AES over an already padded buffer: for ciphertexts with broken padding.
fn encrypt_raw(plain: &[u8]) -> String {
    let k = key();
    crypto::b64_encode(&crypto::aes_cbc_encrypt(&k, &k[..16], plain).unwrap())
}

// OFFICIAL: msg_signature of the SDK self-test.
#[test]
fn official_signature_vector() {
    assert_eq!(event_signature(TOKEN, TS, NONCE_V, ENCRYPT), SIG);
    assert_ne!(event_signature("other", TS, NONCE_V, ENCRYPT), SIG);
}

// OFFICIAL: decryption gives check_url, L = 25, pad = 31, owner trailer.
#[test]
fn official_decrypt_vector() {
    let k = key();
    let raw = crypto::aes_cbc_decrypt(&k, &k[..16], &crypto::b64(ENCRYPT).unwrap()).unwrap();
    assert_eq!(*raw.last().unwrap(), 31, "pad value");
    assert_eq!(&raw[16..20], &25u32.to_be_bytes());
    let (msg, owner) = crate::msgcrypt::open(&k, ENCRYPT).unwrap();
    assert_eq!(msg, br#"{"EventType":"check_url"}"#);
    assert_eq!(owner, OWNER.as_bytes());
    assert_eq!(decrypt(&k, OWNER, ENCRYPT).unwrap(), msg);
    assert_eq!(
        decrypt(&k, "dingother", ENCRYPT).unwrap_err(),
        Rejection::WrongRecipient("owner_key")
    );
}

// NEGATIVE: a strict decoder rejects the console key; ours does not.
#[test]
fn negative_vector_strict_base64_rejects_key() {
    assert!(crypto::b64(&format!("{AES_KEY}=")).is_none());
    assert_eq!(aes_key_bytes(AES_KEY).unwrap().len(), 32);
}

// SELF: the encrypted success reply with a fixed prefix and nonce.
#[test]
fn self_vector_reply() {
    let body = success_reply_body(TOKEN, &key(), OWNER, TS, "abcdefgh", b"0123456789abcdef");
    assert_eq!(
        body,
        r#"{"msg_signature":"942f3b998eb2a6186991a5267e9ed762c15c0dfa","timeStamp":"1608001896814","nonce":"abcdefgh","encrypt":"IJtyRhe3IwDdDbVy9KT2PQsXn9Di6CEK7IwoL8L4CQ+xgriQ8Y0sMuvHw0Vv9Ce+6cMGlc1MMsHA2a+tCiq9IA=="}"#
    );
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, OWNER, body.as_bytes()).unwrap(),
        "success"
    );
}

// SELF: robot sign.
#[test]
fn self_vector_robot_sign() {
    assert_eq!(
        robot_sign("1577262236757", "testAppSecret"),
        "Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4="
    );
}

#[test]
fn official_check_url_push_is_answered_not_published() {
    let query = format!("msg_signature={SIG}&timeStamp={TS}&nonce={NONCE_V}");
    let Admission::Control(reply) = admit_q(&official(), &query, &body_of(ENCRYPT)).unwrap() else {
        panic!("check_url must be a control probe")
    };
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, Some("application/json"));
    // DingTalk's side: verify msg_signature and decrypt the reply.
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, OWNER, &reply.body).unwrap(),
        "success"
    );
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["timeStamp"], TS);
    assert_eq!(v["nonce"].as_str().unwrap().len(), 8);
    // The current query names are accepted too.
    let query = format!("signature={SIG}&timestamp={TS}&nonce={NONCE_V}");
    assert!(matches!(
        admit_q(&official(), &query, &body_of(ENCRYPT)).unwrap(),
        Admission::Control(_)
    ));
}

// Plays DingTalk: encrypts, signs, pushes, then checks the reply as DingTalk would.
#[test]
fn event_round_trip_and_retry_keeps_the_id() {
    let msg = br#"{"EventType":"bpms_instance_change","processInstanceId":"a171de6c-8bd6-4d3d","corpId":"ding9f50b15bccd16741","TimeStamp":"1608001896814","type":"start"}"#;
    let p = official();
    let first = event_push(
        TOKEN,
        &key(),
        OWNER,
        TS,
        "n0nce001",
        b"AAAAAAAAAAAAAAAA",
        msg,
    );
    let retry = event_push(
        TOKEN,
        &key(),
        OWNER,
        "1608001899000",
        "n0nce002",
        b"BBBBBBBBBBBBBBBB",
        msg,
    );
    assert_ne!(first.body, retry.body, "a retry is encrypted afresh");
    let now = at_ms(1_608_001_900_000);
    let Admission::Event { event, ack } = admit_sample(&p, &first, now).unwrap() else {
        panic!("expected an event")
    };
    let expected_id = format!("sha256:{}", hex::encode(Sha256::digest(msg)));
    assert_eq!(event.id, expected_id);
    assert_eq!(event.kind, "dingtalk.bpms_instance_change");
    assert_eq!(event.provider_event, "bpms_instance_change");
    assert_eq!(event.subject.as_deref(), Some("a171de6c-8bd6-4d3d"));
    assert_eq!(event.time.as_deref(), Some("2020-12-15T03:11:36.814Z"));
    assert_eq!(serde_json::to_string(&event.data).unwrap().as_bytes(), msg);
    assert_eq!(ack.status, 200);
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, OWNER, &ack.body).unwrap(),
        "success"
    );
    let v: Value = serde_json::from_slice(&ack.body).unwrap();
    assert_eq!(
        v["timeStamp"], TS,
        "the reply echoes the request's timestamp"
    );

    let Admission::Event {
        event: again,
        ack: ack2,
    } = admit_sample(&p, &retry, now).unwrap()
    else {
        panic!("expected an event")
    };
    assert_eq!(again.id, expected_id, "a retry is the same event");
    assert_ne!(
        ack.body, ack2.body,
        "every reply has a fresh prefix and nonce"
    );
}

#[test]
fn event_fields_corp_and_seconds() {
    let msg = br#"{"EventType":"user_add_org","TimeStamp":1608001896,"CorpId":"dingcorp","UserId":["u1"]}"#;
    let r = event_push(
        TOKEN,
        &key(),
        OWNER,
        "1608001896",
        "abc",
        b"0123456789abcdef",
        msg,
    );
    let Admission::Event { event, .. } = admit_sample(&official(), &r, at_ms(0)).unwrap() else {
        panic!()
    };
    assert_eq!(event.kind, "dingtalk.user_add_org");
    assert_eq!(event.subject.as_deref(), Some("dingcorp"));
    assert_eq!(event.time.as_deref(), Some("2020-12-15T03:11:36.000Z"));
    // An odd EventType stays a single type segment.
    let msg = br#"{"EventType":"Chat.Add-Member"}"#;
    let r = event_push(TOKEN, &key(), OWNER, TS, "abc", b"0123456789abcdef", msg);
    let Admission::Event { event, .. } = admit_sample(&official(), &r, at_ms(0)).unwrap() else {
        panic!()
    };
    assert_eq!(event.kind, "dingtalk.chat_add_member");
    assert_eq!(event.provider_event, "Chat.Add-Member");
    assert_eq!(event.subject, None);
    assert_eq!(event.time, None);
}

#[test]
fn event_refusals() {
    let good_query = format!("msg_signature={SIG}&timeStamp={TS}&nonce={NONCE_V}");
    let body = body_of(ENCRYPT);
    // bad signature
    let q = good_query.replace(SIG, "03044561471240d4a14bb09372dfcfd4fd0e40cc");
    assert_eq!(
        admit_q(&official(), &q, &body).unwrap_err(),
        Rejection::BadSignature
    );
    // wrong token configured: the signature no longer matches
    let p = DingTalk::new(&event_config("other", AES_KEY, OWNER)).unwrap();
    assert_eq!(
        admit_q(&p, &good_query, &body).unwrap_err(),
        Rejection::BadSignature
    );
    // tampered timestamp or ciphertext without re-signing
    let q = good_query.replace(TS, "1608001896815");
    assert_eq!(
        admit_q(&official(), &q, &body).unwrap_err(),
        Rejection::BadSignature
    );
    let tampered = body_of(&ENCRYPT.replace("0vJi", "0vJj"));
    assert_eq!(
        admit_q(&official(), &good_query, &tampered).unwrap_err(),
        Rejection::BadSignature
    );
    // wrong owner key configured
    let p = DingTalk::new(&event_config(TOKEN, AES_KEY, "dingAnotherApp")).unwrap();
    assert_eq!(
        admit_q(&p, &good_query, &body).unwrap_err(),
        Rejection::WrongRecipient("owner_key")
    );
    // wrong aes_key configured: signature fine, ciphertext does not decrypt
    let p = DingTalk::new(&event_config(
        TOKEN,
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        OWNER,
    ))
    .unwrap();
    assert!(matches!(
        admit_q(&p, &good_query, &body).unwrap_err(),
        Rejection::Malformed(_)
    ));
    // corrupted ciphertext, re-signed (first byte flips the length prefix)
    let mut ct = crypto::b64(ENCRYPT).unwrap();
    ct[0] ^= 0x80;
    let corrupt = crypto::b64_encode(&ct);
    assert_eq!(
        admit_q(
            &official(),
            &signed_query(TOKEN, &corrupt),
            &body_of(&corrupt)
        )
        .unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // bad padding, re-signed: pad byte 33 > 32, and inconsistent pad bytes
    for pad in [[33u8; 32], {
        let mut p = [4u8; 32];
        p[29] = 3;
        p
    }] {
        let mut plain = Vec::new();
        plain.extend_from_slice(b"0123456789abcdef");
        plain.extend_from_slice(&2u32.to_be_bytes());
        plain.extend_from_slice(b"{}");
        plain.extend_from_slice(b"ding6ccabc");
        plain.extend_from_slice(&pad);
        let enc = encrypt_raw(&plain);
        assert_eq!(
            admit_q(&official(), &signed_query(TOKEN, &enc), &body_of(&enc)).unwrap_err(),
            Rejection::Malformed("encrypt does not decrypt")
        );
    }
    // length prefix beyond the buffer, re-signed
    let mut plain = b"0123456789abcdef".to_vec();
    plain.extend_from_slice(&1000u32.to_be_bytes());
    let enc = encrypt_raw(&crypto::pkcs7_pad(&plain, 32));
    assert_eq!(
        admit_q(&official(), &signed_query(TOKEN, &enc), &body_of(&enc)).unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // truncated base64, re-signed
    let truncated = &ENCRYPT[..ENCRYPT.len() - 3];
    assert_eq!(
        admit_q(
            &official(),
            &signed_query(TOKEN, truncated),
            &body_of(truncated)
        )
        .unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // truncated to whole blocks (valid base64, 2 of 4 blocks): padding no longer matches
    let ct = crypto::b64(ENCRYPT).unwrap();
    let short = crypto::b64_encode(&ct[..32]);
    assert_eq!(
        admit_q(&official(), &signed_query(TOKEN, &short), &body_of(&short)).unwrap_err(),
        Rejection::Malformed("encrypt does not decrypt")
    );
    // missing query parameters, each one
    for (drop, name) in [
        (format!("msg_signature={SIG}&"), "signature"),
        (format!("timeStamp={TS}&"), "timestamp"),
        (format!("&nonce={NONCE_V}"), "nonce"),
    ] {
        let q = good_query.replace(&drop, "");
        assert_eq!(
            admit_q(&official(), &q, &body).unwrap_err(),
            Rejection::missing(name),
            "{q}"
        );
    }
    let q = good_query.replace(NONCE_V, "");
    assert_eq!(
        admit_q(&official(), &q, &body).unwrap_err(),
        Rejection::missing("nonce"),
        "empty counts as missing"
    );
    // not the encrypted body
    for bad in [&b"not json"[..], br#"{"foo":"bar"}"#, br#"{"encrypt":1}"#] {
        assert!(matches!(
            admit_q(&official(), &good_query, bad).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }
    // verified and decrypted, but not a DingTalk event
    for msg in [&b"[1,2]"[..], br#"{"foo":1}"#, br#"{"EventType":""}"#] {
        let r = event_push(TOKEN, &key(), OWNER, TS, "abc", b"0123456789abcdef", msg);
        assert!(matches!(
            admit_sample(&official(), &r, at_ms(0)).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }
}

#[test]
fn decrypt_reply_checks_like_dingtalk() {
    let body = success_reply_body(TOKEN, &key(), OWNER, TS, "abcdefgh", b"0123456789abcdef");
    let tampered = body.replace("\"abcdefgh\"", "\"abcdefgi\"");
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, OWNER, tampered.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        decrypt_reply("other", AES_KEY, OWNER, body.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, "dingother", body.as_bytes()).unwrap_err(),
        Rejection::WrongRecipient("owner_key")
    );
    assert!(decrypt_reply(TOKEN, AES_KEY, OWNER, b"{}").is_err());
}

fn robot_headers(ts: &str, sign: Option<String>) -> Vec<(String, String)> {
    let mut h = vec![(
        "Content-Type".to_string(),
        "application/json; charset=utf-8".to_string(),
    )];
    h.push(("timestamp".into(), ts.into()));
    if let Some(s) = sign {
        h.push(("sign".into(), s));
    }
    h
}

fn admit_robot(
    p: &DingTalk,
    headers: Vec<(String, String)>,
    body: &[u8],
    now_ms: u64,
) -> Result<Admission, Rejection> {
    p.admit(
        &RawRequest {
            headers: &headers,
            query: "",
            body,
        },
        at_ms(now_ms),
    )
}

const ROBOT_BODY: &[u8] = br#"{"conversationId":"cid123==","msgId":"msgABC","createAt":1577262236000,"conversationType":"2","senderNick":"Zhang San","text":{"content":"hi"},"msgtype":"richText"}"#;

#[test]
fn robot_accepts_signed_message() {
    let ts = "1577262236757";
    let p = robot(&["old-secret", "testAppSecret"]);
    let h = robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
    let Admission::Event { event, ack } =
        admit_robot(&p, h, ROBOT_BODY, 1_577_262_236_757).unwrap()
    else {
        panic!("expected an event")
    };
    assert_eq!(event.id, "msgABC");
    assert_eq!(event.kind, "dingtalk.robot.richtext");
    assert_eq!(event.provider_event, "richText");
    assert_eq!(event.subject.as_deref(), Some("cid123=="));
    assert_eq!(event.time.as_deref(), Some("2019-12-25T08:23:56.000Z"));
    assert_eq!(
        serde_json::to_string(&event.data).unwrap().as_bytes(),
        ROBOT_BODY
    );
    assert_eq!(ack, Reply::json(200, &serde_json::json!({})));
    assert_eq!(ack.body, b"{}");
}

#[test]
fn robot_refusals() {
    let ts = "1577262236757";
    let t: u64 = 1_577_262_236_757;
    let p = robot(&["testAppSecret"]);
    let good = || robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
    // SELF vector value accepted as is
    let h = robot_headers(
        ts,
        Some("Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4=".into()),
    );
    assert!(admit_robot(&p, h, ROBOT_BODY, t).is_ok());
    // window edges: exactly 1 h either way is fine, 1 ms more is not
    assert!(admit_robot(&p, good(), ROBOT_BODY, t + 3_600_000).is_ok());
    assert!(admit_robot(&p, good(), ROBOT_BODY, t - 3_600_000).is_ok());
    assert_eq!(
        admit_robot(&p, good(), ROBOT_BODY, t + 3_600_001).unwrap_err(),
        Rejection::StaleTimestamp,
        "stale"
    );
    assert_eq!(
        admit_robot(&p, good(), ROBOT_BODY, t - 3_600_001).unwrap_err(),
        Rejection::StaleTimestamp,
        "future"
    );
    // wrong secret
    let h = robot_headers(ts, Some(robot_sign(ts, "otherSecret")));
    assert_eq!(
        admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
        Rejection::BadSignature
    );
    // sign made for another timestamp
    let h = robot_headers(ts, Some(robot_sign("1577262236758", "testAppSecret")));
    assert_eq!(
        admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
        Rejection::BadSignature
    );
    // bad and truncated base64
    for bad in [
        "not base64!",
        "Dc2jA7l8d6QkQ44GaOlQvDzR5W1cS7UBLolNXURn+v4",
        "Dc2jA7l8",
    ] {
        let h = robot_headers(ts, Some(bad.into()));
        assert_eq!(
            admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
            Rejection::BadSignature,
            "{bad}"
        );
    }
    // missing headers
    assert_eq!(
        admit_robot(&p, robot_headers(ts, None), ROBOT_BODY, t).unwrap_err(),
        Rejection::missing("sign")
    );
    let mut h = good();
    h.retain(|(k, _)| k != "timestamp");
    assert_eq!(
        admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
        Rejection::missing("timestamp")
    );
    // a timestamp that is no number
    let h = robot_headers("yesterday", Some(robot_sign("yesterday", "testAppSecret")));
    assert_eq!(
        admit_robot(&p, h, ROBOT_BODY, t).unwrap_err(),
        Rejection::StaleTimestamp
    );
    // signed headers, body not a robot message
    for bad in [&b"nope"[..], br#"{"msgtype":"text"}"#, br#"{"msgId":"m"}"#] {
        assert!(matches!(
            admit_robot(&p, good(), bad, t).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }
}

#[test]
fn samples_are_accepted() {
    let now = SystemTime::now();
    // event mode, default plaintext
    let c = event_config(TOKEN, AES_KEY, OWNER);
    let p = DingTalk::new(&c).unwrap();
    let r = sample(&c, &SampleOptions::new(now)).unwrap();
    assert!(r.query.starts_with("signature="));
    let Admission::Event { event, ack } = admit_sample(&p, &r, now).unwrap() else {
        panic!("expected an event")
    };
    assert_eq!(event.kind, "dingtalk.user_add_org");
    assert_eq!(event.subject.as_deref(), Some("ding9f50b15bccd16741"));
    assert!(event.time.is_some());
    assert_eq!(
        decrypt_reply(TOKEN, AES_KEY, OWNER, &ack.body).unwrap(),
        "success"
    );
    // event mode, check_url and a given payload
    let mut o = SampleOptions::new(now);
    o.event = Some("check_url".into());
    let r = sample(&c, &o).unwrap();
    assert!(matches!(
        admit_sample(&p, &r, now).unwrap(),
        Admission::Control(_)
    ));
    o.payload = Some(br#"{"EventType":"org_dept_create","DeptId":[1]}"#.to_vec());
    let r = sample(&c, &o).unwrap();
    let Admission::Event { event, .. } = admit_sample(&p, &r, now).unwrap() else {
        panic!()
    };
    assert_eq!(event.kind, "dingtalk.org_dept_create");
    // robot mode
    let c = robot_config(&["s3cr3t"]);
    let p = DingTalk::new(&c).unwrap();
    let mut o = SampleOptions::new(now);
    o.id = Some("msg42".into());
    let r = sample(&c, &o).unwrap();
    let Admission::Event { event, .. } = admit_sample(&p, &r, now).unwrap() else {
        panic!()
    };
    assert_eq!(event.id, "msg42");
    assert_eq!(event.kind, "dingtalk.robot.text");
    assert!(event.subject.is_some() && event.time.is_some());
    // a config error is reported by sample too
    assert!(sample(&robot_config(&[]), &o).is_err());
}

#[test]
fn config_errors_are_all_reported() {
    let none = Config {
        mode: Mode::Event,
        token: None,
        aes_key: None,
        owner_key: None,
        app_secrets: Some(vec![Secret::from("x")]),
    };
    let keys: Vec<_> = DingTalk::new(&none)
        .err()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["app_secrets", "token", "aes_key", "owner_key"]);
    // empty values fail closed
    let keys: Vec<_> = DingTalk::new(&event_config(" ", AES_KEY, ""))
        .err()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["token", "owner_key"]);
    // aes_key shape
    for bad in [
        "",
        &AES_KEY[..42],
        "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7=",
        "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ec+/",
    ] {
        assert_eq!(
            DingTalk::new(&event_config(TOKEN, bad, OWNER))
                .err()
                .unwrap()[0]
                .key,
            "aes_key",
            "{bad}"
        );
    }
    // robot mode
    let mut c = robot_config(&[]);
    assert_eq!(DingTalk::new(&c).err().unwrap()[0].key, "app_secrets");
    c.app_secrets = Some(vec![Secret::from("")]);
    assert_eq!(DingTalk::new(&c).err().unwrap()[0].key, "app_secrets");
    c.app_secrets = None;
    c.token = Some(Secret::from(TOKEN));
    let keys: Vec<_> = DingTalk::new(&c)
        .err()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["token", "app_secrets"]);
}

#[test]
fn config_deserializes_with_default_mode_and_denies_unknown_keys() {
    let c: Config = serde_json::from_str(&format!(
        r#"{{"token":"{TOKEN}","aes_key":"{AES_KEY}","owner_key":"{OWNER}"}}"#
    ))
    .unwrap();
    assert_eq!(c.mode, Mode::Event);
    assert!(DingTalk::new(&c).is_ok());
    let c: Config = serde_json::from_str(r#"{"mode":"robot","app_secrets":["a","b"]}"#).unwrap();
    assert!(DingTalk::new(&c).is_ok());
    assert!(serde_json::from_str::<Config>(r#"{"mode":"robot","app_secret":["a"]}"#).is_err());
    assert!(serde_json::from_str::<Config>(r#"{"mode":"stream"}"#).is_err());
    assert_eq!(
        format!("{:?}", c.app_secrets),
        "Some([[redacted], [redacted]])"
    );
}

// Issue 11, class 1: DingTalk does not sign the robot body, so msgId (the dedup key),
// msgtype (the type) and conversationId are taken only in the shape DingTalk sends.
#[test]
fn class1_unsigned_robot_body_values_are_bounded() {
    let ts = "1577262236757";
    let p = robot(&["testAppSecret"]);
    let send = |body: &serde_json::Value| {
        let h = robot_headers(ts, Some(robot_sign(ts, "testAppSecret")));
        admit_robot(&p, h, body.to_string().as_bytes(), 1_577_262_236_757)
    };
    let good: Value = serde_json::from_slice(ROBOT_BODY).unwrap();
    assert!(send(&good).is_ok());
    let long = "m".repeat(crate::MAX_UNSIGNED_BYTES + 1);
    for (field, value) in [
        ("msgId", long.as_str()),
        ("msgId", "msg\nABC"),
        ("msgId", "msg ABC"),
        ("msgtype", "text.x"),
        ("msgtype", "Text\u{7f}"),
        ("msgtype", long.as_str()),
        ("conversationId", long.as_str()),
        ("conversationId", "cid\r\n1"),
    ] {
        let mut b = good.clone();
        b[field] = Value::from(value);
        let r = send(&b).unwrap_err();
        assert!(
            matches!(r, Rejection::Malformed(_)),
            "{field}={value:?}: {r:?}"
        );
        assert_eq!(r.status(), 400);
    }
    let mut b = good.clone();
    b["msgId"] = Value::from("m".repeat(crate::MAX_UNSIGNED_BYTES));
    assert!(send(&b).is_ok(), "200 bytes is still an id");
}
