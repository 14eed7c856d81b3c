//! A Stripe-compatible webhook: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each `v1`
//! an HMAC-SHA256 of `"<t>.<raw body>"` with the endpoint secret. Any matching `v1` under any of
//! our secrets passes (both sides can rotate); the comparison is constant-time; a timestamp
//! further than the tolerance from now is refused (replays of old captures).
//!
//! Events: `payment_intent.succeeded`, `payment_intent.payment_failed` (amount, currency and
//! `metadata.order_id` of the payment intent) and `charge.refunded` (`amount_refunded`, the total
//! refunded so far, of the charge's `payment_intent`).

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{EventKind, OrderRef, PaymentEvent, WebhookError};
use crate::domain::{Currency, Money, OrderId};

/// Checks the signature header against the raw body. Nothing is parsed before this passes.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[Vec<u8>],
    tolerance_secs: i64,
    now_unix: i64,
) -> Result<(), WebhookError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| WebhookError::MalformedSignature("no t=<unix time>".into()))?;
    if sigs.is_empty() {
        return Err(WebhookError::MalformedSignature("no v1 signature".into()));
    }
    let age = now_unix - t;
    if age.abs() > tolerance_secs {
        return Err(WebhookError::Stale(age));
    }
    for secret in secrets {
        for sig in &sigs {
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

/// The header a sender computes (tests and the demo sign with it).
pub fn sign(body: &[u8], secret: &[u8], t: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}
#[derive(Deserialize)]
struct Data {
    object: Object,
}
#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    amount_received: Option<i64>,
    #[serde(default)]
    amount_refunded: Option<i64>,
    #[serde(default)]
    amount_captured: Option<i64>,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    /// On a charge: the payment intent it belongs to.
    #[serde(default)]
    payment_intent: Option<String>,
}

/// Reads a verified body. `Ok(None)` for event types we do not act on.
pub fn parse(provider: &str, body: &[u8]) -> Result<Option<PaymentEvent>, WebhookError> {
    let e: Event =
        serde_json::from_slice(body).map_err(|e| WebhookError::invalid("body", e.to_string()))?;
    let (kind, amount) = match e.kind.as_str() {
        "payment_intent.succeeded" => (
            EventKind::Succeeded,
            e.data.object.amount_received.or(e.data.object.amount),
        ),
        // The same money as `payment_intent.succeeded`, reported on the charge: one payment,
        // keyed by its intent, whichever of the two arrives first.
        "charge.succeeded" => (
            EventKind::Succeeded,
            e.data.object.amount_captured.or(e.data.object.amount),
        ),
        "payment_intent.payment_failed" => (EventKind::Failed, e.data.object.amount),
        "charge.refunded" => (EventKind::Refunded, e.data.object.amount_refunded),
        _ => return Ok(None),
    };
    let amount =
        amount.ok_or_else(|| WebhookError::invalid("data.object.amount", "is required"))?;
    let currency = Currency::parse(&e.data.object.currency.to_uppercase())
        .map_err(|err| WebhookError::invalid("data.object.currency", err.0))?;
    let order = e
        .data
        .object
        .metadata
        .get("order_id")
        .ok_or_else(|| WebhookError::invalid("data.object.metadata.order_id", "is required"))?;
    let order = OrderId::parse(order)
        .map_err(|err| WebhookError::invalid("data.object.metadata.order_id", err.0))?;
    Ok(Some(PaymentEvent {
        provider: provider.into(),
        event_id: e.id,
        order: OrderRef::Id(order),
        kind,
        // The payment's identity is its intent: a charge (succeeded or refunded) names the
        // intent it belongs to.
        reference: if e.kind.starts_with("charge.") {
            e.data.object.payment_intent.unwrap_or(e.data.object.id)
        } else {
            e.data.object.id
        },
        amount: Money {
            minor: amount,
            currency,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn a_correct_signature_passes_and_any_other_fails() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(body, b"whsec_a", NOW);
        assert!(verify(&h, body, &[b"whsec_a".to_vec()], 300, NOW).is_ok());
        assert!(matches!(
            verify(&h, b"{\"id\":\"evt_2\"}", &[b"whsec_a".to_vec()], 300, NOW),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify(&h, body, &[b"whsec_b".to_vec()], 300, NOW),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify("v1=00", body, &[b"whsec_a".to_vec()], 300, NOW),
            Err(WebhookError::MalformedSignature(_))
        ));
    }

    #[test]
    fn any_v1_under_any_secret_passes_while_rotating() {
        let body = b"{}";
        let old = sign(body, b"old", NOW);
        let new = sign(body, b"new", NOW);
        let both = format!("{},{}", old, new.split_once(',').unwrap().1);
        assert!(verify(&both, body, &[b"new".to_vec()], 300, NOW).is_ok());
        assert!(verify(&old, body, &[b"new".to_vec(), b"old".to_vec()], 300, NOW).is_ok());
    }

    #[test]
    fn an_old_timestamp_is_refused() {
        let h = sign(b"{}", b"s", NOW - 301);
        assert!(matches!(
            verify(&h, b"{}", &[b"s".to_vec()], 300, NOW),
            Err(WebhookError::Stale(301))
        ));
    }
}
