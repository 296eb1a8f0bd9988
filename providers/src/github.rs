//! GitHub: HMAC-SHA256 of the raw body in `X-Hub-Signature-256`, delivery id in
//! `X-GitHub-Delivery`. GitHub signs no timestamp, so replays are caught by dedup, and signs
//! neither the delivery id nor the event name: a replay with a new delivery id is a new event.
//! Both headers are therefore taken only in the shape GitHub sends (issue 11).
//! Protocol: PROVIDERS.md §1.

use std::borrow::Cow;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;
use sha2::Sha256;

use crate::sign::{SampleOptions, SampleRequest};
use crate::{
    form, require_secrets, Admission, ConfigError, Data, Event, ProviderKind, RawRequest,
    Rejection, Reply, Secret,
};

const SIGNATURE_256: &str = "x-hub-signature-256";
const SIGNATURE_SHA1: &str = "x-hub-signature";
const EVENT: &str = "x-github-event";
const DELIVERY: &str = "x-github-delivery";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Webhook secrets; every one is tried (rotation).
    pub secrets: Vec<Secret>,
    /// Accept the legacy `X-Hub-Signature` (HMAC-SHA1) when no SHA-256 header is sent.
    #[serde(default)]
    pub accept_sha1: bool,
}

impl Config {
    /// Human warnings for `hookgate check`. The unsigned `X-GitHub-Delivery` is GitHub's
    /// design, not a choice of this config, so it is documented (docs/security.md), not warned.
    pub fn warnings(&self) -> Vec<String> {
        if self.accept_sha1 {
            vec!["accept_sha1 = true: deliveries without X-Hub-Signature-256 are checked with HMAC-SHA1".to_owned()]
        } else {
            Vec::new()
        }
    }
}

pub struct Github {
    secrets: Vec<Secret>,
    accept_sha1: bool,
}

impl Github {
    pub fn new(c: &Config) -> Result<Self, Vec<ConfigError>> {
        require_secrets("secrets", &c.secrets).map_err(|e| vec![e])?;
        Ok(Github {
            secrets: c.secrets.clone(),
            accept_sha1: c.accept_sha1,
        })
    }

    fn verify(&self, req: &RawRequest<'_>) -> Result<(), Rejection> {
        // The SHA-256 header wins whenever it is present; no fallback to SHA-1 then.
        if let Some(sig) = req.header(SIGNATURE_256) {
            let mac = sig
                .trim()
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .ok_or(Rejection::BadSignature)?;
            return self
                .secrets
                .iter()
                .any(|s| mac_ok::<Hmac<Sha256>>(s, req.body, &mac))
                .then_some(())
                .ok_or(Rejection::BadSignature);
        }
        if self.accept_sha1 {
            if let Some(sig) = req.header(SIGNATURE_SHA1) {
                let mac = sig
                    .trim()
                    .strip_prefix("sha1=")
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or(Rejection::BadSignature)?;
                return self
                    .secrets
                    .iter()
                    .any(|s| mac_ok::<Hmac<Sha1>>(s, req.body, &mac))
                    .then_some(())
                    .ok_or(Rejection::BadSignature);
            }
        }
        Err(Rejection::MissingHeader("X-Hub-Signature-256"))
    }
}

fn mac_ok<M: Mac + hmac::digest::KeyInit>(secret: &Secret, body: &[u8], expected: &[u8]) -> bool {
    let mut mac =
        <M as Mac>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

/// The fields of a payload that the envelope needs; everything else stays in `data` untouched.
#[derive(Deserialize)]
struct Peek {
    action: Option<String>,
    repository: Option<Repository>,
    organization: Option<Organization>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Deserialize)]
struct Organization {
    login: Option<String>,
}

impl crate::Provider for Github {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Github
    }

    fn admit(&self, req: &RawRequest<'_>, _now: SystemTime) -> Result<Admission, Rejection> {
        self.verify(req)?;
        // Neither header is signed: a captured delivery can be replayed with other values, so
        // they are taken only in the shape GitHub sends (a GUID; a lowercase event name).
        let event_name = crate::bounded(
            req.require_header(EVENT)?,
            crate::shape::lower_name,
            "X-GitHub-Event is not an event name",
        )?;
        let delivery = crate::bounded(
            req.require_header(DELIVERY)?,
            crate::shape::guid,
            "X-GitHub-Delivery is not a delivery GUID",
        )?;
        let json = json_payload(req)?;
        let peek: Peek = serde_json::from_slice(&json)
            .map_err(|_| Rejection::Malformed("payload is not a JSON object"))?;
        let mut kind = format!("github.{event_name}");
        if let Some(action) = peek.action.as_deref().filter(|a| is_action(a)) {
            kind.push('.');
            kind.push_str(action);
        }
        let subject = peek
            .repository
            .and_then(|r| r.full_name)
            .or_else(|| peek.organization.and_then(|o| o.login));
        let event = Event {
            id: delivery.to_owned(),
            kind,
            provider_event: event_name.to_owned(),
            time: None,
            subject,
            data: Data::json(&json)?,
            content_key: None,
        };
        Ok(Admission::Event {
            ack: Reply::accepted_id(delivery),
            event,
        })
    }
}

/// The JSON text of a delivery: the body itself, or the `payload` field of a form body.
/// Borrowed in JSON mode: the body is copied once, into the event's data.
///
/// `Content-Type` is not signed, so the same signed bytes must not read as two payloads: a
/// form body is exactly `payload=<encoded JSON>` (all GitHub sends), never a JSON body that
/// happens to hold `&payload=…` in a string (an issue comment can).
fn json_payload<'a>(req: &RawRequest<'a>) -> Result<Cow<'a, [u8]>, Rejection> {
    let form = req.header("content-type").is_some_and(|ct| {
        ct.trim_start()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !form {
        return Ok(Cow::Borrowed(req.body));
    }
    req.body
        .strip_prefix(b"payload=")
        .filter(|rest| !rest.contains(&b'&'))
        .and_then(|_| form::pairs(req.body).next())
        .map(|(_, v)| Cow::Owned(v))
        .ok_or(Rejection::Malformed(
            "form body is not a single payload field",
        ))
}

/// An `action` (signed, in the body) becomes a type segment only as GitHub writes it:
/// `[a-z0-9_]`, at most 64 bytes; anything else is left out of the type.
fn is_action(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(crate::shape::lower_name)
}

/// `sha256=<hex>` of `body` under `secret`: the value GitHub sends.
pub fn signature_256(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `sha1=<hex>`: the legacy header.
pub fn signature_sha1(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery as GitHub sends it, signed with the source's first secret.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let secret = c.secrets.first().ok_or("no secret configured")?;
    let event = o.event.as_deref().unwrap_or("push");
    let body = o.payload.clone().unwrap_or_else(|| {
        br#"{"ref":"refs/heads/main","repository":{"full_name":"octo-org/hello-world"},"sender":{"login":"octocat"}}"#.to_vec()
    });
    let id = o.id.clone().unwrap_or_else(|| {
        let b = crate::crypto::random_bytes(16);
        format!(
            "{}-{}-{}-{}-{}",
            hex::encode(&b[0..4]),
            hex::encode(&b[4..6]),
            hex::encode(&b[6..8]),
            hex::encode(&b[8..10]),
            hex::encode(&b[10..16])
        )
    });
    Ok(delivery(secret.expose(), event, &id, &body))
}

/// A delivery as GitHub sends it.
pub fn delivery(secret: &str, event: &str, delivery: &str, body: &[u8]) -> SampleRequest {
    SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "GitHub-Hookshot/hookgate-sign".into()),
            ("X-GitHub-Event".into(), event.into()),
            ("X-GitHub-Delivery".into(), delivery.into()),
            ("X-Hub-Signature-256".into(), signature_256(secret, body)),
            ("X-Hub-Signature".into(), signature_sha1(secret, body)),
        ],
        body: body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh(secrets: &[&str], sha1: bool) -> Github {
        Github::new(&Config {
            secrets: secrets.iter().map(|s| Secret::from(*s)).collect(),
            accept_sha1: sha1,
        })
        .unwrap()
    }

    fn admit(
        p: &Github,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Result<Admission, Rejection> {
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

    // PROVIDERS.md §1.6, every OFFICIAL row.
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
        let sig =
            "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f".to_string();
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
        let body =
            b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D";
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
            Rejection::MissingHeader("X-Hub-Signature-256")
        );
        // sha1 only, not enabled
        let sha1 = signature_sha1("mysecret", body);
        assert_eq!(
            admit(&p, headers(Some(("X-Hub-Signature", sha1.clone()))), body).unwrap_err(),
            Rejection::MissingHeader("X-Hub-Signature-256")
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
        // signed, missing delivery id
        let mut h = headers(Some(("X-Hub-Signature-256", good)));
        h.remove(1);
        assert_eq!(
            admit(&p, h, body).unwrap_err(),
            Rejection::MissingHeader("x-github-delivery")
        );
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
}
