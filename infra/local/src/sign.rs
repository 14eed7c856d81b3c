//! Playing the providers and couriers: request bodies and headers signed as they sign them. The
//! demo and the tests use these; the keys are the local runtime's development ones.

use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

use crate::{DEMO_ALIPAY_PRIVATE_KEY, DEV_SECRET};

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `k=v&k=v`, form-encoded.
pub fn form_body(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Stripe-Signature` header for `body` at unix time `t`.
pub fn stripe_header(body: &str, secret: &str, t: i64) -> String {
    oms::payments::stripe::sign(body.as_bytes(), secret.as_bytes(), t)
}

/// A `payment_intent.succeeded` event for an order.
pub fn stripe_paid(
    event_id: &str,
    order_id: &str,
    amount: i64,
    currency: &str,
) -> serde_json::Value {
    serde_json::json!({"id": event_id, "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
        "data": {"object": {"id": format!("pi_{event_id}"), "amount": amount, "amount_received": amount,
                            "currency": currency, "metadata": {"order_id": order_id}}}})
}

/// An Alipay-style notification body, signed RSA2 with the demo key.
pub fn alipay_form(params: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let content = oms::payments::alipay::signing_content(&owned);
    let key = rsa::PrivateKey::from_pkcs8_pem(DEMO_ALIPAY_PRIVATE_KEY)
        .expect("the demo key is valid PKCS#8");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let sig = base64::engine::general_purpose::STANDARD
        .encode(signer.sign(content.as_bytes()).to_bytes());
    format!(
        "{}&sign_type=RSA2&sign={}",
        form_body(params),
        urlencode(&sig)
    )
}

/// An AfterShip-style update and its `aftership-hmac-sha256` header.
pub fn aftership(tracking: &str, tag: &str, at: DateTime<Utc>) -> (String, String) {
    aftership_with(tracking, tag, at, DEV_SECRET.as_bytes())
}

/// [`aftership`], signed with the account's webhook `secret`.
pub fn aftership_with(
    tracking: &str,
    tag: &str,
    at: DateTime<Utc>,
    secret: &[u8],
) -> (String, String) {
    let body = serde_json::json!({"event": "tracking_update", "msg": {
        "tracking_number": tracking, "tag": tag,
        "checkpoints": [{"checkpoint_time": at.to_rfc3339(), "tag": tag, "message": tag}]}})
    .to_string();
    let header = oms::shipping::aftership::sign(body.as_bytes(), secret);
    (body, header)
}

/// A Kuaidi100 push to our `carrier`'s endpoint (`param` and `sign`), its time in China time,
/// signed as Kuaidi100 signs it: `md5(param + salt)` in upper-case hex, with the salt the
/// waybill's subscription carried.
pub fn kuaidi100(carrier: &str, tracking: &str, state: &str, at: DateTime<Utc>) -> String {
    kuaidi100_with(carrier, tracking, state, at, DEV_SECRET.as_bytes())
}

/// [`kuaidi100`], with the salt derived from the carrier's webhook `secret`.
pub fn kuaidi100_with(
    carrier: &str,
    tracking: &str,
    state: &str,
    at: DateTime<Utc>,
    secret: &[u8],
) -> String {
    let china = at
        .with_timezone(&FixedOffset::east_opt(8 * 3600).expect("+08:00 is valid"))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let param = serde_json::json!({"status": "polling", "message": "", "lastResult": {
        "message": "ok", "state": state, "ischeck": "0", "com": carrier, "nu": tracking,
        "data": [{"context": "update", "time": china, "ftime": china}]}})
    .to_string();
    let salt = oms::shipping::kuaidi100::salt(secret, carrier, tracking);
    let sign = oms::shipping::kuaidi100::sign(&param, &salt);
    form_body(&[("param", &param), ("sign", &sign)])
}
