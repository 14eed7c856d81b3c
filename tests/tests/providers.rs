//! The real providers' clients against local servers that check each request exactly as the
//! provider documents it and play its answers, success and errors alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use oms::domain::{Currency, Money};
use oms::payments::PaymentGateway;
use oms::payments::clients::{HttpsClient, StripeRefunds};
use serde_json::{Value, json};

const KEY: &str = "sk_test_oms";

/// One answer the fake plays instead of a refund: status, body, `Stripe-Should-Retry`.
type Scripted = (u16, Value, Option<&'static str>);

#[derive(Default)]
struct FakeStripe {
    script: Mutex<Vec<Scripted>>,
    /// Every request as received: (idempotency key, form fields).
    requests: Mutex<Vec<(String, HashMap<String, String>)>>,
    /// Refund made per idempotency key (Stripe answers a repeated key with the first result).
    made: Mutex<HashMap<String, Value>>,
    /// Requests that broke the documented shape.
    refused: Mutex<Vec<String>>,
}

async fn refunds(
    State(fake): State<Arc<FakeStripe>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let key = header("idempotency-key");
    let mut wrong = Vec::new();
    if header("authorization") != format!("Bearer {KEY}") {
        wrong.push("authorization");
    }
    if header("content-type") != "application/x-www-form-urlencoded" {
        wrong.push("content-type");
    }
    if key.is_empty() || key.len() > 255 {
        wrong.push("idempotency-key");
    }
    if !form
        .get("payment_intent")
        .is_some_and(|p| p.starts_with("pi_"))
    {
        wrong.push("payment_intent");
    }
    if !form
        .get("amount")
        .is_some_and(|a| a.parse::<u64>().is_ok_and(|a| a > 0))
    {
        wrong.push("amount");
    }
    if form.get("metadata[refund_id]") != Some(&key) {
        wrong.push("metadata[refund_id]");
    }
    fake.requests
        .lock()
        .unwrap()
        .push((key.clone(), form.clone()));
    if !wrong.is_empty() {
        fake.refused.lock().unwrap().push(wrong.join(", "));
        let body = json!({"error": {"type": "invalid_request_error", "message": format!("bad {}", wrong.join(", "))}});
        return json_answer(StatusCode::BAD_REQUEST, &body);
    }
    let scripted = {
        let mut s = fake.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    };
    if let Some((status, body, retry)) = scripted {
        let mut r = json_answer(StatusCode::from_u16(status).unwrap(), &body);
        if let Some(v) = retry {
            r.headers_mut()
                .insert("stripe-should-retry", v.parse().unwrap());
        }
        return r;
    }
    let mut made = fake.made.lock().unwrap();
    let n = made.len() + 1;
    let refund = made
        .entry(key)
        .or_insert_with(|| {
            json!({"id": format!("re_{n}"), "object": "refund", "status": "succeeded",
                   "amount": form["amount"].parse::<i64>().unwrap(), "currency": "cny",
                   "payment_intent": form["payment_intent"]})
        })
        .clone();
    json_answer(StatusCode::OK, &refund)
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn fake_stripe() -> (Arc<FakeStripe>, String) {
    let fake = Arc::new(FakeStripe::default());
    let app = axum::Router::new()
        .route("/v1/refunds", axum::routing::post(refunds))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, url)
}

fn client(url: &str) -> StripeRefunds {
    StripeRefunds {
        provider: "stripe".into(),
        base_url: url.into(),
        secret_key: KEY.into(),
        http: HttpsClient::new(Duration::from_secs(5)).unwrap(),
    }
}

fn cny(minor: i64) -> Money {
    Money {
        minor,
        currency: Currency::parse("CNY").unwrap(),
    }
}

#[tokio::test]
async fn a_stripe_refund_is_asked_as_documented_and_a_repeated_key_refunds_once() {
    let (fake, url) = fake_stripe().await;
    let stripe = client(&url);
    let id = stripe
        .refund("stripe", "pi_123", cny(4990), "rf-order-1")
        .await
        .unwrap();
    assert_eq!(id, "re_1");
    let again = stripe
        .refund("stripe", "pi_123", cny(4990), "rf-order-1")
        .await
        .unwrap();
    assert_eq!(again, "re_1", "the same idempotency key is the same refund");
    let (key, form) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(key, "rf-order-1");
    assert_eq!(form["payment_intent"], "pi_123");
    assert_eq!(form["amount"], "4990");
    assert!(fake.refused.lock().unwrap().is_empty());
    assert_eq!(fake.made.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn stripe_errors_are_told_apart_as_retryable_or_final() {
    let (fake, url) = fake_stripe().await;
    let stripe = client(&url);
    let err =
        |kind: &str, code: &str| json!({"error": {"type": kind, "code": code, "message": "m"}});
    // (answer, retryable, reason contains)
    let cases: Vec<(Scripted, bool, &str)> = vec![
        ((500, err("api_error", ""), None), true, "HTTP 500"),
        ((503, json!({}), None), true, "HTTP 503"),
        (
            (429, err("invalid_request_error", "rate_limit"), None),
            true,
            "rate_limit",
        ),
        (
            (409, err("idempotency_error", ""), None),
            true,
            "idempotency_error",
        ),
        (
            (
                400,
                err("invalid_request_error", "charge_already_refunded"),
                None,
            ),
            false,
            "charge_already_refunded",
        ),
        (
            (
                400,
                err("invalid_request_error", "lock_timeout"),
                Some("true"),
            ),
            true,
            "lock_timeout",
        ),
        (
            (500, err("api_error", ""), Some("false")),
            false,
            "HTTP 500",
        ),
        (
            (401, err("invalid_request_error", "api_key_expired"), None),
            false,
            "api_key_expired",
        ),
        (
            (402, err("card_error", "expired_card"), None),
            false,
            "expired_card",
        ),
        (
            (
                200,
                json!({"id": "re_f", "status": "failed", "failure_reason": "lost_or_stolen_card"}),
                None,
            ),
            false,
            "lost_or_stolen_card",
        ),
        (
            (200, json!({"id": "re_c", "status": "canceled"}), None),
            false,
            "canceled",
        ),
    ];
    for (i, (answer, retryable, contains)) in cases.into_iter().enumerate() {
        fake.script.lock().unwrap().push(answer.clone());
        let e = stripe
            .refund("stripe", "pi_9", cny(100), &format!("rf-err-{i}"))
            .await
            .unwrap_err();
        assert_eq!(e.retryable, retryable, "{answer:?}: {e}");
        assert!(e.reason.contains(contains), "{answer:?}: {e}");
    }
    // A pending refund is accepted (Stripe settles it)
    fake.script
        .lock()
        .unwrap()
        .push((200, json!({"id": "re_p", "status": "pending"}), None));
    assert_eq!(
        stripe
            .refund("stripe", "pi_9", cny(100), "rf-p")
            .await
            .unwrap(),
        "re_p"
    );
    // No answer at all is worth retrying
    let nowhere = client("http://127.0.0.1:9");
    let e = nowhere
        .refund("stripe", "pi_9", cny(100), "rf-x")
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");
    // A wrong key is what Stripe refuses; the client sends the right one
    let wrong = StripeRefunds {
        secret_key: "sk_wrong".into(),
        ..client(&url)
    };
    let e = wrong
        .refund("stripe", "pi_9", cny(100), "rf-w")
        .await
        .unwrap_err();
    assert!(!e.retryable && e.reason.contains("authorization"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_is_refunded_through_the_stripe_api_when_the_configuration_says_real() {
    // Given the demo configuration with Stripe's real client pointed at the fake
    let (fake, url) = fake_stripe().await;
    let mut config = oms::config::Config::demo();
    let stripe = config.payments.get_mut("stripe").unwrap();
    stripe.client = oms::config::ClientKind::Real;
    stripe.api_base = Some(url);
    let mut secrets = oms_local::dev_secrets(&config);
    secrets.api_keys.insert("stripe".into(), KEY.into());
    let gateway = oms::payments::clients::ConfiguredGateway::from_config(
        &config,
        &secrets,
        &HttpsClient::new(Duration::from_secs(5)).unwrap(),
    );
    let local = oms_tests::Local::sqlite_outside(
        config,
        oms_tests::Outside {
            clock: Arc::new(oms::clock::SystemClock),
            gateway: Arc::new(gateway),
            carriers: None,
            marketplaces: None,
        },
    )
    .await;
    let (_, _, body) = local
        .place(&oms_tests::native_order("C1001", &[("TEA-001", 1)]), None)
        .await;
    let id = body["order_id"].as_str().unwrap().to_owned();
    local.wait_for(&id, "awaiting_payment").await;
    let r = local
        .stripe(
            &oms_tests::stripe_paid("evt_real", &id, 4990, "cny"),
            oms_local::DEV_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200);
    local.wait_for(&id, "ready_to_ship").await;
    // When staff cancel it
    let r = local
        .staff(reqwest::Method::POST, &format!("/orders/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Then the refund went to Stripe with our refund id as the idempotency key
    let done = local.wait_for(&id, "refunded").await;
    let refund = &done["ledger"]["refunds"][0];
    assert_eq!(refund["provider_refund_id"], "re_1");
    let (key, form) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(key, refund["id"].as_str().unwrap());
    assert_eq!(form["payment_intent"], "pi_evt_real");
    assert_eq!(form["amount"], "4990");
    local.running.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Alipay

/// The fake gateway signs its answers with the demo key pair, and the client is given the same
/// pair as "its" private key and "Alipay's" public key (one pair plays both sides here).
#[derive(Default)]
struct FakeAlipay {
    /// Answers to play instead of a success: (code, sub_code, tamper with the signature).
    script: Mutex<Vec<(&'static str, &'static str, bool)>>,
    requests: Mutex<Vec<HashMap<String, String>>>,
    refunded: Mutex<HashMap<String, i64>>,
    refused: Mutex<Vec<String>>,
}

fn demo_public() -> rsa::PublicKey {
    oms::payments::alipay::public_key(oms_local::DEMO_ALIPAY_PUBLIC_KEY).unwrap()
}

fn demo_private() -> rsa::PrivateKey {
    oms::payments::clients::private_key(oms_local::DEMO_ALIPAY_PRIVATE_KEY).unwrap()
}

fn alipay_sign(text: &str) -> String {
    use base64::Engine;
    use rsa::signature::{SignatureEncoding, Signer};
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(demo_private());
    base64::engine::general_purpose::STANDARD.encode(signer.sign(text.as_bytes()).to_bytes())
}

async fn gateway(
    State(fake): State<Arc<FakeAlipay>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    use base64::Engine;
    use rsa::signature::Verifier;
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let p: HashMap<String, String> = params.iter().cloned().collect();
    let mut wrong = Vec::new();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        wrong.push("content-type".to_owned());
    }
    for (k, v) in [
        ("app_id", "2021000000000001"),
        ("method", "alipay.trade.refund"),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("version", "1.0"),
    ] {
        if p.get(k).map(String::as_str) != Some(v) {
            wrong.push(k.to_owned());
        }
    }
    if chrono::NaiveDateTime::parse_from_str(
        p.get("timestamp").map(String::as_str).unwrap_or(""),
        "%Y-%m-%d %H:%M:%S",
    )
    .is_err()
    {
        wrong.push("timestamp".into());
    }
    let signed = oms::payments::clients::alipay_request_content(&params);
    let verified = p
        .get("sign")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| rsa::pkcs1v15::Signature::try_from(b.as_slice()).ok())
        .is_some_and(|s| {
            rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(demo_public())
                .verify(signed.as_bytes(), &s)
                .is_ok()
        });
    if !verified {
        wrong.push("sign".into());
    }
    let biz: Value = p
        .get("biz_content")
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let amount = biz["refund_amount"]
        .as_str()
        .and_then(|a| oms::domain::parse_decimal_minor(a, 2).ok());
    if biz["trade_no"].as_str().is_none()
        || amount.is_none()
        || biz["out_request_no"].as_str().is_none()
    {
        wrong.push("biz_content".into());
    }
    fake.requests.lock().unwrap().push(p.clone());
    let (object, tamper) = if !wrong.is_empty() {
        fake.refused.lock().unwrap().push(wrong.join(", "));
        (
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": wrong.join(", ")}),
            false,
        )
    } else if let Some((code, sub, tamper)) = {
        let mut s = fake.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    } {
        (
            json!({"code": code, "msg": "Business Failed", "sub_code": sub, "sub_msg": sub}),
            tamper,
        )
    } else {
        let key = biz["out_request_no"].as_str().unwrap().to_owned();
        let mut refunded = fake.refunded.lock().unwrap();
        let fund_change = if refunded.contains_key(&key) {
            "N"
        } else {
            "Y"
        };
        refunded.entry(key).or_insert(amount.unwrap());
        (
            json!({"code": "10000", "msg": "Success", "trade_no": biz["trade_no"], "fund_change": fund_change,
                "refund_fee": biz["refund_amount"]}),
            false,
        )
    };
    let raw = object.to_string();
    let sign = if tamper {
        alipay_sign("something else")
    } else {
        alipay_sign(&raw)
    };
    let body = format!("{{\"alipay_trade_refund_response\":{raw},\"sign\":\"{sign}\"}}");
    (
        StatusCode::OK,
        [("content-type", "text/html;charset=utf-8")],
        body,
    )
        .into_response()
}

async fn fake_alipay() -> (Arc<FakeAlipay>, oms::payments::clients::AlipayRefunds) {
    let fake = Arc::new(FakeAlipay::default());
    let app = axum::Router::new()
        .route("/gateway.do", axum::routing::post(gateway))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/gateway.do", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = oms::payments::clients::AlipayRefunds {
        provider: "alipay".into(),
        gateway_url: url,
        app_id: "2021000000000001".into(),
        private_key: demo_private(),
        alipay_public_key: demo_public(),
        http: HttpsClient::new(Duration::from_secs(5)).unwrap(),
    };
    (fake, client)
}

#[tokio::test]
async fn an_alipay_refund_is_signed_as_documented_its_answer_verified_and_made_once() {
    let (fake, alipay) = fake_alipay().await;
    let id = alipay
        .refund("alipay", "2026112722001400001", cny(4990), "rf-a-1")
        .await
        .unwrap();
    assert_eq!(id, "2026112722001400001#rf-a-1");
    // The same out_request_no again: Alipay refunds once (fund_change N) and it is still made
    let again = alipay
        .refund("alipay", "2026112722001400001", cny(4990), "rf-a-1")
        .await
        .unwrap();
    assert_eq!(again, id);
    assert!(
        fake.refused.lock().unwrap().is_empty(),
        "{:?}",
        fake.refused.lock().unwrap()
    );
    assert_eq!(fake.refunded.lock().unwrap().len(), 1);
    let biz: Value =
        serde_json::from_str(&fake.requests.lock().unwrap()[0]["biz_content"]).unwrap();
    assert_eq!(
        biz,
        json!({"trade_no": "2026112722001400001", "refund_amount": "49.90", "out_request_no": "rf-a-1"})
    );
}

#[tokio::test]
async fn alipay_answers_are_told_apart_and_an_unverified_one_is_not_believed() {
    let (fake, alipay) = fake_alipay().await;
    // (code, sub_code, tampered signature) → retryable, reason contains
    let cases = [
        (("20000", "aop.ACQ.SYSTEM_ERROR", false), true, "20000"),
        (
            ("40004", "ACQ.SYSTEM_ERROR", false),
            true,
            "ACQ.SYSTEM_ERROR",
        ),
        (
            ("40004", "ACQ.TRADE_NOT_EXIST", false),
            false,
            "ACQ.TRADE_NOT_EXIST",
        ),
        (
            ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR", false),
            false,
            "REFUND_FEE_ERR",
        ),
        (("10000", "", true), true, "does not verify"),
    ];
    for (i, (answer, retryable, contains)) in cases.into_iter().enumerate() {
        fake.script.lock().unwrap().push(answer);
        let e = alipay
            .refund(
                "alipay",
                "2026112722001400009",
                cny(100),
                &format!("rf-e-{i}"),
            )
            .await
            .unwrap_err();
        assert_eq!(e.retryable, retryable, "{answer:?}: {e}");
        assert!(e.reason.contains(contains), "{answer:?}: {e}");
    }
    // Ours were as documented; a request for another app is refused by the gateway, for good
    assert!(fake.refused.lock().unwrap().is_empty());
    let other = oms::payments::clients::AlipayRefunds {
        app_id: "2021000000009999".into(),
        ..alipay
    };
    let e = other
        .refund("alipay", "2026112722001400009", cny(100), "rf-o")
        .await
        .unwrap_err();
    assert!(!e.retryable && e.reason.contains("40002"), "{e}");
    assert_eq!(fake.refused.lock().unwrap().as_slice(), ["app_id"]);
}

// ---------------------------------------------------------------------------------------------
// Kuaidi100 electronic waybills

fn waybill_request(order: &str) -> oms::shipping::WaybillRequest {
    oms::shipping::WaybillRequest {
        carrier: "zto".into(),
        prefix: String::new(),
        order: oms::domain::OrderId::parse(order).unwrap(),
        warehouse: oms::domain::WarehouseId::parse("nj").unwrap(),
        sender: oms::shipping::Party {
            name: "Nanjing DC".into(),
            mobile: "+862584000000".into(),
            address: "88 Longpan Rd, Nanjing".into(),
        },
        recipient: oms::shipping::Party {
            name: "Li Lei".into(),
            mobile: "+8613800000000".into(),
            address: "Jiangsu Nanjing 1 Zhongshan Rd".into(),
        },
        cargo: "TEA-001 x2".into(),
        count: 2,
        weight_grams: 500,
    }
}

async fn kuaidi100_client() -> (
    Arc<oms_tests::fake_kuaidi100::Fake>,
    oms::shipping::waybills::Kuaidi100Waybills,
) {
    let (fake, url) = oms_tests::fake_kuaidi100::start().await;
    let client = oms::shipping::waybills::Kuaidi100Waybills {
        carrier: "zto".into(),
        kuaidicom: "zhongtong".into(),
        base_url: url,
        account: oms_tests::fake_kuaidi100::account(),
        http: HttpsClient::new(Duration::from_secs(5)).unwrap(),
    };
    (fake, client)
}

#[tokio::test]
async fn a_waybill_is_ordered_as_documented_and_the_same_parcel_gets_the_same_number() {
    use oms::shipping::CarrierApi;
    let (fake, client) = kuaidi100_client().await;
    let id = oms::domain::OrderId::generate().to_string();
    let n = client.waybill(&waybill_request(&id)).await.unwrap();
    assert_eq!(client.waybill(&waybill_request(&id)).await.unwrap(), n);
    assert!(
        fake.refused.lock().unwrap().is_empty(),
        "{:?}",
        fake.refused.lock().unwrap()
    );
    let p = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(p["kuaidicom"], "zhongtong");
    assert_eq!(p["orderId"], format!("{id}-nj"));
    assert_eq!(p["weight"], "0.500");
    assert_eq!(p["recMan"]["printAddr"], "Jiangsu Nanjing 1 Zhongshan Rd");
    // Errors: a server error is retried, a refusal is final, a wrong secret is refused
    for (code, retryable) in [(500u16, true), (503, true), (400, false), (30002, false)] {
        fake.script.lock().unwrap().push(code);
        let other = oms::domain::OrderId::generate().to_string();
        let e = client.waybill(&waybill_request(&other)).await.unwrap_err();
        assert_eq!(e.retryable, retryable, "{code}: {e}");
    }
    let wrong = oms::shipping::waybills::Kuaidi100Waybills {
        account: oms::shipping::waybills::Kuaidi100Account {
            secret: "not-it".into(),
            ..oms_tests::fake_kuaidi100::account()
        },
        ..client
    };
    let e = wrong.waybill(&waybill_request(&id)).await.unwrap_err();
    assert!(!e.retryable && e.reason.contains("sign"), "{e}");
}
