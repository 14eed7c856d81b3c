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

/// A validator for one schema of `components.schemas`.
fn component(name: &str) -> jsonschema::Validator {
    let doc = oms_tests::api_description();
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": format!("#/components/schemas/{name}"),
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A string of 0 to `max` characters drawn from letters, digits, punctuation, spaces, control
/// characters and a few non-ASCII ones: what the value schemas and the parsers must agree on.
fn random_text(rng: &mut fastrand::Rng, max: usize) -> String {
    const POOL: &[char] = &[
        'a', 'z', 'A', 'Z', '0', '9', '-', '_', '.', '+', '(', ')', ' ', '@', '/', '\t', '\n',
        '\u{0}', '\u{7f}', '\u{85}', '\u{a0}', 'é', '中', '\u{2003}',
    ];
    let len = rng.usize(0..=max);
    (0..len).map(|_| POOL[rng.usize(..POOL.len())]).collect()
}

#[test]
fn the_value_schemas_accept_exactly_what_the_code_accepts() {
    use oms::domain::{
        ChannelId, CountryCode, Currency, CustomerId, ExternalId, Phone, Sku, Text, WarehouseId,
    };
    type Parse = fn(&str) -> bool;
    let cases: [(&str, usize, Parse); 8] = [
        ("Sku", 70, |s| Sku::parse(s).is_ok()),
        ("ChannelId", 36, |s| ChannelId::parse(s).is_ok()),
        ("WarehouseId", 36, |s| WarehouseId::parse(s).is_ok()),
        ("CustomerId", 70, |s| CustomerId::parse(s).is_ok()),
        ("ExternalId", 8, |s| ExternalId::parse(s).is_ok()),
        ("Text", 205, |s| Text::parse(s).is_ok()),
        ("Phone", 24, |s| Phone::parse(s).is_ok()),
        ("CountryCode", 3, |s| CountryCode::parse(s).is_ok()),
    ];
    let mut rng = fastrand::Rng::with_seed(20261201);
    for (name, max, parse) in cases {
        let v = component(name);
        let mut accepted = 0;
        for i in 0..20_000 {
            // Every fourth sample comes from the characters the type allows, so that both
            // answers are well represented.
            let s = if i % 4 == 0 {
                let len = rng.usize(0..=max);
                let plus = if name == "Phone" && i % 8 == 0 {
                    "+"
                } else {
                    ""
                };
                (0..len)
                    .map(|_| match name {
                        "Phone" => {
                            ['+', '1', '8', '6', '0', ' ', '-', '(', ')', '.'][rng.usize(..10)]
                        }
                        "CountryCode" => rng.alphabetic(),
                        _ => rng.alphanumeric(),
                    })
                    .fold(plus.to_owned(), |mut s, c| {
                        s.push(c);
                        s
                    })
            } else {
                random_text(&mut rng, max)
            };
            let by_schema = v.is_valid(&Value::String(s.clone()));
            assert_eq!(by_schema, parse(&s), "{name}: {s:?}");
            accepted += usize::from(by_schema);
        }
        assert!(accepted > 50, "{name}: only {accepted} samples were valid");
    }
    // The currency codes are exactly those the code knows.
    let v = component("CurrencyCode");
    for a in 'A'..='Z' {
        for b in 'A'..='Z' {
            for c in ['A', 'D', 'F', 'K', 'N', 'R', 'S', 'Y', 'Z'] {
                let code = format!("{a}{b}{c}");
                assert_eq!(
                    v.is_valid(&Value::String(code.clone())),
                    Currency::parse(&code).is_ok(),
                    "{code}"
                );
            }
        }
    }
    assert!(!v.is_valid(&Value::String("cny".into())));
}

/// Each staff operation states the role it needs (`x-oms-role`, and in words), and it is the role
/// the gate checks.
#[test]
fn each_staff_operation_states_the_role_the_gate_checks() {
    let d = oms_tests::api_description();
    let mut staff_ops = 0;
    for (path, ops) in d["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let staff = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s.get("bearer").is_some()));
            if !staff {
                continue;
            }
            staff_ops += 1;
            let m = axum::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let role = oms::api::staff::required_role(&m, path).as_str();
            assert_eq!(op["x-oms-role"], role, "{method} {path}");
            assert!(
                op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("Needs the {role} role"))),
                "{method} {path}"
            );
            assert!(op["responses"]["403"].is_object(), "{method} {path}: 403");
        }
    }
    assert!(staff_ops >= 19, "{staff_ops}");
}

/// A delivery is listed as the domain type serializes it: one with every optional field set (an
/// attempt in flight, a retry due, attempts with and without an answer) is described, so a list
/// taken while a worker holds an attempt matches `WebhookDelivery`.
#[test]
fn a_delivery_with_every_field_set_is_described() {
    use oms::domain::outbound::{Attempt, Delivery, DeliveryState};
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T11:02:11Z")
        .expect("a time")
        .to_utc();
    let delivery = Delivery {
        id: "msg_001".into(),
        endpoint_id: "ep_1".into(),
        event_type: "order.created".into(),
        body: "{}".into(),
        created_at: at,
        state: DeliveryState::Pending,
        attempts: vec![
            Attempt {
                at,
                status: None,
                error: Some("client error (Connect)".into()),
            },
            Attempt {
                at,
                status: Some(503),
                error: None,
            },
        ],
        next_attempt_at: Some(at),
        attempting_until: Some(at),
    };
    let body = serde_json::to_value(vec![delivery]).expect("a delivery serializes");
    for field in ["next_attempt_at", "attempting_until"] {
        assert!(body[0][field].is_string(), "{field} is written: {body}");
    }
    assert_described("GET", "/webhook-endpoints/{id}/deliveries", 200, &body);
}
