//! Every statement the embedded store runs for orders' lives uses an index: the test records the
//! text of each statement a workload runs (placing, numbering, reviewing, reserving, paying,
//! dispatching, cancelling, listing by status, customer and channel with cursors, look-ups,
//! catalogue and stock changes, the sweep, the effects), then asks SQLite for the plan of each
//! (`EXPLAIN QUERY PLAN`) and fails on any full scan of a table that grows with the business.
//! Throughput then does not fall as the tables grow.

use chrono::Utc;
use oms_tests::{Local, native_order, stripe_paid};
use reqwest::Method;
use serde_json::{Value, json};

/// Full scans that are fine, each with why: they cost the same on day one and day one thousand,
/// or they read exactly what the answer holds.
const ALLOWED: &[(&str, &str)] = &[
    ("SCAN queues", "one row per queue"),
    (
        "SCAN alerts",
        "GET /alerts answers every open alert: at most one per SKU and warehouse",
    ),
    (
        "USING INDEX orders_by_attention",
        "a partial index: only the orders waiting for a person",
    ),
    (
        "USING INDEX orders_by_due",
        "a partial index: only the orders with a deadline",
    ),
];

async fn page(local: &Local, path: &str) -> Value {
    let r = local.staff(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_of_the_order_lives_uses_an_index() {
    let seen = oms::adapters::sqlite::record_statements();
    let local = Local::sqlite().await;

    // Orders through their lives: one paid and shipped, one cancelled, one left waiting.
    let mut ids = Vec::new();
    for (customer, sku) in [
        ("C1001", "TEA-001"),
        ("C1001", "CUP-002"),
        ("C2002", "POT-003"),
    ] {
        let (status, _, body) = local
            .place(&native_order(customer, &[(sku, 1)]), None)
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["order_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        local.wait_for(id, "awaiting_payment").await;
    }
    let paid = local.get_order(&ids[0]).await;
    let total = paid["total"]["minor"].as_i64().unwrap();
    let r = local
        .stripe(
            &stripe_paid("evt_plan", &ids[0], total, "cny"),
            oms_local::DEV_SECRET,
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200);
    local.wait_for(&ids[0], "ready_to_ship").await;
    let r = local
        .staff(Method::POST, &format!("/orders/{}/cancel", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    local
        .until(&ids[1], "the cancellation's effects", |o| {
            o["pending_effects"].as_array().is_some_and(Vec::is_empty)
        })
        .await;

    // Every list, by each index, and its second page.
    for filter in [
        "status=awaiting_payment",
        "customer=C1001",
        "channel=web",
        "customer=C1001&status=cancelled",
        "channel=web&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
    ] {
        let first = page(&local, &format!("/orders?{filter}&limit=1")).await;
        if let Some(cursor) = first["next_cursor"].as_str() {
            let cursor: String = form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            page(&local, &format!("/orders?{filter}&limit=1&cursor={cursor}")).await;
        }
    }
    page(&local, "/reviews").await;
    page(&local, "/alerts").await;
    page(&local, "/warehouses").await;
    page(&local, "/stock/TEA-001").await;
    page(&local, "/catalogue?limit=2").await;
    page(&local, "/catalogue?after=CUP-002").await;
    page(&local, "/catalogue/TEA-001").await;
    let r = local
        .staff(Method::PUT, "/stock/CUP-002/nj")
        .json(&json!({"on_hand": 40, "safety": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = local
        .staff(Method::PUT, "/catalogue/MUG-009")
        .json(&json!({"name": "Mug", "weight_grams": 300, "prices": {"CNY": 2500}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let number = local.get_order(&ids[0]).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = local
        .http
        .get(local.url(&format!(
            "/orders/lookup?number={number}&contact=li%40example.com"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    local.sweep().await;
    local.running.stop().await;

    let statements: Vec<String> = seen.lock().unwrap().iter().cloned().collect();
    // Explain each on a database with the same schema.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.sqlite");
    drop(oms::adapters::sqlite::SqliteDb::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let verbose = std::env::var_os("OMS_SHOW_PLANS").is_some();
    let mut explained = 0;
    let mut scans = Vec::new();
    for sql in &statements {
        let verb = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !matches!(
            verb.as_str(),
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"
        ) {
            continue;
        }
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        // The plan does not depend on the values: the parameters stay unbound (NULL).
        let mut rows = stmt.raw_query();
        let mut plan = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get::<_, String>(3).unwrap());
        }
        explained += 1;
        for line in plan {
            if verbose {
                println!(
                    "{line:<70} {}",
                    sql.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            if line.starts_with("SCAN ") && !ALLOWED.iter().any(|(a, _)| line.contains(a)) {
                scans.push(format!("{line}\n    in: {sql}"));
            }
        }
    }
    assert!(
        explained >= 30,
        "the workload ran only {explained} statements: {statements:#?}"
    );
    assert!(
        scans.is_empty(),
        "{} statements scan a growing table:\n{}",
        scans.len(),
        scans.join("\n")
    );
    println!("query plans: {explained} distinct statements, every one searches by an index");
}
