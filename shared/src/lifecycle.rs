//! The life of an order after its stock is locked: payments applied once, refunds that are
//! requested once and recorded, and a notification for every change the customer sees.

use serde::Serialize;

use crate::app::{App, queues};
use crate::domain::{
    Actor, Money, MoneyMovement, MovementKind, Order, OrderChange, OrderId, Status, TrackingStatus,
};
use crate::payments::{EventKind, OrderRef, PaymentEvent};
use crate::pipeline::{StepError, forward};
use crate::ports::StoreError;

/// Statuses a customer is told about (`notifications` queue).
pub const NOTIFIED: [Status; 12] = [
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

/// The message integrators receive for e-mail or SMS. It carries the customer's contact so
/// they can reach them; it is never logged.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Notification {
    pub order_id: OrderId,
    pub number: Option<String>,
    pub status: Status,
    pub at: chrono::DateTime<chrono::Utc>,
    pub channel: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tracking: Vec<Tracking>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Tracking {
    pub carrier: String,
    pub tracking_number: String,
    pub status: TrackingStatus,
}

/// Saves a change and, when it moves the order to a status the customer sees, notifies.
pub async fn save(app: &App, change: &OrderChange) -> Result<(), StoreError> {
    app.store.save_change(change).await?;
    if let Some(to) = change.entry.to.filter(|s| NOTIFIED.contains(s)) {
        let o = &change.order;
        let n = Notification {
            order_id: o.id,
            number: o.number.as_ref().map(ToString::to_string),
            status: to,
            at: change.entry.at,
            channel: o.channel.to_string(),
            email: o.customer.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: o.customer.phone.as_ref().map(|p| p.as_str().to_owned()),
            tracking: o
                .shipments
                .iter()
                .map(|s| Tracking {
                    carrier: s.carrier.clone(),
                    tracking_number: s.tracking_number.clone(),
                    status: s.status,
                })
                .collect(),
        };
        // The change is stored; a failed notification is logged, not a reason to fail the step.
        if let Err(e) = app.send(queues::NOTIFICATIONS, &n).await {
            tracing::error!(order_id = %o.id, status = %to, error = %e, "notification not sent");
        }
    }
    Ok(())
}

/// What applying an external event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Seen before: nothing changed.
    Duplicate,
    /// Nothing to do (an event type we do not act on, an out-of-date tracking event).
    Ignored,
}

fn provider(p: &str) -> Actor {
    Actor::Provider(p.into())
}

fn show(m: Money) -> String {
    let digits = m.currency.minor_digits();
    let scale = 10i64.pow(digits);
    if digits == 0 {
        format!("{} {}", m.minor, m.currency)
    } else {
        format!(
            "{}.{:0w$} {}",
            m.minor / scale,
            m.minor % scale,
            m.currency,
            w = digits as usize
        )
    }
}

async fn find(app: &App, r: &OrderRef) -> Result<Order, StepError> {
    let found = match r {
        OrderRef::Id(id) => app.store.get_order(*id).await?,
        OrderRef::Number(n) => app.store.get_order_by_number(n).await?,
    };
    found.ok_or_else(|| StepError::Malformed(format!("no order for {r:?}")))
}

/// Applies a verified payment event exactly once.
pub async fn apply_payment(app: &App, ev: &PaymentEvent) -> Result<Applied, StepError> {
    let order = find(app, &ev.order).await?;
    tracing::Span::current().record("order_id", tracing::field::display(order.id));
    if order
        .payments
        .iter()
        .any(|m| m.provider == ev.provider && m.event_id == ev.event_id)
    {
        return Ok(Applied::Duplicate);
    }
    let now = app.clock.now();
    let kind = match ev.kind {
        EventKind::Succeeded => MovementKind::Payment,
        EventKind::Failed => MovementKind::FailedPayment,
        EventKind::Refunded => MovementKind::Refund,
    };
    // A reported refund counts what goes beyond the refunds of that payment recorded already
    // (ours, made through the gateway, included): providers report the running total.
    let refunded_before: i64 = order
        .payments
        .iter()
        .filter(|m| {
            m.kind == MovementKind::Refund
                && m.refunds_payment.as_deref() == Some(ev.reference.as_str())
        })
        .map(|m| m.amount.minor)
        .sum();
    let amount_now = match ev.kind {
        EventKind::Refunded => Money {
            minor: ev.amount.minor - refunded_before,
            currency: ev.amount.currency,
        },
        _ => ev.amount,
    };
    let movement = MoneyMovement {
        kind,
        provider: ev.provider.clone(),
        reference: ev.reference.clone(),
        event_id: ev.event_id.clone(),
        amount: amount_now,
        at: now,
        note: None,
        refunds_payment: (ev.kind == EventKind::Refunded).then(|| ev.reference.clone()),
    };
    let amount = show(ev.amount);
    let mut refund_after = None;
    let mut dispatch_after = false;
    let mut change = match ev.kind {
        EventKind::Succeeded => {
            let already_paid = order.net_paid() >= order.total.minor;
            match order.status() {
                Status::AwaitingPayment if ev.amount == order.total => {
                    dispatch_after = true;
                    order.transition(
                        Status::Paid,
                        provider(&ev.provider),
                        Some(format!("paid {amount} ({})", ev.reference)),
                        now,
                    )?
                }
                Status::AwaitingPayment => {
                    let why = format!(
                        "payment of {amount} does not match the order total {}",
                        show(order.total)
                    );
                    let mut c = order.transition(
                        Status::OnHold,
                        provider(&ev.provider),
                        Some(why.clone()),
                        now,
                    )?;
                    c.order.hold_reasons = vec![why];
                    c
                }
                Status::Cancelled | Status::Expired => {
                    refund_after = Some(format!(
                        "payment arrived after the order was {}",
                        order.status()
                    ));
                    order.revise(
                        provider(&ev.provider),
                        format!(
                            "payment of {amount} received for a {} order; refund requested",
                            order.status()
                        ),
                        now,
                    )
                }
                _ if already_paid => {
                    refund_after = Some("the order was already paid".into());
                    order.revise(
                        provider(&ev.provider),
                        format!("second payment of {amount}; refund requested"),
                        now,
                    )
                }
                other => order.revise(
                    provider(&ev.provider),
                    format!("payment of {amount} recorded while the order is {other}"),
                    now,
                ),
            }
        }
        EventKind::Failed => order.revise(
            provider(&ev.provider),
            format!("payment attempt of {amount} failed"),
            now,
        ),
        EventKind::Refunded => {
            if amount_now.minor <= 0 {
                return Ok(Applied::Duplicate);
            }
            let amount = show(amount_now);
            let settled = order.net_paid() - amount_now.minor <= 0;
            if settled
                && matches!(
                    order.status(),
                    Status::Cancelled | Status::Expired | Status::Returned
                )
            {
                order.transition(
                    Status::Refunded,
                    provider(&ev.provider),
                    Some(format!("refunded {amount}")),
                    now,
                )?
            } else {
                order.revise(
                    provider(&ev.provider),
                    format!("refund of {amount} reported"),
                    now,
                )
            }
        }
    };
    change.order.payments.push(movement);
    change.event = Some(format!("payment:{}:{}", ev.provider, ev.event_id));
    match save(app, &change).await {
        Ok(()) => {}
        Err(StoreError::Duplicate(_)) => return Ok(Applied::Duplicate),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order_id = %order.id, provider = %ev.provider, kind = ?ev.kind, status = %change.order.status(), "payment event applied");
    if dispatch_after {
        forward(app, queues::DISPATCH, order.id).await?;
    }
    if let Some(reason) = refund_after {
        refund(
            app,
            change.order,
            ev.amount,
            &ev.provider,
            &ev.reference,
            &reason,
        )
        .await?;
    }
    Ok(Applied::Applied)
}

/// Pays `amount` of the payment `reference` back through its provider, once: the request is
/// recorded first (a second request for the same payment stops there), the gateway is asked with
/// an idempotency key, and the refund is recorded; a cancelled, expired or returned order that
/// has nothing left paid becomes `refunded`.
pub async fn refund(
    app: &App,
    order: Order,
    amount: Money,
    provider_name: &str,
    reference: &str,
    reason: &str,
) -> Result<Order, StepError> {
    let key = format!("refund:{}:{reference}", order.id);
    let now = app.clock.now();
    let requested = MoneyMovement {
        kind: MovementKind::RefundRequested,
        provider: provider_name.into(),
        reference: reference.into(),
        event_id: key.clone(),
        amount,
        at: now,
        note: Some(reason.into()),
        refunds_payment: Some(reference.into()),
    };
    let mut ask = order.revise(
        Actor::System("refunds".into()),
        format!("refund of {} requested: {reason}", show(amount)),
        now,
    );
    ask.order.payments.push(requested);
    ask.event = Some(key.clone());
    let order = match app.store.save_change(&ask).await {
        Ok(()) => ask.order,
        // Requested before (a retry): go on, the gateway call is idempotent.
        Err(StoreError::Duplicate(_)) => app.store.get_order(order.id).await?.unwrap_or(ask.order),
        Err(e) => return Err(e.into()),
    };
    let refund_id = app
        .gateway
        .refund(provider_name, reference, amount, &key)
        .await
        .map_err(|e| StepError::Malformed(e.to_string()))?;
    if order
        .payments
        .iter()
        .any(|m| m.kind == MovementKind::Refund && m.reference == refund_id)
    {
        return Ok(order);
    }
    let settled = order.net_paid() - amount.minor <= 0;
    let mut done = if settled
        && matches!(
            order.status(),
            Status::Cancelled | Status::Expired | Status::Returned
        ) {
        order.transition(
            Status::Refunded,
            provider(provider_name),
            Some(format!("refunded {} ({refund_id})", show(amount))),
            app.clock.now(),
        )?
    } else {
        order.revise(
            provider(provider_name),
            format!("refunded {} ({refund_id})", show(amount)),
            app.clock.now(),
        )
    };
    done.order.payments.push(MoneyMovement {
        kind: MovementKind::Refund,
        provider: provider_name.into(),
        reference: refund_id,
        event_id: format!("{key}:done"),
        amount,
        at: app.clock.now(),
        note: None,
        refunds_payment: Some(reference.into()),
    });
    done.event = Some(format!("{key}:done"));
    match save(app, &done).await {
        Ok(()) | Err(StoreError::Duplicate(_)) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(order_id = %done.order.id, provider = provider_name, amount = amount.minor, "refunded");
    Ok(done.order)
}

/// Refunds whatever is paid and not yet paid back, through the provider of the last payment.
pub async fn refund_all(app: &App, order: Order, reason: &str) -> Result<Order, StepError> {
    let owed = order.net_paid();
    let last = order
        .payments
        .iter()
        .rev()
        .find(|m| m.kind == MovementKind::Payment)
        .cloned();
    match last {
        Some(p) if owed > 0 => {
            let amount = Money {
                minor: owed,
                currency: order.total.currency,
            };
            refund(app, order, amount, &p.provider, &p.reference, reason).await
        }
        _ => Ok(order),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_with_its_minor_unit() {
        let cny = crate::domain::Currency::parse("CNY").unwrap();
        let jpy = crate::domain::Currency::parse("JPY").unwrap();
        assert_eq!(
            show(Money {
                minor: 9980,
                currency: cny
            }),
            "99.80 CNY"
        );
        assert_eq!(
            show(Money {
                minor: 5,
                currency: cny
            }),
            "0.05 CNY"
        );
        assert_eq!(
            show(Money {
                minor: 1200,
                currency: jpy
            }),
            "1200 JPY"
        );
    }
}
