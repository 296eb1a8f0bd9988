use super::*;
use crate::testing::event;
use crate::Provider;

fn build(v: serde_json::Value) -> Token {
    let c: Config = serde_json::from_value(v).unwrap();
    Token::new(&c).unwrap_or_else(|e| panic!("{e:?}"))
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn admit_q(
    p: &Token,
    headers: &[(String, String)],
    query: &str,
    body: &[u8],
) -> Result<Admission, Rejection> {
    let headers = headers.to_vec();
    p.admit(
        &RawRequest {
            headers: &headers,
            query,
            body,
        },
        SystemTime::UNIX_EPOCH,
    )
}

// Alertmanager's webhook body (prometheus.io "webhook_config"), abridged to one alert.
const ALERTMANAGER: &[u8] = br#"{"version":"4","groupKey":"{}:{alertname=\"HighLatency\"}","truncatedAlerts":0,"status":"firing","receiver":"hookgate","groupLabels":{"alertname":"HighLatency"},"commonLabels":{"alertname":"HighLatency"},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","alerts":[{"status":"firing","labels":{"alertname":"HighLatency"},"annotations":{},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"c4ea2f1d0a0b0c0d"}]}"#;

#[test]
fn header_token_with_rotation() {
    let p = build(
        serde_json::json!({"tokens": ["new-token", "old-token"], "header": "X-Webhook-Token"}),
    );
    for t in ["new-token", "old-token"] {
        let (e, ack) = event(admit_q(&p, &h(&[("x-webhook-token", t)]), "", ALERTMANAGER));
        assert_eq!(e.id, crate::shared::sha256_key(ALERTMANAGER));
        assert_eq!(
            (e.kind.as_str(), e.provider_event.as_str()),
            ("token.event", "event")
        );
        assert_eq!(ack.status, 202);
        assert_eq!(
            ack.body,
            serde_json::to_vec(&serde_json::json!({"id": e.id})).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&e.data).unwrap().as_bytes(),
            ALERTMANAGER
        );
    }
    for wrong in ["new-toke", "new-token0", "NEW-TOKEN", "old-tokenx", "x"] {
        assert_eq!(
            admit_q(&p, &h(&[("X-Webhook-Token", wrong)]), "", ALERTMANAGER).unwrap_err(),
            Rejection::BadToken,
            "{wrong:?}"
        );
    }
    assert_eq!(
        admit_q(&p, &[], "", ALERTMANAGER).unwrap_err(),
        Rejection::BadToken,
        "missing is the token failing (`token` in the rejections)"
    );
    assert_eq!(
        admit_q(&p, &h(&[("X-Webhook-Token", "new-token")]), "", b"{oops")
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn bearer_and_basic() {
    let bearer = build(serde_json::json!({"tokens": ["s3cr3t"], "header": "Authorization"}));
    assert!(admit_q(
        &bearer,
        &h(&[("Authorization", "Bearer s3cr3t")]),
        "",
        b"{}"
    )
    .is_ok());
    assert!(admit_q(
        &bearer,
        &h(&[("Authorization", "bearer  s3cr3t")]),
        "",
        b"{}"
    )
    .is_ok());
    assert!(admit_q(&bearer, &h(&[("Authorization", "s3cr3t")]), "", b"{}").is_ok());
    assert_eq!(
        admit_q(&bearer, &h(&[("Authorization", "Bearer s3cr3")]), "", b"{}").unwrap_err(),
        Rejection::BadToken
    );

    // Grafana / Alertmanager `basic_auth`: user "admin", password "s3cr3t".
    let basic = build(serde_json::json!({"tokens": ["s3cr3t"], "basic": true}));
    let ok = "Basic YWRtaW46czNjcjN0"; // base64("admin:s3cr3t")
    assert!(admit_q(&basic, &h(&[("Authorization", ok)]), "", b"{}").is_ok());
    for bad in [
        "Basic YWRtaW46czNjcjN1", // admin:s3cr3u
        "Basic czNjcjN0",         // no colon
        "Bearer s3cr3t",          // other scheme
        "Basic !!!",              // not base64
        "Basic YWRtaW46",         // empty password
    ] {
        assert_eq!(
            admit_q(&basic, &h(&[("Authorization", bad)]), "", b"{}").unwrap_err(),
            Rejection::BadToken,
            "{bad}"
        );
    }
    assert_eq!(
        admit_q(&basic, &[], "", b"{}").unwrap_err(),
        Rejection::BadToken
    );
}

#[test]
fn query_token_and_form_bodies() {
    // nginx-rtmp / SRS style `on_publish` callbacks: form body, token in the query.
    let p = build(serde_json::json!({"tokens": ["a b&c"], "query": "token",
        "type_pointer": "/call"}));
    let form = h(&[("Content-Type", "application/x-www-form-urlencoded")]);
    let body = b"call=publish&app=live&name=stream1&addr=10.0.0.1&call=dup";
    let (e, _) = event(admit_q(&p, &form, "x=1&token=a+b%26c", body));
    assert_eq!(e.kind, "token.publish");
    assert_eq!(e.provider_event, "publish");
    let data = serde_json::to_value(&e.data).unwrap();
    assert_eq!(data["name"], "stream1");
    assert_eq!(data["call"], "publish", "first value wins");
    assert_eq!(
        admit_q(&p, &form, "token=a+b", body).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(
        admit_q(&p, &form, "", body).unwrap_err(),
        Rejection::BadToken
    );
    assert_eq!(
        admit_q(&p, &form, "token=", body).unwrap_err(),
        Rejection::BadToken
    );
    // An empty body is `null` data.
    let (e, _) = event(admit_q(&p, &[], "token=a%20b%26c", b""));
    assert_eq!(serde_json::to_string(&e.data).unwrap(), "null");
    // A token with a `+`, pasted into the sender's URL as it is, is the token too; encoded
    // as a form would (`%2B`) as well.
    let plus = build(serde_json::json!({"tokens": ["q+tok/abc="], "query": "token"}));
    for query in [
        "token=q+tok/abc=",
        "token=q%2Btok%2Fabc%3D",
        "a=1&token=q+tok/abc=",
    ] {
        assert!(admit_q(&plus, &[], query, b"{}").is_ok(), "{query}");
    }
    for query in [
        "token=q+tok/abc",
        "token=q%20tok/abc=",
        "tok=q+tok/abc=",
        "token=",
    ] {
        assert_eq!(
            admit_q(&plus, &[], query, b"{}").unwrap_err(),
            Rejection::BadToken,
            "{query}"
        );
    }
}

#[test]
fn id_and_type_locations() {
    let p = build(serde_json::json!({"tokens": ["t"], "header": "X-Token",
        "id_pointer": "/groupKey", "type_pointer": "/status"}));
    let (e, ack) = event(admit_q(&p, &h(&[("X-Token", "t")]), "", ALERTMANAGER));
    assert_eq!(e.id, r#"{}:{alertname="HighLatency"}"#);
    assert_eq!(e.kind, "token.firing");
    assert_eq!(ack.status, 202);
    let p = build(serde_json::json!({"tokens": ["t"], "header": "X-Token",
        "id_header": "X-Request-Id", "type_header": "X-Event"}));
    let (e, _) = event(admit_q(
        &p,
        &h(&[
            ("X-Token", "t"),
            ("X-Request-Id", "r-1"),
            ("X-Event", "Stream.Started"),
        ]),
        "",
        b"{}",
    ));
    assert_eq!(
        (e.id.as_str(), e.kind.as_str()),
        ("r-1", "token.stream.started")
    );
    assert_eq!(e.provider_event, "Stream.Started");
    // Verified, but the id is missing or out of shape: 400.
    let r = admit_q(&p, &h(&[("X-Token", "t")]), "", b"{}").unwrap_err();
    assert_eq!(r.status(), 400);
    let r = admit_q(
        &p,
        &h(&[("X-Token", "t"), ("X-Request-Id", "a b")]),
        "",
        b"{}",
    )
    .unwrap_err();
    assert_eq!(r.status(), 400);
    // A type from the body is held to what a type header is: bounded, no control character.
    let p = build(serde_json::json!({"tokens": ["t"], "header": "X-Token",
        "type_pointer": "/status"}));
    let long = format!(r#"{{"status":"{}"}}"#, "f".repeat(201));
    for body in [
        r#"{"status":"fir\ning"}"#,
        r#"{"status":"a\u0007"}"#,
        long.as_str(),
    ] {
        let r = admit_q(&p, &h(&[("X-Token", "t")]), "", body.as_bytes()).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
    }
    let (e, _) = event(admit_q(
        &p,
        &h(&[("X-Token", "t")]),
        "",
        br#"{"status":"Firing Now"}"#,
    ));
    assert_eq!(e.kind, "token.firing_now");
    // A numeric id as written while it is a 64-bit integer; past that (or a fraction) it would
    // be rounded, and two events could share one id: refused.
    let p = build(serde_json::json!({"tokens": ["t"], "header": "X-Token", "id_pointer": "/id"}));
    let with = h(&[("X-Token", "t")]);
    for (body, id) in [
        (r#"{"id":18446744073709551615}"#, "18446744073709551615"),
        (r#"{"id":-9223372036854775808}"#, "-9223372036854775808"),
        (
            r#"{"id":"12345678901234567890123"}"#,
            "12345678901234567890123",
        ),
    ] {
        let (e, _) = event(admit_q(&p, &with, "", body.as_bytes()));
        assert_eq!(e.id, id);
    }
    for body in [
        r#"{"id":12345678901234567890123}"#,
        r#"{"id":1.5}"#,
        r#"{"id":1e3}"#,
    ] {
        let r = admit_q(&p, &with, "", body.as_bytes()).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
    }
}

#[test]
fn config_errors_and_warnings() {
    let err = |v: serde_json::Value| {
        let c: Config = serde_json::from_value(v).unwrap();
        Token::new(&c)
            .err()
            .unwrap()
            .iter()
            .map(|e| e.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(err(serde_json::json!({"header": "X-T"})), ["tokens"]);
    assert_eq!(
        err(serde_json::json!({"tokens": [""], "header": "X-T"})),
        ["tokens"]
    );
    assert_eq!(err(serde_json::json!({"tokens": ["t"]})), ["header"]);
    assert_eq!(
        err(serde_json::json!({"tokens": ["t"], "header": "X-T", "basic": true})),
        ["header"]
    );
    assert_eq!(
        err(serde_json::json!({"tokens": ["t"], "header": "bad header"})),
        ["header"]
    );
    assert_eq!(
        err(serde_json::json!({"tokens": ["t"], "query": "a=b"})),
        ["query"]
    );
    assert_eq!(
        err(
            serde_json::json!({"tokens": ["t"], "basic": true, "id_header": "X-I", "id_pointer": "/id"})
        ),
        ["id_pointer"]
    );
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"tokens": ["t"], "prefix": "x"}))
            .is_err()
    );
    let c: Config =
        serde_json::from_value(serde_json::json!({"tokens": ["t"], "basic": true})).unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 2);
    assert!(w[0].contains("not what it contains"));
    assert!(w[1].contains("no id_header or id_pointer"));
    let c: Config = serde_json::from_value(
        serde_json::json!({"tokens": ["t"], "basic": true, "id_pointer": "/id"}),
    )
    .unwrap();
    assert_eq!(c.warnings().len(), 1);
}

#[test]
fn samples_are_admitted() {
    for v in [
        serde_json::json!({"tokens": ["t 1&"], "query": "token", "id_pointer": "/id", "type_pointer": "/status"}),
        serde_json::json!({"tokens": ["t"], "basic": true}),
        serde_json::json!({"tokens": ["t"], "header": "X-Token", "id_header": "X-Id", "type_header": "X-Type"}),
    ] {
        let c: Config = serde_json::from_value(v.clone()).unwrap();
        let p = Token::new(&c).unwrap();
        let mut o = SampleOptions::new(SystemTime::UNIX_EPOCH);
        o.id = Some("evt-9".into());
        o.event = Some("resolved".into());
        let s = sample(&c, &o).unwrap();
        let (e, _) = event(admit_q(&p, &s.headers, &s.query, &s.body));
        if v.get("basic").is_none() {
            assert_eq!(
                (e.id.as_str(), e.kind.as_str()),
                ("evt-9", "token.resolved"),
                "{v}"
            );
        }
        assert_eq!(p.kind(), ProviderKind::Token);
    }
}
