//! The web console at `GET /` of the admin listener (issue 14): three embedded static files
//! (`src/console/index.html`, `console.js`, `console.css`, compiled into the binary: no CDN,
//! works offline) and `GET /summary`, the per-source counters it shows.
//!
//! The page is an empty shell served without the token (docs/inspect.md); it asks for
//! `server.admin_token` and sends it on every data request, which [`crate::admin`] checks as
//! for any other admin route. Every admin response carries [`security_headers`]: a strict
//! Content-Security-Policy (no inline script or style, nothing from elsewhere, no framing),
//! `nosniff` and no referrer.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::metrics::{self, RequestLabels, SourceLabel};
use crate::pipeline::Gateway;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The console's static files: served without the token (they hold no data).
pub const ASSET_PATHS: [&str; 3] = ["/", "/console.js", "/console.css"];

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Headers on every response of the admin listener (the console's files and its data).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        // Event data is not kept in a browser's cache (the assets set their own `no-cache`).
        .add((header::CACHE_CONTROL, "no-store"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/console.js", web::get().to(script))
        .route("/console.css", web::get().to(style))
        .route("/summary", web::get().to(summary));
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // The files change with the binary only; revalidating costs nothing on a loopback.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// Outcome labels of `hookgate_requests_total` that refuse a request.
const REFUSED: [&str; 10] = [
    "malformed",
    "unauthorized",
    "forbidden",
    "timeout",
    "too_large",
    "method_not_allowed",
    "rate_limited",
    "unavailable",
    "claimed",
    "probe",
];

/// One source's counters in `GET /summary`.
#[derive(Debug, Serialize)]
pub struct SourceSummary {
    pub source: String,
    /// Since this process started (the metrics' counters).
    pub accepted: u64,
    pub duplicate: u64,
    pub published: u64,
    pub dead: u64,
    /// Refused requests since start, by outcome (`hookgate_requests_total` labels); zeros left out.
    pub refused: BTreeMap<&'static str, u64>,
    /// The refusals still kept in memory (`GET /rejections`), by reason of the fixed list.
    pub recent_rejections: BTreeMap<&'static str, u64>,
}

fn request_count(source: &str, outcome: &'static str) -> u64 {
    metrics::get()
        .requests
        .get(&RequestLabels {
            source: source.to_string(),
            outcome,
        })
        .map_or(0, |c| c.get())
}

fn source_count(
    family: &prometheus_client::metrics::family::Family<
        SourceLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    source: &str,
) -> u64 {
    family
        .get(&SourceLabel {
            source: source.to_string(),
        })
        .map_or(0, |c| c.get())
}

/// `GET /summary`: per configured source, counters since start; plus the outbox and broker.
async fn summary(gw: web::Data<Gateway>) -> HttpResponse {
    let m = metrics::get();
    let runtime = gw.runtime.load();
    let mut names: Vec<&String> = runtime.sources.keys().collect();
    names.sort();
    let recent = gw
        .rejections
        .recent(None, crate::rejections::PER_SOURCE * names.len().max(1));
    let sources: Vec<SourceSummary> = names
        .into_iter()
        .map(|name| {
            let refused = REFUSED
                .iter()
                .map(|o| (*o, request_count(name, o)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let mut recent_rejections = BTreeMap::new();
            for r in recent.iter().filter(|r| &r.source == name) {
                *recent_rejections.entry(r.reason.as_str()).or_insert(0) += 1;
            }
            SourceSummary {
                source: name.clone(),
                accepted: request_count(name, "accepted"),
                duplicate: request_count(name, "duplicate"),
                published: source_count(&m.published, name),
                dead: source_count(&m.dead_letters, name),
                refused,
                recent_rejections,
            }
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "sources": sources,
        "outbox_pending": gw.store.pending(),
        "dead_letters": gw.store.dead_count(),
        "broker": { "connected": gw.broker.connected(), "state": gw.broker.state() },
    }))
}
