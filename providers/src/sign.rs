//! Correctly signed sample requests, for `hookgate sign`, the load generator and the tests.
//! Each provider module exposes `sample(...)`; this module only renders the result.

use std::time::SystemTime;

/// What a sample request should contain; every field has a realistic default.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// The signing time (timestamps in headers and bodies).
    pub now: SystemTime,
    /// Event id to use; a random one when absent.
    pub id: Option<String>,
    /// The provider's own event name (`push`, `TRADE_SUCCESS`, `TRANSACTION.SUCCESS`,
    /// `im.message.receive_v1`, `user_add_org`, `text`, …); a typical one when absent.
    pub event: Option<String>,
    /// The event payload (JSON; for Alipay a JSON object of parameters); a typical one when absent.
    pub payload: Option<Vec<u8>>,
    /// PEM private key for providers that sign with RSA (the key whose public half the
    /// source's config trusts: Alipay's, or the WeChat Pay platform's).
    pub private_key: Option<String>,
    /// WeChat Pay: the `Wechatpay-Serial` to sign as (a `platform_keys` entry).
    pub key_id: Option<String>,
}

impl SampleOptions {
    pub fn new(now: SystemTime) -> Self {
        SampleOptions {
            now,
            id: None,
            event: None,
            payload: None,
            private_key: None,
            key_id: None,
        }
    }

    /// The id to use: the given one or a fresh random one with `prefix`.
    pub fn id_or_random(&self, prefix: &str) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{prefix}{}", crate::crypto::random_alnum(24)))
    }
}

/// One request as a provider would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRequest {
    /// Query string without `?` (DingTalk signs there); empty for most providers.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SampleRequest {
    /// `url` with the query appended.
    pub fn url(&self, base: &str) -> String {
        if self.query.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", self.query)
        }
    }

    /// A `curl` command line that sends exactly these bytes (`--data-binary`, shell-quoted).
    pub fn curl(&self, base: &str) -> String {
        let mut out = format!("curl -sS -i -X POST {}", shell_quote(&self.url(base)));
        for (k, v) in &self.headers {
            out.push_str(" \\\n  -H ");
            out.push_str(&shell_quote(&format!("{k}: {v}")));
        }
        out.push_str(" \\\n  --data-binary ");
        out.push_str(&shell_quote(&String::from_utf8_lossy(&self.body)));
        out
    }
}

/// POSIX single-quote quoting.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_quotes_everything() {
        let r = SampleRequest {
            query: "a=1".into(),
            headers: vec![("X-A".into(), "it's".into())],
            body: b"{}".to_vec(),
        };
        let c = r.curl("http://h/hooks/x");
        assert!(c.contains("'http://h/hooks/x?a=1'"));
        assert!(c.contains(r"'X-A: it'\''s'"));
        assert!(c.ends_with("--data-binary '{}'"));
    }
}
