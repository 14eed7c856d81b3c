//! Intake: a validated order is stored `received` with its numbering message kept by the same
//! write (an outbox record, a queue row in the embedded store's commit, or on DynamoDB the
//! order's own due entry: see [`crate::ports::Keeping`]), so a crash right after the write
//! never loses it.

use super::StepError;
use crate::app::App;
use crate::domain::{Effect, NewOrder, Order, OrderId, decide};
use crate::ports::{Created, Keeping};

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
            super::effects::kick(app, &change.order, &change.effects).await;
            Ok((change.order, false))
        }
        Created::Stored(stored) => {
            // The order finished an earlier creation that stopped after claiming its external
            // id: stored now, under that creation's id.
            app.metrics.order_accepted(stored.channel.as_str());
            let effects: Vec<Effect> = change
                .effects
                .iter()
                .map(|fx| fx.for_order(&stored))
                .collect();
            super::effects::kick(app, &stored, &effects).await;
            Ok((*stored, false))
        }
        Created::Existing(existing) => {
            // A replay: if the first attempt's process died before sending its numbering
            // message, send it now rather than after the grace time or the step budget: the
            // records still in the outbox, and the step itself if the store keeps no record
            // of it (a second copy of a step message changes nothing).
            if existing.status() == crate::domain::Status::Received {
                let mut pending = app.store.effects_of(existing.id).await?;
                let numbering = change
                    .effects
                    .iter()
                    .find(|fx| matches!(fx.kind, crate::domain::EffectKind::Step { .. }));
                if let Some(step) = numbering {
                    let step = Effect {
                        order_id: existing.id,
                        ..step.clone()
                    };
                    if app.store.keeping(&step, &existing) == Keeping::Redriven {
                        pending.push(step);
                    }
                }
                super::effects::kick(app, &existing, &pending).await;
            }
            Ok((*existing, true))
        }
    }
}
