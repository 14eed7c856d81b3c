//! Orders a marketplace collected the money for (a Tmall trade): the trade's own status decides
//! what the order may do (Taobao Open Platform, the `Trade.status` field).
//!
//! | `status` | meaning (TOP) | a new trade | a trade we hold |
//! |---|---|---|---|
//! | `WAIT_SELLER_SEND_GOODS` | 买家已付款, awaiting shipment | taken | as it is (a duplicate) |
//! | `TRADE_NO_CREATE_PAY`, `WAIT_BUYER_PAY`, `PAY_PENDING`, `WAIT_PRE_AUTH_CONFIRM` | not paid (yet) | refused: push it once paid | as it is |
//! | `TRADE_CLOSED` (refunded after payment), `TRADE_CLOSED_BY_TAOBAO` (closed before payment) | closed | refused: nothing to take | cancelled, its money recorded as paid back by the marketplace |
//! | `SELLER_CONSIGNED_PART`, `WAIT_BUYER_CONFIRM_GOODS`, `TRADE_BUYER_SIGNED`, `TRADE_FINISHED` | shipped or done on the marketplace | refused: shipped elsewhere | as it is |
//!
//! A cash-on-delivery trade (`type = cod`) is not paid on the marketplace: it is taken while it
//! waits for the seller (`WAIT_SELLER_SEND_GOODS`), like a paid one.

use chrono::{DateTime, Utc};

use super::decide::{self, Policy, Refusal};
use super::ledger::{PaymentSource, Refund, RefundState};
use super::order::{Order, OrderChange};
use super::status::{Actor, Status};

/// What a trade's status means for intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeStatus {
    /// Paid (or cash on delivery) and waiting for the seller: an order to fulfil.
    Take,
    /// Not paid yet.
    NotPaid,
    /// Closed: refunded after payment, or closed before it.
    Closed,
    /// Shipped or finished on the marketplace: not ours to ship.
    Elsewhere,
    /// A status TOP does not document.
    Unknown,
}

pub fn trade_status(status: &str) -> TradeStatus {
    match status {
        "WAIT_SELLER_SEND_GOODS" => TradeStatus::Take,
        "TRADE_NO_CREATE_PAY" | "WAIT_BUYER_PAY" | "PAY_PENDING" | "WAIT_PRE_AUTH_CONFIRM" => {
            TradeStatus::NotPaid
        }
        "TRADE_CLOSED" | "TRADE_CLOSED_BY_TAOBAO" => TradeStatus::Closed,
        "SELLER_CONSIGNED_PART"
        | "WAIT_BUYER_CONFIRM_GOODS"
        | "TRADE_BUYER_SIGNED"
        | "TRADE_FINISHED" => TradeStatus::Elsewhere,
        _ => TradeStatus::Unknown,
    }
}

/// The marketplace closed the trade of `order`: before shipment the order is cancelled and the
/// money the marketplace collected is recorded as paid back by it (it refunded the buyer
/// itself; nothing is asked of a provider), so a fully paid-back order ends `refunded`.
/// `None`: cancelled already. Refused once a parcel left: that is a return.
pub fn trade_closed(
    order: &Order,
    marketplace: &str,
    status: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, Refusal> {
    if matches!(order.status(), Status::Cancelled | Status::Refunded) {
        return Ok(None);
    }
    if !decide::before_shipment(order.status()) {
        return Err(Refusal(format!(
            "the trade was closed ({status}) after the order became {}: record it as a return",
            order.status()
        )));
    }
    let actor = Actor::Channel(marketplace.into());
    let reason = format!("the trade was closed on the marketplace ({status})");
    let mut c = decide::transition(order, Status::Cancelled, actor.clone(), reason, now)?;
    c.order.payment_due_at = None;
    c.order.hold_reasons.clear();
    c.order.attention.clear();
    let paid_there: Vec<_> = c
        .order
        .ledger
        .payments
        .iter()
        .filter(|p| p.source == PaymentSource::Marketplace)
        .map(|p| (p.clone(), c.order.ledger.refundable(p)))
        .filter(|(_, left)| *left > 0)
        .collect();
    for (p, left) in paid_there {
        c.order.ledger.refunds.push(Refund {
            id: format!("ext:{}:{}:closed", p.provider, p.payment_id),
            provider: p.provider.clone(),
            payment_id: p.payment_id.clone(),
            amount: super::Money {
                minor: left,
                currency: p.amount.currency,
            },
            state: RefundState::Succeeded,
            reason: format!("refunded on the marketplace ({status})"),
            requested_at: now,
            provider_refund_id: None,
            failure: None,
        });
    }
    decide::settle_refunded(&mut c, actor, now);
    Ok(Some(decide::seal(c, policy, now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EffectKind;

    /// A Tmall order, paid on the marketplace unless it is cash on delivery.
    fn tmall_order(method: &str, path: &[Status]) -> Order {
        let mut o = crate::domain::testkit::order("tmall", method, &[], now());
        o.external_id = Some(crate::domain::ExternalId::parse("3901234567890123").unwrap());
        let marketplace = Policy {
            paid_on_marketplace: true,
            ..Policy::default()
        };
        let o = decide::accepted(o, &marketplace, now()).order;
        crate::domain::testkit::walk(o, path, now())
    }

    fn now() -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 7, 10, 0, 0).unwrap()
    }

    #[test]
    fn every_documented_trade_status_has_a_meaning() {
        let cases = [
            ("WAIT_SELLER_SEND_GOODS", TradeStatus::Take),
            ("TRADE_NO_CREATE_PAY", TradeStatus::NotPaid),
            ("WAIT_BUYER_PAY", TradeStatus::NotPaid),
            ("PAY_PENDING", TradeStatus::NotPaid),
            ("WAIT_PRE_AUTH_CONFIRM", TradeStatus::NotPaid),
            ("TRADE_CLOSED", TradeStatus::Closed),
            ("TRADE_CLOSED_BY_TAOBAO", TradeStatus::Closed),
            ("SELLER_CONSIGNED_PART", TradeStatus::Elsewhere),
            ("WAIT_BUYER_CONFIRM_GOODS", TradeStatus::Elsewhere),
            ("TRADE_BUYER_SIGNED", TradeStatus::Elsewhere),
            ("TRADE_FINISHED", TradeStatus::Elsewhere),
            ("wait_seller_send_goods", TradeStatus::Unknown),
            ("", TradeStatus::Unknown),
        ];
        for (status, want) in cases {
            assert_eq!(trade_status(status), want, "{status}");
        }
    }

    #[test]
    fn a_closed_trade_cancels_before_shipment_and_the_marketplace_has_paid_it_back() {
        use Status::*;
        let p = Policy::default();
        // What a closed trade leaves: Ok(Some(status)), Ok(None) for nothing to do, Err(()) refused.
        type Leaves = Result<Option<Status>, ()>;
        let cases: Vec<(&str, &[Status], Leaves)> = vec![
            (
                "paid, waiting for stock",
                &[Numbered, Approved],
                Ok(Some(Refunded)),
            ),
            (
                "paid and reserved",
                &[Numbered, Approved, AwaitingPayment, Paid],
                Ok(Some(Refunded)),
            ),
            ("held for review", &[Numbered, OnHold], Ok(Some(Refunded))),
            (
                "ready to ship",
                &[Numbered, Approved, AwaitingPayment, Paid, ReadyToShip],
                Ok(Some(Refunded)),
            ),
            (
                "cancelled already",
                &[Numbered, Approved, Cancelled],
                Ok(None),
            ),
            (
                "shipped",
                &[
                    Numbered,
                    Approved,
                    AwaitingPayment,
                    Paid,
                    ReadyToShip,
                    Shipped,
                ],
                Err(()),
            ),
        ];
        for (case, path, want) in cases {
            let o = tmall_order("prepaid", path);
            let got = trade_closed(&o, "tmall", "TRADE_CLOSED", &p, now());
            match (got, want) {
                (Ok(Some(c)), Ok(Some(status))) => {
                    assert_eq!(c.order.status(), status, "{case}");
                    assert_eq!(c.order.ledger.balance(c.order.total.currency), 0, "{case}");
                    assert!(
                        !c.effects
                            .iter()
                            .any(|e| matches!(e.kind, EffectKind::Refund { .. })),
                        "{case}: nothing is asked of a provider"
                    );
                    assert!(
                        c.effects
                            .iter()
                            .any(|e| matches!(e.kind, EffectKind::ReleaseStock { .. })),
                        "{case}: the stock goes back"
                    );
                    // Closed again (the marketplace pushes it twice): nothing more.
                    assert!(
                        trade_closed(&c.order, "tmall", "TRADE_CLOSED", &p, now())
                            .unwrap()
                            .is_none(),
                        "{case}"
                    );
                }
                (Ok(None), Ok(None)) | (Err(_), Err(())) => {}
                (got, want) => panic!("{case}: {got:?} is not {want:?}"),
            }
        }
        // Cash on delivery collected nothing: cancelled, nothing to pay back.
        let cod = tmall_order("cash_on_delivery", &[Numbered, Approved, ReadyToShip]);
        let c = trade_closed(&cod, "tmall", "TRADE_CLOSED_BY_TAOBAO", &p, now())
            .unwrap()
            .unwrap();
        assert_eq!(c.order.status(), Cancelled);
        assert!(c.order.ledger.refunds.is_empty());
    }
}
