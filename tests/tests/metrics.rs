//! The business metrics of a scripted run: the embedded-metric-format lines the functions write
//! (what CloudWatch turns into the OMS metrics) and the staff `/metrics` page count exactly what
//! happened.

use std::collections::BTreeMap;

use chrono::Utc;
use oms_tests::{Local, native_order, stripe_paid};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_lines_and_the_metrics_page_count_what_happened() {
    let local = Local::sqlite().await;
    // Given: two orders from a trusted customer, one held for an unusual quantity
    let (_, _, a) = local
        .place(&native_order("C1001", &[("TEA-001", 1)]), None)
        .await;
    let (_, _, _b) = local
        .place(&native_order("C1001", &[("TEA-001", 1)]), None)
        .await;
    let (_, _, c) = local
        .place(&native_order("C3003", &[("TEA-001", 60)]), None)
        .await;
    let a = a["order_id"].as_str().unwrap().to_owned();
    local.wait_for(&a, "awaiting_payment").await;
    local
        .wait_for(c["order_id"].as_str().unwrap(), "on_hold")
        .await;
    // one paid and cancelled (a refund owed and made)
    let paid = stripe_paid("evt_m1", &a, 4990, "cny");
    let r = local
        .stripe(&paid, oms_local::DEV_SECRET, Utc::now().timestamp())
        .await;
    assert_eq!(r.status(), 200);
    local.wait_for(&a, "ready_to_ship").await;
    let r = local
        .staff(Method::POST, &format!("/orders/{a}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    local.wait_for(&a, "refunded").await;
    // and a forged webhook and a stale one
    let r = local
        .stripe(
            &stripe_paid("evt_m2", &a, 1, "cny"),
            "not-the-secret",
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = local
        .stripe(
            &stripe_paid("evt_m3", &a, 1, "cny"),
            oms_local::DEV_SECRET,
            Utc::now().timestamp() - 3600,
        )
        .await;
    assert_eq!(r.status(), 401);

    // Then the EMF lines, by metric and dimension
    let mut seen: BTreeMap<(String, String), f64> = BTreeMap::new();
    for line in local.running.app.metrics.emf_lines() {
        let v: Value = serde_json::from_str(&line).unwrap();
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "OMS", "{line}");
        assert!(
            v["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000,
            "{line}"
        );
        let name = m["Metrics"][0]["Name"].as_str().unwrap().to_owned();
        let dims = m["Dimensions"][0].as_array().unwrap();
        let label = dims
            .first()
            .map(|d| v[d.as_str().unwrap()].as_str().unwrap().to_owned())
            .unwrap_or_default();
        if !dims.is_empty() {
            assert_eq!(
                m["Dimensions"][1],
                serde_json::json!([]),
                "a total beside the dimension: {line}"
            );
        }
        *seen.entry((name.clone(), label)).or_default() += v[&name].as_f64().unwrap();
    }
    let count = |n: &str, l: &str| {
        seen.get(&(n.to_owned(), l.to_owned()))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(count("OrdersAccepted", "web"), 3.0, "{seen:?}");
    assert_eq!(count("OrdersHeld", "web"), 1.0);
    assert_eq!(count("OrdersCancelled", "web"), 1.0);
    assert_eq!(count("OrdersRejected", "web"), 0.0);
    assert_eq!(count("RefundsRequested", ""), 1.0);
    assert_eq!(count("RefundsMade", ""), 1.0);
    assert_eq!(count("RefundsRefused", ""), 0.0);
    assert_eq!(count("WebhooksRefused", "bad_signature"), 1.0);
    assert_eq!(count("WebhooksRefused", "stale"), 1.0);
    assert!(count("StepLatency", "numbering") > 0.0);
    let latency_lines = local
        .running
        .app
        .metrics
        .emf_lines()
        .iter()
        .filter(|l| l.contains("\"StepLatency\""))
        .count();
    assert!(
        latency_lines >= 3 * 3,
        "numbering, review and inventory for three orders: {latency_lines}"
    );

    // And the staff page shows the same counts
    let page = local.staff(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    for expected in [
        "oms_orders_accepted_total{channel=\"web\"} 3",
        "oms_orders_held_total{channel=\"web\"} 1",
        "oms_orders_cancelled_total{channel=\"web\"} 1",
        "oms_refunds_requested_total 1",
        "oms_refunds_made_total 1",
        "oms_webhooks_refused_total{reason=\"bad_signature\"} 1",
        "oms_webhooks_refused_total{reason=\"stale\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected} not in:\n{text}"
        );
    }
    let anonymous = local.http.get(local.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "staff only");
    local.running.stop().await;
}
