//! Messages as a Standard Webhooks sender signs them (`v1` HMAC, `v1a` Ed25519), for
//! `hookgate sign` and the tests.

use ring::signature::Ed25519KeyPair;

use super::{hmac_sha256, signed_content, Config, Key, SIGNING_KEY_PREFIX};
use crate::crypto::{self, b64_encode, b64_lenient};
use crate::shared::{rfc3339_millis, unix_millis, unix_secs};
use crate::sign::{SampleOptions, SampleRequest};
use crate::Secret;

/// `v1,<base64 HMAC-SHA256>` of the content under a `whsec_` secret (prefix optional).
pub fn sign_v1(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Result<String, String> {
    match Key::parse(&Secret::from(secret))? {
        Key::Hmac(key) => Ok(format!(
            "v1,{}",
            b64_encode(&hmac_sha256(&key, &signed_content(id, timestamp, body)))
        )),
        Key::Ed25519(_) => Err("a whpk_ public key cannot sign".into()),
    }
}

/// `v1a,<base64 Ed25519 signature>` with a `whsk_` key: base64 of the 32-byte seed, or of the
/// 64-byte seed ‖ public key (the spec leaves the serialisation open; both are taken).
pub(crate) fn sign_v1a(
    signing_key: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<String, String> {
    let pair = ed25519_pair(signing_key)?;
    let sig = pair.sign(&signed_content(id, timestamp, body));
    Ok(format!("v1a,{}", b64_encode(sig.as_ref())))
}

pub(super) fn ed25519_pair(signing_key: &str) -> Result<Ed25519KeyPair, String> {
    let text = signing_key.trim();
    let bytes = b64_lenient(text.strip_prefix(SIGNING_KEY_PREFIX).unwrap_or(text))
        .ok_or("the whsk_ key is not base64")?;
    match bytes.len() {
        32 => Ed25519KeyPair::from_seed_unchecked(&bytes),
        64 => Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..]),
        n => return Err(format!("the whsk_ key has {n} bytes, expected 32 or 64")),
    }
    .map_err(|e| format!("not an Ed25519 key: {e}"))
}

/// A message as a Standard Webhooks sender delivers it: `v1` with the first `whsec_` secret,
/// plus `v1a` when `o.private_key` holds a `whsk_` key.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let id = o.id_or_random("msg_");
    let timestamp = unix_secs(o.now).to_string();
    let body = match &o.payload {
        Some(p) => p.clone(),
        None => default_body(o)?,
    };
    let mut entries = Vec::new();
    let first_hmac = c
        .secrets
        .iter()
        .find(|s| matches!(Key::parse(s), Ok(Key::Hmac(_))));
    if let Some(secret) = first_hmac {
        entries.push(sign_v1(secret.expose(), &id, &timestamp, &body)?);
    }
    if let Some(signing_key) = &o.private_key {
        entries.push(sign_v1a(signing_key, &id, &timestamp, &body)?);
    }
    if entries.is_empty() {
        return Err("no whsec_ secret configured: to sign v1a, give the whsk_ private key that goes with the whpk_ key, in a file: --private-key FILE".into());
    }
    Ok(SampleRequest {
        query: String::new(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("webhook-id".into(), id),
            ("webhook-timestamp".into(), timestamp),
            ("webhook-signature".into(), entries.join(" ")),
        ],
        body,
    })
}

fn default_body(o: &SampleOptions) -> Result<Vec<u8>, String> {
    let event = o.event.as_deref().unwrap_or("user.created");
    let time = rfc3339_millis(unix_millis(o.now)).ok_or("time out of range")?;
    let body = serde_json::json!({
        "type": event,
        "timestamp": time,
        "data": {
            "id": format!("user_{}", crypto::random_alnum(16)),
            "email": "jane@example.com",
            "username": "jane",
        },
    });
    Ok(body.to_string().into_bytes())
}
