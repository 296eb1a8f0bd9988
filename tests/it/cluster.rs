//! The broker side of replicas (issue #13): `amqp.url` as a list of nodes with failover, and
//! `amqps://` with `[amqp.tls]` against a private RabbitMQ node with a TLS listener, whose
//! throwaway CA, server and client certificates the test makes with the openssl command line.
//!
//! Private nodes take seconds to boot, so there are two, each in its own test (they boot in
//! parallel): one that verifies client certificates only when offered (CA-only publishing, a
//! node stopped and started again under load), one that requires them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hookgate::config::Config;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::{Connection, ConnectionProperties};
use providers::github;

use crate::harness::{amqp_url, broker_proxy, config_text, unique, Consumer, Gateway, RabbitNode};

const SECRET: &str = "It's a Secret to Everybody";

/// An `amqp://` (or `amqps://`) URL on a loopback port where nothing listens.
fn dead_url(scheme: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("{scheme}://guest:guest@127.0.0.1:{port}/%2f")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The harness config with `amqp.url` as the list `urls`; `amqp_toml` goes into `[amqp]`
/// (tables like `[amqp.tls]` and `[[amqp.queues]]`), before the sources.
fn config_for(urls: &[String], exchange: &str, amqp_toml: &str) -> String {
    let list = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    config_text(
        &format!("{amqp_toml}\n{}", crate::github::sources()),
        exchange,
        "@URLS@",
        None,
        "",
    )
    .replace("\"@URLS@\"", &format!("[{list}]"))
}

fn parse(text: &str) -> Config {
    Config::parse(text, &Default::default(), Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `push` deliveries `{prefix}-{i}`; every one must be acknowledged (on disk).
async fn send(gw: &Gateway, prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        let id = format!("{prefix}-{i}");
        let body = format!(r#"{{"seq":{i}}}"#);
        let r = gw
            .send(
                "gh-main",
                &github::delivery(SECRET, "push", &id, body.as_bytes()),
            )
            .await;
        assert_eq!(r.status(), 202, "{id} acknowledged");
        ids.push(id);
    }
    ids
}

/// Waits until `/readyz` says the relay is connected to node `index` of `amqp.url`.
async fn wait_node(gw: &Gateway, index: usize, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = gw.readyz().await;
        if v["broker"]["connected"] == true && v["broker"]["node_index"] == index {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "relay never connected to node {index}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/readyz` reports a broker error while not connected; returns the error.
async fn wait_error(gw: &Gateway, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let v = gw.readyz().await;
        if let (false, Some(e)) = (
            v["broker"]["connected"] == true,
            v["broker"]["last_error"].as_str(),
        ) {
            return e.to_string();
        }
        assert!(Instant::now() < deadline, "no broker error reported: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The broker errors the gateway reports until one contains `needle` (case-insensitive), or
/// all of them when none did within `timeout`.
async fn wait_errors_until(gw: &Gateway, needle: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        let v = gw.readyz().await;
        if let Some(e) = v["broker"]["last_error"].as_str() {
            if !seen.iter().any(|s| s == e) {
                seen.push(e.to_string());
            }
            if e.to_lowercase().contains(needle) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!seen.is_empty(), "no broker error reported");
    seen
}

/// Takes messages from `consumer` until every id of `expected` arrived; returns the ids seen
/// more than once (allowed: at-least-once across a failover).
async fn take_all(consumer: &Consumer, expected: &[String], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let want: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    while !want.iter().all(|id| seen.contains(*id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        for m in consumer.take(1, left).await {
            let id = m.body["id"].as_str().unwrap().to_string();
            assert!(want.contains(id.as_str()), "unexpected event {id}");
            if !seen.insert(id) {
                dups += 1;
            }
        }
    }
    dups
}

#[actix_web::test]
async fn failover_moves_to_the_next_node_and_back_and_loses_nothing() {
    // Three "nodes": one that takes TCP connections and never answers (bounded by the URL's
    // connection_timeout), then two cuttable proxies to the shared broker.
    let exchange = unique("it-cluster");
    let consumer = Consumer::bind(&exchange, "#").await;
    let (a, b) = (broker_proxy().await, broker_proxy().await);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let urls = [
        format!(
            "amqp://guest:guest@{}/%2f?connection_timeout=300",
            silent.local_addr().unwrap()
        ),
        a.url(&amqp_url()),
        b.url(&amqp_url()),
    ];
    let gw = Gateway::start(parse(&config_for(&urls, &exchange, ""))).await;

    // The first node does not answer: the relay uses the next one (well before the default
    // 10 s connect timeout).
    let ready = wait_node(&gw, 1, Duration::from_secs(5)).await;
    assert_eq!(ready["broker"]["nodes"], 3);
    let node = ready["broker"]["node"].as_str().unwrap();
    assert!(
        node.contains(&a.addr.to_string()) && !node.contains("guest:guest"),
        "the node in use, without its password: {node}"
    );
    let mut ids = send(&gw, "fo", 0..10).await;

    // Node 1 fails under load: the relay goes on with node 2.
    a.cut();
    ids.extend(send(&gw, "fo", 10..20).await);
    wait_node(&gw, 2, Duration::from_secs(10)).await;
    ids.extend(send(&gw, "fo", 20..25).await);

    // Node 1 is back and node 2 fails: node 0 still does not answer, so the relay returns to
    // node 1.
    a.restore();
    b.cut();
    ids.extend(send(&gw, "fo", 25..35).await);
    wait_node(&gw, 1, Duration::from_secs(5)).await;

    let dups = take_all(&consumer, &ids, Duration::from_secs(20)).await;
    // At-least-once: only what a cut node had not confirmed yet may come twice.
    assert!(dups <= 20, "{dups} duplicates");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("hookgate_amqp_node_index ")
            && metrics.contains("hookgate_amqp_failovers_total "),
        "node metrics exported"
    );
    // Everything confirmed leaves the outbox (the confirms may trail the deliveries a little).
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.readyz().await["outbox_pending"] != 0 {
        assert!(Instant::now() < deadline, "{}", gw.readyz().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// A throwaway PKI made with the openssl command line: a CA, a server certificate for
/// 127.0.0.1/localhost, a client certificate, and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("the openssl command line is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "hookgate test CA"), ("other-ca", "somebody else")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subj];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem]);
            run(&args);
        }
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for (name, cn) in [("server", "localhost"), ("client", "hookgate-client")] {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let subj = format!("/CN={cn}");
            let mut args = vec!["req", "-subj", &subj];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr]);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ]);
        }
        // The broker runs as the rabbitmq user: let it read the (throwaway) files.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `rabbitmq.conf` lines for a TLS listener on `port` with this PKI.
    fn listener(&self, port: u16, require_client_cert: bool) -> String {
        format!(
            "listeners.ssl.default = 127.0.0.1:{port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = {require_client_cert}\n",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display(),
        )
    }

    /// `[amqp.tls]` with `ca`, and the client certificate when `client` is set.
    fn amqp_tls(&self, ca: &str, client: bool) -> String {
        let mut t = format!("[amqp.tls]\nca = {:?}\n", self.path(ca));
        if client {
            t += &format!(
                "cert = {:?}\nkey = {:?}\n",
                self.path("client.pem"),
                self.path("client.key")
            );
        }
        t
    }
}

/// The TLS connections the node sees, with their peer certificate subjects.
fn tls_peers(node: &RabbitNode) -> Vec<String> {
    node.ctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "ssl",
        "peer_cert_subject",
    ])
    .lines()
    .filter(|l| l.starts_with("true"))
    .map(str::to_string)
    .collect()
}

/// Takes every id of `expected` from the existing queue `queue` of the broker at `url`.
async fn drain_queue(url: &str, queue: &str, expected: &[String], timeout: Duration) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let want: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + timeout;
    while !want.iter().all(|id| seen.contains(*id)) {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
                seen.insert(v["id"].as_str().unwrap().to_string());
            }
            None => {
                let missing: Vec<_> = want.iter().filter(|id| !seen.contains(**id)).collect();
                assert!(Instant::now() < deadline, "never arrived: {missing:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let _ = conn.close(200, "done".into()).await;
}

#[actix_web::test]
async fn amqps_with_a_ca_file_survives_the_node_stopping_under_load() {
    let pki = Pki::make();
    let tls_port = free_port();
    let node = RabbitNode::start(&pki.listener(tls_port, false)).await;
    let exchange = unique("it-tls");
    let queue = unique("it-tls-q");
    // A quorum queue declared by hookgate itself, as for a cluster.
    let topology = format!(
        "{}[[amqp.queues]]\nname = \"{queue}\"\nkind = \"quorum\"\nbindings = [\"#\"]\n",
        pki.amqp_tls("ca.pem", false)
    );
    let urls = [
        dead_url("amqps"),
        format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f"),
    ];
    let gw = Gateway::start(parse(&config_for(&urls, &exchange, &topology))).await;
    wait_node(&gw, 1, Duration::from_secs(10)).await;
    let peers = tls_peers(&node);
    assert_eq!(peers.len(), 1, "one TLS connection, hookgate's: {peers:?}");
    let queues = node.ctl(&["list_queues", "-q", "--no-table-headers", "name", "type"]);
    assert!(
        queues
            .lines()
            .any(|l| l.split_whitespace().eq([queue.as_str(), "quorum"])),
        "{queues}"
    );
    let mut ids = send(&gw, "tls", 0..10).await;

    // The node in use stops (its listener goes away, connections are closed by the broker):
    // deliveries are still acknowledged, and published once it is back.
    let ctl = |what: &str| node.ctl(&[what]);
    ctl("stop_app");
    let e = wait_error(&gw, Duration::from_secs(10)).await;
    assert!(!e.contains("guest:guest"), "no password in errors: {e}");
    ids.extend(send(&gw, "tls", 10..20).await);
    assert_eq!(gw.readyz().await["broker"]["connected"], false);
    ctl("start_app");
    wait_node(&gw, 1, Duration::from_secs(15)).await;
    ids.extend(send(&gw, "tls", 20..25).await);
    drain_queue(&node.url(), &queue, &ids, Duration::from_secs(15)).await;
    gw.stop().await;
}

#[actix_web::test]
async fn amqps_client_certificate_for_a_node_that_requires_one() {
    let pki = Pki::make();
    let tls_port = free_port();
    let node = RabbitNode::start(&pki.listener(tls_port, true)).await;
    let exchange = unique("it-mtls");
    let consumer = Consumer::bind_at(&node.url(), &exchange, "#").await;
    let urls = [format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f")];

    // `hookgate check` reads the files: a good set passes, a key that is not the
    // certificate's, or TLS settings with a plain amqp:// node, are refused by name.
    let check = |text: String| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["check", "-c"])
            .arg(file.path())
            .output()
            .unwrap()
    };
    let good = config_for(&urls, &exchange, &pki.amqp_tls("ca.pem", true));
    let out = check(good.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(good.replace("client.key", "server.key"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("amqp.tls.key:"),
        "{err}"
    );
    let plain = config_for(&[node.url()], &exchange, &pki.amqp_tls("ca.pem", true));
    let out = check(plain);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is plain amqp://"),
        "{err}"
    );

    // Without a client certificate the node refuses the handshake; with an unrelated CA
    // hookgate refuses the node. Neither publishes anything.
    let no_cert = Gateway::start(parse(&config_for(
        &urls,
        &exchange,
        &pki.amqp_tls("ca.pem", false),
    )))
    .await;
    let wrong_ca = Gateway::start(parse(&config_for(
        &urls,
        &exchange,
        &pki.amqp_tls("other-ca.pem", true),
    )))
    .await;
    send(&no_cert, "nocert", 0..2).await;
    send(&wrong_ca, "wrongca", 0..2).await;
    // TLS 1.3 rejects a missing client certificate after the client has sent its Finished:
    // the node's alert and its close race, and a loaded machine sometimes sees the reset
    // first. The relay retries; one of its attempts names the certificate, and none connects.
    let errors = wait_errors_until(&no_cert, "certificate", Duration::from_secs(20)).await;
    assert!(
        errors
            .iter()
            .all(|e| e.to_lowercase().contains("certificate") || e.contains("reset by peer")),
        "{errors:?}"
    );
    let e = wait_error(&wrong_ca, Duration::from_secs(10)).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(tls_peers(&node).is_empty(), "no TLS connection was let in");

    // With the client certificate: connected over TLS as that certificate's subject.
    let gw = Gateway::start(parse(&good)).await;
    wait_node(&gw, 0, Duration::from_secs(10)).await;
    let ids = send(&gw, "mtls", 0..5).await;
    let msgs = consumer.take(5, Duration::from_secs(10)).await;
    let got: Vec<&str> = msgs
        .iter()
        .map(|m| m.body["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids, "in order, once");
    let peers = tls_peers(&node);
    assert!(
        peers.len() == 1 && peers[0].contains("CN=hookgate-client"),
        "{peers:?}"
    );
    consumer.assert_empty(Duration::from_millis(300)).await;
    for g in [no_cert, wrong_ca, gw] {
        g.stop().await;
    }
}

/// Every document of the Kubernetes example, in the order kustomization.yaml lists the files,
/// and the example Secret, which it must not list (`kubectl apply -k` would overwrite a real
/// Secret with the example's values; found by a review).
fn kubernetes_docs() -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let kustomization: serde_json::Value =
        serde_norway::from_str(&read("kustomization.yaml")).unwrap();
    let mut docs = Vec::new();
    let resources = kustomization["resources"].as_array().unwrap();
    assert!(
        !resources.iter().any(|r| r == "secret.example.yaml"),
        "apply -k must not overwrite the real Secret"
    );
    let files = resources
        .iter()
        .map(|f| f.as_str().unwrap())
        .chain(["secret.example.yaml"]);
    for file in files {
        let text = read(file);
        for doc in serde_norway::Deserializer::from_str(&text) {
            docs.push(serde_json::Value::deserialize(doc).unwrap());
        }
    }
    docs
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn port_of(addr: &std::net::SocketAddr) -> serde_json::Value {
    serde_json::json!(addr.port())
}

/// No kubeconform or API server here (`kubectl apply --dry-run` needs one); this reads the
/// example as Kubernetes would and checks what hookgate depends on: the config in the
/// ConfigMap passes hookgate's own validation with the Secret's files, and the StatefulSet
/// mounts, probes, ports and Services agree with it.
#[test]
fn kubernetes_example_agrees_with_the_config_it_carries() {
    let docs = kubernetes_docs();
    let sts = find(&docs, "StatefulSet", "hookgate");
    let pod = &sts["spec"]["template"]["spec"];
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&sts["spec"]["selector"]["matchLabels"], labels);
    let c = &pod["containers"][0];
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("volume {volume} not mounted"))["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };

    // The config file: from the ConfigMap mounted where `-c` points.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["serve", "-c"]);
    let config_path = Path::new(args[2]);
    let config_map = volume("config")["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(Path::new(&mount("config")), config_path.parent().unwrap());
    let file_name = config_path.file_name().unwrap().to_str().unwrap();
    let text = find(&docs, "ConfigMap", &config_map)["data"][file_name]
        .as_str()
        .unwrap()
        .to_string();

    // The Secret's keys as files, where the pod has them (a real CA in place of the example's).
    let secret_name = volume("secrets")["secret"]["secretName"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = &find(&docs, "Secret", &secret_name)["stringData"];
    let secrets_dir = mount("secrets");
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::make();
    for (key, value) in secret.as_object().unwrap() {
        let value = match key.ends_with(".pem") {
            true => std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
            false => value.as_str().unwrap().to_string(),
        };
        std::fs::write(files.path().join(key), value).unwrap();
    }
    let mut used = BTreeSet::new();
    for line in text.lines() {
        if let Some(at) = line.find(&format!("{secrets_dir}/")) {
            let key: String = line[at + secrets_dir.len() + 1..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\''))
                .collect();
            assert!(secret.get(&key).is_some(), "{key} is not in the Secret");
            used.insert(key);
        }
    }
    assert!(
        used.len() >= 4,
        "secrets come from the Secret via file: {used:?}"
    );
    let mut vars = std::collections::HashMap::new();
    for e in c["env"].as_array().unwrap() {
        let value = match e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            Some(key) => secret[key]
                .as_str()
                .expect("env from a Secret key")
                .to_string(),
            None => e["value"].as_str().unwrap().to_string(),
        };
        vars.insert(e["name"].as_str().unwrap().to_string(), value);
    }
    let text = text.replace(
        &format!("{secrets_dir}/"),
        &format!("{}/", files.path().display()),
    );
    let config = Config::parse(&text, &vars, Path::new("."))
        .unwrap_or_else(|e| panic!("the ConfigMap's config: {e}"));
    assert!(
        hookgate::admin::exposure_problem(&config.server).is_none(),
        "a non-loopback admin listener has a token"
    );
    assert_eq!(config.amqp.url.len(), 3);
    assert!(config.amqp.url.iter().all(|u| u.starts_with("amqps://")));
    assert!(config
        .amqp
        .queues
        .iter()
        .all(|q| q.kind == hookgate::config::QueueKind::Quorum));

    // Ports and probes.
    let port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["containerPort"]
            .clone()
    };
    assert_eq!(port("http"), port_of(&config.server.listen));
    assert_eq!(port("admin"), port_of(&config.server.admin_listen));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace > config.server.shutdown_timeout_secs + pause,
        "{grace}"
    );

    // The store is on the replica's own volume, kept when scaling down.
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    let data = mount(claim["metadata"]["name"].as_str().unwrap());
    assert!(
        config.store.path.starts_with(&data),
        "{:?} on {data}",
        config.store.path
    );
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );
    // Non-root: the Secret's files must be readable through the fsGroup.
    let mode = volume("secrets")["secret"]["defaultMode"].as_u64().unwrap();
    assert!(
        pod["securityContext"]["fsGroup"].is_u64() && mode & 0o040 != 0,
        "{mode:o}"
    );

    // Services and the disruption budget select these pods.
    let service = find(&docs, "Service", "hookgate");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let headless = find(
        &docs,
        "Service",
        sts["spec"]["serviceName"].as_str().unwrap(),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(&headless["spec"]["selector"], labels);
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .unwrap();
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(pdb["spec"]["maxUnavailable"] == 1 || pdb["spec"]["minAvailable"].is_u64());
}

/// deploy/nginx/hookgate-upstream.conf for real: nginx over TLS in front of two replicas and a
/// third upstream that is down; deliveries are spread over the live replicas, and when one
/// replica stops, every delivery still gets its 202 from the other and arrives once.
#[actix_web::test]
async fn nginx_upstream_spreads_deliveries_and_skips_a_stopped_replica() {
    let exchange = unique("it-nginx-up");
    let consumer = Consumer::bind(&exchange, "#").await;
    let server = "trusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"x-forwarded-for\"\n";
    let replica = || {
        config_text(
            &crate::github::sources(),
            &exchange,
            &amqp_url(),
            None,
            server,
        )
    };
    let r0 = Gateway::start(parse(&replica())).await;
    let r1 = Gateway::start(parse(&replica())).await;
    let port = free_port();
    let server_line = |n: u8, addr: String| {
        (
            match n {
                1 => "server 10.0.1.11:8080",
                2 => "server 10.0.1.12:8080",
                _ => "server 10.0.1.13:8080",
            },
            format!("server {addr}"),
        )
    };
    let nginx = crate::deploy::Nginx::start_file(
        "deploy/nginx/hookgate-upstream.conf",
        &[
            server_line(1, r0.running.public_addr.to_string()),
            server_line(2, r1.running.public_addr.to_string()),
            server_line(3, format!("127.0.0.1:{}", free_port())),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{port} ssl http2;"),
            ),
            ("listen [::]:443 ssl http2;", String::new()),
        ],
    );
    let cert = std::fs::read(nginx.dir.path().join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/hooks/gh-main");
    let post = |id: String| {
        let r = github::delivery(SECRET, "push", &id, br#"{"zen":"z"}"#);
        let mut req = client.post(&url).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        req.send()
    };
    // nginx needs a moment to bind.
    let deadline = Instant::now() + Duration::from_secs(10);
    while post("ng-probe".into()).await.is_err() {
        assert!(Instant::now() < deadline, "{}", nginx.error_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = vec!["ng-probe".to_string()];
    for i in 0..10 {
        let id = format!("ng-{i}");
        assert_eq!(
            post(id.clone()).await.unwrap().status(),
            202,
            "{}",
            nginx.error_log()
        );
        ids.push(id);
    }
    let held = |gw: &Gateway| {
        let url = gw.admin("/events?source=gh-main&limit=100");
        let client = gw.client.clone();
        async move {
            let v: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
            v["events"].as_array().map_or(0, Vec::len)
        }
    };
    let (n0, n1) = (held(&r0).await, held(&r1).await);
    assert!(
        n0 > 0 && n1 > 0 && n0 + n1 == ids.len(),
        "spread: {n0} + {n1}"
    );

    // What r0 accepted is published before it stops (a stopped replica's pending events wait
    // for its next start; under a loaded suite its relay may still be connecting here).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r0.readyz().await["outbox_pending"] != 0 {
        assert!(std::time::Instant::now() < deadline, "r0 never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r0.stop().await;
    for i in 10..20 {
        let id = format!("ng-{i}");
        assert_eq!(
            post(id.clone()).await.unwrap().status(),
            202,
            "{}",
            nginx.error_log()
        );
        ids.push(id);
    }
    let msgs = consumer.take(ids.len(), Duration::from_secs(10)).await;
    let got: BTreeSet<String> = msgs
        .iter()
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids.iter().cloned().collect(), "each once");
    consumer.assert_empty(Duration::from_millis(300)).await;
    drop(nginx);
    r1.stop().await;
}
