//! Test sources (feature `testkit`): one configured source per provider mode, with the key
//! its samples are signed with, shared by the flip property test (`tests/flip.rs`), the fuzz
//! targets (`fuzz/`, one target per source, named after it) and the benches, so that they
//! all test the same modes with the same keys.
//!
//! [`sources_of`] matches on every [`ProviderKind`]: a new provider does not compile until it
//! has its test sources here. The keys are the test fixtures of `providers/tests/fixtures`;
//! none is a real secret.
//!
//! Also re-exported for the integration tests and benches: the crypto helpers they check
//! replies with and measure against ([`crypto`]), and form encoding ([`form`]).

use std::time::SystemTime;

use serde_json::json;

use crate::sign::{SampleOptions, SampleRequest};
use crate::{Provider, ProviderConfig, ProviderKind};

/// Alipay's private key of the test setup; its certificate is [`ALIPAY_CERT`].
pub const ALIPAY_KEY: &str = include_str!("../tests/fixtures/alipay/alipay_private_key.pem");
/// A self-signed certificate of [`ALIPAY_KEY`], configured as Alipay's public key.
pub const ALIPAY_CERT: &str = include_str!("../tests/fixtures/alipay/alipay_cert.pem");
/// The WeChat Pay platform's private key of the test setup.
pub const WECHATPAY_KEY: &str =
    include_str!("../tests/fixtures/wechatpay/platform_private_key.pem");
/// The platform certificate of [`WECHATPAY_KEY`], serial [`WECHATPAY_SERIAL`].
pub const WECHATPAY_CERT: &str = include_str!("../tests/fixtures/wechatpay/platform_cert.pem");
pub const WECHATPAY_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";

/// One configured source of one provider mode.
#[derive(Debug, Clone)]
pub struct TestSource {
    /// `github`, `wechatpay_v3`, `hmac_base64`, …: unique, and the name of its fuzz target.
    pub name: &'static str,
    pub kind: ProviderKind,
    /// The provider part of a `[[sources]]` table as JSON, `provider` key included.
    pub config: serde_json::Value,
    /// The private key samples are signed with (Alipay's, the WeChat Pay platform's).
    pub private_key: Option<&'static str>,
    /// The sample carries the requested event id or name in a header, so they must be what
    /// a header can carry (visible ASCII, no surrounding blanks).
    pub fields_in_headers: bool,
}

impl TestSource {
    fn new(name: &'static str, kind: ProviderKind, config: serde_json::Value) -> Self {
        TestSource {
            name,
            kind,
            config,
            private_key: None,
            fields_in_headers: false,
        }
    }

    /// The parsed config.
    ///
    /// # Panics
    /// If the JSON above is not a valid provider config (a bug in this file).
    pub fn provider_config(&self) -> ProviderConfig {
        serde_json::from_value(self.config.clone()).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The adapter.
    ///
    /// # Panics
    /// If the config does not build (a bug in this file).
    pub fn build(&self) -> Box<dyn Provider> {
        self.provider_config()
            .build()
            .unwrap_or_else(|e| panic!("{}: {e:?}", self.name))
    }

    /// Sample options at `now` with this source's signing key.
    pub fn options(&self, now: SystemTime) -> SampleOptions {
        let mut o = SampleOptions::new(now);
        o.private_key = self.private_key.map(str::to_owned);
        o
    }

    /// A request this source accepts, signed at `now` with the given id.
    ///
    /// # Panics
    /// If the provider cannot sign its own default sample (a bug).
    pub fn sample(&self, now: SystemTime, id: &str) -> SampleRequest {
        let mut o = self.options(now);
        o.id = Some(id.to_owned());
        self.provider_config()
            .sample(&o)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// The test sources of one provider: one per mode its adapter has.
pub fn sources_of(kind: ProviderKind) -> Vec<TestSource> {
    use ProviderKind as K;
    match kind {
        K::Github => vec![TestSource {
            fields_in_headers: true,
            ..TestSource::new(
                "github",
                kind,
                json!({"provider": "github", "secrets": ["fuzz-secret"]}),
            )
        }],
        K::Alipay => vec![TestSource {
            private_key: Some(ALIPAY_KEY),
            ..TestSource::new(
                "alipay",
                kind,
                json!({"provider": "alipay", "app_id": "2021000000000001",
                       "alipay_public_keys": [ALIPAY_CERT]}),
            )
        }],
        K::Wechatpay => vec![
            TestSource {
                private_key: Some(WECHATPAY_KEY),
                ..TestSource::new(
                    "wechatpay_v3",
                    kind,
                    json!({"provider": "wechatpay",
                           "apiv3_keys": ["0123456789abcdefghijABCDEFGHIJ01"],
                           "platform_keys": {WECHATPAY_SERIAL: WECHATPAY_CERT}}),
                )
            },
            TestSource::new(
                "wechatpay_v2",
                kind,
                json!({"provider": "wechatpay", "version": 2,
                       "api_keys": ["192006250b4c09247ec02edce69f6a2d"]}),
            ),
            TestSource::new(
                "wechatpay_v2_hmac",
                kind,
                json!({"provider": "wechatpay", "version": 2, "sign_type": "HMAC-SHA256",
                       "api_keys": ["192006250b4c09247ec02edce69f6a2d"]}),
            ),
        ],
        K::Dingtalk => vec![
            TestSource::new(
                "dingtalk_event",
                kind,
                json!({"provider": "dingtalk", "mode": "event", "token": "mryue",
                       "aes_key": "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
                       "owner_key": "ding6ccabc44d2c8d38b"}),
            ),
            TestSource::new(
                "dingtalk_robot",
                kind,
                json!({"provider": "dingtalk", "mode": "robot", "app_secrets": ["testAppSecret"]}),
            ),
        ],
        K::Feishu => vec![TestSource::new(
            "feishu",
            kind,
            json!({"provider": "feishu", "verification_token": "xxxxxx",
                   "encrypt_key": "test key"}),
        )],
        K::Standard => vec![TestSource {
            fields_in_headers: true,
            ..TestSource::new(
                "standard",
                kind,
                json!({"provider": "standard",
                       "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
            )
        }],
        K::Hmac => vec![
            TestSource::new(
                "hmac",
                kind,
                json!({"provider": "hmac", "secrets": ["fuzz-secret"],
                       "signature_header": "X-Signature", "prefix": "sha256=",
                       "signed_payload": "{timestamp}.{body}", "timestamp_header": "X-Timestamp",
                       "id_pointer": "/id", "type_pointer": "/type"}),
            ),
            TestSource {
                fields_in_headers: true,
                ..TestSource::new(
                    "hmac_base64",
                    kind,
                    json!({"provider": "hmac", "secrets": ["fuzz-secret"],
                           "signature_header": "X-Shopify-Hmac-Sha256", "encoding": "base64",
                           "id_header": "X-Shopify-Webhook-Id", "type_header": "X-Shopify-Topic"}),
                )
            },
            // A preset: Paddle's `ts=…;h1=…` list, `{ts}:{body}` signed, ids in the body.
            TestSource::new(
                "hmac_paddle",
                kind,
                json!({"provider": "hmac", "preset": "paddle", "secrets": ["fuzz-secret"]}),
            ),
        ],
        K::Token => vec![
            TestSource::new(
                "token",
                kind,
                json!({"provider": "token", "tokens": ["fuzz-token"], "header": "X-Token",
                       "id_pointer": "/id", "type_pointer": "/status"}),
            ),
            TestSource::new(
                "token_query",
                kind,
                json!({"provider": "token", "tokens": ["fuzz-token"], "query": "token"}),
            ),
            TestSource::new(
                "token_basic",
                kind,
                json!({"provider": "token", "tokens": ["fuzz-token"], "basic": true}),
            ),
        ],
        K::Gitlab => vec![TestSource {
            fields_in_headers: true,
            ..TestSource::new(
                "gitlab",
                kind,
                json!({"provider": "gitlab", "tokens": ["fuzz-token"]}),
            )
        }],
        // One source: password and signature mode are two ways of sending one config (the
        // sample signs; the adapter's tests cover the password).
        K::Gitee => vec![TestSource {
            fields_in_headers: true,
            ..TestSource::new(
                "gitee",
                kind,
                json!({"provider": "gitee", "tokens": ["fuzz-secret"]}),
            )
        }],
        K::Wecom => vec![TestSource::new(
            "wecom",
            kind,
            json!({"provider": "wecom", "token": "QDG6eK",
                   "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
                   "corp_id": "wx5823bf96d3bd56c7"}),
        )],
    }
}

/// Every test source of every provider.
pub fn sources() -> Vec<TestSource> {
    ProviderKind::ALL.into_iter().flat_map(sources_of).collect()
}

/// The test source called `name`.
///
/// # Panics
/// If there is none.
pub fn source(name: &str) -> TestSource {
    sources()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no test source {name}"))
}

/// The crypto primitives the integration tests check replies with and the benches measure
/// adapters against (the crate's own `crypto` module stays private).
pub mod crypto {
    pub use crate::crypto::{
        aes_cbc_decrypt, aes_cbc_encrypt, aes_gcm_decrypt, b64, b64_encode, b64_lenient, RsaDigest,
        RsaPublicKey, RsaSigner,
    };
}

/// Form encoding as the providers' adapters read it.
pub mod form {
    pub use crate::form::{encode, pairs};
}

/// Ids and times as the adapters compute them, for the integration tests' expectations.
pub use crate::shared::{rfc3339_millis, sha256_key, unix_millis};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_builds_and_admits_its_own_sample() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let all = sources();
        for s in &all {
            assert_eq!(
                all.iter().filter(|o| o.name == s.name).count(),
                1,
                "{}",
                s.name
            );
            assert_eq!(s.provider_config().kind(), s.kind, "{}", s.name);
            let r = s.sample(now, "evttestkit1");
            let got = crate::admit(
                s.build().as_ref(),
                &crate::RawRequest {
                    headers: &r.headers,
                    query: &r.query,
                    body: &r.body,
                },
                now,
            );
            assert!(
                matches!(got, Ok(crate::Admission::Event { .. })),
                "{}: {got:?}",
                s.name
            );
        }
        for kind in ProviderKind::ALL {
            assert!(!sources_of(kind).is_empty(), "{kind:?} has no test source");
        }
    }
}
