//! Start-up and shutdown: reads the TLS certificate (if any), opens the store, starts the
//! flusher, sweeper and relay, binds both listeners. Used by `hookgate serve` and by the
//! integration tests (port 0, temp store).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::pipeline::Gateway;
use crate::relay::{self, BrokerStatus};
use crate::server::{self, tls::TlsCerts};
use crate::store::Store;

/// A running gateway.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    tls: Option<Arc<TlsCerts>>,
    public: ServerHandle,
    admin: ServerHandle,
    cancel: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    flusher: JoinHandle<()>,
}

/// Starts everything. Must run inside an actix system (`actix_web::rt::System`,
/// `#[actix_web::main]` or `#[actix_web::test]`). A broker that is down does not stop the
/// start: events wait in the outbox.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // First, so a bad certificate is a config error before anything is opened or bound.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(TlsCerts::load)
        .transpose()?
        .map(Arc::new);
    let store = Arc::new(
        match config.store.path.as_os_str().is_empty() {
            true => Store::temporary(&config.store),
            false => Store::open(&config.store),
        }
        .with_context(|| format!("opening the store at {}", config.store.path.display()))?,
    );
    let broker = Arc::new(BrokerStatus::default());
    let gateway =
        Arc::new(Gateway::new(&config, store.clone(), broker.clone()).map_err(anyhow::Error::msg)?);
    let cancel = CancellationToken::new();

    let flusher = tokio::spawn(store.clone().run_flusher(cancel.clone()));
    let sweep_every = Duration::from_secs(config.store.dedup_window_secs.clamp(1, 60));
    let mut tasks = vec![
        tokio::spawn(store.clone().run_sweeper(sweep_every, cancel.clone())),
        tokio::spawn(relay::run(
            store.clone(),
            config.amqp.clone(),
            broker,
            cancel.clone(),
        )),
    ];
    if gateway.client_limiter.is_some() {
        let gw = gateway.clone();
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = c.cancelled() => return }
                if let Some(l) = &gw.client_limiter {
                    l.shrink();
                }
            }
        }));
    }

    let (public, public_addr) = server::public(&config.server, gateway.clone(), tls.as_ref())
        .with_context(|| format!("binding server.listen {}", config.server.listen))?;
    let (admin, admin_addr) = server::admin(&config.server, gateway.clone())
        .with_context(|| format!("binding server.admin_listen {}", config.server.admin_listen))?;
    let (public_handle, admin_handle) = (public.handle(), admin.handle());
    let servers = vec![actix_web::rt::spawn(public), actix_web::rt::spawn(admin)];
    tracing::info!(%public_addr, %admin_addr, sources = gateway.sources.len(), tls = tls.is_some(), "hookgate listening");
    Ok(Running {
        public_addr,
        admin_addr,
        gateway,
        tls,
        public: public_handle,
        admin: admin_handle,
        cancel,
        servers,
        tasks,
        flusher,
    })
}

impl Running {
    /// Re-reads `[server.tls]` cert and key (SIGHUP); the next handshake serves them. On error
    /// the certificate in use stays. `Ok(false)` when TLS is not configured.
    pub fn reload_tls(&self) -> Result<bool, ConfigError> {
        match &self.tls {
            None => Ok(false),
            Some(certs) => certs.reload().map(|()| true),
        }
    }

    /// Graceful stop: no new connections, in-flight requests finish (bounded by
    /// `shutdown_timeout_secs`), then the relay stops and the store is flushed.
    pub async fn stop(self) {
        self.public.stop(true).await;
        self.admin.stop(true).await;
        self.cancel.cancel();
        for t in self.servers {
            let _ = t.await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.flusher.await;
        tracing::info!("hookgate stopped");
    }
}
