//! Every provider end to end through the broker, requests built by `hookgate sign` (issues #3, #4, #5).
//!
//! The path an operator tries first: a config file with every provider (PEM keys given as
//! `file:` paths, one raw secret as a relative `file:` path), `hookgate sign -c FILE --source
//! NAME --format json` run as a real process, and exactly the request it prints sent to a
//! running gateway. Each test then checks the provider's exact acknowledgement, the message on
//! a fresh queue of the real RabbitMQ (routing key, envelope, the *decrypted* payload in
//! `data`, no secret anywhere), and that a resend is acknowledged the same way and not
//! published again. Refusals are checked for their provider-shaped bodies, and a valid event
//! sent after them must be the first message to arrive (so nothing refused was published).

mod chat;
mod cli;
mod generic;
mod payments;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use hookgate::config::Config;
use providers::sign::SampleOptions;
use providers::testkit::{crypto, form};
use providers::{dingtalk, feishu, github};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::harness::{amqp_url, unique, Consumer, Gateway, Message};

const PROVIDER_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/tests/fixtures");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

const GH_SECRET: &str = "gh-e2e-0f3c9a71d2";
const GH_EXPLICIT: &str = "gh-e2e-explicit-7c1d";
const ALIPAY_APP_ID: &str = "2021000000000001";
/// Written to `apiv3.key` beside the config and referenced as `file:apiv3.key`.
const APIV3_KEY: &str = "P5E2aebXoXQcaS8ENq354484qSBJUL5N";
const WX_MCH_ID: &str = "1230000109";
const WX_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const WX_PUB_KEY_ID: &str = "PUB_KEY_ID_0114232806862025052000451600000001";
const V2_MCH_ID: &str = "10000100";
const V2_MD5_KEY: &str = "aMM087KeKVUsVplRNFb9CEXXQf7d1caL";
const V2_HMAC_KEY: &str = "HBWbvvmb3xtAIfxwPWqeWdtHILx9geJD";
const V2_WRONG_KEY: &str = "tV3m15rmQ6AATn0ViIAHP1vbXTGs7Uji";
const DT_TOKEN: &str = "e2e-dingtalk-token-9d2c";
const DT_AES_KEY: &str = "Fy75IpwKCSIHXcqlnCWsrSsm8XikNTig2TaJIWozYdx";
/// An appKey: not a secret (DingTalk puts corp ids in events), so not in `SECRETS`.
const DT_OWNER: &str = "dingowner-e2e-3f1a";
const ROBOT_SECRET: &str = "e2e-robot-app-secret-4b7e";
const FS_TOKEN: &str = "e2e-feishu-token-a8b1";
const FS_ENCRYPT_KEY: &str = "e2e-feishu-encrypt-key-6c0d";
const FS_PLAIN_TOKEN: &str = "e2e-feishu-plain-token-17f2";
const WHSEC: &str = "whsec_meHq+YEEsLU13XWuzCHt3qDYN6d8c9tKwBaCP2EdjDM=";
const STRIPE_SECRET: &str = "whsec_stripe_e2e_2b9e41";

/// Every configured secret: none may appear in a published message.
const SECRETS: &[&str] = &[
    GH_SECRET,
    GH_EXPLICIT,
    APIV3_KEY,
    V2_MD5_KEY,
    V2_HMAC_KEY,
    DT_TOKEN,
    DT_AES_KEY,
    ROBOT_SECRET,
    FS_TOKEN,
    FS_ENCRYPT_KEY,
    FS_PLAIN_TOKEN,
    WHSEC,
    // The part after the prefix too: a decoded or re-encoded secret is still the secret.
    "meHq+YEEsLU13XWuzCHt3qDYN6d8c9tKwBaCP2EdjDM",
    STRIPE_SECRET,
];

/// The PEM files the config names; a fragment of each must not leak into a message either.
const KEY_FILES: &[&str] = &[
    "alipay/alipay-notify-sign-public-key-v2.pem",
    "alipay/alipay_cert.pem",
    "wechatpay/platform_cert.pem",
    "wechatpay/pubkey.pem",
];

fn provider_fixture(rel: &str) -> String {
    format!("{PROVIDER_FIXTURES}/{rel}")
}

/// Every provider and mode, one source each.
fn config_text(exchange: &str, store: &Path) -> String {
    let store = store.display();
    let amqp = amqp_url();
    let pfx = PROVIDER_FIXTURES;
    let tfx = FIXTURES;
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
request_timeout_secs = 5

[store]
path = "{store}"

[amqp]
url = "{amqp}"
exchange = "{exchange}"
reconnect_max_secs = 1

[[sources]]
name = "gh"
provider = "github"
secrets = ["{GH_SECRET}", "{GH_EXPLICIT}"]

# Rotation: an old Alipay key first (PEM), the current one second (the console's bare base64).
[[sources]]
name = "alipay"
provider = "alipay"
app_id = "{ALIPAY_APP_ID}"
alipay_public_keys = ["file:{pfx}/alipay/alipay-notify-sign-public-key-v2.pem", "file:{tfx}/alipay_public_key.b64"]

[[sources]]
name = "alipay-cert"
provider = "alipay"
app_id = "{ALIPAY_APP_ID}"
alipay_cert = "file:{pfx}/alipay/alipay_cert.pem"

[[sources]]
name = "wxpay"
provider = "wechatpay"
mch_id = "{WX_MCH_ID}"
apiv3_keys = ["file:apiv3.key"]
platform_keys = {{ "{WX_SERIAL}" = "file:{pfx}/wechatpay/platform_cert.pem", "{WX_PUB_KEY_ID}" = "file:{pfx}/wechatpay/pubkey.pem" }}

[[sources]]
name = "wxpay-v2-md5"
provider = "wechatpay"
version = 2
mch_id = "{V2_MCH_ID}"
api_keys = ["{V2_MD5_KEY}"]
sign_type = "MD5"

[[sources]]
name = "wxpay-v2-hmac"
provider = "wechatpay"
version = 2
api_keys = ["{V2_HMAC_KEY}"]
sign_type = "HMAC-SHA256"

[[sources]]
name = "dingtalk"
provider = "dingtalk"
mode = "event"
token = "{DT_TOKEN}"
aes_key = "{DT_AES_KEY}"
owner_key = "{DT_OWNER}"

[[sources]]
name = "dingbot"
provider = "dingtalk"
mode = "robot"
app_secrets = ["{ROBOT_SECRET}"]

[[sources]]
name = "feishu"
provider = "feishu"
verification_token = "{FS_TOKEN}"
encrypt_key = "{FS_ENCRYPT_KEY}"

[[sources]]
name = "feishu-plain"
provider = "feishu"
verification_token = "{FS_PLAIN_TOKEN}"

[[sources]]
name = "svix"
provider = "standard"
secrets = ["{WHSEC}"]

# Stripe, as the README writes it.
[[sources]]
name = "stripe"
provider = "hmac"
secrets = ["{STRIPE_SECRET}"]
signature_header = "Stripe-Signature"
signature_param = "v1"
timestamp_param = "t"
signed_payload = "{{timestamp}}.{{body}}"
tolerance_secs = 300
id_pointer = "/id"
type_pointer = "/type"
"#
    )
}

/// The config file in a temp dir, a gateway loaded from that same file, and a consumer on a
/// fresh queue bound to the gateway's own exchange.
struct Fixture {
    dir: TempDir,
    config_path: PathBuf,
    gw: Gateway,
    consumer: Consumer,
}

impl Fixture {
    async fn start() -> Fixture {
        let exchange = unique("it-e2e");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookgate.toml");
        let store = dir.path().join("store");
        std::fs::write(&config_path, config_text(&exchange, &store)).unwrap();
        // A raw secret file ends with a newline that is not part of the key.
        std::fs::write(dir.path().join("apiv3.key"), format!("{APIV3_KEY}\n")).unwrap();
        let consumer = Consumer::bind(&exchange, "#").await;
        let config = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        let gw = Gateway::start(config).await;
        gw.wait_broker(true).await;
        Fixture {
            dir,
            config_path,
            gw,
            consumer,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.gw.running.public_addr)
    }

    /// `hookgate sign -c FILE --source NAME --format json --url BASE EXTRA…`.
    fn sign(&self, source: &str, extra: &[&str]) -> Signed {
        let base = self.base();
        let config = self.config_path.to_str().unwrap();
        let mut args = vec![
            "sign", "-c", config, "--source", source, "--format", "json", "--url", &base,
        ];
        args.extend_from_slice(extra);
        Signed::from_output(&hookgate(&args))
    }

    /// A payload file for `--payload`.
    fn payload_file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    /// The source as the gateway loaded it, for requests `hookgate sign` cannot make (stale).
    fn source_provider(&self, name: &str) -> providers::ProviderConfig {
        let config = Config::load(&self.config_path).unwrap();
        config
            .sources
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.provider)
            .unwrap_or_else(|| panic!("no source {name}"))
    }

    async fn send(&self, r: &Signed) -> Reply {
        let mut req = self.gw.client.post(&r.url).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.expect("request sent");
        Reply {
            status: resp.status().as_u16(),
            content_type: resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn take_one(&self) -> Message {
        self.consumer
            .take(1, Duration::from_secs(10))
            .await
            .pop()
            .unwrap()
    }

    /// A resend (or retry) of an accepted event: nothing more may arrive.
    async fn assert_nothing_published(&self) {
        self.consumer.assert_empty(Duration::from_millis(300)).await;
    }
}

fn hookgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(args)
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .expect("the hookgate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One request as `hookgate sign --format json` printed it.
#[derive(Debug, Clone)]
struct Signed {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Signed {
    fn from_output(out: &Output) -> Signed {
        assert!(
            out.status.success(),
            "hookgate sign failed: {}",
            text(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("sign printed no JSON ({e}): {}", text(&out.stdout)));
        Signed {
            url: v["url"].as_str().unwrap().to_owned(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_owned(),
                        h[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            body: v["body"].as_str().unwrap().to_owned(),
        }
    }

    fn from_sample(url: &str, r: &providers::sign::SampleRequest) -> Signed {
        Signed {
            url: r.url(url),
            headers: r.headers.clone(),
            body: text(&r.body),
        }
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    fn set_header(&mut self, name: &str, value: &str) {
        let h = self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .unwrap();
        h.1 = value.to_owned();
    }

    fn query_param(&self, name: &str) -> String {
        let query = self.url.split_once('?').map_or("", |(_, q)| q);
        form::pairs(query.as_bytes())
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| text(&v))
            .unwrap_or_else(|| panic!("no {name} in {}", self.url))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", text(&self.body)))
    }

    fn assert_json(&self, status: u16, expected: &Value) {
        assert_eq!(self.status, status, "{}", text(&self.body));
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        assert_eq!(&self.json(), expected);
    }

    /// `202 {"id": …}`: GitHub, Standard Webhooks and HMAC sources.
    fn assert_accepted_id(&self, id: &str) {
        self.assert_json(202, &json!({ "id": id }));
        assert_eq!(text(&self.body), format!(r#"{{"id":"{id}"}}"#));
    }

    fn assert_alipay_success(&self) {
        assert_eq!(self.status, 200, "{}", text(&self.body));
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("text/plain")),
            "{:?}",
            self.content_type
        );
        assert_eq!(self.body, b"success");
    }

    fn assert_wechatpay_v3_success(&self) {
        assert_eq!(self.status, 204, "{}", text(&self.body));
        assert!(self.body.is_empty());
    }

    fn assert_wechatpay_v2(&self, status: u16, return_code: &str, return_msg: &str) {
        assert_eq!(self.status, status, "{}", text(&self.body));
        assert!(
            self.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/xml")),
            "{:?}",
            self.content_type
        );
        assert_eq!(
            text(&self.body),
            format!(
                "<xml><return_code><![CDATA[{return_code}]]></return_code>\
                 <return_msg><![CDATA[{return_msg}]]></return_msg></xml>"
            )
        );
    }

    /// DingTalk's encrypted `success`, checked and decrypted exactly as DingTalk does.
    fn assert_dingtalk_success(&self) {
        assert_eq!(self.status, 200, "{}", text(&self.body));
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        let keys: Vec<String> = self.json().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let plain = dingtalk::decrypt_reply(DT_TOKEN, DT_AES_KEY, DT_OWNER, &self.body)
            .unwrap_or_else(|e| panic!("DingTalk would refuse the reply: {e}"));
        assert_eq!(plain, "success");
    }
}

/// What one published message must say.
struct Expect<'a> {
    source: &'a str,
    provider: &'a str,
    id: &'a str,
    kind: &'a str,
    providerevent: &'a str,
    subject: Option<&'a str>,
    data: &'a Value,
}

fn assert_message(m: &Message, e: &Expect<'_>) {
    let env = &m.body;
    assert_eq!(m.routing_key, format!("{}.{}", e.source, e.kind), "{env}");
    assert_eq!(env["specversion"], "1.0");
    assert_eq!(env["id"], e.id);
    assert_eq!(env["source"], format!("/hookgate/{}", e.source));
    assert_eq!(env["type"], e.kind);
    assert_eq!(env["provider"], e.provider);
    assert_eq!(env["providerevent"], e.providerevent);
    assert_eq!(env["datacontenttype"], "application/json");
    match e.subject {
        Some(s) => assert_eq!(env["subject"], s),
        None => assert!(env.get("subject").is_none(), "{env}"),
    }
    assert_eq!(&env["data"], e.data, "data of {}", e.source);
    for t in ["time", "receivedat"] {
        let v = env[t]
            .as_str()
            .unwrap_or_else(|| panic!("{t} missing: {env}"));
        assert!(chrono::DateTime::parse_from_rfc3339(v).is_ok(), "{t}: {v}");
    }

    let p = &m.properties;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some(e.id));
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some(e.kind));
    let headers = p.headers().as_ref().expect("headers set").inner();
    let header = |k: &str| match headers.get(k) {
        Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("header {k}: {other:?}"),
    };
    assert_eq!(header("source"), e.source);
    assert_eq!(header("provider"), e.provider);

    assert_no_secret(env);
}

fn assert_no_secret(env: &Value) {
    let text = env.to_string();
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "a secret leaked into the message: {text}"
        );
    }
    assert!(!text.contains("-----BEGIN"), "{text}");
    for f in KEY_FILES {
        let pem = std::fs::read_to_string(provider_fixture(f)).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // Past the SPKI header every RSA-2048 key shares.
        let fragment = &body[64..112];
        assert!(!text.contains(fragment), "{f} leaked into the message");
    }
}

/// `hex(SHA-256(bytes))`: Feishu's signature over empty timestamp, nonce and key is exactly
/// that, which spares this crate a hash dependency of its own.
fn sha256_hex(bytes: &[u8]) -> String {
    feishu::signature("", "", "", bytes)
}
