//! Live reload (SIGHUP): what a config change may swap while the gateway runs.
//!
//! The sources (providers and their secrets), guards and rate limits form one [`Runtime`]
//! snapshot behind an `ArcSwap` in the [`Gateway`](crate::pipeline::Gateway). A request loads
//! the snapshot once, at its start, and finishes with it, so a reload never mixes two configs
//! in one request and drops no connection; the store, the relay and the listeners are not
//! touched. Keys those need (listeners, store, amqp, admin) are compared and reported as
//! needing a restart, never half-applied.
//!
//! [`Summary`] describes a config without a secret in it: display values for plain keys and a
//! keyed fingerprint per source ([`FingerprintKey`]). `GET /config` on the admin listener
//! serves the running gateway's, and `hookgate check --diff` compares a file against it with
//! [`diff`].

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{redact_url, Config, ForwardedHeader, RateLimit};
use crate::limit::ClientLimiter;
use crate::pipeline::{Gateway, Source};

/// The reloadable part of the config, built and checked as a whole before it is swapped in.
pub struct Runtime {
    pub sources: HashMap<String, Source>,
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_header: ForwardedHeader,
    pub client_limiter: Option<Arc<ClientLimiter>>,
    client_rate_limit: Option<RateLimit>,
    /// What this snapshot serves, for `GET /config` and the next reload's comparison. Its
    /// `restart` keys are those the process started with (a reload does not apply them).
    pub summary: Summary,
    /// The key of the summary's fingerprints, the same for every snapshot of a process.
    key: FingerprintKey,
}

impl Runtime {
    /// Builds every source of `config`. A source or limiter whose `rate_limit` is unchanged
    /// from `previous` keeps its buckets, so a reload does not hand out a fresh burst.
    pub fn build(
        config: &Config,
        key: &FingerprintKey,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, String> {
        let mut sources = HashMap::new();
        for c in &config.sources {
            let mut source = Source::build(c)?;
            if let Some(old) = previous.and_then(|p| p.sources.get(&c.name)) {
                if old.rate_limit == source.rate_limit {
                    source.limiter = old.limiter.clone();
                }
            }
            sources.insert(c.name.clone(), source);
        }
        let client_rate_limit = config.server.client_rate_limit;
        let client_limiter = match previous {
            Some(p) if p.client_rate_limit == client_rate_limit => p.client_limiter.clone(),
            _ => client_rate_limit
                .as_ref()
                .map(|r| Arc::new(ClientLimiter::new(r))),
        };
        Ok(Runtime {
            sources,
            trusted_proxies: config.server.trusted_proxies.clone(),
            forwarded_header: config.server.forwarded_header,
            client_limiter,
            client_rate_limit,
            summary: Summary::of(config, key),
            key: key.clone(),
        })
    }
}

/// A config described without secrets: what `check --diff` compares and a reload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Keys that need a restart: display values, or a fingerprint where the value is secret.
    pub restart: BTreeMap<String, String>,
    /// Reloadable keys outside the sources.
    pub server: BTreeMap<String, String>,
    pub sources: BTreeMap<String, SourceSummary>,
    /// [`FingerprintKey::check`] of the key the fingerprints are made with: `check --diff`
    /// refuses to compare with another key's (every fingerprint would differ).
    #[serde(default)]
    pub key_check: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub provider: String,
    /// [`crate::config::SourceConfig::fingerprint`]: changes with any key, secrets included.
    pub fingerprint: String,
}

/// The key of the fingerprints a [`Summary`] shows: `config.key` in the store's directory, 32
/// random bytes the first `serve` writes (owner-only). A fingerprint is an HMAC under it, so
/// what `GET /config` shows cannot be checked offline against guessed secrets or broker
/// passwords, as unkeyed SHA-256 could (found by a review: a word list recovered them).
/// `check --diff`, on the same host, reads the same file to compare.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl FingerprintKey {
    const FILE: &'static str = "config.key";

    /// The key of the store at `store` (its directory), made now if there is none or it is
    /// damaged: it is not precious (a new one only changes the fingerprints), and a start must
    /// not fail for good over a write that a full disk or a crash cut short. Written to a
    /// temporary file, synced, then renamed into place, so a reader never sees half of it.
    pub fn load_or_create(store: &Path) -> Result<FingerprintKey, String> {
        let path = store.join(Self::FILE);
        match std::fs::metadata(&path) {
            // Any other problem (permissions, a read error) is said, not papered over.
            Ok(m) if m.len() == 32 => return Self::load(store),
            Ok(m) => tracing::warn!(
                path = %path.display(),
                bytes = m.len(),
                "the config fingerprints' key is damaged; making a new one (fingerprints change)"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
        let tmp = store.join(format!("{}.tmp", Self::FILE));
        let fresh = providers::random_array::<32>();
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&fresh)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(store)?.sync_all())
            .map_err(|e| {
                format!(
                    "writing {} (by way of {}): {e}",
                    path.display(),
                    tmp.display()
                )
            })?;
        Ok(FingerprintKey(fresh))
    }

    /// The key `serve` made for the store at `store`.
    pub fn load(store: &Path) -> Result<FingerprintKey, String> {
        let path: PathBuf = store.join(Self::FILE);
        let mut key = [0u8; 32];
        let mut extra = [0u8; 1];
        std::fs::File::open(&path)
            .and_then(|mut f| {
                f.read_exact(&mut key)?;
                match f.read(&mut extra)? {
                    0 => Ok(()),
                    _ => Err(std::io::Error::other("longer than 32 bytes")),
                }
            })
            .map_err(|e| {
                format!(
                    "reading {} (the key of the config fingerprints; a damaged one may be removed, `serve` makes a new one): {e}",
                    path.display()
                )
            })?;
        Ok(FingerprintKey(key))
    }

    /// A fixed key, for tests that compare summaries.
    pub fn fixed(byte: u8) -> FingerprintKey {
        FingerprintKey([byte; 32])
    }

    /// What tells this key from another without giving it away.
    pub fn check(&self) -> String {
        self.of(b"hookgate config key check", 12)
    }

    /// `hmac:` and the first `hex_len` hex digits of HMAC-SHA-256 of `value` under the key.
    fn of(&self, value: &[u8], hex_len: usize) -> String {
        let mac = hex::encode(providers::hmac_sha256(&self.0, &[value]));
        format!("hmac:{}", &mac[..hex_len.min(mac.len())])
    }
}

impl Summary {
    pub fn of(c: &Config, key: &FingerprintKey) -> Summary {
        // The first 12 hex digits: enough to see a change.
        let short_fingerprint = |value: &str| key.of(value.as_bytes(), 12);
        let s = &c.server;
        let mut restart = BTreeMap::new();
        let mut put = |k: &str, v: String| restart.insert(k.to_string(), v);
        put("server.listen", s.listen.to_string());
        put("server.admin_listen", s.admin_listen.to_string());
        put(
            "server.admin_token",
            s.admin_token
                .as_ref()
                .map_or("unset".into(), |t| short_fingerprint(t.expose())),
        );
        put("server.workers", s.workers.to_string());
        put("server.max_connections", s.max_connections.to_string());
        put(
            "server.request_timeout_secs",
            s.request_timeout_secs.to_string(),
        );
        put(
            "server.shutdown_timeout_secs",
            s.shutdown_timeout_secs.to_string(),
        );
        // Certificate files are re-read by a reload; which files, and whether TLS is on, is
        // the listener's set-up.
        put(
            "server.tls",
            s.tls.as_ref().map_or("off".into(), |t| {
                format!("cert {} key {}", t.cert.display(), t.key.display())
            }),
        );
        put(
            "server.log_format",
            s.log_format.map_or("default".into(), |f| f.as_str().into()),
        );
        // The shared dedup client is built at start (the URL may hold a password).
        let d = &c.dedup;
        put(
            "dedup",
            match d.enabled() {
                false => "off".into(),
                true => format!(
                    "{} prefix {} claim {} s on_unavailable {:?} timeout {} ms tls {:?}",
                    short_fingerprint(&d.shared),
                    d.key_prefix,
                    d.claim_secs,
                    d.on_unavailable,
                    d.timeout_ms,
                    d.tls
                ),
            },
        );
        let st = &c.store;
        put("store.path", st.path.display().to_string());
        put("store.dedup_window_secs", st.dedup_window_secs.to_string());
        put(
            "store.max_outbox_entries",
            st.max_outbox_entries.to_string(),
        );
        put("store.retain_secs", st.retain_secs.to_string());
        put("store.retain_max_bytes", st.retain_max_bytes.to_string());
        put("store.segment_bytes", st.segment_bytes.to_string());
        put("store.commit_delay_us", st.commit_delay_us.to_string());
        let a = &c.amqp;
        // The URL may hold the broker's password: shown redacted, compared by fingerprint.
        let urls: Vec<String> = a.url.iter().map(|u| redact_url(u)).collect();
        put(
            "amqp.url",
            format!(
                "{} ({})",
                urls.join(", "),
                short_fingerprint(&a.url.join("\n"))
            ),
        );
        // The files are read at every connect; which files is the relay's set-up.
        put("amqp.tls", format!("{:?}", a.tls));
        put("amqp.exchange", a.exchange.clone());
        put("amqp.queues", format!("{:?}", a.queues));
        put("amqp.max_in_flight", a.max_in_flight.to_string());
        put("amqp.reconnect_max_secs", a.reconnect_max_secs.to_string());
        put("amqp.max_attempts", a.max_attempts.to_string());

        let mut server = BTreeMap::new();
        server.insert(
            "server.trusted_proxies".into(),
            format!("{:?}", s.trusted_proxies),
        );
        server.insert(
            "server.forwarded_header".into(),
            s.forwarded_header.header_name().as_str().into(),
        );
        server.insert(
            "server.client_rate_limit".into(),
            s.client_rate_limit.map_or("off".into(), |r| {
                format!("{}/s burst {}", r.per_second, r.burst)
            }),
        );
        server.insert("server.max_body_bytes".into(), s.max_body_bytes.to_string());
        let sources = c
            .sources
            .iter()
            .map(|src| {
                (
                    src.name.clone(),
                    SourceSummary {
                        provider: src.provider.kind().as_str().into(),
                        fingerprint: key.of(src.fingerprint.as_bytes(), 64),
                    },
                )
            })
            .collect();
        Summary {
            restart,
            server,
            sources,
            key_check: key.check(),
        }
    }
}

/// What changes from one [`Summary`] to the next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Sources whose keys (secrets included) changed.
    pub changed: Vec<String>,
    /// Reloadable server keys: `key: old -> new`.
    pub server: Vec<String>,
    /// Keys that need a restart: `key: old -> new`.
    pub restart: Vec<String>,
}

impl Changes {
    /// Whether anything a reload applies changes.
    pub fn applies_anything(&self) -> bool {
        !(self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.server.is_empty())
    }

    /// One line per change, for `check --diff`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.added.iter().map(|s| format!("+ source {s}")));
        out.extend(self.removed.iter().map(|s| format!("- source {s}")));
        out.extend(self.changed.iter().map(|s| format!("~ source {s}")));
        out.extend(self.server.iter().map(|s| format!("~ {s}")));
        out.extend(
            self.restart
                .iter()
                .map(|s| format!("! {s} (needs a restart)")),
        );
        out
    }
}

fn changed_values(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let none = String::from("(none)");
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (old.get(k).unwrap_or(&none), new.get(k).unwrap_or(&none));
            (a != b).then(|| format!("{k}: {a} -> {b}"))
        })
        .collect()
}

/// What turning `running` into `new` changes.
pub fn diff(running: &Summary, new: &Summary) -> Changes {
    let mut c = Changes::default();
    for (name, s) in &new.sources {
        match running.sources.get(name) {
            None => c.added.push(name.clone()),
            Some(old) if old != s => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    c.removed = running
        .sources
        .keys()
        .filter(|n| !new.sources.contains_key(*n))
        .cloned()
        .collect();
    c.server = changed_values(&running.server, &new.server);
    c.restart = changed_values(&running.restart, &new.restart);
    c
}

/// What `hookgate check` refuses beyond [`Config::load`]: an exposed admin listener without a
/// token, TLS files that do not load. A reload refuses the same.
pub fn check_beyond_load(config: &Config) -> Result<(), String> {
    if let Some(problem) = crate::admin::exposure_problem(&config.server) {
        return Err(problem.to_string());
    }
    if let Some(tls) = &config.server.tls {
        crate::server::tls::TlsCerts::load(tls).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Why a reload from `running` sources to `new` ones is refused, if it is: a file cut off
/// before its `[[sources]]` is still valid TOML, and taken, every provider would get 404 until
/// the next reload. A gateway meant to run without sources (only draining its log) is started
/// that way. `check --diff` says the same.
pub fn sources_problem(new: usize, running: usize) -> Option<&'static str> {
    (new == 0 && running > 0).then_some(
        "the new config has no sources (a file written half-way?); a gateway without sources needs a restart",
    )
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(pub String);

/// Builds the next snapshot from `config`, swaps it in and returns what changed. TLS files are
/// re-read first (`reload_tls`, `true` when they hold a new certificate), so a bad
/// certificate refuses the whole reload. Restart-only
/// keys keep the values the process runs with, so they are reported again on the next
/// reload until the process is restarted.
pub fn apply(
    gw: &Gateway,
    config: &Config,
    reload_tls: impl FnOnce() -> Result<bool, String>,
) -> Result<Changes, ReloadError> {
    check_beyond_load(config).map_err(ReloadError)?;
    let current = gw.runtime.load();
    if let Some(problem) = sources_problem(config.sources.len(), current.sources.len()) {
        return Err(ReloadError(problem.into()));
    }
    let mut next = Runtime::build(config, &current.key, Some(&current)).map_err(ReloadError)?;
    let mut changes = diff(&current.summary, &next.summary);
    next.summary.restart = current.summary.restart.clone();
    if reload_tls().map_err(ReloadError)? {
        changes
            .server
            .push("server.tls: a new certificate, served from the next handshake".into());
    }
    gw.runtime.store(Arc::new(next));
    // An added source's zero-valued series, as at start.
    crate::metrics::get().init_sources(config.sources.iter().map(|s| s.name.as_str()));
    Ok(changes)
}

/// Counts and logs a reload's result; the log names sources and keys, never a value that may
/// be secret (restart keys show fingerprints where they are).
pub fn report(result: &Result<Changes, ReloadError>) {
    let m = crate::metrics::get();
    match result {
        Ok(c) => {
            m.config_reloads
                .get_or_create(&crate::metrics::ResultLabel { result: "ok" })
                .inc();
            tracing::info!(
                added = %c.added.join(","),
                removed = %c.removed.join(","),
                changed = %c.changed.join(","),
                server = %c.server.join("; "),
                "config reloaded"
            );
            for r in &c.restart {
                tracing::warn!(change = %r, "config change needs a restart; not applied");
            }
        }
        Err(e) => {
            m.config_reloads
                .get_or_create(&crate::metrics::ResultLabel { result: "error" })
                .inc();
            tracing::error!(reason = %e, "config reload refused; the running config stays");
        }
    }
}

/// `GET /config`: the running gateway's [`Summary`] (admin token required when set).
async fn summary(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(&gw.runtime.load().summary)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/config", web::get().to(summary));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_server: &str, sources: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra_server}\n[store]\npath = \"/tmp/x\"\n{sources}"
        );
        Config::parse(&text, &HashMap::new(), std::path::Path::new("/")).unwrap()
    }

    static KEY: std::sync::LazyLock<FingerprintKey> =
        std::sync::LazyLock::new(|| FingerprintKey::fixed(7));

    const GH: &str =
        "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"one-secret-value\"]\n";

    #[test]
    fn a_secret_change_shows_as_a_changed_source_without_the_secret() {
        let a = Summary::of(&config("", GH), &KEY);
        let b = Summary::of(&config("", &GH.replace("one-secret", "two-secret")), &KEY);
        let c = diff(&a, &b);
        assert_eq!(c.changed, vec!["gh".to_string()]);
        assert!(c.restart.is_empty() && c.added.is_empty() && c.removed.is_empty());
        let text = serde_json::to_string(&b).unwrap() + &c.lines().join("\n");
        assert!(!text.contains("secret-value"), "{text}");
        assert_eq!(diff(&a, &a), Changes::default());
    }

    /// What `GET /config` shows cannot be recomputed without the store's key (an unkeyed
    /// SHA-256 let a word list recover the secrets and the broker's password).
    #[test]
    fn fingerprints_are_keyed_by_the_store_s_key() {
        let c = config("", GH);
        let a = Summary::of(&c, &FingerprintKey::fixed(1));
        let b = Summary::of(&c, &FingerprintKey::fixed(2));
        assert_ne!(a.sources["gh"].fingerprint, b.sources["gh"].fingerprint);
        assert_ne!(a.restart["amqp.url"], b.restart["amqp.url"]);
        let text = serde_json::to_string(&a).unwrap();
        assert!(
            !text.contains(&c.sources[0].fingerprint["sha256:".len()..]),
            "{text}"
        );
        let unkeyed = hex::encode(providers::sha256(&[c.amqp.url.join("\n").as_bytes()]));
        assert!(!text.contains(&unkeyed[..12]), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let made = FingerprintKey::load_or_create(dir.path()).unwrap();
        let again = FingerprintKey::load_or_create(dir.path()).unwrap();
        assert_eq!(made.0, again.0, "made once, then read");
        assert_eq!(FingerprintKey::load(dir.path()).unwrap().0, made.0);
        let file = dir.path().join(FingerprintKey::FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&file, [1u8; 31]).unwrap();
        let e = FingerprintKey::load(dir.path()).err().unwrap();
        assert!(e.contains("config.key"), "{e}");
        // A key cut short (a full disk, a crash at the first start) is made again; a start
        // never fails for good over it.
        let remade = FingerprintKey::load_or_create(dir.path()).unwrap();
        assert_ne!(remade.0, made.0);
        assert_eq!(FingerprintKey::load(dir.path()).unwrap().0, remade.0);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn listeners_and_store_need_a_restart_sources_do_not() {
        let a = Summary::of(&config("", GH), &KEY);
        let other = config(
            "trusted_proxies = [\"10.0.0.0/8\"]",
            &format!("{GH}[[sources]]\nname = \"std\"\nprovider = \"standard\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n"),
        );
        let mut moved = Summary::of(&other, &KEY);
        moved
            .restart
            .insert("server.listen".into(), "0.0.0.0:8081".into());
        let c = diff(&a, &moved);
        assert_eq!(c.added, vec!["std".to_string()]);
        assert_eq!(c.server.len(), 1, "{:?}", c.server);
        assert_eq!(
            c.restart,
            vec!["server.listen: 127.0.0.1:0 -> 0.0.0.0:8081".to_string()]
        );
        assert!(c.applies_anything());
        let lines = c.lines();
        assert!(lines.contains(&"+ source std".to_string()), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.ends_with("(needs a restart)")),
            "{lines:?}"
        );
    }

    #[test]
    fn unchanged_rate_limits_keep_their_buckets() {
        let limited = GH.to_string() + "rate_limit = { per_second = 1, burst = 1 }\n";
        let first = Runtime::build(&config("", &limited), &KEY, None).unwrap();
        assert!(first.sources["gh"]
            .limiter
            .as_ref()
            .unwrap()
            .check()
            .is_ok());
        let kept = Runtime::build(&config("", &limited), &KEY, Some(&first)).unwrap();
        assert!(
            kept.sources["gh"]
                .limiter
                .as_ref()
                .unwrap()
                .check()
                .is_err(),
            "the spent burst stays spent"
        );
        let changed = Runtime::build(
            &config("", &limited.replace("burst = 1", "burst = 2")),
            &KEY,
            Some(&first),
        )
        .unwrap();
        assert!(changed.sources["gh"]
            .limiter
            .as_ref()
            .unwrap()
            .check()
            .is_ok());
    }
}
