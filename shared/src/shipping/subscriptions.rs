//! Tracking subscriptions: once a parcel has a waybill, the carrier's tracking service is asked
//! to push its progress to `POST /webhooks/logistics/{carrier}`. Which service follows the
//! carrier's `vocabulary`: the vocabulary its pushes arrive in.
//!
//! **Kuaidi100** (订阅接口; the reference client is `kuaidi100-api/python-demo`
//! `code/subscribe.py`): `POST https://poll.kuaidi100.com/poll`, form-encoded `schema=json` and
//! `param`, the JSON `{"company", "number", "key", "parameters": {"callbackurl", "salt",
//! "resultv2", "phone"}}` (`phone` "顺丰单号必填": SF needs the recipient's phone). No signature:
//! the account's `key` inside `param` is the credential. The answer is `{"result", "returnCode",
//! "message"}`: `200` 提交成功; `501` 重复订阅 (the number is already being followed: done); `500`
//! a server error (worth asking again); `600` not a valid subscriber (the key), `601` the key
//! expired, `700` bad subscription data or callback URL, `701` a refused carrier, `702` the
//! carrier of the number is unknown: final, a person looks at it. The `salt` is the waybill's own
//! ([`super::kuaidi100::salt`]): Kuaidi100 signs every push to it with `md5(param + salt)`.
//!
//! **AfterShip** (Tracking API 2025-07, "Create a tracking"; the reference client is the
//! official `aftership-tracking-sdk`): `POST https://api.aftership.com/tracking/2025-07/trackings`
//! with the header `as-api-key` and the flat JSON body `{"tracking_number", "slug",
//! "order_id"}`. A 2xx is made; `400` with `meta.code` `4003` "Tracking already exists." is done
//! too; `429` (rate limit) and `5xx` are worth asking again; any other answer (`401` a bad key,
//! `4010` a bad slug, `4012` a courier not recognised) is final. Pushes are set up once per
//! account in AfterShip's webhook settings, signed with the account's webhook secret
//! ([`super::aftership`]).

use crate::adapters::https::HttpsClient;

use super::{CarrierError, TrackingSubscription};

/// The Kuaidi100 subscription API's base URL.
pub const KUAIDI100_POLL_BASE: &str = "https://poll.kuaidi100.com";
/// The AfterShip API's base URL.
pub const AFTERSHIP_BASE: &str = "https://api.aftership.com";
/// The AfterShip Tracking API version the client speaks.
pub const AFTERSHIP_VERSION: &str = "2025-07";

fn fail(carrier: &str, reason: String, retryable: bool) -> CarrierError {
    CarrierError {
        carrier: carrier.to_owned(),
        reason,
        retryable,
    }
}

/// The callback URL a carrier's pushes go to, under the API's public base URL.
pub fn callback_url(public_url: &str, carrier: &str) -> String {
    format!(
        "{}/webhooks/logistics/{carrier}",
        public_url.trim_end_matches('/')
    )
}

pub struct Kuaidi100Poll {
    pub carrier: String,
    /// Kuaidi100's code of the carrier (`zhongtong`, `shunfeng`).
    pub kuaidicom: String,
    pub base_url: String,
    /// The account's `key` (the same as the waybill API's).
    pub key: String,
    /// The carrier's webhook secret, from which each waybill's salt is derived.
    pub webhook_secret: Vec<u8>,
    pub callback_url: String,
    pub http: HttpsClient,
}

impl Kuaidi100Poll {
    pub async fn subscribe(&self, sub: &TrackingSubscription) -> Result<(), CarrierError> {
        let mut parameters = serde_json::json!({
            "callbackurl": self.callback_url,
            "salt": super::kuaidi100::salt(&self.webhook_secret, &self.carrier, &sub.tracking_number),
            "resultv2": "1",
        });
        if let Some(phone) = &sub.phone {
            parameters["phone"] = serde_json::Value::String(phone.clone());
        }
        let param = serde_json::json!({
            "company": self.kuaidicom,
            "number": sub.tracking_number,
            "key": self.key,
            "parameters": parameters,
        })
        .to_string();
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("schema", "json")
            .append_pair("param", &param)
            .finish();
        let answer = self
            .http
            .post(
                &format!("{}/poll", self.base_url.trim_end_matches('/')),
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                body,
            )
            .await
            .map_err(|e| fail(&self.carrier, e, true))?;
        if answer.status >= 500 {
            return Err(fail(
                &self.carrier,
                format!("subscription: HTTP {}", answer.status),
                true,
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&answer.body).map_err(|e| {
            fail(
                &self.carrier,
                format!("subscription: unreadable answer: {e}"),
                true,
            )
        })?;
        let code = match &v["returnCode"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = v["message"].as_str().unwrap_or_default();
        match code.as_str() {
            "200" | "501" => Ok(()),
            "500" => Err(fail(
                &self.carrier,
                format!("subscription: returnCode 500: {message}"),
                true,
            )),
            c => Err(fail(
                &self.carrier,
                format!("subscription refused: returnCode {c}: {message}"),
                false,
            )),
        }
    }
}

pub struct AfterShipTrackings {
    pub carrier: String,
    /// AfterShip's code of the courier (`sf-express`).
    pub slug: String,
    pub base_url: String,
    pub api_key: String,
    pub http: HttpsClient,
}

impl AfterShipTrackings {
    pub async fn subscribe(&self, sub: &TrackingSubscription) -> Result<(), CarrierError> {
        let body = serde_json::json!({
            "tracking_number": sub.tracking_number,
            "slug": self.slug,
            "order_id": sub.order.to_string(),
        })
        .to_string();
        let answer = self
            .http
            .post(
                &format!(
                    "{}/tracking/{AFTERSHIP_VERSION}/trackings",
                    self.base_url.trim_end_matches('/')
                ),
                &[
                    ("as-api-key", self.api_key.clone()),
                    ("content-type", "application/json".to_owned()),
                ],
                body,
            )
            .await
            .map_err(|e| fail(&self.carrier, e, true))?;
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
        let meta_code = v["meta"]["code"].as_i64().unwrap_or_default();
        let message = v["meta"]["message"].as_str().unwrap_or_default();
        let reason = format!(
            "tracking: HTTP {} meta.code {meta_code}: {message}",
            answer.status
        );
        match (answer.status, meta_code) {
            (400, 4003) => Ok(()),
            (429, _) | (500.., _) => Err(fail(&self.carrier, reason, true)),
            _ => Err(fail(&self.carrier, reason, false)),
        }
    }
}
