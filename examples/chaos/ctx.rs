//! What every scenario shares: the run's settings, a gateway per scenario, sending a batch,
//! waiting for the broker link and removing a scenario's broker objects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::gateway::{Gateway, Spec};
use crate::load::{start_clients, Ledger, Load};
use crate::Args;

/// The run: its settings and where the broker, the binary and the work dir are.
pub struct Ctx {
    /// Extra `[store]` keys for the next gateway (the event-log scenarios set them).
    pub store_extra: std::sync::Mutex<String>,
    pub bin: PathBuf,
    pub work: PathBuf,
    pub amqp: String,
    pub broker: SocketAddr,
    pub args: Args,
}

impl Ctx {
    pub fn run_id(&self, tag: &str) -> String {
        format!("chaos-{tag}-{}", hex::encode(rand::random::<[u8; 3]>()))
    }

    pub fn sources(&self, tag: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{tag}{i}")).collect()
    }

    /// A gateway in `work/<run>` with its own store, exchange and (optionally) sink queue.
    pub fn gateway(
        &self,
        run: &str,
        amqp_url: &str,
        sink: bool,
        sources: &[String],
        window: u64,
    ) -> anyhow::Result<Gateway> {
        let dir = self.work.join(run);
        self.gateway_in(
            &dir,
            &dir.join("store"),
            run,
            amqp_url,
            sink,
            sources,
            window,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gateway_in(
        &self,
        dir: &Path,
        store: &Path,
        run: &str,
        amqp_url: &str,
        sink: bool,
        sources: &[String],
        window: u64,
    ) -> anyhow::Result<Gateway> {
        Gateway::new(
            &self.bin,
            dir,
            &Spec {
                store: store.to_path_buf(),
                amqp_url: amqp_url.to_string(),
                exchange: run.to_string(),
                sink: sink.then(|| format!("{run}-sink")),
                sources: sources.to_vec(),
                dedup_window_secs: window,
                store_extra: self.store_extra.lock().unwrap().clone(),
            },
        )
    }
}

/// Sends `events` per source of `load.run` and waits for every 2xx.
pub async fn send_all(gw: &Gateway, load: &Load, ledger: &Arc<Ledger>) {
    let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
    let tasks = start_clients(
        &format!("http://{}", gw.public),
        load,
        ledger,
        &stop_new,
        &give_up,
    );
    for t in tasks {
        let _ = t.await;
    }
}

/// Waits until `/readyz` reports the broker `connected` (or not).
pub async fn wait_broker(gw: &Gateway, connected: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if gw.readyz().await["broker"]["connected"] == connected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("readyz never said broker.connected={connected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a scenario's exchange and sink queue.
pub async fn cleanup(ctx: &Ctx, run: &str) {
    if let Ok(b) = Broker::connect(&ctx.amqp).await {
        let _ = b.delete_queue(&format!("{run}-sink")).await;
        let _ = b.delete_exchange(run).await;
    }
}
