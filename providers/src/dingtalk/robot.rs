//! Robot message callbacks (`mode = "robot"`): `sign` = b64(HMAC-SHA256(appSecret,
//! timestamp + "\n" + appSecret)) over the timestamp header only.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::DingTalk;
use crate::crypto::{self, MacAlg};
use crate::shared::{
    bounded, json_int, non_empty, rfc3339_millis, shape, type_name_or_unknown, unix_millis,
    within_window,
};
use crate::{Admission, Data, Event, RawRequest, Rejection, Reply, Secret};

const TIMESTAMP: &str = "timestamp";
const SIGN: &str = "sign";

/// "相差1小时以上，则认为是非法的请求" (a request more than an hour off is illegal).
const TOLERANCE_MS: i64 = 3_600_000;

#[cfg(any(test, feature = "sign"))]
/// `b64(HMAC-SHA256(key = appSecret, msg = timestamp + "\n" + appSecret))`: the robot `sign`.
pub(super) fn robot_sign(timestamp: &str, app_secret: &str) -> String {
    crypto::b64_encode(&robot_mac(timestamp, app_secret))
}

fn robot_mac(timestamp: &str, app_secret: &str) -> Vec<u8> {
    let secret = app_secret.as_bytes();
    crypto::hmac(
        MacAlg::Sha256,
        secret,
        &[timestamp.as_bytes(), b"\n", secret],
    )
}

impl DingTalk {
    pub(super) fn admit_robot(
        &self,
        secrets: &[Secret],
        req: &RawRequest<'_>,
        now: SystemTime,
    ) -> Result<Admission, Rejection> {
        let timestamp = req.require_header(TIMESTAMP)?;
        let sign = req.require_header(SIGN)?;
        // A timestamp that is not a number is not inside the window either.
        let ts: i64 = timestamp.parse().map_err(|_| Rejection::StaleTimestamp)?;
        if !within_window(ts, unix_millis(now), TOLERANCE_MS) {
            return Err(Rejection::StaleTimestamp);
        }
        let mac = crypto::b64(sign).ok_or(Rejection::BadSignature)?;
        if !secrets
            .iter()
            .any(|s| crypto::ct_eq(&robot_mac(timestamp, s.expose()), &mac))
        {
            return Err(Rejection::BadSignature);
        }

        // DingTalk signs the timestamp only: everything below comes from an unsigned body, so
        // it is taken only in the shape DingTalk sends (msgId `msg…=` base64-ish, msgtype a
        // name such as `text` or `richText`, conversationId `cid…==`).
        let body: Map<String, Value> = serde_json::from_slice(req.body)
            .map_err(|_| Rejection::Malformed("body is not a JSON object"))?;
        let msg_id =
            non_empty(body.get("msgId")).ok_or(Rejection::Malformed("body has no msgId"))?;
        let msg_id = bounded(msg_id, shape::visible, "msgId is not a message id")?;
        let msgtype =
            non_empty(body.get("msgtype")).ok_or(Rejection::Malformed("body has no msgtype"))?;
        let msgtype = bounded(msgtype, is_msgtype_char, "msgtype is not a message type")?;
        let conversation = non_empty(body.get("conversationId"))
            .map(|c| bounded(c, shape::visible, "conversationId is not an id"))
            .transpose()?;
        let event = Event {
            id: msg_id.to_owned(),
            kind: format!(
                "dingtalk.robot.{}",
                type_name_or_unknown(&msgtype.replace('.', "_"))
            ),
            provider_event: msgtype.to_owned(),
            time: body
                .get("createAt")
                .and_then(json_int)
                .filter(|t| *t > 0)
                .and_then(rfc3339_millis),
            subject: conversation.map(str::to_owned),
            data: Data::json(req.body)?,
            content_key: None,
        };
        Ok(Admission::Event {
            event,
            ack: Reply::json(200, &serde_json::json!({})),
        })
    }
}

/// A robot `msgtype`: `text`, `picture`, `richText`, … (`[A-Za-z0-9_]`).
fn is_msgtype_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
