//! The CloudEvents 1.0 envelope (structured JSON mode) published for every accepted event.

use std::time::SystemTime;

use serde::Serialize;

use crate::{Data, Event, ProviderKind};

/// One published message body. Field order is the documented one (docs/providers/README.md); `data` is the verified
/// (and, where the provider encrypts, decrypted) payload.
#[derive(Debug, Serialize)]
pub struct Envelope {
    pub specversion: &'static str,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: &'static str,
    pub data: Data,
    pub provider: &'static str,
    pub providerevent: String,
    pub receivedat: String,
    /// [`Event::content_key`](crate::Event::content_key): a second dedup key for providers
    /// whose signature scheme is ambiguous. Not part of the published message.
    #[serde(skip)]
    pub content_key: Option<String>,
}

impl Envelope {
    pub const CONTENT_TYPE: &'static str = "application/cloudevents+json";

    /// Wraps a verified event from source `source` accepted at `received`.
    pub fn new(source: &str, provider: ProviderKind, event: Event, received: SystemTime) -> Self {
        let receivedat = chrono::DateTime::<chrono::Utc>::from(received)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Envelope {
            specversion: "1.0",
            id: event.id,
            source: format!("/hookgate/{source}"),
            kind: event.kind,
            time: event.time.unwrap_or_else(|| receivedat.clone()),
            subject: event.subject,
            datacontenttype: "application/json",
            data: event.data,
            provider: provider.as_str(),
            providerevent: event.provider_event,
            receivedat,
            content_key: event.content_key,
        }
    }

    /// The envelope as compact JSON, the attributes in the documented order: what
    /// `#[derive(Serialize)]` writes, byte for byte (`every_byte_is_what_serde_writes`), with
    /// received JSON copied into `data` as it is, not checked a second time.
    pub fn to_json(&self) -> Vec<u8> {
        // Sized up front (the attributes are short): grown by doubling from serde_json's
        // 128 bytes, a 7 KB payload was copied about seven times (0.6 % of the gateway's CPU
        // at flat-out ingest).
        let data = match &self.data {
            Data::Json(text) => text.get().len(),
            Data::Value(_) => 1024,
        };
        let mut out = Vec::with_capacity(data + 1024);
        // Writing strings and values into a Vec cannot fail.
        fn string(out: &mut Vec<u8>, key: &str, value: &str) {
            out.push(if out.is_empty() { b'{' } else { b',' });
            serde_json::to_writer(&mut *out, key).expect("a string serialises");
            out.push(b':');
            serde_json::to_writer(&mut *out, value).expect("a string serialises");
        }
        string(&mut out, "specversion", self.specversion);
        string(&mut out, "id", &self.id);
        string(&mut out, "source", &self.source);
        string(&mut out, "type", &self.kind);
        string(&mut out, "time", &self.time);
        if let Some(subject) = &self.subject {
            string(&mut out, "subject", subject);
        }
        string(&mut out, "datacontenttype", self.datacontenttype);
        out.extend_from_slice(b",\"data\":");
        match &self.data {
            Data::Json(text) => out.extend_from_slice(text.get().as_bytes()),
            Data::Value(v) => serde_json::to_writer(&mut out, v).expect("a value serialises"),
        }
        string(&mut out, "provider", self.provider);
        string(&mut out, "providerevent", &self.providerevent);
        string(&mut out, "receivedat", &self.receivedat);
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_is_present() {
        let event = Event {
            id: "abc".into(),
            kind: "github.push".into(),
            provider_event: "push".into(),
            time: None,
            subject: Some("o/r".into()),
            data: Data::json(br#"{"a": 1}"#).unwrap(),
            content_key: None,
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let env = Envelope::new("gh", ProviderKind::Github, event, at);
        let v: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["source"], "/hookgate/gh");
        assert_eq!(v["type"], "github.push");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["receivedat"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["subject"], "o/r");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["a"], 1);
        assert_eq!(v["provider"], "github");
        assert_eq!(v["providerevent"], "push");
    }

    fn envelope(id: &str, subject: Option<&str>, data: Data) -> Envelope {
        let event = Event {
            id: id.into(),
            kind: "github.push".into(),
            provider_event: format!("push{id}"),
            time: Some(format!("t{id}")),
            subject: subject.map(Into::into),
            data,
            content_key: None,
        };
        Envelope::new(id, ProviderKind::Github, event, SystemTime::UNIX_EPOCH)
    }

    proptest::proptest! {
        /// `to_json` writes itself; the derive is what it must equal, for any attribute text
        /// (quotes, control characters, non-ASCII) and any JSON (whitespace around it too).
        #[test]
        fn every_byte_is_what_serde_writes(
            id in "\\PC*|[\"\\\\\u{0}-\u{1f}é😀]{0,8}",
            subject in proptest::option::of("\\PC{0,12}"),
            json in proptest::sample::select(vec![
                "{}", " {\"a\": [1, 2.5e3, null, true, \"\\u00e9\\n\"]}\r\n", "\t\"x\"", "[ ]", "0",
                "{\"k\":{\"é😀\":\"\\\"\"}}",
            ]),
            as_value in proptest::bool::ANY,
        ) {
            let data = match as_value {
                false => Data::json(json.as_bytes()).unwrap(),
                true => Data::Value(serde_json::from_str(json).unwrap()),
            };
            let env = envelope(&id, subject.as_deref(), data);
            let derived = serde_json::to_vec(&env).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(env.to_json()).unwrap(),
                String::from_utf8(derived).unwrap()
            );
        }
    }

    #[test]
    fn parsed_json_keeps_its_bytes_without_the_whitespace_around_it() {
        let Data::Json(text) = Data::parsed(" \t{\"a\" :  1 }\n\r") else {
            unreachable!()
        };
        assert_eq!(text.get(), "{\"a\" :  1 }");
        let Data::Json(text) = Data::json(b"\n[1, 2]  ").unwrap() else {
            unreachable!()
        };
        assert_eq!(text.get(), "[1, 2]");
        assert!(Data::json(b"{\"a\":1} x").is_err());
        assert!(
            Data::json(b"{\"a\":\"\x01\"}").is_err(),
            "a control character in a string"
        );
        assert!(Data::json(b"\xff").is_err());
    }
}
