//! Issue 16 end to end: `token`, `gitlab`, `gitee`, `wecom` and an `hmac` preset through the
//! real gateway and the real RabbitMQ. Requests come from `hookgate sign -c FILE --format json`
//! run as a process (and, where a request must differ from what `sign` prints — a later Gitee
//! redelivery, a stale one, WeCom's GET — from the same `sample` code in the providers crate).
//! Each accepted event is checked on a fresh queue (routing key, type, id, data, no secret), a
//! resend is acknowledged the same way and not published again, and every refusal publishes
//! nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use hookgate::config::Config;
use providers::sign::SampleOptions;
use providers::ProviderConfig;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::harness::{amqp_url, unique, Consumer, Gateway, Message};

const ALERT_TOKEN: &str = "e2e-alert-token-5e1f";
const STREAM_TOKEN: &str = "e2e-stream-token-a9c2";
const GL_TOKEN: &str = "e2e-gitlab-token-77b0";
const GL_OLD_TOKEN: &str = "e2e-gitlab-old-token-3d4e";
const GITEE_SECRET: &str = "e2e-gitee-secret-c1d8";
const WC_TOKEN: &str = "QDG6eK";
const WC_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const WC_CORP: &str = "wx5823bf96d3bd56c7";
const STRIPE_SECRET: &str = "whsec_e2e_preset_8a1b";

const SECRETS: &[&str] = &[
    ALERT_TOKEN,
    STREAM_TOKEN,
    GL_TOKEN,
    GL_OLD_TOKEN,
    GITEE_SECRET,
    WC_TOKEN,
    WC_AES_KEY,
    STRIPE_SECRET,
];

fn config_text(exchange: &str, store: &Path) -> String {
    let store = store.display();
    let amqp = amqp_url();
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
name = "alerts"
provider = "token"
tokens = ["{ALERT_TOKEN}"]
basic = true
id_pointer = "/id"
type_pointer = "/status"

[[sources]]
name = "stream"
provider = "token"
tokens = ["file:stream.token"]
query = "token"

[[sources]]
name = "gitlab"
provider = "gitlab"
tokens = ["{GL_TOKEN}", "{GL_OLD_TOKEN}"]

[[sources]]
name = "gitee"
provider = "gitee"
tokens = ["{GITEE_SECRET}"]

[[sources]]
name = "wecom"
provider = "wecom"
token = "{WC_TOKEN}"
encoding_aes_key = "{WC_AES_KEY}"
corp_id = "{WC_CORP}"

[[sources]]
name = "stripe"
provider = "hmac"
preset = "stripe"
secrets = ["{STRIPE_SECRET}"]
"#
    )
}

struct Fixture {
    dir: TempDir,
    config_path: PathBuf,
    gw: Gateway,
    consumer: Consumer,
}

/// One request as `hookgate sign --format json` printed it.
#[derive(Debug, Clone)]
struct Signed {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

struct Reply {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn assert_accepted_id(&self, id: &str) {
        assert_eq!(self.status, 202, "{}", self.text());
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        assert_eq!(self.text(), json!({ "id": id }).to_string());
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let exchange = unique("it-senders");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookgate.toml");
        std::fs::write(
            &config_path,
            config_text(&exchange, &dir.path().join("store")),
        )
        .unwrap();
        std::fs::write(dir.path().join("stream.token"), format!("{STREAM_TOKEN}\n")).unwrap();
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
        let out = hookgate(&args);
        assert!(out.status.success(), "sign: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Signed {
            url: v["url"].as_str().unwrap().to_owned(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
                .collect(),
            body: v["body"].as_str().unwrap().to_owned(),
        }
    }

    /// The `sample` code `hookgate sign` runs, for a request at another time or with a payload.
    fn sample(&self, source: &str, o: &SampleOptions) -> Signed {
        let r = self.provider(source).sample(o).unwrap();
        Signed {
            url: r.url(&self.gw.url(source)),
            headers: r.headers.clone(),
            body: text(&r.body),
        }
    }

    fn provider(&self, name: &str) -> ProviderConfig {
        Config::load(&self.config_path)
            .unwrap()
            .sources
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.provider)
            .unwrap()
    }

    async fn send(&self, r: &Signed) -> Reply {
        let mut req = self.gw.client.post(&r.url).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        reply(req.send().await.unwrap()).await
    }

    async fn get(&self, url: &str) -> Reply {
        reply(self.gw.client.get(url).send().await.unwrap()).await
    }

    async fn take_one(&self) -> Message {
        let m = self
            .consumer
            .take(1, Duration::from_secs(10))
            .await
            .pop()
            .unwrap();
        let text = m.body.to_string();
        for s in SECRETS {
            assert!(
                !text.contains(s),
                "a secret leaked into the message: {text}"
            );
        }
        m
    }

    async fn assert_nothing_published(&self) {
        self.consumer.assert_empty(Duration::from_millis(300)).await;
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    Reply {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: resp.bytes().await.unwrap().to_vec(),
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

fn set_header(r: &mut Signed, name: &str, value: &str) {
    match r
        .headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        Some(h) => h.1 = value.to_owned(),
        None => r.headers.push((name.to_owned(), value.to_owned())),
    }
}

fn without_header(r: &Signed, name: &str) -> Signed {
    let mut r = r.clone();
    r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    r
}

fn check_envelope(m: &Message, source: &str, provider: &str, kind: &str, id: &str) {
    assert_eq!(m.routing_key, format!("{source}.{kind}"));
    assert_eq!(m.body["type"], kind);
    assert_eq!(m.body["id"], id);
    assert_eq!(m.body["source"], format!("/hookgate/{source}"));
    assert_eq!(m.body["provider"], provider);
    assert_eq!(m.body["specversion"], "1.0");
    assert_eq!(m.properties.message_id().as_ref().unwrap().as_str(), id);
}

#[actix_web::test]
async fn token_sources_from_hookgate_sign() {
    let f = Fixture::start().await;

    // HTTP Basic (Alertmanager's basic_auth), id and type from the body.
    let r = f.sign("alerts", &["--id", "grp-1", "--event", "firing"]);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "Authorization" && v.starts_with("Basic ")));
    f.send(&r).await.assert_accepted_id("grp-1");
    let m = f.take_one().await;
    check_envelope(&m, "alerts", "token", "token.firing", "grp-1");
    assert_eq!(m.body["data"]["status"], "firing");
    assert_eq!(m.body["providerevent"], "firing");
    f.send(&r).await.assert_accepted_id("grp-1");
    f.assert_nothing_published().await;

    // Refusals: wrong password, another scheme, no header.
    let mut wrong = r.clone();
    set_header(&mut wrong, "Authorization", "Basic aG9va2dhdGU6d3Jvbmc="); // hookgate:wrong
    assert_eq!(f.send(&wrong).await.status, 401);
    let mut bearer = r.clone();
    set_header(
        &mut bearer,
        "Authorization",
        &format!("Bearer {ALERT_TOKEN}"),
    );
    assert_eq!(f.send(&bearer).await.status, 401);
    assert_eq!(
        f.send(&without_header(&r, "Authorization")).await.status,
        401
    );
    f.assert_nothing_published().await;

    // Query token (read from a `file:` secret); no id configured: sha256 of the body.
    let r = f.sign("stream", &[]);
    assert!(r.url.contains("token="), "{}", r.url);
    let r = Signed {
        body: r#"{"action":"on_publish","stream":"live/1"}"#.into(),
        ..r
    };
    let reply = f.send(&r).await;
    let id = providers::testkit::sha256_key(r.body.as_bytes());
    reply.assert_accepted_id(&id);
    let m = f.take_one().await;
    check_envelope(&m, "stream", "token", "token.event", &id);
    assert_eq!(m.body["data"]["stream"], "live/1");
    f.send(&r).await.assert_accepted_id(&id);
    let wrong = Signed {
        url: r.url.replace(STREAM_TOKEN, "e2e-stream-token-a9c3"),
        ..r.clone()
    };
    assert_eq!(f.send(&wrong).await.status, 401);
    let none = Signed {
        url: f.gw.url("stream"),
        ..r.clone()
    };
    assert_eq!(f.send(&none).await.status, 401);
    f.assert_nothing_published().await;
}

#[actix_web::test]
async fn gitlab_from_hookgate_sign() {
    let f = Fixture::start().await;
    let r = f.sign(
        "gitlab",
        &["--id", "idem-e2e-1", "--event", "merge_request"],
    );
    f.send(&r).await.assert_accepted_id("idem-e2e-1");
    let m = f.take_one().await;
    check_envelope(
        &m,
        "gitlab",
        "gitlab",
        "gitlab.merge_request.open",
        "idem-e2e-1",
    );
    assert_eq!(m.body["subject"], "mike/diaspora");
    assert_eq!(m.body["data"]["object_kind"], "merge_request");
    // GitLab's retry: the same Idempotency-Key, a new event UUID: a duplicate.
    let mut retry = r.clone();
    set_header(
        &mut retry,
        "X-Gitlab-Event-UUID",
        "0b8c8f2e-0000-4000-8000-000000000001",
    );
    f.send(&retry).await.assert_accepted_id("idem-e2e-1");
    f.assert_nothing_published().await;
    // An old token still works (rotation); a wrong or missing one is 401 and publishes nothing.
    let mut old = r.clone();
    set_header(&mut old, "X-Gitlab-Token", GL_OLD_TOKEN);
    f.send(&old).await.assert_accepted_id("idem-e2e-1");
    let mut wrong = r.clone();
    set_header(&mut wrong, "X-Gitlab-Token", "e2e-gitlab-token-77b1");
    let refused = f.send(&wrong).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.text().contains(GL_TOKEN));
    assert_eq!(
        f.send(&without_header(&r, "X-Gitlab-Token")).await.status,
        401
    );
    f.assert_nothing_published().await;
    // Before GitLab 17.4 there is no Idempotency-Key: X-Gitlab-Event-UUID is the id.
    let r = f.sign("gitlab", &[]);
    let uuid = r
        .headers
        .iter()
        .find(|(k, _)| k == "X-Gitlab-Event-UUID")
        .unwrap()
        .1
        .clone();
    let old = without_header(&r, "Idempotency-Key");
    f.send(&old).await.assert_accepted_id(&uuid);
    let m = f.take_one().await;
    check_envelope(&m, "gitlab", "gitlab", "gitlab.push", &uuid);
    // GET is not served for GitLab.
    assert_eq!(f.get(&f.gw.url("gitlab")).await.status, 405);
}

#[actix_web::test]
async fn gitee_from_hookgate_sign() {
    let f = Fixture::start().await;
    let r = f.sign("gitee", &["--event", "merge_request_hooks"]);
    let reply = f.send(&r).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = serde_json::from_slice::<Value>(&reply.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    let m = f.take_one().await;
    check_envelope(&m, "gitee", "gitee", "gitee.merge_request_hooks.open", &id);
    assert_eq!(m.body["providerevent"], "Merge Request Hook");
    for field in ["password", "sign", "timestamp"] {
        assert!(m.body["data"].get(field).is_none(), "{field} reached data");
    }
    // Gitee's redelivery a minute later: new timestamp and signature, in the headers and the
    // body, same event: the same id, nothing published again.
    let mut body: Value = serde_json::from_str(&r.body).unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    let ts = providers::testkit::unix_millis(later).to_string();
    let sig = providers::gitee::sign(GITEE_SECRET, &ts);
    body["timestamp"] = json!(ts);
    body["sign"] = json!(sig);
    let mut o = SampleOptions::new(later);
    o.payload = Some(body.to_string().into_bytes());
    o.event = Some("merge_request_hooks".into());
    let redelivery = f.sample("gitee", &o);
    assert_ne!(redelivery.body, r.body);
    f.send(&redelivery).await.assert_accepted_id(&id);
    f.assert_nothing_published().await;
    // Password mode with the same secret: the same event again.
    let mut password = r.clone();
    set_header(&mut password, "X-Gitee-Token", GITEE_SECRET);
    f.send(&password).await.assert_accepted_id(&id);
    // Stale (two hours old), wrong secret, missing token: 401, nothing published.
    let stale = f.sample(
        "gitee",
        &SampleOptions::new(SystemTime::now() - Duration::from_secs(7200)),
    );
    assert_eq!(f.send(&stale).await.status, 401);
    let mut wrong = r.clone();
    set_header(
        &mut wrong,
        "X-Gitee-Token",
        &providers::gitee::sign("other", &ts),
    );
    assert_eq!(f.send(&wrong).await.status, 401);
    assert_eq!(
        f.send(&without_header(&r, "X-Gitee-Token")).await.status,
        401
    );
    f.assert_nothing_published().await;
}

#[actix_web::test]
async fn wecom_url_verification_and_messages() {
    let f = Fixture::start().await;
    let ProviderConfig::Wecom(wc) = f.provider("wecom") else {
        panic!("wecom source")
    };
    // WeCom's own sample GET (the official vector), answered with the plaintext exactly.
    let official = "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D";
    let echo = f.get(&format!("{}?{official}", f.gw.url("wecom"))).await;
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body, b"1616140317555161061");
    assert!(echo
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/plain")));
    // A fresh one from the sample code.
    let q = providers::wecom::verification_query(&wc, SystemTime::now(), "e2e-echo-42").unwrap();
    let echo = f.get(&format!("{}?{q}", f.gw.url("wecom"))).await;
    assert_eq!((echo.status, echo.text().as_str()), (200, "e2e-echo-42"));
    // The same from `hookgate sign --event url_verification`.
    let out = hookgate(&[
        "sign",
        "-c",
        f.config_path.to_str().unwrap(),
        "--source",
        "wecom",
        "--format",
        "json",
        "--url",
        &f.base(),
        "--event",
        "url_verification",
        "--id",
        "sign-echo-7",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["method"].as_str(), v["expect"].as_str()),
        (Some("GET"), Some("sign-echo-7"))
    );
    let echo = f.get(v["url"].as_str().unwrap()).await;
    assert_eq!((echo.status, echo.text().as_str()), (200, "sign-echo-7"));
    // A bad signature is 401; nothing of the verification is published.
    let bad = official.replace("5c45ff5e", "5c45ff5f");
    assert_eq!(
        f.get(&format!("{}?{bad}", f.gw.url("wecom"))).await.status,
        401
    );
    f.assert_nothing_published().await;

    // A message from `hookgate sign`: empty 200, published once.
    let r = f.sign("wecom", &["--id", "4561255354251345929"]);
    let reply = f.send(&r).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty(), "{}", reply.text());
    let m = f.take_one().await;
    check_envelope(&m, "wecom", "wecom", "wecom.text", "4561255354251345929");
    assert_eq!(m.body["data"]["Content"], "hello from hookgate sign");
    assert_eq!(m.body["data"]["ToUserName"], WC_CORP);
    f.send(&r).await;
    f.assert_nothing_published().await;
    // An event (no MsgId): re-signed and re-encrypted retries are one event.
    let plain = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>create_user</ChangeType><UserID><![CDATA[lisi]]></UserID></xml>";
    let payload = f.dir.path().join("wecom-event.xml");
    std::fs::write(&payload, plain).unwrap();
    let payload = payload.to_str().unwrap();
    let e1 = f.sign("wecom", &["--payload", payload]);
    let e2 = f.sign("wecom", &["--payload", payload]);
    assert_ne!(e1.body, e2.body, "each retry is encrypted afresh");
    assert_eq!(f.send(&e1).await.status, 200);
    let m = f.take_one().await;
    assert_eq!(m.body["type"], "wecom.event.change_contact");
    assert_eq!(
        m.body["id"],
        providers::testkit::sha256_key(plain.as_bytes())
    );
    assert_eq!(m.body["time"], "2014-06-24T11:48:33.000Z");
    assert_eq!(f.send(&e2).await.status, 200);
    // Refusals: a ciphertext for another corp id (401), tampered ciphertext (401: it is
    // signed), a signature from another token (401).
    let other_corp = providers::wecom::Config {
        token: providers::Secret::from(WC_TOKEN),
        encoding_aes_key: providers::Secret::from(WC_AES_KEY),
        corp_id: "ww0000000000000001".into(),
    };
    let o = SampleOptions::new(SystemTime::now());
    let foreign = providers::wecom::sample(&other_corp, &o).unwrap();
    let foreign = Signed {
        url: foreign.url(&f.gw.url("wecom")),
        headers: foreign.headers.clone(),
        body: text(&foreign.body),
    };
    assert_eq!(f.send(&foreign).await.status, 401);
    let i = r.body.find("<Encrypt><![CDATA[").unwrap() + 20;
    let mut tampered = r.clone();
    let c = if &tampered.body[i..i + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.body.replace_range(i..i + 1, c);
    assert_eq!(f.send(&tampered).await.status, 401);
    let other_token = providers::wecom::Config {
        token: providers::Secret::from("QDG6eL"),
        encoding_aes_key: providers::Secret::from(WC_AES_KEY),
        corp_id: WC_CORP.into(),
    };
    let forged = providers::wecom::sample(&other_token, &o).unwrap();
    let forged = Signed {
        url: forged.url(&f.gw.url("wecom")),
        headers: forged.headers.clone(),
        body: text(&forged.body),
    };
    assert_eq!(f.send(&forged).await.status, 401);
    // A signed message sent as a GET is not an event (a GET is only the URL verification).
    let mut get = f.gw.client.get(&r.url).body(r.body.clone());
    for (k, v) in &r.headers {
        get = get.header(k, v);
    }
    assert_eq!(self::reply(get.send().await.unwrap()).await.status, 400);
    // A captured message replayed as a URL verification (its signature is the one a GET of
    // its ciphertext would carry) verifies, but its plaintext is never echoed.
    let start = r.body.find("<Encrypt><![CDATA[").unwrap() + "<Encrypt><![CDATA[".len();
    let encrypt = &r.body[start..start + r.body[start..].find("]]>").unwrap()];
    let replay = format!(
        "{}&echostr={}",
        r.url,
        providers::testkit::form::encode(encrypt.as_bytes())
    );
    let echo = f.get(&replay).await;
    assert_eq!(echo.status, 400, "{}", echo.text());
    assert!(!echo.text().contains("hello"), "{}", echo.text());
    f.assert_nothing_published().await;
    // GET stays 405 for other providers and unknown sources.
    assert_eq!(f.get(&f.gw.url("alerts")).await.status, 405);
    assert_eq!(f.get(&f.gw.url("nope")).await.status, 405);
}

#[actix_web::test]
async fn hmac_preset_from_hookgate_sign() {
    let f = Fixture::start().await;
    let r = f.sign(
        "stripe",
        &["--id", "evt_e2e_preset", "--event", "invoice.paid"],
    );
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("stripe-signature") && v.starts_with("t=")));
    f.send(&r).await.assert_accepted_id("evt_e2e_preset");
    let m = f.take_one().await;
    check_envelope(&m, "stripe", "hmac", "hmac.invoice.paid", "evt_e2e_preset");
    f.send(&r).await.assert_accepted_id("evt_e2e_preset");
    f.assert_nothing_published().await;
    let mut bad = r.clone();
    bad.body.push(' ');
    assert_eq!(f.send(&bad).await.status, 401);
    f.assert_nothing_published().await;
}

#[test]
fn check_warns_about_token_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, config_text("x", &dir.path().join("store"))).unwrap();
    std::fs::write(dir.path().join("stream.token"), STREAM_TOKEN).unwrap();
    let out = hookgate(&["check", "-c", path.to_str().unwrap()]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("warning: source `stream`: no id_header or id_pointer"),
        "{all}"
    );
    assert!(
        !all.contains("warning: source `alerts`: no id_header"),
        "{all}"
    );
    assert!(all.contains("warning: source `gitlab`"), "{all}");
    for s in SECRETS {
        assert!(!all.contains(s), "check printed a secret: {all}");
    }
}

/// `hookgate sign … | head` ends quietly when the pipe closes (it panicked on the failed print,
/// a backtrace on the terminal). And `sign -c` aims at the config's listener.
#[test]
fn sign_into_a_closed_pipe_ends_quietly_and_aims_at_the_listener() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    // More than a pipe holds (64 KiB), so the print meets the closed pipe.
    let payload = dir.path().join("big.json");
    std::fs::write(
        &payload,
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(256 * 1024)),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["sign", "--provider", "github", "--with", r#"secrets=["s"]"#])
        .arg("--payload")
        .arg(&payload)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?} {err}");

    let path = dir.path().join("hookgate.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"0.0.0.0:18777\"\n[store]\npath = \"store\"\n[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"s\"]\n",
    )
    .unwrap();
    let out = hookgate(&["sign", "-c", path.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["url"], "http://127.0.0.1:18777/hooks/gh");
}
