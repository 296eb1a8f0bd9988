//! The one TOML file: parsing, `${VAR}` interpolation, `file:` secrets, validation.
//!
//! Loading never stops at the first mistake: every section and every source is parsed on its
//! own and all problems are reported together, each naming its key, before anything binds.

//!
//! - this module: the types of every section, their defaults, and small helpers the gateway
//!   uses (routing keys, address matching, URL redaction);
//! - [`load`]: reading the file section by section, error messages that name keys and never
//!   values;
//! - [`vars`]: `${VAR}` interpolation and `file:` secrets;
//! - [`validate`]: what types cannot check (names, limits, templates, cross-section rules).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use providers::ProviderConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;

mod load;
mod validate;
mod vars;

pub use load::{redact_values, serde_error};
pub use vars::interpolate_str;

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
    /// `[dedup]`: the shared dedup store of replicas (off by default).
    pub dedup: crate::dedup::DedupConfig,
    /// Keys the file leaves out that an environment variable gave (`amqp.url` from
    /// `AMQP_URL`, …), one sentence each: `check` prints them and `serve` logs them.
    pub from_env: Vec<String>,
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

/// Which forwarding header `server.trusted_proxies` write (docs/security.md, "Client IP").
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
    /// The header's name (lower-case), a constant: looking a header up by a `&str` that
    /// `http` has no constant for (`x-forwarded-for`) copies the name on every request.
    pub fn header_name(self) -> actix_web::http::header::HeaderName {
        use actix_web::http::header::{HeaderName, FORWARDED};
        const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        match self {
            ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => FORWARDED,
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
    /// Directory of the event log, the dedup table and sled (cursor, dead letters, refusals).
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
    /// The most a group commit waits for more records after its first, while the machine's
    /// CPUs are busy (`crate::commit_delay`); 0: never.
    #[serde(default = "default_commit_delay_us")]
    pub commit_delay_us: u64,
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
    /// included, changes it. Never shown as it is (it would confirm a guessed secret):
    /// `GET /config` and `check --diff` show it keyed ([`crate::runtime::FingerprintKey`]).
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
fn default_commit_delay_us() -> u64 {
    2000
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

/// Source names are URL path segments and routing-key words.
pub fn valid_source_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// The longest event type a provider adapter lets through (longer ones get 400).
pub const MAX_TYPE_BYTES: usize = providers::MAX_UNSIGNED_BYTES;

/// Renders a routing-key template.
pub fn render_routing_key(template: &str, source: &str, kind: &str, provider: &str) -> String {
    // One pass, one allocation (three `replace`s allocated three strings per request), and a
    // value is never searched for placeholders again.
    let mut out = String::with_capacity(template.len() + source.len() + kind.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let (value, len) = [
            ("{source}", source),
            ("{type}", kind),
            ("{provider}", provider),
        ]
        .into_iter()
        .find(|(name, _)| tail.starts_with(name))
        .map_or(("{", 1), |(name, value)| (value, name.len()));
        out.push_str(value);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Whether `ip` lies in any of `nets`. Addresses compare as IPv4 where they are IPv4-mapped,
/// and so do nets written that way (`::ffff:10.0.0.0/104`: they matched nothing before). Only
/// those: `::/0` is every IPv6 address, not every IPv4 one too.
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| match (n, ip) {
        (IpNet::V6(n6), IpAddr::V4(v4)) => {
            n6.prefix_len() >= 96
                && n6.network().to_ipv4_mapped().is_some()
                && n6.contains(&v4.to_ipv6_mapped())
        }
        _ => n.contains(&ip),
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) compare as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
