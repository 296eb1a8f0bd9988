//! What types cannot check: names, limits, duplicates, templates, cross-section rules.

use super::*;

/// The most a timeout (`request_timeout_secs`, …) may be: an hour.
const HOUR: u64 = 3600;
/// The most a window (`dedup_window_secs`, `retain_secs`, …) may be: ten years.
const TEN_YEARS: u64 = 10 * 365 * 86_400;

/// The most `store.commit_delay_us` may be.
const MAX_COMMIT_DELAY_US: u64 = 100_000;

impl Config {
    /// Checks what types cannot: names, limits, duplicates, templates, provider keys.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        const AMQ_RESERVED: &str =
            "names starting with `amq.` are reserved by the broker (it refuses to declare them)";
        let mut errors = Vec::new();
        if self.server.request_timeout_secs == 0 {
            errors.push("server.request_timeout_secs: must be at least 1".into());
        }
        // Durations end up added to clocks (a request's deadline, a claim's expiry in ms):
        // past these they overflow at the first request instead of failing here.
        for (key, secs, max) in [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
                HOUR,
            ),
            (
                "server.shutdown_timeout_secs",
                self.server.shutdown_timeout_secs,
                HOUR,
            ),
            (
                "amqp.reconnect_max_secs",
                self.amqp.reconnect_max_secs,
                HOUR,
            ),
            (
                "store.dedup_window_secs",
                self.store.dedup_window_secs,
                TEN_YEARS,
            ),
            ("store.retain_secs", self.store.retain_secs, TEN_YEARS),
            ("dedup.claim_secs", self.dedup.claim_secs, TEN_YEARS),
        ] {
            if secs > max {
                errors.push(format!("{key}: must be at most {max}"));
            }
        }
        errors.extend(body_limit_problem("server", self.server.max_body_bytes));
        // An empty token (`${ADMIN_TOKEN:-}` with the variable unset, an empty file) would
        // pass the exposed-listener check while protecting nothing a person meant it to.
        if self
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            errors
                .push("server.admin_token: must not be empty (leave the key out for none)".into());
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections: must be at least 1".into());
        }
        if self.server.listen == self.server.admin_listen && self.server.listen.port() != 0 {
            errors.push("server.admin_listen: must differ from server.listen".into());
        }
        if self.store.path.as_os_str().is_empty() {
            // An empty path used to open a temporary store: every acknowledged event would
            // vanish at the next restart.
            errors.push("store.path: must not be empty (the directory that keeps acknowledged events across restarts)".into());
        }
        if self.store.dedup_window_secs == 0 {
            errors.push("store.dedup_window_secs: must be at least 1".into());
        }
        if self.store.max_outbox_entries == 0 {
            errors.push("store.max_outbox_entries: must be at least 1".into());
        }
        for (i, url) in self.amqp.url.iter().enumerate() {
            if let Err(e) = url.parse::<lapin::uri::AMQPUri>() {
                // The parser quotes the whole URL in some errors, password included; a URL
                // that does not parse has no password we could find to cut out.
                let e = e.replace(url.as_str(), "…");
                let key = match self.amqp.url.len() {
                    1 => "amqp.url".to_string(),
                    _ => format!("amqp.url[{i}]"),
                };
                errors.push(format!("{key}: not an AMQP URI: {e}"));
            }
        }
        errors.extend(crate::amqp_tls::problems(&self.amqp));
        if self.amqp.exchange.is_empty() {
            errors.push(
                "amqp.exchange: must not be empty (the default exchange cannot route by topic)"
                    .into(),
            );
        }
        // RabbitMQ refuses to declare an exchange or a queue named `amq.…` that does not
        // exist (reserved), and the gateway declares both at start: it would take events it
        // can never publish. The built-in `amq.topic` is a durable topic exchange, as
        // declared here, so it is the one such name that works.
        if self.amqp.exchange.starts_with("amq.") && self.amqp.exchange != "amq.topic" {
            errors.push(format!("amqp.exchange: {AMQ_RESERVED} (of them only the built-in amq.topic is a topic exchange)"));
        }
        if self.store.segment_bytes < 4096 {
            errors.push("store.segment_bytes: must be at least 4096".into());
        }
        // Every accepted request may wait this long under load: more is a mistake, not a tune.
        if self.store.commit_delay_us > MAX_COMMIT_DELAY_US {
            errors.push(format!(
                "store.commit_delay_us: at most {MAX_COMMIT_DELAY_US} (100 ms)"
            ));
        }
        if self.amqp.max_attempts == 0 {
            errors.push("amqp.max_attempts: must be at least 1".into());
        }
        if self.amqp.max_in_flight == 0 {
            errors.push("amqp.max_in_flight: must be at least 1".into());
        }
        // AMQP short strings: over 255 bytes the client library would panic at declare time.
        if self.amqp.exchange.len() > 255 {
            errors.push("amqp.exchange: longer than AMQP's 255 bytes".into());
        }
        let mut queue_names = BTreeSet::new();
        for (i, q) in self.amqp.queues.iter().enumerate() {
            if q.name.len() > 255 {
                errors.push(format!(
                    "amqp.queues[{i}].name: longer than AMQP's 255 bytes"
                ));
            }
            for (j, b) in q.bindings.iter().enumerate() {
                if b.len() > 255 {
                    errors.push(format!(
                        "amqp.queues[{i}].bindings[{j}]: longer than AMQP's 255 bytes"
                    ));
                }
            }
            if q.name.is_empty() {
                errors.push(format!("amqp.queues[{i}].name: must not be empty"));
            } else if q.name.starts_with("amq.") {
                errors.push(format!("amqp.queues[{i}].name: {AMQ_RESERVED}"));
            } else if !queue_names.insert(q.name.as_str()) {
                errors.push(format!(
                    "amqp.queues[{i}].name: `{}` is declared twice",
                    q.name
                ));
            }
        }
        errors.extend(self.dedup.problems(
            self.server.request_timeout_secs,
            self.store.dedup_window_secs,
        ));
        let mut names = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                errors.push(format!(
                    "sources[{i}].name: `{}` is used by another source",
                    s.name
                ));
            }
            let at = format!("sources[{i}] ({})", s.name);
            errors.extend(body_limit_problem(&at, s.max_body_bytes));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }
}

/// Routing-key templates may use `{source}`, `{type}` and `{provider}` only.
pub(super) fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or("unclosed `{`")? + open;
        let name = &rest[open + 1..close];
        if !["source", "type", "provider"].contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (use {{source}}, {{type}}, {{provider}})"
            ));
        }
        rest = &rest[close + 1..];
    }
    if t.len() > 255 {
        return Err("longer than AMQP's 255 bytes".into());
    }
    Ok(())
}

/// The largest body a source may take: its envelope (escaped, if the adapter re-serialises
/// it, up to six bytes a byte) must stay well under the event log's largest frame.
const MAX_BODY_BYTES: usize = 64 << 20;

/// What is wrong with `max_body_bytes = n` in section `at`, if anything.
fn body_limit_problem(at: &str, n: usize) -> Option<String> {
    match n {
        0 => Some(format!("{at}.max_body_bytes: must be at least 1")),
        n if n > MAX_BODY_BYTES => Some(format!(
            "{at}.max_body_bytes: at most {MAX_BODY_BYTES} (64 MiB)"
        )),
        _ => None,
    }
}
