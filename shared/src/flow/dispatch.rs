//! Dispatch: one parcel per warehouse the order's stock is held in, each with the cheapest
//! carrier that keeps the channel's promise and a waybill from the carrier. A parcel no carrier
//! takes makes the order wait for a person with the reason; it is not retried by itself.

use super::{StepError, commit_if, policy};
use crate::app::App;
use crate::domain::{Order, Shipment, Status, TrackingStatus, decide};
use crate::ports::ReservationState;
use crate::shipping::{Party, WaybillRequest, alias, choose_carrier};

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
        let warehouse = app
            .config
            .warehouses
            .iter()
            .find(|w| w.id == r.warehouse.as_str());
        let a = &order.shipping_address;
        let request = WaybillRequest {
            carrier: carrier.to_owned(),
            prefix: app.config.carriers[carrier].waybill_prefix.clone(),
            order: order.id,
            warehouse: r.warehouse.clone(),
            sender: Party {
                name: warehouse.map_or_else(|| r.warehouse.to_string(), |w| w.name.clone()),
                mobile: warehouse.and_then(|w| w.phone.clone()).unwrap_or_default(),
                address: warehouse
                    .and_then(|w| w.address.clone())
                    .unwrap_or_default(),
            },
            recipient: Party {
                name: a.name.to_string(),
                mobile: a
                    .phone
                    .as_ref()
                    .or(order.customer.phone.as_ref())
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                address: [a.region.as_str(), a.city.as_str(), a.line1.as_str()]
                    .into_iter()
                    .chain(a.line2.as_ref().map(|l| l.as_str()))
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            cargo: r
                .lines
                .iter()
                .map(|(sku, q)| format!("{sku} x{q}"))
                .collect::<Vec<_>>()
                .join(", "),
            count: r.lines.iter().map(|(_, q)| *q).sum(),
            weight_grams: weight,
        };
        let tracking = match app.carriers.waybill(&request).await {
            Ok(t) => t,
            Err(e) if e.retryable => return Err(StepError::Transient(e.to_string())),
            Err(e) => {
                // The carrier refused the parcel for good: a person looks at it.
                let reason = format!("the waybill was refused: {e}");
                return commit_if(
                    app,
                    decide::cannot_proceed(&order, "dispatch", &reason, &p, now),
                )
                .await;
            }
        };
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
