//! Dispatch: one parcel per warehouse the order's stock is held in, each with the cheapest
//! carrier that keeps the channel's promise and a waybill from the carrier. A parcel no carrier
//! takes makes the order wait for a person with the reason; it is not retried by itself.

use super::{StepError, commit_if, policy};
use crate::app::App;
use crate::domain::{Order, Shipment, Status, TrackingStatus, decide};
use crate::ports::ReservationState;
use crate::shipping::{alias, choose_carrier};

pub async fn run(app: &App, order: Order) -> Result<(), StepError> {
    match order.status() {
        Status::Paid => {}
        Status::ReadyToShip if order.shipments.is_empty() => {}
        _ => return Ok(()),
    }
    if !order.attention.is_empty() {
        return Ok(());
    }
    let p = policy(app, &order);
    let now = app.clock.now();
    let promise = app
        .config
        .channel(&order.channel)
        .map_or(5, |c| c.promise_days);
    let region = order.shipping_address.region.as_str();
    // Parcel weights come from the catalogue, not from the channel.
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.clone()).collect();
    let catalogue = app.store.items(&skus).await?;
    let weight_of = |sku: &crate::domain::Sku| {
        catalogue
            .iter()
            .find(|i| i.sku == *sku)
            .map_or(app.config.default_weight_grams, |i| i.weight_grams)
    };
    let mut shipments = Vec::new();
    for r in app.store.reservations(order.id).await? {
        if r.state != ReservationState::Held {
            continue;
        }
        let weight: u64 = r
            .lines
            .iter()
            .map(|(sku, q)| weight_of(sku).saturating_mul(*q))
            .sum();
        let Some((carrier, cost)) = choose_carrier(&app.config.carriers, region, weight, promise)
        else {
            let reason = format!(
                "no carrier takes {weight} g from {} to {region}",
                r.warehouse
            );
            return commit_if(
                app,
                decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
            )
            .await;
        };
        let prefix = &app.config.carriers[carrier].waybill_prefix;
        let tracking = app
            .carriers
            .waybill(carrier, prefix, order.id, &r.warehouse)
            .await
            .map_err(|e| StepError::Transient(e.to_string()))?;
        app.store
            .link_alias(&alias(carrier, &tracking), order.id)
            .await?;
        shipments.push(Shipment {
            warehouse: r.warehouse,
            carrier: carrier.to_owned(),
            tracking_number: tracking,
            lines: r.lines,
            weight_grams: weight,
            cost,
            status: TrackingStatus::Pending,
            last_event_at: None,
            handed_over_at: None,
            delivered_at: None,
        });
    }
    if shipments.is_empty() {
        let reason = "no stock is held for the order".to_owned();
        return commit_if(
            app,
            decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
        )
        .await;
    }
    commit_if(app, decide::dispatched(&order, shipments, &p, now)).await
}
