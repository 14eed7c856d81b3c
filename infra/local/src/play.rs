//! Playing the providers by hand against a running runtime, so that an order reaches the door
//! without writing a signer: `oms-local pay ORDER` sends the payment provider's webhook for what
//! the order still owes, `oms-local courier ORDER STATUS` sends each parcel's courier push. Both
//! are signed as the providers sign them ([`crate::sign`]) with the secrets the runtime checks
//! them with: the environment's (`OMS_PAYMENT_SECRET_<NAME>`, `OMS_CARRIER_SECRET_<NAME>`), else
//! the development ones the runtime falls back to.

use chrono::Utc;
use oms::config::{Config, PaymentKind, Vocabulary};
use serde_json::Value;

use crate::sign;

#[derive(Debug, thiserror::Error)]
pub enum PlayError {
    #[error("{0}")]
    Http(String),
    #[error("{what}: HTTP {status}: {body}")]
    Answer {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Refused(String),
}

/// A running runtime and the staff token it takes.
pub struct Target {
    pub url: String,
    pub staff_token: String,
    pub config: Config,
}

impl Target {
    fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn order(&self, id: &str) -> Result<Value, PlayError> {
        let r = self
            .http()
            .get(format!("{}/orders/{id}", self.url.trim_end_matches('/')))
            .bearer_auth(&self.staff_token)
            .send()
            .await
            .map_err(|e| PlayError::Http(format!("{}: {e}", self.url)))?;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if status != 200 {
            return Err(PlayError::Answer {
                what: format!("GET /orders/{id}"),
                status,
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| PlayError::Http(e.to_string()))
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<String, PlayError> {
        let mut req = self
            .http()
            .post(format!("{}{path}", self.url.trim_end_matches('/')))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req
            .send()
            .await
            .map_err(|e| PlayError::Http(format!("{}: {e}", self.url)))?;
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(PlayError::Answer {
                what: format!("POST {path}"),
                status,
                body,
            });
        }
        Ok(body)
    }
}

fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// Pays what `order` still owes through `provider` (when `None`, the configuration's first
/// Stripe-kind provider, else its first), as that provider's webhook. Returns what was done,
/// for the terminal.
pub async fn pay(t: &Target, order: &str, provider: Option<&str>) -> Result<String, PlayError> {
    let o = t.order(order).await?;
    let id = o["id"].as_str().unwrap_or(order).to_owned();
    let total = o["total"]["minor"].as_i64().unwrap_or_default();
    let currency = o["total"]["currency"].as_str().unwrap_or("CNY").to_owned();
    let paid: i64 = o["ledger"]["payments"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["amount"]["currency"] == currency.as_str())
                .filter_map(|p| p["amount"]["minor"].as_i64())
                .sum()
        })
        .unwrap_or_default();
    let owed = total - paid;
    if owed <= 0 {
        return Err(PlayError::Refused(format!(
            "order {id} owes nothing (it is {})",
            o["status"].as_str().unwrap_or("?")
        )));
    }
    let (name, p) = match provider {
        Some(n) => t.config.payments.get_key_value(n).ok_or_else(|| {
            PlayError::Refused(format!("{n} is not a configured payment provider"))
        })?,
        // A card payment (Stripe-kind) unless the configuration has none.
        None => t
            .config
            .payments
            .iter()
            .find(|(_, p)| p.kind == PaymentKind::Stripe)
            .or_else(|| t.config.payments.iter().next())
            .ok_or_else(|| PlayError::Refused("no payment provider is configured".into()))?,
    };
    let secrets = crate::dev_secrets(&t.config);
    let tail = uuid::Uuid::new_v4().simple().to_string();
    match p.kind {
        PaymentKind::Stripe => {
            let secret = secrets
                .hmac
                .get(name)
                .and_then(|s| s.first())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            let event =
                sign::stripe_paid(&format!("evt_{tail}"), &id, owed, &currency.to_lowercase())
                    .to_string();
            let header = sign::stripe_header(&event, &secret, Utc::now().timestamp());
            t.post(
                &format!("/webhooks/payment/{name}"),
                "application/json",
                &[("stripe-signature", header)],
                event,
            )
            .await?;
            Ok(format!(
                "paid {} {currency} for order {id} through {name} (payment_intent.succeeded, pi_evt_{tail})",
                decimal(owed)
            ))
        }
        PaymentKind::Alipay => {
            let number = o["number"].as_str().ok_or_else(|| {
                PlayError::Refused(format!(
                    "order {id} has no number yet: Alipay pays by number"
                ))
            })?;
            let total = decimal(owed);
            let trade_no = format!("2026{}", &tail[..16]);
            let notify = format!("ntf_{tail}");
            let app_id = p.app_id.clone().unwrap_or_default();
            let params = [
                ("notify_id", notify.as_str()),
                ("app_id", app_id.as_str()),
                ("out_trade_no", number),
                ("trade_no", trade_no.as_str()),
                ("trade_status", "TRADE_SUCCESS"),
                ("total_amount", total.as_str()),
            ];
            t.post(
                &format!("/webhooks/payment/{name}"),
                "application/x-www-form-urlencoded",
                &[],
                sign::alipay_form(&params),
            )
            .await?;
            Ok(format!(
                "paid {total} {currency} for order {id} through {name} (TRADE_SUCCESS, trade_no {trade_no})"
            ))
        }
    }
}

/// The statuses `courier` plays, in each vocabulary.
pub const COURIER_STATUSES: [&str; 2] = ["picked_up", "delivered"];

/// Sends every parcel of `order` to `status` as its carrier's tracking service pushes it.
pub async fn courier(t: &Target, order: &str, status: &str) -> Result<String, PlayError> {
    let (kuaidi100_state, aftership_tag) = match status {
        "picked_up" => ("1", "InTransit"),
        "delivered" => ("3", "Delivered"),
        other => {
            return Err(PlayError::Refused(format!(
                "{other} is not one of {}",
                COURIER_STATUSES.join(", ")
            )));
        }
    };
    let o = t.order(order).await?;
    let id = o["id"].as_str().unwrap_or(order).to_owned();
    let parcels: Vec<Value> = o["shipments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["merged_into"].is_null())
        .collect();
    if parcels.is_empty() {
        return Err(PlayError::Refused(format!(
            "order {id} has no parcel yet (it is {}): pay it first",
            o["status"].as_str().unwrap_or("?")
        )));
    }
    let secrets = crate::dev_secrets(&t.config);
    let mut done = Vec::new();
    for parcel in parcels {
        let carrier = parcel["carrier"].as_str().unwrap_or_default().to_owned();
        let waybill = parcel["tracking_number"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let c = t.config.carriers.get(&carrier).ok_or_else(|| {
            PlayError::Refused(format!("{carrier} is not a carrier of this configuration"))
        })?;
        let secret = secrets.carriers.get(&carrier).cloned().unwrap_or_default();
        let path = format!("/webhooks/logistics/{carrier}");
        let at = Utc::now();
        match c.vocabulary {
            Vocabulary::Kuaidi100 => {
                let body = sign::kuaidi100_with(&carrier, &waybill, kuaidi100_state, at, &secret);
                t.post(&path, "application/x-www-form-urlencoded", &[], body)
                    .await?;
            }
            Vocabulary::Aftership => {
                let (body, header) = sign::aftership_with(&waybill, aftership_tag, at, &secret);
                t.post(
                    &path,
                    "application/json",
                    &[(oms::shipping::aftership::SIGNATURE_HEADER, header)],
                    body,
                )
                .await?;
            }
        }
        done.push(format!("{carrier} {waybill}"));
    }
    Ok(format!(
        "order {id}: {status} pushed for {}",
        done.join(", ")
    ))
}
