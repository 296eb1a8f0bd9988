use super::sample::signature_sha1;
use super::*;
use crate::sign::SampleOptions;

fn gh(secrets: &[&str], sha1: bool) -> Github {
    Github::new(&Config {
        secrets: secrets.iter().map(|s| Secret::from(*s)).collect(),
        accept_sha1: sha1,
    })
    .unwrap()
}

fn admit(p: &Github, headers: Vec<(String, String)>, body: &[u8]) -> Result<Admission, Rejection> {
    crate::testing::admit(p, &headers, body, SystemTime::now())
}

fn headers(sig: Option<(&str, String)>) -> Vec<(String, String)> {
    let mut h = vec![
        ("X-GitHub-Event".to_string(), "push".to_string()),
        (
            "X-GitHub-Delivery".to_string(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    if let Some((k, v)) = sig {
        h.push((k.to_string(), v));
    }
    h
}

// docs/providers/github.md, every vector.
#[test]
fn official_vectors() {
    let cases: [(&str, &[u8], &str); 6] = [
            ("It's a Secret to Everybody", b"Hello, World!", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            ("mysecret", br#"{"foo":"bar"}"#, "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"),
            ("mysecret", b"{\n  \"foo\": \"bar\"\n}\n", "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"),
            (
                "development",
                "{\n  \"foo\": \"Foo\\n\\u001B[34mbar: \u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\u{2665}\\nthis-is-lost\\u001B[0m\\u001B[2K\"\n}\n".as_bytes(),
                "sha256=9dacf9003316b09be07df56d86a2d0d6872e42a1e6c72c3bad9ff915a7c5603e",
            ),
            ("development", b"{\n  \"foo\": \"\\\\u001b\"\n}\n", "sha256=87316067e2011fae39998b18c46a14d83b3e7c3ffdd88fb2ee5afb7d11288e60"),
            (
                "It's a Secret to Everybody",
                b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D",
                "sha256=fddacfb7d7106fd32f5d94dc8846df6694e2ed5e2aed3806b11ab82cccff8d01",
            ),
        ];
    for (secret, body, expected) in cases {
        assert_eq!(signature_256(secret, body), expected);
    }
    assert_eq!(
        signature_sha1("mysecret", br#"{"foo":"bar"}"#),
        "sha1=d03207e4b030cf234e3447bac4d93add4c6643d8"
    );
    assert_eq!(
        signature_sha1(
            "It's a Secret to Everybody",
            b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D"
        ),
        "sha1=a69de3c0e8bf73ea14f2f387578c7416338528ff"
    );
}

#[test]
fn negative_vector_wrong_secret() {
    let body = b"{\n  \"foo\": \"bar\"\n}\n";
    assert_ne!(
        signature_256("foo", body),
        "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"
    );
    let p = gh(&["foo"], false);
    let sig = "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f".to_string();
    assert_eq!(
        admit(&p, headers(Some(("X-Hub-Signature-256", sig))), body).unwrap_err(),
        Rejection::BadSignature
    );
}

#[test]
fn accepts_signed_json_with_action_and_subject() {
    let body = br#"{"action":"opened","repository":{"full_name":"octo/hello"},"number":1}"#;
    let p = gh(&["old", "mysecret"], false);
    let sig = signature_256("mysecret", body);
    let Admission::Event { event, ack } =
        admit(&p, headers(Some(("X-Hub-Signature-256", sig))), body).unwrap()
    else {
        panic!("expected an event")
    };
    assert_eq!(event.kind, "github.push.opened");
    assert_eq!(event.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(event.subject.as_deref(), Some("octo/hello"));
    assert_eq!(event.provider_event, "push");
    assert_eq!(ack.status, 202);
    assert_eq!(
        ack.body,
        br#"{"id":"72d3162e-cc78-11e3-81ab-4c9367dc0958"}"#
    );
    assert_eq!(serde_json::to_string(&event.data).unwrap().as_bytes(), body);
}

#[test]
fn accepts_form_mode_signed_over_raw_bytes() {
    let body = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D";
    let p = gh(&["It's a Secret to Everybody"], false);
    let mut h = headers(Some((
        "X-Hub-Signature-256",
        signature_256("It's a Secret to Everybody", body),
    )));
    h[0].1 = "ping".into();
    h[2].1 = "application/x-www-form-urlencoded".into();
    let Admission::Event { event, .. } = admit(&p, h, body).unwrap() else {
        panic!()
    };
    assert_eq!(event.kind, "github.ping");
    let v: serde_json::Value = serde_json::to_value(&event.data).unwrap();
    assert_eq!(v["zen"], "Keep it logically awesome.");
    assert_eq!(v["hook_id"], 1);
}

#[test]
fn refusals() {
    let body = br#"{"zen":"x"}"#;
    let p = gh(&["mysecret"], false);
    let good = signature_256("mysecret", body);
    // tampered body
    assert_eq!(
        admit(
            &p,
            headers(Some(("X-Hub-Signature-256", good.clone()))),
            br#"{"zen":"y"}"#
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    // truncated body
    assert_eq!(
        admit(
            &p,
            headers(Some(("X-Hub-Signature-256", good.clone()))),
            &body[..5]
        )
        .unwrap_err(),
        Rejection::BadSignature
    );
    // missing signature
    assert_eq!(
        admit(&p, headers(None), body).unwrap_err(),
        Rejection::missing("X-Hub-Signature-256")
    );
    // sha1 only, not enabled
    let sha1 = signature_sha1("mysecret", body);
    assert_eq!(
        admit(&p, headers(Some(("X-Hub-Signature", sha1.clone()))), body).unwrap_err(),
        Rejection::missing("X-Hub-Signature-256")
    );
    // sha1 enabled
    assert!(admit(
        &gh(&["mysecret"], true),
        headers(Some(("X-Hub-Signature", sha1))),
        body
    )
    .is_ok());
    // malformed signature values
    for bad in ["sha1=00", "sha256=zz", "", "sha256="] {
        assert_eq!(
            admit(&p, headers(Some(("X-Hub-Signature-256", bad.into()))), body).unwrap_err(),
            Rejection::BadSignature,
            "{bad}"
        );
    }
    // signed, but not JSON
    let sig = signature_256("mysecret", b"not json");
    assert!(matches!(
        admit(&p, headers(Some(("X-Hub-Signature-256", sig))), b"not json").unwrap_err(),
        Rejection::Malformed(_)
    ));
    // signed JSON, but an array where an object belongs: serde would read the struct from it
    // by position (an `opened` event about `a/b`)
    for body in [
        &br#"["opened",{"full_name":"a/b"},null]"#[..],
        br#"{"action":"opened","repository":["a/b"]}"#,
        br#"{"organization":["octo"]}"#,
    ] {
        let sig = signature_256("mysecret", body);
        assert_eq!(
            admit(&p, headers(Some(("X-Hub-Signature-256", sig))), body).unwrap_err(),
            Rejection::Malformed("payload is not a JSON object"),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Signed, a header missing: malformed (400), not a signature refusal (the secret is right).
    for missing in [0, 1] {
        let mut h = headers(Some(("X-Hub-Signature-256", good.clone())));
        h.remove(missing);
        let r = admit(&p, h, body).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{r:?}");
        assert_eq!(r.status(), 400);
    }
}

#[test]
fn sample_is_accepted() {
    let c = Config {
        secrets: vec![Secret::from("s3")],
        accept_sha1: false,
    };
    let r = sample(&c, &SampleOptions::new(SystemTime::now())).unwrap();
    let p = Github::new(&c).unwrap();
    assert!(matches!(
        admit(&p, r.headers, &r.body).unwrap(),
        Admission::Event { .. }
    ));
}

#[test]
fn config_needs_a_secret() {
    assert!(Github::new(&Config {
        secrets: vec![],
        accept_sha1: false
    })
    .is_err());
    assert!(Github::new(&Config {
        secrets: vec![Secret::from(" ")],
        accept_sha1: false
    })
    .is_err());
}

// Issue 11, class 1: X-GitHub-Delivery and X-GitHub-Event are not signed. A captured
// delivery replayed with a 300-byte delivery id was answered 202 and broke the relay.
#[test]
fn class1_unsigned_headers_are_bounded_and_shaped() {
    let body = br#"{"zen":"x"}"#;
    let p = gh(&["mysecret"], false);
    let with = |event: &str, delivery: &str| {
        let mut h = headers(Some((
            "X-Hub-Signature-256",
            signature_256("mysecret", body),
        )));
        h[0].1 = event.into();
        h[1].1 = delivery.into();
        admit(&p, h, body)
    };
    let guid = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    assert!(with("push", guid).is_ok());
    assert!(with("pull_request_review_comment", guid).is_ok());
    assert!(with("push", &"a".repeat(crate::MAX_UNSIGNED_BYTES)).is_ok());
    let long = "a".repeat(crate::MAX_UNSIGNED_BYTES + 1);
    let long300 = "7".repeat(300);
    for (event, delivery) in [
        ("push", long300.as_str()),
        ("push", long.as_str()),
        ("push", "72d3162e cc78"),
        ("push", "72d3162e\u{1}cc78"),
        ("push", "72d3162e.cc78"),
        ("push", "{id}"),
        ("Push", guid),
        ("push.x", guid),
        ("push\u{0}", guid),
        (long.as_str(), guid),
    ] {
        let r = with(event, delivery).unwrap_err();
        assert!(
            matches!(r, Rejection::Malformed(_)),
            "{event:?} {delivery:?}: {r:?}"
        );
        assert_eq!(r.status(), 400);
    }
    // A signed `action` out of shape is left out of the type, never copied into it.
    let body = br#"{"action":"Opened.Now"}"#;
    let h = headers(Some((
        "X-Hub-Signature-256",
        signature_256("mysecret", body),
    )));
    let (e, _) = crate::testing::event(admit(&p, h, body));
    assert_eq!(e.kind, "github.push");
}

// Issue 11, class 1: Content-Type is not signed either. A JSON body holding
// `&payload=…` in a string (an issue comment can) must not be re-read as a form body
// whose payload the commenter wrote.
#[test]
fn class1_unsigned_content_type_cannot_reread_a_signed_body() {
    let body = br#"{"comment":{"body":"&payload=%7B%22forged%22%3Atrue%7D&"}}"#;
    let p = gh(&["mysecret"], false);
    let mut h = headers(Some((
        "X-Hub-Signature-256",
        signature_256("mysecret", body),
    )));
    assert!(admit(&p, h.clone(), body).is_ok());
    h[2].1 = "application/x-www-form-urlencoded".into();
    assert_eq!(
        admit(&p, h, body).unwrap_err(),
        Rejection::Malformed("form body is not a single payload field")
    );
}
