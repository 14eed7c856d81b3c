//! The decisions as tables of cases: given an order in some state and an event, what the
//! decision writes (status, ledger) and which effects it causes.

// A table's row is a plain tuple, read column by column.
#![allow(clippy::type_complexity)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::decide::{self, PaymentFact, PaymentFacts, Policy, Refusal, Verdict};
use super::effects::EffectKind;
use super::ledger::{Payment, PaymentSource, RefundState};
use super::order::{Order, OrderChange};
use super::status::{Actor, Status};
use super::values::{Currency, Money};

use Status::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

fn cny(minor: i64) -> Money {
    Money {
        minor,
        currency: Currency::parse("CNY").unwrap(),
    }
}

/// A 2 × 49.90 CNY order (total 99.80) walked through `path` from `received`.
fn order(method: &str, path: &[Status]) -> Order {
    super::testkit::order("web", method, path, now())
}

fn with_payment(mut o: Order, id: &str, minor: i64) -> Order {
    o.ledger.payments.push(Payment {
        provider: "stripe".into(),
        payment_id: id.into(),
        amount: cny(minor),
        source: PaymentSource::Provider,
        at: now(),
    });
    o
}

const TO_AWAITING: &[Status] = &[Numbered, Approved, AwaitingPayment];
const TO_PAID: &[Status] = &[Numbered, Approved, AwaitingPayment, Paid, ReadyToShip];

fn kinds(c: &OrderChange) -> Vec<&'static str> {
    c.effects.iter().map(|e| e.kind.name()).collect()
}

fn requested(c: &OrderChange) -> Vec<i64> {
    c.order
        .ledger
        .refunds
        .iter()
        .filter(|r| r.state == RefundState::Requested)
        .map(|r| r.amount.minor)
        .collect()
}

fn captured(order: &Order, pi: &str, minor: i64, currency: &str) -> Option<OrderChange> {
    let ev = PaymentFacts {
        provider: "stripe".into(),
        event_id: format!("evt_{pi}_{minor}"),
        payment_id: pi.into(),
        kind: PaymentFact::Captured,
        amount: Money {
            minor,
            currency: Currency::parse(currency).unwrap(),
        },
    };
    decide::payment(order, &ev, &Policy::default(), now())
}

#[test]
fn a_captured_payment_moves_the_order_and_settles_the_balance() {
    // (order, payment id, amount, currency) → (status after, refunds requested, effects)
    let cases: Vec<(&str, Order, &str, i64, &str, Status, Vec<i64>, Vec<&str>)> = vec![
        (
            "exact",
            order("prepaid", TO_AWAITING),
            "pi_1",
            9980,
            "CNY",
            Paid,
            vec![],
            vec!["step", "notify"],
        ),
        (
            "short",
            order("prepaid", TO_AWAITING),
            "pi_1",
            4000,
            "CNY",
            AwaitingPayment,
            vec![],
            vec![],
        ),
        (
            "top-up of what is owed",
            with_payment(order("prepaid", TO_AWAITING), "pi_0", 4000),
            "pi_1",
            5980,
            "CNY",
            Paid,
            vec![],
            vec!["step", "notify"],
        ),
        (
            "top-up beyond what is owed",
            with_payment(order("prepaid", TO_AWAITING), "pi_0", 4000),
            "pi_1",
            9980,
            "CNY",
            Paid,
            vec![4000],
            vec!["step", "notify", "refund"],
        ),
        (
            "over",
            order("prepaid", TO_AWAITING),
            "pi_1",
            12000,
            "CNY",
            Paid,
            vec![2020],
            vec!["step", "notify", "refund"],
        ),
        (
            "other currency",
            order("prepaid", TO_AWAITING),
            "pi_1",
            9980,
            "USD",
            AwaitingPayment,
            vec![9980],
            vec!["refund"],
        ),
        (
            "second payment",
            with_payment(order("prepaid", TO_PAID), "pi_0", 9980),
            "pi_1",
            9980,
            "CNY",
            ReadyToShip,
            vec![9980],
            vec!["refund"],
        ),
        (
            "after cancel",
            order("prepaid", &[Numbered, Approved, AwaitingPayment, Cancelled]),
            "pi_1",
            9980,
            "CNY",
            Cancelled,
            vec![9980],
            vec!["refund"],
        ),
        (
            "after expiry",
            order("prepaid", &[Numbered, Approved, AwaitingPayment, Expired]),
            "pi_1",
            5000,
            "CNY",
            Expired,
            vec![5000],
            vec!["refund"],
        ),
        (
            "after rejection",
            order("prepaid", &[Numbered, Rejected]),
            "pi_1",
            9980,
            "CNY",
            Rejected,
            vec![9980],
            vec!["refund"],
        ),
        (
            "before the stock lock",
            order("prepaid", &[Numbered]),
            "pi_1",
            9980,
            "CNY",
            Numbered,
            vec![],
            vec![],
        ),
        (
            "before the stock lock, over",
            order("prepaid", &[Numbered]),
            "pi_1",
            10980,
            "CNY",
            Numbered,
            vec![1000],
            vec!["refund"],
        ),
    ];
    for (name, o, pi, minor, cur, status, refunds, effects) in cases {
        let c = captured(&o, pi, minor, cur).unwrap_or_else(|| panic!("{name}: no change"));
        assert_eq!(c.order.status(), status, "{name}");
        assert_eq!(requested(&c), refunds, "{name}");
        assert_eq!(kinds(&c), effects, "{name}");
        assert_eq!(
            c.event.as_deref(),
            Some(format!("payment:stripe:evt_{pi}_{minor}").as_str()),
            "{name}"
        );
    }
}

#[test]
fn one_payment_reported_again_under_another_event_changes_nothing() {
    let paid = captured(&order("prepaid", TO_AWAITING), "pi_1", 9980, "CNY")
        .unwrap()
        .order;
    let again = PaymentFacts {
        provider: "stripe".into(),
        event_id: "evt_charge_succeeded".into(),
        payment_id: "pi_1".into(),
        kind: PaymentFact::Captured,
        amount: cny(9980),
    };
    assert_eq!(
        decide::payment(&paid, &again, &Policy::default(), now()),
        None
    );
    // A failed attempt is a note; a provider's refund report counts only beyond what we know.
    let failed = PaymentFacts {
        kind: PaymentFact::Failed,
        event_id: "evt_f".into(),
        ..again.clone()
    };
    let c = decide::payment(&paid, &failed, &Policy::default(), now()).unwrap();
    assert_eq!((c.order.status(), c.order.ledger.payments.len()), (Paid, 1));
    let refunded = |minor, event: &str| PaymentFacts {
        kind: PaymentFact::Refunded,
        event_id: event.into(),
        amount: cny(minor),
        ..again.clone()
    };
    let c = decide::payment(&paid, &refunded(1000, "evt_r1"), &Policy::default(), now()).unwrap();
    assert_eq!(c.order.ledger.refunds[0].id, "ext:stripe:evt_r1");
    assert_eq!(c.order.ledger.refunds[0].amount.minor, 1000);
    assert!(
        c.effects.iter().all(|e| e.kind.name() != "refund"),
        "a refund made at the provider lowers what the order keeps"
    );
    let after = c.order;
    assert_eq!(
        decide::payment(&after, &refunded(1000, "evt_r2"), &Policy::default(), now()),
        None
    );
    let c = decide::payment(&after, &refunded(2500, "evt_r3"), &Policy::default(), now()).unwrap();
    assert_eq!(
        c.order.ledger.refunds[1].amount.minor, 1500,
        "the running total less what was known"
    );
}

#[test]
fn cancelling_releases_stock_and_refunds_what_was_paid_or_is_refused() {
    type Want = Result<Option<(Vec<&'static str>, Vec<i64>)>, ()>;
    let cases: Vec<(&str, Order, Want)> = vec![
        (
            "received",
            order("prepaid", &[]),
            Ok(Some((vec!["notify", "release_stock"], vec![]))),
        ),
        (
            "awaiting payment",
            order("prepaid", TO_AWAITING),
            Ok(Some((vec!["notify", "release_stock"], vec![]))),
        ),
        (
            "paid twice",
            with_payment(
                with_payment(order("prepaid", TO_PAID), "pi_0", 9980),
                "pi_1",
                9980,
            ),
            Ok(Some((
                vec!["notify", "release_stock", "refund", "refund"],
                vec![9980, 9980],
            ))),
        ),
        (
            "partly paid",
            with_payment(order("prepaid", TO_AWAITING), "pi_0", 3000),
            Ok(Some((
                vec!["notify", "release_stock", "refund"],
                vec![3000],
            ))),
        ),
        (
            "cancelled already",
            order("prepaid", &[Cancelled]),
            Ok(None),
        ),
        (
            "refunded already",
            order("prepaid", &[Cancelled, Refunded]),
            Ok(None),
        ),
        (
            "shipped",
            order(
                "prepaid",
                &[
                    Numbered,
                    Approved,
                    AwaitingPayment,
                    Paid,
                    ReadyToShip,
                    Shipped,
                ],
            ),
            Err(()),
        ),
        (
            "delivered",
            order(
                "cash_on_delivery",
                &[Numbered, Approved, ReadyToShip, Shipped, Delivered],
            ),
            Err(()),
        ),
    ];
    for (name, o, want) in cases {
        let got = decide::cancel(
            &o,
            Actor::Staff("ops".into()),
            "asked",
            &Policy::default(),
            now(),
        );
        match (got, want) {
            (Ok(Some(c)), Ok(Some((effects, refunds)))) => {
                assert_eq!(c.order.status(), Cancelled, "{name}");
                assert_eq!(kinds(&c), effects, "{name}");
                assert_eq!(requested(&c), refunds, "{name}");
                assert_eq!(
                    c.order.due_at, None,
                    "{name}: nothing is due for a cancelled order"
                );
            }
            (Ok(None), Ok(None)) => {}
            (Err(Refusal(why)), Err(())) => {
                assert!(why.contains("cannot be cancelled"), "{name}: {why}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn the_sweeper_acts_only_on_what_is_due() {
    let p = Policy::default();
    let awaiting = {
        let mut o = order("prepaid", TO_AWAITING);
        o.payment_due_at = Some(now() + Duration::minutes(30));
        o
    };
    let delivered = {
        let mut o = order(
            "prepaid",
            &[
                Numbered,
                Approved,
                AwaitingPayment,
                Paid,
                ReadyToShip,
                Shipped,
                Delivered,
            ],
        );
        o.delivered_at = Some(now());
        o
    };
    let stuck = order("prepaid", &[Numbered]);
    let mut tired = stuck.clone();
    tired.redrives = decide::MAX_REDRIVES;
    // (order, minutes later, status after or None, effects)
    let cases: Vec<(&str, &Order, i64, Option<Status>, Vec<&str>)> = vec![
        ("unpaid before the deadline", &awaiting, 29, None, vec![]),
        (
            "unpaid at the deadline",
            &awaiting,
            30,
            Some(Expired),
            vec!["notify", "release_stock"],
        ),
        (
            "delivered within the window",
            &delivered,
            7 * 24 * 60 - 1,
            None,
            vec![],
        ),
        (
            "delivered after the window",
            &delivered,
            7 * 24 * 60,
            Some(Completed),
            vec!["notify"],
        ),
        ("in a step within its budget", &stuck, 4, None, vec![]),
        (
            "in a step past its budget",
            &stuck,
            5,
            Some(Numbered),
            vec!["step"],
        ),
        (
            "past its budget after every re-send",
            &tired,
            5 * 8,
            Some(Numbered),
            vec![],
        ),
    ];
    for (name, o, minutes, status, effects) in cases {
        let c = decide::sweep(o, &p, now() + Duration::minutes(minutes));
        assert_eq!(c.as_ref().map(|c| c.order.status()), status, "{name}");
        if let Some(c) = c {
            assert_eq!(kinds(&c), effects, "{name}");
            if name.starts_with("past its budget after") {
                assert_eq!(c.order.attention.len(), 1, "{name}: a person is asked");
                assert_eq!(c.order.due_at, None, "{name}: and the sweeper stops");
            }
        }
    }
}

#[test]
fn reserved_stock_sends_the_order_on_by_how_it_is_paid() {
    let tmall = Policy {
        paid_on_marketplace: true,
        ..Policy::default()
    };
    let marketplace = decide::accepted(order("prepaid", &[]), &tmall, now()).order;
    assert_eq!(
        marketplace.ledger.payments[0].source,
        PaymentSource::Marketplace
    );
    let approved = |o: Order| {
        let mut o = o;
        for st in [Numbered, Approved] {
            o = o
                .transition(st, Actor::System("t".into()), None, now())
                .unwrap()
                .order;
        }
        o
    };
    // (order, statuses written, effects, payment deadline set)
    let cases: Vec<(&str, Order, Vec<Status>, Vec<&str>, bool)> = vec![
        (
            "prepaid",
            order("prepaid", &[Numbered, Approved]),
            vec![AwaitingPayment],
            vec!["notify"],
            true,
        ),
        (
            "paid early",
            with_payment(order("prepaid", &[Numbered, Approved]), "pi_0", 9980),
            vec![AwaitingPayment, Paid],
            vec!["step", "notify", "notify"],
            false,
        ),
        (
            "marketplace",
            approved(marketplace),
            vec![AwaitingPayment, Paid],
            vec!["step", "notify", "notify"],
            false,
        ),
        (
            "cash on delivery",
            order("cash_on_delivery", &[Numbered, Approved]),
            vec![ReadyToShip],
            vec!["step"],
            false,
        ),
        (
            "credit",
            order("credit", &[Numbered, Approved]),
            vec![ReadyToShip],
            vec!["step"],
            false,
        ),
        (
            "restocked",
            order("prepaid", &[Numbered, Approved, OutOfStock]),
            vec![AwaitingPayment],
            vec!["notify"],
            true,
        ),
    ];
    for (name, o, statuses, effects, due) in cases {
        let c = decide::stock_reserved(&o, "nj", &Policy::default(), now()).unwrap();
        let written: Vec<Status> = c.entries().filter_map(|e| e.to).collect();
        assert_eq!(written, statuses, "{name}");
        assert_eq!(kinds(&c), effects, "{name}");
        assert_eq!(c.order.payment_due_at.is_some(), due, "{name}");
        assert_eq!(c.order.version(), o.version() + 1, "{name}: one write");
    }
}

#[test]
fn review_verdicts_and_steps_that_cannot_proceed() {
    let numbered = order("prepaid", &[Numbered]);
    let cases = [
        (
            Verdict::Approve(vec!["trusted".into()]),
            Approved,
            vec!["step"],
        ),
        (Verdict::Hold(vec!["amount".into()]), OnHold, vec![]),
        (
            Verdict::Reject(vec!["blocked".into()]),
            Rejected,
            vec!["notify", "release_stock"],
        ),
    ];
    for (verdict, status, effects) in cases {
        let c = decide::reviewed(&numbered, &verdict, &Policy::default(), now()).unwrap();
        assert_eq!(c.order.status(), status);
        assert_eq!(kinds(&c), effects);
    }
    assert_eq!(
        decide::reviewed(
            &order("prepaid", &[Numbered, Approved]),
            &Verdict::Approve(vec![]),
            &Policy::default(),
            now()
        ),
        None,
        "a replay"
    );
    let held = decide::cannot_proceed(
        &order("prepaid", TO_PAID),
        "dispatch",
        "no carrier takes 32500 g",
        &Policy::default(),
        now(),
    )
    .unwrap();
    assert_eq!(
        held.order.attention,
        vec!["dispatch: no carrier takes 32500 g"]
    );
    assert_eq!(held.order.due_at, None, "not retried by itself");
    assert_eq!(
        decide::cannot_proceed(
            &held.order,
            "dispatch",
            "no carrier takes 32500 g",
            &Policy::default(),
            now()
        ),
        None,
        "said once"
    );
    assert!(matches!(
        held.effects.first().map(|e| &e.kind),
        None | Some(EffectKind::Notify(_))
    ));
}

#[test]
fn returns_by_line_refund_what_came_back_and_restock_it_or_send_it_to_inspection() {
    let delivered = {
        let mut o = order(
            "prepaid",
            &[
                Numbered,
                Approved,
                AwaitingPayment,
                Paid,
                ReadyToShip,
                Shipped,
                Delivered,
            ],
        );
        o.delivered_at = Some(now());
        o.shipments = vec![super::fulfilment::Shipment {
            warehouse: super::values::WarehouseId::parse("nj").unwrap(),
            carrier: "zto".into(),
            tracking_number: "7530".into(),
            lines: vec![(super::values::Sku::parse("TEA-001").unwrap(), 2)],
            weight_grams: 500,
            cost: 800,
            status: super::fulfilment::TrackingStatus::Delivered,
            last_event_at: Some(now()),
            handed_over_at: Some(now()),
            delivered_at: Some(now()),
            merged: Vec::new(),
            merged_into: None,
        }];
        with_payment(o, "pi_1", 9980)
    };
    let tea = |q| Some(vec![(super::values::Sku::parse("TEA-001").unwrap(), q)]);
    let stock = Policy::default();
    let inspect = Policy {
        returns_to_stock: false,
        ..Policy::default()
    };
    // (lines asked for, policy) → (status after receipt, refund, effects at receipt)
    let cases: Vec<(
        &str,
        Option<Vec<(super::values::Sku, u64)>>,
        &Policy,
        Status,
        Vec<i64>,
        Vec<&str>,
    )> = vec![
        (
            "one of two, to stock",
            tea(1),
            &stock,
            Delivered,
            vec![4990],
            vec!["restock", "notify", "refund"],
        ),
        (
            "everything, to stock",
            None,
            &stock,
            Returned,
            vec![9980],
            vec!["restock", "notify", "refund"],
        ),
        (
            "everything, to inspection",
            tea(2),
            &inspect,
            Returned,
            vec![9980],
            vec!["notify", "refund"],
        ),
    ];
    for (name, lines, p, status, refunds, effects) in cases {
        let asked = decide::request_return(&delivered, lines, "too big", Actor::Customer, p, now())
            .unwrap();
        assert_eq!(asked.order.status(), ReturnRequested, "{name}");
        assert!(
            requested(&asked).is_empty(),
            "{name}: nothing is refunded before the goods arrive"
        );
        let got =
            decide::return_received(&asked.order, Actor::Staff("wh".into()), p, now()).unwrap();
        assert_eq!(got.order.status(), status, "{name}");
        assert_eq!(requested(&got), refunds, "{name}");
        assert_eq!(kinds(&got), effects, "{name}");
    }
    // Refused: more than was delivered, nothing, after the window, twice the same line.
    let refusals: Vec<(
        &str,
        Order,
        Option<Vec<(super::values::Sku, u64)>>,
        DateTime<Utc>,
    )> = vec![
        ("three of two", delivered.clone(), tea(3), now()),
        ("zero", delivered.clone(), tea(0), now()),
        (
            "after the window",
            delivered.clone(),
            None,
            now() + Duration::days(8),
        ),
        ("not delivered", order("prepaid", TO_PAID), None, now()),
    ];
    for (name, o, lines, at) in refusals {
        assert!(
            decide::request_return(&o, lines, "x", Actor::Customer, &stock, at).is_err(),
            "{name}"
        );
    }
    let after_one = decide::return_received(
        &decide::request_return(&delivered, tea(1), "x", Actor::Customer, &stock, now())
            .unwrap()
            .order,
        Actor::Staff("wh".into()),
        &stock,
        now(),
    )
    .unwrap()
    .order;
    assert!(
        decide::request_return(&after_one, tea(2), "x", Actor::Customer, &stock, now()).is_err(),
        "only one is left"
    );
    assert!(
        decide::request_return(&after_one, tea(1), "x", Actor::Customer, &stock, now()).is_ok()
    );
}

#[test]
fn an_address_changes_only_before_any_parcel_left() {
    let address = order("prepaid", &[]).shipping_address;
    let cases = [
        ("received", order("prepaid", &[]), true),
        ("paid", order("prepaid", TO_PAID), true),
        (
            "shipped",
            order(
                "prepaid",
                &[
                    Numbered,
                    Approved,
                    AwaitingPayment,
                    Paid,
                    ReadyToShip,
                    Shipped,
                ],
            ),
            false,
        ),
        ("cancelled", order("prepaid", &[Cancelled]), false),
    ];
    for (name, o, ok) in cases {
        let got = decide::change_address(
            &o,
            address.clone(),
            Actor::Staff("ops".into()),
            &Policy::default(),
            now(),
        );
        assert_eq!(got.is_ok(), ok, "{name}");
    }
}

#[test]
fn a_parcel_picked_up_after_the_order_ended_waits_for_a_person() {
    let mut cancelled = order(
        "cash_on_delivery",
        &[Numbered, Approved, ReadyToShip, Cancelled],
    );
    cancelled.shipments = vec![super::fulfilment::Shipment {
        warehouse: super::values::WarehouseId::parse("nj").unwrap(),
        carrier: "zto".into(),
        tracking_number: "7530".into(),
        lines: vec![],
        weight_grams: 500,
        cost: 800,
        status: super::fulfilment::TrackingStatus::Pending,
        last_event_at: None,
        handed_over_at: None,
        delivered_at: None,
        merged: Vec::new(),
        merged_into: None,
    }];
    let update = decide::TrackingUpdate {
        tracking_number: "7530".into(),
        status: super::fulfilment::TrackingStatus::PickedUp,
        at: now(),
    };
    let c = decide::tracked(&cancelled, "zto", &update, "e1", &Policy::default(), now()).unwrap();
    assert_eq!(c.order.status(), Cancelled);
    assert!(
        c.order.attention[0].contains("intercept it"),
        "{:?}",
        c.order.attention
    );
    assert!(
        c.order.shipments[0].handed_over_at.is_none(),
        "stock is not touched"
    );
    assert!(kinds(&c).is_empty(), "no stock commit: {:?}", kinds(&c));
}

#[test]
fn a_paid_order_is_held_once_for_the_merge_window_and_released_by_the_sweeper() {
    let policy = Policy::default();
    let until = now() + Duration::minutes(30);
    let paid = with_payment(
        order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]),
        "pi_1",
        9980,
    );
    // (order, held?) — only a paid order that has not been held before, or one ready to ship
    // without parcels, is held.
    let held = decide::held_for_merge(&paid, until, &policy, now()).expect("held");
    let cases = [
        (paid.clone(), true),
        (held.order.clone(), false),
        (
            order("prepaid", &[Numbered, Approved, AwaitingPayment]),
            false,
        ),
        (
            order("cash_on_delivery", &[Numbered, Approved, ReadyToShip]),
            true,
        ),
        (order("prepaid", &[Cancelled]), false),
    ];
    for (o, holds) in cases {
        assert_eq!(
            decide::held_for_merge(&o, until, &policy, now()).is_some(),
            holds,
            "{}",
            o.status()
        );
    }
    let h = held.order;
    assert_eq!(h.status(), Paid, "a note, not a move");
    assert_eq!(h.ship_after, Some(until));
    assert_eq!(
        decide::due_at(&h, &policy),
        Some(until),
        "due when the window closes"
    );
    // The sweeper leaves it alone until then, and then sends it to dispatch without counting
    // a re-send.
    assert!(decide::sweep(&h, &policy, until - Duration::seconds(1)).is_none());
    let released = decide::sweep(&h, &policy, until).expect("released");
    assert_eq!(released.order.redrives, 0);
    assert!(released.effects.iter().any(|e| matches!(
        &e.kind,
        EffectKind::Step { queue } if queue == "dispatch"
    )));
    assert_eq!(
        released.entry.reason.as_deref(),
        Some("the merge window closed; sent to dispatch")
    );
    // After the release, the usual step budget applies again (a re-send counts).
    let later = released.order.updated_at + policy.step_budget;
    assert_eq!(decide::due_at(&released.order, &policy), Some(later));
}

#[test]
fn steps_taken_in_moments_keep_one_due_time_and_a_late_step_gets_its_budget() {
    let p = Policy::default();
    let budget = p.step_budget;
    let number = || super::values::OrderNumber::parse("2026112500001").unwrap();
    let approve = Verdict::Approve(vec!["small".into()]);
    // (name, seconds after intake that numbering and review decide, due after review)
    let cases: Vec<(&str, i64, i64, DateTime<Utc>)> = vec![
        (
            "steps moments apart keep the due time set at intake",
            1,
            2,
            now() + budget,
        ),
        (
            "a step with half its budget left keeps it",
            0,
            budget.num_seconds() / 2,
            now() + budget,
        ),
        (
            "a step with less than half left gets a budget of its own",
            0,
            budget.num_seconds() / 2 + 1,
            now() + Duration::seconds(budget.num_seconds() / 2 + 1) + budget,
        ),
    ];
    for (name, at_numbering, at_review, due) in cases {
        let received = decide::accepted(order("prepaid", &[]), &p, now()).order;
        assert_eq!(received.due_at, Some(now() + budget), "{name}: at intake");
        let t1 = now() + Duration::seconds(at_numbering);
        let numbered = decide::numbered(&received, number(), "daily", &p, t1)
            .expect("numbered")
            .order;
        let t2 = now() + Duration::seconds(at_review);
        let approved = decide::reviewed(&numbered, &approve, &p, t2)
            .expect("approved")
            .order;
        assert_eq!(approved.status(), Approved, "{name}");
        assert_eq!(approved.due_at, Some(due), "{name}");
        // The rule is a fixed point: the sweeper's reading of the stored order is the same.
        assert_eq!(
            decide::due_at(&approved, &p),
            Some(due),
            "{name}: as stored"
        );
        assert!(
            decide::sweep(&approved, &p, due - Duration::seconds(1)).is_none(),
            "{name}: not redriven before"
        );
        let redriven = decide::sweep(&approved, &p, due).expect("redriven");
        assert_eq!(
            redriven.order.due_at,
            Some(due + budget * 2),
            "{name}: a re-send doubles the budget, from the re-send"
        );
    }
}
