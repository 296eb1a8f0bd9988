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
use providers::testkit::{self, crypto};
use providers::{Headers, ProviderConfig, RawRequest};

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

/// The config of a `providers::testkit` source: the sources the flip test and the fuzz
/// targets use, with their test keys.
fn provider(name: &str) -> ProviderConfig {
    testkit::source(name).provider_config()
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
    admit_cost(
        "github (6 KB)",
        &provider("github"),
        &opts,
        "HMAC-SHA256 hex",
        &mut || {
            black_box(providers::github::signature_256(
                "fuzz-secret",
                body.as_bytes(),
            ));
        },
    );

    let mut o = SampleOptions::new(now);
    o.payload = Some(br#"{"type":"invoice.paid","data":{"id":"in_1","amount":1200}}"#.to_vec());
    let payload = o.payload.clone().unwrap();
    admit_cost(
        "standard",
        &provider("standard"),
        &o,
        "HMAC-SHA256 b64",
        &mut || {
            black_box(
                providers::standard::sign_v1(
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    "1614265330",
                    &payload,
                )
                .unwrap(),
            );
        },
    );

    let signer = crypto::RsaSigner::parse_pem(testkit::ALIPAY_KEY).expect("fixture key");
    let public = crypto::RsaPublicKey::parse(&signer.public_spki_b64()).expect("public key");
    let msg = vec![b'a'; 900];
    let sig = signer.sign(crypto::RsaDigest::Sha256, &msg);
    let mut rsa_verify = || {
        black_box(public.verify(crypto::RsaDigest::Sha256, &msg, &sig));
    };
    let alipay = testkit::source("alipay");
    admit_cost(
        "alipay (RSA2)",
        &alipay.provider_config(),
        &alipay.options(now),
        "RSA-2048 verify",
        &mut rsa_verify,
    );
    let wechatpay = testkit::source("wechatpay_v3");
    admit_cost(
        "wechatpay v3 (RSA+GCM)",
        &wechatpay.provider_config(),
        &wechatpay.options(now),
        "RSA-2048 verify",
        &mut rsa_verify,
    );

    let key = crypto::b64_lenient("Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7=").unwrap();
    let ct = crypto::aes_cbc_encrypt(&key, &key[..16], &[7u8; 256]).unwrap();
    let mut aes = || {
        black_box(crypto::aes_cbc_decrypt(&key, &key[..16], &ct));
    };
    admit_cost(
        "dingtalk (event)",
        &provider("dingtalk_event"),
        &SampleOptions::new(now),
        "AES-256-CBC 256 B",
        &mut aes,
    );
    admit_cost(
        "feishu (encrypted)",
        &provider("feishu"),
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
