//! The `hookgate` command line: `serve`, `check`, `sign`, `outbox`; `events`, `replay`,
//! `forget` and `rejections` live in [`crate::inspect_cli`].

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use providers::sign::SampleOptions;
use providers::ProviderConfig;

pub use crate::config::LogFormat;
use crate::config::{redact_url, serde_error, Config};

/// `hookgate --version`: the crate version and the git revision it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HOOKGATE_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "hookgate",
    version = VERSION,
    about = "Inbound webhook gateway: verify, decrypt, dedup, outbox, RabbitMQ"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: PathBuf,
        /// Log format [default: server.log_format, else text].
        #[arg(long, value_enum, env = "HOOKGATE_LOG_FORMAT")]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file and list its sources; exits non-zero on any error.
    Check {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: PathBuf,
        /// Also show what a reload (SIGHUP) of this file would change in the running gateway,
        /// asked through its admin listener.
        #[arg(long)]
        diff: bool,
    },
    /// Print a correctly signed sample request for a source (a curl line by default).
    Sign(Box<SignArgs>),
    /// Show how many events wait for the broker, and the oldest one.
    Outbox {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: PathBuf,
    },
    /// List kept events, newest first; `events show` prints one.
    Events(Box<crate::inspect_cli::EventsArgs>),
    /// Re-enqueue kept events unchanged (header x-hookgate-replay: true).
    Replay(Box<crate::inspect_cli::ReplayArgs>),
    /// Remove an id from the dedup index, so a redelivery is accepted again.
    Forget(crate::inspect_cli::ForgetArgs),
    /// The most recent refused requests (kept in memory and, every 5 s and at shutdown, in the store).
    Rejections(crate::inspect_cli::RejectionsArgs),
    /// Follow newly accepted events live (of a stopped gateway: from when it starts again).
    Tail(crate::inspect_cli::TailArgs),
}

#[derive(clap::Args)]
struct SignArgs {
    /// Config file holding the source.
    #[arg(
        short,
        long,
        env = "HOOKGATE_CONFIG",
        required_unless_present = "provider"
    )]
    config: Option<PathBuf>,
    /// Source name in the config (also the URL path).
    #[arg(short, long)]
    source: Option<String>,
    /// Explicit keys instead of a config: the provider id ...
    #[arg(long, conflicts_with = "config")]
    provider: Option<String>,
    /// ... and its keys as KEY=VALUE (TOML values; bare words are strings), repeatable,
    /// e.g. --with 'secrets=["s3cret"]'.
    #[arg(long = "with", value_name = "KEY=VALUE", requires = "provider")]
    with: Vec<String>,
    /// Base URL of the gateway [default: the config's `server.listen` (an unspecified address
    /// as loopback), or http://127.0.0.1:8080 with --provider].
    #[arg(long)]
    url: Option<String>,
    /// The provider's event name (push, TRADE_SUCCESS, TRANSACTION.SUCCESS, ...); for a wecom
    /// source, `url_verification` prints WeCom's URL verification GET instead.
    #[arg(long)]
    event: Option<String>,
    /// Event id (random when absent).
    #[arg(long)]
    id: Option<String>,
    /// File with the event payload (JSON; for Alipay a JSON object of parameters).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// The private key to sign with where the config holds only the public one: a PEM file
    /// for RSA providers (Alipay's, or the WeChat Pay platform's), a file holding the `whsk_`
    /// key for a Standard Webhooks source with only its `whpk_` key (v1a, Ed25519).
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// WeChat Pay: the serial / public-key id to sign as.
    #[arg(long)]
    key_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SignFormat::Curl)]
    format: SignFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum SignFormat {
    /// A curl command line.
    Curl,
    /// JSON: {"url", "headers": [[k, v]...], "body"} (body as a UTF-8 string).
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // A printing command piped into `head` ends quietly when the pipe closes, as Unix
        // tools do, instead of panicking on the failed print. (Rust ignores SIGPIPE; sockets
        // write with MSG_NOSIGNAL, so only stdout is concerned. `serve` keeps it ignored.)
        // SAFETY: restoring a signal's default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Check { config, diff } => check(&config, diff),
        Command::Sign(args) => sign(*args),
        Command::Outbox { config } => outbox(&config),
        Command::Events(args) => crate::inspect_cli::events(*args),
        Command::Replay(args) => crate::inspect_cli::replay(*args),
        Command::Forget(args) => crate::inspect_cli::forget(args),
        Command::Rejections(args) => crate::inspect_cli::rejections(args),
        Command::Tail(args) => crate::inspect_cli::tail(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The filter when `RUST_LOG` is unset: hookgate at INFO, every dependency at WARN.
/// actix_http logs every malformed request, slow-header timeout and reset connection at ERROR
/// ("stream error: ..."): the client already got its 400/408, and a line per bad request would
/// let anyone fill the log. Off by default; naming it in RUST_LOG brings it back.
pub const DEFAULT_FILTER: &str = "hookgate=info,warn,actix_http=off";

/// `RUST_LOG` as a filter. A bare level (`debug`, `trace`) applies to hookgate only, with the
/// dependencies kept at WARN as by default (or quieter, for `error` and `off`), so turning on hookgate's debug lines does not
/// bury them under sled, h2 or rustls internals; a dependency's own lines are asked for by
/// name (`RUST_LOG=debug,h2=debug`). Anything else is an `EnvFilter` directive list as is.
pub fn filter_directives(rust_log: Option<&str>) -> String {
    let Some(v) = rust_log.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_FILTER.into();
    };
    let bare = |d: &str| {
        ["off", "error", "warn", "info", "debug", "trace"]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(d))
    };
    let mut out = Vec::new();
    let mut level = None;
    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if bare(d) {
            level = Some(d);
        } else {
            out.push(d);
        }
    }
    match level {
        Some(level) => {
            // Quieter than WARN (`error`, `off`) quiets the dependencies too.
            let dependencies = if ["off", "error"]
                .iter()
                .any(|l| l.eq_ignore_ascii_case(level))
            {
                level
            } else {
                "warn"
            };
            let mut all = vec![format!("hookgate={level}"), dependencies.into()];
            if !out.iter().any(|d| d.starts_with("actix_http")) {
                all.push("actix_http=off".into());
            }
            all.extend(out.into_iter().map(String::from));
            all.join(",")
        }
        None => v.to_string(),
    }
}

pub(crate) fn init_tracing(format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = filter_directives(std::env::var("RUST_LOG").ok().as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("hookgate: RUST_LOG {directives:?} ignored: {e}");
        tracing_subscriber::EnvFilter::new(DEFAULT_FILTER)
    });
    // Colours only on a terminal: escape sequences in a log file are noise a reader's terminal
    // would act on.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    log_subscriber(format, filter, ansi, std::io::stderr).init();
}

/// The process's subscriber: `filter` (RUST_LOG) and, whatever it lets through, the caps of
/// [`dependency_caps`]; text lines with every field value escaped ([`EscapedFields`]), or JSON
/// (escaped by JSON itself). Tests install the same with another writer.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{fmt, Layer, Registry};
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .fmt_fields(EscapedFields)
            .with_writer(writer)
            .boxed(),
        // Flat objects: `{"timestamp","level","message","source",…}`, the shape log
        // shippers (Vector, Loki, jq) read without a path into a `fields` sub-object.
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer.with_filter(filter.and(dependency_caps())))
}

/// Upper bounds on what dependencies may log, applied on top of RUST_LOG so that no setting of
/// it lets a message body into the log:
/// - lapin logs a message the broker returned (unroutable, `mandatory`) at WARN under
///   `lapin::returned_messages` with the whole message, body bytes included (lapin 4.12
///   `src/returned_messages.rs`, `warn!(?message, "Server returned us a message")`): dropped
///   at every level. The relay reports returns itself, without the body.
/// - lapin traces every frame (`lapin::channels` "will handle frame", body frames included):
///   lapin and amq-protocol are capped at ERROR, where they log connection failures only.
/// - sled (through the `log` bridge) at WARN: below that it traces page-cache internals.
fn dependency_caps() -> tracing_subscriber::filter::Targets {
    use tracing::level_filters::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("lapin::returned_messages", LevelFilter::OFF)
        .with_target("lapin", LevelFilter::ERROR)
        .with_target("amq_protocol", LevelFilter::ERROR)
        .with_target("sled", LevelFilter::WARN)
}

/// Text-format fields with control characters escaped, so a value taken from a request (a
/// rejection reason, an id, a type, a header a dependency quotes) cannot start a forged line
/// or carry terminal escapes. Strings are quoted and escaped by `Debug` already; `%value`
/// fields and messages are escaped here. The `log.*` fields of the `log` bridge are left out,
/// as the default formatter does.
struct EscapedFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for EscapedFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        let mut out = Escape(&mut self.writer);
        self.result = if name == "message" {
            write!(out, "{separator}{value:?}")
        } else {
            write!(out, "{separator}{name}={value:?}")
        };
    }
}

/// Writes through, with control characters (and the Unicode line separators) escaped.
struct Escape<'a, W>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for Escape<'_, W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for part in
            s.split_inclusive(|c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            let mut chars = part.chars();
            match chars.next_back() {
                Some(c) if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                    self.0.write_str(chars.as_str())?;
                    write!(self.0, "{}", c.escape_default())?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

fn serve(path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_tracing(
        log_format
            .or(config.server.log_format)
            .unwrap_or(LogFormat::Text),
    );
    for note in &config.from_env {
        tracing::info!("{note}");
    }
    // What `check` and every reload refuse: started anyway, the gateway could not take a
    // single reload (not even a secret's rotation) until its config was fixed.
    if let Some(problem) = crate::admin::exposure_problem(&config.server) {
        anyhow::bail!("{problem}");
    }
    actix_web::rt::System::new().block_on(async move {
        // Installed before the start, so an early SIGHUP cannot kill the process.
        let signals = Signals::install()?;
        let running = crate::app::start(config).await?;
        let fatal = running.health.fatal.clone();
        tokio::select! {
            _ = signals.wait_for_shutdown(&running, path) => {}
            _ = fatal.cancelled() => {}
        }
        tracing::info!("shutting down: draining requests, then closing the store");
        let problems = running.health.problems();
        running.stop().await;
        if fatal.is_cancelled() {
            anyhow::bail!(
                "a background task could not be kept running: {}",
                problems.join("; ")
            );
        }
        Ok(())
    })
}

/// The signals `serve` handles; actix's own signal handling is off, so shutdown is ours.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler")?,
        })
    }

    /// Until SIGTERM or SIGINT; SIGHUP in the meantime reloads the config file `path`
    /// ([`crate::runtime`]): a file that fails `check` is logged and counted, and the running
    /// config stays.
    async fn wait_for_shutdown(mut self, running: &crate::app::Running, path: &Path) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
                    crate::runtime::report(&running.reload(path));
                }
            }
        }
    }
}

fn check(path: &Path, diff: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    crate::runtime::check_beyond_load(&config)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
    let tls = match &config.server.tls {
        Some(tls) => {
            format!(
                "  tls cert {} key {}",
                tls.cert.display(),
                tls.key.display()
            )
        }
        None => String::new(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", path.display())?;
    if config.dedup.enabled() {
        writeln!(
            out,
            "dedup shared {} (keys {}:{{source}}:{{id}}, claim {} s, on_unavailable {})",
            crate::config::redact_url(&config.dedup.shared),
            config.dedup.key_prefix,
            config.dedup.claim_secs,
            format!("{:?}", config.dedup.on_unavailable).to_lowercase()
        )?;
    }
    writeln!(
        out,
        "public {}{tls}  admin {}  store {}  exchange {}",
        config.server.listen,
        config.server.admin_listen,
        config.store.path.display(),
        config.amqp.exchange
    )?;
    let broker_tls = match &config.amqp.tls {
        Some(t) => format!(
            "  tls ca {}{}",
            t.ca.as_ref()
                .map_or("(system roots)".into(), |p| p.display().to_string()),
            t.cert
                .as_ref()
                .map_or(String::new(), |p| format!(" client cert {}", p.display()))
        ),
        None => String::new(),
    };
    let nodes: Vec<String> = config.amqp.url.iter().map(|u| redact_url(u)).collect();
    writeln!(out, "broker {}{broker_tls}", nodes.join(", "))?;
    for note in &config.from_env {
        writeln!(out, "note: {note}")?;
    }
    writeln!(
        out,
        "{:<20} {:<10} {:<28} {:<28} {:>10}  guards",
        "SOURCE", "PROVIDER", "PATH", "ROUTING KEY", "MAX BODY"
    )?;
    for s in &config.sources {
        let mut guards = Vec::new();
        if !s.allow_ips.is_empty() {
            guards.push(format!("allow_ips={}", s.allow_ips.len()));
        }
        if let Some(r) = s.rate_limit {
            guards.push(format!("rate={}/s burst {}", r.per_second, r.burst));
        }
        writeln!(
            out,
            "{:<20} {:<10} {:<28} {:<28} {:>10}  {}",
            s.name,
            s.provider.kind().as_str(),
            format!("/hooks/{}", s.name),
            s.routing_key,
            s.max_body_bytes,
            guards.join(" ")
        )?;
    }
    for s in &config.sources {
        for w in s.provider.warnings() {
            writeln!(out, "warning: source `{}`: {w}", s.name)?;
        }
    }
    for w in crate::topology::warnings(&config) {
        writeln!(out, "warning: {w}")?;
    }
    for w in crate::nodes::warnings(&config) {
        writeln!(out, "warning: {w}")?;
    }
    if diff {
        let (status, body) = crate::inspect_cli::admin_get(&config, "/config")
            .context("--diff: asking the running gateway's admin listener")?;
        if status != 200 {
            bail!("--diff: GET /config on the admin listener answered {status}: {body}");
        }
        let running: crate::runtime::Summary =
            serde_json::from_str(&body).context("--diff: GET /config answered unexpected JSON")?;
        if let Some(problem) =
            crate::runtime::sources_problem(config.sources.len(), running.sources.len())
        {
            bail!("--diff: a reload would be refused: {problem}");
        }
        // The fingerprints are keyed by the running store's `config.key`, which `serve` made
        // (the running store: this file may move `store.path`, a change that needs a restart).
        let store = running
            .restart
            .get("store.path")
            .map_or_else(|| config.store.path.clone(), std::path::PathBuf::from);
        let key = crate::runtime::FingerprintKey::load(&store).map_err(|e| {
            anyhow::anyhow!("--diff: {e} (run it as the user `serve` runs as, where it runs)")
        })?;
        if !running.key_check.is_empty() && running.key_check != key.check() {
            bail!(
                "--diff: {} is not the running gateway's key (another store's?): run it where `serve` runs, as its user",
                store.join("config.key").display()
            );
        }
        let changes = crate::runtime::diff(&running, &crate::runtime::Summary::of(&config, &key));
        let lines = changes.lines();
        if lines.is_empty() {
            writeln!(out, "diff: a reload would change nothing")?;
        } else {
            writeln!(out, "diff against the running gateway (+ added, - removed, ~ changed, ! needs a restart):")?;
            for l in lines {
                writeln!(out, "  {l}")?;
            }
        }
    }
    Ok(())
}

/// The URL a client on this machine reaches `listen` at (`https` when it serves TLS): an
/// unspecified address (`0.0.0.0`, `[::]`) as the loopback address of its family.
fn local_url(listen: SocketAddr, tls: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, listen.port()))
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let mut base = a.url.clone();
    let (name, provider, max_body) = match (&a.config, &a.provider) {
        (Some(path), _) => {
            let config = Config::load(path)?;
            base.get_or_insert_with(|| {
                local_url(config.server.listen, config.server.tls.is_some())
            });
            let mut sources = config.sources;
            let idx = match &a.source {
                Some(n) => sources
                    .iter()
                    .position(|s| &s.name == n)
                    .with_context(|| format!("no source named {n}"))?,
                None if sources.len() == 1 => 0,
                None => bail!("the config has several sources: name one with --source"),
            };
            let s = sources.swap_remove(idx);
            (s.name, s.provider, Some(s.max_body_bytes))
        }
        (None, Some(p)) => (
            a.source.clone().unwrap_or_else(|| p.clone()),
            explicit_provider(p, &a.with)?,
            None,
        ),
        (None, None) => bail!("give --config (and --source) or --provider with --with KEY=VALUE"),
    };
    let mut o = SampleOptions::new(SystemTime::now());
    o.id = a.id;
    o.event = a.event;
    o.key_id = a.key_id;
    if let Some(p) = &a.payload {
        o.payload = Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    if let Some(p) = &a.private_key {
        o.private_key =
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?);
    }
    let base = base.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let url = format!("{}/hooks/{}", base.trim_end_matches('/'), name);
    if let (ProviderConfig::Wecom(c), Some("url_verification")) = (&provider, o.event.as_deref()) {
        // The GET WeCom sends when the URL is saved: the reply must be `echo`, exactly.
        let echo = o.id.clone().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_string()
        });
        let query =
            providers::wecom::verification_query(c, o.now, &echo).map_err(anyhow::Error::msg)?;
        let get = format!("{url}?{query}");
        match a.format {
            SignFormat::Curl => println!("curl -sS -i {}", providers::sign::shell_quote(&get)),
            SignFormat::Json => println!(
                "{}",
                serde_json::json!({"method": "GET", "url": get, "headers": [], "body": "", "expect": echo})
            ),
        }
        return Ok(());
    }
    let sample = provider.sample(&o).map_err(anyhow::Error::msg)?;
    if let Some(max) = max_body.filter(|&max| sample.body.len() > max) {
        eprintln!(
            "hookgate sign: the sample body is {} bytes, over source {name}'s max_body_bytes ({max}): the gateway will answer 413 (give a smaller --payload)",
            sample.body.len()
        );
    }
    match a.format {
        SignFormat::Curl => println!("{}", sample.curl(&url)),
        SignFormat::Json => println!(
            "{}",
            serde_json::json!({
                "url": sample.url(&url),
                "headers": sample.headers,
                "body": String::from_utf8_lossy(&sample.body),
            })
        ),
    }
    Ok(())
}

/// Builds a provider config from `--provider` and `--with KEY=VALUE` pairs.
fn explicit_provider(provider: &str, with: &[String]) -> anyhow::Result<ProviderConfig> {
    let mut table = toml::Table::new();
    table.insert("provider".into(), toml::Value::String(provider.into()));
    for kv in with {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--with {kv}: expected KEY=VALUE"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        table.insert(k.trim().to_string(), value);
    }
    let keys = table.clone();
    let config: ProviderConfig = serde::Deserialize::deserialize(toml::Value::Table(table))
        .map_err(|e| anyhow::anyhow!("{}", serde_error("--with", e.message(), &keys)))?;
    if let Err(errors) = config.build() {
        bail!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(config)
}

fn outbox(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let (summary, from) = match crate::inspect_cli::open_local(&config)? {
        Some(store) => {
            let summary = crate::admin::outbox_summary(&store);
            store.close();
            (summary?, "")
        }
        None => {
            // The running gateway holds the store's lock: ask its admin listener instead.
            let (status, body) = crate::inspect_cli::admin_get(&config, "/outbox").context(
                "the store is locked (a gateway runs?) and the admin listener did not answer",
            )?;
            if status != 200 {
                bail!("GET /outbox on the admin listener answered {status}: {body}");
            }
            let summary: crate::admin::OutboxSummary =
                serde_json::from_str(&body).context("GET /outbox answered unexpected JSON")?;
            (summary, " (from the running gateway)")
        }
    };
    println!("pending: {}{from}", summary.pending);
    if let Some(o) = summary.oldest {
        println!(
            "oldest:  seq {}  id {}  type {}  source {}  routing key {}  accepted {}",
            o.seq, o.id, o.kind, o.source, o.routing_key, o.accepted
        );
    }
    println!("dead:    {}", summary.dead);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// `sign -c` aims at the config's listener (it printed :8080 whatever the config said).
    #[test]
    fn sign_aims_at_the_configured_listener() {
        let url = |s: &str| local_url(s.parse().unwrap(), false);
        assert_eq!(url("0.0.0.0:8088"), "http://127.0.0.1:8088");
        assert_eq!(
            local_url("0.0.0.0:8443".parse().unwrap(), true),
            "https://127.0.0.1:8443"
        );
        assert_eq!(url("[::]:8088"), "http://[::1]:8088");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80");
        assert_eq!(url("[fe80::1]:443"), "http://[fe80::1]:443");
    }

    /// Runs `f` under the process's subscriber set-up with `rust_log`, returning what it wrote.
    fn capture(format: LogFormat, rust_log: &str, f: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let writer = move || SharedBuf(sink.clone());
        let filter = tracing_subscriber::EnvFilter::new(rust_log);
        tracing::subscriber::with_default(log_subscriber(format, filter, false, writer), f);
        let bytes = buf.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 15: a bare level raises hookgate only; dependencies stay at WARN unless named.
    #[test]
    fn rust_log_levels_apply_to_hookgate_and_dependencies_stay_at_warn() {
        assert_eq!(filter_directives(None), DEFAULT_FILTER);
        assert_eq!(filter_directives(Some(" ")), DEFAULT_FILTER);
        assert_eq!(
            filter_directives(Some("debug")),
            "hookgate=debug,warn,actix_http=off"
        );
        assert_eq!(
            filter_directives(Some("debug,h2=debug")),
            "hookgate=debug,warn,actix_http=off,h2=debug"
        );
        assert_eq!(
            filter_directives(Some("error")),
            "hookgate=error,error,actix_http=off"
        );
        assert_eq!(
            filter_directives(Some("hookgate=trace,sled=info")),
            "hookgate=trace,sled=info"
        );
        for format in [LogFormat::Text, LogFormat::Json] {
            let filter = tracing_subscriber::EnvFilter::new(filter_directives(Some("debug")));
            let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
            let sink = buf.clone();
            let writer = move || SharedBuf(sink.clone());
            tracing::subscriber::with_default(
                log_subscriber(format, filter, false, writer),
                || {
                    tracing::debug!(target: "hookgate::relay", "ours-debug");
                    tracing::debug!(target: "h2::codec", "dependency-debug");
                    tracing::info!(target: "rustls::server", "dependency-info");
                    tracing::warn!(target: "h2::proto", "dependency-warn");
                },
            );
            let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
            assert!(out.contains("ours-debug"), "{out}");
            assert!(out.contains("dependency-warn"), "{out}");
            assert!(
                !out.contains("dependency-debug") && !out.contains("dependency-info"),
                "{out}"
            );
        }
    }

    const MARKER: &str = "PAYLOAD-MARKER-7f3a";

    #[test]
    fn class7_no_dependency_logs_a_body_whatever_rust_log_says() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for rust_log in [
                "trace",
                "warn,lapin=trace,amq_protocol=trace,sled=trace",
                "info",
            ] {
                let out = capture(format, rust_log, || {
                    // What lapin 4.12 does for a returned message: WARN, the whole message.
                    let message = MARKER.as_bytes().to_vec();
                    tracing::warn!(target: "lapin::returned_messages", ?message, "Server returned us a message");
                    tracing::error!(target: "lapin::returned_messages", "{MARKER}");
                    tracing::trace!(target: "lapin::channels", frame = MARKER, "will handle frame");
                    tracing::warn!(target: "lapin::channel", "{MARKER}");
                    tracing::debug!(target: "amq_protocol_tcp", "{MARKER}");
                    tracing::info!(target: "sled::pagecache", "{MARKER}");
                    // Still logged: lapin's connection errors, and our own lines.
                    tracing::error!(target: "lapin::io_loop", "error doing IO");
                    tracing::warn!(target: "hookgate::relay", "broker unreachable");
                });
                assert!(!out.contains(MARKER), "{rust_log}: {out}");
                assert!(out.contains("error doing IO"), "{rust_log}: {out}");
                assert!(out.contains("broker unreachable"), "{rust_log}: {out}");
            }
        }
    }

    #[test]
    fn class7_request_values_cannot_forge_log_lines() {
        let forged = "bad\n2030-01-01T00:00:00Z  INFO accepted source=gh\r\u{1b}[31m\u{2028}";
        for format in [LogFormat::Text, LogFormat::Json] {
            let out = capture(format, "info", || {
                tracing::warn!(source = "gh", reason = %forged, id = ?forged, kind = forged, "rejected {forged}");
            });
            assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
            assert!(out.ends_with('\n'), "{out}");
            assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
            // JSON lines split on \n only; a raw U+2028 is valid JSON there.
            if matches!(format, LogFormat::Text) {
                assert!(!out.contains('\u{2028}'), "{out:?}");
            }
            assert!(
                out.contains("2030-01-01T00:00:00Z"),
                "the value is kept, escaped: {out}"
            );
        }
        let out = capture(LogFormat::Text, "info", || {
            tracing::warn!(reason = %"a\nb", "plain");
        });
        assert!(out.contains(r"plain reason=a\nb"), "{out}");
    }
}
