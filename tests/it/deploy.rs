//! The files in deploy/, tried for real: the alert rules with promtool, the dashboard and the
//! rules against the metrics a running gateway exports (and docs/metrics.md against them),
//! the systemd unit with systemd-analyze, nginx as the TLS front door of a real gateway.
//!
//! The tools come from Debian packages (scripts/ensure-deploy-tools.sh, run by
//! scripts/test.sh); a missing tool is a loud failure naming that script, not a skip.

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use providers::github;

use crate::harness::{amqp_url, config, unique, Consumer, Gateway};

const SECRET: &str = "deploy-test-secret";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `name` on the PATH (or in /usr/sbin, where Debian puts nginx), else a loud failure.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed: run scripts/ensure-deploy-tools.sh (Debian packages prometheus, nginx, systemd)")
        })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let promtool = tool("promtool");
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/alerts.yml")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(repo("deploy/prometheus/alerts_test.yml")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Every `hookgate_…` token of a text (metric names in PromQL, templates and descriptions).
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("hookgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The names of the samples (not comments) of a Prometheus text exposition.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// `(family, type)` from the `# TYPE` lines of the Prometheus text format (a counter is named
/// with its `_total`, as users query it).
fn families(exposition: &str) -> BTreeSet<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// The metric names in docs/metrics.md's tables (`| `name` | type | …`).
fn documented() -> BTreeSet<(String, String)> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `hookgate_"))
        .map(|l| {
            let (name, rest) = l.split_once('`').unwrap();
            let kind = rest.split('|').nth(1).unwrap().trim().to_string();
            (format!("hookgate_{name}"), kind)
        })
        .collect()
}

/// Metrics of branches merged separately (issues 13 and 15), already on the dashboard, in
/// the rules and in docs/metrics.md: `(name as queried, type, branch)`. Once a branch is merged
/// its metrics are exported and the test below fails until they are taken off this list, so
/// it ends empty and nothing stays unchecked.
const NOT_YET_MERGED: &[(&str, &str, &str)] = &[];

/// The metric a queried name belongs to: a histogram's `_bucket`, `_sum`, `_count` series
/// belong to the histogram.
fn family_of<'a>(name: &'a str, families: &BTreeSet<(String, String)>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families.iter().any(|(f, k)| f == base && k == "histogram") {
                return base;
            }
        }
    }
    name
}

/// The dashboard and the rules name only metrics a running gateway exports, every exported
/// metric is documented in docs/metrics.md with its type, and the dashboard and the rules
/// together use every one of them.
#[actix_web::test]
async fn dashboard_and_rules_name_exactly_the_exported_metrics() {
    let dashboard = read("deploy/grafana/hookgate.json");
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let rules = read("deploy/prometheus/alerts.yml");
    let referenced: BTreeSet<String> = metric_tokens(&dashboard)
        .into_iter()
        .chain(metric_tokens(&rules))
        .collect();
    assert!(referenced.len() > 15, "{referenced:?}");

    let exchange = unique("it-deploy-metrics");
    let consumer = Consumer::bind(&exchange, "#").await;
    let sources = format!(
        "[[sources]]\nname = \"gh-deploy\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n"
    );
    let gw = Gateway::start(config(&sources, &exchange, &amqp_url(), None, "")).await;
    gw.wait_broker(true).await;
    // One accepted and one refused request, so that their series exist.
    let ok = github::delivery(SECRET, "push", "deploy-metrics-1", br#"{"zen":"z"}"#);
    assert_eq!(gw.send("gh-deploy", &ok).await.status(), 202);
    let forged = github::delivery("not-the-secret", "push", "deploy-metrics-2", b"{}");
    assert_eq!(gw.send("gh-deploy", &forged).await.status(), 401);
    consumer.take(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = gw.metrics().await;
        if text.contains(r#"hookgate_published_total{source="gh-deploy"} 1"#)
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // What Prometheus asks for: OpenMetrics, the same samples.
    let om = gw
        .client
        .get(gw.admin("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE hookgate_requests counter"), "{om}");
    gw.stop().await;
    // Without asking, the Prometheus text format, which promtool reads without a complaint.
    assert!(!text.contains("# EOF"), "{text}");
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(r#"hookgate_refusals_total{source="gh-deploy",reason="signature"} 1"#),
        "{text}"
    );
    assert!(text.contains("hookgate_ready 1"), "{text}");
    assert!(text.contains("hookgate_store_healthy 1"), "{text}");
    // Every group commit reports how long its first record waited for it.
    let commits = crate::harness::metric(&text, "hookgate_log_commit_duration_seconds_count");
    assert!(commits >= 1, "{text}");
    assert_eq!(
        crate::harness::metric(&text, "hookgate_log_commit_wait_seconds_count"),
        commits,
        "{text}"
    );

    let exported = sample_names(&text);
    let families = families(&text);
    let merged: Vec<_> = NOT_YET_MERGED
        .iter()
        .filter(|(name, _, _)| families.iter().any(|(f, _)| f == name))
        .collect();
    assert!(
        merged.is_empty(),
        "exported now: take them off NOT_YET_MERGED: {merged:?}"
    );
    let pending: BTreeSet<(String, String)> = NOT_YET_MERGED
        .iter()
        .map(|(name, kind, _)| (name.to_string(), kind.to_string()))
        .collect();
    let known: BTreeSet<(String, String)> = families.union(&pending).cloned().collect();

    let missing: Vec<_> = referenced
        .iter()
        .filter(|r| !exported.contains(*r))
        .filter(|r| {
            let family = family_of(r, &pending);
            !pending.iter().any(|(p, _)| p == family)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "named by deploy/ but not exported: {missing:?}\n{text}"
    );

    assert_eq!(
        known,
        documented(),
        "docs/metrics.md (left: exported and NOT_YET_MERGED, right: documented)"
    );
    let used: BTreeSet<&str> = referenced.iter().map(|r| family_of(r, &known)).collect();
    let unused: Vec<_> = known
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !used.contains(name.as_str()))
        .collect();
    assert!(
        unused.is_empty(),
        "documented, but neither on the dashboard nor in a rule: {unused:?}"
    );
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let analyze = tool("systemd-analyze");
    let unit = read("deploy/systemd/hookgate.service");
    for directive in [
        "User=hookgate",
        "StateDirectory=hookgate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        // The commit delay reads /proc/stat; the relay lowers its priority (found by a review).
        "SystemCallFilter=setpriority",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(directive), "{directive:?} missing");
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("ProcSubset=")),
        "hides /proc/stat from the commit delay"
    );
    // verify wants the binaries to exist: point it at the one this test was built with.
    const INSTALLED: &str = "/usr/local/bin/hookgate";
    assert!(unit.contains(INSTALLED));
    let unit = unit.replace(INSTALLED, env!("CARGO_BIN_EXE_hookgate"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.service");
    std::fs::write(&path, unit).unwrap();
    let out = run(Command::new(&analyze).arg("verify").arg(&path));
    // verify warns about unknown keys and bad values without failing: none is allowed.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    // systemd's own exposure score (0 safe .. 10 unsafe): "OK" is below 2.
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Overall exposure level"), "{text}");
}

/// nginx and the files it runs on, stopped on drop.
pub struct Nginx {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// deploy/nginx/hookgate.conf on `port` of 127.0.0.1 with a fresh self-signed certificate
    /// for 127.0.0.1, in front of `upstream`.
    fn start(port: u16, upstream: std::net::SocketAddr) -> Nginx {
        Self::start_file(
            "deploy/nginx/hookgate.conf",
            &[
                ("server 127.0.0.1:8080;", format!("server {upstream};")),
                (
                    "listen 443 ssl http2;",
                    format!("listen 127.0.0.1:{port} ssl http2;"),
                ),
                ("listen [::]:443 ssl http2;", String::new()),
            ],
        )
    }

    /// The nginx file `file` of this repository with `replace` applied (each must match), and
    /// a fresh self-signed certificate for 127.0.0.1 in place of /etc/ssl/hookgate/.
    pub fn start_file(file: &str, replace: &[(&str, String)]) -> Nginx {
        let nginx = tool("nginx");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run(Command::new(tool("openssl"))
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=hookgate nginx test"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem")));
        let mut conf = read(file);
        let d_str = d.display().to_string();
        let certs = [
            (
                "/etc/ssl/hookgate/fullchain.pem",
                format!("{d_str}/cert.pem"),
            ),
            ("/etc/ssl/hookgate/privkey.pem", format!("{d_str}/key.pem")),
        ];
        for (from, to) in replace.iter().chain(&certs) {
            assert!(conf.contains(from), "{file}: {from:?}");
            conf = conf.replace(from, to);
        }
        std::fs::write(d.join("hookgate.conf"), conf).unwrap();
        // What /etc/nginx/nginx.conf provides, kept inside the temporary directory.
        let main = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d_str}/nginx.pid;\n\
             error_log {d_str}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {d_str}/access.log;\n  client_body_temp_path {d_str}/body;\n\
             proxy_temp_path {d_str}/proxy;\n  fastcgi_temp_path {d_str}/fastcgi;\n\
             uwsgi_temp_path {d_str}/uwsgi;\n  scgi_temp_path {d_str}/scgi;\n\
             include {d_str}/hookgate.conf;\n}}\n"
        );
        let main_path = d.join("nginx.conf");
        std::fs::write(&main_path, main).unwrap();
        let args = |cmd: &mut Command| {
            cmd.arg("-p")
                .arg(d)
                .arg("-e")
                .arg(d.join("error.log"))
                .arg("-c")
                .arg(&main_path);
        };
        let mut test = Command::new(&nginx);
        args(&mut test);
        run(test.arg("-t"));
        let mut cmd = Command::new(&nginx);
        args(&mut cmd);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Nginx { child, dir }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of the master and its workers (SIGKILL would orphan them).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// deploy/nginx/hookgate.conf in front of a real gateway configured as its comment says: a
/// signed request over HTTPS arrives on RabbitMQ; the client address the gateway records is
/// the one nginx saw (127.0.0.2 here), not nginx's and not what the client claims in its own
/// X-Forwarded-For; the body limits of nginx and the gateway are the same: a GitHub source's
/// own 25 MiB (nginx's was 1 MiB, and refused GitHub's larger deliveries before the gateway
/// saw them; found by a review).
#[actix_web::test]
async fn nginx_front_door_forwards_tls_requests_and_the_client_address() {
    const LIMIT: usize = 26_214_400;
    let exchange = unique("it-deploy-nginx");
    let consumer = Consumer::bind(&exchange, "#").await;
    let sources =
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n");
    let server = "trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n\
                  forwarded_header = \"x-forwarded-for\"\nmax_body_bytes = 1048576\n";
    let gw = Gateway::start(config(&sources, &exchange, &amqp_url(), None, server)).await;
    let port = free_port();
    let nginx = Nginx::start(port, gw.running.public_addr);

    let cert = std::fs::read(nginx.dir.path().join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        // Another loopback address than nginx's own: the forwarded address is visible.
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/hooks/gh");
    let post = |r: providers::sign::SampleRequest| {
        let mut req = client
            .post(&url)
            .body(r.body.clone())
            // The client's own claim: never believed.
            .header("X-Forwarded-For", "203.0.113.9");
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // nginx needs a moment to bind.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match post(github::delivery(
            SECRET,
            "push",
            "nginx-1",
            br#"{"zen":"z"}"#,
        ))
        .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "nginx: {e:?}\n{}",
                    nginx.error_log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(first.status(), 202, "{}", nginx.error_log());
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(msgs[0].body["id"], "nginx-1");
    assert_eq!(msgs[0].routing_key, "gh.github.push");

    let forged = github::delivery("not-the-secret", "push", "nginx-2", b"{}");
    assert_eq!(post(forged).await.unwrap().status(), 401);
    let v = gw.admin_json("/rejections?source=gh").await;
    let rows = v["rejections"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["reason"], "signature");
    assert_eq!(rows[0]["client_ip"], "127.0.0.2", "{v}");

    // A body of exactly the limit passes both; one byte more is refused by nginx, before
    // the gateway.
    let sized = |n: usize| {
        let pad = "x".repeat(n - r#"{"pad":""}"#.len());
        format!(r#"{{"pad":"{pad}"}}"#).into_bytes()
    };
    let at_limit = github::delivery(SECRET, "push", "nginx-3", &sized(LIMIT));
    assert_eq!(post(at_limit).await.unwrap().status(), 202);
    let over = github::delivery(SECRET, "push", "nginx-4", &sized(LIMIT + 1));
    assert_eq!(post(over).await.unwrap().status(), 413);
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(msgs[0].body["id"], "nginx-3");
    consumer.assert_empty(Duration::from_millis(300)).await;
    drop(nginx);
    gw.stop().await;
}
