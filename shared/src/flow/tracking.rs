//! Courier callbacks: a verified update for one parcel, applied once per callback and only if it
//! moves the parcel forward by rank.

use super::payment::Applied;
use super::{StepError, commit, policy};
use crate::app::App;
use crate::domain::decide::{self, TrackingUpdate};
use crate::ports::StoreError;
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
    for _ in 0..5 {
        let order = super::load(app, order_id).await?;
        let Some(change) = decide::tracked(
            &order,
            carrier,
            update,
            event,
            &policy(app, &order),
            app.clock.now(),
        ) else {
            return Ok(Applied::Ignored);
        };
        match commit(app, &change).await {
            Ok(()) => {
                tracing::info!(order_id = %order.id, carrier, status = %change.order.status(), "tracking applied");
                return Ok(Applied::Applied);
            }
            Err(StoreError::Duplicate(_)) => return Ok(Applied::Duplicate),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StepError::Transient(
        "the order kept changing while the update was applied".into(),
    ))
}
