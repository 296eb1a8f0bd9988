//! One request through the stages: [`guard`] (allowlist, client rate limit, declared length)
//! → body read → [`verify`] (the provider adapter) → source rate limit → [`entry`] → dedup +
//! event log (on disk before the reply) → reply. Everything after the body read ([`admit`])
//! works on a framework-free [`Request`]; only [`process`] knows actix.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{web, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;
use ipnet::IpNet;
use providers::{Admission, Envelope, Provider, ProviderKind, RawRequest, Reply};

use crate::app::Health;
use crate::config::{contains, render_routing_key, Config, RateLimit, SourceConfig};
use crate::dedup::Decision;
use crate::limit::{client_ip, retry_after_secs, SourceLimiter};
use crate::outcome::{Limiter, Outcome, Refusal};
use crate::relay::BrokerStatus;
use crate::runtime::Runtime;
use crate::store::{Entry, SharedStore};

/// One configured endpoint, built once at start.
pub struct Source {
    pub name: String,
    pub kind: ProviderKind,
    pub provider: Box<dyn Provider>,
    pub allow_ips: Vec<IpNet>,
    /// Shared with the next [`Runtime`] when a reload leaves `rate_limit` unchanged, so a
    /// SIGHUP does not refill every bucket.
    pub limiter: Option<Arc<SourceLimiter>>,
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: usize,
    pub routing_key: String,
}

impl Source {
    pub fn build(c: &SourceConfig) -> Result<Source, String> {
        let provider = c.provider.build().map_err(|e| format!("{e:?}"))?;
        Ok(Source {
            name: c.name.clone(),
            kind: c.provider.kind(),
            provider,
            allow_ips: c.allow_ips.clone(),
            limiter: c
                .rate_limit
                .as_ref()
                .map(|r| Arc::new(SourceLimiter::new(r))),
            rate_limit: c.rate_limit,
            max_body_bytes: c.max_body_bytes,
            routing_key: c.routing_key.clone(),
        })
    }
}

/// Everything a request needs, shared by all workers.
pub struct Gateway {
    /// Sources, guards and limits: what a SIGHUP reload swaps. A request loads it once, at its
    /// start, and finishes with that snapshot ([`crate::runtime`]).
    pub runtime: arc_swap::ArcSwap<Runtime>,
    pub store: SharedStore,
    pub broker: Arc<BrokerStatus>,
    pub request_timeout: Duration,
    pub health: Arc<Health>,
    /// Recent refusals per source, for `GET /rejections`.
    pub rejections: crate::rejections::Rejections,
    /// The dedup store shared with other replicas (`[dedup] shared`), when configured.
    pub dedup: Option<Arc<crate::dedup::Shared>>,
}

impl Gateway {
    pub fn new(
        config: &Config,
        store: SharedStore,
        broker: Arc<BrokerStatus>,
        health: Arc<Health>,
    ) -> Result<Gateway, String> {
        Ok(Gateway {
            runtime: arc_swap::ArcSwap::from_pointee(Runtime::build(
                config,
                &crate::runtime::FingerprintKey::load_or_create(&config.store.path)?,
                None,
            )?),
            store,
            broker,
            request_timeout: Duration::from_secs(config.server.request_timeout_secs),
            health,
            rejections: Default::default(),
            dedup: crate::dedup::Shared::new(&config.dedup, config.store.dedup_window_secs)?,
        })
    }
}

/// actix's header map seen through the providers' `Headers` trait.
struct ActixHeaders<'a>(&'a HeaderMap);

/// What a provider reads for a header sent more than once, or whose value is not visible
/// ASCII: a lone control character, which no id, type, timestamp or signature check takes.
/// Read as absent, a non-text type header became the default type; read as its first copy,
/// a repeated id or type was whatever a proxy reading the last copy did not see (found by
/// a black-box review). Every header a provider reads is one no provider sends twice.
const AMBIGUOUS: &str = "\u{1}";

impl providers::Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let mut values = self.0.get_all(name);
        let first = values.next()?;
        if values.next().is_some() {
            return Some(AMBIGUOUS);
        }
        Some(first.to_str().unwrap_or(AMBIGUOUS))
    }
}

/// The client's address: the peer, or what a trusted proxy says (docs/security.md, "Client IP").
pub fn request_client_ip(rt: &Runtime, req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let values = header_values(req, &rt.forwarded_header.header_name());
    client_ip(peer, &values, rt.forwarded_header, &rt.trusted_proxies)
}

/// A request as the core stages see it: no HTTP framework type, so the stages are plain
/// functions that unit tests call with a temporary store.
pub struct Request<'a> {
    pub client: IpAddr,
    pub headers: &'a dyn providers::Headers,
    pub query: &'a str,
    pub body: &'a [u8],
    pub received: SystemTime,
}

/// A refusal with the source provider's failure body.
fn refuse(source: &Source, refusal: Refusal, detail: String) -> Outcome {
    Outcome::Rejected {
        refusal,
        detail,
        reply: source.provider.failure(refusal.status(), refusal.message()),
    }
}

fn rate_limited(source: &Source, limiter: Limiter, wait: Duration) -> Outcome {
    Outcome::RateLimited {
        limiter,
        retry_after_secs: retry_after_secs(wait),
        reply: source.provider.failure(429, "rate limited"),
    }
}

fn unavailable(source: &Source, reason: String, id: String, kind: String) -> Outcome {
    Outcome::Unavailable {
        reason,
        id,
        kind,
        reply: source.provider.failure(503, "temporarily unavailable"),
    }
}

/// Stage 1, before the body is read: allowlist, the per-client budget, the declared length.
/// Nothing here costs a body read or a signature check.
pub fn guard(
    rt: &Runtime,
    source: &Source,
    client: IpAddr,
    declared: Option<u64>,
) -> Result<(), Outcome> {
    if !source.allow_ips.is_empty() && !contains(&source.allow_ips, client) {
        let detail = format!("client {client} not in allow_ips");
        return Err(refuse(source, Refusal::Forbidden, detail));
    }
    // Unauthenticated traffic is limited per client before the body is read or a signature
    // checked; the source's own budget is spent only after verification (`admit`).
    if let Some(Err(wait)) = rt.client_limiter.as_ref().map(|l| l.check(client)) {
        return Err(rate_limited(source, Limiter::Client, wait));
    }
    if declared.is_some_and(|n| n > source.max_body_bytes as u64) {
        return Err(too_large(source, declared));
    }
    Ok(())
}

/// Stage 2: the adapter verifies and normalizes; `providers::admit` also bounds and shapes the
/// id and type (issue 11, class 1). A control probe is answered here.
pub fn verify(
    source: &Source,
    request: &Request<'_>,
) -> Result<(providers::Event, Reply), Outcome> {
    let raw = RawRequest {
        headers: request.headers,
        query: request.query,
        body: request.body,
    };
    match providers::admit(&*source.provider, &raw, request.received) {
        Ok(Admission::Event { event, ack }) => Ok((event, ack)),
        Ok(Admission::Control(reply)) => Err(Outcome::Control(reply)),
        Err(providers::Rejection::Probe) => Err(Outcome::Probe(
            source.provider.failure(401, Refusal::Signature.message()),
        )),
        Err(rejection) => Err(refuse(
            source,
            Refusal::of(&rejection),
            rejection.to_string(),
        )),
    }
}

/// Stage 3: the record the store keeps and the relay publishes, with the envelope's id and type.
pub fn entry(
    source: &Source,
    event: providers::Event,
    received: SystemTime,
) -> (Entry, String, String) {
    let mut envelope = Envelope::new(&source.name, source.kind, event, received);
    let entry = Entry {
        routing_key: render_routing_key(
            &source.routing_key,
            &source.name,
            &envelope.kind,
            source.kind.as_str(),
        ),
        message_id: envelope.id.clone(),
        kind: envelope.kind.clone(),
        source: source.name.clone(),
        provider: source.kind.as_str().to_string(),
        // Not published (serde-skipped in the envelope): the store's second dedup key.
        content_key: envelope.content_key.take(),
        timestamp: providers::unix_secs(received).max(0) as u64,
        replay: false,
        body: envelope.to_json(),
    };
    (entry, envelope.id, envelope.kind)
}

/// Stages 2–5 for a request whose body has been read: verify, the source's budget, dedup and
/// the durable write, the reply.
pub async fn admit(gw: &Gateway, source: &Source, request: &Request<'_>) -> Outcome {
    let (event, ack) = match verify(source, request) {
        Ok(admitted) => admitted,
        Err(outcome) => return outcome,
    };
    let (entry, id, kind) = entry(source, event, request.received);
    // Only now: a forger who cannot sign cannot use up the budget of the provider's real
    // deliveries (docs/security.md). Nor can one who replays a captured delivery: what this
    // node has accepted (or is writing) is answered as the duplicate it is (below) without a
    // token.
    if let Some(limiter) = &source.limiter {
        let known = gw.store.lookup(&entry, entry.timestamp);
        if matches!(known, Ok(crate::store::Local::Absent) | Err(_)) {
            if let Err(wait) = limiter.check() {
                return rate_limited(source, Limiter::Source, wait);
            }
        }
    }
    let decided = crate::dedup::accept(
        &gw.store,
        gw.dedup.as_ref(),
        &entry,
        entry.timestamp,
        gw.request_timeout,
    )
    .await;
    match decided {
        Ok(Decision::New) => Outcome::Accepted {
            reply: ack,
            id,
            kind,
        },
        Ok(Decision::Duplicate) => Outcome::Duplicate {
            reply: ack,
            id,
            kind,
        },
        // Another replica is writing this id now (or died doing so): the provider retries.
        Ok(Decision::Claimed { retry_after_secs }) => Outcome::Claimed {
            retry_after_secs,
            id,
            kind,
            reply: source.provider.failure(503, "temporarily unavailable"),
        },
        Ok(Decision::Unavailable) => unavailable(
            source,
            "shared dedup store unavailable (dedup.on_unavailable = reject)".into(),
            id,
            kind,
        ),
        // Backlog full, store failing or too slow: the provider retries, nothing is acknowledged.
        Err(e) => unavailable(source, e.to_string(), id, kind),
    }
}

/// Runs every stage for an actix request from `client` to `source` (both of the snapshot
/// `rt`): the guards, the body read (bounded in size and time), then [`admit`]. A refusal is
/// kept for `GET /rejections` with the body it read, if any.
pub async fn process(
    gw: &Gateway,
    rt: &Runtime,
    source: &Source,
    client: IpAddr,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Outcome {
    let (outcome, body) = run(gw, rt, source, client, req, payload).await;
    crate::rejections::record_request(gw, &source.name, client, req, &outcome, body.as_deref());
    outcome
}

/// [`process`] without the record of a refusal: the outcome, and the body once read.
async fn run(
    gw: &Gateway,
    rt: &Runtime,
    source: &Source,
    client: IpAddr,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> (Outcome, Option<BytesMut>) {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Err(outcome) = guard(rt, source, client, declared) {
        return (outcome, None);
    }
    let read = tokio::time::timeout(
        gw.request_timeout,
        read_body(payload, source.max_body_bytes, declared),
    );
    let body = match read.await {
        Err(_) => {
            let detail = "body not received in time".into();
            return (refuse(source, Refusal::Timeout, detail), None);
        }
        Ok(Err(BodyError::TooLarge)) => return (too_large(source, declared), None),
        Ok(Err(BodyError::Broken(e))) => {
            let detail = format!("body read failed: {e}");
            return (refuse(source, Refusal::Malformed, detail), None);
        }
        Ok(Ok(b)) => b,
    };
    // A GET reaches a source only for a provider's URL verification (WeCom), which has no
    // body: one with a body is not that, and must not be taken as an event either.
    if req.method() == actix_web::http::Method::GET && !body.is_empty() {
        let detail = "a GET carries no body (it is only a URL verification)".into();
        return (refuse(source, Refusal::Malformed, detail), Some(body));
    }
    let headers = ActixHeaders(req.headers());
    let request = Request {
        client,
        headers: &headers,
        query: req.query_string(),
        body: &body,
        received: SystemTime::now(),
    };
    let outcome = admit(gw, source, &request).await;
    (outcome, Some(body))
}

fn too_large(source: &Source, declared: Option<u64>) -> Outcome {
    let detail = format!(
        "body over {} bytes (declared {:?})",
        source.max_body_bytes, declared
    );
    refuse(source, Refusal::TooLarge, detail)
}

/// Every field value of `name`, in order. A value with bytes past ASCII (obs-text) is kept,
/// those bytes replaced: dropped whole, a client's `X-Forwarded-For: \xff` took the address
/// the proxy appended to it along, and the proxy itself became the client (inside an
/// allowlist that trusts it; found by a black-box review). Kept, it is an unparseable hop,
/// and the walk stops left of the proxy's own entry.
fn header_values<'a>(req: &'a HttpRequest, name: &HeaderName) -> Vec<std::borrow::Cow<'a, str>> {
    req.headers()
        .get_all(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect()
}

enum BodyError {
    TooLarge,
    Broken(String),
}

/// The most a body buffer reserves before the bytes arrive (it grows as they do).
const FIRST_BODY_BUFFER: usize = 256 * 1024;

/// Reads at most `limit` bytes; a longer (e.g. chunked) body is cut off there.
async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
    declared: Option<u64>,
) -> Result<BytesMut, BodyError> {
    // The declared length is sized for, up to a bound: a sender that declares the limit and
    // sends nothing would otherwise hold that much per connection before any check.
    let first = declared.map_or(8 * 1024, |n| n as usize);
    let mut buf = BytesMut::with_capacity(first.min(limit).min(FIRST_BODY_BUFFER));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
