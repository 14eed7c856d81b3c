//! Courier callbacks: a verified update for one parcel, applied once per callback and only if it
//! moves the parcel forward by rank.

use super::payment::Applied;
use super::{Outcome, StepError, decide_and_commit};
use crate::app::App;
use crate::domain::decide::{self, TrackingUpdate};
use crate::shipping::alias;

pub async fn apply(
    app: &App,
    carrier: &str,
    update: &TrackingUpdate,
    event: &str,
) -> Result<Applied, StepError> {
    let Some(order_id) = app
        .store
        .alias(&alias(carrier, &update.tracking_number))
        .await?
    else {
        return Err(StepError::NotOurs(format!(
            "{carrier} waybill {} is not ours",
            update.tracking_number
        )));
    };
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let outcome = decide_and_commit(app, order_id, |o, p, now| {
        Ok(decide::tracked(o, carrier, update, event, p, now))
    })
    .await?;
    // A merged parcel carries other orders' goods too: the update is theirs as well, applied
    // once per order (the event id names the order), also when this order had it already. The
    // order as the decision left it names them (read again only after a duplicate).
    let order = match &outcome {
        Outcome::Committed(order) | Outcome::Nothing(order) => order.clone(),
        Outcome::Duplicate => super::load(app, order_id).await?,
    };
    let merged: Vec<crate::domain::OrderId> = order
        .shipments
        .iter()
        .filter(|s| s.tracking_number == update.tracking_number)
        .flat_map(|s| s.merged.clone())
        .collect();
    for other in merged {
        let their_event = format!("{event}#{other}");
        decide_and_commit(app, other, |o, p, now| {
            Ok(decide::tracked(o, carrier, update, &their_event, p, now))
        })
        .await?;
    }
    Ok(match outcome {
        Outcome::Committed(order) => {
            tracing::info!(order_id = %order_id, carrier, status = %order.status(), "tracking applied");
            Applied::Applied
        }
        Outcome::Nothing(_) => Applied::Ignored,
        Outcome::Duplicate => Applied::Duplicate,
    })
}

/// Carries out a [`SubscribeTracking`](crate::domain::EffectKind::SubscribeTracking) effect:
/// asks the carrier's tracking service to push the waybill's progress to us. Skipped (and done)
/// when the parcel is no longer the order's or the order ended before the parcel left. A
/// transient failure is tried again after a backoff (a `recorded` effect is deferred; one
/// carried from the stream is returned as an error, which keeps it in the outbox); a refusal
/// makes the order wait for a person with the reason (`retry` asks again).
pub async fn subscribe(
    app: &App,
    mut fx: crate::domain::Effect,
    recorded: bool,
    carrier: &str,
    number: &str,
) -> Result<(), StepError> {
    let order = super::load(app, fx.order_id).await?;
    let parcel = order
        .shipments
        .iter()
        .find(|s| s.carrier == carrier && s.tracking_number == number);
    let wanted = parcel
        .is_some_and(|p| p.handed_over_at.is_some() || !decide::ended_unfulfilled(order.status()));
    if !wanted {
        tracing::info!(order_id = %order.id, carrier, "tracking subscription skipped: the order ended before the parcel left");
        return finish(app, &fx, recorded).await;
    }
    let sub = crate::shipping::TrackingSubscription {
        carrier: carrier.to_owned(),
        tracking_number: number.to_owned(),
        order: order.id,
        phone: order
            .shipping_address
            .phone
            .as_ref()
            .or(order.customer.phone.as_ref())
            .map(|p| p.as_str().to_owned()),
    };
    match app.carriers.subscribe(&sub).await {
        Ok(()) => {
            tracing::info!(order_id = %order.id, carrier, "waybill subscribed for tracking pushes");
        }
        Err(e) if e.retryable => {
            if !recorded {
                return Err(StepError::Transient(e.to_string()));
            }
            fx.attempts += 1;
            fx.last_error = Some(e.reason.clone());
            fx.due_at = app.clock.now() + crate::domain::Effect::backoff(fx.attempts);
            tracing::warn!(order_id = %order.id, carrier, attempts = fx.attempts, error = %e, "tracking subscription failed for now; tried again later");
            app.store.defer_effect(&fx).await?;
            return Ok(());
        }
        Err(e) => {
            tracing::error!(order_id = %order.id, carrier, error = %e, "tracking subscription refused; the order waits for a person");
            let reason = format!("waybill {number} could not be subscribed for tracking: {e}");
            decide_and_commit(app, order.id, |o, p, now| {
                Ok(decide::cannot_proceed(o, "tracking", &reason, p, now))
            })
            .await?;
        }
    }
    finish(app, &fx, recorded).await
}

async fn finish(app: &App, fx: &crate::domain::Effect, recorded: bool) -> Result<(), StepError> {
    if recorded {
        app.store.finish_effect(fx.order_id, &fx.id).await?;
    }
    Ok(())
}
