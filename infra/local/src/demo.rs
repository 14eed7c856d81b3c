//! The demo: a day of orders played through the local runtime over real HTTP. It plays the
//! customers (both channel formats, cash on delivery, cancellations, returns), the payment
//! providers (signed Stripe- and Alipay-style webhooks, some duplicated, some with the wrong
//! amount, some never paid), staff (review decisions) and the couriers (signed callbacks, some
//! duplicated or out of order), then accounts for every order it placed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Client;
use serde_json::{Value, json};

use crate::sign;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub orders: usize,
    pub seed: u64,
    /// Orders in flight at once.
    pub concurrency: usize,
    /// Base URL of a runtime to drive; `None` starts one on a temporary SQLite file.
    pub url: Option<String>,
    /// The configuration of the demo's own runtime (`--config`; the built-in one without it),
    /// adjusted by [`demo_config`]. Not used with `url`.
    pub config: Option<oms::config::Config>,
    pub staff_token: String,
    pub progress: bool,
}

/// What became of the orders.
#[derive(Debug, Default)]
pub struct Summary {
    pub placed: usize,
    pub final_status: BTreeMap<String, usize>,
    pub held: usize,
    pub expired: usize,
    /// Unpaid orders cancelled by staff (on a runtime the demo did not start, whose payment
    /// deadline it does not wait out).
    pub unpaid_cancelled: usize,
    /// What the demo did to the runtime before playing (stock topped up).
    pub prepared: Vec<String>,
    pub returned: usize,
    pub duplicates_sent: usize,
    pub wrong_amounts: usize,
    pub out_of_order_sent: usize,
    /// `GET /orders/{id}` calls the demo made to watch its orders (not part of an order's life).
    pub polls: usize,
    pub errors: Vec<String>,
    /// Step name → latencies in milliseconds.
    pub latencies: BTreeMap<&'static str, Vec<i64>>,
    pub elapsed: Duration,
    /// The KPI line from the report API, once the reports step caught up.
    pub kpis: Option<String>,
    /// The dashboard of the runtime the demo drove (`--url`); none for its own, stopped one.
    pub dashboard: Option<String>,
}

impl Summary {
    /// Every order placed ended somewhere, and nothing failed.
    pub fn accounts_for_every_order(&self) -> bool {
        self.final_status.values().sum::<usize>() == self.placed && self.errors.is_empty()
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "orders placed: {} in {:.1} s",
            self.placed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "final status:")?;
        for (status, n) in &self.final_status {
            writeln!(f, "  {status:<18} {n:>5}")?;
        }
        let accounted: usize = self.final_status.values().sum();
        writeln!(
            f,
            "  {:<18} {accounted:>5} of {}",
            "accounted for", self.placed
        )?;
        for p in &self.prepared {
            writeln!(f, "before playing: {p}")?;
        }
        writeln!(
            f,
            "held for review: {}, expired unpaid: {}, cancelled unpaid: {}, returned: {}",
            self.held, self.expired, self.unpaid_cancelled, self.returned
        )?;
        writeln!(
            f,
            "webhooks sent twice: {}, payments short (then topped up): {}, courier events out of order: {}",
            self.duplicates_sent, self.wrong_amounts, self.out_of_order_sent
        )?;
        writeln!(
            f,
            "step latency (ms)        p50    p95    p99    max      n"
        )?;
        for (step, values) in &self.latencies {
            let mut v = values.clone();
            v.sort_unstable();
            writeln!(
                f,
                "  {step:<20} {:>6} {:>6} {:>6} {:>6} {:>6}",
                percentile(&v, 0.5),
                percentile(&v, 0.95),
                percentile(&v, 0.99),
                v.last().copied().unwrap_or(0),
                v.len()
            )?;
        }
        if let Some(k) = &self.kpis {
            writeln!(f, "{k}")?;
        }
        match &self.dashboard {
            Some(url) => writeln!(f, "dashboard: {url} (sign in with the staff token)")?,
            None => writeln!(
                f,
                "dashboard: this run's runtime has stopped; start `oms-local`, run `oms-local demo --url http://127.0.0.1:3000` and open http://127.0.0.1:3000/dashboard"
            )?,
        }
        if !self.errors.is_empty() {
            writeln!(f, "errors ({}):", self.errors.len())?;
            for e in self.errors.iter().take(10) {
                writeln!(f, "  {e}")?;
            }
        }
        Ok(())
    }
}

/// The configuration the demo's own runtime runs with: `base` (the built-in one, or --config)
/// with short payment deadlines (so unpaid orders expire while it runs), a one-day return window,
/// and deeper stock.
pub fn demo_config(base: oms::config::Config) -> oms::config::Config {
    let mut c = base;
    for ch in c.channels.values_mut() {
        ch.payment_timeout_seconds = Some(8);
    }
    c.return_window_days = 1;
    c.review.velocity = None;
    for s in c.seed_stock.iter_mut() {
        if s.sku != "POT-003" {
            s.on_hand *= 20;
        }
    }
    c
}

struct Ctx {
    http: Client,
    base: String,
    token: String,
    polls: std::sync::atomic::AtomicUsize,
    /// Makes this run's external ids and idempotency keys its own, so that a second run with
    /// the same seed against the same runtime places new orders instead of finding the old ones.
    run: String,
    /// A runtime the demo did not start: its payment deadline and return window are its own.
    remote: bool,
}

/// What the demo orders: SKU and unit price (CNY fen), as in the built-in catalogue.
const SKUS: [(&str, i64); 3] = [("TEA-001", 4990), ("CUP-002", 1500), ("POT-003", 26800)];

/// Delivery events are dated this many days back, beyond any return window a runtime is likely
/// to have, so that delivered orders complete at the next sweep.
const DELIVERED_DAYS_AGO: i64 = 60;

#[derive(Default)]
struct Played {
    final_status: String,
    held: bool,
    expired: bool,
    unpaid_cancelled: bool,
    returned: bool,
    duplicates: usize,
    wrong_amount: bool,
    out_of_order: usize,
    latencies: Vec<(&'static str, i64)>,
}

type Res<T> = Result<T, String>;

impl Ctx {
    async fn get(&self, id: &str) -> Res<Value> {
        self.polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = self
            .http
            .get(format!("{}/orders/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    }

    /// Waits until the order is in one of `statuses` (30 s at most).
    async fn until(&self, id: &str, statuses: &[&str]) -> Res<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.get(id).await?;
            let s = o["status"].as_str().unwrap_or_default();
            if statuses.contains(&s) {
                return Ok(o);
            }
            if Instant::now() > deadline {
                return Err(format!("order {id} stuck at {s}, waiting for {statuses:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
        staff: bool,
    ) -> Res<reqwest::Response> {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if staff {
            req = req.bearer_auth(&self.token);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(format!(
                "POST {path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ))
        }
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn regions(rng: &mut fastrand::Rng) -> (&'static str, &'static str) {
    match rng.u8(0..20) {
        0..=9 => ("Jiangsu", "Nanjing"),
        10..=14 => ("Shanghai", "Shanghai"),
        15..=17 => ("Guangdong", "Guangzhou"),
        _ => ("Xinjiang", "Urumqi"),
    }
}

fn lines(rng: &mut fastrand::Rng) -> Vec<(&'static str, i64, i64)> {
    let [(tea, tea_price), (cup, cup_price), (pot, pot_price)] = SKUS;
    let mut out = vec![(tea, rng.i64(1..4), tea_price)];
    if rng.bool() {
        out.push((cup, rng.i64(1..3), cup_price));
    }
    if rng.u8(0..10) == 0 {
        out.push((pot, 1, pot_price));
    }
    if rng.u8(0..20) == 0 {
        out[0].1 = 60; // unusual quantity: held for review
    }
    out
}

async fn place(ctx: &Ctx, rng: &mut fastrand::Rng, i: usize) -> Res<String> {
    let (region, city) = regions(rng);
    let items = lines(rng);
    let customer = rng.u32(1000..1100);
    let phone = format!("+86138{:08}", rng.u32(0..100_000_000));
    let body = if rng.u8(0..6) == 0 {
        let trade = json!({"trade_fullinfo_get_response": {"trade": {
            "tid": format!("TB{}{i:06}", ctx.run), "type": "fixed", "status": "WAIT_SELLER_SEND_GOODS", "buyer_open_uid": customer.to_string(),
            "buyer_email": format!("buyer{customer}@example.com"), "receiver_name": "Demo Buyer",
            "receiver_mobile": &phone[3..], "receiver_state": region, "receiver_city": city,
            "receiver_district": "Central", "receiver_address": format!("{} Demo Rd", i + 1), "receiver_zip": "100000",
            "orders": {"order": items.iter().map(|(s, q, p)| json!({"outer_sku_id": s, "num": q, "price": format!("{}.{:02}", p / 100, p % 100)})).collect::<Vec<_>>()}
        }}});
        let auth = format!("Bearer {}", crate::dev_channel_key("tmall"));
        let r = ctx
            .post(
                "/channels/tmall/orders",
                trade.to_string(),
                &[JSON, ("Authorization", &auth)],
                false,
            )
            .await?;
        r.json::<Value>().await.map_err(|e| e.to_string())?
    } else {
        let channel = ["web", "web", "web", "web", "app", "phone"][rng.usize(0..6)];
        let method = if rng.u8(0..10) == 0 {
            "cash_on_delivery"
        } else {
            "prepaid"
        };
        let order = json!({
            "channel": channel, "external_id": format!("{channel}-{}-{i}", ctx.run),
            "customer": {"id": format!("D{customer}"), "name": "Demo Buyer", "email": format!("d{customer}@example.com"), "phone": phone},
            "lines": items.iter().map(|(s, q, p)| json!({"sku": s, "quantity": q, "unit_price": p})).collect::<Vec<_>>(),
            "currency": "CNY",
            "shipping_address": {"name": "Demo Buyer", "phone": phone, "country": "CN", "region": region, "city": city,
                                 "line1": format!("{} Demo Rd", i + 1), "postal_code": "100000"},
            "payment_method": method
        });
        let key = format!("demo-{}-{i}", ctx.run);
        let auth = format!("Bearer {}", crate::dev_channel_key(channel));
        let r = ctx
            .post(
                "/orders",
                order.to_string(),
                &[JSON, ("Idempotency-Key", &key), ("Authorization", &auth)],
                false,
            )
            .await?;
        r.json::<Value>().await.map_err(|e| e.to_string())?
    };
    body["order_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no order id in {body}"))
}

async fn pay(
    ctx: &Ctx,
    rng: &mut fastrand::Rng,
    order: &Value,
    amount: i64,
    played: &mut Played,
    tag: &str,
) -> Res<()> {
    let id = order["id"].as_str().unwrap_or_default();
    // One payment per tag: a top-up is a second payment with its own provider identity.
    let id_tail = format!("{}{tag}", &id[24..]);
    let times = if rng.u8(0..5) == 0 { 2 } else { 1 };
    played.duplicates += times - 1;
    if rng.u8(0..10) < 7 {
        let event = sign::stripe_paid(&format!("evt_{id_tail}"), id, amount, "cny").to_string();
        for _ in 0..times {
            let header = sign::stripe_header(&event, crate::DEV_SECRET, Utc::now().timestamp());
            ctx.post(
                "/webhooks/payment/stripe",
                event.clone(),
                &[JSON, ("Stripe-Signature", &header)],
                false,
            )
            .await?;
        }
    } else {
        let number = order["number"].as_str().unwrap_or_default();
        let total = format!("{}.{:02}", amount / 100, amount % 100);
        let notify = format!("ntf_{id_tail}");
        let trade_no = format!("2026{id_tail}");
        let params = [
            ("notify_id", notify.as_str()),
            ("app_id", "2021000000000001"),
            ("out_trade_no", number),
            ("trade_no", trade_no.as_str()),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", total.as_str()),
        ];
        for _ in 0..times {
            ctx.post(
                "/webhooks/payment/alipay",
                sign::alipay_form(&params),
                &[FORM],
                false,
            )
            .await?;
        }
    }
    Ok(())
}

async fn deliver(
    ctx: &Ctx,
    rng: &mut fastrand::Rng,
    order: &Value,
    delivered_days_ago: i64,
    played: &mut Played,
) -> Res<()> {
    let now = Utc::now();
    let delivered = now - chrono::Duration::days(delivered_days_ago) - chrono::Duration::hours(1);
    for parcel in order["shipments"].as_array().cloned().unwrap_or_default() {
        let carrier = parcel["carrier"].as_str().unwrap_or_default().to_owned();
        let waybill = parcel["tracking_number"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut events = vec![
            ("collected", delivered - chrono::Duration::days(1)),
            ("delivered", delivered),
        ];
        if rng.u8(0..6) == 0 {
            events.reverse(); // out of order: delivered arrives first
            played.out_of_order += 1;
        }
        if rng.u8(0..5) == 0 {
            events.push(events[0]);
            played.duplicates += 1;
        }
        for (what, at) in events {
            let path = format!("/webhooks/logistics/{carrier}");
            if carrier == "sf" {
                let tag = if what == "collected" {
                    "InTransit"
                } else {
                    "Delivered"
                };
                let (body, header) = sign::aftership(&waybill, tag, at);
                ctx.post(
                    &path,
                    body,
                    &[JSON, ("aftership-hmac-sha256", &header)],
                    false,
                )
                .await?;
            } else {
                let state = if what == "collected" { "1" } else { "3" };
                ctx.post(
                    &path,
                    sign::kuaidi100(&carrier, &waybill, state, at),
                    &[FORM],
                    false,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// One order's whole life.
async fn play(ctx: &Ctx, seed: u64, i: usize) -> Res<Played> {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(i as u64));
    let mut played = Played::default();
    let id = place(ctx, &mut rng, i).await?;
    let settled = [
        "awaiting_payment",
        "ready_to_ship",
        "on_hold",
        "rejected",
        "out_of_stock",
        "cancelled",
    ];
    let mut order = ctx.until(&id, &settled).await?;
    if order["status"] == "on_hold" {
        played.held = true;
        let decision = if rng.u8(0..4) == 0 {
            "reject"
        } else {
            "approve"
        };
        let body = json!({"decision": decision, "reviewer": "demo.staff"}).to_string();
        ctx.post(&format!("/orders/{id}/review"), body, &[JSON], true)
            .await?;
        order = ctx
            .until(
                &id,
                &settled[..2]
                    .iter()
                    .chain(&settled[3..])
                    .copied()
                    .collect::<Vec<_>>(),
            )
            .await?;
    }
    if order["status"] == "awaiting_payment" {
        let total = order["total"]["minor"].as_i64().unwrap_or_default();
        match rng.u8(0..20) {
            0 | 1 if ctx.remote => {
                // Never paid, on a runtime whose payment deadline is its own: staff cancel it.
                ctx.post(
                    &format!("/orders/{id}/cancel"),
                    json!({"reason": "never paid", "by": "demo.staff"}).to_string(),
                    &[JSON],
                    true,
                )
                .await?;
                order = ctx.until(&id, &["cancelled"]).await?;
                played.unpaid_cancelled = true;
            }
            0 | 1 => {
                // Never paid: the sweeper expires it.
                order = ctx.until(&id, &["expired"]).await?;
                played.expired = true;
            }
            2 => {
                // Paid short: the order waits for the rest, and a top-up of what is still owed
                // pays it.
                played.wrong_amount = true;
                pay(ctx, &mut rng, &order, total - 100, &mut played, "").await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while order["ledger"]["payments"]
                    .as_array()
                    .is_none_or(|p| p.is_empty())
                {
                    if Instant::now() > deadline {
                        return Err(format!("order {id}: the short payment was not recorded"));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    order = ctx.get(&id).await?;
                }
                if order["status"] != "awaiting_payment" {
                    return Err(format!("order {id}: paid short but {}", order["status"]));
                }
                pay(ctx, &mut rng, &order, 100, &mut played, "t").await?;
                order = ctx.until(&id, &["ready_to_ship"]).await?;
            }
            _ => {
                pay(ctx, &mut rng, &order, total, &mut played, "").await?;
                order = ctx.until(&id, &["ready_to_ship"]).await?;
            }
        }
    }
    if order["status"] == "ready_to_ship" {
        // Waybills come from dispatch.
        let deadline = Instant::now() + Duration::from_secs(30);
        while order["shipments"].as_array().is_none_or(|s| s.is_empty()) {
            if Instant::now() > deadline {
                return Err(format!("order {id} got no waybill"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            order = ctx.get(&id).await?;
        }
        let paid = !order["ledger"]["payments"]
            .as_array()
            .is_none_or(|p| p.is_empty());
        if paid && rng.u8(0..12) == 0 {
            ctx.post(
                &format!("/orders/{id}/cancel"),
                json!({"reason": "changed my mind"}).to_string(),
                &[JSON],
                true,
            )
            .await?;
        } else {
            let returning = rng.u8(0..10) == 0;
            // On a runtime that stays up (--url), one order in eight is delivered today and stays
            // in its return window, so that the customer page can return it; chosen by its
            // position, so that the seed's random choices stay as they were.
            let recent = ctx.remote && i % 8 == 3;
            deliver(
                ctx,
                &mut rng,
                &order,
                if returning || recent {
                    0
                } else {
                    DELIVERED_DAYS_AGO
                },
                &mut played,
            )
            .await?;
            ctx.until(&id, &["delivered", "completed"]).await?;
            if returning {
                let contact = order["customer"]["email"].as_str().unwrap_or_default();
                ctx.post(
                    &format!("/orders/{id}/return"),
                    json!({"contact": contact, "reason": "not as described"}).to_string(),
                    &[JSON],
                    false,
                )
                .await?;
                ctx.post(
                    &format!("/orders/{id}/return/received"),
                    String::new(),
                    &[],
                    true,
                )
                .await?;
                played.returned = true;
            } else if !recent {
                ctx.until(&id, &["completed"]).await?;
            }
        }
    }
    // What an order ends as once its effects are done (a refund after a cancellation or a
    // return is made after the answer to the command).
    let deadline = Instant::now() + Duration::from_secs(30);
    let order = loop {
        let order = ctx.get(&id).await?;
        let pending = order["pending_effects"]
            .as_array()
            .is_some_and(|p| !p.is_empty());
        if !pending || Instant::now() > deadline {
            break order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    played.final_status = order["status"].as_str().unwrap_or("?").to_owned();
    // Latencies of the automatic steps, from the order's own timeline.
    let timeline = order["timeline"].as_array().cloned().unwrap_or_default();
    let at = |to: &[&str]| {
        timeline
            .iter()
            .find(|e| e["to"].as_str().is_some_and(|t| to.contains(&t)))
            .and_then(|e| e["at"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let steps: [(&'static str, &[&str], &[&str]); 4] = [
        ("numbering", &["received"], &["numbered"]),
        (
            "review",
            &["numbered"],
            &["approved", "on_hold", "rejected"],
        ),
        (
            "inventory",
            &["approved"],
            &["awaiting_payment", "ready_to_ship", "out_of_stock"],
        ),
        ("dispatch (paid)", &["paid"], &["ready_to_ship"]),
    ];
    for (name, from, to) in steps {
        if let (Some(a), Some(b)) = (at(from), at(to)) {
            played.latencies.push((name, (b - a).num_milliseconds()));
        }
    }
    Ok(played)
}

/// Checks, before anything is placed, that the runtime takes what the demo sends: the staff
/// token, the channels' development keys, and the SKUs it orders; then tops up the stock of the
/// everyday SKUs for the run (the scarce `POT-003` is left as it is, so some orders meet an
/// empty shelf). Returns what it changed. Each refusal says what the runtime needs.
async fn prepare(ctx: &Ctx, orders: usize) -> Res<Vec<String>> {
    let get = |path: String| {
        ctx.http
            .get(format!("{}{path}", ctx.base))
            .bearer_auth(&ctx.token)
            .send()
    };
    let r = get("/warehouses".into())
        .await
        .map_err(|e| format!("{}: {e}", ctx.base))?;
    if r.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "{} answered 401 to the staff token: set OMS_STAFF_TOKEN to that runtime's token",
            ctx.base
        ));
    }
    let warehouses: Vec<Value> = r.json().await.map_err(|e| e.to_string())?;
    // A channel key is accepted when an empty order is refused for its content (400), not for
    // its key (401): nothing is placed.
    for (channel, path) in [
        ("web", "/orders"),
        ("app", "/orders"),
        ("phone", "/orders"),
        ("tmall", "/channels/tmall/orders"),
    ] {
        let r = ctx
            .http
            .post(format!("{}{path}", ctx.base))
            .bearer_auth(crate::dev_channel_key(channel))
            .header(JSON.0, JSON.1)
            .body("{}")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if matches!(r.status().as_u16(), 401 | 403 | 404) {
            return Err(format!(
                "{} refused the development key of channel {channel} ({}): the demo places \
                 orders on channels web, app, phone and tmall with their development keys \
                 (start the runtime without OMS_CHANNEL_KEY_* and with those channels)",
                ctx.base,
                r.status()
            ));
        }
    }
    for (sku, _) in SKUS {
        let r = get(format!("/catalogue/{sku}"))
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!(
                "{} does not sell {sku} ({}): the demo orders TEA-001, CUP-002 and POT-003 \
                 (the built-in catalogue; add them with PUT /catalogue/{{sku}})",
                ctx.base,
                r.status()
            ));
        }
    }
    if !ctx.remote {
        // Its own runtime has the demo's stock (demo_config).
        return Ok(Vec::new());
    }
    // At most three of each per order: enough of the everyday SKUs in every warehouse.
    let need = (orders as u64).saturating_mul(3).max(10);
    let mut changed = Vec::new();
    for (sku, _) in &SKUS[..2] {
        let stock: Value = get(format!("/stock/{sku}"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        for w in &warehouses {
            let wh = w["id"].as_str().unwrap_or_default();
            let level = stock["warehouses"]
                .as_array()
                .and_then(|l| l.iter().find(|l| l["warehouse"] == wh));
            let available = level.and_then(|l| l["available"].as_u64()).unwrap_or(0);
            if available >= need {
                continue;
            }
            let on_hand = level.and_then(|l| l["on_hand"].as_u64()).unwrap_or(0) + need - available;
            let r = ctx
                .http
                .put(format!("{}/stock/{sku}/{wh}", ctx.base))
                .bearer_auth(&ctx.token)
                .header(JSON.0, JSON.1)
                .body(json!({ "on_hand": on_hand }).to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!(
                    "setting the stock of {sku} in {wh}: {}",
                    r.status()
                ));
            }
            changed.push(format!(
                "stock of {sku} in {wh} set to {on_hand} (was {available} available)"
            ));
        }
    }
    Ok(changed)
}

/// Runs the demo and returns its summary.
/// The KPI line of the summary: today's figures from `GET /reports/kpis`, once the reports
/// step has counted the run (it trails the orders by a moment).
async fn kpi_line(ctx: &Ctx) -> Option<String> {
    let pct = |v: &serde_json::Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0))
    };
    let mut last = None;
    for _ in 0..50 {
        let r = ctx
            .http
            .get(format!("{}/reports/kpis", ctx.base))
            .bearer_auth(&ctx.token)
            .send()
            .await
            .ok()?;
        let k: serde_json::Value = r.json().await.ok()?;
        let settled = last.as_ref() == Some(&k);
        last = Some(k);
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let k = last?;
    if k["orders"].as_i64().unwrap_or(0) == 0 {
        return Some(
            "KPIs: no orders counted yet (on DynamoDB the deployed reports function counts them; this runtime does not)"
                .into(),
        );
    }
    Some(format!(
        "KPIs (last 30 days): {} orders, processing {} on average, on-time delivery {}, manual review {}, returns {}",
        k["orders"],
        k["average_processing_minutes"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |m| format!("{:.0} min", m)),
        pct(&k["on_time_delivery_rate"]),
        pct(&k["manual_review_share"]),
        pct(&k["return_rate"]),
    ))
}

pub async fn run(opts: DemoOptions) -> Result<Summary, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut own = None;
    let (base, token) = match &opts.url {
        Some(url) => (
            url.trim_end_matches('/').to_owned(),
            opts.staff_token.clone(),
        ),
        None => {
            let dir = tempfile::tempdir()?;
            let config = demo_config(
                opts.config
                    .clone()
                    .unwrap_or_else(oms::config::Config::demo),
            );
            let running = crate::start(crate::Options {
                port: 0,
                backend: oms::app::Backend::Sqlite {
                    path: dir.path().join("oms.sqlite"),
                },
                secrets: crate::dev_secrets(&config),
                config,
                staff_token: opts.staff_token.clone(),
                numbering_key: b"demo".to_vec(),
                visibility_timeout: Duration::from_secs(5),
                poll_wait: Duration::from_millis(100),
                sweep_every: Duration::from_millis(500),
                clock: std::sync::Arc::new(oms::clock::SystemClock),
                gateway: std::sync::Arc::new(oms::payments::SimulatedGateway),
                http: oms::adapters::https::HttpsClient::new(Duration::from_secs(10))?,
                carrier_credentials: None,
                marketplace_credentials: None,
            })
            .await?;
            let base = running.url();
            own = Some((running, dir));
            (base, opts.staff_token.clone())
        }
    };
    let ctx = Ctx {
        http: Client::new(),
        base,
        token,
        polls: Default::default(),
        run: format!("{:x}", Utc::now().timestamp_millis()),
        remote: opts.url.is_some(),
    };
    // Before placing anything: can the demo play on this runtime? (Its own runtime may run
    // on a --config that sells something else.)
    let prepared = prepare(&ctx, opts.orders).await?;
    let bar = if opts.progress {
        ProgressBar::new(opts.orders as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} orders {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let results: Vec<Res<Played>> = futures::stream::iter(0..opts.orders)
        .map(|i| {
            let ctx = &ctx;
            let bar = &bar;
            async move {
                let r = play(ctx, opts.seed, i).await;
                bar.inc(1);
                r
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut s = Summary {
        placed: opts.orders,
        prepared,
        ..Summary::default()
    };
    for r in results {
        match r {
            Ok(p) => {
                *s.final_status.entry(p.final_status).or_default() += 1;
                s.held += usize::from(p.held);
                s.expired += usize::from(p.expired);
                s.unpaid_cancelled += usize::from(p.unpaid_cancelled);
                s.returned += usize::from(p.returned);
                s.duplicates_sent += p.duplicates;
                s.wrong_amounts += usize::from(p.wrong_amount);
                s.out_of_order_sent += p.out_of_order;
                for (step, ms) in p.latencies {
                    s.latencies.entry(step).or_default().push(ms);
                }
            }
            Err(e) => s.errors.push(e),
        }
    }
    s.elapsed = started.elapsed();
    s.polls = ctx.polls.load(std::sync::atomic::Ordering::Relaxed);
    s.kpis = kpi_line(&ctx).await;
    s.dashboard = opts.url.as_ref().map(|_| format!("{}/dashboard", ctx.base));
    if let Some((running, _dir)) = own {
        running.stop().await;
    }
    Ok(s)
}
