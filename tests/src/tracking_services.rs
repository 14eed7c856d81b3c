//! Stand-ins for the tracking services, written from their documentation, not from our code:
//! each checks a subscription as the service documents it, answers the service's documented
//! codes, and pushes as the service pushes, signed by the formula the service documents,
//! computed here (neither service publishes a signer we can install: Kuaidi100 has no package
//! in a registry we reach, and AfterShip's `aftership-tracking-sdk` signs no webhooks).
//!
//! - Kuaidi100 (api.kuaidi100.com/document, 订阅接口 and 推送接口; reference code
//!   `kuaidi100-api/python-demo` `code/subscribe.py`, `kuaidi100-api/java-demo`
//!   `Subscribe.callBackUrl`): `POST /poll`, form `schema=json&param=<json>`; a push is a form
//!   `param=<json>&sign=<md5(param + salt), 32 upper-case hex digits>` to the subscription's
//!   `callbackurl`, answered `{"result":true,"returnCode":"200","message":"成功"}`.
//! - AfterShip (Tracking API 2025-07, "Create a tracking"; "Webhook signature"):
//!   `POST /tracking/2025-07/trackings` with `as-api-key`, a flat JSON body; `4003` "Tracking
//!   already exists."; a push carries `aftership-hmac-sha256`, the base64 HMAC-SHA256 of the
//!   raw body keyed with the account's webhook secret.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

pub mod kuaidi100 {
    use super::*;
    use sha2::Digest as _;

    /// The account key the stand-in takes (the waybill stand-in's).
    pub const KEY: &str = crate::fake_kuaidi100::KEY;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Subscription {
        pub company: String,
        pub number: String,
        pub callbackurl: String,
        pub salt: String,
        pub phone: Option<String>,
    }

    #[derive(Default)]
    pub struct Poll {
        /// Every subscription request, accepted or not, as `param`.
        pub requests: Mutex<Vec<Value>>,
        /// Accepted subscriptions, once per company and number.
        pub subscriptions: Mutex<Vec<Subscription>>,
        /// `returnCode`s to answer instead, in turn.
        pub script: Mutex<Vec<&'static str>>,
        /// Requests that broke the documented shape.
        pub refused: Mutex<Vec<String>>,
    }

    fn answer(
        code: &str,
        message: &str,
    ) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        let body = json!({"result": code == "200", "returnCode": code, "message": message});
        (
            StatusCode::OK,
            [("content-type", "application/json;charset=UTF-8")],
            body.to_string(),
        )
    }

    async fn poll(
        State(fake): State<Arc<Poll>>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
        let param: Value = form
            .get("param")
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        fake.requests.lock().unwrap().push(param.clone());
        let mut wrong = Vec::new();
        if headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| !v.starts_with("application/x-www-form-urlencoded"))
        {
            wrong.push("content-type");
        }
        if form.get("schema").map(String::as_str) != Some("json") {
            wrong.push("schema");
        }
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let company = s(&param["company"]);
        let number = s(&param["number"]);
        // "一律用小写字母"; "单号的最大长度是32个字符"
        if company.is_empty() || company.chars().any(|c| !c.is_ascii_lowercase()) {
            wrong.push("company");
        }
        if number.is_empty() || number.len() > 32 {
            wrong.push("number");
        }
        let p = &param["parameters"];
        let callbackurl = s(&p["callbackurl"]);
        if !(callbackurl.starts_with("http://") || callbackurl.starts_with("https://")) {
            wrong.push("parameters.callbackurl");
        }
        let salt = s(&p["salt"]);
        if salt.is_empty() || salt.len() > 32 {
            wrong.push("parameters.salt");
        }
        let phone = p["phone"].as_str().map(str::to_owned);
        // "顺丰单号必填"
        if company == "shunfeng" && phone.is_none() {
            wrong.push("parameters.phone");
        }
        if s(&param["key"]) != KEY {
            fake.refused.lock().unwrap().push("key".into());
            return answer("600", "您不是合法的订阅者");
        }
        if !wrong.is_empty() {
            let why = wrong.join(", ");
            fake.refused.lock().unwrap().push(why.clone());
            return answer("700", &format!("订阅方的订阅数据存在错误: {why}"));
        }
        if let Some(code) = {
            let mut script = fake.script.lock().unwrap();
            (!script.is_empty()).then(|| script.remove(0))
        } {
            return answer(code, "scripted");
        }
        let mut subs = fake.subscriptions.lock().unwrap();
        if subs
            .iter()
            .any(|x| x.company == company && x.number == number)
        {
            return answer("501", "重复订阅");
        }
        subs.push(Subscription {
            company,
            number,
            callbackurl,
            salt,
            phone,
        });
        answer("200", "提交成功")
    }

    /// Starts the stand-in on a free port; returns it and its base URL.
    pub async fn start() -> (Arc<Poll>, String) {
        let fake = Arc::new(Poll::default());
        let app = axum::Router::new()
            .route("/poll", axum::routing::post(poll))
            .with_state(Arc::clone(&fake));
        (fake, serve(app).await)
    }

    impl Poll {
        pub fn subscription(&self, number: &str) -> Option<Subscription> {
            self.subscriptions
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.number == number)
                .cloned()
        }

        /// The `param` Kuaidi100 pushes for `sub` in `state` at `at` (China time), as in the
        /// push document's sample.
        pub fn param(sub: &Subscription, state: &str, at: DateTime<Utc>) -> String {
            let china = at
                .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let signed = state == "3";
            json!({"status": if signed { "shutdown" } else { "polling" }, "billstatus": "got",
                "message": "", "autoCheck": "0", "comOld": "", "comNew": "",
                "lastResult": {"message": "ok", "nu": sub.number, "ischeck": if signed { "1" } else { "0" },
                    "condition": "F00", "com": sub.company, "status": "200", "state": state,
                    "data": [{"time": china, "ftime": china, "context": "快件状态更新", "status": "在途",
                              "areaCode": "CN320100000000", "areaName": "江苏,南京市"}]}})
            .to_string()
        }

        /// `md5(param + salt)`, "转32位大写", as Kuaidi100 signs a push.
        pub fn sign(param: &str, salt: &str) -> String {
            hex::encode_upper(md5::Md5::digest(format!("{param}{salt}").as_bytes()))
        }

        /// Posts `param` signed `sign` to the subscription's callback, as Kuaidi100 does.
        pub async fn push_raw(
            http: &reqwest::Client,
            sub: &Subscription,
            param: &str,
            sign: &str,
        ) -> reqwest::Response {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("param", param)
                .append_pair("sign", sign)
                .finish();
            http.post(&sub.callbackurl)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("push")
        }

        /// Pushes `state` for the waybill `number`, signed with its subscription's salt.
        pub async fn push(
            &self,
            http: &reqwest::Client,
            number: &str,
            state: &str,
            at: DateTime<Utc>,
        ) -> reqwest::Response {
            let sub = self
                .subscription(number)
                .expect("a subscription to push to");
            let param = Self::param(&sub, state, at);
            Self::push_raw(http, &sub, &param, &Self::sign(&param, &sub.salt)).await
        }
    }
}

pub mod aftership {
    use super::*;
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};

    pub const API_KEY: &str = "as-test-api-key";
    /// The slugs the stand-in knows (AfterShip's courier list).
    pub const SLUGS: [&str; 3] = ["sf-express", "zto-express", "yunda"];

    #[derive(Default)]
    pub struct Trackings {
        /// Trackings made: (slug, tracking number, order id).
        pub created: Mutex<Vec<(String, String, String)>>,
        pub requests: Mutex<usize>,
        /// (HTTP status, meta.code) to answer instead, in turn.
        pub script: Mutex<Vec<(u16, i64)>>,
        pub refused: Mutex<Vec<String>>,
    }

    fn answer(status: u16, code: i64, message: &str, data: Value) -> (StatusCode, String) {
        let kind = match status {
            200..=299 => "Created",
            401 => "Unauthorized",
            429 => "TooManyRequests",
            500.. => "InternalError",
            _ => "BadRequest",
        };
        (
            StatusCode::from_u16(status).unwrap(),
            json!({"meta": {"code": code, "message": message, "type": kind}, "data": data})
                .to_string(),
        )
    }

    async fn create(
        State(fake): State<Arc<Trackings>>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, String) {
        *fake.requests.lock().unwrap() += 1;
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        if header("as-api-key") != API_KEY {
            fake.refused.lock().unwrap().push("as-api-key".into());
            return answer(401, 401, "The API Key is invalid.", json!({}));
        }
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            fake.refused.lock().unwrap().push("json".into());
            return answer(400, 4001, "Invalid JSON data.", json!({}));
        };
        if !header("content-type").starts_with("application/json") || v.get("tracking").is_some() {
            // 2025-07 takes the tracking flat, not wrapped as the 2024 versions did.
            fake.refused.lock().unwrap().push("body shape".into());
            return answer(400, 4001, "Invalid JSON data.", json!({}));
        }
        let number = v["tracking_number"].as_str().unwrap_or_default().to_owned();
        let slug = v["slug"].as_str().unwrap_or_default().to_owned();
        if number.is_empty() {
            fake.refused.lock().unwrap().push("tracking_number".into());
            return answer(
                400,
                4005,
                "The value of tracking_number is invalid.",
                json!({}),
            );
        }
        if !SLUGS.contains(&slug.as_str()) {
            fake.refused.lock().unwrap().push("slug".into());
            return answer(400, 4010, "The value of slug is invalid.", json!({}));
        }
        if let Some((status, code)) = {
            let mut s = fake.script.lock().unwrap();
            (!s.is_empty()).then(|| s.remove(0))
        } {
            return answer(status, code, "scripted", json!({}));
        }
        let order = v["order_id"].as_str().unwrap_or_default().to_owned();
        let mut made = fake.created.lock().unwrap();
        if made.iter().any(|(s, n, _)| *s == slug && *n == number) {
            return answer(400, 4003, "Tracking already exists.", json!({}));
        }
        made.push((slug.clone(), number.clone(), order));
        let id = format!("as{:022}", made.len());
        answer(
            201,
            201,
            "",
            json!({"id": id, "tracking_number": number, "slug": slug, "tag": "Pending"}),
        )
    }

    pub async fn start() -> (Arc<Trackings>, String) {
        let fake = Arc::new(Trackings::default());
        let app = axum::Router::new()
            .route("/tracking/2025-07/trackings", axum::routing::post(create))
            .with_state(Arc::clone(&fake));
        (fake, serve(app).await)
    }

    /// A `tracking_update` push as AfterShip's webhook specification shows it, and its
    /// `aftership-hmac-sha256`: base64 of HMAC-SHA256 over the raw body with `secret`.
    pub fn push_body(
        number: &str,
        slug: &str,
        tag: &str,
        at: DateTime<Utc>,
        secret: &str,
    ) -> (String, String) {
        let local = at.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
        let body = json!({"event": "tracking_update", "event_id": uuid::Uuid::new_v4().to_string(),
            "is_tracking_first_tag": false, "ts": at.timestamp(),
            "msg": {"id": "as0000000000000000000001", "tracking_number": number, "slug": slug,
                "tag": tag, "subtag": format!("{tag}_001"),
                "checkpoints": [{"checkpoint_time": local.to_rfc3339(), "tag": tag,
                                 "message": "update", "slug": slug}]}})
        .to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        (body, sig)
    }
}
