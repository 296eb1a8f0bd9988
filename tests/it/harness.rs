//! Test harness: a gateway on port 0 with a store in a temporary directory and a per-test
//! exchange, a consumer on a fresh queue of the real RabbitMQ, and a TCP proxy that can cut the
//! broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hookgate::app::{self, Running};
use hookgate::config::Config;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name nobody else uses (exchanges, queues).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(rand::random::<[u8; 6]>()))
}

/// A config with the given `[[sources]]` TOML, an exchange of its own, port 0 listeners.
pub fn config(
    sources_toml: &str,
    exchange: &str,
    amqp_url: &str,
    store: Option<&Path>,
    extra: &str,
) -> Config {
    let text = config_text(sources_toml, exchange, amqp_url, store, extra);
    Config::parse(&text, &HashMap::new(), Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}

/// The TOML behind [`config`], for tests that run the `hookgate` binary on a file.
pub fn config_text(
    sources_toml: &str,
    exchange: &str,
    amqp_url: &str,
    store: Option<&Path>,
    extra: &str,
) -> String {
    let store_path = store.map_or_else(temp_store, Path::to_path_buf);
    let store_path = store_path.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
request_timeout_secs = 3
{extra}
[store]
path = "{store_path}"
[amqp]
url = "{amqp_url}"
exchange = "{exchange}"
reconnect_max_secs = 1
{sources_toml}
"#
    )
}

/// Directories made by [`temp_store`] that no gateway has taken yet.
static TEMP_STORES: Mutex<Vec<tempfile::TempDir>> = Mutex::new(Vec::new());

/// A fresh store path in a temporary directory, for a test that does not care where its store
/// is (an empty `store.path` is refused: it would be a store that forgets acknowledged events).
/// The [`Gateway`] started on it removes the directory when it stops.
pub fn temp_store() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("hookgate-it-")
        .tempdir()
        .expect("a temporary directory");
    let path = dir.path().join("store");
    TEMP_STORES.lock().unwrap().push(dir);
    path
}

pub struct Gateway {
    pub running: Running,
    pub client: reqwest::Client,
    /// The [`temp_store`] directory of this gateway's store, removed after it stops.
    _store_dir: Option<tempfile::TempDir>,
}

impl Gateway {
    pub async fn start(config: Config) -> Gateway {
        let store_dir = {
            let mut dirs = TEMP_STORES.lock().unwrap();
            let i = dirs
                .iter()
                .position(|d| config.store.path.starts_with(d.path()));
            i.map(|i| dirs.swap_remove(i))
        };
        let running = app::start(config).await.expect("gateway starts");
        Gateway {
            running,
            // Idle connections are dropped before the listeners' keep-alive (5 s) closes
            // them, so a reused connection is never closed under a request (a race that
            // showed up as `IncompleteMessage` on a slow CI run).
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(1))
                .build()
                .expect("an HTTP client"),
            _store_dir: store_dir,
        }
    }

    pub fn url(&self, source: &str) -> String {
        format!("http://{}/hooks/{source}", self.running.public_addr)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr)
    }

    /// Posts a provider sample request to `/hooks/{source}`.
    pub async fn send(
        &self,
        source: &str,
        r: &providers::sign::SampleRequest,
    ) -> reqwest::Response {
        self.send_to(&self.url(source), r).await
    }

    /// Posts a provider sample request to `url` (any path on the public listener).
    pub async fn send_to(
        &self,
        url: &str,
        r: &providers::sign::SampleRequest,
    ) -> reqwest::Response {
        let mut req = self.client.post(r.url(url)).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        req.send().await.expect("request sent")
    }

    /// The admin listener's `/readyz` JSON.
    pub async fn readyz(&self) -> serde_json::Value {
        self.admin_json("/readyz").await
    }

    /// GET `path` on the admin listener, its body as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.admin(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the broker connection is up (readyz says so).
    pub async fn wait_broker(&self, connected: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: serde_json::Value = self.readyz().await;
            if v["broker"]["connected"] == connected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker never became connected={connected}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The value of one metric line (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

/// A consumer on a fresh, exclusive queue bound to `exchange` with `binding`.
pub struct Consumer {
    _conn: Connection,
    channel: Channel,
    queue: String,
}

pub struct Message {
    pub routing_key: String,
    pub properties: lapin::BasicProperties,
    pub body: serde_json::Value,
}

impl Consumer {
    /// Declares the exchange too, so the queue can bind before hookgate connects.
    pub async fn bind(exchange: &str, binding: &str) -> Consumer {
        Self::bind_at(&amqp_url(), exchange, binding).await
    }

    /// The same on the broker at `url`.
    pub async fn bind_at(url: &str, exchange: &str, binding: &str) -> Consumer {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("RabbitMQ must be running on AMQP_URL (scripts/test.sh starts it)");
        let channel = conn.create_channel().await.unwrap();
        channel
            .exchange_declare(
                exchange.into(),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let queue = unique("it-q");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Consumer {
            _conn: conn,
            channel,
            queue,
        }
    }

    /// Takes exactly `n` messages, failing after `timeout`.
    pub async fn take(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
                .await
                .unwrap()
            {
                Some(m) => {
                    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                    out.push(Message {
                        routing_key: m.delivery.routing_key.to_string(),
                        properties: m.delivery.properties.clone(),
                        body: serde_json::from_slice(&m.delivery.data).expect("envelope is JSON"),
                    });
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {n} messages arrived",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        out
    }

    /// Every message waiting now (none: empty).
    pub async fn drain(&self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
            out.push(Message {
                routing_key: m.delivery.routing_key.to_string(),
                properties: m.delivery.properties.clone(),
                body: serde_json::from_slice(&m.delivery.data).expect("envelope is JSON"),
            });
        }
        out
    }

    /// Asserts that nothing more arrives within `wait`.
    pub async fn assert_empty(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
        let m = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap();
        assert!(
            m.is_none(),
            "unexpected message: {:?}",
            m.map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
        );
    }
}

/// A TCP proxy to RabbitMQ that can be cut (all connections dropped, new ones refused): the
/// chaos driver's, shared so there is one.
#[path = "../../examples/chaos/proxy.rs"]
mod chaos_proxy;
pub use chaos_proxy::Proxy;

/// Starts a proxy in front of the broker of `AMQP_URL`.
pub async fn broker_proxy() -> Proxy {
    Proxy::start(broker_addr())
        .await
        .expect("proxy binds a loopback port")
}

/// The broker's address from `AMQP_URL`.
pub fn broker_addr() -> SocketAddr {
    let uri: lapin::uri::AMQPUri = amqp_url().parse().unwrap();
    let host = if uri.authority.host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        uri.authority.host.clone()
    };
    format!("{host}:{}", uri.authority.port).parse().unwrap()
}

/// A private RabbitMQ node on a free port, with extra `rabbitmq.conf` lines, for tests that
/// need a broker configured differently from the shared one (never touched). Stopped on drop.
pub struct RabbitNode {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl RabbitNode {
    pub async fn start(conf: &str) -> RabbitNode {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path();
        std::fs::write(
            base.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n{conf}"),
        )
        .unwrap();
        std::fs::write(base.join("enabled_plugins"), "[].\n").unwrap();
        // rabbitmq-server runs as the rabbitmq user when started as root.
        let _ = std::process::Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(base)
            .status();
        let name = format!("hgtest{port}@localhost");
        let dist = if port > 55535 {
            port - 10000
        } else {
            port + 10000
        };
        let status = std::process::Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq"))
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                base.join("enabled_plugins"),
            )
            .status()
            .expect("rabbitmq-server is installed (scripts/ensure-rabbitmq.sh)");
        assert!(status.success(), "rabbitmq-server -detached failed");
        let node = RabbitNode { name, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Connection::connect(&node.url(), ConnectionProperties::default())
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "private RabbitMQ node did not start"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        node
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn stop(self) {}

    /// `rabbitmqctl -n <this node> args…`; its stdout. Panics when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-n", &self.name, "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = &self.dir;
    }
}
