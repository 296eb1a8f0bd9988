use super::*;
use crate::testing::{admit, event};
use crate::Provider;
use std::time::Duration;

const SECRET: &str = "hookgate-gitee";
/// Gitee's documented example timestamp (help "WebHook 推送数据格式说明").
const TS: &str = "1576754827988";
/// SELF: Python `base64.b64encode(hmac.new(b"hookgate-gitee", b"1576754827988\nhookgate-gitee",
/// hashlib.sha256).digest())`, the algorithm of Gitee's help "WebHook 密钥验证和验证算法".
/// Gitee publishes no secret for its example `sign`, so it cannot serve as a vector.
const SIG: &str = "75eCUc3ySJ6hlzp8cfB7bJ8vSBqMuru/dmy3RgOX4k8=";

/// The start of Gitee's documented Push Hook payload, password and signature included.
fn push_body(password: &str, timestamp: &str, sign: &str) -> Vec<u8> {
    format!(
        r#"{{"hook_name":"push_hooks","password":"{password}","hook_id":1,"hook_url":"https://gitee.com/liwen/gitos/hooks/1/edit","timestamp":"{timestamp}","sign":"{sign}","ref":"refs/heads/change_commitlint_config","before":"0000000000000000000000000000000000000000","after":"1cdcd819599cbb4099289dbbec762452f006cb40","created":true,"deleted":false,"compare":"https://gitee.com/oschina/gitee/compare/0000000000000000000000000000000000000000...1cdcd819599cbb4099289dbbec762452f006cb40","repository":{{"id":120249025,"name":"Gitee","path":"gitee","full_name":"Gitee/gitee"}}}}"#
    )
    .into_bytes()
}

const MR_BODY: &[u8] = br#"{"hook_name":"merge_request_hooks","password":"pwd","hook_id":1,"timestamp":"1576754827988","sign":"","action":"open","number":1,"title":"Add README","project":{"path_with_namespace":"liwen/gitos"}}"#;

fn gitee(tokens: &[&str]) -> Gitee {
    Gitee::new(&Config {
        tokens: tokens.iter().map(|t| Secret::from(*t)).collect(),
        tolerance_secs: None,
    })
    .unwrap()
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

const NOW: u64 = 1_576_754_830_000;

#[test]
fn signature_vector() {
    assert_eq!(sign(SECRET, TS), SIG);
}

#[test]
fn signature_mode() {
    let p = gitee(&["old", SECRET]);
    let headers = h(&[
        ("X-Gitee-Token", SIG),
        ("X-Gitee-Timestamp", TS),
        ("X-Gitee-Event", "Push Hook"),
    ]);
    let body = push_body("", TS, SIG);
    let (e, ack) = event(admit(&p, &headers, &body, at_ms(NOW)));
    assert_eq!(e.kind, "gitee.push_hooks");
    assert_eq!(e.provider_event, "Push Hook");
    assert_eq!(e.subject.as_deref(), Some("Gitee/gitee"));
    let data = serde_json::to_value(&e.data).unwrap();
    for field in REDACTED_FIELDS {
        assert!(data.get(field).is_none(), "{field} reached data");
    }
    assert!(!serde_json::to_string(&e.data).unwrap().contains(SIG));
    assert_eq!(data["after"], "1cdcd819599cbb4099289dbbec762452f006cb40");
    assert_eq!(ack.status, 202);
    // The id leaves out the timestamp and signature: a redelivery, signed again later, maps
    // to the same id; so does the same body in password mode.
    let later = (TS.parse::<u64>().unwrap() + 60_000).to_string();
    let sig2 = sign(SECRET, &later);
    let again = h(&[("X-Gitee-Token", &sig2), ("X-Gitee-Timestamp", &later)]);
    let (e2, _) = event(admit(&p, &again, &push_body("", &later, &sig2), at_ms(NOW)));
    assert_eq!(e2.id, e.id);
    assert_eq!(
        e.id,
        crate::shared::sha256_key(canonical(&data).as_bytes()),
        "sha256 of the canonical body without the three fields"
    );
    // URL-encoded as Gitee's help describes: decoded first.
    let encoded = SIG
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let enc = h(&[("X-Gitee-Token", &encoded), ("X-Gitee-Timestamp", TS)]);
    assert!(admit(&p, &enc, &body, at_ms(NOW)).is_ok());
}

#[test]
fn signature_mode_refusals() {
    let p = gitee(&[SECRET]);
    let body = push_body("", TS, SIG);
    let run = |token: &str, ts: &str, now: u64| {
        admit(
            &p,
            &h(&[("X-Gitee-Token", token), ("X-Gitee-Timestamp", ts)]),
            &body,
            at_ms(now),
        )
    };
    let ts: u64 = TS.parse().unwrap();
    // Fresh within an hour either way, inclusive.
    assert!(run(SIG, TS, ts + 3_600_000).is_ok());
    assert!(run(SIG, TS, ts - 3_600_000).is_ok());
    assert_eq!(
        run(SIG, TS, ts + 3_600_001).unwrap_err(),
        Rejection::StaleTimestamp
    );
    assert_eq!(
        run(SIG, TS, ts - 3_600_001).unwrap_err(),
        Rejection::StaleTimestamp
    );
    // The timestamp is signed; a signature from another secret; garbage.
    assert_eq!(
        run(SIG, "1576754827989", NOW).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(
        run(&sign("other", TS), TS, NOW).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(run("!!", TS, NOW).unwrap_err(), Rejection::BadToken);
    assert_eq!(
        run(SIG, "15767548279x8", NOW).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(run(SIG, "", NOW).unwrap_err(), Rejection::BadToken);
    // No timestamp: only a password can match.
    assert_eq!(
        admit(&p, &h(&[("X-Gitee-Token", SIG)]), &body, at_ms(NOW)).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(
        admit(&p, &[], &body, at_ms(NOW)).unwrap_err(),
        Rejection::BadToken,
        "missing is the token failing (`token` in the rejections)"
    );
    // A shorter window.
    let short = Gitee::new(&Config {
        tokens: vec![Secret::from(SECRET)],
        tolerance_secs: Some(60),
    })
    .unwrap();
    let r = admit(
        &short,
        &h(&[("X-Gitee-Token", SIG), ("X-Gitee-Timestamp", TS)]),
        &body,
        at_ms(ts + 61_000),
    );
    assert_eq!(r.unwrap_err(), Rejection::StaleTimestamp);
}

#[test]
fn password_mode() {
    let p = gitee(&["pwd"]);
    let headers = h(&[
        ("X-Gitee-Token", "pwd"),
        ("X-Gitee-Timestamp", TS),
        ("X-Gitee-Event", "Merge Request Hook"),
    ]);
    let (e, _) = event(admit(&p, &headers, MR_BODY, at_ms(NOW)));
    assert_eq!(e.kind, "gitee.merge_request_hooks.open");
    assert_eq!(e.provider_event, "Merge Request Hook");
    assert_eq!(e.subject.as_deref(), Some("liwen/gitos"));
    let text = serde_json::to_string(&e.data).unwrap();
    assert!(
        !text.contains("pwd"),
        "the password never reaches data: {text}"
    );
    // Password mode checks no window: Gitee's timestamp is not signed there.
    assert!(admit(&p, &headers, MR_BODY, at_ms(NOW * 2)).is_ok());
    for wrong in ["pw", "pwd0", "PWD", ""] {
        let r = admit(&p, &h(&[("X-Gitee-Token", wrong)]), MR_BODY, at_ms(NOW));
        assert!(
            matches!(r, Err(Rejection::BadToken | Rejection::MissingHeader(_))),
            "{wrong:?}"
        );
    }
    // Verified, but not what Gitee sends: 400.
    let ok = h(&[("X-Gitee-Token", "pwd")]);
    assert_eq!(
        admit(&p, &ok, b"[1]", at_ms(NOW)).unwrap_err().status(),
        400
    );
    assert_eq!(admit(&p, &ok, b"{}", at_ms(NOW)).unwrap_err().status(), 400);
    // Without hook_name, X-Gitee-Event names the hook.
    let ev = h(&[("X-Gitee-Token", "pwd"), ("X-Gitee-Event", "Note Hook")]);
    let (e, _) = event(admit(&p, &ev, br#"{"action":"comment"}"#, at_ms(NOW)));
    assert_eq!(e.kind, "gitee.note_hook.comment");
    // The body is not covered by the token: names that become the type are held to Gitee's
    // shape, never mapped into it.
    let long = format!(r#"{{"hook_name":"{}"}}"#, "p".repeat(201));
    for body in [
        r#"{"hook_name":"push\nhooks"}"#,
        r#"{"hook_name":"Push.Hooks"}"#,
        r#"{"hook_name":"push_hooks","action":"o\u0007pen"}"#,
        r#"{"hook_name":"push_hooks","action":"state change"}"#,
        long.as_str(),
        // Another JSON type where Gitee sends a name is refused, not passed over.
        r#"{"hook_name":5}"#,
        r#"{"hook_name":{"a":1}}"#,
        r#"{"hook_name":"push_hooks","action":1}"#,
        r#"{"hook_name":"push_hooks","action":{"x":1}}"#,
    ] {
        let r = admit(&p, &ok, body.as_bytes(), at_ms(NOW)).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
    }
    // X-Gitee-Event is held to a hook's name whether or not the body names the hook (it
    // becomes `providerevent`).
    for header in [
        "Note-Hook",
        "Push/Hook#*",
        "Push Hook<script>alert(1)</script>",
    ] {
        let odd = h(&[("X-Gitee-Token", "pwd"), ("X-Gitee-Event", header)]);
        for body in [&b"{}"[..], MR_BODY] {
            let r = admit(&p, &odd, body, at_ms(NOW)).unwrap_err();
            assert!(matches!(r, Rejection::Malformed(_)), "{header}: {r:?}");
        }
    }
}

/// `data` is the body without the password, signature and timestamp, every other value as
/// sent (an integer past 64 bits went through `Value`: 1.8446744073709552e19).
#[test]
fn data_keeps_every_value_as_sent() {
    let p = gitee(&["pwd"]);
    let body = br#"{"hook_name":"push_hooks","password":"pwd","timestamp":"1","sign":"","big":18446744073709551617}"#;
    let (e, _) = event(admit(&p, &h(&[("X-Gitee-Token", "pwd")]), body, at_ms(NOW)));
    assert_eq!(
        serde_json::to_string(&e.data).unwrap(),
        r#"{"big":18446744073709551617,"hook_name":"push_hooks"}"#
    );
}

#[test]
fn canonical_form() {
    let a: Value = serde_json::from_str(r#"{"b": [1, {"z": "é", "a": null}], "a": 1.5}"#).unwrap();
    assert_eq!(canonical(&a), r#"{"a":1.5,"b":[1,{"a":null,"z":"é"}]}"#);
    let b: Value = serde_json::from_str(r#"{"a":1.5,"b":[1,{"a":null,"z":"\u00e9"}]}"#).unwrap();
    assert_eq!(canonical(&a), canonical(&b));
}

#[test]
fn samples_and_config() {
    let c = Config {
        tokens: vec![Secret::from(SECRET)],
        tolerance_secs: None,
    };
    let p = gitee(&[SECRET]);
    let mut o = SampleOptions::new(at_ms(NOW));
    for (ev, kind) in [
        (None, "gitee.push_hooks"),
        (
            Some("merge_request_hooks"),
            "gitee.merge_request_hooks.open",
        ),
        // The header's name for it works as well.
        (Some("Merge Request Hook"), "gitee.merge_request_hooks.open"),
        (Some("Push Hook"), "gitee.push_hooks"),
    ] {
        o.event = ev.map(str::to_owned);
        let s = sample(&c, &o).unwrap();
        let (e, _) = event(admit(&p, &s.headers, &s.body, at_ms(NOW)));
        assert_eq!(e.kind, kind);
        let text = serde_json::to_string(&e.data).unwrap();
        assert!(!text.contains("\"sign\""), "{text}");
    }
    assert_eq!(p.kind(), ProviderKind::Gitee);
    let bad = Gitee::new(&Config {
        tokens: vec![],
        tolerance_secs: Some(0),
    })
    .err()
    .unwrap();
    assert_eq!(bad.len(), 2);
}
