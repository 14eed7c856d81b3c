//! A Kuaidi100-style subscription callback: a form body `param=<json>&sign=<upper-case hex
//! HMAC-SHA256 of param>` (Kuaidi100 itself signs with MD5 of param and a salt; we take the
//! keyed hash the rest of the system uses). `param.lastResult` carries `nu` (the waybill),
//! `state` (the code below) and `data` (newest first, `time` in China time). The expected
//! answer is `{"result":true,"returnCode":"200","message":"成功"}`.
//!
//! State codes: 0 in transit, 1 collected, 2 problem, 3 signed (delivered), 4 refused or
//! returned and signed, 5 out for delivery, 6 on its way back, 7 transferred to another carrier,
//! 8 customs clearance, 10 awaiting customs, 11 in customs, 12 cleared, 13 customs
//! problem, 14 refused by the recipient.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::TrackingUpdate;
use crate::domain::TrackingStatus;
use crate::payments::WebhookError;

pub const ANSWER: &str = r#"{"result":true,"returnCode":"200","message":"成功"}"#;

pub fn sign(param: &str, secret: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(param.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// Checks the form body and returns its `param`.
pub fn verify(body: &[u8], secret: &[u8]) -> Result<String, WebhookError> {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let param = get("param").ok_or_else(|| WebhookError::MalformedSignature("no param".into()))?;
    let sign = get("sign").ok_or_else(|| WebhookError::MalformedSignature("no sign".into()))?;
    let given = hex::decode(sign.trim())
        .map_err(|_| WebhookError::MalformedSignature("sign is not hex".into()))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(param.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)?;
    Ok(param)
}

pub fn map_state(state: &str) -> Option<TrackingStatus> {
    use TrackingStatus::*;
    Some(match state {
        "0" | "7" | "8" | "10" | "11" | "12" => InTransit,
        "1" => PickedUp,
        "2" | "13" => Exception,
        "3" => Delivered,
        "4" => Returned,
        "5" => OutForDelivery,
        "6" | "14" => Returning,
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Param {
    last_result: LastResult,
}
#[derive(Deserialize)]
struct LastResult {
    nu: String,
    state: String,
    #[serde(default)]
    data: Vec<Item>,
}
#[derive(Deserialize)]
struct Item {
    time: String,
}

fn china_time(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    let cst = FixedOffset::east_opt(8 * 3600)?;
    cst.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

pub fn parse(param: &str) -> Result<TrackingUpdate, WebhookError> {
    let p: Param =
        serde_json::from_str(param).map_err(|e| WebhookError::invalid("param", e.to_string()))?;
    let status = map_state(&p.last_result.state).ok_or_else(|| {
        WebhookError::invalid(
            "param.lastResult.state",
            format!("{:?} is not a Kuaidi100 state", p.last_result.state),
        )
    })?;
    let at = p
        .last_result
        .data
        .iter()
        .filter_map(|d| china_time(&d.time))
        .max()
        .ok_or_else(|| WebhookError::invalid("param.lastResult.data", "no event time"))?;
    Ok(TrackingUpdate {
        tracking_number: p.last_result.nu,
        status,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_state_maps() {
        for s in [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "10", "11", "12", "13", "14",
        ] {
            assert!(map_state(s).is_some(), "{s}");
        }
        assert_eq!(map_state("3"), Some(TrackingStatus::Delivered));
        assert_eq!(map_state("99"), None);
    }

    #[test]
    fn times_are_china_time() {
        let p = r#"{"lastResult":{"nu":"7530001","state":"0","data":[{"time":"2026-11-27 12:00:00"}]}}"#;
        assert_eq!(
            parse(p).unwrap().at.to_rfc3339(),
            "2026-11-27T04:00:00+00:00"
        );
    }
}
