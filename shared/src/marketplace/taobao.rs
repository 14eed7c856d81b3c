//! The Taobao Open Platform (TOP), telling Taobao/Tmall a trade's parcel left:
//! `taobao.logistics.offline.send` (自己联系物流: "the trade's status becomes seller-shipped";
//! parameters `tid`, `out_sid` the waybill, `company_code` the carrier's TOP code).
//!
//! A call is a form POST to the gateway (`https://eco.taobao.com/router/rest`) with the common
//! parameters `method`, `app_key`, `session` (the shop's authorisation), `timestamp`
//! (`yyyy-MM-dd HH:mm:ss` in GMT+8; TOP allows ten minutes of skew), `format=json`, `v=2.0`,
//! `sign_method=md5` and `sign`: every other parameter sorted by name, each name followed by its
//! value, wrapped in the app secret on both sides, MD5, upper-case hex (TOP's "API调用方法详解";
//! the official SDKs' `top/api/base.py`: `md5(secret + k1v1k2v2... + secret).hexdigest().upper()`).
//!
//! The answer is `{"logistics_offline_send_response": {"shipping": {"is_success": true}}}` or
//! `{"error_response": {"code", "msg", "sub_code", "sub_msg"}}`. Code 7 (call limit) and 15 with
//! an `isp.` sub-code (the platform's own failure), an HTTP 5xx and no answer are worth asking
//! again; anything else (a bad session, a bad signature, an `isv.` refusal) is final and the
//! order waits for a person, except a refusal that says the trade is shipped already
//! (a repeated call after a lost answer), which is what we asked for.

use async_trait::async_trait;
use chrono::{FixedOffset, Utc};
use md5::{Digest, Md5};

use super::{MarketplaceApi, MarketplaceError, MarketplaceShipment};
use crate::adapters::https::HttpsClient;

pub const GATEWAY: &str = "https://eco.taobao.com/router/rest";
pub const METHOD: &str = "taobao.logistics.offline.send";

/// TOP's `md5` signature of `params` (the `sign` parameter itself left out).
pub fn sign(params: &[(&str, String)], secret: &str) -> String {
    let mut sorted: Vec<&(&str, String)> = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Md5::new();
    h.update(secret.as_bytes());
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update(v.as_bytes());
    }
    h.update(secret.as_bytes());
    hex::encode_upper(h.finalize())
}

pub struct TaobaoTop {
    pub channel: String,
    pub base_url: String,
    pub app_key: String,
    pub app_secret: String,
    pub session: String,
    pub http: HttpsClient,
}

impl TaobaoTop {
    fn fail(&self, reason: String, retryable: bool) -> MarketplaceError {
        MarketplaceError {
            channel: self.channel.clone(),
            reason,
            retryable,
        }
    }
}

#[async_trait]
impl MarketplaceApi for TaobaoTop {
    async fn shipped(&self, s: &MarketplaceShipment) -> Result<(), MarketplaceError> {
        let company = s.company_code.clone().ok_or_else(|| {
            self.fail(
                format!("carriers.{}.taobao_code is not set", s.carrier),
                false,
            )
        })?;
        let china = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
        let timestamp = Utc::now()
            .with_timezone(&china)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let mut params: Vec<(&str, String)> = vec![
            ("method", METHOD.into()),
            ("app_key", self.app_key.clone()),
            ("session", self.session.clone()),
            ("timestamp", timestamp),
            ("format", "json".into()),
            ("v", "2.0".into()),
            ("sign_method", "md5".into()),
            ("tid", s.trade.clone()),
            ("out_sid", s.tracking_number.clone()),
            ("company_code", company),
        ];
        let signature = sign(&params, &self.app_secret);
        params.push(("sign", signature));
        let body = params
            .iter()
            .fold(
                form_urlencoded::Serializer::new(String::new()),
                |mut f, (k, v)| {
                    f.append_pair(k, v);
                    f
                },
            )
            .finish();
        let answer = self
            .http
            .post(
                &self.base_url,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8".to_owned(),
                )],
                body,
            )
            .await
            .map_err(|e| self.fail(e, true))?;
        if answer.status >= 500 {
            return Err(self.fail(format!("HTTP {}", answer.status), true));
        }
        let v: serde_json::Value = serde_json::from_str(&answer.body).map_err(|e| {
            self.fail(
                format!("HTTP {}: unreadable answer: {e}", answer.status),
                true,
            )
        })?;
        if v["logistics_offline_send_response"]["shipping"]["is_success"] == true {
            return Ok(());
        }
        let e = &v["error_response"];
        let code = e["code"].as_i64().unwrap_or_default();
        let sub_code = e["sub_code"].as_str().unwrap_or_default();
        let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
        let reason = format!(
            "{METHOD}: code {code} {} {sub_code} {sub_msg}",
            e["msg"].as_str().unwrap_or_default()
        );
        if sub_msg.contains("已发货") || sub_msg.to_lowercase().contains("already") {
            return Ok(());
        }
        let retryable = code == 7 || (code == 15 && sub_code.starts_with("isp."));
        Err(self.fail(reason, retryable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_a_worked_example_of_tops_md5_method() {
        // The worked example of TOP's md5 method (secret "test"), as published with the
        // signing rules: parameters sorted, names and values joined, the secret on both sides.
        let params = [
            ("method", "taobao.user.seller.get".to_owned()),
            ("app_key", "test".to_owned()),
            ("session", "test".to_owned()),
            ("timestamp", "2013-05-06 13:52:03".to_owned()),
            ("format", "xml".to_owned()),
            ("v", "2.0".to_owned()),
            ("sign_method", "md5".to_owned()),
            ("fields", "nick".to_owned()),
        ];
        assert_eq!(sign(&params, "test"), "72CB4D809B375A54502C09360D879C64");
        // The sign parameter and empty values are left out.
        let mut with_sign = params.to_vec();
        with_sign.push(("sign", "X".into()));
        with_sign.push(("empty", String::new()));
        assert_eq!(sign(&with_sign, "test"), sign(&params, "test"));
    }
}
