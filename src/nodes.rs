//! Which broker node the relay tries next, when `amqp.url` lists the nodes of a RabbitMQ
//! cluster (one URL is a list of one).
//!
//! The relay uses the first node in list order that is not backing off, and stays on it while
//! it works: a node that comes back earlier in the list does not pull the relay over (moving
//! would only churn connections). A node that fails (connect refused, handshake or declare
//! error, connection lost) backs off on its own: 100 ms doubling up to `amqp.reconnect_max_secs`,
//! with jitter. So a node that just failed is tried after the others, and only when every node
//! is backing off does the relay wait, for the one whose back-off ends first.
//!
//! A node whose connection held for [`STABLE`] starts its back-off afresh when it fails; one
//! that accepts connections and drops them at once keeps doubling, so a flapping node is not
//! hammered.

use std::time::{Duration, Instant};

use crate::config::redact_url;

/// A connection that lasted this long counts as healthy: its next failure backs off from the
/// start.
pub const STABLE: Duration = Duration::from_secs(10);

/// First back-off of a node after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

struct Node {
    url: String,
    /// Failures in a row.
    failures: u32,
    /// Not tried before this.
    not_before: Option<Instant>,
}

/// The nodes of `amqp.url` and their back-off.
pub struct Nodes {
    nodes: Vec<Node>,
    cap: Duration,
}

impl Nodes {
    /// `urls` must not be empty (the config refuses an empty list).
    pub fn new(urls: &[String], cap: Duration) -> Nodes {
        Nodes {
            nodes: urls
                .iter()
                .map(|u| Node {
                    url: u.clone(),
                    failures: 0,
                    not_before: None,
                })
                .collect(),
            cap: cap.max(FIRST_BACKOFF),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's URL, with its password.
    pub fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    /// The node's URL without its password, for logs, `/readyz` and errors.
    pub fn label(&self, i: usize) -> String {
        redact_url(&self.nodes[i].url)
    }

    /// The node to try next and how long to wait first: the first in list order that is not
    /// backing off (no wait), else the one whose back-off ends first.
    pub fn next(&self, now: Instant) -> (usize, Duration) {
        let ready = self
            .nodes
            .iter()
            .position(|n| n.not_before.is_none_or(|t| t <= now));
        match ready {
            Some(i) => (i, Duration::ZERO),
            None => self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.not_before.map(|t| (i, t.saturating_duration_since(now))))
                .min_by_key(|&(_, wait)| wait)
                .unwrap_or((0, Duration::ZERO)),
        }
    }

    /// Node `i` failed at `now`; `lasted` is how long its connection held (`None`: it never
    /// connected). Returns the node's back-off.
    pub fn failed(&mut self, i: usize, now: Instant, lasted: Option<Duration>) -> Duration {
        let cap = self.cap;
        let node = &mut self.nodes[i];
        if lasted.is_some_and(|d| d >= STABLE) {
            node.failures = 0;
        }
        node.failures = node.failures.saturating_add(1);
        let doubled = FIRST_BACKOFF.saturating_mul(1 << (node.failures - 1).min(20));
        let backoff = jitter(doubled.min(cap));
        node.not_before = Some(now + backoff);
        backoff
    }

    /// Node `i` connected: the next node failure, if it follows soon, still counts against it
    /// (see [`Nodes::failed`]), but the node is no longer waiting.
    pub fn connected(&mut self, i: usize) {
        self.nodes[i].not_before = None;
    }
}

/// Warnings for `check`: a classic queue on a cluster lives on one node and is not replicated,
/// so that node's outage or loss takes the queue's messages with it.
pub fn warnings(config: &crate::config::Config) -> Vec<String> {
    if config.amqp.url.len() < 2 {
        return Vec::new();
    }
    config
        .amqp
        .queues
        .iter()
        .filter(|q| q.kind == crate::config::QueueKind::Classic)
        .map(|q| {
            format!(
                "amqp.queues `{}` is a classic queue and amqp.url lists a cluster: it lives on one node and is not replicated; use kind = \"quorum\"",
                q.name
            )
        })
        .collect()
}

/// ±20 % so that many gateways do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + rand::random::<f64>() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Nodes {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("amqp://u:secret@node{i}:5672/%2f"))
            .collect();
        Nodes::new(&urls, Duration::from_secs(5))
    }

    #[test]
    fn the_first_node_is_used_and_a_failed_one_is_tried_after_the_others() {
        let mut n = nodes(3);
        let t0 = Instant::now();
        assert_eq!(n.next(t0), (0, Duration::ZERO));
        n.failed(0, t0, None);
        assert_eq!(n.next(t0), (1, Duration::ZERO));
        n.failed(1, t0, Some(Duration::from_secs(60)));
        assert_eq!(n.next(t0), (2, Duration::ZERO));
        // Every node backing off: wait for the one whose back-off ends first.
        n.failed(2, t0 + Duration::from_millis(50), None);
        let (i, wait) = n.next(t0);
        assert!(i == 0 || i == 1, "{i}");
        assert!(wait <= Duration::from_millis(120), "{wait:?}");
        // Once node 0's back-off is over it is first in list order again.
        assert_eq!(n.next(t0 + Duration::from_secs(1)), (0, Duration::ZERO));
    }

    #[test]
    fn backoff_doubles_per_node_up_to_the_cap_and_restarts_after_a_stable_connection() {
        let mut n = nodes(2);
        let t = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| n.failed(0, t, None)).collect();
        for (k, w) in waits.iter().enumerate() {
            let nominal = Duration::from_millis(100 << k.min(20)).min(Duration::from_secs(5));
            assert!(
                *w >= nominal.mul_f64(0.79) && *w <= nominal.mul_f64(1.21),
                "{k}: {w:?}"
            );
        }
        // Node 1 is untouched by node 0's failures.
        assert_eq!(n.next(t), (1, Duration::ZERO));
        // A connection that dropped at once keeps the count; one that held restarts it.
        assert!(n.failed(0, t, Some(Duration::from_millis(10))) >= Duration::from_secs(4));
        assert!(n.failed(0, t, Some(STABLE)) <= Duration::from_millis(121));
    }

    #[test]
    fn classic_queues_on_a_cluster_are_warned_about() {
        let parse = |amqp: &str| {
            let text = format!("[amqp]\n{amqp}\n[[amqp.queues]]\nname = \"c\"\n[[amqp.queues]]\nname = \"q\"\nkind = \"quorum\"\n");
            crate::config::Config::parse(&text, &Default::default(), std::path::Path::new("."))
                .unwrap()
        };
        assert!(warnings(&parse(r#"url = "amqp://a""#)).is_empty());
        let w = warnings(&parse(r#"url = ["amqp://a", "amqp://b"]"#));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("`c` is a classic queue"), "{w:?}");
    }

    #[test]
    fn labels_never_show_the_password() {
        let n = nodes(1);
        assert_eq!(n.label(0), "amqp://u:[redacted]@node0:5672/%2f");
        assert!(n.url(0).contains("secret"));
    }
}
