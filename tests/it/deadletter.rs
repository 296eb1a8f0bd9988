//! The relay never stops for one event (issue #10): an event the broker refuses
//! `amqp.max_attempts` times becomes a dead letter, and the events behind it keep flowing.

use std::time::Duration;

use providers::github;

use crate::harness::{amqp_url, config, unique, Consumer, Gateway, RabbitNode};

const SECRET: &str = "dead-letter-secret";

/// One github source named `name`. Each test has its own: the metrics registry is shared by
/// every test in this process, and a dead-letter count is per source.
fn sources(name: &str) -> String {
    format!("[[sources]]\nname = \"{name}\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n")
}

fn push(id: &str, body: &[u8]) -> providers::sign::SampleRequest {
    github::delivery(SECRET, "push", id, body)
}

#[actix_web::test]
async fn an_unroutable_event_becomes_dead_while_the_events_behind_it_arrive() {
    let exchange = unique("it-dead");
    // Only pushes are bound: an `issues` event is returned unroutable on every attempt.
    let consumer = Consumer::bind(&exchange, "ghdl.github.push").await;
    let mut c = config(&sources("ghdl"), &exchange, &amqp_url(), None, "");
    // Retries 100, 200, 400, 800, then 1,000 ms apart: dead ~6.5 s after its first return.
    // What is checked below while it still waits (five sends, their delivery, a confirm read)
    // had ~2.5 s with 6 attempts: little on a loaded machine.
    c.amqp.max_attempts = 10;
    let gw = Gateway::start(c).await;

    let issue = github::delivery(SECRET, "issues", "dead-1", br#"{"action":"opened"}"#);
    assert_eq!(gw.send("ghdl", &issue).await.status(), 202);
    // Its first return is reported; what comes after must not wait for its retries.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = gw.readyz().await;
        if v["broker"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("NO_ROUTE"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never returned: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        let r = gw.send("ghdl", &push(&format!("live-{i}"), b"{}")).await;
        assert_eq!(r.status(), 202);
    }
    let got = consumer.take(5, Duration::from_secs(20)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["live-0", "live-1", "live-2", "live-3", "live-4"],
        "in order, none lost"
    );
    // They did not wait for its retries: it is parked aside while they go (it used to hold
    // every event behind it until it was dead).
    assert!(
        gw.running.gateway.store.dead_letters().unwrap().is_empty(),
        "the events behind it waited for its retries"
    );
    // And they are listed as published (once the relay has read the confirm, within a few
    // seconds here: the event it retries stays ~6.5 s), though its saved position is still
    // before them, at the event it retries.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let v = gw.admin_json("/events/ghdl/live-4").await;
        if v["status"] == "published" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gw.running.gateway.store.dead_letters().unwrap().is_empty());
    // While it waits for its next try, `events show` says how often and why it was refused
    // (only a dead letter said so).
    let v = gw.admin_json("/events/ghdl/dead-1").await;
    assert_eq!(v["status"], "pending", "{v}");
    assert!(
        v["attempts"].as_u64().is_some_and(|n| (1..10).contains(&n)),
        "{v}"
    );
    assert!(
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("NO_ROUTE")),
        "{v}"
    );

    // Dead after the tenth refusal (retries back off), then the backlog is empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // The dead letter is kept before the relay saves its cursor past it, so `/readyz` may
    // show it dead and still pending for a moment: wait for both.
    let v = loop {
        let v = gw.readyz().await;
        if v["dead_letters"] == 1 && v["outbox_pending"] == 0 {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "never dead: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["outbox_pending"], 0, "{v}");
    assert_eq!(
        v["status"], "ready",
        "a dead letter does not make the gateway unready: {v}"
    );
    let m = gw.metrics().await;
    assert!(
        m.contains("hookgate_dead_letters_total{source=\"ghdl\"} 1"),
        "{m}"
    );
    let dead = gw.running.gateway.store.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.message_id, "dead-1");
    assert_eq!(dead[0].2.attempts, 10);
    assert!(dead[0].2.reason.contains("NO_ROUTE"), "{:?}", dead[0].2);
    let v = gw.admin_json("/events/ghdl/dead-1").await;
    assert_eq!(
        (v["status"].as_str(), v["attempts"].as_u64()),
        (Some("dead"), Some(10)),
        "{v}"
    );

    // And later events still flow.
    assert_eq!(gw.send("ghdl", &push("after", b"{}")).await.status(), 202);
    let got = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body["id"], "after");
    gw.stop().await;
}

/// A broker that refuses messages over 64 KiB (a private RabbitMQ node with
/// `max_message_size`): each oversized event becomes dead, the small ones between them arrive,
/// and with the default attempts and reconnect cap, promptly: the broker closing the channel
/// over a message is not a failing node (each refusal waited out a growing reconnect back-off,
/// up to `reconnect_max_secs`, ~25 s per oversized event; found by a black-box review).
#[actix_web::test]
async fn an_oversized_event_becomes_dead_while_the_events_behind_it_arrive() {
    let node = RabbitNode::start("max_message_size = 65536\n").await;
    let exchange = unique("it-big");
    let consumer = Consumer::bind_at(&node.url(), &exchange, "#").await;
    let mut c = config(&sources("gh"), &exchange, &node.url(), None, "");
    c.amqp.max_attempts = 5;
    c.amqp.reconnect_max_secs = 5;
    let gw = Gateway::start(c).await;

    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100_000));
    for i in 0..3 {
        let big_id = format!("big-{i}");
        assert_eq!(
            gw.send("gh", &push(&big_id, big.as_bytes())).await.status(),
            202
        );
        let small_id = format!("small-{i}");
        assert_eq!(gw.send("gh", &push(&small_id, b"{}")).await.status(), 202);
    }
    // 15 refusals: with the back-off they took ~50 s; without it, a few.
    let got = consumer.take(3, Duration::from_secs(20)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["small-0", "small-1", "small-2"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let dead = gw.running.gateway.store.dead_letters().unwrap();
        if dead.len() == 3 || std::time::Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut dead_ids: Vec<_> = dead.iter().map(|d| d.1.message_id.clone()).collect();
    dead_ids.sort();
    assert_eq!(dead_ids, ["big-0", "big-1", "big-2"]);
    consumer.assert_empty(Duration::from_millis(300)).await;
    gw.stop().await;
    drop(consumer);
    node.stop();
}

/// lapin hands a `basic.return` to whichever confirm it completes next (for a multiple ack,
/// any of the ones it covers), so with many in flight the return of an unroutable event
/// often arrives on a routed one's confirm. Each return must reach its own record: the
/// unroutable events, and only they, end dead; every routed one arrives.
#[actix_web::test]
async fn returns_among_many_in_flight_reach_their_own_records() {
    use futures_util::StreamExt;

    let exchange = unique("it-dead-many");
    let consumer = Consumer::bind(&exchange, "ghmany.github.push").await;
    let mut c = config(&sources("ghmany"), &exchange, &amqp_url(), None, "");
    c.amqp.max_attempts = 1;
    let gw = Gateway::start(c).await;

    let (mut routed, mut unroutable) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let requests: Vec<_> = (0..200)
            .map(|i| {
                let id = format!("many-{round}-{i}");
                if i % 40 == 17 {
                    unroutable.push(id.clone());
                    github::delivery(SECRET, "issues", &id, br#"{"action":"opened"}"#)
                } else {
                    routed.push(id.clone());
                    push(&id, b"{}")
                }
            })
            .collect();
        let statuses: Vec<u16> = futures_util::stream::iter(&requests)
            .map(|r| async { gw.send("ghmany", r).await.status().as_u16() })
            .buffer_unordered(64)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = gw.readyz().await;
        if v["outbox_pending"] == 0 && v["dead_letters"] == unroutable.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not settled: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dead: Vec<_> = gw
        .running
        .gateway
        .store
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|(_, e, info)| {
            assert!(info.reason.contains("NO_ROUTE"), "{info:?}");
            e.message_id
        })
        .collect();
    dead.sort();
    unroutable.sort();
    assert_eq!(dead, unroutable, "exactly the unroutable events are dead");
    let got: std::collections::BTreeSet<_> = consumer
        .take(routed.len(), Duration::from_secs(30))
        .await
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    let routed: std::collections::BTreeSet<_> = routed.into_iter().collect();
    assert_eq!(got, routed, "every routed event arrived");
    gw.stop().await;
}

/// A record damaged inside the log (a finished segment, not its tail): the records before it
/// are published once each, and `/readyz` says why the relay stops there. Found by reviews:
/// the records before the damage were never published (dropped with the batch), and then,
/// published but returned from with their confirms in flight, they went out again at every
/// reconnect.
#[actix_web::test]
async fn records_before_a_damaged_one_are_published_once_and_readyz_says_why() {
    let exchange = unique("it-damage");
    let consumer = Consumer::bind(&exchange, "#").await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cfg = |url: &str| {
        let mut c = config(&sources("gh"), &exchange, url, Some(&store), "");
        c.store.segment_bytes = 4096;
        c
    };
    let n = 200u64;
    let gw = Gateway::start(cfg("amqp://guest:guest@127.0.0.1:1/%2f")).await;
    for i in 0..n {
        let body = format!(r#"{{"seq":{i}}}"#);
        let r = gw
            .send("gh", &push(&format!("d-{i}"), body.as_bytes()))
            .await;
        assert_eq!(r.status(), 202);
    }
    gw.stop().await;
    let mut segs: Vec<_> = std::fs::read_dir(store.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() > 4, "{segs:?}");
    let seg = &segs[segs.len() / 2];
    let first: u64 = seg.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[8 + 20] ^= 0x40;
    std::fs::write(seg, &bytes).unwrap();

    let gw = Gateway::start(cfg(&amqp_url())).await;
    let before = first - 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = gw.readyz().await;
        let stuck = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("corrupt record"));
        if stuck && v["outbox_pending"] == n - before {
            assert_eq!(v["status"], "not ready", "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Through a few of the relay's reconnects (`reconnect_max_secs = 1`): each once.
    let mut got = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        got.extend(consumer.drain().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<String> = got
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..before).map(|i| format!("d-{i}")).collect();
    assert_eq!(ids, want, "every record before the damage, once, in order");
    gw.stop().await;
}

/// An oversized event in the middle of a busy stream (many in flight when the broker closes
/// the channel over it): it still ends dead, every other event arrives.
#[actix_web::test]
async fn an_oversized_event_among_many_in_flight_ends_dead() {
    use futures_util::StreamExt;
    let node = RabbitNode::start("max_message_size = 65536\n").await;
    let exchange = unique("it-big-many");
    let consumer = Consumer::bind_at(&node.url(), &exchange, "#").await;
    let mut c = config(&sources("gh"), &exchange, &node.url(), None, "");
    c.amqp.max_attempts = 3;
    let gw = Gateway::start(c).await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100_000));
    let requests: Vec<_> = (0..300)
        .map(|i| match i {
            150 => push("big-mid", big.as_bytes()),
            _ => push(&format!("s-{i}"), b"{}"),
        })
        .collect();
    let statuses: Vec<u16> = futures_util::stream::iter(&requests)
        .map(|r| async { gw.send("gh", r).await.status().as_u16() })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let got = consumer.take(299, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 299);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dead = gw.running.gateway.store.dead_letters().unwrap();
        if dead.len() == 1 {
            assert_eq!(dead[0].1.message_id, "big-mid");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not dead: {:?}",
            gw.readyz().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
    drop(consumer);
    node.stop();
}
