//! Start-up and shutdown: reads the TLS certificate (if any), opens the store, starts the
//! supervised background tasks (relay, maintenance, limiter), binds both listeners. Used by `hookgate serve` and by the
//! integration tests (port 0, temp store).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::pipeline::Gateway;
use crate::relay::{self, BrokerStatus, RelayThread};
use crate::server::{self, tls::TlsCerts};
use crate::store::Store;

/// Background problems, for `/readyz`, and the signal that one cannot be recovered.
#[derive(Default)]
pub struct Health {
    problems: Mutex<BTreeMap<&'static str, String>>,
    /// Cancelled when a task cannot be restarted: `serve` then stops and exits non-zero.
    pub fatal: CancellationToken,
}

impl Health {
    /// Every current problem, `task: reason`.
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    }

    fn set(&self, task: &'static str, reason: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(r) => p.insert(task, r),
            None => p.remove(task),
        };
    }
}

/// How many unexpected ends in [`RESTART_WINDOW`] a task may have before the process gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Runs `task` until `cancel`; an unexpected end (a return or a panic) is logged, shown on
/// `/readyz`, counted, and the task restarted after a second. Too many ends in a minute
/// cancel `health.fatal`.
fn supervise<F, Fut>(
    name: &'static str,
    health: Arc<Health>,
    cancel: CancellationToken,
    task: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    supervise_on(
        tokio::runtime::Handle::current(),
        name,
        health,
        cancel,
        task,
    )
}

/// [`supervise`], with the task itself run on `on` (the relay's own thread).
fn supervise_on<F, Fut>(
    on: tokio::runtime::Handle,
    name: &'static str,
    health: Arc<Health>,
    cancel: CancellationToken,
    task: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut ends: VecDeque<Instant> = VecDeque::new();
        loop {
            let result = on.spawn(task()).await;
            // Cancelled: its runtime (the relay's thread) was shut down with the gateway.
            if cancel.is_cancelled() || result.as_ref().is_err_and(|e| e.is_cancelled()) {
                return;
            }
            let why = match result {
                Ok(()) => "ended unexpectedly".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
                Err(e) => format!("stopped: {e}"),
            };
            tracing::error!(task = name, reason = %why, "background task failed; restarting");
            crate::metrics::get()
                .task_restarts
                .get_or_create(&crate::metrics::TaskLabel { task: name })
                .inc();
            health.set(name, Some(why));
            let now = Instant::now();
            ends.push_back(now);
            while ends
                .front()
                .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
            {
                ends.pop_front();
            }
            if ends.len() > MAX_RESTARTS {
                tracing::error!(
                    task = name,
                    "background task keeps failing; stopping the gateway"
                );
                health.fatal.cancel();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return,
            }
            health.set(name, None);
        }
    })
}

/// How long the store may fail in a way only a restart mends ([`Store::failing_until_restart`])
/// before the process stops: sled answers every write with the same error after an I/O
/// failure (a full disk that has space again included), so the relay could not record its
/// progress or a dead letter again, and a failed write-back of the dedup table keeps new keys
/// in memory until a restart re-indexes them. No restart of a task helps. Long enough for an
/// operator reading `/readyz` to see why.
const BROKEN_GRACE: Duration = Duration::from_secs(30);

/// What no restart of a task mends, found by the store watcher every half second: the log's
/// committer or the indexer gone (threads that cannot be restarted under waiting requests), or
/// a failure only a restart mends, for [`BROKEN_GRACE`]. The process then stops, non-zero, for
/// the service manager to restart it (CONTRACT.md, "The relay never stops for one event").
#[derive(Default)]
struct StoreWatch {
    broken_since: Option<Instant>,
}

impl StoreWatch {
    /// Whether the gateway must stop (`health.fatal` is then cancelled).
    fn check(&mut self, store: &Store, health: &Health, now: Instant) -> bool {
        let stopped = store.problem().filter(|p| {
            [
                crate::store::COMMITTER_STOPPED,
                crate::store::INDEXER_STOPPED,
            ]
            .contains(p)
        });
        let broken = store.failing_until_restart();
        self.broken_since = broken.map(|_| self.broken_since.unwrap_or(now));
        let broken_for = self.broken_since.map(|t| now.duration_since(t));
        let (task, problem) = match (stopped, broken) {
            (Some(p), _) => ("log", p),
            (None, Some(p)) if broken_for >= Some(BROKEN_GRACE) => ("store", p),
            _ => return false,
        };
        tracing::error!(problem, "the store cannot go on; stopping the gateway");
        health.set(task, Some(problem.into()));
        health.fatal.cancel();
        true
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// A running gateway.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub health: Arc<Health>,
    store: Arc<Store>,
    tls: Option<Arc<TlsCerts>>,
    public: ServerHandle,
    admin: ServerHandle,
    cancel: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    /// Stopped once the relay task has ended (in [`Running::stop`]), or with the gateway.
    relay_thread: RelayThread,
}

/// Starts everything. Must run inside an actix system (`actix_web::rt::System`,
/// `#[actix_web::main]` or `#[actix_web::test]`). A broker that is down does not stop the
/// start: events wait in the log.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    // First, so a bad certificate is a config error before anything is opened or bound.
    let tls = config
        .server
        .tls
        .as_ref()
        .map(TlsCerts::load)
        .transpose()?
        .map(Arc::new);
    let store = {
        let c = config.store.clone();
        let opened =
            tokio::task::spawn_blocking(move || Store::open_waiting(&c, Duration::from_secs(5)))
                .await?;
        Arc::new(
            opened
                .with_context(|| format!("opening the store at {}", config.store.path.display()))?,
        )
    };
    for s in &config.sources {
        for w in s.provider.warnings() {
            tracing::warn!(source = %s.name, "{w}");
        }
    }
    for w in crate::topology::warnings(&config) {
        tracing::warn!("{w}");
    }
    for w in crate::nodes::warnings(&config) {
        tracing::warn!("{w}");
    }
    let broker = Arc::new(BrokerStatus::default());
    let health = Arc::new(Health::default());
    let gateway = Arc::new(
        Gateway::new(&config, store.clone(), broker.clone(), health.clone())
            .map_err(anyhow::Error::msg)?,
    );
    if let Err(e) = gateway.rejections.load(&store) {
        tracing::warn!(error = %e, "kept refusals could not be read");
    }
    let cancel = CancellationToken::new();
    let m = crate::metrics::get();
    m.init_sources(config.sources.iter().map(|s| s.name.as_str()));
    m.outbox_capacity
        .set(config.store.max_outbox_entries.min(i64::MAX as u64) as i64);

    // Sweep, checkpoint (a table sync and a sled flush) and retention: cheap, and a short checkpoint interval
    // keeps the re-index at start small.
    let every = Duration::from_secs(1);
    let relay_thread = RelayThread::start().context("starting the relay's thread")?;
    let mut tasks = vec![
        supervise("maintenance", health.clone(), cancel.clone(), {
            let (store, cancel) = (store.clone(), cancel.clone());
            move || store.clone().run_maintenance(every, cancel.clone())
        }),
        supervise_on(
            relay_thread.handle(),
            "relay",
            health.clone(),
            cancel.clone(),
            {
                let (store, amqp, broker, cancel) = (
                    store.clone(),
                    config.amqp.clone(),
                    broker.clone(),
                    cancel.clone(),
                );
                move || relay::run(store.clone(), amqp.clone(), broker.clone(), cancel.clone())
            },
        ),
        tokio::spawn({
            let (store, health, cancel) = (store.clone(), health.clone(), cancel.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                let mut watch = StoreWatch::default();
                loop {
                    tokio::select! { _ = tick.tick() => {}, _ = cancel.cancelled() => return }
                    let m = crate::metrics::get();
                    m.log_bytes.set(store.log_bytes() as i64);
                    m.log_segments.set(store.log_segments() as i64);
                    m.outbox_pending.set(store.pending() as i64);
                    let age = store
                        .oldest_pending_at()
                        .map_or(0, |at| crate::now_secs().saturating_sub(at));
                    m.oldest_pending_age.set(age as i64);
                    if watch.check(&store, &health, Instant::now()) {
                        return;
                    }
                }
            }
        }),
    ];
    if let Some(shared) = gateway.dedup.clone() {
        let (s, st) = (shared.clone(), store.clone());
        match tokio::task::spawn_blocking(move || s.owe_recent(&st)).await? {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                events = n,
                "recent events to confirm in the shared dedup store"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "recent events could not be read for the shared dedup store")
            }
        }
        shared.check().await;
        // Probes the shared dedup store, reconnects, writes what is owed to it.
        tasks.push(supervise("dedup", health.clone(), cancel.clone(), {
            let cancel = cancel.clone();
            move || shared.clone().run(cancel.clone())
        }));
    }
    tasks.push(supervise("rejections", health.clone(), cancel.clone(), {
        let (gw, store, cancel) = (gateway.clone(), store.clone(), cancel.clone());
        move || {
            let (gw, store, c) = (gw.clone(), store.clone(), cancel.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! { _ = tick.tick() => {}, _ = c.cancelled() => return }
                    if let Err(e) = gw.rejections.save(&store) {
                        tracing::warn!(error = %e, "refusals could not be kept in the store");
                    }
                }
            }
        }
    }));
    // Always running: a reload may turn `server.client_rate_limit` on.
    {
        let gw = gateway.clone();
        tasks.push(supervise("limiter", health.clone(), cancel.clone(), {
            let cancel = cancel.clone();
            move || {
                let (gw, c) = (gw.clone(), cancel.clone());
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(60));
                    loop {
                        tokio::select! { _ = tick.tick() => {}, _ = c.cancelled() => return }
                        if let Some(l) = &gw.runtime.load().client_limiter {
                            l.shrink();
                        }
                    }
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
    let mut names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    tracing::info!(
        version = crate::cli::VERSION,
        public = %public_addr,
        admin = %admin_addr,
        tls = tls.is_some(),
        sources = %names.join(","),
        store = %config.store.path.display(),
        exchange = %config.amqp.exchange,
        "hookgate listening"
    );
    Ok(Running {
        public_addr,
        admin_addr,
        gateway,
        health,
        store,
        tls,
        public: public_handle,
        admin: admin_handle,
        cancel,
        servers,
        tasks,
        relay_thread,
    })
}

impl Running {
    /// Re-reads the config file (SIGHUP) and swaps in its sources, guards and limits, and
    /// re-reads the TLS files; see [`crate::runtime`]. On error nothing changes.
    pub fn reload(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::runtime::Changes, crate::runtime::ReloadError> {
        let config = Config::load(path).map_err(|e| crate::runtime::ReloadError(e.to_string()))?;
        crate::runtime::apply(&self.gateway, &config, || {
            // The files in use are read again where the new config still names them. New
            // paths need a restart (reported as such); files moved away from the old ones
            // must not refuse the rest of the reload (they did; found by a review).
            match (&self.tls, &config.server.tls) {
                (Some(certs), Some(t)) if certs.paths() == (t.cert.as_path(), t.key.as_path()) => {
                    certs.reload().map_err(|e| e.to_string())
                }
                _ => Ok(false),
            }
        })
    }

    /// Re-reads `[server.tls]` cert and key (SIGHUP); the next handshake serves them. On error
    /// the certificate in use stays. `Ok(true)` when they hold a new certificate, `Ok(false)`
    /// when not or when TLS is not configured.
    pub fn reload_tls(&self) -> Result<bool, ConfigError> {
        match &self.tls {
            None => Ok(false),
            Some(certs) => certs.reload(),
        }
    }

    /// Graceful stop: no new connections, in-flight requests finish (bounded by
    /// `shutdown_timeout_secs`), then the relay stops and the store is closed. Returns once
    /// every handle on the store is released, so the same store can be opened again at once.
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
        drop(self.relay_thread);
        if let Err(e) = self.gateway.rejections.save(&self.store) {
            tracing::warn!(error = %e, "refusals could not be kept in the store");
        }
        drop(self.gateway);
        let store = self.store;
        // actix workers drop their copies of the gateway as their threads wind down.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if Arc::strong_count(&store) > 1 {
            tracing::warn!("store still referenced at shutdown; closing it anyway");
        }
        let _ = tokio::task::spawn_blocking(move || {
            store.close();
            drop(store);
        })
        .await;
        tracing::info!("hookgate stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Issue 11, class 5: a background task that panics is reported on readiness, counted and
    /// restarted; one that keeps failing stops the process (`fatal`).
    #[tokio::test(start_paused = true)]
    async fn class5_a_failed_task_is_reported_restarted_and_fatal_when_it_keeps_failing() {
        let health = Arc::new(Health::default());
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let task = {
            let (runs, cancel) = (runs.clone(), cancel.clone());
            move || {
                let (runs, cancel) = (runs.clone(), cancel.clone());
                async move {
                    // The first run panics; the second runs until cancelled.
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("relay exploded");
                    }
                    cancel.cancelled().await;
                }
            }
        };
        let handle = supervise("relay", health.clone(), cancel.clone(), task);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let problems = health.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("relay: panicked: relay exploded"),
            "{problems:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "restarted");
        assert!(health.problems().is_empty(), "cleared after the restart");
        assert!(!health.fatal.is_cancelled());
        cancel.cancel();
        handle.await.unwrap();

        // A task that ends at once, every time: fatal after MAX_RESTARTS in a minute.
        let health = Arc::new(Health::default());
        let cancel = CancellationToken::new();
        let handle = supervise("maintenance", health.clone(), cancel.clone(), || async {});
        tokio::time::timeout(Duration::from_secs(30), health.fatal.cancelled())
            .await
            .expect("fatal after repeated failures");
        handle.await.unwrap();
        assert!(health.problems()[0].contains("ended unexpectedly"));
    }

    /// sled failing its writes for good (after a full disk, until a restart) is mended by no
    /// restart of a task: past [`BROKEN_GRACE`] the gateway stops, non-zero, for its
    /// service manager to restart it (a black-box review found the relay retrying forever
    /// after the disk had space again). The grace counts from when the failure was first
    /// seen; a write that succeeds in between (sled takes one that changes nothing even when
    /// broken) starts it again.
    #[tokio::test]
    async fn sled_failing_past_the_grace_stops_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let config: crate::config::StoreConfig =
            toml::from_str(&format!("path = {:?}", dir.path().join("store"))).unwrap();
        let store = Store::open(&config).unwrap();
        let health = Health::default();
        let mut watch = StoreWatch::default();
        let t0 = Instant::now();
        let full = || sled::Error::Io(std::io::Error::other("No space left on device"));
        assert!(!watch.check(&store, &health, t0));

        // Fails, then a write succeeds within the grace: nothing stops.
        assert!(store.note_meta::<(), _>(Err(full())).is_err());
        assert!(!watch.check(&store, &health, t0));
        assert!(!watch.check(&store, &health, t0 + BROKEN_GRACE / 2));
        store.note_meta::<(), sled::Error>(Ok(())).unwrap();
        assert!(!watch.check(&store, &health, t0 + BROKEN_GRACE));
        assert!(!health.fatal.is_cancelled());

        // Fails from t1 on: the grace is counted from t1, not from the first failure.
        let t1 = t0 + BROKEN_GRACE * 2;
        assert!(store.note_meta::<(), _>(Err(full())).is_err());
        assert!(!watch.check(&store, &health, t1));
        let almost = t1 + BROKEN_GRACE - Duration::from_millis(500);
        assert!(!watch.check(&store, &health, almost));
        assert!(!health.fatal.is_cancelled());
        assert!(watch.check(&store, &health, t1 + BROKEN_GRACE));
        assert!(health.fatal.is_cancelled());
        let problems = health.problems();
        assert_eq!(problems, [format!("store: {}", crate::store::META_FAILING)]);
        store.close();
    }

    /// The relay runs on its own thread, and a restart lands there again; the thread's
    /// runtime shut down (the gateway dropped without `stop`) ends the supervision quietly
    /// instead of counting failures.
    #[tokio::test]
    async fn the_relay_runs_and_restarts_on_its_thread_and_ends_with_it() {
        let thread = RelayThread::start().unwrap();
        let health = Arc::new(Health::default());
        let cancel = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let runs = Arc::new(AtomicUsize::new(0));
        let task = move || {
            let (tx, runs) = (tx.clone(), runs.clone());
            async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
                // The first run ends (a failure, restarted after a second); the next waits.
                if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                    std::future::pending::<()>().await;
                }
            }
        };
        let handle = supervise_on(thread.handle(), "relay", health.clone(), cancel, task);
        for _ in 0..2 {
            let ran_on = rx.recv().await.unwrap();
            assert_eq!(ran_on.as_deref(), Some("hookgate-relay"));
        }
        drop(thread);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("supervision ends with the relay's runtime")
            .unwrap();
        assert!(health.problems().is_empty(), "{:?}", health.problems());
        assert!(!health.fatal.is_cancelled());
    }
}
