//! GitHub deliveries as GitHub sends them, for `hookgate sign` and the tests.

use super::Config;
use crate::crypto::{self, MacAlg};
use crate::sign::{SampleOptions, SampleRequest};

/// `sha256=<hex>` of `body` under `secret`: the value GitHub sends.
pub fn signature_256(secret: &str, body: &[u8]) -> String {
    let mac = crypto::hmac(MacAlg::Sha256, secret.as_bytes(), &[body]);
    format!("sha256={}", hex::encode(mac))
}

/// `sha1=<hex>`: the legacy header.
pub(crate) fn signature_sha1(secret: &str, body: &[u8]) -> String {
    let mac = crypto::hmac(MacAlg::Sha1, secret.as_bytes(), &[body]);
    format!("sha1={}", hex::encode(mac))
}

/// A delivery as GitHub sends it, signed with the source's first secret.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let secret = c.secrets.first().ok_or("no secret configured")?;
    let event = o.event.as_deref().unwrap_or("push");
    let body = o.payload.clone().unwrap_or_else(|| {
        br#"{"ref":"refs/heads/main","repository":{"full_name":"octo-org/hello-world"},"sender":{"login":"octocat"}}"#.to_vec()
    });
    let id = o.id.clone().unwrap_or_else(crypto::random_uuid);
    Ok(delivery(secret.expose(), event, &id, &body))
}

/// A delivery as GitHub sends it.
pub fn delivery(secret: &str, event: &str, delivery: &str, body: &[u8]) -> SampleRequest {
    SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), "GitHub-Hookshot/hookgate-sign".into()),
            ("X-GitHub-Event".into(), event.into()),
            ("X-GitHub-Delivery".into(), delivery.into()),
            ("X-Hub-Signature-256".into(), signature_256(secret, body)),
            ("X-Hub-Signature".into(), signature_sha1(secret, body)),
        ],
        body: body.to_vec(),
    }
}
