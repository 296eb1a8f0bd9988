//! The gateway under test: the release `hookgate serve` binary as a child process, on fixed
//! loopback ports (so clients find it again after a restart) and a store of the scenario's.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The secret every chaos source signs with.
pub const SECRET: &str = "chaos-secret";

/// What the gateway's config holds.
#[derive(Clone)]
pub struct Spec {
    pub store: PathBuf,
    pub amqp_url: String,
    pub exchange: String,
    /// A durable queue bound with `#`, declared (and re-bound after a reconnect) by hookgate.
    pub sink: Option<String>,
    /// Source names (all GitHub sources signed with [`SECRET`]).
    pub sources: Vec<String>,
    pub dedup_window_secs: u64,
    /// Extra `[store]` keys (small segments, retention) for the event-log scenarios.
    pub store_extra: String,
}

pub struct Gateway {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Gateway {
    /// Writes the config into `dir`; does not start anything.
    pub fn new(bin: &Path, dir: &Path, spec: &Spec) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(dir)?;
        let (public, admin) = (free_port()?, free_port()?);
        let mut text = format!(
            r#"[server]
listen = "{public}"
admin_listen = "{admin}"
request_timeout_secs = 10
shutdown_timeout_secs = 5

[store]
path = "{store}"
dedup_window_secs = {window}
{store_extra}

[amqp]
url = "{url}"
exchange = "{exchange}"
max_in_flight = 512
reconnect_max_secs = 2
"#,
            store = spec.store.display(),
            window = spec.dedup_window_secs,
            store_extra = spec.store_extra,
            url = spec.amqp_url,
            exchange = spec.exchange,
        );
        if let Some(sink) = &spec.sink {
            text.push_str(&format!(
                "\n[[amqp.queues]]\nname = \"{sink}\"\nkind = \"classic\"\nbindings = [\"#\"]\n"
            ));
        }
        for s in &spec.sources {
            text.push_str(&format!(
                "\n[[sources]]\nname = \"{s}\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n"
            ));
        }
        let config = dir.join("hookgate.toml");
        std::fs::write(&config, text)?;
        Ok(Gateway {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("hookgate.log"),
            public,
            admin,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// Starts the process and waits until `/healthz` answers.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("-c")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    bail!(
                        "hookgate exited at start ({status}); see {}",
                        self.log.display()
                    );
                }
            }
            let up = self
                .http
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("hookgate did not answer /healthz within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on Unix
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the graceful stop (SIGKILL after 20 s).
    pub async fn term(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("chaos: hookgate ignored SIGTERM for 20 s; killing it");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Waits (at most `within`) for the gateway to exit by itself: its status, `None` when it
    /// still runs (or was not started).
    pub async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if status.is_some() || Instant::now() >= deadline {
                if status.is_some() {
                    self.child = None;
                }
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/readyz` as JSON (`Null` when the gateway does not answer).
    pub async fn readyz(&self) -> serde_json::Value {
        let r = self
            .http
            .get(format!("http://{}/readyz", self.admin))
            .send()
            .await;
        match r {
            Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// The value of one sample line of `/metrics` (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let Ok(r) = self
            .http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|rest| rest.trim().split(' ').next()?.parse::<f64>().ok())
            .next()
            .unwrap_or(0.0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
