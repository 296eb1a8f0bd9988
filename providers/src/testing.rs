//! Helpers shared by the provider modules' tests.
use std::time::SystemTime;

use crate::{Admission, Event, Provider, RawRequest, Rejection, Reply};

/// `admit` on a request with these headers and body and no query string.
pub fn admit(
    p: &dyn Provider,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<Admission, Rejection> {
    let headers = headers.to_vec();
    p.admit(
        &RawRequest {
            headers: &headers,
            query: "",
            body,
        },
        now,
    )
}

/// The event of an admission that must be one.
pub fn event(r: Result<Admission, Rejection>) -> (Event, Reply) {
    match r {
        Ok(Admission::Event { event, ack }) => (event, ack),
        other => panic!("expected an event, got {other:?}"),
    }
}
