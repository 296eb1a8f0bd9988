//! Legacy message-card callbacks (`card.action.trigger_v1`): signed with
//! hex(SHA-1(timestamp ‖ nonce ‖ verification_token ‖ raw body)), and without an id of their
//! own.

use serde_json::Value;

use super::{
    ack, decrypt_with, hex_matches, is_url_verification, json_object, time_from_millis, Feishu,
    LEGACY_CARD, NONCE, TIMESTAMP,
};
use crate::crypto;
use crate::shared::{encrypt_field, non_empty, raw_members, raw_object_data};
use crate::{Admission, Event, RawRequest, Rejection};

impl Feishu {
    /// Legacy message-card callback (`card.action.trigger_v1`), signed with the token.
    pub(super) fn admit_legacy_card(
        &self,
        req: &RawRequest<'_>,
        signature: &str,
    ) -> Result<Admission, Rejection> {
        let ts = req.require_header(TIMESTAMP)?;
        let nonce = req.require_header(NONCE)?;
        let signed = [
            ts.as_bytes(),
            nonce.as_bytes(),
            self.token.expose().as_bytes(),
            req.body,
        ];
        if !hex_matches(signature, &crypto::sha1(&signed)) {
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
        let mut members = raw_members(&plain)
            .ok_or(Rejection::Malformed("card callback is not a JSON object"))?;
        if self.token_matches(v.get("token")).is_ok() {
            v.remove("token");
            members.remove("token");
        }
        // The signed bytes without the secret: nothing separates the timestamp from the
        // nonce in the signature, so a replay that moves characters from one header to the
        // other still verifies, and must be the same event (with separators in the id, each
        // split was a new one).
        let id = crypto::sha256(&[ts.as_bytes(), nonce.as_bytes(), req.body]);
        let v = Value::Object(v);
        let subject = ["/open_chat_id", "/open_message_id"]
            .iter()
            .find_map(|p| non_empty(v.pointer(p)))
            .map(str::to_owned);
        let event = Event {
            id: format!("sha256:{}", hex::encode(id)),
            kind: format!("feishu.{LEGACY_CARD}"),
            provider_event: LEGACY_CARD.to_owned(),
            time: ts
                .parse::<i64>()
                .ok()
                .and_then(|s| time_from_millis(Some(s.saturating_mul(1000)))),
            subject,
            data: raw_object_data(&members),
            content_key: None,
        };
        Ok(Admission::Event { event, ack: ack() })
    }
}
