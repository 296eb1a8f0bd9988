//! `cargo bench --bench pipeline`: the request path's two costs, each with a ratio against a
//! baseline measured in the same process.
//!
//! 1. Provider admission (verify + decrypt + normalize) against the bare crypto primitive it
//!    cannot avoid: the ratio is what the adapter adds on top of the math.
//!
//! The durable accept (event log, dedup index) is measured in `benches/eventlog.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use providers::sign::SampleOptions;
use providers::testkit::crypto;
use providers::{Headers, ProviderConfig, RawRequest};

const ALIPAY_KEY: &str = include_str!("../providers/tests/fixtures/alipay/alipay_private_key.pem");
const WECHAT_KEY: &str =
    include_str!("../providers/tests/fixtures/wechatpay/platform_private_key.pem");

/// Mean time of `f` over enough iterations to fill ~`budget`.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> Duration {
    f();
    let probe = Instant::now();
    f();
    let one = probe.elapsed().max(Duration::from_nanos(50));
    let iters = (budget.as_nanos() / one.as_nanos()).clamp(10, 2_000_000) as u32;
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn provider(toml_text: &str) -> ProviderConfig {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/providers/tests/fixtures");
    let text = toml_text.replace("FIXTURES", fixtures);
    let mut table: toml::Table = toml::from_str(&text).expect("bench config");
    // `file:` values, as the config loader would resolve them.
    for (_, v) in table.iter_mut() {
        resolve(v);
    }
    serde::Deserialize::deserialize(toml::Value::Table(table)).expect("provider config")
}

fn resolve(v: &mut toml::Value) {
    match v {
        toml::Value::String(s) if s.starts_with("file:") => {
            *s = std::fs::read_to_string(&s[5..]).expect("fixture")
        }
        toml::Value::Array(a) => a.iter_mut().for_each(resolve),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| resolve(v)),
        _ => {}
    }
}

fn admit_cost(
    name: &str,
    config: &ProviderConfig,
    opts: &SampleOptions,
    baseline_name: &str,
    baseline: &mut dyn FnMut(),
) {
    let p = config.build().expect("valid bench config");
    let sample = config.sample(opts).expect("sample");
    let headers: Vec<(String, String)> = sample.headers.clone();
    let h: &dyn Headers = &headers;
    let admit = time(Duration::from_millis(400), || {
        let raw = RawRequest {
            headers: h,
            query: &sample.query,
            body: &sample.body,
        };
        black_box(p.admit(&raw, opts.now).expect("bench sample is accepted"));
    });
    let base = time(Duration::from_millis(400), baseline);
    println!(
        "{name:<22} admit {:>9.2} µs   baseline ({baseline_name}) {:>9.2} µs   ratio {:>5.2}",
        admit.as_secs_f64() * 1e6,
        base.as_secs_f64() * 1e6,
        admit.as_secs_f64() / base.as_secs_f64()
    );
}

fn providers_section() {
    println!("== provider admission vs the bare primitive (same process) ==");
    let now = SystemTime::now();
    let mut opts = SampleOptions::new(now);
    let body = format!(
        r#"{{"ref":"refs/heads/main","repository":{{"full_name":"o/r"}},"pad":"{}"}}"#,
        "x".repeat(6000)
    );
    opts.payload = Some(body.clone().into_bytes());
    let gh = provider(
        r#"provider = "github"
secrets = ["s3cret"]"#,
    );
    admit_cost("github (6 KB)", &gh, &opts, "HMAC-SHA256 hex", &mut || {
        black_box(providers::github::signature_256("s3cret", body.as_bytes()));
    });

    let mut o = SampleOptions::new(now);
    o.payload = Some(br#"{"type":"invoice.paid","data":{"id":"in_1","amount":1200}}"#.to_vec());
    let std = provider(
        r#"provider = "standard"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]"#,
    );
    let payload = o.payload.clone().unwrap();
    admit_cost("standard", &std, &o, "HMAC-SHA256 b64", &mut || {
        black_box(
            providers::standard::sign_v1(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &payload,
            )
            .unwrap(),
        );
    });

    let signer = crypto::RsaSigner::parse_pem(ALIPAY_KEY).expect("fixture key");
    let public = crypto::RsaPublicKey::parse(&signer.public_spki_b64()).expect("public key");
    let msg = vec![b'a'; 900];
    let sig = signer.sign(crypto::RsaDigest::Sha256, &msg);
    let mut rsa_verify = || {
        black_box(public.verify(crypto::RsaDigest::Sha256, &msg, &sig));
    };
    let ali = provider(&format!(
        r#"provider = "alipay"
app_id = "2021000000000001"
alipay_public_keys = ["{}"]"#,
        signer.public_spki_b64()
    ));
    let mut o = SampleOptions::new(now);
    o.private_key = Some(ALIPAY_KEY.to_string());
    admit_cost(
        "alipay (RSA2)",
        &ali,
        &o,
        "RSA-2048 verify",
        &mut rsa_verify,
    );

    let wx = provider(
        r#"provider = "wechatpay"
apiv3_keys = ["0123456789abcdef0123456789abcdef"]
[platform_keys]
"5157F09EFDC096DE15EBE81A47057A7232F1B8E1" = "file:FIXTURES/wechatpay/platform_cert.pem""#,
    );
    let mut o = SampleOptions::new(now);
    o.private_key = Some(WECHAT_KEY.to_string());
    admit_cost(
        "wechatpay v3 (RSA+GCM)",
        &wx,
        &o,
        "RSA-2048 verify",
        &mut rsa_verify,
    );

    let key = crypto::b64_lenient("Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7=").unwrap();
    let ct = crypto::aes_cbc_encrypt(&key, &key[..16], &[7u8; 256]).unwrap();
    let mut aes = || {
        black_box(crypto::aes_cbc_decrypt(&key, &key[..16], &ct));
    };
    let dt = provider(
        r#"provider = "dingtalk"
token = "mryue"
aes_key = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
owner_key = "ding6ccabc44d2c8d38b""#,
    );
    admit_cost(
        "dingtalk (event)",
        &dt,
        &SampleOptions::new(now),
        "AES-256-CBC 256 B",
        &mut aes,
    );
    let fs = provider(
        r#"provider = "feishu"
verification_token = "vt"
encrypt_key = "test key""#,
    );
    admit_cost(
        "feishu (encrypted)",
        &fs,
        &SampleOptions::new(now),
        "AES-256-CBC 256 B",
        &mut aes,
    );
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench`-less args; keep it quick then.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    providers_section();
}
