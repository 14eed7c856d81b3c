//! Money a person moves, over HTTP on both stores, with the shipped configuration's payment
//! gateway (a provider without an API, like cash, a marketplace or a bank transfer, is refused
//! for good): a bank transfer pays an order, and a refund no provider can make is recorded as
//! paid by hand, which ends the order and clears what waited for a person.

use std::sync::Arc;

use oms_tests::{Local, Outside, problem};
use reqwest::Method;
use serde_json::json;

async fn start(on: &str) -> Option<Local> {
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/config/oms.toml"
    ));
    let mut config = oms::config::Config::load(path).expect("the shipped configuration loads");
    // Its carriers' and providers' APIs are not reached in this test: simulated.
    for c in config.carriers.values_mut() {
        c.client = oms::config::ClientKind::Simulated;
    }
    let gateway = oms::payments::clients::ConfiguredGateway::from_config(
        &config,
        &oms_local::dev_secrets(&config),
        &oms::adapters::https::HttpsClient::new(std::time::Duration::from_secs(5)).unwrap(),
    );
    let outside = Outside {
        gateway: Arc::new(gateway),
        ..Outside::default()
    };
    match on {
        "sqlite" => Some(Local::sqlite_outside(config, outside).await),
        _ => Local::dynamodb_outside(config, Local::NO_TIMER, outside).await,
    }
}

async fn a_bank_transfer_pays_and_a_refund_paid_by_hand_ends_the_order(on: &str) {
    let Some(local) = start(on).await else {
        return;
    };
    let (_, _, body) = local
        .place(&oms_tests::native_order("C1001", &[("TEA-001", 2)]), None)
        .await;
    let id = body["order_id"].as_str().unwrap().to_owned();
    local.wait_for(&id, "awaiting_payment").await;
    let pay = |b: serde_json::Value| {
        local
            .staff(Method::POST, &format!("/orders/{id}/payments"))
            .json(&b)
    };
    // Bad input is refused, naming the field, and changes nothing
    for (b, field) in [
        (json!({"amount": 9980}), "reference"),
        (json!({"amount": 0, "reference": "B-1"}), "amount"),
        (json!({"amount": "99.80", "reference": "B-1"}), "amount"),
        (
            json!({"amount": 9980, "reference": "B-1", "currency": "usd!"}),
            "currency",
        ),
    ] {
        let p = problem(pay(b), 400, "a bad payment").await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    // Another currency is refused with the reason
    problem(
        pay(json!({"amount": 9980, "reference": "B-1", "currency": "USD"})),
        409,
        "another currency",
    )
    .await;
    // When staff record the customer's bank transfer
    let r = pay(json!({"amount": 9980, "reference": "BANK-20261207-001", "by": "Wang Fang"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let paid: serde_json::Value = r.json().await.unwrap();
    oms_tests::assert_described("POST", "/orders/{id}/payments", 200, &paid);
    let payment = &paid["ledger"]["payments"][0];
    assert_eq!(payment["provider"], "manual");
    assert_eq!(payment["source"], "manual");
    assert_eq!(payment["payment_id"], "BANK-20261207-001");
    // Then the order is paid and goes on to be shipped
    let shipped = local.wait_for(&id, "ready_to_ship").await;
    let timeline = shipped["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|e| e["to"] == "paid"
            && e["actor"]["kind"] == "staff"
            && e["actor"]["name"] == "Wang Fang"),
        "the payment is on the timeline under the person named (the shared token): {timeline:?}"
    );
    // The same transfer again changes nothing; a paid order takes no other payment
    let again = pay(json!({"amount": 9980, "reference": "BANK-20261207-001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    problem(
        pay(json!({"amount": 100, "reference": "BANK-2"})),
        409,
        "a paid order",
    )
    .await;

    // When the order is cancelled, its refund cannot go through any provider
    let r = local
        .staff(Method::POST, &format!("/orders/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let waiting = local
        .until(&id, "the refund refused", |o| {
            o["ledger"]["refunds"][0]["state"] == "failed"
        })
        .await;
    assert_eq!(waiting["status"], "cancelled");
    assert!(local.review_list().await.contains(&id));
    let refund = waiting["ledger"]["refunds"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid_back = |reference: &str, refund: &str| {
        local
            .staff(Method::POST, &format!("/orders/{id}/refunds/{refund}/paid"))
            .json(&json!({"reference": reference}))
    };
    problem(
        paid_back("BANK-BACK-1", "rf-unknown"),
        409,
        "an unknown refund",
    )
    .await;
    let p = problem(
        local
            .staff(Method::POST, &format!("/orders/{id}/refunds/{refund}/paid"))
            .json(&json!({})),
        400,
        "no reference",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "reference");
    // Then staff record that they paid it back by bank transfer
    let r = paid_back("BANK-BACK-1", &refund).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done: serde_json::Value = r.json().await.unwrap();
    oms_tests::assert_described("POST", "/orders/{id}/refunds/{refund}/paid", 200, &done);
    // And the order ends refunded, nothing waits for a person, the money balances
    assert_eq!(done["status"], "refunded", "{done:#}");
    assert_eq!(done["ledger"]["refunds"][0]["state"], "succeeded");
    assert_eq!(
        done["ledger"]["refunds"][0]["provider_refund_id"],
        "manual:BANK-BACK-1"
    );
    assert!(done["attention"].as_array().is_none_or(|a| a.is_empty()));
    assert!(!local.review_list().await.contains(&id));
    let again = paid_back("BANK-BACK-1", &refund).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let after = local.get_order(&id).await;
    assert_eq!(after["version"], done["version"]);
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_bank_transfer_pays_and_a_refund_paid_by_hand_ends_the_order() {
    a_bank_transfer_pays_and_a_refund_paid_by_hand_ends_the_order("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_bank_transfer_pays_and_a_refund_paid_by_hand_ends_the_order() {
    a_bank_transfer_pays_and_a_refund_paid_by_hand_ends_the_order("dynamodb").await;
}
