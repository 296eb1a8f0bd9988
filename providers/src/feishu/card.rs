//! Legacy message-card callbacks (`card.action.trigger_v1`): signed with
//! hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ raw body)), and without an id of their
//! own.

use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{
    ack, decrypt_with, hex_matches, is_url_verification, json_object, time_from_millis, Feishu,
    LEGACY_CARD, NONCE, TIMESTAMP,
};
use crate::shared::{encrypt_field, non_empty};
use crate::{Admission, Data, Event, RawRequest, Rejection};

impl Feishu {
    /// Legacy message-card callback (`card.action.trigger_v1`), signed with the token.
    pub(super) fn admit_legacy_card(
        &self,
        req: &RawRequest<'_>,
        signature: &str,
    ) -> Result<Admission, Rejection> {
        let ts = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let mut h = Sha1::new();
        h.update(ts.as_bytes());
        h.update(nonce.as_bytes());
        h.update(self.token.expose().as_bytes());
        h.update(req.body);
        if !hex_matches(signature, &h.finalize()) {
            return Err(Rejection::BadSignature);
        }
        // The SDK decrypts card bodies that come as {"encrypt":…} (oapi-sdk-go card/card.go).
        let plain = match encrypt_field(req.body) {
            Some(e) => {
                let key = self.encrypt.as_ref().ok_or(Rejection::Malformed(
                    "body is encrypted but this source has no encrypt_key",
                ))?;
                decrypt_with(&key.aes, &e)
                    .ok_or(Rejection::Malformed("encrypt does not decrypt"))?
            }
            None => req.body.to_vec(),
        };
        let mut v = json_object(&plain)
            .ok_or(Rejection::Malformed("card callback is not a JSON object"))?;
        if is_url_verification(&v) {
            return self.challenge(&v);
        }
        if !v.get("action").is_some_and(Value::is_object) {
            return Err(Rejection::Malformed("card callback without action"));
        }
        // Here `token` is the card's update token, not the Verification Token; drop it only
        // if it is the secret after all.
        if self.token_matches(v.get("token")).is_ok() {
            v.remove("token");
        }
        let mut id = Sha256::new();
        id.update(ts.as_bytes());
        id.update(b"\n");
        id.update(nonce.as_bytes());
        id.update(b"\n");
        id.update(req.body);
        let v = Value::Object(v);
        let subject = ["/open_chat_id", "/open_message_id"]
            .iter()
            .find_map(|p| non_empty(v.pointer(p)))
            .map(str::to_owned);
        let event = Event {
            id: format!("sha256:{}", hex::encode(id.finalize())),
            kind: format!("feishu.{LEGACY_CARD}"),
            provider_event: LEGACY_CARD.to_owned(),
            time: ts
                .parse::<i64>()
                .ok()
                .and_then(|s| time_from_millis(Some(s.saturating_mul(1000)))),
            subject,
            data: Data::Value(v),
            content_key: None,
        };
        Ok(Admission::Event { event, ack: ack() })
    }
}
