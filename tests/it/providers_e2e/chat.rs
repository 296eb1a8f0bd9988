//! DingTalk (events and robots) and Feishu end to end: encrypted replies, control probes.

use super::*;

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
