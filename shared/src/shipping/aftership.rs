//! An AfterShip-style tracking webhook: JSON `{"event": "tracking_update", "msg": {"tracking_number",
//! "tag", "checkpoints": [{"checkpoint_time", "tag", ...}]}}`, signed in the header
//! `aftership-hmac-sha256` with the base64 HMAC-SHA256 of the raw body. The answer is any 2xx.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::TrackingUpdate;
use crate::domain::TrackingStatus;
use crate::payments::WebhookError;

pub const SIGNATURE_HEADER: &str = "aftership-hmac-sha256";

pub fn sign(body: &[u8], secret: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn verify(header: Option<&str>, body: &[u8], secret: &[u8]) -> Result<(), WebhookError> {
    let header = header
        .ok_or_else(|| WebhookError::MalformedSignature(format!("no {SIGNATURE_HEADER} header")))?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| WebhookError::MalformedSignature("not base64".into()))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)
}

/// AfterShip's tags in our vocabulary.
pub fn map_tag(tag: &str) -> Option<TrackingStatus> {
    use TrackingStatus::*;
    Some(match tag {
        "Pending" => Pending,
        "InfoReceived" => InfoReceived,
        "InTransit" => InTransit,
        "OutForDelivery" => OutForDelivery,
        "AttemptFail" => AttemptFail,
        "Delivered" => Delivered,
        "AvailableForPickup" => AvailableForPickup,
        "Exception" => Exception,
        "Expired" => Expired,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct Hook {
    msg: Msg,
}
#[derive(Deserialize)]
struct Msg {
    tracking_number: String,
    tag: String,
    #[serde(default)]
    checkpoints: Vec<Checkpoint>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}
#[derive(Deserialize)]
struct Checkpoint {
    checkpoint_time: DateTime<chrono::FixedOffset>,
}

pub fn parse(body: &[u8]) -> Result<TrackingUpdate, WebhookError> {
    let h: Hook =
        serde_json::from_slice(body).map_err(|e| WebhookError::invalid("body", e.to_string()))?;
    let status = map_tag(&h.msg.tag).ok_or_else(|| {
        WebhookError::invalid(
            "msg.tag",
            format!("{:?} is not an AfterShip tag", h.msg.tag),
        )
    })?;
    // The event time is the newest checkpoint's (the order AfterShip lists them in varies).
    let at = h
        .msg
        .checkpoints
        .iter()
        .map(|c| c.checkpoint_time.with_timezone(&Utc))
        .max()
        .or(h.msg.updated_at)
        .ok_or_else(|| WebhookError::invalid("msg.checkpoints", "no checkpoint time"))?;
    Ok(TrackingUpdate {
        tracking_number: h.msg.tracking_number,
        status,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aftership_tag_maps() {
        for tag in [
            "Pending",
            "InfoReceived",
            "InTransit",
            "OutForDelivery",
            "AttemptFail",
            "Delivered",
            "AvailableForPickup",
            "Exception",
            "Expired",
        ] {
            assert!(map_tag(tag).is_some(), "{tag}");
        }
        assert_eq!(map_tag("Teleported"), None);
    }

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let body = br#"{"msg":{}}"#;
        let sig = sign(body, b"s");
        assert!(verify(Some(&sig), body, b"s").is_ok());
        assert!(verify(Some(&sig), b"{}", b"s").is_err());
        assert!(verify(None, body, b"s").is_err());
    }
}
