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

// ---------------------------------------------------------------------------- payments

#[actix_web::test]
async fn payments_alipay_and_wechatpay_from_hookgate_sign() {
    let f = Fixture::start().await;
    let alipay_key = provider_fixture("alipay/alipay_private_key.pem");

    // Alipay, public-key mode (the signing key is the second configured: rotation) and
    // certificate mode.
    for (source, notify_id) in [
        ("alipay", "2025010100222000000000000001"),
        ("alipay-cert", "2025010100222000000000000002"),
    ] {
        let req = f.sign(source, &["--private-key", &alipay_key, "--id", notify_id]);
        f.send(&req).await.assert_alipay_success();

        let params: serde_json::Map<String, Value> = form::pairs(req.body.as_bytes())
            .filter(|(k, _)| k.as_slice() != b"sign")
            .map(|(k, v)| (text(&k), Value::String(text(&v))))
            .collect();
        assert!(params.contains_key("sign_type"), "only `sign` is dropped");
        let data = Value::Object(params.clone());
        let m = f.take_one().await;
        assert_message(
            &m,
            &Expect {
                source,
                provider: "alipay",
                id: notify_id,
                kind: "alipay.trade.success",
                providerevent: "TRADE_SUCCESS",
                subject: params["out_trade_no"].as_str(),
                data: &data,
            },
        );
        assert_eq!(m.body["data"]["subject"], "hookgate 测试订单");
        let paid = params["gmt_payment"].as_str().unwrap().replace(' ', "T");
        assert_eq!(m.body["time"], format!("{paid}+08:00"));

        f.send(&req).await.assert_alipay_success();
        f.assert_nothing_published().await;
    }

    // WeChat Pay v3, signed by the platform certificate, with a plaintext of our own.
    let plaintext = json!({
        "mchid": WX_MCH_ID,
        "appid": "wxd678efh567hg6787",
        "out_trade_no": "e2e-order-0001",
        "transaction_id": "4200000000000000000000000001",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2025-01-01T10:00:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
    });
    let payload = f.payload_file("resource.json", plaintext.to_string().as_bytes());
    let platform_key = provider_fixture("wechatpay/platform_private_key.pem");
    let id = "e2e7a8b1-0000-5000-8000-000000000001";
    let req = f.sign(
        "wxpay",
        &[
            "--private-key",
            &platform_key,
            "--key-id",
            WX_SERIAL,
            "--id",
            id,
            "--payload",
            &payload,
        ],
    );
    assert_eq!(req.header("Wechatpay-Serial"), WX_SERIAL);
    f.send(&req).await.assert_wechatpay_v3_success();
    let body = req.json();
    assert_eq!(
        decrypt_resource(&body["resource"]),
        plaintext,
        "the request carries the plaintext encrypted"
    );
    let mut data = body.clone();
    data["resource"] = plaintext.clone();
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "wxpay",
            provider: "wechatpay",
            id,
            kind: "wechatpay.transaction.success",
            providerevent: "TRANSACTION.SUCCESS",
            subject: Some("e2e-order-0001"),
            data: &data,
        },
    );
    assert_eq!(m.body["time"], body["create_time"]);
    let ciphertext = body["resource"]["ciphertext"].as_str().unwrap();
    assert!(
        !m.body.to_string().contains(ciphertext),
        "ciphertext is not delivered"
    );
    f.send(&req).await.assert_wechatpay_v3_success();
    f.assert_nothing_published().await;

    // WeChat Pay v3, signed by a WeChat Pay public key (PUB_KEY_ID_…), default refund plaintext.
    let pubkey_key = provider_fixture("wechatpay/pubkey_private_key.pem");
    let id = "e2e7a8b1-0000-5000-8000-000000000002";
    let req = f.sign(
        "wxpay",
        &[
            "--private-key",
            &pubkey_key,
            "--key-id",
            WX_PUB_KEY_ID,
            "--id",
            id,
            "--event",
            "REFUND.SUCCESS",
        ],
    );
    f.send(&req).await.assert_wechatpay_v3_success();
    let body = req.json();
    let plain = decrypt_resource(&body["resource"]);
    assert!(plain["out_refund_no"].as_str().is_some(), "{plain}");
    let mut data = body.clone();
    data["resource"] = plain.clone();
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "wxpay",
            provider: "wechatpay",
            id,
            kind: "wechatpay.refund.success",
            providerevent: "REFUND.SUCCESS",
            subject: plain["out_trade_no"].as_str(),
            data: &data,
        },
    );
    f.send(&req).await.assert_wechatpay_v3_success();
    f.assert_nothing_published().await;

    // WeChat Pay v2, MD5 and HMAC-SHA256.
    for (source, sign_type, transaction_id) in [
        ("wxpay-v2-md5", None, "4200000000000000000000000101"),
        (
            "wxpay-v2-hmac",
            Some("HMAC-SHA256"),
            "4200000000000000000000000102",
        ),
    ] {
        let req = f.sign(source, &["--id", transaction_id]);
        f.send(&req).await.assert_wechatpay_v2(200, "SUCCESS", "OK");
        let params: serde_json::Map<String, Value> = cdata_pairs(&req.body)
            .into_iter()
            .filter(|(k, _)| k != "sign")
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        assert_eq!(params["transaction_id"], transaction_id);
        assert_eq!(
            params.get("sign_type").and_then(Value::as_str),
            sign_type,
            "{}",
            req.body
        );
        let data = Value::Object(params.clone());
        let m = f.take_one().await;
        assert_message(
            &m,
            &Expect {
                source,
                provider: "wechatpay",
                id: transaction_id,
                kind: "wechatpay.transaction.success",
                providerevent: "SUCCESS",
                subject: params["out_trade_no"].as_str(),
                data: &data,
            },
        );
        f.send(&req).await.assert_wechatpay_v2(200, "SUCCESS", "OK");
        f.assert_nothing_published().await;
    }
    f.gw.stop().await;
}

/// The `resource` plaintext, decrypted with the APIv3 key as a merchant would.
fn decrypt_resource(resource: &Value) -> Value {
    let s = |k: &str| resource[k].as_str().unwrap();
    let ct = crypto::b64(s("ciphertext")).unwrap();
    let plain = crypto::aes_gcm_decrypt(
        APIV3_KEY.as_bytes(),
        s("nonce").as_bytes(),
        s("associated_data").as_bytes(),
        &ct,
    )
    .expect("the resource decrypts with the APIv3 key");
    serde_json::from_slice(&plain).unwrap()
}

/// `(name, value)` of a flat `<xml><k><![CDATA[v]]></k>…</xml>` document, as the samples are.
fn cdata_pairs(xml: &str) -> Vec<(String, String)> {
    let inner = xml
        .strip_prefix("<xml>")
        .and_then(|x| x.strip_suffix("</xml>"))
        .unwrap_or_else(|| panic!("not a flat xml document: {xml}"));
    let mut rest = inner;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest[1..].split_once("><![CDATA[").unwrap();
        let close = format!("]]></{name}>");
        let (value, after) = after.split_once(&close).unwrap();
        out.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
    out
}

#[actix_web::test]
async fn payment_refusals_are_provider_shaped_and_publish_nothing() {
    let f = Fixture::start().await;
    let alipay_key = provider_fixture("alipay/alipay_private_key.pem");
    let platform_key = provider_fixture("wechatpay/platform_private_key.pem");

    // Alipay: the amount changed after signing.
    let good = f.sign("alipay", &["--private-key", &alipay_key]);
    let mut tampered = good.clone();
    assert!(tampered.body.contains("&total_amount=88.88&"));
    tampered.body = tampered
        .body
        .replace("&total_amount=88.88&", "&total_amount=0.01&");
    let r = f.send(&tampered).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body, b"fail");

    // WeChat Pay v3: five minutes stale, five minutes early, and a SIGNTEST probe.
    let wx = f.source_provider("wxpay");
    let platform_pem = std::fs::read_to_string(&platform_key).unwrap();
    let url = format!("{}/hooks/wxpay", f.base());
    for (what, shift) in [("stale", -301i64), ("future", 301)] {
        let mut o = SampleOptions::new(shifted(shift));
        o.private_key = Some(platform_pem.clone());
        let r = f
            .send(&Signed::from_sample(&url, &wx.sample(&o).unwrap()))
            .await;
        r.assert_json(401, &json!({"code": "FAIL", "message": "unauthorized"}));
        assert_eq!(r.json()["code"], "FAIL", "{what}");
    }
    let mut probe = f.sign("wxpay", &["--private-key", &platform_key]);
    let sig = format!("WECHATPAY/SIGNTEST/{}", probe.header("Wechatpay-Signature"));
    probe.set_header("Wechatpay-Signature", &sig);
    f.send(&probe)
        .await
        .assert_json(401, &json!({"code": "FAIL", "message": "unauthorized"}));
    // Expected traffic, not an attack: counted apart from forged signatures.
    let metrics = f.gw.metrics().await;
    assert!(
        metrics.contains(r#"hookgate_requests_total{source="wxpay",outcome="probe"} 1"#),
        "{metrics}"
    );

    // WeChat Pay v2: signed with a key this source does not have (explicit keys, no config).
    let wrong = Signed::from_output(&hookgate(&[
        "sign",
        "--provider",
        "wechatpay",
        "--with",
        "version=2",
        "--with",
        &format!("api_keys=[\"{V2_WRONG_KEY}\"]"),
        "--with",
        &format!("mch_id=\"{V2_MCH_ID}\""),
        "--source",
        "wxpay-v2-md5",
        "--url",
        &f.base(),
        "--format",
        "json",
    ]));
    assert_eq!(wrong.url, format!("{}/hooks/wxpay-v2-md5", f.base()));
    f.send(&wrong)
        .await
        .assert_wechatpay_v2(401, "FAIL", "unauthorized");

    // Nothing refused was published: the first message is the valid one sent last.
    f.send(&good).await.assert_alipay_success();
    let m = f.take_one().await;
    assert_eq!(m.routing_key, "alipay.alipay.trade.success");
    assert_eq!(
        m.body["data"]["total_amount"], "88.88",
        "the genuine notification, not the tampered one"
    );
    f.assert_nothing_published().await;
    f.gw.stop().await;
}

fn shifted(secs: i64) -> SystemTime {
    let now = SystemTime::now();
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs < 0 {
        now - d
    } else {
        now + d
    }
}

// ---------------------------------------------------------------------------- chat platforms

#[actix_web::test]
async fn chat_dingtalk_and_feishu_from_hookgate_sign() {
    let f = Fixture::start().await;

    // DingTalk event mode. DingTalk sends no id: the id is the SHA-256 of the plaintext, and a
    // retry re-encrypts the same plaintext with a new random prefix and nonce.
    let event = br#"{"EventType":"user_add_org","TimeStamp":"1700000000000","CorpId":"dingcorp-e2e-51c2","UserId":["manager7675"]}"#;
    let payload = f.payload_file("dingtalk.json", event);
    let first = f.sign("dingtalk", &["--payload", &payload]);
    let retry = f.sign("dingtalk", &["--payload", &payload]);
    assert_ne!(first.json()["encrypt"], retry.json()["encrypt"]);
    assert_ne!(first.query_param("nonce"), retry.query_param("nonce"));
    for r in [&first, &retry] {
        assert_eq!(dingtalk_plaintext(r).as_bytes(), event, "same plaintext");
    }

    f.send(&first).await.assert_dingtalk_success();
    let id = format!("sha256:{}", sha256_hex(event));
    let data: Value = serde_json::from_slice(event).unwrap();
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "dingtalk",
            provider: "dingtalk",
            id: &id,
            kind: "dingtalk.user_add_org",
            providerevent: "user_add_org",
            subject: Some("dingcorp-e2e-51c2"),
            data: &data,
        },
    );
    assert_eq!(m.body["time"], "2023-11-14T22:13:20.000Z");
    assert!(!m
        .body
        .to_string()
        .contains(first.json()["encrypt"].as_str().unwrap()));
    f.send(&retry).await.assert_dingtalk_success();
    f.assert_nothing_published().await;

    // check_url: the encrypted success, nothing published.
    let check = f.sign("dingtalk", &["--event", "check_url"]);
    assert!(dingtalk_plaintext(&check).contains(r#""EventType":"check_url""#));
    f.send(&check).await.assert_dingtalk_success();
    f.assert_nothing_published().await;

    // DingTalk robot mode.
    let req = f.sign("dingbot", &["--id", "msgE2Eb7c1d", "--event", "text"]);
    f.send(&req).await.assert_json(200, &json!({}));
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "dingbot",
            provider: "dingtalk",
            id: "msgE2Eb7c1d",
            kind: "dingtalk.robot.text",
            providerevent: "text",
            subject: req.json()["conversationId"].as_str(),
            data: &req.json(),
        },
    );
    let created = req.json()["createAt"].as_i64().unwrap();
    assert_eq!(m.body["time"], rfc3339_millis(created));
    f.send(&req).await.assert_json(200, &json!({}));
    f.assert_nothing_published().await;

    // Feishu, encrypted and plain: data is the decrypted event without the Verification Token.
    for (source, token, event_id) in [
        ("feishu", FS_TOKEN, "e2e0feishu0encrypted000000000001"),
        (
            "feishu-plain",
            FS_PLAIN_TOKEN,
            "e2e0feishu0plain00000000000000001",
        ),
    ] {
        let req = f.sign(source, &["--id", event_id]);
        let plain = feishu_plaintext(source, &req);
        assert_eq!(
            plain["header"]["token"], token,
            "the request carries the token"
        );
        f.send(&req).await.assert_json(200, &json!({}));
        let mut data = plain.clone();
        data["header"].as_object_mut().unwrap().remove("token");
        let m = f.take_one().await;
        assert_message(
            &m,
            &Expect {
                source,
                provider: "feishu",
                id: event_id,
                kind: "feishu.im.message.receive_v1",
                providerevent: "im.message.receive_v1",
                subject: plain["event"]["message"]["chat_id"].as_str(),
                data: &data,
            },
        );
        let created: i64 = plain["header"]["create_time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(m.body["time"], rfc3339_millis(created));
        f.send(&req).await.assert_json(200, &json!({}));
        f.assert_nothing_published().await;
    }

    // A card action callback (schema 2.0, no retries) is an event too.
    let req = f.sign(
        "feishu",
        &[
            "--event",
            "card.action.trigger",
            "--id",
            "e2e0card0000000000000000000001",
        ],
    );
    f.send(&req).await.assert_json(200, &json!({}));
    let plain = feishu_plaintext("feishu", &req);
    let m = f.take_one().await;
    assert_eq!(m.routing_key, "feishu.feishu.card.action.trigger");
    assert_eq!(m.body["id"], "e2e0card0000000000000000000001");
    assert_eq!(m.body["subject"], plain["event"]["context"]["open_chat_id"]);
    assert_no_secret(&m.body);

    // url_verification, plain and encrypted: the challenge echoed, nothing published.
    for source in ["feishu-plain", "feishu"] {
        let req = f.sign(source, &["--event", "url_verification"]);
        let challenge = feishu_plaintext(source, &req)["challenge"].clone();
        assert!(challenge.as_str().is_some_and(|c| !c.is_empty()));
        f.send(&req)
            .await
            .assert_json(200, &json!({ "challenge": challenge }));
    }
    f.assert_nothing_published().await;
    f.gw.stop().await;
}

fn rfc3339_millis(ms: i64) -> String {
    providers::testkit::rfc3339_millis(ms).unwrap()
}

/// The plaintext of a DingTalk push, verified and decrypted with the source's keys. The push
/// is signed and encrypted exactly like a reply, so `decrypt_reply` opens it.
fn dingtalk_plaintext(r: &Signed) -> String {
    let as_reply = json!({
        "msg_signature": r.query_param("signature"),
        "timeStamp": r.query_param("timestamp"),
        "nonce": r.query_param("nonce"),
        "encrypt": r.json()["encrypt"],
    });
    dingtalk::decrypt_reply(
        DT_TOKEN,
        DT_AES_KEY,
        DT_OWNER,
        as_reply.to_string().as_bytes(),
    )
    .expect("the sample is signed and encrypted for this source")
}

/// The JSON Feishu means: the body itself, or its decrypted `encrypt`.
fn feishu_plaintext(source: &str, r: &Signed) -> Value {
    if source == "feishu-plain" {
        return r.json();
    }
    let plain = feishu::decrypt(FS_ENCRYPT_KEY, r.json()["encrypt"].as_str().unwrap())
        .expect("the sample decrypts with the encrypt_key");
    serde_json::from_slice(&plain).unwrap()
}

// ---------------------------------------------------------------------------- generic senders

#[actix_web::test]
async fn github_standard_and_hmac_from_hookgate_sign() {
    let f = Fixture::start().await;

    // GitHub, from the config.
    let delivery = "e2e00000-cc78-11e3-81ab-4c9367dc0958";
    let req = f.sign("gh", &["--id", delivery]);
    f.send(&req).await.assert_accepted_id(delivery);
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "gh",
            provider: "github",
            id: delivery,
            kind: "github.push",
            providerevent: "push",
            subject: Some("octo-org/hello-world"),
            data: &req.json(),
        },
    );
    f.send(&req).await.assert_accepted_id(delivery);
    f.assert_nothing_published().await;

    // GitHub with explicit keys, no config: the gateway accepts it by its second secret.
    let delivery = "e2e00000-cc78-11e3-81ab-4c9367dc0959";
    let explicit = Signed::from_output(&hookgate(&[
        "sign",
        "--provider",
        "github",
        "--with",
        &format!("secrets=[\"{GH_EXPLICIT}\"]"),
        "--source",
        "gh",
        "--event",
        "issues",
        "--id",
        delivery,
        "--url",
        &f.base(),
        "--format",
        "json",
    ]));
    f.send(&explicit).await.assert_accepted_id(delivery);
    let m = f.take_one().await;
    assert_eq!(m.routing_key, "gh.github.issues");
    assert_eq!(m.body["id"], delivery);
    f.send(&explicit).await.assert_accepted_id(delivery);
    f.assert_nothing_published().await;

    // Standard Webhooks.
    let req = f.sign("svix", &["--id", "msg_e2e_2c5f9a"]);
    assert!(req.header("webhook-signature").starts_with("v1,"));
    f.send(&req).await.assert_accepted_id("msg_e2e_2c5f9a");
    let body = req.json();
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "svix",
            provider: "standard",
            id: "msg_e2e_2c5f9a",
            kind: "standard.user.created",
            providerevent: "user.created",
            subject: None,
            data: &body,
        },
    );
    let sent = chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).unwrap();
    let time = chrono::DateTime::parse_from_rfc3339(m.body["time"].as_str().unwrap()).unwrap();
    assert_eq!(time, sent, "time is the body's timestamp");
    f.send(&req).await.assert_accepted_id("msg_e2e_2c5f9a");
    f.assert_nothing_published().await;

    // Configurable HMAC, Stripe style.
    let req = f.sign(
        "stripe",
        &[
            "--id",
            "evt_e2e_3d7b",
            "--event",
            "payment_intent.succeeded",
        ],
    );
    assert!(req.header("Stripe-Signature").starts_with("t="));
    f.send(&req).await.assert_accepted_id("evt_e2e_3d7b");
    let m = f.take_one().await;
    assert_message(
        &m,
        &Expect {
            source: "stripe",
            provider: "hmac",
            id: "evt_e2e_3d7b",
            kind: "hmac.payment_intent.succeeded",
            providerevent: "payment_intent.succeeded",
            subject: None,
            data: &req.json(),
        },
    );
    f.send(&req).await.assert_accepted_id("evt_e2e_3d7b");
    f.assert_nothing_published().await;
    f.gw.stop().await;
}

// ---------------------------------------------------------------------------- the command line

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
