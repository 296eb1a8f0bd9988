//! Which record a `basic.return` belongs to.
//!
//! The broker sends a mandatory message's `basic.return` before the ack that covers it, and
//! lapin hands each return to the next confirm it completes, whichever that is: the ack of an
//! earlier message that arrived in between, or, for a multiple ack, any of the messages it
//! covers (in hash order). Taken at face value, a routed record would be charged for an
//! unroutable one, and the unroutable one counted as published: in no queue, never dead. So a
//! return is matched to its record by what the broker sent back (message id and routing key),
//! not by the confirm it arrived on.
//!
//! Why looking at the confirms completed so far is enough: the broker sends a message's
//! return before the ack that covers it, and returns in publish order; lapin queues returns
//! first in, first out and attaches each to the next confirm it completes. So the confirm that
//! carries a record's return completes no later than the last of the confirms of the returned
//! records published up to and including it. The relay reads confirms in publish order, and
//! each time it has waited for one it takes the returns of every confirm in flight that is
//! complete by then ([`Returns::harvest`]); by the time it reads a record's confirm, every
//! return that can be its own is in the ledger. The cost is a look at each confirm in flight
//! per wait: when acks come in bulk (what RabbitMQ sends under load) that is a look or two
//! per record; a broker acking one message at a time with a full window pays up to
//! `max_in_flight` looks per record (measured: no difference in the relay's CPU per message
//! while draining 100,000 events).

use std::collections::{HashMap, VecDeque};

use futures_util::FutureExt;
use lapin::message::BasicReturnMessage;
use lapin::{Confirmation, PublisherConfirm};

use crate::log::Entry;

/// A record's confirm: still awaited, or already taken by [`Returns::harvest`].
pub enum Confirm {
    Pending(PublisherConfirm),
    /// Boxed: a `Confirmation` can hold a whole returned message.
    Done(Box<lapin::Result<Confirmation>>),
}

/// Returns taken off the confirms they arrived on, by the record they belong to, until that
/// record's own confirm is read. One channel's worth: a new channel starts empty.
#[derive(Default)]
pub struct Returns {
    waiting: HashMap<(String, String), VecDeque<BasicReturnMessage>>,
}

impl Returns {
    /// Completes, without waiting, every confirm in `flights` that lapin has completed, and
    /// keeps the returns they carry.
    pub fn harvest<'a>(&mut self, flights: impl Iterator<Item = &'a mut Confirm>) {
        for c in flights {
            if let Confirm::Pending(pending) = c {
                if let Some(done) = pending.now_or_never() {
                    *c = Confirm::Done(Box::new(done.map(|d| self.strip(d))));
                }
            }
        }
    }

    /// What the broker said about `entry`: its confirm `c`, with `entry`'s own return if the
    /// broker returned it (whichever confirm that return arrived on).
    pub fn claim(&mut self, c: Confirmation, entry: &Entry) -> Confirmation {
        let c = self.strip(c);
        if self.waiting.is_empty() {
            return c;
        }
        let key = (entry.message_id.clone(), entry.routing_key.clone());
        let Some(queue) = self.waiting.get_mut(&key) else {
            return c;
        };
        let own = queue.pop_front();
        if queue.is_empty() {
            self.waiting.remove(&key);
        }
        match c {
            Confirmation::Ack(_) => Confirmation::Ack(own),
            Confirmation::Nack(_) => Confirmation::Nack(own),
            Confirmation::NotRequested => Confirmation::NotRequested,
        }
    }

    /// Keeps the return `c` carries, whoever it belongs to; `c` becomes a plain ack or nack.
    fn strip(&mut self, c: Confirmation) -> Confirmation {
        let (ack, returned) = match c {
            Confirmation::Ack(r) => (true, r),
            Confirmation::Nack(r) => (false, r),
            Confirmation::NotRequested => return c,
        };
        if let Some(r) = returned {
            let id = r.delivery.properties.message_id().as_ref();
            let key = (
                id.map_or_else(String::new, |s| s.as_str().to_string()),
                r.delivery.routing_key.as_str().to_string(),
            );
            self.waiting.entry(key).or_default().push_back(r);
        }
        match ack {
            true => Confirmation::Ack(None),
            false => Confirmation::Nack(None),
        }
    }

    /// Returns kept whose record has not been read yet.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use lapin::message::Delivery;
    use lapin::BasicProperties;

    use super::*;

    fn entry(id: &str, key: &str) -> Entry {
        Entry {
            routing_key: key.into(),
            message_id: id.into(),
            kind: "github.issues".into(),
            source: "gh".into(),
            provider: "github".into(),
            content_key: None,
            timestamp: 0,
            replay: false,
            body: b"{}".to_vec(),
        }
    }

    fn returned(id: &str, key: &str) -> BasicReturnMessage {
        let mut delivery = Delivery::mock(0, "ex".into(), key.into(), false, Vec::new());
        delivery.properties = BasicProperties::default().with_message_id(id.into());
        BasicReturnMessage {
            delivery,
            reply_code: 312,
            reply_text: "NO_ROUTE".into(),
        }
    }

    fn is_returned(c: &Confirmation) -> bool {
        matches!(c, Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)))
    }

    #[test]
    fn a_return_on_its_own_confirm_stays_there() {
        let mut r = Returns::default();
        let c = r.claim(
            Confirmation::Ack(Some(returned("k", "gh.issues"))),
            &entry("k", "gh.issues"),
        );
        assert!(is_returned(&c));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_return_on_an_earlier_confirm_goes_to_its_record() {
        let mut r = Returns::default();
        // lapin completed j's ack after k's return came in: j carries it.
        let j = r.claim(
            Confirmation::Ack(Some(returned("k", "gh.issues"))),
            &entry("j", "gh.push"),
        );
        assert_eq!(j, Confirmation::Ack(None), "j was routed and confirmed");
        let k = r.claim(Confirmation::Ack(None), &entry("k", "gh.issues"));
        assert!(is_returned(&k), "k is the one returned");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_return_on_a_later_confirm_is_kept_for_its_record() {
        let mut r = Returns::default();
        // One multiple ack covered k and u; lapin completed u first and gave it k's return,
        // and the harvest took u before k was read.
        let u = r.strip(Confirmation::Ack(Some(returned("k", "gh.issues"))));
        assert_eq!(u, Confirmation::Ack(None));
        let k = r.claim(Confirmation::Ack(None), &entry("k", "gh.issues"));
        assert!(is_returned(&k));
        assert_eq!(r.claim(u, &entry("u", "gh.push")), Confirmation::Ack(None));
    }

    #[test]
    fn returns_of_one_id_on_two_keys_or_twice_are_kept_apart_and_counted() {
        let mut r = Returns::default();
        let _ = r.claim(
            Confirmation::Ack(Some(returned("a", "x"))),
            &entry("z", "x"),
        );
        let _ = r.claim(
            Confirmation::Ack(Some(returned("a", "x"))),
            &entry("z", "x"),
        );
        let _ = r.claim(
            Confirmation::Ack(Some(returned("a", "y"))),
            &entry("z", "x"),
        );
        assert_eq!(r.len(), 3);
        assert!(is_returned(
            &r.claim(Confirmation::Ack(None), &entry("a", "y"))
        ));
        assert!(!is_returned(
            &r.claim(Confirmation::Ack(None), &entry("b", "x"))
        ));
        assert!(is_returned(
            &r.claim(Confirmation::Ack(None), &entry("a", "x"))
        ));
        assert!(is_returned(
            &r.claim(Confirmation::Nack(None), &entry("a", "x"))
        ));
        assert!(!is_returned(
            &r.claim(Confirmation::Ack(None), &entry("a", "x"))
        ));
        assert_eq!(r.len(), 0);
    }
}
