//! The request core without HTTP and without a broker: the stages against a temporary store.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use providers::sign::{SampleOptions, SampleRequest};

use super::*;
use crate::app::Health;
use crate::store::Store;

const SECRET: &str = "core-test-secret";

struct Core {
    gw: Gateway,
    config: Config,
    _dir: tempfile::TempDir,
}

/// A gateway over a fresh store; `source_extra` goes into the one GitHub source's table.
fn core(store_extra: &str, source_extra: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n{store_extra}\n\
         [[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n{source_extra}\n",
        dir.path().join("store").display()
    );
    let config = Config::parse(&text, &HashMap::new(), dir.path()).unwrap();
    let store = Arc::new(Store::open(&config.store).unwrap());
    let gw = Gateway::new(
        &config,
        store,
        Arc::new(BrokerStatus::default()),
        Arc::new(Health::default()),
    )
    .unwrap();
    Core {
        gw,
        config,
        _dir: dir,
    }
}

impl Core {
    /// A correctly signed GitHub delivery with this id.
    fn sample(&self, id: &str) -> SampleRequest {
        let mut o = SampleOptions::new(SystemTime::now());
        o.id = Some(id.to_string());
        self.config.sources[0].provider.sample(&o).unwrap()
    }

    async fn send(&self, r: &SampleRequest) -> Outcome {
        let rt = self.gw.runtime.load_full();
        let source = &rt.sources["gh"];
        let client = IpAddr::from([192, 0, 2, 1]);
        if let Err(refused) = guard(&rt, source, client, Some(r.body.len() as u64)) {
            return refused;
        }
        let request = Request {
            client,
            headers: &r.headers,
            query: &r.query,
            body: &r.body,
            received: SystemTime::now(),
        };
        admit(&self.gw, source, &request).await
    }
}

fn refusal(o: &Outcome) -> Option<Refusal> {
    match o {
        Outcome::Rejected { refusal, reply, .. } => {
            assert_eq!(reply.status, refusal.status(), "{o:?}");
            Some(*refusal)
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_verified_event_is_kept_once_and_a_retry_is_a_duplicate() {
    let c = core("", "");
    let r = c.sample("delivery-1");
    match c.send(&r).await {
        Outcome::Accepted { id, kind, reply } => {
            assert_eq!(id, "delivery-1");
            assert!(kind.starts_with("github."), "{kind}");
            assert_eq!(reply.status, 202);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.gw.store.pending(), 1);
    assert!(matches!(c.send(&r).await, Outcome::Duplicate { .. }));
    assert_eq!(c.gw.store.pending(), 1, "a duplicate is not kept again");
}

#[tokio::test]
async fn a_tampered_body_is_a_signature_refusal_and_nothing_is_kept() {
    let c = core("", "");
    let mut r = c.sample("delivery-2");
    let last = r.body.len() - 2;
    r.body[last] ^= 1;
    let o = c.send(&r).await;
    assert_eq!(refusal(&o), Some(Refusal::Signature), "{o:?}");
    assert_eq!(o.label(), "unauthorized");
    assert_eq!(c.gw.store.pending(), 0);
}

#[tokio::test]
async fn guards_refuse_by_allowlist_and_declared_size_before_the_body() {
    let c = core("", "allow_ips = [\"10.0.0.0/8\"]\n");
    let o = c.send(&c.sample("d-3")).await;
    assert_eq!(refusal(&o), Some(Refusal::Forbidden), "{o:?}");

    let c = core("", "max_body_bytes = 100\n");
    let o = c.send(&c.sample("d-4")).await;
    assert_eq!(refusal(&o), Some(Refusal::TooLarge), "{o:?}");
    assert_eq!(o.status(), 413);
}

#[tokio::test]
async fn the_source_budget_is_spent_only_by_verified_requests() {
    let c = core("", "rate_limit = { per_second = 1, burst = 1 }\n");
    let mut forged = c.sample("d-5");
    forged.body.push(b' ');
    for _ in 0..3 {
        assert_eq!(refusal(&c.send(&forged).await), Some(Refusal::Signature));
    }
    // Side by side: d-7's check comes right after d-6's token is spent, not after d-6's disk
    // write (one token a second: a write and a stall past a second would refill the bucket).
    let (d6, d7) = (c.sample("d-6"), c.sample("d-7"));
    let (d6, d7) = tokio::join!(biased; c.send(&d6), c.send(&d7));
    assert!(matches!(d6, Outcome::Accepted { .. }), "{d6:?}");
    match d7 {
        Outcome::RateLimited { limiter, reply, .. } => {
            assert_eq!(limiter, Limiter::Source);
            assert_eq!(reply.status, 429);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_full_backlog_is_503_but_a_duplicate_is_still_acknowledged() {
    let c = core("max_outbox_entries = 1\n", "");
    let first = c.sample("d-8");
    assert!(matches!(c.send(&first).await, Outcome::Accepted { .. }));
    match c.send(&c.sample("d-9")).await {
        Outcome::Unavailable { reply, .. } => assert_eq!(reply.status, 503),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.send(&first).await, Outcome::Duplicate { .. }));
}

#[test]
fn the_entry_carries_the_envelope_and_the_rendered_routing_key() {
    let c = core("", "routing_key = \"hooks.{provider}.{type}\"\n");
    let r = c.sample("d-10");
    let rt = c.gw.runtime.load_full();
    let source = &rt.sources["gh"];
    let request = Request {
        client: IpAddr::from([192, 0, 2, 1]),
        headers: &r.headers,
        query: &r.query,
        body: &r.body,
        received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let (event, _) = verify(source, &request).unwrap();
    let (entry, id, kind) = entry(source, event, request.received);
    assert_eq!(entry.message_id, "d-10");
    assert_eq!(id, "d-10");
    assert_eq!(entry.routing_key, format!("hooks.github.{kind}"));
    assert_eq!(entry.timestamp, 1_700_000_000);
    let body: serde_json::Value = serde_json::from_slice(&entry.body).unwrap();
    assert_eq!(body["id"], "d-10");
    assert_eq!(body["source"], "/hookgate/gh");
}
