//! The money ledger of one order: what was captured, keyed by the provider's payment identity,
//! and what was (or is being) paid back, keyed by our refund id.
//!
//! A provider may report the same money several times (Stripe's `payment_intent.succeeded` and
//! `charge.succeeded` for one intent; Alipay's `TRADE_SUCCESS` and later `TRADE_FINISHED` for one
//! `trade_no`): a payment is recorded once per `(provider, payment_id)`, whatever the event id.
//!
//! `balance = captured − refunded`, where a refund counts from the moment it is requested (so it
//! is never requested twice) until it fails. What an order may keep is decided by
//! [`crate::domain::Order::keeps`]; [`Ledger::plan_refunds`] turns the difference into refunds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{Currency, Money};

/// Where a payment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    /// A payment provider's webhook (Stripe, Alipay).
    Provider,
    /// The marketplace the order came from collected it (a Tmall trade arrives paid).
    Marketplace,
    /// The courier collected cash on delivery.
    Cash,
    /// Staff recorded money paid outside any provider (a bank transfer).
    Manual,
}

/// Money captured for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub provider: String,
    /// The provider's identity of the payment (payment intent, `trade_no`, marketplace trade).
    pub payment_id: String,
    pub amount: Money,
    pub source: PaymentSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Written with the change that made it owed; the effects step asks the provider.
    Requested,
    /// The provider paid it back (or reported a refund it made on its own).
    Succeeded,
    /// The provider refused it for good; the order waits for a person.
    Failed,
}

/// Money paid back (or to be paid back) against one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Ours (`rf-<order>-<n>`), also the provider's idempotency key; for a refund the provider
    /// reported on its own, `ext:<provider>:<event>`.
    pub id: String,
    pub provider: String,
    /// The payment it pays back.
    pub payment_id: String,
    pub amount: Money,
    pub state: RefundState,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Refund {
    /// Whether it counts against the balance: requested or made, not failed.
    pub fn counts(&self) -> bool {
        self.state != RefundState::Failed
    }
}

/// A refund to request: the part of one payment to pay back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRefund {
    pub provider: String,
    pub payment_id: String,
    pub amount: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    pub payments: Vec<Payment>,
    #[serde(default)]
    pub refunds: Vec<Refund>,
}

impl Ledger {
    pub fn payment(&self, provider: &str, payment_id: &str) -> Option<&Payment> {
        self.payments
            .iter()
            .find(|p| p.provider == provider && p.payment_id == payment_id)
    }

    pub fn refund(&self, id: &str) -> Option<&Refund> {
        self.refunds.iter().find(|r| r.id == id)
    }

    pub fn refund_mut(&mut self, id: &str) -> Option<&mut Refund> {
        self.refunds.iter_mut().find(|r| r.id == id)
    }

    /// Every currency money moved in.
    pub fn currencies(&self) -> Vec<Currency> {
        let mut out: Vec<Currency> = Vec::new();
        for c in self
            .payments
            .iter()
            .map(|p| p.amount.currency)
            .chain(self.refunds.iter().map(|r| r.amount.currency))
        {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    pub fn captured(&self, currency: Currency) -> i64 {
        self.payments
            .iter()
            .filter(|p| p.amount.currency == currency)
            .map(|p| p.amount.minor)
            .sum()
    }

    /// Refunds requested or made (failed ones do not count).
    pub fn refunded(&self, currency: Currency) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.amount.currency == currency && r.counts())
            .map(|r| r.amount.minor)
            .sum()
    }

    /// Refunds the provider confirmed.
    pub fn refunded_for_sure(&self, currency: Currency) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.amount.currency == currency && r.state == RefundState::Succeeded)
            .map(|r| r.amount.minor)
            .sum()
    }

    /// `captured − refunded` in one currency.
    pub fn balance(&self, currency: Currency) -> i64 {
        self.captured(currency) - self.refunded(currency)
    }

    /// What is still refundable of one payment.
    pub fn refundable(&self, p: &Payment) -> i64 {
        let back: i64 = self
            .refunds
            .iter()
            .filter(|r| r.counts() && r.provider == p.provider && r.payment_id == p.payment_id)
            .map(|r| r.amount.minor)
            .sum();
        p.amount.minor - back
    }

    /// Refunds owed on one payment: never more than was captured.
    pub fn refunds_of(&self, provider: &str, payment_id: &str) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.counts() && r.provider == provider && r.payment_id == payment_id)
            .map(|r| r.amount.minor)
            .sum()
    }

    pub fn has_pending_refunds(&self) -> bool {
        self.refunds
            .iter()
            .any(|r| r.state == RefundState::Requested)
    }

    pub fn has_failed_refunds(&self) -> bool {
        self.refunds.iter().any(|r| r.state == RefundState::Failed)
    }

    /// The refunds that bring the balance in `currency` down to `keep`: the newest payments are
    /// paid back first, each no further than what is left of it. Nothing when the balance is at
    /// or below `keep`.
    pub fn plan_refunds(&self, currency: Currency, keep: i64) -> Vec<PlannedRefund> {
        let mut excess = self.balance(currency) - keep.max(0);
        let mut out = Vec::new();
        for p in self
            .payments
            .iter()
            .rev()
            .filter(|p| p.amount.currency == currency)
        {
            if excess <= 0 {
                break;
            }
            let take = self.refundable(p).min(excess);
            if take > 0 {
                out.push(PlannedRefund {
                    provider: p.provider.clone(),
                    payment_id: p.payment_id.clone(),
                    amount: Money {
                        minor: take,
                        currency,
                    },
                });
                excess -= take;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cny(minor: i64) -> Money {
        Money {
            minor,
            currency: Currency::parse("CNY").unwrap(),
        }
    }
    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }
    fn pay(id: &str, minor: i64) -> Payment {
        Payment {
            provider: "stripe".into(),
            payment_id: id.into(),
            amount: cny(minor),
            source: PaymentSource::Provider,
            at: at(),
        }
    }
    fn refund(id: &str, of: &str, minor: i64, state: RefundState) -> Refund {
        Refund {
            id: id.into(),
            provider: "stripe".into(),
            payment_id: of.into(),
            amount: cny(minor),
            state,
            reason: "test".into(),
            requested_at: at(),
            provider_refund_id: None,
            failure: None,
        }
    }

    #[test]
    fn the_balance_counts_requested_and_made_refunds_but_not_failed_ones() {
        let c = Currency::parse("CNY").unwrap();
        let cases: &[(&[Refund], i64)] = &[
            (&[], 1500),
            (&[refund("r1", "pi_1", 300, RefundState::Requested)], 1200),
            (&[refund("r1", "pi_1", 300, RefundState::Succeeded)], 1200),
            (&[refund("r1", "pi_1", 300, RefundState::Failed)], 1500),
        ];
        for (refunds, want) in cases {
            let l = Ledger {
                payments: vec![pay("pi_1", 1000), pay("pi_2", 500)],
                refunds: refunds.to_vec(),
            };
            assert_eq!(l.balance(c), *want, "{refunds:?}");
        }
    }

    #[test]
    fn refunds_are_planned_newest_payment_first_and_never_beyond_a_payment() {
        let c = Currency::parse("CNY").unwrap();
        let l = Ledger {
            payments: vec![pay("pi_1", 1000), pay("pi_2", 500)],
            refunds: vec![refund("r1", "pi_2", 200, RefundState::Succeeded)],
        };
        // (keep, expected refunds)
        let cases: &[(i64, &[(&str, i64)])] = &[
            (1300, &[]),
            (2000, &[]),
            (1000, &[("pi_2", 300)]),
            (900, &[("pi_2", 300), ("pi_1", 100)]),
            (0, &[("pi_2", 300), ("pi_1", 1000)]),
            (-5, &[("pi_2", 300), ("pi_1", 1000)]),
        ];
        for (keep, want) in cases {
            let got: Vec<_> = l
                .plan_refunds(c, *keep)
                .into_iter()
                .map(|p| (p.payment_id, p.amount.minor))
                .collect();
            let want: Vec<_> = want.iter().map(|(p, m)| (p.to_string(), *m)).collect();
            assert_eq!(got, want, "keep {keep}");
        }
    }
}
