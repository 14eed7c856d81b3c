//! Decisions: for every step and event, a pure function of (order, event, policy, now) that
//! returns the change to write and the effects it causes, or nothing when there is nothing to do
//! (a replay, an order that moved on). No I/O, no clock reads, no random numbers: the flow
//! modules load, call these, and commit what they return in one atomic write.
//!
//! Every change passes through [`seal`], which keeps the invariants by construction:
//! - the money: whatever the order holds beyond what it may keep ([`Order::keeps`]) is paid
//!   back by refund effects, newest payment first, unless a person must look at the order;
//! - the stock: an order that ends unfulfilled (cancelled, expired, rejected, returned)
//!   releases whatever it still holds;
//! - the customer hears of every status they see;
//! - the order's next due time (payment deadline, end of the return window, step budget).

use chrono::{DateTime, Duration, Utc};

use super::effects::{EffectKind, Notification, Tracking};
use super::fulfilment::{Shipment, TrackingStatus};
use super::ledger::{Payment, PaymentSource, Refund, RefundState};
use super::order::{Address, Order, OrderChange, PaymentMethod, ReturnRecord};
use super::status::{Actor, Status};
use super::values::{Money, OrderNumber, Sku};

/// Queue names of the pipeline steps (the queues' logical names).
pub mod steps {
    pub const NUMBERING: &str = "numbering";
    pub const REVIEW: &str = "review";
    pub const INVENTORY: &str = "inventory";
    pub const DISPATCH: &str = "dispatch";
}

/// How many times the sweeper sends an order that sits in a step to that step again before it
/// asks a person.
pub const MAX_REDRIVES: u32 = 3;

/// What the channel's configuration says about an order, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub payment_timeout: Duration,
    /// The marketplace collected the money: the order arrives paid.
    pub paid_on_marketplace: bool,
    pub cancel_when_out_of_stock: bool,
    pub return_window: Duration,
    pub step_budget: Duration,
    /// Returned goods go back to stock (otherwise to inspection: a person decides).
    pub returns_to_stock: bool,
    /// The marketplace the order came from is told of its parcels (the channel has a
    /// marketplace API).
    pub ships_on_marketplace: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            payment_timeout: Duration::minutes(30),
            paid_on_marketplace: false,
            cancel_when_out_of_stock: false,
            return_window: Duration::days(7),
            step_budget: Duration::seconds(300),
            returns_to_stock: true,
            ships_on_marketplace: false,
        }
    }
}

/// Why a command is refused (answered 409 with the reason; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What review concluded, with every reason that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve(Vec<String>),
    Hold(Vec<String>),
    Reject(Vec<String>),
}

impl Verdict {
    pub fn reasons(&self) -> &[String] {
        match self {
            Verdict::Approve(r) | Verdict::Hold(r) | Verdict::Reject(r) => r,
        }
    }
}

/// Statuses a customer is told about (`notifications` queue).
pub const NOTIFIED: [Status; 13] = [
    Status::Received,
    Status::AwaitingPayment,
    Status::Paid,
    Status::OutOfStock,
    Status::Rejected,
    Status::Shipped,
    Status::Delivered,
    Status::Completed,
    Status::Cancelled,
    Status::Expired,
    Status::ReturnRequested,
    Status::Returned,
    Status::Refunded,
];

/// Statuses in which an order has not left the warehouse.
pub fn before_shipment(s: Status) -> bool {
    use Status::*;
    matches!(
        s,
        Received | Numbered | Approved | OnHold | AwaitingPayment | OutOfStock | Paid | ReadyToShip
    )
}

/// Statuses an order ends in without being fulfilled: it keeps no money and no stock.
pub fn ended_unfulfilled(s: Status) -> bool {
    matches!(
        s,
        Status::Cancelled
            | Status::Expired
            | Status::Rejected
            | Status::Returned
            | Status::Refunded
    )
}

/// Money in its minor unit, for people: `99.80 CNY`.
pub fn show(m: Money) -> String {
    let digits = m.currency.minor_digits();
    let scale = 10i64.pow(digits);
    let sign = if m.minor < 0 { "-" } else { "" };
    let v = m.minor.abs();
    if digits == 0 {
        format!("{sign}{v} {}", m.currency)
    } else {
        format!(
            "{sign}{}.{:0w$} {}",
            v / scale,
            v % scale,
            m.currency,
            w = digits as usize
        )
    }
}

fn system(step: &str) -> Actor {
    Actor::System(step.into())
}

/// Moves the change on to `to` within the same write (one more timeline entry). Refused when
/// the state machine does not allow it.
fn then(
    change: &mut OrderChange,
    to: Status,
    actor: Actor,
    reason: String,
    at: DateTime<Utc>,
) -> Result<(), Refusal> {
    let next = change
        .order
        .transition(to, actor, Some(reason), at)
        .map_err(|e| Refusal(e.to_string()))?;
    let mut entry = next.entry;
    // Still one write: the version moves once; the entry sorts after the change's others (its
    // place goes into the bits after the variant, see `entry_id`).
    let place = (change.more.len() as u128 + 1) & 0x3f;
    entry.id =
        uuid::Uuid::from_u128((change.entry.id.as_u128() & !(0x3fu128 << 56)) | (place << 56));
    change.order = next.order;
    change.order.set_version(change.expected_version + 1);
    change.more.push(entry);
    Ok(())
}

pub(super) fn transition(
    order: &Order,
    to: Status,
    actor: Actor,
    reason: String,
    at: DateTime<Utc>,
) -> Result<OrderChange, Refusal> {
    order
        .transition(to, actor, Some(reason), at)
        .map_err(|e| Refusal(e.to_string()))
}

/// The order's next due time under its status (see the module documentation).
pub fn due_at(order: &Order, policy: &Policy) -> Option<DateTime<Utc>> {
    use Status::*;
    if !order.attention.is_empty() {
        return None;
    }
    let budget = || {
        let factor = 1i32 << order.redrives.min(8);
        let budget = policy.step_budget * factor;
        // Held for merging: not before the window closes.
        let fresh = Some(order.updated_at + budget).max(order.ship_after);
        let least = Some(order.updated_at + budget / 2).max(order.ship_after);
        // A due time set by the step before still gives this step at least half its budget:
        // kept, so that an order passing through several steps in moments keeps one due time
        // (and its due-index entry is not moved at every step).
        match order.due_at {
            Some(kept) if Some(kept) >= least && Some(kept) <= fresh => Some(kept),
            _ => fresh,
        }
    };
    match order.status() {
        AwaitingPayment => order.payment_due_at,
        Delivered => order.delivered_at.map(|d| d + policy.return_window),
        Received | Numbered | Approved | Paid => budget(),
        ReadyToShip if order.shipments.is_empty() => budget(),
        _ => None,
    }
}

/// A paid order waits until `until` (the channel's merge window) so that the customer's other
/// orders to the same address can ship with it. Once per order; nothing else changes.
pub fn held_for_merge(
    order: &Order,
    until: DateTime<Utc>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let waits = matches!(order.status(), Status::Paid)
        || (order.status() == Status::ReadyToShip && order.shipments.is_empty());
    if !waits || order.ship_after.is_some() {
        return None;
    }
    let mut c = note(
        order,
        system("dispatch"),
        format!(
            "waits until {} so that other orders to this address can ship with it",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        now,
    );
    c.order.ship_after = Some(until);
    Some(seal(c, policy, now))
}

/// The notification of `order` entering `status` at `at`: the order's own contact and parcels.
pub fn notification(order: &Order, status: Status, at: DateTime<Utc>) -> Notification {
    Notification {
        order_id: order.id,
        number: order.number.as_ref().map(ToString::to_string),
        status,
        at,
        channel: order.channel.to_string(),
        email: order.customer.email.as_ref().map(|e| e.as_str().to_owned()),
        phone: order.customer.phone.as_ref().map(|p| p.as_str().to_owned()),
        tracking: order
            .shipments
            .iter()
            .map(|s| Tracking {
                carrier: s.carrier.clone(),
                tracking_number: s.tracking_number.clone(),
                status: s.status,
            })
            .collect(),
    }
}

/// Completes a change: settles the money, releases stock of an order that ended unfulfilled,
/// notifies, and sets the next due time. Every decision ends here.
pub fn seal(mut change: OrderChange, policy: &Policy, now: DateTime<Utc>) -> OrderChange {
    let entered: Vec<Status> = std::iter::once(change.entry.to)
        .chain(change.more.iter().map(|e| e.to))
        .flatten()
        .collect();
    for st in &entered {
        if NOTIFIED.contains(st) {
            let n = notification(&change.order, *st, now);
            change.emit(EffectKind::Notify(n), now);
        }
    }
    // Whatever the order still holds goes back. A returned order gives back only what never
    // left (a parcel returned without a pick-up scan): the rest was taken off the shelf, or is
    // about to be, and comes back by restock.
    if entered
        .iter()
        .any(|s| matches!(s, Status::Cancelled | Status::Expired | Status::Rejected))
    {
        change.emit(
            EffectKind::ReleaseStock {
                warehouses: Vec::new(),
            },
            now,
        );
        // Its waybills are cancelled at the carrier: those of parcels that never left and
        // carry nothing of another order's.
        for s in change.order.shipments.clone() {
            if s.handed_over_at.is_none() && s.merged_into.is_none() && s.merged.is_empty() {
                change.emit(
                    EffectKind::CancelWaybill {
                        carrier: s.carrier,
                        tracking_number: s.tracking_number,
                    },
                    now,
                );
            }
        }
    } else if entered.contains(&Status::Returned) {
        let never_left: Vec<_> = change
            .order
            .shipments
            .iter()
            .filter(|s| s.handed_over_at.is_none())
            .map(|s| s.warehouse.clone())
            .collect();
        if !never_left.is_empty() {
            change.emit(
                EffectKind::ReleaseStock {
                    warehouses: never_left,
                },
                now,
            );
        }
    }
    if change.order.attention.is_empty() {
        let order_currency = change.order.total.currency;
        let mut currencies = change.order.ledger.currencies();
        if !currencies.contains(&order_currency) {
            currencies.push(order_currency);
        }
        for cur in currencies {
            let keep = if cur == order_currency {
                change.order.keeps()
            } else {
                0
            };
            for plan in change.order.ledger.plan_refunds(cur, keep) {
                let id = format!(
                    "rf-{}-{}",
                    change.order.id,
                    change.order.ledger.refunds.len() + 1
                );
                let reason = refund_reason(&change.order, cur != order_currency);
                change.order.ledger.refunds.push(Refund {
                    id: id.clone(),
                    provider: plan.provider,
                    payment_id: plan.payment_id,
                    amount: plan.amount,
                    state: RefundState::Requested,
                    reason,
                    requested_at: now,
                    provider_refund_id: None,
                    failure: None,
                });
                change.emit(EffectKind::Refund { refund_id: id }, now);
            }
        }
    }
    change.order.due_at = due_at(&change.order, policy);
    change
}

fn refund_reason(order: &Order, foreign: bool) -> String {
    if foreign {
        return format!("paid in a currency other than {}", order.total.currency);
    }
    match order.status() {
        s if ended_unfulfilled(s) => format!("the order is {s}"),
        Status::Delivered | Status::ReturnRequested | Status::Completed
            if order.returned_value() > 0 =>
        {
            "goods returned".into()
        }
        _ => "paid more than the order total".into(),
    }
}

/// A paid order has no payment deadline any more and goes to dispatch.
fn to_dispatch(c: &mut OrderChange, now: DateTime<Utc>) {
    c.order.payment_due_at = None;
    to_step(c, steps::DISPATCH, now);
}

/// Sends the order to a pipeline step (an outbox record).
fn to_step(c: &mut OrderChange, queue: &str, now: DateTime<Utc>) {
    c.emit(
        EffectKind::Step {
            queue: queue.into(),
        },
        now,
    );
}

/// A change that only records something (the status stays).
fn note(order: &Order, actor: Actor, reason: String, now: DateTime<Utc>) -> OrderChange {
    order.revise(actor, reason, now)
}

// ---------------------------------------------------------------------------------------------
// Intake and the pipeline

/// A new order's first write: numbering is an outbox record written with it; a marketplace that
/// collected the money records it now.
pub fn accepted(mut order: Order, policy: &Policy, now: DateTime<Utc>) -> OrderChange {
    if policy.paid_on_marketplace && order.payment_method == PaymentMethod::Prepaid {
        let trade = order
            .external_id
            .as_ref()
            .map(|e| e.as_str().to_owned())
            .unwrap_or_else(|| order.id.to_string());
        order.ledger.payments.push(Payment {
            provider: order.channel.to_string(),
            payment_id: trade,
            amount: order.total,
            source: PaymentSource::Marketplace,
            at: now,
        });
    }
    let entry = super::status::TimelineEntry {
        id: super::order::entry_id(order.id, 1, now),
        at: now,
        actor: Actor::Channel(order.channel.to_string()),
        from: None,
        to: Some(Status::Received),
        reason: None,
    };
    let mut change = OrderChange {
        expected_status: Status::Received,
        expected_version: 0,
        order,
        entry,
        more: Vec::new(),
        event: None,
        effects: Vec::new(),
        done: Vec::new(),
        before: None,
    };
    to_step(&mut change, steps::NUMBERING, now);
    // Accepted: integrators hear of it (`order.created`).
    let n = notification(&change.order, Status::Received, now);
    change.emit(EffectKind::Notify(n), now);
    change.order.due_at = due_at(&change.order, policy);
    change
}

/// Numbering assigned `number` by `rule`. Nothing to do unless the order is `received`.
pub fn numbered(
    order: &Order,
    number: OrderNumber,
    rule: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    if order.status() != Status::Received {
        return None;
    }
    let mut c = transition(
        order,
        Status::Numbered,
        system("numbering"),
        format!("number {number} by rule {rule}"),
        now,
    )
    .ok()?;
    c.order.number = Some(number);
    c.order.redrives = 0;
    to_step(&mut c, steps::REVIEW, now);
    Some(seal(c, policy, now))
}

/// Review's verdict on a numbered order.
pub fn reviewed(
    order: &Order,
    verdict: &Verdict,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    if order.status() != Status::Numbered {
        return None;
    }
    let reasons = verdict.reasons().join("; ");
    let to = match verdict {
        Verdict::Approve(_) => Status::Approved,
        Verdict::Hold(_) => Status::OnHold,
        Verdict::Reject(_) => Status::Rejected,
    };
    let mut c = transition(order, to, system("review"), reasons, now).ok()?;
    c.order.redrives = 0;
    match verdict {
        Verdict::Approve(_) => to_step(&mut c, steps::INVENTORY, now),
        Verdict::Hold(r) => {
            c.order.hold_reasons = r.clone();
            c.order.was_held = true;
        }
        Verdict::Reject(_) => {}
    }
    Some(seal(c, policy, now))
}

/// What staff decided about an order that waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffDecision {
    /// A held order goes on.
    Approve,
    /// A held order is rejected (its stock and money go back).
    Reject,
    /// An order that needed attention (a refused refund, a step that could not proceed) is
    /// tried again: owed refunds are requested anew, the step is sent its message again.
    Retry,
}

pub fn staff_review(
    order: &Order,
    decision: StaffDecision,
    reviewer: &str,
    note_text: Option<&str>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<OrderChange, Refusal> {
    let verb = match decision {
        StaffDecision::Approve => "approved",
        StaffDecision::Reject => "rejected",
        StaffDecision::Retry => "retried",
    };
    let reason = match note_text.filter(|n| !n.is_empty()) {
        Some(n) => format!("{verb} by {reviewer}: {n}"),
        None => format!("{verb} by {reviewer}"),
    };
    let actor = Actor::Staff(reviewer.into());
    let mut c = match decision {
        StaffDecision::Approve | StaffDecision::Reject => {
            if order.status() != Status::OnHold {
                return Err(Refusal(format!("order is {}, not on_hold", order.status())));
            }
            if decision == StaffDecision::Approve {
                let mut c = transition(order, Status::Approved, actor, reason, now)?;
                to_step(&mut c, steps::INVENTORY, now);
                c
            } else {
                transition(order, Status::Rejected, actor, reason, now)?
            }
        }
        StaffDecision::Retry => {
            if order.attention.is_empty() {
                return Err(Refusal("the order does not wait for a person".into()));
            }
            let mut c = note(order, actor, reason, now);
            c.order.attention.clear();
            c.order.redrives = 0;
            if let Some(q) = step_of(order) {
                to_step(&mut c, q, now);
            }
            // What a provider refused for a waybill is asked for again.
            for s in &order.shipments {
                let named = |prefix: &str| {
                    order
                        .attention
                        .iter()
                        .any(|a| a.starts_with(prefix) && a.contains(&s.tracking_number))
                };
                let (carrier, tracking_number) = (s.carrier.clone(), s.tracking_number.clone());
                if s.merged_into.is_none() && named(TRACKING_ATTENTION) {
                    c.emit(
                        EffectKind::SubscribeTracking {
                            carrier: carrier.clone(),
                            tracking_number: tracking_number.clone(),
                        },
                        now,
                    );
                }
                if named(MARKETPLACE_ATTENTION) {
                    c.emit(
                        EffectKind::ShipOnMarketplace {
                            carrier: carrier.clone(),
                            tracking_number: tracking_number.clone(),
                        },
                        now,
                    );
                }
                if named(WAYBILL_ATTENTION) {
                    c.emit(
                        EffectKind::CancelWaybill {
                            carrier,
                            tracking_number,
                        },
                        now,
                    );
                }
            }
            c
        }
    };
    c.order.hold_reasons.clear();
    Ok(seal(c, policy, now))
}

/// The pipeline step an order in `status` waits for, if any.
pub fn step_of(order: &Order) -> Option<&'static str> {
    match order.status() {
        Status::Received => Some(steps::NUMBERING),
        Status::Numbered => Some(steps::REVIEW),
        Status::Approved | Status::OutOfStock => Some(steps::INVENTORY),
        Status::Paid => Some(steps::DISPATCH),
        Status::ReadyToShip if order.shipments.is_empty() => Some(steps::DISPATCH),
        _ => None,
    }
}

/// Whether the sweeper sends `order`, as it stands, to `queue` again once its due time comes:
/// it has a due time, nothing waits for a person, and `queue` is the step its status waits for.
/// Such a step message needs no outbox record of its own: the order's due entry is one.
pub fn redriven_to(order: &Order, queue: &str) -> bool {
    order.attention.is_empty() && order.due_at.is_some() && step_of(order) == Some(queue)
}

/// How a refused tracking subscription starts its `attention` entry (the step's name, as
/// [`cannot_proceed`] writes it): a staff `retry` subscribes the waybills it names again.
pub const TRACKING_ATTENTION: &str = "tracking: ";
/// The same for the marketplace's refusal to mark a parcel shipped (`retry` tells it again).
pub const MARKETPLACE_ATTENTION: &str = "marketplace: ";
/// The same for a carrier's refusal to cancel a waybill (`retry` asks again).
pub const WAYBILL_ATTENTION: &str = "waybill: ";

/// A step cannot proceed (an unknown SKU, no carrier for the parcel): the order waits for a
/// person with the reason, and is not retried by itself.
pub fn cannot_proceed(
    order: &Order,
    step: &str,
    reason: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let why = format!("{step}: {reason}");
    if order.attention.contains(&why) {
        return None;
    }
    let mut c = note(
        order,
        system(step),
        format!("needs a person: {reason}"),
        now,
    );
    c.order.attention.push(why);
    Some(seal(c, policy, now))
}

/// Stock is reserved in `where_from`. A prepaid order waits for its payment (or is paid
/// already: a marketplace order, an early payment); cash on delivery and credit go to dispatch.
pub fn stock_reserved(
    order: &Order,
    where_from: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    if !matches!(order.status(), Status::Approved | Status::OutOfStock) {
        return None;
    }
    let actor = system("inventory");
    let mut c = if order.payment_method.is_prepaid() {
        let due = now + policy.payment_timeout;
        let mut c = transition(
            order,
            Status::AwaitingPayment,
            actor.clone(),
            format!(
                "stock reserved in {where_from}; payment due by {}",
                due.to_rfc3339()
            ),
            now,
        )
        .ok()?;
        c.order.payment_due_at = Some(due);
        if c.order.owed() == 0 {
            then(
                &mut c,
                Status::Paid,
                actor,
                "paid before its stock was reserved".into(),
                now,
            )
            .ok()?;
            to_dispatch(&mut c, now);
        }
        c
    } else {
        let mut c = transition(
            order,
            Status::ReadyToShip,
            actor,
            format!(
                "stock reserved in {where_from}; {} needs no prepayment",
                match order.payment_method {
                    PaymentMethod::CashOnDelivery => "cash on delivery",
                    _ => "credit terms",
                }
            ),
            now,
        )
        .ok()?;
        to_step(&mut c, steps::DISPATCH, now);
        c
    };
    c.order.redrives = 0;
    Some(seal(c, policy, now))
}

/// Stock could not be reserved. The order waits for stock (a stock change sends it back to
/// inventory), or is cancelled if its channel says so.
pub fn out_of_stock(
    order: &Order,
    reason: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    if order.status() != Status::Approved {
        return None;
    }
    let actor = system("inventory");
    let mut c = transition(
        order,
        Status::OutOfStock,
        actor.clone(),
        format!("out of stock: {reason}"),
        now,
    )
    .ok()?;
    if policy.cancel_when_out_of_stock {
        then(
            &mut c,
            Status::Cancelled,
            actor,
            format!(
                "channel {} cancels orders that are out of stock",
                order.channel
            ),
            now,
        )
        .ok()?;
    }
    c.order.redrives = 0;
    Some(seal(c, policy, now))
}

// ---------------------------------------------------------------------------------------------
// Money

/// A verified payment provider's event, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    pub provider: String,
    pub event_id: String,
    /// The provider's payment identity (payment intent, `trade_no`).
    pub payment_id: String,
    pub kind: PaymentFact,
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFact {
    /// Money captured.
    Captured,
    /// A payment attempt failed (no money moved).
    Failed,
    /// The provider reports `amount` as the total refunded of this payment so far.
    Refunded,
}

/// Applies a payment provider's event. `None`: nothing new (the same payment reported again
/// under another event id, a refund we knew of).
pub fn payment(
    order: &Order,
    ev: &PaymentFacts,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let actor = Actor::Provider(ev.provider.clone());
    let amount = show(ev.amount);
    let mut c = match ev.kind {
        PaymentFact::Captured => {
            if order.ledger.payment(&ev.provider, &ev.payment_id).is_some() {
                return None;
            }
            let mut paid = order.clone();
            paid.ledger.payments.push(Payment {
                provider: ev.provider.clone(),
                payment_id: ev.payment_id.clone(),
                amount: ev.amount,
                source: PaymentSource::Provider,
                at: now,
            });
            let foreign = ev.amount.currency != order.total.currency;
            let status = order.status();
            let mut c = if status == Status::AwaitingPayment && paid.owed() == 0 && !foreign {
                let mut c = transition(
                    order,
                    Status::Paid,
                    actor,
                    format!("paid {amount} ({})", ev.payment_id),
                    now,
                )
                .ok()?;
                to_dispatch(&mut c, now);
                c
            } else {
                let why = if foreign {
                    format!(
                        "payment of {amount} ({}) is not in {}; it is refunded",
                        ev.payment_id, order.total.currency
                    )
                } else if ended_unfulfilled(status) {
                    format!(
                        "payment of {amount} ({}) arrived after the order was {status}; it is refunded",
                        ev.payment_id
                    )
                } else if status == Status::AwaitingPayment {
                    format!(
                        "payment of {amount} ({}) received; {} still owed",
                        ev.payment_id,
                        show(Money {
                            minor: paid.owed(),
                            currency: order.total.currency
                        })
                    )
                } else if order.owed() == 0 {
                    format!(
                        "payment of {amount} ({}) received while the order was paid already; it is refunded",
                        ev.payment_id
                    )
                } else {
                    format!(
                        "payment of {amount} ({}) recorded while the order is {status}",
                        ev.payment_id
                    )
                };
                note(order, actor, why, now)
            };
            c.order.ledger = paid.ledger;
            c
        }
        PaymentFact::Failed => note(
            order,
            actor,
            format!("payment attempt of {amount} ({}) failed", ev.payment_id),
            now,
        ),
        PaymentFact::Refunded => {
            let p = order.ledger.payment(&ev.provider, &ev.payment_id)?.clone();
            let known = order.ledger.refunds_of(&ev.provider, &ev.payment_id);
            let extra = ev
                .amount
                .minor
                .min(p.amount.minor)
                .saturating_sub(known)
                .min(order.ledger.refundable(&p));
            if extra <= 0 || ev.amount.currency != p.amount.currency {
                return None;
            }
            let extra = Money {
                minor: extra,
                currency: p.amount.currency,
            };
            let mut c = note(
                order,
                actor.clone(),
                format!(
                    "{} reported a refund of {} ({})",
                    ev.provider,
                    show(extra),
                    ev.payment_id
                ),
                now,
            );
            c.order.ledger.refunds.push(Refund {
                id: format!("ext:{}:{}", ev.provider, ev.event_id),
                provider: ev.provider.clone(),
                payment_id: ev.payment_id.clone(),
                amount: extra,
                state: RefundState::Succeeded,
                reason: "refunded at the provider".into(),
                requested_at: now,
                provider_refund_id: None,
                failure: None,
            });
            settle_refunded(&mut c, actor, now);
            c
        }
    };
    c.event = Some(format!("payment:{}:{}", ev.provider, ev.event_id));
    Some(seal(c, policy, now))
}

/// An order that ended unfulfilled and has paid everything back becomes `refunded`.
pub(super) fn settle_refunded(c: &mut OrderChange, actor: Actor, now: DateTime<Utc>) {
    let o = &c.order;
    let all_back = o
        .ledger
        .currencies()
        .into_iter()
        .all(|cur| o.ledger.balance(cur) == 0);
    let confirmed = !o.ledger.has_pending_refunds()
        && o.ledger
            .refunds
            .iter()
            .any(|r| r.state == RefundState::Succeeded);
    if all_back
        && confirmed
        && matches!(
            o.status(),
            Status::Cancelled | Status::Expired | Status::Returned
        )
    {
        let _ = then(
            c,
            Status::Refunded,
            actor,
            "everything paid back".into(),
            now,
        );
    }
}

/// The provider made our refund `refund_id`. `None` if the ledger knew it already.
pub fn refund_made(
    order: &Order,
    refund_id: &str,
    provider_refund_id: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let r = order.ledger.refund(refund_id)?;
    if r.state != RefundState::Requested {
        return None;
    }
    let actor = Actor::Provider(r.provider.clone());
    let mut c = note(
        order,
        actor.clone(),
        format!(
            "refunded {} of {} ({provider_refund_id}): {}",
            show(r.amount),
            r.payment_id,
            r.reason
        ),
        now,
    );
    if let Some(r) = c.order.ledger.refund_mut(refund_id) {
        r.state = RefundState::Succeeded;
        r.provider_refund_id = Some(provider_refund_id.into());
    }
    settle_refunded(&mut c, actor, now);
    Some(seal(c, policy, now))
}

/// The provider refused our refund for good: it no longer counts, and the order waits for a
/// person (no new refund is requested until they decide).
pub fn refund_refused(
    order: &Order,
    refund_id: &str,
    reason: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let r = order.ledger.refund(refund_id)?;
    if r.state != RefundState::Requested {
        return None;
    }
    let why = format!(
        "refund {refund_id} of {} was refused: {reason}",
        show(r.amount)
    );
    let mut c = note(order, Actor::Provider(r.provider.clone()), why.clone(), now);
    if let Some(r) = c.order.ledger.refund_mut(refund_id) {
        r.state = RefundState::Failed;
        r.failure = Some(reason.into());
    }
    c.order.attention.push(why);
    Some(seal(c, policy, now))
}

// ---------------------------------------------------------------------------------------------
// Commands

pub fn cancel(
    order: &Order,
    actor: Actor,
    reason: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<OrderChange>, Refusal> {
    if matches!(order.status(), Status::Cancelled | Status::Refunded) {
        // A retried cancel (its first answer was lost), also after the refund completed: the
        // order will not ship, which is what the caller asked for.
        return Ok(None);
    }
    if !before_shipment(order.status()) {
        return Err(Refusal(format!(
            "an order that is {} cannot be cancelled",
            order.status()
        )));
    }
    let mut c = transition(order, Status::Cancelled, actor, reason.into(), now)?;
    c.order.payment_due_at = None;
    c.order.hold_reasons.clear();
    c.order.attention.clear();
    Ok(Some(seal(c, policy, now)))
}

pub fn change_address(
    order: &Order,
    address: Address,
    actor: Actor,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<OrderChange, Refusal> {
    if !before_shipment(order.status()) || !order.shipments.is_empty() {
        return Err(Refusal(format!(
            "the address of an order that is {} cannot change",
            order.status()
        )));
    }
    let mut c = note(order, actor, "shipping address changed".into(), now);
    c.order.shipping_address = address;
    Ok(seal(c, policy, now))
}

/// What is still returnable of each SKU: delivered less returned or asked for.
pub fn returnable(order: &Order) -> Vec<(Sku, u64)> {
    let mut out: Vec<(Sku, u64)> = Vec::new();
    for l in &order.lines {
        let q = u64::from(l.quantity.get());
        match out.iter_mut().find(|(s, _)| *s == l.sku) {
            Some((_, n)) => *n += q,
            None => out.push((l.sku.clone(), q)),
        }
    }
    for r in &order.returns {
        for (sku, q) in &r.lines {
            if let Some((_, n)) = out.iter_mut().find(|(s, _)| s == sku) {
                *n = n.saturating_sub(*q);
            }
        }
    }
    out.retain(|(_, n)| *n > 0);
    out
}

/// What `q` units of a SKU were sold for: their share of the line's net (after its discount;
/// the first line's, if several lines carry the SKU).
fn sold_for(order: &Order, sku: &Sku, q: u64) -> i64 {
    order
        .lines
        .iter()
        .find(|l| l.sku == *sku)
        .and_then(|l| {
            let net = i128::from(l.net()?);
            let units = i128::from(l.quantity.get()).max(1);
            i64::try_from(net * i128::from(q) / units).ok()
        })
        .unwrap_or(0)
}

/// The customer (or staff) asks to return `lines` (all that is returnable when `None`) of a
/// delivered order within the return window.
pub fn request_return(
    order: &Order,
    lines: Option<Vec<(Sku, u64)>>,
    reason: &str,
    actor: Actor,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<OrderChange, Refusal> {
    if order.status() != Status::Delivered {
        return Err(Refusal(format!(
            "an order that is {} cannot be returned",
            order.status()
        )));
    }
    if order
        .delivered_at
        .is_some_and(|d| d + policy.return_window < now)
    {
        return Err(Refusal("the return window has closed".into()));
    }
    let open = returnable(order);
    let lines = match lines {
        None => open.clone(),
        Some(ls) => {
            let mut merged: Vec<(Sku, u64)> = Vec::new();
            for (sku, q) in ls {
                match merged.iter_mut().find(|(s, _)| *s == sku) {
                    Some((_, n)) => *n += q,
                    None => merged.push((sku, q)),
                }
            }
            for (sku, q) in &merged {
                let left = open
                    .iter()
                    .find(|(s, _)| s == sku)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                if *q == 0 || *q > left {
                    return Err(Refusal(format!(
                        "{sku}: {q} cannot be returned, {left} can"
                    )));
                }
            }
            merged
        }
    };
    if lines.is_empty() {
        return Err(Refusal("nothing is left to return".into()));
    }
    let value = lines.iter().map(|(sku, q)| sold_for(order, sku, *q)).sum();
    let what = lines
        .iter()
        .map(|(s, q)| format!("{q} × {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut c = transition(
        order,
        Status::ReturnRequested,
        actor,
        format!("return of {what} requested: {reason}"),
        now,
    )?;
    c.order.returns.push(ReturnRecord {
        id: format!("ret-{}", order.returns.len() + 1),
        lines,
        reason: reason.into(),
        requested_at: now,
        received_at: None,
        value,
    });
    Ok(seal(c, policy, now))
}

/// The warehouse received the open return: its value is refunded; the goods go back to stock
/// (or to inspection). When everything came back the order is `returned`; otherwise it is
/// `delivered` again with the rest.
pub fn return_received(
    order: &Order,
    actor: Actor,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<OrderChange, Refusal> {
    if order.status() != Status::ReturnRequested {
        return Err(Refusal(format!(
            "an order that is {} has no return on its way",
            order.status()
        )));
    }
    let Some(idx) = order.returns.iter().position(|r| r.received_at.is_none()) else {
        return Err(Refusal("no return is open".into()));
    };
    let mut received = order.clone();
    received.returns[idx].received_at = Some(now);
    let everything_back = returnable(&received).is_empty();
    let ret = received.returns[idx].clone();
    let to = if everything_back {
        Status::Returned
    } else {
        Status::Delivered
    };
    let mut c = transition(
        order,
        to,
        actor,
        format!(
            "return {} arrived ({}){}",
            ret.id,
            if policy.returns_to_stock {
                "back to stock"
            } else {
                "to inspection"
            },
            if everything_back {
                ""
            } else {
                "; the rest stays with the customer"
            }
        ),
        now,
    )?;
    c.order.returns = received.returns;
    if policy.returns_to_stock {
        // Back to the warehouse each SKU was shipped from.
        let mut per_wh: Vec<(super::values::WarehouseId, Vec<(Sku, u64)>)> = Vec::new();
        for (sku, q) in &ret.lines {
            let wh = order
                .shipments
                .iter()
                .find(|s| s.lines.iter().any(|(ss, _)| ss == sku))
                .map(|s| s.warehouse.clone());
            if let Some(wh) = wh {
                match per_wh.iter_mut().find(|(w, _)| *w == wh) {
                    Some((_, ls)) => ls.push((sku.clone(), *q)),
                    None => per_wh.push((wh, vec![(sku.clone(), *q)])),
                }
            }
        }
        for (warehouse, lines) in per_wh {
            let key = format!("{}:{}:{}", order.id, ret.id, warehouse);
            c.emit(
                EffectKind::Restock {
                    key,
                    warehouse,
                    lines,
                },
                now,
            );
        }
    }
    Ok(seal(c, policy, now))
}

// ---------------------------------------------------------------------------------------------
// Shipping

/// Dispatch made the parcels: a paid order is ready to ship; a cash-on-delivery or credit order
/// (ready to ship already) gets its waybills.
pub fn dispatched(
    order: &Order,
    shipments: Vec<Shipment>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    dispatched_noting(order, shipments, "", policy, now)
}

/// [`dispatched`], with `also` added to the timeline's reason (the orders a merged parcel
/// carries).
pub fn dispatched_noting(
    order: &Order,
    shipments: Vec<Shipment>,
    also: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let summary = shipments
        .iter()
        .map(|s| {
            format!(
                "{} from {} ({} g)",
                s.tracking_number, s.warehouse, s.weight_grams
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let actor = system("dispatch");
    let mut c = match order.status() {
        Status::Paid => transition(
            order,
            Status::ReadyToShip,
            actor,
            format!("waybills {summary}{also}"),
            now,
        )
        .ok()?,
        Status::ReadyToShip if order.shipments.is_empty() => {
            note(order, actor, format!("waybills {summary}{also}"), now)
        }
        _ => return None,
    };
    // Each waybill is subscribed for tracking pushes once, by the order whose parcel it is (a
    // merged order's goods ride in another order's parcel, which that order subscribes).
    for s in shipments.iter().filter(|s| s.merged_into.is_none()) {
        c.emit(
            EffectKind::SubscribeTracking {
                carrier: s.carrier.clone(),
                tracking_number: s.tracking_number.clone(),
            },
            now,
        );
    }
    // The marketplace hears of every parcel its trade rides in (a merged one too: the trade's
    // goods leave under that waybill).
    if policy.ships_on_marketplace && order.external_id.is_some() {
        for s in &shipments {
            c.emit(
                EffectKind::ShipOnMarketplace {
                    carrier: s.carrier.clone(),
                    tracking_number: s.tracking_number.clone(),
                },
                now,
            );
        }
    }
    c.order.shipments = shipments;
    c.order.redrives = 0;
    Some(seal(c, policy, now))
}

/// A carrier's report on one parcel, in our vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingUpdate {
    pub tracking_number: String,
    pub status: TrackingStatus,
    pub at: DateTime<Utc>,
}

/// Applies a carrier's update: the shipment moves forward by rank only; a parcel handed over
/// takes its stock off the shelf; the first one ships the order, the last one delivered
/// delivers it (a cash-on-delivery order records the cash the courier collected); all parcels
/// back at the sender return the order. `None`: nothing moved (a duplicate, an older event).
pub fn tracked(
    order: &Order,
    carrier: &str,
    update: &TrackingUpdate,
    event: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<OrderChange> {
    let mut shipments = order.shipments.clone();
    let shipment = shipments
        .iter_mut()
        .find(|s| s.carrier == carrier && s.tracking_number == update.tracking_number)?;
    let was_handed_over = shipment.handed_over_at.is_some();
    if ended_unfulfilled(order.status()) && !was_handed_over && update.status.handed_over() {
        // The order ended (its stock went back) but the carrier has the parcel: a person must
        // intercept it; the stock is not touched until they do.
        let reason = format!(
            "{carrier} reports parcel {} {:?} although the order is {}: intercept it",
            update.tracking_number,
            update.status,
            order.status()
        );
        return cannot_proceed(order, "tracking", &reason, policy, now);
    }
    if !shipment.apply(update.status, update.at) {
        return None;
    }
    let newly_out =
        (shipment.handed_over_at.is_some() && !was_handed_over).then(|| shipment.warehouse.clone());
    let actor = Actor::Provider(carrier.into());
    let line = format!(
        "{} {:?} at {}",
        update.tracking_number,
        update.status,
        update.at.to_rfc3339()
    );
    let all_delivered = shipments
        .iter()
        .all(|s| s.status == TrackingStatus::Delivered);
    let all_back = shipments
        .iter()
        .all(|s| s.status == TrackingStatus::Returned);
    let any_out = shipments.iter().any(|s| s.handed_over_at.is_some());
    let mut c = note(order, actor.clone(), line.clone(), now);
    let mut current = order.status();
    let step = |c: &mut OrderChange, to: Status| -> Option<()> {
        if c.entry.to.is_none() {
            *c = transition(order, to, actor.clone(), line.clone(), now).ok()?;
        } else {
            then(c, to, actor.clone(), line.clone(), now).ok()?;
        }
        Some(())
    };
    if current == Status::ReadyToShip && any_out {
        step(&mut c, Status::Shipped)?;
        current = Status::Shipped;
    }
    if current == Status::Shipped && all_delivered {
        step(&mut c, Status::Delivered)?;
        c.order.delivered_at = Some(update.at);
        if order.payment_method == PaymentMethod::CashOnDelivery
            && c.order
                .ledger
                .payment("cash", &order.id.to_string())
                .is_none()
        {
            c.order.ledger.payments.push(Payment {
                provider: "cash".into(),
                payment_id: order.id.to_string(),
                amount: order.total,
                source: PaymentSource::Cash,
                at: update.at,
            });
        }
    } else if current == Status::Shipped && all_back {
        step(&mut c, Status::Returned)?;
    }
    c.order.shipments = shipments;
    if let Some(warehouse) = newly_out {
        c.emit(EffectKind::CommitStock { warehouse }, now);
    }
    if c.order.status() == Status::Returned {
        // The parcels came back to the warehouse: their stock was taken off the shelf when
        // they left, so they go back on it.
        for s in &c.order.shipments.clone() {
            if s.handed_over_at.is_some() && policy.returns_to_stock {
                c.emit(
                    EffectKind::Restock {
                        key: format!("{}:parcel:{}", order.id, s.tracking_number),
                        warehouse: s.warehouse.clone(),
                        lines: s.lines.clone(),
                    },
                    now,
                );
            }
        }
    }
    c.event = Some(format!("tracking:{carrier}:{event}"));
    Some(seal(c, policy, now))
}

// ---------------------------------------------------------------------------------------------
// The sweep

/// What the sweeper does with an order whose due time has come: expire an unpaid order, complete
/// a delivered one after the return window, send an order that sits in a step to it again (at
/// most [`MAX_REDRIVES`] times, then a person is asked). `None`: not due (yet, or any more).
pub fn sweep(order: &Order, policy: &Policy, now: DateTime<Utc>) -> Option<OrderChange> {
    let due = due_at(order, policy)?;
    if due > now {
        return None;
    }
    let sweeper = system("sweeper");
    let c = match order.status() {
        Status::AwaitingPayment => {
            let mut c = transition(
                order,
                Status::Expired,
                sweeper,
                "not paid by its deadline".into(),
                now,
            )
            .ok()?;
            c.order.payment_due_at = None;
            c
        }
        Status::Delivered => transition(
            order,
            Status::Completed,
            sweeper,
            "the return window closed".into(),
            now,
        )
        .ok()?,
        // The merge window closed and nothing moved the order since: on to dispatch, which is
        // not a re-send.
        _ if order
            .ship_after
            .is_some_and(|t| t <= now && order.updated_at < t) =>
        {
            let queue = step_of(order)?;
            let mut c = note(
                order,
                sweeper,
                "the merge window closed; sent to dispatch".into(),
                now,
            );
            to_step(&mut c, queue, now);
            c
        }
        _ => {
            let queue = step_of(order)?;
            let mut c = note(
                order,
                sweeper,
                format!("sat in {} too long; sent to {queue} again", order.status()),
                now,
            );
            if order.redrives >= MAX_REDRIVES {
                c.entry.reason = Some(format!(
                    "sat in {} through {MAX_REDRIVES} re-sends; needs a person",
                    order.status()
                ));
                c.order.attention.push(format!(
                    "{queue}: no progress after {MAX_REDRIVES} re-sends"
                ));
            } else {
                c.order.redrives += 1;
                to_step(&mut c, queue, now);
            }
            c
        }
    };
    Some(seal(c, policy, now))
}
