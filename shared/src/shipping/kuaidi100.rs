//! Kuaidi100's tracking pushes (推送接口), answered to the subscriptions [`super::waybills`]
//! makes (订阅接口, `POST https://poll.kuaidi100.com/poll`).
//!
//! A push is a form body `param=<json>&sign=<sign>`. When the subscription carried a `salt`,
//! Kuaidi100 signs the push as "md5(param+salt)", "加密后字符串一定要转32位大写" (the push
//! document, api.kuaidi100.com/document/dingyueyuantong; the reference verifier is
//! `kuaidi100-api/java-demo` `Subscribe.callBackUrl`: `SignUtils.sign(param + salt)`, an
//! upper-case MD5 hex). Every subscription we make carries a salt of its own, derived from the
//! carrier's webhook secret and the waybill number ([`salt`]), so a push can be checked without
//! a stored record, and the salt of one waybill tells nothing about another's. `param.lastResult`
//! carries `nu` (the waybill), `state` (the code below) and `data` (newest first, `time` in China
//! time). The expected answer is `{"result":true,"returnCode":"200","message":"成功"}`.
//!
//! State codes: 0 in transit, 1 collected, 2 problem, 3 signed (delivered), 4 refused or
//! returned and signed, 5 out for delivery, 6 on its way back, 7 transferred to another carrier,
//! 8 customs clearance, 10 awaiting customs, 11 in customs, 12 cleared, 13 customs
//! problem, 14 refused by the recipient.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha2::Sha256;

use super::TrackingUpdate;
use crate::domain::TrackingStatus;
use crate::payments::WebhookError;

pub const ANSWER: &str = r#"{"result":true,"returnCode":"200","message":"成功"}"#;

/// The subscription's `salt` for one waybill: 32 hex characters (Kuaidi100's demos describe
/// the salt as "32位自定义字符串") of HMAC-SHA256 over the carrier and the number, keyed with
/// the carrier's webhook secret.
pub fn salt(secret: &[u8], carrier: &str, number: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(b"kuaidi100-salt\0");
    mac.update(carrier.as_bytes());
    mac.update(b"\0");
    mac.update(number.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// `UPPER(HEX(MD5(param + salt)))`: the `sign` of a push.
pub fn sign(param: &str, salt: &str) -> String {
    let mut h = Md5::new();
    h.update(param.as_bytes());
    h.update(salt.as_bytes());
    hex::encode_upper(h.finalize())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Numbered {
    last_result: NumberOnly,
}
#[derive(Deserialize)]
struct NumberOnly {
    nu: String,
}

/// Checks a push to `carrier`'s endpoint and returns its `param`. The waybill number is read
/// from `param` first, to find the salt its subscription carried; nothing else of it is
/// believed before the signature matches.
pub fn verify(body: &[u8], carrier: &str, secret: &[u8]) -> Result<String, WebhookError> {
    use subtle::ConstantTimeEq;
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let param = get("param").ok_or_else(|| WebhookError::MalformedSignature("no param".into()))?;
    let given = get("sign").ok_or_else(|| WebhookError::MalformedSignature("no sign".into()))?;
    let number = serde_json::from_str::<Numbered>(&param)
        .map_err(|_| WebhookError::MalformedSignature("param names no lastResult.nu".into()))?
        .last_result
        .nu;
    let expected = sign(&param, &salt(secret, carrier, &number));
    // Kuaidi100 sends upper case; a receiver that compared case-blind would take the same.
    let given = given.trim().to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(param)
    } else {
        Err(WebhookError::BadSignature)
    }
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
    fn a_push_signed_md5_of_param_and_the_subscription_salt_verifies_and_no_other_does() {
        let param = r#"{"status":"polling","lastResult":{"nu":"75300001","state":"3","data":[]}}"#;
        let salt = salt(b"secret", "zto", "75300001");
        assert_eq!(salt.len(), 32);
        let form = |sign: &str| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("param", param)
                .append_pair("sign", sign)
                .finish()
        };
        // Computed here as Kuaidi100's reference code does: md5Hex(param + salt).toUpperCase()
        let md5 = hex::encode_upper(Md5::digest(format!("{param}{salt}").as_bytes()));
        assert_eq!(
            verify(form(&md5).as_bytes(), "zto", b"secret").unwrap(),
            param
        );
        // Lower case is the same digest.
        assert!(verify(form(&md5.to_lowercase()).as_bytes(), "zto", b"secret").is_ok());
        // Another salt (another secret, carrier or number), a bare MD5, an HMAC: refused.
        for bad in [
            sign(param, &super::salt(b"other", "zto", "75300001")),
            sign(param, &super::salt(b"secret", "sf", "75300001")),
            sign(param, &super::salt(b"secret", "zto", "75300002")),
            sign(param, ""),
            String::new(),
        ] {
            assert!(
                matches!(
                    verify(form(&bad).as_bytes(), "zto", b"secret"),
                    Err(WebhookError::BadSignature)
                ),
                "{bad}"
            );
        }
        assert!(verify(b"param=%7B%7D&sign=AB", "zto", b"secret").is_err());
        assert!(verify(b"sign=AB", "zto", b"secret").is_err());
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
