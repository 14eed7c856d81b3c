//! An order's whole life over real HTTP: payment webhooks, dispatch, courier callbacks, expiry,
//! cancellation, returns and refunds. Providers and couriers are played by the tests, signing
//! their callbacks as the real ones do.

use chrono::{Duration, Utc};
use oms_tests::{Local, native_order, stripe_paid};
use reqwest::Method;
use serde_json::{Value, json};

oms_tests::backend_cases!(
    both: [
        a_paid_order_ships_is_delivered_and_completes,
    ],
    sqlite_only: [
        forged_stale_and_replayed_payment_webhooks_change_nothing,
        a_payment_of_the_wrong_amount_holds_the_order,
        an_alipay_notification_pays_the_order_and_is_answered_success,
        duplicate_and_out_of_order_courier_events_never_move_a_parcel_back,
        a_split_order_ships_with_its_first_parcel_and_is_delivered_with_its_last,
        cancelling_after_payment_refunds_the_money,
        a_return_within_the_window_is_refunded,
        a_second_payment_for_a_paid_order_is_refunded,
        a_refund_made_at_the_provider_is_recorded_once,
        two_sweeps_at_once_expire_an_order_once,
    ]
);

const SECRET: &str = oms_local::DEV_SECRET;

async fn awaiting_payment(local: &Local, lines: &[(&str, i64)]) -> Value {
    let (status, _, body) = local.place(&native_order("C1001", lines), None).await;
    assert_eq!(status, 202, "{body}");
    local
        .wait_for(body["order_id"].as_str().unwrap(), "awaiting_payment")
        .await
}

async fn pay(local: &Local, order: &Value, event: &str) {
    let id = order["id"].as_str().unwrap();
    let total = order["total"]["minor"].as_i64().unwrap();
    let r = local
        .stripe(
            &stripe_paid(event, id, total, "cny"),
            SECRET,
            Utc::now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200);
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

fn statuses(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["to"].as_str().map(str::to_owned))
        .collect()
}

async fn stock(local: &Local, sku: &str, wh: &str) -> (u64, u64) {
    let (on_hand, reserved, _) = local.stock(sku, wh).await;
    (on_hand, reserved)
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
        assert_eq!(order["payments"][0]["kind"], "payment");

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
        assert_eq!(stock(local, "TEA-001", "nj").await, (498, 0));

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

        // And the customer was told at every visible step
        let q = oms::app::queues::name(oms::app::queues::NOTIFICATIONS);
        let mut told = Vec::new();
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
                break;
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
        assert_eq!(
            local.get_order(id).await["status"],
            "awaiting_payment",
            "nothing applied"
        );

        // Genuine, then replayed twice
        for _ in 0..3 {
            assert_eq!(local.stripe(&event, SECRET, now).await.status(), 200);
        }
        let paid = local.get_order(id).await;
        assert_eq!(
            paid["payments"].as_array().unwrap().len(),
            1,
            "applied once"
        );
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

    pub async fn a_payment_of_the_wrong_amount_holds_the_order(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap();
        let r = local
            .stripe(
                &stripe_paid("evt_short", id, 4000, "cny"),
                SECRET,
                Utc::now().timestamp(),
            )
            .await;
        assert_eq!(r.status(), 200);
        let held = local.get_order(id).await;
        assert_eq!(held["status"], "on_hold");
        assert!(
            held["hold_reasons"][0]
                .as_str()
                .unwrap()
                .contains("40.00 CNY does not match the order total 49.90 CNY"),
            "{held}"
        );
        assert_eq!(
            held["payments"][0]["amount"]["minor"], 4000,
            "recorded, not dropped"
        );
        // Wrong currency too
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap();
        local
            .stripe(
                &stripe_paid("evt_usd", id, 4990, "usd"),
                SECRET,
                Utc::now().timestamp(),
            )
            .await;
        assert_eq!(local.get_order(id).await["status"], "on_hold");
    }

    pub async fn an_alipay_notification_pays_the_order_and_is_answered_success(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 2)]).await;
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
        let paid = local.get_order(order["id"].as_str().unwrap()).await;
        assert!(
            ["paid", "ready_to_ship"].contains(&paid["status"].as_str().unwrap()),
            "{}",
            paid["status"]
        );
        assert_eq!(paid["payments"][0]["reference"], "2026112722001400001");
        // A replay is answered success and changes nothing
        assert_eq!(local.alipay(&params).await.text().await.unwrap(), "success");
        assert_eq!(
            local.get_order(order["id"].as_str().unwrap()).await["payments"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
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

    pub async fn duplicate_and_out_of_order_courier_events_never_move_a_parcel_back(local: &Local) {
        // Xinjiang is beyond ZTO: SF (AfterShip vocabulary) takes it
        let mut o = native_order("C1001", &[("TEA-001", 1)]);
        o["shipping_address"]["region"] = json!("Xinjiang");
        o["shipping_address"]["city"] = json!("Urumqi");
        let (_, _, body) = local.place(&o, None).await;
        let id = body["order_id"].as_str().unwrap().to_owned();
        let order = local.wait_for(&id, "awaiting_payment").await;
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
        // Delivered, then a late "in transit"
        for (tag, at) in [("Delivered", t + h(4)), ("InTransit", t + h(5))] {
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
        assert_eq!(stock(local, "POT-003", "nj").await, (0, 0));
        assert_eq!(stock(local, "POT-003", "sh").await, (4, 0));
    }

    pub async fn cancelling_after_payment_refunds_the_money(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 3)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_cancel").await;
        dispatched(local, &id).await;
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/cancel"))
            .json(&json!({"reason": "customer changed their mind"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let done: Value = r.json().await.unwrap();
        assert_eq!(done["status"], "refunded");
        let kinds: Vec<&str> = done["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["payment", "refund_requested", "refund"]);
        assert_eq!(done["payments"][2]["amount"]["minor"], 3 * 4990);
        assert_eq!(stock(local, "TEA-001", "nj").await, (500, 0));

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
            after["payments"].as_array().unwrap().len(),
            3,
            "the refund is not counted twice: {:#}",
            after["payments"]
        );
        assert_eq!(after["status"], "refunded");
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
        let refunds: Vec<i64> = o["payments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "refund")
            .map(|m| m["amount"]["minor"].as_i64().unwrap())
            .collect();
        assert_eq!(
            refunds,
            [1000, 1500],
            "each refund once, the running total respected"
        );
        assert_ne!(
            o["status"], "refunded",
            "a partial refund does not end the order"
        );
    }

    pub async fn two_sweeps_at_once_expire_an_order_once(local: &Local) {
        let mut config = oms::config::Config::demo();
        config
            .channels
            .get_mut("web")
            .unwrap()
            .payment_timeout_seconds = Some(0);
        let quick = Local::sqlite_with(config).await;
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

    pub async fn a_return_within_the_window_is_refunded(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_return").await;
        let order = dispatched(local, &id).await;
        let waybill = order["shipments"][0]["tracking_number"]
            .as_str()
            .unwrap()
            .to_owned();
        let t = Utc::now() - Duration::hours(3);
        local.kuaidi100("zto", &waybill, "1", t).await;
        local
            .kuaidi100("zto", &waybill, "3", t + Duration::hours(1))
            .await;
        assert_eq!(local.get_order(&id).await["status"], "delivered");
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
        // The warehouse receives it: returned and refunded
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/return/received"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let done: Value = r.json().await.unwrap();
        assert_eq!(
            statuses(&done)[7..],
            ["delivered", "return_requested", "returned", "refunded"]
        );
        assert_eq!(
            done["payments"].as_array().unwrap().last().unwrap()["kind"],
            "refund"
        );
    }

    pub async fn a_second_payment_for_a_paid_order_is_refunded(local: &Local) {
        let order = awaiting_payment(local, &[("TEA-001", 1)]).await;
        let id = order["id"].as_str().unwrap().to_owned();
        pay(local, &order, "evt_first").await;
        pay(local, &order, "evt_second").await;
        let o = local.get_order(&id).await;
        let kinds: Vec<&str> = o["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["payment", "payment", "refund_requested", "refund"],
            "charged once in the end"
        );
        assert_ne!(o["status"], "refunded", "the order itself goes on");

        // And a payment after expiry is recorded and refunded, never lost
        let mut config = oms::config::Config::demo();
        config
            .channels
            .get_mut("web")
            .unwrap()
            .payment_timeout_seconds = Some(0);
        let quick = Local::sqlite_with(config).await;
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
        let late = quick.get_order(&qid).await;
        assert_eq!(late["status"], "refunded");
        assert_eq!(late["payments"].as_array().unwrap().len(), 3);
        quick.running.stop().await;
    }
}
