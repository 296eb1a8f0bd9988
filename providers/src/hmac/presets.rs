//! Presets for `provider = "hmac"`: `preset = "stripe"` fills in the header, algorithm,
//! encoding, prefix, signed-payload template, timestamp and id/type locations from the
//! sender's documentation. Every key set by hand in the source overrides the preset's value
//! (an empty `prefix` counts as unset).
//!
//! | preset | signature | signed payload | timestamp | id | type |
//! |---|---|---|---|---|---|
//! | `stripe` | `Stripe-Signature: t=…,v1=…` hex SHA-256 | `{t}.{body}` | `t`, 300 s | `/id` | `/type` |
//! | `shopify` | `X-Shopify-Hmac-Sha256` base64 SHA-256 | body | — | `X-Shopify-Webhook-Id` | `X-Shopify-Topic` |
//! | `slack` | `X-Slack-Signature: v0=…` hex SHA-256 | `v0:{ts}:{body}` | `X-Slack-Request-Timestamp`, 300 s | `/event_id` | `/event/type` |
//! | `github` | `X-Hub-Signature-256: sha256=…` hex | body | — | `X-GitHub-Delivery` | `X-GitHub-Event` |
//! | `gitea` | `X-Gitea-Signature` hex SHA-256 | body | — | `X-Gitea-Delivery` | `X-Gitea-Event` |
//! | `paddle` | `Paddle-Signature: ts=…;h1=…` hex SHA-256 | `{ts}:{body}` | `ts`, 5 s (Paddle's SDK default) | `/event_id` | `/event_type` |
//! | `linear` | `Linear-Signature` hex SHA-256 | body | — (in the body only) | `Linear-Delivery` | `/type` |
//!
//! Not a preset: **Twilio** signs `base64(HMAC-SHA1(auth token, public URL + the form
//! parameters sorted by name, each name and value concatenated))` and sends form bodies. That
//! needs the public URL as Twilio called it (scheme, host and port in front of any proxy) and a
//! form canonicalisation, neither of which `hmac` has; a preset would have to fake one.

use super::Config;
use crate::ConfigError;

/// Every preset name, in the order of the table above.
pub const NAMES: [&str; 7] = [
    "stripe", "shopify", "slack", "github", "gitea", "paddle", "linear",
];

/// The keys a preset sets (secrets are always the source's own).
fn preset(name: &str) -> Option<Config> {
    let s = |v: &str| Some(v.to_owned());
    let base = Config::default();
    Some(match name {
        // docs.stripe.com/webhooks "Verify signatures manually".
        "stripe" => Config {
            signature_header: s("Stripe-Signature"),
            signature_param: s("v1"),
            timestamp_param: s("t"),
            signed_payload: s("{timestamp}.{body}"),
            tolerance_secs: Some(300),
            id_pointer: s("/id"),
            type_pointer: s("/type"),
            ..base
        },
        // shopify.dev "Verify webhooks": base64 HMAC-SHA256 of the raw body.
        "shopify" => Config {
            signature_header: s("X-Shopify-Hmac-Sha256"),
            encoding: s("base64"),
            id_header: s("X-Shopify-Webhook-Id"),
            type_header: s("X-Shopify-Topic"),
            ..base
        },
        // docs.slack.dev "Verifying requests from Slack"; Events API url_verification.
        "slack" => Config {
            signature_header: s("X-Slack-Signature"),
            prefix: Some("v0=".into()),
            timestamp_header: s("X-Slack-Request-Timestamp"),
            tolerance_secs: Some(300),
            signed_payload: s("v0:{timestamp}:{body}"),
            id_pointer: s("/event_id"),
            type_pointer: s("/event/type"),
            challenge_pointer: s("/challenge"),
            ..base
        },
        // docs.github.com "Validating webhook deliveries" (the `github` provider does more).
        "github" => Config {
            signature_header: s("X-Hub-Signature-256"),
            prefix: Some("sha256=".into()),
            id_header: s("X-GitHub-Delivery"),
            type_header: s("X-GitHub-Event"),
            ..base
        },
        // docs.gitea.com "Webhooks": hex HMAC-SHA256 of the body.
        "gitea" => Config {
            signature_header: s("X-Gitea-Signature"),
            id_header: s("X-Gitea-Delivery"),
            type_header: s("X-Gitea-Event"),
            ..base
        },
        // developer.paddle.com "Verify webhook signatures" (Paddle Billing).
        "paddle" => Config {
            signature_header: s("Paddle-Signature"),
            signature_param: s("h1"),
            param_separator: s(";"),
            timestamp_param: s("ts"),
            signed_payload: s("{timestamp}:{body}"),
            tolerance_secs: Some(5),
            id_pointer: s("/event_id"),
            type_pointer: s("/event_type"),
            ..base
        },
        // linear.app/developers/webhooks "Securing webhooks".
        "linear" => Config {
            signature_header: s("Linear-Signature"),
            id_header: s("Linear-Delivery"),
            type_pointer: s("/type"),
            ..base
        },
        _ => return None,
    })
}

/// `c` with its preset's keys filled in wherever `c` leaves them unset; `c` itself when it
/// names no preset.
pub fn resolve(c: &Config) -> Result<Config, ConfigError> {
    let Some(name) = c.preset.as_deref() else {
        return Ok(c.clone());
    };
    let p = preset(&name.trim().to_ascii_lowercase()).ok_or_else(|| {
        ConfigError::new(
            "preset",
            format!("unknown preset {name:?}; known: {}", NAMES.join(", ")),
        )
    })?;
    let c = c.clone();
    // Each pair is one choice (a header, or a place in the body or the signature header):
    // set by hand, either half replaces the preset's pair, whose other half is not merged in
    // beside it (`id_header` on `stripe` was refused as "id_header or id_pointer, not both").
    let pair = |hand: (Option<String>, Option<String>),
                preset: (Option<String>, Option<String>)| {
        if hand.0.is_some() || hand.1.is_some() {
            hand
        } else {
            preset
        }
    };
    let (id_header, id_pointer) = pair((c.id_header, c.id_pointer), (p.id_header, p.id_pointer));
    let (type_header, type_pointer) = pair(
        (c.type_header, c.type_pointer),
        (p.type_header, p.type_pointer),
    );
    let (timestamp_header, timestamp_param) = pair(
        (c.timestamp_header, c.timestamp_param),
        (p.timestamp_header, p.timestamp_param),
    );
    Ok(Config {
        preset: c.preset,
        secrets: c.secrets,
        signature_header: c.signature_header.or(p.signature_header),
        algorithm: c.algorithm.or(p.algorithm),
        encoding: c.encoding.or(p.encoding),
        prefix: c.prefix.or(p.prefix),
        signed_payload: c.signed_payload.or(p.signed_payload),
        signature_param: c.signature_param.or(p.signature_param),
        param_separator: c.param_separator.or(p.param_separator),
        timestamp_header,
        timestamp_param,
        tolerance_secs: c.tolerance_secs.or(p.tolerance_secs),
        id_header,
        id_pointer,
        type_header,
        type_pointer,
        challenge_pointer: c.challenge_pointer.or(p.challenge_pointer),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use crate::sign::SampleOptions;
    use crate::testing::{admit, event};
    use crate::{ProviderConfig, Rejection};

    fn build(v: serde_json::Value) -> Box<dyn crate::Provider> {
        let c: ProviderConfig = serde_json::from_value(v).unwrap();
        c.build().unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn every_preset_signs_and_verifies_its_samples() {
        for name in super::NAMES {
            let v = json!({"provider": "hmac", "preset": name, "secrets": ["preset-secret"]});
            let c: ProviderConfig = serde_json::from_value(v.clone()).unwrap();
            let p = build(v);
            let mut o = SampleOptions::new(at(1_700_000_000));
            o.id = Some("evt_preset_1".into());
            o.event = Some("thing.happened".into());
            let s = c.sample(&o).unwrap();
            let (e, ack) = event(admit(p.as_ref(), &s.headers, &s.body, at(1_700_000_000)));
            assert_eq!(e.id, "evt_preset_1", "{name}");
            assert_eq!(e.kind, "hmac.thing.happened", "{name}");
            assert_eq!(ack.status, 202);
            // A wrong secret never verifies.
            let wrong = build(json!({"provider": "hmac", "preset": name, "secrets": ["other"]}));
            assert_eq!(
                admit(wrong.as_ref(), &s.headers, &s.body, at(1_700_000_000)).unwrap_err(),
                Rejection::BadSignature,
                "{name}"
            );
        }
    }

    /// A key set by hand wins, as the docs say: a header in place of the preset's body pointer
    /// (either half of a pair replaces the preset's pair; both were merged and refused as
    /// "not both"), and an empty prefix in place of the preset's (it was taken as unset).
    #[test]
    fn keys_set_by_hand_replace_the_presets() {
        let p = build(
            json!({"provider": "hmac", "preset": "stripe", "secrets": ["k"],
            "id_header": "X-Id", "type_header": "X-Type"}),
        );
        let body = br#"{"id":"evt_body","type":"body.type"}"#;
        let ts = "1700000000";
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let sig = hex::encode(crate::crypto::hmac(
            crate::crypto::MacAlg::Sha256,
            b"k",
            &[&signed],
        ));
        let headers = h(&[
            ("Stripe-Signature", &format!("t={ts},v1={sig}")),
            ("X-Id", "evt_header"),
            ("X-Type", "header.type"),
        ]);
        let (e, _) = event(admit(p.as_ref(), &headers, body, at(1_700_000_000)));
        assert_eq!(
            (e.id.as_str(), e.kind.as_str()),
            ("evt_header", "hmac.header.type")
        );
        for pair in [
            json!({"provider": "hmac", "preset": "linear", "secrets": ["k"], "type_header": "Linear-Event"}),
            json!({"provider": "hmac", "preset": "paddle", "secrets": ["k"], "timestamp_header": "X-Ts",
                "signed_payload": "{timestamp}:{body}"}),
        ] {
            let c: ProviderConfig = serde_json::from_value(pair.clone()).unwrap();
            assert!(c.build().is_ok(), "{pair}: {:?}", c.build().err());
        }
        let bare =
            build(json!({"provider": "hmac", "preset": "github", "secrets": ["k"], "prefix": ""}));
        let body = br#"{"a":1}"#;
        let sig = hex::encode(crate::crypto::hmac(
            crate::crypto::MacAlg::Sha256,
            b"k",
            &[body],
        ));
        let headers = h(&[
            ("X-Hub-Signature-256", sig.as_str()),
            ("X-GitHub-Delivery", "d-1"),
            ("X-GitHub-Event", "push"),
        ]);
        assert!(admit(bare.as_ref(), &headers, body, at(1_700_000_000)).is_ok());
    }

    /// Slack's worked example (docs.slack.dev "Verifying requests from Slack"): the signature
    /// verifies; the form body is then refused as not JSON (400), never as a bad signature.
    #[test]
    fn slack_official_vector() {
        let p = build(json!({"provider": "hmac", "preset": "slack",
            "secrets": ["8f742231b10e8888abcd99yyyzzz85a5"]}));
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let headers = h(&[
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
            ("X-Slack-Request-Timestamp", "1531420618"),
        ]);
        assert_eq!(
            admit(p.as_ref(), &headers, body, at(1_531_420_618)).unwrap_err(),
            Rejection::Malformed("body is not valid JSON")
        );
        assert_eq!(
            admit(p.as_ref(), &headers, body, at(1_531_420_618 + 301)).unwrap_err(),
            Rejection::StaleTimestamp
        );
        let mut tampered = body.to_vec();
        tampered[6] ^= 1;
        assert_eq!(
            admit(p.as_ref(), &headers, &tampered, at(1_531_420_618)).unwrap_err(),
            Rejection::BadSignature
        );
        // url_verification is answered with the challenge.
        let challenge = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let p2 = build(json!({"provider": "hmac", "preset": "slack", "secrets": ["s"]}));
        let ts = "1531420618";
        let sig = format!(
            "v0={}",
            hex::encode(hmac256(
                "s",
                &[b"v0:1531420618:".as_slice(), challenge].concat()
            ))
        );
        let r = admit(
            p2.as_ref(),
            &h(&[
                ("X-Slack-Signature", &sig),
                ("X-Slack-Request-Timestamp", ts),
            ]),
            challenge,
            at(1_531_420_618),
        );
        assert!(matches!(r, Ok(crate::Admission::Control(_))), "{r:?}");
    }

    /// GitHub's documented vector ("Validating webhook deliveries"): verifies, then 400.
    #[test]
    fn github_official_vector() {
        let p = build(json!({"provider": "hmac", "preset": "github",
            "secrets": ["It's a Secret to Everybody"]}));
        let headers = h(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            admit(p.as_ref(), &headers, b"Hello, World!", at(0)).unwrap_err(),
            Rejection::Malformed("body is not valid JSON")
        );
        assert_eq!(
            admit(p.as_ref(), &headers, b"Hello, World?", at(0)).unwrap_err(),
            Rejection::BadSignature
        );
    }

    fn hmac256(key: &str, msg: &[u8]) -> Vec<u8> {
        use ::hmac::Mac;
        let mut m = <::hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }

    /// SELF vectors (Python `hmac.new(secret, payload, sha256).hexdigest()`): Stripe, Paddle
    /// (`;`-separated header), Linear, Gitea publish no secret with their examples.
    #[test]
    fn self_vectors() {
        let stripe_body = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_3NG8Du2eZvKYlo2C0Ykz1Abc"}}}"#;
        let p = build(json!({"provider": "hmac", "preset": "stripe",
            "secrets": ["whsec_hookgate_test_3d8f2a7c91b4"]}));
        let headers = h(&[(
            "Stripe-Signature",
            "t=1492774577,v1=74bfad8222c4736254eb10826ac2bfdf06d5081c892bcf91d9a25f19869cb9cf",
        )]);
        let (e, _) = event(admit(p.as_ref(), &headers, stripe_body, at(1_492_774_577)));
        assert_eq!(e.kind, "hmac.payment_intent.succeeded");
        assert_eq!(
            admit(p.as_ref(), &headers, stripe_body, at(1_492_774_577 + 301)).unwrap_err(),
            Rejection::StaleTimestamp
        );

        let paddle_body = br#"{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.completed","occurred_at":"2023-08-21T11:57:47.390028Z","data":{"id":"txn_01h8bz5fxmhpmha4s2ha0ryw5j"}}"#;
        let p = build(json!({"provider": "hmac", "preset": "paddle",
            "secrets": ["pdl_ntfset_hookgate_test"]}));
        let headers = h(&[(
            "Paddle-Signature",
            "ts=1671552777;h1=4fe1b9d5779d76c6ca2c06ede2f47feab257c9edd5f9934fd1066c0d54c57742",
        )]);
        let (e, _) = event(admit(p.as_ref(), &headers, paddle_body, at(1_671_552_777)));
        assert_eq!(
            (e.id.as_str(), e.kind.as_str()),
            (
                "evt_01h8bzakzx3hm2fmen703n5q45",
                "hmac.transaction.completed"
            )
        );
        assert_eq!(
            admit(p.as_ref(), &headers, paddle_body, at(1_671_552_777 + 6)).unwrap_err(),
            Rejection::StaleTimestamp,
            "Paddle's 5-second window"
        );
        // Only Paddle's `;` separates the list: its SDK reads `ts=…,h1=…` as one item.
        let comma = h(&[(
            "Paddle-Signature",
            "ts=1671552777,h1=4fe1b9d5779d76c6ca2c06ede2f47feab257c9edd5f9934fd1066c0d54c57742",
        )]);
        assert_eq!(
            admit(p.as_ref(), &comma, paddle_body, at(1_671_552_777)).unwrap_err(),
            Rejection::BadSignature
        );
        // Keys set by hand override the preset.
        let relaxed = build(json!({"provider": "hmac", "preset": "paddle",
            "secrets": ["pdl_ntfset_hookgate_test"], "tolerance_secs": 60}));
        assert!(admit(
            relaxed.as_ref(),
            &headers,
            paddle_body,
            at(1_671_552_777 + 6)
        )
        .is_ok());

        let linear_body = br#"{"action":"create","type":"Issue","data":{"id":"2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"},"webhookTimestamp":1676056940508}"#;
        let p =
            build(json!({"provider": "hmac", "preset": "linear", "secrets": ["lin_wh_hookgate"]}));
        let headers = h(&[
            (
                "Linear-Signature",
                "5f4275dca5fbd61036ef783165fd91d6c75fd69fad5f128efc2606bd134ce10b",
            ),
            ("Linear-Delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72"),
        ]);
        let (e, _) = event(admit(p.as_ref(), &headers, linear_body, at(0)));
        assert_eq!(
            (e.id.as_str(), e.kind.as_str()),
            ("234d1a4e-b617-4388-90fe-adc3633d6b72", "hmac.issue")
        );

        let p = build(json!({"provider": "hmac", "preset": "gitea", "secrets": ["gitea-secret"]}));
        let headers = h(&[
            (
                "X-Gitea-Signature",
                "6aab54046b413afedbc6d4ff0d3b4fd694c1af82c19c0be7ee9b80438b90223d",
            ),
            ("X-Gitea-Delivery", "d2f1e2a4-0000-4000-8000-000000000001"),
            ("X-Gitea-Event", "push"),
        ]);
        let (e, _) = event(admit(
            p.as_ref(),
            &headers,
            br#"{"ref":"refs/heads/main"}"#,
            at(0),
        ));
        assert_eq!(e.kind, "hmac.push");
    }

    #[test]
    fn unknown_preset_and_warnings() {
        let c: ProviderConfig = serde_json::from_value(
            json!({"provider": "hmac", "preset": "twilio", "secrets": ["s"]}),
        )
        .unwrap();
        let e = c.build().err().unwrap();
        assert_eq!(e[0].key, "preset");
        assert!(e[0].message.contains("stripe, shopify"), "{}", e[0].message);
        let shopify: ProviderConfig = serde_json::from_value(
            json!({"provider": "hmac", "preset": "shopify", "secrets": ["s"]}),
        )
        .unwrap();
        assert_eq!(shopify.warnings().len(), 2, "unsigned id and type headers");
        let stripe: ProviderConfig = serde_json::from_value(
            json!({"provider": "hmac", "preset": "Stripe", "secrets": ["s"]}),
        )
        .unwrap();
        assert!(stripe.build().is_ok(), "case-insensitive");
        assert!(stripe.warnings().is_empty());
    }

    #[test]
    fn docs_list_every_preset() {
        let page = include_str!("../../../docs/providers/hmac.md");
        for name in super::NAMES {
            assert!(
                page.contains(&format!("| `{name}` |")),
                "docs/providers/hmac.md has no preset row for {name}"
            );
        }
    }
}
