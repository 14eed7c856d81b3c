//! Order merging on both backends: with the web channel's merge window on, two paid orders of
//! one customer to the same address from the same warehouse wait out the window and ship as one
//! parcel (one waybill, one freight charge); the timelines say so, and the courier's callbacks
//! move both. An order to another address ships on its own. The window runs on a manual clock;
//! the test sweeps when it means to.

use std::sync::Arc;

use chrono::Duration;
use oms::clock::Clock;
use oms_tests::{Local, Outside, native_order};
use serde_json::{Value, json};

fn config() -> oms::config::Config {
    let mut c = oms::config::Config::demo();
    c.channels
        .get_mut("web")
        .expect("web channel")
        .merge_window_minutes = Some(30);
    c
}

async fn start(dynamodb: bool, clock: Arc<oms::clock::ManualClock>) -> Option<Local> {
    let outside = Outside {
        clock,
        ..Outside::default()
    };
    if dynamodb {
        Local::dynamodb_outside(config(), Local::NO_TIMER, outside).await
    } else {
        Some(Local::sqlite_outside(config(), outside).await)
    }
}

/// Places and pays an order of `customer` to `line1`; returns its id once it waits to ship.
async fn paid(
    local: &Local,
    clock: &oms::clock::ManualClock,
    customer: &str,
    line1: &str,
    n: u32,
) -> String {
    let mut body = native_order(customer, &[("TEA-001", 1)]);
    body["shipping_address"]["line1"] = json!(line1);
    let (status, _, answer) = local.place(&body, None).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["order_id"].as_str().unwrap().to_owned();
    let order = local.wait_for(&id, "awaiting_payment").await;
    let total = order["total"]["minor"].as_i64().unwrap();
    let r = local
        .stripe(
            &oms_tests::stripe_paid(&format!("evt_merge_{n}"), &id, total, "cny"),
            oms_local::DEV_SECRET,
            clock.now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Paid, then held for the window (a timeline note), not shipped yet.
    local
        .until(&id, "held for the merge window", |o| {
            o["ship_after"].is_string() && o["status"] == "paid"
        })
        .await;
    id
}

async fn merges(dynamodb: bool) {
    let clock = Arc::new(oms::clock::ManualClock::new(chrono::Utc::now()));
    let Some(local) = start(dynamodb, clock.clone()).await else {
        return;
    };
    let a = paid(&local, &clock, "C3001", "1 Zhongshan Rd", 1).await;
    clock.advance(Duration::minutes(10));
    let b = paid(&local, &clock, "C3001", "1 Zhongshan Rd", 2).await;
    let other = paid(&local, &clock, "C3001", "9 Other Rd", 3).await;
    let held = local.get_order(&a).await;
    assert!(
        held["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("can ship with it"))),
        "{held:#}"
    );
    // Before the window closes nothing ships.
    local.sweep().await;
    assert_eq!(local.get_order(&a).await["status"], "paid");

    // The first order's window closes: it ships, with the second in the same parcel.
    clock.advance(Duration::minutes(21));
    local.sweep().await;
    let a_now = local
        .until(&a, "dispatched", |o| o["status"] == "ready_to_ship")
        .await;
    let b_now = local
        .until(&b, "dispatched with the first", |o| {
            o["status"] == "ready_to_ship"
        })
        .await;
    let (pa, pb) = (&a_now["shipments"][0], &b_now["shipments"][0]);
    assert_eq!(a_now["shipments"].as_array().unwrap().len(), 1);
    assert_eq!(b_now["shipments"].as_array().unwrap().len(), 1);
    let waybill = pa["tracking_number"].as_str().unwrap().to_owned();
    assert_eq!(pb["tracking_number"], waybill.as_str(), "one waybill");
    assert!(pa["cost"].as_i64().unwrap() > 0, "{pa}");
    assert_eq!(pb["cost"], 0, "one freight charge");
    assert_eq!(pa["merged"], json!([b]));
    assert_eq!(pb["merged_into"], a.as_str());
    let last_reason = |o: &Value| {
        o["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find_map(|e| e["reason"].as_str().filter(|r| r.starts_with("waybills")))
            .unwrap_or_default()
            .to_owned()
    };
    let (na, nb) = (
        a_now["number"].as_str().unwrap(),
        b_now["number"].as_str().unwrap(),
    );
    assert!(last_reason(&a_now).contains(nb), "{}", last_reason(&a_now));
    assert!(last_reason(&b_now).contains(na), "{}", last_reason(&b_now));

    // The order to another address ships on its own when its window closes.
    clock.advance(Duration::minutes(10));
    local.sweep().await;
    let o = local
        .until(&other, "dispatched alone", |o| {
            o["status"] == "ready_to_ship"
        })
        .await;
    assert_ne!(o["shipments"][0]["tracking_number"], waybill.as_str());
    assert!(o["shipments"][0].get("merged").is_none());
    // A second sweep moves nothing: the merged order is not shipped again.
    local.sweep().await;
    assert_eq!(
        local.get_order(&b).await["shipments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The courier collects and delivers the parcel: both orders move.
    let carrier = pa["carrier"].as_str().unwrap().to_owned();
    let at = chrono::Utc::now() - Duration::hours(3);
    for (step, status) in [(0, "shipped"), (1, "delivered")] {
        let r = if carrier == "zto" {
            local
                .kuaidi100(
                    "zto",
                    &waybill,
                    ["1", "3"][step],
                    at + Duration::hours(step as i64),
                )
                .await
        } else {
            local
                .aftership(
                    &carrier,
                    &waybill,
                    ["InTransit", "Delivered"][step],
                    at + Duration::hours(step as i64),
                )
                .await
        };
        assert_eq!(r.status(), 200);
        for id in [&a, &b] {
            local.until(id, status, |o| o["status"] == status).await;
        }
    }
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_paid_orders_to_one_address_ship_as_one_parcel() {
    merges(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_paid_orders_to_one_address_ship_as_one_parcel() {
    merges(true).await;
}
