//! `hookgate check` and `hookgate sign` on the every-provider config, as real processes.

use super::*;

#[test]
fn check_lists_every_source_of_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    let store = dir.path().join("store");
    std::fs::write(&path, config_text("hookgate-check", &store)).unwrap();
    std::fs::write(dir.path().join("apiv3.key"), APIV3_KEY).unwrap();
    let out = hookgate(&["check", "-c", path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    let config = Config::load(&path).unwrap();
    assert_eq!(config.sources.len(), 12);
    for s in &config.sources {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("{} not listed:\n{stdout}", s.name));
        assert!(line.contains(s.provider.kind().as_str()), "{line}");
        assert!(line.contains(&format!("/hooks/{}", s.name)), "{line}");
    }
    for secret in SECRETS {
        assert!(!stdout.contains(secret), "check printed a secret");
    }
}

#[test]
fn check_names_every_problem_of_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let store = dir.path().join("store").display().to_string();
    let cert = provider_fixture("wechatpay/platform_cert.pem");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[store]
path = "{store}"
[amqp]
exchange = "hookgate-check"

[[sources]]
name = "alipay"
provider = "alipay"
app_id = "{ALIPAY_APP_ID}"
alipay_public_keys = ["file:missing/alipay_public_key.pem"]

[[sources]]
name = "wxpay"
provider = "wechatpay"
apiv3_keys = ["too-short"]
platform_keys = {{ "0123ABCD" = "file:{cert}" }}

[[sources]]
name = "dingtalk"
provider = "dingtalk"
token = "t"
aes_key = "not-43-characters"
owner_key = "dingowner"

[[sources]]
name = "feishu"
provider = "feishu"
verification_token = "${{HOOKGATE_E2E_SURELY_UNSET}}"
colour = "blue"

[[sources]]
name = "stripe"
provider = "hmac"
secrets = []

[[sources]]
name = "Not A Path"
provider = "github"
secrets = ["s"]

[[sources]]
name = "mystery"
provider = "carrier-pigeon"
"#
        ),
    )
    .unwrap();
    let out = hookgate(&["check", "-c", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a bad config must fail: {stderr}");
    for needle in [
        "HOOKGATE_E2E_SURELY_UNSET",
        "(alipay).alipay_public_keys",
        "missing/alipay_public_key.pem",
        "(wxpay).apiv3_keys[0]",
        "(wxpay).platform_keys.0123ABCD",
        "(dingtalk).aes_key",
        "`colour`",
        "(stripe).secrets",
        "(stripe).signature_header",
        "(Not A Path).name",
        "carrier-pigeon",
    ] {
        assert!(stderr.contains(needle), "{needle} not named in:\n{stderr}");
    }
}

#[test]
fn sign_with_explicit_keys_prints_a_signed_curl_line() {
    let out = hookgate(&[
        "sign",
        "--provider",
        "github",
        "--with",
        r#"secrets=["x"]"#,
        "--id",
        "d-explicit-1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let curl = text(&out.stdout);
    assert!(
        curl.starts_with("curl -sS -i -X POST 'http://127.0.0.1:8080/hooks/github'"),
        "{curl}"
    );
    // The body is the last single-quoted argument; its signature must be HMAC(x, body).
    let body = curl
        .trim_end()
        .rsplit_once("--data-binary '")
        .map(|(_, b)| b.trim_end_matches('\''))
        .unwrap();
    let expected = github::signature_256("x", body.as_bytes());
    assert!(
        curl.contains(&format!("'X-Hub-Signature-256: {expected}'")),
        "{curl}"
    );
    assert!(curl.contains("'X-GitHub-Delivery: d-explicit-1'"), "{curl}");

    // Without keys there is nothing to sign with: a clear error, not a bogus request.
    let out = hookgate(&["sign", "--provider", "github"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("secrets"),
        "{}",
        text(&out.stderr)
    );
}
