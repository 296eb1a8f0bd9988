//! Issue 11 through the real binary and the real HTTP stack: config that loses data or leaks
//! (class 6) and logs an attacker can write or that leak (class 7). Classes 4 and 8 live with
//! the other guards in `guards.rs`.

use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hookgate::cli::LogFormat;
use providers::github;

use crate::harness::{amqp_url, config, metric, unique, Consumer, Gateway};

const SECRET: &str = "hunter2-never-printed";

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .expect("the hookgate binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn class6_check_refuses_an_empty_store_path_and_never_prints_a_secret() {
    let source =
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n");
    let (ok, text) = check(&format!("[store]\npath = \"\"\n{source}"));
    assert!(!ok, "an empty store path loads: {text}");
    assert!(text.contains("store.path: must not be empty"), "{text}");

    for bad in [
        // A string where a list is expected: serde quotes the value.
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{SECRET}\"\n"),
        // A syntax error on the secret's line: the TOML parser quotes the line.
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"\n"),
        // The broker password in a URL that does not parse.
        format!("[amqp]\nurl = \"amqp://guest:{SECRET}@[::1\"\n{source}"),
        format!("[amqp]\nurl = \"amqp:{SECRET}\"\n{source}"),
    ] {
        let (ok, text) = check(&bad);
        assert!(!ok, "{bad}");
        assert!(!text.contains("hunter2"), "{bad}\n=> {text}");
    }
    let (_, text) = check(&format!(
        "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{SECRET}\"\n"
    ));
    assert!(
        text.contains("sources[0] (gh).secrets: invalid type: string"),
        "{text}"
    );
}

/// Everything the process logs from the first call on, through the gateway's own subscriber
/// set-up (`hookgate::cli::log_subscriber`, as `serve` installs it). Process-wide: tests find
/// their lines by their own source names.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = hookgate::cli::log_subscriber(
            LogFormat::Text,
            // The most a RUST_LOG could ask of the dependencies that see bodies.
            tracing_subscriber::EnvFilter::new("info,lapin=trace,amq_protocol=trace,sled=trace"),
            false,
            move || SharedBuf(sink.clone()),
        );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global subscriber");
        buf
    })
    .clone()
}

fn logs_now() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn gh_source(name: &str) -> String {
    format!("[[sources]]\nname = \"{name}\"\nprovider = \"github\"\nsecrets = [\"{GH_SECRET}\"]\n")
}

const GH_SECRET: &str = "It's a Secret to Everybody";

#[actix_web::test]
async fn class7_a_flood_of_forged_requests_writes_ten_lines_and_counts_them_all() {
    captured_logs();
    let exchange = unique("it-c7");
    let source = unique("c7");
    let consumer = Consumer::bind(&exchange, "#").await;
    let gw = Gateway::start(config(
        &gh_source(&source),
        &exchange,
        &amqp_url(),
        None,
        "",
    ))
    .await;

    let flood = Instant::now();
    for i in 0..400 {
        let forged = github::delivery("wrong", "push", &format!("f-{i}"), b"{}");
        assert_eq!(gw.send(&source, &forged).await.status(), 401);
    }
    let real = github::delivery(GH_SECRET, "push", "c7-real", br#"{"ok":true}"#);
    assert_eq!(gw.send(&source, &real).await.status(), 202);
    consumer.take(1, Duration::from_secs(10)).await;

    let logs = logs_now();
    let ours: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&format!("source=\"{source}\"")))
        .collect();
    let rejected = ours.iter().filter(|l| l.contains(" rejected ")).count();
    // A burst of ten lines, then the rest counted (the bucket gets one line back every 6 s).
    let refilled = (flood.elapsed().as_secs() / 6) as usize;
    assert!(
        (10..=10 + refilled).contains(&rejected),
        "ten lines for 400 refusals:\n{}",
        ours.join("\n")
    );
    assert!(
        ours.iter().any(|l| l.contains("accepted")),
        "{}",
        ours.join("\n")
    );
    // Every refusal is counted.
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            &format!("hookgate_requests_total{{source=\"{source}\",outcome=\"unauthorized\"}}")
        ),
        400,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("hookgate_refusals_unlogged_total{{source=\"{source}\"}}")
        ),
        400 - rejected as u64,
        "{m}"
    );
    gw.stop().await;
}

#[actix_web::test]
async fn class7_a_returned_message_never_puts_its_body_in_the_log() {
    captured_logs();
    // An exchange with no queue bound: every publish is returned as unroutable, and lapin logs
    // the returned message, body and all, at WARN (lapin 4.12 `returned_messages.rs`).
    let exchange = unique("it-c7-unroutable");
    let source = unique("c7r");
    let marker = format!("decrypted-payload-{}", unique("m"));
    let gw = Gateway::start(config(
        &gh_source(&source),
        &exchange,
        &amqp_url(),
        None,
        "",
    ))
    .await;
    gw.wait_broker(true).await;
    let returned = |m: &str| metric(m, "hookgate_publish_failures_total{reason=\"returned\"}");
    let before = returned(&gw.metrics().await);

    let body = format!(r#"{{"secret_note":"{marker}"}}"#);
    let r = github::delivery(GH_SECRET, "push", "c7-unroutable", body.as_bytes());
    assert_eq!(gw.send(&source, &r).await.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(20);
    while returned(&gw.metrics().await) <= before {
        assert!(
            Instant::now() < deadline,
            "the broker never returned the message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.stop().await;
    let logs = logs_now();
    assert!(!logs.contains(&marker), "a body reached the log");
    // Not even as the byte array lapin's Debug prints (`data: [123, 34, …]`).
    let bytes: Vec<String> = marker.bytes().map(|b| b.to_string()).collect();
    assert!(
        !logs.contains(&bytes.join(", ")),
        "a body reached the log as bytes"
    );
}
