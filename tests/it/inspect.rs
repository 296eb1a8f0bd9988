//! Inspection and replay (issue 14): the admin API and the command line over kept events,
//! through the real broker.

use std::process::Command;
use std::time::{Duration, Instant};

use lapin::types::AMQPValue;
use providers::github;
use serde_json::{json, Value};

use crate::harness::{amqp_url, config, config_text, unique, Consumer, Gateway, Message};

const SECRET: &str = "inspect-secret";
const T: Duration = Duration::from_secs(20);

fn sources() -> String {
    format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n")
}

async fn send(gw: &Gateway, event: &str, id: &str) {
    let r = gw
        .send("gh", &github::delivery(SECRET, event, id, br#"{"a":1}"#))
        .await;
    assert_eq!(r.status(), 202, "{id}");
}

async fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let r = gw.client.get(gw.admin(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(gw: &Gateway, path: &str, body: Value) -> (u16, Value) {
    let r = gw
        .client
        .post(gw.admin(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until nothing is pending (the relay has every confirm).
async fn wait_published(gw: &Gateway) {
    let deadline = Instant::now() + T;
    loop {
        let (_, v) = get(gw, "/events?status=pending").await;
        if ids(&v).is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still pending: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn is_replay(m: &Message) -> bool {
    m.properties.headers().as_ref().and_then(|h| {
        h.inner()
            .iter()
            .find(|(k, _)| k.as_str() == "x-hookgate-replay")
            .map(|(_, v)| v.clone())
    }) == Some(AMQPValue::Boolean(true))
}

pub(crate) fn message_id(m: &Message) -> String {
    m.properties.message_id().as_ref().unwrap().to_string()
}

#[actix_web::test]
async fn list_show_and_replay_through_the_admin_api() {
    let exchange = unique("it-inspect");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    for i in 0..6 {
        send(&gw, "push", &format!("p{i}")).await;
    }
    send(&gw, "issues", "i0").await;
    send(&gw, "issues", "i1").await;
    let got = consumer.take(8, T).await;
    assert!(got.iter().all(|m| !is_replay(m)));
    wait_published(&gw).await;

    let (s, v) = get(&gw, "/events?limit=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&v), ["i1", "i0", "p5"], "newest first, limited");
    let (_, v) = get(&gw, "/events?type=github.issues").await;
    assert_eq!(ids(&v), ["i1", "i0"]);
    let (_, v) = get(&gw, "/events?source=gh&since=1h&status=published").await;
    assert_eq!(ids(&v).len(), 8);
    let (_, v) = get(&gw, "/events?until=2h").await;
    assert!(ids(&v).is_empty(), "{v}");
    let (_, v) = get(&gw, "/events?source=other").await;
    assert!(ids(&v).is_empty(), "{v}");
    let (s, _) = get(&gw, "/events?since=yesterday").await;
    assert_eq!(s, 400);
    let (s, _) = get(&gw, "/events?colour=red").await;
    assert_eq!(s, 400);

    let (s, v) = get(&gw, "/events/gh/p2").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "published");
    assert!(
        v["published_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    assert_eq!(v["type"], "github.push");
    assert_eq!(v["envelope"]["id"], "p2");
    let (s, _) = get(&gw, "/events/gh/nope").await;
    assert_eq!(s, 404);

    // One event: the same envelope and message_id, marked as a replay.
    let (s, v) = post(&gw, "/replay", json!({"source": "gh", "id": "p2"})).await;
    assert_eq!((s, &v), (200, &json!({"replayed": 1, "dry_run": false})));
    let m = &consumer.take(1, T).await[0];
    assert!(is_replay(m));
    assert_eq!(message_id(m), "p2");
    assert_eq!(m.body, got[2].body, "the envelope unchanged");

    // A dry run counts and sends nothing.
    let filter = json!({"source": "gh", "type": "github.push", "since": "1h", "dry_run": true});
    let (s, v) = post(&gw, "/replay", filter).await;
    assert_eq!((s, &v["replayed"]), (200, &json!(6)), "{v}");
    consumer.assert_empty(Duration::from_millis(500)).await;

    // By filter: the originals in their order, not the copy replayed above.
    let filter = json!({"source": "gh", "type": "github.issues", "since": "1h"});
    let (_, v) = post(&gw, "/replay", filter).await;
    assert_eq!(v["replayed"], 2, "{v}");
    let again = consumer.take(2, T).await;
    assert_eq!(
        again.iter().map(message_id).collect::<Vec<_>>(),
        ["i0", "i1"]
    );
    assert!(again.iter().all(is_replay));
    wait_published(&gw).await;
    let (_, v) = get(&gw, "/events?limit=1").await;
    assert_eq!(v["events"][0]["replay"], true, "{v}");
    let (_, v) = get(&gw, "/events/gh/p2").await;
    assert_eq!(v["replays"].as_array().unwrap().len(), 1, "{v}");

    for bad in [
        json!({"source": "gh"}),
        json!({"id": "p2"}),
        json!({"source": "gh", "since": "1h", "status": "pending"}),
        json!({"source": "gh", "since": "1h", "colour": "red"}),
    ] {
        let (s, v) = post(&gw, "/replay", bad.clone()).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, _) = post(&gw, "/replay", json!({"source": "gh", "id": "nope"})).await;
    assert_eq!(s, 404);
    gw.stop().await;
}

#[actix_web::test]
async fn a_dead_letter_is_listed_shown_and_replayed_off_the_dead_list() {
    let exchange = unique("it-inspect-dead");
    let pushes = Consumer::bind(&exchange, "gh.github.push").await;
    let mut c = config(&sources(), &exchange, &amqp_url(), None, "");
    c.amqp.max_attempts = 2;
    let gw = Gateway::start(c).await;
    send(&gw, "issues", "dead-1").await;
    send(&gw, "push", "live-1").await;
    pushes.take(1, T).await;
    let deadline = Instant::now() + T;
    // The dead letter is kept before the relay saves its cursor past it: until then it is
    // still pending. Wait for both.
    loop {
        let v = gw.readyz().await;
        if v["dead_letters"] == 1 && v["outbox_pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never dead: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, v) = get(&gw, "/events?status=dead").await;
    assert_eq!(ids(&v), ["dead-1"]);
    let (_, v) = get(&gw, "/events/gh/dead-1").await;
    assert_eq!(v["status"], "dead");
    assert_eq!(v["attempts"], 2);
    assert!(
        v["last_error"].as_str().unwrap().contains("NO_ROUTE"),
        "{v}"
    );

    // Once the consumer's binding is fixed, the dead letters are replayed.
    let issues = Consumer::bind(&exchange, "gh.github.issues").await;
    let (_, v) = post(
        &gw,
        "/replay",
        json!({"source": "gh", "status": "dead", "dry_run": true}),
    )
    .await;
    assert_eq!(v["replayed"], 1);
    let (_, v) = post(&gw, "/replay", json!({"source": "gh", "status": "dead"})).await;
    assert_eq!(v["replayed"], 1, "{v}");
    let m = &issues.take(1, T).await[0];
    assert!(is_replay(m));
    assert_eq!(message_id(m), "dead-1");
    assert_eq!(gw.readyz().await["dead_letters"], 0);
    let (_, v) = get(&gw, "/events/gh/dead-1").await;
    assert_eq!(v["status"], "replayed", "{v}");
    let (_, v) = post(&gw, "/replay", json!({"source": "gh", "status": "dead"})).await;
    assert_eq!(v["replayed"], 0, "off the dead list");
    gw.stop().await;
}

/// A dead letter replayed while its route is still missing dies again as a copy. Replayed by
/// id then, the dead copy is the one that goes out and leaves the dead list; before, a new
/// copy of the original went out beside it and the dead copy was published again by the
/// next `status = dead` replay (found by a black-box review).
#[actix_web::test]
async fn a_replay_by_id_takes_the_dead_copy_of_an_earlier_replay() {
    let exchange = unique("it-inspect-chain");
    let mut c = config(&sources(), &exchange, &amqp_url(), None, "");
    c.amqp.max_attempts = 2;
    let gw = Gateway::start(c).await;
    let dead_letters = |n: u64| {
        let gw = &gw;
        async move {
            let deadline = Instant::now() + T;
            while gw.readyz().await["dead_letters"] != n {
                assert!(Instant::now() < deadline, "never {n} dead letters");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            wait_published(gw).await;
        }
    };
    send(&gw, "issues", "chain-1").await;
    dead_letters(1).await;
    let (_, v) = post(&gw, "/replay", json!({"source": "gh", "status": "dead"})).await;
    assert_eq!(v["replayed"], 1, "{v}");
    // The copy has no route either: dead again.
    dead_letters(1).await;
    let issues = Consumer::bind(&exchange, "gh.github.issues").await;
    let (s, v) = post(&gw, "/replay", json!({"source": "gh", "id": "chain-1"})).await;
    assert_eq!((s, &v["replayed"]), (200, &json!(1)), "{v}");
    let m = &issues.take(1, T).await[0];
    assert!(is_replay(m));
    assert_eq!(message_id(m), "chain-1");
    dead_letters(0).await;
    let (_, v) = post(&gw, "/replay", json!({"source": "gh", "status": "dead"})).await;
    assert_eq!(v["replayed"], 0, "nothing left dead: {v}");
    issues.assert_empty(Duration::from_millis(500)).await;
    gw.stop().await;
}

#[actix_web::test]
async fn a_forgotten_id_is_accepted_again() {
    let exchange = unique("it-forget");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    send(&gw, "push", "f1").await;
    send(&gw, "push", "f1").await;
    consumer.take(1, T).await;
    consumer.assert_empty(Duration::from_millis(300)).await;
    let (s, v) = post(&gw, "/forget", json!({"source": "gh", "id": "f1"})).await;
    assert_eq!((s, v), (200, json!({"forgotten": true})));
    let (_, v) = post(&gw, "/forget", json!({"source": "gh", "id": "f1"})).await;
    assert_eq!(v, json!({"forgotten": false}));
    send(&gw, "push", "f1").await;
    let m = &consumer.take(1, T).await[0];
    assert_eq!(message_id(m), "f1");
    assert!(!is_replay(m), "a new delivery, not a replay");
    let (s, _) = post(&gw, "/forget", json!({"source": "gh"})).await;
    assert_eq!(s, 400);
    gw.stop().await;
}

#[actix_web::test]
async fn the_admin_token_guards_every_route_but_the_probes() {
    let exchange = unique("it-token");
    let extra = "admin_token = \"tok-123\"";
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, extra)).await;
    for path in [
        "/events",
        "/rejections",
        "/metrics",
        "/events/gh/x",
        "/nope",
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("tok-123"),
            Some("Bearer tok-1234"),
        ] {
            let mut r = gw.client.get(gw.admin(path));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
        }
    }
    let r = gw
        .client
        .post(gw.admin("/replay"))
        .json(&json!({"source": "gh", "status": "dead"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for path in ["/events", "/rejections", "/metrics"] {
        let r = gw
            .client
            .get(gw.admin(path))
            .bearer_auth("tok-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The scheme is case-insensitive (RFC 9110).
    let r = gw
        .client
        .get(gw.admin("/events"))
        .header("Authorization", "bearer tok-123");
    assert_eq!(r.send().await.unwrap().status(), 200);
    for path in ["/healthz", "/readyz"] {
        let r = gw.client.get(gw.admin(path)).send().await.unwrap();
        assert!(r.status() == 200 || r.status() == 503, "{path}");
    }
    gw.stop().await;
}

/// `check`, `serve` and a reload refuse the same: a gateway started with what every reload
/// then refuses could not even rotate a secret.
#[test]
fn check_and_serve_refuse_a_public_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookgate.toml");
    let text = config_text(
        &sources(),
        "x",
        &amqp_url(),
        Some(&dir.path().join("store")),
        "",
    )
    .replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:9090\"",
    );
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["check", "-c"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = check(&text);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.admin_token"), "{err}");
    // `serve` exits at once (a timeout, not a hang, if it started serving instead).
    let out = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_hookgate"), "serve", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.admin_token"), "{err}");
    assert!(!dir.path().join("store").exists(), "no store created");
    let with_token = text.replace(
        "admin_listen = \"0.0.0.0:9090\"",
        "admin_listen = \"0.0.0.0:9090\"\nadmin_token = \"t\"",
    );
    let out = check(&with_token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An IPv4-mapped address is what it maps.
    let mapped = |ip: &str| text.replace("0.0.0.0:9090", &format!("[::ffff:{ip}]:9090"));
    let out = check(&mapped("127.0.0.1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!check(&mapped("0.0.0.0")).status.success());
}

#[actix_web::test]
async fn rejections_say_why_without_a_body_or_a_signature() {
    let exchange = unique("it-rejections");
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    let body = br#"{"secret_stuff":"BODY-MARKER-91c2"}"#;
    let forged = github::delivery("wrong-secret", "push", "r1", body);
    let signature = forged
        .headers
        .iter()
        .find(|(k, _)| k == "X-Hub-Signature-256")
        .unwrap()
        .1
        .clone();
    assert_eq!(gw.send("gh", &forged).await.status(), 401);
    let mut unsigned = github::delivery(SECRET, "push", "r2", b"{}");
    unsigned
        .headers
        .retain(|(k, _)| !k.starts_with("X-Hub-Signature"));
    assert_eq!(gw.send("gh", &unsigned).await.status(), 401);
    send(&gw, "push", "ok-1").await;

    let (s, v) = get(&gw, "/rejections?source=gh").await;
    assert_eq!(s, 200);
    let rows = v["rejections"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    // The same bounds on `limit` as GET /events.
    for limit in [0, 10_001] {
        let (s, _) = get(&gw, &format!("/rejections?limit={limit}")).await;
        assert_eq!(s, 400, "limit={limit}");
    }
    let (_, v) = get(&gw, "/rejections?source=gh&limit=1").await;
    assert_eq!(v["rejections"].as_array().unwrap().len(), 1, "{v}");
    let (newest, oldest) = (&rows[0], &rows[1]);
    assert_eq!(oldest["reason"], "signature");
    assert_eq!(oldest["status"], 401);
    assert_eq!(oldest["client_ip"], "127.0.0.1");
    assert_eq!(oldest["body_bytes"], body.len());
    use sha2::Digest;
    assert_eq!(
        oldest["body_sha256"],
        hex::encode(sha2::Sha256::digest(body))
    );
    let names = oldest["headers"].as_array().unwrap();
    assert!(names.contains(&json!("x-hub-signature-256")), "{v}");
    assert!(!newest["headers"]
        .as_array()
        .unwrap()
        .contains(&json!("x-hub-signature-256")));
    let text = v.to_string();
    assert!(!text.contains("BODY-MARKER"), "{text}");
    assert!(!text.contains(&signature), "{text}");
    assert!(!text.contains(&signature["sha256=".len()..]), "{text}");
    let (_, v) = get(&gw, "/rejections?limit=1").await;
    assert_eq!(v["rejections"].as_array().unwrap().len(), 1);
    gw.stop().await;
}

/// How long `tail` may take, with a gateway running, to read where the log ends (it follows
/// what is accepted after that): it first waits half a second for the store's lock
/// (`open_local`), then asks the admin listener. 800 ms left a loaded machine some 300 ms for
/// its start and that request; an event sent before then is never shown (the test times out).
const TAIL_STARTS: Duration = Duration::from_secs(3);

/// `hookgate tail --json --count N -c FILE`, its output piped.
fn spawn_tail_json(file: &std::path::Path, count: u32) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["tail", "--json", "--count", &count.to_string(), "-c"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The envelopes `tail --json --count N` printed, once it has printed its N and ended.
async fn tail_json(tail: std::process::Child) -> Vec<Value> {
    tail_json_and_stderr(tail).await.0
}

/// The envelopes `tail --json --count N` printed, and its stderr, once it has ended.
async fn tail_json_and_stderr(tail: std::process::Child) -> (Vec<Value>, String) {
    // Its output is read while it runs (an envelope can be larger than a pipe holds).
    let pid = tail.id();
    let waited = tokio::task::spawn_blocking(move || tail.wait_with_output().unwrap());
    let out = match tokio::time::timeout(T, waited).await {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: a signal to the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("tail did not print its count in time");
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelopes = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (envelopes, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn hookgate(args: &[&str], file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .arg("-c")
        .arg(file)
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command line answers the same through a running gateway's admin listener (its store is
/// locked) and on the stopped gateway's store.
#[actix_web::test]
async fn the_cli_answers_the_same_from_a_running_or_a_stopped_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exchange = unique("it-inspect-cli");
    let consumer = Consumer::bind(&exchange, "#").await;
    let extra = "admin_token = \"cli-token\"";
    let gw = Gateway::start(config(
        &sources(),
        &exchange,
        &amqp_url(),
        Some(&store),
        extra,
    ))
    .await;
    for i in 0..4 {
        send(&gw, "push", &format!("c{i}")).await;
    }
    consumer.take(4, T).await;
    let deadline = Instant::now() + T;
    while gw.readyz().await["outbox_pending"] != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let file = dir.path().join("hookgate.toml");
    let text = config_text(&sources(), &exchange, &amqp_url(), Some(&store), extra).replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"{}\"", gw.running.admin_addr),
    );
    std::fs::write(&file, text).unwrap();

    let list = ["events", "--limit", "3", "--json"];
    let (ok, running, err) = hookgate(&list, &file);
    assert!(ok, "{err}");
    let lines: Vec<Value> = running
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|l| l["id"].clone()).collect::<Vec<_>>(),
        ["c3", "c2", "c1"]
    );
    let (ok, table, err) = hookgate(&["events", "--status", "published"], &file);
    assert!(ok, "{err}");
    assert!(table.starts_with("RECEIVED"), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    let (ok, shown, err) = hookgate(&["events", "show", "--source", "gh", "--id", "c1"], &file);
    assert!(ok, "{err}");
    assert!(shown.contains("status:       published"), "{shown}");
    // CONTRACT.md's own form: the config before `show`.
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["events", "-c"])
        .arg(&file)
        .args(["--json", "show", "--source", "gh", "--id", "c1"])
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["status"].as_str()),
        (Some("c1"), Some("published")),
        "{v}"
    );
    let dry_run = |source: &str| {
        let (ok, out, err) = hookgate(
            &["replay", "--source", source, "--since", "1h", "--dry-run"],
            &file,
        );
        assert!(ok, "{err}");
        (out.trim().to_string(), err)
    };
    assert_eq!(dry_run("gh").0, "would replay 4 events (dry run)");
    let (ok, out, err) = hookgate(&["replay", "--source", "gh", "--id", "c0"], &file);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "replayed 1 events");
    let m = &consumer.take(1, T).await[0];
    assert!(is_replay(m) && message_id(m) == "c0");
    let (ok, out, err) = hookgate(&["forget", "--source", "gh", "--id", "c3"], &file);
    assert!(ok, "{err}");
    assert!(out.contains("removed from the dedup index"), "{out}");
    let (ok, out, err) = hookgate(&["rejections", "--json"], &file);
    assert!(ok && out.is_empty(), "{out} {err}");
    // A source the config does not name: the same (empty) answer, and a note on stderr.
    let (ok, out, err) = hookgate(&["events", "--source", "hg", "--json"], &file);
    assert!(ok && out.is_empty(), "{out} {err}");
    assert!(
        err.contains(r#"the config has no source "hg" (its sources: gh"#),
        "{err}"
    );
    let (out, err) = dry_run("hg");
    assert_eq!(out, "would replay 0 events (dry run)");
    assert!(err.contains(r#"no source "hg""#), "{err}");
    let (ok, _, err) = hookgate(&["events", "--source", "gh", "--limit", "1"], &file);
    assert!(ok && !err.contains("no source"), "{err}");

    // `tail` follows what is accepted after it starts, envelopes with --json.
    let tail = spawn_tail_json(&file, 2);
    tokio::time::sleep(TAIL_STARTS).await;
    send(&gw, "push", "t0").await;
    send(&gw, "issues", "t1").await;
    let envelopes = tail_json(tail).await;
    assert_eq!(envelopes.len(), 2);
    assert_eq!(
        (&envelopes[0]["id"], &envelopes[0]["type"]),
        (&Value::from("t0"), &Value::from("github.push"))
    );
    assert_eq!(envelopes[1]["id"], "t1");
    assert_eq!(envelopes[1]["source"], "/hookgate/gh");
    consumer.take(2, T).await;

    // Without the token, the running gateway refuses.
    let no_token = std::fs::read_to_string(&file)
        .unwrap()
        .replace("admin_token = \"cli-token\"", "");
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, no_token).unwrap();
    let (ok, _, err) = hookgate(&list, &bare);
    assert!(!ok && err.contains("wants a token"), "{err}");
    // A token that is not the gateway's is told apart from none.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("cli-token", "not-the-token"),
    )
    .unwrap();
    let (ok, _, err) = hookgate(&list, &wrong);
    assert!(!ok && err.contains("refused the token"), "{err}");

    let deadline = Instant::now() + T;
    while gw.readyz().await["outbox_pending"] != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, running_after, _) = hookgate(&list, &file);
    let empty_id = ["events", "show", "--source", "gh", "--id="];
    let (ok, _, empty_running) = hookgate(&empty_id, &file);
    assert!(!ok);
    gw.stop().await;
    let (ok, stopped, err) = hookgate(&list, &file);
    assert!(ok, "{err}");
    assert_eq!(stopped, running_after, "the same rows from the store");
    let (ok, _, empty_stopped) = hookgate(&empty_id, &file);
    assert!(!ok);
    assert_eq!(
        empty_stopped, empty_running,
        "the same answer for an empty id"
    );
    let (ok, shown_stopped, err) =
        hookgate(&["events", "show", "--source", "gh", "--id", "c1"], &file);
    assert!(ok, "{err}");
    assert_eq!(shown_stopped, shown);

    // Something else answering on the admin address is not the stopped store's gateway.
    let admin_addr = hookgate::config::Config::load(&file)
        .unwrap()
        .server
        .admin_listen;
    let squatter = std::net::TcpListener::bind(admin_addr).unwrap();
    let (ok, _, err) = hookgate(&["tail"], &file);
    assert!(!ok && err.contains("not this store's gateway"), "{err}");
    drop(squatter);

    // `tail` on the stopped store waits for the gateway, then shows what it accepts from its
    // start on, the first event too.
    let tail = spawn_tail_json(&file, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gw = Gateway::start(hookgate::config::Config::load(&file).unwrap()).await;
    send(&gw, "push", "after-restart-0").await;
    send(&gw, "push", "after-restart-1").await;
    let (envelopes, err) = tail_json_and_stderr(tail).await;
    assert!(err.contains("waiting for it to start"), "{err}");
    let ids: Vec<_> = envelopes.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, [json!("after-restart-0"), json!("after-restart-1")]);
    consumer.take(2, T).await;
    gw.stop().await;
}

/// A pending event is on its way: replaying it by id would publish it twice.
#[actix_web::test]
async fn a_pending_event_is_not_replayed_by_id() {
    let exchange = unique("it-inspect-pending");
    // Nothing listens there: the event stays pending.
    let gw = Gateway::start(config(
        &sources(),
        &exchange,
        "amqp://guest:guest@127.0.0.1:1/%2f",
        None,
        "",
    ))
    .await;
    send(&gw, "push", "waiting").await;
    let (s, v) = post(&gw, "/replay", json!({"source": "gh", "id": "waiting"})).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("still pending"),
        "{v}"
    );
    // Why it waits: no try was made, the broker cannot be reached.
    let deadline = Instant::now() + T;
    let v = loop {
        let (s, v) = get(&gw, "/events/gh/waiting").await;
        assert_eq!(s, 200, "{v}");
        if v.get("last_error").is_some() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["attempts"], 0, "{v}");
    // Another query key (a browser's cache buster) is ignored; `text=1` is `text=true`.
    let (s, t) = get(&gw, "/events/gh/waiting?_=17&text=1").await;
    assert_eq!(s, 200, "{t}");
    assert!(
        t["envelope_text"]
            .as_str()
            .unwrap()
            .contains("\"id\": \"waiting\""),
        "{t}"
    );
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .starts_with("not sent: the broker is not connected"),
        "{v}"
    );
    gw.stop().await;
}

/// A web page open in a browser on the gateway's host cannot act through the admin listener:
/// a request that changes something must be JSON (another origin would need a CORS preflight),
/// and without a token a request must name the listener by address or localhost (a
/// DNS-rebinding page names its own domain).
#[actix_web::test]
async fn the_admin_listener_refuses_what_a_browser_page_could_send() {
    let exchange = unique("it-inspect-browser");
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    let simple = gw
        .client
        .post(gw.admin("/replay"))
        .header("Content-Type", "text/plain")
        .body(r#"{"source":"gh","since":"1h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 403);
    // The router decodes `/%72eplay` to `/replay`: refused all the same (it was let through).
    for path in ["/%72eplay", "/%66orget", "/repl%61y"] {
        let r = gw
            .client
            .post(gw.admin(path))
            .header("Content-Type", "text/plain")
            .body(r#"{"source":"gh","id":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    // Event data is never kept in a browser's cache.
    let r = gw.client.get(gw.admin("/events")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let r = gw.client.get(gw.admin("/console.js")).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let rebound = gw
        .client
        .get(gw.admin("/events"))
        .header("Host", "attacker.example:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    // Another site's page (a browser says so): not even a status to read (it could tell a
    // kept event from none). The console's own requests, a typed address and non-browser
    // clients are served.
    for (site, status) in [
        ("cross-site", 403),
        ("same-site", 403),
        ("same-origin", 200),
        ("none", 200),
    ] {
        let r = gw
            .client
            .get(gw.admin("/events"))
            .header("Sec-Fetch-Site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{site}");
    }
    // A link a person followed from another site (Grafana on another port) to the console or
    // /metrics is served; a navigation to a listing, one without a click, a prefetch are not.
    for (path, user, purpose, status) in [
        ("/", Some("?1"), None, 200),
        ("/metrics", Some("?1"), None, 200),
        ("/events", Some("?1"), None, 403),
        ("/", None, None, 403),
        ("/", Some("?1"), Some("prefetch"), 403),
    ] {
        let mut r = gw
            .client
            .get(gw.admin(path))
            .header("Sec-Fetch-Site", "same-site")
            .header("Sec-Fetch-Mode", "navigate")
            .header("Sec-Fetch-Dest", "document");
        if let Some(user) = user {
            r = r.header("Sec-Fetch-User", user);
        }
        if let Some(purpose) = purpose {
            r = r.header("Sec-Purpose", purpose);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), status, "{path} {user:?} {purpose:?}");
    }
    for host in ["localhost:9090", "127.0.0.1", "[::1]:9090"] {
        let r = gw
            .client
            .get(gw.admin("/events"))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let (s, v) = post(&gw, "/replay", json!({"source": "gh", "since": "1h"})).await;
    assert_eq!((s, &v["replayed"]), (200, &json!(0)), "{v}");
    // The wrong method on a route that changes something is that, not a refused content type.
    for path in ["/replay", "/forget"] {
        let r = gw.client.get(gw.admin(path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "GET {path}");
    }
    gw.stop().await;
}

/// `tail` shows every accepted event, published or not, even when `retain_secs = 0` takes a
/// published one out of the listings at once (it showed only what was still pending or dead:
/// nothing, for a routable event).
#[actix_web::test]
async fn tail_follows_published_events_when_nothing_is_retained() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exchange = unique("it-inspect-tail0");
    let consumer = Consumer::bind(&exchange, "#").await;
    let text = |admin: &str| {
        config_text(&sources(), &exchange, &amqp_url(), Some(&store), "")
            .replace("[store]\n", "[store]\nretain_secs = 0\n")
            .replace("admin_listen = \"127.0.0.1:0\"", admin)
    };
    let config = hookgate::config::Config::parse(
        &text("admin_listen = \"127.0.0.1:0\""),
        &std::collections::HashMap::new(),
        std::path::Path::new("."),
    )
    .unwrap();
    assert_eq!(config.store.retain_secs, 0);
    let gw = Gateway::start(config).await;
    gw.wait_broker(true).await;
    // One event before tail starts: not shown.
    send(&gw, "push", "before").await;
    consumer.take(1, T).await;
    let file = dir.path().join("hookgate.toml");
    std::fs::write(
        &file,
        text(&format!("admin_listen = \"{}\"", gw.running.admin_addr)),
    )
    .unwrap();
    let tail = spawn_tail_json(&file, 3);
    tokio::time::sleep(TAIL_STARTS).await;
    for i in 0..3 {
        send(&gw, "push", &format!("r{i}")).await;
        // Published, and so out of the listings, before tail's next look.
        consumer.take(1, T).await;
    }
    let tailed: Vec<Value> = tail_json(tail)
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(tailed, ["r0", "r1", "r2"]);
    // Still out of the listing.
    let (_, v) = get(&gw, "/events").await;
    assert!(ids(&v).is_empty(), "{v}");
    gw.stop().await;
}

/// A burst of large events between two looks of `tail`: pages end after ~4 MiB of envelopes,
/// and tail goes on from the last row of a page cut short (it jumped to the log's end, and
/// the rest of the burst was never printed; found by a review).
#[actix_web::test]
async fn tail_pages_through_a_burst_of_large_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let exchange = unique("it-inspect-tail-big");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), Some(&store), "")).await;
    gw.wait_broker(true).await;
    let file = dir.path().join("hookgate.toml");
    let text = config_text(&sources(), &exchange, &amqp_url(), Some(&store), "").replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"{}\"", gw.running.admin_addr),
    );
    std::fs::write(&file, text).unwrap();
    let tail = spawn_tail_json(&file, 6);
    tokio::time::sleep(TAIL_STARTS).await;
    // Six of ~1 MiB: more than one page's worth of envelopes.
    let big = format!(r#"{{"pad":"{}"}}"#, "p".repeat(1 << 20));
    let sends = (0..6).map(|i| {
        let gw = &gw;
        let body = big.clone();
        async move {
            let r = github::delivery(SECRET, "push", &format!("big-{i}"), body.as_bytes());
            assert_eq!(gw.send("gh", &r).await.status(), 202);
        }
    });
    futures_util::future::join_all(sends).await;
    let ids: Vec<Value> = tail_json(tail)
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|v| v.to_string());
    assert_eq!(
        sorted,
        (0..6)
            .map(|i| Value::from(format!("big-{i}")))
            .collect::<Vec<_>>(),
        "{ids:?}"
    );
    consumer.take(6, T).await;
    gw.stop().await;
}

/// `sign` says when its sample is larger than the source takes (the gateway answers 413).
#[test]
fn sign_warns_when_its_sample_is_over_the_sources_body_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookgate.toml");
    let source = |max: usize| {
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"s\"]\nmax_body_bytes = {max}\n")
    };
    std::fs::write(&file, source(10)).unwrap();
    let (ok, out, err) = hookgate(&["sign"], &file);
    assert!(ok && out.starts_with("curl"), "{out} {err}");
    assert!(
        err.contains("over source gh's max_body_bytes (10)"),
        "{err}"
    );
    std::fs::write(&file, source(1 << 20)).unwrap();
    let (ok, _, err) = hookgate(&["sign"], &file);
    assert!(ok && err.is_empty(), "{err}");
}

/// Newest first by accept time: a replay's copy keeps its event's time, so it is listed with
/// its event, not above what was accepted after the event.
#[actix_web::test]
async fn a_replayed_event_is_listed_by_its_accept_time() {
    let exchange = unique("it-inspect-order");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(&sources(), &exchange, &amqp_url(), None, "")).await;
    // Accept times are whole seconds: one apart each.
    for id in ["o-a", "o-b", "o-c"] {
        send(&gw, "push", id).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    consumer.take(3, T).await;
    wait_published(&gw).await;
    let (s, v) = post(&gw, "/replay", json!({"source": "gh", "id": "o-a"})).await;
    assert_eq!((s, &v["replayed"]), (200, &json!(1)), "{v}");
    consumer.take(1, T).await;
    let (_, v) = get(&gw, "/events?source=gh").await;
    assert_eq!(ids(&v), ["o-c", "o-b", "o-a", "o-a"], "{v}");
    assert_eq!(v["events"][2]["replay"], true, "{v}");
    let (_, v) = get(&gw, "/events?source=gh&limit=2").await;
    assert_eq!(ids(&v), ["o-c", "o-b"], "{v}");
    gw.stop().await;
}
