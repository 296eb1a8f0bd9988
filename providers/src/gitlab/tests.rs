use super::*;
use crate::testing::{admit, event};
use crate::Provider;

// GitLab's documented payloads (providers/tests/fixtures/gitlab/README.md).
const PUSH: &str = include_str!("../../tests/fixtures/gitlab/push.json");
const ISSUE: &str = include_str!("../../tests/fixtures/gitlab/issue.json");
const SYSTEM: &str = include_str!("../../tests/fixtures/gitlab/system_project_create.json");
/// A group hook's member event (webhook_events.md "Group member events", shape as documented).
const GROUP_MEMBER: &str = r#"{"created_at":"2020-12-11T04:57:22Z","updated_at":"2020-12-11T04:57:22Z","group_name":"webhook-test","group_path":"webhook-test","group_id":100,"user_username":"test_user","user_name":"Test User","user_email":"testuser@webhooktest.com","user_id":64,"group_access":"Guest","group_plan":null,"expires_at":"2020-12-14T00:00:00Z","event_name":"user_add_to_group"}"#;

const TOKEN: &str = "glwht-hookgate-test";

fn gitlab(tokens: &[&str]) -> Gitlab {
    Gitlab::new(&Config {
        tokens: tokens.iter().map(|t| Secret::from(*t)).collect(),
    })
    .unwrap()
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

#[test]
fn documented_push_event() {
    let p = gitlab(&[TOKEN]);
    let headers = h(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", TOKEN),
        (
            "X-Gitlab-Webhook-UUID",
            "7fb0ef45-b2e2-4d2a-a3d4-6e0e5c6b1d1a",
        ),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
        ("Idempotency-Key", "f5e5f430-f57b-4e6e-9fac-d9128cd7232f"),
    ]);
    let (e, ack) = event(admit(&p, &headers, PUSH.as_bytes(), now()));
    assert_eq!(
        e.id, "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
        "Idempotency-Key first"
    );
    assert_eq!(e.kind, "gitlab.push");
    assert_eq!(e.provider_event, "push");
    assert_eq!(e.subject.as_deref(), Some("mike/diaspora"));
    assert_eq!(
        serde_json::to_string(&e.data).unwrap(),
        PUSH.trim_end(),
        "delivered byte for byte (serde_json's RawValue drops trailing whitespace)"
    );
    assert_eq!(ack.status, 202);
    assert_eq!(
        ack.body,
        br#"{"id":"f5e5f430-f57b-4e6e-9fac-d9128cd7232f"}"#.to_vec()
    );
    // Without Idempotency-Key (GitLab before 17.4): the event UUID.
    let (e, _) = event(admit(&p, &headers[..4], PUSH.as_bytes(), now()));
    assert_eq!(e.id, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    // Neither: the body digest, never the hook's X-Gitlab-Webhook-UUID.
    let (e, _) = event(admit(&p, &headers[..3], PUSH.as_bytes(), now()));
    assert_eq!(e.id, crate::shared::sha256_key(PUSH.as_bytes()));
}

#[test]
fn documented_issue_event_has_the_action() {
    let p = gitlab(&["old-token", TOKEN]);
    let headers = h(&[("X-Gitlab-Event", "Issue Hook"), ("X-Gitlab-Token", TOKEN)]);
    let (e, _) = event(admit(&p, &headers, ISSUE.as_bytes(), now()));
    assert_eq!(e.kind, "gitlab.issue.open");
    assert_eq!(e.provider_event, "issue");
    assert_eq!(e.subject.as_deref(), Some("gitlabhq/gitlab-test"));
}

#[test]
fn system_and_group_hooks_use_event_name() {
    let p = gitlab(&[TOKEN]);
    let headers = h(&[("X-Gitlab-Event", "System Hook"), ("X-Gitlab-Token", TOKEN)]);
    let (e, _) = event(admit(&p, &headers, SYSTEM.as_bytes(), now()));
    assert_eq!(e.kind, "gitlab.project_create");
    assert_eq!(e.provider_event, "project_create");
    assert_eq!(e.subject.as_deref(), Some("jsmith/storecloud"));
    let headers = h(&[("X-Gitlab-Event", "Member Hook"), ("X-Gitlab-Token", TOKEN)]);
    let (e, _) = event(admit(&p, &headers, GROUP_MEMBER.as_bytes(), now()));
    assert_eq!(e.kind, "gitlab.user_add_to_group");
}

#[test]
fn refusals() {
    let p = gitlab(&[TOKEN]);
    let with = |token: &str| h(&[("X-Gitlab-Token", token)]);
    assert_eq!(
        admit(&p, &[], PUSH.as_bytes(), now()).unwrap_err(),
        Rejection::BadToken,
        "missing is the token failing (`token` in the rejections)"
    );
    for wrong in [
        "glwht-hookgate-tes",
        "glwht-hookgate-test2",
        "GLWHT-HOOKGATE-TEST",
    ] {
        let r = admit(&p, &with(wrong), PUSH.as_bytes(), now()).unwrap_err();
        assert_eq!(r, Rejection::BadToken, "{wrong}");
        assert_eq!(r.status(), 401);
    }
    let r = admit(&p, &with(TOKEN), b"not json", now()).unwrap_err();
    assert_eq!(r.status(), 400);
    let r = admit(&p, &with(TOKEN), b"{\"ref\":\"x\"}", now()).unwrap_err();
    assert_eq!(r.status(), 400, "no object_kind or event_name");
    // Unsigned id headers are bounded and shaped.
    let mut long = with(TOKEN);
    long.push(("Idempotency-Key".into(), "k".repeat(201)));
    assert_eq!(
        admit(&p, &long, PUSH.as_bytes(), now())
            .unwrap_err()
            .status(),
        400
    );
    for (header, value) in [
        ("X-Gitlab-Event-UUID", "not a uuid!"),
        // GitLab's Idempotency-Key is a UUID too: not a path, nor an id in the `sha256:`
        // space of body digests (a token holder could claim another body's id with it).
        ("Idempotency-Key", "../../x#*"),
        ("Idempotency-Key", "a/b:c;d=e"),
        (
            "Idempotency-Key",
            "sha256:6b3a55e0261b0304143f805a24924d0c1c44524821305f31d9277843b8a10f4e",
        ),
    ] {
        let mut odd = with(TOKEN);
        odd.push((header.into(), value.into()));
        assert_eq!(
            admit(&p, &odd, PUSH.as_bytes(), now())
                .unwrap_err()
                .status(),
            400,
            "{header}: {value}"
        );
    }
    // The body is not covered by the token: names that become the type are held to GitLab's
    // shape, never mapped into it (a dot would add a level, a newline reach the logs).
    let long = format!(r#"{{"object_kind":"{}"}}"#, "p".repeat(201));
    for body in [
        r#"{"object_kind":"a.b"}"#,
        r#"{"object_kind":"Merge.Request"}"#,
        r#"{"object_kind":"pu\nsh"}"#,
        r#"{"object_kind":"push\u001b[31m"}"#,
        r#"{"event_name":"Project Create"}"#,
        r#"{"object_kind":"issue","object_attributes":{"action":"C D"}}"#,
        long.as_str(),
        // Another JSON type where GitLab sends a name is refused, not left out of the type.
        r#"{"object_kind":3}"#,
        r#"{"object_kind":"merge_request","object_attributes":{"action":3}}"#,
        r#"{"object_kind":"merge_request","object_attributes":{"action":{"x":1}}}"#,
        r#"{"object_kind":"merge_request","object_attributes":"open"}"#,
        r#"{"event_name":["project_create"]}"#,
    ] {
        let r = admit(&p, &with(TOKEN), body.as_bytes(), now()).unwrap_err();
        assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
    }
    let (e, _) = event(admit(
        &p,
        &with(TOKEN),
        br#"{"object_kind":"feature_flag","object_attributes":{"action":"unapproval_2"}}"#,
        now(),
    ));
    assert_eq!(e.kind, "gitlab.feature_flag.unapproval_2");
    assert!(Gitlab::new(&Config { tokens: vec![] }).is_err());
    assert!(Gitlab::new(&Config {
        tokens: vec![Secret::from("")]
    })
    .is_err());
}

#[test]
fn samples_are_admitted() {
    let c = Config {
        tokens: vec![Secret::from(TOKEN)],
    };
    let p = gitlab(&[TOKEN]);
    let mut o = SampleOptions::new(now());
    o.id = Some("idem-1".into());
    for (ev, kind) in [
        (None, "gitlab.push"),
        (Some("merge_request"), "gitlab.merge_request.open"),
        // The header's name for it works as well.
        (Some("Merge Request Hook"), "gitlab.merge_request.open"),
        (Some("Push Hook"), "gitlab.push"),
    ] {
        o.event = ev.map(str::to_owned);
        let s = sample(&c, &o).unwrap();
        let (e, _) = event(admit(&p, &s.headers, &s.body, now()));
        assert_eq!((e.id.as_str(), e.kind.as_str()), ("idem-1", kind));
        assert_eq!(p.kind(), ProviderKind::Gitlab);
    }
}
