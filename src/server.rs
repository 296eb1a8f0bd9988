//! The two listeners. Public: `POST /hooks/{source}` only. Admin: `/healthz`, `/readyz`,
//! `/metrics`; admin routes are never served on the public listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::config::ServerConfig;
use crate::metrics;
use crate::outcome::Outcome;
use crate::pipeline::{self, Gateway};

async fn hook(
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    gw: web::Data<Gateway>,
) -> HttpResponse {
    let started = Instant::now();
    match gw.sources.get(name.as_str()) {
        None => Outcome::UnknownSource.finish(None, started.elapsed()),
        Some(source) => pipeline::process(&gw, source, &req, payload)
            .await
            .finish(Some(&source.name), started.elapsed()),
    }
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .content_type("application/json")
        .body(r#"{"error":"method not allowed"}"#)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("application/json")
        .body(r#"{"error":"not found"}"#)
}

/// Binds the public listener; the server is returned unstarted (await or spawn it).
pub fn public(config: &ServerConfig, gw: Arc<Gateway>) -> std::io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(gw);
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.workers
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(
                web::resource("/hooks/{source}")
                    .route(web::post().to(hook))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found))
    })
    .workers(workers)
    // actix counts connections per worker.
    .max_connections(config.max_connections.div_ceil(workers).max(1))
    .client_request_timeout(Duration::from_secs(config.request_timeout_secs))
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(Duration::from_secs(75))
    .shutdown_timeout(config.shutdown_timeout_secs)
    .disable_signals()
    .bind(config.listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

async fn readyz(gw: web::Data<Gateway>) -> HttpResponse {
    let store_ok = gw.store.healthy();
    let body = serde_json::json!({
        "status": if store_ok { "ready" } else { "not ready" },
        "store": if store_ok { "ok" } else { "failing" },
        "config": "loaded",
        "sources": gw.sources.len(),
        "outbox_pending": gw.store.pending(),
        "broker": {
            "connected": gw.broker.connected(),
            "last_error": gw.broker.last_error(),
        },
    });
    let mut r = if store_ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    r.json(body)
}

async fn metrics_text(gw: web::Data<Gateway>) -> HttpResponse {
    let m = metrics::get();
    m.outbox_pending.set(gw.store.pending() as i64);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.render())
}

pub fn admin(config: &ServerConfig, gw: Arc<Gateway>) -> std::io::Result<(Server, SocketAddr)> {
    let data = web::Data::from(gw);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .bind(config.admin_listen)?;
    let addr = server.addrs()[0];
    Ok((server.run(), addr))
}
