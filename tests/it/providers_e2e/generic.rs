//! GitHub, Standard Webhooks and `hmac` sources end to end.

use super::*;

#[actix_web::test]
async fn github_standard_and_hmac_from_hookgate_sign() {
    let f = Fixture::start().await;

    // GitHub, from the config.
    let delivery = "e2e00000-cc78-11e3-81ab-4c9367dc0958";
    let req = f.sign("gh", &["--id", delivery]);
    f.send(&req).await.assert_accepted_id(delivery);
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "gh",
            provider: "github",
            id: delivery,
            kind: "github.push",
            providerevent: "push",
            subject: Some("octo-org/hello-world"),
            data: &req.json(),
        },
    );
    f.send(&req).await.assert_accepted_id(delivery);
    f.assert_nothing_published().await;

    // GitHub with explicit keys, no config: the gateway accepts it by its second secret.
    let delivery = "e2e00000-cc78-11e3-81ab-4c9367dc0959";
    let explicit = Signed::from_output(&hookgate(&[
        "sign",
        "--provider",
        "github",
        "--with",
        &format!("secrets=[\"{GH_EXPLICIT}\"]"),
        "--source",
        "gh",
        "--event",
        "issues",
        "--id",
        delivery,
        "--url",
        &f.base(),
        "--format",
        "json",
    ]));
    f.send(&explicit).await.assert_accepted_id(delivery);
    let m = f.take_one().await;
    assert_eq!(m.routing_key, "gh.github.issues");
    assert_eq!(m.body["id"], delivery);
    f.send(&explicit).await.assert_accepted_id(delivery);
    f.assert_nothing_published().await;

    // Standard Webhooks.
    let req = f.sign("svix", &["--id", "msg_e2e_2c5f9a"]);
    assert!(req.header("webhook-signature").starts_with("v1,"));
    f.send(&req).await.assert_accepted_id("msg_e2e_2c5f9a");
    let body = req.json();
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "svix",
            provider: "standard",
            id: "msg_e2e_2c5f9a",
            kind: "standard.user.created",
            providerevent: "user.created",
            subject: None,
            data: &body,
        },
    );
    let sent = chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(m.body["time"].as_str().unwrap()).unwrap();
    assert_eq!(time, sent, "time is the body's timestamp");
    f.send(&req).await.assert_accepted_id("msg_e2e_2c5f9a");
    f.assert_nothing_published().await;

    // Configurable HMAC, Stripe style.
    let req = f.sign(
        "stripe",
        &[
            "--id",
            "evt_e2e_3d7b",
            "--event",
            "payment_intent.succeeded",
        ],
    );
    assert!(req.header("Stripe-Signature").starts_with("t="));
    f.send(&req).await.assert_accepted_id("evt_e2e_3d7b");
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "stripe",
            provider: "hmac",
            id: "evt_e2e_3d7b",
            kind: "hmac.payment_intent.succeeded",
            providerevent: "payment_intent.succeeded",
            subject: None,
            data: &req.json(),
        },
    );
    f.send(&req).await.assert_accepted_id("evt_e2e_3d7b");
    f.assert_nothing_published().await;
    f.gw.stop().await;
}
