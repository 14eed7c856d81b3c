//! `oms-local bench`: the embedded pipeline's throughput and latency, measured over real HTTP
//! on a fresh SQLite file, with the figures the design is judged by.
//!
//! 1. **Throughput to `awaiting_payment`.** `--orders` native orders are placed by
//!    `--concurrency` clients as fast as they are answered; the run ends when the pipeline has
//!    drained. Every order's timeline says when it reached each status, so throughput, the step
//!    latencies and the throughput per tenth of the run (does it fall as the table grows?) come
//!    from the orders themselves, not from polling.
//! 2. **Payment to `ready_to_ship`.** Each order is paid with a signed Stripe-style webhook;
//!    the dispatch step books its waybill (simulated carrier). (2b follows, below.)
//! 3. **Intake at a fixed offered rate.** `--rate` orders per second for `--rate-seconds`, sent
//!    on a timer whether or not earlier ones were answered: intake p50/p99, received →
//!    awaiting_payment p50/p99 and the deepest backlog seen.
//! 4. **The ceiling.** With the same pragmas, the raw rate of a small read-modify-write
//!    transaction on one connection; the design's database calls per order and the rate they
//!    allow at one transaction per call; the measured rate as a share of it; and the group
//!    commits per order (the store commits many calls at once, so the share can pass 100 %).
//!
//!
//! Phase 2b, **delivery to `completed`:** each ready order's parcels get the carrier's signed
//! "collected" and "delivered" webhooks, dated 60 days back so that the return window is over,
//! and the sweep (every 250 ms here) completes them. Full lives per second are the completed
//! orders over the spans of phases 1, 2 and 2b added up: placed, paid, delivered and completed
//! phase after phase, not overlapping as a real day's orders would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use oms::domain::{OrderId, Status};
use serde::Serialize;
use serde_json::json;

use crate::sign;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub orders: usize,
    pub concurrency: usize,
    /// Offered orders per second in the fixed-rate phase.
    pub rate: u32,
    pub rate_seconds: u64,
    /// Where the JSON result goes.
    pub out: PathBuf,
    pub progress: bool,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: usize,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| -> f64 {
            if ms.is_empty() {
                return 0.0;
            }
            let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
            ms[i.min(ms.len() - 1)]
        };
        Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: ms.last().copied().unwrap_or_default(),
            count: ms.len(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub cores: usize,
    pub orders: usize,
    pub concurrency: usize,
    /// Phase 1.
    pub to_awaiting_payment_per_s: f64,
    pub to_awaiting_payment_slices_per_s: Vec<f64>,
    pub last_slice_over_first: f64,
    pub intake_closed_loop: Latency,
    /// Each step's latency (from one status to the next), in pipeline order.
    pub steps: Vec<(String, Latency)>,
    pub received_to_awaiting_payment: Latency,
    pub not_awaiting_payment: BTreeMap<String, usize>,
    /// Phase 2.
    pub paid_to_ready_to_ship_per_s: f64,
    pub paid_to_ready_to_ship: Latency,
    pub not_ready_to_ship: BTreeMap<String, usize>,
    /// Phase 2b: delivery webhooks to `completed`.
    pub delivered_to_completed_per_s: f64,
    pub delivered_to_completed: Latency,
    pub not_completed: BTreeMap<String, usize>,
    /// Orders completed over the spans of phases 1, 2 and 2b added up (each from its first
    /// request to its last order's arrival), the benchmark's reading between them left out.
    pub full_lives_per_s: f64,
    /// Phase 3.
    pub offered_per_s: u32,
    pub offered_seconds: u64,
    pub intake_at_offered_rate: Latency,
    pub received_to_awaiting_payment_at_offered_rate: Latency,
    pub deepest_backlog: u64,
    /// Phase 4.
    pub raw_transactions_per_s: f64,
    /// Database calls (each a read-modify-write in its own savepoint) per order.
    pub transactions_per_order_to_awaiting_payment: f64,
    /// Group commits per order: the calls of many orders share each commit.
    pub commits_per_order_to_awaiting_payment: f64,
    pub ceiling_orders_per_s: f64,
    pub measured_over_ceiling: f64,
    pub elapsed_s: f64,
}

/// How often the benchmark's runtime sweeps: completions wait for it.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The configuration the benchmark runs with: the built-in one, with stock that does not run
/// out, no velocity rule (one customer places every order) and a payment deadline beyond the run.
fn bench_config() -> oms::config::Config {
    let mut c = oms::config::Config::demo();
    for ch in c.channels.values_mut() {
        ch.payment_timeout_seconds = Some(24 * 3600);
    }
    c.review.velocity = None;
    for s in c.seed_stock.iter_mut() {
        s.on_hand = 1_000_000_000;
    }
    c
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    app: Arc<oms::app::App>,
}

impl Ctx {
    /// Places one order; returns its id and how long the answer took.
    async fn place(&self, i: usize) -> Res<(OrderId, f64)> {
        let body = json!({
            "channel": "web", "external_id": format!("BENCH-{}-{i}", std::process::id()),
            "customer": {"id": "C1001", "name": "Li Lei", "email": "li@example.com",
                "phone": "+8613800000000"},
            "lines": [{"sku": "TEA-001", "quantity": 1, "unit_price": 4990}],
            "currency": "CNY",
            "shipping_address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN",
                "region": "Jiangsu",
                "city": "Nanjing", "line1": "1 Zhongshan Rd", "postal_code": "210000"},
            "payment_method": "prepaid"
        });
        let started = Instant::now();
        let r = self
            .http
            .post(format!("{}/orders", self.base))
            .bearer_auth(crate::dev_channel_key("web"))
            .json(&body)
            .send()
            .await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let status = r.status();
        let v: serde_json::Value = r.json().await?;
        if status.as_u16() != 202 {
            return Err(format!("POST /orders answered {status}: {v}").into());
        }
        let id = OrderId::parse(v["order_id"].as_str().unwrap_or_default())?;
        Ok((id, ms))
    }

    /// The carrier's "collected" then "delivered" webhooks for each of the order's parcels,
    /// dated far enough back that the return window is over (the sweep then completes it).
    async fn deliver(&self, id: OrderId) -> Res<()> {
        let order = self
            .app
            .store
            .get_order(id)
            .await?
            .ok_or_else(|| format!("order {id} is missing"))?;
        let delivered = Utc::now() - chrono::Duration::days(60);
        for parcel in &order.shipments {
            let path = format!("{}/webhooks/logistics/{}", self.base, parcel.carrier);
            for (step, at) in [(0, delivered - chrono::Duration::days(1)), (1, delivered)] {
                let request = if parcel.carrier == "sf" {
                    let tag = ["InTransit", "Delivered"][step];
                    let (body, header) = sign::aftership(&parcel.tracking_number, tag, at);
                    self.http
                        .post(&path)
                        .header("content-type", "application/json")
                        .header("aftership-hmac-sha256", header)
                        .body(body)
                } else {
                    let state = ["1", "3"][step];
                    self.http
                        .post(&path)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(sign::kuaidi100(
                            &parcel.carrier,
                            &parcel.tracking_number,
                            state,
                            at,
                        ))
                };
                let r = request.send().await?;
                if !r.status().is_success() {
                    return Err(format!("logistics webhook answered {}", r.status()).into());
                }
            }
        }
        Ok(())
    }

    async fn pay(&self, id: OrderId, amount: i64) -> Res<()> {
        let body = sign::stripe_paid(&format!("evt_bench_{id}"), &id.to_string(), amount, "cny");
        let raw = body.to_string();
        let r = self
            .http
            .post(format!("{}/webhooks/payment/stripe", self.base))
            .header(
                "stripe-signature",
                sign::stripe_header(&raw, crate::DEV_SECRET, Utc::now().timestamp()),
            )
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("payment webhook answered {}", r.status()).into());
        }
        Ok(())
    }

    /// Messages waiting in the pipeline's queues (not the notifications nobody consumes here).
    async fn backlog(&self) -> Res<u64> {
        let mut n = 0;
        for step in oms::flow::Step::ALL {
            n += self
                .app
                .queue
                .depth(&oms::app::queues::name(step.queue()))
                .await?;
        }
        Ok(n)
    }

    /// Waits until every order has reached `to` (the ones that have are not read again).
    async fn finished(&self, ids: &[OrderId], to: Status) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut left = ids.to_vec();
        while !left.is_empty() {
            let mut still = Vec::new();
            for id in left {
                if self.app.store.get_order(id).await?.map(|o| o.status()) != Some(to) {
                    still.push(id);
                }
            }
            left = still;
            if Instant::now() > deadline {
                return Err(
                    format!("{} orders did not reach {to} within 10 minutes", left.len()).into(),
                );
            }
            if !left.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until the queues stay empty for a moment and every order has left `from`.
    async fn drained(&self, ids: &[OrderId], from: Status) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if self.backlog().await? == 0 {
                let mut left = 0;
                for id in ids.iter().rev().take(50) {
                    if self.app.store.get_order(*id).await?.map(|o| o.status()) == Some(from) {
                        left += 1;
                    }
                }
                if left == 0 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("the pipeline did not drain within 10 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// When each order reached each status, from its timeline.
    async fn reached(
        &self,
        ids: &[OrderId],
    ) -> Res<Vec<(Status, BTreeMap<Status, DateTime<Utc>>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let order = self
                .app
                .store
                .get_order(*id)
                .await?
                .ok_or_else(|| format!("order {id} is missing"))?;
            let mut at = BTreeMap::from([(Status::Received, order.created_at)]);
            for e in self.app.store.timeline(*id).await? {
                if let Some(to) = e.to {
                    at.entry(to).or_insert(e.at);
                }
            }
            out.push((order.status(), at));
        }
        Ok(out)
    }
}

fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or_default() as f64 / 1000.0
}

fn bar(show: bool, len: usize, what: &'static str) -> Res<ProgressBar> {
    let b = if show {
        ProgressBar::new(len as u64)
    } else {
        ProgressBar::hidden()
    };
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what}"
        ))?
        .progress_chars("=> "),
    );
    Ok(b)
}

pub async fn run(opts: BenchOptions) -> Res<Report> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let config = bench_config();
    let running = crate::start(crate::Options {
        port: 0,
        backend: oms::app::Backend::Sqlite {
            path: dir.path().join("oms.sqlite"),
        },
        secrets: crate::dev_secrets(&config),
        config,
        staff_token: "bench".into(),
        numbering_key: b"bench".to_vec(),
        visibility_timeout: Duration::from_secs(30),
        poll_wait: Duration::from_millis(100),
        sweep_every: SWEEP_EVERY,
        clock: Arc::new(oms::clock::SystemClock),
        gateway: Arc::new(oms::payments::SimulatedGateway),
        http: oms::adapters::https::HttpsClient::new(Duration::from_secs(10))?,
        carrier_credentials: None,
        marketplace_credentials: None,
    })
    .await?;
    let ctx = Ctx {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(opts.concurrency.max(1))
            .build()?,
        base: running.url(),
        app: Arc::clone(&running.app),
    };
    let mut report = Report {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        orders: opts.orders,
        concurrency: opts.concurrency,
        offered_per_s: opts.rate,
        offered_seconds: opts.rate_seconds,
        ..Report::default()
    };

    // 1. Throughput to awaiting_payment.
    let calls_before = oms::adapters::sqlite::calls_so_far();
    let commits_before = oms::adapters::sqlite::commits_so_far();
    let b = bar(opts.progress, opts.orders, "orders placed")?;
    let placed: Vec<Res<(OrderId, f64)>> = futures::stream::iter(0..opts.orders)
        .map(|i| {
            let (ctx, b) = (&ctx, &b);
            async move {
                let r = ctx.place(i).await;
                b.inc(1);
                r
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    b.finish_and_clear();
    let mut ids = Vec::with_capacity(placed.len());
    let mut intake = Vec::with_capacity(placed.len());
    for p in placed {
        let (id, ms) = p?;
        ids.push(id);
        intake.push(ms);
    }
    ctx.drained(&ids, Status::Received).await?;
    let calls = oms::adapters::sqlite::calls_so_far() - calls_before;
    report.transactions_per_order_to_awaiting_payment = calls as f64 / opts.orders.max(1) as f64;
    let commits = oms::adapters::sqlite::commits_so_far() - commits_before;
    report.commits_per_order_to_awaiting_payment = commits as f64 / opts.orders.max(1) as f64;
    report.intake_closed_loop = Latency::of(intake);
    let lives = ctx.reached(&ids).await?;
    let mut steps: BTreeMap<(Status, Status), Vec<f64>> = BTreeMap::new();
    let mut to_awaiting = Vec::new();
    let mut awaiting_at = Vec::new();
    let first_placed = lives
        .iter()
        .filter_map(|(_, at)| at.get(&Status::Received).copied())
        .min();
    for (status, at) in &lives {
        if *status != Status::AwaitingPayment {
            *report
                .not_awaiting_payment
                .entry(status.as_str().to_owned())
                .or_default() += 1;
        }
        let path: Vec<(&Status, &DateTime<Utc>)> = at.iter().collect();
        let mut ordered = path.clone();
        ordered.sort_by_key(|(_, t)| **t);
        for pair in ordered.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            steps.entry((*a.0, *b.0)).or_default().push(ms(*a.1, *b.1));
        }
        if let (Some(r), Some(a)) = (at.get(&Status::Received), at.get(&Status::AwaitingPayment)) {
            to_awaiting.push(ms(*r, *a));
            awaiting_at.push(*a);
        }
    }
    report.steps = steps
        .into_iter()
        .map(|((a, b), v)| (format!("{} → {}", a.as_str(), b.as_str()), Latency::of(v)))
        .collect();
    report.received_to_awaiting_payment = Latency::of(to_awaiting);
    awaiting_at.sort();
    // Each phase's own span, without the benchmark's reading between phases.
    let mut phases_ms = 0.0;
    if let (Some(start), Some(end)) = (first_placed, awaiting_at.last()) {
        phases_ms += ms(start, *end);
        report.to_awaiting_payment_per_s =
            awaiting_at.len() as f64 / (ms(start, *end) / 1000.0).max(1e-9);
        let n = awaiting_at.len();
        let mut previous = start;
        for k in 1..=10 {
            let i = (n * k).div_ceil(10).saturating_sub(1);
            let Some(t) = awaiting_at.get(i) else { break };
            let count = (n * k).div_ceil(10) - (n * (k - 1)).div_ceil(10);
            report
                .to_awaiting_payment_slices_per_s
                .push(count as f64 / (ms(previous, *t) / 1000.0).max(1e-9));
            previous = *t;
        }
        if let (Some(first), Some(last)) = (
            report.to_awaiting_payment_slices_per_s.first(),
            report.to_awaiting_payment_slices_per_s.last(),
        ) {
            report.last_slice_over_first = last / first.max(1e-9);
        }
    }

    // 2. Payment to ready_to_ship.
    let payable: Vec<OrderId> = ids
        .iter()
        .zip(&lives)
        .filter(|(_, (s, _))| *s == Status::AwaitingPayment)
        .map(|(id, _)| *id)
        .collect();
    let b = bar(opts.progress, payable.len(), "orders paid")?;
    let pay_started = Utc::now();
    let paid: Vec<Res<()>> = futures::stream::iter(payable.iter().copied())
        .map(|id| {
            let (ctx, b) = (&ctx, &b);
            async move {
                let r = ctx.pay(id, 4990).await;
                b.inc(1);
                r
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    b.finish_and_clear();
    paid.into_iter().collect::<Res<Vec<()>>>()?;
    ctx.drained(&payable, Status::Paid).await?;
    let shipped = ctx.reached(&payable).await?;
    let mut paid_to_ready = Vec::new();
    let mut ready_at = Vec::new();
    for (status, at) in &shipped {
        if *status != Status::ReadyToShip {
            *report
                .not_ready_to_ship
                .entry(status.as_str().to_owned())
                .or_default() += 1;
        }
        if let (Some(p), Some(r)) = (at.get(&Status::Paid), at.get(&Status::ReadyToShip)) {
            paid_to_ready.push(ms(*p, *r));
            ready_at.push(*r);
        }
    }
    if let Some(end) = ready_at.iter().max() {
        phases_ms += ms(pay_started, *end);
        report.paid_to_ready_to_ship_per_s =
            ready_at.len() as f64 / (ms(pay_started, *end) / 1000.0).max(1e-9);
    }
    report.paid_to_ready_to_ship = Latency::of(paid_to_ready);

    // 2b. Delivery to completed: the sweep completes each order once its return window is over.
    let deliverable: Vec<OrderId> = payable
        .iter()
        .zip(&shipped)
        .filter(|(_, (s, _))| *s == Status::ReadyToShip)
        .map(|(id, _)| *id)
        .collect();
    let b = bar(opts.progress, deliverable.len(), "orders delivered")?;
    let deliver_started = Utc::now();
    let delivered: Vec<Res<()>> = futures::stream::iter(deliverable.iter().copied())
        .map(|id| {
            let (ctx, b) = (&ctx, &b);
            async move {
                let r = ctx.deliver(id).await;
                b.inc(1);
                r
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    b.finish_and_clear();
    delivered.into_iter().collect::<Res<Vec<()>>>()?;
    ctx.finished(&deliverable, Status::Completed).await?;
    let ended = ctx.reached(&deliverable).await?;
    let mut delivered_to_completed = Vec::new();
    let mut completed_at = Vec::new();
    for (status, at) in &ended {
        if *status != Status::Completed {
            *report
                .not_completed
                .entry(status.as_str().to_owned())
                .or_default() += 1;
        }
        if let (Some(d), Some(c)) = (at.get(&Status::Delivered), at.get(&Status::Completed)) {
            delivered_to_completed.push(ms(*d, *c));
            completed_at.push(*c);
        }
    }
    if let Some(end) = completed_at.iter().max() {
        report.delivered_to_completed_per_s =
            completed_at.len() as f64 / (ms(deliver_started, *end) / 1000.0).max(1e-9);
        phases_ms += ms(deliver_started, *end);
        report.full_lives_per_s = completed_at.len() as f64 / (phases_ms / 1000.0).max(1e-9);
    }
    report.delivered_to_completed = Latency::of(delivered_to_completed);

    // 3. Intake at a fixed offered rate.
    let total = (u64::from(opts.rate) * opts.rate_seconds) as usize;
    let b = bar(opts.progress, total, "orders offered")?;
    let every = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let ctx = Arc::new(ctx);
    let mut tasks = tokio::task::JoinSet::new();
    let mut deepest = 0;
    let mut last_sample = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let c = Arc::clone(&ctx);
        tasks.spawn(async move { c.place(opts.orders + i).await });
        b.inc(1);
        if last_sample.elapsed() > Duration::from_millis(100) {
            deepest = deepest.max(ctx.backlog().await?);
            last_sample = Instant::now();
        }
    }
    b.finish_and_clear();
    let mut offered = Vec::with_capacity(total);
    let mut latencies = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        let (id, ms) = done??;
        offered.push(id);
        latencies.push(ms);
    }
    ctx.drained(&offered, Status::Received).await?;
    report.deepest_backlog = deepest;
    report.intake_at_offered_rate = Latency::of(latencies);
    let lives = ctx.reached(&offered).await?;
    report.received_to_awaiting_payment_at_offered_rate = Latency::of(
        lives
            .iter()
            .filter_map(|(_, at)| {
                Some(ms(
                    *at.get(&Status::Received)?,
                    *at.get(&Status::AwaitingPayment)?,
                ))
            })
            .collect(),
    );
    let ctx = Arc::try_unwrap(ctx).map_err(|_| "a placement task outlived the run")?;
    drop(ctx);
    running.stop().await;

    // 4. The ceiling.
    let raw_path = dir.path().join("raw.sqlite");
    report.raw_transactions_per_s = tokio::task::spawn_blocking(move || {
        oms::adapters::sqlite::raw_transaction_rate(raw_path, 20_000)
    })
    .await??;
    report.ceiling_orders_per_s =
        report.raw_transactions_per_s / report.transactions_per_order_to_awaiting_payment.max(1e-9);
    report.measured_over_ceiling =
        report.to_awaiting_payment_per_s / report.ceiling_orders_per_s.max(1e-9);
    report.elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(&opts.out, serde_json::to_string_pretty(&report)?)?;
    Ok(report)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = |x: &Latency| format!("p50 {:.1} / p99 {:.1} ms", x.p50, x.p99);
        writeln!(
            f,
            "embedded store, {} cores, {} orders, {} clients ({:.0} s)",
            self.cores, self.orders, self.concurrency, self.elapsed_s
        )?;
        writeln!(
            f,
            "to awaiting_payment     {:>8.0} orders/s   received → awaiting_payment {}",
            self.to_awaiting_payment_per_s,
            l(&self.received_to_awaiting_payment)
        )?;
        let slices: Vec<String> = self
            .to_awaiting_payment_slices_per_s
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect();
        writeln!(
            f,
            "  per tenth of the run  {} orders/s (last/first {:.2})",
            slices.join(" "),
            self.last_slice_over_first
        )?;
        writeln!(f, "  intake (closed loop)  {}", l(&self.intake_closed_loop))?;
        for (step, lat) in &self.steps {
            writeln!(f, "  {step:<34} {}", l(lat))?;
        }
        if !self.not_awaiting_payment.is_empty() {
            writeln!(f, "  not awaiting payment: {:?}", self.not_awaiting_payment)?;
        }
        writeln!(
            f,
            "paid → ready_to_ship    {:>8.0} orders/s   {}",
            self.paid_to_ready_to_ship_per_s,
            l(&self.paid_to_ready_to_ship)
        )?;
        if !self.not_ready_to_ship.is_empty() {
            writeln!(f, "  not ready to ship: {:?}", self.not_ready_to_ship)?;
        }
        writeln!(
            f,
            "delivered → completed   {:>8.0} orders/s   {} (the sweep runs every {} ms)",
            self.delivered_to_completed_per_s,
            l(&self.delivered_to_completed),
            SWEEP_EVERY.as_millis()
        )?;
        if !self.not_completed.is_empty() {
            writeln!(f, "  not completed: {:?}", self.not_completed)?;
        }
        writeln!(
            f,
            "full lives              {:>8.0} orders/s   placed, paid, delivered and completed, phase after phase",
            self.full_lives_per_s
        )?;
        writeln!(
            f,
            "at {}/s offered for {} s: intake {}, received → awaiting_payment {}, deepest backlog {}",
            self.offered_per_s,
            self.offered_seconds,
            l(&self.intake_at_offered_rate),
            l(&self.received_to_awaiting_payment_at_offered_rate),
            self.deepest_backlog
        )?;
        writeln!(
            f,
            "ceiling: {:.0} raw read-modify-write transactions/s, {:.1} calls per order → {:.0} orders/s at one transaction per call; measured {:.0} % of it ({:.2} group commits per order)",
            self.raw_transactions_per_s,
            self.transactions_per_order_to_awaiting_payment,
            self.ceiling_orders_per_s,
            self.measured_over_ceiling * 100.0,
            self.commits_per_order_to_awaiting_payment
        )
    }
}
