//! Shared deduplication across replicas (docs/replicas.md): a two-phase claim in Redis
//! or Valkey around the local durable write of [`crate::store::Store::accept`].
//!
//! For a new event: the local dedup table first (a local duplicate costs no round trip) →
//! `{key_prefix}:{source}:{id}` set to `pending:<token>` if absent, expiring after
//! `claim_secs` → the local durable write → the key set to `accepted`, expiring with
//! `store.dedup_window_secs` → the 2xx. A found `accepted` is a duplicate (the same ack,
//! nothing written); a found `pending:…` of another request is a 503 + `Retry-After` (its
//! replica is writing the event right now, or died doing so and the claim expires); a failed
//! local write deletes the claim if it is still this request's (token compare in Lua). The
//! crash points and what each can cost are in docs/replicas.md.
//!
//! Every Redis call has a budget of `dedup.timeout_ms`; a connection error (or a few budgets
//! missed in a row) marks the shared store down at once, and while it is down requests do not
//! wait on it: `on_unavailable` decides, and a background task probes, reconnects and writes
//! the ids accepted meanwhile (and the confirmations that failed) as `accepted`.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, DedupClaimLabels, DedupErrorLabels, DedupStepLabel, SourceLabel};
use crate::store::{Accepted, Entry, Local, SharedStore, StoreError};

/// `[dedup]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// `redis://` or `rediss://` URL of the primary (may carry a password; `file:PATH` reads
    /// it from a file). Empty: dedup on this node only.
    #[serde(default)]
    pub shared: String,
    /// Keys are `{key_prefix}:{source}:{id}`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// A claim whose event was not made durable within this is abandoned.
    #[serde(default = "default_claim_secs")]
    pub claim_secs: u64,
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Budget of one Redis call on the request path, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA and client certificate for `rediss://` (PEM file paths, relative to the config file).
    #[serde(default)]
    pub tls: Option<DedupTls>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            shared: String::new(),
            key_prefix: default_key_prefix(),
            claim_secs: default_claim_secs(),
            on_unavailable: OnUnavailable::default(),
            timeout_ms: default_timeout_ms(),
            tls: None,
        }
    }
}

impl std::fmt::Debug for DedupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupConfig")
            .field("shared", &crate::config::redact_url(&self.shared))
            .field("key_prefix", &self.key_prefix)
            .field("claim_secs", &self.claim_secs)
            .field("on_unavailable", &self.on_unavailable)
            .field("timeout_ms", &self.timeout_ms)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `[dedup.tls]`: PEM files. Without `ca`, the system roots verify the server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What a request does while the shared store cannot be asked.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Dedup on this node only; counted in `hookgate_dedup_shared_errors_total`.
    #[default]
    Accept,
    /// 503 + `Retry-After`; `/readyz` turns 503.
    Reject,
}

fn default_key_prefix() -> String {
    "hookgate".into()
}
fn default_claim_secs() -> u64 {
    30
}
fn default_timeout_ms() -> u64 {
    // A same-zone Redis answers in well under a millisecond; the rest is room for a busy
    // event loop. Past it the request goes on without the shared store (on_unavailable).
    20
}

impl DedupConfig {
    pub fn enabled(&self) -> bool {
        !self.shared.trim().is_empty()
    }

    /// Makes the TLS paths relative to the config file's directory (like `file:` secrets).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(tls) = &mut self.tls {
            for p in [&mut tls.ca, &mut tls.cert, &mut tls.key]
                .into_iter()
                .flatten()
            {
                let s = p.to_string_lossy();
                let stripped = s.strip_prefix("file:").map(PathBuf::from);
                *p = base.join(stripped.unwrap_or_else(|| p.clone()));
            }
        }
    }

    /// Problems `check` and `serve` refuse, each naming its key.
    pub fn problems(&self, request_timeout_secs: u64, window_secs: u64) -> Vec<String> {
        let mut errors = Vec::new();
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(|c| c.is_whitespace()) {
            errors.push("dedup.key_prefix: must be non-empty, without spaces".into());
        }
        if !self.enabled() {
            if self.tls.is_some() {
                errors.push("dedup.tls: set, but dedup.shared is empty".into());
            }
            return errors;
        }
        if self.claim_secs <= request_timeout_secs {
            errors.push(format!(
                "dedup.claim_secs: must be greater than server.request_timeout_secs ({request_timeout_secs}), so a claim outlives the request that took it"
            ));
        }
        if self.claim_secs >= window_secs {
            errors.push("dedup.claim_secs: must be less than store.dedup_window_secs".into());
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            errors.push("dedup.timeout_ms: must be between 1 and 10000".into());
        }
        if let Err(e) = self.client() {
            errors.push(e);
        }
        errors
    }

    /// The redis-rs client for `shared` (TLS files read here, so a bad one is a config error).
    pub fn client(&self) -> Result<Client, String> {
        let url = self.shared.trim();
        let scheme = url.split_once("://").map(|(s, _)| s);
        let tls = match scheme {
            Some("redis") => false,
            Some("rediss") => true,
            _ => {
                return Err(
                    "dedup.shared: not a redis:// or rediss:// URL (Valkey speaks the same)".into(),
                )
            }
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
            // redis-rs may quote the URL, password included.
            format!(
                "dedup.shared: {}",
                e.to_string().replace(url, &crate::config::redact_url(url))
            )
        })?;
        match (&self.tls, tls) {
            (None, _) => Client::open(info).map_err(|e| format!("dedup.shared: {e}")),
            (Some(_), false) => Err("dedup.tls: set, but dedup.shared is not rediss://".into()),
            (Some(t), true) => {
                let read = |key: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
                    p.as_ref()
                        .map(|p| {
                            std::fs::read(p).map_err(|e| {
                                format!("dedup.tls.{key}: cannot read {}: {e}", p.display())
                            })
                        })
                        .transpose()
                };
                let (ca, cert, key) = (
                    read("ca", &t.ca)?,
                    read("cert", &t.cert)?,
                    read("key", &t.key)?,
                );
                // Checked as `[amqp.tls]` is (redis-rs takes a file without a certificate as
                // an empty root store, and a key that is not the certificate's only at connect
                // time: `check` passed both, and the store was then never reachable; found by
                // a review).
                crate::amqp_tls::files_client_config(
                    "dedup.tls",
                    t.ca.as_deref(),
                    t.cert.as_deref(),
                    t.key.as_deref(),
                )?;
                let client_tls = match (cert, key) {
                    (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                    (None, None) => None,
                    _ => return Err("dedup.tls: cert and key go together".into()),
                };
                Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls,
                        root_cert: ca,
                    },
                )
                .map_err(|e| format!("dedup.tls: {e}"))
            }
        }
    }
}

/// `hookgate forget` on a stopped gateway's store: the same deletion as [`Shared::forget`],
/// over a blocking connection.
pub fn forget_blocking(
    config: &DedupConfig,
    source: &str,
    id: &str,
    content_keys: &[String],
) -> Result<bool, String> {
    let client = config.client()?;
    let mut conn = client
        .get_connection_with_timeout(PROBE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let n: i64 = redis::cmd("DEL")
        .arg(redis_keys(&config.key_prefix, source, id, content_keys))
        .query(&mut conn)
        .map_err(|e| e.to_string())?;
    Ok(n > 0)
}

/// `{prefix}:{source}:{id}`, then `{prefix}:{source}:{content key}` for each content key
/// (`sha256:<hex>`: never the shape of an id of the providers that set one).
fn redis_keys(prefix: &str, source: &str, id: &str, content_keys: &[String]) -> Vec<String> {
    std::iter::once(id)
        .chain(content_keys.iter().map(String::as_str))
        .map(|k| format!("{prefix}:{source}:{k}"))
        .collect()
}

/// The `accepted` value; a claim is `pending:<token>`.
const ACCEPTED: &str = "accepted";

/// Takes every key or none: `-1` when one is `accepted`, the longest remaining claim in ms when
/// one is claimed, `0` when this request now holds them all.
const CLAIM_LUA: &str = r"
local left = 0
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then
    if v == 'accepted' then return -1 end
    local t = redis.call('PTTL', k)
    if t < 1 then t = 1 end
    if t > left then left = t end
  end
end
if left > 0 then return left end
for _, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
end
return 0
";

/// Deletes the keys still holding this request's claim (another request's claim, or an
/// `accepted`, stays).
const RELEASE_LUA: &str = r"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n
";

/// Consecutive missed budgets after which the store is taken for down (a connection error
/// takes it down at once).
const DOWN_AFTER_TIMEOUTS: u32 = 3;
/// Probe period while up (also refreshes `/readyz`) and while down (how fast it comes back).
const PROBE_UP: Duration = Duration::from_secs(1);
const PROBE_DOWN: Duration = Duration::from_millis(200);
/// Failed probes in a row after which the next one reconnects from scratch: about a second
/// of failing while down (probes every [`PROBE_DOWN`]).
const RECONNECT_AFTER_FAILED_PROBES: u32 = 5;
/// A probe is off the request path: it may wait longer than a request's budget.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Ids waiting to be written as `accepted` (fallbacks, failed confirmations); beyond this the
/// oldest are dropped and counted.
const BACKLOG_MAX: usize = 100_000;
const BACKLOG_BATCH: usize = 256;

/// What the shared store said about an event.
enum Claim {
    /// This request holds the claim; confirm it after the local write, or release it.
    Held(Held),
    /// Accepted by some replica within the window.
    Accepted,
    /// Another request holds an unconfirmed claim for this many more ms.
    Busy(u64),
    /// No answer within the budget, or the store is down.
    Unavailable,
}

struct Held {
    source: String,
    keys: Vec<String>,
    value: String,
}

/// A key (and when its `accepted` should expire) still to be written.
struct Owed {
    source: String,
    keys: Vec<String>,
    until: Instant,
}

/// The shared dedup store of this replica.
pub struct Shared {
    client: Client,
    conn: RwLock<ConnectionManager>,
    prefix: String,
    claim_ms: u64,
    window: Duration,
    budget: Duration,
    pub on_unavailable: OnUnavailable,
    up: AtomicBool,
    /// Whether [`Shared::check`] has run once.
    checked: AtomicBool,
    misses: AtomicU32,
    /// Set on a READONLY answer (the primary became a replica) and after
    /// [`RECONNECT_AFTER_FAILED_PROBES`] failed probes in a row: the next probe reconnects
    /// anew, which resolves the service name again.
    stale: AtomicBool,
    /// Probes failed in a row.
    failed_probes: AtomicU32,
    owed: Mutex<VecDeque<Owed>>,
    /// Wakes the probe when a request finds the store down, so a passing stall (a few missed
    /// budgets) costs a probe's round trip, not a probe period.
    wake: Notify,
    /// One request per event id on this replica talks to the shared store at a time; the
    /// others wait and then find the event in the local index, instead of a 503 from their
    /// own replica's claim.
    gates: Mutex<HashMap<String, Arc<Notify>>>,
    claim: Script,
    release: Script,
}

/// The decision for one event.
#[derive(Debug)]
pub enum Decision {
    New,
    Duplicate,
    /// Another replica is accepting this id right now: 503 with this `Retry-After`.
    Claimed {
        retry_after_secs: u64,
    },
    /// Shared store unavailable under `on_unavailable = "reject"`.
    Unavailable,
}

impl From<Accepted> for Decision {
    fn from(a: Accepted) -> Self {
        match a {
            Accepted::New => Decision::New,
            Accepted::Duplicate => Decision::Duplicate,
        }
    }
}

impl Shared {
    /// The shared store of `config`, or `None` when it is off. Connects lazily: a Redis that is
    /// down at start is reported by `/readyz`, not a start-up failure. Needs a Tokio runtime.
    pub fn new(config: &DedupConfig, window_secs: u64) -> Result<Option<Arc<Shared>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let client = config.client()?;
        let budget = Duration::from_millis(config.timeout_ms);
        let conn = manager(&client, budget).map_err(|e| format!("dedup.shared: {e}"))?;
        Ok(Some(Arc::new(Shared {
            client,
            conn: RwLock::new(conn),
            prefix: config.key_prefix.clone(),
            claim_ms: config.claim_secs * 1000,
            window: Duration::from_secs(window_secs),
            budget,
            on_unavailable: config.on_unavailable,
            up: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            misses: AtomicU32::new(0),
            stale: AtomicBool::new(false),
            failed_probes: AtomicU32::new(0),
            owed: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            gates: Mutex::new(HashMap::new()),
            claim: Script::new(CLAIM_LUA),
            release: Script::new(RELEASE_LUA),
        })))
    }

    /// `ok` or `unavailable`, for `/readyz`.
    pub fn status(&self) -> &'static str {
        if self.up.load(Ordering::Relaxed) {
            "ok"
        } else {
            "unavailable"
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The Redis keys of an entry: its id, and its content key where the provider has one.
    pub fn keys(&self, e: &Entry) -> Vec<String> {
        redis_keys(
            &self.prefix,
            &e.source,
            &e.message_id,
            e.content_key.as_slice(),
        )
    }

    fn conn(&self) -> ConnectionManager {
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs one call within the budget, timing it and tracking the store's health.
    async fn call<T>(
        &self,
        step: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.budget, fut).await;
        let m = metrics::get();
        m.dedup_shared_seconds
            .get_or_create(&DedupStepLabel { step })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(v)) => {
                self.misses.store(0, Ordering::Relaxed);
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(step, &e);
                None
            }
            Err(_) => {
                if self.misses.fetch_add(1, Ordering::Relaxed) + 1 >= DOWN_AFTER_TIMEOUTS {
                    self.down(step, "no answer within dedup.timeout_ms");
                }
                None
            }
        }
    }

    fn failed(&self, step: &'static str, e: &RedisError) {
        if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
            self.stale.store(true, Ordering::Relaxed);
        }
        // Whatever the error, the next requests should not pay for it: the probe decides
        // when the store is back.
        self.down(step, &e.to_string());
    }

    fn down(&self, step: &'static str, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(step, error = %why, on_unavailable = ?self.on_unavailable, "shared dedup store unavailable");
            metrics::get().dedup_shared_up.set(0);
            self.wake.notify_one();
        }
    }

    async fn take(&self, source: &str, keys: &[String]) -> Claim {
        if !self.is_up() {
            return Claim::Unavailable;
        }
        let value = format!("pending:{}", hex::encode(rand::random::<[u8; 12]>()));
        let mut conn = self.conn();
        let mut inv = self.claim.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        inv.arg(&value).arg(self.claim_ms);
        match self.call("claim", inv.invoke_async::<i64>(&mut conn)).await {
            Some(0) => Claim::Held(Held {
                source: source.to_string(),
                keys: keys.to_vec(),
                value,
            }),
            Some(n) if n < 0 => Claim::Accepted,
            Some(ms) => Claim::Busy(ms as u64),
            None => Claim::Unavailable,
        }
    }

    /// Marks the keys `accepted` for the dedup window; a failure is counted and the keys are
    /// written by the background task once the store answers again.
    async fn confirm(&self, held: Held) {
        let until = Instant::now() + self.window;
        if self.is_up()
            && self
                .write_accepted(&held.keys, self.window, "confirm")
                .await
        {
            return;
        }
        error_count(&held.source, "confirm");
        self.owe(Owed {
            source: held.source,
            keys: held.keys,
            until,
        });
    }

    async fn write_accepted(&self, keys: &[String], ttl: Duration, step: &'static str) -> bool {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.set_options(
                k,
                ACCEPTED,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(ttl.as_millis().max(1) as u64)),
            )
            .ignore();
        }
        let mut conn = self.conn();
        self.call(step, pipe.query_async::<()>(&mut conn))
            .await
            .is_some()
    }

    async fn release(&self, held: Held) {
        let mut conn = self.conn();
        let mut inv = self.release.prepare_invoke();
        for k in &held.keys {
            inv.key(k);
        }
        inv.arg(&held.value);
        if self
            .call("release", inv.invoke_async::<i64>(&mut conn))
            .await
            .is_none()
        {
            // The claim expires after claim_secs; until then a retry is answered 503.
            error_count(&held.source, "release");
        }
    }

    fn owe(&self, o: Owed) {
        let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        if owed.len() >= BACKLOG_MAX {
            if let Some(dropped) = owed.pop_front() {
                error_count(&dropped.source, "backlog_full");
            }
        }
        owed.push_back(o);
    }

    /// At start: an event this replica wrote within the last `claim_secs` may have lost its
    /// confirmation to the crash (killed between the disk write and the confirm). Its claim
    /// would expire and a retry on another replica be published again; so every such event is
    /// owed as `accepted`, written as soon as the store answers. Returns how many.
    pub fn owe_recent(&self, store: &crate::store::Store) -> std::io::Result<usize> {
        let now = crate::now_secs();
        let since = now.saturating_sub(self.claim_ms.div_ceil(1000) + 1);
        let starts = store.segment_starts();
        // The newest segment that begins at or before `since` (or the oldest kept).
        let mut from = starts.first().copied().unwrap_or(1);
        for &first in starts.iter().rev() {
            if let Some((_, _, e)) = store.reader(first)?.next_record()? {
                if e.timestamp <= since {
                    from = first;
                    break;
                }
            }
        }
        let mut reader = store.reader(from)?;
        let (at, mut n) = (Instant::now(), 0);
        while let Some((_, _, e)) = reader.next_record()? {
            if e.replay || e.timestamp < since {
                continue;
            }
            // Forgotten since it was accepted (`hookgate forget`): owing it would write it
            // back as accepted on every replica. The store's open re-indexed the log, so an
            // id the table does not have was forgotten (or has expired).
            if let Ok(crate::store::Local::Absent) = store.lookup(&e, now) {
                continue;
            }
            let left = (e.timestamp + self.window.as_secs()).saturating_sub(now);
            self.owe(Owed {
                source: e.source.clone(),
                keys: self.keys(&e),
                until: at + Duration::from_secs(left),
            });
            n += 1;
        }
        Ok(n)
    }

    /// `hookgate forget` on a running gateway: deletes the id's shared key (and the event's
    /// content keys) too, so a redelivery is accepted again on every replica. `Ok(true)` when
    /// a key was deleted.
    pub async fn forget(
        &self,
        source: &str,
        id: &str,
        content_keys: &[String],
    ) -> Result<bool, String> {
        let mut conn = self.conn();
        let mut del = redis::cmd("DEL");
        del.arg(redis_keys(&self.prefix, source, id, content_keys));
        match tokio::time::timeout(PROBE_TIMEOUT, del.query_async::<i64>(&mut conn)).await {
            Ok(Ok(n)) => Ok(n > 0),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer from the shared dedup store".into()),
        }
    }

    /// Probes once and records the result: at start, before the listeners open, so the first
    /// requests know whether to ask the store (bounded by a second when it does not answer).
    pub async fn check(&self) -> bool {
        let probed = self.probe().await;
        let up = probed.is_ok();
        // The first check says it too: a store unreachable from the start (a wrong CA, a
        // wrong name) was never logged, since `up` starts false (found by a review).
        let first = !self.checked.swap(true, Ordering::Relaxed);
        if up != self.up.swap(up, Ordering::Relaxed) || (first && !up) {
            metrics::get().dedup_shared_up.set(up as i64);
            match probed {
                Ok(()) => tracing::info!("shared dedup store available"),
                Err(why) => {
                    tracing::warn!(error = %why, on_unavailable = ?self.on_unavailable, "shared dedup store unavailable")
                }
            }
        }
        up
    }

    /// Probes the store, reconnects when needed, and writes what is owed, until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let up = self.check().await;
            if up {
                self.pay_back().await;
            }
            let wait = if up { PROBE_UP } else { PROBE_DOWN };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// A write (a READONLY replica fails it) within [`PROBE_TIMEOUT`]; `Err` says why not.
    async fn probe(&self) -> Result<(), String> {
        if self.stale.swap(false, Ordering::Relaxed) {
            match manager(&self.client, self.budget) {
                Ok(c) => *self.conn.write().unwrap_or_else(PoisonError::into_inner) = c,
                Err(e) => tracing::warn!(error = %e, "shared dedup store: reconnect failed"),
            }
        }
        let mut conn = self.conn();
        let key = format!("{}:probe", self.prefix);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("PX").arg(10_000);
        let probe = cmd.query_async::<()>(&mut conn);
        let probed = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => {
                self.failed_probes.store(0, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Err(e)) => {
                if e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
                    self.stale.store(true, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "shared dedup probe failed");
                e.to_string()
            }
            Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
        };
        // Failing for a while: the next probe starts from a new connection (resolving the
        // name again). The manager replaces a connection only when it fails: one that stops
        // answering without closing (a partition, a dropped NAT entry, a failed-over
        // primary's old address) only times out, and was kept for good, Redis up (found by a
        // black-box review). Not at every failed probe: a Redis answering slowly would get a
        // new connection five times a second from every replica.
        let failed = self.failed_probes.fetch_add(1, Ordering::Relaxed) + 1;
        if failed.is_multiple_of(RECONNECT_AFTER_FAILED_PROBES) {
            self.stale.store(true, Ordering::Relaxed);
        }
        Err(probed)
    }

    async fn pay_back(&self) {
        loop {
            let batch: Vec<Owed> = {
                let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
                let n = owed.len().min(BACKLOG_BATCH);
                owed.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let now = Instant::now();
            // Entries whose window is over are owed nothing; a batch of only those must not
            // become an empty pipeline (redis refuses it, and the batch went back to the
            // front of the queue forever: found by a review in session 12).
            if batch.iter().all(|o| o.until <= now) {
                continue;
            }
            let mut pipe = redis::pipe();
            for o in batch.iter().filter(|o| o.until > now) {
                for k in &o.keys {
                    pipe.set_options(
                        k,
                        ACCEPTED,
                        redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(
                            (o.until - now).as_millis().max(1) as u64,
                        )),
                    )
                    .ignore();
                }
            }
            let mut conn = self.conn();
            let written =
                tokio::time::timeout(PROBE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
            if !matches!(written, Ok(Ok(()))) {
                let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
                for o in batch.into_iter().rev() {
                    owed.push_front(o);
                }
                return;
            }
            metrics::get()
                .dedup_shared_repaid
                .inc_by(batch.len() as u64);
        }
    }

    /// Waits for this replica's turn on `key` (see `gates`), within `deadline`.
    async fn gate(self: &Arc<Self>, key: &str, deadline: Instant) -> Option<Gate> {
        loop {
            let notified = {
                let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
                match gates.get(key) {
                    None => {
                        gates.insert(key.to_string(), Arc::new(Notify::new()));
                        return Some(Gate {
                            shared: self.clone(),
                            key: key.to_string(),
                        });
                    }
                    Some(n) => n.clone(),
                }
            };
            let wait = notified.notified();
            // The holder removes its entry before notifying: re-check before sleeping.
            if !self
                .gates
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key)
                .is_some_and(|n| Arc::ptr_eq(n, &notified))
            {
                continue;
            }
            if tokio::time::timeout_at(deadline.into(), wait)
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

struct Gate {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let n = self
            .shared
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}

fn manager(client: &Client, budget: Duration) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(budget.max(Duration::from_millis(100))))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(2);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

fn error_count(source: &str, step: &'static str) {
    metrics::get()
        .dedup_shared_errors
        .get_or_create(&DedupErrorLabels {
            source: source.to_string(),
            step,
        })
        .inc();
}

fn claim_count(source: &str, result: &'static str) {
    metrics::get()
        .dedup_shared_claims
        .get_or_create(&DedupClaimLabels {
            source: source.to_string(),
            result,
        })
        .inc();
}

/// Decides one event: without a shared store, [`Store::accept`]; with one, the two-phase
/// claim around it (module doc).
pub async fn accept(
    store: &SharedStore,
    shared: Option<&Arc<Shared>>,
    entry: &Entry,
    now_secs: u64,
    deadline: Duration,
) -> Result<Decision, StoreError> {
    let Some(shared) = shared else {
        return store
            .accept(entry, now_secs, deadline)
            .await
            .map(Decision::from);
    };
    let started = Instant::now();
    let m = metrics::get();
    match store.lookup(entry, now_secs)? {
        Local::Seen => return Ok(Decision::Duplicate),
        // Being written on this replica: its fate is ours, no round trip.
        Local::Writing => {
            return store
                .accept(entry, now_secs, deadline)
                .await
                .map(Decision::from)
        }
        Local::Absent => {}
    }
    let keys = shared.keys(entry);
    let Some(_gate) = shared.gate(&keys[0], started + deadline).await else {
        return Err(StoreError::Deadline);
    };
    // The request that held the gate may have accepted it meanwhile.
    if store.lookup(entry, now_secs)? != Local::Absent {
        return store
            .accept(entry, now_secs, deadline)
            .await
            .map(Decision::from);
    }
    let left = deadline.saturating_sub(started.elapsed());
    match shared.take(&entry.source, &keys).await {
        Claim::Accepted => {
            claim_count(&entry.source, "duplicate");
            Ok(Decision::Duplicate)
        }
        Claim::Busy(ms) => {
            claim_count(&entry.source, "conflict");
            Ok(Decision::Claimed {
                retry_after_secs: ms.div_ceil(1000).max(1),
            })
        }
        Claim::Unavailable => {
            error_count(&entry.source, "claim");
            match shared.on_unavailable {
                OnUnavailable::Reject => Ok(Decision::Unavailable),
                OnUnavailable::Accept => {
                    m.dedup_shared_fallbacks
                        .get_or_create(&SourceLabel {
                            source: entry.source.clone(),
                        })
                        .inc();
                    let decided = store.accept(entry, now_secs, left).await?;
                    if decided == Accepted::New {
                        // Written as `accepted` when the store is back, so a retry that
                        // reaches another replica then is a duplicate.
                        shared.owe(Owed {
                            source: entry.source.clone(),
                            keys,
                            until: Instant::now() + shared.window,
                        });
                    }
                    Ok(decided.into())
                }
            }
        }
        Claim::Held(held) => {
            claim_count(&entry.source, "claimed");
            match store.accept(entry, now_secs, left).await {
                // A local Duplicate here is a regrouped request (same content key) accepted on
                // this replica a moment ago: accepted all the same.
                Ok(decided) => {
                    shared.confirm(held).await;
                    Ok(decided.into())
                }
                Err(StoreError::Deadline) => {
                    // The write may still land: confirm or release once its fate is known.
                    settle_later(store, shared.clone(), entry, now_secs, held);
                    Err(StoreError::Deadline)
                }
                Err(e) => {
                    shared.release(held).await;
                    Err(e)
                }
            }
        }
    }
}

/// After a request gave up waiting for the disk: confirms the claim once the event is on disk,
/// releases it if the write failed; gives up (the claim expires) after `claim_secs`.
fn settle_later(
    store: &SharedStore,
    shared: Arc<Shared>,
    entry: &Entry,
    now_secs: u64,
    held: Held,
) {
    let store = store.clone();
    let entry = entry.clone();
    let until = Instant::now() + Duration::from_millis(shared.claim_ms);
    tokio::spawn(async move {
        while Instant::now() < until {
            match store.lookup(&entry, now_secs) {
                Ok(Local::Seen) => return shared.confirm(held).await,
                Ok(Local::Absent) => return shared.release(held).await,
                Ok(Local::Writing) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::config::Config;
    use crate::store::Entry;

    fn parse(dedup: &str) -> Result<Config, String> {
        let text = format!("[store]\npath = \"x\"\n{dedup}");
        Config::parse(&text, &HashMap::new(), Path::new("/etc/hookgate")).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_the_defaults() {
        let c = parse("").unwrap();
        assert!(!c.dedup.enabled());
        assert_eq!(c.dedup.key_prefix, "hookgate");
        assert_eq!(c.dedup.claim_secs, 30);
        assert_eq!(c.dedup.on_unavailable, super::OnUnavailable::Accept);
        let c = parse("[dedup]\nshared = \"\"\n").unwrap();
        assert!(!c.dedup.enabled(), "empty: this node only");
        let c = parse(
            "[dedup]\nshared = \"redis://:pw@10.0.0.5:6380/2\"\non_unavailable = \"reject\"\n",
        )
        .unwrap();
        assert!(c.dedup.enabled());
        assert_eq!(c.dedup.on_unavailable, super::OnUnavailable::Reject);
        assert!(
            !format!("{:?}", c.dedup).contains("pw"),
            "Debug redacts the password"
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        for (toml, expect) in [
            ("[dedup]\nshard = \"redis://h\"\n", "shard"),
            (
                "[dedup]\nshared = \"http://h\"\n",
                "dedup.shared: not a redis:// or rediss://",
            ),
            (
                "[dedup]\nshared = \"redis://h\"\non_unavailable = \"maybe\"\n",
                "maybe",
            ),
            (
                "[dedup]\nshared = \"redis://h\"\nclaim_secs = 5\n",
                "dedup.claim_secs: must be greater than server.request_timeout_secs",
            ),
            (
                "[dedup]\nshared = \"redis://h\"\nkey_prefix = \"\"\n",
                "dedup.key_prefix",
            ),
            (
                "[dedup]\nshared = \"redis://h\"\ntimeout_ms = 0\n",
                "dedup.timeout_ms",
            ),
            (
                "[dedup]\nshared = \"redis://h\"\n[dedup.tls]\nca = \"ca.pem\"\n",
                "dedup.tls: set, but dedup.shared is not rediss://",
            ),
            (
                "[dedup]\nshared = \"rediss://h\"\n[dedup.tls]\nca = \"missing-ca.pem\"\n",
                "dedup.tls.ca: cannot read /etc/hookgate/missing-ca.pem",
            ),
            (
                "[dedup]\nshared = \"rediss://h\"\n[dedup.tls]\nkeyfile = \"k\"\n",
                "keyfile",
            ),
            (
                "[dedup]\n[dedup.tls]\nca = \"ca.pem\"\n",
                "dedup.tls: set, but dedup.shared is empty",
            ),
        ] {
            let e = parse(toml).expect_err(toml);
            assert!(e.contains(expect), "{toml}: {e}");
        }
        // Files that are there but unusable, checked as `[amqp.tls]` checks them (redis-rs
        // took a key as an empty root store, and a key of another certificate until connect).
        let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        for (files, expect) in [
            (format!("ca = \"{tls}/a.key\""), "dedup.tls.ca"),
            (
                format!("ca = \"{tls}/a.crt\"\ncert = \"{tls}/a.crt\"\nkey = \"{tls}/b.key\""),
                "does not fit dedup.tls.cert",
            ),
            (
                format!("ca = \"{tls}/a.crt\"\ncert = \"{tls}/a.key\"\nkey = \"{tls}/a.key\""),
                "dedup.tls.cert",
            ),
        ] {
            let toml = format!("[dedup]\nshared = \"rediss://h\"\n[dedup.tls]\n{files}\n");
            let e = parse(&toml).expect_err(&toml);
            assert!(e.contains(expect), "{toml}: {e}");
        }
        let good = format!(
            "[dedup]\nshared = \"rediss://h\"\n[dedup.tls]\nca = \"{tls}/a.crt\"\ncert = \"{tls}/a.crt\"\nkey = \"{tls}/a.key\"\n"
        );
        assert!(parse(&good).is_ok(), "{:?}", parse(&good).err());
    }

    /// A private redis-server, killed when dropped (a failed assertion, or a test that never
    /// stops its second one, left it running past the test binary).
    struct RedisServer(std::process::Child);

    impl RedisServer {
        fn kill(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.kill();
        }
    }

    /// A loopback port nothing listens on now.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    }

    /// A private redis-server on `port` (AOF on, so a kill -9 and restart keeps its keys).
    fn redis(port: u16, dir: &Path) -> RedisServer {
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/ensure-redis.sh)");
        let server = RedisServer(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    fn errors(source: &str, step: &'static str) -> u64 {
        crate::metrics::get()
            .dedup_shared_errors
            .get_or_create(&super::DedupErrorLabels {
                source: source.into(),
                step,
            })
            .get()
    }

    /// Redis failing after the claim: a failed confirm is counted and the key written
    /// `accepted` once Redis is back; a failed release is counted and leaves the claim to
    /// expire (retries meanwhile are 503, never a second acceptance).
    #[tokio::test]
    async fn confirm_and_release_failures_are_counted_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = redis(port, dir.path());
        // Generous: no call here is meant to miss its budget (this redis-server syncs every
        // write, on a loaded machine), and the unreleased claim must outlive the kill, the
        // restart and the reconnect below.
        let config = super::DedupConfig {
            shared: format!("redis://127.0.0.1:{port}/"),
            claim_secs: 5,
            timeout_ms: 5000,
            ..Default::default()
        };
        let shared = answering(&config).await;
        let key = |id: &str| vec![format!("hookgate:unit:{id}")];
        let (super::Claim::Held(confirmed), super::Claim::Held(released)) = (
            shared.take("unit", &key("c")).await,
            shared.take("unit", &key("r")).await,
        ) else {
            panic!("claims taken");
        };
        assert!(
            matches!(shared.take("unit", &key("c")).await, super::Claim::Busy(ms) if ms <= 5000)
        );

        server.kill();
        shared.confirm(confirmed).await;
        shared.release(released).await;
        assert_eq!(errors("unit", "confirm"), 1);
        assert_eq!(errors("unit", "release"), 1);
        assert!(!shared.is_up());
        assert!(matches!(
            shared.take("unit", &key("x")).await,
            super::Claim::Unavailable
        ));

        let _server = redis(port, dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !shared.check().await {
            assert!(std::time::Instant::now() < deadline, "never reconnected");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        shared.pay_back().await;
        assert!(matches!(
            shared.take("unit", &key("c")).await,
            super::Claim::Accepted
        ));
        // The unreleased claim is still there, then expires: accepted by the next claim.
        assert!(matches!(
            shared.take("unit", &key("r")).await,
            super::Claim::Busy(_)
        ));
        tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
        assert!(matches!(
            shared.take("unit", &key("r")).await,
            super::Claim::Held(_)
        ));
    }

    /// The shared store of `config` once its Redis answers. The first probe can miss its
    /// budget on a loaded machine (a CI run failed there while the suite ran in parallel):
    /// wait for the server, boundedly.
    async fn answering(config: &super::DedupConfig) -> std::sync::Arc<super::Shared> {
        let shared = super::Shared::new(config, 3600).unwrap().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !shared.check().await {
            assert!(std::time::Instant::now() < deadline, "redis never answered");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        shared
    }

    /// A TCP relay to `to` whose connections open before [`Silencer::silence`] stop
    /// answering without closing (a partition, a dropped NAT entry, a failed-over host's old
    /// address), while connections opened after it are relayed.
    struct Silencer {
        port: u16,
        cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
        accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl Silencer {
        async fn start(to: u16) -> Silencer {
            use std::sync::atomic::{AtomicU64, Ordering};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cut = std::sync::Arc::new(AtomicU64::new(0));
            let accepted = std::sync::Arc::new(AtomicU64::new(0));
            let (c, a) = (cut.clone(), accepted.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let generation = a.fetch_add(1, Ordering::SeqCst);
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", to))
                        .await
                        .unwrap();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(Self::relay(cr, sw, generation, c.clone()));
                    tokio::spawn(Self::relay(sr, cw, generation, c.clone()));
                }
            });
            Silencer {
                port,
                cut,
                accepted,
            }
        }

        async fn relay(
            mut r: tokio::net::tcp::OwnedReadHalf,
            mut w: tokio::net::tcp::OwnedWriteHalf,
            generation: u64,
            cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
        ) {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n @ 1..) = r.read(&mut buf).await {
                if generation < cut.load(std::sync::atomic::Ordering::SeqCst) {
                    // Silent, not closed: both halves stay open.
                    std::future::pending::<()>().await;
                }
                if w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }

        /// Every connection open now stops answering.
        fn silence(&self) {
            use std::sync::atomic::Ordering;
            self.cut
                .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
        }
    }

    /// A connection that stops answering without closing is replaced: redis-rs's manager
    /// reconnects only when a connection fails, never after a response timeout, so the
    /// replica stayed "unavailable" (or refused everything under `reject`) for as long as
    /// the dead connection lasted, with Redis up (found by a black-box review).
    #[tokio::test]
    async fn a_connection_that_stops_answering_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let _server = redis(port, dir.path());
        let relay = Silencer::start(port).await;
        // A budget a loaded machine's stall (half a second) does not exceed: the takes that
        // must be Held have to answer within it.
        let config = super::DedupConfig {
            shared: format!("redis://127.0.0.1:{}/", relay.port),
            claim_secs: 30,
            timeout_ms: 1000,
            ..Default::default()
        };
        let shared = answering(&config).await;
        let key = |id: &str| vec![format!("hookgate:silent:{id}")];
        assert!(matches!(
            shared.take("silent", &key("a")).await,
            super::Claim::Held(_)
        ));

        relay.silence();
        for _ in 0..super::DOWN_AFTER_TIMEOUTS {
            assert!(!matches!(
                shared.take("silent", &key("b")).await,
                super::Claim::Held(_)
            ));
        }
        assert!(!shared.is_up(), "missed budgets mark the store down");
        // Five probes fail (a second each, the budget) before one reconnects from scratch.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !shared.check().await {
            assert!(
                std::time::Instant::now() < deadline,
                "still on the silent connection after 30 s"
            );
            tokio::time::sleep(super::PROBE_DOWN).await;
        }
        assert!(matches!(
            shared.take("silent", &key("c")).await,
            super::Claim::Held(_)
        ));
    }

    /// A start owes the shared store this replica's recent events (a crash may have left
    /// their claims unconfirmed), but not one forgotten since: a restart within `claim_secs`
    /// of a `forget` wrote the id back as accepted on every replica (found by a review).
    #[tokio::test]
    async fn a_start_owes_nothing_for_an_id_forgotten_since() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            path: dir.path().join("store"),
            dedup_window_secs: 3600,
            max_outbox_entries: 100,
            retain_secs: 3600,
            retain_max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
            commit_delay_us: 0,
        };
        let now = crate::now_secs();
        let entry = |id: &str| Entry::test_push(id, now, b"{}".to_vec());
        let s = crate::store::Store::open(&cfg).unwrap();
        for id in ["kept", "forgotten"] {
            s.accept(&entry(id), now, std::time::Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert!(s.forget("gh", "forgotten", &[]).unwrap().is_some());
        s.close();
        drop(s);
        let s =
            crate::store::Store::open_waiting(&cfg, std::time::Duration::from_secs(10)).unwrap();
        // Nothing answers there: what is owed is only queued.
        let config = super::DedupConfig {
            shared: "redis://127.0.0.1:1/".into(),
            ..Default::default()
        };
        let shared = super::Shared::new(&config, 3600).unwrap().unwrap();
        assert_eq!(shared.owe_recent(&s).unwrap(), 1);
        let owed: Vec<_> = shared
            .owed
            .lock()
            .unwrap()
            .iter()
            .flat_map(|o| o.keys.clone())
            .collect();
        assert_eq!(owed, shared.keys(&entry("kept")));
    }

    /// Fallback acceptances whose window ran out during a long outage are owed nothing; a
    /// whole batch of them must not stop the ones behind it from being written.
    #[tokio::test]
    async fn a_batch_of_expired_debts_does_not_block_the_rest() {
        let config = super::DedupConfig {
            shared: "redis://127.0.0.1:6379/".into(),
            timeout_ms: 1000,
            ..Default::default()
        };
        let shared = answering(&config).await;
        let run = format!("hookgate:unit-owed-{}", std::process::id());
        let now = tokio::time::Instant::now().into_std();
        {
            let mut owed = shared.owed.lock().unwrap();
            for i in 0..super::BACKLOG_BATCH + 10 {
                owed.push_back(super::Owed {
                    source: "unit".into(),
                    keys: vec![format!("{run}:old-{i}")],
                    until: now - std::time::Duration::from_secs(1),
                });
            }
            owed.push_back(super::Owed {
                source: "unit".into(),
                keys: vec![format!("{run}:live")],
                until: now + std::time::Duration::from_secs(60),
            });
        }
        shared.pay_back().await;
        assert!(shared.owed.lock().unwrap().is_empty());
        assert!(matches!(
            shared.take("unit", &[format!("{run}:live")]).await,
            super::Claim::Accepted
        ));
    }

    /// An Alipay or WeChat Pay v2 event holds two shared keys, its id and its content key;
    /// `forget` (through the admin API, or on a stopped store) deletes both, built as the
    /// claim built them, or the redelivery would still be a duplicate on every replica.
    #[tokio::test]
    async fn forget_deletes_the_content_key_with_the_id() {
        let config = super::DedupConfig {
            shared: "redis://127.0.0.1:6379/".into(),
            key_prefix: format!("hookgate-unit-forget-{}", std::process::id()),
            timeout_ms: 1000,
            ..Default::default()
        };
        let shared = answering(&config).await;
        let content_key = format!("sha256:{}", "cd".repeat(32));
        let entry = Entry {
            routing_key: "pay.alipay.trade.success".into(),
            message_id: "2025010100222000000000000041".into(),
            kind: "alipay.trade.success".into(),
            source: "pay".into(),
            provider: "alipay".into(),
            content_key: Some(content_key.clone()),
            timestamp: 1000,
            replay: false,
            body: b"{}".to_vec(),
        };
        let keys = shared.keys(&entry);
        assert_eq!(keys.len(), 2);
        let super::Claim::Held(held) = shared.take("pay", &keys).await else {
            panic!("claim taken");
        };
        shared.confirm(held).await;
        let again = [entry.message_id.clone(), content_key.clone()];
        for k in &again {
            let one = vec![format!("{}:pay:{k}", config.key_prefix)];
            assert!(
                matches!(shared.take("pay", &one).await, super::Claim::Accepted),
                "{k}"
            );
        }
        let id = &entry.message_id;
        let blocking = super::forget_blocking(&config, "pay", id, &[]).unwrap();
        assert!(blocking, "the id's key");
        assert!(
            matches!(shared.take("pay", &keys).await, super::Claim::Accepted),
            "the content key is still there"
        );
        let ck = std::slice::from_ref(&content_key);
        assert!(shared.forget("pay", id, ck).await.unwrap());
        let super::Claim::Held(held) = shared.take("pay", &keys).await else {
            panic!("both keys gone: a new claim");
        };
        shared.release(held).await;
        assert!(!super::forget_blocking(&config, "pay", id, ck).unwrap());
    }

    #[test]
    fn the_password_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("redis-url"),
            "redis://:s3cret@127.0.0.1:6379/\n",
        )
        .unwrap();
        let text = "[store]\npath = \"x\"\n[dedup]\nshared = \"file:redis-url\"\n";
        let c = Config::parse(text, &HashMap::new(), dir.path()).unwrap();
        assert_eq!(c.dedup.shared, "redis://:s3cret@127.0.0.1:6379/");
    }
}
