//! Prometheus metrics, process-wide. Labels carry configured source names only (never a
//! requested path), so cardinality is bounded by the config.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub source: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimiterLabels {
    pub source: String,
    /// `client` (per IP, before verification) or `source` (verified requests only).
    pub limiter: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
    pub revision: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<SourceLabel, Histogram>,
    pub rate_limited: Family<LimiterLabels, Counter>,
    pub refusals_unlogged: Family<SourceLabel, Counter>,
    pub published: Family<SourceLabel, Counter>,
    pub publish_failures: Family<ReasonLabel, Counter>,
    pub dead_letters: Family<SourceLabel, Counter>,
    pub outbox_pending: Gauge,
    pub oldest_pending_age: Gauge,
    pub log_bytes: Gauge,
    pub log_segments: Gauge,
    pub broker_connected: Gauge,
    pub task_restarts: Family<TaskLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_records: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    pub task: &'static str,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("hookgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests on the public listener by source and outcome",
            requests.clone(),
        );
        let request_seconds = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "request_duration_seconds",
            "Time from request to reply",
            request_seconds.clone(),
        );
        let rate_limited = Family::<LimiterLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests answered 429, by source and by the limiter that refused them",
            rate_limited.clone(),
        );
        let refusals_unlogged = Family::<SourceLabel, Counter>::default();
        registry.register(
            "refusals_unlogged",
            "Refused requests counted but not logged one by one (summarised once per interval)",
            refusals_unlogged.clone(),
        );
        let published = Family::<SourceLabel, Counter>::default();
        registry.register(
            "published",
            "Events confirmed by the broker",
            published.clone(),
        );
        let publish_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "publish_failures",
            "Publishes that were not confirmed (nack, returned, connection)",
            publish_failures.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_pending",
            "Events accepted and not yet confirmed by the broker",
            outbox_pending.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while the relay holds a broker connection",
            broker_connected.clone(),
        );
        let dead_letters = Family::<SourceLabel, Counter>::default();
        registry.register(
            "dead_letters",
            "Events the broker refused amqp.max_attempts times, moved to the dead-letter list",
            dead_letters.clone(),
        );
        let oldest_pending_age = Gauge::default();
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest event not yet confirmed by the broker (0 when none)",
            oldest_pending_age.clone(),
        );
        let log_bytes = Gauge::default();
        registry.register(
            "log_bytes",
            "Bytes of event log on disk (pending and retained events)",
            log_bytes.clone(),
        );
        let log_segments = Gauge::default();
        registry.register(
            "log_segments",
            "Segment files of the event log",
            log_segments.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "log_commit_duration_seconds",
            "Duration of one group commit of the event log (write + fdatasync)",
            commit_seconds.clone(),
        );
        let commit_records = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "log_commit_records",
            "Records made durable by one group commit",
            commit_records.clone(),
        );
        let task_restarts = Family::<TaskLabel, Counter>::default();
        registry.register(
            "task_restarts",
            "Background tasks restarted after ending unexpectedly",
            task_restarts.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP) by result: ok, or error (the running config stayed)",
            config_reloads.clone(),
        );
        // Both series exist from the start, so a rate over them is defined before a reload.
        for result in ["ok", "error"] {
            config_reloads
                .get_or_create(&ResultLabel { result })
                .inc_by(0);
        }
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: env!("HOOKGATE_REVISION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels name the running build",
            build_info,
        );
        Metrics {
            registry,
            config_reloads,
            requests,
            request_seconds,
            rate_limited,
            refusals_unlogged,
            published,
            publish_failures,
            dead_letters,
            outbox_pending,
            oldest_pending_age,
            log_bytes,
            log_segments,
            broker_connected,
            task_restarts,
            commit_seconds,
            commit_records,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
