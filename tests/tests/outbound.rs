//! Outbound webhooks end to end: an admin subscribes a receiving HTTP server; orders and stock
//! make events; every delivery is checked with the Standard Webhooks reference library (not our
//! signing code); 500 answers are retried on the schedule (the test moves a manual clock and
//! sweeps, it never sleeps out a delay); a rotated secret signs beside the old one; an endpoint
//! that answers 410 is disabled with an alert.

use std::sync::{Arc, Mutex};

use oms::clock::Clock;
use oms_tests::{Local, Outside, native_order};
use reqwest::Method;
use serde_json::{Value, json};

/// What the receiver got, and how it answers next.
#[derive(Default)]
struct Inbox {
    got: Vec<(axum::http::HeaderMap, String)>,
    /// Answers to give, in order; 200 once they run out.
    script: Vec<u16>,
}

async fn receiver(inbox: Arc<Mutex<Inbox>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            async |axum::extract::State(inbox): axum::extract::State<Arc<Mutex<Inbox>>>,
                   headers: axum::http::HeaderMap,
                   body: String| {
                let mut i = inbox.lock().unwrap();
                i.got.push((headers, body));
                let status = if i.script.is_empty() {
                    200
                } else {
                    i.script.remove(0)
                };
                axum::http::StatusCode::from_u16(status).unwrap()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.with_state(inbox)).await.unwrap();
    });
    format!("http://{addr}/hook")
}

/// Waits (polling real time: deliveries run on the runtime's pollers) until `n` requests came.
async fn received(inbox: &Arc<Mutex<Inbox>>, n: usize) -> Vec<(axum::http::HeaderMap, String)> {
    for _ in 0..200 {
        if inbox.lock().unwrap().got.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let got = inbox.lock().unwrap().got.clone();
    assert!(got.len() >= n, "expected {n} requests, got {}", got.len());
    got
}

/// Polls the endpoint's delivery log (real time: attempts are recorded by the runtime's
/// pollers) until the entry for `event_type` satisfies `settled`, or 5 s pass; returns the
/// entry as last read, for the caller to assert on.
async fn logged_when(
    local: &Local,
    ep_id: &str,
    event_type: &str,
    settled: impl Fn(&Value) -> bool,
) -> Value {
    let mut entry = Value::Null;
    for _ in 0..200 {
        let log: Vec<Value> = local
            .staff(
                Method::GET,
                &format!("/webhook-endpoints/{ep_id}/deliveries"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(d) = log.into_iter().find(|d| d["event_type"] == event_type) {
            entry = d;
            if settled(&entry) {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!entry.is_null(), "no {event_type} delivery logged");
    entry
}

fn verify(secret: &str, headers: &axum::http::HeaderMap, body: &str) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(body.as_bytes(), headers)
        .is_ok()
}

async fn subscribe(local: &Local, url: &str, events: Value) -> Value {
    let r = local
        .staff(Method::POST, "/webhook-endpoints")
        .json(&json!({"url": url, "events": events, "description": "ERP"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_after_500s_and_signed_twice_while_rotating() {
    // The reference library checks timestamps against the real clock (5 minutes either way):
    // the manual clock starts 150 s behind it, so the attempts the test moves it through stay
    // within that window.
    let clock = Arc::new(oms::clock::ManualClock::new(
        chrono::Utc::now() - chrono::Duration::seconds(150),
    ));
    let local = Local::sqlite_outside(
        oms::config::Config::demo(),
        Outside {
            clock: clock.clone(),
            ..Outside::default()
        },
    )
    .await;
    let inbox = Arc::new(Mutex::new(Inbox {
        script: vec![500, 503],
        ..Inbox::default()
    }));
    let url = receiver(inbox.clone()).await;
    let ep = subscribe(&local, &url, json!(["order.created", "order.paid"])).await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{ep}");
    assert_eq!(ep["state"], "enabled");
    // The secret is never listed.
    let listed = local
        .staff(Method::GET, "/webhook-endpoints")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(&secret) && listed.contains(&ep_id),
        "{listed}"
    );

    // An order is placed: order.created is attempted at once and answered 500.
    let (_, _, body) = local
        .place(&native_order("C1001", &[("TEA-001", 1)]), None)
        .await;
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    let first = received(&inbox, 1).await;
    let (headers, sent) = &first[0];
    assert!(
        verify(&secret, headers, sent),
        "signed as the specification says"
    );
    let event: Value = serde_json::from_str(sent).unwrap();
    assert_eq!(event["type"], "order.created");
    assert_eq!(event["data"]["order_id"], order_id.as_str());
    assert!(
        event["data"].get("email").is_none(),
        "no contact data in events"
    );
    let webhook_id = headers["webhook-id"].to_str().unwrap().to_owned();

    // 5 s later the sweeper sends it again (503), 5 min after that once more (200).
    let sweep_after = |secs: i64| {
        clock.advance(chrono::Duration::seconds(secs));
        local.sweep()
    };
    logged_when(&local, &ep_id, "order.created", |d| {
        d["attempts"].as_array().is_some_and(|a| a.len() == 1)
            && d.get("attempting_until").is_none()
    })
    .await;
    assert_eq!(sweep_after(4).await.webhooks, 0, "not before its time");
    assert_eq!(sweep_after(1).await.webhooks, 1);
    let second = received(&inbox, 2).await;
    // The attempt is recorded just after the receiver answers: the clock moves on only once it
    // is (else the attempt's lease, timed by the moved clock, would look abandoned).
    let retried = logged_when(&local, &ep_id, "order.created", |d| {
        d["attempts"].as_array().is_some_and(|a| a.len() == 2)
            && d.get("attempting_until").is_none()
    })
    .await;
    assert_eq!(
        retried["attempts"].as_array().map(Vec::len),
        Some(2),
        "{retried}"
    );
    assert_eq!(sweep_after(299).await.webhooks, 0);
    assert_eq!(sweep_after(1).await.webhooks, 1);
    let third = received(&inbox, 3).await;
    for (h, b) in [&second[1], &third[2]] {
        assert_eq!(
            h["webhook-id"],
            webhook_id.as_str(),
            "the same id on every attempt"
        );
        assert!(verify(&secret, h, b));
        assert_eq!(b, sent, "the same body on every attempt");
    }
    assert!(
        third[2].0["webhook-timestamp"] != first[0].0["webhook-timestamp"],
        "each attempt carries its own time"
    );
    // Delivered: the log says so (the attempt is recorded just after the receiver answers,
    // so wait for it), and no sweep sends it again.
    let created = logged_when(&local, &ep_id, "order.created", |d| d["state"] != "pending").await;
    assert_eq!(created["state"], "delivered", "{created}");
    let statuses: Vec<u64> = created["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
    assert_eq!(sweep_after(100).await.webhooks, 0);
    assert_eq!(inbox.lock().unwrap().got.len(), 3);

    // Rotate: the next delivery is signed with the new secret and, for a day, the old one.
    let rotated: Value = local
        .staff(
            Method::POST,
            &format!("/webhook-endpoints/{ep_id}/rotate-secret"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let order = local.wait_for(&order_id, "awaiting_payment").await;
    let total = order["total"]["minor"].as_i64().unwrap();
    let r = local
        .stripe(
            &oms_tests::stripe_paid("evt_outbound", &order_id, total, "cny"),
            oms_local::DEV_SECRET,
            clock.now().timestamp(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let got = received(&inbox, 4).await;
    let (h, b) = &got[3];
    assert_eq!(
        serde_json::from_str::<Value>(b).unwrap()["type"],
        "order.paid"
    );
    let sigs = h["webhook-signature"].to_str().unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(verify(&new_secret, h, b) && verify(&secret, h, b));
    // Only what the endpoint subscribed to: no order.status_changed, no order.shipped.
    let types: Vec<String> = inbox
        .lock()
        .unwrap()
        .got
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<Value>(b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        types
            .iter()
            .all(|t| t == "order.created" || t == "order.paid"),
        "{types:?}"
    );
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_answers_410_is_disabled_with_an_alert_and_bad_endpoints_are_refused() {
    let local = Local::sqlite().await;
    let inbox = Arc::new(Mutex::new(Inbox {
        script: vec![410],
        ..Inbox::default()
    }));
    let url = receiver(inbox.clone()).await;
    let ep = subscribe(&local, &url, json!(["stock.low"])).await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    // Stock below its safety level: stock.low, answered 410 Gone.
    let r = local
        .staff(Method::PUT, "/stock/CUP-002/sh")
        .json(&json!({"on_hand": 1, "safety": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = received(&inbox, 1).await;
    let event: Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(event["type"], "stock.low");
    assert_eq!(event["data"]["sku"], "CUP-002");
    let mut state = Value::Null;
    for _ in 0..100 {
        state = local
            .staff(Method::GET, &format!("/webhook-endpoints/{ep_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["state"] == "disabled" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(state["state"], "disabled", "{state}");
    assert!(state["disabled_reason"].as_str().unwrap().contains("410"));
    // The alert is on the alerts queue for integrators and operators.
    let alerts = local
        .running
        .app
        .queue
        .peek(&oms::app::queues::name(oms::app::queues::ALERTS), 10)
        .await
        .unwrap();
    assert!(
        alerts
            .iter()
            .any(|m| m.body.contains("webhook_endpoint.disabled") && m.body.contains(&ep_id)),
        "{:?}",
        alerts.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
    // Enabled again by an admin, it takes deliveries again.
    let r = local
        .staff(Method::POST, &format!("/webhook-endpoints/{ep_id}/enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = local
        .staff(Method::PUT, "/stock/CUP-002/gz")
        .json(&json!({"on_hand": 0, "safety": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = received(&inbox, 2).await;
    assert_eq!(
        serde_json::from_str::<Value>(&got[1].1).unwrap()["data"]["warehouse"],
        "gz"
    );

    // Bad subscriptions are refused, naming the field.
    for (body, field) in [
        (json!({"url": "ftp://x", "events": ["*"]}), "url"),
        (json!({"url": url, "events": []}), "events"),
        (
            json!({"url": url, "events": ["order.teleported"]}),
            "events[0]",
        ),
        (json!({"events": ["*"]}), "url"),
    ] {
        let r = local
            .staff(Method::POST, "/webhook-endpoints")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    // An operator may not subscribe.
    let key: Value = local
        .staff(Method::POST, "/staff/keys")
        .json(&json!({"name": "op", "role": "operator"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = local
        .http
        .post(local.url("/webhook-endpoints"))
        .bearer_auth(key["key"].as_str().unwrap())
        .json(&json!({"url": url, "events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    local.running.stop().await;
}

/// Copies of a delivery's message handled at once (SQS delivers at least once; the sweeper's
/// relay may send one while an attempt is slow): the endpoint gets the event once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_delivery_handled_at_once_post_it_once() {
    let local = Local::sqlite().await;
    let posts = Arc::new(Mutex::new(Vec::<String>::new()));
    // An endpoint that takes its time to answer.
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::post(
            async |axum::extract::State(posts): axum::extract::State<Arc<Mutex<Vec<String>>>>,
                   headers: axum::http::HeaderMap| {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                posts.lock().unwrap().push(id);
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                axum::http::StatusCode::OK
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = posts.clone();
    tokio::spawn(async move {
        axum::serve(listener, app.with_state(state)).await.unwrap();
    });
    let ep = subscribe(
        &local,
        &format!("http://{addr}/slow"),
        json!(["order.created"]),
    )
    .await;
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    local
        .place(&native_order("C1001", &[("TEA-001", 1)]), None)
        .await;
    // While the first attempt waits for its answer, four more copies of its message arrive.
    let mut delivery = None;
    for _ in 0..200 {
        let log: Value = local
            .staff(
                Method::GET,
                &format!("/webhook-endpoints/{ep_id}/deliveries"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = log[0]["id"].as_str() {
            delivery = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let delivery = delivery.expect("a delivery was made");
    let copy =
        json!({"kind": "deliver", "endpoint_id": ep_id, "delivery_id": delivery}).to_string();
    let queue = oms::app::queues::name(oms::app::queues::WEBHOOKS);
    for _ in 0..4 {
        local.running.app.queue.send(&queue, &copy).await.unwrap();
    }
    // Wait until every copy was handled (the queue is empty and nothing is in flight) and
    // the delivery is recorded.
    let mut log = Value::Null;
    for _ in 0..300 {
        log = local
            .staff(
                Method::GET,
                &format!("/webhook-endpoints/{ep_id}/deliveries"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let depth = local.running.app.queue.depth(&queue).await.unwrap();
        if log[0]["state"] == "delivered" && depth == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(log[0]["state"], "delivered", "{log}");
    assert_eq!(log[0]["attempts"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(
        posts.lock().unwrap().clone(),
        vec![delivery.clone()],
        "one attempt, one POST"
    );
    local.running.stop().await;
}
