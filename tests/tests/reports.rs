//! The report rollups equal a recount from the orders, after a randomised run in which every
//! order change is counted (through the change log on SQLite, directly on DynamoDB) and old
//! versions are replayed, shuffled and duplicated. And the report API answers from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use oms::app::{App, Backend};
use oms::domain::reports::{self, Cell, CustomerClass, Figures, Filter};
use oms::domain::{Actor, Order, OrderChange, Status};
use oms_tests::t0;

async fn app(backend: Backend) -> App {
    oms_tests::app_on(&backend, Arc::new(oms::clock::SystemClock)).await
}

/// The next version of `order` on a random path through its life, with the fields a real step
/// would set (payments, shipments, delivery, returns, a review hold).
fn next(order: &Order, rng: &mut fastrand::Rng) -> Option<OrderChange> {
    use Status::*;
    let at = order.updated_at + Duration::minutes(rng.i64(1..600));
    let sys = || Actor::System("test".into());
    let to = match order.status() {
        Received => Numbered,
        Numbered if rng.u8(0..5) == 0 => OnHold,
        Numbered | OnHold => {
            if rng.u8(0..12) == 0 {
                Cancelled
            } else {
                Approved
            }
        }
        Approved => AwaitingPayment,
        AwaitingPayment => match rng.u8(0..8) {
            0 => Expired,
            1 => Cancelled,
            _ => Paid,
        },
        Paid => ReadyToShip,
        ReadyToShip => Shipped,
        Shipped => Delivered,
        Delivered => {
            if rng.bool() {
                ReturnRequested
            } else {
                Completed
            }
        }
        ReturnRequested => Returned,
        _ => return None,
    };
    let mut c = order.transition(to, sys(), None, at).ok()?;
    let o = &mut c.order;
    o.updated_at = at;
    match to {
        OnHold => o.was_held = true,
        Paid => o.ledger.payments.push(
            serde_json::from_value(serde_json::json!({
                "provider": "stripe", "payment_id": format!("pi_{}", o.id),
                "amount": o.total, "source": "provider", "at": at,
            }))
            .expect("payment"),
        ),
        Shipped => o.shipments.push(
            serde_json::from_value(serde_json::json!({
                "warehouse": "sh", "carrier": "sf", "tracking_number": format!("SF{}", rng.u32(..)),
                "lines": [], "weight_grams": 500, "cost": 800, "status": "picked_up",
                "handed_over_at": at,
            }))
            .expect("shipment"),
        ),
        Delivered => o.delivered_at = Some(at),
        ReturnRequested => {
            let reason = ["damaged", "wrong size", "changed mind"][rng.usize(0..3)];
            o.returns.push(
                serde_json::from_value(serde_json::json!({
                    "id": "ret-1", "lines": [[o.lines[0].sku, 1]],
                    "reason": reason,
                    "requested_at": at, "value": o.lines[0].unit_price,
                }))
                .expect("return"),
            );
        }
        _ => {}
    }
    Some(c)
}

/// A random order: one of a few customers, regions, channels and discount codes.
fn random_order(rng: &mut fastrand::Rng, i: usize) -> Order {
    let (mut o, _) = oms_tests::order(
        &format!("C{}", rng.u8(0..6)),
        Some(&format!("EXT-{i}")),
        &[("TEA-001", rng.i64(1..4)), ("MUG-002", rng.i64(1..3))],
    );
    o.created_at = t0() + Duration::hours(i as i64 * 7);
    o.updated_at = o.created_at;
    o.shipping_address.region =
        oms::domain::Text::parse(["Jiangsu", "Shanghai", "Zhejiang"][rng.usize(0..3)]).unwrap();
    if rng.u8(0..3) == 0 {
        o.discount_code = Some(oms::domain::Text::parse("BF10").unwrap());
        o.charges.order_discount = 500;
        o.total.minor -= 500;
    }
    o
}

/// What the rollups must hold: every order's contribution at its final version, with its
/// customer's first order (by placement) as the first.
fn recount(orders: &[Order], app: &App) -> BTreeMap<(Cell, String), i64> {
    let mut by_time: Vec<&Order> = orders.iter().collect();
    by_time.sort_by_key(|o| (o.created_at, o.id));
    let mut first: BTreeMap<String, (oms::domain::OrderId, String)> = BTreeMap::new();
    let mut returned: BTreeMap<String, oms::domain::OrderId> = BTreeMap::new();
    let mut total = BTreeMap::new();
    for o in by_time {
        let c = o.customer.id.to_string();
        let class = match first.get(&c) {
            None => {
                first.insert(c, (o.id, reports::month_of(o.created_at)));
                CustomerClass::First {
                    cohort: reports::month_of(o.created_at),
                }
            }
            Some((_, cohort)) => {
                let returning = !returned.contains_key(&c);
                returned.entry(c).or_insert(o.id);
                CustomerClass::Repeat {
                    cohort: cohort.clone(),
                    returning,
                }
            }
        };
        let promise = app.config.channel(&o.channel).map_or(3, |c| c.promise_days);
        for (k, v) in reports::contribution(o, &class, promise) {
            *total.entry(k).or_insert(0) += v;
        }
    }
    total.retain(|_, v| *v != 0);
    total
}

async fn stored(app: &App) -> BTreeMap<(Cell, String), i64> {
    let cells = app
        .store
        .cells(
            t0().date_naive() - Duration::days(1),
            t0().date_naive() + Duration::days(60),
        )
        .await
        .expect("cells");
    let mut out = BTreeMap::new();
    for (cell, fields) in cells {
        for (f, v) in fields {
            if v != 0 {
                out.insert((cell.clone(), f), v);
            }
        }
    }
    out
}

/// How changes reach the reports step in a run.
enum Feed {
    /// The SQLite change log, drained now and then (as the local runtime does).
    Log,
    /// Each new version counted as soon as it is written.
    Direct,
    /// The table's DynamoDB Stream, read with the real SDK and handed to the reports
    /// function's handler as Lambda events; every batch is handed over a second time later.
    Stream(Box<StreamReader>),
}

impl Feed {
    async fn written(&mut self, app: &App, order: &Order) {
        match self {
            Feed::Log => {}
            Feed::Direct => {
                oms::flow::reports::count(app, order).await.expect("count");
            }
            Feed::Stream(r) => r.deliver(app).await,
        }
    }

    async fn catch_up(&mut self, app: &App) {
        match self {
            Feed::Log => {
                while oms::flow::reports::drain_change_log(app)
                    .await
                    .expect("drain")
                    > 0
                {}
            }
            Feed::Direct => {}
            Feed::Stream(r) => r.deliver(app).await,
        }
    }
}

/// The table's stream as the reports function's event source hands it over: every batch read
/// is handled, and kept so that it can be handed over again.
struct StreamReader {
    reader: oms_tests::stream::Reader,
    batches: Vec<serde_json::Value>,
    records: usize,
}

impl StreamReader {
    async fn new(endpoint: &str, table: &str) -> Self {
        StreamReader {
            reader: oms_tests::stream::Reader::new(endpoint, table).await,
            batches: Vec::new(),
            records: 0,
        }
    }

    /// Reads what is new on every shard and hands it to the handler in one event.
    async fn deliver(&mut self, app: &App) {
        let batch = self.reader.read().await;
        if batch.is_empty() {
            return;
        }
        self.records += batch.len();
        let event = serde_json::json!({ "Records": batch });
        self.batches.push(event.clone());
        let response = oms::flow::reports::handle_stream(
            app,
            serde_json::from_value(event).expect("a Lambda DynamoDB event"),
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    /// Hands an earlier batch over again, as Lambda does after a retry.
    async fn replay(&self, app: &App, rng: &mut fastrand::Rng) {
        if self.batches.is_empty() {
            return;
        }
        let event = self.batches[rng.usize(0..self.batches.len())].clone();
        let response =
            oms::flow::reports::handle_stream(app, serde_json::from_value(event).expect("event"))
                .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
}

/// Runs the random life of `n` orders, feeding the reports step as `feed` says. Old versions
/// are replayed, shuffled and twice, all along.
async fn run(app: &App, n: usize, seed: u64, mut feed: Feed) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut orders = Vec::new();
    let mut versions: Vec<Order> = Vec::new();
    for i in 0..n {
        let o = random_order(&mut rng, i);
        let (_, entry) = oms_tests::order("x", None, &[("TEA-001", 1)]);
        app.store
            .create_order(&o, &entry, &[])
            .await
            .expect("create");
        feed.written(app, &o).await;
        versions.push(o.clone());
        orders.push(o);
    }
    feed.catch_up(app).await;
    for round in 0..40 {
        let i = rng.usize(0..orders.len());
        if let Some(c) = next(&orders[i], &mut rng) {
            app.store.save_change(&c).await.expect("save");
            orders[i] = c.order.clone();
            versions.push(c.order.clone());
            feed.written(app, &c.order).await;
        }
        // Replays: old versions, in any order, some twice.
        for _ in 0..2 {
            let v = versions[rng.usize(0..versions.len())].clone();
            oms::flow::reports::count(app, &v).await.expect("replay");
        }
        if let Feed::Stream(r) = &feed {
            r.replay(app, &mut rng).await;
        }
        if round % 7 == 0 {
            feed.catch_up(app).await;
        }
    }
    // Everything to its end.
    for order in orders.iter_mut() {
        while let Some(c) = next(order, &mut rng) {
            app.store.save_change(&c).await.expect("save");
            *order = c.order.clone();
            versions.push(c.order.clone());
            feed.written(app, &c.order).await;
        }
    }
    feed.catch_up(app).await;
    match &feed {
        Feed::Log => assert!(
            app.store
                .changes_after(0, 10)
                .await
                .expect("log")
                .is_empty(),
            "the change log is trimmed once counted"
        ),
        // Every order write came through the stream (with the timeline items, which the
        // handler skips).
        Feed::Stream(r) => assert!(r.records >= versions.len(), "{} stream records", r.records),
        Feed::Direct => {}
    }
    // A last replay of every version: nothing changes.
    let before = stored(app).await;
    for v in &versions {
        assert_eq!(
            oms::flow::reports::count(app, v).await.expect("replay"),
            oms::flow::reports::Counting::Stale
        );
    }
    assert_eq!(stored(app).await, before, "stale replays change nothing");

    let expected = recount(&orders, app);
    let got = stored(app).await;
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "rollups equal a recount from the orders");

    // The reports read back agree with the orders themselves.
    let f = Filter {
        from: t0().date_naive(),
        to: t0().date_naive() + Duration::days(60),
        channel: None,
        region: None,
    };
    let cells = app.store.cells(f.from, f.to).await.expect("cells");
    let s = reports::summary(&Figures::of(&cells, &f), &f);
    assert_eq!(s.orders, orders.len() as i64);
    let total: i64 = orders.iter().map(|o| o.total.minor).sum();
    assert_eq!(s.amount.get("CNY"), Some(&total));
    for st in Status::ALL {
        let n = orders.iter().filter(|o| o.status() == st).count() as i64;
        let row = s
            .by_status
            .iter()
            .find(|r| r.status == st)
            .map_or(0, |r| r.orders);
        assert_eq!(row, n, "{st}");
    }
    let held = orders.iter().filter(|o| o.was_held).count() as f64;
    assert_eq!(s.kpis.manual_review_share, Some(held / orders.len() as f64));
    let with_returns = orders.iter().filter(|o| !o.returns.is_empty()).count() as f64;
    assert_eq!(s.kpis.return_rate, Some(with_returns / orders.len() as f64));
    let r = reports::retention(&Figures::of(&cells, &f));
    let customers: std::collections::BTreeSet<_> =
        orders.iter().map(|o| o.customer.id.clone()).collect();
    assert_eq!(r.first_orders, customers.len() as i64);
    assert_eq!(r.first_orders + r.repeat_orders, orders.len() as i64);
    // Staff search finds an order by its customer's e-mail (indexed when counted).
    let hash = reports::contact_hash("LI@example.com");
    assert!(
        app.store
            .customer_by_contact(&hash)
            .await
            .expect("contact")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_after_a_random_run_with_replays_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(Backend::Sqlite {
        path: dir.path().join("oms.sqlite"),
    })
    .await;
    run(&app, 24, 7, Feed::Log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_after_a_random_run_with_replays_on_dynamodb() {
    let Some(endpoint) = oms_tests::aws_endpoint() else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let app = app(Backend::Aws {
        settings: oms::adapters::aws::AwsSettings {
            endpoint_url: Some(endpoint),
            region: None,
        },
        table: format!("oms-rpt-{}", &id[..12]),
        queue_prefix: format!("r{}-", &id[..10]),
        queue_url_prefix: None,
    })
    .await;
    run(&app, 12, 11, Feed::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_fed_by_the_tables_stream_equal_a_recount() {
    let Some(endpoint) = oms_tests::aws_endpoint() else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("oms-rps-{}", &id[..12]);
    let app = app(Backend::Aws {
        settings: oms::adapters::aws::AwsSettings {
            endpoint_url: Some(endpoint.clone()),
            region: None,
        },
        table: table.clone(),
        queue_prefix: format!("s{}-", &id[..10]),
        queue_url_prefix: None,
    })
    .await;
    let reader = StreamReader::new(&endpoint, &table).await;
    run(&app, 10, 13, Feed::Stream(Box::new(reader))).await;
}
