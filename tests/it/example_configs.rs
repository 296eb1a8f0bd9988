//! Every `examples/config/<provider>.toml` loads with the real config loader (issue 12), with
//! the variables and key files its comments ask for, and configures that provider only.

use std::collections::HashMap;
use std::path::Path;

use hookgate::config::Config;
use providers::testkit::{self, crypto::RsaSigner};
use providers::ProviderKind;

/// What an operator would put in the environment: test values of the right shape.
fn vars() -> HashMap<String, String> {
    let alipay_public_key = RsaSigner::parse_pem(testkit::ALIPAY_KEY)
        .expect("fixture key")
        .public_spki_b64();
    [
        ("GITHUB_WEBHOOK_SECRET", "gh-example-secret".to_owned()),
        ("ALIPAY_APP_ID", "2021000000000001".to_owned()),
        ("ALIPAY_PUBLIC_KEY", alipay_public_key),
        (
            "WECHATPAY_APIV3_KEY",
            "0123456789abcdefghijABCDEFGHIJ01".to_owned(),
        ),
        (
            "WECHATPAY_API_KEY",
            "192006250b4c09247ec02edce69f6a2d".to_owned(),
        ),
        ("DINGTALK_TOKEN", "example-token".to_owned()),
        (
            "DINGTALK_AES_KEY",
            "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7".to_owned(),
        ),
        ("DINGTALK_APP_KEY", "dingexampleappkey".to_owned()),
        ("DINGTALK_APP_SECRET", "example-app-secret".to_owned()),
        ("FEISHU_VERIFICATION_TOKEN", "example-token".to_owned()),
        ("FEISHU_ENCRYPT_KEY", "example-encrypt-key".to_owned()),
        (
            "SVIX_SIGNING_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        ),
        ("STRIPE_WEBHOOK_SECRET", "whsec_example".to_owned()),
        ("SHOPIFY_CLIENT_SECRET", "shpss_example".to_owned()),
        ("SLACK_SIGNING_SECRET", "example-signing-secret".to_owned()),
        ("ALERTMANAGER_TOKEN", "example-alert-token".to_owned()),
        ("GITLAB_WEBHOOK_TOKEN", "example-gitlab-token".to_owned()),
        ("GITEE_WEBHOOK_SECRET", "example-gitee-secret".to_owned()),
        ("WECOM_TOKEN", "QDG6eK".to_owned()),
        (
            "WECOM_AES_KEY",
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let keys = tempfile::tempdir().unwrap();
    // The `file:` paths of the examples, beside the config.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("providers/tests/fixtures/wechatpay/pubkey.pem"),
        keys.path().join("wechatpay_public_key.pem"),
    )
    .unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let id = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::parse(&text, &vars(), keys.path())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!config.sources.is_empty(), "{id}: no source");
        for s in &config.sources {
            assert_eq!(s.provider.kind().as_str(), id, "{id}: source {}", s.name);
        }
        seen.push(id);
    }
    seen.sort();
    let mut ids: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
    ids.sort();
    assert_eq!(seen, ids, "one example config per provider");
}
