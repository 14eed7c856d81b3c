//! A stand-in for the Taobao Open Platform's gateway (TOP, `/router/rest`), written from TOP's
//! documentation ("API调用方法详解" and `taobao.logistics.offline.send`), not from our client:
//! it checks the common parameters, the timestamp's format and skew (at most ten minutes, GMT+8),
//! and the `md5` signature computed here as the official SDKs compute it (`top/api/base.py`:
//! the parameters sorted, `secret + k1v1k2v2... + secret`, MD5, upper case; there is no TOP SDK
//! in a registry we reach), then answers as TOP answers: `logistics_offline_send_response`, or
//! an `error_response` with TOP's codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::json;

pub const APP_KEY: &str = "12345678";
pub const APP_SECRET: &str = "top-test-secret";
pub const SESSION: &str = "6100e23c-shop-session";

#[derive(Default)]
pub struct Top {
    /// Trades marked shipped: (tid, out_sid, company_code).
    pub shipped: Mutex<Vec<(String, String, String)>>,
    pub calls: Mutex<usize>,
    /// `(code, sub_code)` error answers to give instead, in turn.
    pub script: Mutex<Vec<(i64, &'static str)>>,
    pub refused: Mutex<Vec<String>>,
}

fn documented_sign(params: &HashMap<String, String>, secret: &str) -> String {
    use sha2::Digest as _;
    let mut keys: Vec<&String> = params
        .keys()
        .filter(|k| *k != "sign" && !params[*k].is_empty())
        .collect();
    keys.sort();
    let mut text = secret.to_owned();
    for k in keys {
        text.push_str(k);
        text.push_str(&params[k]);
    }
    text.push_str(secret);
    hex::encode_upper(md5::Md5::digest(text.as_bytes()))
}

fn error(code: i64, msg: &str, sub_code: &str, sub_msg: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        json!({"error_response": {"code": code, "msg": msg, "sub_code": sub_code,
                                  "sub_msg": sub_msg, "request_id": "top-req-1"}})
        .to_string(),
    )
}

async fn rest(State(top): State<Arc<Top>>, body: String) -> (StatusCode, String) {
    *top.calls.lock().unwrap() += 1;
    let p: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let refuse = |why: String| {
        top.refused.lock().unwrap().push(why);
    };
    if get("app_key") != APP_KEY {
        refuse("app_key".into());
        return error(29, "Invalid app Key", "", "");
    }
    if get("sign_method") != "md5" || get("sign") != documented_sign(&p, APP_SECRET) {
        refuse("sign".into());
        return error(25, "Invalid signature", "", "");
    }
    if get("session") != SESSION {
        refuse("session".into());
        return error(27, "Invalid session", "session-not-exist", "");
    }
    let china = FixedOffset::east_opt(8 * 3600).unwrap();
    let fresh = NaiveDateTime::parse_from_str(&get("timestamp"), "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|t| china.from_local_datetime(&t).single())
        .is_some_and(|t| (Utc::now() - t.with_timezone(&Utc)).num_minutes().abs() <= 10);
    if !fresh {
        refuse("timestamp".into());
        return error(31, "Invalid timestamp", "", "");
    }
    if get("v") != "2.0" || get("format") != "json" {
        refuse("v or format".into());
        return error(32, "Invalid format", "", "");
    }
    if get("method") != "taobao.logistics.offline.send" {
        refuse("method".into());
        return error(22, "Invalid method", "", "");
    }
    let (tid, out_sid, company) = (get("tid"), get("out_sid"), get("company_code"));
    if tid.is_empty() || !tid.chars().all(|c| c.is_ascii_digit()) || out_sid.is_empty() {
        refuse("tid or out_sid".into());
        return error(
            40,
            "Missing required arguments",
            "isv.missing-parameter",
            "tid",
        );
    }
    if !["SF", "ZTO", "YUNDA", "POST"].contains(&company.as_str()) {
        refuse("company_code".into());
        return error(
            15,
            "Remote service error",
            "isv.logistics-company-error",
            "物流公司不存在",
        );
    }
    if let Some((code, sub)) = {
        let mut s = top.script.lock().unwrap();
        (!s.is_empty()).then(|| s.remove(0))
    } {
        return error(code, "scripted", sub, "scripted");
    }
    let mut shipped = top.shipped.lock().unwrap();
    if shipped.iter().any(|(t, o, _)| *t == tid && *o == out_sid) {
        return error(
            15,
            "Remote service error",
            "isv.logistics-offline-service-error:B04",
            "订单已发货",
        );
    }
    shipped.push((tid, out_sid, company));
    (
        StatusCode::OK,
        json!({"logistics_offline_send_response": {"shipping": {"is_success": true},
               "request_id": "top-req-2"}})
        .to_string(),
    )
}

pub async fn start() -> (Arc<Top>, String) {
    let top = Arc::new(Top::default());
    let app = axum::Router::new()
        .route("/router/rest", axum::routing::post(rest))
        .with_state(Arc::clone(&top));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/router/rest",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (top, url)
}

/// What the stand-in takes as the credentials of channel `tmall`.
pub fn credentials() -> HashMap<String, (String, String)> {
    HashMap::from([(
        "tmall".to_owned(),
        (APP_SECRET.to_owned(), SESSION.to_owned()),
    )])
}
