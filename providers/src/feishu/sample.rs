//! Requests as Feishu sends them (encrypted and signed when the source has an Encrypt Key),
//! for `hookgate sign` and the tests, and the helpers a test of a deployment checks with.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{aes_key, decrypt_with, Config, Feishu, URL_VERIFICATION};
use crate::crypto;
use crate::shared::{joined, unix_millis, unix_secs};
use crate::sign::{SampleOptions, SampleRequest};

/// `hex(SHA-256(timestamp ‖ nonce ‖ encrypt_key ‖ body))`: the `X-Lark-Signature` of events.
pub fn signature(timestamp: &str, nonce: &str, encrypt_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(timestamp.as_bytes());
    h.update(nonce.as_bytes());
    h.update(encrypt_key.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Decrypts an `encrypt` value: `None` for bad base64, a short or ragged buffer, or
/// padding that is not strict PKCS#7/16.
pub fn decrypt(encrypt_key: &str, encrypt: &str) -> Option<Vec<u8>> {
    decrypt_with(&aes_key(encrypt_key), encrypt)
}

/// `b64(iv ‖ AES-256-CBC(SHA-256(encrypt_key), iv, PKCS#7/16(plain)))`, as Feishu encrypts.
pub(super) fn encrypt(encrypt_key: &str, iv: &[u8; 16], plain: &[u8]) -> String {
    let ct = crypto::aes_cbc_encrypt(&aes_key(encrypt_key), iv, &crypto::pkcs7_pad(plain, 16))
        .expect("32-byte key, 16-byte iv and padded input are valid");
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    crypto::b64_encode(&out)
}

/// A request as Feishu sends it to this source, encrypted and signed when the source has an
/// `encrypt_key`. `o.event` is the schema 2.0 `event_type` (default `im.message.receive_v1`)
/// or `url_verification` for the challenge request; `o.payload` is the `event` object;
/// `o.id` the `event_id`.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    Feishu::new(c).map_err(joined)?;
    let token = c.verification_token.expose();
    let now_ms = unix_millis(o.now);
    let event_type = o.event.as_deref().unwrap_or("im.message.receive_v1");
    let plain = if event_type == URL_VERIFICATION {
        serde_json::json!({
            "challenge": crypto::random_alnum(15),
            "token": token,
            "type": URL_VERIFICATION,
        })
    } else {
        let event = match &o.payload {
            Some(p) => serde_json::from_slice::<Value>(p)
                .map_err(|e| format!("payload is not JSON: {e}"))?,
            None => default_event(event_type, now_ms),
        };
        serde_json::json!({
            "schema": "2.0",
            "header": {
                "event_id": o.id.clone().unwrap_or_else(|| hex::encode(crypto::random_bytes(16))),
                "event_type": event_type,
                "create_time": now_ms.to_string(),
                "token": token,
                "app_id": "cli_a1b2c3d4e5f60789",
                "tenant_key": "2ca1d211f64f6438",
            },
            "event": event,
        })
    };
    let plain = plain.to_string().into_bytes();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let body = match &c.encrypt_key {
        None => plain,
        Some(key) => {
            let iv: [u8; 16] = crypto::random_array();
            let body = serde_json::json!({ "encrypt": encrypt(key.expose(), &iv, &plain) })
                .to_string()
                .into_bytes();
            let ts = unix_secs(o.now).to_string();
            let nonce = crypto::random_alnum(16);
            let sig = signature(&ts, &nonce, key.expose(), &body);
            headers.push(("X-Lark-Request-Timestamp".into(), ts));
            headers.push(("X-Lark-Request-Nonce".into(), nonce));
            headers.push(("X-Lark-Signature".into(), sig));
            body
        }
    };
    Ok(SampleRequest {
        query: String::new(),
        headers,
        body,
    })
}

/// A realistic `event` object for the sample's event type.
fn default_event(event_type: &str, now_ms: i64) -> Value {
    let sender = serde_json::json!({
        "sender_id": {
            "union_id": "on_8ed6aa67826108097d9ee143816345",
            "user_id": "e33ggbyz",
            "open_id": "ou_84aad35d084aa403a838cf73ee18467",
        },
        "sender_type": "user",
        "tenant_key": "2ca1d211f64f6438",
    });
    match event_type {
        "card.action.trigger" => serde_json::json!({
            "operator": sender["sender_id"],
            "token": "c-295ee57fe7ec4d9a4bd8b5ea7ab1c0ee6ac7e4b2",
            "action": { "value": { "key": "value" }, "tag": "button" },
            "context": {
                "open_message_id": "om_a1b2c3d4e5f60718293a4b5c6d7e8f90",
                "open_chat_id": "oc_5ad11d72b830411d72b836c20",
            },
        }),
        _ => serde_json::json!({
            "sender": sender,
            "message": {
                "message_id": "om_5ce6d572455d361153b7cb51da133945",
                "create_time": now_ms.to_string(),
                "chat_id": "oc_5ad11d72b830411d72b836c20",
                "chat_type": "group",
                "message_type": "text",
                "content": "{\"text\":\"@_user_1 hello hookgate\"}",
            },
        }),
    }
}
