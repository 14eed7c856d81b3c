//! Effects that ask someone outside for something about a parcel: a tracking subscription
//! (the carrier's tracking service), the marketplace told the parcel left, a waybill cancelled
//! at the carrier. Each is skipped when the order no longer wants it, retried with a backoff
//! when the answer may change (a `recorded` effect is deferred; one carried from the stream is
//! returned as an error, which keeps it in the outbox), and a refusal makes the order wait for
//! a person with the reason, named so that `retry` asks again ([`decide::TRACKING_ATTENTION`]
//! and its siblings).

use super::{StepError, decide_and_commit};
use crate::app::App;
use crate::domain::{Effect, Order, Shipment, decide};

/// A provider's answer: done, or why not and whether asking again may help.
type Answer = Result<(), (String, bool)>;

async fn finish(app: &App, fx: &Effect, recorded: bool) -> Result<(), StepError> {
    if recorded {
        app.store.finish_effect(fx.order_id, &fx.id).await?;
    }
    Ok(())
}

/// Settles one asking: done, tried again later, or refused (the order waits for a person with
/// `step: what: reason`).
async fn settle(
    app: &App,
    mut fx: Effect,
    recorded: bool,
    step: &str,
    what: &str,
    answer: Answer,
) -> Result<(), StepError> {
    match answer {
        Ok(()) => {
            tracing::info!(order_id = %fx.order_id, effect = fx.kind.name(), "{what}: done");
        }
        Err((reason, true)) => {
            if !recorded {
                return Err(StepError::Transient(format!("{what}: {reason}")));
            }
            fx.attempts += 1;
            fx.last_error = Some(reason.clone());
            fx.due_at = app.clock.now() + Effect::backoff(fx.attempts);
            tracing::warn!(order_id = %fx.order_id, effect = fx.kind.name(), attempts = fx.attempts, error = %reason, "{what}: failed for now; tried again later");
            app.store.defer_effect(&fx).await?;
            return Ok(());
        }
        Err((reason, false)) => {
            tracing::error!(order_id = %fx.order_id, effect = fx.kind.name(), error = %reason, "{what}: refused; the order waits for a person");
            let why = format!("{what}: {reason}");
            decide_and_commit(app, fx.order_id, |o, p, now| {
                Ok(decide::cannot_proceed(o, step, &why, p, now))
            })
            .await?;
        }
    }
    finish(app, &fx, recorded).await
}

/// The order, as cheaply as it can be had: as the write that made the effect left it (the
/// stream relay has it), else as an eventually consistent read has it (half the units), when
/// either already shows `enough` (the parcel, still wanted: neither is older than the write
/// that made the effect); else read strongly, which decides. A view that lags behind a cancel
/// made a moment ago still asks: a subscription or a shipping notice the order no longer
/// needs, which the services answer and we ignore.
async fn read(
    app: &App,
    fx: &Effect,
    written: Option<&Order>,
    enough: impl Fn(&Order) -> bool,
) -> Result<Order, StepError> {
    if let Some(o) = written.filter(|o| o.id == fx.order_id && enough(o)) {
        return Ok(o.clone());
    }
    if let Some(o) = app.store.get_order_eventually(fx.order_id).await?
        && enough(&o)
    {
        return Ok(o);
    }
    super::load(app, fx.order_id).await
}

/// Whether the parcel is the order's and travels: it left, or the order has not ended.
fn still_travels(order: &Order, carrier: &str, number: &str) -> bool {
    parcel(order, carrier, number)
        .is_some_and(|p| p.handed_over_at.is_some() || !decide::ended_unfulfilled(order.status()))
}

fn parcel<'a>(order: &'a Order, carrier: &str, number: &str) -> Option<&'a Shipment> {
    order
        .shipments
        .iter()
        .find(|s| s.carrier == carrier && s.tracking_number == number)
}

/// Asks the carrier's tracking service to push the waybill's progress to us, unless the
/// parcel is no longer the order's or the order ended before it left.
pub async fn subscribe(
    app: &App,
    fx: Effect,
    recorded: bool,
    written: Option<&Order>,
    carrier: &str,
    number: &str,
) -> Result<(), StepError> {
    let wanted = |order: &Order| still_travels(order, carrier, number);
    let order = read(app, &fx, written, wanted).await?;
    let wanted = wanted(&order);
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
    let answer = app
        .carriers
        .subscribe(&sub)
        .await
        .map_err(|e| (e.to_string(), e.retryable));
    let what = format!("waybill {number} could not be subscribed for tracking");
    settle(app, fx, recorded, "tracking", &what, answer).await
}

/// Tells the marketplace the order came from that its parcel left, unless the order ended
/// before it did.
pub async fn ship_on_marketplace(
    app: &App,
    fx: Effect,
    recorded: bool,
    written: Option<&Order>,
    carrier: &str,
    number: &str,
) -> Result<(), StepError> {
    let order = read(app, &fx, written, |o| still_travels(o, carrier, number)).await?;
    let (Some(trade), Some(p)) = (&order.external_id, parcel(&order, carrier, number)) else {
        return finish(app, &fx, recorded).await;
    };
    if p.handed_over_at.is_none() && decide::ended_unfulfilled(order.status()) {
        tracing::info!(order_id = %order.id, "marketplace not told: the order ended before the parcel left");
        return finish(app, &fx, recorded).await;
    }
    let shipment = crate::marketplace::MarketplaceShipment {
        channel: order.channel.to_string(),
        trade: trade.as_str().to_owned(),
        carrier: carrier.to_owned(),
        company_code: app
            .config
            .carriers
            .get(carrier)
            .and_then(|c| c.taobao_code.clone()),
        tracking_number: number.to_owned(),
    };
    let answer = app
        .marketplaces
        .shipped(&shipment)
        .await
        .map_err(|e| (e.to_string(), e.retryable));
    let what = format!(
        "trade {} could not be marked shipped with waybill {number}",
        trade.as_str()
    );
    settle(app, fx, recorded, "marketplace", &what, answer).await
}

/// Cancels at the carrier the waybill of a parcel that will not leave, unless it left after
/// all (a pick-up scan came first: a person intercepts it).
pub async fn cancel_waybill(
    app: &App,
    fx: Effect,
    recorded: bool,
    written: Option<&Order>,
    carrier: &str,
    number: &str,
) -> Result<(), StepError> {
    // An ended order's parcels do not leave any more (a pick-up scan after the end asks a
    // person to intercept the parcel, and records nothing), so the write's view decides.
    let order = read(app, &fx, written, |o| {
        parcel(o, carrier, number).is_some_and(|p| p.handed_over_at.is_none())
    })
    .await?;
    if parcel(&order, carrier, number).is_none_or(|p| p.handed_over_at.is_some()) {
        return finish(app, &fx, recorded).await;
    }
    let answer = app
        .carriers
        .cancel_waybill(carrier, number)
        .await
        .map_err(|e| (e.to_string(), e.retryable));
    let what = format!("waybill {number} could not be cancelled at the carrier; cancel it by hand");
    settle(app, fx, recorded, "waybill", &what, answer).await
}
