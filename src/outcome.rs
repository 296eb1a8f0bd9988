//! Every request ends in exactly one [`Outcome`]; its HTTP answer, log line and metric all
//! come from here.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use providers::Reply;
use tracing::Level;

use crate::metrics::{self, RequestLabels};

#[derive(Debug)]
pub enum Outcome {
    /// New event, durable in the outbox.
    Accepted {
        reply: Reply,
        id: String,
        kind: String,
    },
    /// Seen within the dedup window: same acknowledgement, nothing enqueued.
    Duplicate {
        reply: Reply,
        id: String,
        kind: String,
    },
    /// A control probe answered without publishing (url_verification, check_url).
    Control(Reply),
    /// Refused: 400, 401, 403, 408 or 413 with the provider's failure body. `detail` is the
    /// log's explanation; the status, metric label and recorded reason come from `refusal`.
    Rejected {
        refusal: Refusal,
        detail: String,
        reply: Reply,
    },
    /// A provider's own verification probe, refused as the provider expects; not an alert.
    Probe(Reply),
    /// 429 with `Retry-After`.
    RateLimited {
        limiter: Limiter,
        retry_after_secs: u64,
        reply: Reply,
    },
    /// 503 with `Retry-After`: another replica holds an unconfirmed claim on this id (it is
    /// writing the event, or died doing so and the claim expires).
    Claimed {
        retry_after_secs: u64,
        id: String,
        kind: String,
        reply: Reply,
    },
    /// 503 with `Retry-After`: the outbox is full or the store fails; the provider retries.
    /// Decided after the signature: the event's id and type are known (and logged).
    Unavailable {
        reason: String,
        id: String,
        kind: String,
        reply: Reply,
    },
    UnknownSource,
    /// 404: a path that is not `/hooks/{source}`.
    NotFound,
    /// 405: a method the source (or, for an unknown source, any source) does not serve;
    /// `allow` is the `Allow` header.
    MethodNotAllowed {
        allow: &'static str,
    },
}

/// What a request's log line says besides its outcome.
pub struct RequestInfo<'a> {
    /// The configured source, `None` when the path names none.
    pub source: Option<&'a str>,
    /// The path's source segment as requested, logged for a 404 (escaped by the log
    /// formatter, at most [`MAX_REQUESTED`] bytes).
    pub requested: &'a str,
    pub provider: Option<&'static str>,
    pub client_ip: std::net::IpAddr,
    /// The event id a refused request carries in a header (unverified: it is what the sender
    /// claims, shaped like an id or left out).
    pub claimed_id: Option<String>,
}

/// The longest requested source name a 404 line repeats.
pub const MAX_REQUESTED: usize = 64;

/// The id header of providers that send one (or the one a source configured: `configured`),
/// read for the log line of a refusal; only a value shaped like an id (bounded, visible
/// ASCII) is kept.
pub fn claimed_id(
    kind: providers::ProviderKind,
    configured: Option<&str>,
    headers: &actix_web::http::header::HeaderMap,
) -> Option<String> {
    let value = configured
        .into_iter()
        .chain(kind.id_headers().iter().copied())
        .find_map(|n| headers.get(n))?
        .to_str()
        .ok()?;
    providers::bounded(value, |c| c.is_ascii_graphic(), "id")
        .ok()
        .map(str::to_string)
}

/// Why a request was refused: each kind owns its HTTP status, its `outcome` metric label and
/// the reason recorded in the rejection ring, so none of them is ever recovered from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client is not in the source's `allow_ips` (403).
    Forbidden,
    /// The body did not arrive within `request_timeout_secs` (408).
    Timeout,
    /// Over the source's `max_body_bytes` (413).
    TooLarge,
    /// Not what the provider sends (400).
    Malformed,
    /// No signature, or one that does not verify (401).
    Signature,
    /// A signed timestamp outside the provider's window (401).
    Timestamp,
    /// A verification token that does not match (401).
    Token,
    /// Verified, but addressed to another recipient: app id, merchant, corp id (401).
    Recipient,
}

impl Refusal {
    /// The adapter's typed refusal, as the gateway reports it (`Probe` is an outcome of its
    /// own, [`Outcome::Probe`], and maps to `Signature` here only for completeness).
    pub fn of(rejection: &providers::Rejection) -> Refusal {
        use providers::Rejection as R;
        match rejection {
            R::MissingHeader(_) | R::BadSignature | R::Probe => Refusal::Signature,
            R::StaleTimestamp => Refusal::Timestamp,
            R::BadToken => Refusal::Token,
            R::WrongRecipient(_) => Refusal::Recipient,
            R::Malformed(_) => Refusal::Malformed,
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Refusal::Forbidden => 403,
            Refusal::Timeout => 408,
            Refusal::TooLarge => 413,
            Refusal::Malformed => 400,
            Refusal::Signature | Refusal::Timestamp | Refusal::Token | Refusal::Recipient => 401,
        }
    }

    /// `hookgate_requests_total{outcome}`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Forbidden => "forbidden",
            Refusal::Timeout => "timeout",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::Signature | Refusal::Timestamp | Refusal::Token | Refusal::Recipient => {
                "unauthorized"
            }
        }
    }

    /// The reply's short message, in the provider's failure shape.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Forbidden => "forbidden",
            Refusal::Timeout => "request timeout",
            Refusal::TooLarge => "payload too large",
            Refusal::Malformed => "malformed request",
            Refusal::Signature | Refusal::Timestamp | Refusal::Token | Refusal::Recipient => {
                "unauthorized"
            }
        }
    }

    /// The reason kept in the rejection ring and counted in `hookgate_refusals_total`.
    pub fn reason(self) -> crate::rejections::Reason {
        use crate::rejections::Reason;
        match self {
            Refusal::Forbidden | Refusal::Recipient => Reason::Forbidden,
            Refusal::Timeout => Reason::Timeout,
            Refusal::TooLarge => Reason::TooLarge,
            Refusal::Malformed => Reason::Malformed,
            Refusal::Signature => Reason::Signature,
            Refusal::Timestamp => Reason::Timestamp,
            Refusal::Token => Reason::Token,
        }
    }
}

/// Which bucket refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// `server.client_rate_limit`: per client IP, before the body is read.
    Client,
    /// The source's `rate_limit`: verified requests only.
    Source,
}

impl Limiter {
    pub fn as_str(self) -> &'static str {
        match self {
            Limiter::Client => "client",
            Limiter::Source => "source",
        }
    }
}

/// How long a provider should wait before retrying a 503.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Control(_) => "control",
            Outcome::Rejected { refusal, .. } => refusal.label(),
            Outcome::Probe(_) => "probe",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Unavailable { .. } => "unavailable",
            Outcome::Claimed { .. } => "claimed",
            Outcome::UnknownSource => "unknown_source",
            Outcome::NotFound => "not_found",
            Outcome::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    /// The HTTP status this outcome answers with.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Accepted { reply, .. }
            | Outcome::Duplicate { reply, .. }
            | Outcome::Control(reply)
            | Outcome::Rejected { reply, .. }
            | Outcome::Probe(reply)
            | Outcome::RateLimited { reply, .. }
            | Outcome::Unavailable { reply, .. }
            | Outcome::Claimed { reply, .. } => reply.status,
            Outcome::UnknownSource | Outcome::NotFound => 404,
            Outcome::MethodNotAllowed { .. } => 405,
        }
    }

    /// Logs and counts the outcome, then renders it.
    pub fn finish(self, request: &RequestInfo<'_>, elapsed: std::time::Duration) -> HttpResponse {
        let source = request.source;
        let label = source.unwrap_or("-");
        let m = metrics::get();
        m.requests
            .get_or_create(&RequestLabels {
                source: label.to_string(),
                outcome: self.label(),
            })
            .inc();
        if let (Some(source), Some((reason, _))) = (source, crate::rejections::Reason::of(&self)) {
            m.refusals
                .get_or_create(&metrics::RefusalLabels {
                    source: source.to_string(),
                    reason: reason.as_str(),
                })
                .inc();
        }
        if source.is_some() {
            m.request_seconds
                .get_or_create(&metrics::SourceLabel {
                    source: label.to_string(),
                })
                .observe(elapsed.as_secs_f64());
        }
        if let Outcome::RateLimited { limiter, .. } = &self {
            m.rate_limited
                .get_or_create(&metrics::LimiterLabels {
                    source: label.to_string(),
                    limiter: limiter.as_str(),
                })
                .inc();
        }
        // One line per request. Refusals are what a flood produces: past a burst of lines per
        // source and kind, they are counted and summarised (`RefusalLog`).
        let (level, sampled) = match &self {
            Outcome::Accepted { .. } | Outcome::Duplicate { .. } | Outcome::Control(_) => {
                (Level::INFO, false)
            }
            Outcome::Probe(_)
            | Outcome::UnknownSource
            | Outcome::NotFound
            | Outcome::MethodNotAllowed { .. } => (Level::INFO, true),
            Outcome::Rejected { .. } | Outcome::RateLimited { .. } => (Level::WARN, true),
            Outcome::Unavailable { .. } => (Level::ERROR, true),
            // Another replica is accepting this id now: normal with replicas, retried.
            Outcome::Claimed { .. } => (Level::INFO, true),
        };
        if !sampled || refusal_log().should_log(label, self.label(), level) {
            self.log(request, level, elapsed);
        }
        self.into_response()
    }

    /// The request's line: what happened, to which event, from whom, how fast. Never a
    /// header value but an event id, never a signature or a body.
    fn log(&self, r: &RequestInfo<'_>, level: Level, elapsed: Duration) {
        let (id, kind, reason, message) = match self {
            Outcome::Accepted { id, kind, .. } => {
                (Some(id.as_str()), kind.as_str(), "", "accepted")
            }
            Outcome::Duplicate { id, kind, .. } => (
                Some(id.as_str()),
                kind.as_str(),
                "",
                "duplicate, acknowledged again",
            ),
            Outcome::Control(_) => (None, "-", "", "control probe answered"),
            Outcome::Probe(_) => (None, "-", "", "provider signature probe refused"),
            Outcome::Rejected { detail, .. } => (None, "-", detail.as_str(), "rejected"),
            Outcome::RateLimited { limiter, .. } => (
                None,
                "-",
                match limiter {
                    Limiter::Client => "client_rate_limit",
                    Limiter::Source => "source rate_limit",
                },
                "rate limited",
            ),
            Outcome::Unavailable {
                reason, id, kind, ..
            } => (
                Some(id.as_str()),
                kind.as_str(),
                reason.as_str(),
                "refused with 503",
            ),
            Outcome::Claimed { id, kind, .. } => (
                Some(id.as_str()),
                kind.as_str(),
                "",
                "claimed by another replica, 503",
            ),
            Outcome::UnknownSource => (None, "-", "", "unknown source"),
            Outcome::NotFound => (None, "-", "", "no such route"),
            Outcome::MethodNotAllowed { .. } => (None, "-", "", "method not allowed"),
        };
        // A refusal without a finer reason of its own names the one it is counted under.
        let reason = match reason {
            "" => crate::rejections::Reason::of(self).map_or("", |(why, _)| why.as_str()),
            why => why,
        };
        let id = id.or(r.claimed_id.as_deref()).unwrap_or("-");
        let source = r.source.unwrap_or(r.requested);
        let latency_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    source,
                    provider = r.provider.unwrap_or("-"),
                    id,
                    r#type = kind,
                    status = self.status(),
                    outcome = self.label(),
                    latency_ms,
                    client_ip = %r.client_ip,
                    reason = (!reason.is_empty()).then_some(reason),
                    "{message}"
                )
            };
        }
        if level == Level::ERROR {
            line!(Level::ERROR)
        } else if level == Level::WARN {
            line!(Level::WARN)
        } else {
            line!(Level::INFO)
        }
    }

    fn into_response(self) -> HttpResponse {
        match self {
            Outcome::Accepted { reply, .. }
            | Outcome::Duplicate { reply, .. }
            | Outcome::Control(reply)
            | Outcome::Probe(reply)
            | Outcome::Rejected { reply, .. } => render(reply),
            Outcome::RateLimited {
                retry_after_secs,
                reply,
                ..
            }
            | Outcome::Claimed {
                retry_after_secs,
                reply,
                ..
            } => {
                let mut r = render(reply);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_secs.into());
                r
            }
            Outcome::Unavailable { reply, .. } => {
                let mut r = render(reply);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, UNAVAILABLE_RETRY_SECS.into());
                r
            }
            Outcome::UnknownSource => HttpResponse::NotFound()
                .content_type("application/json")
                .body(r#"{"error":"unknown source"}"#),
            Outcome::NotFound => HttpResponse::NotFound()
                .content_type("application/json")
                .body(r#"{"error":"not found"}"#),
            Outcome::MethodNotAllowed { allow } => HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, allow))
                .content_type("application/json")
                .body(r#"{"error":"method not allowed"}"#),
        }
    }
}

/// Each (source, kind) may write up to `REFUSAL_LOG_BURST` refusal lines at once, and one
/// more for every `REFUSAL_LOG_INTERVAL / REFUSAL_LOG_BURST` after: an operator who sends a
/// few bad test deliveries sees a line for each, while a flood of forged requests writes about
/// ten lines a minute per source and kind. What is not logged is counted and, a minute after
/// the first of them, summarised in one line (or by the next line logged, if that comes first).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
const REFUSAL_LOG_BURST: u32 = 10;

fn refusal_log() -> &'static RefusalLog {
    static LOG: OnceLock<RefusalLog> = OnceLock::new();
    LOG.get_or_init(|| RefusalLog::new(REFUSAL_LOG_INTERVAL, REFUSAL_LOG_BURST))
}

/// Rate-limits the log lines of refused requests per (source, kind) with a token bucket (its
/// own, not governor's as `limit` uses: this one is told `now`, so its rule and the summary
/// it schedules are tested at chosen times, and it counts what it did not let through):
/// every refusal is counted in `hookgate_requests_total`; one that finds no token adds to
/// `hookgate_refusals_unlogged_total` and to one "N more refused" line.
/// Keys are configured source names and outcome labels, so the map is bounded by the config.
struct RefusalLog {
    interval: Duration,
    burst: u32,
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

/// One key's lines left, and what it has counted without logging.
struct Bucket {
    /// Lines that may be written now (at most `burst`), as of `at`.
    tokens: f64,
    at: Instant,
    unlogged: u64,
    /// When the summary of `unlogged` is due (set by the first of them).
    summary_at: Option<Instant>,
}

/// What [`RefusalLog::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Log this refusal; `unlogged` refusals before it were not summarised yet.
    Log { unlogged: u64 },
    /// Count it only; `Some(at)` for the first one since the last summary: summarise at `at`.
    Count { summary_at: Option<Instant> },
}

impl RefusalLog {
    fn new(interval: Duration, burst: u32) -> Self {
        RefusalLog {
            interval,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log this refusal now; counts it and schedules the summary otherwise.
    fn should_log(&'static self, source: &str, kind: &'static str, level: Level) -> bool {
        match self.admit(source, kind, Instant::now()) {
            Admit::Log { unlogged } => {
                summarise(source, kind, level, unlogged);
                true
            }
            Admit::Count { summary_at } => {
                metrics::get()
                    .refusals_unlogged
                    .get_or_create(&metrics::SourceLabel {
                        source: source.to_string(),
                    })
                    .inc();
                // A request always runs on a runtime; without one, the next logged refusal
                // of this key carries the count.
                if let (Some(at), Ok(rt)) = (summary_at, tokio::runtime::Handle::try_current()) {
                    let source = source.to_string();
                    rt.spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        if let Some(n) = self.close(&source, kind, at) {
                            summarise(&source, kind, level, n);
                        }
                    });
                }
                false
            }
        }
    }

    fn admit(&self, source: &str, kind: &'static str, now: Instant) -> Admit {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(self.burst);
        let b = buckets.entry((source.to_string(), kind)).or_insert(Bucket {
            tokens: burst,
            at: now,
            unlogged: 0,
            summary_at: None,
        });
        let refill =
            now.saturating_duration_since(b.at).as_secs_f64() * burst / self.interval.as_secs_f64();
        b.tokens = (b.tokens + refill).min(burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.summary_at = None;
            Admit::Log {
                unlogged: std::mem::take(&mut b.unlogged),
            }
        } else {
            b.unlogged += 1;
            let first = b.summary_at.is_none();
            if first {
                b.summary_at = Some(now + self.interval);
            }
            Admit::Count {
                summary_at: first.then_some(now + self.interval),
            }
        }
    }

    /// The unlogged count whose summary is due at `at`, if nothing has summarised it since.
    fn close(&self, source: &str, kind: &'static str, at: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.get_mut(&(source.to_string(), kind))?;
        if b.summary_at != Some(at) {
            return None;
        }
        b.summary_at = None;
        (b.unlogged > 0).then(|| std::mem::take(&mut b.unlogged))
    }
}

/// The line standing for `n` refusals that were counted, not logged.
fn summarise(source: &str, kind: &str, level: Level, n: u64) {
    if n == 0 {
        return;
    }
    if level == Level::ERROR {
        tracing::error!(
            source,
            outcome = kind,
            refused = n,
            "{n} more refused (counted, not logged)"
        );
    } else if level == Level::WARN {
        tracing::warn!(
            source,
            outcome = kind,
            refused = n,
            "{n} more refused (counted, not logged)"
        );
    } else {
        tracing::info!(
            source,
            outcome = kind,
            refused = n,
            "{n} more refused (counted, not logged)"
        );
    }
}

/// A provider reply as an HTTP response.
pub fn render(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = HttpResponse::build(status);
    if let Some(ct) = reply.content_type {
        r.insert_header((header::CONTENT_TYPE, ct));
    }
    if reply.body.is_empty() && status == StatusCode::NO_CONTENT {
        return r.finish();
    }
    r.body(reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: a refusal's line carries the id the request claims, only when shaped like one.
    #[test]
    fn claimed_ids_come_from_the_providers_id_header_and_are_bounded() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        use providers::ProviderKind;
        let headers = |name: &'static str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
            h
        };
        let gh = headers("x-github-delivery", "72d3162e-cc78-11e3");
        assert_eq!(
            claimed_id(ProviderKind::Github, None, &gh).as_deref(),
            Some("72d3162e-cc78-11e3")
        );
        assert_eq!(
            claimed_id(ProviderKind::Alipay, None, &gh),
            None,
            "not Alipay's header"
        );
        let std = headers("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
        assert!(claimed_id(ProviderKind::Standard, None, &std).is_some());
        for bad in ["a b", &"x".repeat(201), ""] {
            let h = headers("x-github-delivery", bad);
            assert_eq!(claimed_id(ProviderKind::Github, None, &h), None, "{bad:?}");
        }
        // An `hmac` or `token` source's configured id header (it logged "-" for them).
        let custom = headers("x-id", "abc1");
        assert_eq!(
            claimed_id(ProviderKind::Hmac, Some("x-id"), &custom).as_deref(),
            Some("abc1")
        );
        assert_eq!(claimed_id(ProviderKind::Hmac, None, &custom), None);
    }

    #[test]
    fn class7_refusals_are_logged_up_to_a_burst_then_counted_and_summarised() {
        let log = RefusalLog::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A few bad test deliveries: a line each.
        for i in 0..10 {
            assert_eq!(
                log.admit("gh", "unauthorized", at(i)),
                Admit::Log { unlogged: 0 },
                "refusal {i}"
            );
        }
        // A flood: counted, one summary scheduled a minute after the first of them.
        assert_eq!(
            log.admit("gh", "unauthorized", at(10)),
            Admit::Count {
                summary_at: Some(at(60_010))
            }
        );
        for i in 11..400 {
            assert_eq!(
                log.admit("gh", "unauthorized", at(i)),
                Admit::Count { summary_at: None }
            );
        }
        // Other sources and kinds have buckets of their own.
        assert_eq!(
            log.admit("gh", "malformed", at(20)),
            Admit::Log { unlogged: 0 }
        );
        assert_eq!(
            log.admit("ali", "unauthorized", at(20)),
            Admit::Log { unlogged: 0 }
        );
        // A line every 6 s (a minute / the burst) after the bucket ran dry; one written before
        // the summary's timer carries the count, and the late timer finds nothing.
        assert_eq!(
            log.admit("gh", "unauthorized", at(6_500)),
            Admit::Log { unlogged: 390 }
        );
        assert_eq!(log.close("gh", "unauthorized", at(60_010)), None);
        assert_eq!(
            log.admit("gh", "unauthorized", at(6_600)),
            Admit::Count {
                summary_at: Some(at(66_600))
            }
        );
        // The timer takes the count, once.
        assert_eq!(log.close("gh", "unauthorized", at(66_600)), Some(1));
        assert_eq!(log.close("gh", "unauthorized", at(66_600)), None);
        // Quiet for a minute: the whole burst is back.
        for i in 0..10 {
            assert_eq!(
                log.admit("gh", "unauthorized", at(130_000 + i)),
                Admit::Log { unlogged: 0 },
                "refusal {i} after the pause"
            );
        }
    }
}
