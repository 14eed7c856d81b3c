//! The `webhooks` step: outbound webhooks to integrators' endpoints (Standard Webhooks).
//!
//! - An order's notification effect (and a low-stock alert) is also an **event** on the
//!   `webhooks` queue ([`publish`]).
//! - The step **fans it out**: one delivery record per endpoint that wants each of its types,
//!   created once (its id is derived from the event, the type and the endpoint, so a replayed
//!   event finds it made), then one `deliver` message each.
//! - A **delivery** loads its record, signs the body with the endpoint's secrets, POSTs it,
//!   records the attempt and decides what follows ([`outbound::after_attempt`]): done, tried
//!   again on the schedule (the sweeper sends due deliveries back to the queue), or the endpoint
//!   disabled with an alert on the `alerts` queue.
//!
//! Records: endpoints (`webhook_endpoint`, written only by staff), their health
//! (`webhook_health`, written by deliveries) and deliveries (`webhook_delivery#<endpoint>`,
//! kept 30 days, due while pending). A delivery is made at least once; receivers dedupe by
//! `webhook-id`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StepError;
use crate::app::{App, queues};
use crate::domain::outbound::{
    self, Delivery, DeliveryState, Endpoint, Health, after_attempt, signature,
};
use crate::domain::{Notification, Status};
use crate::ports::{LowStockAlert, Record, StoreError};

pub const ENDPOINT_KIND: &str = "webhook_endpoint";
pub const HEALTH_KIND: &str = "webhook_health";
pub const DELIVERY_FAMILY: &str = "webhook_delivery";
/// At most this many endpoints (a shop has a handful of integrations).
pub const MAX_ENDPOINTS: usize = 100;
/// A new delivery is attempted at once through the queue; the sweeper sends it again only if
/// it is still untried this long after.
pub const FIRST_ATTEMPT_GRACE_SECONDS: i64 = 60;
/// How long one worker holds an attempt: longer than the endpoint's answer may take
/// (`outbound::TIMEOUT_SECONDS`) and the function's own timeout (30 s). If the worker dies, the
/// sweeper's relay finds the delivery due after it.
pub const ATTEMPT_LEASE_SECONDS: i64 = 60;

pub fn delivery_kind(endpoint: &str) -> String {
    format!("{DELIVERY_FAMILY}#{endpoint}")
}

/// An event: one or more types sharing one body's `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable for the same happening (a replayed effect makes the same id).
    pub id: String,
    pub types: Vec<String>,
    pub timestamp: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// The `webhooks` queue's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookMessage {
    Event(Event),
    Deliver {
        endpoint_id: String,
        delivery_id: String,
    },
}

/// The event types a status change is: always `order.status_changed`, and the named one where
/// there is one.
pub fn order_types(status: Status) -> Vec<String> {
    let named = match status {
        Status::Received => Some("order.created"),
        Status::Paid => Some("order.paid"),
        Status::Shipped => Some("order.shipped"),
        Status::Delivered => Some("order.delivered"),
        Status::Completed => Some("order.completed"),
        Status::Cancelled => Some("order.cancelled"),
        Status::Expired => Some("order.expired"),
        Status::Returned => Some("order.returned"),
        Status::Refunded => Some("order.refunded"),
        _ => None,
    };
    std::iter::once("order.status_changed")
        .chain(named)
        .map(str::to_owned)
        .collect()
}

/// The event of an order's notification (`effect_id` makes its id stable). The body names the
/// order and where it is, never the customer's contact: integrators read more with the API.
pub fn order_event(effect_id: &str, n: &Notification) -> Event {
    Event {
        id: format!("evt_{}_{effect_id}", n.order_id),
        types: order_types(n.status),
        timestamp: n.at,
        data: serde_json::json!({
            "order_id": n.order_id,
            "number": n.number,
            "status": n.status,
            "channel": n.channel,
            "tracking": n.tracking,
        }),
    }
}

pub fn stock_event(alert: &LowStockAlert) -> Event {
    Event {
        id: format!(
            "evt_stock_{}_{}_{}",
            alert.sku,
            alert.warehouse,
            alert.raised_at.timestamp_millis()
        ),
        types: vec!["stock.low".into()],
        timestamp: alert.raised_at,
        data: serde_json::json!({
            "sku": alert.sku,
            "warehouse": alert.warehouse,
            "available": alert.available,
            "safety": alert.safety,
        }),
    }
}

/// How long a process trusts its copy of the endpoint list: a new subscription reaches the
/// other processes within this time (the one that made it at once).
pub const ENDPOINTS_CACHE_SECONDS: u64 = 60;

/// Whether any endpoint wants one of `types`, from a copy of the endpoint list read at most
/// [`ENDPOINTS_CACHE_SECONDS`] ago: with no subscriber, an event costs nothing (no message, no
/// invocation).
async fn wanted(app: &App, types: &[String]) -> Result<bool, StoreError> {
    let fresh = |at: &std::time::Instant| {
        at.elapsed() < std::time::Duration::from_secs(ENDPOINTS_CACHE_SECONDS)
    };
    let cached = app
        .webhook_endpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(at, _)| fresh(at))
        .map(|(_, eps)| eps.clone());
    let eps = match cached {
        Some(eps) => eps,
        None => {
            let eps = endpoints(app).await?;
            *app.webhook_endpoints
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), eps.clone()));
            eps
        }
    };
    Ok(eps.iter().any(|e| types.iter().any(|t| e.wants(t))))
}

/// Puts an event on the `webhooks` queue, if an endpoint wants it.
pub async fn publish(app: &App, event: Event) -> Result<(), StepError> {
    if wanted(app, &event.types).await? {
        app.send(queues::WEBHOOKS, &WebhookMessage::Event(event))
            .await?;
    }
    Ok(())
}

/// Runs one message of the `webhooks` queue.
pub async fn run(app: &App, body: &str) -> Result<(), StepError> {
    let msg: WebhookMessage =
        serde_json::from_str(body).map_err(|e| StepError::Malformed(e.to_string()))?;
    match msg {
        WebhookMessage::Event(e) => fan_out(app, &e).await,
        WebhookMessage::Deliver {
            endpoint_id,
            delivery_id,
        } => deliver(app, &endpoint_id, &delivery_id).await,
    }
}

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn parse<T: serde::de::DeserializeOwned>(r: &Record) -> Result<T, StoreError> {
    serde_json::from_str(&r.doc).map_err(|e| StoreError::Backend(Box::new(e)))
}

pub async fn endpoints(app: &App) -> Result<Vec<Endpoint>, StoreError> {
    app.store
        .records(ENDPOINT_KIND, MAX_ENDPOINTS)
        .await?
        .iter()
        .map(parse)
        .collect()
}

pub async fn endpoint(app: &App, id: &str) -> Result<Option<Endpoint>, StoreError> {
    app.store
        .record(ENDPOINT_KIND, id)
        .await?
        .map(|r| parse(&r))
        .transpose()
}

pub async fn save_endpoint(app: &App, ep: &Endpoint) -> Result<(), StoreError> {
    app.store
        .put_record(&Record {
            kind: ENDPOINT_KIND.into(),
            id: ep.id.clone(),
            doc: json(ep)?,
            due: None,
            expires: None,
        })
        .await?;
    // This process sees the change at once; others within the cache's time.
    *app.webhook_endpoints
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    Ok(())
}

pub async fn health(app: &App, id: &str) -> Result<Health, StoreError> {
    Ok(app
        .store
        .record(HEALTH_KIND, id)
        .await?
        .map(|r| parse(&r))
        .transpose()?
        .unwrap_or_default())
}

pub async fn save_health(app: &App, id: &str, h: &Health) -> Result<(), StoreError> {
    app.store
        .put_record(&Record {
            kind: HEALTH_KIND.into(),
            id: id.into(),
            doc: json(h)?,
            due: None,
            expires: None,
        })
        .await
}

fn delivery_record(d: &Delivery) -> Result<Record, StoreError> {
    Ok(Record {
        kind: delivery_kind(&d.endpoint_id),
        id: d.id.clone(),
        doc: json(d)?,
        due: (d.state == DeliveryState::Pending)
            .then_some(d.next_attempt_at.max(d.attempting_until))
            .flatten(),
        expires: Some(d.created_at + Duration::days(outbound::DELIVERY_LOG_DAYS)),
    })
}

/// The newest deliveries of an endpoint, at most `limit`.
pub async fn deliveries(
    app: &App,
    endpoint: &str,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    app.store
        .records(&delivery_kind(endpoint), limit)
        .await?
        .iter()
        .map(parse)
        .collect()
}

/// `msg_` and 26 hex digits of a hash of the event, the type and the endpoint, and the time
/// first so that an endpoint's log lists newest first.
fn message_id(event: &Event, event_type: &str, endpoint: &str) -> String {
    let h = Sha256::digest(format!("{}|{event_type}|{endpoint}", event.id));
    format!(
        "msg_{:013x}{}",
        event.timestamp.timestamp_millis().max(0),
        &hex::encode(h)[..16]
    )
}

async fn fan_out(app: &App, event: &Event) -> Result<(), StepError> {
    let now = app.clock.now();
    for ep in endpoints(app).await? {
        if health(app, &ep.id).await?.disabled_at.is_some() {
            continue;
        }
        for event_type in event.types.iter().filter(|t| ep.wants(t)) {
            let body = serde_json::json!({
                "type": event_type,
                "timestamp": event.timestamp,
                "data": event.data,
            })
            .to_string();
            let d = Delivery {
                id: message_id(event, event_type, &ep.id),
                endpoint_id: ep.id.clone(),
                event_type: event_type.clone(),
                body,
                created_at: now,
                state: DeliveryState::Pending,
                attempts: Vec::new(),
                next_attempt_at: Some(now + Duration::seconds(FIRST_ATTEMPT_GRACE_SECONDS)),
                attempting_until: None,
            };
            if app.store.create_record(&delivery_record(&d)?).await? {
                send_deliver(app, &d.endpoint_id, &d.id).await?;
            }
        }
    }
    Ok(())
}

async fn send_deliver(app: &App, endpoint: &str, delivery: &str) -> Result<(), StepError> {
    app.send(
        queues::WEBHOOKS,
        &WebhookMessage::Deliver {
            endpoint_id: endpoint.to_owned(),
            delivery_id: delivery.to_owned(),
        },
    )
    .await?;
    Ok(())
}

/// One attempt of one delivery.
async fn deliver(app: &App, endpoint_id: &str, delivery_id: &str) -> Result<(), StepError> {
    let Some(record) = app
        .store
        .record(&delivery_kind(endpoint_id), delivery_id)
        .await?
    else {
        return Ok(());
    };
    let mut d: Delivery = parse(&record)?;
    let now = app.clock.now();
    if d.state != DeliveryState::Pending {
        return Ok(());
    }
    // A retry that came early (a duplicate message) waits for its time; the first attempt is
    // made at once.
    if !d.attempts.is_empty() && d.next_attempt_at.is_some_and(|at| at > now) {
        return Ok(());
    }
    // Another worker is making this attempt (a copy of the message, or the sweeper's relay).
    if d.attempting_until.is_some_and(|until| until > now) {
        return Ok(());
    }
    // Take the attempt: a compare-and-set on the record as read, so that of two workers that
    // read it at once only one posts; the other finds the record changed and leaves it.
    d.attempting_until = Some(now + Duration::seconds(ATTEMPT_LEASE_SECONDS));
    if !app
        .store
        .replace_record(&delivery_record(&d)?, &record.doc)
        .await?
    {
        return Ok(());
    }
    let ep = endpoint(app, endpoint_id).await?;
    let h = health(app, endpoint_id).await?;
    let Some(ep) = ep.filter(|e| e.removed_at.is_none() && h.disabled_at.is_none()) else {
        d.state = DeliveryState::Failed;
        d.next_attempt_at = None;
        d.attempting_until = None;
        d.attempts.push(outbound::Attempt {
            at: now,
            status: None,
            error: Some("the endpoint is removed or disabled; not sent".into()),
        });
        app.store.put_record(&delivery_record(&d)?).await?;
        return Ok(());
    };
    let timestamp = now.timestamp();
    let sig = signature(&ep.signing_secrets(now), &d.id, timestamp, &d.body);
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("user-agent", "oms-webhooks/1".to_owned()),
        ("webhook-id", d.id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sig),
    ];
    let answer = app
        .webhook_http()
        .map_err(StepError::Transient)?
        .post(&ep.url, &headers, d.body.clone())
        .await;
    let (status, error) = match &answer {
        Ok(a) => (Some(a.status), None),
        Err(e) => (None, Some(e.clone())),
    };
    let failing_before = h.failing_since.is_some();
    let outcome = after_attempt(d, h, status, error, now);
    tracing::info!(
        endpoint = %endpoint_id,
        webhook_id = %outcome.delivery.id,
        event_type = %outcome.delivery.event_type,
        status = status.unwrap_or(0),
        state = ?outcome.delivery.state,
        "webhook attempt"
    );
    app.store
        .put_record(&delivery_record(&outcome.delivery)?)
        .await?;
    // Health changes on the first failure, on a success after failures, and on disabling.
    if outcome.health.failing_since.is_some() != failing_before || outcome.disabled.is_some() {
        save_health(app, endpoint_id, &outcome.health).await?;
    }
    if let Some(reason) = outcome.disabled {
        tracing::warn!(endpoint = %endpoint_id, reason = %reason, "webhook endpoint disabled");
        app.send(
            queues::ALERTS,
            &serde_json::json!({
                "type": "webhook_endpoint.disabled",
                "endpoint_id": endpoint_id,
                "url": ep.url,
                "reason": reason,
                "at": now,
            }),
        )
        .await?;
    }
    Ok(())
}

/// Sends every delivery whose next attempt is due back to the queue (the sweeper); returns how
/// many.
pub async fn relay(app: &App, limit: usize) -> Result<usize, StepError> {
    let due = app
        .store
        .due_records(DELIVERY_FAMILY, app.clock.now(), limit)
        .await?;
    let now = app.clock.now();
    for r in &due {
        let endpoint = r
            .kind
            .strip_prefix(DELIVERY_FAMILY)
            .and_then(|k| k.strip_prefix('#'))
            .unwrap_or_default();
        // Off the due list for a while first, so the next sweep does not send it again while
        // it is being tried; the attempt, which can only start after this write, puts it back
        // on at its next time.
        let mut later = r.clone();
        later.due = Some(now + Duration::seconds(FIRST_ATTEMPT_GRACE_SECONDS));
        app.store.put_record(&later).await?;
        send_deliver(app, endpoint, &r.id).await?;
    }
    Ok(due.len())
}
