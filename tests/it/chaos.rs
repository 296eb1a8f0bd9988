//! Faults of issue #7 that take seconds, against the real RabbitMQ: a broker that refuses
//! (a queue at its max-length with reject-publish nacks; an exchange deleted at runtime) and
//! `kill -9` of the `hookgate` binary under load. The long scenarios (30 s outage, crashes at
//! several points with thousands of events, a full disk) are in `scripts/chaos.sh`.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use providers::github;

use crate::harness::{amqp_url, config, unique, Gateway};

const SECRET: &str = "It's a Secret to Everybody";

async fn channel() -> (Connection, Channel) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be running on AMQP_URL (scripts/test.sh starts it)");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn declare_exchange(ch: &Channel, exchange: &str) {
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Messages in `queue` that are ready (passive declare).
async fn depth(ch: &Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// Takes `n` message ids from `queue` with basic.get, failing after `timeout`.
async fn take_ids(ch: &Channel, queue: &str, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match ch
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                let id = m.delivery.properties.message_id().clone().unwrap();
                out.push(id.to_string());
            }
            None => {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} messages arrived: {out:?}",
                    out.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    out
}

/// One sample line of an OpenMetrics text (`name{labels}`), 0 when absent.
async fn metric(gw: &Gateway, series: &str) -> f64 {
    let text = gw.metrics().await;
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.trim().split(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0.0)
}

async fn last_error(gw: &Gateway) -> Option<String> {
    let v: serde_json::Value = gw.readyz().await;
    v["broker"]["last_error"].as_str().map(str::to_string)
}

fn gh_source() -> String {
    format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n")
}

fn push(id: &str, seq: usize) -> providers::sign::SampleRequest {
    github::delivery(SECRET, "push", id, format!(r#"{{"seq":{seq}}}"#).as_bytes())
}

#[actix_web::test]
async fn issue_7_full_queue_nacks_are_retried_in_order_and_reported() {
    let exchange = unique("it-chaos-nack");
    let queue = unique("it-chaos-limited");
    let (_conn, ch) = channel().await;
    declare_exchange(&ch, &exchange).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongUInt(5));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let gw = Gateway::start(config(&gh_source(), &exchange, &amqp_url(), None, "")).await;
    gw.wait_broker(true).await;
    let nack = r#"hookgate_publish_failures_total{reason="nack"}"#;
    let nacks_before = metric(&gw, nack).await;
    let n = 12;
    let expected: Vec<String> = (0..n).map(|i| format!("nack-{i:02}")).collect();
    for (i, id) in expected.iter().enumerate() {
        assert_eq!(gw.send("gh", &push(id, i)).await.status(), 202);
    }

    // While the queue is full the broker nacks; readyz and the metrics say so.
    let deadline = Instant::now() + Duration::from_secs(20);
    let why = loop {
        if let Some(e) = last_error(&gw).await.filter(|e| e.contains("nack")) {
            break e;
        }
        assert!(Instant::now() < deadline, "readyz never reported the nack");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(why.contains("gh.github.push"), "{why}");
    assert!(metric(&gw, nack).await > nacks_before);
    assert_eq!(
        depth(&ch, &queue).await,
        5,
        "the queue is at its max-length"
    );

    // A consumer drains it: everything arrives once, in acceptance order.
    let ids = take_ids(&ch, &queue, n, Duration::from_secs(30)).await;
    assert_eq!(ids, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(depth(&ch, &queue).await, 0, "nothing published twice");
    // Cleared once the broker took them: when the relay (a thread of its own, at a lower
    // priority) reads the last confirm, which may come after the consumer has the message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(e) = last_error(&gw).await {
        assert!(Instant::now() < deadline, "not cleared: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}

#[actix_web::test]
async fn issue_7_exchange_deleted_at_runtime_is_redeclared_and_rebound() {
    let exchange = unique("it-chaos-gone");
    let queue = unique("it-chaos-q");
    let topology = format!(
        "[[amqp.queues]]\nname = \"{queue}\"\nbindings = [\"#\"]\n\n{}",
        gh_source()
    );
    let gw = Gateway::start(config(&topology, &exchange, &amqp_url(), None, "")).await;
    gw.wait_broker(true).await;
    let (_conn, ch) = channel().await;
    for i in 0..3 {
        let r = gw.send("gh", &push(&format!("before-{i}"), i)).await;
        assert_eq!(r.status(), 202);
    }
    let ids = take_ids(&ch, &queue, 3, Duration::from_secs(10)).await;
    assert_eq!(ids, ["before-0", "before-1", "before-2"]);

    // Deleting the exchange also removes the queue's binding: the next publish gets a
    // channel error (404, counted as `channel`), and the relay's reconnect must declare and
    // bind both again.
    let conn_failures = r#"hookgate_publish_failures_total{reason="channel"}"#;
    let failures_before = metric(&gw, conn_failures).await;
    ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    for i in 0..3 {
        let r = gw.send("gh", &push(&format!("after-{i}"), i)).await;
        assert_eq!(r.status(), 202);
    }
    let ids = take_ids(&ch, &queue, 3, Duration::from_secs(20)).await;
    assert_eq!(ids, ["after-0", "after-1", "after-2"]);
    assert!(metric(&gw, conn_failures).await > failures_before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(depth(&ch, &queue).await, 0);
    gw.stop().await;
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}

/// The `hookgate` binary of this build, serving a config in `dir`.
struct Process {
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl Process {
    fn start(&mut self) {
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_hookgate"))
                .arg("serve")
                .arg("-c")
                .arg(&self.config)
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("hookgate starts"),
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_web::test]
async fn issue_7_kill_9_under_load_loses_nothing_acknowledged() {
    let exchange = unique("it-chaos-kill");
    let queue = unique("it-chaos-kq");
    let dir = tempfile::tempdir().unwrap();
    let (public, admin) = (free_port(), free_port());
    let sources: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         [store]\npath = \"{}\"\n[amqp]\nurl = \"{}\"\nexchange = \"{exchange}\"\n\
         reconnect_max_secs = 1\n[[amqp.queues]]\nname = \"{queue}\"\nbindings = [\"#\"]\n",
        dir.path().join("store").display(),
        amqp_url()
    );
    for s in &sources {
        text.push_str(&format!(
            "[[sources]]\nname = \"{s}\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n"
        ));
    }
    let config = dir.path().join("hookgate.toml");
    std::fs::write(&config, text).unwrap();
    let mut gw = Process {
        config,
        child: None,
    };
    gw.start();

    // Clients post one event after another and re-send a delivery until it gets a 2xx, as
    // providers do; the gateway is killed once a quarter of the events are acknowledged.
    let per_source = 60;
    let total = sources.len() * per_source;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for s in &sources {
        let (http, acked, s) = (http.clone(), acked.clone(), s.clone());
        clients.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..per_source {
                let id = format!("{s}-{i:03}");
                let req = push(&id, i);
                loop {
                    let mut r = http
                        .post(format!("http://127.0.0.1:{public}/hooks/{s}"))
                        .body(req.body.clone());
                    for (k, v) in &req.headers {
                        r = r.header(k, v);
                    }
                    if r.send().await.is_ok_and(|r| r.status().is_success()) {
                        acked.lock().unwrap().insert(id);
                        break;
                    }
                    assert!(Instant::now() < deadline, "{id} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < total / 4 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gw.kill9();
    let acked_at_kill = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.start();
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        acked_at_kill < total,
        "the kill came while clients were posting"
    );

    // Every acknowledged event reaches the queue; per source in the order it was sent.
    // Republished entries (published, not yet deleted at the kill) may repeat: consumers
    // dedup by message_id.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await;
        if let Ok(r) = ready {
            let v: serde_json::Value = r.json().await.unwrap();
            if v["broker"]["connected"] == true {
                break; // the relay has declared the queue
            }
        }
        assert!(Instant::now() < deadline, "the relay never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_conn, ch) = channel().await;
    let mut first: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} acknowledged events arrived",
            seen.len()
        );
        for id in take_ids(&ch, &queue, 1, Duration::from_secs(30)).await {
            if seen.insert(id.clone()) {
                first.push(id);
            }
        }
    }
    let mut last: HashMap<&str, &str> = HashMap::new();
    for id in &first {
        let source = id.split('-').next().unwrap();
        if let Some(prev) = last.insert(source, id.as_str()) {
            assert!(prev < id.as_str(), "{id} arrived after {prev}");
        }
    }
    assert_eq!(seen, *acked.lock().unwrap());
    gw.kill9();
    let _ = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}
