//! Payment events from a provider's verified webhook. Each event is applied once (its event id
//! is recorded with the change); each payment is recorded once (by the provider's payment
//! identity, whatever the event id); refunds that follow are outbox records.

use super::{Outcome, StepError, decide_and_commit};
use crate::app::App;
use crate::domain::Order;
use crate::domain::decide::{self, PaymentFact, PaymentFacts};
use crate::payments::{EventKind, OrderRef, PaymentEvent};

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
/// order is decided again on the newest order.
pub async fn apply(app: &App, ev: &PaymentEvent) -> Result<Applied, StepError> {
    let facts = facts(ev);
    // An event that names the order's id needs no look-up: the decision reads the order.
    let id = match &ev.order {
        OrderRef::Id(id) => *id,
        by_number => find(app, by_number).await?.id,
    };
    tracing::Span::current().record("order_id", tracing::field::display(id));
    let outcome = match decide_and_commit(app, id, |o, p, now| {
        Ok(decide::payment(o, &facts, p, now))
    })
    .await
    {
        Err(StepError::UnknownOrder(_)) => {
            return Err(StepError::NotOurs(format!("no order for {:?}", ev.order)));
        }
        outcome => outcome?,
    };
    Ok(match outcome {
        Outcome::Committed(order) => {
            tracing::info!(order_id = %id, provider = %ev.provider, kind = ?ev.kind, status = %order.status(), "payment event applied");
            Applied::Applied
        }
        Outcome::Nothing(_) | Outcome::Duplicate => Applied::Duplicate,
    })
}
