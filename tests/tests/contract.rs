//! The store and queue contract: the same cases, run against every backend. Each case is
//! generated once per backend, so a test's name says which backend it ran on
//! (`sqlite::a_stale_version_loses_and_writes_nothing`, `dynamodb::...`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use oms::domain::{Actor, ChannelId, Effect, EffectKind, OrderNumber, Sku, Status, WarehouseId};
use oms::ports::{
    Allocation, Created, IdempotencyRecord, LowStockAlert, OrderQuery, QueueName, QueueSpec,
    Receive, ReservationState, Reserved, StoreError,
};
use oms_tests::{Backend, order, t0};

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = oms_tests::sqlite().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(backend) = oms_tests::dynamodb().await else { return };
                    super::cases::$case(&backend).await;
                }
            )*
        }
    };
}

contract!(
    a_stale_version_loses_and_writes_nothing,
    creating_an_order_twice_stores_it_once,
    a_second_order_with_the_same_external_id_is_the_first_one,
    orders_are_found_by_id_number_customer_and_status,
    order_lists_filter_and_page_without_gaps_or_repeats,
    low_stock_alerts_are_raised_once_and_cleared,
    a_change_carrying_an_event_applies_once,
    concurrent_calls_that_fail_midway_write_nothing_and_the_rest_land,
    an_alias_belongs_to_one_order,
    the_timeline_keeps_every_change_in_order,
    a_claimed_number_cannot_be_claimed_by_another_order,
    counters_hand_out_disjoint_blocks_even_concurrently,
    a_two_line_order_with_one_short_line_reserves_nothing,
    lines_sharing_a_sku_are_summed_before_the_check,
    fifty_concurrent_reservations_of_twenty_units_sell_exactly_twenty,
    a_replayed_reservation_is_held_once,
    release_and_commit_keep_on_hand_and_reserved_consistent,
    stock_cannot_be_set_below_what_is_reserved,
    idempotency_records_expire,
    a_message_not_deleted_comes_back_after_the_visibility_timeout,
    a_deleted_message_does_not_come_back,
    a_message_received_too_often_lands_in_the_dead_letter_queue,
    a_batch_send_delivers_every_message,
    a_batch_delete_removes_what_it_names_and_ignores_stale_receipts,
    sending_to_an_unknown_queue_is_refused,
    one_receive_never_returns_a_message_twice,
    connections_warm_ahead_of_the_first_request,
    outbox_records_are_written_with_their_change_or_not_at_all,
    outbox_records_come_due_are_deferred_and_finished,
    orders_are_found_by_due_time_and_by_needing_a_person,
    returned_goods_are_restocked_once_per_key,
    catalogue_entries_are_set_read_and_paged_in_sku_order,
    a_release_in_one_warehouse_leaves_the_others_held,
    records_are_kept_per_kind_newest_first_and_found_when_due,
);

/// DynamoDB creates an order with an external id in two conditional puts, the guard first
/// (no transaction): an order whose creator died between them is finished by the next writer
/// with that external id, under the id the guard names, and writers racing on one external id
/// store exactly one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_external_id_guard_without_its_order_is_finished_by_the_next_writer() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let Some((b, client, table)) = oms_tests::dynamodb_with_client().await else {
        return;
    };
    // A creator that died after its guard: the guard (as the store lays it out) names an order
    // that was never written.
    let (died, _) = order("C1", Some("TM-ORPHAN"), &[("TEA-001", 1)]);
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("EXT#web#TM-ORPHAN".into()))
        .item("sk", AttributeValue::S("EXT".into()))
        .item("order_id", AttributeValue::S(died.id.to_string()))
        .send()
        .await
        .unwrap();
    let ext = oms::domain::ExternalId::parse("TM-ORPHAN").unwrap();
    let web = ChannelId::parse("web").unwrap();
    assert_eq!(
        b.store.get_order_by_external(&web, &ext).await.unwrap(),
        None
    );
    // The channel sends it again: stored under the guard's id, with the retry's contents.
    let (retry, entry) = order("C1", Some("TM-ORPHAN"), &[("TEA-001", 2)]);
    let Created::Stored(stored) = b.store.create_order(&retry, &entry, &[]).await.unwrap() else {
        panic!("the guard's order is finished, not a new id stored");
    };
    assert_eq!(stored.id, died.id);
    assert_eq!(stored.lines, retry.lines);
    assert_eq!(
        b.store.get_order(died.id).await.unwrap().map(|o| o.lines),
        Some(retry.lines.clone())
    );
    assert_eq!(b.store.get_order(retry.id).await.unwrap(), None);
    assert_eq!(
        b.store
            .get_order_by_external(&web, &ext)
            .await
            .unwrap()
            .map(|o| o.id),
        Some(died.id)
    );
    assert_eq!(b.store.timeline(died.id).await.unwrap().len(), 1);
    // And again: now it is simply there.
    let (third, entry) = order("C1", Some("TM-ORPHAN"), &[("TEA-001", 3)]);
    let again = b.store.create_order(&third, &entry, &[]).await.unwrap();
    assert_eq!(
        again,
        Created::Existing(Box::new(b.store.get_order(died.id).await.unwrap().unwrap()))
    );

    // Eight writers at once with one new external id: exactly one order, exactly one writer
    // stored it (`New`, or `Stored` when it found the guard before its creator's order and
    // finished the order itself), and every writer is told its id.
    let drafts: Vec<_> = (0..8)
        .map(|i| order("C2", Some("TM-RACE"), &[("TEA-001", i + 1)]))
        .collect();
    let results =
        futures::future::join_all(drafts.iter().map(|(o, e)| b.store.create_order(o, e, &[])))
            .await;
    let mut writers = 0;
    let mut ids = HashSet::new();
    for ((o, _), r) in drafts.iter().zip(results) {
        match r.unwrap() {
            Created::New => {
                writers += 1;
                ids.insert(o.id);
            }
            Created::Stored(s) => {
                writers += 1;
                ids.insert(s.id);
            }
            Created::Existing(e) => {
                ids.insert(e.id);
            }
        }
    }
    assert_eq!(writers, 1, "{writers} writers stored it");
    assert_eq!(ids.len(), 1, "every writer names the same order: {ids:?}");
    let mut stored = 0;
    for (o, _) in &drafts {
        stored += usize::from(b.store.get_order(o.id).await.unwrap().is_some());
    }
    assert_eq!(stored, 1);
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn wh(s: &str) -> WarehouseId {
    WarehouseId::parse(s).unwrap()
}
fn alloc(s: &str, w: &str, q: u64) -> Allocation {
    Allocation {
        sku: sku(s),
        warehouse: wh(w),
        quantity: q,
    }
}
fn queue(name: &str) -> QueueName {
    QueueName::parse(name).unwrap()
}
fn spec(name: &str, max_receives: u32) -> QueueSpec {
    QueueSpec {
        name: queue(name),
        visibility_timeout: Duration::from_secs(1),
        max_receives,
    }
}
fn receive(visibility_secs: u64) -> Receive {
    Receive {
        max_messages: 10,
        visibility_timeout: Duration::from_secs(visibility_secs),
        wait: Duration::ZERO,
    }
}

mod cases {
    use super::*;

    pub async fn records_are_kept_per_kind_newest_first_and_found_when_due(b: &Backend) {
        use oms::ports::Record;
        let rec = |kind: &str, id: &str, due: Option<i64>| Record {
            kind: kind.into(),
            id: id.into(),
            doc: format!("{{\"id\":\"{id}\"}}"),
            due: due.map(|s| t0() + Span::seconds(s)),
            expires: Some(t0() + Span::days(30)),
        };
        for (kind, id, due) in [
            ("delivery#ep_a", "msg_1", Some(10)),
            ("delivery#ep_a", "msg_3", None),
            ("delivery#ep_a", "msg_2", Some(5)),
            ("delivery#ep_b", "msg_9", Some(1)),
            ("staff_key", "k1", None),
        ] {
            b.store.put_record(&rec(kind, id, due)).await.unwrap();
        }
        // One kind, largest id first, within the limit.
        let ids = |rs: Vec<Record>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(b.store.records("delivery#ep_a", 10).await.unwrap()),
            ["msg_3", "msg_2", "msg_1"],
            "{}",
            b.name
        );
        assert_eq!(
            ids(b.store.records("delivery#ep_a", 2).await.unwrap()),
            ["msg_3", "msg_2"]
        );
        assert_eq!(
            ids(b.store.records("nothing", 10).await.unwrap()),
            Vec::<String>::new()
        );
        // Read back as written.
        assert_eq!(
            b.store.record("delivery#ep_a", "msg_2").await.unwrap(),
            Some(rec("delivery#ep_a", "msg_2", Some(5)))
        );
        assert_eq!(
            b.store.record("delivery#ep_a", "msg_4").await.unwrap(),
            None
        );
        // Due across the family's kinds, earliest first; not before their time.
        let due = |at: i64| async move {
            ids(b
                .store
                .due_records("delivery", t0() + Span::seconds(at), 10)
                .await
                .unwrap())
        };
        assert_eq!(due(0).await, Vec::<String>::new());
        assert_eq!(due(6).await, ["msg_9", "msg_2"]);
        assert_eq!(due(60).await, ["msg_9", "msg_2", "msg_1"]);
        // Replacing a record without a due time takes it off the due list.
        b.store
            .put_record(&rec("delivery#ep_a", "msg_2", None))
            .await
            .unwrap();
        assert_eq!(due(60).await, ["msg_9", "msg_1"]);
        assert!(
            b.store
                .due_records("staff_key", t0() + Span::days(9), 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Create-only: a second create of the same record writes nothing.
        let first = rec("delivery#ep_c", "msg_5", Some(3));
        assert!(b.store.create_record(&first).await.unwrap(), "{}", b.name);
        let mut second = first.clone();
        second.doc = "{\"other\":true}".into();
        assert!(!b.store.create_record(&second).await.unwrap());
        assert_eq!(
            b.store.record("delivery#ep_c", "msg_5").await.unwrap(),
            Some(first.clone())
        );
        // Compare-and-set: replaced only while the stored document is the one expected.
        let mut taken = first.clone();
        taken.doc = "{\"taken\":1}".into();
        taken.due = Some(t0() + Span::hours(1));
        assert!(
            b.store.replace_record(&taken, &first.doc).await.unwrap(),
            "{}",
            b.name
        );
        let mut late = first.clone();
        late.doc = "{\"taken\":2}".into();
        assert!(!b.store.replace_record(&late, &first.doc).await.unwrap());
        assert_eq!(
            b.store.record("delivery#ep_c", "msg_5").await.unwrap(),
            Some(taken)
        );
        let mut ghost = first.clone();
        ghost.id = "msg_none".into();
        assert!(!b.store.replace_record(&ghost, &first.doc).await.unwrap());
        assert_eq!(
            b.store.record("delivery#ep_c", "msg_none").await.unwrap(),
            None
        );
    }

    pub async fn a_stale_version_loses_and_writes_nothing(b: &Backend) {
        // Given a stored order that one writer has already moved to `numbered`
        let (o, first) = order("C1", None, &[("TEA-001", 1)]);
        assert_eq!(
            b.store.create_order(&o, &first, &[]).await.unwrap(),
            Created::New
        );
        let winner = o
            .transition(
                Status::Numbered,
                Actor::System("numbering".into()),
                None,
                t0(),
            )
            .unwrap();
        b.store.save_change(&winner).await.unwrap();

        // When a second writer, still holding version 1, tries to cancel it
        let loser = o
            .transition(
                Status::Cancelled,
                Actor::Customer,
                Some("changed my mind".into()),
                t0(),
            )
            .unwrap();
        let err = b.store.save_change(&loser).await.unwrap_err();

        // Then it loses, and neither the order nor the timeline carries its change
        assert!(
            matches!(err, StoreError::Conflict(id) if id == o.id),
            "{}: {err:?}",
            b.name
        );
        let stored = b.store.get_order(o.id).await.unwrap().unwrap();
        assert_eq!(stored.status(), Status::Numbered);
        assert_eq!(stored.version(), 2);
        let timeline = b.store.timeline(o.id).await.unwrap();
        assert_eq!(timeline.len(), 2, "{}", b.name);
        assert!(timeline.iter().all(|e| e.to != Some(Status::Cancelled)));

        // And a change to an order that does not exist is NotFound
        let (ghost, _) = order("C1", None, &[("TEA-001", 1)]);
        let ch = ghost
            .transition(Status::Numbered, Actor::Customer, None, t0())
            .unwrap();
        assert!(matches!(
            b.store.save_change(&ch).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn creating_an_order_twice_stores_it_once(b: &Backend) {
        let (o, entry) = order("C1", None, &[("TEA-001", 2)]);
        assert_eq!(
            b.store.create_order(&o, &entry, &[]).await.unwrap(),
            Created::New
        );
        let again = b.store.create_order(&o, &entry, &[]).await.unwrap();
        assert_eq!(again, Created::Existing(Box::new(o.clone())), "{}", b.name);
        assert_eq!(b.store.timeline(o.id).await.unwrap().len(), 1);
        assert_eq!(b.store.get_order(o.id).await.unwrap(), Some(o));
    }

    pub async fn a_second_order_with_the_same_external_id_is_the_first_one(b: &Backend) {
        let (first, e1) = order("C1", Some("TM-778899"), &[("TEA-001", 1)]);
        let (second, e2) = order("C1", Some("TM-778899"), &[("TEA-001", 1)]);
        assert_eq!(
            b.store.create_order(&first, &e1, &[]).await.unwrap(),
            Created::New
        );
        let got = b.store.create_order(&second, &e2, &[]).await.unwrap();
        assert_eq!(
            got,
            Created::Existing(Box::new(first.clone())),
            "{}",
            b.name
        );
        assert_eq!(
            b.store.get_order(second.id).await.unwrap(),
            None,
            "the duplicate was not stored"
        );
    }

    pub async fn orders_are_found_by_id_number_customer_and_status(b: &Backend) {
        let (a, ea) = order("C7", None, &[("TEA-001", 1)]);
        let (c, ec) = order("C7", None, &[("TEA-001", 1)]);
        let (other, eo) = order("C8", None, &[("TEA-001", 1)]);
        for (o, e) in [(&a, &ea), (&c, &ec), (&other, &eo)] {
            b.store.create_order(o, e, &[]).await.unwrap();
        }
        // Given `a` numbered
        let number = OrderNumber::parse("202611270001").unwrap();
        b.store.claim_number(&number, a.id).await.unwrap();
        let mut numbered = a
            .transition(
                Status::Numbered,
                Actor::System("numbering".into()),
                None,
                t0(),
            )
            .unwrap();
        numbered.order.number = Some(number.clone());
        b.store.save_change(&numbered).await.unwrap();

        let by_number = b.store.get_order_by_number(&number).await.unwrap().unwrap();
        assert_eq!(by_number.id, a.id, "{}", b.name);
        assert_eq!(by_number.status(), Status::Numbered);
        let unknown = OrderNumber::parse("999").unwrap();
        assert_eq!(b.store.get_order_by_number(&unknown).await.unwrap(), None);

        let by_customer = OrderQuery {
            customer: Some(a.customer.id.clone()),
            limit: 10,
            ..Default::default()
        };
        let page = b.store.list_orders(&by_customer).await.unwrap();
        let mine: Vec<_> = page.orders.into_iter().map(|o| o.id).collect();
        assert_eq!(mine, vec![c.id, a.id], "newest first, only C7's");

        let received: Vec<_> = b
            .store
            .orders_by_status(Status::Received, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(received.len(), 2);
        assert!(received.contains(&c.id) && received.contains(&other.id));
        let numbered: Vec<_> = b
            .store
            .orders_by_status(Status::Numbered, 10)
            .await
            .unwrap();
        assert_eq!(numbered.len(), 1);
        assert_eq!(numbered[0].id, a.id);
    }

    pub async fn order_lists_filter_and_page_without_gaps_or_repeats(b: &Backend) {
        // Given 5 orders of C1 (two of them numbered) and one of C2
        let mut ids = Vec::new();
        for i in 0..5 {
            let (o, e) = order("C1", None, &[("TEA-001", 1)]);
            b.store.create_order(&o, &e, &[]).await.unwrap();
            if i % 2 == 1 {
                let ch = o
                    .transition(
                        Status::Numbered,
                        Actor::System("numbering".into()),
                        None,
                        t0(),
                    )
                    .unwrap();
                b.store.save_change(&ch).await.unwrap();
            }
            ids.push(o.id);
        }
        let (other, e) = order("C2", None, &[("TEA-001", 1)]);
        b.store.create_order(&other, &e, &[]).await.unwrap();
        ids.reverse(); // newest first

        // When C1's orders are read two at a time
        let mut query = OrderQuery {
            customer: Some(oms::domain::CustomerId::parse("C1").unwrap()),
            limit: 2,
            ..Default::default()
        };
        let mut seen = Vec::new();
        for _ in 0..5 {
            let page = b.store.list_orders(&query).await.unwrap();
            seen.extend(page.orders.iter().map(|o| o.id));
            match page.next {
                Some(next) => query.cursor = Some(next),
                None => break,
            }
        }
        // Then every order comes once, newest first
        assert_eq!(seen, ids, "{}", b.name);

        // And filters combine with the index
        let numbered = OrderQuery {
            customer: Some(oms::domain::CustomerId::parse("C1").unwrap()),
            status: Some(Status::Numbered),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            b.store.list_orders(&numbered).await.unwrap().orders.len(),
            2,
            "{}",
            b.name
        );
        let web = OrderQuery {
            channel: Some(ChannelId::parse("web").unwrap()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(b.store.list_orders(&web).await.unwrap().orders.len(), 6);
        let by_status = OrderQuery {
            status: Some(Status::Received),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            b.store.list_orders(&by_status).await.unwrap().orders.len(),
            4
        );
        let future = OrderQuery {
            from: Some(t0() + Span::days(1)),
            ..web.clone()
        };
        assert!(
            b.store
                .list_orders(&future)
                .await
                .unwrap()
                .orders
                .is_empty()
        );
        let window = OrderQuery {
            from: Some(t0()),
            to: Some(t0() + Span::seconds(1)),
            ..web
        };
        assert_eq!(b.store.list_orders(&window).await.unwrap().orders.len(), 6);
        // A query without an index is refused
        let err = b
            .store
            .list_orders(&OrderQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidQuery(_)));
    }

    pub async fn a_change_carrying_an_event_applies_once(b: &Backend) {
        let (o, e) = order("C1", None, &[("TEA-001", 1)]);
        b.store.create_order(&o, &e, &[]).await.unwrap();
        let mut first = o.revise(
            Actor::Provider("stripe".into()),
            "payment recorded".into(),
            t0(),
        );
        first.event = Some("stripe:evt_1".into());
        b.store.save_change(&first).await.unwrap();
        // The same event again, on the order as it is now: refused, nothing written
        let mut replay = first.order.revise(
            Actor::Provider("stripe".into()),
            "payment recorded".into(),
            t0(),
        );
        replay.event = Some("stripe:evt_1".into());
        let err = b.store.save_change(&replay).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Duplicate(ref ev) if ev == "stripe:evt_1"),
            "{}: {err:?}",
            b.name
        );
        let stored = b.store.get_order(o.id).await.unwrap().unwrap();
        assert_eq!(stored.version(), 2, "{}", b.name);
        assert_eq!(b.store.timeline(o.id).await.unwrap().len(), 2);
        // Another event goes through
        replay.event = Some("stripe:evt_2".into());
        b.store.save_change(&replay).await.unwrap();
        assert_eq!(b.store.get_order(o.id).await.unwrap().unwrap().version(), 3);
    }

    /// Many calls at once, half of which write and then fail (a replayed event is found only
    /// after the order row is updated): on SQLite they share group commits, and a failing call
    /// must roll back alone.
    pub async fn concurrent_calls_that_fail_midway_write_nothing_and_the_rest_land(b: &Backend) {
        const N: usize = 24;
        let mut changed = Vec::new();
        for i in 0..N {
            let (o, e) = order("C1", None, &[("TEA-001", 1)]);
            b.store.create_order(&o, &e, &[]).await.unwrap();
            let mut first = o.revise(
                Actor::Provider("stripe".into()),
                "payment recorded".into(),
                t0(),
            );
            first.event = Some(format!("stripe:evt_{i}"));
            b.store.save_change(&first).await.unwrap();
            changed.push(first.order);
        }
        let results = futures::future::join_all(changed.iter().enumerate().map(|(i, o)| {
            let mut next = o.revise(
                Actor::Provider("stripe".into()),
                "payment recorded".into(),
                t0(),
            );
            // Even orders replay their first event (refused after the row is written); odd
            // orders bring a new one.
            next.event = Some(if i % 2 == 0 {
                format!("stripe:evt_{i}")
            } else {
                format!("stripe:evt_{i}_b")
            });
            let store = Arc::clone(&b.store);
            async move { store.save_change(&next).await }
        }))
        .await;
        for (i, (o, r)) in changed.iter().zip(results).enumerate() {
            let stored = b.store.get_order(o.id).await.unwrap().unwrap();
            let timeline = b.store.timeline(o.id).await.unwrap().len();
            if i % 2 == 0 {
                assert!(
                    matches!(r, Err(StoreError::Duplicate(_))),
                    "{}: order {i}: {r:?}",
                    b.name
                );
                assert_eq!(
                    (stored.version(), timeline),
                    (2, 2),
                    "{}: order {i}",
                    b.name
                );
            } else {
                assert!(r.is_ok(), "{}: order {i}: {r:?}", b.name);
                assert_eq!(
                    (stored.version(), timeline),
                    (3, 3),
                    "{}: order {i}",
                    b.name
                );
            }
        }
    }

    pub async fn an_alias_belongs_to_one_order(b: &Backend) {
        let (first, _) = order("C1", None, &[("TEA-001", 1)]);
        let (second, _) = order("C1", None, &[("TEA-001", 1)]);
        b.store
            .link_alias("sf:SF1234567890", first.id)
            .await
            .unwrap();
        b.store
            .link_alias("sf:SF1234567890", first.id)
            .await
            .unwrap();
        assert!(
            matches!(
                b.store.link_alias("sf:SF1234567890", second.id).await,
                Err(StoreError::AliasTaken(_))
            ),
            "{}",
            b.name
        );
        assert_eq!(
            b.store.alias("sf:SF1234567890").await.unwrap(),
            Some(first.id)
        );
        assert_eq!(b.store.alias("sf:nothing").await.unwrap(), None);
    }

    pub async fn low_stock_alerts_are_raised_once_and_cleared(b: &Backend) {
        let alert = LowStockAlert {
            sku: sku("POT-003"),
            warehouse: wh("nj"),
            available: 4,
            safety: 5,
            raised_at: t0(),
        };
        assert!(b.store.raise_alert(&alert).await.unwrap(), "{}", b.name);
        let lower = LowStockAlert {
            available: 2,
            raised_at: t0() + Span::hours(1),
            ..alert.clone()
        };
        assert!(
            !b.store.raise_alert(&lower).await.unwrap(),
            "{}: already open",
            b.name
        );
        let open = b.store.alerts().await.unwrap();
        assert_eq!(
            open,
            vec![LowStockAlert {
                available: 2,
                ..alert.clone()
            }],
            "{}",
            b.name
        );
        assert!(
            b.store
                .clear_alert(&alert.sku, &alert.warehouse)
                .await
                .unwrap()
        );
        assert!(
            !b.store
                .clear_alert(&alert.sku, &alert.warehouse)
                .await
                .unwrap()
        );
        assert!(b.store.alerts().await.unwrap().is_empty());
    }

    pub async fn the_timeline_keeps_every_change_in_order(b: &Backend) {
        let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
        b.store.create_order(&o, &entry, &[]).await.unwrap();
        let ch = o
            .transition(
                Status::Numbered,
                Actor::System("numbering".into()),
                None,
                t0(),
            )
            .unwrap();
        b.store.save_change(&ch).await.unwrap();
        // Entries sort by time, then by the order's version; a note appended beside the
        // changes (same version as the next change) is a millisecond apart from it here.
        let note = ch.order.revise(
            Actor::Staff("ops1".into()),
            "called the customer".into(),
            t0() + chrono::Duration::milliseconds(1),
        );
        b.store.append_timeline(o.id, &note.entry).await.unwrap();
        let held = ch
            .order
            .transition(
                Status::OnHold,
                Actor::System("review".into()),
                Some("unusual amount".into()),
                t0() + chrono::Duration::milliseconds(2),
            )
            .unwrap();
        // A revise change also saves like any other, bumping the version.
        assert_eq!(held.expected_version, 2);
        b.store.save_change(&held).await.unwrap();

        let timeline = b.store.timeline(o.id).await.unwrap();
        let steps: Vec<_> = timeline.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(
            steps,
            vec![
                (None, Some(Status::Received)),
                (Some(Status::Received), Some(Status::Numbered)),
                (Some(Status::Numbered), None),
                (Some(Status::Numbered), Some(Status::OnHold)),
            ],
            "{}",
            b.name
        );
        assert_eq!(timeline[2].actor, Actor::Staff("ops1".into()));
        assert_eq!(timeline[3].reason.as_deref(), Some("unusual amount"));

        // A change to the order as read back (on DynamoDB the whole timeline is written again,
        // deflated), then one to the order as held here (its entries appended): every entry
        // stays, the note beside the changes too, in order.
        let loaded = b.store.get_order(o.id).await.unwrap().unwrap();
        let approved = loaded
            .transition(
                Status::Approved,
                Actor::Staff("ops1".into()),
                Some("checked".into()),
                t0() + chrono::Duration::milliseconds(3),
            )
            .unwrap();
        b.store.save_change(&approved).await.unwrap();
        let noted = approved.order.revise(
            Actor::Staff("ops2".into()),
            "noted".into(),
            t0() + chrono::Duration::milliseconds(4),
        );
        b.store.save_change(&noted).await.unwrap();
        let again = b.store.get_order(o.id).await.unwrap().unwrap();
        let last = again.revise(
            Actor::Staff("ops3".into()),
            "last".into(),
            t0() + chrono::Duration::milliseconds(5),
        );
        b.store.save_change(&last).await.unwrap();
        let reasons: Vec<_> = b
            .store
            .timeline(o.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.reason.unwrap_or_default())
            .collect();
        assert_eq!(
            reasons,
            [
                "",
                "",
                "called the customer",
                "unusual amount",
                "checked",
                "noted",
                "last"
            ],
            "{}",
            b.name
        );

        let (ghost, _) = order("C1", None, &[("TEA-001", 1)]);
        assert!(matches!(
            b.store.append_timeline(ghost.id, &note.entry).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn a_claimed_number_cannot_be_claimed_by_another_order(b: &Backend) {
        let (first, _) = order("C1", None, &[("TEA-001", 1)]);
        let (second, _) = order("C1", None, &[("TEA-001", 1)]);
        let n = OrderNumber::parse("NJ_SALE_20261127001").unwrap();
        b.store.claim_number(&n, first.id).await.unwrap();
        // The same order claiming again (a replayed step) is fine.
        b.store.claim_number(&n, first.id).await.unwrap();
        let err = b.store.claim_number(&n, second.id).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NumberTaken(ref taken) if *taken == n),
            "{}: {err:?}",
            b.name
        );
    }

    pub async fn counters_hand_out_disjoint_blocks_even_concurrently(b: &Backend) {
        let first = b.store.allocate_block("web:20261127", 100).await.unwrap();
        assert_eq!(first, 1..101, "{}", b.name);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let store = Arc::clone(&b.store);
                tokio::spawn(async move { store.allocate_block("web:20261127", 10).await })
            })
            .collect();
        let mut seen: HashSet<u64> = first.collect();
        for t in tasks {
            for v in t.await.unwrap().unwrap() {
                assert!(seen.insert(v), "{}: {v} handed out twice", b.name);
            }
        }
        assert_eq!(seen.len(), 200);
        assert_eq!(seen.iter().max(), Some(&200));
        // Counters are independent of each other.
        assert_eq!(
            b.store.allocate_block("app:20261127", 5).await.unwrap(),
            1..6
        );
    }

    pub async fn a_two_line_order_with_one_short_line_reserves_nothing(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 10, 2)
            .await
            .unwrap();
        b.store
            .set_stock(&sku("CUP-002"), &wh("nj"), 1, 0)
            .await
            .unwrap();
        let (o, _) = order("C1", None, &[("TEA-001", 2), ("CUP-002", 3)]);

        let err = b
            .store
            .reserve(
                o.id,
                &[alloc("TEA-001", "nj", 2), alloc("CUP-002", "nj", 3)],
            )
            .await
            .unwrap_err();
        let StoreError::InsufficientStock(short) = err else {
            panic!("{}: {err:?}", b.name)
        };
        assert_eq!(short.len(), 1);
        assert_eq!(
            (
                short[0].sku.as_str(),
                short[0].requested,
                short[0].available
            ),
            ("CUP-002", 3, 1)
        );

        let tea = b.store.stock_of(&sku("TEA-001")).await.unwrap();
        assert_eq!(
            (tea[0].on_hand, tea[0].reserved),
            (10, 0),
            "{}: nothing reserved",
            b.name
        );
        assert!(b.store.reservations(o.id).await.unwrap().is_empty());

        // A SKU with no stock record at all is short by everything.
        let err = b
            .store
            .reserve(o.id, &[alloc("GHOST-1", "nj", 1)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InsufficientStock(ref s) if s[0].available == 0));
    }

    pub async fn lines_sharing_a_sku_are_summed_before_the_check(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 5, 0)
            .await
            .unwrap();
        let (o, _) = order("C1", None, &[("TEA-001", 3), ("TEA-001", 3)]);
        let err = b
            .store
            .reserve(
                o.id,
                &[alloc("TEA-001", "nj", 3), alloc("TEA-001", "nj", 3)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InsufficientStock(ref s) if s[0].requested == 6 && s[0].available == 5),
            "{}: {err:?}",
            b.name
        );
        let (o2, _) = order("C1", None, &[("TEA-001", 2), ("TEA-001", 3)]);
        let got = b
            .store
            .reserve(
                o2.id,
                &[alloc("TEA-001", "nj", 2), alloc("TEA-001", "nj", 3)],
            )
            .await
            .unwrap();
        assert_eq!(got, Reserved::New);
        let level = &b.store.stock_of(&sku("TEA-001")).await.unwrap()[0];
        assert_eq!(
            (level.on_hand, level.reserved, level.available()),
            (5, 5, 0)
        );
        let res = b.store.reservations(o2.id).await.unwrap();
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].lines, vec![(sku("TEA-001"), 5)]);
    }

    pub async fn fifty_concurrent_reservations_of_twenty_units_sell_exactly_twenty(b: &Backend) {
        // Given 20 units on hand
        b.store
            .set_stock(&sku("HOT-1"), &wh("nj"), 20, 0)
            .await
            .unwrap();
        // When 50 orders each try to reserve 1 at the same time
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = Arc::clone(&b.store);
                let (o, _) = order("C1", None, &[("HOT-1", 1)]);
                tokio::spawn(async move { store.reserve(o.id, &[alloc("HOT-1", "nj", 1)]).await })
            })
            .collect();
        let (mut won, mut short) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(Reserved::New) => won += 1,
                Err(StoreError::InsufficientStock(_)) => short += 1,
                other => panic!("{}: unexpected {other:?}", b.name),
            }
        }
        // Then exactly 20 succeed and stock never went below zero
        assert_eq!((won, short), (20, 30), "{}", b.name);
        let level = &b.store.stock_of(&sku("HOT-1")).await.unwrap()[0];
        assert_eq!(
            (level.on_hand, level.reserved, level.available()),
            (20, 20, 0)
        );
    }

    pub async fn a_replayed_reservation_is_held_once(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 10, 0)
            .await
            .unwrap();
        let (o, _) = order("C1", None, &[("TEA-001", 4)]);
        let lines = [alloc("TEA-001", "nj", 4)];
        assert_eq!(b.store.reserve(o.id, &lines).await.unwrap(), Reserved::New);
        assert_eq!(
            b.store.reserve(o.id, &lines).await.unwrap(),
            Reserved::AlreadyHeld,
            "{}",
            b.name
        );
        assert_eq!(
            b.store.stock_of(&sku("TEA-001")).await.unwrap()[0].reserved,
            4
        );
    }

    pub async fn release_and_commit_keep_on_hand_and_reserved_consistent(b: &Backend) {
        // Given stock in two warehouses and an order split across them
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 10, 0)
            .await
            .unwrap();
        b.store
            .set_stock(&sku("TEA-001"), &wh("sh"), 10, 0)
            .await
            .unwrap();
        b.store
            .set_stock(&sku("CUP-002"), &wh("sh"), 5, 0)
            .await
            .unwrap();
        let (split, _) = order("C1", None, &[("TEA-001", 7), ("CUP-002", 2)]);
        b.store
            .reserve(
                split.id,
                &[
                    alloc("TEA-001", "nj", 4),
                    alloc("TEA-001", "sh", 3),
                    alloc("CUP-002", "sh", 2),
                ],
            )
            .await
            .unwrap();
        let (cancelled, _) = order("C1", None, &[("TEA-001", 5)]);
        b.store
            .reserve(cancelled.id, &[alloc("TEA-001", "nj", 5)])
            .await
            .unwrap();
        let levels = |s: &'static str| {
            let store = Arc::clone(&b.store);
            async move {
                store
                    .stock_of(&sku(s))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|l| (l.warehouse.to_string(), l.on_hand, l.reserved))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            levels("TEA-001").await,
            vec![("nj".into(), 10, 9), ("sh".into(), 10, 3)]
        );

        // When one order is cancelled, its stock comes back, once
        assert_eq!(b.store.release(cancelled.id).await.unwrap(), 1);
        assert_eq!(
            b.store.release(cancelled.id).await.unwrap(),
            0,
            "{}: release is idempotent",
            b.name
        );
        assert_eq!(
            levels("TEA-001").await,
            vec![("nj".into(), 10, 4), ("sh".into(), 10, 3)]
        );

        // When the split order's Shanghai parcel ships, only that warehouse's stock leaves, once
        assert!(b.store.commit(split.id, &wh("sh")).await.unwrap());
        assert!(
            !b.store.commit(split.id, &wh("sh")).await.unwrap(),
            "{}: commit is idempotent",
            b.name
        );
        assert_eq!(
            levels("TEA-001").await,
            vec![("nj".into(), 10, 4), ("sh".into(), 7, 0)]
        );
        assert_eq!(levels("CUP-002").await, vec![("sh".into(), 3, 0)]);

        // And a later cancel releases only what is still held
        assert_eq!(b.store.release(split.id).await.unwrap(), 1);
        assert_eq!(
            levels("TEA-001").await,
            vec![("nj".into(), 10, 0), ("sh".into(), 7, 0)]
        );
        let states: Vec<_> = b
            .store
            .reservations(split.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.warehouse.to_string(), r.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("nj".into(), ReservationState::Released),
                ("sh".into(), ReservationState::Committed)
            ]
        );
    }

    pub async fn stock_cannot_be_set_below_what_is_reserved(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 10, 3)
            .await
            .unwrap();
        let (o, _) = order("C1", None, &[("TEA-001", 6)]);
        b.store
            .reserve(o.id, &[alloc("TEA-001", "nj", 6)])
            .await
            .unwrap();
        let err = b
            .store
            .set_stock(&sku("TEA-001"), &wh("nj"), 5, 3)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BelowReserved {
                    reserved: 6,
                    on_hand: 5,
                    ..
                }
            ),
            "{}: {err:?}",
            b.name
        );
        // Restocking keeps the reservation and raises availability.
        let level = b
            .store
            .set_stock(&sku("TEA-001"), &wh("nj"), 25, 4)
            .await
            .unwrap();
        assert_eq!(
            (
                level.on_hand,
                level.reserved,
                level.available(),
                level.safety
            ),
            (25, 6, 19, 4)
        );
        assert_eq!(
            b.store.stock_of(&sku("TEA-001")).await.unwrap(),
            vec![level]
        );
    }

    pub async fn idempotency_records_expire(b: &Backend) {
        let rec = IdempotencyRecord {
            key: "web:key-1".into(),
            request_hash: "h1".into(),
            response: r#"{"status":202}"#.into(),
            expires_at: t0() + Span::hours(24),
        };
        assert_eq!(b.store.put_idempotency(&rec, t0()).await.unwrap(), None);
        // A second request with the key while it lives gets the first record back, unchanged.
        let other = IdempotencyRecord {
            request_hash: "h2".into(),
            ..rec.clone()
        };
        assert_eq!(
            b.store
                .put_idempotency(&other, t0() + Span::hours(1))
                .await
                .unwrap(),
            Some(rec.clone())
        );
        assert_eq!(
            b.store
                .get_idempotency(&rec.key, t0() + Span::hours(23))
                .await
                .unwrap(),
            Some(rec.clone())
        );
        // After expiry it is gone, and the key can be used afresh.
        let later = t0() + Span::hours(24) + Span::seconds(1);
        assert_eq!(
            b.store.get_idempotency(&rec.key, later).await.unwrap(),
            None,
            "{}",
            b.name
        );
        let fresh = IdempotencyRecord {
            expires_at: later + Span::hours(24),
            ..other
        };
        assert_eq!(b.store.put_idempotency(&fresh, later).await.unwrap(), None);
        assert_eq!(
            b.store.get_idempotency(&rec.key, later).await.unwrap(),
            Some(fresh)
        );
    }

    pub async fn a_message_not_deleted_comes_back_after_the_visibility_timeout(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        let q = queue("work");
        b.queue.send(&q, r#"{"order_id":"o-1"}"#).await.unwrap();
        let first = b.queue.receive(&q, receive(1)).await.unwrap();
        assert_eq!(first.len(), 1, "{}", b.name);
        assert_eq!(first[0].receive_count, 1);
        // Hidden while in flight
        assert!(
            b.queue.receive(&q, receive(1)).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = b.queue.receive(&q, receive(1)).await.unwrap();
        assert_eq!(again.len(), 1, "{}: the message came back", b.name);
        assert_eq!(again[0].id, first[0].id);
        assert_eq!(again[0].body, r#"{"order_id":"o-1"}"#);
        assert_eq!(again[0].receive_count, 2);
    }

    pub async fn a_deleted_message_does_not_come_back(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        let q = queue("work");
        b.queue.send(&q, "done soon").await.unwrap();
        let got = b.queue.receive(&q, receive(1)).await.unwrap();
        b.queue.delete(&q, &got[0].receipt).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            b.queue.receive(&q, receive(1)).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert_eq!(b.queue.depth(&q).await.unwrap(), 0);
    }

    pub async fn a_message_received_too_often_lands_in_the_dead_letter_queue(b: &Backend) {
        // Given a queue that gives up after 2 receives
        b.queue.ensure_queues(&[spec("work", 2)]).await.unwrap();
        let q = queue("work");
        b.queue.send(&q, "poison").await.unwrap();
        // When it is received twice and never deleted
        for n in 1..=2 {
            let got = b.queue.receive(&q, receive(1)).await.unwrap();
            assert_eq!(got.len(), 1, "{}: receive {n}", b.name);
            assert_eq!(got[0].receive_count, n);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // Then the next receive does not deliver it: it is in the dead-letter queue
        assert!(
            b.queue.receive(&q, receive(1)).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        let dead = b
            .queue
            .receive(&q.dead_letter(), receive(30))
            .await
            .unwrap();
        assert_eq!(dead.len(), 1, "{}", b.name);
        assert_eq!(dead[0].body, "poison");
        assert_eq!(b.queue.depth(&q).await.unwrap(), 0);
    }

    pub async fn a_batch_delete_removes_what_it_names_and_ignores_stale_receipts(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        let q = queue("work");
        let bodies: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
        b.queue.send_batch(&q, &bodies).await.unwrap();
        let mut receipts = Vec::new();
        let mut kept = None;
        while receipts.len() + usize::from(kept.is_some()) < bodies.len() {
            for m in b.queue.receive(&q, receive(30)).await.unwrap() {
                if m.body == "m5" {
                    kept = Some(m.body);
                } else {
                    receipts.push(m.receipt);
                }
            }
        }
        // Eleven handled in one call (two SQS batches), plus a receipt that is no longer valid
        receipts.push("not-a-receipt-any-more".into());
        b.queue.delete_batch(&q, &receipts).await.unwrap();
        b.queue.delete_batch(&q, &[]).await.unwrap();
        assert_eq!(b.queue.depth(&q).await.unwrap(), 1, "{}", b.name);
        assert_eq!(kept.as_deref(), Some("m5"));
    }

    pub async fn a_batch_send_delivers_every_message(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        let q = queue("work");
        let bodies: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
        b.queue.send_batch(&q, &bodies).await.unwrap();
        let mut got = HashSet::new();
        for _ in 0..20 {
            let batch = b.queue.receive(&q, receive(30)).await.unwrap();
            assert!(batch.len() <= 10);
            for m in batch {
                b.queue.delete(&q, &m.receipt).await.unwrap();
                got.insert(m.body);
            }
            if got.len() == bodies.len() {
                break;
            }
        }
        assert_eq!(
            got,
            bodies.into_iter().collect::<HashSet<_>>(),
            "{}",
            b.name
        );
        // Oversized bodies are refused before anything is sent.
        let huge = "x".repeat(oms::ports::MAX_MESSAGE_BYTES + 1);
        assert!(matches!(
            b.queue.send(&q, &huge).await,
            Err(oms::ports::QueueError::TooLarge(_))
        ));
    }

    pub async fn one_receive_never_returns_a_message_twice(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        let q = queue("work");
        b.queue
            .send_batch(&q, &["a".to_owned(), "b".to_owned()])
            .await
            .unwrap();
        let got = b.queue.receive(&q, receive(0)).await.unwrap();
        let ids: HashSet<&str> = got.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), got.len(), "{}: {got:?}", b.name);
        assert!(got.len() <= 2);
    }

    pub async fn connections_warm_ahead_of_the_first_request(b: &Backend) {
        b.queue.ensure_queues(&[spec("work", 5)]).await.unwrap();
        b.store.warm().await.unwrap();
        b.queue.warm(&[queue("work")]).await.unwrap();
        let err = b.queue.warm(&[queue("nowhere")]).await;
        assert!(
            matches!(err, Err(oms::ports::QueueError::UnknownQueue(_))),
            "{}: {err:?}",
            b.name
        );
    }

    pub async fn sending_to_an_unknown_queue_is_refused(b: &Backend) {
        let err = b.queue.send(&queue("nowhere"), "x").await.unwrap_err();
        assert!(
            matches!(err, oms::ports::QueueError::UnknownQueue(ref q) if q.as_str() == "nowhere"),
            "{}: {err:?}",
            b.name
        );
    }

    fn effect(o: &oms::domain::Order, id: &str, due: chrono::DateTime<chrono::Utc>) -> Effect {
        Effect {
            id: id.into(),
            order_id: o.id,
            kind: EffectKind::Step {
                queue: "review".into(),
            },
            due_at: due,
            attempts: 0,
            last_error: None,
        }
    }

    pub async fn outbox_records_are_written_with_their_change_or_not_at_all(b: &Backend) {
        // Given an order created with its first outbox record
        let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
        let first = effect(&o, "1-1", t0());
        b.store
            .create_order(&o, &entry, std::slice::from_ref(&first))
            .await
            .unwrap();
        assert_eq!(b.store.effects_of(o.id).await.unwrap(), vec![first.clone()]);
        // When a change completes it and adds two more
        let mut ch = o
            .transition(
                Status::Numbered,
                Actor::System("numbering".into()),
                None,
                t0(),
            )
            .unwrap();
        ch.done.push("1-1".into());
        ch.effects = vec![effect(&o, "2-1", t0()), effect(&o, "2-2", t0())];
        // a stale copy of the same change writes nothing, not even its records
        let mut stale = ch.clone();
        stale.expected_version = 7;
        stale.effects = vec![effect(&o, "9-9", t0())];
        assert!(matches!(
            b.store.save_change(&stale).await,
            Err(StoreError::Conflict(_))
        ));
        b.store.save_change(&ch).await.unwrap();
        // Then the outbox holds exactly the new ones
        let ids: Vec<String> = b
            .store
            .effects_of(o.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec!["2-1", "2-2"], "{}", b.name);
        // and a change for an event applied before writes no records either
        let mut dup = ch.order.revise(Actor::Customer, "x".into(), t0());
        dup.event = Some("evt-1".into());
        b.store.save_change(&dup).await.unwrap();
        let mut again = dup.order.revise(Actor::Customer, "x".into(), t0());
        again.event = Some("evt-1".into());
        again.effects = vec![effect(&o, "4-1", t0())];
        assert!(matches!(
            b.store.save_change(&again).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(b.store.effects_of(o.id).await.unwrap().len(), 2);
    }

    pub async fn outbox_records_come_due_are_deferred_and_finished(b: &Backend) {
        let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
        let soon = effect(&o, "1-1", t0() + Span::seconds(10));
        let later = effect(&o, "1-2", t0() + Span::seconds(60));
        b.store
            .create_order(&o, &entry, &[later.clone(), soon.clone()])
            .await
            .unwrap();
        let due = |at| async move {
            b.store
                .due_effects(at, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert!(due(t0()).await.is_empty(), "{}", b.name);
        assert_eq!(due(t0() + Span::seconds(10)).await, vec!["1-1"]);
        assert_eq!(due(t0() + Span::seconds(61)).await, vec!["1-1", "1-2"]);
        // A transient failure pushes one back, with its attempt count and error kept.
        let mut deferred = soon.clone();
        deferred.attempts = 2;
        deferred.last_error = Some("gateway timeout".into());
        deferred.due_at = t0() + Span::seconds(120);
        b.store.defer_effect(&deferred).await.unwrap();
        assert_eq!(due(t0() + Span::seconds(61)).await, vec!["1-2"]);
        assert_eq!(
            b.store.effect(o.id, "1-1").await.unwrap(),
            Some(deferred.clone())
        );
        // Finished ones are gone; finishing or deferring a gone one does nothing.
        b.store.finish_effect(o.id, "1-1").await.unwrap();
        b.store.finish_effect(o.id, "1-1").await.unwrap();
        b.store.defer_effect(&deferred).await.unwrap();
        assert_eq!(b.store.effect(o.id, "1-1").await.unwrap(), None);
        assert_eq!(due(t0() + Span::days(1)).await, vec!["1-2"]);
    }

    pub async fn orders_are_found_by_due_time_and_by_needing_a_person(b: &Backend) {
        let mut ids = Vec::new();
        for (i, due) in [Some(30), None, Some(10), Some(90)].into_iter().enumerate() {
            let (mut o, entry) = order(&format!("C{i}"), None, &[("TEA-001", 1)]);
            o.due_at = due.map(|s| t0() + Span::seconds(s));
            b.store.create_order(&o, &entry, &[]).await.unwrap();
            ids.push(o);
        }
        let due = |at| async move {
            b.store
                .due_orders(at, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            due(t0() + Span::seconds(30)).await,
            vec![ids[2].id, ids[0].id],
            "{}",
            b.name
        );
        assert_eq!(
            b.store
                .due_orders(t0() + Span::days(1), 2)
                .await
                .unwrap()
                .len(),
            2
        );
        // An order that needs a person leaves the due index and is listed for people.
        let mut ch = ids[0].revise(
            Actor::System("effects".into()),
            "refund refused".into(),
            t0(),
        );
        ch.order.attention = vec!["refund refused".into()];
        ch.order.due_at = None;
        b.store.save_change(&ch).await.unwrap();
        assert_eq!(due(t0() + Span::seconds(30)).await, vec![ids[2].id]);
        let waiting: Vec<_> = b
            .store
            .orders_needing_attention(10)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(waiting, vec![ids[0].id]);
    }

    pub async fn returned_goods_are_restocked_once_per_key(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 5, 0)
            .await
            .unwrap();
        let lines = vec![(sku("TEA-001"), 2), (sku("NEW-9"), 1)];
        assert!(
            b.store
                .restock("o1:ret-1:nj", &wh("nj"), &lines)
                .await
                .unwrap()
        );
        assert!(
            !b.store
                .restock("o1:ret-1:nj", &wh("nj"), &lines)
                .await
                .unwrap()
        );
        let tea = b.store.stock_of(&sku("TEA-001")).await.unwrap();
        assert_eq!(
            (tea[0].on_hand, tea[0].reserved, tea[0].available()),
            (7, 0, 7),
            "{}",
            b.name
        );
        let new = b.store.stock_of(&sku("NEW-9")).await.unwrap();
        assert_eq!((new[0].on_hand, new[0].available()), (1, 1));
    }

    pub async fn catalogue_entries_are_set_read_and_paged_in_sku_order(b: &Backend) {
        let entry = |s: &str, price: i64| oms::domain::CatalogueItem {
            sku: sku(s),
            name: oms::domain::Text::parse("Tea").unwrap(),
            weight_grams: 250,
            prices: std::collections::BTreeMap::from([("CNY".to_owned(), price)]),
            active: true,
            regulated: false,
        };
        for s in ["C-3", "A-1", "B-2", "D-4", "E-5"] {
            b.store.put_item(&entry(s, 100)).await.unwrap();
        }
        // Replacing keeps one entry
        b.store.put_item(&entry("B-2", 250)).await.unwrap();
        assert_eq!(
            b.store.item(&sku("B-2")).await.unwrap(),
            Some(entry("B-2", 250)),
            "{}",
            b.name
        );
        assert_eq!(b.store.item(&sku("Z-9")).await.unwrap(), None);
        let mut some: Vec<String> = b
            .store
            .items(&[sku("A-1"), sku("Z-9"), sku("D-4")])
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.sku.to_string())
            .collect();
        some.sort();
        assert_eq!(some, ["A-1", "D-4"]);
        let page = |after: Option<&str>| {
            let after = after.map(sku);
            async move {
                b.store
                    .list_items(after.as_ref(), 2)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|i| i.sku.to_string())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(page(None).await, ["A-1", "B-2"]);
        assert_eq!(page(Some("B-2")).await, ["C-3", "D-4"]);
        assert_eq!(page(Some("D-4")).await, ["E-5"]);
        // Catalogue entries do not show up as stock
        assert!(b.store.stock_of(&sku("A-1")).await.unwrap().is_empty());
    }

    pub async fn a_release_in_one_warehouse_leaves_the_others_held(b: &Backend) {
        b.store
            .set_stock(&sku("TEA-001"), &wh("nj"), 10, 0)
            .await
            .unwrap();
        b.store
            .set_stock(&sku("TEA-001"), &wh("sh"), 10, 0)
            .await
            .unwrap();
        let (o, entry) = order("C1", None, &[("TEA-001", 4)]);
        b.store.create_order(&o, &entry, &[]).await.unwrap();
        b.store
            .reserve(
                o.id,
                &[alloc("TEA-001", "nj", 3), alloc("TEA-001", "sh", 1)],
            )
            .await
            .unwrap();
        assert!(
            b.store.release_in(o.id, &wh("sh")).await.unwrap(),
            "{}",
            b.name
        );
        assert!(!b.store.release_in(o.id, &wh("sh")).await.unwrap(), "once");
        let states: Vec<_> = b
            .store
            .reservations(o.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.warehouse.to_string(), r.state))
            .collect();
        assert!(
            states.contains(&("nj".into(), ReservationState::Held)),
            "{states:?}"
        );
        assert!(
            states.contains(&("sh".into(), ReservationState::Released)),
            "{states:?}"
        );
        let sh = b.store.stock_of(&sku("TEA-001")).await.unwrap();
        let sh = sh.iter().find(|l| l.warehouse.as_str() == "sh").unwrap();
        assert_eq!((sh.on_hand, sh.reserved), (10, 0));
    }
}

/// SQS only: sends made together to one queue leave in one `SendMessageBatch`, each caller gets
/// its own answer, and every message arrives; a send alone still goes (after the linger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_to_one_sqs_queue_leave_in_one_batch_and_each_arrives() {
    use oms::adapters::aws::meter::Meter;
    use oms::adapters::aws::{AwsSettings, SqsQueue, sdk_config};
    use oms::ports::{Queue, QueueName, QueueSpec, Receive};
    let Ok(endpoint) = std::env::var("OMS_TEST_AWS_ENDPOINT") else {
        assert_ne!(
            std::env::var("OMS_TEST_REQUIRE_AWS").as_deref(),
            Ok("1"),
            "OMS_TEST_REQUIRE_AWS=1 but OMS_TEST_AWS_ENDPOINT is not set"
        );
        return;
    };
    let config = sdk_config(&AwsSettings {
        endpoint_url: Some(endpoint),
        region: None,
    })
    .await;
    let meter = Arc::new(Meter::default());
    let prefix = format!("g{}-", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let queue = SqsQueue::metered(
        aws_sdk_sqs::Client::new(&config),
        prefix,
        Arc::clone(&meter),
    );
    let name = QueueName::parse("numbering").unwrap();
    queue
        .ensure_queues(&[QueueSpec {
            name: name.clone(),
            visibility_timeout: Duration::from_secs(30),
            max_receives: 3,
        }])
        .await
        .unwrap();
    let before = meter.usage();
    let bodies: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| queue.send(&name, b))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let together = meter.usage().since(&before);
    assert_eq!(
        (together.sqs_sends, together.sqs_sent),
        (1, 10),
        "{together:?}"
    );
    for i in 10..12 {
        queue.send(&name, &format!("{{\"n\":{i}}}")).await.unwrap();
    }
    let alone = meter.usage().since(&before);
    assert_eq!((alone.sqs_sends, alone.sqs_sent), (3, 12), "{alone:?}");
    let mut got = HashSet::new();
    for _ in 0..20 {
        if got.len() == 12 {
            break;
        }
        let batch = queue
            .receive(
                &name,
                Receive {
                    max_messages: 10,
                    visibility_timeout: Duration::from_secs(30),
                    wait: Duration::from_secs(1),
                },
            )
            .await
            .unwrap();
        got.extend(batch.into_iter().map(|m| m.body));
    }
    let expected: HashSet<String> = (0..12).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(got, expected);
}

/// SQLite only: with its queues in the same file (`store_and_queue`, as the local runtime runs),
/// the store puts step messages on their queue in the commit of the change that sends them, and
/// only the other effects wait in the outbox. A change refused writes no message; a step to a
/// queue never created stays in the outbox for the sweeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_puts_step_messages_on_their_queue_in_the_commit_of_the_change() {
    use oms::adapters::sqlite::SqliteDb;
    use oms::clock::SystemClock;
    use oms::domain::StepMessage;
    use oms::ports::{Keeping, OrderStore, OutboxStore, Queue};
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(dir.path().join("oms.sqlite")).unwrap();
    let (store, q) = db.store_and_queue(Arc::new(SystemClock));
    let alone = db.store();
    q.ensure_queues(&[spec("numbering", 5), spec("review", 5)])
        .await
        .unwrap();
    let fx = |o: &oms::domain::Order, id: &str, kind: EffectKind| Effect {
        id: id.into(),
        order_id: o.id,
        kind,
        due_at: t0(),
        attempts: 0,
        last_error: None,
    };
    let step = |to: &str| EffectKind::Step { queue: to.into() };
    let release = EffectKind::ReleaseStock { warehouses: vec![] };
    let bodies = |got: Vec<oms::ports::Message>| {
        got.into_iter()
            .map(|m| {
                serde_json::from_str::<StepMessage>(&m.body)
                    .unwrap()
                    .order_id
            })
            .collect::<Vec<_>>()
    };
    let (o, entry) = order("C1", None, &[("TEA-001", 1)]);
    let numbering = fx(&o, "1-1", step("numbering"));
    assert_eq!(store.keeping(&numbering, &o), Keeping::InCommit);
    assert_eq!(
        store.keeping(&fx(&o, "1-2", release.clone()), &o),
        Keeping::Record
    );
    assert_eq!(
        alone.keeping(&numbering, &o),
        Keeping::Record,
        "a store alone has no queue to write to"
    );
    // When an order is created with a step and another effect
    store
        .create_order(&o, &entry, &[numbering, fx(&o, "1-2", release.clone())])
        .await
        .unwrap();
    // Then the step is on its queue at once, and only the other effect is in the outbox
    let got = q.receive(&queue("numbering"), receive(30)).await.unwrap();
    assert_eq!(bodies(got), vec![o.id]);
    let outbox: Vec<String> = store
        .effects_of(o.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(outbox, vec!["1-2"]);
    // A stale change writes no message
    let mut ch = o
        .transition(
            Status::Numbered,
            Actor::System("numbering".into()),
            None,
            t0(),
        )
        .unwrap();
    ch.effects = vec![
        fx(&o, "2-1", step("review")),
        fx(&o, "2-2", step("nowhere")),
    ];
    let mut stale = ch.clone();
    stale.expected_version = 7;
    assert!(matches!(
        store.save_change(&stale).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        q.receive(&queue("review"), receive(30))
            .await
            .unwrap()
            .is_empty()
    );
    // The change itself puts its step on `review`; the step to a queue never created waits in
    // the outbox
    store.save_change(&ch).await.unwrap();
    let got = q.receive(&queue("review"), receive(30)).await.unwrap();
    assert_eq!(bodies(got), vec![o.id]);
    let outbox: Vec<String> = store
        .effects_of(o.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(outbox, vec!["1-2", "2-2"]);
    // A store alone keeps every effect in the outbox, steps too
    let (o2, entry2) = order("C2", None, &[("TEA-001", 1)]);
    alone
        .create_order(&o2, &entry2, &[fx(&o2, "1-1", step("numbering"))])
        .await
        .unwrap();
    assert_eq!(alone.effects_of(o2.id).await.unwrap().len(), 1);
    assert!(
        q.receive(&queue("numbering"), receive(30))
            .await
            .unwrap()
            .is_empty()
    );
}
