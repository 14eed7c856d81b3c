//! The operator commands and the demo, on SQLite.

use std::sync::Arc;

use oms::app::{App, Backend, queues};

async fn app(dir: &std::path::Path) -> App {
    let backend = Backend::Sqlite {
        path: dir.join("oms.sqlite"),
    };
    oms_tests::app_on(&backend, Arc::new(oms::clock::SystemClock)).await
}

#[tokio::test]
async fn dead_letters_are_listed_and_re_driven_to_their_queue() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let review = queues::name(queues::REVIEW);
    let bodies: Vec<String> = (0..3)
        .map(|i| format!("{{\"order_id\":\"{i}\"}}"))
        .collect();
    app.queue
        .send_batch(&review.dead_letter(), &bodies)
        .await
        .unwrap();

    let listed = oms_local::operator::dlq_list(&app, Some("review"), true)
        .await
        .unwrap();
    assert!(listed.starts_with("review-dlq: 3 message(s)"), "{listed}");
    assert!(listed.contains("{\"order_id\":\"2\"}"), "{listed}");
    // Looking does not count as a receive: a second look shows the same counts
    assert!(listed.contains("(received 0 times)"), "{listed}");
    let again = oms_local::operator::dlq_list(&app, Some("review"), true)
        .await
        .unwrap();
    assert_eq!(again, listed);

    assert_eq!(
        oms_local::operator::dlq_redrive(&app, "review")
            .await
            .unwrap(),
        3
    );
    assert_eq!(app.queue.depth(&review.dead_letter()).await.unwrap(), 0);
    assert_eq!(app.queue.depth(&review).await.unwrap(), 3);
    assert!(
        oms_local::operator::dlq_redrive(&app, "nowhere")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_order_is_shown_with_its_timeline_by_id_or_number() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let (o, e) = oms_tests::order("C1", None, &[("TEA-001", 2)]);
    app.store.create_order(&o, &e, &[]).await.unwrap();
    let mut numbered = o
        .transition(
            oms::domain::Status::Numbered,
            oms::domain::Actor::System("numbering".into()),
            Some("number 2026112700017".into()),
            oms_tests::t0(),
        )
        .unwrap();
    numbered.order.number = Some(oms::domain::OrderNumber::parse("2026112700017").unwrap());
    app.store.save_change(&numbered).await.unwrap();
    for key in [o.id.to_string(), "2026112700017".to_owned()] {
        let shown = oms_local::operator::show_order(&app, &key).await.unwrap();
        assert!(shown.contains("status numbered"), "{shown}");
        assert!(shown.contains("-> received"), "{shown}");
        assert!(shown.contains("received -> numbered"), "{shown}");
        assert!(shown.contains("line TEA-001 × 2 at 49.90 CNY"), "{shown}");
        assert!(
            shown.contains("total 99.80 CNY  payment prepaid"),
            "{shown}"
        );
        assert!(shown.contains("system:numbering"), "{shown}");
        assert!(
            !shown.contains("Sku(") && !shown.contains("System("),
            "no Rust debug text: {shown}"
        );
    }
    assert!(oms_local::operator::show_order(&app, "999").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_accounts_for_every_order_it_places() {
    let summary = oms_local::demo::run(oms_local::demo::DemoOptions {
        config: None,
        orders: 40,
        seed: 11,
        concurrency: 8,
        url: None,
        staff_token: "demo-test".into(),
        progress: false,
    })
    .await
    .unwrap();
    assert!(summary.accounts_for_every_order(), "{summary}");
    assert_eq!(summary.final_status.values().sum::<usize>(), 40);
    assert!(
        summary.final_status.get("completed").copied().unwrap_or(0) > 20,
        "{summary}"
    );
    assert_eq!(summary.latencies["numbering"].len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_against_a_runtime_with_another_staff_token_says_so_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = oms::config::Config::demo();
    let running = oms_local::start(oms_local::Options {
        port: 0,
        backend: Backend::Sqlite {
            path: dir.path().join("oms.sqlite"),
        },
        secrets: oms_local::dev_secrets(&config),
        config,
        staff_token: "the-runtime-token".into(),
        numbering_key: b"k".to_vec(),
        visibility_timeout: std::time::Duration::from_secs(5),
        poll_wait: std::time::Duration::from_millis(50),
        sweep_every: std::time::Duration::from_secs(60),
        clock: Arc::new(oms::clock::SystemClock),
        gateway: Arc::new(oms::payments::SimulatedGateway),
        http: oms::adapters::https::HttpsClient::new(std::time::Duration::from_secs(5)).unwrap(),
        carrier_credentials: None,
        marketplace_credentials: None,
    })
    .await
    .unwrap();
    let e = oms_local::demo::run(oms_local::demo::DemoOptions {
        config: None,
        orders: 5,
        seed: 1,
        concurrency: 1,
        url: Some(running.url()),
        staff_token: "another-token".into(),
        progress: false,
    })
    .await
    .map(|s| s.to_string())
    .unwrap_err();
    assert!(e.to_string().contains("set OMS_STAFF_TOKEN"), "{e}");
    running.stop().await;
}

/// The demo against a runtime started the README's way (built-in configuration, its own stock,
/// a 30-minute payment deadline, a seven-day return window): it accounts for every order, and
/// a second run with the same seed places new orders instead of finding the first run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_on_a_runtime_started_the_readme_way_and_each_run_places_new_orders() {
    let dir = tempfile::tempdir().unwrap();
    let config = oms::config::Config::demo();
    let running = oms_local::start(oms_local::Options {
        port: 0,
        backend: Backend::Sqlite {
            path: dir.path().join("oms.sqlite"),
        },
        secrets: oms_local::dev_secrets(&config),
        config,
        staff_token: "readme-token".into(),
        numbering_key: b"k".to_vec(),
        visibility_timeout: std::time::Duration::from_secs(10),
        poll_wait: std::time::Duration::from_millis(100),
        sweep_every: std::time::Duration::from_secs(2),
        clock: Arc::new(oms::clock::SystemClock),
        gateway: Arc::new(oms::payments::SimulatedGateway),
        http: oms::adapters::https::HttpsClient::new(std::time::Duration::from_secs(5)).unwrap(),
        carrier_credentials: None,
        marketplace_credentials: None,
    })
    .await
    .unwrap();
    let play = || {
        oms_local::demo::run(oms_local::demo::DemoOptions {
            config: None,
            orders: 20,
            seed: 3,
            concurrency: 8,
            url: Some(running.url()),
            staff_token: "readme-token".into(),
            progress: false,
        })
    };
    let first = play().await.unwrap();
    assert!(first.accounts_for_every_order(), "{first}");
    assert_eq!(first.final_status.values().sum::<usize>(), 20, "{first}");
    assert!(
        first.final_status.get("completed").copied().unwrap_or(0) >= 8,
        "delivered orders complete on a seven-day return window too: {first}"
    );
    let second = play().await.unwrap();
    assert!(second.accounts_for_every_order(), "{second}");
    // Forty orders in the store, not twenty found twice.
    let app = &running.app;
    let mut ids = std::collections::BTreeSet::new();
    for channel in ["web", "app", "phone", "tmall"] {
        let mut query = oms::ports::OrderQuery {
            channel: Some(oms::domain::ChannelId::parse(channel).unwrap()),
            limit: 100,
            ..Default::default()
        };
        loop {
            let page = app.store.list_orders(&query).await.unwrap();
            ids.extend(page.orders.iter().map(|o| o.id));
            match page.next {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
    }
    assert_eq!(ids.len(), 40, "each run places its own orders");
    running.stop().await;
}
