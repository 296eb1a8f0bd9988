//! Broker loss: events keep being accepted (durably) and arrive exactly once, in order, when
//! the broker is back; dedup survives a restart on the same store.

use std::time::Duration;

use providers::github;

use crate::harness::{amqp_url, broker_proxy, config, config_text, unique, Consumer, Gateway};

const SECRET: &str = "It's a Secret to Everybody";

#[actix_web::test]
async fn broker_outage_loses_nothing_and_restart_keeps_dedup() {
    let exchange = unique("it-outage");
    let consumer = Consumer::bind(&exchange, "#").await;
    let proxy = broker_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = || {
        config(
            &crate::github::sources(),
            &exchange,
            &proxy.url(&amqp_url()),
            Some(&store),
            "",
        )
    };

    let gw = Gateway::start(cfg()).await;
    gw.wait_broker(true).await;
    proxy.cut();
    gw.wait_broker(false).await;

    let n = 25;
    for i in 0..n {
        let body = format!(r#"{{"seq":{i}}}"#);
        let r = gw
            .send(
                "gh-main",
                &github::delivery(SECRET, "push", &format!("outage-{i}"), body.as_bytes()),
            )
            .await;
        assert_eq!(r.status(), 202, "accepted while the broker is down");
    }
    let ready: serde_json::Value = gw.readyz().await;
    assert_eq!(
        ready["status"], "ready",
        "the gateway stays ready without a broker"
    );
    assert_eq!(ready["broker"]["connected"], false);
    assert_eq!(ready["outbox_pending"], n);
    consumer.assert_empty(Duration::from_millis(200)).await;

    proxy.restore();
    let msgs = consumer.take(n, Duration::from_secs(30)).await;
    let ids: Vec<String> = msgs
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("outage-{i}")).collect();
    assert_eq!(ids, expected, "exactly once, in acceptance order");
    consumer.assert_empty(Duration::from_millis(300)).await;
    gw.stop().await;

    // Same store after a restart: a re-sent id is still a duplicate.
    let gw = Gateway::start(cfg()).await;
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "push", "outage-3", br#"{"seq":3}"#),
        )
        .await;
    assert_eq!(r.status(), 202);
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "push", "after-restart", br#"{"seq":99}"#),
        )
        .await;
    assert_eq!(r.status(), 202);
    let msgs = consumer.take(1, Duration::from_secs(15)).await;
    assert_eq!(msgs[0].body["id"], "after-restart");
    consumer.assert_empty(Duration::from_millis(300)).await;
    gw.stop().await;
}

#[actix_web::test]
async fn broker_down_at_start_still_accepts() {
    let exchange = unique("it-down");
    let proxy = broker_proxy().await;
    proxy.cut();
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(
        &crate::github::sources(),
        &exchange,
        &proxy.url(&amqp_url()),
        None,
        "",
    ))
    .await;
    let r = gw
        .send(
            "gh-main",
            &github::delivery(SECRET, "push", "early", br#"{"a":1}"#),
        )
        .await;
    assert_eq!(r.status(), 202);
    proxy.restore();
    let msgs = consumer.take(1, Duration::from_secs(20)).await;
    assert_eq!(msgs[0].body["id"], "early");
    gw.stop().await;
}

#[actix_web::test]
async fn outbox_command_reports_what_waits_for_the_broker() {
    let exchange = unique("it-outbox");
    let proxy = broker_proxy().await;
    proxy.cut();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let text = config_text(
        &crate::github::sources(),
        &exchange,
        &proxy.url(&amqp_url()),
        Some(&store),
        "",
    );
    let gw = Gateway::start(config(
        &crate::github::sources(),
        &exchange,
        &proxy.url(&amqp_url()),
        Some(&store),
        "",
    ))
    .await;
    for id in ["held-1", "held-2"] {
        let r = gw
            .send(
                "gh-main",
                &github::delivery(SECRET, "push", id, br#"{"a":1}"#),
            )
            .await;
        assert_eq!(r.status(), 202);
    }
    gw.stop().await;

    let file = dir.path().join("hookgate.toml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["outbox", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pending: 2"), "{stdout}");
    assert!(
        stdout.contains("id held-1") && stdout.contains("type github.push"),
        "oldest first: {stdout}"
    );
}
