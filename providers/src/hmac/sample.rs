//! Requests signed as the configured sender would sign them, for `hookgate sign` and the tests.

use serde_json::Value;

use super::{Config, Encoding, HmacSource, TimestampSource};
use crate::crypto::{self, b64_encode};
use crate::shared::{joined, set_pointer, unix_secs, Locator};
use crate::sign::{SampleOptions, SampleRequest};

impl HmacSource {
    /// The encoded signature of `payload` under `secret`, with the prefix.
    pub(super) fn signature(&self, secret: &str, payload: &[u8]) -> String {
        let raw = crypto::hmac(self.algorithm, secret.as_bytes(), &[payload]);
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(raw),
            Encoding::Base64 => b64_encode(&raw),
        };
        format!("{}{encoded}", self.prefix)
    }
}

/// A request signed as the configured sender would sign it, with the first secret:
/// timestamp, id and type where the config reads them, and a Stripe-style `k=v` header in
/// `signature_param` mode.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = HmacSource::new(c).map_err(joined)?;
    let secret = p.secrets.first().ok_or("no secret configured")?;
    let id = o.id_or_random("evt_");
    let event = o.event.as_deref().unwrap_or("ping");
    let timestamp = unix_secs(o.now).to_string();
    let body = match &o.payload {
        Some(b) => b.clone(),
        None => {
            let mut v = serde_json::json!({
                "id": id,
                "type": event,
                "created": unix_secs(o.now),
                "data": { "object": { "id": format!("obj_{}", crypto::random_alnum(12)), "status": "ok" } },
            });
            if let Some(Locator::Pointer(ptr)) = &p.id {
                set_pointer(&mut v, ptr, Value::String(id.clone()));
            }
            if let Some(Locator::Pointer(ptr)) = &p.kind {
                set_pointer(&mut v, ptr, Value::String(event.to_owned()));
            }
            v.to_string().into_bytes()
        }
    };
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(Locator::Header(h)) = &p.id {
        headers.push((h.to_string(), id.clone()));
    }
    if let Some(Locator::Header(h)) = &p.kind {
        headers.push((h.to_string(), event.to_owned()));
    }
    let signed_ts = p.timestamp.as_ref().map(|_| timestamp.as_str());
    let payload = p.expand(&body, signed_ts, Some(&id));
    let signature = p.signature(secret.expose(), &payload);
    let signature_value = match (&p.signature_param, &p.timestamp) {
        (Some(param), Some(TimestampSource::Param(t))) => {
            let sep = p.separator;
            format!("{t}={timestamp}{sep}{param}={signature}")
        }
        (Some(param), _) => format!("{param}={signature}"),
        (None, _) => signature,
    };
    if let Some(TimestampSource::Header(h)) = &p.timestamp {
        headers.push((h.to_string(), timestamp.clone()));
    }
    headers.push((p.signature_header.to_string(), signature_value));
    Ok(SampleRequest {
        query: String::new(),
        headers,
        body,
    })
}
