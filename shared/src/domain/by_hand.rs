//! Money a person moves: a payment made outside any provider (a bank transfer, cash at the
//! counter), and a refund paid outside one (cash back, a bank transfer, the marketplace's own
//! refund) for a refund no provider could make. Both go on the ledger like a provider's, so
//! what the order keeps, the refunds it owes and its status follow as they do for a provider.

use chrono::{DateTime, Utc};

use super::decide::{self, PaymentFact, PaymentFacts, Policy, Refusal};
use super::ledger::{PaymentSource, RefundState};
use super::order::{Order, OrderChange};
use super::status::{Actor, Status};
use super::values::Money;

/// The provider name of payments and refunds a person records.
pub const MANUAL: &str = "manual";

/// Staff `by` record `amount` paid outside any provider, with the payer's `reference` (the bank
/// transfer's): the order is paid when nothing more is owed. Only an order that waits for its
/// payment takes one. `None`: that reference was recorded already (a retried command).
pub fn paid_by_hand(
    order: &Order,
    amount: Money,
    reference: &str,
    by: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, Refusal> {
    if order.ledger.payment(MANUAL, reference).is_some() {
        return Ok(None);
    }
    if order.status() != Status::AwaitingPayment {
        return Err(Refusal(format!(
            "an order that is {} does not wait for a payment",
            order.status()
        )));
    }
    if amount.currency != order.total.currency {
        return Err(Refusal(format!(
            "the order is in {}, not {}",
            order.total.currency, amount.currency
        )));
    }
    if amount.minor <= 0 {
        return Err(Refusal("the amount must be above 0".into()));
    }
    let facts = PaymentFacts {
        provider: MANUAL.into(),
        event_id: format!("{MANUAL}:{reference}"),
        payment_id: reference.into(),
        kind: PaymentFact::Captured,
        amount,
    };
    let Some(mut c) = decide::payment(order, &facts, policy, now) else {
        return Ok(None);
    };
    // Recorded by a person, not reported by a provider.
    let actor = Actor::Staff(by.into());
    c.entry.actor = actor.clone();
    for e in &mut c.more {
        e.actor = actor.clone();
    }
    if let Some(p) = c
        .order
        .ledger
        .payments
        .iter_mut()
        .find(|p| p.provider == MANUAL && p.payment_id == reference)
    {
        p.source = PaymentSource::Manual;
    }
    Ok(Some(c))
}

/// Staff `by` record that they paid the ledger's refund `refund_id` themselves (`reference`: the
/// transfer's, or the cash receipt's), after its provider refused it: it counts as made, its
/// `attention` is closed and the order settles (an ended order whose money is all back is
/// `refunded`). `None`: recorded already.
pub fn refund_paid_by_hand(
    order: &Order,
    refund_id: &str,
    reference: &str,
    by: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, Refusal> {
    let r = order
        .ledger
        .refund(refund_id)
        .ok_or_else(|| Refusal(format!("the order has no refund {refund_id}")))?;
    match r.state {
        RefundState::Succeeded => return Ok(None),
        RefundState::Requested => {
            return Err(Refusal(format!(
                "refund {refund_id} is being made by {}; record it by hand only once it is refused",
                r.provider
            )));
        }
        RefundState::Failed => {}
    }
    let actor = Actor::Staff(by.into());
    let mut c = order.revise(
        actor.clone(),
        format!(
            "refund {refund_id} of {} paid by hand by {by} ({reference})",
            decide::show(r.amount)
        ),
        now,
    );
    if let Some(r) = c.order.ledger.refund_mut(refund_id) {
        r.state = RefundState::Succeeded;
        r.provider_refund_id = Some(format!("{MANUAL}:{reference}"));
    }
    c.order.attention.retain(|a| !a.contains(refund_id));
    decide::settle_refunded(&mut c, actor, now);
    Ok(Some(decide::seal(c, policy, now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, EffectKind, testkit};
    use Status::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
    }

    fn cny(minor: i64) -> Money {
        Money {
            minor,
            currency: Currency::parse("CNY").unwrap(),
        }
    }

    #[test]
    fn a_bank_transfer_pays_an_order_that_waits_for_it_and_nothing_else() {
        let p = Policy::default();
        let waiting = testkit::order(
            "web",
            "prepaid",
            &[Numbered, Approved, AwaitingPayment],
            now(),
        );
        // (case, order, amount, what it leaves: status, or refused)
        let cases: Vec<(&str, &Order, Money, Result<Status, ()>)> = vec![
            ("the whole total", &waiting, cny(9980), Ok(Paid)),
            ("part of it", &waiting, cny(5000), Ok(AwaitingPayment)),
            ("nothing", &waiting, cny(0), Err(())),
            (
                "another currency",
                &waiting,
                Money {
                    minor: 9980,
                    currency: Currency::parse("USD").unwrap(),
                },
                Err(()),
            ),
        ];
        for (case, o, amount, want) in cases {
            match (paid_by_hand(o, amount, "BANK-1", "ops", &p, now()), want) {
                (Ok(Some(c)), Ok(status)) => {
                    assert_eq!(c.order.status(), status, "{case}");
                    let pay = c.order.ledger.payment(MANUAL, "BANK-1").expect(case);
                    assert_eq!(pay.source, PaymentSource::Manual, "{case}");
                    assert_eq!(c.entry.actor, Actor::Staff("ops".into()), "{case}");
                    // The same transfer recorded again changes nothing.
                    assert!(
                        paid_by_hand(&c.order, amount, "BANK-1", "ops", &p, now())
                            .unwrap()
                            .is_none(),
                        "{case}"
                    );
                }
                (Err(_), Err(())) => {}
                (got, want) => panic!("{case}: {got:?} is not {want:?}"),
            }
        }
        // An order that waits for no payment takes none.
        for path in [
            &[Numbered, Approved, AwaitingPayment, Paid][..],
            &[Numbered, Approved, AwaitingPayment, Expired][..],
            &[Numbered, OnHold][..],
        ] {
            let o = testkit::order("web", "prepaid", path, now());
            assert!(paid_by_hand(&o, cny(9980), "BANK-2", "ops", &p, now()).is_err());
        }
    }

    #[test]
    fn a_refund_no_provider_could_make_is_recorded_as_paid_by_hand_and_the_order_settles() {
        let p = Policy::default();
        // Given a cash-on-delivery order delivered, its cash collected, then cancelled... a
        // simpler route to a refused refund: a prepaid order paid by hand and cancelled, whose
        // refund to "manual" no provider can make.
        let waiting = testkit::order(
            "web",
            "prepaid",
            &[Numbered, Approved, AwaitingPayment],
            now(),
        );
        let paid = paid_by_hand(&waiting, cny(9980), "BANK-1", "ops", &p, now())
            .unwrap()
            .unwrap()
            .order;
        let cancelled = decide::cancel(&paid, Actor::Staff("ops".into()), "asked", &p, now())
            .unwrap()
            .unwrap();
        let refund_id = cancelled.order.ledger.refunds[0].id.clone();
        assert!(cancelled.effects.iter().any(|e| e.kind
            == EffectKind::Refund {
                refund_id: refund_id.clone()
            }));
        // While the provider is still asked, it cannot be recorded by hand
        assert!(
            refund_paid_by_hand(&cancelled.order, &refund_id, "CASH-9", "ops", &p, now()).is_err()
        );
        let refused =
            decide::refund_refused(&cancelled.order, &refund_id, "no such provider", &p, now())
                .unwrap()
                .order;
        assert_eq!(refused.attention.len(), 1);
        // When staff record they paid it back by bank transfer
        let c = refund_paid_by_hand(&refused, &refund_id, "BANK-BACK-1", "ops", &p, now())
            .unwrap()
            .unwrap();
        // Then it counts as made, nothing waits for a person, and the order is refunded
        assert_eq!(c.order.status(), Refunded);
        assert!(c.order.attention.is_empty());
        assert_eq!(c.order.ledger.balance(c.order.total.currency), 0);
        assert!(
            !c.effects
                .iter()
                .any(|e| matches!(e.kind, EffectKind::Refund { .. }))
        );
        // Recorded again: nothing; an unknown refund: refused
        assert!(
            refund_paid_by_hand(&c.order, &refund_id, "BANK-BACK-1", "ops", &p, now())
                .unwrap()
                .is_none()
        );
        assert!(refund_paid_by_hand(&c.order, "rf-nope", "X", "ops", &p, now()).is_err());
    }
}
