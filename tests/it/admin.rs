//! The admin listener: health, readiness (with broker state) and metrics.

use std::time::Duration;

use providers::github;

use crate::harness::{amqp_url, config, unique, Consumer, Gateway};

#[actix_web::test]
async fn health_readiness_and_metrics() {
    let exchange = unique("it-admin");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(
        &crate::github::sources(),
        &exchange,
        &amqp_url(),
        None,
        "",
    ))
    .await;
    gw.wait_broker(true).await;

    let r = gw.client.get(gw.admin("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: serde_json::Value = gw.readyz().await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "ok");
    assert_eq!(ready["broker"]["connected"], true);

    let sample = github::delivery(
        "It's a Secret to Everybody",
        "push",
        "metrics-1",
        br#"{"zen":"z"}"#,
    );
    assert_eq!(gw.send("gh-main", &sample).await.status(), 202);
    consumer.take(1, Duration::from_secs(10)).await;
    // The consumer can see the message before the relay has processed the broker's confirm
    // (which is what counts as published): poll for it, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = gw.metrics().await;
        if text.contains(r#"hookgate_published_total{source="gh-main"}"#)
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        text.contains(r#"hookgate_requests_total{source="gh-main",outcome="accepted"}"#),
        "{text}"
    );
    assert!(text.contains("hookgate_outbox_pending"), "{text}");
    assert!(
        text.contains(r#"hookgate_published_total{source="gh-main"}"#),
        "{text}"
    );
    assert!(text.contains("hookgate_broker_connected"), "{text}");
    // Admin routes only on the admin listener, and no hooks there (JSON: without a token,
    // any other POST is refused before routing, 403).
    assert_eq!(
        gw.client
            .post(gw.admin("/hooks/gh-main"))
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    gw.stop().await;
}

/// `[[amqp.queues]]` wires a fresh broker: the quorum queue exists, is bound, and receives.
#[actix_web::test]
async fn configured_queues_are_declared_and_bound() {
    let exchange = unique("it-topo");
    let queue = unique("it-quorum");
    let topology = format!("[[amqp.queues]]\nname = \"{queue}\"\nkind = \"quorum\"\nbindings = [\"gh-main.github.#\"]\n");
    let sources = format!("{topology}{}", crate::github::sources());
    let gw = Gateway::start(config(&sources, &exchange, &amqp_url(), None, "")).await;
    gw.wait_broker(true).await;
    let sample = github::delivery(
        "It's a Secret to Everybody",
        "push",
        "topology-1",
        br#"{"a":1}"#,
    );
    assert_eq!(gw.send("gh-main", &sample).await.status(), 202);

    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let message = loop {
        if let Some(m) = channel
            .basic_get(queue.as_str().into(), Default::default())
            .await
            .unwrap()
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing arrived in the configured queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(message.delivery.routing_key.as_str(), "gh-main.github.push");
    message.delivery.ack(Default::default()).await.unwrap();

    let listed = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type", "durable"])
        .output();
    // The queue type is only visible to the management tools; checked where rabbitmqctl runs.
    if let Some(out) = listed.ok().filter(|o| o.status.success()) {
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with(&queue))
            .unwrap_or_else(|| panic!("{queue} not listed: {text}"));
        assert!(line.contains("quorum") && line.contains("true"), "{line}");
    }
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    gw.stop().await;
}
