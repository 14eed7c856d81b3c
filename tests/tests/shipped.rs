//! The configuration merchants deploy (`infra/config/oms.toml`, as shipped: only the providers'
//! base URLs point at local stand-ins and the credentials are test ones), on both stores,
//! against stand-ins that follow the tracking services' documentation
//! (`oms_tests::tracking_services`): every waybill is subscribed for tracking pushes, and the
//! pushes, signed as each service signs them, take the order to the door.

use std::sync::Arc;

use chrono::{Duration, Utc};
use oms_tests::tracking_services::{aftership, kuaidi100};
use oms_tests::{Local, Outside};

struct StandIns {
    poll: Arc<kuaidi100::Poll>,
    trackings: Arc<aftership::Trackings>,
    waybills: Arc<oms_tests::fake_kuaidi100::Fake>,
    top: Arc<oms_tests::marketplace_stand_in::Top>,
}

/// The shipped configuration with every carrier's APIs pointed at the stand-ins.
async fn shipped() -> (oms::config::Config, StandIns) {
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/config/oms.toml"
    ));
    let mut config = oms::config::Config::load(path).expect("the shipped configuration loads");
    let (waybill_api, waybills) = oms_tests::fake_kuaidi100::start().await;
    let (top, top_url) = oms_tests::marketplace_stand_in::start().await;
    for c in config.channels.values_mut() {
        if let Some(m) = &mut c.marketplace {
            m.api_base = Some(top_url.clone());
            m.app_key = oms_tests::marketplace_stand_in::APP_KEY.into();
        }
    }
    let (poll, poll_url) = kuaidi100::start().await;
    let (trackings, aftership_url) = aftership::start().await;
    for c in config.carriers.values_mut() {
        c.api_base = Some(waybills.clone());
        c.tracking_api_base = Some(match c.vocabulary {
            oms::config::Vocabulary::Kuaidi100 => poll_url.clone(),
            oms::config::Vocabulary::Aftership => aftership_url.clone(),
        });
    }
    (
        config,
        StandIns {
            poll,
            trackings,
            waybills: waybill_api,
            top,
        },
    )
}

fn credentials(config: &oms::config::Config) -> oms::shipping::waybills::CarrierCredentials {
    let mut c = oms::shipping::waybills::CarrierCredentials::default();
    for name in config.carriers.keys() {
        c.kuaidi100
            .insert(name.clone(), oms_tests::fake_kuaidi100::account());
        c.aftership.insert(name.clone(), aftership::API_KEY.into());
    }
    c
}

async fn start(
    on: &str,
    config: oms::config::Config,
    clock: Arc<dyn oms::clock::Clock>,
) -> Option<Local> {
    let outside = Outside {
        clock,
        carriers: Some(credentials(&config)),
        marketplaces: Some(oms_tests::marketplace_stand_in::credentials()),
        ..Outside::default()
    };
    match on {
        "sqlite" => Some(Local::sqlite_outside(config, outside).await),
        _ => Local::dynamodb_outside(config, Local::NO_TIMER, outside).await,
    }
}

/// A web order to `region`, paid through Stripe's webhook; returns its id and its parcel's
/// carrier and waybill.
async fn paid_order(local: &Local, region: &str) -> (String, String, String) {
    // Signed at the time the orders run on (a test's clock may run ahead).
    let now = local.running.app.clock.now();
    let mut order = oms_tests::native_order("C1001", &[("TEA-001", 1)]);
    order["shipping_address"]["region"] = region.into();
    let (status, _, body) = local.place(&order, None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["order_id"].as_str().unwrap().to_owned();
    local.wait_for(&id, "awaiting_payment").await;
    let paid = oms_tests::stripe_paid(&format!("evt_{id}"), &id, 4990, "cny");
    let r = local
        .stripe(&paid, oms_local::DEV_SECRET, now.timestamp())
        .await;
    assert_eq!(r.status(), 200);
    let o = local
        .until(&id, "a waybill", |o| {
            o["shipments"][0]["tracking_number"].is_string()
        })
        .await;
    let s = &o["shipments"][0];
    (
        id,
        s["carrier"].as_str().unwrap().to_owned(),
        s["tracking_number"].as_str().unwrap().to_owned(),
    )
}

async fn subscribed(poll: &kuaidi100::Poll, number: &str) -> kuaidi100::Subscription {
    oms_tests::settles("the Kuaidi100 subscription", true, || async {
        poll.subscription(number).is_some()
    })
    .await;
    poll.subscription(number).unwrap()
}

async fn a_kuaidi100_carrier_is_followed_by_pushes_signed_as_kuaidi100_signs_them(on: &str) {
    let (config, stand) = shipped().await;
    let Some(local) = start(on, config, Arc::new(oms::clock::SystemClock)).await else {
        return;
    };
    // Given a paid web order to Jiangsu: ZTO carries it (cheapest within the promise)
    let (id, carrier, waybill) = paid_order(&local, "Jiangsu").await;
    assert_eq!(carrier, "zto");
    // Then its waybill is subscribed at Kuaidi100, with our callback and a salt of its own
    let sub = subscribed(&stand.poll, &waybill).await;
    assert_eq!(sub.company, "zhongtong");
    assert_eq!(sub.callbackurl, local.url("/webhooks/logistics/zto"));
    assert_eq!(sub.salt.len(), 32);
    assert!(stand.poll.refused.lock().unwrap().is_empty());
    // When pushes arrive signed otherwise: our old HMAC, another waybill's salt, no salt
    let param = kuaidi100::Poll::param(&sub, "1", Utc::now());
    let other_salt = oms::shipping::kuaidi100::salt(oms_local::DEV_SECRET.as_bytes(), "zto", "1");
    let hmac = {
        use hmac::{KeyInit, Mac};
        let mut m =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(oms_local::DEV_SECRET.as_bytes()).unwrap();
        m.update(param.as_bytes());
        hex::encode_upper(m.finalize().into_bytes())
    };
    for forged in [
        hmac,
        kuaidi100::Poll::sign(&param, &other_salt),
        kuaidi100::Poll::sign(&param, ""),
    ] {
        let r = kuaidi100::Poll::push_raw(&local.http, &sub, &param, &forged).await;
        assert_eq!(r.status(), 401, "{forged}");
    }
    // Then nothing moved
    assert_eq!(local.get_order(&id).await["status"], "ready_to_ship");
    // When Kuaidi100 pushes "collected", then "signed", each signed md5(param + salt)
    let picked = Utc::now() - Duration::hours(2);
    let r = stand.poll.push(&local.http, &waybill, "1", picked).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["result"], true);
    assert_eq!(answer["returnCode"], "200");
    local.wait_for(&id, "shipped").await;
    let r = stand
        .poll
        .push(&local.http, &waybill, "3", picked + Duration::hours(1))
        .await;
    assert_eq!(r.status(), 200);
    let delivered = local.wait_for(&id, "delivered").await;
    // And a repeated push changes nothing
    let r = stand
        .poll
        .push(&local.http, &waybill, "3", picked + Duration::hours(1))
        .await;
    assert_eq!(r.status(), 200);
    let again = local.get_order(&id).await;
    assert_eq!(again["version"], delivered["version"]);
    // One subscription for the waybill, none refused
    assert_eq!(stand.poll.requests.lock().unwrap().len(), 1);
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_kuaidi100_carrier_is_followed_by_pushes_signed_as_kuaidi100_signs_them() {
    a_kuaidi100_carrier_is_followed_by_pushes_signed_as_kuaidi100_signs_them("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_kuaidi100_carrier_is_followed_by_pushes_signed_as_kuaidi100_signs_them() {
    a_kuaidi100_carrier_is_followed_by_pushes_signed_as_kuaidi100_signs_them("dynamodb").await;
}

async fn an_aftership_carrier_is_followed_by_an_aftership_tracking(on: &str) {
    let (config, stand) = shipped().await;
    let Some(local) = start(on, config, Arc::new(oms::clock::SystemClock)).await else {
        return;
    };
    // Given a paid web order to Xinjiang, which only SF serves
    let (id, carrier, waybill) = paid_order(&local, "Xinjiang").await;
    assert_eq!(carrier, "sf");
    // Then an AfterShip tracking is made for it, with SF's slug and the order id
    oms_tests::settles("the AfterShip tracking", 1, || async {
        stand.trackings.created.lock().unwrap().len()
    })
    .await;
    let (slug, number, order) = stand.trackings.created.lock().unwrap()[0].clone();
    assert_eq!(
        (slug.as_str(), number.as_str(), order.as_str()),
        ("sf-express", waybill.as_str(), id.as_str())
    );
    assert!(stand.trackings.refused.lock().unwrap().is_empty());
    // When AfterShip pushes, signed with the account's webhook secret
    let at = Utc::now() - Duration::hours(1);
    for (tag, status) in [("InTransit", "shipped"), ("Delivered", "delivered")] {
        let (body, sig) =
            aftership::push_body(&waybill, "sf-express", tag, at, oms_local::DEV_SECRET);
        let r = local
            .http
            .post(local.url("/webhooks/logistics/sf"))
            .header("content-type", "application/json")
            .header("aftership-hmac-sha256", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        local.wait_for(&id, status).await;
    }
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_aftership_carrier_is_followed_by_an_aftership_tracking() {
    an_aftership_carrier_is_followed_by_an_aftership_tracking("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_aftership_carrier_is_followed_by_an_aftership_tracking() {
    an_aftership_carrier_is_followed_by_an_aftership_tracking("dynamodb").await;
}

async fn subscriptions_are_retried_skipped_once_cancelled_and_refusals_wait_for_a_person(on: &str) {
    let (config, stand) = shipped().await;
    let clock = Arc::new(oms::clock::ManualClock::new(Utc::now()));
    let Some(local) = start(on, config, clock.clone()).await else {
        return;
    };
    // Given Kuaidi100's server fails once (500): the subscription is asked again after a backoff
    stand.poll.script.lock().unwrap().push("500");
    let (_, _, first) = paid_order(&local, "Jiangsu").await;
    oms_tests::settles("the first attempt", 1, || async {
        stand.poll.requests.lock().unwrap().len()
    })
    .await;
    assert!(stand.poll.subscription(&first).is_none());
    clock.advance(Duration::seconds(30));
    local.sweep().await;
    subscribed(&stand.poll, &first).await;

    // Given another order whose subscription fails for now, then is cancelled before pick-up
    stand.poll.script.lock().unwrap().push("500");
    let (second_id, _, second) = paid_order(&local, "Jiangsu").await;
    oms_tests::settles("the second order's first attempt", 3, || async {
        stand.poll.requests.lock().unwrap().len()
    })
    .await;
    let r = local
        .staff(
            reqwest::Method::POST,
            &format!("/orders/{second_id}/cancel"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    local.wait_for(&second_id, "refunded").await;
    // When its retry comes due, it is not asked for again
    clock.advance(Duration::seconds(30));
    local.sweep().await;
    clock.advance(Duration::minutes(15));
    local.sweep().await;
    // (the sweep handed the due subscription to the effects step: once the order's outbox is
    // empty, it was carried out, or skipped)
    let second_order = oms::domain::OrderId::parse(&second_id).unwrap();
    oms_tests::settles("the cancelled order's outbox emptied", 0, || async {
        local
            .running
            .app
            .store
            .effects_of(second_order)
            .await
            .unwrap()
            .len()
    })
    .await;
    assert_eq!(stand.poll.requests.lock().unwrap().len(), 3);
    assert!(stand.poll.subscription(&second).is_none());
    // And its waybill was cancelled at the carrier, once
    oms_tests::settles("the waybill cancelled", vec![second.clone()], || async {
        stand.waybills.cancelled.lock().unwrap().clone()
    })
    .await;

    // Given a subscription Kuaidi100 refuses for good (600: the key)
    stand.poll.script.lock().unwrap().push("600");
    let (third_id, _, third) = paid_order(&local, "Jiangsu").await;
    // Then the order waits for a person, with the reason
    let held = local
        .until(&third_id, "attention", |o| {
            o["attention"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let why = held["attention"][0].as_str().unwrap();
    assert!(why.contains(&third) && why.contains("600"), "{why}");
    assert!(local.review_list().await.contains(&third_id));
    // When staff retry it, the waybill is subscribed
    let r = local
        .staff(reqwest::Method::POST, &format!("/orders/{third_id}/review"))
        .json(&serde_json::json!({"decision": "retry", "reviewer": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    subscribed(&stand.poll, &third).await;
    let after = local
        .until(&third_id, "attention cleared", |o| {
            o["attention"].as_array().is_none_or(|a| a.is_empty())
        })
        .await;
    assert_eq!(after["status"], "ready_to_ship");
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_subscriptions_are_retried_skipped_once_cancelled_and_refusals_wait_for_a_person() {
    subscriptions_are_retried_skipped_once_cancelled_and_refusals_wait_for_a_person("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_subscriptions_are_retried_skipped_once_cancelled_and_refusals_wait_for_a_person()
{
    subscriptions_are_retried_skipped_once_cancelled_and_refusals_wait_for_a_person("dynamodb")
        .await;
}

/// A Tmall trade in Taobao's format, with `status`.
fn trade(tid: u64, status: &str) -> serde_json::Value {
    serde_json::json!({"trade_fullinfo_get_response": {"trade": {
        "tid": tid, "type": "fixed", "status": status, "buyer_open_uid": "AAH2x7kLZ9",
        "receiver_name": "Li Lei", "receiver_mobile": "13800000000", "receiver_state": "江苏省",
        "receiver_city": "南京市", "receiver_district": "玄武区", "receiver_address": "1 Zhongshan Rd",
        "receiver_zip": "210000", "payment": "99.80",
        "orders": {"order": [{"oid": 1, "outer_sku_id": "TEA-001", "num": 2, "price": "49.90"}]}}}})
}

async fn push_trade(local: &Local, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = local
        .channel("tmall", "/channels/tmall/orders")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn a_tmall_trade_is_taken_once_paid_and_cancelled_when_the_marketplace_closes_it(on: &str) {
    let (config, stand) = shipped().await;
    let Some(local) = start(on, config, Arc::new(oms::clock::SystemClock)).await else {
        return;
    };
    let tid = 3_901_234_567_890_000 + u64::from(fastrand::u32(..));
    let before = local.stock("TEA-001", "nj").await;
    // An unpaid trade is refused, naming its status, and nothing is stored
    let (status, problem) = push_trade(&local, &trade(tid, "WAIT_BUYER_PAY")).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "status", "{problem}");
    // A closed trade we never took is refused too
    let (status, _) = push_trade(&local, &trade(tid, "TRADE_CLOSED")).await;
    assert_eq!(status, 422);
    // Once paid it is taken, paid on the marketplace: it ships without a payment deadline
    let (status, body) = push_trade(&local, &trade(tid, "WAIT_SELLER_SEND_GOODS")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["order_id"].as_str().unwrap().to_owned();
    let o = local
        .until(&id, "a waybill", |o| {
            o["shipments"][0]["tracking_number"].is_string()
        })
        .await;
    assert_eq!(o["ledger"]["payments"][0]["source"], "marketplace");
    // To 江苏省 as Tmall spells it: ZTO serves Jiangsu and is the cheapest (8.00, not SF's 23.00),
    // from the Nanjing warehouse
    assert_eq!(o["shipments"][0]["carrier"], "zto", "{o:#}");
    assert_eq!(o["shipments"][0]["cost"], 800);
    assert_eq!(o["shipments"][0]["warehouse"], "nj");
    let waybill = o["shipments"][0]["tracking_number"]
        .as_str()
        .unwrap()
        .to_owned();
    subscribed(&stand.poll, &waybill).await;
    assert_eq!(local.stock("TEA-001", "nj").await.1, before.1 + 2);
    // And Tmall is told the trade shipped, with our waybill and ZTO's Taobao code
    oms_tests::settles(
        "the trade marked shipped",
        vec![(tid.to_string(), waybill.clone(), "ZTO".to_owned())],
        || async { stand.top.shipped.lock().unwrap().clone() },
    )
    .await;
    assert!(stand.top.refused.lock().unwrap().is_empty());
    // When the buyer's refund closes the trade on Tmall
    let (status, body) = push_trade(&local, &trade(tid, "TRADE_CLOSED")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order_id"], id.as_str());
    // Then the order is cancelled, paid back by the marketplace (nothing asked of a provider,
    // nothing waiting for a person), and its stock is back
    let done = local.wait_for(&id, "refunded").await;
    let refund = &done["ledger"]["refunds"][0];
    assert_eq!(refund["state"], "succeeded");
    assert_eq!(refund["amount"]["minor"], 9980);
    assert!(done["attention"].as_array().is_none_or(|a| a.is_empty()));
    oms_tests::settles("stock released", before, || local.stock("TEA-001", "nj")).await;
    // and its waybill is cancelled at the carrier
    oms_tests::settles("the waybill cancelled", vec![waybill.clone()], || async {
        stand.waybills.cancelled.lock().unwrap().clone()
    })
    .await;
    // The same push again changes nothing
    let (status, _) = push_trade(&local, &trade(tid, "TRADE_CLOSED")).await;
    assert_eq!(status, 200);
    assert_eq!(local.get_order(&id).await["version"], done["version"]);
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_tmall_trade_is_taken_once_paid_and_cancelled_when_the_marketplace_closes_it() {
    a_tmall_trade_is_taken_once_paid_and_cancelled_when_the_marketplace_closes_it("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_tmall_trade_is_taken_once_paid_and_cancelled_when_the_marketplace_closes_it() {
    a_tmall_trade_is_taken_once_paid_and_cancelled_when_the_marketplace_closes_it("dynamodb").await;
}

async fn a_marketplace_refusal_waits_for_a_person_and_retry_tells_it_again(on: &str) {
    let (config, stand) = shipped().await;
    let Some(local) = start(on, config, Arc::new(oms::clock::SystemClock)).await else {
        return;
    };
    // Given Tmall refuses the shipping notice for good (27: the shop's session expired)
    stand
        .top
        .script
        .lock()
        .unwrap()
        .push((27, "session-expired"));
    let tid = 3_901_234_560_000_000 + u64::from(fastrand::u32(..));
    let (status, body) = push_trade(&local, &trade(tid, "WAIT_SELLER_SEND_GOODS")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["order_id"].as_str().unwrap().to_owned();
    // Then the order waits for a person, saying why
    let held = local
        .until(&id, "attention", |o| {
            o["attention"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let why = held["attention"][0].as_str().unwrap();
    assert!(
        why.starts_with("marketplace: ") && why.contains("27"),
        "{why}"
    );
    assert!(stand.top.shipped.lock().unwrap().is_empty());
    // When staff retry it (the session renewed), Tmall is told
    let r = local
        .staff(reqwest::Method::POST, &format!("/orders/{id}/review"))
        .json(&serde_json::json!({"decision": "retry", "reviewer": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let waybill = held["shipments"][0]["tracking_number"]
        .as_str()
        .unwrap()
        .to_owned();
    oms_tests::settles(
        "the trade marked shipped",
        vec![(tid.to_string(), waybill, "ZTO".to_owned())],
        || async { stand.top.shipped.lock().unwrap().clone() },
    )
    .await;
    local.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_marketplace_refusal_waits_for_a_person_and_retry_tells_it_again() {
    a_marketplace_refusal_waits_for_a_person_and_retry_tells_it_again("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_marketplace_refusal_waits_for_a_person_and_retry_tells_it_again() {
    a_marketplace_refusal_waits_for_a_person_and_retry_tells_it_again("dynamodb").await;
}
