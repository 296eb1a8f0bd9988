//! The registry: every provider id ([`ProviderKind`]), the `provider = "…"` part of a source's
//! config ([`ProviderConfig`]), and the one `match` that builds an adapter from it.

use serde::Deserialize;

use crate::contract::{ConfigError, Provider};
use crate::{alipay, dingtalk, feishu, github, hmac, sign, standard, wechatpay};

/// The provider ids of CONTRACT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Github,
    Alipay,
    Wechatpay,
    Dingtalk,
    Feishu,
    Standard,
    Hmac,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Github => "github",
            ProviderKind::Alipay => "alipay",
            ProviderKind::Wechatpay => "wechatpay",
            ProviderKind::Dingtalk => "dingtalk",
            ProviderKind::Feishu => "feishu",
            ProviderKind::Standard => "standard",
            ProviderKind::Hmac => "hmac",
        }
    }
}

/// The provider part of a `[[sources]]` table, selected by its `provider` key.
/// Every variant denies unknown keys, so a misspelt key stops start-up.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum ProviderConfig {
    Github(github::Config),
    Alipay(alipay::Config),
    Wechatpay(wechatpay::Config),
    Dingtalk(dingtalk::Config),
    Feishu(feishu::Config),
    Standard(standard::Config),
    Hmac(Box<hmac::Config>),
}

impl ProviderConfig {
    /// Builds the adapter; every problem is reported, not just the first. A source that would
    /// verify nothing (no secret, empty secret, no key) is an error: hookgate fails closed.
    pub fn build(&self) -> Result<Box<dyn Provider>, Vec<ConfigError>> {
        match self {
            ProviderConfig::Github(c) => github::Github::new(c).map(boxed),
            ProviderConfig::Alipay(c) => alipay::Alipay::new(c).map(boxed),
            ProviderConfig::Wechatpay(c) => wechatpay::WechatPay::new(c).map(boxed),
            ProviderConfig::Dingtalk(c) => dingtalk::DingTalk::new(c).map(boxed),
            ProviderConfig::Feishu(c) => feishu::Feishu::new(c).map(boxed),
            ProviderConfig::Standard(c) => standard::Standard::new(c).map(boxed),
            ProviderConfig::Hmac(c) => hmac::HmacSource::new(c).map(boxed),
        }
    }

    /// A correctly signed (and, where the provider encrypts, encrypted) sample request that
    /// this source accepts: `hookgate sign`, the load generator and the tests use it.
    pub fn sample(&self, o: &sign::SampleOptions) -> Result<sign::SampleRequest, String> {
        match self {
            ProviderConfig::Github(c) => github::sample(c, o),
            ProviderConfig::Alipay(c) => alipay::sample(c, o),
            ProviderConfig::Wechatpay(c) => wechatpay::sample(c, o),
            ProviderConfig::Dingtalk(c) => dingtalk::sample(c, o),
            ProviderConfig::Feishu(c) => feishu::sample(c, o),
            ProviderConfig::Standard(c) => standard::sample(c, o),
            ProviderConfig::Hmac(c) => hmac::sample(c, o),
        }
    }

    /// Human warnings for `hookgate check` (a source that works, but where something the
    /// operator may not expect is outside a signature). Not errors: `build` refuses those.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            ProviderConfig::Github(c) => c.warnings(),
            ProviderConfig::Dingtalk(c) => c.warnings(),
            ProviderConfig::Feishu(c) => c.warnings(),
            ProviderConfig::Hmac(c) => c.warnings(),
            ProviderConfig::Alipay(_)
            | ProviderConfig::Wechatpay(_)
            | ProviderConfig::Standard(_) => Vec::new(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Github(_) => ProviderKind::Github,
            ProviderConfig::Alipay(_) => ProviderKind::Alipay,
            ProviderConfig::Wechatpay(_) => ProviderKind::Wechatpay,
            ProviderConfig::Dingtalk(_) => ProviderKind::Dingtalk,
            ProviderConfig::Feishu(_) => ProviderKind::Feishu,
            ProviderConfig::Standard(_) => ProviderKind::Standard,
            ProviderConfig::Hmac(_) => ProviderKind::Hmac,
        }
    }
}

fn boxed<P: Provider + 'static>(p: P) -> Box<dyn Provider> {
    Box::new(p)
}
#[cfg(test)]
mod tests {
    use super::*;

    // Issue 11, class 3: `check` tells the operator what a config leaves outside a signature.
    #[test]
    fn class3_warnings_name_what_is_unsigned() {
        let cfg = |v: serde_json::Value| serde_json::from_value::<ProviderConfig>(v).unwrap();
        let shopify = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "X-Shopify-Hmac-Sha256", "encoding": "base64",
            "id_header": "X-Shopify-Webhook-Id", "type_header": "X-Shopify-Topic"}));
        let w = shopify.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w[0],
            "id comes from an unsigned header (`id_header = \"X-Shopify-Webhook-Id\"` is not in `signed_payload`): a replay with a fresh id bypasses dedup"
        );
        assert!(w[1].contains("type_header"));
        let signed_id = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "X-Sig", "signed_payload": "{id}.{body}", "id_header": "X-Id"}));
        assert!(signed_id.warnings().is_empty());
        let stripe = cfg(serde_json::json!({"provider": "hmac", "secrets": ["s"],
            "signature_header": "Stripe-Signature", "signature_param": "v1", "timestamp_param": "t",
            "signed_payload": "{timestamp}.{body}", "id_pointer": "/id", "type_pointer": "/type"}));
        assert!(stripe.warnings().is_empty());
        let github = cfg(serde_json::json!({"provider": "github", "secrets": ["s"]}));
        assert!(github.warnings().is_empty());
        let robot =
            cfg(serde_json::json!({"provider": "dingtalk", "mode": "robot", "app_secrets": ["s"]}));
        assert_eq!(robot.warnings().len(), 1);
        let plain = cfg(serde_json::json!({"provider": "feishu", "verification_token": "t"}));
        assert!(plain.warnings()[0].contains("no encrypt_key"));
        let encrypted = cfg(
            serde_json::json!({"provider": "feishu", "verification_token": "t", "encrypt_key": "k"}),
        );
        assert!(encrypted.warnings().is_empty());
        let cards = cfg(
            serde_json::json!({"provider": "feishu", "verification_token": "t",
            "encrypt_key": "k", "legacy_card_callbacks": true}),
        );
        assert!(cards.warnings()[0].contains("legacy_card_callbacks"));
    }
}
