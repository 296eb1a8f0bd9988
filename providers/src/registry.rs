//! The registry: every provider ([`ProviderKind`]) with the facts the rest of hookgate needs
//! about it, the `provider = "…"` part of a source's config ([`ProviderConfig`]), and the one
//! `match` that builds an adapter from it.
//!
//! Every `match` here is exhaustive (no `_` arm), as are the ones of `testkit` and of the flip
//! test: a new variant does not compile until each fact is given. docs/providers/README.md
//! lists what else a new provider brings (docs page, example config, fuzz target).

use serde::Deserialize;

use crate::contract::{ConfigError, Provider};
#[cfg(any(test, feature = "sign"))]
use crate::sign;
use crate::{
    alipay, dingtalk, feishu, gitee, github, gitlab, hmac, standard, token, wechatpay, wecom,
};

/// The providers hookgate terminates, by their config id (docs/providers/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Github,
    Alipay,
    Wechatpay,
    Dingtalk,
    Feishu,
    Standard,
    Hmac,
    Token,
    Gitlab,
    Gitee,
    Wecom,
}

/// The config keys of one provider that the loader treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigKeys {
    /// Values that are secrets (keys, tokens): never logged, read from `file:PATH` when
    /// written so.
    pub secret: &'static [&'static str],
    /// Other values that may be given as `file:PATH`: public keys, certificates, ids that
    /// belong to the key material.
    pub public: &'static [&'static str],
}

impl ProviderKind {
    /// Every provider, in the order of the docs. A test checks that each provider folder of
    /// this crate is listed.
    pub const ALL: [ProviderKind; 11] = [
        ProviderKind::Github,
        ProviderKind::Alipay,
        ProviderKind::Wechatpay,
        ProviderKind::Dingtalk,
        ProviderKind::Feishu,
        ProviderKind::Standard,
        ProviderKind::Hmac,
        ProviderKind::Token,
        ProviderKind::Gitlab,
        ProviderKind::Gitee,
        ProviderKind::Wecom,
    ];

    /// The `provider = "…"` id, also the CloudEvents type prefix and the AMQP `provider` header.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Github => "github",
            ProviderKind::Alipay => "alipay",
            ProviderKind::Wechatpay => "wechatpay",
            ProviderKind::Dingtalk => "dingtalk",
            ProviderKind::Feishu => "feishu",
            ProviderKind::Standard => "standard",
            ProviderKind::Hmac => "hmac",
            ProviderKind::Token => "token",
            ProviderKind::Gitlab => "gitlab",
            ProviderKind::Gitee => "gitee",
            ProviderKind::Wecom => "wecom",
        }
    }

    /// The kind of a `provider = "…"` id.
    pub fn from_id(id: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == id)
    }

    /// This provider's secret and key-material keys (each module says which are its own).
    pub fn config_keys(self) -> ConfigKeys {
        match self {
            ProviderKind::Github => github::KEYS,
            ProviderKind::Alipay => alipay::KEYS,
            ProviderKind::Wechatpay => wechatpay::KEYS,
            ProviderKind::Dingtalk => dingtalk::KEYS,
            ProviderKind::Feishu => feishu::KEYS,
            ProviderKind::Standard => standard::KEYS,
            ProviderKind::Hmac => hmac::KEYS,
            ProviderKind::Token => token::KEYS,
            ProviderKind::Gitlab => gitlab::KEYS,
            ProviderKind::Gitee => gitee::KEYS,
            ProviderKind::Wecom => wecom::KEYS,
        }
    }

    /// The keys whose `file:PATH` values the config loader replaces with the file's
    /// contents: the secret keys and the public key material.
    pub fn file_keys(self) -> impl Iterator<Item = &'static str> {
        let keys = self.config_keys();
        keys.secret.iter().chain(keys.public).copied()
    }

    /// Whether its events may carry a content key (`Event::content_key`): the providers that
    /// sign parsed parameters rather than the body's bytes (docs/security.md). `hookgate
    /// forget` reads the log for the key only for these.
    pub fn sets_content_key(self) -> bool {
        match self {
            ProviderKind::Alipay | ProviderKind::Wechatpay => true,
            ProviderKind::Github
            | ProviderKind::Dingtalk
            | ProviderKind::Feishu
            | ProviderKind::Standard
            | ProviderKind::Hmac
            | ProviderKind::Token
            | ProviderKind::Gitlab
            | ProviderKind::Gitee
            | ProviderKind::Wecom => false,
        }
    }

    /// The headers in which every sender of this provider puts its event id, whether or not
    /// they are signed: what the gateway may quote (bounded) in the log line of a refusal.
    /// Empty where the id is inside the (possibly encrypted) body, or configured per source.
    pub fn id_headers(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Github => &["x-github-delivery"],
            ProviderKind::Standard => &["webhook-id", "svix-id"],
            ProviderKind::Gitlab => &["idempotency-key", "x-gitlab-event-uuid"],
            ProviderKind::Alipay
            | ProviderKind::Wechatpay
            | ProviderKind::Dingtalk
            | ProviderKind::Feishu
            | ProviderKind::Hmac
            | ProviderKind::Token
            | ProviderKind::Gitee
            | ProviderKind::Wecom => &[],
        }
    }

    /// The body limit of a source of this provider that sets none: the server's default,
    /// raised where the provider is known to send more.
    pub fn default_max_body_bytes(self, server_default: usize) -> usize {
        match self {
            ProviderKind::Github => server_default.max(github::MAX_PAYLOAD_BYTES),
            ProviderKind::Alipay
            | ProviderKind::Wechatpay
            | ProviderKind::Dingtalk
            | ProviderKind::Feishu
            | ProviderKind::Standard
            | ProviderKind::Hmac
            | ProviderKind::Token
            | ProviderKind::Gitlab
            | ProviderKind::Gitee
            | ProviderKind::Wecom => server_default,
        }
    }
}

/// The keys of a `[[sources]]` table with `provider = provider` whose `file:PATH` values the
/// config loader reads (see [`ProviderKind::file_keys`]). For a missing or unknown provider,
/// the keys of every provider: the table is refused anyway, and a `file:` it names is still
/// checked, as before the registry knew each provider's keys.
pub fn file_keys(provider: Option<&str>) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = match provider.and_then(ProviderKind::from_id) {
        Some(kind) => kind.file_keys().collect(),
        None => ProviderKind::ALL
            .into_iter()
            .flat_map(ProviderKind::file_keys)
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(*k));
    keys
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
    Token(token::Config),
    Gitlab(gitlab::Config),
    Gitee(gitee::Config),
    Wecom(wecom::Config),
}

impl ProviderConfig {
    /// Provider `kind`'s keys (a source's table without `provider`) read from `de`. The
    /// tagged enum's own `Deserialize` buffers the table first, so a wrapper that follows the
    /// key path (`serde_path_to_error`) loses it there; through this it names the key.
    pub fn deserialize_as<'de, D: serde::Deserializer<'de>>(
        kind: ProviderKind,
        de: D,
    ) -> Result<Self, D::Error> {
        Ok(match kind {
            ProviderKind::Github => ProviderConfig::Github(Deserialize::deserialize(de)?),
            ProviderKind::Alipay => ProviderConfig::Alipay(Deserialize::deserialize(de)?),
            ProviderKind::Wechatpay => ProviderConfig::Wechatpay(Deserialize::deserialize(de)?),
            ProviderKind::Dingtalk => ProviderConfig::Dingtalk(Deserialize::deserialize(de)?),
            ProviderKind::Feishu => ProviderConfig::Feishu(Deserialize::deserialize(de)?),
            ProviderKind::Standard => ProviderConfig::Standard(Deserialize::deserialize(de)?),
            ProviderKind::Hmac => ProviderConfig::Hmac(Deserialize::deserialize(de)?),
            ProviderKind::Token => ProviderConfig::Token(Deserialize::deserialize(de)?),
            ProviderKind::Gitlab => ProviderConfig::Gitlab(Deserialize::deserialize(de)?),
            ProviderKind::Gitee => ProviderConfig::Gitee(Deserialize::deserialize(de)?),
            ProviderKind::Wecom => ProviderConfig::Wecom(Deserialize::deserialize(de)?),
        })
    }

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
            ProviderConfig::Token(c) => token::Token::new(c).map(boxed),
            ProviderConfig::Gitlab(c) => gitlab::Gitlab::new(c).map(boxed),
            ProviderConfig::Gitee(c) => gitee::Gitee::new(c).map(boxed),
            ProviderConfig::Wecom(c) => wecom::Wecom::new(c).map(boxed),
        }
    }

    /// A correctly signed (and, where the provider encrypts, encrypted) sample request that
    /// this source accepts: `hookgate sign`, the load generator and the tests use it.
    #[cfg(any(test, feature = "sign"))]
    pub fn sample(&self, o: &sign::SampleOptions) -> Result<sign::SampleRequest, String> {
        match self {
            ProviderConfig::Github(c) => github::sample(c, o),
            ProviderConfig::Alipay(c) => alipay::sample(c, o),
            ProviderConfig::Wechatpay(c) => wechatpay::sample(c, o),
            ProviderConfig::Dingtalk(c) => dingtalk::sample(c, o),
            ProviderConfig::Feishu(c) => feishu::sample(c, o),
            ProviderConfig::Standard(c) => standard::sample(c, o),
            ProviderConfig::Hmac(c) => hmac::sample(c, o),
            ProviderConfig::Token(c) => token::sample(c, o),
            ProviderConfig::Gitlab(c) => gitlab::sample(c, o),
            ProviderConfig::Gitee(c) => gitee::sample(c, o),
            ProviderConfig::Wecom(c) => wecom::sample(c, o),
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
            ProviderConfig::Token(c) => c.warnings(),
            ProviderConfig::Gitlab(c) => c.warnings(),
            ProviderConfig::Gitee(c) => c.warnings(),
            ProviderConfig::Alipay(_)
            | ProviderConfig::Wechatpay(_)
            | ProviderConfig::Standard(_)
            | ProviderConfig::Wecom(_) => Vec::new(),
        }
    }

    /// Which provider this is.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Github(_) => ProviderKind::Github,
            ProviderConfig::Alipay(_) => ProviderKind::Alipay,
            ProviderConfig::Wechatpay(_) => ProviderKind::Wechatpay,
            ProviderConfig::Dingtalk(_) => ProviderKind::Dingtalk,
            ProviderConfig::Feishu(_) => ProviderKind::Feishu,
            ProviderConfig::Standard(_) => ProviderKind::Standard,
            ProviderConfig::Hmac(_) => ProviderKind::Hmac,
            ProviderConfig::Token(_) => ProviderKind::Token,
            ProviderConfig::Gitlab(_) => ProviderKind::Gitlab,
            ProviderConfig::Gitee(_) => ProviderKind::Gitee,
            ProviderConfig::Wecom(_) => ProviderKind::Wecom,
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
