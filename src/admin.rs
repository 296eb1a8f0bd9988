//! The admin API on the admin listener (JSON): `GET /events`, `GET /events/{source}/{id}`,
//! `POST /replay`, `POST /forget`, `GET /rejections`, and the `server.admin_token` guard over
//! every admin route but `/healthz`, `/readyz` and the console's static files
//! ([`crate::console`]).
//!
//! Store scans and replays block (file reads, group commits): they run on actix's blocking
//! pool, never on the listener's one worker, so health checks are answered meanwhile. Replay
//! and forget are audited in the log: who asked (the peer address), what, how many.

use std::collections::HashMap;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::uri::Authority;
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::inspect::{self, Query, ReplayError, ReplayRequest};
use crate::pipeline::Gateway;

/// Routes reachable without the token: probes and load balancers have none.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Why the admin listener's exposure is refused by `check`, `serve` and a reload: reachable from
/// other hosts without a token, it would let anyone replay events and forget ids.
pub fn exposure_problem(server: &crate::config::ServerConfig) -> Option<String> {
    // Canonical: `::ffff:127.0.0.1` is loopback too.
    let loopback = server.admin_listen.ip().to_canonical().is_loopback();
    (!loopback && server.admin_token.is_none()).then(|| {
        format!(
            "server.admin_listen {} is not a loopback address and server.admin_token is not set: anyone who reaches it could replay events and forget ids",
            server.admin_listen
        )
    })
}

/// `server.admin_token`, as app data of the admin listener.
pub struct AdminToken(pub Option<providers::Secret>);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(one_method("/events", Method::GET, web::get().to(events)))
        .service(one_method(
            "/events/{source}/{id}",
            Method::GET,
            web::get().to(event),
        ))
        .service(one_method("/replay", Method::POST, web::post().to(replay)))
        .service(one_method("/forget", Method::POST, web::post().to(forget)))
        .service(one_method(
            "/rejections",
            Method::GET,
            web::get().to(rejections),
        ))
        .service(one_method("/outbox", Method::GET, web::get().to(outbox)));
}

/// `path` served by `route` alone: any other method is a 405 naming the one it takes (actix
/// would answer 404, as if the route did not exist).
fn one_method(path: &str, method: Method, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move || {
            let allow = method.clone();
            async move {
                HttpResponse::MethodNotAllowed()
                    .insert_header((header::ALLOW, allow.as_str()))
                    .finish()
            }
        }))
}

/// `hookgate outbox` and `GET /outbox`: what waits for the broker.
#[derive(Debug, Serialize, Deserialize)]
pub struct OutboxSummary {
    pub pending: u64,
    pub oldest: Option<OldestPending>,
    pub dead: usize,
}

/// The oldest event not yet confirmed by the broker.
#[derive(Debug, Serialize, Deserialize)]
pub struct OldestPending {
    pub seq: u64,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub routing_key: String,
    /// RFC 3339.
    pub accepted: String,
}

/// Reads the outbox's head from `store` (a file read: call it off the async workers).
pub fn outbox_summary(store: &crate::store::Store) -> std::io::Result<OutboxSummary> {
    let oldest = store
        .reader(store.cursor())?
        .next_record()?
        .map(|(seq, _, e)| OldestPending {
            seq,
            accepted: chrono::DateTime::from_timestamp(e.timestamp as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            id: e.message_id,
            kind: e.kind,
            source: e.source,
            routing_key: e.routing_key,
        });
    Ok(OutboxSummary {
        pending: store.pending(),
        oldest,
        dead: store.dead_count(),
    })
}

async fn outbox(gw: web::Data<Gateway>) -> HttpResponse {
    let store = gw.store.clone();
    match web::block(move || outbox_summary(&store)).await {
        Ok(Ok(summary)) => HttpResponse::Ok().json(summary),
        Ok(Err(e)) => internal("reading the outbox", e),
        Err(e) => internal("reading the outbox", e),
    }
}

/// Middleware: 401 without the right bearer token, when one is configured.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let token = req
        .app_data::<web::Data<AdminToken>>()
        .and_then(|t| t.0.clone());
    if let Err(why) = browser_safe(&req, token.is_some()) {
        let r = HttpResponse::Forbidden()
            .content_type("application/json")
            .body(serde_json::json!({ "error": why }).to_string());
        return Ok(req.into_response(r));
    }
    let allowed = match &token {
        None => true,
        Some(_) if OPEN_PATHS.contains(&req.path()) => true,
        // The console's static files only: its data comes from the routes below, with the token.
        Some(_)
            if req.method() == Method::GET && crate::console::ASSET_PATHS.contains(&req.path()) =>
        {
            true
        }
        Some(t) => bearer_matches(t, req.headers().get(header::AUTHORIZATION)),
    };
    if allowed {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let r = HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .content_type("application/json")
        .body(r#"{"error":"unauthorized"}"#);
    Ok(req.into_response(r))
}

/// Without a token, a web page open in a browser on the gateway's host must not act through
/// the listener (with one, the page lacks it, and the `Authorization` header would need a CORS
/// preflight). A request that changes something must be JSON: a page of another origin cannot
/// send that without a preflight, which this listener never answers. And every request must
/// name the listener by address or `localhost`: a DNS-rebinding page names its own domain.
fn browser_safe(req: &ServiceRequest, token: bool) -> Result<(), &'static str> {
    if token {
        return Ok(());
    }
    // Every POST (the routes that change something take POST only; any other method is a
    // 405 that changes nothing), not a list of paths: the raw path `/%72eplay` is not
    // `/replay`, yet the router decodes it to that route (found by a browser review).
    if req.method() == Method::POST && !req.content_type().eq_ignore_ascii_case("application/json")
    {
        return Err("a request that changes something must be Content-Type: application/json");
    }
    // A browser names where a request comes from: another site's page cannot read the
    // answers, but it could tell a 200 from a 404 (whether an event is kept) and make the
    // gateway scan its log at will. Clients that are not browsers send no such header.
    // A link a person followed to the console or `/metrics` (from Grafana on another port:
    // same-site) is served: the linking page never sees the answer, and those pages scan
    // nothing. Not a navigation a script makes without a click, nor a prefetch.
    let header = |name: &str| req.headers().get(name).map(|v| v.as_bytes());
    let navigation = req.method() == Method::GET
        && (req.path() == "/"
            || req.path() == "/metrics"
            || crate::console::ASSET_PATHS.contains(&req.path()))
        && header("sec-fetch-mode") == Some(b"navigate".as_slice())
        && header("sec-fetch-dest") == Some(b"document".as_slice())
        && header("sec-fetch-user") == Some(b"?1".as_slice())
        && header("sec-purpose").is_none();
    if matches!(header("sec-fetch-site"), Some(b"cross-site" | b"same-site")) && !navigation {
        return Err("without admin_token the admin listener answers no other site's page");
    }
    let Some(host) = req.headers().get(header::HOST) else {
        return Ok(());
    };
    // `127.0.0.1:9090`, `[::1]:9090`, `localhost`, …
    let authority = host.to_str().ok().and_then(|h| h.parse::<Authority>().ok());
    let name = authority.as_ref().map_or("", |a| {
        a.host().trim_start_matches('[').trim_end_matches(']')
    });
    if name.parse::<std::net::IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    Err("without admin_token the admin listener answers requests to its address or localhost only")
}

/// Constant time, including the length (`Secret::matches` compares digests, not the tokens).
/// The scheme is case-insensitive (RFC 9110, 11.1): `bearer tok` is `Bearer tok`.
fn bearer_matches(token: &providers::Secret, given: Option<&header::HeaderValue>) -> bool {
    let Some((scheme, given)) = given
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token.matches(given.trim())
}

fn json(status: actix_web::http::StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn bad_request(message: impl std::fmt::Display) -> HttpResponse {
    json(
        actix_web::http::StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": message.to_string() }),
    )
}

fn internal(what: &str, e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "admin API: {what} failed");
    json(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        serde_json::json!({ "error": format!("{what} failed") }),
    )
}

/// Who asked, for the audit line.
fn who(req: &HttpRequest) -> String {
    req.peer_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string())
}

async fn events(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let query = match web::Query::<Query>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad_request(e),
    };
    let filter = match query.resolve(crate::now_secs()) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let store = gw.store.clone();
    // `last_seq`: the log's end when the listing began; for `after`, the last record it looked
    // at (where a follower goes on from).
    let last_seq = store.durable_upto();
    /// Written as it is (not through `serde_json::Value`, which would re-parse each raw
    /// envelope: numbers rounded, keys sorted, and a panic past its depth limit).
    #[derive(Serialize)]
    struct Page<R> {
        events: Vec<R>,
        last_seq: u64,
    }
    let listed = web::block(move || match filter.after {
        Some(after) => inspect::follow(&store, &filter, after, crate::now_secs()).map(|f| {
            serde_json::to_string(&Page {
                events: f.rows,
                last_seq: f.upto,
            })
        }),
        None => inspect::list(&store, &filter)
            .map(|events| serde_json::to_string(&Page { events, last_seq })),
    });
    match listed.await {
        Ok(Ok(Ok(body))) => HttpResponse::Ok()
            .content_type("application/json")
            .body(body),
        Ok(Ok(Err(e))) => internal("listing events", e),
        Ok(Err(e)) => internal("listing events", e),
        Err(e) => internal("listing events", e),
    }
}

/// `GET /events/{source}/{id}`; `?text=true` (or `1`) adds the envelope indented as text.
/// Other query keys are ignored, as they were before `text` (a cache-busting `_=…`).
async fn event(
    gw: web::Data<Gateway>,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let (source, id) = path.into_inner();
    let text = query.get("text").is_some_and(|v| v == "true" || v == "1");
    let store = gw.store.clone();
    // The indentation of an envelope of up to a body's limit is work for the blocking pool.
    let shown = web::block(move || {
        inspect::show(&store, &source, &id).map(|d| {
            d.map(|mut d| {
                if text {
                    d.envelope_text = Some(inspect::pretty_raw(d.envelope.get()));
                }
                d
            })
        })
    });
    match shown.await {
        Ok(Ok(Some(mut detail))) => {
            // A pending event the broker has not refused waits for the broker itself: while
            // the relay cannot reach it, that is the event's last error (no try was made).
            if detail.row.status == inspect::Status::Pending
                && detail.last_error.is_none()
                && !gw.broker.connected()
            {
                if let Some(e) = gw.broker.last_error() {
                    detail.attempts.get_or_insert(0);
                    detail.last_error =
                        Some(format!("not sent: the broker is not connected ({e})"));
                }
            }
            HttpResponse::Ok().json(detail)
        }
        Ok(Ok(None)) => HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"error":"no such event kept"}"#),
        Ok(Err(e)) => internal("reading an event", e),
        Err(e) => internal("reading an event", e),
    }
}

/// `POST /replay` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: usize,
    #[serde(default)]
    pub dry_run: bool,
    /// A replay by filter's window as the gateway read it (RFC 3339; `until` is now when not
    /// given): a replay confirmed after a dry run sends these back, so it selects what the dry
    /// run counted, by the gateway's clock, not also what arrived since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

async fn replay(req: HttpRequest, gw: web::Data<Gateway>, body: web::Bytes) -> HttpResponse {
    let r: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("body: {e}")),
    };
    let store = gw.store.clone();
    let rt = tokio::runtime::Handle::current();
    let args = r.clone();
    let now = crate::now_secs();
    let result = web::block(move || inspect::replay(&store, &args, now, &rt)).await;
    // By filter: the window as read here (the replay checked it, so it parses).
    let window = |when: &Option<String>, default: Option<u64>| {
        when.as_deref()
            .and_then(|w| inspect::parse_when(w, now).ok())
            .or(default)
            .map(inspect::rfc3339)
    };
    let by_filter = r.id.is_none();
    let filter = serde_json::to_string(&r).unwrap_or_default();
    match result {
        Ok(Ok(n)) => {
            tracing::info!(who = %who(&req), via = "admin api", request = %filter, replayed = n, dry_run = r.dry_run, "replay");
            HttpResponse::Ok().json(Replayed {
                replayed: n,
                dry_run: r.dry_run,
                since: by_filter.then(|| window(&r.since, None)).flatten(),
                until: by_filter.then(|| window(&r.until, Some(now))).flatten(),
            })
        }
        Ok(Err(ReplayError::Invalid(e))) => bad_request(e),
        // The backlog bound, as ingest answers it: 503, try again once it has drained.
        Ok(Err(ReplayError::Full { replayed, message })) => {
            if replayed > 0 {
                tracing::info!(who = %who(&req), via = "admin api", request = %filter, replayed, dry_run = false, "replay cut short by store.max_outbox_entries");
            }
            json(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": message, "replayed": replayed }),
            )
        }
        Ok(Err(e @ ReplayError::NotFound(..))) => json(
            actix_web::http::StatusCode::NOT_FOUND,
            serde_json::json!({ "error": e.to_string() }),
        ),
        Ok(Err(e)) => internal("replay", e),
        Err(e) => internal("replay", e),
    }
}

/// `POST /forget` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    pub source: String,
    pub id: String,
}

async fn forget(req: HttpRequest, gw: web::Data<Gateway>, body: web::Bytes) -> HttpResponse {
    let f: ForgetRequest = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("body: {e}")),
    };
    let store = gw.store.clone();
    let (source, id) = (f.source.clone(), f.id.clone());
    let provider = gw.runtime.load().sources.get(&f.source).map(|s| s.kind);
    match web::block(move || inspect::forget(&store, &source, &id, provider)).await {
        Ok(Ok(local)) => {
            tracing::info!(who = %who(&req), via = "admin api", source = %f.source, id = %f.id, forgotten = local.was, content_keys = local.content_keys.len(), "forget");
            // With replicas, the shared keys too (or another replica would still call it a
            // duplicate).
            let shared = match &gw.dedup {
                Some(d) => match d.forget(&f.source, &f.id, &local.content_keys).await {
                    Ok(deleted) => deleted,
                    Err(e) => return internal("forget in the shared dedup store", e),
                },
                None => false,
            };
            HttpResponse::Ok().json(serde_json::json!({ "forgotten": local.was || shared }))
        }
        // Nothing was changed; a moment later the index will have caught up.
        Ok(Err(e @ crate::store::StoreError::IndexBehind)) => json(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": e.to_string() }),
        ),
        Ok(Err(e)) => internal("forget", e),
        Err(e) => internal("forget", e),
    }
}

/// `GET /rejections` parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

async fn rejections(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let q = match web::Query::<RejectionsQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(e) => return bad_request(e),
    };
    let limit = match inspect::limit_of(q.limit) {
        Ok(n) => n,
        Err(e) => return bad_request(e),
    };
    let rows = gw.rejections.recent(q.source.as_deref(), limit);
    HttpResponse::Ok().json(serde_json::json!({ "rejections": rows }))
}
