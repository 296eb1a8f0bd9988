//! Replicas sharing dedup through Redis (issue 13, docs/replicas.md): a private
//! `redis-server` per test on a free port (never the shared one), the real RabbitMQ, three
//! gateways with stores of their own. The long run with nginx and kills is
//! `scripts/cluster.sh`.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use providers::github;

use crate::harness::{amqp_url, config, metric, unique, Consumer, Gateway};

const SECRET: &str = "It's a Secret to Everybody";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` (Debian package; `scripts/ensure-redis.sh`). Its AOF is fsynced on
/// every write, so a kill -9 and restart loses nothing (the case the contract promises no
/// duplicate for). Killed on drop.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

/// A throwaway CA with a server and a client certificate (openssl).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn generate(dir: &Path, name: &str) -> TlsFiles {
        let p = |f: &str| dir.join(format!("{name}-{f}"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let (ca, ca_key) = (p("ca.crt"), p("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=hookgate test CA",
        ]);
        let leaf = |role: &str, ext: &str| -> (PathBuf, PathBuf) {
            let (crt, key, csr, extf) = (
                p(&format!("{role}.crt")),
                p(&format!("{role}.key")),
                p(&format!("{role}.csr")),
                p(&format!("{role}.ext")),
            );
            std::fs::write(&extf, ext).unwrap();
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &s(&key),
                "-out",
                &s(&csr),
                "-subj",
                &format!("/CN={role}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &s(&csr),
                "-CA",
                &s(&ca),
                "-CAkey",
                &s(&ca_key),
                "-CAcreateserial",
                "-out",
                &s(&crt),
                "-days",
                "2",
                "-extfile",
                &s(&extf),
            ]);
            (crt, key)
        };
        let (server_cert, server_key) = leaf(
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        let (client_cert, client_key) = leaf("client", "extendedKeyUsage=clientAuth\n");
        TlsFiles {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

impl Redis {
    pub fn start() -> Redis {
        Self::launch(None)
    }

    /// Redis with only a TLS port, requiring a client certificate signed by the test CA.
    pub fn start_tls() -> Redis {
        Self::launch(Some(()))
    }

    fn launch(tls: Option<()>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.map(|()| TlsFiles::generate(dir.path(), "t"));
        let mut r = Redis {
            port: free_port(),
            dir,
            tls,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    pub fn tls(&self) -> &TlsFiles {
        self.tls.as_ref().expect("a TLS redis")
    }

    /// Starts (again) on the same port and data directory; returns once it accepts connections.
    pub fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            None => {
                cmd.arg("--port").arg(self.port.to_string());
            }
            Some(t) => {
                cmd.args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&t.server_cert)
                    .arg("--tls-key-file")
                    .arg(&t.server_key)
                    .arg("--tls-ca-cert-file")
                    .arg(&t.ca)
                    .args(["--tls-auth-clients", "yes"]);
            }
        }
        self.child = Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/ensure-redis.sh)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A plain connection for the test's own reads and writes.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One source per test: metrics are process-wide and the tests run side by side.
fn sources(name: &str) -> String {
    format!("[[sources]]\nname = \"{name}\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n")
}

fn push(id: &str) -> providers::sign::SampleRequest {
    github::delivery(SECRET, "push", id, format!(r#"{{"id":"{id}"}}"#).as_bytes())
}

/// `[dedup]` lines in the `[server]` slot of the harness config (a new table ends `[server]`).
/// A generous budget: a call that misses it falls back to local dedup (counted, and two
/// replicas may then both accept an id), and these redis-servers sync every write, on a
/// machine that also runs the replicas and the broker.
fn dedup(url: &str, more: &str) -> String {
    format!("[dedup]\nshared = \"{url}\"\ntimeout_ms = 5000\n{more}\n")
}

async fn replicas(n: usize, source: &str, exchange: &str, dedup_toml: &str) -> Vec<Gateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        let gw = Gateway::start(config(
            &sources(source),
            exchange,
            &amqp_url(),
            None,
            dedup_toml,
        ))
        .await;
        out.push(gw);
    }
    out
}

/// Waits until `/readyz` reports `dedup.shared == want`; returns the HTTP status then.
async fn wait_shared(gw: &Gateway, want: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.client.get(gw.admin("/readyz")).send().await.unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        if v["dedup"]["shared"] == want {
            return status;
        }
        assert!(Instant::now() < deadline, "dedup.shared never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts until a 2xx, as a provider retries (a 503 `claimed` included); returns the 503s seen.
async fn deliver(gw: &Gateway, source: &str, id: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let r = gw.send(source, &push(id)).await;
        if r.status().is_success() {
            assert_eq!(r.status(), 202);
            return refused;
        }
        assert_eq!(r.status(), 503, "{id}");
        assert!(r.headers().contains_key("retry-after"));
        refused += 1;
        assert!(Instant::now() < deadline, "{id} never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids_of(msgs: &[crate::harness::Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect()
}

#[actix_web::test]
async fn the_same_id_on_three_replicas_at_once_and_in_turn_is_published_once() {
    let redis = Redis::start();
    let exchange = unique("it-replicas");
    let consumer = Consumer::bind(&exchange, "#").await;
    let src = unique("rp");
    let gws = replicas(3, &src, &exchange, &dedup(&redis.url(), "")).await;
    for gw in &gws {
        assert_eq!(wait_shared(gw, "ok").await, 200);
    }

    // At once: every id to all three replicas concurrently, each retrying its 503s.
    let ids: Vec<String> = (0..15).map(|i| format!("together-{i}")).collect();
    let mut conflicts = 0;
    for id in &ids {
        let (a, b, c) = tokio::join!(
            deliver(&gws[0], &src, id),
            deliver(&gws[1], &src, id),
            deliver(&gws[2], &src, id)
        );
        conflicts += a + b + c;
    }
    // In turn: one replica after the other, then each again.
    for i in 0..5 {
        let id = format!("in-turn-{i}");
        for round in 0..2 {
            for gw in &gws {
                assert_eq!(deliver(gw, &src, &id).await, 0, "{id} round {round}");
            }
        }
    }
    let msgs = consumer.take(20, Duration::from_secs(15)).await;
    consumer.assert_empty(Duration::from_millis(800)).await;
    let got: HashSet<String> = ids_of(&msgs).into_iter().collect();
    assert_eq!(got.len(), 20, "each id published once: {:?}", ids_of(&msgs));

    // Metrics are process-wide: the three replicas' counts add up under the test's source.
    let m = gws[0].metrics().await;
    let count = |series: &str| metric(&m, &series.replace("SRC", &src));
    assert_eq!(
        count("hookgate_requests_total{source=\"SRC\",outcome=\"accepted\"}"),
        20
    );
    assert_eq!(
        count("hookgate_requests_total{source=\"SRC\",outcome=\"duplicate\"}"),
        15 * 2 + 5 * 5
    );
    assert_eq!(
        count("hookgate_requests_total{source=\"SRC\",outcome=\"claimed\"}") as usize,
        conflicts
    );
    assert_eq!(
        count("hookgate_dedup_shared_claims_total{source=\"SRC\",result=\"claimed\"}"),
        20
    );
    assert_eq!(
        count("hookgate_dedup_shared_errors_total{source=\"SRC\",step=\"claim\"}"),
        0
    );

    // What Redis holds: the id, accepted, expiring with the dedup window.
    let mut conn = redis.conn().await;
    let v: String = redis::cmd("GET")
        .arg(format!("hookgate:{src}:in-turn-0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "accepted");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("hookgate:{src}:in-turn-0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 604_000, "{ttl}");
    for gw in gws {
        gw.stop().await;
    }
}

/// What a replica killed between its claim and its write leaves behind: a `pending` claim. It
/// is answered 503 + Retry-After until it expires after `claim_secs`, then accepted (never
/// lost). An `accepted` key is a duplicate without a local write.
#[actix_web::test]
async fn a_dead_replicas_claim_is_503_until_it_expires_then_accepted() {
    let redis = Redis::start();
    let exchange = unique("it-replicas-claim");
    let consumer = Consumer::bind(&exchange, "#").await;
    let src = unique("rp");
    let gws = replicas(
        1,
        &src,
        &exchange,
        &dedup(&redis.url(), "key_prefix = \"hg:test\""),
    )
    .await;
    let gw = &gws[0];
    wait_shared(gw, "ok").await;
    let mut conn = redis.conn().await;
    // Timed from before the claim is written (this redis-server syncs every write: a loaded
    // machine takes a while over the two), and long enough to be still there for the first
    // two tries.
    let started = Instant::now();
    let _: () = redis::cmd("SET")
        .arg(format!("hg:test:{src}:orphan"))
        .arg("pending:from-a-dead-replica")
        .arg("PX")
        .arg(3000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("hg:test:{src}:elsewhere"))
        .arg("accepted")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();

    let r = gw.send(&src, &push("orphan")).await;
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    assert!(deliver(gw, &src, "orphan").await > 0);
    assert!(started.elapsed() >= Duration::from_millis(2900));

    // Accepted by another replica: the same ack, nothing written or published here.
    let r = gw.send(&src, &push("elsewhere")).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), r#"{"id":"elsewhere"}"#);

    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(ids_of(&msgs), ["orphan"]);
    consumer.assert_empty(Duration::from_millis(500)).await;

    // `hookgate forget` deletes the shared key too: the redelivery is accepted again.
    let r = gw
        .client
        .post(gw.admin("/forget"))
        .json(&serde_json::json!({ "source": src, "id": "elsewhere" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["forgotten"],
        true
    );
    assert_eq!(deliver(gw, &src, "elsewhere").await, 0);
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(ids_of(&msgs), ["elsewhere"]);
    let m = gw.metrics().await;
    let count = |result: &str| {
        metric(
            &m,
            &format!("hookgate_dedup_shared_claims_total{{source=\"{src}\",result=\"{result}\"}}"),
        )
    };
    assert!(count("conflict") >= 1);
    assert_eq!(count("duplicate"), 1);
    assert_eq!(count("claimed"), 2);
    // The 503s of the claim race are refusals of their own reason, not an outage's.
    let conflicts = count("conflict");
    assert_eq!(
        metric(
            &m,
            &format!("hookgate_refusals_total{{source=\"{src}\",reason=\"claimed\"}}")
        ),
        conflicts
    );
    assert_eq!(
        metric(
            &m,
            &format!("hookgate_refusals_total{{source=\"{src}\",reason=\"unavailable\"}}")
        ),
        0
    );
    let kept = gw.admin_json(&format!("/rejections?source={src}")).await;
    let reasons: Vec<_> = kept["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r == "claimed"),
        "{kept}"
    );
    assert!(
        m.contains("hookgate_dedup_shared_duration_seconds_bucket{"),
        "latency histogram"
    );
    let v: String = redis::cmd("GET")
        .arg(format!("hg:test:{src}:orphan"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "accepted");
}

/// Redis killed mid-run and restarted: under `accept` the replicas keep answering 2xx with
/// their own dedup (counted, readyz 200 "unavailable"), under `reject` they answer 503 (readyz
/// 503); once Redis is back the ids accepted meanwhile are written to it, so a retry on another
/// replica is a duplicate. Every acknowledged id arrives once.
#[actix_web::test]
async fn redis_stopped_and_restarted_mid_run() {
    let mut redis = Redis::start();
    let exchange = unique("it-replicas-outage");
    let consumer = Consumer::bind(&exchange, "#").await;
    let src = unique("rp");
    let gws = replicas(3, &src, &exchange, &dedup(&redis.url(), "")).await;
    let strict = replicas(
        1,
        &src,
        &exchange,
        &dedup(&redis.url(), "on_unavailable = \"reject\""),
    )
    .await;
    let strict = &strict[0];
    for gw in gws.iter().chain([strict]) {
        wait_shared(gw, "ok").await;
    }
    for i in 0..6 {
        deliver(&gws[i % 3], &src, &format!("before-{i}")).await;
    }

    redis.kill();
    // Requests keep flowing while the outage is detected (the first one may pay one failed call).
    for i in 0..9 {
        deliver(&gws[i % 3], &src, &format!("during-{i}")).await;
    }
    for gw in &gws {
        assert_eq!(wait_shared(gw, "unavailable").await, 200);
    }
    assert_eq!(wait_shared(strict, "unavailable").await, 503);
    // The 503's reason is in `problems`, like every other (the list was empty).
    let problems = strict.readyz().await["problems"].to_string();
    assert!(problems.contains("on_unavailable"), "{problems}");
    let r = strict.send(&src, &push("strict-refused")).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let m = gws[0].metrics().await;
    let fallbacks = format!("hookgate_dedup_shared_fallbacks_total{{source=\"{src}\"}}");
    assert_eq!(metric(&m, &fallbacks), 9);

    redis.restart();
    for gw in gws.iter().chain([strict]) {
        assert_eq!(wait_shared(gw, "ok").await, 200);
    }
    // The fallbacks are written to Redis by the background task shortly after.
    let mut conn = redis.conn().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..9 {
        loop {
            let v: Option<String> = redis::cmd("GET")
                .arg(format!("hookgate:{src}:during-{i}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            if v.as_deref() == Some("accepted") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "during-{i} not written back: {v:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every id again, on a replica that did not accept it (and on the strict one): duplicates.
    for i in 0..6 {
        deliver(&gws[(i + 1) % 3], &src, &format!("before-{i}")).await;
        deliver(strict, &src, &format!("before-{i}")).await;
    }
    for i in 0..9 {
        deliver(&gws[(i + 2) % 3], &src, &format!("during-{i}")).await;
        deliver(strict, &src, &format!("during-{i}")).await;
    }
    deliver(strict, &src, "strict-after").await;

    let msgs = consumer.take(16, Duration::from_secs(15)).await;
    consumer.assert_empty(Duration::from_millis(800)).await;
    let got: HashSet<String> = ids_of(&msgs).into_iter().collect();
    assert_eq!(got.len(), 16, "{:?}", ids_of(&msgs));
    assert!(got.contains("strict-after") && !got.contains("strict-refused"));
}

/// `rediss://` with the test CA and a client certificate (the server requires one); a replica
/// that does not trust the server's CA reports the store unavailable.
#[actix_web::test]
async fn claims_work_over_rediss_with_a_client_certificate() {
    let redis = Redis::start_tls();
    let t = redis.tls();
    let exchange = unique("it-replicas-tls");
    let consumer = Consumer::bind(&exchange, "#").await;
    let tls = format!(
        "[dedup.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        t.ca.display(),
        t.client_cert.display(),
        t.client_key.display()
    );
    let src = unique("rp");
    let gws = replicas(2, &src, &exchange, &(dedup(&redis.url(), "") + &tls)).await;
    for gw in &gws {
        assert_eq!(wait_shared(gw, "ok").await, 200);
    }
    for gw in &gws {
        deliver(gw, &src, "over-tls").await;
    }
    let msgs = consumer.take(1, Duration::from_secs(10)).await;
    assert_eq!(ids_of(&msgs), ["over-tls"]);
    consumer.assert_empty(Duration::from_millis(500)).await;
    let m = gws[1].metrics().await;
    let duplicates =
        format!("hookgate_dedup_shared_claims_total{{source=\"{src}\",result=\"duplicate\"}}");
    assert_eq!(metric(&m, &duplicates), 1);

    // Another CA: the handshake fails, the shared store is unavailable.
    let other = TlsFiles::generate(redis.dir.path(), "other");
    let wrong = format!(
        "[dedup.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        other.ca.display(),
        t.client_cert.display(),
        t.client_key.display()
    );
    let untrusting = replicas(1, &src, &exchange, &(dedup(&redis.url(), "") + &wrong)).await;
    let gw = &untrusting[0];
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(wait_shared(gw, "unavailable").await, 200);
    for gw in gws {
        gw.stop().await;
    }
}

/// The `hookgate` binary of this build serving `config`.
struct Process {
    config: PathBuf,
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
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three `hookgate` processes; clients post each id to one replica and, on an error or a 503,
/// retry it on the next one (a load balancer's and a provider's retries). One replica is
/// killed -9 under load and restarted. Every acknowledged id reaches the broker.
#[actix_web::test]
async fn a_replica_killed_mid_load_and_restarted_loses_nothing() {
    let redis = Redis::start();
    let exchange = unique("it-replicas-kill");
    let consumer = Consumer::bind(&exchange, "#").await;
    let src = unique("rp");
    let dir = tempfile::tempdir().unwrap();
    let mut ports = Vec::new();
    let mut procs = Vec::new();
    for i in 0..3 {
        let (public, admin) = (free_port(), free_port());
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{public}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             request_timeout_secs = 2\n[store]\npath = \"{}\"\n[amqp]\nurl = \"{}\"\nexchange = \"{exchange}\"\n\
             reconnect_max_secs = 1\n{}{}",
            dir.path().join(format!("store{i}")).display(),
            amqp_url(),
            // Short claims: what a kill leaves pending blocks its ids for claim_secs.
            dedup(&redis.url(), "claim_secs = 3"),
            sources(&src)
        );
        let config = dir.path().join(format!("hookgate{i}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut p = Process {
            config,
            child: None,
        };
        p.start();
        procs.push(p);
        ports.push(public);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Wait for all three to listen.
    for port in &ports {
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "replica on {port} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let (clients, per_client) = (6, 40);
    let total = clients * per_client;
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let replies = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, acked, replies, ports, src) = (
            http.clone(),
            acked.clone(),
            replies.clone(),
            ports.clone(),
            src.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            for i in 0..per_client {
                let id = format!("c{c}-{i:03}");
                let req = push(&id);
                let mut target = (c + i) % 3;
                loop {
                    let mut r = http
                        .post(format!("http://127.0.0.1:{}/hooks/{src}", ports[target]))
                        .body(req.body.clone());
                    for (k, v) in &req.headers {
                        r = r.header(k, v);
                    }
                    let status = r.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                    *replies.lock().unwrap().entry(status).or_default() += 1;
                    if status == 202 {
                        acked.lock().unwrap().insert(id);
                        break;
                    }
                    assert!(Instant::now() < deadline, "{id} never acknowledged");
                    target = (target + 1) % 3;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < total / 3 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    procs[1].kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    procs[1].start();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), total);

    // Every acknowledged id arrives (the restarted replica publishes what it had on disk).
    // Copies are told apart by `receivedat` (milliseconds): the relay's at-least-once
    // republishing after a kill repeats one acceptance; two replicas accepting one id would
    // show two.
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} acknowledged ids arrived",
            seen.len()
        );
        for m in consumer.take(1, Duration::from_secs(30)).await {
            let id = m.body["id"].as_str().unwrap().to_string();
            let at = m.body["receivedat"].as_str().unwrap().to_string();
            seen.entry(id).or_default().push(at);
        }
    }
    // Late copies (a republish after the restart) count too.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for m in consumer.drain().await {
        let id = m.body["id"].as_str().unwrap().to_string();
        let at = m.body["receivedat"].as_str().unwrap().to_string();
        seen.entry(id).or_default().push(at);
    }
    let published: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(published, acked, "lost: {:?}", acked.difference(&published));
    // A kill between a replica's disk write and its confirm is repaired by the restart, which
    // confirms what it wrote within claim_secs (docs/replicas.md): never two acceptances.
    for (id, copies) in &seen {
        let acceptances: HashSet<&String> = copies.iter().collect();
        assert_eq!(acceptances.len(), 1, "{id} accepted twice: {copies:?}");
    }
    let duplicates: usize = seen.values().map(|c| c.len() - 1).sum();
    eprintln!(
        "replicas kill: {total} acknowledged, {} published, {duplicates} republished, replies {:?}",
        published.len(),
        replies.lock().unwrap()
    );
}
