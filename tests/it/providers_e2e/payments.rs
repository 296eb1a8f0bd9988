//! Alipay and WeChat Pay (v3 and v2) end to end: acknowledgements, messages, refusals.

use super::*;

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

/// Alipay and WeChat Pay v2 are deduplicated on the signed string as well as on the id
/// (docs/security.md): `forget` removes both, so the provider's redelivery (the very same
/// request) is accepted and published again.
#[actix_web::test]
async fn a_forgotten_payment_is_accepted_again() {
    let f = Fixture::start().await;
    let alipay_key = provider_fixture("alipay/alipay_private_key.pem");
    let alipay_id = "2025010100222000000000000031";
    let wx_id = "4200000000000000000000000131";
    let requests = [
        (
            "alipay",
            alipay_id,
            f.sign("alipay", &["--private-key", &alipay_key, "--id", alipay_id]),
        ),
        (
            "wxpay-v2-md5",
            wx_id,
            f.sign("wxpay-v2-md5", &["--id", wx_id]),
        ),
    ];
    for (source, id, req) in &requests {
        for round in ["first delivery", "after forget"] {
            assert_eq!(f.send(req).await.status, 200, "{source}: {round}");
            let m = f.take_one().await;
            assert_eq!(m.body["id"], *id, "{source}: {round}");
            assert!(
                m.properties
                    .headers()
                    .as_ref()
                    .is_none_or(|h| !h.inner().contains_key("x-hookgate-replay")),
                "{source}: a delivery, not a replay"
            );
            assert_eq!(f.send(req).await.status, 200);
            f.assert_nothing_published().await;
            if round == "first delivery" {
                let r =
                    f.gw.client
                        .post(f.gw.admin("/forget"))
                        .json(&json!({ "source": source, "id": id }))
                        .send()
                        .await
                        .unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.json::<Value>().await.unwrap(), json!({"forgotten": true}));
            }
        }
    }
    f.gw.stop().await;
}
