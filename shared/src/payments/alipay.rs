//! An Alipay-style asynchronous notification: `application/x-www-form-urlencoded` parameters,
//! signed RSA2 (SHA256withRSA, PKCS#1 v1.5) over the parameters sorted by name, without `sign`
//! and `sign_type` and without empty values, joined as `k=v&k=v`. The answer body is exactly
//! `success`. `app_id` must be ours; `out_trade_no` is our order number; `total_amount` is a
//! decimal in yuan; `notify_id` identifies the notification; a notification with `refund_fee`
//! reports a refund.

use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::Sha256;

use super::{EventKind, OrderRef, PaymentEvent, WebhookError};
use crate::domain::{Currency, Money, OrderNumber, parse_decimal_minor};

/// Reads a public key given as PEM or as the bare base64 that Alipay's console shows.
pub fn public_key(text: &str) -> Result<rsa::PublicKey, String> {
    rsa::PublicKey::from_public_key_pem(&pem(text, "PUBLIC KEY")).map_err(|e| e.to_string())
}

/// A key as PEM: as given, or the bare base64 body the Alipay console shows, wrapped.
pub fn pem(text: &str, label: &str) -> String {
    if text.contains("-----BEGIN") {
        text.to_owned()
    } else {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            text.trim()
        )
    }
}

/// The string that is signed: sorted parameters without `sign`, `sign_type` and empty values.
pub fn signing_content(params: &[(String, String)]) -> String {
    let mut kept: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks the signature of a form body and returns its parameters.
pub fn verify(body: &[u8], key: &rsa::PublicKey) -> Result<Vec<(String, String)>, WebhookError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let sign = params
        .iter()
        .find(|(k, _)| k == "sign")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| WebhookError::MalformedSignature("no sign parameter".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sign)
        .map_err(|_| WebhookError::MalformedSignature("sign is not base64".into()))?;
    let signature =
        Signature::try_from(bytes.as_slice()).map_err(|_| WebhookError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(signing_content(&params).as_bytes(), &signature)
        .map_err(|_| WebhookError::BadSignature)?;
    Ok(params)
}

/// Reads verified parameters. `Ok(None)` for notifications we do not act on (a trade that is
/// only created, waiting for the buyer).
pub fn parse(
    provider: &str,
    app_id: &str,
    params: &[(String, String)],
) -> Result<Option<PaymentEvent>, WebhookError> {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let need = |k: &'static str| get(k).ok_or_else(|| WebhookError::invalid(k, "is required"));
    if need("app_id")? != app_id {
        return Err(WebhookError::invalid(
            "app_id",
            "is not this merchant's application",
        ));
    }
    let cny = Currency::parse("CNY").expect("CNY is ISO 4217");
    let money = |k: &'static str| -> Result<Money, WebhookError> {
        let minor = parse_decimal_minor(need(k)?, cny.minor_digits())
            .map_err(|e| WebhookError::invalid(k, e.0))?;
        Ok(Money {
            minor,
            currency: cny,
        })
    };
    let (kind, amount) = if get("refund_fee").is_some() {
        (EventKind::Refunded, money("refund_fee")?)
    } else {
        match need("trade_status")? {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => (EventKind::Succeeded, money("total_amount")?),
            "TRADE_CLOSED" => (EventKind::Failed, money("total_amount")?),
            _ => return Ok(None),
        }
    };
    let number = OrderNumber::parse(need("out_trade_no")?)
        .map_err(|e| WebhookError::invalid("out_trade_no", e.0))?;
    Ok(Some(PaymentEvent {
        provider: provider.into(),
        event_id: need("notify_id")?.to_owned(),
        order: OrderRef::Number(number),
        kind,
        reference: need("trade_no")?.to_owned(),
        amount,
    }))
}
