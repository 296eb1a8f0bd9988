//! Every request ends in exactly one [`Outcome`]; its HTTP answer, log line and metric all
//! come from here.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use providers::Reply;

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
    },
    /// A control probe answered without publishing (url_verification, check_url).
    Control(Reply),
    /// Refused: 400, 401, 403, 408 or 413 with the provider's failure body.
    Rejected {
        reason: String,
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
    /// 503 with `Retry-After`: the outbox is full or the store fails; the provider retries.
    Unavailable {
        reason: String,
        reply: Reply,
    },
    UnknownSource,
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
            Outcome::Rejected { reply, .. } => match reply.status {
                400 => "malformed",
                401 => "unauthorized",
                403 => "forbidden",
                408 => "timeout",
                413 => "too_large",
                _ => "rejected",
            },
            Outcome::Probe(_) => "probe",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Unavailable { .. } => "unavailable",
            Outcome::UnknownSource => "unknown_source",
        }
    }

    /// Logs and counts the outcome, then renders it.
    pub fn finish(self, source: Option<&str>, elapsed: std::time::Duration) -> HttpResponse {
        let label = source.unwrap_or("-");
        let m = metrics::get();
        m.requests
            .get_or_create(&RequestLabels {
                source: label.to_string(),
                outcome: self.label(),
            })
            .inc();
        if source.is_some() {
            m.request_seconds
                .get_or_create(&metrics::SourceLabel {
                    source: label.to_string(),
                })
                .observe(elapsed.as_secs_f64());
        }
        match &self {
            Outcome::Accepted { id, kind, .. } => {
                tracing::info!(source = label, id = %id, r#type = %kind, "accepted")
            }
            Outcome::Duplicate { id, .. } => tracing::debug!(source = label, id = %id, "duplicate"),
            Outcome::Control(_) => tracing::info!(source = label, "control probe answered"),
            Outcome::Rejected { reason, reply } => {
                tracing::warn!(source = label, status = reply.status, reason = %reason, "rejected")
            }
            Outcome::Probe(_) => tracing::info!(source = label, "provider signature probe refused"),
            Outcome::RateLimited { limiter, .. } => {
                m.rate_limited
                    .get_or_create(&metrics::LimiterLabels {
                        source: label.to_string(),
                        limiter: limiter.as_str(),
                    })
                    .inc();
            }
            Outcome::Unavailable { reason, .. } => {
                tracing::error!(source = label, reason = %reason, "refused with 503")
            }
            Outcome::UnknownSource => tracing::debug!("unknown source"),
        }
        self.into_response()
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
        }
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
