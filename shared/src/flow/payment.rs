//! Payment events from a provider's verified webhook. Each event is applied once (its event id
//! is recorded with the change); each payment is recorded once (by the provider's payment
//! identity, whatever the event id); refunds that follow are outbox records.

use super::{StepError, commit, policy};
use crate::app::App;
use crate::domain::Order;
use crate::domain::decide::{self, PaymentFact, PaymentFacts};
use crate::payments::{EventKind, OrderRef, PaymentEvent};
use crate::ports::StoreError;

/// What applying an external event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Seen before: nothing changed.
    Duplicate,
    /// Nothing to do (an event type we do not act on, an out-of-date tracking event).
    Ignored,
}

async fn find(app: &App, r: &OrderRef) -> Result<Order, StepError> {
    let found = match r {
        OrderRef::Id(id) => app.store.get_order(*id).await?,
        OrderRef::Number(n) => app.store.get_order_by_number(n).await?,
    };
    found.ok_or_else(|| StepError::NotOurs(format!("no order for {r:?}")))
}

pub fn facts(ev: &PaymentEvent) -> PaymentFacts {
    PaymentFacts {
        provider: ev.provider.clone(),
        event_id: ev.event_id.clone(),
        payment_id: ev.reference.clone(),
        kind: match ev.kind {
            EventKind::Succeeded => PaymentFact::Captured,
            EventKind::Failed => PaymentFact::Failed,
            EventKind::Refunded => PaymentFact::Refunded,
        },
        amount: ev.amount,
    }
}

/// Applies a verified payment event exactly once. A lost race with another change of the same
/// order is tried again a few times before it is returned (retryable: the provider retries).
pub async fn apply(app: &App, ev: &PaymentEvent) -> Result<Applied, StepError> {
    let facts = facts(ev);
    for _ in 0..5 {
        let order = find(app, &ev.order).await?;
        tracing::Span::current().record("order_id", tracing::field::display(order.id));
        let Some(change) = decide::payment(&order, &facts, &policy(app, &order), app.clock.now())
        else {
            return Ok(Applied::Duplicate);
        };
        match commit(app, &change).await {
            Ok(()) => {
                tracing::info!(order_id = %order.id, provider = %ev.provider, kind = ?ev.kind, status = %change.order.status(), "payment event applied");
                return Ok(Applied::Applied);
            }
            Err(StoreError::Duplicate(_)) => return Ok(Applied::Duplicate),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::Transient(
        "the order kept changing while the payment was applied".into(),
    ))
}
