//! Reads that may miss the latest write (DynamoDB's eventually consistent reads, half the read
//! units) are taken first by the queue steps and by every load → decide → commit, and a reader
//! that sees too old an order must read again strongly rather than let the order be. The
//! embedded store's lagging mode (`Backend::SqliteLagging`) answers the first such read after
//! each write of an order with the order as it was before that write, as a DynamoDB replica may.

use std::sync::Arc;

use oms::app::{App, Backend};
use oms::config::Config;
use oms::domain::decide::{self, Refusal};
use oms::domain::{Actor, Status};
use oms::flow::{Outcome, Step};
use oms_tests::{Local, STAFF_TOKEN, order, t0};

async fn lagging_app(dir: &std::path::Path) -> App {
    let backend = Backend::SqliteLagging {
        path: dir.join("oms.sqlite"),
    };
    oms_tests::app_on(&backend, Arc::new(oms::clock::SystemClock)).await
}

fn by(name: &str) -> Actor {
    Actor::System(name.into())
}

#[tokio::test]
async fn the_lagging_store_answers_a_first_read_after_a_write_with_the_order_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = lagging_app(dir.path()).await;
    let store = &app.store;
    let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
    store.create_order(&o, &entry, &[]).await.unwrap();
    assert_eq!(store.get_order_eventually(o.id).await.unwrap(), None);
    assert_eq!(
        store.get_order_eventually(o.id).await.unwrap(),
        Some(o.clone())
    );
    let numbered = o
        .transition(Status::Numbered, by("numbering"), None, t0())
        .unwrap();
    store.save_change(&numbered).await.unwrap();
    assert_eq!(
        store.get_order_eventually(o.id).await.unwrap(),
        Some(o.clone())
    );
    assert_eq!(
        store.get_order_eventually(o.id).await.unwrap(),
        Some(numbered.order.clone())
    );
    // Strong reads never lag.
    let renumbered = numbered.order.revise(by("test"), "a note".into(), t0());
    store.save_change(&renumbered).await.unwrap();
    assert_eq!(store.get_order(o.id).await.unwrap(), Some(renumbered.order));
}

#[tokio::test]
async fn a_step_or_a_decision_that_reads_an_old_order_reads_it_again_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = lagging_app(dir.path()).await;
    let store = &app.store;
    let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
    store.create_order(&o, &entry, &[]).await.unwrap();
    let numbered = o
        .transition(Status::Numbered, by("numbering"), None, t0())
        .unwrap();
    store.save_change(&numbered).await.unwrap();

    // A review message whose first read sees the order still `received` (not the review's
    // step): the step reads it again and reviews it.
    let body = format!("{{\"order_id\":\"{}\"}}", o.id);
    oms::flow::run(&app, Step::Review, &body)
        .await
        .expect("review");
    let reviewed = store.get_order(o.id).await.unwrap().unwrap();
    assert_ne!(reviewed.status(), Status::Numbered, "the review went on");
    let timeline = store.timeline(o.id).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.from == Some(Status::Numbered) && e.actor == by("review")),
        "{timeline:?}"
    );

    // A decision that finds nothing to do on the old order it read first (`numbered`) decides
    // again on the newest one: here one that only acts on the reviewed order.
    let status = reviewed.status();
    let outcome = oms::flow::decide_and_commit(&app, o.id, |order, p, now| {
        if order.status() != status {
            return Ok(None);
        }
        decide::cancel(order, Actor::Customer, "changed my mind", p, now)
    })
    .await
    .expect("decided");
    let Outcome::Committed(cancelled) = outcome else {
        panic!("nothing was decided on the newest order");
    };
    assert_eq!(cancelled.status(), Status::Cancelled);

    // A decision refused on the old order it read first (the reviewed one) is asked again of
    // the newest: the answer is the newest order's.
    let outcome = oms::flow::decide_and_commit(&app, o.id, |order, _, _| {
        if order.status() != Status::Cancelled {
            return Err(Refusal(format!("{} is not cancelled", order.status())));
        }
        Ok(None)
    })
    .await
    .expect("not refused: the newest order is cancelled");
    assert!(matches!(outcome, Outcome::Nothing(ref o) if o.status() == Status::Cancelled));

    // A change decided on an old order loses its write and is decided again on the newest.
    let noted = store.get_order(o.id).await.unwrap().unwrap();
    store
        .save_change(&noted.revise(by("test"), "first".into(), t0()))
        .await
        .unwrap();
    let outcome = oms::flow::decide_and_commit(&app, o.id, |order, _, now| {
        Ok(Some(order.revise(by("test"), "second".into(), now)))
    })
    .await
    .expect("decided");
    let Outcome::Committed(last) = outcome else {
        panic!("not written");
    };
    assert_eq!(
        last.version(),
        noted.version() + 2,
        "written after the first note"
    );
    let notes: Vec<_> = store
        .timeline(o.id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .filter(|r| r == "first" || r == "second")
        .collect();
    assert_eq!(notes, ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lives_on_reads_that_lag_all_end() {
    let local = Local::sqlite_lagging(
        oms_local::demo::demo_config(Config::demo()),
        std::time::Duration::from_millis(500),
    )
    .await;
    let summary = oms_local::demo::run(oms_local::demo::DemoOptions {
        config: None,
        orders: 24,
        seed: 5,
        concurrency: 6,
        url: Some(local.running.url()),
        staff_token: STAFF_TOKEN.into(),
        progress: false,
    })
    .await
    .expect("demo runs");
    assert!(summary.accounts_for_every_order(), "{summary}");
    local.running.stop().await;
}

#[tokio::test]
async fn an_allocation_that_sees_too_little_stock_reads_it_again_before_it_waits_for_stock() {
    let dir = tempfile::tempdir().unwrap();
    let app = lagging_app(dir.path()).await;
    let store = &app.store;
    let (sku, wh) = (
        oms::domain::Sku::parse("TEA-001").unwrap(),
        oms::domain::WarehouseId::parse("nj").unwrap(),
    );
    store.set_stock(&sku, &wh, 10, 0).await.unwrap();
    // The lagging store's first look sees none of it.
    let seen = store.stock_of_eventually(&sku).await.unwrap();
    assert_eq!(seen.iter().map(|l| l.available()).sum::<u64>(), 0);

    let (o, entry) = order("C1", None, &[("TEA-001", 2)]);
    store.create_order(&o, &entry, &[]).await.unwrap();
    let numbered = o
        .transition(Status::Numbered, by("numbering"), None, t0())
        .unwrap();
    store.save_change(&numbered).await.unwrap();
    let approved = numbered
        .order
        .transition(Status::Approved, by("review"), None, t0())
        .unwrap();
    store.save_change(&approved).await.unwrap();
    let body = format!("{{\"order_id\":\"{}\"}}", o.id);
    oms::flow::run(&app, Step::Inventory, &body)
        .await
        .expect("inventory");
    let after = store.get_order(o.id).await.unwrap().unwrap();
    assert_eq!(
        after.status(),
        Status::AwaitingPayment,
        "reserved, not waiting for stock"
    );
    let level = store.stock_of(&sku).await.unwrap();
    assert_eq!((level[0].on_hand, level[0].reserved), (10, 2));
}
