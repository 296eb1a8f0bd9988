//! One request through the stages: guard (allowlist, client rate limit, body cap) → verify and
//! normalize (the provider adapter) → source rate limit → dedup + event log (on disk before
//! the reply) → reply.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest};
use bytes::BytesMut;
use futures_util::StreamExt;
use ipnet::IpNet;
use providers::{Admission, Envelope, Provider, ProviderKind, RawRequest};

use crate::app::Health;
use crate::config::{contains, render_routing_key, Config, RateLimit, SourceConfig};
use crate::limit::{client_ip, retry_after_secs, SourceLimiter};
use crate::outcome::{Limiter, Outcome};
use crate::relay::BrokerStatus;
use crate::runtime::Runtime;
use crate::store::{Accepted, Entry, SharedStore};

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
}

impl Gateway {
    pub fn new(
        config: &Config,
        store: SharedStore,
        broker: Arc<BrokerStatus>,
        health: Arc<Health>,
    ) -> Result<Gateway, String> {
        Ok(Gateway {
            runtime: arc_swap::ArcSwap::from_pointee(Runtime::build(config, None)?),
            store,
            broker,
            request_timeout: Duration::from_secs(config.server.request_timeout_secs),
            health,
            rejections: Default::default(),
        })
    }
}

/// actix's header map seen through the providers' `Headers` trait.
struct ActixHeaders<'a>(&'a HeaderMap);

impl providers::Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The client's address: the peer, or what a trusted proxy says (CONTRACT.md, "Client IP").
pub fn request_client_ip(rt: &Runtime, req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    client_ip(
        peer,
        &header_values(req, rt.forwarded_header.name()),
        rt.forwarded_header,
        &rt.trusted_proxies,
    )
}

/// Runs the stages for a request from `client` to `source` (both of the snapshot `rt`) and
/// decides its one outcome.
pub async fn process(
    gw: &Gateway,
    rt: &Runtime,
    source: &Source,
    client: IpAddr,
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Outcome {
    let fail = |status: u16, message: &str| source.provider.failure(status, message);

    // Guards first: nothing below costs a body read or a signature check.
    if !source.allow_ips.is_empty() && !contains(&source.allow_ips, client) {
        return Outcome::Rejected {
            reason: format!("client {client} not in allow_ips"),
            reply: fail(403, "forbidden"),
        };
    }
    // Unauthenticated traffic is limited per client before the body is read or a signature
    // checked; the source's own budget is spent only after verification (below).
    if let Some(Err(wait)) = rt.client_limiter.as_ref().map(|l| l.check(client)) {
        return Outcome::RateLimited {
            limiter: Limiter::Client,
            retry_after_secs: retry_after_secs(wait),
            reply: fail(429, "rate limited"),
        };
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > source.max_body_bytes as u64) {
        return too_large(source, declared);
    }

    let body = match tokio::time::timeout(
        gw.request_timeout,
        read_body(payload, source.max_body_bytes, declared),
    )
    .await
    {
        Err(_) => {
            return Outcome::Rejected {
                reason: "body not received in time".into(),
                reply: fail(408, "request timeout"),
            }
        }
        Ok(Err(BodyError::TooLarge)) => return too_large(source, declared),
        Ok(Err(BodyError::Broken(e))) => {
            return Outcome::Rejected {
                reason: format!("body read failed: {e}"),
                reply: fail(400, "malformed request"),
            }
        }
        Ok(Ok(b)) => b.freeze(),
    };
    // For the record of a refusal (size and digest, never the bytes themselves).
    actix_web::HttpMessage::extensions_mut(req).insert(crate::rejections::ReadBody(body.clone()));

    let received = SystemTime::now();
    let headers = ActixHeaders(req.headers());
    let raw = RawRequest {
        headers: &headers,
        query: req.query_string(),
        body: &body,
    };
    // `providers::admit` also bounds and shapes the id and type (issue 11, class 1).
    let (event, ack) = match providers::admit(&*source.provider, &raw, received) {
        Ok(Admission::Event { event, ack }) => (event, ack),
        Ok(Admission::Control(reply)) => return Outcome::Control(reply),
        Err(providers::Rejection::Probe) => return Outcome::Probe(fail(401, "unauthorized")),
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == 401 {
                "unauthorized"
            } else {
                "malformed request"
            };
            return Outcome::Rejected {
                reason: rejection.to_string(),
                reply: fail(status, message),
            };
        }
    };

    // Only now: a forger who cannot sign cannot use up the budget of the provider's real
    // deliveries (CONTRACT.md, HTTP table).
    if let Some(Err(wait)) = source.limiter.as_ref().map(|l| l.check()) {
        return Outcome::RateLimited {
            limiter: Limiter::Source,
            retry_after_secs: retry_after_secs(wait),
            reply: fail(429, "rate limited"),
        };
    }

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
    match gw
        .store
        .accept(&entry, entry.timestamp, gw.request_timeout)
        .await
    {
        Ok(Accepted::New) => Outcome::Accepted {
            reply: ack,
            id: envelope.id,
            kind: envelope.kind,
        },
        Ok(Accepted::Duplicate) => Outcome::Duplicate {
            reply: ack,
            id: envelope.id,
            kind: envelope.kind,
        },
        // Backlog full, store failing or too slow: the provider retries, nothing is acknowledged.
        Err(e) => Outcome::Unavailable {
            reason: e.to_string(),
            reply: fail(503, "temporarily unavailable"),
        },
    }
}

fn too_large(source: &Source, declared: Option<u64>) -> Outcome {
    Outcome::Rejected {
        reason: format!(
            "body over {} bytes (declared {:?})",
            source.max_body_bytes, declared
        ),
        reply: source.provider.failure(413, "payload too large"),
    }
}

fn header_values<'a>(req: &'a HttpRequest, name: &str) -> Vec<&'a str> {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect()
}

enum BodyError {
    TooLarge,
    Broken(String),
}

/// Reads at most `limit` bytes; a longer (e.g. chunked) body is cut off there.
async fn read_body(
    payload: &mut web::Payload,
    limit: usize,
    declared: Option<u64>,
) -> Result<BytesMut, BodyError> {
    let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}
