//! The relay on DynamoDB, through the real SDK against moto: the notification an order's write
//! carries rides in the order item, not in an outbox record; the relay carries it out from the
//! table's stream (read as Lambda's event source mapping reads it); one it cannot carry out
//! becomes an outbox record that the sweeper and the effects step finish later; a record handed
//! again is carried out again, harmlessly; and when the relay cannot even keep the record, it
//! reports that stream record as failed, so the stream hands it again.

use std::sync::Arc;

use chrono::Duration;
use oms::app::{Backend, queues};
use oms::clock::{Clock, ManualClock};
use oms::domain::EffectKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_rides_in_the_orders_write_and_the_relay_sends_it_or_keeps_it_for_later() {
    let Some(endpoint) = oms_tests::aws_endpoint() else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("oms-rly-{}", &id[..12]);
    let prefix = format!("y{}-", &id[..10]);
    let settings = oms::adapters::aws::AwsSettings {
        endpoint_url: Some(endpoint.clone()),
        region: None,
    };
    let clock = Arc::new(ManualClock::new(oms_tests::t0()));
    let backend = Backend::Aws {
        settings: settings.clone(),
        table: table.clone(),
        queue_prefix: prefix.clone(),
        queue_url_prefix: None,
    };
    let app = oms_tests::app_on(&backend, clock.clone()).await;
    let mut stream = oms_tests::stream::Reader::new(&endpoint, &table).await;

    // Intake's write: the order, and its "received" notification riding in it.
    let now = clock.now();
    let (order, _) = oms_tests::order_at("C1001", None, &[("TEA-001", 1)], now);
    let policy = oms::flow::policy(&app, &order);
    let change = oms::domain::decide::accepted(order, &policy, now);
    let order_id = change.order.id;
    app.store
        .create_order(&change.order, &change.entry, &change.effects)
        .await
        .unwrap();
    assert!(
        app.store.effects_of(order_id).await.unwrap().is_empty(),
        "no outbox record"
    );
    let records = stream.read().await;
    let event = oms_local::stream::event(records.clone()).unwrap();
    let carried: Vec<_> = event
        .records
        .iter()
        .filter_map(|r| oms::flow::relay::effects_of_record(r).unwrap())
        .collect();
    assert_eq!(carried.len(), 1, "one write carries effects: {carried:?}");
    let notify = carried[0].clone();
    assert_eq!(notify.len(), 1);
    assert!(matches!(&notify[0].kind, EffectKind::Notify(n) if n.status.as_str() == "received"));
    let order_record = event
        .records
        .iter()
        .find(|r| oms::flow::relay::effects_of_record(r).unwrap().is_some())
        .and_then(|r| r.change.sequence_number.clone())
        .expect("the order write's sequence number");

    // The notifications queue is gone: the relay cannot send, and keeps the notification as an
    // outbox record, due after a backoff. The batch goes through.
    let sqs = aws_sdk_sqs::Client::new(&oms::adapters::aws::sdk_config(&settings).await);
    let notifications = format!("{prefix}{}", queues::NOTIFICATIONS);
    let delete_notifications = || async {
        let url = sqs
            .get_queue_url()
            .queue_name(&notifications)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        sqs.delete_queue().queue_url(url).send().await.unwrap();
    };
    delete_notifications().await;
    let answer =
        oms::flow::relay::handle_stream(&app, oms_local::stream::event(records.clone()).unwrap())
            .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let kept = app.store.effects_of(order_id).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].id, notify[0].id);
    assert_eq!(kept[0].attempts, 1);
    assert!(kept[0].last_error.is_some());
    assert!(kept[0].due_at > now, "due after a backoff");

    // The queue is back. Past the backoff the sweeper sends the record to the effects queue,
    // and the effects step sends the notification and finishes the record.
    app.queue
        .ensure_queues(&queues::specs(std::time::Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        oms::flow::effects::relay(&app, 10).await.unwrap(),
        0,
        "not due yet"
    );
    clock.advance(Duration::seconds(3600));
    assert_eq!(oms::flow::effects::relay(&app, 10).await.unwrap(), 1);
    oms::flow::effects::run(&app, order_id, &kept[0].id)
        .await
        .unwrap();
    assert!(app.store.effects_of(order_id).await.unwrap().is_empty());
    let told = oms_tests::notified(&app, &order_id.to_string()).await;
    assert_eq!(told, ["received"]);

    // The stream hands the write again (a retried batch): sent again, nothing kept.
    let answer =
        oms::flow::relay::handle_stream(&app, oms_local::stream::event(records.clone()).unwrap())
            .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert!(app.store.effects_of(order_id).await.unwrap().is_empty());
    assert_eq!(
        oms_tests::notified(&app, &order_id.to_string()).await,
        ["received"]
    );

    // Neither the queue nor the table is there: the relay can neither send nor keep, and
    // reports the order's write as failed, so that the stream hands it (and what follows) again.
    delete_notifications().await;
    aws_sdk_dynamodb::Client::new(&oms::adapters::aws::sdk_config(&settings).await)
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let answer =
        oms::flow::relay::handle_stream(&app, oms_local::stream::event(records).unwrap()).await;
    let failed: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect();
    assert_eq!(failed, [order_record]);
}
