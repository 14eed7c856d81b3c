//! What decisions ask of those outside about a parcel, as tables of cases: a tracking
//! subscription (the carrier's tracking service), the marketplace told of the parcel, the
//! waybill cancelled at the carrier; and what `retry` asks again.

// A table's row is a plain tuple, read column by column.
#![allow(clippy::type_complexity)]

use chrono::{DateTime, TimeZone, Utc};

use super::decide::{self, Policy, StaffDecision};
use super::effects::EffectKind;
use super::fulfilment::{Shipment, TrackingStatus};
use super::order::{Order, OrderChange};
use super::status::{Actor, Status};
use super::values::{OrderId, WarehouseId};

use Status::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
}

fn order(method: &str, path: &[Status]) -> Order {
    super::testkit::order("web", method, path, now())
}

fn parcel(carrier: &str, number: &str, merged_into: Option<OrderId>) -> Shipment {
    Shipment {
        warehouse: WarehouseId::parse("nj").unwrap(),
        carrier: carrier.into(),
        tracking_number: number.into(),
        lines: vec![],
        weight_grams: 500,
        cost: 800,
        status: TrackingStatus::Pending,
        last_event_at: None,
        handed_over_at: None,
        delivered_at: None,
        merged: Vec::new(),
        merged_into,
    }
}

/// The waybills a change asks to be followed, as `carrier:number`.
fn subscribed(c: &OrderChange) -> Vec<String> {
    c.effects
        .iter()
        .filter_map(|e| match &e.kind {
            EffectKind::SubscribeTracking {
                carrier,
                tracking_number,
            } => Some(format!("{carrier}:{tracking_number}")),
            _ => None,
        })
        .collect()
}

#[test]
fn each_waybill_an_order_owns_is_subscribed_once_when_it_is_made() {
    let other = OrderId::generate();
    let paid = order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]);
    let cod = order("cash_on_delivery", &[Numbered, Approved, ReadyToShip]);
    let cases: Vec<(&str, &Order, Vec<Shipment>, Vec<&str>)> = vec![
        (
            "a paid order with one parcel",
            &paid,
            vec![parcel("zto", "7530001", None)],
            vec!["zto:7530001"],
        ),
        (
            "a paid order split across two warehouses and carriers",
            &paid,
            vec![parcel("zto", "7530001", None), parcel("sf", "SF002", None)],
            vec!["zto:7530001", "sf:SF002"],
        ),
        (
            "cash on delivery, ready to ship without waybills",
            &cod,
            vec![parcel("zto", "7530003", None)],
            vec!["zto:7530003"],
        ),
        (
            "goods merged into another order's parcel: that order subscribes it",
            &paid,
            vec![parcel("zto", "7530004", Some(other))],
            vec![],
        ),
    ];
    for (case, o, shipments, want) in cases {
        let c = decide::dispatched(o, shipments, &Policy::default(), now()).expect(case);
        assert_eq!(subscribed(&c), want, "{case}");
    }
    // A dispatched order is not dispatched again: nothing is subscribed twice.
    let done = decide::dispatched(
        &paid,
        vec![parcel("zto", "7530001", None)],
        &Policy::default(),
        now(),
    )
    .unwrap()
    .order;
    assert!(decide::dispatched(&done, vec![], &Policy::default(), now()).is_none());
}

#[test]
fn a_retry_asks_again_only_for_the_waybills_whose_subscription_was_refused() {
    let mut o = order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]);
    o = decide::dispatched(
        &o,
        vec![parcel("zto", "7530001", None), parcel("sf", "SF002", None)],
        &Policy::default(),
        now(),
    )
    .unwrap()
    .order;
    let refused = decide::cannot_proceed(
        &o,
        "tracking",
        "waybill SF002 could not be subscribed for tracking: returnCode 600",
        &Policy::default(),
        now(),
    )
    .unwrap();
    assert!(subscribed(&refused).is_empty());
    assert!(refused.order.attention[0].starts_with(decide::TRACKING_ATTENTION));
    let retried = decide::staff_review(
        &refused.order,
        StaffDecision::Retry,
        "ops",
        None,
        &Policy::default(),
        now(),
    )
    .unwrap();
    assert_eq!(subscribed(&retried), vec!["sf:SF002"]);
    assert!(retried.order.attention.is_empty());
    // Another step's attention asks for no subscription.
    let other =
        decide::cannot_proceed(&o, "dispatch", "no carrier", &Policy::default(), now()).unwrap();
    let retried = decide::staff_review(
        &other.order,
        StaffDecision::Retry,
        "ops",
        None,
        &Policy::default(),
        now(),
    )
    .unwrap();
    assert!(subscribed(&retried).is_empty());
}

/// The waybills a change asks `kind` of (`ship_on_marketplace`, `cancel_waybill`).
fn asked(c: &OrderChange, kind: &str) -> Vec<String> {
    c.effects
        .iter()
        .filter(|e| e.kind.name() == kind)
        .filter_map(|e| match &e.kind {
            EffectKind::ShipOnMarketplace {
                carrier,
                tracking_number,
            }
            | EffectKind::CancelWaybill {
                carrier,
                tracking_number,
            } => Some(format!("{carrier}:{tracking_number}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_marketplace_trade_tells_the_marketplace_of_every_parcel_it_rides_in() {
    let marketplace = Policy {
        ships_on_marketplace: true,
        ..Policy::default()
    };
    let mut traded = order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]);
    traded.external_id = Some(super::values::ExternalId::parse("3901").unwrap());
    let mut untraded = traded.clone();
    untraded.external_id = None;
    let other = OrderId::generate();
    let plain = Policy::default();
    let cases: Vec<(&str, &Order, &Policy, Vec<Shipment>, Vec<&str>)> = vec![
        (
            "its own parcels",
            &traded,
            &marketplace,
            vec![parcel("zto", "7530001", None), parcel("sf", "SF002", None)],
            vec!["zto:7530001", "sf:SF002"],
        ),
        (
            "a parcel of another order its goods ride in",
            &traded,
            &marketplace,
            vec![parcel("zto", "7530003", Some(other))],
            vec!["zto:7530003"],
        ),
        (
            "a channel without a marketplace API",
            &traded,
            &plain,
            vec![parcel("zto", "7530004", None)],
            vec![],
        ),
        (
            "an order without a trade",
            &untraded,
            &marketplace,
            vec![parcel("zto", "7530005", None)],
            vec![],
        ),
    ];
    for (case, o, p, shipments, want) in cases {
        let c = decide::dispatched(o, shipments, p, now()).expect(case);
        assert_eq!(asked(&c, "ship_on_marketplace"), want, "{case}");
    }
}

#[test]
fn an_order_cancelled_before_pick_up_cancels_the_waybills_that_carry_only_its_goods() {
    let paid = order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]);
    let other = OrderId::generate();
    let mut carrying_others = parcel("zto", "7530003", None);
    carrying_others.merged = vec![other];
    let cases: Vec<(&str, Vec<Shipment>, Vec<&str>)> = vec![
        (
            "its own parcels",
            vec![parcel("zto", "7530001", None), parcel("sf", "SF002", None)],
            vec!["zto:7530001", "sf:SF002"],
        ),
        (
            "a parcel that also carries another order's goods stays",
            vec![carrying_others],
            vec![],
        ),
        (
            "its goods ride in another order's parcel, which stays",
            vec![parcel("zto", "7530004", Some(other))],
            vec![],
        ),
        ("no parcel yet", vec![], vec![]),
    ];
    for (case, shipments, want) in cases {
        let o = if shipments.is_empty() {
            paid.clone()
        } else {
            decide::dispatched(&paid, shipments, &Policy::default(), now())
                .expect(case)
                .order
        };
        let c = decide::cancel(
            &o,
            Actor::Staff("ops".into()),
            "",
            &Policy::default(),
            now(),
        )
        .expect(case)
        .expect(case);
        assert_eq!(asked(&c, "cancel_waybill"), want, "{case}");
    }
}

#[test]
fn a_retry_asks_again_what_the_marketplace_or_the_carrier_refused() {
    let mut o = order("prepaid", &[Numbered, Approved, AwaitingPayment, Paid]);
    o = decide::dispatched(
        &o,
        vec![parcel("zto", "7530001", None)],
        &Policy::default(),
        now(),
    )
    .unwrap()
    .order;
    for (step, kind) in [
        ("marketplace", "ship_on_marketplace"),
        ("waybill", "cancel_waybill"),
    ] {
        let refused = decide::cannot_proceed(
            &o,
            step,
            "trade 3901 could not be marked shipped with waybill 7530001: code 27",
            &Policy::default(),
            now(),
        )
        .unwrap();
        let retried = decide::staff_review(
            &refused.order,
            StaffDecision::Retry,
            "ops",
            None,
            &Policy::default(),
            now(),
        )
        .unwrap();
        assert_eq!(asked(&retried, kind), vec!["zto:7530001"], "{step}");
    }
}
