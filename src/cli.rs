//! The `hookgate` command line: `serve`, `check`, `sign`, `outbox`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use providers::sign::SampleOptions;
use providers::ProviderConfig;

use crate::config::{serde_error, Config};

#[derive(Parser)]
#[command(
    name = "hookgate",
    version,
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
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "HOOKGATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate a config file and list its sources; exits non-zero on any error.
    Check {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: PathBuf,
    },
    /// Print a correctly signed sample request for a source (a curl line by default).
    Sign(Box<SignArgs>),
    /// Show how many events wait for the broker, and the oldest one.
    Outbox {
        #[arg(short, long, env = "HOOKGATE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Base URL of the gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The provider's event name (push, TRADE_SUCCESS, TRANSACTION.SUCCESS, ...).
    #[arg(long)]
    event: Option<String>,
    /// Event id (random when absent).
    #[arg(long)]
    id: Option<String>,
    /// File with the event payload (JSON; for Alipay a JSON object of parameters).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// PEM private key for RSA providers (Alipay's, or the WeChat Pay platform's).
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
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Check { config } => check(&config),
        Command::Sign(args) => sign(*args),
        Command::Outbox { config } => outbox(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(format: LogFormat) {
    // actix_http logs every malformed request, slow-header timeout and reset connection at
    // ERROR ("stream error: ..."): the client already got its 400/408, and a line per bad
    // request would let anyone fill the log. Off by default; RUST_LOG brings it back.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,lapin=warn,actix_server=warn,actix_http=off")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(path: &Path, log_format: LogFormat) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_tracing(log_format);
    actix_web::rt::System::new().block_on(async move {
        // Installed before the start, so an early SIGHUP cannot kill the process.
        let signals = Signals::install()?;
        let running = crate::app::start(config).await?;
        signals.wait_for_shutdown(&running).await;
        tracing::info!("shutting down: draining requests, then flushing the store");
        running.stop().await;
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

    /// Until SIGTERM or SIGINT; SIGHUP in the meantime reloads the TLS certificate (a bad new
    /// one is logged and the current one kept).
    async fn wait_for_shutdown(mut self, running: &crate::app::Running) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => match running.reload_tls() {
                    Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Ok(false) => tracing::info!("SIGHUP: no [server.tls] configured, nothing to reload"),
                    Err(e) => tracing::error!("SIGHUP: keeping the current TLS certificate: {e}"),
                },
            }
        }
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let tls = match &config.server.tls {
        Some(tls) => {
            crate::server::tls::TlsCerts::load(tls)?;
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
    writeln!(
        out,
        "public {}{tls}  admin {}  store {}  exchange {}",
        config.server.listen,
        config.server.admin_listen,
        config.store.path.display(),
        config.amqp.exchange
    )?;
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
    Ok(())
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let (name, provider) = match (&a.config, &a.provider) {
        (Some(path), _) => {
            let config = Config::load(path)?;
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
            (s.name, s.provider)
        }
        (None, Some(p)) => (
            a.source.clone().unwrap_or_else(|| p.clone()),
            explicit_provider(p, &a.with)?,
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
    let sample = provider.sample(&o).map_err(anyhow::Error::msg)?;
    let url = format!("{}/hooks/{}", a.url.trim_end_matches('/'), name);
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
    match crate::store::Store::open(&config.store) {
        Ok(store) => {
            println!("pending: {}", store.pending());
            if let Some((seq, e)) = store.peek(1)?.into_iter().next() {
                let at = chrono::DateTime::from_timestamp(e.timestamp as i64, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!(
                    "oldest:  seq {seq}  id {}  type {}  source {}  routing key {}  accepted {at}",
                    e.message_id, e.kind, e.source, e.routing_key
                );
            }
            Ok(())
        }
        Err(open_err) => {
            // The running gateway holds the store's lock: ask its admin listener instead.
            let body = http_get(config.server.admin_listen, "/readyz").with_context(|| {
                format!("store is locked ({open_err}) and the admin listener did not answer")
            })?;
            let v: serde_json::Value =
                serde_json::from_str(&body).context("readyz answered with non-JSON")?;
            println!(
                "pending: {} (from the running gateway's /readyz)",
                v["outbox_pending"]
            );
            println!("broker:  {}", v["broker"]);
            Ok(())
        }
    }
}

/// A minimal HTTP/1.0 GET on the (loopback) admin listener.
fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .context("malformed HTTP response")?;
    Ok(body)
}
