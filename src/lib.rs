//! hookgate: an inbound webhook gateway.
//!
//! # Layout
//! - [`config`]: the TOML file (interpolation, `file:` secrets, validation).
//! - [`server`]: the public and admin listeners (actix-web).
//! - [`pipeline`]: one request through guard → verify/normalize → store → reply.
//! - [`limit`]: client IP, allowlists and rate limits, checked before the body is read.
//! - [`outcome`]: the single place where a request's result becomes HTTP, a log line, a metric.
//! - [`log`]: the event log, append-only segment files with group commit.
//! - [`commit_delay`]: how long a group commit waits for more records (by how busy the CPUs are).
//! - [`dedup`]: the shared dedup claim across replicas (Redis/Valkey).
//! - [`store`]: the log plus the dedup table, statuses, retention (sled keeps the cursor and dead letters).
//! - [`inspect`]: list, show, replay and forget kept events (admin API and command line).
//! - [`inspect_cli`]: `hookgate events`, `replay`, `forget`, `rejections`.
//! - [`topology`]: warns when a source's routing keys match no declared queue binding.
//! - [`relay`]: drains the outbox to RabbitMQ with publisher confirms.
//! - [`nodes`]: which broker node of `amqp.url` the relay tries next (failover, back-off).
//! - [`amqp_tls`]: rustls for `amqps://` nodes (`[amqp.tls]`).
//! - [`rejections`]: the most recent refused requests per source, without bodies or values.
//! - [`runtime`]: the reloadable snapshot (sources, guards, limits) swapped on SIGHUP.
//! - [`metrics`]: Prometheus metrics.
//! - [`admin`]: the admin API (events, replay, forget, rejections) and its token.
//! - [`console`]: the web console at `GET /` of the admin listener, and `GET /summary`.
//! - [`app`]: start-up and graceful shutdown.
//! - [`cli`]: the `hookgate` command line.
//!
//! Provider adapters live in the `providers` crate: pure functions, no I/O.

pub mod admin;
pub mod amqp_tls;
pub mod app;
pub mod cli;
pub mod commit_delay;
pub mod config;
pub mod console;
pub mod dedup;
pub mod inspect;
pub mod inspect_cli;
pub mod limit;
pub mod log;
pub mod metrics;
pub mod nodes;
pub mod outcome;
pub mod pipeline;
pub mod rejections;
pub mod relay;
pub mod runtime;
pub mod server;
pub mod store;
pub mod topology;

/// Now, in Unix seconds.
pub fn now_secs() -> u64 {
    providers::unix_secs(std::time::SystemTime::now()).max(0) as u64
}
