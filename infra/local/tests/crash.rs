//! The crash test: the real `oms-local` binary is killed (SIGKILL) at random moments while
//! hundreds of orders move money (second payments, cancellations after payment, expiries with a
//! partial payment, returns), and restarted on the same data. Once the last restart has settled,
//! every order balances, stock is held only by live orders, no refund or effect is left behind,
//! every status change is one the state machine allows, and the dead-letter queues are empty.
//!
//! The clients behave as real ones do: a request that fails because the server died is sent
//! again (the same `Idempotency-Key`, the same webhook event), until it is answered.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const TOKEN: &str = "crash-test-token";
const ORDERS: usize = 510;
const CONCURRENCY: usize = 24;
const MIN_KILLS: usize = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The demo configuration, with the `app` channel's payment deadline at 2 seconds so that its
/// orders expire while the test runs (the sweeper runs every second).
fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let demo = include_str!("../../../shared/src/demo.toml");
    let needle = "payment_timeout_minutes = 30\nout_of_stock = \"cancel\"";
    assert!(demo.contains(needle), "the demo configuration changed");
    let text = demo.replace(
        needle,
        "payment_timeout_seconds = 2\nout_of_stock = \"cancel\"",
    );
    let path = dir.join("crash.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

struct Server {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    kills: usize,
    starts: usize,
}

impl Server {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_oms-local"))
            .args(["--port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .args(["--sweep-every", "1", "--visibility-timeout", "2"])
            .env("OMS_STAFF_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("oms-local starts");
        self.child = Some(child);
        self.starts += 1;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix: no clean shutdown, no flush.
            let _ = c.kill();
            let _ = c.wait();
            self.kills += 1;
        }
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Sends until the server answers (it may be down for a restart), and returns the answer.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
        staff: bool,
    ) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base));
            if staff {
                req = req.bearer_auth(TOKEN);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            match req.send().await {
                Ok(r) if r.status().is_server_error() => {}
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    return (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    );
                }
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: no answer for 120 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn order(&self, id: &str) -> Value {
        let (s, o) = self
            .send(
                reqwest::Method::GET,
                &format!("/orders/{id}"),
                &[],
                None,
                true,
            )
            .await;
        assert_eq!(s, 200, "GET /orders/{id}: {o}");
        o
    }

    /// Polls until `ok` holds for the order (120 s at most, restarts included).
    async fn until(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let o = self.order(id).await;
            if ok(&o) {
                return o;
            }
            assert!(Instant::now() < deadline, "order {id} never {what}: {o:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stripe(&self, body: Value) {
        let raw = body.to_string();
        let header =
            oms_local::sign::stripe_header(&raw, oms_local::DEV_SECRET, Utc::now().timestamp());
        let (s, b) = self
            .send(
                reqwest::Method::POST,
                "/webhooks/payment/stripe",
                &[
                    ("content-type", "application/json".into()),
                    ("stripe-signature", header),
                ],
                Some(raw),
                false,
            )
            .await;
        assert_eq!(s, 200, "stripe webhook: {b}");
    }

    async fn courier(&self, carrier: &str, tracking: &str, delivered: bool) {
        let at = Utc::now();
        let (path, headers, body) = if carrier == "sf" {
            let (body, header) = oms_local::sign::aftership(
                tracking,
                if delivered { "Delivered" } else { "InTransit" },
                at,
            );
            (
                "/webhooks/logistics/sf",
                vec![
                    ("content-type", "application/json".to_owned()),
                    ("aftership-hmac-sha256", header),
                ],
                body,
            )
        } else {
            (
                "/webhooks/logistics/zto",
                vec![(
                    "content-type",
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                oms_local::sign::kuaidi100(
                    carrier,
                    tracking,
                    if delivered { "3" } else { "1" },
                    at,
                ),
            )
        };
        let (s, b) = self
            .send(reqwest::Method::POST, path, &headers, Some(body), false)
            .await;
        assert_eq!(s, 200, "courier webhook: {b}");
    }
}

fn order_body(i: usize, channel: &str) -> Value {
    json!({
        "channel": channel, "external_id": format!("CRASH-{i}"),
        "customer": {"id": "C1001", "name": "Li Lei", "email": "li@example.com", "phone": "+8613800000000"},
        "lines": [{"sku": "TEA-001", "quantity": 2, "unit_price": 4990}],
        "currency": "CNY",
        "shipping_address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Jiangsu",
                             "city": "Nanjing", "line1": "1 Zhongshan Rd", "postal_code": "210000"},
        "payment_method": "prepaid"
    })
}

fn paid(event: &str, pi: &str, order: &str, amount: i64) -> Value {
    json!({"id": event, "type": "payment_intent.succeeded", "created": Utc::now().timestamp(),
           "data": {"object": {"id": pi, "amount": amount, "amount_received": amount,
                               "currency": "cny", "metadata": {"order_id": order}}}})
}

fn charge(event: &str, pi: &str, order: &str, amount: i64) -> Value {
    json!({"id": event, "type": "charge.succeeded", "created": Utc::now().timestamp(),
           "data": {"object": {"id": format!("ch_{pi}"), "payment_intent": pi, "amount": amount,
                               "amount_captured": amount, "currency": "cny",
                               "metadata": {"order_id": order}}}})
}

/// What each scenario plays, by `i % 6`.
const SCENARIOS: [&str; 6] = [
    "second payment",
    "cancel after payment",
    "expiry with a partial payment",
    "partial return",
    "full return",
    "one payment reported twice",
];

/// Plays one order's life; returns its id and scenario.
async fn play(c: &Client, i: usize) -> (String, usize) {
    let scenario = i % 6;
    let channel = if scenario == 2 { "app" } else { "web" };
    let (s, b) = c
        .send(
            reqwest::Method::POST,
            "/orders",
            &[
                ("content-type", "application/json".into()),
                ("idempotency-key", format!("crash-{i}")),
                (
                    "authorization",
                    format!("Bearer {}", oms_local::dev_channel_key(channel)),
                ),
            ],
            Some(order_body(i, channel).to_string()),
            false,
        )
        .await;
    assert!(s == 202 || s == 200, "POST /orders: {s} {b}");
    let id = b["order_id"].as_str().expect("order id").to_owned();
    let total = 2 * 4990;
    let pi = format!("pi_crash_{i}");
    let awaiting = c
        .until(&id, "awaited payment", |o| {
            o["status"] != "received" && o["status"] != "numbered" && o["status"] != "approved"
        })
        .await;
    assert_eq!(awaiting["status"], "awaiting_payment", "{awaiting:#}");
    match scenario {
        0 => {
            c.stripe(paid(&format!("evt_{i}_a"), &pi, &id, total)).await;
            c.until(&id, "was paid", |o| o["status"] == "ready_to_ship")
                .await;
            c.stripe(paid(&format!("evt_{i}_b"), &format!("{pi}_b"), &id, total))
                .await;
        }
        1 => {
            c.stripe(paid(&format!("evt_{i}_a"), &pi, &id, total)).await;
            c.until(&id, "was paid", |o| o["status"] == "ready_to_ship")
                .await;
            let (s, b) = c
                .send(
                    reqwest::Method::POST,
                    &format!("/orders/{id}/cancel"),
                    &[("content-type", "application/json".into())],
                    Some(json!({"reason": "changed my mind"}).to_string()),
                    true,
                )
                .await;
            assert_eq!(s, 200, "cancel: {b}");
        }
        2 => {
            // Half now; the rest never comes, and the order expires.
            c.stripe(paid(&format!("evt_{i}_a"), &pi, &id, total / 2))
                .await;
        }
        3 | 4 => {
            c.stripe(paid(&format!("evt_{i}_a"), &pi, &id, total)).await;
            let o = c
                .until(&id, "got its waybill", |o| {
                    o["shipments"].as_array().is_some_and(|s| !s.is_empty())
                })
                .await;
            let carrier = o["shipments"][0]["carrier"].as_str().unwrap().to_owned();
            let tracking = o["shipments"][0]["tracking_number"]
                .as_str()
                .unwrap()
                .to_owned();
            c.courier(&carrier, &tracking, false).await;
            c.courier(&carrier, &tracking, true).await;
            c.until(&id, "was delivered", |o| o["status"] == "delivered")
                .await;
            let mut body = json!({"reason": "too much tea"});
            if scenario == 3 {
                body["lines"] = json!([{"sku": "TEA-001", "quantity": 1}]);
            }
            let (s, b) = c
                .send(
                    reqwest::Method::POST,
                    &format!("/orders/{id}/return"),
                    &[("content-type", "application/json".into())],
                    Some(body.to_string()),
                    true,
                )
                .await;
            // 409 only when an earlier attempt (answer lost to a kill) asked already.
            assert!(
                s == 200 || (s == 409 && c.order(&id).await["returns"].is_array()),
                "return: {s} {b}"
            );
            let (s, b) = c
                .send(
                    reqwest::Method::POST,
                    &format!("/orders/{id}/return/received"),
                    &[],
                    None,
                    true,
                )
                .await;
            let received = |o: &Value| {
                o["returns"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["received_at"].is_string()))
            };
            assert!(
                s == 200 || (s == 409 && received(&c.order(&id).await)),
                "received: {s} {b}"
            );
        }
        _ => {
            // The same money reported on the intent and on its charge, each sent twice.
            for _ in 0..2 {
                c.stripe(paid(&format!("evt_{i}_a"), &pi, &id, total)).await;
                c.stripe(charge(&format!("evt_{i}_c"), &pi, &id, total))
                    .await;
            }
        }
    }
    (id, scenario)
}

fn status_of(o: &Value) -> String {
    o["status"].as_str().unwrap_or("?").to_owned()
}

fn sum(list: &Value, pick: impl Fn(&Value) -> bool) -> i64 {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter(|x| pick(x))
                .map(|x| x["amount"]["minor"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Whether nothing is left to happen to the order by itself.
fn settled(o: &Value) -> bool {
    let pending = o["pending_effects"].as_array().is_none_or(|p| p.is_empty());
    let requested = o["ledger"]["refunds"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["state"] == "requested"));
    let moving = matches!(
        status_of(o).as_str(),
        "received" | "numbered" | "approved" | "paid"
    ) || (status_of(o) == "awaiting_payment" && o["channel"] == "app")
        || (matches!(status_of(o).as_str(), "cancelled" | "expired" | "returned")
            && sum(&o["ledger"]["payments"], |_| true) > 0);
    pending && !requested && !moving
}

/// Checks the invariants of one settled order; returns what is wrong.
fn check(o: &Value, scenario: usize) -> Vec<String> {
    let mut bad = Vec::new();
    let st = status_of(o);
    let captured = sum(&o["ledger"]["payments"], |_| true);
    let refunded = sum(&o["ledger"]["refunds"], |r| r["state"] != "failed");
    let balance = captured - refunded;
    let total = o["total"]["minor"].as_i64().unwrap_or(0);
    if refunded > captured {
        bad.push(format!("refunded {refunded} > captured {captured}"));
    }
    let ended = matches!(
        st.as_str(),
        "cancelled" | "expired" | "rejected" | "returned" | "refunded"
    );
    if ended && balance != 0 {
        bad.push(format!("{st} but keeps {balance}"));
    }
    let returned: i64 = o["returns"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| r["received_at"].is_string())
                .map(|r| r["value"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    if matches!(
        st.as_str(),
        "paid" | "ready_to_ship" | "shipped" | "delivered" | "completed" | "return_requested"
    ) && balance != total - returned
    {
        bad.push(format!(
            "{st}: balance {balance}, should be {}",
            total - returned
        ));
    }
    let held = o["allocations"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["state"] == "held"));
    if ended && held {
        bad.push(format!("{st} but still holds stock"));
    }
    if o["ledger"]["refunds"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["state"] != "succeeded"))
    {
        bad.push("a refund did not succeed".into());
    }
    if !o["pending_effects"].as_array().is_none_or(|p| p.is_empty()) {
        bad.push(format!("effects left: {}", o["pending_effects"]));
    }
    // Every status change is allowed and follows the one before it.
    let mut at: Option<oms::domain::Status> = None;
    for e in o["timeline"].as_array().cloned().unwrap_or_default() {
        let Some(to) = e["to"].as_str() else { continue };
        let to: oms::domain::Status = to.parse().expect("a status");
        let from = e["from"]
            .as_str()
            .map(|f| f.parse::<oms::domain::Status>().expect("a status"));
        if from != at {
            bad.push(format!(
                "timeline jumps from {at:?} to an entry from {from:?}"
            ));
        }
        if let Some(f) = from
            && !f.can_become(to)
        {
            bad.push(format!("{f} -> {to} is not allowed"));
        }
        at = Some(to);
    }
    let expected = match scenario {
        0 | 5 => "ready_to_ship",
        1 | 2 | 4 => "refunded",
        _ => "delivered",
    };
    if st != expected {
        bad.push(format!("ended {st}, the scenario ends {expected}"));
    }
    let payments = o["ledger"]["payments"].as_array().map_or(0, Vec::len);
    let want_payments = if scenario == 0 { 2 } else { 1 };
    if payments != want_payments {
        bad.push(format!("{payments} payment(s), {want_payments} expected"));
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_binary_at_random_loses_no_money_and_no_stock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Arc::new(Mutex::new(Server {
        child: None,
        port: free_port(),
        dir: dir.path().to_owned(),
        config: config(dir.path()),
        kills: 0,
        starts: 0,
    }));
    let port = server.lock().await.port;
    server.lock().await.spawn();
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        base: format!("http://127.0.0.1:{port}"),
    };
    // Stock for every order, whatever the kills do.
    let (s, b) = c
        .send(
            reqwest::Method::PUT,
            "/stock/TEA-001/nj",
            &[("content-type", "application/json".into())],
            Some(json!({"on_hand": 100000, "safety": 0}).to_string()),
            true,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let started = Instant::now();

    // The killer: SIGKILL at a random moment every 0.7 to 2.5 s, and start again at once.
    let done = Arc::new(AtomicUsize::new(0));
    let killer = {
        let server = Arc::clone(&server);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(2026);
            while done.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(700 + rng.u64(0..1800))).await;
                if done.load(Ordering::Relaxed) != 0 {
                    break;
                }
                let mut s = server.lock().await;
                s.kill();
                s.spawn();
            }
        })
    };

    let lives: Vec<(String, usize)> = futures::stream::iter(0..ORDERS)
        .map(|i| {
            let c = c.clone();
            async move { play(&c, i).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // Keep killing until the minimum is reached, so that the test always crashes the binary.
    while server.lock().await.kills < MIN_KILLS {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(1, Ordering::Relaxed);
    killer.await.expect("killer");
    let played = started.elapsed();
    {
        let mut s = server.lock().await;
        if s.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        {
            s.spawn();
        }
    }

    // Settle: every order reaches a state where nothing more happens by itself (lost effects
    // come back after their grace time through the sweeper).
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut orders: BTreeMap<String, (usize, Value)> = BTreeMap::new();
    loop {
        let mut open = 0;
        for (id, scenario) in &lives {
            if orders.get(id).is_some_and(|(_, o)| settled(o)) {
                continue;
            }
            let o = c.order(id).await;
            if !settled(&o) {
                open += 1;
            }
            orders.insert(id.clone(), (*scenario, o));
        }
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} orders never settled, for example {:#}",
            orders
                .values()
                .find(|(_, o)| !settled(o))
                .map(|(_, o)| o.clone())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // One last read of every order, after everything settled.
    for (id, (_, o)) in orders.iter_mut() {
        *o = c.order(id).await;
    }

    let mut problems = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let (mut payments, mut refunds, mut returns) = (0, 0, 0);
    for (id, (scenario, o)) in &orders {
        for p in check(o, *scenario) {
            problems.push(format!("{id} ({}): {p}", SCENARIOS[*scenario]));
        }
        *tally.entry(status_of(o)).or_default() += 1;
        payments += o["ledger"]["payments"].as_array().map_or(0, Vec::len);
        refunds += o["ledger"]["refunds"].as_array().map_or(0, Vec::len);
        returns += o["returns"].as_array().map_or(0, Vec::len);
    }
    let stock: Value = c
        .send(reqwest::Method::GET, "/stock/TEA-001", &[], None, true)
        .await
        .1;
    let (kills, starts) = {
        let mut s = server.lock().await;
        s.kill();
        (s.kills, s.starts)
    };
    let dlq = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["dlq", "list"])
        .env("RUST_LOG", "error")
        .output()
        .expect("dlq list");
    let dlq = String::from_utf8_lossy(&dlq.stdout).into_owned();

    println!(
        "crash test: {} orders played in {:.1} s, {kills} kills (SIGKILL), {starts} starts",
        orders.len(),
        played.as_secs_f64()
    );
    println!("  final status: {tally:?}");
    println!("  payments {payments}, refunds {refunds}, returns {returns}");
    println!("  TEA-001: {}", stock["warehouses"]);
    print!("  dead-letter queues:\n{dlq}");

    assert!(kills >= MIN_KILLS, "only {kills} kills");
    assert_eq!(orders.len(), ORDERS);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Stock: 100000 set, minus what left with live and returned-in-part orders, plus what
    // came back; nothing reserved once every order settled (none is waiting for dispatch).
    let nj = stock["warehouses"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["warehouse"] == "nj"))
        .cloned()
        .expect("TEA-001 in nj");
    let shipped_units: u64 = orders
        .values()
        .filter(|(s, _)| *s == 3 || *s == 4)
        .map(|(s, _)| if *s == 3 { 1 } else { 0 })
        .sum();
    let reserved_units: u64 = orders
        .values()
        .filter(|(s, _)| *s == 0 || *s == 5)
        .map(|_| 2)
        .sum();
    assert_eq!(nj["on_hand"].as_u64(), Some(100000 - shipped_units), "{nj}");
    assert_eq!(nj["reserved"].as_u64(), Some(reserved_units), "{nj}");
    for line in dlq.lines() {
        assert!(
            line.ends_with(": 0 message(s)"),
            "a dead-letter queue is not empty: {dlq}"
        );
    }
}
