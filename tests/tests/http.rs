//! The order pipeline over real HTTP, against the local runtime: every case runs on the embedded
//! default (`sqlite::...`); the cases listed for `dynamodb` also run on DynamoDB + SQS (moto).

use oms_tests::{Local, native_order, problem};
use reqwest::Method;
use serde_json::{Value, json};

oms_tests::backend_cases!(
    both: [
        an_order_is_numbered_approved_and_reserved_then_awaits_payment,
        the_same_idempotency_key_returns_the_first_answer_and_a_new_body_is_refused,
        a_held_order_approved_by_staff_continues,
        a_low_stock_alert_clears_when_the_order_holding_the_stock_is_cancelled,
    ],
    sqlite_only: [
        an_order_without_stock_is_out_of_stock_with_the_missing_lines_named,
        a_channel_that_cancels_out_of_stock_orders_cancels_them,
        a_taobao_trade_is_normalised_and_its_tid_guards_against_duplicates,
        bad_input_gets_a_problem_naming_the_field_and_changes_nothing,
        staff_endpoints_need_the_bearer_token,
        cancelling_before_shipment_gives_the_stock_back,
        a_new_shipping_address_is_checked_before_it_is_saved,
        cash_on_delivery_orders_skip_payment_and_go_to_dispatch,
        stock_below_its_safety_level_raises_one_alert,
        concurrent_orders_never_oversell,
        a_line_larger_than_any_warehouse_is_split_across_warehouses,
        a_rejected_review_decision_is_recorded_under_its_reviewer_and_ends_the_order,
        an_order_waiting_for_stock_is_reserved_when_stock_arrives_not_by_the_sweeper,
        an_unknown_sku_and_a_parcel_no_carrier_takes_wait_for_a_person_without_looping,
        intake_needs_the_channel_key_and_the_key_decides_the_channel,
        the_look_up_is_rate_limited_per_client,
        the_catalogue_decides_what_is_sold_at_what_price_and_what_a_parcel_weighs,
        discounts_shipping_and_tax_make_the_total_and_a_total_that_does_not_add_up_is_refused,
        edge_errors_are_problems_too,
    ]
);

/// The low-stock alerts standing, as `GET /alerts` lists them.
async fn standing_alerts(local: &Local) -> Vec<Value> {
    local
        .staff(Method::GET, "/alerts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn id_of(body: &Value) -> String {
    body["order_id"]
        .as_str()
        .expect("order_id in answer")
        .to_owned()
}

async fn customer_orders(local: &Local, customer: &str) -> Vec<Value> {
    let r = local
        .staff(
            Method::GET,
            &format!("/orders?customer={customer}&limit=100"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    page["orders"].as_array().unwrap().clone()
}

async fn available(local: &Local, sku: &str, wh: &str) -> (u64, u64, u64) {
    local.stock(sku, wh).await
}

mod cases {
    use super::*;

    pub async fn an_order_is_numbered_approved_and_reserved_then_awaits_payment(local: &Local) {
        // When a trusted customer places an order over HTTP
        let (status, headers, body) = local
            .place(&native_order("C1001", &[("TEA-001", 2)]), Some("k-1"))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "received");
        let id = id_of(&body).await;
        assert_eq!(headers["location"], format!("/orders/{id}").as_str());

        // Then it is numbered, approved and its stock reserved in the nearest warehouse
        let order = local.wait_for(&id, "awaiting_payment").await;
        let number = order["number"].as_str().unwrap().to_owned();
        assert!(
            oms::numbering::damm_valid(&number),
            "{number} has a valid check digit"
        );
        assert_eq!(
            number.len(),
            13,
            "date + 4 sequence digits + check digit: {number}"
        );
        let steps: Vec<&str> = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["to"].as_str())
            .collect();
        assert_eq!(
            steps,
            ["received", "numbered", "approved", "awaiting_payment"]
        );
        assert_eq!(order["allocations"][0]["warehouse"], "nj");
        assert_eq!(order["allocations"][0]["lines"][0]["quantity"], 2);
        assert!(order["payment_due_at"].is_string());
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 2, 498));

        // And the customer finds it by number and e-mail or phone, but not with another contact
        for contact in ["li@example.com", "LI@example.com", "+8613800000000"] {
            let r = local
                .http
                .get(local.url("/orders/lookup"))
                .query(&[("number", number.as_str()), ("contact", contact)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{contact}");
            let view: Value = r.json().await.unwrap();
            assert_eq!(view["status"], "awaiting_payment");
            assert!(
                view.get("shipping_address").is_none() && view.get("customer").is_none(),
                "no personal data: {view}"
            );
        }
        // A phone typed into the URL with a bare `+` (read as a space) is found too
        let r = local
            .http
            .get(local.url(&format!(
                "/orders/lookup?number={number}&contact=+8613800000000"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a bare + in the query string");
        let wrong = local
            .http
            .get(local.url("/orders/lookup"))
            .query(&[
                ("number", number.as_str()),
                ("contact", "other@example.com"),
            ])
            .send()
            .await
            .unwrap();
        let unknown = local
            .http
            .get(local.url("/orders/lookup"))
            .query(&[("number", "2000010100000"), ("contact", "li@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            (wrong.status().as_u16(), unknown.status().as_u16()),
            (404, 404)
        );
        let (a, b): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
        assert_eq!(
            a, b,
            "a wrong contact is answered exactly like an unknown number"
        );
    }

    pub async fn the_same_idempotency_key_returns_the_first_answer_and_a_new_body_is_refused(
        local: &Local,
    ) {
        let order = native_order("C5001", &[("TEA-001", 1)]);
        let (s1, _, first) = local.place(&order, Some("same-key")).await;
        let (s2, _, second) = local.place(&order, Some("same-key")).await;
        assert_eq!(s1, 202);
        assert_eq!(s2, 200, "a repeat is answered, not accepted again");
        assert_eq!(first["order_id"], second["order_id"]);
        assert_eq!(second["duplicate"], true);

        let mut changed = order.clone();
        changed["lines"][0]["quantity"] = json!(3);
        let (s3, _, problem) = local.place(&changed, Some("same-key")).await;
        assert_eq!(s3, 422, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key")
        );
        local
            .wait_for(&id_of(&first).await, "awaiting_payment")
            .await;
        assert_eq!(
            customer_orders(local, "C5001").await.len(),
            1,
            "one order for three requests"
        );
    }

    pub async fn a_held_order_approved_by_staff_continues(local: &Local) {
        // Given an order of an unusual quantity, held for review
        let (_, _, body) = local
            .place(&native_order("C7001", &[("TEA-001", 60)]), None)
            .await;
        let id = id_of(&body).await;
        let held = local.wait_for(&id, "on_hold").await;
        assert!(
            held["hold_reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("unusual"),
            "{held}"
        );
        let reviews: Value = local
            .staff(Method::GET, "/reviews")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            reviews["orders"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["id"] == id.as_str())
        );

        // When staff approve it
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/review"))
            .json(&json!({"decision": "approve", "reviewer": "wang.fang", "note": "called the customer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // Then it continues to the stock lock, and the timeline says who decided
        let order = local.wait_for(&id, "awaiting_payment").await;
        let decision = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == "on_hold")
            .unwrap()
            .clone();
        assert_eq!(
            decision["actor"],
            json!({"kind": "staff", "name": "wang.fang"})
        );
        assert!(
            decision["reason"]
                .as_str()
                .unwrap()
                .contains("called the customer")
        );
        // A second decision on the same order is refused
        let again = local
            .staff(Method::POST, &format!("/orders/{id}/review"))
            .json(&json!({"decision": "reject", "reviewer": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
    }

    pub async fn an_order_without_stock_is_out_of_stock_with_the_missing_lines_named(
        local: &Local,
    ) {
        let (_, _, body) = local
            .place(
                &native_order("C1001", &[("TEA-001", 1), ("POT-003", 20)]),
                None,
            )
            .await;
        let id = id_of(&body).await;
        let order = local.wait_for(&id, "out_of_stock").await;
        let reason = order["timeline"].as_array().unwrap().last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reason.contains("POT-003: 20 requested, 14 available"),
            "{reason}"
        );
        assert!(
            !reason.contains("TEA-001"),
            "only the missing line is named: {reason}"
        );
        assert!(
            order["allocations"].as_array().unwrap().is_empty(),
            "nothing reserved"
        );
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 0, 500));
    }

    pub async fn a_channel_that_cancels_out_of_stock_orders_cancels_them(local: &Local) {
        let mut order = native_order("C1001", &[("POT-003", 50)]);
        order["channel"] = json!("app");
        let (_, _, body) = local.place(&order, None).await;
        let done = local.wait_for(&id_of(&body).await, "cancelled").await;
        let steps: Vec<&str> = done["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["to"].as_str())
            .collect();
        assert_eq!(
            steps,
            [
                "received",
                "numbered",
                "approved",
                "out_of_stock",
                "cancelled"
            ]
        );
        assert!(
            done["number"].as_str().unwrap().starts_with("NJ_SALE_"),
            "{}",
            done["number"]
        );
    }

    pub async fn a_taobao_trade_is_normalised_and_its_tid_guards_against_duplicates(local: &Local) {
        let trade = json!({"trade_fullinfo_get_response": {"trade": {
            "tid": 3901234567890123u64, "type": "fixed", "status": "WAIT_SELLER_SEND_GOODS", "buyer_open_uid": "1001", "buyer_nick": "lilei88",
            "buyer_email": "li@example.com", "receiver_name": "Li Lei", "receiver_mobile": "13800000000",
            "receiver_state": "Jiangsu", "receiver_city": "Nanjing", "receiver_district": "Xuanwu",
            "receiver_address": "1 Zhongshan Rd", "receiver_zip": "210000",
            "orders": {"order": [{"oid": 1, "outer_sku_id": "CUP-002", "num": 3, "price": "15.00"}]}
        }}});
        let r = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&trade)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = id_of(&r.json().await.unwrap()).await;
        // Tmall collected the money: the trade arrives paid and goes on to dispatch without a
        // payment deadline.
        let order = local.wait_for(&id, "ready_to_ship").await;
        assert_eq!(
            order["ledger"]["payments"][0],
            json!({"provider": "tmall", "payment_id": "3901234567890123", "source": "marketplace",
                   "amount": {"minor": 4500, "currency": "CNY"},
                   "at": order["ledger"]["payments"][0]["at"]})
        );
        assert!(order.get("payment_due_at").is_none(), "{order}");
        assert_eq!(order["external_id"], "3901234567890123");
        assert_eq!(order["customer"]["phone"], "+8613800000000");
        assert_eq!(
            order["lines"][0],
            json!({"sku": "CUP-002", "quantity": 3, "unit_price": 1500})
        );
        assert_eq!(order["total"], json!({"minor": 4500, "currency": "CNY"}));
        assert!(
            order["number"].as_str().unwrap().starts_with("PX1001"),
            "{}",
            order["number"]
        );
        assert_eq!(
            order["allocations"][0]["warehouse"], "sh",
            "CUP-002 is only in Shanghai"
        );

        // The marketplace pushes the same trade again: same order, nothing new
        let again = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&trade)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 200);
        let body: Value = again.json().await.unwrap();
        assert_eq!(
            (
                body["order_id"].as_str().unwrap(),
                body["duplicate"].as_bool()
            ),
            (id.as_str(), Some(true))
        );

        // Errors name the Taobao fields
        let mut bad = trade.clone();
        bad["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["price"] =
            json!("15.001");
        bad["trade_fullinfo_get_response"]["trade"]["tid"] = json!("T-2");
        let r = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], "orders.order[0].price");
        let mut bad = trade;
        bad["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["num"] = json!(0);
        bad["trade_fullinfo_get_response"]["trade"]["tid"] = json!("T-3");
        let p: Value = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&bad)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(p["errors"][0]["field"], "orders.order[0].num");
        // The native channel has no marketplace route (404, as for a channel that does not
        // exist), and a key of one channel does not open another channel's route
        assert_eq!(
            local
                .channel("web", "/channels/web/orders")
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            local
                .channel("web", "/channels/ebay/orders")
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
    }

    pub async fn bad_input_gets_a_problem_naming_the_field_and_changes_nothing(local: &Local) {
        let good = native_order("C9009", &[("TEA-001", 1)]);
        let mut cases: Vec<(String, reqwest::RequestBuilder, u16, &str)> = Vec::new();
        let post = |body: Value| local.channel("web", "/orders").json(&body);
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("shipping_address");
        cases.push((
            "missing field".into(),
            post(missing),
            400,
            "shipping_address",
        ));
        let mut zero = good.clone();
        zero["lines"][0]["quantity"] = json!(0);
        cases.push(("zero quantity".into(), post(zero), 400, "lines[0].quantity"));
        let mut negative = good.clone();
        negative["lines"][0]["quantity"] = json!(-2);
        cases.push((
            "negative quantity".into(),
            post(negative),
            400,
            "lines[0].quantity",
        ));
        let mut currency = good.clone();
        currency["currency"] = json!("ABC");
        cases.push(("unknown currency".into(), post(currency), 400, "currency"));
        let mut wrong_type = good.clone();
        wrong_type["lines"][0]["unit_price"] = json!("49.90");
        cases.push((
            "wrong type".into(),
            post(wrong_type),
            400,
            "lines[0].unit_price",
        ));
        let mut channel = good.clone();
        channel["channel"] = json!("nowhere");
        cases.push((
            "another channel than the key's".into(),
            post(channel),
            403,
            "",
        ));
        cases.push((
            "malformed JSON".into(),
            local
                .channel("web", "/orders")
                .header("content-type", "application/json")
                .body("{\"channel\": \"web\","),
            400,
            "",
        ));
        cases.push((
            "a key given twice".into(),
            local
                .channel("web", "/orders")
                .header("content-type", "application/json")
                .body(good.to_string().replacen(
                    "\"quantity\":1",
                    "\"quantity\":1,\"quantity\":100",
                    1,
                )),
            400,
            "lines[0].quantity",
        ));
        let mut huge = good.clone();
        huge["customer"]["name"] = json!("x".repeat(70 * 1024));
        cases.push(("oversized body".into(), post(huge), 413, ""));
        cases.push((
            "not JSON".into(),
            local
                .channel("web", "/orders")
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            "",
        ));
        // Values are taken as given, exactly as the API description's schemas say
        let mut spaced = good.clone();
        spaced["lines"][0]["sku"] = json!(" TEA-001");
        cases.push((
            "a SKU with a space".into(),
            post(spaced),
            400,
            "lines[0].sku",
        ));
        let mut null = good.clone();
        null["shipping_address"]["line2"] = Value::Null;
        cases.push((
            "null where a field is not nullable".into(),
            post(null),
            400,
            "shipping_address.line2",
        ));
        let mut unknown = good.clone();
        unknown["shiping_fee"] = json!(800);
        cases.push(("a misspelt field".into(), post(unknown), 400, "shiping_fee"));
        let mut blank = good.clone();
        blank["customer"]["name"] = json!("   ");
        cases.push(("a blank name".into(), post(blank), 400, "customer.name"));
        let mut long = good.clone();
        long["shipping_address"]["city"] = json!(format!("{} ", "x".repeat(200)));
        cases.push((
            "201 characters, the last a space".into(),
            post(long),
            400,
            "shipping_address.city",
        ));
        cases.push((
            "a braced UUID".into(),
            local.staff(
                Method::GET,
                &format!("/orders/{{{}}}", oms::domain::OrderId::generate()),
            ),
            400,
            "id",
        ));
        for (query, field) in [
            ("/orders?status=", "status"),
            ("/orders?channel=web&cursor=", "cursor"),
            ("/orders?customer=%20C1", "customer"),
            ("/catalogue?after=", "after"),
            ("/reviews?limit=", "limit"),
        ] {
            cases.push((
                format!("empty or spaced {query}"),
                local.staff(Method::GET, query),
                400,
                field,
            ));
        }
        for (body, field) in [
            (json!({"decision": "approve", "reviewer": " "}), "reviewer"),
            (
                json!({"decision": "approve", "reviewer": "x".repeat(101)}),
                "reviewer",
            ),
            (
                json!({"decision": "approve", "reviewer": "li", "note": "a\u{1}b"}),
                "note",
            ),
        ] {
            cases.push((
                format!("review {body}"),
                local
                    .staff(
                        Method::POST,
                        &format!("/orders/{}/review", oms::domain::OrderId::generate()),
                    )
                    .json(&body),
                400,
                field,
            ));
        }
        cases.push((
            "a return with neither the contact nor the staff token".into(),
            local
                .http
                .post(local.url(&format!(
                    "/orders/{}/return",
                    oms::domain::OrderId::generate()
                )))
                .json(&json!({"reason": "too big"})),
            401,
            "",
        ));
        for (what, req, status, field) in cases {
            let p = problem(req, status, &what).await;
            assert_eq!(p["status"], status, "{what}");
            if !field.is_empty() {
                let fields: Vec<&str> = p["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["field"].as_str().unwrap())
                    .collect();
                assert!(fields.contains(&field), "{what}: {fields:?}");
            }
        }
        // Stock past what any shelf holds is refused, so that sums over warehouses never wrap
        for wh in ["nj", "sh", "gz"] {
            let r = local
                .staff(Method::PUT, &format!("/stock/TEA-001/{wh}"))
                .json(&json!({"on_hand": i64::MAX}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let p: Value = r.json().await.unwrap();
            assert_eq!(p["errors"][0]["field"], "on_hand", "{p}");
        }
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 0, 500));
        // Nothing was stored or queued
        assert!(customer_orders(local, "C9009").await.is_empty());
        let numbering = oms::app::queues::name(oms::app::queues::NUMBERING);
        assert_eq!(local.running.app.queue.depth(&numbering).await.unwrap(), 0);
    }

    pub async fn staff_endpoints_need_the_bearer_token(local: &Local) {
        for (method, path) in [
            (Method::GET, "/orders?status=received"),
            (Method::GET, "/reviews"),
            (Method::GET, "/alerts"),
            (Method::PUT, "/stock/TEA-001/nj"),
        ] {
            let none = local
                .http
                .request(method.clone(), local.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(none.status(), 401, "{path}");
            assert_eq!(none.headers()["www-authenticate"], "Bearer");
            let wrong = local
                .http
                .request(method, local.url(path))
                .bearer_auth("guess")
                .send()
                .await
                .unwrap();
            assert_eq!(wrong.status(), 401, "{path}");
        }
        let ok = local
            .staff(Method::GET, "/warehouses")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let ws: Value = ok.json().await.unwrap();
        assert_eq!(ws.as_array().unwrap().len(), 3);
    }

    pub async fn cancelling_before_shipment_gives_the_stock_back(local: &Local) {
        let (_, _, body) = local
            .place(&native_order("C1001", &[("TEA-001", 5)]), None)
            .await;
        let id = id_of(&body).await;
        local.wait_for(&id, "awaiting_payment").await;
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 5, 495));
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/cancel"))
            .json(&json!({"reason": "customer called", "by": "li.na"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let order: Value = r.json().await.unwrap();
        assert_eq!(order["status"], "cancelled");
        // Released before the answer on SQLite; moments after it where the relay does it.
        oms_tests::settles("the allocation", json!("released"), || async {
            local.get_order(&id).await["allocations"][0]["state"].clone()
        })
        .await;
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 0, 500));
        let again = local
            .staff(Method::POST, &format!("/orders/{id}/cancel"))
            .send()
            .await
            .unwrap();
        // A retried cancel (the staff member's first answer was lost) answers the cancelled
        // order again and changes nothing.
        assert_eq!(again.status(), 200, "a retried cancel is answered again");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["status"], "cancelled");
        assert_eq!(again["version"], order["version"]);
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 0, 500));
    }

    pub async fn a_new_shipping_address_is_checked_before_it_is_saved(local: &Local) {
        let (_, _, body) = local
            .place(&native_order("C1001", &[("TEA-001", 1)]), None)
            .await;
        let id = id_of(&body).await;
        local.wait_for(&id, "awaiting_payment").await;
        let path = format!("/orders/{id}/shipping-address");
        let address = json!({"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Shanghai",
                             "city": "Shanghai", "line1": "88 Nanjing Rd", "postal_code": "200000"});
        let mut incomplete = address.clone();
        incomplete.as_object_mut().unwrap().remove("city");
        let r = local
            .staff(Method::PUT, &path)
            .json(&incomplete)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap()["errors"][0]["field"],
            "city"
        );
        let mut suspicious = address.clone();
        suspicious["line1"] = json!("test street 1");
        let r = local
            .staff(Method::PUT, &path)
            .json(&suspicious)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert_eq!(
            local.get_order(&id).await["shipping_address"]["city"],
            "Nanjing",
            "unchanged"
        );
        let r = local
            .staff(Method::PUT, &path)
            .json(&address)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let order = local.get_order(&id).await;
        assert_eq!(order["shipping_address"]["city"], "Shanghai");
        assert_eq!(order["status"], "awaiting_payment");
        assert_eq!(
            order["timeline"].as_array().unwrap().last().unwrap()["reason"],
            "shipping address changed"
        );
    }

    pub async fn cash_on_delivery_orders_skip_payment_and_go_to_dispatch(local: &Local) {
        let mut order = native_order("C1001", &[("TEA-001", 1)]);
        order["payment_method"] = json!("cash_on_delivery");
        let (_, _, body) = local.place(&order, None).await;
        let id = id_of(&body).await;
        let done = local.wait_for(&id, "ready_to_ship").await;
        assert!(done["payment_due_at"].is_null());
        // Dispatch gives it a waybill without any payment
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let shipped = loop {
            let o = local.get_order(&id).await;
            if !o["shipments"].as_array().unwrap().is_empty() {
                break o;
            }
            assert!(std::time::Instant::now() < deadline, "no waybill: {o}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(shipped["status"], "ready_to_ship");
        assert_eq!(shipped["shipments"][0]["warehouse"], "nj");
        assert!(
            shipped["ledger"]["payments"].as_array().unwrap().is_empty(),
            "the cash is recorded when the courier collects it, at delivery"
        );
    }

    pub async fn a_low_stock_alert_clears_when_the_order_holding_the_stock_is_cancelled(
        local: &Local,
    ) {
        let alerts = || async {
            standing_alerts(local)
                .await
                .iter()
                .map(|a| (a["sku"].to_string(), a["available"].as_u64()))
                .collect::<Vec<_>>()
        };
        // POT-003 has 8 in nj with a safety level of 5: an order of 4 leaves 4 available
        let (_, _, body) = local
            .place(&native_order("C1001", &[("POT-003", 4)]), None)
            .await;
        let id = id_of(&body).await;
        local.wait_for(&id, "awaiting_payment").await;
        assert_eq!(alerts().await, [("\"POT-003\"".to_owned(), Some(4))]);
        // Cancelled, the order gives its 4 back (before the answer on SQLite, moments after it
        // where the relay carries the release out from the table's stream), and with 8
        // available the alert is gone
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/cancel"))
            .json(&json!({"reason": "customer called", "by": "li.na"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        oms_tests::settles("POT-003 in nj", (8, 0, 8), || {
            available(local, "POT-003", "nj")
        })
        .await;
        oms_tests::settles("standing alerts", vec![], alerts).await;
    }

    pub async fn stock_below_its_safety_level_raises_one_alert(local: &Local) {
        // POT-003 has 8 in nj with a safety level of 5
        let (_, _, body) = local
            .place(&native_order("C1001", &[("POT-003", 4)]), None)
            .await;
        local
            .wait_for(&id_of(&body).await, "awaiting_payment")
            .await;
        let alerts = Value::Array(standing_alerts(local).await);
        assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
        assert_eq!(
            (
                alerts[0]["sku"].as_str(),
                alerts[0]["warehouse"].as_str(),
                alerts[0]["available"].as_u64()
            ),
            (Some("POT-003"), Some("nj"), Some(4))
        );
        let queue = oms::app::queues::name(oms::app::queues::ALERTS);
        assert_eq!(local.running.app.queue.depth(&queue).await.unwrap(), 1);
        // Restocking above the safety level clears it
        let r = local
            .staff(Method::PUT, "/stock/POT-003/nj")
            .json(&json!({"on_hand": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let level: Value = r.json().await.unwrap();
        assert_eq!(
            (
                level["on_hand"].as_u64(),
                level["reserved"].as_u64(),
                level["safety"].as_u64()
            ),
            (Some(30), Some(4), Some(5))
        );
        let alerts = Value::Array(standing_alerts(local).await);
        assert!(alerts.as_array().unwrap().is_empty());
        // On-hand below what is reserved is refused
        let r = local
            .staff(Method::PUT, "/stock/POT-003/nj")
            .json(&json!({"on_hand": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        let r = local
            .staff(Method::PUT, "/stock/POT-003/nj")
            .json(&json!({"on_hand": -1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            local
                .staff(Method::PUT, "/stock/POT-003/mars")
                .json(&json!({"on_hand": 1}))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }

    pub async fn concurrent_orders_never_oversell(local: &Local) {
        // POT-003: 8 in nj and 6 in sh. 20 customers order 1 each at once (small orders at list
        // price, approved).
        let placed = futures::future::join_all((0..20).map(|i| async move {
            let mut o = native_order(&format!("R{i}"), &[("POT-003", 1)]);
            o["lines"][0]["unit_price"] = json!(3500);
            let (_, _, body) = local.place(&o, None).await;
            id_of(&body).await
        }))
        .await;
        let mut reserved = 0;
        let mut short = 0;
        for id in &placed {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let o = local.get_order(id).await;
                match o["status"].as_str().unwrap() {
                    "awaiting_payment" => {
                        reserved += 1;
                        break;
                    }
                    "out_of_stock" => {
                        short += 1;
                        break;
                    }
                    other => assert!(
                        std::time::Instant::now() < deadline,
                        "{id} stuck at {other}"
                    ),
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        assert_eq!((reserved, short), (14, 6));
        assert_eq!(available(local, "POT-003", "nj").await, (8, 8, 0));
        assert_eq!(available(local, "POT-003", "sh").await, (6, 6, 0));
    }

    pub async fn a_line_larger_than_any_warehouse_is_split_across_warehouses(local: &Local) {
        // POT-003: 8 in nj (serves Jiangsu), 6 in sh
        let (_, _, body) = local
            .place(&native_order("C1001", &[("POT-003", 10)]), None)
            .await;
        let order = local
            .wait_for(&id_of(&body).await, "awaiting_payment")
            .await;
        let split: Vec<(String, u64)> = order["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["warehouse"].as_str().unwrap().to_owned(),
                    a["lines"][0]["quantity"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(split, [("nj".to_owned(), 8), ("sh".to_owned(), 2)]);
    }

    pub async fn a_rejected_review_decision_is_recorded_under_its_reviewer_and_ends_the_order(
        local: &Local,
    ) {
        let (_, _, body) = local
            .place(&native_order("C7002", &[("TEA-001", 60)]), None)
            .await;
        let id = id_of(&body).await;
        local.wait_for(&id, "on_hold").await;
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/review"))
            .json(&json!({"decision": "maybe"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let p: Value = r.json().await.unwrap();
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        // The reviewer is who the key belongs to; with the shared token, the name given.
        assert_eq!(fields, ["decision"]);
        let r = local
            .staff(Method::POST, &format!("/orders/{id}/review"))
            .json(&json!({"decision": "reject", "reviewer": "wang.fang"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let order = local.get_order(&id).await;
        assert_eq!(order["status"], "rejected");
        let last = order["timeline"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            last["actor"],
            json!({"kind": "staff", "name": "wang.fang"}),
            "{last}"
        );
        assert_eq!(available(local, "TEA-001", "nj").await, (500, 0, 500));
    }

    pub async fn an_order_waiting_for_stock_is_reserved_when_stock_arrives_not_by_the_sweeper(
        local: &Local,
    ) {
        // Given an order that takes every POT-003 in nj and one that then waits for it
        let set = |on_hand: u64| async move {
            let r = local
                .staff(Method::PUT, "/stock/POT-003/nj")
                .json(&json!({"on_hand": on_hand, "safety": 0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        };
        for wh in ["sh", "gz"] {
            let r = local
                .staff(Method::PUT, &format!("/stock/POT-003/{wh}"))
                .json(&json!({"on_hand": 0, "safety": 0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        set(3).await;
        let (_, _, first) = local
            .place(&native_order("C1001", &[("POT-003", 3)]), None)
            .await;
        let first = id_of(&first).await;
        local.wait_for(&first, "awaiting_payment").await;
        let (_, _, waiting) = local
            .place(&native_order("C1001", &[("POT-003", 2)]), None)
            .await;
        let waiting = id_of(&waiting).await;
        let before = local.wait_for(&waiting, "out_of_stock").await;
        // Sweeps do not touch it: it is not due, it waits for stock
        assert!(before.get("due_at").is_none(), "{before}");
        assert_eq!(local.sweep().await.redriven, 0);
        assert_eq!(
            local.get_order(&waiting).await["version"],
            before["version"]
        );

        // When the first order is cancelled, its released stock goes to the waiting order
        let r = local
            .staff(Method::POST, &format!("/orders/{first}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let reserved = local.wait_for(&waiting, "awaiting_payment").await;
        assert_eq!(reserved["allocations"][0]["state"], "held");

        // And an order waiting when staff add stock is reserved by that stock change
        let (_, _, third) = local
            .place(&native_order("C1001", &[("POT-003", 5)]), None)
            .await;
        let third = id_of(&third).await;
        local.wait_for(&third, "out_of_stock").await;
        set(10).await;
        local.wait_for(&third, "awaiting_payment").await;
        assert_eq!(available(local, "POT-003", "nj").await, (10, 7, 3));
    }

    pub async fn an_unknown_sku_and_a_parcel_no_carrier_takes_wait_for_a_person_without_looping(
        local: &Local,
    ) {
        // A SKU the catalogue does not list is refused at intake, naming the line.
        let (status, _, p) = local
            .place(
                &native_order("C1001", &[("TEA-001", 1), ("NO-SUCH-SKU", 1)]),
                None,
            )
            .await;
        assert_eq!(status, 422, "{p}");
        assert_eq!(p["errors"][0]["field"], "lines[1].sku");
        assert_eq!(
            p["errors"][0]["reason"],
            "NO-SUCH-SKU is not in the catalogue"
        );
        // A SKU the catalogue lists but no warehouse stocks waits for a person, with the reason.
        let r = local
            .staff(Method::PUT, "/catalogue/NEW-SKU")
            .json(&json!({"name": "A new tea", "weight_grams": 100, "prices": {"CNY": 4990}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (_, _, body) = local
            .place(&native_order("C1001", &[("NEW-SKU", 1)]), None)
            .await;
        let unknown = id_of(&body).await;
        let held = local
            .until(&unknown, "waiting for a person", |o| {
                o["attention"].is_array()
            })
            .await;
        assert_eq!(held["status"], "approved");
        assert_eq!(
            held["attention"][0],
            "inventory: no warehouse stocks NEW-SKU"
        );
        assert!(held.get("due_at").is_none(), "not retried by itself");

        // A parcel heavier than any carrier takes (28 pots: 33.6 kg) is paid but waits too.
        let r = local
            .staff(Method::PUT, "/stock/POT-003/nj")
            .json(&json!({"on_hand": 100, "safety": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (_, _, body) = local
            .place(&native_order("C1001", &[("POT-003", 28)]), None)
            .await;
        let heavy = id_of(&body).await;
        let order = local.wait_for(&heavy, "awaiting_payment").await;
        let total = order["total"]["minor"].as_i64().unwrap();
        let r = local
            .stripe(
                &oms_tests::stripe_paid("evt_heavy", &heavy, total, "cny"),
                oms_local::DEV_SECRET,
                chrono::Utc::now().timestamp(),
            )
            .await;
        assert_eq!(r.status(), 200);
        let waiting = local
            .until(&heavy, "waiting for a person", |o| {
                o["attention"].is_array()
            })
            .await;
        assert_eq!(waiting["status"], "paid");
        assert_eq!(
            waiting["attention"][0],
            "dispatch: no carrier takes 33600 g from nj to Jiangsu"
        );
        // Sweeps change neither; both are on the review list.
        let versions = (
            local.get_order(&unknown).await["version"].clone(),
            local.get_order(&heavy).await["version"].clone(),
        );
        for _ in 0..3 {
            let s = local.sweep().await;
            assert_eq!((s.redriven, s.stuck), (0, 0));
        }
        assert_eq!(
            (
                local.get_order(&unknown).await["version"].clone(),
                local.get_order(&heavy).await["version"].clone()
            ),
            versions
        );
        let listed = local.review_list().await;
        assert!(
            listed.contains(&unknown) && listed.contains(&heavy),
            "{listed:?}"
        );
    }

    pub async fn intake_needs_the_channel_key_and_the_key_decides_the_channel(local: &Local) {
        let web = native_order("C1001", &[("TEA-001", 1)]);
        let attempts: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            (
                "no key",
                local.http.post(local.url("/orders")).json(&web),
                401,
                "a valid channel key is required",
            ),
            (
                "a wrong key",
                local
                    .http
                    .post(local.url("/orders"))
                    .bearer_auth("guess")
                    .json(&web),
                401,
                "a valid channel key is required",
            ),
            (
                "the staff token",
                local.staff(Method::POST, "/orders").json(&web),
                401,
                "a valid channel key is required",
            ),
            (
                "another channel's key",
                local.channel("app", "/orders").json(&web),
                403,
                "this key is channel app's; it cannot place orders for channel web",
            ),
            (
                "another channel's route",
                local
                    .channel("web", "/channels/tmall/orders")
                    .json(&json!({})),
                403,
                "this key is channel web's; it cannot place orders for channel tmall",
            ),
        ];
        for (what, req, status, detail) in attempts {
            let p = problem(req, status, what).await;
            assert_eq!(p["detail"], detail, "{what}");
        }
        assert!(
            customer_orders(local, "C1001").await.is_empty(),
            "nothing was stored"
        );

        // The same Idempotency-Key under two channels' keys is two requests; under one key with
        // another body it is refused.
        let mut app_order = web.clone();
        app_order["channel"] = json!("app");
        let (first, _, a) = local.place(&web, Some("same-key")).await;
        let (second, _, b) = local.place(&app_order, Some("same-key")).await;
        assert_eq!((first, second), (202, 202));
        assert_ne!(a["order_id"], b["order_id"]);
        let mut changed = web.clone();
        changed["lines"][0]["quantity"] = json!(2);
        let (status, _, p) = local.place(&changed, Some("same-key")).await;
        assert_eq!(status, 422, "{p}");
        // A rotated key: both the old and the new are accepted while both are configured.
        let mut secrets = local.running.app.secrets.clone();
        secrets
            .channel_keys
            .insert("web".into(), vec!["old-web".into(), "new-web".into()]);
        assert_eq!(secrets.channel_of_key("old-web"), Some("web"));
        assert_eq!(secrets.channel_of_key("new-web"), Some("web"));
        assert_eq!(secrets.channel_of_key("dev-channel-key-web"), None);
    }

    pub async fn the_look_up_is_rate_limited_per_client(local: &Local) {
        // A client trying numbers in bulk gets its burst, then 429s (problem+json, Retry-After).
        let mut statuses = Vec::new();
        for i in 0..40 {
            let r = local
                .http
                .get(local.url("/orders/lookup"))
                .query(&[
                    ("number", format!("20261125{i:05}")),
                    ("contact", "li@example.com".into()),
                ])
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if status == 429 {
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                assert!(r.headers().contains_key("retry-after"));
            }
            statuses.push(status);
        }
        let burst = oms_local::RateLimit::BURST as usize;
        assert!(statuses[..burst].iter().all(|s| *s == 404), "{statuses:?}");
        assert!(
            statuses.iter().filter(|s| **s == 429).count() >= 10,
            "{statuses:?}"
        );
        // Staff routes are not limited by it.
        for _ in 0..30 {
            let r = local
                .staff(Method::GET, "/warehouses")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }

    pub async fn the_catalogue_decides_what_is_sold_at_what_price_and_what_a_parcel_weighs(
        local: &Local,
    ) {
        // The configuration's catalogue is there; staff read and page it.
        let tea: Value = local
            .staff(Method::GET, "/catalogue/TEA-001")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tea["prices"]["CNY"], 4990);
        assert_eq!(tea["weight_grams"], 250);
        let first: Value = local
            .staff(Method::GET, "/catalogue?limit=2")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        let after = first["next_after"].as_str().unwrap().to_owned();
        let rest: Value = local
            .staff(Method::GET, &format!("/catalogue?after={after}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let skus: Vec<&str> = first["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest["items"].as_array().unwrap())
            .map(|i| i["sku"].as_str().unwrap())
            .collect();
        assert_eq!(skus, ["CUP-002", "POT-003", "RX-GINSENG", "TEA-001"]);
        // A bad entry is refused naming each field
        let r = local
            .staff(Method::PUT, "/catalogue/BAD-1")
            .json(&json!({"name": "", "weight_grams": 0, "prices": {"EUR": -5}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let p: Value = r.json().await.unwrap();
        let fields: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["name", "weight_grams", "prices.EUR"]);

        // An inactive SKU is refused at intake
        let r = local
            .staff(Method::PUT, "/catalogue/CUP-002")
            .json(&json!({"name": "Celadon tea cup", "weight_grams": 300, "prices": {"CNY": 1500}, "active": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (status, _, p) = local
            .place(&native_order("C1001", &[("CUP-002", 1)]), None)
            .await;
        assert_eq!(status, 422);
        assert_eq!(p["errors"][0]["reason"], "CUP-002 is not sold any more");

        // A line below its list price is held for review even for a trusted customer, with why
        let mut cheap = native_order("C1001", &[("TEA-001", 1)]);
        cheap["lines"][0]["unit_price"] = json!(0);
        let (status, _, body) = local.place(&cheap, None).await;
        assert_eq!(status, 202);
        let held = local.wait_for(&id_of(&body).await, "on_hold").await;
        assert_eq!(
            held["hold_reasons"][0],
            "TEA-001 at 0.00 CNY is 100% below its list price 49.90 CNY (the channel allows 0%)"
        );

        // Parcels are weighed by the catalogue: heavier tea, a heavier parcel
        let r = local
            .staff(Method::PUT, "/catalogue/TEA-001")
            .json(&json!({"name": "Longjing green tea, 1 kg", "weight_grams": 1000, "prices": {"CNY": 4990}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut cod = native_order("C1001", &[("TEA-001", 3)]);
        cod["payment_method"] = json!("cash_on_delivery");
        let (_, _, body) = local.place(&cod, None).await;
        let id = id_of(&body).await;
        let shipped = local
            .until(&id, "got its waybill", |o| {
                o["shipments"].as_array().is_some_and(|s| !s.is_empty())
            })
            .await;
        assert_eq!(shipped["shipments"][0]["weight_grams"], 3000);
    }

    pub async fn discounts_shipping_and_tax_make_the_total_and_a_total_that_does_not_add_up_is_refused(
        local: &Local,
    ) {
        // 2 × 49.90 − 4.90 line discount − 5.00 coupon + 8.00 shipping + 3.00 tax = 100.90
        let mut order = native_order("C1001", &[("TEA-001", 2)]);
        order["lines"][0]["discount"] = json!(490);
        order["order_discount"] = json!(500);
        order["discount_code"] = json!("SPRING5");
        order["shipping_fee"] = json!(800);
        order["tax"] = json!(300);
        order["total"] = json!(10090);
        let (status, _, body) = local.place(&order, None).await;
        assert_eq!(status, 202, "{body}");
        let stored = local.get_order(&id_of(&body).await).await;
        assert_eq!(stored["total"]["minor"], 10090);
        assert_eq!(
            stored["charges"],
            json!({"order_discount": 500, "shipping_fee": 800, "tax": 300})
        );
        assert_eq!(stored["discount_code"], "SPRING5");
        assert_eq!(stored["lines"][0]["discount"], 490);

        // A total that does not add up is refused, naming the field, and nothing is stored
        order["total"] = json!(9990);
        order["external_id"] = json!("WEB-OFF");
        let (status, _, p) = local.place(&order, None).await;
        assert_eq!(status, 422, "{p}");
        assert_eq!(p["errors"][0]["field"], "total");
        assert_eq!(
            p["errors"][0]["reason"],
            "9990 does not add up: the lines and charges come to 10090"
        );

        // Taobao: sub-order discounts and the post fee map in, and `payment` is reconciled
        let trade = |payment: &str, tid: u64| {
            json!({"trade_fullinfo_get_response": {"trade": {
                "tid": tid, "type": "fixed", "status": "WAIT_SELLER_SEND_GOODS", "buyer_open_uid": "1001", "buyer_email": "li@example.com",
                "receiver_name": "Li Lei", "receiver_mobile": "13800000000", "receiver_state": "Jiangsu",
                "receiver_city": "Nanjing", "receiver_district": "Xuanwu", "receiver_address": "1 Zhongshan Rd",
                "receiver_zip": "210000", "post_fee": "10.00", "payment": payment,
                "orders": {"order": [{"oid": 1, "outer_sku_id": "CUP-002", "num": 3, "price": "15.00", "discount_fee": "2.00"}]}
            }}})
        };
        let r = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&trade("53.00", 3901234567890999))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = id_of(&r.json().await.unwrap()).await;
        let tmall = local.get_order(&id).await;
        assert_eq!(tmall["total"]["minor"], 5300);
        assert_eq!(tmall["charges"]["shipping_fee"], 1000);
        let r = local
            .channel("tmall", "/channels/tmall/orders")
            .json(&trade("45.00", 3901234567890998))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], "payment", "{p}");
    }

    pub async fn edge_errors_are_problems_too(local: &Local) {
        // Headers far larger than the server takes (1 MiB): 431 as a problem
        let big = "a".repeat(1024 * 1024);
        let r = local
            .staff(Method::GET, "/warehouses")
            .header("x-big", big)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 431);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        // A NUL byte in a path parameter, an unknown path, a body over the limit
        let p = problem(local.staff(Method::GET, "/orders/%00"), 400, "NUL id").await;
        assert_eq!(p["errors"][0]["field"], "id");
        problem(local.staff(Method::GET, "/stock/%00"), 400, "NUL sku").await;
        problem(
            local.staff(Method::GET, "/no/such/thing"),
            404,
            "unknown path",
        )
        .await;
        let huge = "x".repeat(oms::api::MAX_BODY_BYTES + 1);
        problem(
            local
                .staff(Method::PUT, "/catalogue/TEA-001")
                .header("content-type", "application/json")
                .body(huge),
            413,
            "a body over the limit",
        )
        .await;
        // A number with no fraction is an integer (JSON has one number type); a fraction is not
        let r = local
            .staff(Method::PUT, "/stock/TEA-001/sh")
            .json(&json!({"on_hand": 4268.0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let p = problem(
            local
                .staff(Method::PUT, "/stock/TEA-001/sh")
                .json(&json!({"on_hand": 4268.5})),
            400,
            "a fraction of a unit",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "on_hand");
        // Wrong methods say which ones the path takes
        let r = local
            .staff(Method::DELETE, "/catalogue/TEA-001")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        let allow = r.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
    }
}
