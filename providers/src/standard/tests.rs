use super::sample::{ed25519_pair, sign_v1a};
use super::*;
use crate::crypto::b64_encode;
use crate::shared::dotted_type;
use crate::sign::SampleOptions;
use crate::Headers;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::time::Duration;

// docs/providers/standard.md, vector row 1 (standard-webhooks python/js test_sign).
const SECRET_1: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID_1: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS_1: &str = "1614265330";
const BODY_1: &[u8] = br#"{"test": 2432232314}"#;
const SIG_1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
// OFFICIAL row 2 (standard-webhooks rust test_sign).
const SECRET_2: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID_2: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const TS_2: &str = "1649367553";
const BODY_2: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SIG_2: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
// RFC 8032 §7.1 TEST 1 and the SELF v1a vector built on it.
const RFC8032_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
const WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const SIG_V1A: &str =
    "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn ts1() -> i64 {
    TS_1.parse().unwrap()
}

fn adapter(secrets: &[&str]) -> Standard {
    Standard::new(&Config {
        secrets: secrets.iter().map(|s| Secret::from(*s)).collect(),
        tolerance_secs: 300,
    })
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn headers(id: &str, ts: &str, sig: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.into()),
        ("webhook-signature".into(), sig.into()),
    ]
}

fn admit(
    p: &Standard,
    h: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Admission, Rejection> {
    crate::testing::admit(p, h, body, now)
}

use crate::testing::event;

fn seed_whsk() -> String {
    format!("whsk_{}", b64_encode(&hex::decode(RFC8032_SK).unwrap()))
}

#[test]
fn official_v1_vectors_sign() {
    assert_eq!(sign_v1(SECRET_1, ID_1, TS_1, BODY_1).unwrap(), SIG_1);
    assert_eq!(sign_v1(SECRET_2, ID_2, TS_2, BODY_2).unwrap(), SIG_2);
}

#[test]
fn official_v1_vectors_are_admitted() {
    let (e, ack) = event(admit(
        &adapter(&[SECRET_1]),
        &headers(ID_1, TS_1, SIG_1),
        BODY_1,
        at(ts1()),
    ));
    assert_eq!(e.id, ID_1);
    assert_eq!(e.kind, "standard.message");
    assert_eq!(e.provider_event, "message");
    assert_eq!(e.time, None);
    assert_eq!(serde_json::to_string(&e.data).unwrap().as_bytes(), BODY_1);
    assert_eq!(ack, Reply::accepted_id(ID_1));
    assert_eq!(ack.status, 202);
    assert_eq!(ack.body, br#"{"id":"msg_p5jXN8AQM9LWM0D4loKWxJek"}"#);

    let (e, _) = event(admit(
        &adapter(&[SECRET_2]),
        &headers(ID_2, TS_2, SIG_2),
        BODY_2,
        at(TS_2.parse().unwrap()),
    ));
    assert_eq!(e.id, ID_2);
    assert_eq!(serde_json::to_string(&e.data).unwrap().as_bytes(), BODY_2);
}

// NEGATIVE row: the near-miss signature must not match; the prefix is optional; an
// unpadded secret decodes as if it had its `=`.
#[test]
fn negative_vector() {
    let p = adapter(&[SECRET_1]);
    let near_miss = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
    assert_eq!(
        admit(&p, &headers(ID_1, TS_1, near_miss), BODY_1, at(ts1())).unwrap_err(),
        Rejection::BadSignature
    );
    let bare = adapter(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
    assert!(admit(&bare, &headers(ID_1, TS_1, SIG_1), BODY_1, at(ts1())).is_ok());
    assert_eq!(
        sign_v1("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ID_1, TS_1, BODY_1).unwrap(),
        SIG_1
    );
    assert_eq!(
        b64_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").unwrap(),
        b64_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=").unwrap()
    );
    assert_eq!(
        hex::encode(b64_lenient("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").unwrap()),
        "31f290f6bf06298aab4f08d43c3f082cf648a362da2da4"
    );
    let unpadded = sign_v1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", ID_1, TS_1, BODY_1).unwrap();
    let padded = sign_v1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=", ID_1, TS_1, BODY_1).unwrap();
    assert_eq!(unpadded, padded);
    assert_ne!(unpadded, SIG_1, "a different key signs differently");
    let p = adapter(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"]);
    assert!(admit(&p, &headers(ID_1, TS_1, &padded), BODY_1, at(ts1())).is_ok());
}

#[test]
fn rfc8032_test_1_primitive() {
    let seed = hex::decode(RFC8032_SK).unwrap();
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    assert_eq!(hex::encode(pair.public_key().as_ref()), RFC8032_PK);
    assert_eq!(hex::encode(pair.sign(b"").as_ref()), RFC8032_SIG);
    assert!(
        UnparsedPublicKey::new(&ED25519, hex::decode(RFC8032_PK).unwrap())
            .verify(b"", &hex::decode(RFC8032_SIG).unwrap())
            .is_ok()
    );
    assert_eq!(public_key_of(&seed_whsk()).unwrap(), WHPK);
}

#[test]
fn self_v1a_vector() {
    assert_eq!(sign_v1a(&seed_whsk(), ID_1, TS_1, BODY_1).unwrap(), SIG_V1A);
    // seed ‖ public key serialisation signs the same.
    let mut both = hex::decode(RFC8032_SK).unwrap();
    both.extend(hex::decode(RFC8032_PK).unwrap());
    let whsk64 = format!("whsk_{}", b64_encode(&both));
    assert_eq!(sign_v1a(&whsk64, ID_1, TS_1, BODY_1).unwrap(), SIG_V1A);

    let p = adapter(&[WHPK]);
    let (e, _) = event(admit(&p, &headers(ID_1, TS_1, SIG_V1A), BODY_1, at(ts1())));
    assert_eq!(e.id, ID_1);
    // The header of the vector: a junk v1 entry (no HMAC key configured) and the v1a one.
    let h = format!("v1,bm90LWEtdmFsaWQtaG1hYw== {SIG_V1A}");
    assert!(admit(&p, &headers(ID_1, TS_1, &h), BODY_1, at(ts1())).is_ok());
    // Tampered body, and a v1a signature under a key that is not trusted.
    assert_eq!(
        admit(
            &p,
            &headers(ID_1, TS_1, SIG_V1A),
            br#"{"test": 2432232315}"#,
            at(ts1())
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    let other = adapter(&["whpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]);
    assert_eq!(
        admit(&other, &headers(ID_1, TS_1, SIG_V1A), BODY_1, at(ts1())).unwrap_err(),
        Rejection::BadSignature
    );
    // A v1a signature is not accepted as v1, nor a v1 one as v1a.
    let as_v1 = SIG_V1A.replacen("v1a,", "v1,", 1);
    assert_eq!(
        admit(
            &adapter(&[SECRET_1, WHPK]),
            &headers(ID_1, TS_1, &as_v1),
            BODY_1,
            at(ts1())
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    let as_v1a = SIG_1.replacen("v1,", "v1a,", 1);
    assert_eq!(
        admit(
            &adapter(&[SECRET_1, WHPK]),
            &headers(ID_1, TS_1, &as_v1a),
            BODY_1,
            at(ts1())
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn rotation_second_secret_and_mixed_keys() {
    let p = adapter(&[SECRET_2, WHPK, SECRET_1]);
    assert!(admit(&p, &headers(ID_1, TS_1, SIG_1), BODY_1, at(ts1())).is_ok());
    assert!(admit(&p, &headers(ID_1, TS_1, SIG_V1A), BODY_1, at(ts1())).is_ok());
    // A sender mid-rotation sends one entry per secret; the second one matches here.
    let both = format!("{} {SIG_1}", sign_v1(SECRET_2, ID_1, "0", BODY_1).unwrap());
    assert!(admit(
        &adapter(&[SECRET_1]),
        &headers(ID_1, TS_1, &both),
        BODY_1,
        at(ts1())
    )
    .is_ok());
}

#[test]
fn window_boundaries() {
    let p = adapter(&[SECRET_1]);
    let h = headers(ID_1, TS_1, SIG_1);
    for (now, ok) in [
        (ts1() + 300, true),
        (ts1() - 300, true),
        (ts1() + 301, false),
        (ts1() - 301, false),
        (0, false),
    ] {
        let r = admit(&p, &h, BODY_1, at(now));
        if ok {
            assert!(r.is_ok(), "now = ts {:+}", now - ts1());
        } else {
            assert_eq!(r.unwrap_err(), Rejection::StaleTimestamp, "now = {now}");
        }
    }
    let narrow = Standard::new(&Config {
        secrets: vec![Secret::from(SECRET_1)],
        tolerance_secs: 10,
    })
    .unwrap();
    assert_eq!(
        admit(&narrow, &h, BODY_1, at(ts1() + 11)).unwrap_err(),
        Rejection::StaleTimestamp
    );
    assert!(admit(&narrow, &h, BODY_1, at(ts1() + 10)).is_ok());
}

#[test]
fn timestamp_must_be_integer_seconds() {
    let p = adapter(&[SECRET_1]);
    for ts in [
        "1614265330.0",
        "-1614265330",
        "+1614265330",
        "1614265330000000000000",
        "abc",
    ] {
        let sig = sign_v1(SECRET_1, ID_1, ts, BODY_1).unwrap();
        assert_eq!(
            admit(&p, &headers(ID_1, ts, &sig), BODY_1, at(ts1())).unwrap_err(),
            Rejection::BadSignature,
            "{ts}"
        );
    }
    // Milliseconds are a different, far-future instant.
    let ms = format!("{TS_1}000");
    let sig = sign_v1(SECRET_1, ID_1, &ms, BODY_1).unwrap();
    assert_eq!(
        admit(&p, &headers(ID_1, &ms, &sig), BODY_1, at(ts1())).unwrap_err(),
        Rejection::StaleTimestamp
    );
}

#[test]
fn signature_list_parsing() {
    let p = adapter(&[SECRET_1]);
    let check = |sig: &str| admit(&p, &headers(ID_1, TS_1, sig), BODY_1, at(ts1()));
    // Unknown versions are ignored, but never enough on their own.
    let v2 = SIG_1.replacen("v1,", "v2,", 1);
    assert_eq!(check(&v2).unwrap_err(), Rejection::BadSignature);
    assert!(check(&format!("{v2} {SIG_1}")).is_ok());
    assert!(check(&format!("{SIG_1} {v2}")).is_ok());
    // Extra spaces between entries are tolerated.
    assert!(check(&format!("v1,bm9wZQ==   {SIG_1}")).is_ok());
    // An entry without a comma refuses the whole header, wherever it is.
    assert_eq!(
        check(&format!("{SIG_1} garbage")).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        check(&format!("garbage {SIG_1}")).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        check(SIG_1.trim_start_matches("v1,")).unwrap_err(),
        Rejection::BadSignature
    );
    // Bad base64, truncated signature, empty signature.
    for bad in [
        "v1,!!!notbase64",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
        "v1,",
        ",",
    ] {
        assert_eq!(check(bad).unwrap_err(), Rejection::BadSignature, "{bad}");
    }
    // Too many entries.
    let many = vec!["v2,AAAA"; MAX_SIGNATURES].join(" ");
    assert!(check(&format!("{many} {SIG_1}")).is_err());
    assert!(check(&format!(
        "{} {SIG_1}",
        vec!["v2,AAAA"; MAX_SIGNATURES - 1].join(" ")
    ))
    .is_ok());
}

#[test]
fn refusals() {
    let p = adapter(&[SECRET_1]);
    let now = at(ts1());
    // Tampered and truncated body.
    assert_eq!(
        admit(
            &p,
            &headers(ID_1, TS_1, SIG_1),
            br#"{"test": 2432232315}"#,
            now
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &headers(ID_1, TS_1, SIG_1), &BODY_1[..10], now).unwrap_err(),
        Rejection::BadSignature
    );
    // The id and the timestamp are signed too.
    assert_eq!(
        admit(&p, &headers("msg_other", TS_1, SIG_1), BODY_1, now).unwrap_err(),
        Rejection::BadSignature
    );
    assert_eq!(
        admit(&p, &headers(ID_1, "1614265331", SIG_1), BODY_1, now).unwrap_err(),
        Rejection::BadSignature
    );
    // Wrong secret.
    assert_eq!(
        admit(
            &adapter(&[SECRET_2]),
            &headers(ID_1, TS_1, SIG_1),
            BODY_1,
            now
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    // Missing or empty headers, each one.
    for (i, name) in [ID, TIMESTAMP, SIGNATURE].into_iter().enumerate() {
        let mut h = headers(ID_1, TS_1, SIG_1);
        h.remove(i);
        assert_eq!(
            admit(&p, &h, BODY_1, now).unwrap_err(),
            Rejection::missing(name)
        );
        let mut h = headers(ID_1, TS_1, SIG_1);
        h[i].1 = "  ".into();
        assert_eq!(
            admit(&p, &h, BODY_1, now).unwrap_err(),
            Rejection::missing(name)
        );
    }
    // Verified but not JSON: 400.
    let sig = sign_v1(SECRET_1, ID_1, TS_1, b"plain text").unwrap();
    let r = admit(&p, &headers(ID_1, TS_1, &sig), b"plain text", now).unwrap_err();
    assert_eq!(r, Rejection::Malformed("body is not valid JSON"));
    assert_eq!(r.status(), 400);
}

#[test]
fn svix_header_aliases() {
    let p = adapter(&[SECRET_1]);
    let svix = vec![
        ("Svix-Id".to_string(), ID_1.to_string()),
        ("Svix-Timestamp".to_string(), TS_1.to_string()),
        ("Svix-Signature".to_string(), SIG_1.to_string()),
    ];
    let (e, _) = event(admit(&p, &svix, BODY_1, at(ts1())));
    assert_eq!(e.id, ID_1);
    // The webhook-* header wins when both are present.
    let mut both = headers(ID_1, TS_1, "v1,AAAA");
    both.extend(svix.clone());
    assert_eq!(
        admit(&p, &both, BODY_1, at(ts1())).unwrap_err(),
        Rejection::BadSignature
    );
    // Missing everywhere: named by the standard header.
    assert_eq!(
        admit(&p, &svix[1..], BODY_1, at(ts1())).unwrap_err(),
        Rejection::missing("webhook-id")
    );
}

#[test]
fn normalizes_type_and_time() {
    let p = adapter(&[SECRET_1]);
    let body = br#"{"type":"Invoice.Paid","timestamp":"2022-11-03T20:26:10.344522+02:00","data":{"id":"in_1"}}"#;
    let now = at(ts1());
    let sig = sign_v1(SECRET_1, ID_1, TS_1, body).unwrap();
    let (e, _) = event(admit(&p, &headers(ID_1, TS_1, &sig), body, now));
    assert_eq!(e.kind, "standard.invoice.paid");
    assert_eq!(e.provider_event, "Invoice.Paid");
    assert_eq!(e.time.as_deref(), Some("2022-11-03T18:26:10.344Z"));
    assert_eq!(e.subject, None);
    assert_eq!(serde_json::to_string(&e.data).unwrap().as_bytes(), body);

    let cases: [(&[u8], &str, &str, Option<&str>); 5] = [
        (
            br#"{"type":"user/created v2","timestamp":"yesterday"}"#,
            "standard.user_created_v2",
            "user/created v2",
            None,
        ),
        (
            br#"{"type":"..","timestamp":"2022-11-03T20:26:10Z"}"#,
            "standard.message",
            "..",
            Some("2022-11-03T20:26:10.000Z"),
        ),
        (br#"{"type":7}"#, "standard.message", "message", None),
        (br#"[{"type":"x"}]"#, "standard.message", "message", None),
        (
            br#"{"type":"a..b.","timestamp":12}"#,
            "standard.a.b",
            "a..b.",
            None,
        ),
    ];
    for (body, kind, provider_event, time) in cases {
        let sig = sign_v1(SECRET_1, ID_1, TS_1, body).unwrap();
        let (e, _) = event(admit(&p, &headers(ID_1, TS_1, &sig), body, now));
        assert_eq!(e.kind, kind);
        assert_eq!(e.provider_event, provider_event);
        assert_eq!(e.time.as_deref(), time);
    }
    let long = "x".repeat(500);
    assert_eq!(
        dotted_type("standard", &long).unwrap().len(),
        "standard.".len() + MAX_TYPE_LEN
    );
}

#[test]
fn sample_round_trip() {
    let now = at(1_700_000_000);
    let c = Config {
        secrets: vec![Secret::from(SECRET_2), Secret::from(WHPK)],
        tolerance_secs: 300,
    };
    let p = Standard::new(&c).unwrap();
    let r = sample(&c, &SampleOptions::new(now)).unwrap();
    let (e, ack) = event(admit(&p, &r.headers, &r.body, now));
    assert_eq!(e.kind, "standard.user.created");
    assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20.000Z"));
    assert!(e.id.starts_with("msg_"));
    assert_eq!(ack.status, 202);

    // v1a only: the public key is trusted, the sample signs with the private half.
    let c = Config {
        secrets: vec![Secret::from(WHPK)],
        tolerance_secs: 300,
    };
    let mut o = SampleOptions::new(now);
    assert!(sample(&c, &o).is_err(), "nothing to sign with");
    o.private_key = Some(seed_whsk());
    o.id = Some("msg_1".into());
    o.event = Some("invoice.paid".into());
    let r = sample(&c, &o).unwrap();
    let sig = Headers::get(&r.headers, "webhook-signature").unwrap();
    assert!(sig.starts_with("v1a,") && !sig.contains(' '));
    let (e, _) = event(admit(&Standard::new(&c).unwrap(), &r.headers, &r.body, now));
    assert_eq!(
        (e.id.as_str(), e.kind.as_str()),
        ("msg_1", "standard.invoice.paid")
    );
}

#[test]
fn config_errors_fail_closed() {
    let errs = |secrets: &[&str], tol: u64| {
        Standard::new(&Config {
            secrets: secrets.iter().map(|s| Secret::from(*s)).collect(),
            tolerance_secs: tol,
        })
        .err()
        .unwrap_or_default()
    };
    assert_eq!(errs(&[], 300)[0].key, "secrets");
    let e = errs(
        &[
            "",
            "whsec_!!!",
            "whpk_AAAA",
            "whsk_AAAA",
            "whsec_bXlzZWNyZXQ=",
            SECRET_1,
        ],
        0,
    );
    let keys: Vec<_> = e.iter().map(|e| e.key.as_ref()).collect();
    assert_eq!(
        keys,
        [
            "secrets[0]",
            "secrets[1]",
            "secrets[2]",
            "secrets[3]",
            "secrets[4]",
            "tolerance_secs"
        ]
    );
    for err in &e {
        assert!(!err.message.contains("bXlzZWNyZXQ"), "no secret in {err}");
    }
    assert!(errs(&[SECRET_1, WHPK], 300).is_empty());
    // Through the registry, as a config file would be.
    let cfg: crate::ProviderConfig = serde_json::from_value(serde_json::json!({
        "provider": "standard", "secrets": [SECRET_1]
    }))
    .unwrap();
    assert!(cfg.build().is_ok());
    let bad: Result<crate::ProviderConfig, _> = serde_json::from_value(serde_json::json!({
        "provider": "standard", "secrets": [SECRET_1], "tolerance": 5
    }));
    assert!(bad.is_err(), "unknown keys are refused");
}

/// `whpk_…` for a `whsk_…` signing key: what the receiving side configures.
fn public_key_of(signing_key: &str) -> Result<String, String> {
    let pair = ed25519_pair(signing_key)?;
    Ok(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        b64_encode(pair.public_key().as_ref())
    ))
}

#[test]
fn only_a_json_object_carries_type_and_timestamp() {
    let p = Peek::of(br#" {"type":"user.created","timestamp":"2024-01-01T00:00:00Z"}"#);
    assert_eq!(p.kind, Some(serde_json::json!("user.created")));
    assert!(p.timestamp.is_some());
    // serde would read the struct from an array by position.
    let p = Peek::of(br#"["user.created","2024-01-01T00:00:00Z"]"#);
    assert!(p.kind.is_none() && p.timestamp.is_none());
    let p = Peek::of(b"not json");
    assert!(p.kind.is_none() && p.timestamp.is_none());
}
