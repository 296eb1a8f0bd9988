//! Issue 15 (operations), against the real `hookgate` binary: JSON request log lines, SIGHUP
//! live reload, `check --diff`, `outbox` against a running gateway, `--version`, and config
//! type errors that name their key.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use providers::github;
use serde_json::{json, Value};

use crate::harness::{amqp_url, unique};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `hookgate serve` on a config file in a temporary directory; stdout and stderr go to files
/// there, read whole by [`Served::log`].
struct Served {
    dir: tempfile::TempDir,
    config: PathBuf,
    public: u16,
    admin: u16,
    child: Child,
    http: reqwest::Client,
}

impl Served {
    /// Writes `config_text(public, admin)` and starts the binary with `args`; returns once the
    /// admin listener answers.
    async fn start(config_text: impl Fn(u16, u16) -> String, args: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (public, admin) = (free_port(), free_port());
        let config = dir.path().join("hookgate.toml");
        std::fs::write(&config, config_text(public, admin)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .arg("serve")
            .arg("-c")
            .arg(&config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("HOOKGATE_LOG_FORMAT")
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("hookgate starts");
        let served = Served {
            dir,
            config,
            public,
            admin,
            child,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = served
                .http
                .get(served.admin_url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return served;
            }
            assert!(Instant::now() < deadline, "not up: {}", served.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    async fn send(&self, source: &str, r: &providers::sign::SampleRequest) -> u16 {
        let mut req = self
            .http
            .post(r.url(&format!("http://127.0.0.1:{}/hooks/{source}", self.public)))
            .body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn metric(&self, line_start: &str) -> u64 {
        let text = self
            .http
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        crate::harness::metric(&text, line_start)
    }

    /// Everything the process wrote so far, stdout then stderr.
    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        read("stdout") + &read("stderr")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) },
            0
        );
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for `metric` to reach `n` (a reload runs when the signal is handled).
    async fn wait_metric(&self, metric: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric(metric).await < n {
            assert!(Instant::now() < deadline, "{metric} < {n}: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hookgate(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .arg("-c")
        .arg(config)
        .env_remove("HOOKGATE_ADMIN_TOKEN")
        .output()
        .unwrap()
}

fn server_toml(public: u16, admin: u16, store: &Path, amqp: &str, exchange: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
         request_timeout_secs = 3\n[store]\npath = \"{}\"\n[amqp]\nurl = \"{amqp}\"\n\
         exchange = \"{exchange}\"\nreconnect_max_secs = 1\n",
        store.display()
    )
}

fn github_source(name: &str, secret: &str, extra: &str) -> String {
    format!("[[sources]]\nname = \"{name}\"\nprovider = \"github\"\nsecrets = [\"{secret}\"]\n{extra}\n")
}

/// The request lines (those with an `outcome` field) of a JSON log, every line checked to be
/// one JSON object.
fn request_lines(log: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{log}"));
        assert!(v.is_object(), "{line}");
        if v["outcome"].is_string() {
            out.push(v.clone());
        }
    }
    out
}

#[actix_web::test]
async fn issue_15_json_logs_one_object_per_line_with_request_fields_and_no_secrets() {
    let secret = format!("ops-secret-{}", unique("s"));
    let body_marker = unique("BODY-MARKER");
    let store = tempfile::tempdir().unwrap();
    let exchange = unique("it-ops-json");
    let gw = Served::start(
        |p, a| {
            server_toml(p, a, &store.path().join("s"), &amqp_url(), &exchange)
                + &github_source("gh", &secret, "rate_limit = { per_second = 1, burst = 2 }")
                + &format!(
                    "[[sources]]\nname = \"hm\"\nprovider = \"hmac\"\nsecrets = [\"{secret}\"]\n\
                     signature_header = \"X-Sig\"\nid_header = \"X-Id\"\n"
                )
        },
        &["--log-format", "json"],
    )
    .await;
    let body = format!(r#"{{"zen":"{body_marker}","repository":{{"full_name":"o/r"}}}}"#);
    let mut signatures = Vec::new();
    for id in ["ops-json-1", "ops-json-2"] {
        let r = github::delivery(&secret, "push", id, body.as_bytes());
        signatures.push(
            r.headers
                .iter()
                .find(|(k, _)| k.contains("ignature"))
                .unwrap()
                .1
                .clone(),
        );
        assert_eq!(gw.send("gh", &r).await, 202);
    }
    // Forged: signed with another secret; it carries a delivery id.
    let forged = github::delivery("not-the-secret", "push", "ops-json-forged", body.as_bytes());
    signatures.push(
        forged
            .headers
            .iter()
            .find(|(k, _)| k.contains("ignature"))
            .unwrap()
            .1
            .clone(),
    );
    assert_eq!(gw.send("gh", &forged).await, 401);
    assert_eq!(gw.send("nope", &forged).await, 404);
    // A wrong method or path never reaches a source, and is a line too.
    let public = |path: &str| format!("http://127.0.0.1:{}{path}", gw.public);
    let put = gw.http.put(public("/hooks/gh")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "POST");
    let elsewhere = gw.http.post(public("/elsewhere")).send().await.unwrap();
    assert_eq!(elsewhere.status(), 404);
    // An `hmac` source's refusal names the id its configured header carries.
    let unsigned = gw
        .http
        .post(public("/hooks/hm"))
        .header("X-Id", "ops-hm-claimed")
        .header("X-Sig", "00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Verified, over the source's burst of 2 (a slow machine may earn a token back meanwhile:
    // a few more tries).
    let mut limited_id = None;
    for i in 3..10 {
        let id = format!("ops-json-{i}");
        let r = github::delivery(&secret, "push", &id, body.as_bytes());
        match gw.send("gh", &r).await {
            429 => {
                limited_id = Some(id);
                break;
            }
            status => assert_eq!(status, 202),
        }
    }
    let limited_id = limited_id.expect("a 429 within 7 requests over a burst of 2");
    let metrics = gw
        .http
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "hookgate_build_info{{version=\"{}\",revision=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");

    let lines = request_lines(&log);
    let find = |outcome: &str| {
        lines
            .iter()
            .find(|l| l["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} line: {log}"))
            .clone()
    };
    for l in &lines {
        for field in [
            "source",
            "provider",
            "id",
            "type",
            "status",
            "outcome",
            "latency_ms",
            "client_ip",
        ] {
            assert!(!l[field].is_null(), "{field} missing: {l}");
        }
        assert_eq!(l["client_ip"], "127.0.0.1", "{l}");
        assert!(l["latency_ms"].as_f64().unwrap() >= 0.0, "{l}");
    }
    let accepted = find("accepted");
    assert_eq!(accepted["source"], "gh");
    assert_eq!(accepted["provider"], "github");
    assert_eq!(accepted["id"], "ops-json-1");
    assert_eq!(accepted["type"], "github.push");
    assert_eq!(accepted["status"], 202);
    let hm = lines
        .iter()
        .find(|l| l["source"] == "hm")
        .unwrap_or_else(|| panic!("no hm line: {log}"));
    assert_eq!(
        (&hm["outcome"], &hm["id"]),
        (&json!("unauthorized"), &json!("ops-hm-claimed")),
        "{hm}"
    );
    let refused = lines
        .iter()
        .find(|l| l["outcome"] == "unauthorized" && l["source"] == "gh")
        .unwrap_or_else(|| panic!("no gh 401 line: {log}"))
        .clone();
    assert_eq!(refused["status"], 401);
    assert_eq!(
        refused["id"], "ops-json-forged",
        "the id the request carries"
    );
    assert_eq!(refused["provider"], "github");
    let unknown = find("unknown_source");
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["source"], "nope");
    let put = find("method_not_allowed");
    assert_eq!(
        (put["status"].as_u64(), &put["source"]),
        (Some(405), &json!("gh"))
    );
    assert_eq!(put["provider"], "github");
    let elsewhere = find("not_found");
    assert_eq!(
        (elsewhere["status"].as_u64(), &elsewhere["source"]),
        (Some(404), &json!("/elsewhere"))
    );
    let limited = find("rate_limited");
    assert_eq!(limited["status"], 429);
    assert_eq!(limited["id"], limited_id.as_str());
    assert!(lines.iter().filter(|l| l["outcome"] == "accepted").count() >= 2);

    // The start-up line names listeners, sources and store.
    let start = log
        .lines()
        .find(|l| l.contains("hookgate listening"))
        .expect("a start-up line");
    let start: Value = serde_json::from_str(start).unwrap();
    assert_eq!(start["sources"], "gh,hm", "{start}");
    assert_eq!(
        start["public"],
        format!("127.0.0.1:{}", gw_port(&start, "public"))
    );
    assert!(start["store"].as_str().unwrap().ends_with("/s"), "{start}");

    assert!(!log.contains(&secret), "secret in the log: {log}");
    assert!(!log.contains(&body_marker), "body in the log: {log}");
    for s in &signatures {
        let hex = s.trim_start_matches("sha256=");
        assert!(!log.contains(hex), "signature in the log: {log}");
    }
}

fn gw_port(start: &Value, field: &str) -> u16 {
    start[field]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {start}"))
}

#[actix_web::test]
async fn issue_15_sighup_swaps_secrets_refuses_a_broken_config_and_reports_restart_keys() {
    let store = tempfile::tempdir().unwrap();
    // A broker that is not there: accepted events stay pending, so `outbox` has one to show.
    let broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let exchange = unique("it-ops-reload");
    let (old, new) = ("reload-old-secret", "reload-new-secret");
    // JSON lines from `[server] log_format` this time (no flag).
    let text = |p: u16, a: u16, secret: &str, extra: &str| {
        server_toml(p, a, &store.path().join("s"), &broker, &exchange).replace(
            "request_timeout_secs = 3",
            "request_timeout_secs = 3\nlog_format = \"json\"",
        ) + &github_source("gh", secret, "")
            + extra
    };
    let mut gw = Served::start(|p, a| text(p, a, old, ""), &[]).await;
    let (public, admin) = (gw.public, gw.admin);
    let pid = gw.child.id();
    assert_eq!(
        gw.send("gh", &github::delivery(old, "push", "r-1", b"{}"))
            .await,
        202
    );
    let ok = r#"hookgate_config_reloads_total{result="ok"}"#;
    let error = r#"hookgate_config_reloads_total{result="error"}"#;
    assert_eq!(gw.metric(ok).await, 0);

    // `outbox` against the running gateway shows the oldest pending entry.
    let out = hookgate(&["outbox"], &gw.config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(from the running gateway)"), "{stdout}");
    assert!(
        stdout.contains("id r-1") && stdout.contains("type github.push"),
        "{stdout}"
    );

    // Rotate the secret and add a source: `check --diff` shows it, SIGHUP applies it.
    std::fs::write(
        &gw.config,
        text(public, admin, new, &github_source("gh2", new, "")),
    )
    .unwrap();
    let out = hookgate(&["check", "--diff"], &gw.config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("~ source gh"), "{stdout}");
    assert!(stdout.contains("+ source gh2"), "{stdout}");
    assert!(!stdout.contains("(needs a restart)"), "{stdout}");
    assert!(!stdout.contains(new), "{stdout}");
    // A request in flight across the reload: its head and half its body are in before the
    // SIGHUP, the rest after; it finishes with the config it started with (the old secret).
    let inflight = github::delivery(old, "push", "r-inflight", br#"{"half":"one","and":"two"}"#);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", public)).unwrap();
    let mut head = format!(
        "POST /hooks/gh HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
        inflight.body.len()
    );
    for (k, v) in &inflight.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (first, rest) = inflight.body.split_at(inflight.body.len() / 2);
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(first).unwrap();
    // Nothing says when the gateway has read the head (and taken its config): time for it
    // past a loaded machine's stall (half a second), and the rest of the body still well
    // within request_timeout_secs (3 s from then).
    tokio::time::sleep(Duration::from_secs(1)).await;
    gw.signal(libc::SIGHUP);
    gw.wait_metric(ok, 1).await;
    conn.write_all(rest).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert_eq!(
        gw.send("gh", &github::delivery(old, "push", "r-2", b"{}"))
            .await,
        401
    );
    assert_eq!(
        gw.send("gh", &github::delivery(new, "push", "r-3", b"{}"))
            .await,
        202
    );
    assert_eq!(
        gw.send("gh2", &github::delivery(new, "push", "r-4", b"{}"))
            .await,
        202
    );
    assert!(gw.alive());
    assert_eq!(gw.child.id(), pid);
    let out = hookgate(&["check", "--diff"], &gw.config);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a reload would change nothing"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A config that fails `check`: refused, counted, the running one keeps serving.
    std::fs::write(
        &gw.config,
        text(public, admin, "third-secret", "").replace(
            "request_timeout_secs = 3",
            "request_timeout_secs = 3\nmax_body_bytes = \"1MB\"",
        ),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_metric(error, 1).await;
    assert_eq!(gw.metric(ok).await, 1);
    assert_eq!(
        gw.send("gh", &github::delivery(new, "push", "r-5", b"{}"))
            .await,
        202
    );
    assert_eq!(
        gw.send(
            "gh",
            &github::delivery("third-secret", "push", "r-6", b"{}")
        )
        .await,
        401
    );
    // A file cut off before its `[[sources]]` (valid TOML, no source): refused too, rather
    // than answering 404 to every provider.
    let full = text(public, admin, new, "");
    let cut = &full[..full.find("[[sources]]").unwrap()];
    std::fs::write(&gw.config, cut).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_metric(error, 2).await;
    assert_eq!(
        gw.send("gh", &github::delivery(new, "push", "r-5b", b"{}"))
            .await,
        202
    );

    // A new listener address: reported as needing a restart, the rest applied.
    let moved = free_port();
    std::fs::write(
        &gw.config,
        text(moved, admin, new, &github_source("gh2", "gh2-next", "")),
    )
    .unwrap();
    let out = hookgate(&["check", "--diff"], &gw.config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "! server.listen: 127.0.0.1:{public} -> 127.0.0.1:{moved} (needs a restart)"
        )),
        "{stdout}"
    );
    gw.signal(libc::SIGHUP);
    gw.wait_metric(ok, 2).await;
    assert_eq!(
        gw.send("gh2", &github::delivery("gh2-next", "push", "r-7", b"{}"))
            .await,
        202
    );
    assert!(
        TcpListener::bind(("127.0.0.1", moved)).is_ok(),
        "the new address is not bound by a reload"
    );
    assert!(gw.alive());

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let with = |message: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["message"] == message).collect()
    };
    let reloaded = with("config reloaded");
    assert_eq!(reloaded.len(), 2, "{log}");
    assert_eq!(reloaded[0]["added"], "gh2");
    assert_eq!(reloaded[0]["changed"], "gh");
    let refused = with("config reload refused; the running config stays");
    assert_eq!(refused.len(), 2, "{log}");
    assert!(
        refused[1]["reason"]
            .as_str()
            .unwrap()
            .contains("no sources"),
        "{log}"
    );
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("server.max_body_bytes: invalid type: string, expected usize"),
        "{log}"
    );
    let restart = with("config change needs a restart; not applied");
    assert_eq!(restart.len(), 1, "{log}");
    assert!(
        restart[0]["change"]
            .as_str()
            .unwrap()
            .starts_with("server.listen:"),
        "{log}"
    );
    for secret in [old, new, "third-secret", "gh2-next"] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

#[test]
fn issue_15_version_names_the_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    let rest = v
        .trim()
        .strip_prefix(&format!("hookgate {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v}"));
    let revision = rest.strip_suffix(')').unwrap_or_else(|| panic!("{v}"));
    assert!(!revision.is_empty(), "{v}");
    // In a git checkout the revision is HEAD's (or a prefix of it: the binary may be older
    // than an uncommitted change, never than a commit).
    if let Ok(head) = Command::new("git").args(["rev-parse", "HEAD"]).output() {
        if head.status.success() {
            let head = String::from_utf8(head.stdout).unwrap();
            assert!(head.starts_with(revision), "{revision} vs {head}");
        }
    }
}

#[test]
fn issue_15_a_config_type_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookgate.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\npath = \"{}\"\n{}max_body_bytes = \"1MB\"\n",
            dir.path().join("s").display(),
            github_source("gh", "typed-secret", "")
        ),
    )
    .unwrap();
    let out = hookgate(&["check"], &file);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sources[0] (gh).max_body_bytes: invalid type: string, expected usize"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("1MB") && !stderr.contains("typed-secret"),
        "{stderr}"
    );
}

/// A shared dedup store unreachable from the start is said at start, with why (it was only at
/// DEBUG: the state starts "down", so nothing changed; found by a review).
#[actix_web::test]
async fn a_shared_dedup_store_unreachable_from_the_start_is_logged() {
    let store = tempfile::tempdir().unwrap();
    let broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let redis = free_port();
    let gw = Served::start(
        |p, a| {
            server_toml(
                p,
                a,
                &store.path().join("s"),
                &broker,
                &unique("it-ops-dedup"),
            ) + &format!(
                "[dedup]\nshared = \"redis://127.0.0.1:{redis}/\"\non_unavailable = \"reject\"\n"
            ) + &github_source("gh", "dedup-log-secret", "")
        },
        &["--log-format", "json"],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("shared dedup store unavailable") {
        assert!(Instant::now() < deadline, "never logged: {}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A verified event refused with 503: its line names the event (it said `type: "-"`).
    let r = github::delivery("dedup-log-secret", "push", "ops-dedup-1", b"{}");
    assert_eq!(gw.send("gh", &r).await, 503);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let refused = request_lines(&log)
        .into_iter()
        .find(|l| l["outcome"] == "unavailable")
        .unwrap_or_else(|| panic!("no 503 line: {log}"));
    assert_eq!(
        (&refused["id"], &refused["type"], &refused["status"]),
        (&json!("ops-dedup-1"), &json!("github.push"), &json!(503)),
        "{refused}"
    );
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "shared dedup store unavailable")
        .unwrap();
    assert!(
        line["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{line}"
    );
    assert_eq!(line["level"], "WARN", "{line}");
}
