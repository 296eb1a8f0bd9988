//! Event subscription (`mode = "event"`): the signature over the sorted token, timestamp,
//! nonce and ciphertext, the AES-256-CBC payload with its owner trailer, and the encrypted
//! `success` reply.

use serde_json::{Map, Value};

use super::{DingTalk, EventKeys};
use crate::shared::{
    encrypt_field, json_int, non_empty, rfc3339_millis, sha256_key, type_name_or_unknown,
};
use crate::{crypto, msgcrypt};
use crate::{Admission, Data, Event, RawRequest, Rejection, Reply};

// Query parameters. The official SDK reads the first name, then the second.
const MSG_SIGNATURE: &str = "msg_signature";
const SIGNATURE: &str = "signature";
const TIME_STAMP: &str = "timeStamp";
const TIMESTAMP: &str = "timestamp";
const NONCE: &str = "nonce";

const CHECK_URL: &str = "check_url";

/// Decodes the console's 43-character `aes_key` (`[A-Za-z0-9]`) to its 32 bytes. The last
/// character carries non-zero trailing bits, so this needs lenient base64 (docs/providers/dingtalk.md).
pub(super) fn aes_key_bytes(aes_key: &str) -> Result<[u8; 32], String> {
    msgcrypt::aes_key_bytes(aes_key)
}

/// `hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`: signs both the push and
/// the reply.
pub(super) fn event_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    msgcrypt::signature(token, timestamp, nonce, encrypt)
}

/// `b64(AES-256-CBC(key, iv = key[..16], random16 ‖ u32be(len) ‖ msg ‖ owner_key ‖ PKCS#7/32))`.
///
/// # Panics
/// If `msg` is 4 GiB or longer (its length must fit the u32 prefix).
pub(super) fn encrypt(key: &[u8; 32], random16: &[u8; 16], msg: &[u8], owner_key: &str) -> String {
    msgcrypt::seal(key, random16, msg, owner_key)
}

/// Decrypts and checks the owner trailer: the message bytes.
pub(super) fn decrypt(
    key: &[u8; 32],
    owner_key: &str,
    encrypt: &str,
) -> Result<Vec<u8>, Rejection> {
    msgcrypt::open_for(key, owner_key, encrypt, "owner_key")
}

/// The JSON body of the encrypted `success` reply (DingTalk's required reply), fields in the
/// documented order. `random16` and `nonce` are arguments so the reply is a known-answer
/// test; `admit` passes fresh random values.
pub(super) fn success_reply_body(
    token: &str,
    key: &[u8; 32],
    owner_key: &str,
    timestamp: &str,
    nonce: &str,
    random16: &[u8; 16],
) -> String {
    let encrypt = encrypt(key, random16, b"success", owner_key);
    let msg_signature = event_signature(token, timestamp, nonce, &encrypt);
    format!(
        r#"{{"msg_signature":{},"timeStamp":{},"nonce":{},"encrypt":{}}}"#,
        json_string(&msg_signature),
        json_string(timestamp),
        json_string(nonce),
        json_string(&encrypt)
    )
}

pub(super) fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// A query parameter that must be present and non-empty.
fn param(req: &RawRequest<'_>, name: &str) -> Option<String> {
    req.query_param(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// RFC 3339 of a Unix time that may be seconds or milliseconds (both eras exist).
/// Below 10^11 it is seconds: as milliseconds that would be 1973.
fn time_secs_or_millis(t: i64) -> Option<String> {
    if t <= 0 {
        return None;
    }
    rfc3339_millis(if t < 100_000_000_000 {
        t.saturating_mul(1000)
    } else {
        t
    })
}

impl DingTalk {
    pub(super) fn admit_event(
        &self,
        k: &EventKeys,
        req: &RawRequest<'_>,
    ) -> Result<Admission, Rejection> {
        let signature = param(req, MSG_SIGNATURE)
            .or_else(|| param(req, SIGNATURE))
            .ok_or(Rejection::missing(SIGNATURE))?;
        let timestamp = param(req, TIME_STAMP)
            .or_else(|| param(req, TIMESTAMP))
            .ok_or(Rejection::missing(TIMESTAMP))?;
        let nonce = param(req, NONCE).ok_or(Rejection::missing(NONCE))?;

        // The signature covers the `encrypt` text, which only the body can give us.
        let encrypt =
            encrypt_field(req.body).ok_or(Rejection::Malformed("body is not {\"encrypt\":…}"))?;
        let expected = event_signature(k.token.expose(), &timestamp, &nonce, &encrypt);
        if !crypto::ct_eq(
            expected.as_bytes(),
            signature.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(Rejection::BadSignature);
        }

        let msg = decrypt(&k.key.0, &k.owner_key, &encrypt)?;
        let plain: Map<String, Value> = serde_json::from_slice(&msg)
            .map_err(|_| Rejection::Malformed("decrypted message is not a JSON object"))?;
        let event_type = non_empty(plain.get("EventType"))
            .ok_or(Rejection::Malformed("decrypted message has no EventType"))?;

        let random16: [u8; 16] = crypto::random_array();
        let ack = Reply {
            status: 200,
            content_type: Some(Reply::JSON),
            body: success_reply_body(
                k.token.expose(),
                &k.key.0,
                &k.owner_key,
                &timestamp,
                &crypto::random_alnum(8),
                &random16,
            )
            .into_bytes(),
        };
        if event_type == CHECK_URL {
            return Ok(Admission::Control(ack));
        }

        // The approval instance is the most specific key; otherwise the tenant.
        let subject = ["processInstanceId", "CorpId", "corpId"]
            .iter()
            .find_map(|name| non_empty(plain.get(*name)))
            .map(str::to_owned);
        let event = Event {
            id: sha256_key(&msg),
            // EventType is one segment of the type: a dot in it must not add a level.
            kind: format!(
                "dingtalk.{}",
                type_name_or_unknown(&event_type.replace('.', "_"))
            ),
            provider_event: event_type.to_owned(),
            time: plain
                .get("TimeStamp")
                .and_then(json_int)
                .and_then(time_secs_or_millis),
            subject,
            data: Data::json(&msg)?,
            content_key: None,
        };
        Ok(Admission::Event { event, ack })
    }
}
