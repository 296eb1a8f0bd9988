//! `hookgate events`, `events show`, `replay`, `forget`, `rejections`, `tail`.
//!
//! Each opens the store when the gateway is stopped; when it runs (the store is locked), the
//! same question goes to its admin listener, with the token from `HOOKGATE_ADMIN_TOKEN` or
//! `server.admin_token`. Both paths produce the same rows and print them the same way: a table
//! by default, one JSON object per line with `--json`. Event fields come from the senders, so
//! control characters are escaped in tables.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::admin::{ForgetRequest, RejectionsQuery, Replayed};
use crate::config::Config;
use crate::inspect::{self, EventDetail, EventRow, Query, ReplayRequest, Status};
use crate::rejections::Rejection;
use crate::store::{Store, StoreError};

/// `hookgate events`: list kept events, newest first.
#[derive(clap::Args)]
pub struct EventsArgs {
    /// Config file (before or after `show`: CONTRACT.md writes `events -c FILE show …`).
    #[arg(short, long, env = "HOOKGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<EventsCommand>,
}

#[derive(clap::Args)]
struct FilterArgs {
    #[arg(long)]
    source: Option<String>,
    /// Event type, e.g. github.push.
    #[arg(long = "type")]
    kind: Option<String>,
    /// pending, published, dead (or replayed: a dead letter since replayed).
    #[arg(long)]
    status: Option<Status>,
    /// RFC 3339, or a duration back from now (90s, 15m, 2h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// At most this many (default 50).
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(clap::Subcommand)]
enum EventsCommand {
    /// Print one event's envelope and status.
    Show {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        source: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// `hookgate replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    #[arg(short, long, env = "HOOKGATE_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// One event; otherwise a filter with --since (or --status dead).
    #[arg(long, conflicts_with_all = ["kind", "status", "since", "until", "limit"])]
    id: Option<String>,
    #[arg(long = "type")]
    kind: Option<String>,
    /// published or dead.
    #[arg(long)]
    status: Option<Status>,
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// By filter: the last N of what it selects in the log, sent in log order.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Count only.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

/// `hookgate forget`.
#[derive(clap::Args)]
pub struct ForgetArgs {
    #[arg(short, long, env = "HOOKGATE_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    #[arg(long)]
    id: String,
    #[arg(long)]
    json: bool,
}

/// `hookgate rejections`.
#[derive(clap::Args)]
pub struct RejectionsArgs {
    #[arg(short, long, env = "HOOKGATE_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    json: bool,
}

/// The store at `store.path` when the gateway is stopped; `None` when a running gateway holds
/// it (ask its admin listener); any other failure to open it is the error. No store there is an error unless the admin listener answers
/// (the config's relative path, read from another directory, is not the running gateway's);
/// a store of an earlier version is an error (opening it would upgrade it).
pub fn open_local(config: &Config) -> anyhow::Result<Option<Store>> {
    // A short wait: a gateway that has just stopped may still be releasing the lock.
    match Store::open_to_inspect(&config.store, Duration::from_millis(500)) {
        Ok(store) => Ok(Some(store)),
        Err(e @ StoreError::Older(_)) => Err(e.into()),
        Err(StoreError::Missing(path)) => {
            let admin = config.server.admin_listen;
            match admin_answers(admin) {
                true => Ok(None),
                false => bail!(
                    "no hookgate store at {path} (store.path; a relative path is read from the \
                     current directory, {}), and no gateway answers on the admin listener {admin}",
                    std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|_| "unknown".into())
                ),
            }
        }
        Err(e) if e.is_locked() => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "opening the store at {}",
            config.store.path.display()
        ))),
    }
}

/// Whether something accepts a connection on the admin listener's address.
fn admin_answers(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Where the answers come from.
enum Backend {
    /// The gateway is stopped: its store, opened here.
    Store(Box<Store>),
    /// The gateway runs: its admin listener.
    Admin {
        addr: SocketAddr,
        token: Option<String>,
    },
}

impl Backend {
    fn open(config: &Config) -> anyhow::Result<Backend> {
        Ok(match open_local(config)? {
            Some(store) => Backend::Store(Box::new(store)),
            None => Backend::admin(config),
        })
    }

    /// The running gateway's admin listener, with the token the CLI is given.
    fn admin(config: &Config) -> Backend {
        Backend::Admin {
            addr: config.server.admin_listen,
            token: admin_token(config),
        }
    }

    /// `method path` on the admin listener; the JSON answer of a 2xx, else its error.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<T> {
        let text = self.call_text(method, path, body)?;
        serde_json::from_str(&text).context("the admin listener answered with unexpected JSON")
    }

    /// [`Backend::call`]'s answer as text (to read envelopes from it as they are).
    fn call_text(&self, method: &str, path: &str, body: Option<String>) -> anyhow::Result<String> {
        let Backend::Admin { addr, token } = self else {
            unreachable!("only called on the admin backend")
        };
        let (status, text) = request(*addr, method, path, token.as_deref(), body.as_deref())
            .with_context(|| {
                format!("the store is locked (a gateway runs?) and its admin listener {addr} did not answer")
            })?;
        if status == 401 {
            match token {
                None => bail!(
                    "the admin listener wants a token: set HOOKGATE_ADMIN_TOKEN or server.admin_token"
                ),
                Some(_) => bail!(
                    "the admin listener refused the token (HOOKGATE_ADMIN_TOKEN, else server.admin_token): it is not the running gateway's"
                ),
            }
        }
        if !(200..300).contains(&status) {
            let why = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{why}");
        }
        Ok(text)
    }

    fn close(self) {
        if let Backend::Store(store) = self {
            store.close();
        }
    }
}

pub fn events(a: EventsArgs) -> anyhow::Result<()> {
    if let Some(EventsCommand::Show {
        config,
        source,
        id,
        json,
    }) = a.command
    {
        let f = &a.filter;
        let filtered = f.source.is_some()
            || f.kind.is_some()
            || f.status.is_some()
            || f.since.is_some()
            || f.until.is_some()
            || f.limit.is_some();
        anyhow::ensure!(
            !filtered,
            "`events show` takes --source and --id after `show`; the list's filters do not apply"
        );
        let config = config
            .or(a.config)
            .context("give the config file: -c FILE")?;
        return show(config, &source, &id, json || a.json);
    }
    let config = a.config.context("give the config file: -c FILE")?;
    let config = Config::load(&config)?;
    let f = a.filter;
    note_unknown_source(&config, f.source.as_deref());
    let query = Query {
        source: f.source,
        kind: f.kind,
        status: f.status,
        since: f.since,
        until: f.until,
        limit: f.limit,
        after: None,
        envelopes: None,
    };
    let filter = query
        .resolve(crate::now_secs())
        .map_err(anyhow::Error::msg)?;
    let backend = Backend::open(&config)?;
    let rows: Vec<EventRow> = match &backend {
        Backend::Store(store) => inspect::list(store, &filter)?,
        remote => {
            #[derive(serde::Deserialize)]
            struct Events {
                events: Vec<EventRow>,
            }
            let q = serde_json::to_value(&query)?;
            remote
                .call::<Events>("GET", &format!("/events{}", query_string(&q)), None)?
                .events
        }
    };
    backend.close();
    let mut out = std::io::stdout().lock();
    if a.json {
        return json_lines(&mut out, &rows);
    }
    writeln!(
        out,
        "{:<20}  {:<16} {:<36} {:<28} {:<10} {:>9}",
        "RECEIVED", "SOURCE", "ID", "TYPE", "STATUS", "SIZE"
    )?;
    for r in &rows {
        let status = if r.replay {
            format!("{}*", r.status)
        } else {
            r.status.to_string()
        };
        writeln!(
            out,
            "{:<20}  {:<16} {:<36} {:<28} {:<10} {:>9}",
            r.received,
            clean(&r.source),
            clean(&r.id),
            clean(&r.kind),
            status,
            r.size
        )?;
    }
    if rows.iter().any(|r| r.replay) {
        writeln!(out, "* re-enqueued by a replay")?;
    }
    Ok(())
}

fn show(config: PathBuf, source: &str, id: &str, json: bool) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    if source.is_empty() || id.is_empty() {
        // No event has an empty id or source; the admin route has no path for them.
        bail!("no event {id:?} of source {source:?} is kept");
    }
    let backend = Backend::open(&config)?;
    let detail: Option<EventDetail> = match &backend {
        Backend::Store(store) => inspect::show(store, source, id)?,
        remote => {
            let path = format!("/events/{}/{}", encode(source), encode(id));
            match remote.call_text("GET", &path, None) {
                Ok(text) => {
                    // The envelope read as raw JSON, apart: it may be nested past the depth
                    // serde_json allows where a parse buffers it (beside a flattened row).
                    let mut members: RawMembers = serde_json::from_str(&text)
                        .context("the admin listener answered with unexpected JSON")?;
                    let envelope = members.remove("envelope");
                    let mut d: EventDetail = reread(&members)?;
                    if let Some(envelope) = envelope {
                        d.envelope = envelope;
                    }
                    Some(d)
                }
                Err(e) if e.to_string().contains("no such event") => None,
                Err(e) => return Err(e),
            }
        }
    };
    backend.close();
    let Some(d) = detail else {
        bail!("no event {id:?} of source {source:?} is kept");
    };
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(&d)?)?;
        return Ok(());
    }
    let r = &d.row;
    writeln!(out, "source:       {}", clean(&r.source))?;
    writeln!(out, "id:           {}", clean(&r.id))?;
    writeln!(out, "type:         {}", clean(&r.kind))?;
    writeln!(out, "received:     {}", r.received)?;
    writeln!(out, "status:       {}", r.status)?;
    if let Some(n) = d.attempts {
        writeln!(out, "attempts:     {n}")?;
    }
    if let Some(e) = &d.last_error {
        writeln!(out, "last error:   {}", clean(e))?;
    }
    if let Some(t) = &d.dead_at {
        writeln!(out, "dead since:   {t}")?;
    }
    if let Some(t) = &d.published_at {
        writeln!(out, "published:    {t} (at the latest)")?;
    }
    writeln!(out, "provider:     {}", clean(&d.provider))?;
    writeln!(out, "routing key:  {}", clean(&d.routing_key))?;
    writeln!(
        out,
        "seq:          {}{}",
        r.seq,
        if r.replay { " (replay)" } else { "" }
    )?;
    writeln!(out, "size:         {} bytes", r.size)?;
    for p in &d.replays {
        writeln!(out, "replayed:     seq {}  {}", p.seq, p.status)?;
    }
    writeln!(out, "envelope:")?;
    writeln!(out, "{}", inspect::pretty_raw(d.envelope.get()))?;
    Ok(())
}

pub fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    note_unknown_source(&config, Some(&a.source));
    let req = ReplayRequest {
        source: Some(a.source),
        id: a.id,
        kind: a.kind,
        status: a.status,
        since: a.since,
        until: a.until,
        limit: a.limit,
        dry_run: a.dry_run,
    };
    // Checked here too, so a mistake is not a locked-store round trip.
    req.selection(crate::now_secs())
        .map_err(anyhow::Error::msg)?;
    let backend = Backend::open(&config)?;
    let n = match &backend {
        Backend::Store(store) => {
            audit_to_stderr();
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            let result = inspect::replay(store, &req, crate::now_secs(), rt.handle());
            if let Err(inspect::ReplayError::Full { replayed, .. }) = &result {
                if *replayed > 0 {
                    tracing::info!(who = %local_user(), via = "cli on the store", request = %serde_json::to_string(&req)?, replayed, dry_run = false, "replay cut short by store.max_outbox_entries");
                }
            }
            let n = result?;
            tracing::info!(who = %local_user(), via = "cli on the store", request = %serde_json::to_string(&req)?, replayed = n, dry_run = req.dry_run, "replay");
            n
        }
        remote => {
            remote
                .call::<Replayed>("POST", "/replay", Some(serde_json::to_string(&req)?))?
                .replayed
        }
    };
    backend.close();
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "replayed": n, "dry_run": req.dry_run })
        );
    } else if req.dry_run {
        println!("would replay {n} events (dry run)");
    } else {
        println!("replayed {n} events");
    }
    Ok(())
}

pub fn forget(a: ForgetArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    note_unknown_source(&config, Some(&a.source));
    let backend = Backend::open(&config)?;
    let forgotten = match &backend {
        Backend::Store(store) => {
            audit_to_stderr();
            let source = config.sources.iter().find(|s| s.name == a.source);
            let provider = source.map(|s| s.provider.kind());
            let local = crate::inspect::forget(store, &a.source, &a.id, provider)?;
            tracing::info!(who = %local_user(), via = "cli on the store", source = %a.source, id = %a.id, forgotten = local.was, content_keys = local.content_keys.len(), "forget");
            let shared = match config.dedup.enabled() {
                true => {
                    let keys = &local.content_keys;
                    crate::dedup::forget_blocking(&config.dedup, &a.source, &a.id, keys)
                        .map_err(|e| anyhow::anyhow!("shared dedup store: {e}"))?
                }
                false => false,
            };
            local.was || shared
        }
        remote => {
            #[derive(serde::Deserialize)]
            struct Forgotten {
                forgotten: bool,
            }
            let body = serde_json::to_string(&ForgetRequest {
                source: a.source.clone(),
                id: a.id.clone(),
            })?;
            remote
                .call::<Forgotten>("POST", "/forget", Some(body))?
                .forgotten
        }
    };
    backend.close();
    if a.json {
        println!("{}", serde_json::json!({ "forgotten": forgotten }));
    } else if forgotten {
        println!(
            "{}/{}: removed from the dedup index; a redelivery is accepted again",
            clean(&a.source),
            clean(&a.id)
        );
    } else {
        println!(
            "{}/{}: not in the dedup index (never accepted, or past the dedup window)",
            clean(&a.source),
            clean(&a.id)
        );
    }
    Ok(())
}

pub fn rejections(a: RejectionsArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    note_unknown_source(&config, a.source.as_deref());
    let backend = Backend::open(&config)?;
    let rows: Vec<Rejection> = match &backend {
        Backend::Store(store) => {
            // What the gateway kept when it last saved (every 5 s and at shutdown).
            let rings = crate::rejections::Rejections::default();
            rings.load(store)?;
            let limit = inspect::limit_of(a.limit).map_err(anyhow::Error::msg)?;
            rings.recent(a.source.as_deref(), limit)
        }
        remote => {
            #[derive(serde::Deserialize)]
            struct Rejections {
                rejections: Vec<Rejection>,
            }
            let q = serde_json::to_value(RejectionsQuery {
                source: a.source,
                limit: a.limit,
            })?;
            remote
                .call::<Rejections>("GET", &format!("/rejections{}", query_string(&q)), None)?
                .rejections
        }
    };
    backend.close();
    let mut out = std::io::stdout().lock();
    if a.json {
        return json_lines(&mut out, &rows);
    }
    writeln!(
        out,
        "{:<24}  {:<16} {:<39} {:>6} {:<12} {:>9}  {:<64}  HEADERS",
        "TIME", "SOURCE", "CLIENT", "STATUS", "REASON", "BODY", "SHA-256"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<24}  {:<16} {:<39} {:>6} {:<12} {:>9}  {:<64}  {}",
            r.time,
            clean(&r.source),
            r.client_ip,
            r.status,
            r.reason.as_str(),
            r.body_bytes.map_or("-".into(), |n| n.to_string()),
            r.body_sha256.as_deref().unwrap_or("-"),
            clean(&r.headers.join(","))
        )?;
    }
    Ok(())
}

/// `--json`: one object per line.
fn json_lines<T: serde::Serialize>(out: &mut impl Write, rows: &[T]) -> anyhow::Result<()> {
    for r in rows {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    Ok(())
}

/// The audit line of a command run on the store goes to stderr (no gateway log is running).
fn audit_to_stderr() {
    crate::cli::init_tracing(crate::cli::LogFormat::Text);
}

fn local_user() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user} (local)")
}

/// Control characters escaped, for a terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || inspect::misleading(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `?k=v&…` from a JSON object of strings and numbers (nulls skipped).
fn query_string(v: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            parts.push(format!("{}={}", encode(k), encode(&v)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `--source` the config does not name is most often a typo, and would only give an empty
/// answer: said on stderr. Not an error: events of a source removed from the config are kept
/// and listed until retention drops them.
fn note_unknown_source(config: &Config, source: Option<&str>) {
    let Some(source) = source else { return };
    if config.sources.iter().any(|s| s.name == source) {
        return;
    }
    let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    eprintln!(
        "note: the config has no source {source:?} (its sources: {}); a typo? Only events kept from a source of that name, removed since, can match",
        names.join(", ")
    );
}

/// The admin token the command line sends: `HOOKGATE_ADMIN_TOKEN`, else `server.admin_token`.
fn admin_token(config: &Config) -> Option<String> {
    std::env::var("HOOKGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| {
            config
                .server
                .admin_token
                .as_ref()
                .map(|t| t.expose().to_string())
        })
}

/// `GET path` on the admin listener of the gateway `config` describes, with the token from
/// `HOOKGATE_ADMIN_TOKEN` or `server.admin_token`: `(status, body)`.
pub fn admin_get(config: &Config, path: &str) -> anyhow::Result<(u16, String)> {
    let token = admin_token(config);
    request(
        config.server.admin_listen,
        "GET",
        path,
        token.as_deref(),
        None,
    )
}

/// A minimal HTTP/1.0 request on the admin listener: `(status, body)`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    // A replay of many events or a scan of a large log takes a while.
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_encoded_and_skip_nulls() {
        let q = serde_json::to_value(Query {
            source: Some("gh main".into()),
            since: Some("2024-05-01T12:00:00+02:00".into()),
            limit: Some(5),
            status: Some(Status::Dead),
            ..Query::default()
        })
        .unwrap();
        assert_eq!(
            query_string(&q),
            "?limit=5&since=2024-05-01T12%3A00%3A00%2B02%3A00&source=gh%20main&status=dead"
        );
        assert_eq!(query_string(&serde_json::json!({})), "");
        assert_eq!(clean("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
    }
}

/// `hookgate tail`: follows newly accepted events. A stopped gateway accepts none: `tail` then
/// waits for it to start and follows from where its store ended.
#[derive(clap::Args)]
pub struct TailArgs {
    #[arg(short, long, env = "HOOKGATE_CONFIG")]
    config: PathBuf,
    #[arg(long)]
    source: Option<String>,
    /// Event type, e.g. github.push.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Print each event's envelope, one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Stop after this many events, at least 1 (default: follow until interrupted).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

/// How often `tail` asks the admin listener for new events.
const TAIL_EVERY: Duration = Duration::from_millis(300);

pub fn tail(a: TailArgs) -> anyhow::Result<()> {
    let config = Config::load(&a.config)?;
    note_unknown_source(&config, a.source.as_deref());
    // A stopped gateway: what its store holds is `hookgate events`'s; what is accepted next
    // comes once a gateway runs on it again. The store is not held meanwhile (that would
    // keep the gateway from starting): `tail` waits for the admin listener to answer, and
    // follows it only once the store is held too (what answers is this store's gateway).
    let (backend, stored_end) = match Backend::open(&config)? {
        Backend::Store(store) => {
            let end = store.durable_upto();
            store.close();
            // Its lock goes with it.
            drop(store);
            eprintln!(
                "hookgate tail: the gateway is not running; waiting for it to start on {} (what is kept: `hookgate events`)",
                config.server.admin_listen
            );
            let path = &config.store.path;
            while !admin_answers(config.server.admin_listen) {
                std::thread::sleep(TAIL_EVERY);
            }
            // A gateway holds its store before its listeners answer.
            if !Store::is_held(path)
                .with_context(|| format!("reading the lock of {}", path.display()))?
            {
                bail!(
                    "something answers on {} but does not hold the store at {}: not this store's gateway (another config's, or another service on that port)",
                    config.server.admin_listen,
                    path.display()
                );
            }
            (Backend::admin(&config), Some(end))
        }
        admin => (admin, None),
    };
    /// A page as sent: each event's members as raw JSON, read without a depth limit (an
    /// envelope nested past serde_json's 128 levels is accepted at ingest, and a parse that
    /// buffered it failed every poll).
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<RawMembers>,
        last_seq: u64,
    }
    const PAGE: usize = 1000;
    // Every record accepted after `after`, oldest first, published or not (the admin API's
    // `after`; without it, only the log's end is asked for).
    let query = |after: Option<u64>, limit: usize| -> anyhow::Result<Page> {
        let q = serde_json::to_value(Query {
            source: a.source.clone(),
            kind: a.kind.clone(),
            limit: Some(limit),
            after,
            envelopes: (after.is_some() && a.json).then_some(true),
            ..Query::default()
        })?;
        let text = backend.call_text("GET", &format!("/events{}", query_string(&q)), None)?;
        serde_json::from_str(&text).context("the admin listener answered with unexpected JSON")
    };
    // Only what comes after now: the log's end as the gateway answers it, or, after a wait,
    // as the stopped store left it (what the gateway accepted since it started is new; a log
    // that ends before that is another store, followed from its start).
    let now = query(None, 1)?.last_seq;
    let mut last = match stored_end {
        Some(end) if end <= now => end,
        Some(_) => 0,
        None => now,
    };
    let mut shown: u64 = 0;
    let mut out = std::io::stdout().lock();
    loop {
        let page = query(Some(last), PAGE)?;
        // Up to `last_seq` every record was looked at; a page cut short ends at its last row,
        // and the next look goes on from there at once.
        let moved = page.last_seq > last;
        last = last.max(page.last_seq);
        for mut members in page.events {
            let envelope = members.remove("envelope");
            let r: EventRow = reread(&members)?;
            if a.json {
                let envelope = envelope.as_ref().map_or("null", |e| e.get());
                writeln!(out, "{envelope}")?;
            } else {
                writeln!(
                    out,
                    "{}  {:<16} {:<36} {}{}",
                    r.received,
                    clean(&r.source),
                    clean(&r.id),
                    clean(&r.kind),
                    if r.replay { "  (replay)" } else { "" }
                )?;
            }
            out.flush()?;
            shown += 1;
            if a.count.is_some_and(|n| shown >= n) {
                return Ok(());
            }
        }
        if !moved {
            std::thread::sleep(TAIL_EVERY);
        }
    }
}

/// A JSON object's members as raw JSON (read without a depth limit).
type RawMembers = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// `members` (an envelope taken out) read as `T`.
fn reread<T: serde::de::DeserializeOwned>(members: &RawMembers) -> anyhow::Result<T> {
    serde_json::to_string(members)
        .and_then(|text| serde_json::from_str(&text))
        .context("the admin listener answered with unexpected JSON")
}
