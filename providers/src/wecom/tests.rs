use super::*;
use crate::testing::event;
use crate::Provider;
use std::time::Duration;

// WeCom's official WXBizMsgCrypt sample (企业微信 "加解密方案说明" and the SDKs' Sample files).
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP_ID: &str = "wx5823bf96d3bd56c7";
// 验证回调URL: GET /cgi-bin/wxpush?msg_signature=…&timestamp=…&nonce=…&echostr=…
const VERIFY_SIG: &str = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3";
const VERIFY_TS: &str = "1409659589";
const VERIFY_NONCE: &str = "263014780";
const VERIFY_ECHOSTR: &str =
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
/// The plaintext of `VERIFY_ECHOSTR`, as implementations of the sample print it.
const VERIFY_PLAIN: &str = "1616140317555161061";
// 对用户回复的消息解密: POST with msg_signature, timestamp, nonce.
const POST_SIG: &str = "477715d11cdb4164915debcba66cb864d751f3e6";
const POST_TS: &str = "1409659813";
const POST_NONCE: &str = "1372623149";
const POST_BODY: &str = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>";

fn config(token: &str, corp_id: &str) -> Config {
    Config {
        token: Secret::from(token),
        encoding_aes_key: Secret::from(AES_KEY),
        corp_id: corp_id.into(),
    }
}

fn official() -> Wecom {
    Wecom::new(&config(TOKEN, CORP_ID)).unwrap()
}

fn admit_q(p: &Wecom, query: &str, body: &[u8]) -> Result<Admission, Rejection> {
    let headers: Vec<(String, String)> = Vec::new();
    p.admit(
        &RawRequest {
            headers: &headers,
            query,
            body,
        },
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_409_659_813),
    )
}

fn verify_query(sig: &str, echostr: &str) -> String {
    format!(
        "msg_signature={sig}&timestamp={VERIFY_TS}&nonce={VERIFY_NONCE}&echostr={}",
        crate::form::encode(echostr.as_bytes())
    )
}

fn post_query(sig: &str) -> String {
    format!("msg_signature={sig}&timestamp={POST_TS}&nonce={POST_NONCE}")
}

#[test]
fn official_signature_vectors() {
    assert_eq!(
        msgcrypt::signature(TOKEN, VERIFY_TS, VERIFY_NONCE, VERIFY_ECHOSTR),
        VERIFY_SIG
    );
    let encrypt = parse_xml(POST_BODY.as_bytes()).unwrap()["Encrypt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        msgcrypt::signature(TOKEN, POST_TS, POST_NONCE, &encrypt),
        POST_SIG
    );
}

#[test]
fn official_url_verification_is_answered_with_the_plaintext() {
    let p = official();
    assert!(p.verifies_with_get());
    match admit_q(&p, &verify_query(VERIFY_SIG, VERIFY_ECHOSTR), b"").unwrap() {
        Admission::Control(reply) => {
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.body,
                VERIFY_PLAIN.as_bytes(),
                "exactly, no quotes or newline"
            );
            assert_eq!(reply.content_type, Some(Reply::TEXT));
        }
        other => panic!("expected the echo, got {other:?}"),
    }
    // Upper-case hex signature is the same value.
    let upper = verify_query(&VERIFY_SIG.to_ascii_uppercase(), VERIFY_ECHOSTR);
    assert!(admit_q(&p, &upper, b"").is_ok());
    // Refusals: wrong signature, wrong token, tampered echostr, missing parameters, other corp.
    let mut bad_sig = VERIFY_SIG.to_owned();
    bad_sig.replace_range(0..1, "6");
    assert_eq!(
        admit_q(&p, &verify_query(&bad_sig, VERIFY_ECHOSTR), b"").unwrap_err(),
        Rejection::BadSignature
    );
    let other_token = Wecom::new(&config("QDG6eL", CORP_ID)).unwrap();
    assert_eq!(
        admit_q(&other_token, &verify_query(VERIFY_SIG, VERIFY_ECHOSTR), b"").unwrap_err(),
        Rejection::BadSignature
    );
    let tampered = VERIFY_ECHOSTR.replacen('P', "Q", 1);
    assert_eq!(
        admit_q(&p, &verify_query(VERIFY_SIG, &tampered), b"").unwrap_err(),
        Rejection::BadSignature,
        "echostr is signed"
    );
    assert_eq!(
        admit_q(&p, "timestamp=1&nonce=2&echostr=x", b"").unwrap_err(),
        Rejection::missing("msg_signature")
    );
    assert_eq!(
        admit_q(&p, "", b"").unwrap_err(),
        Rejection::missing("echostr")
    );
    let other_corp = Wecom::new(&config(TOKEN, "ww0000000000000000")).unwrap();
    let r = admit_q(&other_corp, &verify_query(VERIFY_SIG, VERIFY_ECHOSTR), b"").unwrap_err();
    assert_eq!(r, Rejection::WrongRecipient("corp_id"));
    assert_eq!(r.status(), 401);
}

#[test]
fn a_captured_message_replayed_as_a_url_verification_is_not_decrypted_for_the_sender() {
    // A message's signature is the one a verification of its `Encrypt` would carry: the
    // official message, replayed as a GET with its ciphertext as `echostr`, verifies.
    let p = official();
    let encrypt = parse_xml(POST_BODY.as_bytes()).unwrap()["Encrypt"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = format!(
        "{}&echostr={}",
        post_query(POST_SIG),
        crate::form::encode(encrypt.as_bytes())
    );
    let r = admit_q(&p, &replay, b"").unwrap_err();
    assert!(matches!(r, Rejection::Malformed(_)), "{r:?}");
    assert_eq!(r.status(), 400);
    assert!(
        !r.to_string().contains("hello"),
        "nothing of the plaintext: {r}"
    );
    // What a verification string may be: short, a token.
    assert_eq!(
        verification_answer(b"1616140317555161061"),
        Ok("1616140317555161061")
    );
    assert!(verification_answer(b"").is_err());
    assert!(verification_answer(b"<xml>hello</xml>").is_err());
    assert!(verification_answer("x".repeat(MAX_ECHO + 1).as_bytes()).is_err());
}

#[test]
fn official_message_is_decrypted_and_normalized() {
    let p = official();
    let (e, ack) = event(admit_q(&p, &post_query(POST_SIG), POST_BODY.as_bytes()));
    assert_eq!(ack, Reply::empty(200));
    assert_eq!(e.id, "4561255354251345929");
    assert_eq!(e.kind, "wecom.text");
    assert_eq!(e.provider_event, "text");
    assert_eq!(e.time.as_deref(), Some("2014-09-02T12:10:13.000Z"));
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["ToUserName"], "wx5823bf96d3bd56c7");
    assert_eq!(data["FromUserName"], "mycreate");
    assert_eq!(data["CreateTime"], "1409659813");
    assert_eq!(data["MsgType"], "text");
    assert_eq!(data["Content"], "hello");
    assert_eq!(data["AgentID"], "218");
    // Refusals: bad signature, tampered ciphertext (signed), wrong corp id, not XML.
    assert_eq!(
        admit_q(&p, &post_query(VERIFY_SIG), POST_BODY.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    let tampered = POST_BODY.replacen("RypEv", "RypEw", 1);
    assert_eq!(
        admit_q(&p, &post_query(POST_SIG), tampered.as_bytes()).unwrap_err(),
        Rejection::BadSignature
    );
    let other_corp = Wecom::new(&config(TOKEN, "wx5823bf96d3bd56c8")).unwrap();
    assert_eq!(
        admit_q(&other_corp, &post_query(POST_SIG), POST_BODY.as_bytes()).unwrap_err(),
        Rejection::WrongRecipient("corp_id")
    );
    assert_eq!(
        admit_q(&p, &post_query(POST_SIG), b"{\"encrypt\":\"x\"}")
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        admit_q(&p, "", POST_BODY.as_bytes()).unwrap_err(),
        Rejection::missing("msg_signature")
    );
}

/// A ciphertext that is validly signed (the sender knows the token) but does not decrypt
/// under our key: 400, like DingTalk; re-signed garbage, so the signature is not the guard.
#[test]
fn tampered_ciphertext_with_a_valid_signature_is_refused() {
    let p = official();
    let mut ct = crate::crypto::b64(
        parse_xml(POST_BODY.as_bytes()).unwrap()["Encrypt"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let n = ct.len();
    ct[n - 20] ^= 0x55;
    let encrypt = crate::crypto::b64_encode(&ct);
    let sig = msgcrypt::signature(TOKEN, POST_TS, POST_NONCE, &encrypt);
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let r = admit_q(&p, &post_query(&sig), body.as_bytes()).unwrap_err();
    assert!(
        matches!(r, Rejection::Malformed(_) | Rejection::WrongRecipient(_)),
        "{r:?}"
    );
}

#[test]
fn events_use_the_content_digest_and_the_event_name() {
    let p = official();
    let plain = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>update_user</ChangeType><UserID><![CDATA[zhangsan]]></UserID><ExtAttr><Item><Name><![CDATA[爱好]]></Name><Type>0</Type><Text><Value><![CDATA[旅游]]></Value></Text></Item><Item><Name><![CDATA[卡号]]></Name><Type>0</Type><Text><Value><![CDATA[1234567234]]></Value></Text></Item></ExtAttr></xml>";
    let mut o = SampleOptions::new(SystemTime::UNIX_EPOCH);
    o.payload = Some(plain.as_bytes().to_vec());
    let c = config(TOKEN, CORP_ID);
    let s1 = sample(&c, &o).unwrap();
    let s2 = sample(&c, &o).unwrap();
    assert_ne!(
        s1.body, s2.body,
        "a retry is re-encrypted with a new random prefix"
    );
    let (e1, _) = event(admit_q(&p, &s1.query, &s1.body));
    let (e2, _) = event(admit_q(&p, &s2.query, &s2.body));
    assert_eq!(e1.id, crate::shared::sha256_key(plain.as_bytes()));
    assert_eq!(e1.id, e2.id, "a retry maps to the same id");
    assert_eq!(e1.kind, "wecom.event.change_contact");
    assert_eq!(e1.provider_event, "event.change_contact");
    let data = serde_json::to_value(&e1.data).unwrap();
    assert_eq!(data["ChangeType"], "update_user");
    assert_eq!(data["ExtAttr"]["Item"][0]["Name"], "爱好");
    assert_eq!(data["ExtAttr"]["Item"][1]["Text"]["Value"], "1234567234");
    assert_eq!(e1.time.as_deref(), Some("2014-06-24T11:48:33.000Z"));
    // A CreateTime no RFC 3339 year can hold (milliseconds where seconds belong, past 9999):
    // the receive time, never `+55840-11-08T…`.
    for created in ["1700000000000", "253402300800"] {
        let odd = plain.replace("1403610513", created);
        o.payload = Some(odd.into_bytes());
        let s = sample(&c, &o).unwrap();
        let (e, _) = event(admit_q(&p, &s.query, &s.body));
        assert_eq!(e.time, None, "{created}");
    }
}

#[test]
fn xml_shapes() {
    assert!(parse_xml(b"<notxml><a>1</a></notxml>").is_err());
    assert!(parse_xml(b"<xml><a>1</a></xml><xml/>").is_err());
    assert!(parse_xml(b"<!DOCTYPE x [<!ENTITY e \"v\">]><xml><a>&e;</a></xml>").is_err());
    assert!(
        parse_xml(b"<xml><a>text<b>1</b></a></xml>").is_err(),
        "mixed content"
    );
    let deep = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
    assert!(parse_xml(deep.as_bytes()).is_err());
    let m = parse_xml(b"<?xml version=\"1.0\"?><xml><a>x &amp; y</a><e/></xml>").unwrap();
    assert_eq!(m["a"], "x & y");
    assert_eq!(m["e"], "");
}

#[test]
fn samples_round_trip_and_config_errors() {
    let c = config(TOKEN, CORP_ID);
    let p = official();
    let mut o = SampleOptions::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    o.id = Some("123456789".into());
    let s = sample(&c, &o).unwrap();
    let (e, _) = event(admit_q(&p, &s.query, &s.body));
    assert_eq!(
        (e.id.as_str(), e.kind.as_str()),
        ("123456789", "wecom.text")
    );
    o.event = Some("enter_agent".into());
    let s = sample(&c, &o).unwrap();
    let (e, _) = event(admit_q(&p, &s.query, &s.body));
    assert_eq!(e.kind, "wecom.event.enter_agent");
    let q = verification_query(&c, o.now, "echo-1234").unwrap();
    match admit_q(&p, &q, b"").unwrap() {
        Admission::Control(r) => assert_eq!(r.body, b"echo-1234"),
        other => panic!("{other:?}"),
    }
    let errors = Wecom::new(&Config {
        token: Secret::from(" "),
        encoding_aes_key: Secret::from("short"),
        corp_id: String::new(),
    })
    .unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_ref()).collect();
    assert_eq!(keys, ["token", "encoding_aes_key", "corp_id"]);
}
