//! Requests as DingTalk sends them (an encrypted event push, a signed robot message), and the
//! check a deployment's encrypted reply must pass, for `hookgate sign` and the tests.

use serde::Deserialize;

use super::event::{aes_key_bytes, decrypt, encrypt, event_signature, json_string};
use super::robot::robot_sign;
use super::{Config, DingTalk, Keys};
use crate::crypto;
use crate::shared::{joined, unix_millis};
use crate::sign::{SampleOptions, SampleRequest};
use crate::{form, Rejection};

/// A request as DingTalk sends it to this source: an encrypted, signed event push (event
/// mode; `o.payload` is the plaintext JSON, `o.event` the `EventType` of the default one) or
/// a signed robot message (robot mode; `o.payload` is the body, `o.event` the `msgtype`,
/// `o.id` the `msgId`). Event pushes carry no id, so `o.id` is not used there.
pub fn sample(c: &Config, o: &SampleOptions) -> Result<SampleRequest, String> {
    let p = DingTalk::new(c).map_err(joined)?;
    let now_ms = unix_millis(o.now);
    match &p.mode {
        Keys::Event(k) => {
            let msg = o.payload.clone().unwrap_or_else(|| {
                let event_type = o.event.as_deref().unwrap_or("user_add_org");
                format!(
                    r#"{{"EventType":{},"TimeStamp":"{now_ms}","CorpId":"ding9f50b15bccd16741","UserId":["manager7675"]}}"#,
                    json_string(event_type)
                )
                .into_bytes()
            });
            let random16: [u8; 16] = crypto::random_array();
            Ok(event_push(
                k.token.expose(),
                &k.key.0,
                &k.owner_key,
                &now_ms.to_string(),
                &crypto::random_alnum(8),
                &random16,
                &msg,
            ))
        }
        Keys::Robot(secrets) => {
            let secret = secrets.first().ok_or("no app secret configured")?;
            let body = o.payload.clone().unwrap_or_else(|| {
                let msgtype = o.event.as_deref().unwrap_or("text");
                let msg_id = o.id_or_random("msg");
                let conversation = "cidk8Pr1AsvVzJ4w9Aay2qdGA==";
                format!(
                    concat!(
                        r#"{{"conversationId":{conv},"atUsers":[{{"dingtalkId":"$:LWCP_v1:$rdbQ3pZ1r8ZsJH8r6Vfltw=="}}],"#,
                        r#""chatbotCorpId":"ding9f50b15bccd16741","chatbotUserId":"$:LWCP_v1:$rdbQ3pZ1r8ZsJH8r6Vfltw==","#,
                        r#""msgId":{id},"senderNick":"Zhang San","isAdmin":false,"senderStaffId":"manager7675","#,
                        r#""sessionWebhookExpiredTime":{expires},"createAt":{now},"senderCorpId":"ding9f50b15bccd16741","#,
                        r#""conversationType":"2","senderId":"$:LWCP_v1:$Wk1mZmJ4K2h6aVpPRkE9PQ==","#,
                        r#""conversationTitle":"hookgate test","isInAtList":true,"#,
                        r#""sessionWebhook":"https://oapi.dingtalk.com/robot/sendBySession?session=5f2c8b0e1d3a4f6e9b7c0a1d2e3f4a5b","#,
                        r#""text":{{"content":" hello hookgate"}},"robotCode":"dingrobot7c1f0e2d","msgtype":{msgtype}}}"#
                    ),
                    conv = json_string(conversation),
                    id = json_string(&msg_id),
                    expires = now_ms.saturating_add(5_400_000),
                    now = now_ms,
                    msgtype = json_string(msgtype),
                )
                .into_bytes()
            });
            let ts = now_ms.to_string();
            Ok(SampleRequest {
                query: String::new(),
                headers: vec![
                    (
                        "Content-Type".into(),
                        "application/json; charset=utf-8".into(),
                    ),
                    ("timestamp".into(), ts.clone()),
                    ("sign".into(), robot_sign(&ts, secret.expose())),
                ],
                body,
            })
        }
    }
}

/// An event push as DingTalk sends it: `msg` encrypted with `random16`, signed over
/// `timestamp` and `nonce`, with the current query names (`signature`, `timestamp`).
pub(super) fn event_push(
    token: &str,
    key: &[u8; 32],
    owner_key: &str,
    timestamp: &str,
    nonce: &str,
    random16: &[u8; 16],
    msg: &[u8],
) -> SampleRequest {
    let encrypt = encrypt(key, random16, msg, owner_key);
    let signature = event_signature(token, timestamp, nonce, &encrypt);
    SampleRequest {
        query: format!(
            "signature={}&timestamp={}&nonce={}",
            form::encode(signature.as_bytes()),
            form::encode(timestamp.as_bytes()),
            form::encode(nonce.as_bytes())
        ),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!(r#"{{"encrypt":{}}}"#, json_string(&encrypt)).into_bytes(),
    }
}

/// Checks a reply as DingTalk does (signature over its own `timeStamp`/`nonce`/`encrypt`,
/// decryption, owner trailer) and returns the decrypted text, which must be `success`.
/// For tests of a deployed gateway: hookgate's own replies go through it.
pub fn decrypt_reply(
    token: &str,
    aes_key: &str,
    owner_key: &str,
    reply_json: &[u8],
) -> Result<String, Rejection> {
    #[derive(Deserialize)]
    struct ReplyBody {
        msg_signature: String,
        #[serde(rename = "timeStamp")]
        time_stamp: String,
        nonce: String,
        encrypt: String,
    }
    let key = aes_key_bytes(aes_key).map_err(|_| Rejection::Malformed("aes_key is invalid"))?;
    let r: ReplyBody = serde_json::from_slice(reply_json)
        .map_err(|_| Rejection::Malformed("reply is not the encrypted reply JSON"))?;
    let expected = event_signature(token, &r.time_stamp, &r.nonce, &r.encrypt);
    if !crypto::ct_eq(expected.as_bytes(), r.msg_signature.as_bytes()) {
        return Err(Rejection::BadSignature);
    }
    let msg = decrypt(&key, owner_key, &r.encrypt)?;
    String::from_utf8(msg).map_err(|_| Rejection::Malformed("reply is not UTF-8"))
}
