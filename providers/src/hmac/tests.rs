use super::*;
use crate::crypto::b64_encode;
use crate::shared::{header_name, set_pointer};
use crate::sign::SampleOptions;
use crate::{Headers, ProviderConfig};
use ::hmac::Mac;
use sha2::Digest;
use sha2::Sha256;
use std::time::Duration;

// The README's examples, verbatim; only the `${…}` secret is replaced in `source()`.
const STRIPE_TOML: &str = r#"
[[sources]]
name = "stripe"
provider = "hmac"
secrets = ["${STRIPE_WEBHOOK_SECRET}"]
signature_header = "Stripe-Signature"
signature_param = "v1"
timestamp_param = "t"
signed_payload = "{timestamp}.{body}"
tolerance_secs = 300
id_pointer = "/id"
type_pointer = "/type"
"#;
const SHOPIFY_TOML: &str = r#"
[[sources]]
name = "shopify"
provider = "hmac"
secrets = ["${SHOPIFY_CLIENT_SECRET}"]
signature_header = "X-Shopify-Hmac-Sha256"
encoding = "base64"
id_header = "X-Shopify-Webhook-Id"
type_header = "X-Shopify-Topic"
"#;
const SLACK_TOML: &str = r#"
[[sources]]
name = "slack"
provider = "hmac"
secrets = ["${SLACK_SIGNING_SECRET}"]
signature_header = "X-Slack-Signature"
prefix = "v0="
timestamp_header = "X-Slack-Request-Timestamp"
tolerance_secs = 300
signed_payload = "v0:{timestamp}:{body}"
id_pointer = "/event_id"
type_pointer = "/event/type"
challenge_pointer = "/challenge"
"#;
const GITHUB_TOML: &str = r#"
[[sources]]
name = "gh-generic"
provider = "hmac"
secrets = ["${GITHUB_WEBHOOK_SECRET}"]
signature_header = "X-Hub-Signature-256"
prefix = "sha256="
id_header = "X-GitHub-Delivery"
type_header = "X-GitHub-Event"
"#;

const STRIPE_SECRET: &str = "whsec_hookgate_test_3d8f2a7c91b4";
const STRIPE_TS: i64 = 1_492_774_577;
const STRIPE_BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_3NG8Du2eZvKYlo2C0Ykz1Abc"}}}"#;
/// Python: hmac.new(secret, b"1492774577." + body, sha256).hexdigest()
const STRIPE_V1: &str = "74bfad8222c4736254eb10826ac2bfdf06d5081c892bcf91d9a25f19869cb9cf";

const SHOPIFY_SECRET: &str = "shpss_hookgate_test_9b1e6f0d4c";
const SHOPIFY_BODY: &[u8] =
    br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"10.00"}"#;
/// Python: base64(hmac.new(secret, body, sha256).digest())
const SHOPIFY_SIG: &str = "BHAiOB4Xe1ejCD8Mz+Hyt42QmFMXH+F9R81wb+kJjBc=";

// Slack's worked example (docs.slack.dev "Verifying requests from Slack").
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_DOC_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const SLACK_EVENT_BODY: &[u8] = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","team_id":"T1DC2JH3J","api_app_id":"A0MDYCDME","event":{"type":"app_mention","user":"U2CERLKJA","text":"<@U0LAN0Z89> hi","channel":"C2147483705"},"type":"event_callback","event_id":"Ev08MFMKH6","event_time":1531420618}"#;
/// Python: hmac.new(secret, b"v0:1531420618:" + body, sha256).hexdigest()
const SLACK_EVENT_SIG: &str = "v0=d2f3dd3df4eca6828ccc6873d1625aaaa86aced103a39e3259dd04eb2bf6dbf9";

/// The provider table of a `[[sources]]` block: `name` belongs to the source.
fn provider_table(toml_text: &str, secret: &str) -> toml::Value {
    let text = toml_text
        .replace("${STRIPE_WEBHOOK_SECRET}", secret)
        .replace("${SHOPIFY_CLIENT_SECRET}", secret)
        .replace("${SLACK_SIGNING_SECRET}", secret)
        .replace("${GITHUB_WEBHOOK_SECRET}", secret);
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut table = doc["sources"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    table.remove("name");
    toml::Value::Table(table)
}

/// A README example as this adapter's `Config` (the registry's `provider` tag removed).
fn source(toml_text: &str, secret: &str) -> Config {
    let mut table = provider_table(toml_text, secret);
    let tag = table.as_table_mut().unwrap().remove("provider");
    assert_eq!(
        tag.and_then(|t| t.as_str().map(str::to_owned)).as_deref(),
        Some("hmac")
    );
    table.try_into().unwrap()
}

fn build(c: &Config) -> HmacSource {
    HmacSource::new(c).unwrap_or_else(|e| panic!("{e:?}"))
}

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn admit(
    p: &HmacSource,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Admission, Rejection> {
    crate::testing::admit(p, headers, body, now)
}

use crate::testing::event;

/// Independent of the adapter: the `hmac` crate directly.
fn hmac256(key: &str, msg: &[u8]) -> Vec<u8> {
    let mut m = <::hmac::Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

// ---------------------------------------------------------------- GitHub style

#[test]
fn github_style_official_vector() {
    let p = build(&source(GITHUB_TOML, "mysecret"));
    // docs/providers/github.md vectors (octokit): mysecret over {"foo":"bar"}.
    let sig = "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3";
    let body = br#"{"foo":"bar"}"#;
    let headers = h(&[
        ("X-Hub-Signature-256", sig),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Event", "push"),
    ]);
    let (e, ack) = event(admit(&p, &headers, body, at(0)));
    assert_eq!(e.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(e.kind, "hmac.push");
    assert_eq!(e.provider_event, "push");
    assert_eq!((e.time.as_deref(), e.subject.as_deref()), (None, None));
    assert_eq!(serde_json::to_string(&e.data).unwrap().as_bytes(), body);
    assert_eq!(ack.status, 202);
    assert_eq!(
        ack.body,
        br#"{"id":"72d3162e-cc78-11e3-81ab-4c9367dc0958"}"#
    );
    // Hex is compared by value: uppercase digits verify too.
    let upper = format!("sha256={}", sig[7..].to_ascii_uppercase());
    let mut hu = headers.clone();
    hu[0].1 = upper;
    assert!(admit(&p, &hu, body, at(0)).is_ok());
    // Tampered body, wrong secret, missing or wrong prefix, missing header.
    assert_eq!(
        admit(&p, &headers, br#"{"foo":"baz"}"#, at(0)).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&build(&source(GITHUB_TOML, "foo")), &headers, body, at(0)).unwrap_err(),
        Rejection::BadSignature
    );
    for bad in [
        &sig[7..],
        "sha1=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3",
        "sha256=zz",
        "sha256=",
    ] {
        let mut hb = headers.clone();
        hb[0].1 = bad.into();
        assert_eq!(
            admit(&p, &hb, body, at(0)).unwrap_err(),
            Rejection::BadSignature,
            "{bad}"
        );
    }
    assert_eq!(
        admit(&p, &headers[1..], body, at(0)).unwrap_err(),
        Rejection::missing("x-hub-signature-256")
    );
    // Verified, but the configured id header is absent: 400.
    let r = admit(&p, &[headers[0].clone(), headers[2].clone()], body, at(0)).unwrap_err();
    assert_eq!(r, Rejection::Malformed("the event id header is missing"));
    assert_eq!(r.status(), 400);
    // Verified, but not JSON (GitHub's "Hello, World!" vector, docs/providers/github.md): 400.
    let p = build(&source(GITHUB_TOML, "It's a Secret to Everybody"));
    let mut hh = headers.clone();
    hh[0].1 = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".into();
    assert_eq!(
        admit(&p, &hh, b"Hello, World!", at(0)).unwrap_err(),
        Rejection::Malformed("body is not valid JSON")
    );
}

#[test]
fn algorithms_sha1_and_sha512() {
    let body = br#"{"foo":"bar"}"#;
    let cases = [
            ("sha1", "d03207e4b030cf234e3447bac4d93add4c6643d8"),
            ("SHA512", "9309c8bc1b4f6c24581bd97d05f4b32a089b721914bf9e23ae97ef4719389ea3d5bcff0c1ccef4445509134541dcbf6db87a4442ddbd84dba10e23cdd621fd57"),
        ];
    for (algorithm, hex_sig) in cases {
        let p = build(&Config {
            secrets: vec![Secret::from("mysecret")],
            signature_header: Some("X-Signature".into()),
            algorithm: Some(algorithm.into()),
            ..Config::default()
        });
        let (e, _) = event(admit(&p, &h(&[("x-signature", hex_sig)]), body, at(0)));
        // No id location configured: the body's SHA-256, stable across resends.
        assert_eq!(
            e.id,
            "sha256:7a38bf81f383f69433ad6e900d35b3e2385593f76a7b7ab5d4355b8ba41ee24b"
        );
        assert_eq!(
            (e.kind.as_str(), e.provider_event.as_str()),
            ("hmac.event", "event")
        );
    }
}

// ---------------------------------------------------------------- Stripe style

#[test]
fn stripe_style_known_answer() {
    let payload = [STRIPE_TS.to_string().as_bytes(), b".", STRIPE_BODY].concat();
    assert_eq!(hex::encode(hmac256(STRIPE_SECRET, &payload)), STRIPE_V1);

    let p = build(&source(STRIPE_TOML, STRIPE_SECRET));
    let header = format!("t={STRIPE_TS},v1={STRIPE_V1}");
    let headers = h(&[("Stripe-Signature", &header)]);
    let (e, ack) = event(admit(&p, &headers, STRIPE_BODY, at(STRIPE_TS + 10)));
    assert_eq!(e.id, "evt_1NG8Du2eZvKYlo2CUI79vXWy");
    assert_eq!(e.kind, "hmac.payment_intent.succeeded");
    assert_eq!(e.provider_event, "payment_intent.succeeded");
    assert_eq!(
        serde_json::to_string(&e.data).unwrap().as_bytes(),
        STRIPE_BODY
    );
    assert_eq!(ack.body, br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy"}"#);
}

#[test]
fn stripe_style_header_list() {
    let p = build(&source(STRIPE_TOML, STRIPE_SECRET));
    let now = at(STRIPE_TS);
    let check =
        |header: &str, body: &[u8], now| admit(&p, &h(&[("stripe-signature", header)]), body, now);
    // Rolled secret: Stripe sends one v1 per active secret, in any order; the v0 test
    // scheme and unknown keys are ignored; spaces around items are tolerated.
    let other = hex::encode(hmac256("whsec_old", b"x"));
    for header in [
        format!("t={STRIPE_TS},v1={other},v1={STRIPE_V1}"),
        format!("v1={STRIPE_V1}, t={STRIPE_TS} ,v0={other}"),
        format!(
            "t={STRIPE_TS},scheme=x,v1={}",
            STRIPE_V1.to_ascii_uppercase()
        ),
    ] {
        assert!(check(&header, STRIPE_BODY, now).is_ok(), "{header}");
    }
    let refused = [
        // tampered body / wrong secret
        (format!("t={STRIPE_TS},v1={other}"), Rejection::BadSignature),
        // the timestamp is signed
        (
            format!("t={},v1={STRIPE_V1}", STRIPE_TS + 1),
            Rejection::BadSignature,
        ),
        // no v1, only v0
        (
            format!("t={STRIPE_TS},v0={STRIPE_V1}"),
            Rejection::BadSignature,
        ),
        // no timestamp, two timestamps, an item without '='
        (format!("v1={STRIPE_V1}"), Rejection::BadSignature),
        (
            format!("t={STRIPE_TS},t={STRIPE_TS},v1={STRIPE_V1}"),
            Rejection::BadSignature,
        ),
        (
            format!("t={STRIPE_TS},v1={STRIPE_V1},junk"),
            Rejection::BadSignature,
        ),
        // Stripe's separator is ',' only (param_separator's default).
        (
            format!("t={STRIPE_TS};v1={STRIPE_V1}"),
            Rejection::BadSignature,
        ),
        // the whole header as a bare signature
        (STRIPE_V1.to_string(), Rejection::BadSignature),
        // non-integer timestamp
        (
            format!("t=1492774577.5,v1={STRIPE_V1}"),
            Rejection::BadSignature,
        ),
    ];
    for (header, why) in refused {
        assert_eq!(
            check(&header, STRIPE_BODY, now).unwrap_err(),
            why,
            "{header}"
        );
    }
    let good = format!("t={STRIPE_TS},v1={STRIPE_V1}");
    assert_eq!(
        check(&good, &STRIPE_BODY[1..], now).unwrap_err(),
        Rejection::BadSignature
    );
    let wrong = build(&source(STRIPE_TOML, "whsec_other"));
    assert_eq!(
        admit(&wrong, &h(&[("Stripe-Signature", &good)]), STRIPE_BODY, now).unwrap_err(),
        Rejection::BadSignature
    );
    // Window: exactly 300 s either way is accepted, 301 s is not.
    assert!(check(&good, STRIPE_BODY, at(STRIPE_TS + 300)).is_ok());
    assert!(check(&good, STRIPE_BODY, at(STRIPE_TS - 300)).is_ok());
    assert_eq!(
        check(&good, STRIPE_BODY, at(STRIPE_TS + 301)).unwrap_err(),
        Rejection::StaleTimestamp
    );
    assert_eq!(
        check(&good, STRIPE_BODY, at(STRIPE_TS - 301)).unwrap_err(),
        Rejection::StaleTimestamp
    );
    // Too many candidates.
    let many = vec![format!("v1={other}"); MAX_SIGNATURES].join(",");
    assert_eq!(
        check(
            &format!("t={STRIPE_TS},{many},v1={STRIPE_V1}"),
            STRIPE_BODY,
            now
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &[], STRIPE_BODY, now).unwrap_err(),
        Rejection::missing("stripe-signature")
    );
    // Verified, but the id is not in the body.
    let body = br#"{"type":"ping"}"#;
    let sig = hex::encode(hmac256(
        STRIPE_SECRET,
        &[b"1492774577.".as_slice(), body].concat(),
    ));
    assert_eq!(
        check(&format!("t={STRIPE_TS},v1={sig}"), body, now).unwrap_err(),
        Rejection::Malformed("the event id is not in the body")
    );
}

// ---------------------------------------------------------------- Shopify style

#[test]
fn shopify_style() {
    assert_eq!(
        b64_encode(&hmac256(SHOPIFY_SECRET, SHOPIFY_BODY)),
        SHOPIFY_SIG
    );
    let p = build(&source(SHOPIFY_TOML, SHOPIFY_SECRET));
    let headers = h(&[
        ("X-Shopify-Hmac-Sha256", SHOPIFY_SIG),
        ("X-Shopify-Topic", "orders/create"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Shop-Domain", "example.myshopify.com"),
    ]);
    let (e, ack) = event(admit(&p, &headers, SHOPIFY_BODY, at(0)));
    assert_eq!(e.id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
    assert_eq!(e.kind, "hmac.orders_create");
    assert_eq!(e.provider_event, "orders/create");
    assert_eq!(
        ack.body,
        br#"{"id":"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}"#
    );
    assert_eq!(
        serde_json::to_string(&e.data).unwrap().as_bytes(),
        SHOPIFY_BODY
    );
    // Unpadded base64 decodes to the same MAC.
    let mut hs = headers.clone();
    hs[0].1 = SHOPIFY_SIG.trim_end_matches('=').into();
    assert!(admit(&p, &hs, SHOPIFY_BODY, at(0)).is_ok());
    // Tampered body, wrong secret, hex instead of base64, bad base64.
    let tampered = SHOPIFY_BODY
        .to_vec()
        .iter()
        .map(|&b| if b == b'1' { b'2' } else { b })
        .collect::<Vec<_>>();
    assert_eq!(
        admit(&p, &headers, &tampered, at(0)).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(
            &build(&source(SHOPIFY_TOML, "shpss_other")),
            &headers,
            SHOPIFY_BODY,
            at(0)
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    for bad in [
        hex::encode(hmac256(SHOPIFY_SECRET, SHOPIFY_BODY)),
        "!!!".to_string(),
    ] {
        let mut hb = headers.clone();
        hb[0].1 = bad;
        assert_eq!(
            admit(&p, &hb, SHOPIFY_BODY, at(0)).unwrap_err(),
            Rejection::BadSignature
        );
    }
    // No topic: a generic type; no webhook id: 400.
    let (e, _) = event(admit(
        &p,
        &[headers[0].clone(), headers[2].clone()],
        SHOPIFY_BODY,
        at(0),
    ));
    assert_eq!(
        (e.kind.as_str(), e.provider_event.as_str()),
        ("hmac.event", "event")
    );
    assert_eq!(
        admit(&p, &headers[..2], SHOPIFY_BODY, at(0)).unwrap_err(),
        Rejection::Malformed("the event id header is missing")
    );
    // Shopify signs no timestamp: any time is fine (replays are caught by dedup).
    assert!(admit(&p, &headers, SHOPIFY_BODY, at(4_000_000_000)).is_ok());
}

// ---------------------------------------------------------------- Slack style

#[test]
fn slack_style_official_example() {
    let p = build(&source(SLACK_TOML, SLACK_SECRET));
    let ts = SLACK_TS.to_string();
    let headers = h(&[
        ("X-Slack-Signature", SLACK_DOC_SIG),
        ("X-Slack-Request-Timestamp", &ts),
    ]);
    // Slack's example is a slash command (a form body): it verifies, then is refused as
    // not JSON (400), which shows the signature matched; tampering gives 401.
    assert_eq!(
        admit(&p, &headers, SLACK_DOC_BODY, at(SLACK_TS + 60)).unwrap_err(),
        Rejection::Malformed("body is not valid JSON")
    );
    assert_eq!(
        admit(&p, &headers, &SLACK_DOC_BODY[1..], at(SLACK_TS + 60)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn slack_style_events() {
    let payload = [b"v0:1531420618:".as_slice(), SLACK_EVENT_BODY].concat();
    assert_eq!(
        format!("v0={}", hex::encode(hmac256(SLACK_SECRET, &payload))),
        SLACK_EVENT_SIG
    );
    let p = build(&source(SLACK_TOML, SLACK_SECRET));
    let ts = SLACK_TS.to_string();
    let headers = h(&[
        ("X-Slack-Signature", SLACK_EVENT_SIG),
        ("X-Slack-Request-Timestamp", &ts),
    ]);
    let (e, ack) = event(admit(&p, &headers, SLACK_EVENT_BODY, at(SLACK_TS)));
    assert_eq!(e.id, "Ev08MFMKH6");
    assert_eq!(e.kind, "hmac.app_mention");
    assert_eq!(e.provider_event, "app_mention");
    assert_eq!(ack.body, br#"{"id":"Ev08MFMKH6"}"#);
    // Window boundaries, both ways.
    assert!(admit(&p, &headers, SLACK_EVENT_BODY, at(SLACK_TS + 300)).is_ok());
    assert!(admit(&p, &headers, SLACK_EVENT_BODY, at(SLACK_TS - 300)).is_ok());
    for now in [SLACK_TS + 301, SLACK_TS - 301] {
        assert_eq!(
            admit(&p, &headers, SLACK_EVENT_BODY, at(now)).unwrap_err(),
            Rejection::StaleTimestamp
        );
    }
    // The timestamp is signed; a missing or non-numeric one is refused.
    let mut hs = headers.clone();
    hs[1].1 = (SLACK_TS + 1).to_string();
    assert_eq!(
        admit(&p, &hs, SLACK_EVENT_BODY, at(SLACK_TS)).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &headers[..1], SLACK_EVENT_BODY, at(SLACK_TS)).unwrap_err(),
        Rejection::missing("x-slack-request-timestamp")
    );
    hs[1].1 = "yesterday".into();
    assert_eq!(
        admit(&p, &hs, SLACK_EVENT_BODY, at(SLACK_TS)).unwrap_err(),
        Rejection::BadSignature
    );
    // Tampered body, wrong secret, missing prefix.
    let tampered = String::from_utf8(SLACK_EVENT_BODY.to_vec())
        .unwrap()
        .replace("hi", "ho");
    assert_eq!(
        admit(&p, &headers, tampered.as_bytes(), at(SLACK_TS)).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(
            &build(&source(SLACK_TOML, "0000")),
            &headers,
            SLACK_EVENT_BODY,
            at(SLACK_TS)
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    let mut hp = headers.clone();
    hp[0].1 = SLACK_EVENT_SIG[3..].into();
    assert_eq!(
        admit(&p, &hp, SLACK_EVENT_BODY, at(SLACK_TS)).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn slack_style_url_verification_challenge() {
    let p = build(&source(SLACK_TOML, SLACK_SECRET));
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let sig = format!(
        "v0={}",
        hex::encode(hmac256(
            SLACK_SECRET,
            &[b"v0:1531420618:".as_slice(), body].concat()
        ))
    );
    let ts = SLACK_TS.to_string();
    let headers = h(&[
        ("X-Slack-Signature", &sig),
        ("X-Slack-Request-Timestamp", &ts),
    ]);
    match admit(&p, &headers, body, at(SLACK_TS)).unwrap() {
        Admission::Control(reply) => {
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.body,
                br#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#
            );
        }
        other => panic!("expected the challenge echo, got {other:?}"),
    }
    // An unsigned challenge is refused like anything else.
    assert_eq!(
        admit(
            &p,
            &h(&[("X-Slack-Request-Timestamp", &ts)]),
            body,
            at(SLACK_TS)
        )
        .unwrap_err(),
        Rejection::missing("x-slack-signature")
    );
}

// ---------------------------------------------------------------- general

#[test]
fn rotation_second_secret() {
    let mut c = source(SHOPIFY_TOML, "shpss_new");
    c.secrets.push(Secret::from(SHOPIFY_SECRET));
    let p = build(&c);
    let headers = h(&[
        ("X-Shopify-Hmac-Sha256", SHOPIFY_SIG),
        ("X-Shopify-Webhook-Id", "w1"),
    ]);
    assert!(admit(&p, &headers, SHOPIFY_BODY, at(0)).is_ok());
}

#[test]
fn template_with_id_and_millisecond_timestamps() {
    let c = Config {
        secrets: vec![Secret::from("k")],
        signature_header: Some("X-Sig".into()),
        encoding: Some("base64".into()),
        signed_payload: Some("{id}\n{timestamp}\n{body}".into()),
        timestamp_header: Some("X-Ts".into()),
        id_header: Some("X-Id".into()),
        type_pointer: Some("/event/name".into()),
        ..Config::default()
    };
    let p = build(&c);
    let body = br#"{"event":{"name":"Order.Paid"},"n":1}"#;
    let ms = "1700000000123";
    let sig = b64_encode(&hmac256(
        "k",
        &[b"m-1\n1700000000123\n".as_slice(), body].concat(),
    ));
    let headers = h(&[("x-sig", &sig), ("x-ts", ms), ("x-id", "m-1")]);
    let (e, _) = event(admit(&p, &headers, body, at(1_700_000_000)));
    assert_eq!((e.id.as_str(), e.kind.as_str()), ("m-1", "hmac.order.paid"));
    assert_eq!(e.provider_event, "Order.Paid");
    assert_eq!(
        admit(&p, &headers, body, at(1_700_000_301)).unwrap_err(),
        Rejection::StaleTimestamp,
        "milliseconds are compared as seconds"
    );
    // The id is signed: another id does not verify; no id header at all is a 401 here,
    // since the signature cannot be checked without it.
    let mut other = headers.clone();
    other[2].1 = "m-2".into();
    assert_eq!(
        admit(&p, &other, body, at(1_700_000_000)).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &headers[..2], body, at(1_700_000_000)).unwrap_err(),
        Rejection::missing("x-id")
    );
}

#[test]
fn numeric_ids_and_odd_types() {
    let c = Config {
        secrets: vec![Secret::from("k")],
        signature_header: Some("X-Sig".into()),
        id_pointer: Some("/id".into()),
        type_pointer: Some("/topic".into()),
        ..Config::default()
    };
    let p = build(&c);
    type Want = Result<(&'static str, &'static str, &'static str), Rejection>;
    let cases: [(&[u8], Want); 5] = [
        (
            br#"{"id":820982911946154508,"topic":"orders/create"}"#,
            Ok(("820982911946154508", "hmac.orders_create", "orders/create")),
        ),
        (
            br#"{"id":"a","topic":"..."}"#,
            Ok(("a", "hmac.event", "...")),
        ),
        (
            br#"{"id":"a","topic":{"x":1}}"#,
            Ok(("a", "hmac.event", "event")),
        ),
        (
            br#"{"id":"","topic":"x"}"#,
            Err(Rejection::Malformed("the event id is not in the body")),
        ),
        (
            br#"{"id":null}"#,
            Err(Rejection::Malformed("the event id is not in the body")),
        ),
    ];
    for (body, want) in cases {
        let sig = hex::encode(hmac256("k", body));
        let got = admit(&p, &h(&[("x-sig", &sig)]), body, at(0)).map(|a| match a {
            Admission::Event { event, .. } => (event.id, event.kind, event.provider_event),
            Admission::Control(_) => panic!("no challenge configured"),
        });
        let want = want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
        assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn samples_are_accepted() {
    let now = at(1_700_000_000);
    for (toml_text, kind) in [
        (STRIPE_TOML, "hmac.ping"),
        (SHOPIFY_TOML, "hmac.ping"),
        (SLACK_TOML, "hmac.ping"),
        (GITHUB_TOML, "hmac.ping"),
    ] {
        let c = source(toml_text, "s3cret");
        let r = sample(&c, &SampleOptions::new(now)).unwrap();
        let (e, ack) = event(admit(&build(&c), &r.headers, &r.body, now));
        assert_eq!(e.kind, kind, "{toml_text}");
        assert!(e.id.starts_with("evt_"), "{toml_text}: {}", e.id);
        assert_eq!(ack.status, 202);
    }
    // Stripe shape: t= first, then v1=.
    let c = source(STRIPE_TOML, STRIPE_SECRET);
    let mut o = SampleOptions::new(at(STRIPE_TS));
    o.payload = Some(STRIPE_BODY.to_vec());
    let r = sample(&c, &o).unwrap();
    assert_eq!(
        Headers::get(&r.headers, "stripe-signature"),
        Some(format!("t={STRIPE_TS},v1={STRIPE_V1}").as_str())
    );
    // Given id and event land where the config reads them.
    let c = source(SLACK_TOML, SLACK_SECRET);
    let mut o = SampleOptions::new(now);
    o.id = Some("Ev1".into());
    o.event = Some("message".into());
    let r = sample(&c, &o).unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["event_id"].as_str(), v["event"]["type"].as_str()),
        (Some("Ev1"), Some("message"))
    );
    let (e, _) = event(admit(&build(&c), &r.headers, &r.body, now));
    assert_eq!((e.id.as_str(), e.kind.as_str()), ("Ev1", "hmac.message"));
    // No id location: the hash id.
    let c = Config {
        secrets: vec![Secret::from("k")],
        signature_header: Some("X-Sig".into()),
        ..Config::default()
    };
    let r = sample(&c, &SampleOptions::new(now)).unwrap();
    let (e, _) = event(admit(&build(&c), &r.headers, &r.body, now));
    assert_eq!(
        e.id,
        format!("sha256:{}", hex::encode(Sha256::digest(&r.body)))
    );
    // An invalid config cannot be sampled.
    assert!(sample(&Config::default(), &SampleOptions::new(now)).is_err());
}

// Configured header names are owned by the adapter, never leaked (issue 12): the rejection
// for a missing one carries its own copy of the name.
#[test]
fn header_names_are_lowercased_and_owned() {
    assert_eq!(header_name("k", " X-Owned-Test ").unwrap(), "x-owned-test");
    assert!(header_name("k", "X Owned").is_err());
    let c = Config {
        secrets: vec![Secret::from("s")],
        signature_header: Some("X-Owned-Test".into()),
        ..Config::default()
    };
    let r = admit(&build(&c), &[], b"{}", SystemTime::now()).unwrap_err();
    assert_eq!(
        r,
        Rejection::MissingHeader("x-owned-test".to_owned().into())
    );
    assert_eq!(r.to_string(), "missing or empty header x-owned-test");
}

#[test]
fn set_pointer_builds_paths() {
    let mut v = serde_json::json!({"event": 1});
    set_pointer(&mut v, "/event/type", Value::from("x"));
    set_pointer(&mut v, "/a~1b", Value::from(2));
    assert_eq!(v, serde_json::json!({"event": {"type": "x"}, "a/b": 2}));
}

#[test]
fn config_errors_are_all_reported() {
    let keys = |c: &Config| -> Vec<String> {
        HmacSource::new(c)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.key.into_owned())
            .collect()
    };
    assert_eq!(keys(&Config::default()), ["secrets", "signature_header"]);
    assert_eq!(
        keys(&Config {
            secrets: vec![Secret::from(" ")],
            signature_header: Some("Bad Header".into()),
            algorithm: Some("md5".into()),
            encoding: Some("base32".into()),
            signed_payload: Some("{timestamp}.{nonce}".into()),
            tolerance_secs: Some(60),
            id_header: Some("X-Id".into()),
            id_pointer: Some("id".into()),
            type_pointer: Some("type".into()),
            challenge_pointer: Some("challenge".into()),
            ..Config::default()
        }),
        [
            "secrets",
            "signature_header",
            "algorithm",
            "encoding",
            "tolerance_secs",
            "id_pointer",
            "type_pointer",
            "challenge_pointer",
            "signed_payload",
        ]
    );
    let base = || Config {
        secrets: vec![Secret::from("k")],
        signature_header: Some("X-Sig".into()),
        ..Config::default()
    };
    let cases: [(Config, &[&str]); 11] = [
        (
            Config {
                signed_payload: Some("{timestamp}".into()),
                timestamp_header: Some("X-Ts".into()),
                ..base()
            },
            &["signed_payload"],
        ),
        (
            Config {
                signed_payload: Some("{body".into()),
                ..base()
            },
            &["signed_payload"],
        ),
        (
            Config {
                signed_payload: Some("{timestamp}.{body}".into()),
                ..base()
            },
            &["signed_payload"],
        ),
        (
            Config {
                signed_payload: Some("{id}.{body}".into()),
                id_pointer: Some("/id".into()),
                ..base()
            },
            &["signed_payload"],
        ),
        (
            Config {
                timestamp_param: Some("t".into()),
                signed_payload: Some("{timestamp}.{body}".into()),
                ..base()
            },
            &["timestamp_param"],
        ),
        (
            Config {
                timestamp_param: Some("t".into()),
                timestamp_header: Some("X-Ts".into()),
                signature_param: Some("v1".into()),
                signed_payload: Some("{timestamp}.{body}".into()),
                ..base()
            },
            &["timestamp_param"],
        ),
        (
            Config {
                signature_param: Some("v 1".into()),
                timestamp_header: Some("X-Ts".into()),
                signed_payload: Some("{timestamp}.{body}".into()),
                tolerance_secs: Some(0),
                ..base()
            },
            &["signature_param", "tolerance_secs"],
        ),
        (
            Config {
                param_separator: Some("|".into()),
                signature_param: Some("v1".into()),
                ..base()
            },
            &["param_separator"],
        ),
        (
            Config {
                param_separator: Some(";".into()),
                ..base()
            },
            &["param_separator"],
        ),
        (
            Config {
                type_header: Some("X-T".into()),
                type_pointer: Some("/t".into()),
                ..base()
            },
            &["type_pointer"],
        ),
        (
            Config {
                id_header: Some("".into()),
                ..base()
            },
            &["id_header"],
        ),
    ];
    for (c, want) in cases {
        assert_eq!(keys(&c), want, "{c:?}");
    }
    assert!(keys(&base()).is_empty());
    // Secrets never show in the config's Debug output.
    let c = Config {
        secrets: vec![Secret::from("hunter2")],
        ..base()
    };
    assert!(!format!("{c:?}").contains("hunter2"));
    // Unknown keys are refused by the registry.
    let bad = provider_table(&STRIPE_TOML.replace("tolerance_secs", "tolerance"), "s");
    assert!(bad.try_into::<ProviderConfig>().is_err());
    // The README examples build through the registry.
    for text in [STRIPE_TOML, SHOPIFY_TOML, SLACK_TOML, GITHUB_TOML] {
        let cfg: ProviderConfig = provider_table(text, "s").try_into().unwrap();
        assert_eq!(cfg.kind(), ProviderKind::Hmac);
        assert!(cfg.build().is_ok(), "{text}");
    }
}

// Issue 11, class 1: an id or type header that is not signed is bounded and shaped.
#[test]
fn class1_unsigned_id_and_type_headers_are_bounded() {
    let p = build(&source(SHOPIFY_TOML, SHOPIFY_SECRET));
    let with = |id: &str, topic: &str| {
        let headers = h(&[
            ("X-Shopify-Hmac-Sha256", SHOPIFY_SIG),
            ("X-Shopify-Topic", topic),
            ("X-Shopify-Webhook-Id", id),
        ]);
        admit(&p, &headers, SHOPIFY_BODY, at(0))
    };
    assert!(with("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "orders/create").is_ok());
    let long = "x".repeat(crate::MAX_UNSIGNED_BYTES + 1);
    let long_topic = format!("orders/{}", "y".repeat(crate::MAX_UNSIGNED_BYTES));
    for (id, topic) in [
        (long.as_str(), "orders/create"),
        ("a b", "orders/create"),
        ("a\u{1b}[31m", "orders/create"),
        ("w1", long_topic.as_str()),
        ("w1", "orders\u{7}"),
    ] {
        let r = with(id, topic).unwrap_err();
        assert!(
            matches!(r, Rejection::Malformed(_)),
            "{id:?} {topic:?}: {r:?}"
        );
    }
    // A printable topic of any spelling is still sanitized into a type.
    let (e, _) = event(with("w1", "Orders / Create"));
    assert_eq!(e.kind, "hmac.orders___create");
}

// Issue 11, class 3: a timestamp that is not signed guards nothing; such a config is
// refused (`check` and `serve` both build the adapter).
#[test]
fn class3_unsigned_timestamp_is_a_config_error() {
    let keys = |c: &Config| -> Vec<String> {
        HmacSource::new(c)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.key.into_owned())
            .collect()
    };
    let base = || Config {
        secrets: vec![Secret::from("k")],
        signature_header: Some("X-Sig".into()),
        ..Config::default()
    };
    let header_only = Config {
        timestamp_header: Some("X-Ts".into()),
        tolerance_secs: Some(300),
        ..base()
    };
    assert_eq!(keys(&header_only), ["timestamp_header"]);
    let param_only = Config {
        signature_header: Some("Stripe-Signature".into()),
        signature_param: Some("v1".into()),
        timestamp_param: Some("t".into()),
        signed_payload: Some("{body}".into()),
        ..base()
    };
    assert_eq!(keys(&param_only), ["timestamp_param"]);
    let msg = HmacSource::new(&header_only).err().unwrap()[0].to_string();
    assert!(msg.contains("signed_payload"), "{msg}");
    // Signed, as Stripe and Slack do: fine.
    assert!(keys(&Config {
        signed_payload: Some("{timestamp}.{body}".into()),
        ..header_only
    })
    .is_empty());
    for text in [STRIPE_TOML, SLACK_TOML] {
        assert!(HmacSource::new(&source(text, "s")).is_ok());
    }
}
