//! Intake: a validated order is stored `received` with its numbering message as an outbox
//! record in the same write, so a crash right after the write never leaves it waiting for long.

use super::StepError;
use crate::app::App;
use crate::domain::{NewOrder, Order, OrderId, decide};
use crate::ports::Created;

/// Stores the order (or finds the one stored before under the same id or external id).
/// Returns the order and whether it was stored before.
pub async fn accept(app: &App, new: NewOrder, id: OrderId) -> Result<(Order, bool), StepError> {
    let now = app.clock.now();
    let (order, _) = new.accept(id, now);
    let p = super::policy(app, &order);
    let change = decide::accepted(order, &p, now);
    match app
        .store
        .create_order(&change.order, &change.entry, &change.effects)
        .await?
    {
        Created::New => {
            app.metrics.order_accepted(change.order.channel.as_str());
            super::effects::kick(app, &change.effects).await;
            Ok((change.order, false))
        }
        Created::Existing(existing) => {
            // A replay: if the first attempt's numbering message is still in the outbox (its
            // process died before sending it), send it now rather than after the grace time.
            if existing.status() == crate::domain::Status::Received {
                let pending = app.store.effects_of(existing.id).await?;
                super::effects::kick(app, &pending).await;
            }
            Ok((*existing, true))
        }
    }
}
