//! WeChat Pay (微信支付) notifications. API v3 (the default): an RSA-SHA256 signature over
//! `timestamp\nnonce\nbody\n` by the platform key that `Wechatpay-Serial` names, a 5-minute
//! window, then the `resource` decrypted with AEAD_AES_256_GCM under the APIv3 key; answered
//! 204. Legacy API v2 (`version = 2`): an XML body signed with MD5 or HMAC-SHA256 over its
//! sorted parameters and the API key; answered with a `return_code` SUCCESS XML.
//! Protocol and vectors: docs/providers/wechatpay.md.

//!
//! `config.rs` checks a source's keys; `v3.rs` and `v2.rs` verify one API each; `sample.rs`
//! signs (and encrypts) as WeChat Pay does.

mod config;
#[cfg(any(test, feature = "sign"))]
mod sample;
#[cfg(test)]
mod tests;
mod v2;
mod v3;

use std::time::SystemTime;

use crate::crypto::RsaPublicKey;
use crate::registry::ConfigKeys;
use crate::{Admission, ProviderKind, RawRequest, Rejection, Reply, Secret};

pub use config::{Config, PlatformKeys, SignType};
#[cfg(any(test, feature = "sign"))]
pub(crate) use sample::sample;

/// The keys the config loader reads from `file:PATH` (the registry's `ConfigKeys`).
/// Platform certificates and public keys are not secret, but long: they may come from files.
pub(crate) const KEYS: ConfigKeys = ConfigKeys {
    secret: &["apiv3_keys", "api_keys"],
    public: &["platform_keys"],
};

/// WeChat Pay takes a failure `message` of 1 to 64 characters.
const MAX_MESSAGE_CHARS: usize = 64;

pub(crate) struct WechatPay {
    mch_id: Option<String>,
    api: Api,
}

enum Api {
    V3(V3),
    V2(V2),
}

struct V3 {
    apiv3_keys: Vec<Secret>,
    /// Normalized serial → key.
    platform_keys: Vec<(String, RsaPublicKey)>,
}

struct V2 {
    api_keys: Vec<Secret>,
    sign_type: Option<SignType>,
}

impl crate::Provider for WechatPay {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Wechatpay
    }

    fn admit(&self, req: &RawRequest<'_>, now: SystemTime) -> Result<Admission, Rejection> {
        match &self.api {
            Api::V3(v3) => self.admit_v3(v3, req, now),
            Api::V2(v2) => self.admit_v2(v2, req),
        }
    }

    /// v3: `{"code":"FAIL","message":…}` with the status; v2: a `return_code` FAIL XML.
    fn failure(&self, status: u16, message: &str) -> Reply {
        let message: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
        let message = if message.is_empty() {
            "FAIL".into()
        } else {
            message
        };
        match self.api {
            Api::V3(_) => Reply::json(
                status,
                &serde_json::json!({ "code": "FAIL", "message": message }),
            ),
            Api::V2(_) => Reply {
                status,
                content_type: Some(Reply::XML),
                body: v2::xml(&[("return_code", "FAIL"), ("return_msg", &message)]).into_bytes(),
            },
        }
    }
}
