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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DedupStepLabel {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DedupClaimLabels {
    pub source: String,
    /// `claimed`, `duplicate` or `conflict`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DedupErrorLabels {
    pub source: String,
    /// `claim`, `confirm`, `release` or `backlog_full`.
    pub step: &'static str,
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
    /// Index in `amqp.url` of the node the relay is connected to; -1 when none.
    pub amqp_node_index: Gauge,
    pub amqp_failovers: Counter,
    pub task_restarts: Family<TaskLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_wait_seconds: Histogram,
    pub commit_records: Histogram,
    pub commit_delay_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub refusals: Family<RefusalLabels, Counter>,
    pub outbox_capacity: Gauge,
    pub dead_letters_kept: Gauge,
    pub broker_connect_attempts: Family<ResultLabel, Counter>,
    pub store_errors: Family<OperationLabel, Counter>,
    pub store_healthy: Gauge,
    pub checkpoint_seconds: Histogram,
    pub ready: Gauge,
    pub dedup_shared_claims: Family<DedupClaimLabels, Counter>,
    pub dedup_shared_errors: Family<DedupErrorLabels, Counter>,
    pub dedup_shared_fallbacks: Family<SourceLabel, Counter>,
    pub dedup_shared_repaid: Counter,
    pub dedup_shared_up: Gauge,
    pub dedup_shared_seconds: Family<DedupStepLabel, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub source: String,
    /// One of `rejections::Reason`'s fixed list, never free text.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// One of [`STORE_OPERATIONS`].
    pub operation: &'static str,
}

/// What `hookgate_store_errors_total{operation}` counts: the log's group commit
/// (write + fdatasync), and the maintenance steps (index checkpoint, dedup sweep, retention).
pub const STORE_OPERATIONS: [&str; 4] = ["log_write", "checkpoint", "sweep", "retention"];

/// `hookgate_publish_failures_total{reason}`'s fixed list (see `relay`).
pub const PUBLISH_FAILURES: [&str; 5] = ["nack", "returned", "channel", "connection", "store"];

/// `hookgate_dedup_shared_claims_total{result}` and `..._errors_total{step}`'s fixed lists, and
/// the steps timed by `hookgate_dedup_shared_duration_seconds{step}` (see `dedup`).
pub const DEDUP_RESULTS: [&str; 3] = ["claimed", "duplicate", "conflict"];
pub const DEDUP_ERROR_STEPS: [&str; 4] = ["claim", "confirm", "release", "backlog_full"];
pub const DEDUP_CALL_STEPS: [&str; 3] = ["claim", "confirm", "release"];

/// Background tasks under supervision (`app::supervise`).
/// Every task `app.rs` supervises (`dedup` only with `[dedup] shared`, its series at 0 all the
/// same: an alert's `increase()` misses a series' first sample).
pub const TASKS: [&str; 5] = ["maintenance", "relay", "rejections", "limiter", "dedup"];

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
        let amqp_node_index = Gauge::default();
        amqp_node_index.set(-1);
        registry.register(
            "amqp_node_index",
            "Index in amqp.url of the broker node the relay is connected to (-1 when none)",
            amqp_node_index.clone(),
        );
        let amqp_failovers = Counter::default();
        registry.register(
            "amqp_failovers",
            "Broker connections made to another node of amqp.url than the previous connection's",
            amqp_failovers.clone(),
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
        let commit_wait_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "log_commit_wait_seconds",
            "How long the first record of a group commit waited for it to start (the commit before it, then the committer's wake-up)",
            commit_wait_seconds.clone(),
        );
        let commit_records = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "log_commit_records",
            "Records made durable by one group commit",
            commit_records.clone(),
        );
        let commit_delay_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "log_commit_delay_seconds",
            "How long a group commit now waits for more records after its first (by how busy the CPUs are; store.commit_delay_us at most)",
            commit_delay_seconds.clone(),
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
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Refused requests by source and reason (signature, timestamp, token, malformed, \
             too_large, forbidden, rate_limited, timeout, unavailable, claimed, probe)",
            refusals.clone(),
        );
        let outbox_capacity = Gauge::default();
        registry.register(
            "outbox_capacity",
            "store.max_outbox_entries: beyond this many pending events requests get 503",
            outbox_capacity.clone(),
        );
        let dead_letters_kept = Gauge::default();
        registry.register(
            "dead_letters_kept",
            "Events in the dead-letter list now (hookgate replay --status dead requeues them)",
            dead_letters_kept.clone(),
        );
        let broker_connect_attempts = Family::<ResultLabel, Counter>::default();
        registry.register(
            "broker_connect_attempts",
            "Connection attempts of the relay to the broker, by result (ok, error)",
            broker_connect_attempts.clone(),
        );
        let store_errors = Family::<OperationLabel, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed (log_write, checkpoint, sweep, retention)",
            store_errors.clone(),
        );
        let store_healthy = Gauge::default();
        registry.register(
            "store_healthy",
            "1 while the store takes events (log committer alive, writes and index succeed)",
            store_healthy.clone(),
        );
        let checkpoint_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_checkpoint_duration_seconds",
            "Duration of one checkpoint (dedup index flush to disk)",
            checkpoint_seconds.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when /readyz answers 200 (sampled at each scrape)",
            ready.clone(),
        );
        let dedup_shared_claims = Family::<DedupClaimLabels, Counter>::default();
        registry.register(
            "dedup_shared_claims",
            "Shared dedup claims by result: claimed (this replica writes the event), duplicate (accepted by a replica), conflict (claimed by another request: 503)",
            dedup_shared_claims.clone(),
        );
        let dedup_shared_errors = Family::<DedupErrorLabels, Counter>::default();
        registry.register(
            "dedup_shared_errors",
            "Shared dedup calls that failed, timed out or were skipped while the store was down, by step (claim, confirm, release, backlog_full)",
            dedup_shared_errors.clone(),
        );
        let dedup_shared_fallbacks = Family::<SourceLabel, Counter>::default();
        registry.register(
            "dedup_shared_fallbacks",
            "Events decided with this replica's dedup only (shared store unavailable, on_unavailable = accept)",
            dedup_shared_fallbacks.clone(),
        );
        let dedup_shared_repaid = Counter::default();
        registry.register(
            "dedup_shared_repaid",
            "Events written as accepted in the shared store after it came back (fallbacks, failed confirmations)",
            dedup_shared_repaid.clone(),
        );
        let dedup_shared_up = Gauge::default();
        registry.register(
            "dedup_shared_up",
            "1 while the shared dedup store answers",
            dedup_shared_up.clone(),
        );
        let dedup_shared_seconds =
            Family::<DedupStepLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 12))
            });
        registry.register(
            "dedup_shared_duration_seconds",
            "Duration of one shared dedup call on the request path, by step",
            dedup_shared_seconds.clone(),
        );
        // Series of fixed label sets exist from the start at 0, so that `increase()` sees
        // their first event and a dashboard shows 0 rather than "no data".
        for reason in PUBLISH_FAILURES {
            let _ = publish_failures.get_or_create(&ReasonLabel { reason });
        }
        for result in ["ok", "error"] {
            let _ = broker_connect_attempts.get_or_create(&ResultLabel { result });
        }
        for operation in STORE_OPERATIONS {
            let _ = store_errors.get_or_create(&OperationLabel { operation });
        }
        for task in TASKS {
            let _ = task_restarts.get_or_create(&TaskLabel { task });
        }
        for step in DEDUP_CALL_STEPS {
            let _ = dedup_shared_seconds.get_or_create(&DedupStepLabel { step });
        }
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
            amqp_node_index,
            amqp_failovers,
            task_restarts,
            commit_seconds,
            commit_wait_seconds,
            commit_records,
            commit_delay_seconds,
            refusals,
            outbox_capacity,
            dead_letters_kept,
            broker_connect_attempts,
            store_errors,
            store_healthy,
            checkpoint_seconds,
            ready,
            dedup_shared_claims,
            dedup_shared_errors,
            dedup_shared_fallbacks,
            dedup_shared_repaid,
            dedup_shared_up,
            dedup_shared_seconds,
        }
    }

    /// Creates the per-source series of the configured sources at 0 (see `new`).
    pub fn init_sources<'a>(&self, sources: impl IntoIterator<Item = &'a str>) {
        for source in sources {
            let label = SourceLabel {
                source: source.to_string(),
            };
            let _ = self.published.get_or_create(&label);
            let _ = self.dead_letters.get_or_create(&label);
            let _ = self.refusals_unlogged.get_or_create(&label);
            for limiter in ["client", "source"] {
                let _ = self.rate_limited.get_or_create(&LimiterLabels {
                    source: source.to_string(),
                    limiter,
                });
            }
            let _ = self.dedup_shared_fallbacks.get_or_create(&label);
            for result in DEDUP_RESULTS {
                let _ = self.dedup_shared_claims.get_or_create(&DedupClaimLabels {
                    source: source.to_string(),
                    result,
                });
            }
            for step in DEDUP_ERROR_STEPS {
                let _ = self.dedup_shared_errors.get_or_create(&DedupErrorLabels {
                    source: source.to_string(),
                    step,
                });
            }
        }
    }

    /// Counts a failed store operation (one of [`STORE_OPERATIONS`]).
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabel { operation })
            .inc();
    }

    /// The OpenMetrics text exposition (what Prometheus asks for first).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition `om`, for a client that did
/// not ask for OpenMetrics (curl, promtool, older scrapers): a counter family is named as its
/// samples are (`…_total`), no `# UNIT` or `# EOF` lines, and a HELP text escapes its `\`
/// (prometheus-client writes HELP texts as given). prometheus-client writes OpenMetrics only;
/// the samples are the same lines. Only counters, gauges and histograms are registered here,
/// the three types both formats share.
pub fn prometheus_text(om: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in om.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            counters.insert(name);
        }
    }
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, r)| (p, n, r))) {
            Some((prefix, name, rest)) => {
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                match prefix {
                    "# HELP " => out.push_str(&rest.replace('\\', "\\\\")),
                    _ if rest == "unknown" => out.push_str("untyped"),
                    _ => out.push_str(rest),
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod text_format_tests {
    use super::prometheus_text;

    #[test]
    fn openmetrics_becomes_the_prometheus_text_format() {
        let om = concat!(
            "# HELP hookgate_requests Requests with a \\ in the text.\n",
            "# TYPE hookgate_requests counter\n",
            "hookgate_requests_total{source=\"gh\"} 3\n",
            "# HELP hookgate_up Up.\n",
            "# TYPE hookgate_up gauge\n",
            "# UNIT hookgate_up bytes\n",
            "hookgate_up 1\n",
            "# TYPE hookgate_other unknown\n",
            "hookgate_other 2\n",
            "# EOF\n",
        );
        assert_eq!(
            prometheus_text(om),
            concat!(
                "# HELP hookgate_requests_total Requests with a \\\\ in the text.\n",
                "# TYPE hookgate_requests_total counter\n",
                "hookgate_requests_total{source=\"gh\"} 3\n",
                "# HELP hookgate_up Up.\n",
                "# TYPE hookgate_up gauge\n",
                "hookgate_up 1\n",
                "# TYPE hookgate_other untyped\n",
                "hookgate_other 2\n",
            )
        );
    }

    /// What the gateway's own registry writes: every family's HELP and TYPE name the same
    /// family, a counter's with its `_total`, and each sample belongs to the family above it.
    #[test]
    fn the_registry_in_the_prometheus_text_format() {
        super::get().init_sources(["gh"]);
        let text = prometheus_text(&super::get().render());
        let mut family = String::new();
        let mut kind = String::new();
        let mut families = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap().to_string();
                families += 1;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap();
                assert_eq!(name, family, "{line}");
                assert!(["counter", "gauge", "histogram"].contains(&k), "{line}");
                kind = k.to_string();
                assert!(kind != "counter" || name.ends_with("_total"), "{line}");
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let name = line.split(['{', ' ']).next().unwrap();
                let base = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name),
                    _ => name,
                };
                assert_eq!(base, family, "{line}");
            }
        }
        assert!(families > 30, "{text}");
    }
}
