//! An order's whole life over real HTTP: payment webhooks, dispatch, courier callbacks, expiry,
//! cancellation, returns and refunds. Providers and couriers are played by the tests, signing
//! their callbacks as the real ones do.
//!
//! Money is read from the order's ledger: `ledger.payments` (one per provider payment id) and
//! `ledger.refunds` (ours, `rf-<order>-<n>`, or reported by the provider, `ext:...`). A refund is
//! an effect: the change writes it `requested`, the effects step asks the (simulated) provider
//! and marks it `succeeded`; so after anything that pays money back the tests wait for that.

use chrono::{Duration, Utc};
use oms_tests::{Local, native_order, stripe_paid};
use reqwest::Method;
use serde_json::{Value, json};

oms_tests::backend_cases!(
    both: [
        a_paid_order_ships_is_delivered_and_completes,
        cancelling_an_order_paid_twice_refunds_both_payments,
        a_partial_return_refunds_its_lines_and_restocks_them,
    ],
    sqlite_only: [
        forged_stale_and_replayed_payment_webhooks_change_nothing,
        an_underpayment_waits_for_a_top_up_and_an_overpayment_is_refunded_the_excess,
        an_alipay_notification_pays_the_order_and_is_answered_success,
        stripe_reports_one_payment_twice_and_it_counts_once,
        duplicate_and_out_of_order_courier_events_never_move_a_parcel_back,
        a_split_order_ships_with_its_first_parcel_and_is_delivered_with_its_last,
        cancelling_after_payment_refunds_the_money,
        a_return_within_the_window_is_refunded,
        a_second_payment_for_a_paid_order_is_refunded,
        a_refund_made_at_the_provider_is_recorded_once,
        two_sweeps_at_once_expire_an_order_once,
        an_underpaid_order_that_expires_gets_its_partial_payment_back,
    ]
);

const SECRET: &str = oms_local::DEV_SECRET;

async fn awaiting_payment(local: &Local, lines: &[(&str, i64)]) -> Value {
    placed(local, &native_order("C1001", lines)).await
}

/// Places `body` and waits until the order awaits its payment.
async fn placed(local: &Local, body: &Value) -> Value {
    let (status, _, body) = local.place(body, None).await;
    assert_eq!(status, 202, "{body}");
    local
        .wait_for(body["order_id"].as_str().unwrap(), "awaiting_payment")
        .await
}

/// Pays the order's total through the Stripe-style provider (payment intent `pi_<event>`).
async fn pay(local: &Local, order: &Value, event: &str) {
    let id = order["id"].as_str().unwrap();
    let total = order["total"]["minor"].as_i64().unwrap();
    pay_amount(local, id, event, total, "cny").await;
}

/// Pays `amount` in `currency` (payment intent `pi_<event>`); the webhook is answered 200.
async fn pay_amount(local: &Local, id: &str, event: &str, amount: i64, currency: &str) {
    let r = local
        .stripe(
            &stripe_paid(event, id, amount, currency),
            SECRET,
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200, "{event}");
}

/// A Stripe-style `charge.succeeded` for the charge `charge` of the payment intent `intent`.
fn stripe_charge(event: &str, charge: &str, intent: &str, order_id: &str, amount: i64) -> Value {
    json!({"id": event, "type": "charge.succeeded", "created": Utc::now().timestamp(),
        "data": {"object": {"id": charge, "payment_intent": intent, "amount": amount,
                            "amount_captured": amount, "currency": "cny",
                            "metadata": {"order_id": order_id}}}})
}

/// Waits until the order has its waybills, and returns it.
async fn dispatched(local: &Local, id: &str) -> Value {
    let order = local.wait_for(id, "ready_to_ship").await;
    if !order["shipments"].as_array().unwrap().is_empty() {
        return order;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let order = local.get_order(id).await;
    assert!(
        !order["shipments"].as_array().unwrap().is_empty(),
        "{order}"
    );
    order
}

/// Polls the order until `done` holds (10 s at most), and returns it.
async fn wait_until(local: &Local, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let order = local.get_order(id).await;
        if done(&order) {
            return order;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {id}: {what} did not happen; it is {}, ledger {:#}, pending effects {:#}, \
             attention {}, timeline {:#}",
            order["status"],
            order["ledger"],
            order["pending_effects"],
            order["attention"],
            order["timeline"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until no refund of the order is still being made (none `requested`, no refund effect
/// pending), and returns it. Whether each one succeeded is for the caller to assert.
async fn refunds_settled(local: &Local, id: &str) -> Value {
    wait_until(local, id, "its refunds settling", |o| {
        let requested = o["ledger"]["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "requested");
        let pending = o["pending_effects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"]["type"] == "refund");
        !requested && !pending
    })
    .await
}

/// Waits until the order reaches `status` with no refund still being made.
async fn settled_in(local: &Local, id: &str, status: &str) -> Value {
    local.wait_for(id, status).await;
    let order = refunds_settled(local, id).await;
    assert_eq!(order["status"], status);
    order
}

fn statuses(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["to"].as_str().map(str::to_owned))
        .collect()
}

/// The reasons written on the timeline (status changes and notes).
fn notes(order: &Value) -> Vec<&str> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect()
}

/// `(provider, payment id, amount, currency, source)` of every payment in the ledger.
fn payments(order: &Value) -> Vec<(&str, &str, i64, &str, &str)> {
    order["ledger"]["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["provider"].as_str().unwrap(),
                p["payment_id"].as_str().unwrap(),
                p["amount"]["minor"].as_i64().unwrap(),
                p["amount"]["currency"].as_str().unwrap(),
                p["source"].as_str().unwrap(),
            )
        })
        .collect()
}

/// `(payment id paid back, amount, currency, state)` of every refund in the ledger, in order.
fn refunds(order: &Value) -> Vec<(&str, i64, &str, &str)> {
    order["ledger"]["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["payment_id"].as_str().unwrap(),
                r["amount"]["minor"].as_i64().unwrap(),
                r["amount"]["currency"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect()
}

/// What the merchant holds in `currency`: captured less what the provider confirmed it paid
/// back.
fn balance_in(order: &Value, currency: &str) -> i64 {
    let captured: i64 = payments(order)
        .iter()
        .filter(|p| p.3 == currency)
        .map(|p| p.2)
        .sum();
    let back: i64 = refunds(order)
        .iter()
        .filter(|r| r.2 == currency && r.3 == "succeeded")
        .map(|r| r.1)
        .sum();
    captured - back
}

/// The balance in the order's currency.
fn balance(order: &Value) -> i64 {
    balance_in(order, order["total"]["currency"].as_str().unwrap())
}

/// Nothing about the order waits for a person.
fn no_attention(order: &Value) {
    assert!(
        order
            .get("attention")
            .is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)),
        "{}",
        order["attention"]
    );
}

async fn stock(local: &Local, sku: &str, wh: &str) -> (u64, u64) {
    let (on_hand, reserved, _) = local.stock(sku, wh).await;
    (on_hand, reserved)
}

async fn cancel(local: &Local, id: &str) -> Value {
    let r = local
        .staff(Method::POST, &format!("/orders/{id}/cancel"))
        .json(&json!({"reason": "customer changed their mind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A configuration whose web orders are due for payment as soon as their stock is reserved, so
/// that the next sweep expires them.
fn due_at_once() -> oms::config::Config {
    let mut config = oms::config::Config::demo();
    config
        .channels
        .get_mut("web")
        .unwrap()
        .payment_timeout_seconds = Some(0);
    config
}

mod cases {
    use super::*;

    pub async fn a_paid_order_ships_is_delivered_and_completes(local: &Local) {
        // Given an order awaiting payment, paid through the Stripe-style provider
        let order = awaiting_payment(local, &[("TEA-001", 2)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_life_1").await;

        // Then dispatch picks ZTO (cheapest for Jiangsu within the promise) and makes a waybill
        let order = dispatched(local, &id).await;
        let parcel = order["shipments"][0].clone();
        assert_eq!(
            (
                parcel["carrier"].as_str(),
                parcel["warehouse"].as_str(),
                parcel["weight_grams"].as_u64()
            ),
            (Some("zto"), Some("nj"), Some(500))
        );
        let waybill = parcel["tracking_number"].as_str().unwrap().to_owned();
        assert_eq!(
            payments(&order),
            [("stripe", "pi_evt_life_1", 9980, "CNY", "provider")]
        );
        assert!(refunds(&order).is_empty());

        // When the courier collects it (Kuaidi100 state 1), the order ships and stock leaves the shelf
        let collected = Utc::now() - Duration::days(9);
        assert_eq!(
            local
                .kuaidi100("zto", &waybill, "1", collected)
                .await
                .status(),
            200
        );
        assert_eq!(local.get_order(&id).await["status"], "shipped");
        oms_tests::settles("TEA-001 in nj", (498, 0), || stock(local, "TEA-001", "nj")).await;

        // When it is signed for (state 3), the order is delivered, and the answer is Kuaidi100's
        let r = local
            .kuaidi100("zto", &waybill, "3", collected + Duration::days(1))
            .await;
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"result":true,"returnCode":"200","message":"成功"}"#
        );
        let delivered = local.get_order(&id).await;
        assert_eq!(delivered["status"], "delivered");

        // And once the return window has passed, the sweeper completes it
        let swept = local.sweep().await;
        assert_eq!(swept.completed, 1);
        let done = local.get_order(&id).await;
        assert_eq!(
            statuses(&done),
            [
                "received",
                "numbered",
                "approved",
                "awaiting_payment",
                "paid",
                "ready_to_ship",
                "shipped",
                "delivered",
                "completed"
            ]
        );
        // The merchant kept exactly the total
        assert!(refunds(&done).is_empty());
        assert_eq!(balance(&done), 9980);

        // And the customer was told at every visible step (the last moments after the sweep,
        // where the relay sends it from the table's stream)
        let q = oms::app::queues::name(oms::app::queues::NOTIFICATIONS);
        let mut told = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = local
                .running
                .app
                .queue
                .receive(
                    &q,
                    oms::ports::Receive {
                        max_messages: 10,
                        visibility_timeout: std::time::Duration::from_secs(30),
                        wait: std::time::Duration::ZERO,
                    },
                )
                .await
                .unwrap();
            if got.is_empty() {
                if told.len() >= 6 || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            for m in got {
                let n: Value = serde_json::from_str(&m.body).unwrap();
                if n["order_id"] == id.as_str() {
                    told.push(n["status"].as_str().unwrap().to_owned());
                    if n["status"] == "shipped" {
                        assert_eq!(n["tracking"][0]["tracking_number"], waybill.as_str());
                    }
                }
            }
        }
        told.sort();
        assert_eq!(
            told,
            [
                "awaiting_payment",
                "completed",
                "delivered",
                "paid",
                "received",
                "shipped"
            ]
        );
    }

    pub async fn forged_stale_and_replayed_payment_webhooks_change_nothing(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap();
        let event = stripe_paid("evt_forge", id, 4990, "cny");
        let now = Utc::now().timestamp();
        // Forged: signed with another secret
        assert_eq!(
            local.stripe(&event, "not-the-secret", now).await.status(),
            401
        );
        // Stale: a capture from ten minutes ago
        assert_eq!(local.stripe(&event, SECRET, now - 600).await.status(), 401);
        // Tampered: signature over one body, another body sent
        let raw = event.to_string();
        let header = oms::payments::stripe::sign(raw.as_bytes(), SECRET.as_bytes(), now);
        let tampered = raw.replace("4990", "1");
        let r = local
            .http
            .post(local.url("/webhooks/payment/stripe"))
            .header("Stripe-Signature", header)
            .body(tampered)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let untouched = local.get_order(id).await;
        assert_eq!(untouched["status"], "awaiting_payment", "nothing applied");
        assert!(payments(&untouched).is_empty(), "nothing recorded");

        // Genuine, then replayed twice
        for _ in 0..3 {
            assert_eq!(local.stripe(&event, SECRET, now).await.status(), 200);
        }
        let paid = local.get_order(id).await;
        assert_eq!(
            payments(&paid),
            [("stripe", "pi_evt_forge", 4990, "CNY", "provider")],
            "applied once"
        );
        assert!(refunds(&paid).is_empty(), "nothing to pay back");
        assert_eq!(balance(&paid), 4990);
        assert_eq!(statuses(&paid).iter().filter(|s| *s == "paid").count(), 1);
        // An unknown provider is 404
        let r = local
            .http
            .post(local.url("/webhooks/payment/paypal"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }

    pub async fn an_underpayment_waits_for_a_top_up_and_an_overpayment_is_refunded_the_excess(
        local: &Local,
    ) {
        // Too little: recorded, and the order still waits for what is owed
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay_amount(local, &id, "evt_short", 4000, "cny").await;
        let short = local.get_order(&id).await;
        assert_eq!(short["status"], "awaiting_payment");
        assert!(
            notes(&short)
                .iter()
                .any(|n| n.contains("40.00 CNY") && n.contains("9.90 CNY still owed")),
            "{:#}",
            short["timeline"]
        );
        assert_eq!(
            payments(&short),
            [("stripe", "pi_evt_short", 4000, "CNY", "provider")],
            "recorded, not dropped"
        );
        assert!(refunds(&short).is_empty(), "nothing is paid back");
        assert!(short["payment_due_at"].is_string(), "still due for payment");
        // A top-up that covers what is owed pays the order, which goes on to dispatch
        pay_amount(local, &id, "evt_topup", 990, "cny").await;
        let topped = dispatched(local, &id).await;
        assert_eq!(statuses(&topped).iter().filter(|s| *s == "paid").count(), 1);
        assert_eq!(
            payments(&topped),
            [
                ("stripe", "pi_evt_short", 4000, "CNY", "provider"),
                ("stripe", "pi_evt_topup", 990, "CNY", "provider")
            ]
        );
        assert!(refunds(&topped).is_empty());
        assert_eq!(balance(&topped), 4990);

        // Too much: the order is paid and the excess paid back
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay_amount(local, &id, "evt_over", 6000, "cny").await;
        let over = refunds_settled(local, &id).await;
        assert!(
            ["paid", "ready_to_ship"].contains(&over["status"].as_str().unwrap()),
            "{}",
            over["status"]
        );
        assert_eq!(
            payments(&over),
            [("stripe", "pi_evt_over", 6000, "CNY", "provider")]
        );
        assert_eq!(
            refunds(&over),
            [("pi_evt_over", 1010, "CNY", "succeeded")],
            "exactly the excess"
        );
        assert_eq!(balance(&over), 4990);
        no_attention(&over);
        dispatched(local, &id).await;

        // Another currency: the order still waits, and that payment is paid back in full
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay_amount(local, &id, "evt_usd", 4990, "usd").await;
        let foreign = refunds_settled(local, &id).await;
        assert_eq!(foreign["status"], "awaiting_payment");
        assert_eq!(
            payments(&foreign),
            [("stripe", "pi_evt_usd", 4990, "USD", "provider")]
        );
        assert_eq!(
            refunds(&foreign),
            [("pi_evt_usd", 4990, "USD", "succeeded")]
        );
        assert_eq!(balance_in(&foreign, "USD"), 0);
        assert_eq!(balance(&foreign), 0, "nothing counts towards the CNY total");
    }

    pub async fn an_alipay_notification_pays_the_order_and_is_answered_success(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 2)]).await;
        let id = order["id"].as_str().unwrap();
        let number = order["number"].as_str().unwrap();
        let params = [
            ("notify_id", "ntf_0001"),
            ("notify_time", "2026-11-27 12:00:00"),
            ("notify_type", "trade_status_sync"),
            ("app_id", "2021000000000001"),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("out_trade_no", number),
            ("trade_no", "2026112722001400001"),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "99.80"),
            ("buyer_id", "2088000000000001"),
        ];
        let r = local.alipay(&params).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "success");
        let paid = local.get_order(id).await;
        assert!(
            ["paid", "ready_to_ship"].contains(&paid["status"].as_str().unwrap()),
            "{}",
            paid["status"]
        );
        let once = [("alipay", "2026112722001400001", 9980, "CNY", "provider")];
        assert_eq!(payments(&paid), once);
        // A replay is answered success and changes nothing
        assert_eq!(local.alipay(&params).await.text().await.unwrap(), "success");
        // Nor does the same trade reported again, finished, under another notification id
        let mut finished = params;
        finished[0] = ("notify_id", "ntf_0003");
        finished[8] = ("trade_status", "TRADE_FINISHED");
        assert_eq!(
            local.alipay(&finished).await.text().await.unwrap(),
            "success"
        );
        let after = local.get_order(id).await;
        assert_eq!(payments(&after), once, "one payment per trade_no");
        assert!(refunds(&after).is_empty());
        assert_eq!(balance(&after), 9980);
        // Another merchant's app id is refused; a tampered amount fails the signature
        let mut other = params;
        other[3] = ("app_id", "2021000000009999");
        other[0] = ("notify_id", "ntf_0002");
        assert_eq!(local.alipay(&other).await.status(), 400);
        let body = oms_tests::form_body(&params) + "&sign_type=RSA2&sign=AAAA";
        let r = local
            .http
            .post(local.url("/webhooks/payment/alipay"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    pub async fn stripe_reports_one_payment_twice_and_it_counts_once(local: &Local) {
        // The intent succeeds, then its charge is reported under another event id
        let order = awaiting_payment(local, &[("TEA-001", 2)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_twice_pi").await;
        let charge = stripe_charge("evt_twice_ch", "ch_twice_1", "pi_evt_twice_pi", &id, 9980);
        assert_eq!(
            local
                .stripe(&charge, SECRET, Utc::now().timestamp())
                .await
                .status(),
            200,
            "nothing new is still answered 200"
        );
        let paid = local.get_order(&id).await;
        let once = [("stripe", "pi_evt_twice_pi", 9980, "CNY", "provider")];
        assert_eq!(payments(&paid), once, "one payment per intent");
        assert!(refunds(&paid).is_empty(), "nothing is paid back");
        assert_eq!(balance(&paid), 9980);
        assert_eq!(statuses(&paid).iter().filter(|s| *s == "paid").count(), 1);

        // And the order ships as any other
        let order = dispatched(local, &id).await;
        let waybill = order["shipments"][0]["tracking_number"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            local
                .kuaidi100("zto", &waybill, "1", Utc::now() - Duration::hours(1))
                .await
                .status(),
            200
        );
        let shipped = local.get_order(&id).await;
        assert_eq!(shipped["status"], "shipped");
        assert_eq!(payments(&shipped), once);
        assert!(refunds(&shipped).is_empty());
        assert!(
            !shipped["pending_effects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"]["type"] == "refund"),
            "{:#}",
            shipped["pending_effects"]
        );

        // The other way round: the charge first, then its intent
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        let charge = stripe_charge("evt_rev_ch", "ch_rev_1", "pi_evt_rev_pi", &id, 4990);
        assert_eq!(
            local
                .stripe(&charge, SECRET, Utc::now().timestamp())
                .await
                .status(),
            200
        );
        pay(local, &order, "evt_rev_pi").await;
        let order = dispatched(local, &id).await;
        assert_eq!(
            payments(&order),
            [("stripe", "pi_evt_rev_pi", 4990, "CNY", "provider")]
        );
        assert!(refunds(&order).is_empty());
        assert_eq!(statuses(&order).iter().filter(|s| *s == "paid").count(), 1);
    }

    pub async fn duplicate_and_out_of_order_courier_events_never_move_a_parcel_back(local: &Local) {
        // Xinjiang is beyond ZTO: SF (AfterShip vocabulary) takes it
        let mut o = native_order("C1001", &[("TEA-001", 1)]);
        o["shipping_address"]["region"] = json!("Xinjiang");
        o["shipping_address"]["city"] = json!("Urumqi");
        let order = placed(local, &o).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_xj").await;
        let order = dispatched(local, &id).await;
        assert_eq!(order["shipments"][0]["carrier"], "sf");
        let waybill = order["shipments"][0]["tracking_number"]
            .as_str()
            .unwrap()
            .to_owned();
        let t = Utc::now() - Duration::hours(5);
        // A duplicate, an older event, and a step back that is newer: none moves the parcel back
        let h = Duration::hours;
        for (tag, at) in [
            ("InTransit", t),
            ("InTransit", t),
            ("OutForDelivery", t + h(2)),
            ("InTransit", t + h(1)),
            ("InTransit", t + h(3)),
        ] {
            assert_eq!(
                local.aftership("sf", &waybill, tag, at).await.status(),
                200,
                "{tag}"
            );
        }
        let on_the_way = local.get_order(&id).await;
        assert_eq!(on_the_way["shipments"][0]["status"], "out_for_delivery");
        assert_eq!(on_the_way["status"], "shipped");
        // An attempt stamped after the delivery arrives before it; the delivery is final all
        // the same, and a late "in transit" after it changes nothing
        for (tag, at) in [
            ("AttemptFail", t + h(4) + Duration::minutes(30)),
            ("Delivered", t + h(4)),
            ("InTransit", t + h(5)),
        ] {
            assert_eq!(
                local.aftership("sf", &waybill, tag, at).await.status(),
                200,
                "{tag}"
            );
        }
        let done = local.get_order(&id).await;
        assert_eq!(done["status"], "delivered");
        assert_eq!(done["shipments"][0]["status"], "delivered");
        assert_eq!(
            statuses(&done).iter().filter(|s| *s == "shipped").count(),
            1
        );
        assert_eq!(
            statuses(&done).iter().filter(|s| *s == "delivered").count(),
            1
        );
        // A forged callback and an unknown waybill are refused
        let body =
            json!({"msg": {"tracking_number": waybill, "tag": "Exception", "checkpoints": []}})
                .to_string();
        let r = local
            .http
            .post(local.url("/webhooks/logistics/sf"))
            .header("aftership-hmac-sha256", "Zm9yZ2Vk")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            local
                .aftership("sf", "SF000", "InTransit", t)
                .await
                .status(),
            404
        );
    }

    pub async fn a_split_order_ships_with_its_first_parcel_and_is_delivered_with_its_last(
        local: &Local,
    ) {
        // POT-003: 8 in Nanjing, 6 in Shanghai; 10 wanted
        let order = awaiting_payment(local, &[("POT-003", 10)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_split").await;
        let order = dispatched(local, &id).await;
        let parcels: Vec<(String, String, String)> = order["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["warehouse"].as_str().unwrap().into(),
                    s["carrier"].as_str().unwrap().into(),
                    s["tracking_number"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(parcels.len(), 2, "{parcels:?}");
        let t = Utc::now() - Duration::hours(10);
        let send = |i: usize, state: &'static str, h: i64| {
            let (_, carrier, waybill) = parcels[i].clone();
            async move {
                local
                    .kuaidi100(&carrier, &waybill, state, t + Duration::hours(h))
                    .await
                    .status()
            }
        };
        assert_eq!(send(0, "1", 0).await, 200);
        assert_eq!(
            local.get_order(&id).await["status"],
            "shipped",
            "shipped with the first parcel"
        );
        assert_eq!(
            stock(local, "POT-003", &parcels[0].0).await.1,
            0,
            "that parcel's stock left"
        );
        assert_eq!(send(0, "3", 1).await, 200);
        assert_eq!(
            local.get_order(&id).await["status"],
            "shipped",
            "one of two delivered"
        );
        assert_eq!(send(1, "1", 2).await, 200);
        assert_eq!(send(1, "3", 3).await, 200);
        assert_eq!(local.get_order(&id).await["status"], "delivered");
        oms_tests::settles("POT-003 in nj", (0, 0), || stock(local, "POT-003", "nj")).await;
        oms_tests::settles("POT-003 in sh", (4, 0), || stock(local, "POT-003", "sh")).await;
    }

    pub async fn cancelling_after_payment_refunds_the_money(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 3)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_cancel").await;
        dispatched(local, &id).await;
        // The cancel is answered at once; the refund is on its way
        let cancelled = cancel(local, &id).await;
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(
            refunds(&cancelled),
            [("pi_evt_cancel", 3 * 4990, "CNY", "requested")]
        );
        assert_eq!(
            cancelled["ledger"]["refunds"][0]["id"],
            format!("rf-{id}-1"),
            "our refund id, the provider's idempotency key"
        );
        oms_tests::settles("TEA-001 in nj", (500, 0), || stock(local, "TEA-001", "nj")).await;

        // Once the provider made it, everything is back and the order is refunded
        let done = settled_in(local, &id, "refunded").await;
        assert_eq!(
            payments(&done),
            [("stripe", "pi_evt_cancel", 3 * 4990, "CNY", "provider")]
        );
        assert_eq!(
            refunds(&done),
            [("pi_evt_cancel", 3 * 4990, "CNY", "succeeded")]
        );
        assert!(
            done["ledger"]["refunds"][0]["provider_refund_id"].is_string(),
            "{:#}",
            done["ledger"]
        );
        assert_eq!(balance(&done), 0);
        no_attention(&done);
        assert_eq!(statuses(&done)[6..], ["cancelled", "refunded"]);

        // The provider then reports that refund (cumulative, against the payment): nothing new
        let reported = json!({"id": "evt_refund_report", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_evt_cancel", "amount": 3 * 4990,
                                "amount_refunded": 3 * 4990, "currency": "cny", "metadata": {"order_id": id}}}});
        assert_eq!(
            local
                .stripe(&reported, SECRET, Utc::now().timestamp())
                .await
                .status(),
            200
        );
        let after = local.get_order(&id).await;
        assert_eq!(
            refunds(&after),
            [("pi_evt_cancel", 3 * 4990, "CNY", "succeeded")],
            "the refund is not counted twice: {:#}",
            after["ledger"]
        );
        assert_eq!(balance(&after), 0);
        assert_eq!(after["status"], "refunded");
    }

    pub async fn cancelling_an_order_paid_twice_refunds_both_payments(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        // Paid with one intent, then again with another while already paid: the second is excess
        pay(local, &order, "evt_twice_a").await;
        pay(local, &order, "evt_twice_b").await;
        let excess = refunds_settled(local, &id).await;
        assert_eq!(
            refunds(&excess),
            [("pi_evt_twice_b", 4990, "CNY", "succeeded")]
        );
        assert_eq!(balance(&excess), 4990);
        dispatched(local, &id).await;

        // Cancelled: what it kept is paid back too
        let cancelled = cancel(local, &id).await;
        assert_eq!(cancelled["status"], "cancelled");
        let done = settled_in(local, &id, "refunded").await;
        assert_eq!(
            payments(&done),
            [
                ("stripe", "pi_evt_twice_a", 4990, "CNY", "provider"),
                ("stripe", "pi_evt_twice_b", 4990, "CNY", "provider")
            ]
        );
        assert_eq!(
            refunds(&done),
            [
                ("pi_evt_twice_b", 4990, "CNY", "succeeded"),
                ("pi_evt_twice_a", 4990, "CNY", "succeeded")
            ]
        );
        let ids: Vec<&str> = done["ledger"]["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [format!("rf-{id}-1"), format!("rf-{id}-2")]);
        // Every payment back in full, once
        for (_, payment_id, amount, _, _) in payments(&done) {
            let back: i64 = refunds(&done)
                .iter()
                .filter(|r| r.0 == payment_id && r.3 == "succeeded")
                .map(|r| r.1)
                .sum();
            assert_eq!(back, amount, "{payment_id}");
        }
        assert_eq!(balance(&done), 0);
        no_attention(&done);
        oms_tests::settles("TEA-001 in nj", (500, 0), || stock(local, "TEA-001", "nj")).await;
    }

    pub async fn a_refund_made_at_the_provider_is_recorded_once(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 2)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_partial").await;
        // A partial refund from the provider's dashboard, reported twice as it grows
        for (event, cumulative) in [("evt_r1", 1000), ("evt_r1", 1000), ("evt_r2", 2500)] {
            let e = json!({"id": event, "type": "charge.refunded",
                "data": {"object": {"id": "ch_2", "payment_intent": "pi_evt_partial", "amount": 9980,
                                    "amount_refunded": cumulative, "currency": "cny", "metadata": {"order_id": id}}}});
            assert_eq!(
                local
                    .stripe(&e, SECRET, Utc::now().timestamp())
                    .await
                    .status(),
                200
            );
        }
        let o = local.get_order(&id).await;
        assert_eq!(
            refunds(&o),
            [
                ("pi_evt_partial", 1000, "CNY", "succeeded"),
                ("pi_evt_partial", 1500, "CNY", "succeeded")
            ],
            "each refund once, the running total respected"
        );
        let ids: Vec<&str> = o["ledger"]["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["ext:stripe:evt_r1", "ext:stripe:evt_r2"],
            "recorded as the provider's, not requested by us"
        );
        assert_eq!(balance(&o), 9980 - 2500);
        assert_ne!(
            o["status"], "refunded",
            "a partial refund does not end the order"
        );
        assert!(
            ["paid", "ready_to_ship"].contains(&o["status"].as_str().unwrap()),
            "{}",
            o["status"]
        );
    }

    pub async fn two_sweeps_at_once_expire_an_order_once(local: &Local) {
        let quick = Local::sqlite_with(due_at_once()).await;
        let order = awaiting_payment(&quick, &[("TEA-001", 4)]).await;
        let (a, b) = tokio::join!(quick.sweep(), quick.sweep());
        assert_eq!(a.expired + b.expired, 1);
        let o = quick.get_order(order["id"].as_str().unwrap()).await;
        assert_eq!(statuses(&o).iter().filter(|s| *s == "expired").count(), 1);
        assert_eq!(
            stock(&quick, "TEA-001", "nj").await,
            (500, 0),
            "released once"
        );
        quick.running.stop().await;
        let _ = local;
    }

    pub async fn an_underpaid_order_that_expires_gets_its_partial_payment_back(local: &Local) {
        let quick = Local::sqlite_with(due_at_once()).await;
        let order = awaiting_payment(&quick, &[("TEA-001", 2)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay_amount(&quick, &id, "evt_part", 3000, "cny").await;
        let part = quick.get_order(&id).await;
        assert_eq!(part["status"], "awaiting_payment");
        assert!(refunds(&part).is_empty(), "kept while the rest may come");

        // Not paid in full by its deadline: it expires, and what was paid goes back
        assert_eq!(quick.sweep().await.expired, 1);
        let done = settled_in(&quick, &id, "refunded").await;
        assert_eq!(
            statuses(&done)[3..],
            ["awaiting_payment", "expired", "refunded"]
        );
        assert_eq!(
            payments(&done),
            [("stripe", "pi_evt_part", 3000, "CNY", "provider")]
        );
        assert_eq!(refunds(&done), [("pi_evt_part", 3000, "CNY", "succeeded")]);
        assert_eq!(balance(&done), 0);
        no_attention(&done);
        assert_eq!(
            stock(&quick, "TEA-001", "nj").await,
            (500, 0),
            "stock released"
        );
        quick.running.stop().await;
        let _ = local;
    }

    /// Delivers the order's one parcel (ZTO from Nanjing) and returns the order.
    async fn delivered(local: &Local, id: &str) -> Value {
        let order = dispatched(local, id).await;
        assert_eq!(order["shipments"].as_array().unwrap().len(), 1, "{order}");
        let waybill = order["shipments"][0]["tracking_number"]
            .as_str()
            .unwrap()
            .to_owned();
        let t = Utc::now() - Duration::hours(3);
        assert_eq!(local.kuaidi100("zto", &waybill, "1", t).await.status(), 200);
        assert_eq!(
            local
                .kuaidi100("zto", &waybill, "3", t + Duration::hours(1))
                .await
                .status(),
            200
        );
        let order = local.get_order(id).await;
        assert_eq!(order["status"], "delivered");
        order
    }

    pub async fn a_return_within_the_window_is_refunded(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_return").await;
        delivered(local, &id).await;
        oms_tests::settles("TEA-001 in nj", (499, 0), || stock(local, "TEA-001", "nj")).await;
        // The customer asks, proving who they are
        let path = format!("/orders/{id}/return");
        let wrong = local
            .http
            .post(local.url(&path))
            .json(&json!({"contact": "x@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 404);
        let r = local
            .http
            .post(local.url(&path))
            .json(&json!({"contact": "+86 138 0000 0000", "reason": "too bitter"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // The warehouse receives it: returned, back on the shelf, and the refund on its way
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/return/received"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let received: Value = r.json().await.unwrap();
        assert_eq!(received["status"], "returned");
        assert_eq!(
            refunds(&received),
            [("pi_evt_return", 4990, "CNY", "requested")]
        );
        oms_tests::settles("TEA-001 in nj, restocked", (500, 0), || {
            stock(local, "TEA-001", "nj")
        })
        .await;
        // Refunded once the provider made it
        let done = settled_in(local, &id, "refunded").await;
        assert_eq!(
            statuses(&done)[7..],
            ["delivered", "return_requested", "returned", "refunded"]
        );
        assert_eq!(
            refunds(&done),
            [("pi_evt_return", 4990, "CNY", "succeeded")]
        );
        assert_eq!(balance(&done), 0);
        no_attention(&done);
    }

    pub async fn a_partial_return_refunds_its_lines_and_restocks_them(local: &Local) {
        // Two teas at 49.90 and a pot at 35.00, all from Nanjing
        let mut body = native_order("C1001", &[("TEA-001", 2), ("POT-003", 1)]);
        body["lines"][1]["unit_price"] = json!(3500);
        let order = placed(local, &body).await;
        let id = order["id"].as_str().unwrap().to_owned();
        assert_eq!(order["total"]["minor"], 2 * 4990 + 3500);
        pay(local, &order, "evt_part_return").await;
        delivered(local, &id).await;
        oms_tests::settles("TEA-001 in nj", (498, 0), || stock(local, "TEA-001", "nj")).await;
        oms_tests::settles("POT-003 in nj", (7, 0), || stock(local, "POT-003", "nj")).await;
        let tea_before = stock(local, "TEA-001", "nj").await;
        let pot_before = stock(local, "POT-003", "nj").await;

        // The teas come back; the pot stays
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/return"))
            .json(&json!({"lines": [{"sku": "TEA-001", "quantity": 2}], "reason": "too bitter"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let asked: Value = r.json().await.unwrap();
        assert_eq!(asked["status"], "return_requested");
        assert!(refunds(&asked).is_empty(), "nothing is paid back before");
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/return/received"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let received: Value = r.json().await.unwrap();
        assert_eq!(received["status"], "delivered", "the rest stays delivered");
        oms_tests::settles(
            "the returned teas back on the shelf",
            (tea_before.0 + 2, 0),
            || stock(local, "TEA-001", "nj"),
        )
        .await;
        assert_eq!(stock(local, "POT-003", "nj").await, pot_before);

        let done = refunds_settled(local, &id).await;
        assert_eq!(done["status"], "delivered");
        assert_eq!(
            refunds(&done),
            [("pi_evt_part_return", 2 * 4990, "CNY", "succeeded")],
            "exactly the value of the returned line"
        );
        assert_eq!(balance(&done), 3500, "the pot is paid for");
        assert_eq!(
            statuses(&done)[7..],
            ["delivered", "return_requested", "delivered"]
        );
        no_attention(&done);
    }

    pub async fn a_second_payment_for_a_paid_order_is_refunded(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_first").await;
        pay(local, &order, "evt_second").await;
        let o = refunds_settled(local, &id).await;
        assert_eq!(
            payments(&o),
            [
                ("stripe", "pi_evt_first", 4990, "CNY", "provider"),
                ("stripe", "pi_evt_second", 4990, "CNY", "provider")
            ]
        );
        assert_eq!(
            refunds(&o),
            [("pi_evt_second", 4990, "CNY", "succeeded")],
            "the newest payment goes back"
        );
        assert_eq!(balance(&o), 4990, "charged once in the end");
        assert_ne!(o["status"], "refunded", "the order itself goes on");
        dispatched(local, &id).await;

        // And a payment after expiry is recorded and refunded, never lost
        let quick = Local::sqlite_with(due_at_once()).await;
        let order = awaiting_payment(&quick, &[("TEA-001", 2)]).await;
        let qid = order["id"].as_str().unwrap().to_owned();
        assert_eq!(quick.sweep().await.expired, 1);
        assert_eq!(quick.get_order(&qid).await["status"], "expired");
        assert_eq!(
            stock(&quick, "TEA-001", "nj").await,
            (500, 0),
            "stock released"
        );
        pay(&quick, &order, "evt_late").await;
        let late = settled_in(&quick, &qid, "refunded").await;
        assert_eq!(
            payments(&late),
            [("stripe", "pi_evt_late", 9980, "CNY", "provider")]
        );
        assert_eq!(refunds(&late), [("pi_evt_late", 9980, "CNY", "succeeded")]);
        assert_eq!(balance(&late), 0);
        quick.running.stop().await;
    }
}
