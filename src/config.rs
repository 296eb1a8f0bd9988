//! The one TOML file: parsing, `${VAR}` interpolation, `file:` secrets, validation.
//!
//! Loading never stops at the first mistake: every section and every source is parsed on its
//! own and all problems are reported together, each naming its key, before anything binds.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use providers::{ProviderConfig, ProviderKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Everything wrong with a config file, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub amqp: AmqpConfig,
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener: `POST /hooks/{source}` only.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies set; the other is the client's word and ignored.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
    /// Default body limit for sources that set none.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Deadline for reading a request (headers and body) and answering it.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Per client IP, across all sources; off when absent.
    #[serde(default)]
    pub client_rate_limit: Option<RateLimit>,
    /// Upper bound on open connections on the public listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; 0 = one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Optional TLS on the public listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// When set, every admin route but `/healthz` and `/readyz` needs `Authorization: Bearer
    /// <token>`; `file:PATH` reads it from a file.
    #[serde(default)]
    pub admin_token: Option<providers::Secret>,
    /// `text` or `json`; `hookgate serve --log-format` wins over it.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
}

/// The log line format (`server.log_format`, `hookgate serve --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, field values escaped.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Which forwarding header `server.trusted_proxies` write (CONTRACT.md, "Client IP").
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx `$proxy_add_x_forwarded_for`, most ingresses).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower-case.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// sled directory holding the dedup ids and the outbox.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// How long an event id is remembered.
    #[serde(default = "default_dedup_window_secs")]
    pub dedup_window_secs: u64,
    /// Beyond this many unpublished events, requests get 503 + Retry-After.
    #[serde(default = "default_max_outbox_entries")]
    pub max_outbox_entries: u64,
    /// Published events are kept this long for inspection and replay (0 = drop on confirm).
    #[serde(default = "default_retain_secs")]
    pub retain_secs: u64,
    /// Beyond this many bytes of log, the oldest published events go first.
    #[serde(default = "default_retain_max_bytes")]
    pub retain_max_bytes: u64,
    /// Size at which the event log starts a new segment file (retention drops whole segments).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// One URL, or a list: the nodes of a RabbitMQ cluster, tried in order (see
    /// [`crate::nodes`]). Each may hold the broker's password and may be `file:PATH`.
    /// Debug redacts it.
    #[serde(default = "default_amqp_url", deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// TLS for `amqps://` nodes; relative paths are relative to the config file.
    #[serde(default)]
    pub tls: Option<crate::amqp_tls::AmqpTlsConfig>,
    /// Topic exchange, durable, declared at start.
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Durable queues (and their bindings) declared at start.
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    /// Most unconfirmed publishes in flight at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Cap of the reconnect backoff of each node.
    #[serde(default = "default_reconnect_max_secs")]
    pub reconnect_max_secs: u64,
    /// Refusals (unroutable, nack, too large) after which an event becomes a dead letter.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field(
                "url",
                &self.url.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field("exchange", &self.exchange)
            .field("queues", &self.queues)
            .field("max_in_flight", &self.max_in_flight)
            .field("reconnect_max_secs", &self.reconnect_max_secs)
            .finish()
    }
}

/// `scheme://user:password@host/…` with the password replaced, for logs and Debug.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let redacted = if userinfo.contains(':') {
                format!("{user}:[redacted]")
            } else {
                user.to_string()
            };
            format!("{scheme}://{redacted}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    #[serde(default)]
    pub kind: QueueKind,
    #[serde(default)]
    pub bindings: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    #[default]
    Classic,
    Quorum,
}

/// One `[[sources]]` table: the common keys here, the provider's keys in `provider`.
#[derive(Debug)]
pub struct SourceConfig {
    pub name: String,
    pub allow_ips: Vec<IpNet>,
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: usize,
    /// Template over `{source}`, `{type}`, `{provider}`.
    pub routing_key: String,
    pub provider: ProviderConfig,
    /// `sha256:` + hex SHA-256 of the source's resolved table (secrets read from their files,
    /// variables interpolated) and its effective body limit: any change, a rotated secret
    /// included, changes it. Shown by `GET /config` and compared by `check --diff`; never the
    /// values themselves.
    pub fingerprint: String,
}

/// The keys every source has, whatever its provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    name: String,
    #[serde(default)]
    allow_ips: Vec<IpNet>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    routing_key: Option<String>,
}
const COMMON_KEYS: [&str; 5] = [
    "name",
    "allow_ips",
    "rate_limit",
    "max_body_bytes",
    "routing_key",
];

fn default_listen() -> SocketAddr {
    "0.0.0.0:8080".parse().expect("literal address")
}
fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:9090".parse().expect("literal address")
}
fn default_max_body_bytes() -> usize {
    1_048_576
}
fn default_request_timeout_secs() -> u64 {
    10
}
fn default_max_connections() -> usize {
    10_000
}
fn default_shutdown_timeout_secs() -> u64 {
    10
}
fn default_store_path() -> PathBuf {
    PathBuf::from("./data")
}
fn default_dedup_window_secs() -> u64 {
    604_800
}
fn default_max_outbox_entries() -> u64 {
    1_000_000
}
fn default_retain_secs() -> u64 {
    259_200
}
fn default_retain_max_bytes() -> u64 {
    10 << 30
}
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_max_attempts() -> u32 {
    5
}
fn default_amqp_url() -> Vec<String> {
    vec!["amqp://guest:guest@127.0.0.1:5672/%2f".into()]
}

/// `amqp.url` as a string or a list of strings (not empty).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d).map_err(|_| {
        serde::de::Error::custom("url: expected a URL or a list of URLs (the cluster's nodes)")
    })? {
        OneOrMany::One(u) => Ok(vec![u]),
        OneOrMany::Many(v) if v.is_empty() => Err(serde::de::Error::custom(
            "url: the list of broker URLs is empty",
        )),
        OneOrMany::Many(v) => Ok(v),
    }
}
fn default_exchange() -> String {
    "hookgate".into()
}
fn default_max_in_flight() -> usize {
    512
}
fn default_reconnect_max_secs() -> u64 {
    // Per broker node (crate::nodes): a node back after a restart is used within seconds.
    5
}

impl Config {
    /// Reads, interpolates and validates `path`, with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::parse(&text, &vars, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses `text` with the variables `vars`; relative `file:` paths resolve against `base`.
    pub fn parse(
        text: &str,
        vars: &HashMap<String, String>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let mut root: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(vec![syntax_error(text, &e)]))?;
        let mut errors = Vec::new();

        let mut missing = BTreeSet::new();
        for (_, v) in root.iter_mut() {
            interpolate(v, vars, &mut missing);
        }
        if !missing.is_empty() {
            let names: Vec<_> = missing.into_iter().collect();
            errors.push(format!(
                "environment variables not set: {}",
                names.join(", ")
            ));
        }

        for key in root.keys() {
            if !["server", "store", "amqp", "sources"].contains(&key.as_str()) {
                errors.push(format!(
                    "unknown key `{key}` (expected server, store, amqp, sources)"
                ));
            }
        }
        if let Some(token) = root
            .get_mut("server")
            .and_then(|a| a.as_table_mut())
            .and_then(|a| a.get_mut("admin_token"))
        {
            resolve_value(token, base, "server.admin_token", &mut errors);
        }
        let mut server: Option<ServerConfig> = section(&mut root, "server", &mut errors);
        // Like `file:` secrets, TLS files are relative to the config file.
        if let Some(tls) = server.as_mut().and_then(|s| s.tls.as_mut()) {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        let store: Option<StoreConfig> = section(&mut root, "store", &mut errors);
        // The URL carries the broker password, so it may come from a file like a secret.
        if let Some(url) = root
            .get_mut("amqp")
            .and_then(|a| a.as_table_mut())
            .and_then(|a| a.get_mut("url"))
        {
            resolve_value(url, base, "amqp.url", &mut errors);
        }
        let mut amqp: Option<AmqpConfig> = section(&mut root, "amqp", &mut errors);
        if let Some(tls) = amqp.as_mut().and_then(|a| a.tls.as_mut()) {
            tls.resolve(base);
        }

        let mut sources = Vec::new();
        let default_body = server
            .as_ref()
            .map_or(default_max_body_bytes(), |s| s.max_body_bytes);
        match root.remove("sources") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(s) = parse_source(i, item, default_body, base, &mut errors) {
                        sources.push(s);
                    }
                }
            }
            Some(_) => errors.push("sources: expected an array of tables ([[sources]])".into()),
        }

        match (server, store, amqp) {
            (Some(server), Some(store), Some(amqp)) if errors.is_empty() => {
                let config = Config {
                    server,
                    store,
                    amqp,
                    sources,
                };
                config.validate()?;
                Ok(config)
            }
            _ => Err(ConfigError(errors)),
        }
    }

    /// Checks what types cannot: names, limits, duplicates, templates, provider keys.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.server.request_timeout_secs == 0 {
            errors.push("server.request_timeout_secs: must be at least 1".into());
        }
        if self.server.max_body_bytes == 0 {
            errors.push("server.max_body_bytes: must be at least 1".into());
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections: must be at least 1".into());
        }
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            errors.push("server.admin_listen: must differ from server.listen".into());
        }
        if self.store.path.as_os_str().is_empty() {
            // An empty path used to open a temporary store: every acknowledged event would
            // vanish at the next restart.
            errors.push("store.path: must not be empty (the directory that keeps acknowledged events across restarts)".into());
        }
        if self.store.dedup_window_secs == 0 {
            errors.push("store.dedup_window_secs: must be at least 1".into());
        }
        if self.store.max_outbox_entries == 0 {
            errors.push("store.max_outbox_entries: must be at least 1".into());
        }
        for (i, url) in self.amqp.url.iter().enumerate() {
            if let Err(e) = url.parse::<lapin::uri::AMQPUri>() {
                // The parser quotes the whole URL in some errors, password included; a URL
                // that does not parse has no password we could find to cut out.
                let e = e.replace(url.as_str(), "…");
                let key = match self.amqp.url.len() {
                    1 => "amqp.url".to_string(),
                    _ => format!("amqp.url[{i}]"),
                };
                errors.push(format!("{key}: not an AMQP URI: {e}"));
            }
        }
        errors.extend(crate::amqp_tls::problems(&self.amqp));
        if self.amqp.exchange.is_empty() {
            errors.push(
                "amqp.exchange: must not be empty (the default exchange cannot route by topic)"
                    .into(),
            );
        }
        if self.store.segment_bytes < 4096 {
            errors.push("store.segment_bytes: must be at least 4096".into());
        }
        if self.amqp.max_attempts == 0 {
            errors.push("amqp.max_attempts: must be at least 1".into());
        }
        if self.amqp.max_in_flight == 0 {
            errors.push("amqp.max_in_flight: must be at least 1".into());
        }
        // AMQP short strings: over 255 bytes the client library would panic at declare time.
        if self.amqp.exchange.len() > 255 {
            errors.push("amqp.exchange: longer than AMQP's 255 bytes".into());
        }
        let mut queue_names = BTreeSet::new();
        for (i, q) in self.amqp.queues.iter().enumerate() {
            if q.name.len() > 255 {
                errors.push(format!(
                    "amqp.queues[{i}].name: longer than AMQP's 255 bytes"
                ));
            }
            for (j, b) in q.bindings.iter().enumerate() {
                if b.len() > 255 {
                    errors.push(format!(
                        "amqp.queues[{i}].bindings[{j}]: longer than AMQP's 255 bytes"
                    ));
                }
            }
            if q.name.is_empty() {
                errors.push(format!("amqp.queues[{i}].name: must not be empty"));
            } else if !queue_names.insert(q.name.as_str()) {
                errors.push(format!(
                    "amqp.queues[{i}].name: `{}` is declared twice",
                    q.name
                ));
            }
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                errors.push(format!(
                    "sources[{i}].name: `{}` is used by another source",
                    s.name
                ));
            }
            if s.max_body_bytes == 0 {
                errors.push(format!(
                    "sources[{i}] ({}).max_body_bytes: must be at least 1",
                    s.name
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }
}

/// Deserializes `[name]` (absent = all defaults), recording an error instead of failing.
fn section<T: DeserializeOwned>(
    root: &mut toml::Table,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<T> {
    let value = root
        .remove(name)
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    match typed(name, value) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Deserializes the table `label`; an error names the key path inside it (`rate_limit.burst`,
/// `queues[1].kind`) and never quotes a value. Where serde cannot follow the path (inside an
/// internally tagged enum such as a provider's keys) the key is found by [`serde_error`].
fn typed<T: DeserializeOwned>(label: &str, value: toml::Value) -> Result<T, String> {
    let keys = value.as_table().cloned().unwrap_or_default();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_string();
        if path.is_empty() || path == "." {
            serde_error(label, &message, &keys)
        } else {
            format!("{label}.{path}: {}", redact_values(&message))
        }
    })
}

fn parse_source(
    i: usize,
    item: toml::Value,
    default_body: usize,
    base: &Path,
    errors: &mut Vec<String>,
) -> Option<SourceConfig> {
    let toml::Value::Table(mut table) = item else {
        errors.push(format!("sources[{i}]: expected a table"));
        return None;
    };
    let label = match table.get("name").and_then(|v| v.as_str()) {
        Some(n) => format!("sources[{i}] ({n})"),
        None => format!("sources[{i}]"),
    };
    let before = errors.len();
    resolve_files(&mut table, base, &label, errors);
    let resolved = toml::Value::Table(table.clone()).to_string();

    let mut common = toml::Table::new();
    for key in COMMON_KEYS {
        if let Some(v) = table.remove(key) {
            common.insert(key.to_string(), v);
        }
    }
    let common = match typed::<CommonKeys>(&label, toml::Value::Table(common)) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let provider = if !table.contains_key("provider") {
        let ids: Vec<&str> = providers::ProviderKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        errors.push(format!(
            "{label}.provider: missing (one of {})",
            ids.join(", ")
        ));
        None
    } else {
        let keys = table.clone();
        match ProviderConfig::deserialize(toml::Value::Table(table)) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(serde_error(&label, e.message(), &keys));
                None
            }
        }
    };
    // The common keys are checked even when the provider part failed: every problem at once.
    if let Some(common) = &common {
        if !valid_source_name(&common.name) {
            errors.push(format!(
                "{label}.name: must match [a-z0-9][a-z0-9_-]* (it is the URL path segment)"
            ));
        }
        if let Some(Err(e)) = common.routing_key.as_deref().map(check_template) {
            errors.push(format!("{label}.routing_key: {e}"));
        }
    }
    let (common, provider) = (common?, provider?);
    let routing_key = common
        .routing_key
        .unwrap_or_else(|| "{source}.{type}".into());
    // The longest key this template can render: a type is at most MAX_TYPE_BYTES (refused
    // with 400 beyond), so a key past AMQP's 255 bytes is a config error, never a request's.
    let worst = render_routing_key(
        &routing_key,
        &common.name,
        &"t".repeat(MAX_TYPE_BYTES),
        provider.kind().as_str(),
    )
    .len();
    if worst > 255 {
        errors.push(format!(
            "{label}.routing_key: renders up to {worst} bytes with a {MAX_TYPE_BYTES}-byte event type; AMQP allows 255 (shorten the template or the source name)"
        ));
    }
    if let Err(problems) = provider.build() {
        for p in problems {
            errors.push(format!("{label}.{p}"));
        }
    }
    if errors.len() > before {
        return None;
    }
    let max_body_bytes = common.max_body_bytes.unwrap_or(match provider.kind() {
        // GitHub caps payloads at 25 MB (PROVIDERS.md §1.5); a smaller default refuses real pushes.
        ProviderKind::Github => default_body.max(26_214_400),
        _ => default_body,
    });
    let fingerprint = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"hookgate source v1\0");
        h.update(resolved.as_bytes());
        h.update(max_body_bytes.to_le_bytes());
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    Some(SourceConfig {
        name: common.name,
        allow_ips: common.allow_ips,
        rate_limit: common.rate_limit,
        max_body_bytes,
        routing_key,
        provider,
        fingerprint,
    })
}

/// A TOML syntax error as line and column only: the parser's own message quotes the offending
/// line, which may hold a secret.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = redact_values(e.message());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// A serde error of the table `label` whose entries were `keys`, without the values it quotes.
/// serde's "invalid type: string \"…\"" names a value but not its key: the key is found by
/// the value, then the value is dropped, so `secrets = "hunter2"` (a string where a list is
/// expected) never prints the secret.
pub fn serde_error(label: &str, message: &str, keys: &toml::Table) -> String {
    let key = keys.iter().find_map(|(k, v)| {
        let quoted = v.as_str().map(|s| format!("string {s:?}"))?;
        message.contains(&quoted).then_some(k)
    });
    match key {
        Some(k) => format!("{label}.{k}: {}", redact_values(message)),
        None => format!("{label}: {}", redact_values(message)),
    }
}

/// Drops the quoted text serde puts after `string` (`Unexpected::Str`, formatted with `{:?}`)
/// and `character`, whatever the key: any string in a config may be a secret.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = ["string \"", "character '"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, *m)))
            .min();
        let Some((at, marker)) = next else { break };
        let quote = marker.chars().last().unwrap_or('"');
        out.push_str(&rest[..at + marker.len() - 2]);
        // The quoted text is Debug-escaped: it ends at the first quote not after a backslash.
        let body = &rest[at + marker.len()..];
        let mut escaped = false;
        let end = body.char_indices().find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            c if c == quote => Some(i + c.len_utf8()),
            _ => None,
        });
        match end {
            Some(end) => rest = &body[end..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Source names are URL path segments and routing-key words.
pub fn valid_source_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Routing-key templates may use `{source}`, `{type}` and `{provider}` only.
fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("unclosed `{`")? + open;
        let name = &rest[open + 1..close];
        if !["source", "type", "provider"].contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (use {{source}}, {{type}}, {{provider}})"
            ));
        }
        rest = &rest[close + 1..];
    }
    if t.len() > 255 {
        return Err("longer than AMQP's 255 bytes".into());
    }
    Ok(())
}

/// The longest event type a provider adapter lets through (longer ones get 400).
pub const MAX_TYPE_BYTES: usize = providers::MAX_UNSIGNED_BYTES;

/// Renders a routing-key template.
pub fn render_routing_key(template: &str, source: &str, kind: &str, provider: &str) -> String {
    template
        .replace("{source}", source)
        .replace("{type}", kind)
        .replace("{provider}", provider)
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`.
fn interpolate(
    v: &mut toml::Value,
    vars: &HashMap<String, String>,
    missing: &mut BTreeSet<String>,
) {
    match v {
        toml::Value::String(s) if s.contains('$') => *s = interpolate_str(s, vars, missing),
        toml::Value::Array(items) => items.iter_mut().for_each(|i| interpolate(i, vars, missing)),
        toml::Value::Table(t) => t
            .iter_mut()
            .for_each(|(_, i)| interpolate(i, vars, missing)),
        _ => {}
    }
}

/// Pure: the interpolated string; unset variables without a default go to `missing`.
pub fn interpolate_str(
    s: &str,
    vars: &HashMap<String, String>,
    missing: &mut BTreeSet<String>,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (vars.get(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    missing.insert(name.to_string());
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces `file:PATH` values of the provider's secret and key keys (the providers crate
/// says which) with the file's contents.
fn resolve_files(table: &mut toml::Table, base: &Path, label: &str, errors: &mut Vec<String>) {
    for key in providers::file_keys(table.get("provider").and_then(toml::Value::as_str)) {
        if let Some(v) = table.get_mut(key) {
            resolve_value(v, base, &format!("{label}.{key}"), errors);
        }
    }
}

fn resolve_value(v: &mut toml::Value, base: &Path, key: &str, errors: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => {
            if let Some(path) = s.strip_prefix("file:") {
                let path = base.join(path);
                match read_secret_file(&path) {
                    // A raw secret file usually ends with a newline that is not part of the key.
                    Ok(content) => *s = content.trim_end_matches(['\r', '\n']).to_string(),
                    Err(e) => errors.push(format!("{key}: cannot read {}: {e}", path.display())),
                }
            }
        }
        toml::Value::Array(items) => items
            .iter_mut()
            .for_each(|i| resolve_value(i, base, key, errors)),
        toml::Value::Table(t) => t
            .iter_mut()
            .for_each(|(k, i)| resolve_value(i, base, &format!("{key}.{k}"), errors)),
        _ => {}
    }
}

/// Keys and certificates are a few KiB; a bound keeps `file:/dev/zero` from hanging start-up.
const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    let n = std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if n as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// Whether `ip` lies in any of `nets`.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str, v: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(text, &vars(v), Path::new("."))
    }

    const MINIMAL: &str = r#"
[[sources]]
name = "gh"
provider = "github"
secrets = ["${GH_SECRET}"]
"#;

    /// Issue 15: a value of the wrong type is reported with its key path, wherever it sits,
    /// and without the value (any string may be a secret).
    #[test]
    fn type_errors_name_the_key_path() {
        let text = r#"
[server]
client_rate_limit = { per_second = "ten", burst = 1 }
[store]
max_outbox_entries = 1.5
[[amqp.queues]]
name = "q"
kind = 5
[[sources]]
name = "gh"
provider = "github"
secrets = ["s3cr3t-value"]
max_body_bytes = "1MB"
[[sources]]
name = "gh2"
provider = "github"
secrets = ["s3cr3t-value"]
rate_limit = { per_second = 1, burst = "lots" }
"#;
        let all = parse(text, &[]).unwrap_err().0.join("\n");
        for expected in [
            "server.client_rate_limit.per_second: invalid type: string",
            "store.max_outbox_entries: invalid type: floating point `1.5`, expected u64",
            "amqp.queues[0].kind: invalid type",
            "sources[0] (gh).max_body_bytes: invalid type: string, expected usize",
            "sources[1] (gh2).rate_limit.burst: invalid type: string",
        ] {
            assert!(all.contains(expected), "{expected}\n{all}");
        }
        for value in ["ten", "1MB", "lots", "s3cr3t"] {
            assert!(!all.contains(value), "{value} echoed: {all}");
        }
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../config.example.toml");
        let config = parse(text, &[("GH_WEBHOOK_SECRET", "x")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.sources.is_empty());
        assert_eq!(config.amqp.exchange, "hookgate");
    }

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL, &[("GH_SECRET", "s")]).unwrap();
        assert_eq!(c.server.listen, default_listen());
        assert_eq!(c.store.dedup_window_secs, 604_800);
        assert_eq!(c.amqp.url, ["amqp://guest:guest@127.0.0.1:5672/%2f"]);
        assert_eq!(c.sources[0].routing_key, "{source}.{type}");
        assert_eq!(
            c.sources[0].max_body_bytes, 26_214_400,
            "GitHub default fits its 25 MB cap"
        );
    }

    #[test]
    fn interpolation() {
        let mut missing = BTreeSet::new();
        let v = vars(&[("A", "1"), ("E", "")]);
        assert_eq!(interpolate_str("x${A}y", &v, &mut missing), "x1y");
        assert_eq!(interpolate_str("${B:-dflt}", &v, &mut missing), "dflt");
        assert_eq!(interpolate_str("${E:-dflt}", &v, &mut missing), "dflt");
        assert_eq!(interpolate_str("$$A $5", &v, &mut missing), "$A $5");
        assert!(missing.is_empty());
        interpolate_str("${B}${C}", &v, &mut missing);
        assert_eq!(missing.into_iter().collect::<Vec<_>>(), ["B", "C"]);
    }

    #[test]
    fn missing_variables_are_all_named() {
        let text = format!("{MINIMAL}\n[amqp]\nurl = \"${{AMQP_X}}\"\n");
        let err = parse(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("AMQP_X, GH_SECRET"), "{err}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = r#"
[server]
listen = "0.0.0.0:8080"
lisen = 1
[store]
max_outbox_entries = 0
[[sources]]
name = "Bad Name"
provider = "github"
secrets = ["x"]
secrte = 1
[[sources]]
name = "Also Bad"
provider = "nope"
[[sources]]
name = "gh2"
provider = "github"
secrets = []
"#;
        let err = parse(text, &[]).unwrap_err();
        let all = err.0.join("\n");
        assert!(all.contains("server.lisen: unknown field `lisen`"), "{all}");
        assert!(
            all.contains("sources[0] (Bad Name): unknown field `secrte`"),
            "{all}"
        );
        assert!(
            all.contains("sources[1] (Also Bad): unknown variant `nope`"),
            "{all}"
        );
        assert!(
            all.contains("sources[2] (gh2).secrets: at least one is required"),
            "{all}"
        );
        assert!(
            all.contains("sources[0] (Bad Name).name: must match"),
            "{all}"
        );
        assert!(
            all.contains("sources[1] (Also Bad).name: must match"),
            "{all}"
        );
        assert_eq!(err.0.len(), 6, "{all}");
    }

    #[test]
    fn semantic_validation() {
        let text = r#"
[store]
max_outbox_entries = 0
[[sources]]
name = "Bad Name"
provider = "github"
secrets = ["x"]
routing_key = "{nope}"
"#;
        let all = parse(text, &[]).unwrap_err().0.join("\n");
        assert!(all.contains("must match [a-z0-9]"), "{all}");
        assert!(all.contains("unknown placeholder `{nope}`"), "{all}");
        let dup = format!("{MINIMAL}{MINIMAL}\n[store]\nmax_outbox_entries = 0\n");
        let all = parse(&dup, &[("GH_SECRET", "s")]).unwrap_err().0.join("\n");
        assert!(all.contains("`gh` is used by another source"), "{all}");
        assert!(all.contains("store.max_outbox_entries"), "{all}");
    }

    #[test]
    fn file_secrets_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gh.secret"), "from-file\n").unwrap();
        let text =
            "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"file:gh.secret\"]\n";
        let c = Config::parse(text, &HashMap::new(), dir.path()).unwrap();
        let providers::ProviderConfig::Github(g) = &c.sources[0].provider else {
            panic!()
        };
        assert_eq!(g.secrets[0].expose(), "from-file");
        std::fs::write(
            dir.path().join("huge"),
            vec![b'x'; (MAX_SECRET_FILE_BYTES + 1) as usize],
        )
        .unwrap();
        let text = "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"file:huge\"]\n";
        let all = Config::parse(text, &HashMap::new(), dir.path())
            .unwrap_err()
            .0
            .join("\n");
        assert!(all.contains("larger than 1048576 bytes"), "{all}");
        let text =
            "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"file:missing\"]\n";
        let all = Config::parse(text, &HashMap::new(), dir.path())
            .unwrap_err()
            .0
            .join("\n");
        assert!(
            all.contains("sources[0] (gh).secrets: cannot read"),
            "{all}"
        );
    }

    #[test]
    fn tls_paths_are_relative_to_the_config_file() {
        let text = "[server.tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n";
        let c = Config::parse(text, &HashMap::new(), Path::new("/etc/hookgate"));
        // The files do not exist, so validation may fail; the paths are what matters here.
        let tls = match c {
            Ok(c) => c.server.tls.unwrap(),
            Err(e) => {
                let all = e.0.join("\n");
                assert!(all.contains("/etc/hookgate/tls/cert.pem"), "{all}");
                return;
            }
        };
        assert_eq!(tls.cert, Path::new("/etc/hookgate/tls/cert.pem"));
        assert_eq!(tls.key, Path::new("/abs/key.pem"));
    }

    #[test]
    fn class6_an_empty_store_path_is_refused() {
        for path in ["", "${HOOKGATE_DATA:-}"] {
            let text = format!("{MINIMAL}\n[store]\npath = \"{path}\"\n");
            let all = parse(&text, &[("GH_SECRET", "s")])
                .unwrap_err()
                .0
                .join("\n");
            assert!(all.contains("store.path: must not be empty"), "{all}");
        }
    }

    #[test]
    fn class6_config_errors_never_echo_a_secret() {
        const S: &str = "hunter2-very-secret";
        let cases = [
            // A string where a list is expected, in a [[sources]] table.
            format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{S}\"\n"),
            format!("[[sources]]\nname = \"w\"\nprovider = \"wechatpay\"\napiv3_keys = [\"k\"]\nplatform_keys = \"{S}\"\n"),
            format!("[[sources]]\nname = \"d\"\nprovider = \"dingtalk\"\nmode = \"robot\"\napp_secrets = \"{S}\"\n"),
            // A common key of the wrong type next to a secret.
            format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"x\"]\nrate_limit = \"{S}\"\n"),
            // A string where a number or table is expected, in a section.
            format!("[server]\nmax_body_bytes = \"{S}\"\n"),
            format!("[amqp]\nqueues = \"{S}\"\n"),
            // The broker URL: its password, and a URL that does not parse.
            format!("[amqp]\nurl = \"amqp://guest:{S}@[::1\"\n"),
            format!("[amqp]\nurl = \"amqp:{S}\"\n"),
            // A TOML syntax error on the secret's line.
            format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{S}\"\n"),
            format!("[[sources]]\nname = \"gh\"\nsecrets = [\"{S}\" \"x\"]\n"),
        ];
        for text in cases {
            let err = parse(&text, &[]).expect_err(&text);
            let all = err.to_string();
            assert!(!all.contains("hunter2"), "{text}\n=> {all}");
            assert!(!format!("{err:?}").contains("hunter2"), "{text}");
        }
        // The key is still named.
        let text =
            format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{S}\"\n");
        let all = parse(&text, &[]).unwrap_err().to_string();
        assert!(
            all.contains("sources[0] (gh).secrets: invalid type: string, expected a sequence"),
            "{all}"
        );
        let all = parse("[server]\nmax_body_bytes = \"12\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            all.contains("server.max_body_bytes: invalid type: string"),
            "{all}"
        );
        let all = parse("a = [\"x\"\n", &[]).unwrap_err().to_string();
        assert!(all.contains("TOML syntax error at line "), "{all}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_values(r#"invalid type: string "a\"b, c", expected x"#),
            "invalid type: string, expected x"
        );
        assert_eq!(
            redact_values("invalid type: character 'x', expected y; string \"z\""),
            "invalid type: character, expected y; string"
        );
        assert_eq!(redact_values("unknown field `x`"), "unknown field `x`");
        assert_eq!(
            redact_url("amqp://user:pa%40ss@host:5672/%2f?heartbeat=5"),
            "amqp://user:[redacted]@host:5672/%2f?heartbeat=5"
        );
        assert_eq!(redact_url("amqps://user@host/v"), "amqps://user@host/v");
        assert_eq!(redact_url("amqp://host"), "amqp://host");
    }

    #[test]
    fn class6_amqp_url_is_redacted_in_debug_and_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("amqp.url"),
            "amqp://hookgate:from-file-pw@broker:5672/%2f\n",
        )
        .unwrap();
        let text = format!("{MINIMAL}\n[amqp]\nurl = \"file:amqp.url\"\n");
        let c = Config::parse(&text, &vars(&[("GH_SECRET", "s")]), dir.path()).unwrap();
        assert_eq!(c.amqp.url, ["amqp://hookgate:from-file-pw@broker:5672/%2f"]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("from-file-pw"), "{debug}");
        assert!(
            debug.contains("amqp://hookgate:[redacted]@broker:5672/%2f"),
            "{debug}"
        );
        let text = format!("{MINIMAL}\n[amqp]\nurl = \"file:nope\"\n");
        let all = Config::parse(&text, &vars(&[("GH_SECRET", "s")]), dir.path())
            .unwrap_err()
            .to_string();
        assert!(all.contains("amqp.url: cannot read"), "{all}");
    }

    #[test]
    fn source_names() {
        assert!(valid_source_name("gh-main_2"));
        assert!(!valid_source_name("-gh"));
        assert!(!valid_source_name("GH"));
        assert!(!valid_source_name(""));
        assert!(!valid_source_name("a.b"));
    }

    #[test]
    fn class1_amqp_names_past_255_bytes_are_config_errors() {
        let long = "q".repeat(256);
        let text = format!(
            "[amqp]\nexchange = \"{long}\"\n[[amqp.queues]]\nname = \"{long}\"\nbindings = [\"{long}\"]\n"
        );
        let err = parse(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("amqp.exchange: longer than"), "{err}");
        assert!(err.contains("amqp.queues[0].name: longer than"), "{err}");
        assert!(
            err.contains("amqp.queues[0].bindings[0]: longer than"),
            "{err}"
        );
    }

    /// Issue 11, class 1: no request can render a routing key past AMQP's limit; the
    /// template's worst case is checked when the config loads.
    #[test]
    fn class1_routing_key_worst_case_is_checked_at_load() {
        let name = "a".repeat(60);
        let long =
            format!("[[sources]]\nname = \"{name}\"\nprovider = \"github\"\nsecrets = [\"x\"]\n");
        let err = parse(&long, &[]).unwrap_err().to_string();
        assert!(
            err.contains("routing_key: renders up to 261 bytes"),
            "{err}"
        );
        let fixed = format!("{long}routing_key = \"gh.{{type}}\"\n");
        assert!(parse(&fixed, &[]).is_ok());
        assert!(parse(MINIMAL, &[("GH_SECRET", "x")]).is_ok());
    }

    #[test]
    fn routing_keys_render() {
        assert_eq!(
            render_routing_key("{source}.{type}", "gh", "github.push", "github"),
            "gh.github.push"
        );
        assert_eq!(
            render_routing_key("x.{provider}.{type}", "gh", "github.push", "github"),
            "x.github.github.push"
        );
    }

    #[test]
    fn mapped_ipv6_matches_v4_nets() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(contains(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!contains(&nets, "11.1.2.3".parse().unwrap()));
    }
}
