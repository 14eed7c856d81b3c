//! The report routes, the staff search and dead-letter counts, and the customer's commands by
//! number and contact, over real HTTP against a local runtime on SQLite (whose reports step is
//! fed by the change log).

use oms_tests::{Local, assert_described, native_order, problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn place(local: &Local, customer: &str, ext: &str) -> (String, String) {
    let mut body = native_order(customer, &[("TEA-001", 1)]);
    body["external_id"] = json!(ext);
    body["discount_code"] = json!("BF10");
    let (status, _, placed) = local.place(&body, None).await;
    assert_eq!(status, 202, "{placed}");
    let id = placed["order_id"].as_str().unwrap().to_owned();
    let order = local.wait_for(&id, "awaiting_payment").await;
    (id, order["number"].as_str().unwrap().to_owned())
}

async fn report(local: &Local, path: &str) -> Value {
    let r = local.staff(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let body: Value = r.json().await.unwrap();
    let route = path.split('?').next().unwrap();
    assert_described("GET", route, 200, &body);
    body
}

/// Polls the summary until the reports step has counted `n` orders awaiting payment.
async fn summary_with(local: &Local, n: i64) -> Value {
    for _ in 0..100 {
        let s = report(local, "/reports/summary").await;
        let waiting = s["by_status"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "awaiting_payment")
            .map_or(0, |r| r["orders"].as_i64().unwrap());
        if waiting == n {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the reports step did not count {n} orders awaiting payment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_answer_json_and_csv_and_search_finds_orders_by_what_staff_know() {
    let local = Local::sqlite().await;
    let (id1, number1) = place(&local, "R-1", "EXT-R1").await;
    let (_id2, _) = place(&local, "R-1", "EXT-R2").await;
    let s = summary_with(&local, 2).await;
    assert_eq!(s["orders"], 2);
    // 49.90 each, less the code's discount if the channel applies one: the amount is the
    // orders' totals.
    let t1 = local.get_order(&id1).await["total"]["minor"]
        .as_i64()
        .unwrap();
    assert!(s["amount"]["CNY"].as_i64().unwrap() >= t1);
    assert_eq!(s["by_channel"][0]["channel"], "web");
    assert_eq!(s["by_region"][0]["region"], "CN-JS");
    assert_eq!(s["kpis"]["orders"], 2);
    let retention = report(&local, "/reports/retention").await;
    assert_eq!(retention["first_orders"], 1);
    assert_eq!(retention["repeat_orders"], 1);
    let promos = report(&local, "/reports/promotions").await;
    assert_eq!(promos["promotions"][0]["code"], "BF10");
    assert_eq!(promos["promotions"][0]["orders"], 2);
    let skus = report(&local, "/reports/top-skus?limit=5").await;
    assert_eq!(skus["skus"][0]["sku"], "TEA-001");
    assert_eq!(skus["skus"][0]["units"], 2);
    let series = report(&local, "/reports/timeseries?interval=week").await;
    let total: i64 = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["orders"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2);
    for path in ["/reports/timeliness", "/reports/returns", "/reports/kpis"] {
        report(&local, path).await;
    }
    // Filters: another channel has nothing; a region filter keeps the orders.
    assert_eq!(
        report(&local, "/reports/summary?channel=app").await["orders"],
        0
    );
    // Any spelling of the region finds them: the code, the name, as a Tmall trade writes it.
    for region in [
        "CN-JS",
        "CN-Jiangsu",
        "Jiangsu",
        "%E6%B1%9F%E8%8B%8F%E7%9C%81",
    ] {
        assert_eq!(
            report(&local, &format!("/reports/summary?region={region}")).await["orders"],
            2,
            "{region}"
        );
    }

    // CSV, by parameter and by Accept.
    let r = local
        .staff(Method::GET, "/reports/summary?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("dimension,value,orders,currency,amount\r\n"),
        "{csv}"
    );
    assert!(csv.contains("\r\nchannel,web,2,CNY,"), "{csv}");
    let r = local
        .staff(Method::GET, "/reports/top-skus")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("\r\nTEA-001,2,CNY,"));

    // Bad input names the field and changes nothing.
    for (path, field) in [
        ("/reports/summary?from=yesterday", "from"),
        ("/reports/timeseries?interval=hour", "interval"),
        ("/reports/top-skus?limit=0", "limit"),
        ("/reports/kpis?format=xml", "format"),
        ("/reports/summary?channel=Not%20a%20channel", "channel"),
        ("/reports/kpis?channel=", "channel"),
        ("/orders/search?q=", "q"),
    ] {
        let p = problem(local.staff(Method::GET, path), 400, path).await;
        assert_eq!(p["errors"][0]["field"], field, "{path}: {p}");
    }
    // A range of well-formed days that is not a range, or too long: refused, naming the field
    // the caller gave.
    for (path, field) in [
        ("/reports/summary?from=2026-12-02&to=2026-11-01", "from"),
        ("/reports/summary?from=2020-01-01&to=2026-01-01", "from"),
        ("/reports/summary?to=2099-01-01", "to"),
    ] {
        let p = problem(local.staff(Method::GET, path), 422, path).await;
        assert_eq!(p["errors"][0]["field"], field, "{path}: {p}");
    }
    // Staff only.
    let r = local
        .http
        .get(local.url("/reports/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Search: by number, by id, by e-mail (the reports step indexed it), by external id, by
    // customer id; nothing for a stranger.
    for q in [
        number1.clone(),
        id1.clone(),
        "li@example.com".into(),
        "EXT-R1".into(),
    ] {
        let found = report(&local, &format!("/orders/search?q={}", urlencode(&q))).await;
        let ids: Vec<&str> = found["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&id1.as_str()), "{q}: {found}");
    }
    let by_customer = report(&local, "/orders/search?q=R-1").await;
    assert_eq!(by_customer["orders"].as_array().unwrap().len(), 2);
    let none = report(&local, "/orders/search?q=nobody%40example.com").await;
    assert!(none["orders"].as_array().unwrap().is_empty());

    let dl = report(&local, "/dead-letters").await;
    let queues: Vec<&str> = dl["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(
        queues,
        [
            "numbering",
            "review",
            "inventory",
            "dispatch",
            "effects",
            "webhooks"
        ]
    );
    assert!(
        dl["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["dead_letters"] == 0)
    );
    local.running.stop().await;
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_changes_the_address_reads_the_invoice_and_cancels_by_number_and_contact() {
    let local = Local::sqlite().await;
    let (id, number) = place(&local, "T-1", "EXT-T1").await;
    let lookup = |contact: &str| {
        local.http.get(local.url(&format!(
            "/orders/lookup?number={number}&contact={}",
            urlencode(contact)
        )))
    };
    let r = lookup("li@example.com").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_described("GET", "/orders/lookup", 200, &view);
    assert_eq!(
        view["can"],
        json!({"cancel": true, "change_address": true, "return": false})
    );
    assert_eq!(
        view["ship_to"],
        json!({"city": "Nanjing", "region": "Jiangsu", "country": "CN"})
    );
    assert!(view.get("shipping_address").is_none() && view.get("customer").is_none());

    // A wrong contact and an unknown number answer alike, and change nothing.
    for (n, c) in [
        (number.as_str(), "someone@example.com"),
        ("0000000000000", "li@example.com"),
    ] {
        let p = problem(
            local
                .http
                .post(local.url("/orders/lookup/cancel"))
                .json(&json!({"number": n, "contact": c})),
            404,
            "cancel by a stranger",
        )
        .await;
        assert_eq!(p["detail"], "no order with this number and contact");
    }
    // A body that is not an object is refused, even where every field is optional.
    for (req, what) in [
        (
            local.http.post(local.url("/orders/lookup/cancel")),
            "customer cancel",
        ),
        (
            local.staff(Method::POST, &format!("/orders/{id}/cancel")),
            "staff cancel",
        ),
    ] {
        let p = problem(
            req.header("content-type", "application/json").body("[]"),
            400,
            what,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "body", "{what}: {p}");
    }
    assert_eq!(local.get_order(&id).await["status"], "awaiting_payment");
    // A new address: checked as an order's, errors named as sent.
    let p = problem(
        local
            .http
            .put(local.url("/orders/lookup/shipping-address"))
            .json(&json!({"number": number, "contact": "+8613800000000",
                          "address": {"name": "Li Lei", "country": "CN", "region": "Jiangsu", "line1": "2 Hunan Rd"}})),
        400,
        "address without a city",
    )
    .await;
    assert!(
        p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "address.city"),
        "{p}"
    );
    assert_eq!(
        local.get_order(&id).await["shipping_address"]["line1"],
        "1 Zhongshan Rd"
    );
    let r = local
        .http
        .put(local.url("/orders/lookup/shipping-address"))
        .json(&json!({"number": number, "contact": "+8613800000000",
                      "address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Jiangsu",
                                  "city": "Suzhou", "line1": "2 Ganjiang Rd", "postal_code": "215000"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["ship_to"]["city"], "Suzhou");
    let order = local.get_order(&id).await;
    assert_eq!(order["shipping_address"]["line1"], "2 Ganjiang Rd");
    assert!(
        order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"]["kind"] == "customer" && e["reason"] == "shipping address changed"),
        "the change is on the timeline as the customer's: {:#}",
        order["timeline"]
    );

    // The invoice: printable HTML with the lines, the discount code and the total.
    let r = local
        .http
        .get(local.url(&format!(
            "/orders/lookup/invoice?number={number}&contact=li%40example.com"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();
    let total = order["total"]["minor"].as_i64().unwrap();
    for needle in [
        number.clone(),
        "TEA-001".into(),
        "2 Ganjiang Rd".into(),
        format!("CNY {}.{:02}", total / 100, total % 100),
    ] {
        assert!(html.contains(&needle), "{needle} not in the invoice");
    }

    // Cancel: the order is cancelled and its stock released; a second cancel answers alike.
    for _ in 0..2 {
        let r = local
            .http
            .post(local.url("/orders/lookup/cancel"))
            .json(
                &json!({"number": number, "contact": "li@example.com", "reason": "ordered twice"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["status"], "cancelled");
        assert_eq!(view["can"]["cancel"], false);
    }
    // Too late to change the address now.
    problem(
        local
            .http
            .put(local.url("/orders/lookup/shipping-address"))
            .json(&json!({"number": number, "contact": "li@example.com",
                          "address": {"name": "Li Lei", "phone": "+8613800000000", "country": "CN", "region": "Jiangsu",
                                      "city": "Suzhou", "line1": "3 Ganjiang Rd", "postal_code": "215000"}})),
        409,
        "address of a cancelled order",
    )
    .await;
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_routes_share_the_look_ups_rate_limit_and_the_pages_are_served() {
    let local = Local::sqlite().await;
    let mut limited = 0;
    for i in 0..60 {
        let r = if i % 2 == 0 {
            local
                .http
                .post(local.url("/orders/lookup/cancel"))
                .json(&json!({"number": "0000000000000", "contact": "x@example.com"}))
                .send()
                .await
                .unwrap()
        } else {
            local
                .http
                .get(
                    local
                        .url("/orders/lookup/invoice?number=0000000000000&contact=x%40example.com"),
                )
                .send()
                .await
                .unwrap()
        };
        if r.status() == 429 {
            limited += 1;
        } else {
            assert_eq!(r.status(), 404);
        }
    }
    assert!(limited > 0, "60 quick guesses and none refused");
    for (path, kind) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/track", "text/html; charset=utf-8"),
        ("/assets/chart.umd.min.js", "text/javascript; charset=utf-8"),
        ("/assets/oms.css", "text/css; charset=utf-8"),
    ] {
        let r = local.http.get(local.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
    }
    let r = local
        .http
        .get(local.url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    problem(
        local.http.get(local.url("/assets/nothing.js")),
        404,
        "unknown asset",
    )
    .await;
    local.running.stop().await;
}
