//! GitHub end to end: HTTP → verify → envelope → outbox → RabbitMQ.

use std::time::Duration;

use providers::github;

use crate::harness::{amqp_url, config, unique, Consumer, Gateway};

const SECRET: &str = "It's a Secret to Everybody";

pub fn sources() -> String {
    format!("[[sources]]\nname = \"gh-main\"\nprovider = \"github\"\nsecrets = [\"old-secret\", \"{SECRET}\"]\n")
}

#[actix_web::test]
async fn signed_deliveries_arrive_with_every_field() {
    let exchange = unique("it-gh");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;

    let body = br#"{"action":"opened","number":7,"pull_request":{"title":"caf\u00e9 \u2665"},"repository":{"full_name":"octo-org/hello"}}"#;
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "pull_request", delivery, body),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), format!(r#"{{"id":"{delivery}"}}"#));

    // Form-encoded ping, signed over the raw form bytes.
    let form = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%2C%22hook_id%22%3A1%7D";
    let mut ping = github::delivery(SECRET, "ping", "d-ping-1", form);
    ping.headers[0].1 = "application/x-www-form-urlencoded".into();
    assert_eq!(gw.send("gh-main", &ping).await.status(), 202);

    let msgs = consumer.take(2, Duration::from_secs(10)).await;
    let m = &msgs[0];
    assert_eq!(m.routing_key, "gh-main.github.pull_request.opened");
    let e = &m.body;
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], delivery);
    assert_eq!(e["source"], "/hookgate/gh-main");
    assert_eq!(e["type"], "github.pull_request.opened");
    assert_eq!(e["subject"], "octo-org/hello");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["provider"], "github");
    assert_eq!(e["providerevent"], "pull_request");
    assert_eq!(e["data"]["pull_request"]["title"], "caf\u{e9} \u{2665}");
    assert_eq!(e["data"]["number"], 7);
    let received = chrono::DateTime::parse_from_rfc3339(e["receivedat"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - received.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(e["time"], e["receivedat"], "GitHub sends no event time");

    let p = &m.properties;
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/cloudevents+json")
    );
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some(delivery));
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some("github.pull_request.opened")
    );
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("hookgate"));
    let ts = p.timestamp().expect("timestamp set");
    assert!((chrono::Utc::now().timestamp() as u64).abs_diff(ts) < 60);
    let headers = p.headers().as_ref().expect("headers set");
    let get = |k: &str| match headers.inner().get(k) {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("header {k}: {other:?}"),
    };
    assert_eq!(get("source"), "gh-main");
    assert_eq!(get("provider"), "github");

    let ping = &msgs[1].body;
    assert_eq!(msgs[1].routing_key, "gh-main.github.ping");
    assert_eq!(ping["type"], "github.ping");
    assert_eq!(ping["data"]["zen"], "Keep it logically awesome.");

    // A redelivery (same X-GitHub-Delivery) gets the same answer and is not published again.
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "pull_request", delivery, body),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), format!(r#"{{"id":"{delivery}"}}"#));
    consumer.assert_empty(Duration::from_millis(500)).await;
    gw.stop().await;
}

#[actix_web::test]
async fn refusals_publish_nothing() {
    let exchange = unique("it-gh");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    let body = br#"{"zen":"x","hook_id":1}"#;

    let mut tampered = github::delivery(SECRET, "push", "d1", body);
    tampered.body = br#"{"zen":"y","hook_id":1}"#.to_vec();
    let wrong = github::delivery("not the secret", "push", "d2", body);
    let mut missing = github::delivery(SECRET, "push", "d3", body);
    missing
        .headers
        .retain(|(k, _)| !k.starts_with("X-Hub-Signature"));
    let mut truncated = github::delivery(SECRET, "push", "d4", body);
    truncated.body.truncate(10);
    for (what, req) in [
        ("tampered", &tampered),
        ("wrong secret", &wrong),
        ("missing header", &missing),
        ("truncated", &truncated),
    ] {
        let r = gw.send("gh-main", req).await;
        assert_eq!(r.status(), 401, "{what}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(SECRET) && !text.contains("sha256"),
            "{what}: no hint in {text}"
        );
    }
    // Correctly signed, but not the JSON GitHub sends.
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "push", "d5", b"not json"),
        )
        .await;
    assert_eq!(r.status(), 400);
    // Correctly signed, but an unsigned header sent twice (which copy would a proxy read?)
    // or not text (it was read as absent, or as its first copy).
    for (what, drop, name, value) in [
        (
            "delivery twice",
            None,
            "X-GitHub-Delivery",
            b"d7-other".as_slice(),
        ),
        ("event twice", None, "X-GitHub-Event", b"issues".as_slice()),
        (
            "event not text",
            Some("X-GitHub-Event"),
            "X-GitHub-Event",
            "caf\u{e9}".as_bytes(),
        ),
    ] {
        let req = github::delivery(SECRET, "push", "d7", body);
        let mut b = gw
            .client
            .post(req.url(&gw.url("gh-main")))
            .body(req.body.clone());
        for (k, v) in &req.headers {
            if drop.is_none_or(|d: &str| !k.eq_ignore_ascii_case(d)) {
                b = b.header(k, v);
            }
        }
        let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
        let r = b.header(name, value).send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let text = r.text().await.unwrap();
        assert!(text.contains("\"error\""), "{what}: GitHub-shaped: {text}");
    }

    // Unknown source, other method, other path.
    assert_eq!(
        gw.send("nope", &github::delivery(SECRET, "push", "d6", body))
            .await
            .status(),
        404
    );
    let r = gw.client.get(gw.url("gh-main")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(
        gw.client
            .post(format!("http://{}/metrics", gw.running.public_addr))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        gw.client
            .get(format!("http://{}/healthz", gw.running.public_addr))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A valid event afterwards is the only message: nothing refused was published.
    assert_eq!(
        gw.send("gh-main", &github::delivery(SECRET, "push", "good", body))
            .await
            .status(),
        202
    );
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(msgs[0].body["id"], "good");
    consumer.assert_empty(Duration::from_millis(300)).await;
    gw.stop().await;
}

/// `/hooks/{source}`: one segment after `/hooks/`, nothing else; that segment as actix
/// requotes it (an unreserved character sent percent-encoded names the same source).
#[actix_web::test]
async fn paths_under_hooks_route_by_their_one_segment() {
    let exchange = unique("it-gh");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    let body = br#"{"zen":"x","hook_id":1}"#;
    let at = |path: &str| format!("http://{}{path}", gw.running.public_addr);
    let delivery = github::delivery(SECRET, "push", "p1", body);
    for path in [
        "/hooks",
        "/hooks/",
        "/hooks/gh-main/",
        "/hooks/gh-main/x",
        "/hooks//gh-main",
        "/hooksgh-main",
        "/hook/gh-main",
    ] {
        let r = gw.send_to(&at(path), &delivery).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"error":"not found"}"#,
            "{path}"
        );
    }
    let r = gw.client.delete(gw.url("gh-main")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let encoded = github::delivery(SECRET, "push", "p2", body);
    let r = gw.send_to(&at("/hooks/gh%2Dmain"), &encoded).await;
    assert_eq!(r.status(), 202);
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(msgs[0].body["source"], "/hookgate/gh-main");
    consumer.assert_empty(Duration::from_millis(300)).await;
    gw.stop().await;
}

#[actix_web::test]
async fn oversized_bodies_are_refused() {
    let exchange = unique("it-gh");
    let src = format!("{}max_body_bytes = 64\n", sources());
    let gw = Gateway::start(config(&src, &exchange, &amqp_url(), None, "")).await;
    let big = vec![b' '; 65];
    let r = gw
        .send("gh-main", &github::delivery(SECRET, "push", "big", &big))
        .await;
    assert_eq!(r.status(), 413);
    // Chunked (no Content-Length): cut off at the limit.
    let stream =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 16])));
    let r = gw
        .client
        .post(gw.url("gh-main"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "chunked")
        .header("X-Hub-Signature-256", "sha256=00")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    gw.stop().await;
}
