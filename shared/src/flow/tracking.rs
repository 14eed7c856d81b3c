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
