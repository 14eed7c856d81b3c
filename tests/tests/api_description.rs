//! `docs/openapi.json`, the router and `oms::api::ROUTES` describe the same routes, and what the
//! routes answer is described (status and schema). `oms_tests::assert_described` also checks
//! every order, placement and review page the other tests read, so an order in any state the
//! suite reaches (paid, shipped, returned, refunded) is checked against `OrderView`.

use std::collections::BTreeSet;

use oms_tests::{Local, assert_described};
use serde_json::Value;

fn described() -> BTreeSet<(String, String)> {
    oms_tests::api_description()["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

#[test]
fn the_api_description_lists_exactly_the_routes_the_code_serves() {
    let code: BTreeSet<(String, String)> = oms::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(described(), code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_described_route_is_answered_by_the_router() {
    let local = Local::sqlite().await;
    let id = oms::domain::OrderId::generate().to_string();
    for (method, path) in described() {
        let concrete = path
            .replace("{id}", &id)
            .replace("{channel}", "tmall")
            .replace("{sku}", "TEA-001")
            .replace("{warehouse}", "nj");
        let r = local
            .staff(method.parse().unwrap(), &concrete)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert_ne!(body["detail"], "no such route", "{method} {path}");
        // Whatever it answered is described: the status for the route, the body by its schema
        // (the Prometheus text of /metrics has no JSON schema).
        assert_described(&method, &path, status, &body);
    }
    // An undeclared method is 405 with the methods the path takes; an unknown path is 404,
    // with or without a credential; both as problems.
    let r = local
        .staff(reqwest::Method::DELETE, "/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 405);
    for path in ["/", "/nowhere", "/orders/x/y/z"] {
        let r = local.http.get(local.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"], "no such route", "{path}");
    }
    local.running.stop().await;
}
