//! The two listeners. Public: `POST /hooks/{source}` only (and `GET` for WeCom's URL
//! verification), over plain HTTP or TLS
//! ([`tls`]). Admin: `/healthz`, `/readyz`, `/metrics`, the admin API ([`crate::admin`]) and
//! the web console ([`crate::console`]);
//! admin routes are never served on the public listener.
//!
//! Connection-level guards live here, around the pipeline:
//! - `server.request_timeout_secs` bounds the TLS handshake and the request head (actix's
//!   client request timeout) and, in the pipeline, the body.
//! - A refused request whose body was not read to the end closes its connection after a short
//!   linger (see [`hook`]), instead of actix draining an endless chunked body with no deadline.
//! - actix arms its header deadline only for a connection's first request, so only trusted
//!   proxies get keep-alive; everyone else is answered with `Connection: close`, leaving no
//!   second request whose headers could trickle in without a deadline.

pub mod tls;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Server, Service};
use actix_web::http::{ConnectionType, Method};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

use crate::config::{contains, ServerConfig};
use crate::metrics;
use crate::outcome::{Outcome, RequestInfo, MAX_REQUESTED};
use crate::pipeline::{self, Gateway};
use tls::TlsCerts;

/// How long a connection whose request body was refused unread is still read (and the bytes
/// dropped) so the client sees the reply, before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Everything under `/hooks`: `/hooks/{source}` by method, 404 for any other path. Matched
/// by hand after the scope's static prefix: actix matches a `{source}` segment with a regex
/// (regex-lite's backtracking-free VM), ~1.5 % of the gateway's CPU per request in a profile
/// (session 14). The segment is what actix's route gave: the path as actix requotes it
/// (percent-encoded unreserved characters decoded), up to the next `/`.
async fn hooks(req: HttpRequest, payload: web::Payload, gw: web::Data<Gateway>) -> HttpResponse {
    let name = req
        .match_info()
        .unprocessed()
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'));
    let Some(name) = name else {
        return not_found(req, payload, gw).await;
    };
    let name = name.to_owned();
    match *req.method() {
        Method::POST => hook(req, &name, payload, gw).await,
        Method::GET => hook_get(req, &name, payload, gw).await,
        _ => method_not_allowed(req, &name, payload, gw),
    }
}

/// The request's own line and counts for an outcome no source's pipeline decided (a wrong
/// path or method, an unknown source): `source` when the path names a configured one.
fn unrouted(
    req: &HttpRequest,
    requested: &str,
    gw: &Gateway,
    outcome: Outcome,
    started: Instant,
) -> HttpResponse {
    let rt = gw.runtime.load();
    let source = rt.sources.get(requested);
    let mut cut = requested.len().min(MAX_REQUESTED);
    while !requested.is_char_boundary(cut) {
        cut -= 1;
    }
    let info = RequestInfo {
        source: source.map(|s| s.name.as_str()),
        requested: &requested[..cut],
        provider: source.map(|s| s.kind.as_str()),
        client_ip: pipeline::request_client_ip(&rt, req),
        claimed_id: None,
    };
    outcome.finish(&info, started.elapsed())
}

async fn hook(
    req: HttpRequest,
    requested: &str,
    mut payload: web::Payload,
    gw: web::Data<Gateway>,
) -> HttpResponse {
    let started = Instant::now();
    // One snapshot for the whole request: a reload meanwhile does not change its config.
    let rt = gw.runtime.load_full();
    let response = match rt.sources.get(requested) {
        None => unrouted(&req, requested, &gw, Outcome::UnknownSource, started),
        Some(source) => {
            let client = pipeline::request_client_ip(&rt, &req);
            let outcome = pipeline::process(&gw, &rt, source, client, &req, &mut payload).await;
            let refused = !matches!(
                outcome,
                Outcome::Accepted { .. } | Outcome::Duplicate { .. }
            );
            let info = RequestInfo {
                source: Some(&source.name),
                requested,
                provider: Some(source.kind.as_str()),
                client_ip: client,
                claimed_id: refused
                    .then(|| {
                        crate::outcome::claimed_id(
                            source.kind,
                            source.provider.id_header(),
                            req.headers(),
                        )
                    })
                    .flatten(),
            };
            outcome.finish(&info, started.elapsed())
        }
    };
    close_if_unread(response, payload)
}

/// Keeps the request payload alive until the response body is sent. When actix finishes a
/// response while the request body is unread (413, 408, 404, any refusal before the body), a
/// live payload makes it close the connection after [`LINGER`]; a dropped one would make it
/// drain a chunked body to its end, however long that takes, with no deadline. A body read to
/// its end is already detached from the connection, so this changes nothing for it.
fn close_if_unread(response: HttpResponse, payload: web::Payload) -> HttpResponse {
    response.map_body(|_, body| {
        BoxBody::new(HoldPayload {
            body,
            _payload: payload,
        })
    })
}

/// A response body that owns the request payload (see [`close_if_unread`]); actix checks
/// whether the payload is still wanted when the last chunk of the body is sent.
struct HoldPayload {
    body: BoxBody,
    _payload: web::Payload,
}

impl MessageBody for HoldPayload {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// `GET /hooks/{source}`: served only for a source whose provider verifies its URL with a GET
/// (WeCom's `echostr`), through the same pipeline as a POST; 405 everywhere else.
async fn hook_get(
    req: HttpRequest,
    name: &str,
    payload: web::Payload,
    gw: web::Data<Gateway>,
) -> HttpResponse {
    match verifies_with_get(&gw, name) {
        true => hook(req, name, payload, gw).await,
        _ => method_not_allowed(req, name, payload, gw),
    }
}

/// Whether `name` is a source whose provider verifies its URL with a GET.
fn verifies_with_get(gw: &Gateway, name: &str) -> bool {
    gw.runtime
        .load()
        .sources
        .get(name)
        .is_some_and(|s| s.provider.verifies_with_get())
}

fn method_not_allowed(
    req: HttpRequest,
    name: &str,
    payload: web::Payload,
    gw: web::Data<Gateway>,
) -> HttpResponse {
    let allow = match verifies_with_get(&gw, name) {
        true => "GET, POST",
        false => "POST",
    };
    let outcome = Outcome::MethodNotAllowed { allow };
    close_if_unread(unrouted(&req, name, &gw, outcome, Instant::now()), payload)
}

/// Any path that is not `/hooks/{source}`.
async fn not_found(
    req: HttpRequest,
    payload: web::Payload,
    gw: web::Data<Gateway>,
) -> HttpResponse {
    let path = req.path().to_owned();
    close_if_unread(
        unrouted(&req, &path, &gw, Outcome::NotFound, Instant::now()),
        payload,
    )
}

/// Whether the peer may keep its connection open: only trusted proxies (see the module doc),
/// as the current config ([`crate::runtime`]) names them.
fn keep_alive_for(peer: Option<SocketAddr>, gw: &Gateway) -> bool {
    peer.is_some_and(|p| contains(&gw.runtime.load().trusted_proxies, p.ip()))
}

/// Binds the public listener, with TLS when `tls` is given; the server is returned unstarted
/// (await or spawn it).
pub fn public(
    config: &ServerConfig,
    gw: Arc<Gateway>,
    tls: Option<&Arc<TlsCerts>>,
) -> std::io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(gw);
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.workers
    };
    let timeout = Duration::from_secs(config.request_timeout_secs);
    let server = HttpServer::new(move || {
        let gw = data.clone();
        App::new()
            .app_data(data.clone())
            .wrap_fn(move |req, srv| {
                let keep = keep_alive_for(req.peer_addr(), &gw);
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    if !keep {
                        res.response_mut()
                            .head_mut()
                            .set_connection_type(ConnectionType::Close);
                    }
                    Ok(res)
                }
            })
            .service(web::scope("/hooks").default_service(web::to(hooks)))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    // actix counts connections per worker.
    .max_connections(config.max_connections.div_ceil(workers).max(1))
    .client_request_timeout(timeout)
    .tls_handshake_timeout(timeout)
    .client_disconnect_timeout(LINGER)
    // Idle time of a trusted proxy's connection between requests.
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(config.shutdown_timeout_secs)
    .disable_signals();
    let server = match tls {
        None => server.bind(config.listen)?,
        Some(certs) => {
            let rustls = certs.server_config().map_err(std::io::Error::other)?;
            server.bind_rustls_0_23(config.listen, rustls)?
        }
    };
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    let store_problem = gw.store.problem();
    let mut problems = gw.health.problems();
    let shared = gw.dedup.as_ref().map_or("off", |d| d.status());
    // Under `accept` this replica keeps serving with its own dedup; under `reject` it refuses.
    let dedup_blocks = shared == "unavailable"
        && gw.dedup.as_ref().map(|d| d.on_unavailable) == Some(crate::dedup::OnUnavailable::Reject);
    // Every reason for a 503 is in `problems` (they were in `store` and `dedup` only).
    if let Some(p) = store_problem {
        problems.push(format!("store: {p}"));
    }
    if let Some(why) = gw.broker.stuck() {
        problems.push(format!("relay: {why}"));
    }
    if dedup_blocks {
        problems
            .push("dedup: the shared store is unavailable and on_unavailable = \"reject\"".into());
    }
    let ready = problems.is_empty();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": store_problem.unwrap_or("ok"),
        "config": "loaded",
        "sources": gw.runtime.load().sources.len(),
        "outbox_pending": gw.store.pending(),
        "oldest_pending_age_secs": gw.store.oldest_pending_at().map(|at| crate::now_secs().saturating_sub(at)),
        "dead_letters": gw.store.dead_count(),
        "problems": problems,
        "dedup": { "shared": shared },
        "broker": {
            "connected": gw.broker.connected(),
            "state": gw.broker.state(),
            "last_error": gw.broker.last_error(),
            "node": gw.broker.node().map(|(_, url)| url),
            "node_index": gw.broker.node().map(|(i, _)| i),
            "nodes": gw.broker.nodes(),
        },
    });
    let mut r = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    r.json(body)
}

async fn metrics_text(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let m = metrics::get();
    m.outbox_pending.set(gw.store.pending() as i64);
    // Sampled here, not kept up to date: a scrape sees what /readyz would answer now.
    m.store_healthy.set(gw.store.problem().is_none() as i64);
    m.dead_letters_kept.set(gw.store.dead_count() as i64);
    let ready = readyz(gw.clone()).await.status().is_success();
    m.ready.set(ready as i64);
    // OpenMetrics for a scraper that asks for it (Prometheus does), else the classic text
    // format: the contract's "Prometheus text format", and what curl and promtool read.
    let openmetrics = req
        .headers()
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(accepts_openmetrics);
    let mut r = HttpResponse::Ok();
    r.insert_header((actix_web::http::header::VARY, "Accept"));
    if openmetrics {
        r.content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(m.render())
    } else {
        r.content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(metrics::prometheus_text(&m.render()))
    }
}

/// Whether an `Accept` value names OpenMetrics text (media types compare without case; a
/// range with `q=0` is one the client refuses).
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q")
                    && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        kind.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

async fn admin_not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(r#"{"error":"not found"}"#)
}

pub fn admin(config: &ServerConfig, gw: Arc<Gateway>) -> std::io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(gw);
    let token = web::Data::new(crate::admin::AdminToken(config.admin_token.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(token.clone())
            .wrap(actix_web::middleware::from_fn(crate::admin::require_token))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .configure(crate::admin::routes)
            .configure(crate::runtime::routes)
            .configure(crate::console::routes)
            // Not `not_found`: an admin miss (a browser's /favicon.ico) is not a request of
            // the public listener's, to be logged and counted with them.
            .default_service(web::to(admin_not_found))
            // Outermost: on every admin response, the 401s included.
            .wrap(crate::console::security_headers())
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .bind(config.admin_listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

#[cfg(test)]
mod accept_tests {
    #[test]
    fn openmetrics_is_served_when_asked_for_and_not_refused() {
        for (accept, want) in [
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                true,
            ),
            ("Application/OpenMetrics-Text", true),
            ("text/plain, application/openmetrics-text ; q=0.2", true),
            ("application/openmetrics-text;q=0, text/plain", false),
            ("application/openmetrics-text; Q=0.0", false),
            ("*/*", false),
            ("text/plain;version=0.0.4", false),
            ("", false),
        ] {
            assert_eq!(super::accepts_openmetrics(accept), want, "{accept}");
        }
    }
}
